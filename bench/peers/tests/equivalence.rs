//! Latchkey's sandbox (fresh and warm instances), Cedar and regorus
//! (interpreter and RVM) agree on every case of the default policy's corpus,
//! and Latchkey agrees with the case's expectation.

use latchkey::policy::{DiskCache, Limits, Sandbox};
use latchkey_peers::{CedarPolicy, Outcome, RegoPolicy};

#[test]
fn every_engine_gives_the_same_outcome_on_every_corpus_case() {
    let bytes = latchkey_peers::default_module().unwrap();
    let sandbox = Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap();
    let module = sandbox.load(&bytes).unwrap();
    let corpus = latchkey_peers::default_corpus().unwrap();
    assert_eq!(
        corpus.cases.len(),
        38,
        "the corpus changed; check the peers still cover it"
    );

    let cedar = CedarPolicy::new().unwrap();
    let mut rego = RegoPolicy::new().unwrap();
    let mut rvm = rego.compile().unwrap();
    // The benchmark's floor: one instance reused for every case.
    let mut warm = sandbox.warm_instance(&module).unwrap();
    let mut failures = Vec::new();
    for case in &corpus.cases {
        let evaluation = sandbox.decide(&module, &case.facts);
        assert!(
            evaluation.fault.is_none(),
            "{}: {:?}",
            case.name,
            evaluation.fault
        );
        if let Err(e) = case.expect.check(&evaluation.decision) {
            failures.push(format!("{}: latchkey: {e}", case.name));
        }
        let latchkey = Outcome::of(&evaluation.decision);
        let peers = [
            (
                "latchkey/warm_instance",
                warm.decide(&case.facts)
                    .map(|d| Outcome::of(&d))
                    .map_err(|f| latchkey_peers::PeerError::Setup(f.to_string())),
            ),
            ("cedar", cedar.decide(&case.facts)),
            ("regorus/eval_rule", rego.decide(&case.facts)),
            ("regorus/rvm", rvm.decide(&case.facts)),
        ];
        for (engine, outcome) in peers {
            match outcome {
                Ok(outcome) if outcome == latchkey => {}
                Ok(outcome) => failures.push(format!(
                    "{}: {engine} gives {outcome:?}, latchkey {latchkey:?}",
                    case.name
                )),
                Err(e) => failures.push(format!("{}: {engine}: {e}", case.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The comparison itself can fail: a wrong outcome from a peer is caught.
#[test]
fn a_disagreement_is_seen() {
    let corpus = latchkey_peers::default_corpus().unwrap();
    let case = corpus
        .cases
        .iter()
        .find(|c| c.expect.decision == "allow")
        .unwrap();
    let cedar = CedarPolicy::new().unwrap().decide(&case.facts).unwrap();
    assert_eq!(cedar.kind(), "allow");
    let mut other = case.facts.clone();
    other.target_is_self = false;
    assert_ne!(CedarPolicy::new().unwrap().decide(&other).unwrap(), cedar);
    assert_ne!(RegoPolicy::new().unwrap().decide(&other).unwrap(), cedar);
}

/// Beyond the corpus: a spread of facts over every scenario and flag, with
/// verifications at and past their age limits or stamped in the future,
/// approvals by the manager or only by a group, and different requested
/// actions. One combination in 37 of the full grid (86,016), so every
/// dimension still varies.
#[test]
fn every_engine_agrees_beyond_the_corpus() {
    use latchkey_policy::{Action, Approval, Approver, Method, Scenario, Verification};

    let bytes = latchkey_peers::default_module().unwrap();
    let sandbox = Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap();
    let module = sandbox.load(&bytes).unwrap();
    let cedar = CedarPolicy::new().unwrap();
    let mut rego = RegoPolicy::new().unwrap();
    let mut rvm = rego.compile().unwrap();

    let scenarios = [
        Scenario::ForgotPassword,
        Scenario::LostMfaDevice,
        Scenario::AccountLocked,
        Scenario::PasswordExpired,
        Scenario::ConditionalAccessBlocked,
        Scenario::OtherAccount,
        Scenario::Mistyped,
        Scenario::Unknown,
    ];
    let verified = |method, ago: i64| Verification {
        method,
        verified_at: latchkey_policy::Clock::default().unix_seconds - ago,
    };
    let verifications = [
        vec![],
        vec![verified(Method::MfaStepUp, 60)],
        vec![verified(Method::MfaStepUp, 601)],
        vec![verified(Method::ManagerConfirmation, 1800)],
        vec![verified(Method::RecoveryEmailCode, 1801)],
        vec![verified(Method::RecoveryEmailCode, -10)],
        vec![
            verified(Method::MfaStepUp, 10),
            verified(Method::RecoveryEmailCode, 10),
        ],
    ];
    let approval = |via| Approval {
        approver_id: "approver".into(),
        via,
        approved_at: latchkey_policy::Clock::default().unix_seconds - 30,
    };
    let approvals = [
        vec![],
        vec![approval(Approver::Manager)],
        vec![approval(Approver::Group("3F1C9A52".into()))],
    ];
    let requested = [
        vec![
            Action::ResetPassword,
            Action::IssueTemporaryAccessPass,
            Action::RemoveLostMfaMethods,
            Action::RevokeSessions,
        ],
        vec![Action::ResetPassword],
        vec![Action::IssueTemporaryAccessPass, Action::RevokeSessions],
        vec![],
    ];

    let total = scenarios.len() * 128 * verifications.len() * approvals.len() * requested.len();
    let mut kinds = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for index in (0..total).step_by(37) {
        let mut rest = index;
        let mut digit = |radix: usize| {
            let d = rest % radix;
            rest /= radix;
            d
        };
        let mut facts = latchkey_policy::Facts {
            scenario: scenarios[digit(scenarios.len())],
            target_is_self: digit(2) == 0,
            verifications: verifications[digit(verifications.len())].clone(),
            approvals: approvals[digit(approvals.len())].clone(),
            requested_actions: requested[digit(requested.len())].clone(),
            ..Default::default()
        };
        facts.requester.account_enabled = digit(2) == 0;
        facts.requester.on_premises_synced = digit(2) == 1;
        facts.requester.is_privileged = digit(2) == 1;
        facts.requester.has_manager = digit(2) == 0;
        facts.mfa.mfa_capable = digit(2) == 0;
        facts.mfa.has_recovery_email = digit(2) == 0;

        let evaluation = sandbox.decide(&module, &facts);
        assert!(
            evaluation.fault.is_none(),
            "{facts:?}: {:?}",
            evaluation.fault
        );
        let latchkey = Outcome::of(&evaluation.decision);
        kinds.insert(latchkey.kind());
        for (engine, outcome) in [
            ("cedar", cedar.decide(&facts)),
            ("regorus/eval_rule", rego.decide(&facts)),
            ("regorus/rvm", rvm.decide(&facts)),
        ] {
            match outcome {
                Ok(outcome) if outcome == latchkey => {}
                Ok(outcome) => failures.push(format!(
                    "{facts:?}: {engine} gives {outcome:?}, latchkey {latchkey:?}"
                )),
                Err(e) => failures.push(format!("{facts:?}: {engine}: {e}")),
            }
        }
        checked += 1;
    }
    assert!(checked > 2000);
    assert_eq!(
        kinds.len(),
        5,
        "not every kind of outcome was reached: {kinds:?}"
    );
    let shown: Vec<_> = failures.iter().take(5).cloned().collect();
    assert!(
        failures.is_empty(),
        "{} disagreements in {checked} facts, first:\n{}",
        failures.len(),
        shown.join("\n")
    );
}
