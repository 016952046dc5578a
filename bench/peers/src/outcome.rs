//! The normalised outcome every engine's answer is compared on.

use latchkey_policy::{Action, Approver, Constraints, Decision, Method};

/// What a decision amounts to, without its free-text reason: the part of a
/// [`Decision`] that three engines must agree on exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go ahead with these actions (in the contract's order), under these limits.
    Allow {
        /// The allowed actions.
        actions: Vec<Action>,
        /// Limits on them (Temporary Access Pass lifetime and use).
        constraints: Constraints,
    },
    /// Do nothing.
    Deny,
    /// Verify first; each requirement is met by any one of its methods.
    RequireVerification {
        /// The requirements, each a list of alternatives.
        requirements: Vec<Vec<Method>>,
    },
    /// Ask this approver first.
    RequireApproval {
        /// Who may approve.
        approver: Approver,
    },
    /// Hand the case to the help desk.
    Escalate,
}

impl Outcome {
    /// The outcome of one of Latchkey's own decisions.
    pub fn of(decision: &Decision) -> Outcome {
        match decision {
            Decision::Allow {
                actions,
                constraints,
                ..
            } => Outcome::Allow {
                actions: actions.clone(),
                constraints: *constraints,
            },
            Decision::Deny { .. } => Outcome::Deny,
            Decision::RequireVerification { requirements, .. } => Outcome::RequireVerification {
                requirements: requirements.iter().map(|r| r.0.clone()).collect(),
            },
            Decision::RequireApproval { approver, .. } => Outcome::RequireApproval {
                approver: approver.clone(),
            },
            Decision::Escalate { .. } => Outcome::Escalate,
        }
    }

    /// The kind as written in the contract: `allow`, `deny`,
    /// `require-verification`, `require-approval` or `escalate`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Allow { .. } => "allow",
            Outcome::Deny => "deny",
            Outcome::RequireVerification { .. } => "require-verification",
            Outcome::RequireApproval { .. } => "require-approval",
            Outcome::Escalate => "escalate",
        }
    }
}
