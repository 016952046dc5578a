//! The host side of `wit/policy.wit`: wasmtime's generated bindings, private
//! to this module, and the one place where the SDK's types are converted to and
//! from the generated ones.

use latchkey_policy as sdk;

mod generated {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
    });
}

pub(crate) use generated::PolicyPre;
use generated::latchkey::policy::types as wit;

/// The interface a module may import: it carries only the contract's types.
pub(crate) const TYPES_INTERFACE: &str = "latchkey:policy/types@0.1.0";

pub(crate) fn facts_into(f: &sdk::Facts) -> wit::Facts {
    let r = &f.requester;
    wit::Facts {
        tenant_id: f.tenant_id.clone(),
        requester: wit::Requester {
            id: r.id.clone(),
            user_principal_name: r.user_principal_name.clone(),
            display_name: r.display_name.clone(),
            department: r.department.clone(),
            job_title: r.job_title.clone(),
            group_ids: r.group_ids.clone(),
            role_template_ids: r.role_template_ids.clone(),
            is_privileged: r.is_privileged,
            account_enabled: r.account_enabled,
            on_premises_synced: r.on_premises_synced,
            has_manager: r.has_manager,
        },
        target_is_self: f.target_is_self,
        scenario: match f.scenario {
            sdk::Scenario::ForgotPassword => wit::Scenario::ForgotPassword,
            sdk::Scenario::LostMfaDevice => wit::Scenario::LostMfaDevice,
            sdk::Scenario::AccountLocked => wit::Scenario::AccountLocked,
            sdk::Scenario::PasswordExpired => wit::Scenario::PasswordExpired,
            sdk::Scenario::ConditionalAccessBlocked => wit::Scenario::ConditionalAccessBlocked,
            sdk::Scenario::OtherAccount => wit::Scenario::OtherAccount,
            sdk::Scenario::Mistyped => wit::Scenario::Mistyped,
            sdk::Scenario::Unknown => wit::Scenario::Unknown,
        },
        sign_in: wit::SignInSignals {
            recent_failures: f.sign_in.recent_failures,
            error_codes: f.sign_in.error_codes.clone(),
            locked_out: f.sign_in.locked_out,
            password_expired: f.sign_in.password_expired,
            blocking_policies: f
                .sign_in
                .blocking_policies
                .iter()
                .map(|p| wit::BlockingPolicy {
                    id: p.id.clone(),
                    display_name: p.display_name.clone(),
                })
                .collect(),
            last_success_at: f.sign_in.last_success_at,
            last_password_change_at: f.sign_in.last_password_change_at,
        },
        mfa: wit::MfaState {
            registered_methods: f
                .mfa
                .registered_methods
                .iter()
                .map(|m| match m {
                    sdk::AuthMethod::MicrosoftAuthenticator => {
                        wit::AuthMethod::MicrosoftAuthenticator
                    }
                    sdk::AuthMethod::Phone => wit::AuthMethod::Phone,
                    sdk::AuthMethod::Email => wit::AuthMethod::Email,
                    sdk::AuthMethod::Fido2 => wit::AuthMethod::Fido2,
                    sdk::AuthMethod::SoftwareOath => wit::AuthMethod::SoftwareOath,
                    sdk::AuthMethod::WindowsHello => wit::AuthMethod::WindowsHello,
                    sdk::AuthMethod::TemporaryAccessPass => wit::AuthMethod::TemporaryAccessPass,
                    sdk::AuthMethod::Other => wit::AuthMethod::Other,
                })
                .collect(),
            mfa_capable: f.mfa.mfa_capable,
            device_reported_lost: f.mfa.device_reported_lost,
            has_recovery_email: f.mfa.has_recovery_email,
        },
        verifications: f
            .verifications
            .iter()
            .map(|v| wit::Verification {
                method: method_into(v.method),
                verified_at: v.verified_at,
            })
            .collect(),
        approvals: f
            .approvals
            .iter()
            .map(|a| wit::Approval {
                approver_id: a.approver_id.clone(),
                via: match &a.via {
                    sdk::Approver::Manager => wit::Approver::Manager,
                    sdk::Approver::Group(g) => wit::Approver::Group(g.clone()),
                },
                approved_at: a.approved_at,
            })
            .collect(),
        requested_actions: f
            .requested_actions
            .iter()
            .map(|a| action_into(*a))
            .collect(),
        channel: match f.channel {
            sdk::Channel::Teams => wit::Channel::Teams,
            sdk::Channel::Slack => wit::Channel::Slack,
            sdk::Channel::Web => wit::Channel::Web,
        },
        time: wit::Clock {
            unix_seconds: f.time.unix_seconds,
            local_hour: f.time.local_hour,
            local_weekday: match f.time.local_weekday {
                sdk::Weekday::Monday => wit::Weekday::Monday,
                sdk::Weekday::Tuesday => wit::Weekday::Tuesday,
                sdk::Weekday::Wednesday => wit::Weekday::Wednesday,
                sdk::Weekday::Thursday => wit::Weekday::Thursday,
                sdk::Weekday::Friday => wit::Weekday::Friday,
                sdk::Weekday::Saturday => wit::Weekday::Saturday,
                sdk::Weekday::Sunday => wit::Weekday::Sunday,
            },
        },
    }
}

fn method_into(m: sdk::Method) -> wit::VerificationMethod {
    match m {
        sdk::Method::MfaStepUp => wit::VerificationMethod::MfaStepUp,
        sdk::Method::ManagerConfirmation => wit::VerificationMethod::ManagerConfirmation,
        sdk::Method::RecoveryEmailCode => wit::VerificationMethod::RecoveryEmailCode,
    }
}

fn method_from(m: wit::VerificationMethod) -> sdk::Method {
    match m {
        wit::VerificationMethod::MfaStepUp => sdk::Method::MfaStepUp,
        wit::VerificationMethod::ManagerConfirmation => sdk::Method::ManagerConfirmation,
        wit::VerificationMethod::RecoveryEmailCode => sdk::Method::RecoveryEmailCode,
    }
}

fn action_into(a: sdk::Action) -> wit::Action {
    match a {
        sdk::Action::ResetPassword => wit::Action::ResetPassword,
        sdk::Action::IssueTemporaryAccessPass => wit::Action::IssueTemporaryAccessPass,
        sdk::Action::RemoveLostMfaMethods => wit::Action::RemoveLostMfaMethods,
        sdk::Action::RevokeSessions => wit::Action::RevokeSessions,
    }
}

fn action_from(a: wit::Action) -> sdk::Action {
    match a {
        wit::Action::ResetPassword => sdk::Action::ResetPassword,
        wit::Action::IssueTemporaryAccessPass => sdk::Action::IssueTemporaryAccessPass,
        wit::Action::RemoveLostMfaMethods => sdk::Action::RemoveLostMfaMethods,
        wit::Action::RevokeSessions => sdk::Action::RevokeSessions,
    }
}

pub(crate) fn decision_from(d: wit::Decision) -> sdk::Decision {
    match d {
        wit::Decision::Allow(a) => sdk::Decision::Allow {
            actions: a.actions.into_iter().map(action_from).collect(),
            constraints: sdk::Constraints {
                tap_lifetime_minutes: a.constraints.tap_lifetime_minutes,
                tap_one_time_use: a.constraints.tap_one_time_use,
            },
            reason: a.reason,
        },
        wit::Decision::Deny(reason) => sdk::Decision::Deny { reason },
        wit::Decision::RequireVerification(v) => sdk::Decision::RequireVerification {
            requirements: v
                .requirements
                .into_iter()
                .map(|r| sdk::AnyOf(r.methods.into_iter().map(method_from).collect()))
                .collect(),
            reason: v.reason,
        },
        wit::Decision::RequireApproval(a) => sdk::Decision::RequireApproval {
            approver: match a.approver {
                wit::Approver::Manager => sdk::Approver::Manager,
                wit::Approver::Group(g) => sdk::Approver::Group(g),
            },
            reason: a.reason,
        },
        wit::Decision::Escalate(reason) => sdk::Decision::Escalate { reason },
    }
}
