//! The OIDC side of verification: the tenant's authority and Latchkey's app
//! registration there ([`OidcClient`]), the token endpoint's authorization
//! code grant, the authority's signing keys (cached), and the one ID-token
//! validator that sign-ins and step-ups share.

use std::net::IpAddr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use super::{TOKEN_SKEW_SECONDS, VerificationError, read_limited, shorten};
use crate::graph::Secret;
use crate::ids::UserId;
pub(super) use crate::jwks::JwksCache;
use crate::jwks::JwksError;
use crate::tenant::TenantId;

/// The scope asked for by default: who the user is, nothing from Graph.
pub const SIGN_IN_SCOPE: &str = "openid profile";
/// The largest JWKS or token response read: far above Entra's (a few KiB).
const MAX_AUTHORITY_BYTES: usize = 256 * 1024;
/// The longest ID token examined, in bytes.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// Latchkey's app registration at one tenant's authority, for sign-ins.
///
/// Endpoints are Entra's v2.0 ones under `{authority}/{tenant}`: `authorize`,
/// `token`, `discovery/v2.0/keys`, and the issuer `{authority}/{tenant}/v2.0`.
#[derive(Clone, Debug)]
pub struct OidcClient {
    /// Without a trailing slash.
    authority: String,
    tenant: TenantId,
    client_id: String,
    client_secret: Option<Secret>,
    scope: String,
}

impl OidcClient {
    /// The app `client_id` at `authority` (e.g.
    /// `https://login.microsoftonline.com`, or the emulator's base URL) for
    /// `tenant`, asking for [`SIGN_IN_SCOPE`]. `client_secret` is the app's
    /// secret for a confidential client (a web app), `None` for a public
    /// client (PKCE alone). The authority must be `https`, or `http` to this
    /// machine only.
    pub fn new(
        authority: &str,
        tenant: TenantId,
        client_id: impl Into<String>,
        client_secret: Option<Secret>,
    ) -> Result<OidcClient, VerificationError> {
        let invalid = |why: String| {
            VerificationError::InvalidInput(format!("authority {authority:?}: {why}"))
        };
        let url = Url::parse(authority).map_err(|e| invalid(e.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
            return Err(invalid("a base URL has no query or fragment".to_owned()));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(invalid(
                    "plain http is allowed only to this machine (127.0.0.1, ::1, localhost)"
                        .to_owned(),
                ));
            }
            other => return Err(invalid(format!("scheme {other} is not http(s)"))),
        }
        let client_id = client_id.into();
        if client_id.trim().is_empty() || client_id.len() > 256 {
            return Err(VerificationError::InvalidInput(
                "the client id is empty or too long".to_owned(),
            ));
        }
        let client_secret = client_secret.filter(|s| !s.is_empty());
        Ok(OidcClient {
            authority: authority.trim_end_matches('/').to_owned(),
            tenant,
            client_id,
            client_secret,
            scope: SIGN_IN_SCOPE.to_owned(),
        })
    }

    /// The same client asking for `scope`, which must include `openid`.
    pub fn with_scope(mut self, scope: &str) -> Result<OidcClient, VerificationError> {
        if !scope.split_whitespace().any(|s| s == "openid") {
            return Err(VerificationError::InvalidInput(format!(
                "scope {scope:?} must include openid"
            )));
        }
        self.scope = scope.to_owned();
        Ok(self)
    }

    /// The tenant whose users sign in.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The application (client) id: the ID token's expected audience.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The authority, without a trailing slash.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The scope asked for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The issuer an ID token must name: `{authority}/{tenant}/v2.0`.
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.authority, self.tenant)
    }

    /// `{authority}/{tenant}/oauth2/v2.0/authorize`.
    pub fn authorize_endpoint(&self) -> String {
        format!("{}/{}/oauth2/v2.0/authorize", self.authority, self.tenant)
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant)
    }

    /// `{authority}/{tenant}/discovery/v2.0/keys`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/{}/discovery/v2.0/keys", self.authority, self.tenant)
    }

    /// The URL to send the user's browser to.
    pub(super) fn authorize_url(
        &self,
        request: &AuthorizeRequest<'_>,
    ) -> Result<String, VerificationError> {
        let mut params = vec![
            ("client_id", self.client_id.as_str()),
            ("response_type", "code"),
            ("response_mode", "query"),
            ("redirect_uri", request.redirect_uri),
            ("scope", self.scope.as_str()),
            ("state", request.state),
            ("nonce", request.nonce),
            ("code_challenge", request.code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if let Some(hint) = request.login_hint {
            // A fresh sign-in, whatever session the browser has: a step-up
            // proves the person is here now.
            params.push(("prompt", "login"));
            params.push(("login_hint", hint));
        }
        Url::parse_with_params(&self.authorize_endpoint(), &params)
            .map(String::from)
            .map_err(|e| VerificationError::InvalidInput(format!("authorize URL: {e}")))
    }

    /// Redeems `code` at the token endpoint and returns the ID token.
    pub(super) async fn redeem(
        &self,
        http: &reqwest::Client,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<String, VerificationError> {
        const ENDPOINT: &str = "token endpoint";
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", self.client_id.as_str()),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
            ("scope", self.scope.as_str()),
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        let unreachable = |reason: String| VerificationError::Authority {
            endpoint: ENDPOINT,
            reason,
        };
        let (status, body) = crate::upstream::waiting(async {
            let response = http
                .post(self.token_endpoint())
                .form(&form)
                .send()
                .await
                .map_err(|e| unreachable(e.without_url().to_string()))?;
            let status = response.status();
            let body = read_limited(response, MAX_AUTHORITY_BYTES)
                .await
                .map_err(unreachable)?;
            Ok::<_, VerificationError>((status, body))
        })
        .await?;
        let json: Value = serde_json::from_slice(&body)
            .map_err(|_| unreachable(format!("HTTP {status} with a body that is not JSON")))?;
        let text = |key: &str| json.get(key).and_then(Value::as_str);
        if !status.is_success() {
            return Err(VerificationError::CodeRefused {
                error: shorten(text("error").unwrap_or("unknown_error"), 80),
                description: shorten(text("error_description").unwrap_or_default(), 300),
            });
        }
        text("id_token")
            .map(str::to_owned)
            .ok_or_else(|| unreachable("the answer has no id_token".to_owned()))
    }
}

/// What goes into an authorization request besides the client's settings.
pub(super) struct AuthorizeRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    /// Set for a step-up: the requester, and `prompt=login`.
    pub login_hint: Option<&'a str>,
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Checks a redirect URI before it is sent anywhere: absolute, `https` or
/// `http` to this machine, no fragment.
pub(super) fn check_redirect_uri(uri: &str) -> Result<(), VerificationError> {
    let invalid = |why: &str| {
        VerificationError::InvalidInput(format!("redirect URI {:?}: {why}", shorten(uri, 100)))
    };
    if uri.len() > 2048 {
        return Err(invalid("longer than 2048 characters"));
    }
    let url = Url::parse(uri).map_err(|_| invalid("not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(invalid("a redirect URI has no fragment"));
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        _ => Err(invalid("use https, or http to this machine only")),
    }
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenProblem {
    /// Not a JWT, or claims of the wrong shape.
    #[error("it is not a well-formed JWT: {0}")]
    Malformed(String),
    /// Signed with another algorithm than RS256 (or not signed).
    #[error("algorithm {0} is not accepted; RS256 only")]
    Algorithm(String),
    /// No key of the authority's JWKS has the token's `kid`.
    #[error("no key {0:?} in the identity provider's published keys")]
    UnknownKey(String),
    /// The signature does not verify with the authority's key.
    #[error("the signature does not verify with the identity provider's key")]
    BadSignature,
    /// Another issuer.
    #[error("issuer {got:?}, expected {expected:?}")]
    Issuer {
        /// `{authority}/{tenant}/v2.0`.
        expected: String,
        /// What the token says.
        got: String,
    },
    /// Issued for another application.
    #[error("audience {got:?}, expected {expected:?}")]
    Audience {
        /// The client id.
        expected: String,
        /// What the token says.
        got: String,
    },
    /// Past `exp` (beyond the skew).
    #[error("it expired at {exp} (Unix seconds)")]
    Expired {
        /// The token's `exp`.
        exp: i64,
    },
    /// Before `nbf` (beyond the skew).
    #[error("it is not valid before {nbf} (Unix seconds)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
    },
    /// The nonce is missing or is not this sign-in's: a token from another
    /// sign-in, replayed.
    #[error("its nonce is not this sign-in's")]
    Nonce,
    /// Another tenant's user.
    #[error("tenant {got:?}, expected {expected}")]
    Tenant {
        /// The sign-in's tenant.
        expected: TenantId,
        /// What the token says.
        got: String,
    },
    /// Someone other than the requester signed in.
    #[error("it is for user {got}, not the requester {expected}")]
    WrongUser {
        /// The requester.
        expected: UserId,
        /// The token's `oid`.
        got: String,
    },
    /// The sign-in did not use a second factor.
    #[error("the sign-in did not use multi-factor authentication (amr {amr:?})")]
    NoMfa {
        /// The token's authentication methods.
        amr: Vec<String>,
    },
    /// The sign-in happened before this step-up started: an old session,
    /// not the person at the keyboard now.
    #[error("the sign-in at {auth_time} (Unix seconds) is older than this request")]
    Stale {
        /// The token's `auth_time`.
        auth_time: i64,
    },
}

/// What an ID token must show, beyond what the client fixes.
pub(super) struct Expect<'a> {
    pub nonce: &'a str,
    /// For a step-up: the requester (`oid`), and `amr` must contain `mfa`.
    pub requester: Option<&'a UserId>,
    /// When the flow started: a step-up's `auth_time`, when present, is not
    /// older (less the skew).
    pub started_at: i64,
    pub now: i64,
}

/// The claims of an accepted ID token that callers use.
#[derive(Debug)]
pub(super) struct Identity {
    pub user: UserId,
    pub display_name: String,
}

/// `aud` is a string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    auth_time: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
}

/// Validates an ID token from `client`'s authority: the one validator for
/// sign-ins and step-ups.
pub(super) async fn validate_id_token(
    cache: &JwksCache,
    http: &reqwest::Client,
    client: &OidcClient,
    token: &str,
    expect: &Expect<'_>,
) -> Result<Identity, VerificationError> {
    if token.len() > MAX_ID_TOKEN_BYTES {
        return Err(TokenProblem::Malformed("longer than 16 KiB".to_owned()).into());
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenProblem::Malformed(e.to_string()))?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenProblem::Algorithm(format!("{:?}", header.alg)).into());
    }
    let kid = header
        .kid
        .ok_or_else(|| TokenProblem::Malformed("the header has no kid".to_owned()))?;
    let jwk = cache
        .key(http, &client.jwks_uri(), &kid, expect.now)
        .await
        .map_err(|e| match e {
            JwksError::UnknownKey(kid) => VerificationError::from(TokenProblem::UnknownKey(kid)),
            JwksError::Unavailable(reason) => VerificationError::Authority {
                endpoint: "signing keys (JWKS)",
                reason,
            },
        })?
        .jwk;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| VerificationError::Authority {
        endpoint: "signing keys (JWKS)",
        reason: format!("key {kid:?}: {e}"),
    })?;
    // The signature and the algorithm only; every claim is checked below,
    // on this verifier's clock and with errors that say which claim failed.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenProblem::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                TokenProblem::Algorithm(format!("{:?}", header.alg))
            }
            _ => TokenProblem::Malformed(e.to_string()),
        })?
        .claims;
    check_claims(client, &claims, expect)?;
    let oid = claims.oid.as_deref().unwrap_or_default();
    let user = oid.parse::<UserId>().map_err(|_| {
        TokenProblem::Malformed(format!("oid {:?} is not a GUID", shorten(oid, 80)))
    })?;
    let display_name = claims
        .name
        .or(claims.preferred_username)
        .map(|n| shorten(n.trim(), 256))
        .unwrap_or_default();
    Ok(Identity { user, display_name })
}

fn check_claims(
    client: &OidcClient,
    claims: &Claims,
    expect: &Expect<'_>,
) -> Result<(), TokenProblem> {
    let issuer = client.issuer();
    if claims.iss != issuer {
        return Err(TokenProblem::Issuer {
            expected: issuer,
            got: shorten(&claims.iss, 200),
        });
    }
    // OIDC Core 3.1.3.7: the client must be an audience; with several,
    // the authorized party must be the client.
    let audience_ok = match &claims.aud {
        Audience::One(aud) => *aud == client.client_id,
        Audience::Many(auds) => {
            auds.contains(&client.client_id)
                && (auds.len() == 1 || claims.azp.as_deref() == Some(client.client_id.as_str()))
        }
    };
    if !audience_ok {
        let got = match &claims.aud {
            Audience::One(aud) => aud.clone(),
            Audience::Many(auds) => auds.join(" "),
        };
        return Err(TokenProblem::Audience {
            expected: client.client_id.clone(),
            got: shorten(&got, 200),
        });
    }
    if expect.now > claims.exp.saturating_add(TOKEN_SKEW_SECONDS) {
        return Err(TokenProblem::Expired { exp: claims.exp });
    }
    if let Some(nbf) = claims.nbf
        && expect.now.saturating_add(TOKEN_SKEW_SECONDS) < nbf
    {
        return Err(TokenProblem::NotYetValid { nbf });
    }
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(expect.nonce.as_bytes())));
    if !nonce_ok {
        return Err(TokenProblem::Nonce);
    }
    let tid = claims.tid.as_deref().unwrap_or_default();
    if !tid.eq_ignore_ascii_case(client.tenant.as_str()) {
        return Err(TokenProblem::Tenant {
            expected: client.tenant.clone(),
            got: shorten(tid, 80),
        });
    }
    if let Some(requester) = expect.requester {
        let oid = claims.oid.as_deref().unwrap_or_default();
        if !oid.eq_ignore_ascii_case(requester.as_str()) {
            return Err(TokenProblem::WrongUser {
                expected: requester.clone(),
                got: shorten(oid, 80),
            });
        }
        if !claims.amr.iter().any(|m| m == "mfa") {
            return Err(TokenProblem::NoMfa {
                amr: claims.amr.iter().take(10).map(|m| shorten(m, 40)).collect(),
            });
        }
        if let Some(auth_time) = claims.auth_time
            && auth_time.saturating_add(TOKEN_SKEW_SECONDS) < expect.started_at
        {
            return Err(TokenProblem::Stale { auth_time });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OidcClient {
        OidcClient::new(
            "https://login.example/",
            "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap(),
            "app",
            None,
        )
        .unwrap()
    }

    fn claims(value: serde_json::Value) -> Claims {
        serde_json::from_value(value).unwrap()
    }

    const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";

    fn good() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://login.example/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
            "aud": "app", "exp": 2_000, "nbf": 1_000, "nonce": "n1",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "oid": ADELE,
            "amr": ["pwd", "mfa"], "auth_time": 1_000,
        })
    }

    fn expect<'a>(requester: Option<&'a UserId>) -> Expect<'a> {
        Expect {
            nonce: "n1",
            requester,
            started_at: 1_000,
            now: 1_500,
        }
    }

    #[test]
    fn endpoints_follow_entra_v2_and_authorities_must_be_safe() {
        let c = client();
        assert_eq!(
            c.issuer(),
            "https://login.example/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
        );
        assert!(c.jwks_uri().ends_with("/discovery/v2.0/keys"));
        let tenant: TenantId = "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap();
        for bad in [
            "http://login.example",
            "ftp://x",
            "not a url",
            "https://x/?a=b",
        ] {
            assert!(
                OidcClient::new(bad, tenant.clone(), "app", None).is_err(),
                "{bad}"
            );
        }
        assert!(OidcClient::new("http://127.0.0.1:7710", tenant.clone(), "app", None).is_ok());
        assert!(OidcClient::new("https://x", tenant, " ", None).is_err());
        assert!(client().with_scope("profile").is_err());
    }

    #[test]
    fn redirect_uris_are_https_or_loopback() {
        assert!(check_redirect_uri("http://127.0.0.1:7700/callback").is_ok());
        assert!(check_redirect_uri("https://chat.example/callback").is_ok());
        for bad in [
            "http://chat.example/callback",
            "/callback",
            "https://chat.example/cb#x",
            "javascript:alert(1)",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_claim_is_checked_with_its_own_refusal() {
        let c = client();
        let adele: UserId = ADELE.parse().unwrap();
        assert_eq!(
            check_claims(&c, &claims(good()), &expect(Some(&adele))),
            Ok(())
        );
        let refused = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good();
            change(&mut v);
            check_claims(&c, &claims(v), &expect(Some(&adele))).unwrap_err()
        };
        assert!(matches!(
            refused(&|v| v["iss"] = "https://evil/v2.0".into()),
            TokenProblem::Issuer { .. }
        ));
        assert!(matches!(
            refused(&|v| v["aud"] = "other".into()),
            TokenProblem::Audience { .. }
        ));
        assert!(matches!(
            refused(&|v| v["aud"] = serde_json::json!(["app", "other"])),
            TokenProblem::Audience { .. }
        ));
        assert!(matches!(
            refused(&|v| v["exp"] = 1_199.into()),
            TokenProblem::Expired { .. }
        ));
        assert!(matches!(
            refused(&|v| v["nbf"] = 1_801.into()),
            TokenProblem::NotYetValid { .. }
        ));
        assert_eq!(refused(&|v| v["nonce"] = "n2".into()), TokenProblem::Nonce);
        assert_eq!(
            refused(&|v| {
                v.as_object_mut().unwrap().remove("nonce");
            }),
            TokenProblem::Nonce
        );
        assert!(matches!(
            refused(&|v| v["tid"] = "x".into()),
            TokenProblem::Tenant { .. }
        ));
        assert!(matches!(
            refused(&|v| v["oid"] = "8f080165-38fe-44c1-b3b8-6f4dafad5194".into()),
            TokenProblem::WrongUser { .. }
        ));
        assert!(matches!(
            refused(&|v| v["amr"] = serde_json::json!(["pwd"])),
            TokenProblem::NoMfa { .. }
        ));
        assert!(matches!(
            refused(&|v| v["auth_time"] = 600.into()),
            TokenProblem::Stale { .. }
        ));
        // Within the skew: accepted.
        let mut late = good();
        late["exp"] = 1_200.into();
        assert_eq!(
            check_claims(&c, &claims(late), &expect(Some(&adele))),
            Ok(())
        );
        // Several audiences with the client as authorized party: accepted.
        let mut many = good();
        many["aud"] = serde_json::json!(["app", "other"]);
        many["azp"] = "app".into();
        assert_eq!(
            check_claims(&c, &claims(many), &expect(Some(&adele))),
            Ok(())
        );
        // A plain sign-in asks neither for a user nor for MFA.
        let mut plain = good();
        plain["amr"] = serde_json::json!(["pwd"]);
        plain["oid"] = "8f080165-38fe-44c1-b3b8-6f4dafad5194".into();
        assert_eq!(check_claims(&c, &claims(plain), &expect(None)), Ok(()));
    }
}
