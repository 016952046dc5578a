//! One-time nonces: each receipt carries one, and the executor consumes it
//! before the write, so a receipt authorizes one write however often it is
//! presented.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::CLOCK_SKEW_SECS;
use crate::ids::{RandomError, random_bytes};
use crate::tenant::TenantId;

/// 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce([u8; 16]);

impl Nonce {
    /// A fresh nonce from the operating system's random number generator.
    pub fn generate() -> Result<Nonce, RandomError> {
        random_bytes().map(Nonce)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({self})")
    }
}

/// Why a string is not a nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a nonce is 32 lowercase hex digits (128 bits), got {0:?}")]
pub struct ParseNonceError(String);

impl FromStr for Nonce {
    type Err = ParseNonceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut out = [0u8; 16];
        if !valid || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(ParseNonceError(s.chars().take(80).collect()));
        }
        Ok(Nonce(out))
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The nonce store could not answer; the write must not go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceStoreError {
    /// The store is unavailable (a poisoned lock, a database error...).
    #[error("the nonce store is unavailable: {0}")]
    Unavailable(String),
}

/// Remembers which receipt nonces have been used, per tenant.
///
/// Shared by every replica that executes writes (an in-memory store is right
/// only for a single process). Call [`NonceStore::consume`] only after
/// [`verify`](super::verify) accepted the receipt, so that `expires_at` is
/// authentic.
pub trait NonceStore: Send + Sync {
    /// Marks `nonce` used for `tenant`. Returns `true` the first time only:
    /// of any number of concurrent calls with the same tenant and nonce,
    /// exactly one gets `true`. A nonce may be forgotten once its receipt can
    /// no longer verify (`expires_at` plus [`CLOCK_SKEW_SECS`] has passed), so
    /// a nonce that is already that old is refused (`false`) rather than
    /// recorded.
    fn consume(
        &self,
        tenant: &TenantId,
        nonce: &Nonce,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError>;
}

/// The current time in Unix seconds, as the store sees it.
type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// A [`NonceStore`] in this process's memory, for a single replica and tests.
/// Forgets nonces whose receipts have expired.
pub struct MemoryNonceStore {
    used: Mutex<HashMap<(TenantId, Nonce), i64>>,
    clock: Clock,
}

impl MemoryNonceStore {
    /// An empty store on the system clock.
    pub fn new() -> MemoryNonceStore {
        MemoryNonceStore::with_clock(system_now)
    }

    /// An empty store that reads the time from `clock` (Unix seconds).
    pub fn with_clock(clock: impl Fn() -> i64 + Send + Sync + 'static) -> MemoryNonceStore {
        MemoryNonceStore {
            used: Mutex::new(HashMap::new()),
            clock: Box::new(clock),
        }
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.used.lock().map_or(0, |used| used.len())
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryNonceStore {
    fn default() -> Self {
        MemoryNonceStore::new()
    }
}

impl fmt::Debug for MemoryNonceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNonceStore")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl NonceStore for MemoryNonceStore {
    fn consume(
        &self,
        tenant: &TenantId,
        nonce: &Nonce,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError> {
        let now = (self.clock)();
        let dead = |expires_at: i64| expires_at.saturating_add(CLOCK_SKEW_SECS) < now;
        // A poisoned lock means another thread panicked mid-update: refuse
        // rather than guess whether the nonce was recorded.
        let mut used = self
            .used
            .lock()
            .map_err(|_| NonceStoreError::Unavailable("a thread panicked holding it".into()))?;
        used.retain(|_, &mut expires_at| !dead(expires_at));
        if dead(expires_at) {
            return Ok(false);
        }
        let key = (tenant.clone(), *nonce);
        if used.contains_key(&key) {
            return Ok(false);
        }
        used.insert(key, expires_at);
        Ok(true)
    }
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    fn tenant(n: u8) -> TenantId {
        format!("72f988bf-86f1-41af-91ab-2d7cd011db{n:02x}")
            .parse()
            .unwrap()
    }

    #[test]
    fn nonces_round_trip_as_hex_and_garbage_is_refused() {
        let n = Nonce::generate().unwrap();
        assert_ne!(n, Nonce::generate().unwrap());
        assert_eq!(n.to_string().len(), 32);
        assert_eq!(n.to_string().parse::<Nonce>().unwrap(), n);
        for bad in ["", "00", &"A".repeat(32), &"g".repeat(32), &"0".repeat(34)] {
            assert!(bad.parse::<Nonce>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_nonce_is_consumed_once_per_tenant() {
        let store = MemoryNonceStore::with_clock(|| 1_000);
        let nonce = Nonce::generate().unwrap();
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100), Ok(true));
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100), Ok(false));
        // Another tenant's receipt may (by chance) carry the same nonce.
        assert_eq!(store.consume(&tenant(2), &nonce, 1_100), Ok(true));
    }

    #[test]
    fn a_nonce_is_single_use_under_concurrency() {
        let store = Arc::new(MemoryNonceStore::with_clock(|| 1_000));
        let nonce = Nonce::generate().unwrap();
        let winners = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (store, winners, barrier) = (store.clone(), winners.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..100 {
                        if store.consume(&tenant(1), &nonce, 1_100).unwrap() {
                            winners.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(winners.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn expired_nonces_are_forgotten_and_never_accepted() {
        let now = Arc::new(AtomicI64::new(1_000));
        let clock = now.clone();
        let store = MemoryNonceStore::with_clock(move || clock.load(Ordering::SeqCst));
        let nonce = Nonce::generate().unwrap();
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120), Ok(true));
        assert_eq!(store.len(), 1);
        // Within the clock skew the receipt could still verify: remembered.
        now.store(1_120 + CLOCK_SKEW_SECS, Ordering::SeqCst);
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120), Ok(false));
        assert_eq!(store.len(), 1);
        // Past it, forgotten; and a consume that late is refused, not recorded.
        now.store(1_121 + CLOCK_SKEW_SECS, Ordering::SeqCst);
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120), Ok(false));
        assert!(store.is_empty());
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120), Ok(false));
    }
}
