//! The investigator: gathers what Graph knows about a verified requester and
//! classifies the situation, producing the policy contract's facts record.
//!
//! [`Investigator::investigate`] takes an [`Inquiry`] (who asks, about which
//! account, what they say is wrong) and returns [`Facts`], the record of
//! `wit/policy.wit` and nothing else: no secret, no raw Graph data.
//!
//! # The reads
//!
//! All but one go to Graph in one JSON batch (`POST /$batch`, one HTTP
//! exchange, which Graph runs concurrently); only the domain waits, for the
//! profile, because it is named by the user's UPN. Each read in the batch is
//! answered, throttled and retried on its own, exactly as if sent alone; the
//! further pages of a collection, rarely needed, are read alone. Each is
//! app-only and served by Graph v1.0. A read answered 403 (permission, licence) or 404
//! either degrades to a documented default or fails the investigation,
//! decided per read by whether a default can be safe:
//!
//! | Read | Feeds | On 403 or 404 |
//! |---|---|---|
//! | `GET /users/{id}?$select=`[`PROFILE_PROPERTIES`] | requester, `account-enabled`, `on-premises-synced`, `last-password-change-at` | fails: 404 is [`InvestigateError::RequesterNotFound`], anything else [`InvestigateError::Graph`] |
//! | `GET /users/{id}/manager?$select=id` | `has-manager` | `false`: Graph answers 404 when there is none, and a manager we cannot read cannot confirm anything either |
//! | `GET /users/{id}/transitiveMemberOf?$select=id,roleTemplateId` (all pages) | `group-ids`, activated roles | fails: policies route on groups both ways (approve, or send to a person), so no list is a safe guess |
//! | `GET /roleManagement/directory/roleAssignments?$filter=principalId eq '{id}'&$expand=roleDefinition` | `role-template-ids`, `is-privileged` | the activated roles `transitiveMemberOf` lists (`directoryRole` entries) |
//! | `GET /users/{id}/ownedDevices`, `.../registeredDevices` (`$select=id`) | nothing in contract 0.1.0 (logged at debug level) | none |
//! | `GET /auditLogs/signIns?$filter=userId eq '{id}' and createdDateTime ge {now - look-back}&$top=`[`Settings::max_sign_ins`] | `sign-in`, the scenario | no sign-ins: a 403 is also what a tenant without Entra ID P1 gets; the claim alone then decides the scenario |
//! | `GET /users/{id}/authentication/methods` | `registered-methods`, `has-recovery-email` | the registration report's `methodsRegistered` |
//! | `GET /reports/authenticationMethods/userRegistrationDetails/{id}` | `mfa-capable` | computed from the methods (Graph has no report for disabled users) |
//! | both of the last two | | fails: whether to verify by MFA or by another way hangs on it |
//! | `GET /domains/{domain of the UPN}` | password expiry from `passwordValidityPeriodInDays` | no computed expiry; 50055/50144 sign-ins still count |
//!
//! Any other failure (throttling that outlasts the client's retries, a
//! timeout, a 5xx, an answer that is not Graph's) fails the investigation: a
//! default is only ever taken for an answer that says the data is not there
//! or not ours to read.
//!
//! How signals and the claim become a [`Scenario`] is in
//! `investigator/classification.rs`; the table of Entra error codes in
//! `investigator/sign_ins.rs`; the privileged roles in
//! `investigator/roles.rs`.
//!
//! The account the request is about, when it is not the requester's, is
//! never read: the facts describe the verified requester, with
//! `target-is-self` false, and no module output can make the host act on
//! another account anyway.
//!
//! The caller gives a [`GraphClient`] for the inquiry's tenant; the client
//! does not say which tenant it serves, so the two must come from the same
//! tenant configuration.

mod classification;
mod clock;
mod methods;
mod reads;
mod roles;
mod sign_ins;

use std::time::Duration;

use latchkey_policy::{
    Action, Approval, Channel, Facts, MfaState, Requester, Scenario, Verification,
};

use crate::graph::{GraphClient, GraphError};
use crate::ids::UserId;
use crate::tenant::TenantId;

pub use reads::PROFILE_PROPERTIES;
pub use roles::PRIVILEGED_ROLE_TEMPLATES;

/// Default [`Settings::utc_offset_minutes`]: 0, UTC.
pub const DEFAULT_UTC_OFFSET_MINUTES: i16 = 0;
/// Default [`Settings::look_back`]: 24 hours, the window the contract's
/// `recent-failures` documents. Long enough to see this morning's lockout and
/// yesterday's last good sign-in, short enough that last week's troubles do
/// not colour today's.
pub const DEFAULT_LOOK_BACK: Duration = Duration::from_secs(24 * 3600);
/// Default [`Settings::max_sign_ins`]: 100, the newest first. Ten times
/// Entra's default smart-lockout threshold, so a lockout, the failures that
/// led to it and the success before them all fit in one page.
pub const DEFAULT_MAX_SIGN_INS: u16 = 100;

/// The widest offsets in use: UTC-12:00 to UTC+14:00.
const UTC_OFFSET_RANGE: std::ops::RangeInclusive<i16> = -720..=840;
/// Entra keeps sign-in logs for 30 days (with P1 or P2); looking further back
/// finds nothing.
const MAX_LOOK_BACK: Duration = Duration::from_secs(30 * 24 * 3600);
/// Graph's largest `$top` for sign-ins.
const MAX_SIGN_INS: u16 = 1000;

/// How an [`Investigator`] reads. [`Settings::default`] gives the defaults,
/// each documented on its constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The tenant's offset from UTC, in minutes, for the local hour and
    /// weekday in the facts' clock (maintenance windows). A fixed offset:
    /// a tenant that observes daylight saving time sets the offset of the
    /// season. From -720 to 840. Default [`DEFAULT_UTC_OFFSET_MINUTES`].
    pub utc_offset_minutes: i16,
    /// How far back sign-ins are read. From one minute to 30 days. Default
    /// [`DEFAULT_LOOK_BACK`].
    pub look_back: Duration,
    /// How many sign-ins are read at most, newest first. From 1 to 1000.
    /// Default [`DEFAULT_MAX_SIGN_INS`].
    pub max_sign_ins: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            utc_offset_minutes: DEFAULT_UTC_OFFSET_MINUTES,
            look_back: DEFAULT_LOOK_BACK,
            max_sign_ins: DEFAULT_MAX_SIGN_INS,
        }
    }
}

impl Settings {
    fn validate(&self) -> Result<(), InvestigateError> {
        let invalid = |reason: String| Err(InvestigateError::InvalidSettings(reason));
        if !UTC_OFFSET_RANGE.contains(&self.utc_offset_minutes) {
            return invalid(format!(
                "utc_offset_minutes is {}; give -720 (UTC-12:00) to 840 (UTC+14:00)",
                self.utc_offset_minutes
            ));
        }
        if self.look_back < Duration::from_secs(60) || self.look_back > MAX_LOOK_BACK {
            return invalid(format!(
                "look_back is {:?}; give one minute to 30 days (Entra keeps sign-ins 30 days)",
                self.look_back
            ));
        }
        if self.max_sign_ins == 0 || self.max_sign_ins > MAX_SIGN_INS {
            return invalid(format!(
                "max_sign_ins is {}; give 1 to 1000 (Graph's largest page of sign-ins)",
                self.max_sign_ins
            ));
        }
        Ok(())
    }
}

/// What the user says is wrong, as the conversation engine understood it.
/// It weighs less than what Entra shows (see `investigator/classification.rs`),
/// except for a lost device, which Entra cannot see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Claim {
    /// "I forgot my password."
    ForgotPassword,
    /// "I lost my phone" (or whatever holds the MFA method).
    LostMfaDevice,
    /// "My account is locked."
    LockedOut,
    /// "My password expired" (or the change it asked for failed).
    PasswordExpired,
    /// "I can't sign in", or nothing more specific was said.
    #[default]
    CannotSignIn,
}

/// One request to investigate.
#[derive(Clone, Copy, Debug)]
pub struct Inquiry<'a> {
    /// The tenant the requester belongs to (and the Graph client serves).
    pub tenant_id: &'a TenantId,
    /// The requester's Entra object id, as verified by the chat platform's
    /// authenticated identity; never something the user typed.
    pub requester: &'a UserId,
    /// The account the user asked about, by UPN or object id, when they named
    /// one; `None` means their own. Naming their own UPN, mail address or id
    /// is the same as `None`.
    pub about: Option<&'a str>,
    /// What the user says is wrong.
    pub claim: Claim,
    /// Where the conversation takes place.
    pub channel: Channel,
    /// Verifications the host recorded as passed in this conversation,
    /// copied into the facts.
    pub verifications: &'a [Verification],
    /// Approvals the host recorded for this request, copied into the facts.
    pub approvals: &'a [Approval],
    /// The actions to propose. `None` means the standard remedy for the
    /// classified situation ([`standard_remedy`]).
    pub requested_actions: Option<&'a [Action]>,
    /// Latchkey's own app registration at the tenant (the sign-in client
    /// id). Its sign-ins are left out of the evidence: they are the
    /// conversation's MFA step-ups, the resolution at work, and a successful
    /// one would otherwise read as "signed in since, nothing to fix".
    /// `None` keeps every sign-in.
    pub own_app_id: Option<&'a str>,
    /// When the request is made, in Unix seconds (UTC).
    pub now: i64,
}

impl<'a> Inquiry<'a> {
    /// An inquiry about the requester's own account, on the web chat, with
    /// nothing verified or approved yet and the standard remedy proposed.
    pub fn new(tenant_id: &'a TenantId, requester: &'a UserId, claim: Claim, now: i64) -> Self {
        Inquiry {
            tenant_id,
            requester,
            about: None,
            claim,
            channel: Channel::Web,
            verifications: &[],
            approvals: &[],
            requested_actions: None,
            own_app_id: None,
            now,
        }
    }
}

/// The actions that resolve `scenario` when the inquiry names none:
///
/// | Scenario | Actions |
/// |---|---|
/// | forgot password, account locked, password expired | reset password (the only cloud unlock is a reset), revoke sessions |
/// | lost MFA device | issue a Temporary Access Pass, remove the lost MFA methods, revoke sessions |
///
/// Sessions are revoked with every change of credentials, so that nothing
/// signed in with the old password or the lost device stays signed in; the
/// policy may still allow less than is proposed.
/// | Conditional Access, other account, mistyped, unknown | none: there is nothing to change, or nothing Latchkey may change |
pub fn standard_remedy(scenario: Scenario) -> Vec<Action> {
    match scenario {
        Scenario::ForgotPassword | Scenario::AccountLocked | Scenario::PasswordExpired => {
            vec![Action::ResetPassword, Action::RevokeSessions]
        }
        Scenario::LostMfaDevice => vec![
            Action::IssueTemporaryAccessPass,
            Action::RemoveLostMfaMethods,
            Action::RevokeSessions,
        ],
        Scenario::ConditionalAccessBlocked
        | Scenario::OtherAccount
        | Scenario::Mistyped
        | Scenario::Unknown => Vec::new(),
    }
}

/// Why an investigation could not produce facts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvestigateError {
    /// The settings cannot work (the host's configuration is wrong).
    #[error("invalid investigator settings: {0}")]
    InvalidSettings(String),
    /// The inquiry is malformed (the caller's bug, not the user's).
    #[error("invalid inquiry: {0}")]
    InvalidInquiry(String),
    /// Graph has no user with the requester's object id in this tenant: the
    /// chat identity and the tenant do not belong together.
    #[error("the requester {requester} does not exist in the tenant (request-id {})", request_id.as_deref().unwrap_or("none"))]
    RequesterNotFound {
        /// The object id asked for.
        requester: UserId,
        /// Graph's `request-id` of the 404.
        request_id: Option<String>,
    },
    /// A read the facts cannot do without failed.
    #[error("reading the {read} from Graph failed: {source}")]
    Graph {
        /// Which read.
        read: &'static str,
        /// Why.
        #[source]
        source: GraphError,
    },
    /// Neither the authentication methods nor the registration report could
    /// be read, so whether the requester can do MFA is unknown.
    #[error(
        "the requester's MFA state is unknown: the authentication methods ({methods}) and the registration report ({registration}) could not be read; grant UserAuthenticationMethod.Read.All or AuditLog.Read.All"
    )]
    MfaStateUnknown {
        /// Why the methods could not be read.
        methods: Box<GraphError>,
        /// Why the registration report could not be read.
        registration: Box<GraphError>,
    },
    /// Graph answered something that is not what it documents.
    #[error("Graph's answer for the {read} is not what Graph documents: {reason}")]
    InvalidResponse {
        /// Which read.
        read: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

/// Gathers facts for one tenant through its Graph client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Investigator {
    graph: GraphClient,
    settings: Settings,
}

impl Investigator {
    /// An investigator reading through `graph` (a client for the tenant
    /// whose requesters it will investigate). Fails when a setting is out of
    /// range.
    pub fn new(graph: GraphClient, settings: Settings) -> Result<Investigator, InvestigateError> {
        settings.validate()?;
        Ok(Investigator { graph, settings })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reads what Graph knows about the inquiry's requester, concurrently,
    /// and classifies the situation. See the module docs for each read and
    /// what happens when it fails.
    pub async fn investigate(&self, inquiry: &Inquiry<'_>) -> Result<Facts, InvestigateError> {
        let about = match inquiry.about {
            Some(about) if about.trim().is_empty() => {
                return Err(InvestigateError::InvalidInquiry(
                    "`about` is blank; give the account's UPN or object id, or None for the requester's own".to_owned(),
                ));
            }
            other => other.map(str::trim),
        };
        let clock = clock::local(inquiry.now, self.settings.utc_offset_minutes)?;
        let since = clock::window_start(inquiry.now, self.settings.look_back)?;
        let mut evidence = reads::gather(
            &self.graph,
            inquiry.requester,
            &since,
            self.settings.max_sign_ins,
        )
        .await?;
        if let Some(own) = inquiry.own_app_id {
            evidence.sign_ins.retain(|s| {
                !s.app_id
                    .as_deref()
                    .is_some_and(|app| app.eq_ignore_ascii_case(own))
            });
        }

        let profile = &evidence.profile;
        let target_is_self = about.is_none_or(|about| profile.is(about));
        let expired_by_policy = evidence.password_expired_by_policy(inquiry.now);
        let signals = sign_ins::signals(
            &evidence.sign_ins,
            expired_by_policy,
            profile.last_password_change,
        );
        let scenario = classification::classify(&classification::Input {
            target_is_self,
            claim: inquiry.claim,
            sign_ins: &evidence.sign_ins,
            expired_by_policy,
        });
        let requested_actions = match inquiry.requested_actions {
            Some(actions) => dedup(actions),
            None => standard_remedy(scenario),
        };
        let roles = &evidence.roles;
        Ok(Facts {
            tenant_id: inquiry.tenant_id.to_string(),
            requester: Requester {
                id: inquiry.requester.to_string(),
                user_principal_name: profile.user_principal_name.clone(),
                display_name: profile.display_name.clone(),
                department: profile.department.clone(),
                job_title: profile.job_title.clone(),
                group_ids: evidence.group_ids.clone(),
                role_template_ids: roles.template_ids.clone(),
                is_privileged: roles.privileged,
                account_enabled: profile.account_enabled,
                on_premises_synced: profile.on_premises_synced,
                has_manager: evidence.has_manager,
            },
            target_is_self,
            scenario,
            sign_in: signals,
            mfa: MfaState {
                registered_methods: evidence.mfa.methods.clone(),
                mfa_capable: evidence.mfa.capable,
                device_reported_lost: inquiry.claim == Claim::LostMfaDevice,
                has_recovery_email: evidence.mfa.recovery_email,
            },
            verifications: inquiry.verifications.to_vec(),
            approvals: inquiry.approvals.to_vec(),
            requested_actions,
            channel: inquiry.channel,
            time: clock,
        })
    }
}

/// `actions` in the order given, each once.
fn dedup(actions: &[Action]) -> Vec<Action> {
    let mut kept: Vec<Action> = Vec::with_capacity(actions.len());
    for action in actions {
        if !kept.contains(action) {
            kept.push(*action);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_with_what_to_give() {
        assert!(Settings::default().validate().is_ok());
        for bad in [
            Settings {
                utc_offset_minutes: 841,
                ..Settings::default()
            },
            Settings {
                utc_offset_minutes: -721,
                ..Settings::default()
            },
            Settings {
                look_back: Duration::from_secs(59),
                ..Settings::default()
            },
            Settings {
                look_back: Duration::from_secs(31 * 24 * 3600),
                ..Settings::default()
            },
            Settings {
                max_sign_ins: 0,
                ..Settings::default()
            },
            Settings {
                max_sign_ins: 1001,
                ..Settings::default()
            },
        ] {
            let error = bad.validate().unwrap_err();
            assert!(error.to_string().contains("give"), "{error}");
        }
    }

    #[test]
    fn the_standard_remedy_follows_the_scenario() {
        assert_eq!(
            standard_remedy(Scenario::AccountLocked),
            vec![Action::ResetPassword, Action::RevokeSessions]
        );
        assert_eq!(
            standard_remedy(Scenario::LostMfaDevice),
            vec![
                Action::IssueTemporaryAccessPass,
                Action::RemoveLostMfaMethods,
                Action::RevokeSessions
            ]
        );
        for nothing in [
            Scenario::ConditionalAccessBlocked,
            Scenario::OtherAccount,
            Scenario::Mistyped,
            Scenario::Unknown,
        ] {
            assert!(standard_remedy(nothing).is_empty(), "{nothing:?}");
        }
    }

    #[test]
    fn requested_actions_are_kept_in_order_once_each() {
        assert_eq!(
            dedup(&[
                Action::RevokeSessions,
                Action::ResetPassword,
                Action::RevokeSessions
            ]),
            vec![Action::RevokeSessions, Action::ResetPassword]
        );
    }
}
