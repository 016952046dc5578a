//! The audit bodies the executor writes: an intent before each action, its
//! outcome after, and a refusal whenever it writes nothing. None holds a
//! secret: the password is recorded as [`REDACTED`], the pass not at all.

use latchkey_policy::{Action, Constraints};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::audit::REDACTED;
use crate::ids::{DecisionId, ReceiptId, UserId};
use crate::policy::ModuleHash;
use crate::receipt::{Receipt, action_name};

/// A Graph request an action will make, as the intent announces it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PlannedRequest {
    pub method: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl PlannedRequest {
    pub fn new(method: &'static str, path: String, body: Option<Value>) -> PlannedRequest {
        PlannedRequest { method, path, body }
    }
}

/// The body of a [`Kind::Intent`](crate::audit::Kind::Intent) entry.
#[derive(Debug, Serialize)]
pub(super) struct IntentRecord<'a> {
    pub action: &'static str,
    /// `{receipt_id}:{action}`: the one logical write this intent announces,
    /// however many HTTP attempts it takes (see the executor's idempotency
    /// notes).
    pub idempotency_key: String,
    pub receipt_id: &'a ReceiptId,
    pub decision_id: &'a DecisionId,
    pub module_sha256: &'a ModuleHash,
    pub facts_sha256: &'a str,
    pub target: &'a UserId,
    pub verified_requester: &'a UserId,
    pub constraints: &'a Constraints,
    /// The receipt's payload, as verified.
    pub receipt: &'a Receipt,
    /// The requests the action makes (reads first, then the writes).
    pub graph_requests: Vec<PlannedRequest>,
}

impl<'a> IntentRecord<'a> {
    pub fn new(
        receipt: &'a Receipt,
        verified_requester: &'a UserId,
        action: Action,
        constraints: &'a Constraints,
        graph_requests: Vec<PlannedRequest>,
    ) -> IntentRecord<'a> {
        IntentRecord {
            action: action_name(action),
            idempotency_key: idempotency_key(receipt.id(), action),
            receipt_id: receipt.id(),
            decision_id: receipt.decision_id(),
            module_sha256: receipt.module(),
            facts_sha256: receipt.facts_sha256(),
            target: receipt.target(),
            verified_requester,
            constraints,
            receipt,
            graph_requests,
        }
    }
}

/// The key that names one logical write: a receipt executes once (its nonce)
/// and names each action once, so receipt and action identify it.
pub(super) fn idempotency_key(receipt: &ReceiptId, action: Action) -> String {
    format!("{receipt}:{}", action_name(action))
}

/// How an action ended, as its outcome records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    /// The write happened.
    Applied,
    /// It did not happen (Graph refused, or a read before it failed).
    Failed,
    /// It may or may not have happened: Graph's directory audit knows.
    Unknown,
    /// The executor refused it in code before writing (the receipt expired
    /// or stopped covering it).
    Refused,
}

/// The caller's part of a [`Kind::Outcome`](crate::audit::Kind::Outcome)
/// entry (the log wraps it with the intent it answers).
#[derive(Debug, Serialize)]
pub(super) struct OutcomeRecord {
    pub action: &'static str,
    pub status: OutcomeStatus,
    /// Graph's `request-id` of every answer, in order.
    pub request_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the action did, in its own terms (method ids removed, the pass's
    /// id and lifetime, whether its value was lost...).
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

/// One write as the caller asked for it, for refusals.
#[derive(Debug, Serialize)]
pub(super) struct AskedWrite<'a> {
    pub action: &'static str,
    pub constraints: &'a Constraints,
}

/// The body of a [`Kind::Refusal`](crate::audit::Kind::Refusal) entry.
#[derive(Debug, Serialize)]
pub(super) struct RefusalRecord<'a> {
    /// A stable code for the reason ([`super::ExecuteError::code`]).
    pub refused: &'static str,
    /// The reason, in words.
    pub reason: String,
    pub verified_requester: &'a UserId,
    pub writes: Vec<AskedWrite<'a>>,
    /// The sha256 of the envelope as presented, so a refused receipt can be
    /// matched to the one that was issued (or shown never to have been).
    pub envelope_sha256: String,
    /// The receipt's payload, when its signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<&'a Receipt>,
    /// Writes already made by this execution before the refusal, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied_before: Vec<&'static str>,
}

/// The password profile as the intent shows it: its shape, never its value.
pub(super) fn redacted_password_profile() -> Value {
    serde_json::json!({
        "passwordProfile": {
            "password": REDACTED,
            "forceChangePasswordNextSignIn": true,
        }
    })
}
