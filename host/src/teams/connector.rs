//! The bot's side of the Bot Connector REST API: replies, card updates and
//! new (proactive) conversations at an activity's `serviceUrl`, with a
//! client-credentials token for `https://api.botframework.com/.default`.
//!
//! The token goes only to an allowed host ([`Connector::check`]): `https`
//! to a host of the configured list (or a subdomain of one), or plain
//! `http` to this machine when the list names it (tests). A `serviceUrl`
//! elsewhere is refused before anything is sent. Redirects are not followed.

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::graph::{ClientCredentials, GraphError, Secret, encode_path_segment};
use crate::jwks::{read_limited, shorten};

/// The scope of the bot's token.
pub const BOT_FRAMEWORK_SCOPE: &str = "https://api.botframework.com/.default";
/// The largest connector answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a call to the connector failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The `serviceUrl` names a host the bot does not send its token to.
    #[error("serviceUrl {0:?} is not an allowed connector host")]
    NotAllowed(String),
    /// No token for the bot.
    #[error("the bot's token: {0}")]
    Token(#[from] GraphError),
    /// The connector could not be reached or its answer read.
    #[error("the connector: {0}")]
    Transport(String),
    /// The connector refused.
    #[error("the connector answered HTTP {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of its body.
        body: String,
    },
}

/// Calls the Bot Connector as the bot.
pub struct Connector {
    http: reqwest::Client,
    credentials: ClientCredentials,
    hosts: Vec<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Connector {
    /// The bot `app_id` with `secret`, its token from `authority` for
    /// `app_tenant`, sending only to `hosts`.
    pub fn new(
        authority: &str,
        app_tenant: &str,
        app_id: &str,
        secret: Secret,
        hosts: &[String],
    ) -> Result<Connector, ConnectorError> {
        let credentials =
            ClientCredentials::new(authority, app_tenant, app_id, secret, BOT_FRAMEWORK_SCOPE)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(credentials.timeout())
            .build()
            .map_err(|e| ConnectorError::Transport(e.to_string()))?;
        Ok(Connector {
            http,
            credentials,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        })
    }

    /// `service_url`, when the bot may send its token there.
    pub fn check(&self, service_url: &str) -> Result<Url, ConnectorError> {
        let refused = || ConnectorError::NotAllowed(shorten(service_url, 200));
        let url = Url::parse(service_url).map_err(|_| refused())?;
        let host = url.host_str().ok_or_else(refused)?.to_ascii_lowercase();
        let listed = self
            .hosts
            .iter()
            .any(|h| host == *h || host.ends_with(&format!(".{h}")));
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => is_loopback(&host),
            _ => false,
        };
        if listed && scheme_ok && url.username().is_empty() && url.password().is_none() {
            Ok(url)
        } else {
            Err(refused())
        }
    }

    fn url(&self, service_url: &str, path: &str) -> Result<String, ConnectorError> {
        let base = self.check(service_url)?;
        Ok(format!("{}/{path}", base.as_str().trim_end_matches('/')))
    }

    /// Posts `activity` to the conversation; the new activity's id, when
    /// the connector gives one.
    pub async fn send(
        &self,
        service_url: &str,
        conversation: &str,
        activity: &Value,
    ) -> Result<Option<String>, ConnectorError> {
        let url = self.url(
            service_url,
            &format!(
                "v3/conversations/{}/activities",
                encode_path_segment(conversation)
            ),
        )?;
        let answer = self.call(Method::POST, &url, activity).await?;
        Ok(answer.get("id").and_then(Value::as_str).map(str::to_owned))
    }

    /// Replaces activity `activity_id` (a card, after a decision).
    pub async fn update(
        &self,
        service_url: &str,
        conversation: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<(), ConnectorError> {
        let url = self.url(
            service_url,
            &format!(
                "v3/conversations/{}/activities/{}",
                encode_path_segment(conversation),
                encode_path_segment(activity_id)
            ),
        )?;
        self.call(Method::PUT, &url, activity).await.map(|_| ())
    }

    /// Creates a conversation (`POST /v3/conversations`); its id.
    pub async fn create_conversation(
        &self,
        service_url: &str,
        parameters: &Value,
    ) -> Result<String, ConnectorError> {
        let url = self.url(service_url, "v3/conversations")?;
        let answer = self.call(Method::POST, &url, parameters).await?;
        answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ConnectorError::Transport("the new conversation has no id".to_owned()))
    }

    /// One call with the bot's token; a 401 drops the token and tries once
    /// more with a fresh one.
    async fn call(&self, method: Method, url: &str, body: &Value) -> Result<Value, ConnectorError> {
        let mut refreshed = false;
        loop {
            let token = self.credentials.get(&self.http).await?;
            let sent = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .json(body)
                .send();
            let response = crate::upstream::waiting(sent)
                .await
                .map_err(|e| ConnectorError::Transport(e.without_url().to_string()))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                self.credentials.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            let bytes = read_limited(response, MAX_ANSWER_BYTES)
                .await
                .map_err(ConnectorError::Transport)?;
            if !status.is_success() {
                return Err(ConnectorError::Status {
                    status: status.as_u16(),
                    body: shorten(&String::from_utf8_lossy(&bytes), 300),
                });
            }
            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(hosts: &[&str]) -> Connector {
        Connector::new(
            "https://login.microsoftonline.com",
            "botframework.com",
            "app",
            Secret::new("s"),
            &hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn the_token_goes_only_to_listed_hosts_over_https_or_to_loopback() {
        let c = connector(&["smba.trafficmanager.net", "botframework.com", "127.0.0.1"]);
        assert!(c.check("https://smba.trafficmanager.net/amer/").is_ok());
        assert!(c.check("https://europe.botframework.com/").is_ok());
        assert!(c.check("http://127.0.0.1:56150/_connector").is_ok());
        for bad in [
            "http://smba.trafficmanager.net/amer/",
            "https://smba.trafficmanager.net.evil.example/",
            "https://evilbotframework.com/",
            "https://attacker.example/",
            "https://user:pw@smba.trafficmanager.net/",
            "ftp://smba.trafficmanager.net/",
            "not a url",
            "",
        ] {
            assert!(c.check(bad).is_err(), "{bad}");
        }
        assert!(
            connector(&["smba.trafficmanager.net"])
                .check("http://127.0.0.1:56150/_connector")
                .is_err(),
            "loopback only when listed"
        );
    }
}
