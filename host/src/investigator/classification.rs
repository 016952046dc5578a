//! Which of the seven situations behind "I can't log in" this is, from the
//! sign-in signals and what the user says.
//!
//! The first rule that matches decides. "Now" means the sign-ins newer than
//! the newest successful one in the look-back window (all of them when none
//! succeeded); error codes are read as the table in `sign_ins.rs` says.
//!
//! | # | When | Scenario | Why this order |
//! |---|---|---|---|
//! | 1 | the account asked about is not the requester's | other-account | whatever else is true, Latchkey acts on nobody else |
//! | 2 | the user says the MFA device is lost | lost-mfa-device | Entra cannot see a lost phone; only the user can say it |
//! | 3 | now has a 50053 from a malicious IP address | unknown | a security matter for a person, not a lockout a reset fixes |
//! | 4 | now has a 50053 | account-locked | a lockout fails every later attempt, whatever else went wrong first |
//! | 5 | now has a Conditional Access code (53000, 53001, 53002, 53003, 530032) | conditional-access-blocked | the password was right: fixing it changes nothing |
//! | 6 | now has 50055 or 50144, or the domain's policy says the password expired, or now has a 1200xx and the user says it expired | password-expired | |
//! | 7 | now has a 500121 | lost-mfa-device | the password was right and the MFA prompt failed |
//! | 8 | the window has a 50126 and the newest sign-in succeeded | mistyped | the user has since signed in: there is nothing to fix, whatever they believe |
//! | 9 | the user says they forgot the password | forgot-password | |
//! | 10 | now has a 50126 | forgot-password | wrong passwords with no success since: they cannot get it right |
//! | 11 | otherwise | unknown | a person looks at it |
//!
//! A disabled account (50057) is no scenario of its own: the facts say
//! `account-enabled: false`, and policies decide on that.

use latchkey_policy::Scenario;

use super::Claim;
use super::sign_ins::{Meaning, SignIn, since_last_success};

/// What classification looks at.
pub(super) struct Input<'a> {
    /// The request is about the requester's own account.
    pub target_is_self: bool,
    /// What the user says.
    pub claim: Claim,
    /// The window's sign-ins, newest first.
    pub sign_ins: &'a [SignIn],
    /// The domain's password policy says the password has expired.
    pub expired_by_policy: bool,
}

/// The scenario; see the module docs for the rules.
pub(super) fn classify(input: &Input<'_>) -> Scenario {
    let now = since_last_success(input.sign_ins);
    let now_has = |meaning: Meaning| now.iter().any(|s| s.meaning() == meaning);
    let newest_succeeded = input.sign_ins.first().is_some_and(|s| !s.failed());
    let window_has_bad_password = input
        .sign_ins
        .iter()
        .any(|s| s.meaning() == Meaning::BadPassword);

    if !input.target_is_self {
        Scenario::OtherAccount
    } else if input.claim == Claim::LostMfaDevice {
        Scenario::LostMfaDevice
    } else if now.iter().any(|s| s.malicious_ip) {
        Scenario::Unknown
    } else if now_has(Meaning::Locked) {
        Scenario::AccountLocked
    } else if now_has(Meaning::ConditionalAccess) {
        Scenario::ConditionalAccessBlocked
    } else if now_has(Meaning::Expired)
        || input.expired_by_policy
        || (now_has(Meaning::PasswordChangeFailed) && input.claim == Claim::PasswordExpired)
    {
        Scenario::PasswordExpired
    } else if now_has(Meaning::MfaFailed) {
        Scenario::LostMfaDevice
    } else if newest_succeeded && window_has_bad_password {
        Scenario::Mistyped
    } else if input.claim == Claim::ForgotPassword || now_has(Meaning::BadPassword) {
        Scenario::ForgotPassword
    } else {
        Scenario::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::super::sign_ins::tests::at;
    use super::*;

    fn classify_as(claim: Claim, sign_ins: &[SignIn]) -> Scenario {
        classify(&Input {
            target_is_self: true,
            claim,
            sign_ins,
            expired_by_policy: false,
        })
    }

    #[test]
    fn another_account_wins_over_everything() {
        let scenario = classify(&Input {
            target_is_self: false,
            claim: Claim::LostMfaDevice,
            sign_ins: &[at(1, 50053)],
            expired_by_policy: true,
        });
        assert_eq!(scenario, Scenario::OtherAccount);
    }

    #[test]
    fn a_lost_device_is_the_users_word_or_a_failed_prompt() {
        assert_eq!(
            classify_as(Claim::LostMfaDevice, &[at(1, 0)]),
            Scenario::LostMfaDevice
        );
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(1, 500_121), at(9, 0)]),
            Scenario::LostMfaDevice
        );
        // A failed prompt before a success is over.
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(1, 0), at(9, 500_121)]),
            Scenario::Unknown
        );
    }

    #[test]
    fn lockout_then_conditional_access_then_expiry() {
        let locked = [at(1, 53003), at(2, 50053), at(3, 50126)];
        assert_eq!(
            classify_as(Claim::ForgotPassword, &locked),
            Scenario::AccountLocked
        );
        assert_eq!(
            classify_as(Claim::ForgotPassword, &[at(1, 53003), at(2, 50055)]),
            Scenario::ConditionalAccessBlocked
        );
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(1, 50144)]),
            Scenario::PasswordExpired
        );
        // A lockout followed by a success is over.
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(1, 0), at(2, 50053)]),
            Scenario::Unknown
        );
    }

    #[test]
    fn a_malicious_ip_lockout_goes_to_a_person() {
        let mut blocked = at(1, 50053);
        blocked.malicious_ip = true;
        assert_eq!(
            classify_as(Claim::ForgotPassword, &[blocked]),
            Scenario::Unknown
        );
    }

    #[test]
    fn a_failed_password_change_is_expiry_when_the_user_says_so() {
        assert_eq!(
            classify_as(Claim::PasswordExpired, &[at(1, 120_002)]),
            Scenario::PasswordExpired
        );
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(1, 120_002)]),
            Scenario::Unknown
        );
        let by_policy = classify(&Input {
            target_is_self: true,
            claim: Claim::CannotSignIn,
            sign_ins: &[],
            expired_by_policy: true,
        });
        assert_eq!(by_policy, Scenario::PasswordExpired);
    }

    #[test]
    fn a_success_after_bad_passwords_is_mistyped_whatever_the_claim() {
        let sign_ins = [at(6, 0), at(7, 50126)];
        assert_eq!(
            classify_as(Claim::ForgotPassword, &sign_ins),
            Scenario::Mistyped
        );
        assert_eq!(classify_as(Claim::LockedOut, &sign_ins), Scenario::Mistyped);
        // A success without bad passwords is nothing to explain.
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(6, 0)]),
            Scenario::Unknown
        );
    }

    #[test]
    fn forgotten_passwords_by_word_or_by_repeated_failures() {
        assert_eq!(
            classify_as(Claim::ForgotPassword, &[]),
            Scenario::ForgotPassword
        );
        assert_eq!(
            classify_as(
                Claim::CannotSignIn,
                &[at(1, 50126), at(2, 50126), at(900, 0)]
            ),
            Scenario::ForgotPassword
        );
        assert_eq!(classify_as(Claim::LockedOut, &[]), Scenario::Unknown);
        assert_eq!(
            classify_as(Claim::CannotSignIn, &[at(1, 50057)]),
            Scenario::Unknown
        );
    }
}
