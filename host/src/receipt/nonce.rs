//! One-time nonces: each receipt carries one, and the executor consumes it
//! before its writes, so a receipt authorizes one execution however often it
//! is presented. Two stores: [`MemoryNonceStore`] (one process) and
//! [`SqliteNonceStore`] (the audit log's database: survives restarts, shared
//! by the processes that open it).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::audit::{Db, Pruning};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::CLOCK_SKEW_SECS;
use crate::audit::AuditLog;
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

/// What [`NonceStore::consume`] returns: a boxed future, so that the trait
/// stays usable as `Arc<dyn NonceStore>` (an `async fn` in a trait is not).
pub type ConsumeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<bool, NonceStoreError>> + Send + 'a>>;

/// Remembers which receipt nonces have been used, per tenant.
///
/// Shared by every replica that executes writes (an in-memory store is right
/// only for a single process; [`SqliteNonceStore`] shares the audit log's
/// database). Call [`NonceStore::consume`] only after
/// [`verify`](super::verify) accepted the receipt, so that `expires_at` is
/// authentic.
pub trait NonceStore: Send + Sync {
    /// Marks `nonce` used for `tenant`. Resolves to `true` the first time
    /// only: of any number of concurrent calls with the same tenant and
    /// nonce, exactly one gets `true`. A nonce may be forgotten once its
    /// receipt can no longer verify (`expires_at` plus [`CLOCK_SKEW_SECS`]
    /// has passed), so a nonce that is already that old is refused (`false`)
    /// rather than recorded.
    fn consume<'a>(
        &'a self,
        tenant: &'a TenantId,
        nonce: &'a Nonce,
        expires_at: i64,
    ) -> ConsumeFuture<'a>;
}

/// The current time in Unix seconds, as the store sees it.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

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
            clock: Arc::new(clock),
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

    /// [`NonceStore::consume`], answered at once: memory needs no waiting,
    /// so code that holds this concrete type need not be async.
    pub fn consume(
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
    fn consume<'a>(
        &'a self,
        tenant: &'a TenantId,
        nonce: &'a Nonce,
        expires_at: i64,
    ) -> ConsumeFuture<'a> {
        Box::pin(std::future::ready(MemoryNonceStore::consume(
            self, tenant, nonce, expires_at,
        )))
    }
}

/// How long after a receipt can no longer verify its nonce is still kept by
/// [`SqliteNonceStore`]: 5 minutes. Replicas sharing the database each prune
/// by their own clock; a replica whose clock runs ahead must not forget a
/// nonce that a replica whose clock runs behind would still accept, so rows
/// are kept this much longer than any receipt can verify. Clocks that
/// disagree by more than this (plus [`CLOCK_SKEW_SECS`]) are broken anyway.
pub const NONCE_RETENTION_MARGIN_SECS: i64 = 300;

/// A [`NonceStore`] in the audit log's SQLite database (the
/// `receipt_nonces` table, created by the log's migrations), so that a
/// consumed nonce survives a restart and is shared by every process that
/// opens the same file.
///
/// Consumption is one `INSERT ... ON CONFLICT DO NOTHING` against the
/// primary key `(tenant, nonce)`: the database, not this process, decides
/// which of several concurrent consumers wins, so exactly one does, whichever
/// process or connection it runs on. Rows whose receipts can no longer verify
/// (plus [`NONCE_RETENTION_MARGIN_SECS`]) are deleted as later nonces are
/// consumed, at most once a [`Pruning::EVERY`] seconds.
///
/// The SQL is portable (`$n` placeholders, `ON CONFLICT`), so a PostgreSQL
/// backend for several replicas needs only its own pool and migration.
pub struct SqliteNonceStore {
    db: Db,
    clock: Clock,
    pruning: Pruning,
}

impl SqliteNonceStore {
    /// A store in `log`'s database, on the system clock.
    pub fn new(log: &AuditLog) -> SqliteNonceStore {
        SqliteNonceStore::with_clock(log, system_now)
    }

    /// A store in `log`'s database that reads the time from `clock` (Unix
    /// seconds).
    pub fn with_clock(
        log: &AuditLog,
        clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> SqliteNonceStore {
        SqliteNonceStore {
            db: log.db().clone(),
            clock: Arc::new(clock),
            pruning: Pruning::new(),
        }
    }

    /// How many nonces are remembered, expired ones not yet pruned included.
    pub async fn len(&self) -> Result<u64, NonceStoreError> {
        let count: i64 = self
            .db
            .run(|c| {
                c.prepare_cached("SELECT COUNT(*) FROM receipt_nonces")?
                    .query_row([], |r| r.get(0))
            })
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// True when no nonce is remembered.
    pub async fn is_empty(&self) -> Result<bool, NonceStoreError> {
        Ok(self.len().await? == 0)
    }

    async fn consume_now(
        &self,
        tenant: &TenantId,
        nonce: &Nonce,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError> {
        let now = (self.clock)();
        let prune = self.pruning.due(now);
        let expired = expires_at.saturating_add(CLOCK_SKEW_SECS) < now;
        if !prune && expired {
            return Ok(false);
        }
        let inserted = self
            .db
            .run(|c| {
                if prune {
                    let forget_before = now
                        .saturating_sub(CLOCK_SKEW_SECS)
                        .saturating_sub(NONCE_RETENTION_MARGIN_SECS);
                    c.prepare_cached("DELETE FROM receipt_nonces WHERE expires_at < $1")?
                        .execute([forget_before])?;
                }
                if expired {
                    return Ok(0);
                }
                c.prepare_cached(
                    "INSERT INTO receipt_nonces (tenant, nonce, expires_at, consumed_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, nonce) DO NOTHING",
                )?
                .execute(rusqlite::params![
                    tenant.as_str(),
                    nonce.to_string(),
                    expires_at,
                    now
                ])
            })
            .await
            .map_err(unavailable)?;
        Ok(inserted == 1)
    }
}

impl fmt::Debug for SqliteNonceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteNonceStore").finish_non_exhaustive()
    }
}

impl NonceStore for SqliteNonceStore {
    fn consume<'a>(
        &'a self,
        tenant: &'a TenantId,
        nonce: &'a Nonce,
        expires_at: i64,
    ) -> ConsumeFuture<'a> {
        Box::pin(self.consume_now(tenant, nonce, expires_at))
    }
}

fn unavailable(e: crate::audit::DbError) -> NonceStoreError {
    NonceStoreError::Unavailable(e.to_string())
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

    async fn open_log(path: &std::path::Path) -> AuditLog {
        AuditLog::open(path).await.unwrap()
    }

    #[tokio::test]
    async fn the_trait_object_answers_like_the_memory_store() {
        let store: Arc<dyn NonceStore> = Arc::new(MemoryNonceStore::with_clock(|| 1_000));
        let nonce = Nonce::generate().unwrap();
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100).await, Ok(true));
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100).await, Ok(false));
    }

    #[tokio::test]
    async fn sqlite_consumes_once_per_tenant_and_refuses_dead_nonces() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(&dir.path().join("audit.db")).await;
        let store = SqliteNonceStore::with_clock(&log, || 1_000);
        let nonce = Nonce::generate().unwrap();
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100).await, Ok(true));
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100).await, Ok(false));
        assert_eq!(store.consume(&tenant(2), &nonce, 1_100).await, Ok(true));
        // Past its receipt's expiry (and the skew): refused, not recorded.
        let late = Nonce::generate().unwrap();
        let dead = 1_000 - CLOCK_SKEW_SECS - 1;
        assert_eq!(store.consume(&tenant(1), &late, dead).await, Ok(false));
        assert_eq!(store.len().await, Ok(2));
        assert_eq!(store.is_empty().await, Ok(false));
    }

    #[tokio::test]
    async fn sqlite_prunes_expired_nonces_after_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(&dir.path().join("audit.db")).await;
        let now = Arc::new(AtomicI64::new(1_000));
        let clock = now.clone();
        let store = SqliteNonceStore::with_clock(&log, move || clock.load(Ordering::SeqCst));
        let nonce = Nonce::generate().unwrap();
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120).await, Ok(true));
        // Dead, but within the retention margin: kept (another replica's
        // clock may still accept the receipt), and still refused.
        now.store(1_120 + CLOCK_SKEW_SECS + 1, Ordering::SeqCst);
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120).await, Ok(false));
        assert_eq!(store.len().await, Ok(1));
        // Past the margin: the next consumption prunes it.
        now.store(
            1_120 + CLOCK_SKEW_SECS + NONCE_RETENTION_MARGIN_SECS + 1,
            Ordering::SeqCst,
        );
        let fresh = Nonce::generate().unwrap();
        let later = 1_120 + CLOCK_SKEW_SECS + NONCE_RETENTION_MARGIN_SECS + 100;
        assert_eq!(store.consume(&tenant(1), &fresh, later).await, Ok(true));
        assert_eq!(store.len().await, Ok(1), "the old nonce is gone");
        assert_eq!(store.consume(&tenant(1), &nonce, 1_120).await, Ok(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_single_use_holds_across_two_handles_on_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        // Two logs, two pools: as two processes sharing the file would be.
        let (a, b) = (open_log(&path).await, open_log(&path).await);
        let stores: [Arc<dyn NonceStore>; 2] = [
            Arc::new(SqliteNonceStore::with_clock(&a, || 1_000)),
            Arc::new(SqliteNonceStore::with_clock(&b, || 1_000)),
        ];
        for _ in 0..5 {
            let nonce = Nonce::generate().unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..16 {
                let store = stores[i % 2].clone();
                tasks.spawn(async move { store.consume(&tenant(1), &nonce, 1_100).await });
            }
            let mut winners = 0;
            while let Some(result) = tasks.join_next().await {
                if result.unwrap().unwrap() {
                    winners += 1;
                }
            }
            assert_eq!(winners, 1);
        }
    }

    #[tokio::test]
    async fn a_consumed_nonce_stays_consumed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let nonce = Nonce::generate().unwrap();
        let log = open_log(&path).await;
        let store = SqliteNonceStore::with_clock(&log, || 1_000);
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100).await, Ok(true));
        drop(store);
        log.close().await;

        let reopened = open_log(&path).await;
        let store = SqliteNonceStore::with_clock(&reopened, || 1_000);
        assert_eq!(store.consume(&tenant(1), &nonce, 1_100).await, Ok(false));
        // A store in memory would have forgotten it.
        assert_eq!(
            MemoryNonceStore::with_clock(|| 1_000).consume(&tenant(1), &nonce, 1_100),
            Ok(true)
        );
    }
}
