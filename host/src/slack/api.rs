//! The few Slack Web API methods the Slack channel calls, with the bot
//! token, against a configurable base URL (`https://slack.com/api` in
//! production, a loopback fake in tests).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

/// How long one Web API call may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Web API call failed.
#[derive(Debug, thiserror::Error)]
pub enum SlackApiError {
    /// The call did not complete (connection, timeout, unreadable answer).
    #[error("Slack {method}: {source}")]
    Http {
        /// The Web API method.
        method: &'static str,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// Slack answered `ok: false`.
    #[error("Slack {method} answered error {error:?}")]
    Api {
        /// The Web API method.
        method: &'static str,
        /// Slack's error code (`user_not_found`, `channel_not_found`...).
        error: String,
    },
}

/// A Slack user as `users.info` describes them: the fields identity depends
/// on.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct SlackUser {
    /// `U...`.
    #[serde(default)]
    pub id: String,
    /// The workspace.
    #[serde(default)]
    pub team_id: Option<String>,
    /// A deactivated account.
    #[serde(default)]
    pub deleted: bool,
    /// A bot.
    #[serde(default)]
    pub is_bot: bool,
    /// An app's user.
    #[serde(default)]
    pub is_app_user: bool,
    /// A multi-channel guest.
    #[serde(default)]
    pub is_restricted: bool,
    /// A single-channel guest.
    #[serde(default)]
    pub is_ultra_restricted: bool,
    /// A user of another workspace (Slack Connect).
    #[serde(default)]
    pub is_stranger: bool,
    /// Whether the email was confirmed, when Slack says.
    #[serde(default)]
    pub is_email_confirmed: Option<bool>,
    /// The profile.
    #[serde(default)]
    pub profile: SlackProfile,
}

/// The part of a Slack profile read here.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct SlackProfile {
    /// Present only with the `users:read.email` scope.
    #[serde(default)]
    pub email: Option<String>,
}

/// A Web API client with the bot token.
#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SlackApi {
    /// A client calling `base_url` (like `https://slack.com/api`) with
    /// `bot_token` (`xoxb-...`).
    pub fn new(base_url: &str, bot_token: &str) -> SlackApi {
        let http = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        SlackApi {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: bot_token.to_owned(),
        }
    }

    /// `users.info`: the user `user` (`U...`).
    pub async fn users_info(&self, user: &str) -> Result<SlackUser, SlackApiError> {
        let method = "users.info";
        let answer = self
            .http
            .get(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .query(&[("user", user)])
            .send();
        let answer = crate::upstream::waiting(answer).await;
        let body = read(method, answer).await?;
        serde_json::from_value(body.get("user").cloned().unwrap_or(Value::Null)).map_err(|_| {
            SlackApiError::Api {
                method,
                error: "the answer has no readable user".to_owned(),
            }
        })
    }

    /// `users.lookupByEmail`: the id (`U...`) of the user with `email`.
    pub async fn lookup_by_email(&self, email: &str) -> Result<String, SlackApiError> {
        let method = "users.lookupByEmail";
        let answer = self
            .http
            .get(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .query(&[("email", email)])
            .send();
        let answer = crate::upstream::waiting(answer).await;
        let body = read(method, answer).await?;
        body.pointer("/user/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SlackApiError::Api {
                method,
                error: "the answer has no user id".to_owned(),
            })
    }

    /// `conversations.open` with `user`: the id of the direct message
    /// channel with them (`D...`).
    pub async fn open_dm(&self, user: &str) -> Result<String, SlackApiError> {
        let method = "conversations.open";
        let body = self.call(method, &json!({ "users": user })).await?;
        body.pointer("/channel/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SlackApiError::Api {
                method,
                error: "the answer has no channel id".to_owned(),
            })
    }

    /// `chat.postMessage` to `channel`: `text` (the notification fallback)
    /// and optional Block Kit `blocks`, in the thread `thread_ts` if given.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<Value>,
        thread_ts: Option<&str>,
    ) -> Result<(), SlackApiError> {
        let mut message = json!({ "channel": channel, "text": text });
        if let Some(blocks) = blocks {
            message["blocks"] = blocks;
        }
        if let Some(ts) = thread_ts {
            message["thread_ts"] = json!(ts);
        }
        self.call("chat.postMessage", &message).await.map(|_| ())
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, SlackApiError> {
        let answer = self
            .http
            .post(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send();
        let answer = crate::upstream::waiting(answer).await;
        read(method, answer).await
    }
}

async fn read(
    method: &'static str,
    answer: Result<reqwest::Response, reqwest::Error>,
) -> Result<Value, SlackApiError> {
    let http = |source| SlackApiError::Http { method, source };
    let body: Value = answer
        .and_then(reqwest::Response::error_for_status)
        .map_err(http)?
        .json()
        .await
        .map_err(http)?;
    if body.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(body)
    } else {
        let error = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .chars()
            .take(100)
            .collect();
        Err(SlackApiError::Api { method, error })
    }
}
