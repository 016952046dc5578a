//! Northwind Traders' tenant policy.
//!
//! Stricter than Latchkey's default: resets only in a maintenance window,
//! two alternate verifications for a lost device, Finance needs its own
//! approvers, and administrators never use self-service.
//!
//! Rules are checked in this order; the first that applies decides.
//!
//! | situation | decision |
//! |---|---|
//! | someone else's account | require approval by the IT service desk group (routing only: Latchkey never acts on another account) |
//! | account disabled | escalate |
//! | privileged account (any directory role), any situation | escalate: never self-service |
//! | Conditional Access block | escalate, naming the blocking policies; nothing is changed |
//! | mistyped password | deny, explaining there is nothing to fix |
//! | not recognised | escalate |
//! | synced from on-premises AD, any write (reset or lost device) | escalate |
//! | forgot password, locked out, password expired, outside Monday-Friday 07:00-18:59 (tenant time) | deny, saying when resets are available |
//! | the same inside the window, without any MFA method | escalate (resets need MFA) |
//! | the same inside the window | MFA step-up (within 5 minutes), then reset password and revoke sessions |
//! | lost MFA device, no manager or no recovery email | escalate |
//! | lost MFA device | manager confirmation **and** a recovery-email code (each within 30 minutes), then a one-time Temporary Access Pass (30 minutes) and removal of the lost methods |
//! | Finance department (any case), any write | after verification, approval by the Finance approvers group first |
//! | none of the allowed actions requested | deny |
#![no_std]

use latchkey_policy::prelude::*;

/// The Entra group whose members approve writes to Finance accounts.
pub const FINANCE_APPROVERS: &str = "3f1c9a52-7b4e-4d2a-9c61-5a8e2f0b7d13";
/// The Entra group of the IT service desk, which handles requests about other people's accounts.
pub const IT_SERVICE_DESK: &str = "9b2e4f70-1c3d-4e5f-8a6b-7c8d9e0f1a2b";
/// The department whose accounts need the Finance approvers' approval.
const FINANCE_DEPARTMENT: &str = "Finance";

/// How recent an MFA step-up must be to count, in seconds.
const STEP_UP_MAX_AGE: i64 = 5 * 60;
/// How recent a manager confirmation or recovery-email code must be to count, in seconds.
const ALTERNATE_MAX_AGE: i64 = 30 * 60;
/// Temporary Access Pass lifetime for a lost device, in minutes.
const TAP_LIFETIME_MINUTES: u32 = 30;
/// First local hour of the password-reset window (07:00).
const WINDOW_FIRST_HOUR: u8 = 7;
/// Last local hour of the password-reset window (18:00 to 18:59).
const WINDOW_LAST_HOUR: u8 = 18;

/// Northwind Traders' policy.
pub struct NorthwindPolicy;

impl Policy for NorthwindPolicy {
    fn evaluate(facts: &Facts) -> Decision {
        if !facts.target_is_self || facts.scenario == Scenario::OtherAccount {
            return Decision::approval(
                Approver::Group(IT_SERVICE_DESK.to_string()),
                "This request is about someone else's account, which I never change. \
                 I have routed it to the IT service desk, who will contact that person.",
            );
        }
        if !facts.requester.account_enabled {
            return Decision::escalate(
                "Your account is disabled, which only an administrator can change. \
                 I have passed this to the IT service desk.",
            );
        }
        if facts.requester.is_privileged {
            return Decision::escalate(
                "Your account holds an administrator role; at Northwind these are never \
                 handled by self-service. I have passed this to the IT service desk.",
            );
        }
        match facts.scenario {
            Scenario::ConditionalAccessBlocked => escalate_conditional_access(facts),
            Scenario::Mistyped => Decision::deny(
                "Your account is fine: the last attempt failed because the password was \
                 mistyped, and you have signed in successfully since. Try again carefully; \
                 nothing needs to change.",
            ),
            Scenario::ForgotPassword | Scenario::AccountLocked | Scenario::PasswordExpired => {
                password_reset(facts)
            }
            Scenario::LostMfaDevice => lost_device(facts),
            Scenario::OtherAccount | Scenario::Unknown => Decision::escalate(
                "I could not tell what is stopping you from signing in, so I have passed \
                 this to the IT service desk.",
            ),
        }
    }
}

fn escalate_conditional_access(facts: &Facts) -> Decision {
    let names: Vec<&str> = facts
        .sign_in
        .blocking_policies
        .iter()
        .map(|p| p.display_name.as_str())
        .collect();
    if names.is_empty() {
        return Decision::escalate(
            "A Conditional Access policy blocked your sign-in. Latchkey never changes \
             Conditional Access; I have passed this to the IT service desk.",
        );
    }
    Decision::escalate(format!(
        "Your sign-in was blocked by the Conditional Access policy \"{}\". Your password \
         and account are fine. Latchkey never changes Conditional Access; I have passed \
         this to the IT service desk so they can look at it.",
        names.join("\", \"")
    ))
}

/// True inside the password-reset window: Monday to Friday, 07:00 to 18:59 tenant time.
fn in_reset_window(facts: &Facts) -> bool {
    facts.time.local_weekday.is_workday()
        && (WINDOW_FIRST_HOUR..=WINDOW_LAST_HOUR).contains(&facts.time.local_hour)
}

fn on_premises(facts: &Facts) -> Option<Decision> {
    facts.requester.on_premises_synced.then(|| {
        Decision::escalate(
            "Your account is managed by Northwind's on-premises directory, so I cannot \
             change it from here. I have passed this to the IT service desk.",
        )
    })
}

fn password_reset(facts: &Facts) -> Decision {
    if let Some(decision) = on_premises(facts) {
        return decision;
    }
    if !in_reset_window(facts) {
        return Decision::deny(
            "Password resets are available Monday to Friday, 07:00 to 19:00 (Northwind \
             time). Please come back then, or call the IT service desk if it is urgent.",
        );
    }
    if !facts.mfa.mfa_capable {
        return Decision::escalate(
            "A password reset needs you to confirm it is you with MFA, and you have no MFA \
             method registered. I have passed this to the IT service desk.",
        );
    }
    if !facts.verified_within(Method::MfaStepUp, STEP_UP_MAX_AGE) {
        return Decision::verify()
            .method(Method::MfaStepUp)
            .because("First, confirm it is you: approve the sign-in with your authenticator.");
    }
    if let Some(decision) = finance_approval(facts) {
        return decision;
    }
    Decision::allow_requested(facts, [Action::ResetPassword, Action::RevokeSessions]).because(
        "You are verified. I will set a temporary password that you must change when \
         you next sign in, and sign you out everywhere else.",
    )
}

fn lost_device(facts: &Facts) -> Decision {
    if let Some(decision) = on_premises(facts) {
        return decision;
    }
    if !facts.requester.has_manager || !facts.mfa.has_recovery_email {
        return Decision::escalate(
            "Without your MFA device, Northwind needs both your manager's confirmation and \
             a code sent to your recovery email, and one of them is not on record. I have \
             passed this to the IT service desk.",
        );
    }
    let manager = facts.verified_within(Method::ManagerConfirmation, ALTERNATE_MAX_AGE);
    let email = facts.verified_within(Method::RecoveryEmailCode, ALTERNATE_MAX_AGE);
    if !manager || !email {
        let mut verify = Decision::verify();
        if !manager {
            verify = verify.method(Method::ManagerConfirmation);
        }
        if !email {
            verify = verify.method(Method::RecoveryEmailCode);
        }
        return verify.because(
            "Without your MFA device, I need both your manager's confirmation and the code \
             sent to your recovery email.",
        );
    }
    if let Some(decision) = finance_approval(facts) {
        return decision;
    }
    Decision::allow_requested(
        facts,
        [
            Action::IssueTemporaryAccessPass,
            Action::RemoveLostMfaMethods,
        ],
    )
    .tap_lifetime_minutes(TAP_LIFETIME_MINUTES)
    .tap_one_time_use()
    .because(
        "You are verified. I will give you a one-time Temporary Access Pass, valid for \
         30 minutes, to sign in and register your new device, and remove the lost one.",
    )
}

/// Finance accounts need the Finance approvers' approval before any write.
fn finance_approval(facts: &Facts) -> Option<Decision> {
    let approvers = Approver::Group(FINANCE_APPROVERS.to_string());
    if !facts.in_department(FINANCE_DEPARTMENT) || facts.approved_via(&approvers) {
        return None;
    }
    Some(Decision::approval(
        approvers,
        "Changes to Finance accounts must be approved by the Finance approvers first.",
    ))
}

latchkey_policy::export_policy!(NorthwindPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus() {
        let corpus = latchkey_policy::corpus::Corpus::from_json(include_str!("../cases.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        corpus.assert_passes(NorthwindPolicy::evaluate);
    }

    #[test]
    fn reset_window_is_weekdays_seven_to_nineteen() {
        let at = |weekday, hour| Facts {
            time: latchkey_policy::Clock {
                unix_seconds: 1_795_428_000,
                local_hour: hour,
                local_weekday: weekday,
            },
            ..Facts::default()
        };
        for hour in 0..24 {
            assert_eq!(
                in_reset_window(&at(Weekday::Friday, hour)),
                (7..19).contains(&hour),
                "Friday {hour}:00"
            );
            assert!(!in_reset_window(&at(Weekday::Saturday, hour)));
            assert!(!in_reset_window(&at(Weekday::Sunday, hour)));
        }
    }
}
