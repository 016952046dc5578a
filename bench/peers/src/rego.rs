//! The default policy in Rego, for regorus: the tree-walking interpreter on
//! a pre-parsed policy, and the precompiled RVM program.
//!
//! The input is the facts serialised as the contract spells them (the JSON
//! of `latchkey_policy::Facts`). The rule `data.latchkey.default.decision`
//! is an object: `kind`, plus `actions` and `constraints` for an allow,
//! `requirements` for a verification, `approver` for an approval.

use latchkey_policy::{Action, Approver, Constraints, Facts, Method};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use regorus::{Engine, Value};

use crate::{Outcome, PeerError};

/// The rule every evaluation asks for.
pub const ENTRY_POINT: &str = "data.latchkey.default.decision";

/// The default policy in Rego.
pub const POLICY: &str = r#"
package latchkey.default

import rego.v1

# How recent an MFA step-up must be to count, in seconds.
step_up_max_age := 600

# How recent an alternate verification must be to count, in seconds.
alternate_max_age := 1800

# Temporary Access Pass lifetime for a lost device, in minutes.
tap_lifetime_minutes := 60

now := input.time.unix_seconds

resets := {"forgot-password", "account-locked", "password-expired"}

decision := {"kind": "deny"} if {
	not own
} else := {"kind": "escalate"} if {
	not input.requester.account_enabled
} else := {"kind": "deny"} if {
	input.scenario == "conditional-access-blocked"
} else := {"kind": "deny"} if {
	input.scenario == "mistyped"
} else := password_reset if {
	input.scenario in resets
} else := lost_device if {
	input.scenario == "lost-mfa-device"
} else := {"kind": "escalate"}

own if {
	input.target_is_self
	input.scenario != "other-account"
}

password_reset := {"kind": "escalate"} if {
	input.requester.on_premises_synced
} else := {"kind": "require-verification", "requirements": [["mfa-step-up"]]} if {
	input.mfa.mfa_capable
	not verified_within("mfa-step-up", step_up_max_age)
} else := alternate_verification if {
	not input.mfa.mfa_capable
	not alternate_verified
} else := privileged_approval if {
	needs_approval
} else := {"kind": "allow", "actions": reset_actions, "constraints": {"tap_lifetime_minutes": null, "tap_one_time_use": false}} if {
	count(reset_actions) > 0
} else := {"kind": "deny"}

lost_device := alternate_verification if {
	not alternate_verified
} else := privileged_approval if {
	needs_approval
} else := {"kind": "allow", "actions": tap_actions, "constraints": {"tap_lifetime_minutes": tap_lifetime_minutes, "tap_one_time_use": true}} if {
	count(tap_actions) > 0
} else := {"kind": "deny"}

# A verification by this method, not stamped after the request, at most
# max_age seconds old.
verified_within(method, max_age) if {
	some v in input.verifications
	v.method == method
	v.verified_at <= now
	now - v.verified_at <= max_age
}

alternate_verified if verified_within("manager-confirmation", alternate_max_age)

alternate_verified if verified_within("recovery-email-code", alternate_max_age)

available_methods contains "manager-confirmation" if input.requester.has_manager

available_methods contains "recovery-email-code" if input.mfa.has_recovery_email

alternate_methods := [m | some m in ["manager-confirmation", "recovery-email-code"]; m in available_methods]

alternate_verification := {"kind": "escalate"} if {
	count(alternate_methods) == 0
} else := {"kind": "require-verification", "requirements": [alternate_methods]}

needs_approval if {
	input.requester.is_privileged
	not approved_by_manager
}

approved_by_manager if {
	some a in input.approvals
	a.via == "manager"
}

privileged_approval := {"kind": "require-approval", "approver": "manager"} if {
	input.requester.has_manager
} else := {"kind": "escalate"}

reset_actions := [a | some a in ["reset-password", "revoke-sessions"]; a in input.requested_actions]

tap_actions := [a | some a in ["issue-temporary-access-pass", "remove-lost-mfa-methods", "revoke-sessions"]; a in input.requested_actions]
"#;

/// The policy parsed once into a regorus engine (the tree-walking interpreter).
#[derive(Clone)]
pub struct RegoPolicy {
    engine: Engine,
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy").finish_non_exhaustive()
    }
}

impl RegoPolicy {
    /// Parses [`POLICY`].
    pub fn new() -> Result<RegoPolicy, PeerError> {
        let mut engine = Engine::new();
        engine
            .add_policy("latchkey/default.rego".to_owned(), POLICY.to_owned())
            .map_err(|e| PeerError::Rego(e.to_string()))?;
        Ok(RegoPolicy { engine })
    }

    /// Sets the input and evaluates the decision rule.
    pub fn eval_rule(&mut self, input: Value) -> Result<Value, PeerError> {
        self.engine.set_input(input);
        self.engine
            .eval_rule(ENTRY_POINT.to_owned())
            .map_err(|e| PeerError::Rego(e.to_string()))
    }

    /// Decides on `facts` with the interpreter.
    pub fn decide(&mut self, facts: &Facts) -> Result<Outcome, PeerError> {
        let value = self.eval_rule(input(facts)?)?;
        outcome(&value)
    }

    /// Compiles the policy to an RVM program with the decision as entry point.
    pub fn compile(&self) -> Result<RegoProgram, PeerError> {
        let mut engine = self.engine.clone();
        let compiled = engine
            .compile_with_entrypoint(&ENTRY_POINT.into())
            .map_err(|e| PeerError::Rego(e.to_string()))?;
        let program = Compiler::compile_from_policy(&compiled, &[ENTRY_POINT])
            .map_err(|e| PeerError::Rego(e.to_string()))?;
        let mut vm = RegoVM::new();
        vm.load_program(program);
        Ok(RegoProgram { vm })
    }
}

/// The policy precompiled to regorus' bytecode, in a VM that is reused.
pub struct RegoProgram {
    vm: RegoVM,
}

impl std::fmt::Debug for RegoProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoProgram").finish_non_exhaustive()
    }
}

impl RegoProgram {
    /// Sets the input and runs the program.
    pub fn execute(&mut self, input: Value) -> Result<Value, PeerError> {
        self.vm.set_input(input);
        self.vm
            .execute()
            .map_err(|e| PeerError::Rego(e.to_string()))
    }

    /// Decides on `facts` with the RVM.
    pub fn decide(&mut self, facts: &Facts) -> Result<Outcome, PeerError> {
        let value = self.execute(input(facts)?)?;
        outcome(&value)
    }
}

/// The regorus input for `facts`: their JSON, as the contract spells it.
pub fn input(facts: &Facts) -> Result<Value, PeerError> {
    let json = serde_json::to_string(facts).map_err(|e| PeerError::Rego(e.to_string()))?;
    Value::from_json_str(&json).map_err(|e| PeerError::Rego(e.to_string()))
}

/// The outcome of the decision rule's value.
pub fn outcome(value: &Value) -> Result<Outcome, PeerError> {
    let json: serde_json::Value =
        serde_json::to_value(value).map_err(|e| PeerError::Rego(e.to_string()))?;
    let field = |name: &str| {
        json.get(name)
            .cloned()
            .ok_or_else(|| PeerError::Rego(format!("decision without {name}: {json}")))
    };
    let parse = |e: serde_json::Error| PeerError::Rego(format!("decision {json}: {e}"));
    match json.get("kind").and_then(|k| k.as_str()) {
        Some("allow") => Ok(Outcome::Allow {
            actions: serde_json::from_value::<Vec<Action>>(field("actions")?).map_err(parse)?,
            constraints: serde_json::from_value::<Constraints>(field("constraints")?)
                .map_err(parse)?,
        }),
        Some("deny") => Ok(Outcome::Deny),
        Some("escalate") => Ok(Outcome::Escalate),
        Some("require-verification") => Ok(Outcome::RequireVerification {
            requirements: serde_json::from_value::<Vec<Vec<Method>>>(field("requirements")?)
                .map_err(parse)?,
        }),
        Some("require-approval") => Ok(Outcome::RequireApproval {
            approver: serde_json::from_value::<Approver>(field("approver")?).map_err(parse)?,
        }),
        _ => Err(PeerError::Rego(format!("not a decision: {json}"))),
    }
}
