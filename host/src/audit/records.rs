//! The shapes of the entries the service writes and auditors read back: one
//! type per kind that is read again, so that the writer and `latchkey audit
//! replay` cannot drift apart.

use latchkey_policy::{Decision, Facts};
use serde::{Deserialize, Serialize};

use crate::ids::{DecisionId, UserId};
use crate::policy::{Evaluation, ModuleHash};

/// The body of a [`Kind::Decision`](super::Kind::Decision) entry: which
/// module decided what on which facts, and the receipt the host signed for it
/// if it signed one.
///
/// The facts are recorded whole (they hold nothing secret: the investigator
/// puts no secret in them, and the log refuses secret-looking keys), so that
/// `latchkey audit replay` can run the module on them again and
/// `facts_sha256` can be recomputed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// The decision's id, also bound into its receipt.
    pub decision_id: DecisionId,
    /// The verified requester.
    pub requester: UserId,
    /// The sha256 of the module that decided.
    pub module_sha256: ModuleHash,
    /// [`crate::receipt::facts_digest`] of `facts`.
    pub facts_sha256: String,
    /// The facts the module decided on.
    pub facts: Facts,
    /// The decision as the host took it (a deny when `fault` is set).
    pub decision: Decision,
    /// Why the module's own decision was replaced by a deny, if it was.
    pub fault: Option<FaultRecord>,
    /// The fuel the module used: deterministic, so replay compares it too.
    pub fuel_used: u64,
    /// The signed receipt (its DSSE envelope, as JSON), when the decision was
    /// an allow the host signed.
    pub receipt: Option<serde_json::Value>,
    /// Why an allow was not signed, when it was not.
    pub not_signed: Option<String>,
}

/// A [`crate::policy::Fault`], as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRecord {
    /// [`crate::policy::Fault::code`].
    pub fault_code: String,
    /// The fault, in words.
    pub message: String,
}

impl DecisionRecord {
    /// The record of `evaluation` on `facts`, with no receipt yet.
    pub fn new(
        decision_id: DecisionId,
        requester: UserId,
        facts: &Facts,
        evaluation: &Evaluation,
    ) -> Result<DecisionRecord, serde_json::Error> {
        Ok(DecisionRecord {
            decision_id,
            requester,
            module_sha256: evaluation.module,
            facts_sha256: crate::receipt::facts_digest(facts)?,
            facts: facts.clone(),
            decision: evaluation.decision.clone(),
            fault: evaluation.fault.as_ref().map(FaultRecord::of),
            fuel_used: evaluation.fuel_used,
            receipt: None,
            not_signed: None,
        })
    }
}

impl FaultRecord {
    /// Records a fault.
    pub fn of(fault: &crate::policy::Fault) -> FaultRecord {
        FaultRecord {
            fault_code: fault.code().to_owned(),
            message: fault.to_string(),
        }
    }
}
