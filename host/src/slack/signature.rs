//! Slack request signatures: `X-Slack-Signature = "v0=" +
//! hex(HMAC-SHA256(signing secret, "v0:{timestamp}:{raw body}"))`, with
//! `X-Slack-Request-Timestamp` within [`MAX_SKEW_SECONDS`] of now, either
//! way.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// How far a request's timestamp may be from now, in seconds: five minutes,
/// as Slack documents.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Why a request's signature was refused. None of these says which byte was
/// wrong, and none carries the signature itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `X-Slack-Request-Timestamp` is missing.
    #[error("the X-Slack-Request-Timestamp header is missing")]
    MissingTimestamp,
    /// `X-Slack-Signature` is missing.
    #[error("the X-Slack-Signature header is missing")]
    MissingSignature,
    /// The timestamp is not a whole number of seconds.
    #[error("the X-Slack-Request-Timestamp header is not a Unix time")]
    BadTimestamp,
    /// The timestamp is more than five minutes from now.
    #[error("the request's timestamp is more than five minutes from now")]
    Stale,
    /// The signature is not `v0=` and 64 hex digits.
    #[error("the X-Slack-Signature header is not a v0 signature")]
    Malformed,
    /// The signature does not match the body.
    #[error("the request's signature does not match")]
    Mismatch,
}

/// Checks Slack signatures with one signing secret.
#[derive(Clone)]
pub struct SignatureVerifier {
    secret: Vec<u8>,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureVerifier").finish_non_exhaustive()
    }
}

impl SignatureVerifier {
    /// A verifier for `signing_secret` (the app's "Signing Secret").
    pub fn new(signing_secret: &str) -> SignatureVerifier {
        SignatureVerifier {
            secret: signing_secret.as_bytes().to_vec(),
        }
    }

    /// The `v0=...` signature of `body` sent at `timestamp` (what Slack
    /// sends, and what tests sign with).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!("v0={}", hex::encode(self.mac(timestamp, body)))
    }

    /// Checks the headers' `timestamp` and `signature` against the raw
    /// `body` at `now` (Unix seconds).
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
        let signature = signature.ok_or(SignatureError::MissingSignature)?;
        let at: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        if now.abs_diff(at) > MAX_SKEW_SECONDS.unsigned_abs() {
            return Err(SignatureError::Stale);
        }
        let given = signature
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        let expected = self.mac(timestamp, body);
        if bool::from(expected.as_slice().ct_eq(&given)) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return Vec::new();
        };
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's documented example ("Verifying requests from Slack").
    #[test]
    fn slacks_documented_example_verifies() {
        let verifier = SignatureVerifier::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let ts = "1531420618";
        assert_eq!(verifier.sign(ts, body), signature);
        assert_eq!(
            verifier.verify(Some(ts), Some(signature), body, 1_531_420_618 + 10),
            Ok(())
        );
        assert_eq!(
            verifier.verify(Some(ts), Some(signature), body, 1_531_420_618 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verifier.verify(Some(ts), Some(signature), body, 1_531_420_618 - 301),
            Err(SignatureError::Stale)
        );
        let mut tampered = body.to_vec();
        tampered[0] = b'T';
        assert_eq!(
            verifier.verify(Some(ts), Some(signature), &tampered, 1_531_420_618),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verifier.verify(Some(ts), Some("v0=zz"), body, 1_531_420_618),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verifier.verify(None, Some(signature), body, 1_531_420_618),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            verifier.verify(Some(ts), None, body, 1_531_420_618),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            verifier.verify(Some("soon"), Some(signature), body, 1_531_420_618),
            Err(SignatureError::BadTimestamp)
        );
    }
}
