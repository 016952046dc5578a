//! The facts a policy decides on: what the investigator found, and nothing secret.
//!
//! These mirror `record facts` in `wit/policy.wit` field for field; the WIT file
//! is the contract and documents each field.

use alloc::string::String;
use alloc::vec::Vec;

use crate::decision::Approver;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Which of the situations behind "I can't log in" the investigator recognised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Scenario {
    /// Forgot the password; an MFA method is available to verify with.
    ForgotPassword,
    /// Lost the MFA device (the user says so, or sign-ins fail with 500121).
    LostMfaDevice,
    /// Locked out by smart lockout (50053).
    AccountLocked,
    /// The password expired and changing it failed (50055, 50144).
    PasswordExpired,
    /// A Conditional Access policy blocks sign-in (53003, 53000, 53001).
    ConditionalAccessBlocked,
    /// The request is about someone else's account.
    OtherAccount,
    /// The password was mistyped (50126 without lockout, recent success).
    Mistyped,
    /// Not recognised.
    #[default]
    Unknown,
}

/// Where the conversation takes place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Channel {
    /// Microsoft Teams, personal chat.
    Teams,
    /// Slack, direct message.
    Slack,
    /// Latchkey's own web chat.
    #[default]
    Web,
}

/// A way the host verifies that the person chatting owns the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Method {
    /// Signed in to Latchkey's app with MFA (`amr` contains `mfa`).
    MfaStepUp,
    /// The manager confirmed from the manager's own verified identity.
    ManagerConfirmation,
    /// A one-time code sent to the recovery email was entered.
    RecoveryEmailCode,
}

/// A verification the host recorded as passed in this conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Verification {
    /// How the requester was verified.
    pub method: Method,
    /// When, in Unix seconds (UTC).
    pub verified_at: i64,
}

/// An approval the host recorded for this request, given by the approver's
/// own verified identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Approval {
    /// Entra object id of the approver.
    pub approver_id: String,
    /// The requirement it satisfied: the manager, or membership of a group.
    pub via: Approver,
    /// When, in Unix seconds (UTC).
    pub approved_at: i64,
}

/// A write Latchkey can make to the requester's own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Action {
    /// Temporary password, changed at next sign-in.
    ResetPassword,
    /// A Temporary Access Pass to register a new MFA method.
    IssueTemporaryAccessPass,
    /// Remove the MFA methods reported lost.
    RemoveLostMfaMethods,
    /// Revoke refresh tokens and session cookies.
    RevokeSessions,
}

/// A kind of authentication method registered on the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum AuthMethod {
    /// Microsoft Authenticator.
    MicrosoftAuthenticator,
    /// A phone number for SMS or voice.
    Phone,
    /// An email address for self-service password reset.
    Email,
    /// A FIDO2 key or passkey.
    Fido2,
    /// An OATH token.
    SoftwareOath,
    /// Windows Hello for Business.
    WindowsHello,
    /// A Temporary Access Pass still registered.
    TemporaryAccessPass,
    /// Anything else.
    Other,
}

/// The verified person asking.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Requester {
    /// Entra object id.
    pub id: String,
    /// User principal name.
    pub user_principal_name: String,
    /// Display name.
    pub display_name: String,
    /// Department, if set.
    pub department: Option<String>,
    /// Job title, if set.
    pub job_title: Option<String>,
    /// Object ids of every group the user is in, transitively.
    pub group_ids: Vec<String>,
    /// Role template ids of assigned directory roles.
    pub role_template_ids: Vec<String>,
    /// Holds a privileged directory role.
    pub is_privileged: bool,
    /// The account is enabled.
    pub account_enabled: bool,
    /// Synchronised from on-premises Active Directory.
    pub on_premises_synced: bool,
    /// A manager is recorded in Entra ID.
    pub has_manager: bool,
}

impl Default for Requester {
    /// An ordinary, enabled, cloud-only user with a manager and no roles.
    fn default() -> Self {
        Self {
            id: String::new(),
            user_principal_name: String::new(),
            display_name: String::new(),
            department: None,
            job_title: None,
            group_ids: Vec::new(),
            role_template_ids: Vec::new(),
            is_privileged: false,
            account_enabled: true,
            on_premises_synced: false,
            has_manager: true,
        }
    }
}

/// A Conditional Access policy that blocked a recent sign-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(deny_unknown_fields)
)]
pub struct BlockingPolicy {
    /// The policy's object id.
    pub id: String,
    /// The policy's display name.
    pub display_name: String,
}

/// What recent sign-in attempts show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct SignInSignals {
    /// Failed sign-ins in the look-back window.
    pub recent_failures: u32,
    /// Distinct Entra error codes of those failures, newest first.
    pub error_codes: Vec<u32>,
    /// Smart lockout is in effect (50053).
    pub locked_out: bool,
    /// The password has expired (50055).
    pub password_expired: bool,
    /// Conditional Access policies that blocked sign-ins.
    pub blocking_policies: Vec<BlockingPolicy>,
    /// Last successful sign-in, Unix seconds.
    pub last_success_at: Option<i64>,
    /// Last password change, Unix seconds.
    pub last_password_change_at: Option<i64>,
}

/// The account's MFA registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct MfaState {
    /// Methods registered besides the password.
    pub registered_methods: Vec<AuthMethod>,
    /// Entra considers the user MFA capable.
    pub mfa_capable: bool,
    /// The user reported the MFA device lost.
    pub device_reported_lost: bool,
    /// A recovery email is registered.
    pub has_recovery_email: bool,
}

/// Days of the week in the tenant's time zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
#[allow(missing_docs)]
pub enum Weekday {
    #[default]
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    /// Monday to Friday.
    pub fn is_workday(self) -> bool {
        !matches!(self, Weekday::Saturday | Weekday::Sunday)
    }
}

/// The time of the request, as a value: modules have no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Clock {
    /// Unix seconds (UTC).
    pub unix_seconds: i64,
    /// Hour of the day, 0 to 23, tenant time zone.
    pub local_hour: u8,
    /// Day of the week, tenant time zone.
    pub local_weekday: Weekday,
}

impl Default for Clock {
    /// Monday 2026-11-23 10:00 UTC, a working hour.
    fn default() -> Self {
        Self {
            unix_seconds: 1_795_428_000,
            local_hour: 10,
            local_weekday: Weekday::Monday,
        }
    }
}

/// Everything a policy may know about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Facts {
    /// The Entra tenant id.
    pub tenant_id: String,
    /// The verified person asking.
    pub requester: Requester,
    /// The request is about the requester's own account.
    pub target_is_self: bool,
    /// The situation recognised.
    pub scenario: Scenario,
    /// Signals from recent sign-ins.
    pub sign_in: SignInSignals,
    /// MFA registration.
    pub mfa: MfaState,
    /// Verifications passed in this conversation.
    pub verifications: Vec<Verification>,
    /// Approvals recorded for this request.
    pub approvals: Vec<Approval>,
    /// The actions the host proposes; a decision may allow a subset.
    pub requested_actions: Vec<Action>,
    /// Where the conversation takes place.
    pub channel: Channel,
    /// When the request is made.
    pub time: Clock,
}

impl Default for Facts {
    /// A request about the requester's own account, nothing else known yet.
    fn default() -> Self {
        Self {
            tenant_id: String::new(),
            requester: Requester::default(),
            target_is_self: true,
            scenario: Scenario::Unknown,
            sign_in: SignInSignals::default(),
            mfa: MfaState::default(),
            verifications: Vec::new(),
            approvals: Vec::new(),
            requested_actions: Vec::new(),
            channel: Channel::Web,
            time: Clock::default(),
        }
    }
}

impl Facts {
    /// True when the host recorded a passed verification by `method`.
    pub fn verified_by(&self, method: Method) -> bool {
        self.verifications.iter().any(|v| v.method == method)
    }

    /// True when the host recorded a passed verification by `method`
    /// no longer than `max_age_seconds` before the request.
    pub fn verified_within(&self, method: Method, max_age_seconds: i64) -> bool {
        self.verifications.iter().any(|v| {
            v.method == method
                && v.verified_at <= self.time.unix_seconds
                && self.time.unix_seconds - v.verified_at <= max_age_seconds
        })
    }

    /// True when an approval satisfying `approver` was recorded. Group ids
    /// compare ignoring ASCII case, as Entra object ids do.
    pub fn approved_via(&self, approver: &Approver) -> bool {
        self.approvals
            .iter()
            .any(|a| same_approver(&a.via, approver))
    }

    /// True when an approval satisfying `approver` was recorded no longer than
    /// `max_age_seconds` before the request.
    pub fn approved_within(&self, approver: &Approver, max_age_seconds: i64) -> bool {
        self.approvals.iter().any(|a| {
            same_approver(&a.via, approver)
                && a.approved_at <= self.time.unix_seconds
                && self.time.unix_seconds - a.approved_at <= max_age_seconds
        })
    }

    /// True when the host proposes `action`.
    pub fn requests(&self, action: Action) -> bool {
        self.requested_actions.contains(&action)
    }

    /// True when the requester is in the group with this object id.
    pub fn in_group(&self, group_id: &str) -> bool {
        self.requester
            .group_ids
            .iter()
            .any(|g| g.eq_ignore_ascii_case(group_id))
    }

    /// True when the requester's department equals `department`, ignoring ASCII case.
    pub fn in_department(&self, department: &str) -> bool {
        self.requester
            .department
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(department))
    }
}

fn same_approver(a: &Approver, b: &Approver) -> bool {
    match (a, b) {
        (Approver::Manager, Approver::Manager) => true,
        (Approver::Group(a), Approver::Group(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(via: Approver, at: i64) -> Facts {
        Facts {
            approvals: alloc::vec![Approval {
                approver_id: "a".into(),
                via,
                approved_at: at,
            }],
            ..Facts::default()
        }
    }

    #[test]
    fn group_approvals_match_ignoring_case() {
        let facts = approved(Approver::Group("3F1C9A52-7B4E".into()), 0);
        assert!(facts.approved_via(&Approver::Group("3f1c9a52-7b4e".into())));
        assert!(!facts.approved_via(&Approver::Group("9b2e".into())));
        assert!(!facts.approved_via(&Approver::Manager));
    }

    #[test]
    fn approvals_and_verifications_expire_and_cannot_come_from_the_future() {
        let now = Clock::default().unix_seconds;
        let recent = approved(Approver::Manager, now - 60);
        assert!(recent.approved_within(&Approver::Manager, 120));
        assert!(!recent.approved_within(&Approver::Manager, 30));
        let future = approved(Approver::Manager, now + 60);
        assert!(!future.approved_within(&Approver::Manager, 3600));
        let verified = Facts {
            verifications: alloc::vec![Verification {
                method: Method::MfaStepUp,
                verified_at: now - 600
            }],
            ..Facts::default()
        };
        assert!(verified.verified_within(Method::MfaStepUp, 600));
        assert!(!verified.verified_within(Method::MfaStepUp, 599));
        assert!(!verified.verified_by(Method::RecoveryEmailCode));
    }
}
