//! Identity verification, in code (DESIGN.md, guardrail 2): who the requester
//! is, proven by something a chat message cannot fake.
//!
//! Three methods, each recorded by the caller as a
//! [`Verification`](crate::sdk::Verification)
//! fact once passed (the policy module decides which it needs):
//!
//! * **MFA step-up** ([`Verifier::begin_step_up`], then
//!   [`Verifier::complete`]): the requester signs in to Latchkey's app
//!   registration at the tenant's authority with OIDC authorization code +
//!   PKCE (`prompt=login`). The ID token is accepted only when its signature
//!   is RS256 by a key of the authority's JWKS, its issuer is
//!   `{authority}/{tenant}/v2.0`, its audience is the client id, it is within
//!   `exp`/`nbf` (5 minutes of skew), its nonce is this sign-in's, its `tid`
//!   is the tenant, its `oid` is the requester and its `amr` contains `mfa`.
//! * **Recovery email code** ([`Verifier::send_email_code`],
//!   [`Verifier::check_email_code`]): 8 digits from the operating system's
//!   random number generator, sent through Graph `sendMail` to the address
//!   registered as the requester's email authentication method (never an
//!   address typed in chat); single use, 10 minutes, 5 tries, compared in
//!   constant time, at most 3 codes per requester per hour.
//! * **Manager confirmation** ([`Verifier::ask_manager`],
//!   [`Verifier::answer_manager`]): accepted only from the manager's own
//!   verified identity, once, within 30 minutes.
//!
//! [`Verifier::begin_sign_in`] is the same OIDC flow without a requester and
//! without the MFA requirement: how the web chat learns who is typing.
//!
//! # What is stored
//!
//! Pending verifications live in the service's SQLite database (the audit
//! log's, tables created by its migrations), so that any request of the same
//! process finds them. Nothing secret is stored: a sign-in's `state` is kept
//! as its sha256, its PKCE verifier and nonce are derived from the state
//! with an HMAC-SHA256 key, and a recovery code is kept only as an
//! HMAC-SHA256 under that key. The key is 32 random bytes held in this
//! process's memory, made when the [`Verifier`] is. **A restart therefore
//! invalidates every pending sign-in and code** (they answer
//! [`VerificationError::Expired`]; the user asks again), and replicas that
//! share a database do not share pending sign-ins or codes: route a user's
//! callback and code to the replica that started them. Manager confirmations
//! hold no secret and survive restarts.
//!
//! The verifier does not write the audit log (it cannot: an [`AuditLog`] is
//! not shared by value); the conversation engine records each verification
//! and each refusal.

mod email_code;
mod manager;
mod oidc;
mod step_up;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::audit::{Db, Pruning};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::audit::AuditLog;
use crate::graph::GraphError;
use crate::ids::{RandomError, random_bytes};
use crate::tenant::TenantId;

pub use email_code::{CodePassed, CodeSent, mask_email};
pub use manager::{ManagerAnswer, ManagerAsk};
pub use oidc::{OidcClient, SIGN_IN_SCOPE, TokenProblem};
pub use step_up::{Completed, StepUpPassed, StepUpStart};

/// How long a sign-in or step-up may take, from its start to the redirect
/// back: 10 minutes, as long as the authority keeps its authorization code.
pub const FLOW_SECONDS: i64 = 600;
/// How far the authority's clock and ours may disagree when checking an ID
/// token's `exp`, `nbf` and `auth_time`: 5 minutes, the usual OIDC leeway.
pub const TOKEN_SKEW_SECONDS: i64 = 300;
/// How long a recovery email code is valid: 10 minutes.
pub const CODE_SECONDS: i64 = 600;
/// How many tries a recovery email code allows, the right one included;
/// then it is burnt.
pub const CODE_TRIES: u32 = 5;
/// How many recovery codes one requester may be sent in
/// [`CODE_RATE_WINDOW_SECONDS`]: 3.
pub const CODES_PER_WINDOW: i64 = 3;
/// The rate limit's window: one hour.
pub const CODE_RATE_WINDOW_SECONDS: i64 = 3600;
/// How long a manager has to answer a confirmation request: 30 minutes.
pub const MANAGER_SECONDS: i64 = 1800;
/// How long one call to the authority (token endpoint, JWKS) may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long rows are kept after they stop mattering (for operators reading
/// the database), in seconds: one day.
const KEEP_SECONDS: i64 = 86_400;

/// Why a verification did not pass, or could not be attempted. Each says
/// what to do next; none carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// The `state` of a redirect is not one this verifier issued.
    #[error("this sign-in link is not known here; start again")]
    UnknownState,
    /// The `state` was already used: each sign-in completes once.
    #[error("this sign-in link was already used; start again")]
    StateUsed,
    /// The sign-in, code or confirmation request is past its deadline (or
    /// was made before the service restarted).
    #[error("this verification has expired; start again")]
    Expired,
    /// The [`OidcClient`] given is for another tenant than the sign-in.
    #[error("this sign-in belongs to tenant {expected}, not {got}")]
    WrongTenant {
        /// The sign-in's tenant.
        expected: TenantId,
        /// The client's tenant.
        got: TenantId,
    },
    /// The authority's token endpoint refused the authorization code.
    #[error("the identity provider refused the sign-in: {error}: {description}")]
    CodeRefused {
        /// The OAuth error code (`invalid_grant`...).
        error: String,
        /// The authority's description (`AADSTS54005: ...`), shortened.
        description: String,
    },
    /// The ID token failed a check: the sign-in does not verify anyone.
    #[error("the ID token was refused: {0}")]
    TokenRefused(#[from] TokenProblem),
    /// The authority (token endpoint or JWKS) could not be reached or
    /// answered something unusable.
    #[error("cannot use the identity provider's {endpoint}: {reason}")]
    Authority {
        /// Which endpoint.
        endpoint: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The requester has no email authentication method to send a code to.
    #[error("no recovery email address is registered for this account")]
    NoRecoveryEmail,
    /// Too many codes were sent to this requester lately.
    #[error("too many codes were sent; try again in {retry_after_secs} seconds")]
    RateLimited {
        /// When the next code may be sent, in seconds from now.
        retry_after_secs: i64,
    },
    /// No code is waiting for this requester (none sent, or the last one
    /// was used).
    #[error("there is no code waiting; ask for a new one")]
    NoCode,
    /// The code is wrong; it can be tried again.
    #[error("that code is not right; {tries_left} tries left")]
    Wrong {
        /// Tries left before the code is burnt.
        tries_left: u32,
    },
    /// The code was tried too often and no longer works.
    #[error("too many wrong tries; that code no longer works, ask for a new one")]
    TooManyTries,
    /// No manager confirmation request has this id.
    #[error("no confirmation request {0:?} is known here")]
    UnknownRequest(String),
    /// The confirmation request was already answered.
    #[error("this confirmation request was already answered")]
    AlreadyAnswered,
    /// Someone other than the recorded manager tried to answer: nothing was
    /// recorded.
    #[error("only the requester's manager can answer this confirmation request")]
    NotTheManager,
    /// A Graph call failed (reading the recovery address, sending mail).
    #[error("Graph: {0}")]
    Graph(Box<GraphError>),
    /// An argument cannot be used (a redirect URI, an authority URL...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database could not answer.
    #[error("the verification store is unavailable: {0}")]
    Store(String),
    /// The operating system's random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl From<GraphError> for VerificationError {
    fn from(e: GraphError) -> Self {
        VerificationError::Graph(Box::new(e))
    }
}

impl From<crate::audit::DbError> for VerificationError {
    fn from(e: crate::audit::DbError) -> Self {
        VerificationError::Store(e.to_string())
    }
}

/// The current time in Unix seconds, as the verifier sees it.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The HMAC-SHA256 key of this process: derives PKCE verifiers and nonces
/// from states, and keys recovery codes. Never stored, never shown.
struct MacKey {
    bytes: [u8; 32],
    /// A public fingerprint of the key, stored with each row so that rows
    /// made under an earlier key (before a restart) are recognised.
    id: String,
}

impl MacKey {
    fn generate() -> Result<MacKey, RandomError> {
        let bytes: [u8; 32] = random_bytes()?;
        let mut key = MacKey {
            bytes,
            id: String::new(),
        };
        key.id = hex::encode(&key.mac(&[b"latchkey key id v1"])[..8]);
        Ok(key)
    }

    /// HMAC-SHA256 over `parts`, each prefixed by its length, so that no two
    /// different lists of parts have the same input.
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC takes a key of any length; the error cannot happen.
        let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(&self.bytes) else {
            return [0; 32];
        };
        for part in parts {
            let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Runs identity verifications and keeps the pending ones. One per service,
/// shared behind an `Arc`; every method takes `&self`.
pub struct Verifier {
    db: Db,
    /// Built once; an error here (no TLS backend) is reported by each call
    /// that needs the network.
    http: Result<reqwest::Client, String>,
    /// Made once; an error here (no OS randomness) is reported by each call
    /// that needs it.
    key: Result<MacKey, RandomError>,
    clock: Clock,
    jwks: oidc::JwksCache,
    /// When the pending verifications' tables are next pruned.
    pruning: Pruning,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier keeping its pending verifications in `audit`'s database,
    /// on the system clock, with a fresh in-memory key.
    pub fn new(audit: &AuditLog) -> Verifier {
        Verifier::with_clock(audit, system_now)
    }

    /// A verifier that reads the time from `clock` (Unix seconds), for tests.
    pub fn with_clock(
        audit: &AuditLog,
        clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Verifier {
        let http = reqwest::Client::builder()
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .timeout(HTTP_TIMEOUT)
            // The token endpoint and the JWKS do not redirect; following one
            // would send the client secret somewhere we did not choose.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string());
        Verifier {
            db: audit.db().clone(),
            http,
            key: MacKey::generate(),
            clock: Arc::new(clock),
            jwks: oidc::JwksCache::default(),
            pruning: Pruning::new(),
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Deletes the verifications that ended more than [`KEEP_SECONDS`]
    /// before `now` (flows, manager asks, codes), when a prune is due.
    async fn prune(&self, now: i64) -> Result<(), VerificationError> {
        if !self.pruning.due(now) {
            return Ok(());
        }
        let before = now - KEEP_SECONDS;
        self.db
            .run(|c| {
                for statement in [
                    "DELETE FROM verification_flows WHERE expires_at < $1",
                    "DELETE FROM verification_manager_asks WHERE expires_at < $1",
                    "DELETE FROM verification_codes WHERE created_at < $1 AND expires_at < $1",
                ] {
                    c.prepare_cached(statement)?.execute([before])?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    fn key(&self) -> Result<&MacKey, VerificationError> {
        self.key
            .as_ref()
            .map_err(|e| VerificationError::Random(e.clone()))
    }

    fn http(&self, endpoint: &'static str) -> Result<&reqwest::Client, VerificationError> {
        self.http
            .as_ref()
            .map_err(|reason| VerificationError::Authority {
                endpoint,
                reason: format!("no HTTP client: {reason}"),
            })
    }
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) use crate::jwks::{read_limited, shorten};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_separates_its_parts_and_depends_on_the_key() {
        let key = MacKey::generate().unwrap();
        assert_ne!(key.mac(&[b"ab", b"c"]), key.mac(&[b"a", b"bc"]));
        assert_eq!(key.mac(&[b"ab", b"c"]), key.mac(&[b"ab", b"c"]));
        let other = MacKey::generate().unwrap();
        assert_ne!(key.mac(&[b"x"]), other.mac(&[b"x"]));
        assert_ne!(key.id, other.id);
        assert_eq!(key.id.len(), 16);
    }
}
