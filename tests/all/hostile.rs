//! Hostile modules are contained: each ends in a deny (or a refusal at load)
//! with a named cause, runaways are stopped, and the host keeps serving.

use std::time::Duration;

use latchkey::policy::DiskCache;
use latchkey::policy::{Evaluation, Limits, LoadError, Sandbox};
use latchkey_policy::{Action, Facts};
use latchkey_tests::{allow_facts, guest, malformed_decision_component, module_bytes, sandbox};

/// A hang detector, not a performance check: runaways are stopped by fuel or
/// the 20 ms deadline; this only catches a sandbox that fails to stop them.
/// The measured times are in the README (criterion, `--bench runaway`).
const HANG: Duration = Duration::from_secs(2);

fn run_hostile(name: &str) -> Evaluation {
    run_hostile_on(name, &allow_facts())
}

fn run_hostile_on(name: &str, facts: &Facts) -> Evaluation {
    let sandbox = sandbox();
    let hostile = sandbox.load(&guest(name)).unwrap();
    let healthy = sandbox.load(&module_bytes("policies/default")).unwrap();
    let evaluation = sandbox.decide(&hostile, facts);
    assert!(
        !evaluation.decision.is_allow(),
        "{name}: {:?}",
        evaluation.decision
    );
    assert_eq!(evaluation.decision.kind(), "deny", "{name}");
    assert!(
        evaluation.elapsed < HANG,
        "{name} ran for {:?}",
        evaluation.elapsed
    );
    // The host keeps serving other decisions.
    let after = sandbox.decide(&healthy, &allow_facts());
    assert!(
        after.fault.is_none() && after.decision.is_allow(),
        "{name}: {after:?}"
    );
    evaluation
}

fn cause(evaluation: &Evaluation) -> &'static str {
    evaluation
        .fault
        .as_ref()
        .map(|f| f.code())
        .unwrap_or("none")
}

#[test]
fn an_endless_loop_is_stopped_by_fuel_or_deadline() {
    let evaluation = run_hostile("spin");
    assert!(
        matches!(cause(&evaluation), "out-of-fuel" | "deadline"),
        "{:?}",
        evaluation.fault
    );
}

#[test]
fn an_endless_loop_without_fuel_to_stop_it_hits_the_deadline() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits, DiskCache::in_memory()).unwrap();
    let module = sandbox.load(&guest("spin")).unwrap();
    let evaluation = sandbox.decide(&module, &allow_facts());
    assert_eq!(cause(&evaluation), "deadline", "{:?}", evaluation.fault);
    assert!(
        evaluation.elapsed >= Duration::from_millis(15),
        "{:?}",
        evaluation.elapsed
    );
    assert!(evaluation.elapsed < HANG);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let evaluation = run_hostile("memory-bomb");
    assert_eq!(cause(&evaluation), "memory-limit", "{:?}", evaluation.fault);
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let evaluation = run_hostile("deep-recursion");
    assert_eq!(
        cause(&evaluation),
        "stack-overflow",
        "{:?}",
        evaluation.fault
    );
}

#[test]
fn a_multi_megabyte_decision_is_oversized() {
    let evaluation = run_hostile("huge-decision");
    assert_eq!(
        cause(&evaluation),
        "oversized-decision",
        "{:?}",
        evaluation.fault
    );
    assert!(evaluation.decision.reason().len() < 1024);
}

#[test]
fn a_panic_is_a_trap() {
    let evaluation = run_hostile("panics");
    assert_eq!(cause(&evaluation), "trap", "{:?}", evaluation.fault);
}

#[test]
fn allowing_an_unrequested_action_is_malformed() {
    // Only a Temporary Access Pass is requested; the module allows a reset.
    let facts = Facts {
        requested_actions: vec![Action::IssueTemporaryAccessPass],
        ..allow_facts()
    };
    let evaluation = run_hostile_on("unrequested-action", &facts);
    assert_eq!(
        cause(&evaluation),
        "malformed-decision",
        "{:?}",
        evaluation.fault
    );
    let why = evaluation.fault.unwrap().to_string();
    assert!(why.contains("was not requested"), "{why}");
}

#[test]
fn an_invalid_variant_in_the_decision_is_malformed() {
    let sandbox = sandbox();
    let module = sandbox.load(&malformed_decision_component()).unwrap();
    let evaluation = sandbox.decide(&module, &allow_facts());
    assert_eq!(
        cause(&evaluation),
        "malformed-decision",
        "{:?}",
        evaluation.fault
    );
    assert_eq!(evaluation.decision.kind(), "deny");
}

#[test]
fn a_filesystem_import_is_refused_at_load_and_named() {
    let err = sandbox().load(&guest("fs-import")).unwrap_err();
    let LoadError::ForbiddenImports(imports) = &err else {
        panic!("expected a forbidden import, got {err}");
    };
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:filesystem/")),
        "{imports:?}"
    );
    assert!(err.to_string().contains("wasi:filesystem/"), "{err}");
}

#[test]
fn a_clock_import_is_refused_at_load_and_named() {
    let err = sandbox().load(&guest("clock-import")).unwrap_err();
    assert!(matches!(err, LoadError::ForbiddenImports(_)), "{err}");
    assert!(err.to_string().contains("wasi:clocks/"), "{err}");
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let sandbox = sandbox();
    for bytes in [&b""[..], b"\0asm garbage", &[0xffu8; 4096][..]] {
        let err = sandbox.load(bytes).unwrap_err();
        assert!(matches!(err, LoadError::InvalidComponent(_)), "{err}");
    }
}

#[test]
fn a_core_module_is_not_a_component() {
    let core = wat::parse_str("(module (func (export \"evaluate\")))").unwrap();
    let err = sandbox().load(&core).unwrap_err();
    assert!(matches!(err, LoadError::InvalidComponent(_)), "{err}");
}

#[test]
fn an_oversized_module_is_refused_before_compiling() {
    let limits = Limits {
        max_module_bytes: 1024,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits, DiskCache::in_memory()).unwrap();
    let err = sandbox.load(&module_bytes("policies/default")).unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
}

#[test]
fn runaways_do_not_stop_other_decisions_running_at_the_same_time() {
    let sandbox = std::sync::Arc::new(sandbox());
    let healthy = sandbox.load(&module_bytes("policies/default")).unwrap();
    let hostile: Vec<_> = ["spin", "memory-bomb", "deep-recursion", "huge-decision"]
        .iter()
        .map(|name| sandbox.load(&guest(name)).unwrap())
        .collect();
    let workers: Vec<_> = hostile
        .into_iter()
        .map(|module| {
            let sandbox = std::sync::Arc::clone(&sandbox);
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let evaluation = sandbox.decide(&module, &allow_facts());
                    assert!(evaluation.fault.is_some());
                }
            })
        })
        .collect();
    for _ in 0..50 {
        let evaluation = sandbox.decide(&healthy, &allow_facts());
        assert!(evaluation.fault.is_none() && evaluation.decision.is_allow());
    }
    for worker in workers {
        worker.join().unwrap();
    }
}
