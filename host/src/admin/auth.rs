//! The admin bearer token and the check every admin request passes first.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::AdminError;
use crate::graph::Secret;

/// The admin API's bearer token. Only its sha256 is kept: comparing digests
/// in constant time ([`subtle`]) reveals neither the token's bytes nor its
/// length through timing. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    /// Wraps a token already checked by
    /// [`AdminConfig::read_token`](crate::config::AdminConfig::read_token).
    pub(crate) fn new(token: Secret) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Answers 401 unless the request carries `Authorization: Bearer <token>`
/// with the admin token (the scheme's case does not matter, RFC 7235).
pub(super) async fn require_token(
    State(token): State<Arc<AdminToken>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| bearer(value.as_bytes()));
    match presented {
        None => AdminError::MissingToken.into_response(),
        Some(presented) if !token.matches(presented) => AdminError::WrongToken.into_response(),
        Some(_) => next.run(request).await,
    }
}

/// The token of a `Bearer` credential.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches() {
        let token = AdminToken::new(Secret::new("a".repeat(40)));
        assert!(token.matches("a".repeat(40).as_bytes()));
        assert!(!token.matches("a".repeat(39).as_bytes()));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }

    #[test]
    fn bearer_credentials_are_parsed_by_scheme() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
    }
}
