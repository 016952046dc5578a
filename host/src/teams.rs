//! The Microsoft Teams channel: a Bot Framework bot in front of the
//! conversation [`Engine`].
//!
//! | activity at `POST /api/messages` | what it does |
//! |---|---|
//! | `message` with text | said to the engine; in a group chat or channel the bot answers there "I'll continue in a private chat" and goes on in a personal chat it creates |
//! | `message` with a `value` (an Adaptive Card's `Action.Submit`) | an approval card's Approve or Refuse; the card is then replaced (`PUT`) by the decision |
//! | `invoke` `adaptiveCard/action` (`Action.Execute`) | the same, answered in the HTTP response with the replacement card |
//! | `conversationUpdate`, `installationUpdate` | acknowledged; the tenant's `serviceUrl` is remembered for proactive messages |
//!
//! # Trust
//!
//! Nothing in an activity is believed before the connector's token is
//! validated ([`token`]): signature, issuer, audience (the bot's app id),
//! expiry, the key's endorsement of the activity's `channelId`, and the
//! `serviceurl` claim equal to the activity's `serviceUrl`. Anything else
//! is a 401 and nothing is done. Then, each a 403 with nothing done: the
//! channel must be `msteams`, the `serviceUrl` an allowed connector host
//! ([`connector`]), and the tenant (`channelData.tenant.id`, and
//! `conversation.tenantId` when present) one configured here.
//!
//! The person is `from.aadObjectId` in that tenant, believed only because
//! the validated token proves Microsoft's connector relayed the activity for
//! this bot. No object id: refused with a reply. A button press is an
//! answer by the presser's verified id; the engine accepts it only from the
//! request's approver.
//!
//! Secrets go only to a personal (1:1) conversation: a request from a group
//! chat or channel moves to a personal chat before anything else is said,
//! and an [`EventKind::Secret`] addressed to a shared conversation is
//! withheld.
//!
//! # Replies and proactive messages
//!
//! Replies go through the connector at the activity's `serviceUrl` with the
//! bot's client-credentials token. An approval request for someone the bot
//! is not talking to (a manager) is sent proactively: a personal
//! conversation is created with them (`POST /v3/conversations`, their Entra
//! object id as member; Teams requires the app to be installed for them) at
//! the last `serviceUrl` seen for their tenant. That URL is kept in the
//! database (`teams_service_urls`), so a restart does not lose it; the
//! connector checks it against the allowed hosts again each time.
//!
//! Messages are acknowledged at once and handled in a spawned task (the
//! connector gives up after 15 seconds); card invokes are answered in the
//! response.

pub mod cards;
pub mod connector;
pub mod token;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rusqlite::OptionalExtension as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::audit::{Db, DbError};
use crate::config::{ConfigError, TeamsConfig};
use crate::conversation::{Engine, Event, EventKind, Speaker};
use crate::graph::Secret;
use crate::ids::UserId;
use crate::outbox::{NOT_HERE, Outbox, STEP_UP_TEXT, Said, Transport, reveal, said};
use crate::sdk::Channel;
use crate::service::Service;
use crate::tenant::TenantId;

pub use connector::{Connector, ConnectorError};
pub use token::{TokenError, TokenValidator};

/// The largest activity accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The only channel served.
pub const TEAMS_CHANNEL: &str = "msteams";
/// What a message in a group chat or channel gets, there.
pub const MOVED_TO_PERSONAL: &str = "I'll continue in a private chat with you.";

/// The Teams channel's settings, the secret already read.
#[derive(Clone)]
pub struct TeamsSettings {
    /// The bot's Microsoft App ID.
    pub app_id: String,
    /// The app's client secret.
    pub app_secret: Secret,
    /// The tenant of the app registration (or `botframework.com`).
    pub app_tenant: String,
    /// Where the bot's tokens come from.
    pub authority: String,
    /// Bot Framework's OpenID metadata URL.
    pub openid_metadata_url: String,
    /// The hosts a `serviceUrl` may name.
    pub service_url_hosts: Vec<String>,
}

impl TeamsSettings {
    /// The settings of `[teams]`, its secret read.
    pub fn from_config(config: &TeamsConfig) -> Result<TeamsSettings, ConfigError> {
        Ok(TeamsSettings {
            app_id: config.app_id.clone(),
            app_secret: config.read_secret()?,
            app_tenant: config.app_tenant.clone(),
            authority: config.authority.clone(),
            openid_metadata_url: config.openid_metadata_url.clone(),
            service_url_hosts: config.service_url_hosts.clone(),
        })
    }
}

impl std::fmt::Debug for TeamsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsSettings")
            .field("app_id", &self.app_id)
            .field("app_tenant", &self.app_tenant)
            .field("openid_metadata_url", &self.openid_metadata_url)
            .finish_non_exhaustive()
    }
}

/// Where one person's messages go: a conversation at a connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRef {
    /// The connector's base URL.
    pub service_url: String,
    /// The conversation id.
    pub conversation: String,
    /// A personal (1:1) conversation: the only kind a secret goes to.
    pub personal: bool,
}

/// Posts engine events to Teams conversations.
pub struct TeamsSender {
    connector: Connector,
    bot_id: String,
    /// The last validated `serviceUrl` of each tenant, for proactive
    /// messages: as kept in the database, cached.
    service_urls: StdMutex<HashMap<TenantId, String>>,
    /// Where they are kept (`teams_service_urls`), so that they outlive a
    /// restart.
    db: Db,
}

impl std::fmt::Debug for TeamsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsSender")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl TeamsSender {
    /// A sender through `connector` as bot `bot_id`, keeping the tenants'
    /// `serviceUrl`s in `db`.
    fn new(connector: Connector, bot_id: String, db: Db) -> TeamsSender {
        TeamsSender {
            connector,
            bot_id,
            service_urls: StdMutex::new(HashMap::new()),
            db,
        }
    }

    /// `tenant`'s `serviceUrl` as cached in this process.
    fn cached(&self, tenant: &TenantId) -> Option<String> {
        self.service_urls
            .lock()
            .ok()
            .and_then(|urls| urls.get(tenant).cloned())
    }

    fn cache(&self, tenant: &TenantId, service_url: &str) {
        if let Ok(mut urls) = self.service_urls.lock() {
            urls.insert(tenant.clone(), service_url.to_owned());
        }
    }

    /// Remembers `service_url` (validated) as `tenant`'s; written to the
    /// database only when it changed.
    async fn remember(&self, tenant: &TenantId, service_url: &str) -> Result<(), DbError> {
        if self.cached(tenant).as_deref() == Some(service_url) {
            return Ok(());
        }
        self.db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO teams_service_urls (tenant, service_url, seen_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (tenant) DO UPDATE SET \
                     service_url = excluded.service_url, seen_at = excluded.seen_at",
                )?
                .execute(rusqlite::params![tenant.as_str(), service_url, now()])
            })
            .await?;
        self.cache(tenant, service_url);
        Ok(())
    }

    /// `tenant`'s last `serviceUrl`, from before a restart too; `None` when
    /// no activity of the tenant has ever given one.
    async fn service_url(&self, tenant: &TenantId) -> Result<Option<String>, DbError> {
        if let Some(url) = self.cached(tenant) {
            return Ok(Some(url));
        }
        let stored: Option<String> = self
            .db
            .run(|c| {
                c.prepare_cached("SELECT service_url FROM teams_service_urls WHERE tenant = $1")?
                    .query_row([tenant.as_str()], |r| r.get(0))
                    .optional()
            })
            .await?;
        if let Some(url) = &stored {
            self.cache(tenant, url);
        }
        Ok(stored)
    }

    fn message(&self, to: &ConversationRef, text: &str, card: Option<Value>) -> Value {
        let mut activity = json!({
            "type": "message",
            "from": { "id": self.bot_id },
            "conversation": { "id": to.conversation },
            "text": text,
            "textFormat": "plain",
        });
        if let Some(card) = card {
            activity["attachments"] = json!([cards::attachment(card)]);
        }
        activity
    }

    /// Posts `text` (and `card`) to `to`; the activity's id.
    async fn post(
        &self,
        to: &ConversationRef,
        text: &str,
        card: Option<Value>,
    ) -> Result<Option<String>, ConnectorError> {
        let activity = self.message(to, text, card);
        self.connector
            .send(&to.service_url, &to.conversation, &activity)
            .await
    }

    /// An event as text and maybe a card; `None` for what is not shown.
    fn render(
        engine: &Engine,
        speaker: &Speaker,
        to: &ConversationRef,
        kind: &EventKind,
    ) -> Option<(String, Option<Value>)> {
        Some(match said(kind) {
            Said::Nothing => return None,
            Said::Text(text) => (text, None),
            Said::StepUp { url } => (
                STEP_UP_TEXT.to_owned(),
                Some(cards::step_up(STEP_UP_TEXT, url)),
            ),
            Said::Secret { .. } if !to.personal => {
                tracing::warn!("teams: a secret was not posted: the conversation is shared");
                (NOT_HERE.to_owned(), None)
            }
            Said::Secret { label, secret_id } => (
                reveal(engine, speaker, label, secret_id, |secret| {
                    format!("{label}: {secret}")
                }),
                None,
            ),
            Said::Approval { text, request_id } => {
                let card = cards::approval(&text, request_id);
                (text, Some(card))
            }
        })
    }
}

impl Transport for TeamsSender {
    type Address = ConversationRef;
    const NAME: &'static str = "teams";

    async fn send(
        &self,
        engine: &Engine,
        speaker: &Speaker,
        to: &ConversationRef,
        event: &Event,
    ) -> Result<(), String> {
        match TeamsSender::render(engine, speaker, to, &event.kind) {
            Some((text, card)) => self
                .post(to, &text, card)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Approval requests only: a personal conversation created with the
    /// approver at their tenant's last `serviceUrl`.
    async fn reach(
        &self,
        tenant: &TenantId,
        user: &UserId,
        event: &Event,
    ) -> Option<(Speaker, ConversationRef)> {
        if !matches!(event.kind, EventKind::ApprovalRequest { .. }) {
            return None;
        }
        let service_url = match self.service_url(tenant).await {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!("teams: cannot read tenant {tenant}'s serviceUrl: {e}");
                None
            }
        };
        let Some(service_url) = service_url else {
            tracing::warn!(
                "teams: no serviceUrl known for tenant {tenant} yet; {user}'s approval request \
                 waits until they write to the bot"
            );
            return None;
        };
        let parameters = json!({
            "bot": { "id": self.bot_id },
            "members": [{ "id": user.as_str() }],
            "isGroup": false,
            "tenantId": tenant.as_str(),
            "channelData": { "tenant": { "id": tenant.as_str() } },
        });
        match self
            .connector
            .create_conversation(&service_url, &parameters)
            .await
        {
            Ok(conversation) => Some((
                Speaker {
                    tenant: tenant.clone(),
                    user: user.clone(),
                    channel: Channel::Teams,
                    display_name: String::new(),
                },
                ConversationRef {
                    service_url,
                    conversation,
                    personal: true,
                },
            )),
            Err(e) => {
                tracing::warn!("teams: cannot reach {user} proactively: {e}");
                None
            }
        }
    }
}

/// The Teams channel. Share it as `Arc<Teams>`.
pub struct Teams {
    outbox: Arc<Outbox<TeamsSender>>,
    validator: TokenValidator,
    tenants: Vec<TenantId>,
}

impl std::fmt::Debug for Teams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teams")
            .field("validator", &self.validator)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

/// Why an activity was refused before anything was done.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Token(TokenError),
    #[error("channel {0:?} is not served; only msteams")]
    Channel(String),
    #[error("{0}")]
    ServiceUrl(ConnectorError),
    #[error("tenant {0:?} is not served here")]
    Tenant(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Token(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// A validated activity's context.
#[derive(Clone, Debug)]
struct Context {
    tenant: TenantId,
    service_url: String,
    conversation: String,
    personal: bool,
    /// `from.id` (the user's Teams id), for a new personal conversation.
    from_id: String,
    /// `from.aadObjectId`, when it is a GUID.
    user: Option<UserId>,
    display_name: String,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn text_at<'a>(activity: &'a Value, pointer: &str) -> &'a str {
    activity
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Teams {
    /// The Teams channel over `engine` (shared with the other channels)
    /// for every tenant `service` serves.
    pub fn new(
        engine: Arc<Engine>,
        service: &Service,
        settings: TeamsSettings,
    ) -> Result<Teams, ConnectorError> {
        let connector = Connector::new(
            &settings.authority,
            &settings.app_tenant,
            &settings.app_id,
            settings.app_secret.clone(),
            &settings.service_url_hosts,
        )?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ConnectorError::Transport(e.to_string()))?;
        let sender = TeamsSender::new(
            connector,
            format!("28:{}", settings.app_id),
            service.audit().db().clone(),
        );
        Ok(Teams {
            outbox: Arc::new(Outbox::new(engine, sender)),
            validator: TokenValidator::new(http, &settings.openid_metadata_url, &settings.app_id),
            tenants: service.tenants().into_iter().map(|t| t.id).collect(),
        })
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

    /// Validates the activity; its context.
    async fn admit(&self, headers: &HeaderMap, activity: &Value) -> Result<Context, Refusal> {
        let channel = text_at(activity, "/channelId");
        let service_url = text_at(activity, "/serviceUrl");
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
        self.validator
            .validate(authorization, channel, service_url, now())
            .await
            .map_err(Refusal::Token)?;
        if channel != TEAMS_CHANNEL {
            return Err(Refusal::Channel(crate::jwks::shorten(channel, 40)));
        }
        self.outbox
            .transport()
            .connector
            .check(service_url)
            .map_err(Refusal::ServiceUrl)?;
        let tenant_text = text_at(activity, "/channelData/tenant/id");
        let tenant = tenant_text
            .parse::<TenantId>()
            .ok()
            .filter(|t| self.tenants.contains(t))
            .ok_or_else(|| Refusal::Tenant(crate::jwks::shorten(tenant_text, 60)))?;
        if let Some(other) = activity
            .pointer("/conversation/tenantId")
            .and_then(Value::as_str)
            && other.parse::<TenantId>().ok().as_ref() != Some(&tenant)
        {
            return Err(Refusal::Tenant(crate::jwks::shorten(other, 60)));
        }
        if let Err(e) = self.outbox.transport().remember(&tenant, service_url).await {
            // Replies still go to this activity's serviceUrl; only a
            // proactive message after a restart could miss it.
            tracing::warn!("teams: cannot keep tenant {tenant}'s serviceUrl: {e}");
        }
        Ok(Context {
            tenant,
            service_url: service_url.to_owned(),
            conversation: text_at(activity, "/conversation/id").to_owned(),
            personal: text_at(activity, "/conversation/conversationType") == "personal",
            from_id: text_at(activity, "/from/id").to_owned(),
            user: text_at(activity, "/from/aadObjectId").parse().ok(),
            display_name: crate::jwks::shorten(text_at(activity, "/from/name").trim(), 256),
        })
    }

    fn speaker(context: &Context) -> Option<Speaker> {
        Some(Speaker {
            tenant: context.tenant.clone(),
            user: context.user.clone()?,
            channel: Channel::Teams,
            display_name: context.display_name.clone(),
        })
    }

    fn here(context: &Context) -> ConversationRef {
        ConversationRef {
            service_url: context.service_url.clone(),
            conversation: context.conversation.clone(),
            personal: context.personal,
        }
    }

    /// Posts `text` where the activity came from.
    async fn reply(&self, context: &Context, text: &str) {
        if let Err(e) = self
            .outbox
            .transport()
            .post(&Teams::here(context), text, None)
            .await
        {
            tracing::warn!("teams: replying in {} failed: {e}", context.conversation);
        }
    }

    /// The person's personal conversation: this one when personal, else a
    /// new one created with them.
    async fn personal(&self, context: &Context) -> Result<ConversationRef, ConnectorError> {
        if context.personal {
            return Ok(Teams::here(context));
        }
        let sender = self.outbox.transport();
        let parameters = json!({
            "bot": { "id": sender.bot_id },
            "members": [{ "id": context.from_id }],
            "isGroup": false,
            "tenantId": context.tenant.as_str(),
            "channelData": { "tenant": { "id": context.tenant.as_str() } },
        });
        let conversation = sender
            .connector
            .create_conversation(&context.service_url, &parameters)
            .await?;
        Ok(ConversationRef {
            service_url: context.service_url.clone(),
            conversation,
            personal: true,
        })
    }

    /// A text message.
    async fn on_message(self: Arc<Self>, context: Context, text: String) {
        let Some(speaker) = Teams::speaker(&context) else {
            tracing::info!("teams: a message without an Entra object id was refused");
            self.reply(
                &context,
                "I can only help people signed in to Teams with an account of your organisation.",
            )
            .await;
            return;
        };
        if !context.personal {
            self.reply(&context, MOVED_TO_PERSONAL).await;
        }
        let personal = match self.personal(&context).await {
            Ok(personal) => personal,
            Err(e) => {
                tracing::warn!("teams: no personal chat with {}: {e}", speaker.user);
                return;
            }
        };
        if let Err(e) = self.outbox.join(&speaker, personal.clone()).await {
            tracing::warn!("teams: the conversation failed: {e}");
            return;
        }
        if let Err(e) = self.outbox.engine().post(&speaker, &text).await {
            tracing::warn!("teams: the conversation failed: {e}");
            let sorry = "Something went wrong on my side; please try again in a minute.";
            if let Err(e) = self.outbox.transport().post(&personal, sorry, None).await {
                tracing::warn!("teams: posting failed: {e}");
            }
        }
        self.outbox.deliver(&speaker.tenant, &speaker.user).await;
    }

    /// A card button: the answer, and the card that replaces the pressed
    /// one.
    async fn on_card(&self, context: &Context, action: cards::CardAction) -> Value {
        let Some(speaker) = Teams::speaker(&context.clone()) else {
            return cards::decided("Only people of your organisation can answer this.");
        };
        // The presser is registered where they pressed, so that what the
        // answer produces in their own conversation reaches them.
        if context.personal
            && let Err(e) = self.outbox.join(&speaker, Teams::here(context)).await
        {
            tracing::warn!("teams: the conversation failed: {e}");
        }
        let card = match self
            .outbox
            .engine()
            .answer(&speaker, &action.request_id, action.approve)
            .await
        {
            Ok(_) => {
                let verdict = if action.approve {
                    "Approved"
                } else {
                    "Refused"
                };
                let who = if speaker.display_name.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", speaker.display_name)
                };
                cards::decided(&format!("{verdict}{who}."))
            }
            Err(e) => {
                tracing::info!("teams: an answer by {} was refused: {e}", speaker.user);
                cards::decided(&e.to_string())
            }
        };
        let outbox = Arc::clone(&self.outbox);
        tokio::spawn(async move { outbox.deliver_all().await });
        card
    }
}

/// The Teams channel's route around `teams`.
pub fn app(teams: Arc<Teams>) -> Router {
    Router::new()
        .route("/api/messages", post(messages))
        .with_state(teams)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The text with `<at>...</at>` mentions removed.
fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<at>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</at>") {
            Some(end) => rest = &rest[start + end + "</at>".len()..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// `POST /api/messages`.
async fn messages(State(teams): State<Arc<Teams>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(activity) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not a JSON activity").into_response();
    };
    let context = match teams.admit(&headers, &activity).await {
        Ok(context) => context,
        Err(refusal) => {
            tracing::info!("teams: activity refused: {refusal}");
            return (refusal.status(), refusal.to_string()).into_response();
        }
    };
    match text_at(&activity, "/type") {
        "message" => {
            if let Some(value) = activity.get("value").filter(|v| v.is_object()) {
                // Action.Submit: answer, then replace the card.
                let Some(action) = cards::CardAction::from_submit(value) else {
                    return StatusCode::OK.into_response();
                };
                let card_id = text_at(&activity, "/replyToId").to_owned();
                tokio::spawn(async move {
                    let card = teams.on_card(&context, action).await;
                    if card_id.is_empty() {
                        return;
                    }
                    let sender = teams.outbox.transport();
                    let mut update = sender.message(&Teams::here(&context), "", Some(card));
                    update["id"] = json!(card_id);
                    if let Err(e) = sender
                        .connector
                        .update(
                            &context.service_url,
                            &context.conversation,
                            &card_id,
                            &update,
                        )
                        .await
                    {
                        tracing::warn!("teams: updating the card failed: {e}");
                    }
                });
                return StatusCode::OK.into_response();
            }
            let text = strip_mentions(text_at(&activity, "/text"));
            if !text.is_empty() {
                tokio::spawn(Arc::clone(&teams).on_message(context, text));
            }
            StatusCode::OK.into_response()
        }
        "invoke" if text_at(&activity, "/name") == "adaptiveCard/action" => {
            let Some(action) = activity
                .pointer("/value/action")
                .and_then(cards::CardAction::from_execute)
            else {
                return axum::Json(cards::invoke_message("This button does nothing."))
                    .into_response();
            };
            let card = teams.on_card(&context, action).await;
            axum::Json(cards::invoke_card(card)).into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(
            strip_mentions("<at>Latchkey</at> I forgot my password"),
            "I forgot my password"
        );
        assert_eq!(strip_mentions("<at>unclosed"), "");
        assert_eq!(strip_mentions("plain"), "plain");
    }

    fn sender(log: &crate::audit::AuditLog) -> TeamsSender {
        let connector = Connector::new(
            "https://login.microsoftonline.com",
            "botframework.com",
            "00000000-0000-0000-0000-0000000000b0",
            Secret::new("bot-secret"),
            &["smba.trafficmanager.net".to_owned()],
        )
        .unwrap();
        TeamsSender::new(connector, "28:bot".to_owned(), log.db().clone())
    }

    #[tokio::test]
    async fn a_tenants_service_url_outlives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.db");
        let contoso: TenantId = "8a1fb8a4-6a2d-4c07-a8b5-2f2b1a3c9d01".parse().unwrap();
        let fabrikam: TenantId = "0b7e4c2a-91f3-4d6e-8a5b-3c2d1e0f9a88".parse().unwrap();
        let amer = "https://smba.trafficmanager.net/amer/";
        let emea = "https://smba.trafficmanager.net/emea/";

        let log = crate::audit::AuditLog::open(&path).await.unwrap();
        let before = sender(&log);
        assert_eq!(before.service_url(&contoso).await.unwrap(), None);
        before.remember(&contoso, amer).await.unwrap();
        assert_eq!(
            before.service_url(&contoso).await.unwrap().as_deref(),
            Some(amer)
        );
        drop(before);
        log.close().await;

        // A new process on the same database, nobody has written yet.
        let log = crate::audit::AuditLog::open(&path).await.unwrap();
        let after = sender(&log);
        assert_eq!(
            after.service_url(&contoso).await.unwrap().as_deref(),
            Some(amer)
        );
        assert_eq!(after.service_url(&fabrikam).await.unwrap(), None);
        // A tenant's connector moves: the newest is kept.
        after.remember(&contoso, emea).await.unwrap();
        assert_eq!(
            sender(&log).service_url(&contoso).await.unwrap().as_deref(),
            Some(emea)
        );
        log.close().await;
    }
}
