//! Recent sign-ins: what each Entra error code means here, and the signals
//! the facts carry.
//!
//! # Error codes
//!
//! `status.errorCode` of a sign-in, as Entra documents it
//! (entra-docs `reference-error-codes.md`; 500121 from the sign-in log) and
//! what the investigator makes of it ([`meaning`]):
//!
//! | Code | Entra's name | [`Meaning`] | Used for |
//! |---|---|---|---|
//! | 0 | success | `Success` | `last-success-at`; after 50126s, *mistyped* |
//! | 50126 | InvalidUserNameOrPassword | `BadPassword` | *forgot password* when no success follows; *mistyped* when one does |
//! | 50053 | IdsLocked | `Locked` | `locked-out` and *account locked*, unless `failureReason` says the IP address was malicious: that is not the user's lockout, and no reset fixes it, so the situation is *unknown* and a person looks at it |
//! | 50055 | InvalidPasswordExpiredPassword | `Expired` | `password-expired`, *password expired* |
//! | 50144 | InvalidPasswordExpiredOnPremPassword | `Expired` | the same, for a password mastered in Active Directory |
//! | 120000 to 120021 | PasswordChange* (120002 NewPasswordWeak, ...) | `PasswordChangeFailed` | *password expired* when the password has expired or the user says so: the change Entra asked for failed |
//! | 53000 | DeviceNotCompliant | `ConditionalAccess` | *Conditional Access*; the applied policies whose `result` is `failure` become `blocking-policies` |
//! | 53001 | DeviceNotDomainJoined | `ConditionalAccess` | the same |
//! | 53002 | ApplicationUsedIsNotAnApprovedApp | `ConditionalAccess` | the same |
//! | 53003 | BlockedByConditionalAccess | `ConditionalAccess` | the same |
//! | 530032 | BlockedByConditionalAccessOnSecurityPolicy | `ConditionalAccess` | the same |
//! | 500121 | strong authentication failed (denied, timed out, "not me") | `MfaFailed` | *lost MFA device* |
//! | 50057 | UserDisabled | `Disabled` | no scenario: `account-enabled` false, read from the profile, is the fact |
//! | 50132, 50133 | SsoArtifactInvalidOrExpired / Revoked | `Other` | not expiry: Entra logs them after any password change, Latchkey's own reset included, which would otherwise read as "expired" right after the fix |
//! | 530035 | BlockedBySecurityDefaults | `Other` | not Conditional Access: there is no policy to name, so *unknown* |
//! | any other | | `Other` | `recent-failures` and `error-codes` only |
//!
//! Every code but 0 is a failure: counted in `recent-failures` and listed,
//! distinct and newest first, in `error-codes`.

use latchkey_policy::{BlockingPolicy, SignInSignals};
use serde_json::Value;

use super::clock::parse_instant;

/// What an error code says about the situation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Meaning {
    /// The sign-in succeeded.
    Success,
    /// Wrong password.
    BadPassword,
    /// Smart lockout.
    Locked,
    /// The password has expired.
    Expired,
    /// The password change Entra asked for failed.
    PasswordChangeFailed,
    /// Conditional Access refused the sign-in.
    ConditionalAccess,
    /// The MFA prompt failed.
    MfaFailed,
    /// The account is disabled.
    Disabled,
    /// Anything else.
    Other,
}

/// The table above, but for the 1200xx range.
const ERROR_CODES: &[(u32, Meaning)] = &[
    (0, Meaning::Success),
    (50126, Meaning::BadPassword),
    (50053, Meaning::Locked),
    (50055, Meaning::Expired),
    (50144, Meaning::Expired),
    (53000, Meaning::ConditionalAccess),
    (53001, Meaning::ConditionalAccess),
    (53002, Meaning::ConditionalAccess),
    (53003, Meaning::ConditionalAccess),
    (530032, Meaning::ConditionalAccess),
    (500121, Meaning::MfaFailed),
    (50057, Meaning::Disabled),
];

/// Entra's PasswordChange* codes.
const PASSWORD_CHANGE_CODES: std::ops::RangeInclusive<u32> = 120_000..=120_021;

/// What `code` means; see the module docs.
pub(super) fn meaning(code: u32) -> Meaning {
    if PASSWORD_CHANGE_CODES.contains(&code) {
        return Meaning::PasswordChangeFailed;
    }
    ERROR_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(Meaning::Other, |(_, m)| *m)
}

/// One sign-in, reduced to what the facts need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SignIn {
    /// `createdDateTime`, Unix seconds.
    pub at: i64,
    /// `status.errorCode`.
    pub code: u32,
    /// A 50053 whose `failureReason` says the IP address was malicious.
    pub malicious_ip: bool,
    /// Applied Conditional Access policies whose `result` is `failure`.
    pub blocking: Vec<BlockingPolicy>,
    /// `appId`: the application signed in to, when Graph names it.
    pub app_id: Option<String>,
}

impl SignIn {
    /// What its code means, with a malicious-IP 50053 set apart from a lockout.
    pub fn meaning(&self) -> Meaning {
        match meaning(self.code) {
            Meaning::Locked if self.malicious_ip => Meaning::Other,
            meaning => meaning,
        }
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        self.code != 0
    }
}

/// The sign-ins of a `/auditLogs/signIns` page, newest first (Graph sends
/// them so; they are sorted again rather than trusted to be).
pub(super) fn parse(items: &[Value]) -> Result<Vec<SignIn>, String> {
    let mut sign_ins = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_one(item).map_err(|why| format!("sign-in {i}: {why}")))
        .collect::<Result<Vec<_>, _>>()?;
    sign_ins.sort_by_key(|s| std::cmp::Reverse(s.at));
    Ok(sign_ins)
}

fn parse_one(item: &Value) -> Result<SignIn, String> {
    let at = item
        .get("createdDateTime")
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .ok_or("no createdDateTime instant")?;
    let status = item.get("status").ok_or("no status")?;
    let code = status
        .get("errorCode")
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .ok_or("no status.errorCode")?;
    let malicious_ip = meaning(code) == Meaning::Locked
        && status
            .get("failureReason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.to_ascii_lowercase().contains("malicious"));
    // Graph leaves the policies out for a caller without Policy.Read.All:
    // then nothing can be named, which the facts say with an empty list.
    let blocking = item
        .get("appliedConditionalAccessPolicies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("result").and_then(Value::as_str) == Some("failure"))
        .filter_map(|p| {
            Some(BlockingPolicy {
                id: p.get("id")?.as_str()?.to_owned(),
                display_name: p
                    .get("displayName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    let app_id = item.get("appId").and_then(Value::as_str).map(str::to_owned);
    Ok(SignIn {
        at,
        code,
        malicious_ip,
        blocking,
        app_id,
    })
}

/// The sign-ins newer than the newest success (all of them if none
/// succeeded): what the account is going through now.
pub(super) fn since_last_success(sign_ins: &[SignIn]) -> &[SignIn] {
    let end = sign_ins
        .iter()
        .position(|s| !s.failed())
        .unwrap_or(sign_ins.len());
    &sign_ins[..end]
}

/// The facts' sign-in signals from `sign_ins` (newest first, all in the
/// look-back window).
///
/// `locked-out` and `password-expired` describe now: a lockout or an expiry
/// followed by a successful sign-in is over. `password-expired` is also set
/// when the domain's password policy says the password has expired
/// (`expired_by_policy`).
pub(super) fn signals(
    sign_ins: &[SignIn],
    expired_by_policy: bool,
    last_password_change_at: Option<i64>,
) -> SignInSignals {
    let current = since_last_success(sign_ins);
    let failures = sign_ins.iter().filter(|s| s.failed());
    let mut error_codes: Vec<u32> = Vec::new();
    let mut blocking_policies: Vec<BlockingPolicy> = Vec::new();
    for sign_in in failures.clone() {
        if !error_codes.contains(&sign_in.code) {
            error_codes.push(sign_in.code);
        }
        for policy in &sign_in.blocking {
            if !blocking_policies
                .iter()
                .any(|p| p.id.eq_ignore_ascii_case(&policy.id))
            {
                blocking_policies.push(policy.clone());
            }
        }
    }
    SignInSignals {
        recent_failures: u32::try_from(failures.count()).unwrap_or(u32::MAX),
        error_codes,
        locked_out: current.iter().any(|s| s.meaning() == Meaning::Locked),
        password_expired: expired_by_policy
            || current.iter().any(|s| s.meaning() == Meaning::Expired),
        blocking_policies,
        last_success_at: sign_ins.iter().find(|s| !s.failed()).map(|s| s.at),
        last_password_change_at,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A sign-in `minutes_ago` before t = 100 000.
    pub fn at(minutes_ago: i64, code: u32) -> SignIn {
        SignIn {
            at: 100_000 - minutes_ago * 60,
            code,
            malicious_ip: false,
            blocking: Vec::new(),
            app_id: None,
        }
    }

    #[test]
    fn the_table_covers_the_codes_of_each_situation() {
        assert_eq!(meaning(0), Meaning::Success);
        assert_eq!(meaning(50053), Meaning::Locked);
        assert_eq!(meaning(50144), Meaning::Expired);
        assert_eq!(meaning(120_002), Meaning::PasswordChangeFailed);
        assert_eq!(meaning(120_022), Meaning::Other);
        assert_eq!(meaning(530_032), Meaning::ConditionalAccess);
        assert_eq!(meaning(500_121), Meaning::MfaFailed);
        assert_eq!(meaning(50133), Meaning::Other);
        assert_eq!(meaning(530_035), Meaning::Other);
    }

    #[test]
    fn graph_sign_ins_parse_and_sort_newest_first() {
        let items = [
            json!({"createdDateTime": "2026-11-23T09:00:00.0000000Z", "status": {"errorCode": 0}}),
            json!({
                "createdDateTime": "2026-11-23T09:50:00.1234567Z",
                "status": {"errorCode": 53003, "failureReason": "Access has been blocked by Conditional Access policies."},
                "appliedConditionalAccessPolicies": [
                    {"id": "p1", "displayName": "Block outside", "result": "failure"},
                    {"id": "p2", "displayName": "Require MFA", "result": "success"},
                    {"id": "p3", "displayName": "Report only", "result": "reportOnlyFailure"}
                ]
            }),
            json!({"createdDateTime": "2026-11-23T09:40:00Z", "status": {"errorCode": 50053,
                "failureReason": "Sign-in was blocked because it came from an IP address with malicious activity"}}),
        ];
        let parsed = parse(&items).unwrap();
        assert_eq!(
            parsed.iter().map(|s| s.code).collect::<Vec<_>>(),
            [53003, 50053, 0]
        );
        assert_eq!(
            parsed[0].blocking,
            vec![BlockingPolicy {
                id: "p1".into(),
                display_name: "Block outside".into()
            }]
        );
        assert!(parsed[1].malicious_ip);
        assert_eq!(parsed[1].meaning(), Meaning::Other);
        for bad in [
            json!({"status": {"errorCode": 0}}),
            json!({"createdDateTime": "2026-11-23T09:00:00Z"}),
            json!({"createdDateTime": "2026-11-23T09:00:00Z", "status": {"errorCode": -1}}),
            json!({"createdDateTime": "noon", "status": {"errorCode": 0}}),
        ] {
            assert!(parse(std::slice::from_ref(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals_describe_now_and_list_codes_newest_first() {
        let mut blocked = at(3, 53003);
        blocked.blocking = vec![BlockingPolicy {
            id: "P1".into(),
            display_name: "Block".into(),
        }];
        let mut again = at(4, 53003);
        again.blocking = vec![BlockingPolicy {
            id: "p1".into(),
            display_name: "Block".into(),
        }];
        let sign_ins = [blocked, again, at(5, 50126), at(60, 0), at(70, 50053)];
        let found = signals(&sign_ins, false, Some(7));
        assert_eq!(found.recent_failures, 4);
        assert_eq!(found.error_codes, [53003, 50126, 50053]);
        assert_eq!(found.blocking_policies.len(), 1, "one policy, once");
        // The lockout was before the last success: it is over.
        assert!(!found.locked_out);
        assert_eq!(found.last_success_at, Some(100_000 - 3600));
        assert_eq!(found.last_password_change_at, Some(7));
        assert!(!found.password_expired);
        assert!(signals_of(&[at(1, 50055)]).password_expired);
        assert!(signals(&[], true, None).password_expired, "by policy");
        assert!(signals_of(&[at(1, 50053), at(2, 50126)]).locked_out);
    }

    fn signals_of(sign_ins: &[SignIn]) -> SignInSignals {
        signals(sign_ins, false, None)
    }
}
