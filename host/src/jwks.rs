//! Published signing keys (JSON Web Key Sets), fetched over HTTP and cached:
//! the one key cache behind every token Latchkey validates (Entra ID tokens
//! for sign-ins and step-ups, Bot Framework tokens for Teams).
//!
//! A set is kept for [`JWKS_MAX_AGE`]; a `kid` not in it fetches the set
//! again (the issuer may have rolled its keys over), but at most once per
//! [`JWKS_MIN_REFRESH`], so a stream of tokens with made-up key ids cannot
//! become a stream of requests to the issuer. Only RSA signature keys
//! usable with RS256 are kept; others are skipped, not fatal.
//!
//! Bot Framework's keys carry an extra `endorsements` array (the channel ids
//! a key may sign for); it is kept with the key.

use std::collections::HashMap;
use std::sync::Mutex;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use serde_json::Value;

/// A set is fetched again after this long, in seconds: issuers roll their
/// keys over weeks, announcing new ones well before use.
pub const JWKS_MAX_AGE: i64 = 24 * 3600;
/// An unknown `kid` refetches the set at most this often, in seconds.
pub const JWKS_MIN_REFRESH: i64 = 60;
/// The largest key set or metadata document read, in bytes: far above what
/// Entra or Bot Framework publish (a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One published signing key.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// The key.
    pub jwk: Jwk,
    /// Its `endorsements` (Bot Framework: the channel ids it signs for);
    /// empty when it has none.
    pub endorsements: Vec<String>,
}

/// Why a key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The set has no key with this `kid` (even after a refetch, or a
    /// refetch was too recent).
    #[error("no key {0:?} in the issuer's published keys")]
    UnknownKey(String),
    /// The set (or metadata) could not be fetched or read.
    #[error("the issuer's published keys are unavailable: {0}")]
    Unavailable(String),
}

/// Key sets by URL.
#[derive(Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<String, CachedSet>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

struct CachedSet {
    keys: Vec<SigningKey>,
    fetched_at: i64,
}

impl JwksCache {
    /// The key `kid` of the set at `url`: from the cache when fresh, else
    /// fetched (again). `now` is Unix seconds.
    pub async fn key(
        &self,
        http: &reqwest::Client,
        url: &str,
        kid: &str,
        now: i64,
    ) -> Result<SigningKey, JwksError> {
        let unknown = || JwksError::UnknownKey(shorten(kid, 80));
        let fetch = {
            let sets = self.sets.lock().map_err(|_| poisoned())?;
            match sets.get(url) {
                Some(set) if now - set.fetched_at < JWKS_MAX_AGE => {
                    if let Some(key) = find(&set.keys, kid) {
                        return Ok(key);
                    }
                    now - set.fetched_at >= JWKS_MIN_REFRESH
                }
                _ => true,
            }
        };
        if !fetch {
            return Err(unknown());
        }
        let keys = fetch_jwks(http, url).await?;
        let found = find(&keys, kid);
        self.sets.lock().map_err(|_| poisoned())?.insert(
            url.to_owned(),
            CachedSet {
                keys,
                fetched_at: now,
            },
        );
        found.ok_or_else(unknown)
    }
}

fn poisoned() -> JwksError {
    JwksError::Unavailable("the key cache's lock is poisoned".to_owned())
}

fn find(keys: &[SigningKey], kid: &str) -> Option<SigningKey> {
    keys.iter()
        .find(|k| k.jwk.common.key_id.as_deref() == Some(kid))
        .cloned()
}

/// A JSON document of at most [`MAX_DOCUMENT_BYTES`] from `url`.
pub async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, JwksError> {
    let unavailable = |reason: String| JwksError::Unavailable(format!("{url}: {reason}"));
    let body = crate::upstream::waiting(async {
        let response = http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        read_limited(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(unavailable)
    })
    .await?;
    serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))
}

/// The usable keys of the set at `url`: RSA, for signatures, RS256 when an
/// algorithm is named.
async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Vec<SigningKey>, JwksError> {
    let set = fetch_json(http, url).await?;
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        return Err(JwksError::Unavailable(format!("{url}: no \"keys\" array")));
    };
    Ok(keys.iter().filter_map(usable).collect())
}

fn usable(key: &Value) -> Option<SigningKey> {
    let jwk = serde_json::from_value::<Jwk>(key.clone()).ok()?;
    let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
    let signs = jwk
        .common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature);
    let rs256 = jwk
        .common
        .key_algorithm
        .is_none_or(|a| a == KeyAlgorithm::RS256);
    let endorsements = key
        .get("endorsements")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (rsa && signs && rs256).then_some(SigningKey { jwk, endorsements })
}

/// The response body, refused once it passes `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `text` cut to `max` characters, with an ellipsis when cut: for echoing
/// untrusted values in errors and logs.
pub fn shorten(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_rsa_signature_keys_are_kept_with_their_endorsements() {
        let rsa = json!({"kty": "RSA", "kid": "a", "n": "sXch", "e": "AQAB",
            "endorsements": ["msteams", 7, "slack"]});
        let key = usable(&rsa).unwrap();
        assert_eq!(key.endorsements, ["msteams", "slack"]);
        let mut encryption = rsa.clone();
        encryption["use"] = json!("enc");
        assert!(usable(&encryption).is_none());
        let mut rs512 = rsa.clone();
        rs512["alg"] = json!("RS512");
        assert!(usable(&rs512).is_none());
        let ec = json!({"kty": "EC", "kid": "b", "crv": "P-256", "x": "AA", "y": "AA"});
        assert!(usable(&ec).is_none());
        assert!(usable(&json!({"kty": "RSA"})).is_none());
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("hi", 2), "hi");
    }
}
