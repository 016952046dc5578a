#![allow(missing_docs, clippy::panic)]
//! The default policy's decision, side by side, on the same facts:
//!
//! * `latchkey/fresh_sandbox`: `Sandbox::decide` on a loaded module, a fresh
//!   store and instance per decision, exactly what production does;
//! * `latchkey/warm_instance`: one instance reused (the floor; never done in
//!   production);
//! * `cedar/is_authorized`: policy set, entities and request built beforehand;
//! * `cedar/build_request+is_authorized`: the request built from the facts per call;
//! * `regorus/eval_rule`: the Rego policy pre-parsed, the input set per call;
//! * `regorus/rvm`: the policy precompiled to regorus' bytecode, one VM reused.
//!
//! Every bench cycles over the same six corpus cases, one per outcome (allow a
//! reset, allow a Temporary Access Pass, deny, require verification, require
//! approval, escalate); `tests/equivalence.rs` checks that all engines agree
//! on them and on the rest of the corpus.
//!
//! Run with `cargo bench --bench side_by_side` in bench/peers (medians in
//! `target/criterion/<group>/<bench>/new/estimates.json`; see RESULTS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::policy::{DiskCache, Limits, Sandbox};
use latchkey_peers::{CedarPolicy, Outcome, RegoPolicy, cedar, rego};
use latchkey_policy::Facts;

/// One corpus case per outcome, by the start of its name.
const CASES: [&str; 6] = [
    "1. forgot password, MFA step-up 2 minutes ago",
    "2. lost MFA device, manager confirmed",
    "6. target not self",
    "1. forgot password, MFA capable, not yet verified",
    "privileged, forgot password, MFA step-up passed",
    "disabled account",
];

fn inputs() -> Vec<Facts> {
    let corpus = latchkey_peers::default_corpus().unwrap_or_else(|e| panic!("{e}"));
    CASES
        .iter()
        .map(|prefix| {
            corpus
                .cases
                .iter()
                .find(|c| c.name.starts_with(prefix))
                .map(|c| c.facts.clone())
                .unwrap_or_else(|| panic!("no corpus case starts with {prefix:?}"))
        })
        .collect()
}

/// A counter cycling over `n` inputs.
fn cycle(n: usize) -> impl FnMut() -> usize {
    let mut i = 0;
    move || {
        i = (i + 1) % n;
        i
    }
}

fn side_by_side(c: &mut Criterion) {
    let facts = inputs();
    let n = facts.len();

    let bytes = latchkey_peers::default_module().unwrap_or_else(|e| panic!("{e}"));
    let sandbox =
        Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap_or_else(|e| panic!("{e}"));
    let module = sandbox.load(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let mut warm = sandbox
        .warm_instance(&module)
        .unwrap_or_else(|e| panic!("{e}"));

    let cedar_policy = CedarPolicy::new().unwrap_or_else(|e| panic!("{e}"));
    let cedar_inputs: Vec<_> = facts
        .iter()
        .map(|f| cedar::request(f).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut rego_policy = RegoPolicy::new().unwrap_or_else(|e| panic!("{e}"));
    let mut rvm = rego_policy.compile().unwrap_or_else(|e| panic!("{e}"));
    let rego_inputs: Vec<_> = facts
        .iter()
        .map(|f| rego::input(f).unwrap_or_else(|e| panic!("{e}")))
        .collect();

    // The same outcomes everywhere before anything is timed, and six distinct ones.
    let mut seen = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        let fresh = Outcome::of(&sandbox.decide(&module, f).decision);
        let warm_outcome = Outcome::of(&warm.decide(f).unwrap_or_else(|e| panic!("{e}")));
        let cedar_outcome = cedar_policy
            .outcome(&cedar_policy.is_authorized(&cedar_inputs[i]))
            .unwrap_or_else(|e| panic!("{e}"));
        let rego_outcome = rego_policy
            .eval_rule(rego_inputs[i].clone())
            .and_then(|v| rego::outcome(&v))
            .unwrap_or_else(|e| panic!("{e}"));
        let rvm_outcome = rvm
            .execute(rego_inputs[i].clone())
            .and_then(|v| rego::outcome(&v))
            .unwrap_or_else(|e| panic!("{e}"));
        for other in [&warm_outcome, &cedar_outcome, &rego_outcome, &rvm_outcome] {
            assert_eq!(other, &fresh, "{:?}", CASES[i]);
        }
        assert!(!seen.contains(&fresh.kind()) || fresh.kind() == "allow");
        seen.push(fresh.kind());
    }

    let mut group = c.benchmark_group("latchkey");
    let mut next = cycle(n);
    group.bench_function("fresh_sandbox", |b| {
        b.iter(|| black_box(sandbox.decide(&module, black_box(&facts[next()])).decision))
    });
    let mut next = cycle(n);
    group.bench_function("warm_instance", |b| {
        b.iter(|| black_box(warm.decide(black_box(&facts[next()]))))
    });
    group.finish();

    let mut group = c.benchmark_group("cedar");
    let mut next = cycle(n);
    group.bench_function("is_authorized", |b| {
        b.iter(|| black_box(cedar_policy.is_authorized(black_box(&cedar_inputs[next()]))))
    });
    let mut next = cycle(n);
    group.bench_function("build_request+is_authorized", |b| {
        b.iter(|| {
            let input = cedar::request(black_box(&facts[next()])).unwrap_or_else(|e| panic!("{e}"));
            black_box(cedar_policy.is_authorized(&input))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("regorus");
    let mut next = cycle(n);
    group.bench_function("eval_rule", |b| {
        b.iter(|| black_box(rego_policy.eval_rule(black_box(rego_inputs[next()].clone()))))
    });
    let mut next = cycle(n);
    group.bench_function("rvm", |b| {
        b.iter(|| black_box(rvm.execute(black_box(rego_inputs[next()].clone()))))
    });
    group.finish();
}

criterion_group!(benches, side_by_side);
criterion_main!(benches);
