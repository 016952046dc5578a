//! The executor: the only code that writes to Graph, and only on a valid,
//! unused receipt for the verified requester's own account.
//!
//! # Before any write
//!
//! [`Executor::execute`] takes the tenant's Graph client, the tenant, the
//! **verified** requester (from the chat channel's verified identity, never
//! from chat text), the receipt envelope exactly as issued, and the writes to
//! make. Before the first Graph request it:
//!
//! 1. checks the writes: at least one, no action twice;
//! 2. verifies the receipt ([`receipt::verify`]): the signature over the
//!    exact payload bytes, by a trusted host key valid when it was issued,
//!    and its time window;
//! 3. checks that the receipt covers every write ([`Receipt::authorizes`]):
//!    this tenant, a target that is the verified requester, the action among
//!    the receipt's, exactly the receipt's constraints;
//! 4. consumes the receipt's nonce ([`NonceStore::consume`]), atomically: a
//!    receipt authorizes **one execution** of its actions, so a second call
//!    with the same receipt is refused, whatever it asks.
//!
//! Scope is checked before the nonce is spent, so a caller that presents a
//! receipt with the wrong writes does not burn it. Any failure writes nothing
//! to Graph, appends a [`Kind::Refusal`] entry saying exactly why, and
//! returns the typed [`ExecuteError`].
//!
//! Then, right before **each** Graph write (each PATCH, POST or DELETE), the
//! receipt's expiry and scope are checked again ([`Guard`]): an execution
//! that outlives its receipt stops, with a refusal, at the first write past
//! the expiry.
//!
//! # Each write
//!
//! Writes run in a fixed order, whatever order the caller gives:
//! reset password, issue a Temporary Access Pass, remove the lost MFA
//! methods, revoke sessions. A new credential comes before the old methods
//! go, so that a failed pass leaves the user their old methods; sessions go
//! last, so nothing signed in before the reset survives it. The first write
//! that does not apply stops the execution; the later ones are reported as
//! not attempted.
//!
//! Each action is bracketed in the audit log: [`AuditLog::append_intent`]
//! before its first request (action, receipt id and payload, decision id,
//! module sha256, target, idempotency key, the requests it will make), and
//! [`AuditLog::append_outcome`] after (status, Graph's request ids, Graph's
//! error code if any, what was done). A crash in between leaves the intent,
//! which [`AuditLog::reconcile`] answers as unknown at start-up. The new
//! password or pass is returned once, in a [`Secret`], and is never logged,
//! stored, or put in an audit body.
//!
//! # Idempotency: a retry never makes a second reset or a second pass
//!
//! * Per execution: the nonce makes the whole execution single-use; a second
//!   call with the same receipt (a client retrying after a timeout, a replay)
//!   is refused and audited, so no write runs twice through the executor.
//! * Reset password: the password is generated once, before the PATCH, and
//!   the same PATCH may be repeated by the Graph client on a timeout or
//!   503/504 (it is marked idempotent): setting the same password twice is
//!   the same end state.
//! * Remove lost methods: each DELETE names one method; repeating it is
//!   harmless, and a 404 means already gone.
//! * Revoke sessions: revoking twice leaves the same state as once.
//! * Temporary Access Pass: never repeated blindly (a second POST makes a
//!   second pass). The user's passes are listed before the POST; on a
//!   timeout or 5xx they are read back, and a pass that was not there before
//!   is recorded as applied with its value lost, instead of creating
//!   another. See `executor/actions.rs`.

mod actions;
pub mod password;
mod records;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use latchkey_policy::{Action, Constraints};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::audit::{AuditError, AuditLog, EntryId, Kind};
use crate::graph::{GraphClient, GraphError, Secret};
use crate::ids::{ReceiptId, UserId};
use crate::receipt::{
    self, NonceStore, NonceStoreError, Receipt, ScopeError, VerifyError, VerifyingKeys, action_name,
};
use crate::tenant::TenantId;

pub use actions::LOST_METHOD_TYPES;
pub use password::PasswordError;
pub use records::OutcomeStatus;

use actions::Trace;
use records::{AskedWrite, IntentRecord, OutcomeRecord, RefusalRecord};

/// One write the caller asks for: an action, and the constraints it is to be
/// made under (which must equal the receipt's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// What to do.
    pub action: Action,
    /// Under which limits (the Temporary Access Pass's lifetime and use).
    pub constraints: Constraints,
}

impl Write {
    /// `action` under `constraints`.
    pub fn new(action: Action, constraints: Constraints) -> Write {
        Write {
            action,
            constraints,
        }
    }
}

/// A Temporary Access Pass that was issued.
#[derive(Debug)]
pub struct IssuedPass {
    /// The pass, to show the user once in the verified channel. `None` when
    /// the pass was created but its value was lost with Graph's answer (it
    /// is shown only in that answer); ask for a new decision to issue
    /// another, which replaces it.
    pub pass: Option<Secret>,
    /// The pass's authentication method id.
    pub method_id: String,
    /// Its lifetime in minutes, as Graph reported it.
    pub lifetime_minutes: Option<u32>,
    /// Whether it can be used only once, as Graph reported it.
    pub usable_once: Option<bool>,
}

/// An authentication method removed as lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemovedMethod {
    /// The collection it was deleted from (`microsoftAuthenticatorMethods`,
    /// `softwareOathMethods`).
    pub collection: String,
    /// Its id.
    pub id: String,
    /// Graph answered 404: it was already gone.
    pub already_gone: bool,
}

/// What a write did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Applied {
    /// The password was reset; the user must change it at next sign-in.
    PasswordReset {
        /// The new password, to show the user once.
        password: Secret,
    },
    /// A Temporary Access Pass was issued.
    TemporaryAccessPass(IssuedPass),
    /// The [lost methods](LOST_METHOD_TYPES) were removed.
    LostMethodsRemoved {
        /// Each method removed (none when the user had none).
        removed: Vec<RemovedMethod>,
    },
    /// The user's sessions and refresh tokens were revoked.
    SessionsRevoked,
}

/// How one write ended.
#[derive(Debug)]
pub enum WriteStatus {
    /// It happened.
    Applied(Applied),
    /// It did not, or may not have; the error says which.
    Failed(ExecuteError),
    /// An earlier write did not apply, so this one was not tried.
    NotAttempted,
}

/// One write of an execution.
#[derive(Debug)]
pub struct WriteReport {
    /// The action.
    pub action: Action,
    /// How it ended.
    pub status: WriteStatus,
    /// Graph's `request-id` of every answer it got, in order.
    pub request_ids: Vec<String>,
    /// Its intent in the audit log, if one was appended.
    pub intent: Option<EntryId>,
    /// Its outcome in the audit log, if one was appended (a write whose
    /// outcome could not be appended keeps its intent unanswered, for
    /// [`AuditLog::reconcile`]).
    pub outcome: Option<EntryId>,
}

impl WriteReport {
    fn not_attempted(action: Action) -> WriteReport {
        WriteReport {
            action,
            status: WriteStatus::NotAttempted,
            request_ids: Vec::new(),
            intent: None,
            outcome: None,
        }
    }
}

/// What an execution did, write by write, in the order the writes ran.
#[derive(Debug)]
pub struct Execution {
    /// The receipt it ran on.
    pub receipt: Receipt,
    /// Each write.
    pub writes: Vec<WriteReport>,
}

impl Execution {
    /// True when every write applied.
    pub fn is_complete(&self) -> bool {
        self.writes
            .iter()
            .all(|w| matches!(w.status, WriteStatus::Applied(_)))
    }

    /// The error of the write that stopped the execution, if one did.
    pub fn failure(&self) -> Option<&ExecuteError> {
        self.writes.iter().find_map(|w| match &w.status {
            WriteStatus::Failed(e) => Some(e),
            _ => None,
        })
    }

    /// What `action` did, if it applied.
    pub fn applied(&self, action: Action) -> Option<&Applied> {
        self.writes.iter().find_map(|w| match &w.status {
            WriteStatus::Applied(applied) if w.action == action => Some(applied),
            _ => None,
        })
    }
}

/// Why the executor wrote nothing, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError {
    /// No writes were asked for.
    #[error("no writes were asked for; name at least one action the receipt allows")]
    NoWrites,
    /// The same action was asked for twice.
    #[error("{} is asked for twice; a receipt authorizes each action once", action_name(*.0))]
    RepeatedWrite(Action),
    /// The receipt did not verify (forged, altered, unknown key, expired...).
    #[error("the receipt is not valid: {0}")]
    Receipt(#[from] VerifyError),
    /// The receipt does not cover a write.
    #[error("the receipt does not cover this write: {0}")]
    Scope(#[from] ScopeError),
    /// The receipt's nonce was already consumed: it has been executed.
    #[error(
        "receipt {receipt} has already been used: a receipt authorizes one execution; ask for a new decision"
    )]
    Replayed {
        /// The receipt.
        receipt: ReceiptId,
    },
    /// The nonce store could not answer, so single use cannot be ensured.
    #[error("cannot check the receipt's nonce, so nothing was written: {0}")]
    Nonces(#[from] NonceStoreError),
    /// The audit log could not record the intent, so the write was not made.
    #[error("cannot append to the audit log, so the write was not made: {0}")]
    Audit(#[from] AuditError),
    /// No password could be generated.
    #[error("cannot generate a password: {0}")]
    Password(#[from] PasswordError),
    /// Graph refused the write (or a read it needed): it did not happen.
    #[error("Graph refused to {}: {source}", action_name(*action))]
    Graph {
        /// The action.
        action: Action,
        /// Graph's error, with its code and request id.
        #[source]
        source: GraphError,
    },
    /// No answer came back: the write may or may not have happened. Graph's
    /// directory audit knows.
    #[error(
        "no answer from Graph to {}: it may or may not have happened; check the directory audit ({source})",
        action_name(*action)
    )]
    OutcomeUnknown {
        /// The action.
        action: Action,
        /// What went wrong.
        #[source]
        source: GraphError,
    },
    /// The pass request got no answer, and no new pass exists.
    #[error(
        "no answer from Graph to the Temporary Access Pass request, and no new pass exists when read back; it was not repeated, since a delayed request could still create one: ask for a new decision ({source})"
    )]
    PassNotCreated {
        /// What went wrong with the request.
        #[source]
        source: GraphError,
    },
    /// Graph answered success with something it does not document.
    #[error("Graph's answer to {} is not what it documents: {detail}", action_name(*action))]
    InvalidResponse {
        /// The action.
        action: Action,
        /// What was wrong.
        detail: String,
    },
}

impl ExecuteError {
    /// A stable code for the reason, as refusals record it.
    pub fn code(&self) -> &'static str {
        match self {
            ExecuteError::NoWrites => "no-writes",
            ExecuteError::RepeatedWrite(_) => "repeated-write",
            ExecuteError::Receipt(e) => match e {
                VerifyError::UnknownKey { .. } => "receipt-unknown-key",
                VerifyError::BadSignature { .. } => "receipt-bad-signature",
                VerifyError::KeyRetired { .. } => "receipt-key-retired",
                VerifyError::Expired { .. } => "receipt-expired",
                VerifyError::NotYetValid { .. } => "receipt-not-yet-valid",
                _ => "receipt-malformed",
            },
            ExecuteError::Scope(e) => match e {
                ScopeError::WrongTenant { .. } => "scope-wrong-tenant",
                ScopeError::NotSelf { .. } => "scope-not-self",
                ScopeError::ActionNotAllowed(_) => "scope-action-not-allowed",
                ScopeError::ConstraintsDiffer => "scope-constraints-differ",
            },
            ExecuteError::Replayed { .. } => "receipt-replayed",
            ExecuteError::Nonces(_) => "nonce-store-unavailable",
            ExecuteError::Audit(_) => "audit-unavailable",
            ExecuteError::Password(_) => "password-generation",
            ExecuteError::Graph { .. } => "graph-refused",
            ExecuteError::OutcomeUnknown { .. } => "outcome-unknown",
            ExecuteError::PassNotCreated { .. } => "pass-not-created",
            ExecuteError::InvalidResponse { .. } => "graph-invalid-response",
        }
    }

    /// The status an action's outcome records for this error.
    fn status(&self) -> OutcomeStatus {
        match self {
            ExecuteError::Receipt(_) | ExecuteError::Scope(_) => OutcomeStatus::Refused,
            ExecuteError::OutcomeUnknown { .. } => OutcomeStatus::Unknown,
            _ => OutcomeStatus::Failed,
        }
    }

    /// Graph's error behind this one, if any.
    fn graph(&self) -> Option<&GraphError> {
        match self {
            ExecuteError::Graph { source, .. }
            | ExecuteError::OutcomeUnknown { source, .. }
            | ExecuteError::PassNotCreated { source } => Some(source),
            _ => None,
        }
    }
}

/// The current time in Unix seconds.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Verifies receipts and makes the Graph writes they authorize. Cheap to
/// share behind an `Arc`; one serves every tenant (the receipt names its
/// tenant, and each call brings that tenant's Graph client).
pub struct Executor {
    keys: VerifyingKeys,
    nonces: Arc<dyn NonceStore>,
    audit: Arc<AuditLog>,
    clock: Clock,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("trusted_keys", &self.keys.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor that trusts receipts signed by `keys` (the host's own
    /// verifying keys: every receipt is the host's), remembers nonces in
    /// `nonces`, records to `audit`, and reads the system clock.
    pub fn new(keys: VerifyingKeys, nonces: Arc<dyn NonceStore>, audit: Arc<AuditLog>) -> Executor {
        Executor {
            keys,
            nonces,
            audit,
            clock: Arc::new(system_now),
        }
    }

    /// The same executor reading the time (Unix seconds) from `clock`.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Executor {
        self.clock = Arc::new(clock);
        self
    }

    /// Makes `writes` in `tenant` with `graph` on the authority of the
    /// receipt `envelope`, for `verified_requester` (see the module
    /// documentation for every check).
    ///
    /// `Err` means nothing was written to Graph, and a refusal is in the
    /// audit log (unless the log itself failed). `Ok` means the receipt was
    /// accepted and spent; each write's [`WriteReport`] says how it went,
    /// and [`Execution::failure`] which error stopped the rest.
    pub async fn execute(
        &self,
        graph: &GraphClient,
        tenant: &TenantId,
        verified_requester: &UserId,
        envelope: &str,
        writes: &[Write],
    ) -> Result<Execution, ExecuteError> {
        let context = Refusing {
            tenant,
            verified_requester,
            envelope,
            writes,
        };
        if writes.is_empty() {
            return Err(self.refuse(&context, None, ExecuteError::NoWrites).await);
        }
        for (i, write) in writes.iter().enumerate() {
            if writes[..i].iter().any(|w| w.action == write.action) {
                return Err(self
                    .refuse(&context, None, ExecuteError::RepeatedWrite(write.action))
                    .await);
            }
        }
        let receipt = match receipt::verify(envelope, &self.keys, (self.clock)()) {
            Ok(receipt) => receipt,
            Err(e) => return Err(self.refuse(&context, None, e.into()).await),
        };
        for write in writes {
            if let Err(e) =
                receipt.authorizes(tenant, verified_requester, write.action, &write.constraints)
            {
                return Err(self.refuse(&context, Some(&receipt), e.into()).await);
            }
        }
        match self
            .nonces
            .consume(receipt.tenant(), receipt.nonce(), receipt.expires_at())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let replayed = ExecuteError::Replayed {
                    receipt: receipt.id().clone(),
                };
                return Err(self.refuse(&context, Some(&receipt), replayed).await);
            }
            Err(e) => return Err(self.refuse(&context, Some(&receipt), e.into()).await),
        }

        let mut ordered = writes.to_vec();
        ordered.sort_by_key(|w| rank(w.action));
        let mut reports: Vec<WriteReport> = Vec::with_capacity(ordered.len());
        for write in ordered {
            if reports
                .iter()
                .any(|r| !matches!(r.status, WriteStatus::Applied(_)))
            {
                reports.push(WriteReport::not_attempted(write.action));
                continue;
            }
            let guard = Guard {
                receipt: &receipt,
                tenant,
                verified_requester,
                write,
                clock: &self.clock,
            };
            let report = self.run(graph, &guard, &reports, &context).await;
            reports.push(report);
        }
        Ok(Execution {
            receipt,
            writes: reports,
        })
    }

    /// One action, bracketed by its intent and outcome.
    async fn run(
        &self,
        graph: &GraphClient,
        guard: &Guard<'_>,
        earlier: &[WriteReport],
        context: &Refusing<'_>,
    ) -> WriteReport {
        let write = guard.write;
        let receipt = guard.receipt;
        let user_path = GraphClient::user_path(receipt.target().as_str());
        let mut report = WriteReport {
            action: write.action,
            status: WriteStatus::NotAttempted,
            request_ids: Vec::new(),
            intent: None,
            outcome: None,
        };
        let intent = IntentRecord::new(
            receipt,
            guard.verified_requester,
            write.action,
            &write.constraints,
            actions::plan(write.action, &user_path, &write.constraints),
        );
        let intent = match serde_json::to_value(&intent) {
            Ok(body) => self
                .audit
                .append_intent(receipt.tenant(), body)
                .await
                .map_err(ExecuteError::Audit),
            Err(e) => Err(ExecuteError::Audit(AuditError::Encode(e))),
        };
        let intent = match intent {
            Ok(intent) => intent,
            Err(e) => {
                tracing::error!(error = %e, action = action_name(write.action), "no intent recorded; not writing");
                report.status = WriteStatus::Failed(e);
                return report;
            }
        };
        report.intent = Some(intent.clone());

        let mut trace = Trace::default();
        let result = match write.action {
            Action::ResetPassword => {
                actions::reset_password(graph, &user_path, guard, &mut trace).await
            }
            Action::IssueTemporaryAccessPass => {
                actions::issue_tap(graph, &user_path, &write.constraints, guard, &mut trace).await
            }
            Action::RemoveLostMfaMethods => {
                actions::remove_lost_methods(graph, &user_path, guard, &mut trace).await
            }
            Action::RevokeSessions => {
                actions::revoke_sessions(graph, &user_path, guard, &mut trace).await
            }
        };

        let outcome = outcome_record(write.action, &result, &trace);
        report.request_ids = trace.request_ids;
        match serde_json::to_value(&outcome) {
            Ok(body) => match self.audit.append_outcome(&intent, body).await {
                Ok(id) => report.outcome = Some(id),
                Err(e) => {
                    tracing::error!(error = %e, %intent, "the outcome of a write could not be recorded; reconciliation will mark it unknown");
                }
            },
            Err(e) => {
                tracing::error!(error = %e, %intent, "the outcome of a write could not be encoded")
            }
        }
        if let Err(e) = &result
            && e.status() == OutcomeStatus::Refused
        {
            let applied_before = earlier
                .iter()
                .filter(|r| matches!(r.status, WriteStatus::Applied(_)))
                .map(|r| action_name(r.action))
                .collect();
            self.record_refusal(context, Some(receipt), e, applied_before)
                .await;
        }
        report.status = match result {
            Ok(applied) => WriteStatus::Applied(applied),
            Err(e) => WriteStatus::Failed(e),
        };
        report
    }

    /// Records a refusal before any write, and gives back the error.
    async fn refuse(
        &self,
        context: &Refusing<'_>,
        receipt: Option<&Receipt>,
        error: ExecuteError,
    ) -> ExecuteError {
        self.record_refusal(context, receipt, &error, Vec::new())
            .await;
        error
    }

    async fn record_refusal(
        &self,
        context: &Refusing<'_>,
        receipt: Option<&Receipt>,
        error: &ExecuteError,
        applied_before: Vec<&'static str>,
    ) {
        tracing::warn!(refused = error.code(), reason = %error, "write refused");
        let record = RefusalRecord {
            refused: error.code(),
            reason: error.to_string(),
            verified_requester: context.verified_requester,
            writes: context
                .writes
                .iter()
                .map(|w| AskedWrite {
                    action: action_name(w.action),
                    constraints: &w.constraints,
                })
                .collect(),
            envelope_sha256: hex::encode(Sha256::digest(context.envelope.as_bytes())),
            receipt,
            applied_before,
        };
        let appended = match serde_json::to_value(&record) {
            Ok(body) => self
                .audit
                .append(context.tenant, Kind::Refusal, body)
                .await
                .map(|_| ()),
            Err(e) => Err(AuditError::Encode(e)),
        };
        if let Err(e) = appended {
            tracing::error!(error = %e, refused = error.code(), "a refusal could not be recorded in the audit log");
        }
    }
}

/// What a refusal records about the call.
struct Refusing<'a> {
    tenant: &'a TenantId,
    verified_requester: &'a UserId,
    envelope: &'a str,
    writes: &'a [Write],
}

/// The check made right before each Graph write: the receipt is still within
/// its time window and still covers this write.
struct Guard<'a> {
    receipt: &'a Receipt,
    tenant: &'a TenantId,
    verified_requester: &'a UserId,
    write: Write,
    clock: &'a Clock,
}

impl Guard<'_> {
    fn check(&self) -> Result<(), ExecuteError> {
        self.receipt.check_time((self.clock)())?;
        self.receipt.authorizes(
            self.tenant,
            self.verified_requester,
            self.write.action,
            &self.write.constraints,
        )?;
        Ok(())
    }
}

/// The order writes run in (see the module documentation).
fn rank(action: Action) -> u8 {
    match action {
        Action::ResetPassword => 0,
        Action::IssueTemporaryAccessPass => 1,
        Action::RemoveLostMfaMethods => 2,
        Action::RevokeSessions => 3,
    }
}

fn outcome_record(
    action: Action,
    result: &Result<Applied, ExecuteError>,
    trace: &Trace,
) -> OutcomeRecord {
    let (status, error) = match result {
        Ok(_) => (OutcomeStatus::Applied, None),
        Err(e) => (e.status(), Some(e)),
    };
    let graph = error.and_then(ExecuteError::graph);
    let mut detail: Map<String, Value> = trace.detail.clone();
    if let Some(e) = error {
        detail.insert("reason_code".to_owned(), Value::from(e.code()));
    }
    OutcomeRecord {
        action: action_name(action),
        status,
        request_ids: trace.request_ids.clone(),
        error_code: graph.and_then(GraphError::code).map(str::to_owned),
        http_status: graph.and_then(GraphError::status).map(|s| s.as_u16()),
        error: error.map(ToString::to_string),
        detail,
    }
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
