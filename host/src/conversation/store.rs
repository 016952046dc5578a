//! Where conversations live: their state and their events in the service's
//! SQLite database (tables of migration
//! `20261126030000_conversations.sql`), and the OIDC flows the engine
//! started, so that a redirect finds its channel and its conversation.
//!
//! Events are numbered 1, 2, 3... per conversation. Each append reads the
//! last number and inserts the next in one `BEGIN IMMEDIATE` transaction,
//! so appends from any task (the requester's turn, an approver's answer
//! landing in the same conversation) never share a number.

use crate::audit::{Db, Pruning};
use latchkey_policy::Channel;
use rusqlite::{OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

use super::state::State;
use super::{EngineError, Event, EventKind};
use crate::ids::UserId;
use crate::tenant::TenantId;

/// A conversation's row.
#[derive(Clone, Debug)]
pub struct Conversation {
    /// The channel it was last spoken on.
    pub channel: Channel,
    /// The user's display name, as the channel gave it.
    pub display_name: String,
    /// The state machine's state.
    pub state: State,
}

/// An OIDC flow the engine started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// A channel sign-in.
    SignIn {
        /// The tenant.
        tenant: TenantId,
        /// The channel that asked.
        channel: Channel,
    },
    /// A step-up, for a conversation.
    StepUp {
        /// The tenant.
        tenant: TenantId,
        /// The requester whose conversation it continues.
        user: UserId,
    },
}

/// The conversations in the service's database.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    appended: tokio::sync::broadcast::Sender<Appended>,
    /// When expired flows are next deleted.
    pruning: std::sync::Arc<Pruning>,
}

/// A new event in someone's conversation, announced to subscribers
/// ([`super::Engine::subscribe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The tenant.
    pub tenant: TenantId,
    /// Whose conversation.
    pub user: UserId,
    /// The event's number.
    pub seq: u64,
}

/// How many announcements a slow subscriber may fall behind before it
/// misses some (it is told, and reads the events anyway).
const ANNOUNCED: usize = 1024;

/// The longest events page read at once.
const EVENTS_PAGE: i64 = 1000;

impl Store {
    /// The store on `db` (migrated when the audit log was opened).
    pub fn new(db: Db) -> Store {
        Store {
            db,
            appended: tokio::sync::broadcast::channel(ANNOUNCED).0,
            pruning: std::sync::Arc::new(Pruning::new()),
        }
    }

    /// Announcements of every event appended from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Appended> {
        self.appended.subscribe()
    }

    /// The conversation of `user`, if they have one.
    pub async fn load(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<Conversation>, EngineError> {
        let row: Option<(String, String, String)> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT channel, display_name, state FROM conversations \
                     WHERE tenant = $1 AND user_id = $2",
                )?
                .query_row([tenant.as_str(), user.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .await?;
        row.map(|(channel, display_name, state)| {
            Ok(Conversation {
                channel: parse_channel(&channel)?,
                display_name,
                state: serde_json::from_str(&state)
                    .map_err(|e| EngineError::Corrupt(format!("conversation state: {e}")))?,
            })
        })
        .transpose()
    }

    /// Writes the conversation (creating it if new).
    pub async fn save(
        &self,
        tenant: &TenantId,
        user: &UserId,
        conversation: &Conversation,
        now: i64,
    ) -> Result<(), EngineError> {
        let state = serde_json::to_string(&conversation.state)
            .map_err(|e| EngineError::Corrupt(format!("conversation state: {e}")))?;
        let deadline = conversation.state.case.as_ref().map(|c| c.deadline);
        self.db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO conversations (tenant, user_id, channel, display_name, state, deadline, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, user_id) DO UPDATE SET channel = excluded.channel, \
                     display_name = excluded.display_name, state = excluded.state, \
                     deadline = excluded.deadline, updated_at = excluded.updated_at",
                )?
                .execute(params![
                    tenant.as_str(),
                    user.as_str(),
                    channel_name(conversation.channel),
                    conversation.display_name,
                    state,
                    deadline,
                    now
                ])
            })
            .await?;
        Ok(())
    }

    /// Creates an idle conversation for `user` if they have none (an
    /// approver who has never chatted), so that events can be put in it.
    pub async fn ensure(
        &self,
        tenant: &TenantId,
        user: &UserId,
        display_name: &str,
        now: i64,
    ) -> Result<(), EngineError> {
        self.db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO conversations (tenant, user_id, channel, display_name, state, deadline, updated_at) \
                     VALUES ($1, $2, 'web', $3, '{\"case\":null}', NULL, $4) \
                     ON CONFLICT (tenant, user_id) DO NOTHING",
                )?
                .execute(params![tenant.as_str(), user.as_str(), display_name, now])
            })
            .await?;
        Ok(())
    }

    /// The conversations whose case is past its deadline.
    pub async fn due(&self, now: i64) -> Result<Vec<(TenantId, UserId)>, EngineError> {
        let rows: Vec<(String, String)> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT tenant, user_id FROM conversations \
                     WHERE deadline IS NOT NULL AND deadline < $1",
                )?
                .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
            })
            .await?;
        rows.into_iter()
            .map(|(tenant, user)| {
                Ok((
                    tenant
                        .parse()
                        .map_err(|_| EngineError::Corrupt("conversation tenant".to_owned()))?,
                    user.parse()
                        .map_err(|_| EngineError::Corrupt("conversation user".to_owned()))?,
                ))
            })
            .collect()
    }

    /// Appends an event to `user`'s conversation and returns it numbered.
    pub async fn append(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: i64,
        kind: EventKind,
    ) -> Result<Event, EngineError> {
        let text = serde_json::to_string(&kind)
            .map_err(|e| EngineError::Corrupt(format!("event: {e}")))?;
        // One statement, so atomic: numbered after the conversation's last.
        let seq: i64 = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO conversation_events (tenant, user_id, seq, at, event) \
                     SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4 FROM conversation_events \
                     WHERE tenant = $1 AND user_id = $2 \
                     RETURNING seq",
                )?
                .query_row(params![tenant.as_str(), user.as_str(), at, text], |r| {
                    r.get(0)
                })
            })
            .await?;
        let seq = u64::try_from(seq).unwrap_or(0);
        // Nobody listening is not an error.
        let _ = self.appended.send(Appended {
            tenant: tenant.clone(),
            user: user.clone(),
            seq,
        });
        Ok(Event { seq, at, kind })
    }

    /// `user`'s events with a number above `after`, oldest first, at most
    /// a thousand (ask again from the last one for more).
    pub async fn events(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: u64,
    ) -> Result<Vec<Event>, EngineError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, String)> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT seq, at, event FROM conversation_events \
                     WHERE tenant = $1 AND user_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                )?
                .query_map(
                    params![tenant.as_str(), user.as_str(), after, EVENTS_PAGE],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .collect()
            })
            .await?;
        rows.into_iter()
            .map(|(seq, at, text)| {
                Ok(Event {
                    seq: u64::try_from(seq).unwrap_or(0),
                    at,
                    kind: serde_json::from_str(&text)
                        .map_err(|e| EngineError::Corrupt(format!("event {seq}: {e}")))?,
                })
            })
            .collect()
    }

    /// Remembers a flow under the sha256 of its `state`.
    pub async fn put_flow(
        &self,
        state: &str,
        flow: &Flow,
        expires_at: i64,
    ) -> Result<(), EngineError> {
        let (kind, tenant, user, channel) = match flow {
            Flow::SignIn { tenant, channel } => ("sign-in", tenant, None, *channel),
            Flow::StepUp { tenant, user } => ("step-up", tenant, Some(user), Channel::Web),
        };
        let prune = self.pruning.due(expires_at);
        self.db
            .run(|c| {
                if prune {
                    c.prepare_cached("DELETE FROM conversation_flows WHERE expires_at < $1")?
                        .execute([expires_at - 2 * crate::verification::FLOW_SECONDS])?;
                }
                c.prepare_cached(
                    "INSERT INTO conversation_flows (state_sha256, kind, tenant, user_id, channel, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )?
                .execute(params![
                    state_hash(state),
                    kind,
                    tenant.as_str(),
                    user.map(UserId::as_str),
                    channel_name(channel),
                    expires_at
                ])
            })
            .await?;
        Ok(())
    }

    /// The flow `state` belongs to, removed: a redirect is used once.
    pub async fn take_flow(&self, state: &str) -> Result<Option<Flow>, EngineError> {
        let row: Option<(String, String, Option<String>, String)> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "DELETE FROM conversation_flows WHERE state_sha256 = $1 \
                     RETURNING kind, tenant, user_id, channel",
                )?
                .query_row([state_hash(state)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .await?;
        let corrupt = || EngineError::Corrupt("a stored sign-in flow".to_owned());
        row.map(|(kind, tenant, user, channel)| {
            let tenant: TenantId = tenant.parse().map_err(|_| corrupt())?;
            match (kind.as_str(), user) {
                ("sign-in", _) => Ok(Flow::SignIn {
                    tenant,
                    channel: parse_channel(&channel)?,
                }),
                ("step-up", Some(user)) => Ok(Flow::StepUp {
                    tenant,
                    user: user.parse().map_err(|_| corrupt())?,
                }),
                _ => Err(corrupt()),
            }
        })
        .transpose()
    }
}

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// The channel's stored name.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Teams => "teams",
        Channel::Slack => "slack",
        Channel::Web => "web",
    }
}

fn parse_channel(name: &str) -> Result<Channel, EngineError> {
    match name {
        "teams" => Ok(Channel::Teams),
        "slack" => Ok(Channel::Slack),
        "web" => Ok(Channel::Web),
        other => Err(EngineError::Corrupt(format!("channel {other:?}"))),
    }
}
