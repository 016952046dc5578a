//! Replaying a recorded decision: the recorded module on the recorded facts,
//! in a fresh sandbox, compared with what was recorded.
//!
//! Modules have no clock, randomness or I/O (DESIGN.md, "The policy
//! contract"), so the same module bytes and the same facts give the same
//! decision; a replay that differs means the record, the module or the host
//! changed, and the auditor is told which fields differ.

use latchkey_policy::Decision;

use super::records::DecisionRecord;
use super::{Entry, Kind};
use crate::policy::{Evaluation, LoadError, ModuleHash, Sandbox};
use crate::receipt::facts_digest;

/// Why a replay could not be run (as opposed to running and differing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Only decisions can be replayed.
    #[error("entry {id} is a {kind} entry; only decision entries can be replayed")]
    NotADecision {
        /// The entry.
        id: String,
        /// Its kind.
        kind: Kind,
    },
    /// The body is not a decision record.
    #[error("entry {id} is not a readable decision record: {reason}")]
    Malformed {
        /// The entry.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The recorded facts do not hash to the recorded digest.
    #[error(
        "entry {id}: the recorded facts hash to {computed}, not the recorded facts_sha256 {recorded}"
    )]
    FactsDigest {
        /// The entry.
        id: String,
        /// What the record says.
        recorded: String,
        /// What the recorded facts hash to.
        computed: String,
    },
    /// The module given is not the one recorded.
    #[error("the module given is {given}, but the decision was made by {recorded}")]
    WrongModule {
        /// The recorded module.
        recorded: ModuleHash,
        /// The module given.
        given: ModuleHash,
    },
    /// The recorded module does not load in this host.
    #[error("module {module} does not load: {source}")]
    Load {
        /// The module.
        module: ModuleHash,
        /// Why.
        #[source]
        source: LoadError,
    },
}

/// The result of a replay.
#[derive(Debug)]
pub struct Replayed {
    /// What was recorded.
    pub record: DecisionRecord,
    /// What the module decided now.
    pub evaluation: Evaluation,
    /// Each way the replay differs from the record (empty: the same decision).
    pub differences: Vec<String>,
}

impl Replayed {
    /// True when the replayed decision is the recorded one.
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Reads a decision record from an entry.
pub fn decision_record(entry: &Entry) -> Result<DecisionRecord, ReplayError> {
    if entry.kind != Kind::Decision {
        return Err(ReplayError::NotADecision {
            id: entry.id.to_string(),
            kind: entry.kind,
        });
    }
    serde_json::from_value(entry.body.clone()).map_err(|e| ReplayError::Malformed {
        id: entry.id.to_string(),
        reason: e.to_string(),
    })
}

/// Replays the decision recorded in `entry` with `module` (the module's
/// bytes, which must hash to the recorded `module_sha256`), in `sandbox`.
pub fn replay(entry: &Entry, sandbox: &Sandbox, module: &[u8]) -> Result<Replayed, ReplayError> {
    let record = decision_record(entry)?;
    let computed = facts_digest(&record.facts).map_err(|e| ReplayError::Malformed {
        id: entry.id.to_string(),
        reason: e.to_string(),
    })?;
    if computed != record.facts_sha256 {
        return Err(ReplayError::FactsDigest {
            id: entry.id.to_string(),
            recorded: record.facts_sha256.clone(),
            computed,
        });
    }
    let given = ModuleHash::of(module);
    if given != record.module_sha256 {
        return Err(ReplayError::WrongModule {
            recorded: record.module_sha256,
            given,
        });
    }
    let loaded = sandbox.load(module).map_err(|source| ReplayError::Load {
        module: given,
        source,
    })?;
    let evaluation = sandbox.decide(&loaded, &record.facts);
    let differences = compare(&record, &evaluation);
    Ok(Replayed {
        record,
        evaluation,
        differences,
    })
}

fn compare(record: &DecisionRecord, now: &Evaluation) -> Vec<String> {
    let mut differences = Vec::new();
    if record.decision != now.decision {
        differences.push(format!(
            "decision: recorded {}, replayed {}",
            describe(&record.decision),
            describe(&now.decision)
        ));
    }
    let fault_now = now.fault.as_ref().map(|f| f.code());
    let fault_then = record.fault.as_ref().map(|f| f.fault_code.as_str());
    if fault_then != fault_now {
        differences.push(format!(
            "fault: recorded {}, replayed {}",
            fault_then.unwrap_or("none"),
            fault_now.unwrap_or("none")
        ));
    }
    differences
}

/// A decision on one line: its kind and, for the JSON-minded, the rest.
pub fn describe(decision: &Decision) -> String {
    let detail = serde_json::to_string(decision).unwrap_or_else(|e| format!("<{e}>"));
    format!("{} {detail}", decision.kind())
}
