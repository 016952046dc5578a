//! App-only access tokens from the Entra token endpoint (OAuth 2.0 client
//! credentials), cached until shortly before they expire.
//!
//! One token serves every Graph request of a client. The cache sits behind
//! an async mutex that is held while a token is fetched, so that when it
//! expires under many concurrent requests exactly one of them asks for a new
//! one and the others wait for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::Instrument as _;

use super::error::{GraphError, token_error};
use super::{Failure, Secret, Settings, exchange, host_of, retry};

/// The most a token is refreshed ahead of its expiry: enough to cover clock
/// skew and a slow request, so that a token is never sent in its last minutes.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where tokens come from, and the one currently in use.
pub(crate) struct Tokens {
    url: Url,
    client_id: String,
    secret: Secret,
    scope: String,
    cached: Mutex<Option<Cached>>,
    fetches: AtomicU64,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

impl Tokens {
    pub fn new(url: Url, client_id: String, secret: Secret, scope: String) -> Tokens {
        Tokens {
            url,
            client_id,
            secret,
            scope,
            cached: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// A token to send: the cached one while it is fresh, else a new one.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        settings: &Settings,
    ) -> Result<Secret, GraphError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch(http, settings).await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + refresh_after(lifetime),
        });
        Ok(token)
    }

    /// Forgets `used` after Graph refused it, unless another request has
    /// already replaced it (then the new one is kept, not fetched twice).
    pub async fn invalidate(&self, used: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose() == used.expose())
        {
            *cached = None;
        }
    }

    /// How many tokens have been fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// One token from the endpoint, with its lifetime. Asking again is
    /// harmless (a token is not an action), so throttling, unavailability,
    /// timeouts and transport errors are all retried.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        settings: &Settings,
    ) -> Result<(Secret, Duration), GraphError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let mut retries = 0;
        loop {
            let span = tracing::info_span!(
                "graph_token",
                path = %self.url.path(),
                attempt = retries + 1,
                status = tracing::field::Empty,
            );
            let request = http
                .post(self.url.clone())
                .form(&form)
                .timeout(settings.timeout);
            let outcome = exchange(request).instrument(span.clone()).await;
            let retry_after = match outcome {
                Ok(answer) => {
                    span.record("status", answer.status.as_u16());
                    if answer.status.is_success() {
                        return parse_token(&answer.body);
                    }
                    let transient = answer.status == StatusCode::TOO_MANY_REQUESTS
                        || answer.status.is_server_error();
                    if !transient {
                        return Err(token_error(answer.status, &answer.body).unwrap_or_else(
                            || {
                                GraphError::InvalidResponse(format!(
                                    "the token endpoint answered {} without an OAuth error",
                                    answer.status
                                ))
                            },
                        ));
                    }
                    if retries >= settings.max_retries {
                        return Err(GraphError::Throttled {
                            retries,
                            last_status: answer.status,
                            request_id: None,
                        });
                    }
                    answer
                        .headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                }
                Err(_) if retries < settings.max_retries => None,
                Err(Failure::Timeout) => {
                    return Err(GraphError::Timeout {
                        timeout: settings.timeout,
                        attempts: retries + 1,
                    });
                }
                Err(Failure::TooLarge) => {
                    return Err(GraphError::InvalidResponse(
                        "the token endpoint's answer is too large".to_owned(),
                    ));
                }
                Err(Failure::Transport(e)) => {
                    return Err(GraphError::Transport {
                        host: host_of(&self.url),
                        source: e.without_url(),
                    });
                }
            };
            let wait = retry::wait(
                retry_after.as_deref(),
                retries,
                settings.retry_base_wait,
                settings.max_retry_wait,
            );
            span.in_scope(|| tracing::warn!(?wait, "token request failed; retrying"));
            tokio::time::sleep(wait).await;
            retries += 1;
        }
    }
}

/// `{"token_type": "Bearer", "expires_in": 3599, "access_token": "..."}`.
/// `expires_in` is a number from Entra v2, a string from some older
/// endpoints; both are read.
fn parse_token(body: &[u8]) -> Result<(Secret, Duration), GraphError> {
    let invalid = |what: &str| GraphError::InvalidResponse(format!("token response: {what}"));
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid("not JSON"))?;
    let token = value
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("no access_token"))?;
    let token_type = value.get("token_type").and_then(Value::as_str);
    if !token_type.is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(invalid("token_type is not Bearer"));
    }
    let expires_in = match value.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid("no expires_in"))?;
    Ok((Secret::new(token), Duration::from_secs(expires_in)))
}

/// How long a token of `lifetime` is used: until [`MAX_REFRESH_MARGIN`]
/// before it expires, or a tenth of its lifetime before for tokens too short
/// for that.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub(MAX_REFRESH_MARGIN.min(lifetime / 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_five_minutes_or_a_tenth_early() {
        assert_eq!(
            refresh_after(Duration::from_secs(3599)),
            Duration::from_secs(3299)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(600)),
            Duration::from_secs(540)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn token_responses_are_checked() {
        let (token, lifetime) =
            parse_token(br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ"}"#)
                .unwrap();
        assert_eq!((token.expose(), lifetime.as_secs()), ("eyJ", 3599));
        let (_, lifetime) =
            parse_token(br#"{"token_type":"bearer","expires_in":"60","access_token":"eyJ"}"#)
                .unwrap();
        assert_eq!(lifetime.as_secs(), 60);
        for bad in [
            &br#"{"token_type":"Bearer","expires_in":3599}"#[..],
            br#"{"token_type":"pop","expires_in":3599,"access_token":"eyJ"}"#,
            br#"{"token_type":"Bearer","access_token":"eyJ"}"#,
            br#"{"token_type":"Bearer","expires_in":-1,"access_token":"eyJ"}"#,
            b"eyJ",
        ] {
            let error = parse_token(bad).unwrap_err();
            assert!(
                !error.to_string().contains("eyJ"),
                "the token is not quoted: {error}"
            );
        }
    }
}
