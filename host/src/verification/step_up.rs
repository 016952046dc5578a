//! OIDC sign-ins and MFA step-ups: started by sending the browser to the
//! authority, completed when the authority redirects back with a code.
//!
//! A flow is stored under the sha256 of its `state` (256 random bits), with
//! its tenant, its requester (for a step-up) and its redirect URI. Its PKCE
//! verifier and nonce are never stored: both are HMACs of the state under
//! the verifier's in-memory key, derived again when the redirect comes back.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::oidc::{self, AuthorizeRequest, Expect, OidcClient};
use super::{FLOW_SECONDS, MacKey, VerificationError, Verifier};
use crate::ids::{UserId, random_bytes};
use crate::sdk;
use crate::tenant::TenantId;

const STEP_UP: &str = "step-up";
const SIGN_IN: &str = "sign-in";
/// The longest authorization code accepted from a redirect, in bytes
/// (Entra's are about 1 KiB).
const MAX_CODE_BYTES: usize = 4096;

/// A sign-in or step-up, started: send the user to `authorize_url`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpStart {
    /// The authority's authorize URL with this flow's parameters.
    pub authorize_url: String,
    /// The `state` the redirect will carry back (also in the URL).
    pub state: String,
    /// When the flow stops being accepted, in Unix seconds.
    pub expires_at: i64,
}

/// A passed MFA step-up: the requester signed in with MFA just now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpPassed {
    /// The tenant.
    pub tenant: TenantId,
    /// The requester, as the ID token's `oid` proved.
    pub requester: UserId,
    /// When the verification passed, in Unix seconds.
    pub verified_at: i64,
}

impl StepUpPassed {
    /// The fact for the policy module.
    pub fn verification(&self) -> sdk::Verification {
        sdk::Verification {
            method: sdk::Method::MfaStepUp,
            verified_at: self.verified_at,
        }
    }
}

/// What a completed flow proved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Completed {
    /// A plain sign-in: this user of this tenant is at the browser.
    SignIn {
        /// The tenant (`tid`).
        tenant: TenantId,
        /// The user (`oid`).
        user: UserId,
        /// The `name` claim (else `preferred_username`), for greetings only.
        display_name: String,
    },
    /// A step-up for the requester passed.
    StepUp(StepUpPassed),
}

/// A stored flow.
struct Flow {
    kind: String,
    tenant: String,
    requester: Option<String>,
    redirect_uri: String,
    key_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl Verifier {
    /// Starts an MFA step-up for `requester` of `tenant` at `oidc`'s
    /// authority (`prompt=login`). `login_hint` is what the sign-in page
    /// pre-fills: the requester's user principal name, which is what Entra
    /// expects there (an object id would be refused by the page's username
    /// field); whoever signs in, the ID token's `oid` must be `requester`.
    /// Completed by [`Verifier::complete`] within [`FLOW_SECONDS`].
    pub async fn begin_step_up(
        &self,
        oidc: &OidcClient,
        tenant: &TenantId,
        requester: &UserId,
        login_hint: Option<&str>,
        redirect_uri: &str,
    ) -> Result<StepUpStart, VerificationError> {
        if oidc.tenant() != tenant {
            return Err(VerificationError::WrongTenant {
                expected: tenant.clone(),
                got: oidc.tenant().clone(),
            });
        }
        self.begin(oidc, Some(requester), login_hint, redirect_uri)
            .await
    }

    /// Starts a plain sign-in at `oidc`'s authority: any user of its tenant,
    /// no MFA requirement. How a channel without its own identity (the web
    /// chat) learns who is typing.
    pub async fn begin_sign_in(
        &self,
        oidc: &OidcClient,
        redirect_uri: &str,
    ) -> Result<StepUpStart, VerificationError> {
        self.begin(oidc, None, None, redirect_uri).await
    }

    async fn begin(
        &self,
        oidc: &OidcClient,
        requester: Option<&UserId>,
        login_hint: Option<&str>,
        redirect_uri: &str,
    ) -> Result<StepUpStart, VerificationError> {
        oidc::check_redirect_uri(redirect_uri)?;
        let key = self.key()?;
        let state = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let derived = Derived::of(key, &state);
        let now = self.now();
        let expires_at = now + FLOW_SECONDS;
        let authorize_url = oidc.authorize_url(&AuthorizeRequest {
            redirect_uri,
            state: &state,
            nonce: &derived.nonce,
            code_challenge: &derived.code_challenge(),
            login_hint,
        })?;
        self.prune(now).await?;
        let kind = if requester.is_some() {
            STEP_UP
        } else {
            SIGN_IN
        };
        self.db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO verification_flows \
                     (state_sha256, kind, tenant, requester, redirect_uri, key_id, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )?
                .execute(rusqlite::params![
                    state_digest(&state),
                    kind,
                    oidc.tenant().as_str(),
                    requester.map(UserId::as_str),
                    redirect_uri,
                    key.id,
                    now,
                    expires_at
                ])
            })
            .await?;
        Ok(StepUpStart {
            authorize_url,
            state,
            expires_at,
        })
    }

    /// Completes the flow `state` belongs to, with the `code` the authority
    /// redirected back with: the state is used up (whatever follows),
    /// the code is redeemed with the flow's PKCE verifier, and the ID token
    /// validated (see the [module docs](super)). A sign-in gives
    /// [`Completed::SignIn`]; a step-up, whose token must also be the
    /// requester's and show MFA, gives [`Completed::StepUp`].
    ///
    /// `oidc` must be the client of the flow's tenant
    /// ([`Verifier::pending_tenant`] says which).
    pub async fn complete(
        &self,
        oidc: &OidcClient,
        state: &str,
        code: &str,
    ) -> Result<Completed, VerificationError> {
        let flow = self.live_flow(state).await?;
        let tenant = parse_tenant(&flow.tenant)?;
        if oidc.tenant() != &tenant {
            return Err(VerificationError::WrongTenant {
                expected: tenant,
                got: oidc.tenant().clone(),
            });
        }
        if code.is_empty() || code.len() > MAX_CODE_BYTES {
            return Err(VerificationError::InvalidInput(
                "the authorization code is empty or too long".to_owned(),
            ));
        }
        let requester = match (flow.kind.as_str(), &flow.requester) {
            (STEP_UP, Some(id)) => Some(id.parse::<UserId>().map_err(|_| corrupt())?),
            (SIGN_IN, None) => None,
            _ => return Err(corrupt()),
        };
        // Used up before anything else happens: of two redirects with the
        // same state, one goes on.
        let now = self.now();
        let taken = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "UPDATE verification_flows SET used_at = $1 \
                     WHERE state_sha256 = $2 AND used_at IS NULL",
                )?
                .execute(rusqlite::params![now, state_digest(state)])
            })
            .await?;
        if taken != 1 {
            return Err(VerificationError::StateUsed);
        }
        let derived = Derived::of(self.key()?, state);
        let http = self.http("token endpoint")?;
        let id_token = oidc
            .redeem(http, code, &flow.redirect_uri, &derived.code_verifier)
            .await?;
        let identity = oidc::validate_id_token(
            &self.jwks,
            http,
            oidc,
            &id_token,
            &Expect {
                nonce: &derived.nonce,
                requester: requester.as_ref(),
                started_at: flow.created_at,
                now: self.now(),
            },
        )
        .await?;
        Ok(match requester {
            Some(requester) => Completed::StepUp(StepUpPassed {
                tenant,
                requester,
                verified_at: self.now(),
            }),
            None => Completed::SignIn {
                tenant,
                user: identity.user,
                display_name: identity.display_name,
            },
        })
    }

    /// The tenant a pending flow belongs to, so that the caller can pick
    /// that tenant's [`OidcClient`]; the state is not used up.
    pub async fn pending_tenant(&self, state: &str) -> Result<TenantId, VerificationError> {
        let flow = self.live_flow(state).await?;
        parse_tenant(&flow.tenant)
    }

    /// The flow of `state` if it can still complete.
    async fn live_flow(&self, state: &str) -> Result<Flow, VerificationError> {
        let key = self.key()?;
        // A state this verifier made is 43 base64url characters; anything
        // else cannot be one, and is not worth a query.
        if state.len() != 43
            || !state
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(VerificationError::UnknownState);
        }
        let flow: Option<Flow> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT kind, tenant, requester, redirect_uri, key_id, created_at, \
                     expires_at, used_at FROM verification_flows WHERE state_sha256 = $1",
                )?
                .query_row([state_digest(state)], |r| {
                    Ok(Flow {
                        kind: r.get(0)?,
                        tenant: r.get(1)?,
                        requester: r.get(2)?,
                        redirect_uri: r.get(3)?,
                        key_id: r.get(4)?,
                        created_at: r.get(5)?,
                        expires_at: r.get(6)?,
                        used_at: r.get(7)?,
                    })
                })
                .optional()
            })
            .await?;
        let Some(flow) = flow else {
            return Err(VerificationError::UnknownState);
        };
        if flow.used_at.is_some() {
            return Err(VerificationError::StateUsed);
        }
        // Made before a restart: its verifier and nonce cannot be derived.
        if self.now() >= flow.expires_at || flow.key_id != key.id {
            return Err(VerificationError::Expired);
        }
        Ok(flow)
    }
}

/// What a state derives under the key.
struct Derived {
    code_verifier: String,
    nonce: String,
}

impl Derived {
    fn of(key: &MacKey, state: &str) -> Derived {
        // 32 bytes in base64url are 43 characters, RFC 7636's minimum.
        Derived {
            code_verifier: URL_SAFE_NO_PAD.encode(key.mac(&[b"pkce verifier", state.as_bytes()])),
            nonce: URL_SAFE_NO_PAD.encode(key.mac(&[b"oidc nonce", state.as_bytes()])),
        }
    }

    /// The S256 challenge: `BASE64URL(SHA256(verifier))`.
    fn code_challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.code_verifier.as_bytes()))
    }
}

fn state_digest(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

fn parse_tenant(text: &str) -> Result<TenantId, VerificationError> {
    text.parse().map_err(|_| corrupt())
}

fn corrupt() -> VerificationError {
    VerificationError::Store("a stored sign-in is not in the expected form".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_s256_of_a_valid_verifier() {
        let key = MacKey::generate().unwrap();
        let d = Derived::of(&key, "state");
        assert_eq!(d.code_verifier.len(), 43);
        assert!(
            d.code_verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(d.code_verifier, d.nonce);
        assert_eq!(
            d.code_challenge(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(d.code_verifier.as_bytes()))
        );
        // RFC 7636, appendix B, with our encoding.
        let rfc = Derived {
            code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned(),
            nonce: String::new(),
        };
        assert_eq!(
            rfc.code_challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        // Another key, another verifier: a restart invalidates pending flows.
        assert_ne!(
            Derived::of(&MacKey::generate().unwrap(), "state").code_verifier,
            d.code_verifier
        );
    }
}
