//! The activity log: append-only, one sha256 hash chain per tenant, checked
//! offline by `latchkey audit verify` (DESIGN.md, guardrail 4).
//!
//! # Entries
//!
//! Every entry has a `tenant`, a `seq` (1, 2, 3... within that tenant's
//! chain), a [`Kind`], an `at` (milliseconds since the Unix epoch, UTC), a
//! JSON `body`, the `prev_sha256` of the entry before it in the chain (64
//! zeros, [`EntryHash::GENESIS`], for the first) and its own `sha256`. Bodies
//! carry what the step produced: the request, the facts and their digest, the
//! module hash, the decision, the receipt (an opaque JSON envelope), the
//! verification method, Graph request ids, the outcome.
//!
//! # Canonical bytes
//!
//! `sha256` is the SHA-256 of the entry's canonical bytes, written as 64
//! lowercase hex digits. The canonical bytes are the UTF-8 JSON text of the
//! array
//!
//! ```text
//! [v, tenant, seq, kind, at, prev_sha256, body]
//! ```
//!
//! where `v` is [`FORMAT_VERSION`] (1), `seq` and `at` are JSON integers,
//! `tenant`, `kind` and `prev_sha256` are strings exactly as stored, and `body`
//! is the body with every object's keys sorted, recursively, by their UTF-8
//! bytes. The text is serde_json's compact output: no whitespace; strings
//! escape only `"`, `\` and control characters (`\b \f \n \r \t`, others as
//! `\u00xx`, lowercase hex), everything else, non-ASCII included, is written as
//! is; integers are written exactly. Prefer strings and integers in bodies: a
//! float is written the way serde_json writes it, which other JSON libraries
//! may not reproduce. Key order is sorted because serde_json's `Map` is a
//! `BTreeMap` (its `preserve_order` feature must stay off; [`canonicalize`]
//! sorts anyway, and a unit test pins it). For the common case (no floats,
//! keys within the Basic Multilingual Plane) this equals RFC 8785 (JCS) and
//! Python's `json.dumps(entry, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)`.
//!
//! `latchkey audit export --format jsonl` writes one entry per line as a JSON
//! object with the fields above plus `sha256` (keys sorted), so a chain can be
//! checked with no Latchkey code: rebuild the array, hash it, compare, and
//! check each `prev_sha256` against the line before it of the same tenant.
//!
//! # Intent and outcome
//!
//! A Graph write is bracketed: [`AuditLog::append_intent`] before it,
//! [`AuditLog::append_outcome`] after it. An outcome's body is
//! `{"intent": {"seq": n, "sha256": h}, "outcome": <caller's body>}`, so it is
//! bound to the exact intent it answers; an intent has at most one outcome. If
//! the process stops in between, the intent stays unanswered, and
//! [`AuditLog::reconcile`], run at start-up, answers every intent older than
//! the grace period with an outcome whose status is `unknown` and whose reason
//! tells the auditor to look at Graph's own directory audit.
//!
//! # Secrets
//!
//! Callers pass secret-free bodies: never a password, Temporary Access Pass,
//! one-time code or token. Every body is checked before it is appended and
//! refused ([`AuditError::SecretInBody`]) if a key looks like a secret; see
//! [`redact`] for what counts and how to log a request's shape without its
//! secret.
//!
//! # What verification can and cannot show
//!
//! [`AuditLog::verify`] recomputes every hash from the stored fields and walks
//! each chain, so it finds an altered entry (hash mismatch), deleted entries
//! (a seq gap), an inserted one (a duplicate seq or a broken link) and
//! reordered ones (a link to a later entry), and names the first bad entry of
//! each chain. A chain has no secret, so whoever can write the database can
//! also drop the last entries, or rewrite a chain's tail with fresh hashes;
//! only a copy of the chain's head kept elsewhere ([`TenantReport::head`])
//! shows that. The triggers that refuse UPDATE and DELETE are an honest extra
//! guard, reported when missing, not the protection.
//!
//! # Storage
//!
//! SQLite is the embedded default: the file is created if missing, in WAL
//! mode with foreign keys on; migrations are embedded and run by sqlx's
//! migrator. Reads go through sqlx pools; writes do not (below).
//!
//! Every write of this process, the log's and the state's kept beside it
//! in the same file (conversations, pending verifications, approvals,
//! receipt nonces, Teams connector URLs; [`AuditLog::db`]), goes through
//! **one connection**, so writers queue in the process instead of meeting
//! SQLite's busy handler, which sleeps. Reads have connections of their own
//! (WAL readers never wait for the writer).
//!
//! That connection is a [`Db`]: a rusqlite connection behind a tokio
//! mutex, whose statements run on the thread of the task that holds the
//! mutex ([`Db::run`]), prepared once and cached. sqlx runs each statement
//! of a connection on a worker thread of its own, a round trip (two thread
//! wake-ups) per statement, all of it under the one writer's queue: under
//! load that round trip was most of the service's time, and the queue most
//! of its latency (see BENCHMARKS.md). A statement here takes microseconds.
//! The cost: while another process holds the file's write lock, a
//! statement waits for it, up to five seconds, on a runtime thread rather
//! than on a thread of its own. Only a second `latchkey serve` on the same
//! file would: every other command opens the log read-only.
//!
//! That connection commits with `synchronous = NORMAL` (no fsync), and an
//! append returns only after the write-ahead log has been fsynced behind
//! its commit: exactly what `synchronous = FULL` adds in WAL mode, so an
//! intent is on disk before the Graph write it announces. WAL frames reach
//! the disk in order, so that fsync also makes every state commit before it
//! durable: every Graph write is preceded by an intent, so whatever led to
//! it (the nonce consumed included) is on disk before it happens. A crash
//! can lose a conversation's last turn, never an entry.
//!
//! Appends are **group-committed**: one writer at a time (a tokio mutex)
//! writes every append queued meanwhile, each reading its chain's head and
//! inserting, in one `BEGIN IMMEDIATE` transaction and one fsync, then
//! answers each caller (an append that fails its own checks, an outcome for
//! an entry that is not an intent, fails alone; a database failure fails
//! the group). Other processes sharing the file queue behind the
//! transaction (SQLite's busy timeout); the unique `(tenant, seq)` index is
//! the backstop, turning a lost race into an error instead of a fork.
//!
//! The SQL is kept portable (`$n` placeholders, row-value comparisons,
//! `RETURNING`, `NOT EXISTS`) so that a PostgreSQL backend for several
//! replicas changes only this: the pool type, the writes (rusqlite calls
//! in [`Db::run`] closures, the same statements sent through a sqlx
//! `PgPool` instead: across a network the round trip is the network's
//! anyway), its own migrations (an identity column, a plpgsql trigger
//! function, and better, UPDATE/DELETE/TRUNCATE revoked from the service's
//! role), `BEGIN` plus
//! `pg_advisory_xact_lock(hashtext(tenant))` in place of `BEGIN IMMEDIATE`
//! (the mutex only serialises one process), and the trigger check reading
//! `pg_trigger` rather than `sqlite_master`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension as _, TransactionBehavior};
use serde_json::{Value, json};
use sqlx::Connection as _;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::Mutex;

use crate::tenant::TenantId;

mod entry;
pub mod records;
mod redaction;
pub mod replay;
mod verify;

use entry::{Fields, hash_fields};
use verify::{StoredRow, Walk};

pub use entry::{
    Entry, EntryHash, EntryId, FORMAT_VERSION, Kind, ParseEntryHashError, ParseEntryIdError,
    ParseKindError, canonicalize,
};
pub use redaction::{REDACTED, find_secret, is_secret_key, redact};
pub use verify::{Finding, Problem, Report, TenantReport};

/// The schema, embedded in the binary.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How old an unanswered intent must be before [`AuditLog::reconcile`]
/// answers it: 15 minutes, far longer than one Graph write with its retries,
/// so that reconciliation does not race a write that is merely slow.
pub const DEFAULT_RECONCILE_GRACE: Duration = Duration::from_secs(15 * 60);

/// The reason in the outcome that reconciliation appends.
pub const UNKNOWN_OUTCOME_REASON: &str = "no outcome recorded: the process stopped between \
     intent and outcome; check the Graph directory audit for the write";

/// The append-only triggers, as the migration names them.
const GUARDS: [&str; 2] = ["audit_entries_no_update", "audit_entries_no_delete"];

/// Rows read per query when walking the log, to bound memory. Small in
/// tests, so that every test walks across pages.
const PAGE: u32 = if cfg!(test) { 7 } else { 500 };

const COLUMNS: &str = "id, v, tenant, seq, kind, at, body, prev_sha256, sha256, intent_seq";

/// Why the log could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The database file does not exist (when opening an existing log).
    #[error("cannot read {}: {source}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database cannot be opened or is not SQLite.
    #[error("cannot open the audit database {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why (sqlx's error, or SQLite's through the writing connection).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database has no activity log in it.
    #[error("{} is not a Latchkey audit database: it has no audit_entries table", path.display())]
    NotAnAuditLog {
        /// The file.
        path: PathBuf,
    },
    /// The schema could not be brought up to date.
    #[error("cannot bring the audit database {} up to date: {source}", path.display())]
    Migrate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: MigrateError,
    },
    /// A query failed.
    #[error("audit database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A group of appends could not be committed, or the write-ahead log
    /// not fsynced behind it: none of them is known to be on disk.
    #[error("audit database error: {0}")]
    Commit(String),
    /// A body holds a secret-looking key (see [`redact`]).
    #[error(
        "refusing to log a body with a secret-looking key at {pointer}: audit bodies must be \
         secret-free (record that a secret was set, never the secret; see audit::redact)"
    )]
    SecretInBody {
        /// The JSON pointer of the key.
        pointer: String,
    },
    /// An outcome was appended without naming its intent.
    #[error("an outcome is appended with append_outcome, which names the intent it answers")]
    OutcomeWithoutIntent,
    /// The entry an outcome answers is not an intent.
    #[error("{intent} is not an intent in the log")]
    NotAnIntent {
        /// The entry named.
        intent: EntryId,
    },
    /// The intent already has an outcome (reconciliation got there first, or
    /// the caller answered twice).
    #[error("{intent} already has an outcome ({outcome}); record a late result as a note")]
    OutcomeExists {
        /// The intent.
        intent: EntryId,
        /// Its outcome.
        outcome: EntryId,
    },
    /// The system clock is unusable.
    #[error("the system clock is before 1970 or beyond 292 million years")]
    Clock,
    /// A stored entry does not parse.
    #[error(
        "the entry at tenant {tenant}, seq {seq} cannot be read ({reason}); run `latchkey audit verify`"
    )]
    Corrupt {
        /// The tenant, as stored.
        tenant: String,
        /// The seq, as stored.
        seq: i64,
        /// What does not parse.
        reason: String,
    },
    /// A body could not be written as JSON.
    #[error("cannot encode an entry: {0}")]
    Encode(#[from] serde_json::Error),
    /// The export's destination failed.
    #[error("cannot write the export: {0}")]
    Export(#[source] std::io::Error),
}

/// Which chains to verify.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every tenant's.
    All,
    /// One tenant's.
    Tenant(&'a TenantId),
}

/// The activity log. Cheap to share behind an `Arc`; appends from any number
/// of tasks are serialised, reads are not.
#[derive(Debug)]
pub struct AuditLog {
    /// The log's own reads.
    reads: SqlitePool,
    /// The one writing connection, for appends and the state beside the
    /// log: see "Storage". Read-only when the log is.
    db: Db,
    /// The write-ahead log, fsynced after each group of appends; `None`
    /// when read-only.
    wal: Option<PathBuf>,
    path: PathBuf,
    /// The single writer of this process: appends to a chain must not
    /// interleave, or two entries would claim the same predecessor.
    writer: std::sync::Arc<Mutex<()>>,
    /// Appends waiting for the writer (see "Storage": group commit).
    queue: std::sync::Mutex<Vec<Queued>>,
    grace: Duration,
}

/// An append waiting to be written, and where its answer goes.
#[derive(Debug)]
struct Queued {
    append: Append,
    done: tokio::sync::oneshot::Sender<Result<EntryId, AuditError>>,
}

/// What one append writes.
#[derive(Debug)]
struct Append {
    tenant: TenantId,
    kind: Kind,
    body: Value,
    /// The intent's seq, for an outcome.
    answers: Option<i64>,
}

/// The most appends written in one transaction.
const MAX_GROUP: usize = 512;

/// When a store in the database deletes its expired rows: at most once a
/// [`Pruning::EVERY`] seconds of its clock, at the first write that finds a
/// prune due, rather than at every write. Pruning only keeps tables small:
/// no lookup takes an expired row as live (each checks the expiry, or, for
/// a conversation's sign-in flow, the verification flow it leads to does),
/// and a statement saved per write is a round trip to SQLite saved.
#[derive(Debug)]
pub struct Pruning {
    /// Unix seconds from which the next prune is due.
    next: std::sync::atomic::AtomicI64,
}

impl Pruning {
    /// Seconds between prunes.
    pub const EVERY: i64 = 60;

    /// A prune is due at once.
    pub fn new() -> Pruning {
        Pruning {
            next: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// True, for one caller, when a prune is due at `now`; the next is then
    /// due [`Pruning::EVERY`] seconds later. A clock moved back makes the
    /// next prune no later than `now + EVERY`.
    pub fn due(&self, now: i64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let next = self.next.load(Relaxed);
        let due = now >= next || next > now.saturating_add(Pruning::EVERY);
        due && self
            .next
            .compare_exchange(next, now.saturating_add(Pruning::EVERY), Relaxed, Relaxed)
            .is_ok()
    }
}

impl Default for Pruning {
    fn default() -> Pruning {
        Pruning::new()
    }
}

/// The process's one writing connection to the database (see "Storage"),
/// shared by cloning. Statements run in [`Db::run`], briefly, never across
/// an append or a call to another service.
#[derive(Clone, Debug)]
pub struct Db(std::sync::Arc<Mutex<Option<rusqlite::Connection>>>);

/// Why a statement on the writing connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The log was closed.
    #[error("the database is closed")]
    Closed,
    /// SQLite refused or failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Prepared statements kept per connection: every statement the service
/// writes with, with room to spare.
const STATEMENT_CACHE: usize = 64;

impl Db {
    /// The writing connection to `path` (see "Storage" for its settings);
    /// read-only, for a log opened read-only.
    fn open(path: &Path, read_only: bool) -> Result<Db, rusqlite::Error> {
        use rusqlite::OpenFlags;
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let connection = rusqlite::Connection::open_with_flags(path, flags)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // As long as sqlx's default: another process holding the write lock
        // is waited for, not failed (see "Storage").
        connection.busy_timeout(BUSY_TIMEOUT)?;
        if !read_only {
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            connection.pragma_update(None, "foreign_keys", "ON")?;
        }
        Ok(Db(std::sync::Arc::new(Mutex::new(Some(connection)))))
    }

    /// Runs `f` on the connection, once the statements queued before have
    /// finished. `f` runs on the calling task's thread: a statement here
    /// takes microseconds, less than handing it to another thread and back
    /// (sqlx's way, two thread wake-ups per statement). Keep `f` to a
    /// statement or a transaction: everything else waits for it.
    pub async fn run<T>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let mut connection = self.0.lock().await;
        let connection = connection.as_mut().ok_or(DbError::Closed)?;
        Ok(f(connection)?)
    }

    /// Closes the connection (statements already waiting finish first);
    /// clones get errors from then on.
    async fn close(&self) {
        let connection = self.0.lock().await.take();
        if let Some(connection) = connection {
            let _ = connection.close();
        }
    }
}

/// How long a statement waits for another process's write lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`AuditError::Open`] for `path`, whichever library failed to open it.
fn open_failed(
    path: &Path,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> AuditError {
    AuditError::Open {
        path: path.to_owned(),
        source: source.into(),
    }
}

/// A pool of at most `max` connections to the database file. sqlx pings a
/// connection before lending it by default, which for SQLite is one more
/// round trip to the connection's worker thread per statement and tests
/// nothing a local file can lose; here it is off.
fn pool_options(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
}

impl AuditLog {
    /// Opens the log at `path`, creating the file and schema if missing.
    pub async fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true);
        let open_error = |source: sqlx::Error| open_failed(path, source);
        // The schema is brought up to date by sqlx's migrator, on a
        // connection of its own, closed before the writing one opens.
        let mut migrating = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        MIGRATOR
            .run(&mut migrating)
            .await
            .map_err(|source| AuditError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        migrating.close().await.map_err(open_error)?;
        // The one writing connection (see "Storage" for its durability).
        let writes = Db::open(path, false).map_err(|source| open_failed(path, source))?;
        let reads = pool_options(4)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(AuditLog::with_pools(
            reads,
            writes,
            Some(PathBuf::from(wal)),
            path,
        ))
    }

    /// Opens an existing log for reading only: no file is created, no
    /// migration is run, nothing is written. For verification and export.
    pub async fn open_read_only(path: &Path) -> Result<AuditLog, AuditError> {
        std::fs::metadata(path).map_err(|source| AuditError::Missing {
            path: path.to_owned(),
            source,
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .read_only(true);
        let open_error = |source: sqlx::Error| open_failed(path, source);
        let pool = pool_options(1)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        // The first query is where SQLite finds out the file is not a database.
        let tables: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'audit_entries'",
        )
        .fetch_optional(&pool)
        .await
        .map_err(open_error)?;
        if tables.is_none() {
            return Err(AuditError::NotAnAuditLog {
                path: path.to_owned(),
            });
        }
        let db = Db::open(path, true).map_err(|source| open_failed(path, source))?;
        Ok(AuditLog::with_pools(pool, db, None, path))
    }

    /// `db` is the one writing connection (read-only when the log is);
    /// `wal` is fsynced after each group of appends.
    fn with_pools(reads: SqlitePool, db: Db, wal: Option<PathBuf>, path: &Path) -> AuditLog {
        AuditLog {
            reads,
            db,
            wal,
            path: path.to_owned(),
            writer: std::sync::Arc::new(Mutex::new(())),
            queue: std::sync::Mutex::new(Vec::new()),
            grace: DEFAULT_RECONCILE_GRACE,
        }
    }

    /// Sets how old an unanswered intent must be for [`AuditLog::reconcile`]
    /// (default [`DEFAULT_RECONCILE_GRACE`]).
    pub fn with_reconcile_grace(mut self, grace: Duration) -> AuditLog {
        self.grace = grace;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection for the state kept beside the log in its database
    /// (conversations, verifications, approvals, receipt nonces): the
    /// process's one writing connection, committing without an fsync of its
    /// own (see the module's "Storage" for why that is safe). Every
    /// migration in `host/migrations` has run on it when the log was opened
    /// with [`AuditLog::open`].
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Closes the connections, letting SQLite checkpoint its write-ahead log.
    pub async fn close(self) {
        self.db.close().await;
        self.reads.close().await;
    }

    /// Appends an entry to the tenant's chain. Outcomes go through
    /// [`AuditLog::append_outcome`].
    pub async fn append(
        &self,
        tenant: &TenantId,
        kind: Kind,
        body: Value,
    ) -> Result<EntryId, AuditError> {
        if kind == Kind::Outcome {
            return Err(AuditError::OutcomeWithoutIntent);
        }
        check_secret_free(&body)?;
        self.write(tenant, kind, body, None).await
    }

    /// Appends an intent: call it before a Graph write, and answer it with
    /// [`AuditLog::append_outcome`] after.
    pub async fn append_intent(
        &self,
        tenant: &TenantId,
        body: Value,
    ) -> Result<EntryId, AuditError> {
        self.append(tenant, Kind::Intent, body).await
    }

    /// Appends the outcome of an intent, in the intent's chain. The intent id
    /// carries its tenant, so an outcome cannot land in another chain.
    pub async fn append_outcome(
        &self,
        intent: &EntryId,
        body: Value,
    ) -> Result<EntryId, AuditError> {
        check_secret_free(&body)?;
        // Ids come from stored seqs, so this fits; if not, no entry matches.
        let seq = i64::try_from(intent.seq()).unwrap_or(i64::MAX);
        self.write(intent.tenant(), Kind::Outcome, body, Some(seq))
            .await
    }

    /// Answers every intent older than the grace period that has no outcome,
    /// with an outcome of status `unknown` ([`UNKNOWN_OUTCOME_REASON`]). Run
    /// at start-up; running it again appends nothing new. Returns the
    /// outcomes appended.
    pub async fn reconcile(&self, now: SystemTime) -> Result<Vec<EntryId>, AuditError> {
        let grace = i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = unix_ms(now)?.saturating_sub(grace);
        let stale: Vec<(String, i64)> = sqlx::query_as(
            "SELECT i.tenant, i.seq FROM audit_entries i \
             WHERE i.kind = 'intent' AND i.at <= $1 AND NOT EXISTS \
             (SELECT 1 FROM audit_entries o WHERE o.tenant = i.tenant AND o.intent_seq = i.seq) \
             ORDER BY i.tenant, i.seq",
        )
        .bind(cutoff)
        .fetch_all(&self.reads)
        .await?;
        let mut appended = Vec::new();
        for (tenant, seq) in stale {
            let tenant_id: TenantId = tenant.parse().map_err(|e| AuditError::Corrupt {
                tenant: tenant.clone(),
                seq,
                reason: format!("{e}"),
            })?;
            let body = json!({"status": "unknown", "reason": UNKNOWN_OUTCOME_REASON});
            match self.write(&tenant_id, Kind::Outcome, body, Some(seq)).await {
                Ok(id) => {
                    tracing::warn!(tenant = %tenant_id, intent = seq, outcome = %id,
                        "an intent had no outcome; recorded its outcome as unknown");
                    appended.push(id);
                }
                // Answered since the query, by this or another process.
                Err(AuditError::OutcomeExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(appended)
    }

    /// Every entry of a tenant's chain, in chain order.
    pub async fn entries(&self, tenant: &TenantId) -> Result<Vec<Entry>, AuditError> {
        let mut out = Vec::new();
        let mut after = (tenant.as_str().to_owned(), i64::MIN, i64::MIN);
        loop {
            let page = self.page(Scope::Tenant(tenant), &after).await?;
            for row in &page {
                out.push(to_entry(row)?);
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => {
                    after = (last.tenant.clone(), last.seq, last.row);
                }
                _ => return Ok(out),
            }
        }
    }

    /// How many entries of each kind (by its stored name, as
    /// [`Kind::as_str`]) a tenant's chain holds; kinds it has none of are
    /// absent.
    pub async fn counts(
        &self,
        tenant: &TenantId,
    ) -> Result<std::collections::BTreeMap<String, u64>, AuditError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, COUNT(*) FROM audit_entries WHERE tenant = $1 GROUP BY kind",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(kind, n)| (kind, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// The newest `limit` entries of a tenant's chain, newest first (for the
    /// admin API; [`AuditLog::verify`] is what checks them).
    pub async fn recent(&self, tenant: &TenantId, limit: u32) -> Result<Vec<Entry>, AuditError> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            String,
            i64,
            String,
            i64,
            String,
            String,
            String,
            Option<i64>,
        )> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM audit_entries WHERE tenant = $1 \
             ORDER BY seq DESC, id DESC LIMIT $2"
        ))
        .bind(tenant.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(
                |(row, v, tenant, seq, kind, at, body, prev_sha256, sha256, intent_seq)| {
                    to_entry(&StoredRow {
                        row,
                        v,
                        tenant,
                        seq,
                        kind,
                        at,
                        body,
                        prev_sha256,
                        sha256,
                        intent_seq,
                    })
                },
            )
            .collect()
    }

    /// Checks the chains in `scope`: recomputes every entry's hash from its
    /// stored fields and follows the seq numbers and prev links; reports, per
    /// tenant, the entry count, the head, and the first bad entry.
    pub async fn verify(&self, scope: Scope<'_>) -> Result<Report, AuditError> {
        let mut report = Report {
            missing_guards: self.missing_guards().await?,
            ..Report::default()
        };
        let mut walk: Option<Walk> = None;
        let mut after = match scope {
            Scope::All => (String::new(), i64::MIN, i64::MIN),
            Scope::Tenant(t) => (t.as_str().to_owned(), i64::MIN, i64::MIN),
        };
        loop {
            let page = self.page(scope, &after).await?;
            for row in &page {
                if walk.as_ref().map(Walk::tenant) != Some(row.tenant.as_str()) {
                    report.tenants.extend(walk.take().map(Walk::finish));
                }
                let w = walk.get_or_insert_with(|| Walk::new(&row.tenant));
                if let Err(problem) = w.step(row) {
                    let problem = self.diagnose(row, problem).await?;
                    w.fail(row, problem);
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => {
                    after = (last.tenant.clone(), last.seq, last.row);
                }
                _ => break,
            }
        }
        report.tenants.extend(walk.map(Walk::finish));
        if let (Scope::Tenant(t), true) = (scope, report.tenants.is_empty()) {
            report.tenants.push(Walk::new(t.as_str()).finish());
        }
        Ok(report)
    }

    /// Writes every entry as one line of canonical JSON, tenant by tenant,
    /// each chain in order; returns the number of lines.
    pub async fn export_jsonl<W: Write>(&self, out: &mut W) -> Result<u64, AuditError> {
        let mut lines = 0u64;
        let mut after = (String::new(), i64::MIN, i64::MIN);
        loop {
            let page = self.page(Scope::All, &after).await?;
            for row in &page {
                let body: Value = serde_json::from_str(&row.body).map_err(|e| corrupt(row, e))?;
                let line = canonicalize(&json!({
                    "v": row.v,
                    "tenant": row.tenant,
                    "seq": row.seq,
                    "kind": row.kind,
                    "at": row.at,
                    "body": body,
                    "prev_sha256": row.prev_sha256,
                    "sha256": row.sha256,
                }));
                let mut text = serde_json::to_vec(&line)?;
                text.push(b'\n');
                out.write_all(&text).map_err(AuditError::Export)?;
                lines += 1;
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => {
                    after = (last.tenant.clone(), last.seq, last.row);
                }
                _ => break,
            }
        }
        out.flush().map_err(AuditError::Export)?;
        Ok(lines)
    }

    /// Queues an append and waits until it is on disk: the first caller to
    /// take the writer lock writes everything queued (see "Storage").
    async fn write(
        &self,
        tenant: &TenantId,
        kind: Kind,
        body: Value,
        answers: Option<i64>,
    ) -> Result<EntryId, AuditError> {
        let (done, mut answer) = tokio::sync::oneshot::channel();
        self.queued().push(Queued {
            append: Append {
                tenant: tenant.clone(),
                kind,
                body,
                answers,
            },
            done,
        });
        loop {
            let writer = std::sync::Arc::clone(&self.writer).lock_owned().await;
            // Written by whoever held the writer before.
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            let group: Vec<Queued> = {
                let mut queue = self.queued();
                let n = queue.len().min(MAX_GROUP);
                queue.drain(..n).collect()
            };
            // Spawned, so that a caller that stops waiting cannot abandon
            // the others' appends halfway; the lock is held until it ends.
            let (db, wal) = (self.db.clone(), self.wal.clone());
            let _ = tokio::spawn(async move {
                let _writer = writer;
                commit_group(&db, wal, group).await;
            })
            .await;
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            // More than MAX_GROUP were queued ahead of this one: go again.
        }
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `group` in one transaction, fsyncs the write-ahead log `wal`, and
/// answers each append. A failure of one append's own checks fails it
/// alone; a database or disk failure fails all.
async fn commit_group(db: &Db, wal: Option<PathBuf>, group: Vec<Queued>) {
    let (appends, dones): (Vec<Append>, Vec<_>) =
        group.into_iter().map(|q| (q.append, q.done)).unzip();
    let committed = db
        .run(|connection| {
            // IMMEDIATE takes SQLite's write lock now rather than at the
            // first INSERT, so another process cannot read the same heads in
            // between.
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut heads = Heads::new();
            let results = appends
                .into_iter()
                .map(|append| write_one(&tx, &mut heads, append))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(results)
        })
        .await
        .map_err(|e| format!("the group commit failed: {e}"));
    let durable = match (committed, wal) {
        (Err(e), _) => Err(e),
        (Ok(results), None) => Ok(results),
        (Ok(results), Some(wal)) => {
            let synced = tokio::task::spawn_blocking(move || {
                std::fs::File::open(&wal)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| format!("fsync of {}: {e}", wal.display()))
            })
            .await;
            synced
                .unwrap_or_else(|e| Err(format!("fsync of the write-ahead log: {e}")))
                .map(|()| results)
        }
    };
    match durable {
        Ok(results) => {
            for (done, result) in dones.into_iter().zip(results) {
                let _ = done.send(result);
            }
        }
        Err(reason) => {
            for done in dones {
                let _ = done.send(Err(AuditError::Commit(reason.clone())));
            }
        }
    }
}

/// The chains' heads as the group's transaction has left them so far:
/// tenant -> (seq, sha256). Under `BEGIN IMMEDIATE` no other writer can
/// move them, so each chain's head is read at most once per group.
type Heads = HashMap<String, (i64, String)>;

/// One append inside the group's transaction: the chain's head (read, or as
/// the group's earlier inserts left it), hash, insert. The outer error is
/// the database's, failing the group; the inner one the append's own.
fn write_one(
    tx: &rusqlite::Transaction<'_>,
    heads: &mut Heads,
    append: Append,
) -> rusqlite::Result<Result<EntryId, AuditError>> {
    let Append {
        tenant,
        kind,
        body,
        answers,
    } = append;
    // Taken under the writer, so that times rise with seq within a process.
    let at = match unix_ms(SystemTime::now()) {
        Ok(at) => at,
        Err(e) => return Ok(Err(e)),
    };
    let body = match answers {
        None => body,
        Some(intent_seq) => {
            let intent_id = EntryId::new(tenant.clone(), seq_from_sql(intent_seq));
            // The intent, and the outcome already answering it if any.
            let intent: Option<(String, String, Option<i64>)> = tx
                .prepare_cached(
                    "SELECT kind, sha256, \
                     (SELECT seq FROM audit_entries WHERE tenant = $1 AND intent_seq = $2) \
                     FROM audit_entries WHERE tenant = $1 AND seq = $2",
                )?
                .query_row(rusqlite::params![tenant.as_str(), intent_seq], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let (intent_sha, answered) = match intent {
                Some((kind, sha, answered)) if kind == Kind::Intent.as_str() => (sha, answered),
                _ => return Ok(Err(AuditError::NotAnIntent { intent: intent_id })),
            };
            if let Some(outcome) = answered {
                return Ok(Err(AuditError::OutcomeExists {
                    intent: intent_id,
                    outcome: EntryId::new(tenant.clone(), seq_from_sql(outcome)),
                }));
            }
            json!({"intent": {"seq": intent_seq, "sha256": intent_sha}, "outcome": body})
        }
    };
    let head = match heads.get(tenant.as_str()) {
        Some(head) => Some(head.clone()),
        None => tx
            .prepare_cached(
                "SELECT seq, sha256 FROM audit_entries WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([tenant.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?,
    };
    let (seq, prev_sha256) = match head {
        Some((seq, sha)) => (seq.saturating_add(1), sha),
        None => (1, EntryHash::GENESIS.to_string()),
    };
    let body = canonicalize(&body);
    let hashed = hash_fields(Fields {
        v: FORMAT_VERSION,
        tenant: tenant.as_str(),
        seq,
        kind: kind.as_str(),
        at,
        prev_sha256: &prev_sha256,
        body: &body,
    });
    let (sha256, body) = match (hashed, serde_json::to_string(&body)) {
        (Ok(sha256), Ok(body)) => (sha256, body),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e.into())),
    };
    tx.prepare_cached(
        "INSERT INTO audit_entries \
         (v, tenant, seq, kind, at, body, prev_sha256, sha256, intent_seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )?
    .execute(rusqlite::params![
        FORMAT_VERSION,
        tenant.as_str(),
        seq,
        kind.as_str(),
        at,
        body,
        prev_sha256,
        sha256,
        answers
    ])?;
    heads.insert(tenant.as_str().to_owned(), (seq, sha256));
    Ok(Ok(EntryId::new(tenant, seq_from_sql(seq))))
}

impl AuditLog {
    /// Up to [`PAGE`] rows after `after` = (tenant, seq, row), in chain order.
    async fn page(
        &self,
        scope: Scope<'_>,
        after: &(String, i64, i64),
    ) -> Result<Vec<StoredRow>, AuditError> {
        type Raw = (
            i64,
            i64,
            String,
            i64,
            String,
            i64,
            String,
            String,
            String,
            Option<i64>,
        );
        let (tenant, seq, row) = after;
        let rows: Vec<Raw> = match scope {
            Scope::All => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM audit_entries \
                     WHERE (tenant, seq, id) > ($1, $2, $3) \
                     ORDER BY tenant, seq, id LIMIT $4"
                ))
                .bind(tenant)
                .bind(seq)
                .bind(row)
                .bind(i64::from(PAGE))
                .fetch_all(&self.reads)
                .await?
            }
            Scope::Tenant(t) => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM audit_entries \
                     WHERE tenant = $1 AND (seq, id) > ($2, $3) \
                     ORDER BY seq, id LIMIT $4"
                ))
                .bind(t.as_str())
                .bind(seq)
                .bind(row)
                .bind(i64::from(PAGE))
                .fetch_all(&self.reads)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(
                |(row, v, tenant, seq, kind, at, body, prev_sha256, sha256, intent_seq)| {
                    StoredRow {
                        row,
                        v,
                        tenant,
                        seq,
                        kind,
                        at,
                        body,
                        prev_sha256,
                        sha256,
                        intent_seq,
                    }
                },
            )
            .collect())
    }

    /// Refines a broken link: which entry, if any, does it point to?
    async fn diagnose(&self, row: &StoredRow, problem: Problem) -> Result<Problem, AuditError> {
        if !matches!(problem, Problem::BrokenLink { links_to: None }) {
            return Ok(problem);
        }
        let target: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM audit_entries WHERE tenant = $1 AND sha256 = $2 ORDER BY seq LIMIT 1",
        )
        .bind(&row.tenant)
        .bind(&row.prev_sha256)
        .fetch_optional(&self.reads)
        .await?;
        Ok(match target {
            Some(seq) if seq > row.seq => Problem::Reordered { links_to: seq },
            links_to => Problem::BrokenLink { links_to },
        })
    }

    async fn missing_guards(&self) -> Result<Vec<String>, AuditError> {
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entries'",
        )
        .fetch_all(&self.reads)
        .await?;
        Ok(GUARDS
            .iter()
            .filter(|g| !present.iter().any(|p| p == *g))
            .map(|g| (*g).to_owned())
            .collect())
    }
}

fn check_secret_free(body: &Value) -> Result<(), AuditError> {
    match find_secret(body) {
        Some(pointer) => Err(AuditError::SecretInBody { pointer }),
        None => Ok(()),
    }
}

fn unix_ms(t: SystemTime) -> Result<i64, AuditError> {
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AuditError::Clock)?;
    i64::try_from(since.as_millis()).map_err(|_| AuditError::Clock)
}

/// Stored seqs are at least 1 (a CHECK constraint), so this is lossless.
fn seq_from_sql(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn corrupt(row: &StoredRow, reason: impl std::fmt::Display) -> AuditError {
    AuditError::Corrupt {
        tenant: row.tenant.clone(),
        seq: row.seq,
        reason: reason.to_string(),
    }
}

fn to_entry(row: &StoredRow) -> Result<Entry, AuditError> {
    let tenant: TenantId = row.tenant.parse().map_err(|e| corrupt(row, e))?;
    Ok(Entry {
        id: EntryId::new(tenant, seq_from_sql(row.seq)),
        row: row.row,
        kind: row.kind.parse().map_err(|e| corrupt(row, e))?,
        at: row.at,
        body: serde_json::from_str(&row.body).map_err(|e| corrupt(row, e))?,
        prev_sha256: row.prev_sha256.parse().map_err(|e| corrupt(row, e))?,
        sha256: row.sha256.parse().map_err(|e| corrupt(row, e))?,
    })
}

#[cfg(test)]
mod tests;
