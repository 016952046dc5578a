//! Checking chains: recompute every entry's hash from its stored fields, follow
//! the prev links and sequence numbers, and name the first entry that is wrong.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use super::entry::{EntryHash, FORMAT_VERSION, Fields, Kind, hash_fields};
use crate::tenant::TenantId;

/// One row as stored, every field raw, so that a verifier can look at what is
/// there even when it no longer parses.
#[derive(Debug, Clone)]
pub(super) struct StoredRow {
    pub row: i64,
    pub v: i64,
    pub tenant: String,
    pub seq: i64,
    pub kind: String,
    pub at: i64,
    pub body: String,
    pub prev_sha256: String,
    pub sha256: String,
    pub intent_seq: Option<i64>,
}

/// What is wrong with an entry. The wording says what most likely happened;
/// the chain can only show that the stored entries are not the ones written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The entry's seq is not the one after the previous entry's.
    Gap {
        /// The seq the chain needed here.
        expected: i64,
    },
    /// A second entry with the seq of the entry before it.
    Duplicate,
    /// The entry's `prev_sha256` names an entry that comes after it.
    Reordered {
        /// The seq of the entry it names.
        links_to: i64,
    },
    /// The entry's `prev_sha256` is not the previous entry's `sha256`.
    BrokenLink {
        /// The seq of the entry it names instead, if any in this chain.
        links_to: Option<i64>,
    },
    /// A stored field does not parse.
    Malformed {
        /// Which field and why.
        reason: String,
    },
    /// The stored `sha256` is not the hash of the stored fields.
    Altered {
        /// The `sha256` column.
        stored: String,
        /// The hash of the entry's canonical bytes.
        computed: String,
    },
    /// An outcome that does not answer an earlier, unanswered intent of this
    /// chain, or an intent reference where none belongs.
    BadOutcome {
        /// What does not match.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Gap { expected } => write!(
                f,
                "the chain needed seq {expected} here: entries were deleted before this one"
            ),
            Problem::Duplicate => f.write_str(
                "a second entry with the same seq as the one before it: an entry was inserted",
            ),
            Problem::Reordered { links_to } => write!(
                f,
                "its prev_sha256 names seq {links_to}, which comes after it: entries were reordered"
            ),
            Problem::BrokenLink {
                links_to: Some(seq),
            } => write!(
                f,
                "its prev_sha256 names seq {seq}, not the entry just before it: entries were \
                 inserted or deleted in between"
            ),
            Problem::BrokenLink { links_to: None } => f.write_str(
                "its prev_sha256 is not the sha256 of the entry before it, nor of any entry in \
                 this chain: an entry was inserted, or the one before it replaced",
            ),
            Problem::Malformed { reason } => write!(f, "{reason}"),
            Problem::Altered { stored, computed } => write!(
                f,
                "its sha256 does not match its contents (stored {stored}, computed {computed}): \
                 the entry was altered"
            ),
            Problem::BadOutcome { reason } => write!(f, "{reason}"),
        }
    }
}

/// The first bad entry of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The tenant, as stored.
    pub tenant: String,
    /// The entry's seq, as stored.
    pub seq: i64,
    /// The entry's storage row id.
    pub row: i64,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {}, seq {} (row {}): {}",
            self.tenant, self.seq, self.row, self.problem
        )
    }
}

/// The result of checking one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantReport {
    /// The tenant, as stored.
    pub tenant: String,
    /// How many entries the chain holds.
    pub entries: u64,
    /// The last entry's sha256 when the whole chain verified. Recording it
    /// somewhere else (a ticket, a daily mail) is what lets a later check
    /// notice entries removed from the end, which a chain alone cannot show.
    pub head: Option<String>,
    /// Intents with no outcome yet: writes in flight, or a process that
    /// stopped before reconciliation.
    pub open_intents: usize,
    /// The first bad entry, if any.
    pub problem: Option<Finding>,
}

impl TenantReport {
    /// Whether the chain verified.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The result of [`AuditLog::verify`](super::AuditLog::verify).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Report {
    /// One report per tenant, ordered by tenant.
    pub tenants: Vec<TenantReport>,
    /// The append-only triggers that are no longer in the database. Entries
    /// can be checked without them, but nothing legitimate drops them.
    pub missing_guards: Vec<String>,
}

impl Report {
    /// Whether every chain verified and the guards are in place.
    pub fn is_ok(&self) -> bool {
        self.missing_guards.is_empty() && self.tenants.iter().all(TenantReport::is_ok)
    }

    /// The first bad entry, in tenant order.
    pub fn first_problem(&self) -> Option<&Finding> {
        self.tenants.iter().find_map(|t| t.problem.as_ref())
    }

    /// The number of entries across tenants.
    pub fn entries(&self) -> u64 {
        self.tenants.iter().map(|t| t.entries).sum()
    }
}

/// Walks one tenant's rows in (seq, row) order.
pub(super) struct Walk {
    tenant: String,
    next_seq: i64,
    last_seq: Option<i64>,
    prev_sha256: String,
    open_intents: HashMap<i64, String>,
    entries: u64,
    problem: Option<Finding>,
}

impl Walk {
    pub fn new(tenant: &str) -> Walk {
        Walk {
            tenant: tenant.to_owned(),
            next_seq: 1,
            last_seq: None,
            prev_sha256: EntryHash::GENESIS.to_string(),
            open_intents: HashMap::new(),
            entries: 0,
            problem: None,
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Whether the walk still checks rows (no problem found yet).
    pub fn checking(&self) -> bool {
        self.problem.is_none()
    }

    /// Checks the next row; a problem stops the checking, not the counting.
    pub fn step(&mut self, row: &StoredRow) -> Result<(), Problem> {
        self.entries += 1;
        if !self.checking() {
            return Ok(());
        }
        self.check(row)?;
        self.prev_sha256.clone_from(&row.sha256);
        self.last_seq = Some(row.seq);
        self.next_seq = row.seq.saturating_add(1);
        Ok(())
    }

    /// Records the first problem.
    pub fn fail(&mut self, row: &StoredRow, problem: Problem) {
        self.problem.get_or_insert(Finding {
            tenant: self.tenant.clone(),
            seq: row.seq,
            row: row.row,
            problem,
        });
    }

    pub fn finish(self) -> TenantReport {
        let ok = self.problem.is_none();
        TenantReport {
            tenant: self.tenant,
            entries: self.entries,
            head: (ok && self.entries > 0).then_some(self.prev_sha256),
            open_intents: if ok { self.open_intents.len() } else { 0 },
            problem: self.problem,
        }
    }

    fn check(&mut self, row: &StoredRow) -> Result<(), Problem> {
        // Order matters for the diagnosis: sequence first (deleted and
        // inserted entries), then the link (reordered ones), then contents.
        if self.last_seq == Some(row.seq) {
            return Err(Problem::Duplicate);
        }
        if row.seq != self.next_seq {
            return Err(Problem::Gap {
                expected: self.next_seq,
            });
        }
        if row.prev_sha256 != self.prev_sha256 {
            return Err(Problem::BrokenLink { links_to: None });
        }
        let malformed = |reason: String| Problem::Malformed { reason };
        if row.v != FORMAT_VERSION {
            return Err(malformed(format!(
                "format version {} is not one this build knows ({FORMAT_VERSION})",
                row.v
            )));
        }
        row.tenant
            .parse::<TenantId>()
            .map_err(|e| malformed(format!("its tenant does not parse: {e}")))?;
        let kind: Kind = row
            .kind
            .parse()
            .map_err(|e| malformed(format!("its kind does not parse: {e}")))?;
        let body: Value = serde_json::from_str(&row.body)
            .map_err(|e| malformed(format!("its body is not JSON: {e}")))?;
        let computed = hash_fields(Fields {
            v: row.v,
            tenant: &row.tenant,
            seq: row.seq,
            kind: &row.kind,
            at: row.at,
            prev_sha256: &row.prev_sha256,
            body: &body,
        })
        .map_err(|e| malformed(format!("its body cannot be written canonically: {e}")))?;
        if computed != row.sha256 {
            return Err(Problem::Altered {
                stored: row.sha256.clone(),
                computed,
            });
        }
        self.check_outcome(row, kind, &body)
    }

    fn check_outcome(&mut self, row: &StoredRow, kind: Kind, body: &Value) -> Result<(), Problem> {
        let bad = |reason: String| Problem::BadOutcome { reason };
        match kind {
            Kind::Outcome => {
                let seq = body["intent"]["seq"].as_i64();
                let sha = body["intent"]["sha256"].as_str();
                let (Some(seq), Some(sha)) = (seq, sha) else {
                    return Err(bad("an outcome without intent.seq and intent.sha256".into()));
                };
                if row.intent_seq != Some(seq) {
                    return Err(bad(format!(
                        "its intent_seq column ({:?}) disagrees with its body (intent {seq})",
                        row.intent_seq
                    )));
                }
                match self.open_intents.remove(&seq) {
                    Some(intent_sha) if intent_sha == sha => Ok(()),
                    Some(_) => Err(bad(format!(
                        "it answers intent seq {seq} but names another sha256 for it"
                    ))),
                    None => Err(bad(format!(
                        "it answers seq {seq}, which is not an unanswered intent before it"
                    ))),
                }
            }
            _ if row.intent_seq.is_some() => Err(bad(format!(
                "a {kind} entry with an intent_seq; only outcomes have one"
            ))),
            Kind::Intent => {
                self.open_intents.insert(row.seq, row.sha256.clone());
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
