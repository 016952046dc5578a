//! The default policy in Cedar.
//!
//! Cedar answers only allow or deny, so each branch of the default policy is
//! one policy whose annotations say what it means: `@outcome` (the kind),
//! `@action` (one allowed action), `@any_of` (one alternative of the single
//! verification requirement), `@approver`, and the Temporary Access Pass
//! limits. The conditions are written so that the permits of different
//! outcomes never fire together; the outcome is read from the determining
//! policies. No policy firing (or a `forbid`) is a deny, which is also what
//! an allow of nothing becomes in Latchkey.
//!
//! Cedar has no quantifier over a collection, so "a verification by this
//! method, not stamped after the request, at most N seconds old" cannot be
//! asked of a list. [`request`] therefore projects the verifications to the
//! newest one per method that is not later than the request (`context.verified`);
//! the age limit stays in the policies. Approvals become the set of their
//! `via` (`"manager"`, or `"group:<lower-case id>"`).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use latchkey_policy::{Action, Approver, Constraints, Facts, Method, Scenario};

use crate::{Outcome, PeerError};

/// The default policy in Cedar (see the module docs for the annotations).
pub const POLICY: &str = r#"
// Someone else's account: deny.
@rule("not-own") @outcome("deny")
forbid (principal, action, resource)
unless { context.target_is_self && context.scenario != "other-account" };

// A disabled account: escalate.
@rule("disabled") @outcome("escalate")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  !principal.account_enabled
};

// Conditional Access blocked the sign-in: deny, never change it.
@rule("conditional-access") @outcome("deny")
forbid (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled && context.scenario == "conditional-access-blocked"
};

// A mistyped password: deny, nothing to fix.
@rule("mistyped") @outcome("deny")
forbid (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled && context.scenario == "mistyped"
};

// Not recognised: escalate.
@rule("unknown") @outcome("escalate")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled && context.scenario == "unknown"
};

// A password write for an account synced from on-premises AD: escalate.
@rule("on-premises") @outcome("escalate")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
  principal.on_premises_synced
};

// A password reset for an MFA-capable user: an MFA step-up within 10 minutes.
@rule("step-up") @outcome("require-verification") @any_of("mfa-step-up")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
  !principal.on_premises_synced && context.mfa_capable &&
  !(context.verified has mfa_step_up &&
    context.now - context.verified.mfa_step_up <= 600)
};

// Without MFA (a reset without any method, or a lost device): manager
// confirmation or a recovery-email code within 30 minutes, whichever the
// user can do; one policy per alternative.
@rule("alternate-manager") @outcome("require-verification") @any_of("manager-confirmation")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ((["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
    !principal.on_premises_synced && !context.mfa_capable) ||
   context.scenario == "lost-mfa-device") &&
  !((context.verified has manager_confirmation &&
     context.now - context.verified.manager_confirmation <= 1800) ||
    (context.verified has recovery_email_code &&
     context.now - context.verified.recovery_email_code <= 1800)) &&
  principal.has_manager
};

@rule("alternate-recovery-email") @outcome("require-verification") @any_of("recovery-email-code")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ((["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
    !principal.on_premises_synced && !context.mfa_capable) ||
   context.scenario == "lost-mfa-device") &&
  !((context.verified has manager_confirmation &&
     context.now - context.verified.manager_confirmation <= 1800) ||
    (context.verified has recovery_email_code &&
     context.now - context.verified.recovery_email_code <= 1800)) &&
  context.has_recovery_email
};

// Neither alternative available: escalate.
@rule("cannot-verify") @outcome("escalate")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ((["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
    !principal.on_premises_synced && !context.mfa_capable) ||
   context.scenario == "lost-mfa-device") &&
  !((context.verified has manager_confirmation &&
     context.now - context.verified.manager_confirmation <= 1800) ||
    (context.verified has recovery_email_code &&
     context.now - context.verified.recovery_email_code <= 1800)) &&
  !principal.has_manager && !context.has_recovery_email
};

// Verified, privileged, not yet approved by the manager: ask the manager.
@rule("privileged-approval") @outcome("require-approval") @approver("manager")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ((["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
    !principal.on_premises_synced &&
    ((context.mfa_capable &&
      context.verified has mfa_step_up &&
      context.now - context.verified.mfa_step_up <= 600) ||
     (!context.mfa_capable &&
      ((context.verified has manager_confirmation &&
        context.now - context.verified.manager_confirmation <= 1800) ||
       (context.verified has recovery_email_code &&
        context.now - context.verified.recovery_email_code <= 1800))))) ||
   (context.scenario == "lost-mfa-device" &&
    ((context.verified has manager_confirmation &&
      context.now - context.verified.manager_confirmation <= 1800) ||
     (context.verified has recovery_email_code &&
      context.now - context.verified.recovery_email_code <= 1800)))) &&
  principal.is_privileged && !context.approvals.contains("manager") &&
  principal.has_manager
};

// The same without a manager on record: escalate.
@rule("privileged-no-manager") @outcome("escalate")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ((["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
    !principal.on_premises_synced &&
    ((context.mfa_capable &&
      context.verified has mfa_step_up &&
      context.now - context.verified.mfa_step_up <= 600) ||
     (!context.mfa_capable &&
      ((context.verified has manager_confirmation &&
        context.now - context.verified.manager_confirmation <= 1800) ||
       (context.verified has recovery_email_code &&
        context.now - context.verified.recovery_email_code <= 1800))))) ||
   (context.scenario == "lost-mfa-device" &&
    ((context.verified has manager_confirmation &&
      context.now - context.verified.manager_confirmation <= 1800) ||
     (context.verified has recovery_email_code &&
      context.now - context.verified.recovery_email_code <= 1800)))) &&
  principal.is_privileged && !context.approvals.contains("manager") &&
  !principal.has_manager
};

// Verified (and approved if privileged): reset the password and revoke
// sessions, each only if requested.
@rule("reset-password") @outcome("allow") @action("reset-password")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
  !principal.on_premises_synced &&
  ((context.mfa_capable &&
    context.verified has mfa_step_up &&
    context.now - context.verified.mfa_step_up <= 600) ||
   (!context.mfa_capable &&
    ((context.verified has manager_confirmation &&
      context.now - context.verified.manager_confirmation <= 1800) ||
     (context.verified has recovery_email_code &&
      context.now - context.verified.recovery_email_code <= 1800)))) &&
  !(principal.is_privileged && !context.approvals.contains("manager")) &&
  context.requested.contains("reset-password")
};

@rule("reset-revoke-sessions") @outcome("allow") @action("revoke-sessions")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled &&
  ["forgot-password", "account-locked", "password-expired"].contains(context.scenario) &&
  !principal.on_premises_synced &&
  ((context.mfa_capable &&
    context.verified has mfa_step_up &&
    context.now - context.verified.mfa_step_up <= 600) ||
   (!context.mfa_capable &&
    ((context.verified has manager_confirmation &&
      context.now - context.verified.manager_confirmation <= 1800) ||
     (context.verified has recovery_email_code &&
      context.now - context.verified.recovery_email_code <= 1800)))) &&
  !(principal.is_privileged && !context.approvals.contains("manager")) &&
  context.requested.contains("revoke-sessions")
};

// Lost device, verified (and approved if privileged): a one-time
// 60-minute Temporary Access Pass, removal of the lost methods, and
// revoked sessions, each only if requested.
@rule("issue-tap") @outcome("allow") @action("issue-temporary-access-pass")
@tap_lifetime_minutes("60") @tap_one_time_use("true")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled && context.scenario == "lost-mfa-device" &&
  ((context.verified has manager_confirmation &&
    context.now - context.verified.manager_confirmation <= 1800) ||
   (context.verified has recovery_email_code &&
    context.now - context.verified.recovery_email_code <= 1800)) &&
  !(principal.is_privileged && !context.approvals.contains("manager")) &&
  context.requested.contains("issue-temporary-access-pass")
};

@rule("remove-lost-methods") @outcome("allow") @action("remove-lost-mfa-methods")
@tap_lifetime_minutes("60") @tap_one_time_use("true")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled && context.scenario == "lost-mfa-device" &&
  ((context.verified has manager_confirmation &&
    context.now - context.verified.manager_confirmation <= 1800) ||
   (context.verified has recovery_email_code &&
    context.now - context.verified.recovery_email_code <= 1800)) &&
  !(principal.is_privileged && !context.approvals.contains("manager")) &&
  context.requested.contains("remove-lost-mfa-methods")
};

@rule("lost-revoke-sessions") @outcome("allow") @action("revoke-sessions")
@tap_lifetime_minutes("60") @tap_one_time_use("true")
permit (principal, action, resource)
when {
  context.target_is_self && context.scenario != "other-account" &&
  principal.account_enabled && context.scenario == "lost-mfa-device" &&
  ((context.verified has manager_confirmation &&
    context.now - context.verified.manager_confirmation <= 1800) ||
   (context.verified has recovery_email_code &&
    context.now - context.verified.recovery_email_code <= 1800)) &&
  !(principal.is_privileged && !context.approvals.contains("manager")) &&
  context.requested.contains("revoke-sessions")
};
"#;

/// What one policy of [`POLICY`] contributes to an outcome, read from its
/// annotations once, when the policy set is parsed.
#[derive(Clone, Debug)]
struct Rule {
    outcome: String,
    action: Option<Action>,
    any_of: Option<Method>,
    approver: Option<Approver>,
    constraints: Constraints,
}

/// The policy set, parsed once, with each policy's annotations.
#[derive(Debug)]
pub struct CedarPolicy {
    policies: PolicySet,
    rules: HashMap<PolicyId, Rule>,
    authorizer: Authorizer,
}

/// The facts as Cedar sees them: the requester entity and the request.
#[derive(Debug)]
pub struct CedarInput {
    /// The requester, with its attributes.
    pub entities: Entities,
    /// Principal, action, resource and context.
    pub request: Request,
}

impl CedarPolicy {
    /// Parses [`POLICY`] and reads its annotations.
    pub fn new() -> Result<CedarPolicy, PeerError> {
        let policies = PolicySet::from_str(POLICY).map_err(|e| PeerError::Cedar(e.to_string()))?;
        let mut rules = HashMap::new();
        for policy in policies.policies() {
            let outcome = policy.annotation("outcome").ok_or_else(|| {
                PeerError::Cedar(format!("policy {} has no @outcome", policy.id()))
            })?;
            let rule = Rule {
                outcome: outcome.to_owned(),
                action: policy.annotation("action").map(parse_kebab).transpose()?,
                any_of: policy.annotation("any_of").map(parse_kebab).transpose()?,
                approver: policy.annotation("approver").map(parse_kebab).transpose()?,
                constraints: Constraints {
                    tap_lifetime_minutes: policy
                        .annotation("tap_lifetime_minutes")
                        .map(|m| {
                            m.parse::<u32>().map_err(|e| {
                                PeerError::Cedar(format!("@tap_lifetime_minutes: {e}"))
                            })
                        })
                        .transpose()?,
                    tap_one_time_use: policy.annotation("tap_one_time_use") == Some("true"),
                },
            };
            rules.insert(policy.id().clone(), rule);
        }
        Ok(CedarPolicy {
            policies,
            rules,
            authorizer: Authorizer::new(),
        })
    }

    /// The bare authorisation, on a request built beforehand.
    pub fn is_authorized(&self, input: &CedarInput) -> cedar_policy::Response {
        self.authorizer
            .is_authorized(&input.request, &self.policies, &input.entities)
    }

    /// Decides on `facts`: builds the request, authorises, reads the outcome.
    pub fn decide(&self, facts: &Facts) -> Result<Outcome, PeerError> {
        let input = request(facts)?;
        self.outcome(&self.is_authorized(&input))
    }

    /// The outcome of a Cedar response, from its determining policies.
    pub fn outcome(&self, response: &cedar_policy::Response) -> Result<Outcome, PeerError> {
        if let Some(error) = response.diagnostics().errors().next() {
            return Err(PeerError::Cedar(format!("a policy failed: {error}")));
        }
        if response.decision() == cedar_policy::Decision::Deny {
            return Ok(Outcome::Deny);
        }
        let mut kind: Option<&str> = None;
        let mut actions = Vec::new();
        let mut methods = Vec::new();
        let mut approver = None;
        let mut constraints = Constraints::default();
        for id in response.diagnostics().reason() {
            let rule = self
                .rules
                .get(id)
                .ok_or_else(|| PeerError::Cedar(format!("unknown policy {id}")))?;
            match kind {
                Some(k) if k != rule.outcome => {
                    return Err(PeerError::Ambiguous(format!(
                        "Cedar policies give both {k} and {}",
                        rule.outcome
                    )));
                }
                _ => kind = Some(&rule.outcome),
            }
            actions.extend(rule.action);
            methods.extend(rule.any_of);
            if rule.approver.is_some() {
                approver.clone_from(&rule.approver);
            }
            if rule.constraints != Constraints::default() {
                constraints = rule.constraints;
            }
        }
        actions.sort();
        actions.dedup();
        methods.sort();
        methods.dedup();
        match kind {
            Some("allow") => Ok(Outcome::Allow {
                actions,
                constraints,
            }),
            Some("deny") => Ok(Outcome::Deny),
            Some("escalate") => Ok(Outcome::Escalate),
            Some("require-verification") => Ok(Outcome::RequireVerification {
                requirements: vec![methods],
            }),
            Some("require-approval") => approver
                .map(|approver| Outcome::RequireApproval { approver })
                .ok_or_else(|| PeerError::Cedar("require-approval without @approver".into())),
            Some(other) => Err(PeerError::Cedar(format!("unknown @outcome {other}"))),
            None => Err(PeerError::Cedar(
                "an allow with no determining policy".into(),
            )),
        }
    }
}

/// Reads an annotation written the way the contract spells it (`reset-password`).
fn parse_kebab<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PeerError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| PeerError::Cedar(format!("annotation {text:?}: {e}")))
}

/// Builds the requester entity and the request from `facts` (see the module
/// docs for the two projections).
pub fn request(facts: &Facts) -> Result<CedarInput, PeerError> {
    let cedar = |e: &dyn std::fmt::Display| PeerError::Cedar(e.to_string());
    let user_type = EntityTypeName::from_str("Latchkey::User").map_err(|e| cedar(&e))?;
    let principal = EntityUid::from_type_name_and_id(user_type, EntityId::new(&facts.requester.id));
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Latchkey::Action").map_err(|e| cedar(&e))?,
        EntityId::new("decide"),
    );
    let r = &facts.requester;
    let attrs = HashMap::from([
        (
            "account_enabled".to_owned(),
            RestrictedExpression::new_bool(r.account_enabled),
        ),
        (
            "is_privileged".to_owned(),
            RestrictedExpression::new_bool(r.is_privileged),
        ),
        (
            "on_premises_synced".to_owned(),
            RestrictedExpression::new_bool(r.on_premises_synced),
        ),
        (
            "has_manager".to_owned(),
            RestrictedExpression::new_bool(r.has_manager),
        ),
    ]);
    let entity = Entity::new(principal.clone(), attrs, HashSet::new()).map_err(|e| cedar(&e))?;
    let entities = Entities::from_entities([entity], None).map_err(|e| cedar(&e))?;

    let now = facts.time.unix_seconds;
    let mut verified = Vec::new();
    for (method, name) in [
        (Method::MfaStepUp, "mfa_step_up"),
        (Method::ManagerConfirmation, "manager_confirmation"),
        (Method::RecoveryEmailCode, "recovery_email_code"),
    ] {
        let newest = facts
            .verifications
            .iter()
            .filter(|v| v.method == method && v.verified_at <= now)
            .map(|v| v.verified_at)
            .max();
        if let Some(at) = newest {
            verified.push((name.to_owned(), RestrictedExpression::new_long(at)));
        }
    }
    let approvals = facts.approvals.iter().map(|a| {
        RestrictedExpression::new_string(match &a.via {
            Approver::Manager => "manager".to_owned(),
            Approver::Group(id) => format!("group:{}", id.to_ascii_lowercase()),
        })
    });
    let requested = facts
        .requested_actions
        .iter()
        .map(|a| RestrictedExpression::new_string(action_name(*a).to_owned()));
    let context = Context::from_pairs([
        (
            "target_is_self".to_owned(),
            RestrictedExpression::new_bool(facts.target_is_self),
        ),
        (
            "scenario".to_owned(),
            RestrictedExpression::new_string(scenario_name(facts.scenario).to_owned()),
        ),
        (
            "mfa_capable".to_owned(),
            RestrictedExpression::new_bool(facts.mfa.mfa_capable),
        ),
        (
            "has_recovery_email".to_owned(),
            RestrictedExpression::new_bool(facts.mfa.has_recovery_email),
        ),
        ("now".to_owned(), RestrictedExpression::new_long(now)),
        (
            "verified".to_owned(),
            RestrictedExpression::new_record(verified).map_err(|e| cedar(&e))?,
        ),
        (
            "approvals".to_owned(),
            RestrictedExpression::new_set(approvals),
        ),
        (
            "requested".to_owned(),
            RestrictedExpression::new_set(requested),
        ),
    ])
    .map_err(|e| cedar(&e))?;
    let request =
        Request::new(principal.clone(), action, principal, context, None).map_err(|e| cedar(&e))?;
    Ok(CedarInput { entities, request })
}

/// The contract's spelling of a scenario.
pub(crate) fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::ForgotPassword => "forgot-password",
        Scenario::LostMfaDevice => "lost-mfa-device",
        Scenario::AccountLocked => "account-locked",
        Scenario::PasswordExpired => "password-expired",
        Scenario::ConditionalAccessBlocked => "conditional-access-blocked",
        Scenario::OtherAccount => "other-account",
        Scenario::Mistyped => "mistyped",
        Scenario::Unknown => "unknown",
    }
}

/// The contract's spelling of an action.
pub(crate) fn action_name(action: Action) -> &'static str {
    match action {
        Action::ResetPassword => "reset-password",
        Action::IssueTemporaryAccessPass => "issue-temporary-access-pass",
        Action::RemoveLostMfaMethods => "remove-lost-mfa-methods",
        Action::RevokeSessions => "revoke-sessions",
    }
}
