//! The Bot Connector's tokens: every request to `/api/messages` carries
//! `Authorization: Bearer <JWT>` signed by Bot Framework, and nothing in the
//! activity is believed until that token is validated here.
//!
//! The checks, after Microsoft's "Authentication with the Bot Connector API"
//! and its Python SDK (`botframework-connector`, `ChannelValidation`):
//!
//! 1. a `Bearer` token, a well-formed JWT of at most [`MAX_TOKEN_BYTES`],
//!    signed RS256 with a key (by `kid`) of the JWKS named by the OpenID
//!    metadata at the configured URL (both cached, see [`crate::jwks`]);
//! 2. the key's `endorsements` include the activity's `channelId`;
//! 3. `iss` is [`BOT_FRAMEWORK_ISSUER`];
//! 4. `aud` is the bot's app id;
//! 5. `exp` is present and not past, `nbf` (when present) not ahead, each
//!    with [`SKEW_SECONDS`] of skew;
//! 6. the `serviceurl` claim equals the activity's `serviceUrl` (exactly,
//!    as the SDK compares).
//!
//! There is no way to turn validation off. Tests replace the trust anchor
//! (the metadata URL), never the checks. The Bot Framework Emulator's
//! tokens (other issuers, the bot's own credentials) are not accepted.

use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::jwks::{JwksCache, JwksError, fetch_json, shorten};

/// The issuer of every channel-to-bot token.
pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";
/// Bot Framework's OpenID metadata.
pub const DEFAULT_OPENID_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// The clock skew allowed on `exp` and `nbf`, in seconds: 5 minutes, as the
/// SDKs allow.
pub const SKEW_SECONDS: i64 = 300;
/// The longest token examined, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The OpenID metadata is fetched again after this long, in seconds.
const METADATA_MAX_AGE: i64 = 24 * 3600;

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// Not `Bearer <token>`.
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    /// Not a JWT, or claims of the wrong shape.
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    /// Another algorithm than RS256.
    #[error("algorithm {0} is not accepted; RS256 only")]
    Algorithm(String),
    /// No published key has the token's `kid`.
    #[error("no key {0:?} in Bot Framework's published keys")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the signature does not verify with Bot Framework's key")]
    BadSignature,
    /// The key does not sign for the activity's channel.
    #[error("the signing key is not endorsed for channel {0:?}")]
    NotEndorsed(String),
    /// Another issuer.
    #[error("issuer {0:?} is not {BOT_FRAMEWORK_ISSUER}")]
    Issuer(String),
    /// Issued for another bot.
    #[error("audience {0:?} is not this bot's app id")]
    Audience(String),
    /// No `exp`.
    #[error("the token has no expiry")]
    NoExpiry,
    /// Past `exp` beyond the skew.
    #[error("the token expired at {0} (Unix seconds)")]
    Expired(i64),
    /// Before `nbf` beyond the skew.
    #[error("the token is not valid before {0} (Unix seconds)")]
    NotYetValid(i64),
    /// The `serviceurl` claim is missing or differs from the activity's.
    #[error("the token's serviceurl {claim:?} is not the activity's serviceUrl {activity:?}")]
    ServiceUrl {
        /// The claim (empty when missing).
        claim: String,
        /// The activity's `serviceUrl`.
        activity: String,
    },
    /// The metadata or keys could not be fetched: the request is refused
    /// (nothing is believed without them).
    #[error("Bot Framework's keys are unavailable: {0}")]
    Unavailable(String),
}

/// Validates the connector's tokens for one bot.
pub struct TokenValidator {
    http: reqwest::Client,
    metadata_url: String,
    app_id: String,
    jwks_uri: Mutex<Option<(String, i64)>>,
    keys: JwksCache,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("metadata_url", &self.metadata_url)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    aud: Audience,
    exp: Option<i64>,
    nbf: Option<i64>,
    serviceurl: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl TokenValidator {
    /// A validator for the bot `app_id`, trusting the keys named by the
    /// OpenID metadata at `metadata_url` (normally
    /// [`DEFAULT_OPENID_METADATA_URL`]).
    pub fn new(http: reqwest::Client, metadata_url: &str, app_id: &str) -> TokenValidator {
        TokenValidator {
            http,
            metadata_url: metadata_url.to_owned(),
            app_id: app_id.to_owned(),
            jwks_uri: Mutex::new(None),
            keys: JwksCache::default(),
        }
    }

    /// Validates `authorization` (the header's value) for an activity of
    /// `channel_id` with `service_url`, at `now` (Unix seconds).
    pub async fn validate(
        &self,
        authorization: Option<&str>,
        channel_id: &str,
        service_url: &str,
        now: i64,
    ) -> Result<(), TokenError> {
        let header = authorization.ok_or(TokenError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::NotBearer)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("longer than 16 KiB".to_owned()));
        }
        let head =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if head.alg != Algorithm::RS256 {
            return Err(TokenError::Algorithm(format!("{:?}", head.alg)));
        }
        let kid = head
            .kid
            .ok_or_else(|| TokenError::Malformed("the header has no kid".to_owned()))?;
        let jwks_uri = self.jwks_uri(now).await?;
        let key = self
            .keys
            .key(&self.http, &jwks_uri, &kid, now)
            .await
            .map_err(|e| match e {
                JwksError::UnknownKey(kid) => TokenError::UnknownKey(kid),
                JwksError::Unavailable(why) => TokenError::Unavailable(why),
            })?;
        let decoding = DecodingKey::from_jwk(&key.jwk)
            .map_err(|e| TokenError::Unavailable(format!("key {kid:?}: {e}")))?;
        // The signature only; the claims are checked below, on this clock.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })?
            .claims;
        if !key.endorsements.iter().any(|e| e == channel_id) {
            return Err(TokenError::NotEndorsed(shorten(channel_id, 40)));
        }
        self.check(&claims, service_url, now)
    }

    fn check(&self, claims: &Claims, service_url: &str, now: i64) -> Result<(), TokenError> {
        if claims.iss != BOT_FRAMEWORK_ISSUER {
            return Err(TokenError::Issuer(shorten(&claims.iss, 120)));
        }
        let audience_ok = match &claims.aud {
            Audience::One(aud) => *aud == self.app_id,
            Audience::Many(auds) => auds.len() == 1 && auds[0] == self.app_id,
            Audience::None => false,
        };
        if !audience_ok {
            let got = match &claims.aud {
                Audience::One(aud) => aud.clone(),
                Audience::Many(auds) => auds.join(","),
                Audience::None => String::new(),
            };
            return Err(TokenError::Audience(shorten(&got, 120)));
        }
        let exp = claims.exp.ok_or(TokenError::NoExpiry)?;
        if now > exp.saturating_add(SKEW_SECONDS) {
            return Err(TokenError::Expired(exp));
        }
        if let Some(nbf) = claims.nbf
            && now < nbf.saturating_sub(SKEW_SECONDS)
        {
            return Err(TokenError::NotYetValid(nbf));
        }
        match claims.serviceurl.as_deref() {
            Some(claim) if claim == service_url => Ok(()),
            other => Err(TokenError::ServiceUrl {
                claim: shorten(other.unwrap_or_default(), 200),
                activity: shorten(service_url, 200),
            }),
        }
    }

    /// The JWKS URL the metadata names, cached for a day.
    async fn jwks_uri(&self, now: i64) -> Result<String, TokenError> {
        if let Ok(cached) = self.jwks_uri.lock()
            && let Some((uri, at)) = cached.as_ref()
            && now - at < METADATA_MAX_AGE
        {
            return Ok(uri.clone());
        }
        let metadata = fetch_json(&self.http, &self.metadata_url)
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        let uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::Unavailable(format!("{}: no jwks_uri", self.metadata_url)))?
            .to_owned();
        if let Ok(mut cached) = self.jwks_uri.lock() {
            *cached = Some((uri.clone(), now));
        }
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> TokenValidator {
        TokenValidator::new(reqwest::Client::new(), "http://127.0.0.1:9/x", "app-1")
    }

    fn claims(value: Value) -> Claims {
        serde_json::from_value(value).unwrap()
    }

    fn good() -> Value {
        serde_json::json!({"iss": BOT_FRAMEWORK_ISSUER, "aud": "app-1", "exp": 2000,
            "nbf": 1000, "serviceurl": "https://smba.trafficmanager.net/amer/"})
    }

    const URL: &str = "https://smba.trafficmanager.net/amer/";

    #[test]
    fn each_claim_has_its_refusal() {
        let v = validator();
        assert_eq!(v.check(&claims(good()), URL, 1500), Ok(()));
        let with = |k: &str, x: Value| {
            let mut c = good();
            c[k] = x;
            claims(c)
        };
        assert!(matches!(
            v.check(&with("iss", "https://sts.windows.net/x/".into()), URL, 1500),
            Err(TokenError::Issuer(_))
        ));
        assert!(matches!(
            v.check(&with("aud", "app-2".into()), URL, 1500),
            Err(TokenError::Audience(_))
        ));
        assert!(matches!(
            v.check(
                &with("aud", serde_json::json!(["app-1", "app-2"])),
                URL,
                1500
            ),
            Err(TokenError::Audience(_))
        ));
        assert_eq!(
            v.check(&with("exp", Value::Null), URL, 1500),
            Err(TokenError::NoExpiry)
        );
        assert_eq!(v.check(&claims(good()), URL, 2300), Ok(()));
        assert_eq!(
            v.check(&claims(good()), URL, 2301),
            Err(TokenError::Expired(2000))
        );
        assert_eq!(v.check(&claims(good()), URL, 700), Ok(()));
        assert_eq!(
            v.check(&claims(good()), URL, 699),
            Err(TokenError::NotYetValid(1000))
        );
        assert!(matches!(
            v.check(&claims(good()), "https://evil.example/", 1500),
            Err(TokenError::ServiceUrl { .. })
        ));
        assert!(matches!(
            v.check(&with("serviceurl", Value::Null), URL, 1500),
            Err(TokenError::ServiceUrl { .. })
        ));
    }
}
