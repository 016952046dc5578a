//! The example policies, compiled, against their corpora; determinism and the
//! fresh instance per decision.

use latchkey_tests::{allow_facts, corpus, guest, module_bytes, sandbox};

fn corpus_passes_in_the_sandbox(policy: &str) {
    let sandbox = sandbox();
    let module = sandbox
        .load(&module_bytes(&format!("policies/{policy}")))
        .unwrap();
    let corpus = corpus(policy);
    assert!(corpus.cases.len() >= 20, "{policy} corpus is too small");
    let failures: Vec<String> = corpus
        .cases
        .iter()
        .filter_map(|case| {
            let evaluation = sandbox.decide(&module, &case.facts);
            if let Some(fault) = evaluation.fault {
                return Some(format!("{}: fault {fault}", case.name));
            }
            case.expect
                .check(&evaluation.decision)
                .err()
                .map(|why| format!("{}: {why}", case.name))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn default_policy_passes_its_corpus_compiled() {
    corpus_passes_in_the_sandbox("default");
}

#[test]
fn northwind_policy_passes_its_corpus_compiled() {
    corpus_passes_in_the_sandbox("northwind");
}

#[test]
fn the_two_policies_differ_on_the_same_facts() {
    // The lost-device cases must not decide alike: Northwind wants both
    // manager confirmation and a recovery code.
    let sandbox = sandbox();
    let default = sandbox.load(&module_bytes("policies/default")).unwrap();
    let northwind = sandbox.load(&module_bytes("policies/northwind")).unwrap();
    let differing = corpus("default")
        .cases
        .iter()
        .filter(|c| {
            sandbox.decide(&default, &c.facts).decision
                != sandbox.decide(&northwind, &c.facts).decision
        })
        .count();
    assert!(differing > 5, "only {differing} cases decide differently");
}

#[test]
fn the_same_facts_give_the_same_decision_and_fuel() {
    let sandbox = sandbox();
    let module = sandbox.load(&module_bytes("policies/default")).unwrap();
    let facts = allow_facts();
    let first = sandbox.decide(&module, &facts);
    let second = sandbox.decide(&module, &facts);
    assert!(first.fault.is_none(), "{:?}", first.fault);
    assert!(first.decision.is_allow(), "{:?}", first.decision);
    assert_eq!(first.decision, second.decision);
    assert_eq!(first.fuel_used, second.fuel_used);
    assert!(first.fuel_used > 0);
}

#[test]
fn every_decision_gets_a_fresh_instance() {
    let sandbox = sandbox();
    let module = sandbox.load(&guest("counter")).unwrap();
    for _ in 0..3 {
        let evaluation = sandbox.decide(&module, &allow_facts());
        assert_eq!(evaluation.decision.reason(), "call 1");
    }
}
