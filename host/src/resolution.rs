//! One resolution, from a verified requester's inquiry to the Graph writes,
//! with every step in the audit log: the path DESIGN.md draws from the
//! investigator to the executor.
//!
//! [`Resolver::decide`] records the request, investigates, asks the tenant's
//! active module, signs an allow as a receipt (only when the module is the
//! tenant's pinned one and the account is the requester's own), and records
//! the decision with its facts, their digest, the module's sha256 and the
//! receipt. [`Resolver::act`] hands the receipt to the executor, which checks
//! it again before every write and brackets each write with an intent and an
//! outcome. The conversation engine calls `decide` again after each
//! verification or approval (they are facts), and `act` once the decision is
//! an allow.
//!
//! Entries, in order, for one resolution:
//!
//! | kind | body |
//! |---|---|
//! | `request` | requester, the account named (if any), the claim, the channel, the actions asked for |
//! | `decision` | [`DecisionRecord`]: facts, facts digest, module sha256, decision, fault, receipt or why none was signed |
//! | `refusal` | when the investigation failed or the tenant has no usable module |
//! | `intent`, `outcome` | per write, by the executor |

use latchkey_policy::{Decision, Facts};
use serde_json::{Value, json};

use crate::audit::records::DecisionRecord;
use crate::audit::{AuditError, AuditLog, EntryId, Kind};
use crate::executor::{ExecuteError, Execution, Executor, Write};
use crate::graph::GraphClient;
use crate::ids::{DecisionId, RandomError, UserId};
use crate::investigator::{Claim, Inquiry, InvestigateError, Investigator};
use crate::policy::{Evaluation, ModuleHash, PolicyRegistry};
use crate::receipt::{self, HostKeys, IssueRequest, SignedReceipt, action_name};
use crate::tenant::TenantId;

/// What the resolver needs per tenant.
#[derive(Clone, Debug)]
pub struct TenantRuntime {
    /// The tenant's Graph client (app-only), for the executor's writes.
    pub graph: GraphClient,
    /// The tenant's investigator, on the same client.
    pub investigator: Investigator,
    /// The module hash the tenant's configuration pins: only its allows are
    /// signed.
    pub pinned: ModuleHash,
    /// The longest Temporary Access Pass the tenant allows, in minutes.
    pub max_tap_lifetime_minutes: u32,
}

/// Why a resolution step failed. Every variant has been recorded in the
/// audit log, unless the log itself is what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The tenant is not configured here.
    #[error("tenant {0} is not configured")]
    UnknownTenant(TenantId),
    /// The tenant's settings cannot make an investigator.
    #[error("tenant {tenant}: {reason}")]
    Settings {
        /// The tenant.
        tenant: TenantId,
        /// What is wrong.
        reason: String,
    },
    /// The investigation could not produce facts.
    #[error(transparent)]
    Investigate(#[from] InvestigateError),
    /// The tenant has no module loaded (every load was refused).
    #[error("tenant {0} has no usable policy module; see `latchkey policy check`")]
    NoModule(TenantId),
    /// `act` was called on a decision without a receipt.
    #[error("there is nothing to do: {0}")]
    NothingToDo(String),
    /// The executor refused or stopped.
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    /// The audit log failed: nothing further is done without a record.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// No randomness for the decision id.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A record could not be encoded.
    #[error("cannot encode the audit record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A decision, recorded.
#[derive(Debug)]
pub struct Decided {
    /// Its id (also in the receipt).
    pub decision_id: DecisionId,
    /// The `decision` entry.
    pub entry: EntryId,
    /// The facts the module decided on.
    pub facts: Facts,
    /// What the module decided, with its hash and any fault.
    pub evaluation: Evaluation,
    /// The signed receipt, for an allow the host signed.
    pub receipt: Option<SignedReceipt>,
    /// Why an allow was not signed.
    pub not_signed: Option<String>,
}

impl Decided {
    /// The decision.
    pub fn decision(&self) -> &Decision {
        &self.evaluation.decision
    }
}

/// Investigates, decides, signs and acts, recording each step: a view over
/// the service's parts (the service hands one out; tests build their own).
#[derive(Clone, Copy)]
pub struct Resolver<'a> {
    /// Each tenant's active module.
    pub registry: &'a PolicyRegistry,
    /// The host's receipt signing key.
    pub keys: &'a HostKeys,
    /// The activity log.
    pub audit: &'a AuditLog,
    /// The executor (it holds the trusted verifying keys and nonce store).
    pub executor: &'a Executor,
}

impl std::fmt::Debug for Resolver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("keys", self.keys)
            .field("executor", self.executor)
            .finish_non_exhaustive()
    }
}

impl Resolver<'_> {
    /// Records the request, investigates, decides, signs an allow, and
    /// records the decision.
    pub async fn decide(
        &self,
        runtime: &TenantRuntime,
        inquiry: &Inquiry<'_>,
    ) -> Result<Decided, ResolveError> {
        let tenant = inquiry.tenant_id;
        self.audit
            .append(tenant, Kind::Request, request_body(inquiry))
            .await?;
        let facts = match runtime.investigator.investigate(inquiry).await {
            Ok(facts) => facts,
            Err(e) => {
                self.refusal(tenant, inquiry.requester, "investigate", &e.to_string())
                    .await?;
                return Err(e.into());
            }
        };
        let Some(evaluation) = self.registry.decide(tenant, &facts) else {
            let e = ResolveError::NoModule(tenant.clone());
            self.refusal(tenant, inquiry.requester, "decide", &e.to_string())
                .await?;
            return Err(e);
        };
        let decision_id = DecisionId::generate()?;
        let mut record = DecisionRecord::new(
            decision_id.clone(),
            inquiry.requester.clone(),
            &facts,
            &evaluation,
        )?;
        let (signed, not_signed) = match (&evaluation.decision, facts.target_is_self) {
            (Decision::Allow { .. }, false) => (
                None,
                Some("the request is about another account; Latchkey acts only on the requester's own".to_owned()),
            ),
            (Decision::Allow { .. }, true) => {
                let request = IssueRequest {
                    tenant,
                    requester: inquiry.requester,
                    target: inquiry.requester,
                    pinned_module: &runtime.pinned,
                    facts: &facts,
                    evaluation: &evaluation,
                    decision_id: &decision_id,
                    max_tap_lifetime_minutes: runtime.max_tap_lifetime_minutes,
                };
                match receipt::issue(self.keys, &request, inquiry.now) {
                    Ok(signed) => (Some(signed), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
            _ => (None, None),
        };
        if let Some(signed) = &signed {
            record.receipt = Some(serde_json::from_str::<Value>(signed.envelope())?);
        }
        record.not_signed = not_signed.clone();
        let entry = self
            .audit
            .append(tenant, Kind::Decision, serde_json::to_value(&record)?)
            .await?;
        Ok(Decided {
            decision_id,
            entry,
            facts,
            evaluation,
            receipt: signed,
            not_signed,
        })
    }

    /// Has the executor make every write the decision's receipt allows, for
    /// the verified requester. The executor verifies the receipt again and
    /// records each write.
    pub async fn act(
        &self,
        runtime: &TenantRuntime,
        tenant: &TenantId,
        verified_requester: &UserId,
        decided: &Decided,
    ) -> Result<Execution, ResolveError> {
        let Some(signed) = &decided.receipt else {
            return Err(ResolveError::NothingToDo(
                decided
                    .not_signed
                    .clone()
                    .unwrap_or_else(|| format!("the decision is {}", decided.decision().kind())),
            ));
        };
        let receipt = signed.receipt();
        let writes: Vec<Write> = receipt
            .actions()
            .iter()
            .map(|a| Write::new(*a, *receipt.constraints()))
            .collect();
        Ok(self
            .executor
            .execute(
                &runtime.graph,
                tenant,
                verified_requester,
                signed.envelope(),
                &writes,
            )
            .await?)
    }

    async fn refusal(
        &self,
        tenant: &TenantId,
        requester: &UserId,
        stage: &str,
        reason: &str,
    ) -> Result<EntryId, AuditError> {
        self.audit
            .append(
                tenant,
                Kind::Refusal,
                json!({"stage": stage, "requester": requester, "reason": reason}),
            )
            .await
    }
}

/// The longest account name recorded as typed: chat text is bounded.
const MAX_ABOUT_CHARS: usize = 256;

fn request_body(inquiry: &Inquiry<'_>) -> Value {
    json!({
        "requester": inquiry.requester,
        "about": inquiry.about.map(|a| a.chars().take(MAX_ABOUT_CHARS).collect::<String>()),
        "claim": claim_name(inquiry.claim),
        "channel": inquiry.channel,
        "requested_actions": inquiry
            .requested_actions
            .map(|actions| actions.iter().map(|a| action_name(*a)).collect::<Vec<_>>()),
    })
}

/// The claim's name in the audit log.
pub fn claim_name(claim: Claim) -> &'static str {
    match claim {
        Claim::ForgotPassword => "forgot-password",
        Claim::LostMfaDevice => "lost-mfa-device",
        Claim::LockedOut => "locked-out",
        Claim::PasswordExpired => "password-expired",
        Claim::CannotSignIn => "cannot-sign-in",
    }
}
