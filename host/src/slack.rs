//! The Slack channel: Slack's Events API and interactivity in front of the
//! conversation [`Engine`], and Slack's Web API for the answers.
//!
//! | route | what it does |
//! |---|---|
//! | `POST /slack/events` | `url_verification`: echoes the challenge. `event_callback`: a `message` in a direct message (`channel_type == "im"`) is said to the engine; an `app_mention`, or a message in a channel, gets "I'll continue in a direct message" there and the conversation goes on in a direct message. Messages from bots, edits and other subtypes are ignored |
//! | `POST /slack/interactivity` | a `block_actions` form post (`payload=<json>`): an approval card's Approve or Refuse button ([`Engine::answer`]) |
//!
//! # Trust
//!
//! Every request is verified before anything else reads it: the raw body
//! (at most [`MAX_BODY_BYTES`]) against `X-Slack-Signature` with the signing
//! secret, in constant time, with `X-Slack-Request-Timestamp` within five
//! minutes of now either way ([`signature`]). Anything else is a 401 and
//! nothing is done.
//!
//! The person is the signed request's Slack user id, looked up with
//! `users.info` (bot token); bots and apps, deactivated accounts, guests,
//! people of other workspaces, and profiles without a confirmed email are
//! refused. The email must match exactly one Entra user of the configured
//! tenant by `mail` or `userPrincipalName` (Graph); none or several are
//! refused with a reply, and nothing is done. A mapping is kept for
//! [`IDENTITY_TTL`]. The email is only as trustworthy as the workspace's
//! sign-in: use Entra SSO for Slack and stop people changing their email;
//! the tenant's policy still decides which verification (MFA step-up,
//! manager) a Slack request needs.
//!
//! Nothing secret is ever posted to a channel: everything after the first
//! reply goes to the person's direct message channel (the `im` the message
//! came from, or `conversations.open`), and a secret
//! ([`EventKind::Secret`]) is posted only to a channel id Slack gave as a
//! direct message (`D...`).
//!
//! # Timing and retries
//!
//! Slack wants an answer within three seconds: every event is acknowledged
//! at once and handled in a spawned task. Slack retries an event it thinks
//! failed (`X-Slack-Retry-Num`); an `event_id` already seen is acknowledged
//! and not handled again. The set of seen ids is in memory, bounded to
//! [`SEEN_CAPACITY`] ids for [`SEEN_TTL`] each: enough for one process
//! (Slack's last retry comes about five minutes after the first try); several
//! replicas behind one URL would need a shared store.
//!
//! Events that happen later (after an MFA step-up completes in the browser,
//! or an approval answered by someone else) are posted to the person's
//! direct message as the engine announces them ([`crate::outbox`]). An
//! approval request for someone Latchkey is not talking to on Slack (a
//! manager) is sent to them unasked: their Entra `mail` (else UPN) is looked
//! up with `users.lookupByEmail`, and the Slack user found must map back to
//! the same Entra user by the rules above before a direct message is opened.
//!
//! The MFA step-up link comes back to the tenant's `sign_in` redirect URI,
//! the web chat's `/callback`: `latchkey serve` shares one engine between
//! `[web]` and `[slack]` when they serve the same tenant.

pub mod api;
pub mod identity;
pub mod signature;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::{ConfigError, SlackConfig};
use crate::conversation::{Engine, Event, EventKind, Speaker};
use crate::ids::UserId;
use crate::outbox::{
    NOT_HERE, Outbox, STEP_UP_BUTTON, STEP_UP_TEXT, Said, Transport, reveal, said,
};
use crate::service::Service;
use crate::tenant::TenantId;

pub use api::{SlackApi, SlackApiError, SlackUser};
pub use identity::IdentityError;
pub use signature::{SignatureError, SignatureVerifier};

/// The largest request body accepted, in bytes. Slack's events and
/// interactivity payloads are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a Slack user's mapping to an Entra user is kept.
pub const IDENTITY_TTL: Duration = Duration::from_secs(300);
/// How long an `event_id` is remembered.
pub const SEEN_TTL: Duration = Duration::from_secs(3600);
/// How many `event_id`s are remembered at most; the oldest go first.
pub const SEEN_CAPACITY: usize = 10_000;
/// What a message in a channel gets, in the channel.
pub const MOVED_TO_DM: &str = "I'll continue in a direct message.";

/// The Slack channel's settings, secrets already read.
#[derive(Clone)]
pub struct SlackSettings {
    /// The app's signing secret.
    pub signing_secret: String,
    /// The bot token (`xoxb-...`).
    pub bot_token: String,
    /// The Web API's base URL, like `https://slack.com/api`.
    pub api_base_url: String,
    /// The Entra tenant this Slack workspace's people belong to.
    pub tenant: TenantId,
}

impl SlackSettings {
    /// The settings of `[slack]`, its secrets read.
    pub fn from_config(config: &SlackConfig) -> Result<SlackSettings, ConfigError> {
        let (signing_secret, bot_token) = config.read_secrets()?;
        Ok(SlackSettings {
            signing_secret: signing_secret.expose().to_owned(),
            bot_token: bot_token.expose().to_owned(),
            api_base_url: config.api_base_url.clone(),
            tenant: config.tenant.clone(),
        })
    }
}

impl std::fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSettings")
            .field("api_base_url", &self.api_base_url)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The Slack channel. Share it as `Arc<Slack>`.
pub struct Slack {
    outbox: Arc<Outbox<SlackSender>>,
    service: Arc<Service>,
    tenant: TenantId,
    verifier: SignatureVerifier,
    api: SlackApi,
    seen: StdMutex<HashMap<String, Instant>>,
    identities: StdMutex<HashMap<String, (Instant, Speaker)>>,
}

/// Posts engine events to Slack direct messages (addresses are DM channel
/// ids).
struct SlackSender {
    api: SlackApi,
    service: Arc<Service>,
    tenant: TenantId,
}

impl std::fmt::Debug for SlackSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSender")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("tenant", &self.tenant)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Slack {
    /// The Slack channel over `engine` (and `service`, for the tenant's
    /// Graph client), with `settings`.
    ///
    /// `latchkey serve` gives every channel the same engine, so that MFA
    /// step-ups coming back to the web chat's `/callback` continue Slack
    /// conversations.
    pub fn new(engine: Arc<Engine>, service: Arc<Service>, settings: SlackSettings) -> Slack {
        let api = SlackApi::new(&settings.api_base_url, &settings.bot_token);
        Slack {
            outbox: Arc::new(Outbox::new(
                engine,
                SlackSender {
                    api: api.clone(),
                    service: Arc::clone(&service),
                    tenant: settings.tenant.clone(),
                },
            )),
            service,
            verifier: SignatureVerifier::new(&settings.signing_secret),
            api,
            tenant: settings.tenant,
            seen: StdMutex::new(HashMap::new()),
            identities: StdMutex::new(HashMap::new()),
        }
    }

    /// The tenant it serves.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Serves [`app`] on `listener` until `shutdown` completes, posting
    /// later events meanwhile ([`Outbox::run`]).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let poster = tokio::spawn(Arc::clone(&self.outbox).run());
        let served = axum::serve(listener, app(self))
            .with_graceful_shutdown(shutdown)
            .await;
        poster.abort();
        served
    }

    /// Posts later events ([`Outbox::run`]), forever (abort the task to
    /// stop it): for tests that serve [`app`] on their own listener.
    pub async fn poll(self: Arc<Self>) {
        Arc::clone(&self.outbox).run().await;
    }

    /// Records `event_id`; false when it was already seen (a retry).
    fn first_time(&self, event_id: &str) -> bool {
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        seen.retain(|_, at| now.duration_since(*at) < SEEN_TTL);
        if seen.contains_key(event_id) {
            return false;
        }
        if seen.len() >= SEEN_CAPACITY
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(event_id.to_owned(), now);
        true
    }

    /// The Slack user as a speaker, from the cache or looked up.
    async fn identify(&self, slack_user: &str) -> Result<Speaker, IdentityError> {
        if let Ok(cache) = self.identities.lock()
            && let Some((at, speaker)) = cache.get(slack_user)
            && at.elapsed() < IDENTITY_TTL
        {
            return Ok(speaker.clone());
        }
        let speaker = identity::resolve(
            &self.api,
            self.service.graph(&self.tenant),
            &self.tenant,
            slack_user,
        )
        .await?;
        if let Ok(mut cache) = self.identities.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < IDENTITY_TTL);
            cache.insert(slack_user.to_owned(), (Instant::now(), speaker.clone()));
        }
        Ok(speaker)
    }

    /// Registers the person with their direct message channel: `dm` when
    /// the request came from it, else the one known, else
    /// `conversations.open`.
    async fn join(
        &self,
        slack_user: &str,
        speaker: &Speaker,
        dm: Option<&str>,
    ) -> Result<String, String> {
        let dm = match dm {
            Some(dm) => dm.to_owned(),
            None => match self.outbox.address(&speaker.tenant, &speaker.user).await {
                Some(known) => known,
                None => self
                    .api
                    .open_dm(slack_user)
                    .await
                    .map_err(|e| e.to_string())?,
            },
        };
        self.outbox
            .join(speaker, dm.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(dm)
    }

    /// A message from `slack_user` in `channel`.
    async fn on_message(self: Arc<Self>, message: Message) {
        let speaker = match self.identify(&message.user).await {
            Ok(speaker) => speaker,
            Err(e) => {
                tracing::info!("slack: {} refused: {e:?}", message.user);
                let thread = (!message.direct).then_some(message.ts.as_str());
                if let Err(e) = self
                    .api
                    .post_message(&message.channel, &e.to_string(), None, thread)
                    .await
                {
                    tracing::warn!("slack: posting a refusal failed: {e}");
                }
                return;
            }
        };
        if !message.direct
            && let Err(e) = self
                .api
                .post_message(&message.channel, MOVED_TO_DM, None, Some(&message.ts))
                .await
        {
            tracing::warn!("slack: answering in {} failed: {e}", message.channel);
        }
        let dm = message.direct.then_some(message.channel.as_str());
        let dm = match self.join(&message.user, &speaker, dm).await {
            Ok(dm) => dm,
            Err(e) => {
                tracing::warn!("slack: no direct message with {}: {e}", message.user);
                return;
            }
        };
        if let Err(e) = self.outbox.engine().post(&speaker, &message.text).await {
            tracing::warn!("slack: the conversation failed: {e}");
            self.tell(
                &dm,
                "Something went wrong on my side; please try again in a minute.",
            )
            .await;
        }
        self.outbox.deliver(&speaker.tenant, &speaker.user).await;
    }

    /// A button press.
    async fn on_action(self: Arc<Self>, action: Action) {
        let speaker = match self.identify(&action.user).await {
            Ok(speaker) => speaker,
            Err(e) => {
                tracing::info!("slack: button press by {} refused: {e:?}", action.user);
                if let Ok(dm) = self.api.open_dm(&action.user).await
                    && let Err(e) = self.api.post_message(&dm, &e.to_string(), None, None).await
                {
                    tracing::warn!("slack: posting a refusal failed: {e}");
                }
                return;
            }
        };
        let dm = match self.join(&action.user, &speaker, None).await {
            Ok(dm) => dm,
            Err(e) => {
                tracing::warn!("slack: no direct message with {}: {e}", action.user);
                return;
            }
        };
        if let Err(e) = self
            .outbox
            .engine()
            .answer(&speaker, &action.request_id, action.approve)
            .await
        {
            self.tell(&dm, &e.to_string()).await;
        }
        self.outbox.deliver_all().await;
    }

    /// Posts `text` to the direct message `dm`.
    async fn tell(&self, dm: &str, text: &str) {
        if let Err(e) = self.api.post_message(dm, &escape(text), None, None).await {
            tracing::warn!("slack: posting to {dm} failed: {e}");
        }
    }
}

impl SlackSender {
    /// An event as a Slack message (text and Block Kit blocks); `None` for
    /// what is not shown (the person's own messages).
    fn render(
        engine: &Engine,
        speaker: &Speaker,
        channel: &str,
        kind: &EventKind,
    ) -> Option<(String, Option<Value>)> {
        Some(match said(kind) {
            Said::Nothing => return None,
            Said::Text(text) => (escape(&text), None),
            Said::StepUp { url } => {
                let blocks = json!([
                    { "type": "section", "text": { "type": "mrkdwn", "text": STEP_UP_TEXT } },
                    { "type": "actions", "elements": [{
                        "type": "button", "action_id": "step-up",
                        "text": { "type": "plain_text", "text": STEP_UP_BUTTON },
                        "url": url, "style": "primary"
                    }]}
                ]);
                (STEP_UP_TEXT.to_owned(), Some(blocks))
            }
            // Only a direct message channel (Slack gives them `D` ids).
            Said::Secret { .. } if !channel.starts_with('D') => {
                tracing::warn!("slack: a secret was not posted: {channel} is not a DM");
                (NOT_HERE.to_owned(), None)
            }
            // The secret itself is not escaped: Slack shows it as sent.
            Said::Secret { label, secret_id } => {
                let label = escape(label);
                let shown = reveal(engine, speaker, &label, secret_id, |secret| {
                    format!("{label}: `{secret}`")
                });
                (shown, None)
            }
            Said::Approval { text, request_id } => {
                let text = escape(&text);
                let blocks = json!([
                    { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                    { "type": "actions", "elements": [
                        { "type": "button", "action_id": "approve", "value": request_id,
                          "style": "primary", "text": { "type": "plain_text", "text": "Approve" } },
                        { "type": "button", "action_id": "deny", "value": request_id,
                          "style": "danger", "text": { "type": "plain_text", "text": "Refuse" } }
                    ]}
                ]);
                (text, Some(blocks))
            }
        })
    }
}

impl Transport for SlackSender {
    type Address = String;
    const NAME: &'static str = "slack";

    async fn send(
        &self,
        engine: &Engine,
        speaker: &Speaker,
        to: &String,
        event: &Event,
    ) -> Result<(), String> {
        match SlackSender::render(engine, speaker, to, &event.kind) {
            Some((text, blocks)) => self
                .api
                .post_message(to, &text, blocks, None)
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Approval requests only, in the workspace's tenant: the approver's
    /// Slack account found by their Entra email, mapped back to them.
    async fn reach(
        &self,
        tenant: &TenantId,
        user: &UserId,
        event: &Event,
    ) -> Option<(Speaker, String)> {
        if *tenant != self.tenant || !matches!(event.kind, EventKind::ApprovalRequest { .. }) {
            return None;
        }
        let graph = self.service.graph(tenant)?;
        let path = format!(
            "{}?$select=mail,userPrincipalName",
            crate::graph::GraphClient::user_path(user.as_str())
        );
        let entra = match graph.get(&path).await {
            Ok(answer) => answer.body,
            Err(e) => {
                tracing::warn!("slack: reading {user} to reach them failed: {e}");
                return None;
            }
        };
        let mut emails: Vec<&str> = ["/mail", "/userPrincipalName"]
            .iter()
            .filter_map(|p| entra.pointer(p).and_then(Value::as_str))
            .filter(|e| !e.is_empty())
            .collect();
        emails.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        for email in emails {
            let Ok(slack_user) = self.api.lookup_by_email(email).await else {
                continue;
            };
            let speaker = identity::resolve(&self.api, Some(graph.clone()), tenant, &slack_user)
                .await
                .ok()
                .filter(|s| s.user == *user)?;
            return match self.api.open_dm(&slack_user).await {
                Ok(dm) => Some((speaker, dm)),
                Err(e) => {
                    tracing::warn!("slack: no direct message with {slack_user}: {e}");
                    None
                }
            };
        }
        tracing::info!("slack: {user} has no Slack account this workspace can verify");
        None
    }
}

/// A message event worth answering.
#[derive(Debug)]
struct Message {
    user: String,
    channel: String,
    /// In a direct message (`channel_type == "im"`).
    direct: bool,
    text: String,
    ts: String,
}

/// A button press worth handling.
#[derive(Debug)]
struct Action {
    user: String,
    request_id: String,
    approve: bool,
}

/// The Slack channel's routes around `slack`. Tests call this through
/// [`Slack::serve`] or on their own listener.
pub fn app(slack: Arc<Slack>) -> Router {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/interactivity", post(interactivity))
        .with_state(slack)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Verifies the request's signature; why it failed, logged (the 401 is
/// [`refused`]).
fn verify(slack: &Slack, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    slack
        .verifier
        .verify(
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            body,
            now(),
        )
        .inspect_err(|e| tracing::info!("slack: request refused: {e}"))
}

/// The 401 for a request whose signature failed.
fn refused(e: &SignatureError) -> Response {
    (StatusCode::UNAUTHORIZED, e.to_string()).into_response()
}

/// `POST /slack/events`.
async fn events(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = verify(&slack, &headers, &body) {
        return refused(&e);
    }
    let Ok(envelope) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    match envelope.get("type").and_then(Value::as_str) {
        Some("url_verification") => {
            let challenge = envelope.get("challenge").cloned().unwrap_or(Value::Null);
            axum::Json(json!({ "challenge": challenge })).into_response()
        }
        Some("event_callback") => {
            if let Some(id) = envelope.get("event_id").and_then(Value::as_str) {
                if !slack.first_time(id) {
                    return StatusCode::OK.into_response();
                }
            } else if headers.contains_key("x-slack-retry-num") {
                return StatusCode::OK.into_response();
            }
            if let Some(message) = message_of(&envelope) {
                tokio::spawn(Arc::clone(&slack).on_message(message));
            }
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// The message to answer in an `event_callback`, if any.
fn message_of(envelope: &Value) -> Option<Message> {
    let event = envelope.get("event")?;
    let field = |name: &str| event.get(name).and_then(Value::as_str);
    if event.get("bot_id").is_some()
        || event.get("subtype").is_some()
        || event.get("edited").is_some()
    {
        return None;
    }
    let direct = match (field("type")?, field("channel_type")) {
        ("message", Some("im")) => true,
        ("message", Some("channel" | "group" | "mpim")) | ("app_mention", _) => false,
        _ => return None,
    };
    let text = strip_mentions(field("text")?);
    Some(Message {
        user: field("user")?.to_owned(),
        channel: field("channel")?.to_owned(),
        direct,
        text,
        ts: field("ts").unwrap_or_default().to_owned(),
    })
}

/// The text without `<@U...>` mentions.
fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        out.push_str(&rest[..start]);
        match rest[start..].find('>') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// `POST /slack/interactivity`.
async fn interactivity(
    State(slack): State<Arc<Slack>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = verify(&slack, &headers, &body) {
        return refused(&e);
    }
    let payload = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok());
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "no payload").into_response();
    };
    if let Some(action) = action_of(&payload) {
        tokio::spawn(Arc::clone(&slack).on_action(action));
    }
    StatusCode::OK.into_response()
}

/// The approval button pressed in a `block_actions` payload, if any.
fn action_of(payload: &Value) -> Option<Action> {
    if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
        return None;
    }
    let user = payload.pointer("/user/id").and_then(Value::as_str)?;
    let action = payload.get("actions")?.as_array()?.first()?;
    let approve = match action.get("action_id").and_then(Value::as_str)? {
        "approve" => true,
        "deny" => false,
        _ => return None,
    };
    let request_id = action.get("value").and_then(Value::as_str)?;
    Some(Action {
        user: user.to_owned(),
        request_id: request_id.to_owned(),
        approve,
    })
}

/// Text with Slack's three control characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped_and_bot_messages_edits_and_subtypes_ignored() {
        assert_eq!(
            strip_mentions("<@U1> I forgot <@U2>my password"),
            "I forgot my password"
        );
        let event = |extra: Value| {
            let mut e = json!({"type": "message", "channel_type": "im", "user": "U1",
                "channel": "D1", "text": "hi", "ts": "1.2"});
            if let (Some(e), Some(x)) = (e.as_object_mut(), extra.as_object()) {
                e.extend(x.clone());
            }
            json!({ "event": e })
        };
        assert!(message_of(&event(json!({}))).is_some_and(|m| m.direct));
        assert!(message_of(&event(json!({"bot_id": "B1"}))).is_none());
        assert!(message_of(&event(json!({"subtype": "message_changed"}))).is_none());
        assert!(message_of(&event(json!({"channel_type": "channel"}))).is_some_and(|m| !m.direct));
        assert!(message_of(&event(json!({"type": "reaction_added"}))).is_none());
    }

    #[test]
    fn only_approve_and_deny_buttons_are_actions() {
        let payload = |id: &str| {
            json!({"type": "block_actions", "user": {"id": "U1"},
                "actions": [{"action_id": id, "value": "req-1"}]})
        };
        assert!(action_of(&payload("approve")).is_some_and(|a| a.approve));
        assert!(action_of(&payload("deny")).is_some_and(|a| !a.approve));
        assert!(action_of(&payload("step-up")).is_none());
    }
}
