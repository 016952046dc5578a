//! Latchkey's default tenant policy.
//!
//! | situation | decision |
//! |---|---|
//! | someone else's account | deny: Latchkey only acts on your own account |
//! | account disabled | escalate |
//! | synced from on-premises AD, password write needed | escalate (a cloud reset may not reach AD) |
//! | forgot password, locked out, password expired | MFA step-up (within 10 minutes), then reset password and revoke sessions |
//! | the same without any MFA method | manager confirmation or a recovery-email code, then reset |
//! | lost MFA device | manager confirmation or a recovery-email code, then a one-time Temporary Access Pass (60 minutes) and removal of the lost methods |
//! | privileged account (any of the above) | verification, then approval by the manager |
//! | Conditional Access block | deny, naming the policy; nothing is changed |
//! | mistyped password | deny, explaining there is nothing to fix |
//! | not recognised | escalate |
#![no_std]

use latchkey_policy::prelude::*;

/// How recent an MFA step-up must be to count, in seconds.
const STEP_UP_MAX_AGE: i64 = 10 * 60;
/// How recent an alternate verification must be to count, in seconds.
const ALTERNATE_MAX_AGE: i64 = 30 * 60;
/// Temporary Access Pass lifetime for a lost device, in minutes.
const TAP_LIFETIME_MINUTES: u32 = 60;

/// The default policy.
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {
    fn evaluate(facts: &Facts) -> Decision {
        if !facts.target_is_self || facts.scenario == Scenario::OtherAccount {
            return Decision::deny(
                "I can only help with your own account. Ask the person to contact me \
                 themselves, or contact the help desk.",
            );
        }
        if !facts.requester.account_enabled {
            return Decision::escalate(
                "Your account is disabled, which only an administrator can change. \
                 I have passed this to the help desk.",
            );
        }
        match facts.scenario {
            Scenario::ConditionalAccessBlocked => explain_conditional_access(facts),
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
                 this to the help desk.",
            ),
        }
    }
}

fn explain_conditional_access(facts: &Facts) -> Decision {
    let names: Vec<&str> = facts
        .sign_in
        .blocking_policies
        .iter()
        .map(|p| p.display_name.as_str())
        .collect();
    if names.is_empty() {
        return Decision::deny(
            "A Conditional Access policy blocked your sign-in. Latchkey never changes \
             Conditional Access; the help desk can tell you what it requires.",
        );
    }
    Decision::deny(format!(
        "Your sign-in was blocked by the Conditional Access policy \"{}\". Your password \
         and account are fine; the policy decides where and how you may sign in. Latchkey \
         never changes Conditional Access; ask the help desk if you think it should not apply.",
        names.join("\", \"")
    ))
}

fn password_reset(facts: &Facts) -> Decision {
    if facts.requester.on_premises_synced {
        return Decision::escalate(
            "Your account is managed by the on-premises directory, where a password set \
             here may not apply. I have passed this to the help desk.",
        );
    }
    if facts.mfa.mfa_capable {
        if !facts.verified_within(Method::MfaStepUp, STEP_UP_MAX_AGE) {
            return Decision::verify()
                .method(Method::MfaStepUp)
                .because("First, confirm it is you: approve the sign-in with your authenticator.");
        }
    } else if let Err(decision) = alternate_verification(facts) {
        return decision;
    }
    if facts.requester.is_privileged && !facts.approved_via(&Approver::Manager) {
        return privileged_approval(facts);
    }
    Decision::allow_requested(facts, [Action::ResetPassword, Action::RevokeSessions]).because(
        "You are verified. I will set a temporary password that you must change when \
         you next sign in, and sign you out everywhere else.",
    )
}

fn lost_device(facts: &Facts) -> Decision {
    if let Err(decision) = alternate_verification(facts) {
        return decision;
    }
    if facts.requester.is_privileged && !facts.approved_via(&Approver::Manager) {
        return privileged_approval(facts);
    }
    Decision::allow_requested(
        facts,
        [
            Action::IssueTemporaryAccessPass,
            Action::RemoveLostMfaMethods,
            Action::RevokeSessions,
        ],
    )
    .tap_lifetime_minutes(TAP_LIFETIME_MINUTES)
    .tap_one_time_use()
    .because(
        "You are verified. I will give you a one-time Temporary Access Pass, valid for \
         60 minutes, to sign in and register your new device, and remove the lost one.",
    )
}

/// Manager confirmation or a recovery-email code, whichever the user can do.
fn alternate_verification(facts: &Facts) -> Result<(), Decision> {
    let done = facts.verified_within(Method::ManagerConfirmation, ALTERNATE_MAX_AGE)
        || facts.verified_within(Method::RecoveryEmailCode, ALTERNATE_MAX_AGE);
    if done {
        return Ok(());
    }
    let mut methods = Vec::new();
    if facts.requester.has_manager {
        methods.push(Method::ManagerConfirmation);
    }
    if facts.mfa.has_recovery_email {
        methods.push(Method::RecoveryEmailCode);
    }
    if methods.is_empty() {
        return Err(Decision::escalate(
            "I cannot verify you without your MFA device: you have no manager or recovery \
             email on record. I have passed this to the help desk.",
        ));
    }
    Err(Decision::verify()
        .any_of(methods)
        .because("Without your MFA device I need another way to confirm it is you."))
}

fn privileged_approval(facts: &Facts) -> Decision {
    if !facts.requester.has_manager {
        return Decision::escalate(
            "Your account holds an administrator role and has no manager on record to \
             approve this. I have passed it to the help desk.",
        );
    }
    Decision::approval(
        Approver::Manager,
        "Your account holds an administrator role, so your manager must approve this first.",
    )
}

latchkey_policy::export_policy!(DefaultPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus() {
        let corpus = latchkey_policy::corpus::Corpus::from_json(include_str!("../cases.json"))
            .unwrap_or_else(|e| panic!("{e}"));
        corpus.assert_passes(DefaultPolicy::evaluate);
    }

    #[test]
    fn never_allows_an_unrequested_action() {
        let facts = Facts {
            scenario: Scenario::ForgotPassword,
            mfa: latchkey_policy::MfaState {
                mfa_capable: true,
                ..Default::default()
            },
            verifications: vec![latchkey_policy::Verification {
                method: Method::MfaStepUp,
                verified_at: Facts::default().time.unix_seconds,
            }],
            requested_actions: vec![Action::ResetPassword],
            ..Facts::default()
        };
        match DefaultPolicy::evaluate(&facts) {
            Decision::Allow { actions, .. } => assert_eq!(actions, vec![Action::ResetPassword]),
            other => panic!("expected allow, got {other:?}"),
        }
    }
}
