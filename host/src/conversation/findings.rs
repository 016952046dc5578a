//! What the investigation found, in plain words for the person who asked:
//! built from the facts alone, the same record the policy decided on, so the
//! chat never says more than the policy saw.

use latchkey_policy::{Facts, Scenario};

/// One or two sentences on what the facts show, for the requester.
pub fn describe(facts: &Facts) -> String {
    let mut said: Vec<String> = Vec::new();
    let signals = &facts.sign_in;
    let now = facts.time.unix_seconds;
    if !facts.target_is_self {
        return format!(
            "That is not your account: you are signed in as {}, and I can only look at \
             and change your own.",
            facts.requester.user_principal_name
        );
    }
    if !facts.requester.account_enabled {
        said.push("your account is disabled".to_owned());
    }
    if signals.locked_out {
        said.push(format!(
            "your account is locked after {} failed sign-in{}",
            signals.recent_failures,
            plural(signals.recent_failures)
        ));
    }
    if signals.password_expired || facts.scenario == Scenario::PasswordExpired {
        match signals.last_password_change_at {
            Some(at) if at <= now => said.push(format!(
                "your password has expired (it was last changed {})",
                ago(now - at)
            )),
            _ => said.push("your password has expired".to_owned()),
        }
    }
    if !signals.blocking_policies.is_empty() {
        let names: Vec<String> = signals
            .blocking_policies
            .iter()
            .map(|p| format!("\"{}\"", p.display_name))
            .collect();
        said.push(format!(
            "your recent sign-ins were blocked by the Conditional Access {} {}",
            if names.len() == 1 {
                "policy"
            } else {
                "policies"
            },
            names.join(", ")
        ));
    }
    match facts.scenario {
        Scenario::LostMfaDevice => {
            if signals.error_codes.contains(&500_121) {
                said.push(
                    "your recent sign-ins failed at the MFA step, and you said your device is lost"
                        .to_owned(),
                );
            } else {
                said.push("you said your MFA device is lost".to_owned());
            }
        }
        Scenario::Mistyped => {
            let last = signals
                .last_success_at
                .filter(|at| *at <= now)
                .map(|at| format!(", and you signed in successfully {}", ago(now - at)))
                .unwrap_or_default();
            said.push(format!(
                "your last sign-in failed because the password was wrong{last}"
            ));
        }
        Scenario::ForgotPassword if !signals.locked_out && signals.recent_failures > 0 => {
            said.push(format!(
                "I see {} failed sign-in{} in the last day",
                signals.recent_failures,
                plural(signals.recent_failures)
            ));
        }
        Scenario::Unknown if said.is_empty() => {
            said.push("I could not see a clear reason in your recent sign-ins".to_owned());
        }
        _ => {}
    }
    if facts.requester.on_premises_synced {
        said.push("your account is synchronised from the on-premises directory".to_owned());
    }
    if facts.requester.is_privileged {
        said.push("your account holds an administrator role".to_owned());
    }
    if said.is_empty() {
        return "I looked at your account and your recent sign-ins.".to_owned();
    }
    let mut text = String::from("Here is what I found: ");
    text.push_str(&said.join("; "));
    text.push('.');
    text
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// "5 minutes ago", "3 hours ago", "2 days ago".
pub fn ago(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s < 90 => return "just now".to_owned(),
        s if s < 90 * 60 => (s / 60, "minute"),
        s if s < 36 * 3600 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// "in 10 minutes", "in 24 hours".
pub fn within(seconds: i64) -> String {
    match seconds {
        s if s < 90 => "in a minute".to_owned(),
        s if s < 90 * 60 => format!("in {} minutes", s / 60),
        s if s < 72 * 3600 => format!("in {} hours", s / 3600),
        s => format!("in {} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_policy::{BlockingPolicy, SignInSignals};

    #[test]
    fn a_lockout_is_described_with_its_failures() {
        let facts = Facts {
            scenario: Scenario::AccountLocked,
            sign_in: SignInSignals {
                recent_failures: 13,
                locked_out: true,
                ..SignInSignals::default()
            },
            ..Facts::default()
        };
        assert_eq!(
            describe(&facts),
            "Here is what I found: your account is locked after 13 failed sign-ins."
        );
    }

    #[test]
    fn a_conditional_access_block_names_the_policy() {
        let facts = Facts {
            scenario: Scenario::ConditionalAccessBlocked,
            sign_in: SignInSignals {
                blocking_policies: vec![BlockingPolicy {
                    id: "x".into(),
                    display_name: "Finance: block".into(),
                }],
                ..SignInSignals::default()
            },
            ..Facts::default()
        };
        assert!(describe(&facts).contains("Conditional Access policy \"Finance: block\""));
    }

    #[test]
    fn another_account_is_said_to_be_someone_elses() {
        let mut facts = Facts {
            target_is_self: false,
            ..Facts::default()
        };
        facts.requester.user_principal_name = "isaiah@contoso.com".into();
        assert!(describe(&facts).starts_with("That is not your account"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ago(30), "just now");
        assert_eq!(ago(600), "10 minutes ago");
        assert_eq!(ago(2 * 86_400), "2 days ago");
        assert_eq!(within(600), "in 10 minutes");
        assert_eq!(within(24 * 3600), "in 24 hours");
    }
}
