//! What a policy returns, and the builders that make writing one read like the rule it is.

use alloc::string::String;
use alloc::vec::Vec;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::facts::{Action, Facts, Method};

/// Limits on allowed actions. The host clamps these to its own maxima.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Constraints {
    /// Temporary Access Pass lifetime in minutes (Entra accepts 10 to 43200);
    /// `None` means the tenant's default.
    pub tap_lifetime_minutes: Option<u32>,
    /// The Temporary Access Pass can be used only once.
    pub tap_one_time_use: bool,
}

/// One verification requirement: any one of these methods meets it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(transparent))]
pub struct AnyOf(pub Vec<Method>);

/// Who must approve.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Approver {
    /// The requester's manager in Entra ID.
    Manager,
    /// Any member of this Entra group (object id).
    Group(String),
}

/// What the policy decided.
///
/// Build one with [`Decision::allow`], [`Decision::deny`], [`Decision::verify`],
/// [`Decision::approval`] or [`Decision::escalate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(tag = "decision", rename_all = "kebab-case", deny_unknown_fields)
)]
pub enum Decision {
    /// Go ahead with these actions on the requester's own account.
    Allow {
        /// Each must be among the requested actions.
        actions: Vec<Action>,
        /// Limits on those actions.
        #[cfg_attr(feature = "serde", serde(default))]
        constraints: Constraints,
        /// Why, for the end user.
        reason: String,
    },
    /// Do nothing.
    Deny {
        /// Why, for the end user.
        reason: String,
    },
    /// Verify further, then ask again. Every requirement must be met.
    RequireVerification {
        /// Each requirement is met by any one of its methods.
        requirements: Vec<AnyOf>,
        /// Why, for the end user.
        reason: String,
    },
    /// Ask an approver first.
    RequireApproval {
        /// Who may approve.
        approver: Approver,
        /// Why, for the end user and the approver.
        reason: String,
    },
    /// Hand the case to the help desk; do nothing automatically.
    Escalate {
        /// Why, for the end user and the help desk.
        reason: String,
    },
}

impl Decision {
    /// Start an allow of `actions`; finish it with [`AllowBuilder::because`].
    pub fn allow(actions: impl IntoIterator<Item = Action>) -> AllowBuilder {
        AllowBuilder {
            actions: actions.into_iter().collect(),
            constraints: Constraints::default(),
        }
    }

    /// Start an allow of those of `wanted` that the host requested in `facts`
    /// (a decision may allow nothing else). If none were requested,
    /// [`AllowBuilder::because`] gives a deny instead: an allow of nothing is
    /// not an allow.
    pub fn allow_requested(
        facts: &Facts,
        wanted: impl IntoIterator<Item = Action>,
    ) -> AllowBuilder {
        Decision::allow(wanted.into_iter().filter(|a| facts.requests(*a)))
    }

    /// Refuse, with a reason the end user will read.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny {
            reason: reason.into(),
        }
    }

    /// Hand the case to the help desk, with a reason.
    pub fn escalate(reason: impl Into<String>) -> Decision {
        Decision::Escalate {
            reason: reason.into(),
        }
    }

    /// Require approval by `approver`, with a reason.
    pub fn approval(approver: Approver, reason: impl Into<String>) -> Decision {
        Decision::RequireApproval {
            approver,
            reason: reason.into(),
        }
    }

    /// Start a verification requirement; add requirements with
    /// [`VerifyBuilder::any_of`] and finish with [`VerifyBuilder::because`].
    pub fn verify() -> VerifyBuilder {
        VerifyBuilder {
            requirements: Vec::new(),
        }
    }

    /// The reason given, whatever the kind of decision.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason, .. }
            | Decision::Deny { reason }
            | Decision::RequireVerification { reason, .. }
            | Decision::RequireApproval { reason, .. }
            | Decision::Escalate { reason } => reason,
        }
    }

    /// The decision's kind as written in the contract: `allow`, `deny`,
    /// `require-verification`, `require-approval` or `escalate`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::RequireVerification { .. } => "require-verification",
            Decision::RequireApproval { .. } => "require-approval",
            Decision::Escalate { .. } => "escalate",
        }
    }

    /// True for an allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// An allow under construction.
#[derive(Clone, Debug)]
#[must_use = "finish the allow with `.because(reason)`"]
pub struct AllowBuilder {
    actions: Vec<Action>,
    constraints: Constraints,
}

impl AllowBuilder {
    /// Limit a Temporary Access Pass to this many minutes.
    pub fn tap_lifetime_minutes(mut self, minutes: u32) -> Self {
        self.constraints.tap_lifetime_minutes = Some(minutes);
        self
    }

    /// Make a Temporary Access Pass usable only once.
    pub fn tap_one_time_use(mut self) -> Self {
        self.constraints.tap_one_time_use = true;
        self
    }

    /// Finish the allow with a reason the end user will read. An allow with
    /// no actions becomes a deny saying there is nothing to change.
    pub fn because(self, reason: impl Into<String>) -> Decision {
        if self.actions.is_empty() {
            return Decision::deny("There is nothing I am allowed to change for this request.");
        }
        Decision::Allow {
            actions: self.actions,
            constraints: self.constraints,
            reason: reason.into(),
        }
    }
}

/// A verification requirement under construction.
#[derive(Clone, Debug)]
#[must_use = "finish the requirement with `.because(reason)`"]
pub struct VerifyBuilder {
    requirements: Vec<AnyOf>,
}

impl VerifyBuilder {
    /// Add a requirement met by any one of `methods`.
    pub fn any_of(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.requirements.push(AnyOf(methods.into_iter().collect()));
        self
    }

    /// Add a requirement met only by `method`.
    pub fn method(self, method: Method) -> Self {
        self.any_of([method])
    }

    /// Finish with a reason the end user will read.
    pub fn because(self, reason: impl Into<String>) -> Decision {
        Decision::RequireVerification {
            requirements: self.requirements,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_requested_keeps_only_requested_actions_and_never_allows_nothing() {
        let facts = Facts {
            requested_actions: alloc::vec![Action::ResetPassword],
            ..Facts::default()
        };
        let d = Decision::allow_requested(&facts, [Action::RevokeSessions, Action::ResetPassword])
            .because("ok");
        assert!(
            matches!(&d, Decision::Allow { actions, .. } if actions == &[Action::ResetPassword])
        );
        let none = Decision::allow_requested(&facts, [Action::RevokeSessions]).because("ok");
        assert_eq!(none.kind(), "deny");
    }
}
