//! Web chat sessions: who a browser (or a script) signed in as.
//!
//! A session is created only by a completed sign-in (the OIDC callback,
//! validated by the verifier), never from anything a client says. Its token
//! is 32 random bytes from the operating system, sent as an `HttpOnly`,
//! `SameSite=Strict` cookie or as `Authorization: Bearer <token>`. Only the
//! token's sha256 is kept, so the table holds nothing a reader could replay,
//! and a lookup by digest leaks nothing about the token through timing.
//!
//! Sessions live in memory: a restart signs everyone out of the web chat
//! (their conversations are persisted by the engine and resume at the next
//! sign-in).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::conversation::Speaker;
use crate::graph::Secret;
use crate::ids::RandomError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "latchkey_session";
/// How long a session lasts without being used: 1 hour.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long a session lasts at most, however busy: 12 hours, a working day.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// The most sessions held at once; beyond it the oldest is dropped, so that
/// sign-ins cannot grow memory without bound.
pub const MAX_SESSIONS: usize = 10_000;

type Digest32 = [u8; 32];

struct Entry {
    speaker: Speaker,
    created: Instant,
    last_used: Instant,
}

/// The table of live sessions. Share it behind an `Arc`.
pub struct Sessions {
    entries: Mutex<HashMap<Digest32, Entry>>,
    idle: Duration,
    lifetime: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(IDLE_TIMEOUT, MAX_LIFETIME)
    }
}

impl Sessions {
    /// An empty table whose sessions end after `idle` unused or `lifetime`
    /// in all.
    pub fn new(idle: Duration, lifetime: Duration) -> Sessions {
        Sessions {
            entries: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    /// Starts a session for `speaker` and returns its token: the only copy,
    /// to be handed to the client once.
    pub fn create(&self, speaker: Speaker) -> Result<Secret, RandomError> {
        let bytes: [u8; 32] = crate::ids::random_bytes()?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, e| self.alive(e, now));
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        entries.insert(
            digest(&token),
            Entry {
                speaker,
                created: now,
                last_used: now,
            },
        );
        Ok(Secret::new(token))
    }

    /// The speaker of a live session, refreshing its idle timer; `None` for
    /// an unknown or expired token (an expired one is dropped).
    pub fn speaker(&self, token: &str) -> Option<Speaker> {
        let key = digest(token);
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = entries.get_mut(&key)?;
        if !self.alive(entry, now) {
            entries.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(entry.speaker.clone())
    }

    /// Ends a session; true when there was one.
    pub fn remove(&self, token: &str) -> bool {
        self.lock().remove(&digest(token)).is_some()
    }

    /// How many sessions are held (expired ones included until next pruned).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn alive(&self, entry: &Entry, now: Instant) -> bool {
        now.duration_since(entry.last_used) < self.idle
            && now.duration_since(entry.created) < self.lifetime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest32, Entry>> {
        // A panic while holding the lock cannot leave a half-written entry
        // (every change is one map operation), so a poisoned lock is usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_policy::Channel;

    fn adele() -> Speaker {
        Speaker {
            tenant: "9a3f6c2e-1b4d-4f8a-b5c7-2d6e8f0a1b3c".parse().unwrap(),
            user: "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f".parse().unwrap(),
            channel: Channel::Web,
            display_name: "Adele Vance".into(),
        }
    }

    #[test]
    fn a_token_finds_its_speaker_until_removed() {
        let sessions = Sessions::default();
        let token = sessions.create(adele()).unwrap();
        assert_eq!(token.expose().len(), 43, "32 bytes, base64url");
        assert_eq!(sessions.speaker(token.expose()), Some(adele()));
        assert_eq!(sessions.speaker("not-a-token"), None);
        let other = sessions.create(adele()).unwrap();
        assert_ne!(token.expose(), other.expose());
        assert!(sessions.remove(token.expose()));
        assert_eq!(sessions.speaker(token.expose()), None);
        assert!(!sessions.remove(token.expose()));
        assert_eq!(sessions.speaker(other.expose()), Some(adele()));
    }

    #[test]
    fn idle_and_old_sessions_expire() {
        let idle = Sessions::new(Duration::from_millis(30), Duration::from_secs(60));
        let token = idle.create(adele()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(idle.speaker(token.expose()), None);
        assert!(idle.is_empty(), "an expired session is dropped");

        let old = Sessions::new(Duration::from_secs(60), Duration::from_millis(30));
        let token = old.create(adele()).unwrap();
        assert!(old.speaker(token.expose()).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(old.speaker(token.expose()), None, "use does not extend it");
    }

    #[test]
    fn the_table_keeps_digests_not_tokens() {
        let sessions = Sessions::default();
        let token = sessions.create(adele()).unwrap();
        let entries = sessions.lock();
        let key = entries.keys().next().unwrap();
        assert_ne!(&key[..], token.expose().as_bytes());
        assert_eq!(*key, digest(token.expose()));
    }
}
