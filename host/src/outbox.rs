//! What the chat channels that post messages (Slack, Teams) share: who they
//! are talking to, where that person's messages go, which of their
//! conversation's events were already posted, and the loop that posts new
//! ones.
//!
//! A channel is a [`Transport`]: it knows how to post one event to an
//! address of its own kind (a Slack DM channel id, a Teams conversation
//! reference) and, optionally, how to reach someone it has never talked to
//! (a Teams manager, proactively). The [`Outbox`] does the rest:
//!
//! - [`Outbox::join`] registers a person at an address before their message
//!   is handed to the engine; events already in their conversation count as
//!   posted the first time, so only answers to this message go out;
//! - [`Outbox::deliver`] posts a person's events after the last one posted,
//!   in order, stopping at the first failure (the rest go next time);
//! - [`Outbox::run`] posts events as the engine announces them
//!   ([`Engine::subscribe`]), asks the transport to reach people it does not
//!   know yet, and every [`POLL_EVERY`] reads each active conversation (which
//!   also lets the engine end cases past their deadline and show pending
//!   group approvals); people idle for [`ACTIVE_FOR`] are forgotten.
//!
//! One person's deliveries are serialised, so an event is posted once even
//! when a message's own turn and the announcement race.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::broadcast::error::RecvError;

use crate::conversation::{Engine, EngineError, Event, EventKind, Speaker};
use crate::ids::UserId;
use crate::tenant::TenantId;

/// How often active conversations are read for events to post.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a person stays active (polled) after they last spoke.
pub const ACTIVE_FOR: Duration = Duration::from_secs(3600);

/// What an event says, in words every channel uses; each channel gives it
/// its own form (Slack Block Kit, Teams Adaptive Cards). Text is as the
/// engine wrote it: a channel escapes it for its own markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said<'a> {
    /// Not shown (the person's own message).
    Nothing,
    /// Text.
    Text(String),
    /// The MFA step-up: [`STEP_UP_TEXT`] and a button opening `url`.
    StepUp {
        /// The authorize URL.
        url: &'a str,
    },
    /// An approval request: `text`, and Approve / Refuse for `request_id`.
    Approval {
        /// Who asks, for what.
        text: String,
        /// The request.
        request_id: &'a str,
    },
    /// A secret, to take from the engine and show once, only in the
    /// person's own 1:1 conversation.
    Secret {
        /// What it is ("Your temporary password").
        label: &'a str,
        /// The engine's handle.
        secret_id: &'a str,
    },
}

/// The step-up's text.
pub const STEP_UP_TEXT: &str = "Approve the sign-in with your Microsoft account to continue.";
/// The step-up button's title.
pub const STEP_UP_BUTTON: &str = "Approve the sign-in";
/// What is said instead of a secret in a shared conversation.
pub const NOT_HERE: &str = "I cannot show this here; write to me in a private chat.";

/// What `kind` says.
pub fn said(kind: &EventKind) -> Said<'_> {
    match kind {
        EventKind::UserMessage { .. } => Said::Nothing,
        EventKind::BotMessage { text } | EventKind::Progress { text } => Said::Text(text.clone()),
        EventKind::StepUp { url } => Said::StepUp { url },
        EventKind::CodeSent { to } => Said::Text(format!("I sent a code to {to}. Type it here.")),
        EventKind::Secret { secret_id, label } => Said::Secret { label, secret_id },
        EventKind::ApprovalRequest {
            request_id,
            requester,
            reason,
            kind,
            ..
        } => {
            let what = if kind == "manager-confirmation" {
                "confirm that this is really them"
            } else {
                "approve their request"
            };
            Said::Approval {
                text: format!("{requester} asks you to {what}: {reason}"),
                request_id,
            }
        }
        EventKind::RequestAnswered { approved, .. } => Said::Text(
            if *approved {
                "Thank you: recorded as approved."
            } else {
                "Thank you: recorded as refused."
            }
            .to_owned(),
        ),
        EventKind::Resolved { summary } => Said::Text(summary.clone()),
        EventKind::Cancelled => Said::Text("Cancelled.".to_owned()),
        EventKind::Escalated { reason } => {
            Said::Text(format!("I handed this to the help desk: {reason}"))
        }
    }
}

/// The secret `secret_id` of `speaker`, taken from `engine` (shown once):
/// `shown(secret)` when it is there, else a line saying it is gone.
pub fn reveal(
    engine: &Engine,
    speaker: &Speaker,
    label: &str,
    secret_id: &str,
    shown: impl FnOnce(&str) -> String,
) -> String {
    match engine.take_secret(speaker, secret_id) {
        Some(secret) => shown(secret.expose()),
        None => format!("{label} was already shown or has expired."),
    }
}

/// A channel that posts events.
pub trait Transport: Send + Sync + 'static {
    /// Where one person's messages go.
    type Address: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// The channel's name, for logs.
    const NAME: &'static str;

    /// Posts `event` of `speaker`'s conversation to `to` (or nothing, for
    /// events the channel does not show). A secret is taken from `engine`
    /// ([`Engine::take_secret`]) only here, and only to an address the
    /// channel knows to be the person's own 1:1 conversation.
    fn send(
        &self,
        engine: &Engine,
        speaker: &Speaker,
        to: &Self::Address,
        event: &Event,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Someone the channel has not talked to has a new `event` (a manager's
    /// approval request): who they are and where to post it, if the channel
    /// can reach them unasked and wants to. Default: never.
    fn reach(
        &self,
        tenant: &TenantId,
        user: &UserId,
        event: &Event,
    ) -> impl Future<Output = Option<(Speaker, Self::Address)>> + Send {
        let _ = (tenant, user, event);
        async { None }
    }
}

struct Recipient<A> {
    speaker: Speaker,
    address: A,
    /// The last event posted (or counted as posted).
    delivered: u64,
    last_active: Instant,
}

type Key = (TenantId, UserId);
type Shared<A> = Arc<AsyncMutex<Recipient<A>>>;

/// The people a [`Transport`] talks to and what was posted to them. Share
/// it as `Arc<Outbox<T>>`.
pub struct Outbox<T: Transport> {
    engine: Arc<Engine>,
    transport: T,
    people: StdMutex<HashMap<Key, Shared<T::Address>>>,
}

impl<T: Transport + std::fmt::Debug> std::fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Outbox<T> {
    /// An outbox posting `engine`'s events through `transport`.
    pub fn new(engine: Arc<Engine>, transport: T) -> Outbox<T> {
        Outbox {
            engine,
            transport,
            people: StdMutex::new(HashMap::new()),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    fn recipient(&self, tenant: &TenantId, user: &UserId) -> Option<Shared<T::Address>> {
        self.people
            .lock()
            .ok()
            .and_then(|p| p.get(&(tenant.clone(), user.clone())).cloned())
    }

    /// Where the person's messages go, if they are known.
    pub async fn address(&self, tenant: &TenantId, user: &UserId) -> Option<T::Address> {
        let recipient = self.recipient(tenant, user)?;
        let r = recipient.lock().await;
        Some(r.address.clone())
    }

    /// Registers `speaker` at `address` (or moves them there), before their
    /// message is handed to the engine. The first time, every event already
    /// in their conversation counts as posted.
    pub async fn join(&self, speaker: &Speaker, address: T::Address) -> Result<(), EngineError> {
        if let Some(existing) = self.recipient(&speaker.tenant, &speaker.user) {
            let mut r = existing.lock().await;
            r.address = address;
            r.speaker = speaker.clone();
            r.last_active = Instant::now();
            return Ok(());
        }
        let mut delivered = 0;
        loop {
            let more = self.engine.events(speaker, delivered).await?;
            match more.last() {
                Some(last) => delivered = last.seq,
                None => break,
            }
        }
        self.insert(speaker, address, delivered);
        Ok(())
    }

    fn insert(&self, speaker: &Speaker, address: T::Address, delivered: u64) {
        let fresh = Arc::new(AsyncMutex::new(Recipient {
            speaker: speaker.clone(),
            address,
            delivered,
            last_active: Instant::now(),
        }));
        if let Ok(mut people) = self.people.lock() {
            people
                .entry((speaker.tenant.clone(), speaker.user.clone()))
                .or_insert(fresh);
        }
    }

    /// Posts the person's events after the last one posted, if they are
    /// known; stops at the first failure.
    pub async fn deliver(&self, tenant: &TenantId, user: &UserId) {
        if let Some(recipient) = self.recipient(tenant, user) {
            self.deliver_to(&recipient).await;
        }
    }

    async fn deliver_to(&self, recipient: &AsyncMutex<Recipient<T::Address>>) {
        let mut r = recipient.lock().await;
        let events = match self.engine.events(&r.speaker, r.delivered).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(
                    "{}: reading {}'s conversation failed: {e}",
                    T::NAME,
                    r.speaker.user
                );
                return;
            }
        };
        for event in events {
            if let Err(e) = self
                .transport
                .send(&self.engine, &r.speaker, &r.address, &event)
                .await
            {
                tracing::warn!("{}: posting to {:?} failed: {e}", T::NAME, r.address);
                return;
            }
            r.delivered = event.seq;
        }
    }

    /// Posts every known person's new events; forgets people idle for
    /// [`ACTIVE_FOR`].
    pub async fn deliver_all(&self) {
        let people: Vec<_> = match self.people.lock() {
            Ok(people) => people.values().cloned().collect(),
            Err(_) => return,
        };
        for recipient in &people {
            self.deliver_to(recipient).await;
        }
        let stale: Vec<Key> = people
            .iter()
            .filter_map(|recipient| {
                let r = recipient.try_lock().ok()?;
                (r.last_active.elapsed() > ACTIVE_FOR)
                    .then(|| (r.speaker.tenant.clone(), r.speaker.user.clone()))
            })
            .collect();
        if let Ok(mut people) = self.people.lock() {
            for key in stale {
                people.remove(&key);
            }
        }
    }

    /// A new event `seq` in `user`'s conversation: posted if they are
    /// known, else offered to the transport to reach them.
    async fn announced(&self, tenant: &TenantId, user: &UserId, seq: u64) {
        if let Some(recipient) = self.recipient(tenant, user) {
            self.deliver_to(&recipient).await;
            return;
        }
        let anyone = Speaker {
            tenant: tenant.clone(),
            user: user.clone(),
            channel: crate::sdk::Channel::default(),
            display_name: String::new(),
        };
        let after = seq.saturating_sub(1);
        let Ok(events) = self.engine.events(&anyone, after).await else {
            return;
        };
        let Some(first) = events.first() else {
            return;
        };
        if let Some((speaker, address)) = self.transport.reach(tenant, user, first).await {
            self.insert(&speaker, address, after);
            self.deliver(tenant, user).await;
        }
    }

    /// Posts events as the engine announces them, and reads every active
    /// conversation every [`POLL_EVERY`], forever (abort the task to stop).
    pub async fn run(self: Arc<Self>) {
        let mut announcements = self.engine.subscribe();
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                announced = announcements.recv() => match announced {
                    Ok(a) => self.announced(&a.tenant, &a.user, a.seq).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!("{}: {missed} announcements missed; reading every conversation", T::NAME);
                        self.deliver_all().await;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = every.tick() => self.deliver_all().await,
            }
        }
    }
}
