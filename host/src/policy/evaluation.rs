//! The result of running a module on facts, and the host's checks on what the
//! module returned.
//!
//! A module's decision is untrusted input. Anything that goes wrong inside the
//! sandbox, and anything the module returns that the host cannot honour as
//! written, becomes a deny whose [`Fault`] is recorded beside it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use latchkey_policy::{Action, Approver, Decision, Facts};

use crate::policy::ModuleHash;

/// The longest reason, in bytes, the host accepts from a module.
pub const MAX_REASON_BYTES: usize = 2048;
/// The most verification requirements a decision may list.
pub const MAX_REQUIREMENTS: usize = 8;
/// The longest approver group id, in bytes.
pub const MAX_GROUP_ID_BYTES: usize = 128;
/// The Temporary Access Pass lifetimes Entra accepts, in minutes.
pub const TAP_LIFETIME_MINUTES: std::ops::RangeInclusive<u32> = 10..=43_200;

/// One decision by one module.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The module that decided.
    pub module: ModuleHash,
    /// What to do. Always a deny when `fault` is set.
    pub decision: Decision,
    /// Why the module's own decision was replaced by a deny, if it was.
    pub fault: Option<Fault>,
    /// Fuel the module consumed (deterministic for the same module and facts).
    pub fuel_used: u64,
    /// Wall time from instantiation to the returned decision.
    pub elapsed: Duration,
}

/// Whose fault a [`Fault`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The module misbehaved: the tenant's (or its publisher's) to fix.
    Module,
    /// The host could not run the module: Latchkey's operator's to fix.
    Host,
}

/// Why a module's decision was replaced by a deny.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The module used up its fuel budget.
    OutOfFuel,
    /// The module ran past its wall-clock deadline.
    Deadline,
    /// The module tried to grow its memory past the limit.
    MemoryLimit,
    /// The module tried to grow a table past the limit.
    TableLimit,
    /// The module exhausted its stack (for example, unbounded recursion).
    StackOverflow,
    /// The module trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap(String),
    /// The module returned something that is not a valid decision.
    Malformed(String),
    /// The module returned a decision larger than the host accepts.
    Oversized(String),
    /// The host could not instantiate the module.
    Instantiate(String),
}

impl Fault {
    /// A stable, short code for logs and the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::OutOfFuel => "out-of-fuel",
            Fault::Deadline => "deadline",
            Fault::MemoryLimit => "memory-limit",
            Fault::TableLimit => "table-limit",
            Fault::StackOverflow => "stack-overflow",
            Fault::Trap(_) => "trap",
            Fault::Malformed(_) => "malformed-decision",
            Fault::Oversized(_) => "oversized-decision",
            Fault::Instantiate(_) => "instantiate",
        }
    }

    /// Whose fault it is.
    pub fn blame(&self) -> Blame {
        match self {
            Fault::Instantiate(_) => Blame::Host,
            _ => Blame::Module,
        }
    }

    /// The deny that replaces the module's decision.
    pub(crate) fn to_deny(&self) -> Decision {
        Decision::deny(format!(
            "The policy could not reach a decision ({}), so nothing was changed. \
             The help desk has the details.",
            self.code()
        ))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::OutOfFuel => f.write_str("the module used up its fuel budget"),
            Fault::Deadline => f.write_str("the module ran past its deadline"),
            Fault::MemoryLimit => f.write_str("the module tried to grow its memory past the limit"),
            Fault::TableLimit => f.write_str("the module tried to grow a table past the limit"),
            Fault::StackOverflow => f.write_str("the module exhausted its stack"),
            Fault::Trap(why) => write!(f, "the module trapped: {why}"),
            Fault::Malformed(why) => write!(f, "malformed decision: {why}"),
            Fault::Oversized(why) => write!(f, "oversized decision: {why}"),
            Fault::Instantiate(why) => write!(f, "could not instantiate the module: {why}"),
        }
    }
}

/// Checks a decision the module returned against the facts it was given.
///
/// The host honours a decision only as written and only within the request:
/// an allow may name only requested actions, and every part must be within the
/// sizes and ranges below.
pub(crate) fn check(decision: &Decision, facts: &Facts) -> Result<(), Fault> {
    let reason = decision.reason();
    if reason.len() > MAX_REASON_BYTES {
        return Err(Fault::Oversized(format!(
            "a reason of {} bytes (at most {MAX_REASON_BYTES})",
            reason.len()
        )));
    }
    match decision {
        Decision::Allow {
            actions,
            constraints,
            ..
        } => {
            if actions.is_empty() {
                return Err(Fault::Malformed("an allow with no actions".into()));
            }
            let distinct: BTreeSet<&Action> = actions.iter().collect();
            if distinct.len() != actions.len() {
                return Err(Fault::Malformed(
                    "an allow that names an action twice".into(),
                ));
            }
            if let Some(action) = actions.iter().find(|a| !facts.requests(**a)) {
                return Err(Fault::Malformed(format!(
                    "allows {}, which was not requested",
                    action_name(*action)
                )));
            }
            if let Some(minutes) = constraints.tap_lifetime_minutes
                && !TAP_LIFETIME_MINUTES.contains(&minutes)
            {
                return Err(Fault::Malformed(format!(
                    "a Temporary Access Pass lifetime of {minutes} minutes (Entra accepts 10 to 43200)"
                )));
            }
        }
        Decision::RequireVerification { requirements, .. } => {
            if requirements.is_empty() {
                return Err(Fault::Malformed(
                    "a verification request with no requirement".into(),
                ));
            }
            if requirements.len() > MAX_REQUIREMENTS {
                return Err(Fault::Oversized(format!(
                    "{} verification requirements (at most {MAX_REQUIREMENTS})",
                    requirements.len()
                )));
            }
            if requirements.iter().any(|r| r.0.is_empty()) {
                return Err(Fault::Malformed(
                    "a verification requirement with no method".into(),
                ));
            }
        }
        Decision::RequireApproval {
            approver: Approver::Group(group),
            ..
        } => {
            if group.trim().is_empty() {
                return Err(Fault::Malformed("an approval by a group with no id".into()));
            }
            if group.len() > MAX_GROUP_ID_BYTES {
                return Err(Fault::Oversized(format!(
                    "an approver group id of {} bytes (at most {MAX_GROUP_ID_BYTES})",
                    group.len()
                )));
            }
        }
        Decision::RequireApproval { .. } | Decision::Deny { .. } | Decision::Escalate { .. } => {}
    }
    Ok(())
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::ResetPassword => "reset-password",
        Action::IssueTemporaryAccessPass => "issue-temporary-access-pass",
        Action::RemoveLostMfaMethods => "remove-lost-mfa-methods",
        Action::RevokeSessions => "revoke-sessions",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_policy::{AnyOf, Method};

    fn requesting(actions: &[Action]) -> Facts {
        Facts {
            requested_actions: actions.to_vec(),
            ..Facts::default()
        }
    }

    #[test]
    fn an_allow_of_an_unrequested_action_is_malformed() {
        let facts = requesting(&[Action::ResetPassword]);
        let d = Decision::allow([Action::ResetPassword, Action::RevokeSessions]).because("x");
        let err = check(&d, &facts).unwrap_err();
        assert_eq!(err.code(), "malformed-decision");
        assert!(err.to_string().contains("revoke-sessions"));
        let ok = Decision::allow([Action::ResetPassword]).because("x");
        assert_eq!(check(&ok, &facts), Ok(()));
    }

    #[test]
    fn out_of_range_tap_lifetime_is_malformed() {
        let facts = requesting(&[Action::IssueTemporaryAccessPass]);
        for minutes in [0, 9, 43_201] {
            let d = Decision::allow([Action::IssueTemporaryAccessPass])
                .tap_lifetime_minutes(minutes)
                .because("x");
            assert!(check(&d, &facts).is_err(), "{minutes}");
        }
    }

    #[test]
    fn long_reasons_and_empty_requirements_are_refused() {
        let facts = Facts::default();
        let long = Decision::deny("x".repeat(MAX_REASON_BYTES + 1));
        assert_eq!(
            check(&long, &facts).unwrap_err().code(),
            "oversized-decision"
        );
        let empty = Decision::verify().because("x");
        assert_eq!(
            check(&empty, &facts).unwrap_err().code(),
            "malformed-decision"
        );
        let empty_any = Decision::RequireVerification {
            requirements: vec![AnyOf(vec![])],
            reason: "x".into(),
        };
        assert!(check(&empty_any, &facts).is_err());
        let fine = Decision::verify().method(Method::MfaStepUp).because("x");
        assert_eq!(check(&fine, &facts), Ok(()));
    }
}
