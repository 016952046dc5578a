#![allow(missing_docs, clippy::panic)]
//! The fresh-sandbox decision: instantiate the default policy from its
//! `InstancePre`, evaluate realistic facts, check the decision, drop the store.
//!
//! Also how long runaway modules run before they are stopped.
//!
//! Run with `cargo bench -p latchkey --bench decision`. The default policy is
//! built first (reproducibly, into target/bench-policies).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::policy::build::{self, BuildOptions};
use latchkey::policy::{DiskCache, Limits, Sandbox};
use latchkey_policy::corpus::Corpus;

fn decision(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = build::build(
        &root.join("policies/default"),
        &BuildOptions {
            target_dir: Some(root.join("target/bench-policies")),
            quiet: true,
        },
    )
    .unwrap_or_else(|e| panic!("building the default policy: {e}"));
    let bytes = std::fs::read(&built.path).unwrap_or_else(|e| panic!("{e}"));
    let sandbox =
        Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap_or_else(|e| panic!("{e}"));
    let module = sandbox.load(&bytes).unwrap_or_else(|e| panic!("{e}"));

    // Realistic facts: the corpus case for a verified ordinary user who forgot
    // their password (groups, roles, sign-in signals, methods all filled in).
    let corpus_text = std::fs::read_to_string(root.join("policies/default/cases.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let corpus = Corpus::from_json(&corpus_text).unwrap_or_else(|e| panic!("{e}"));
    let case = corpus
        .cases
        .iter()
        .find(|c| c.expect.decision == "allow")
        .unwrap_or_else(|| panic!("the corpus has no allow case"));
    let first = sandbox.decide(&module, &case.facts);
    assert!(first.fault.is_none(), "{:?}", first.fault);
    assert!(first.decision.is_allow(), "{:?}", first.decision);

    c.bench_function("decision/fresh_sandbox/default_policy", |b| {
        b.iter(|| {
            let evaluation = sandbox.decide(&module, std::hint::black_box(&case.facts));
            std::hint::black_box(evaluation.decision);
        })
    });
}

/// How long a runaway module runs before the sandbox stops it: the figure
/// behind "hostile modules end within 50 ms".
fn runaway(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sandbox =
        Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap_or_else(|e| panic!("{e}"));
    let facts = latchkey_policy::Facts::default();
    let mut group = c.benchmark_group("runaway");
    group.sample_size(10);
    for name in ["spin", "memory-bomb", "deep-recursion", "huge-decision"] {
        let built = build::build(
            &root.join("tests/guests").join(name),
            &BuildOptions {
                target_dir: Some(root.join("target/bench-policies")),
                quiet: true,
            },
        )
        .unwrap_or_else(|e| panic!("building {name}: {e}"));
        let bytes = std::fs::read(&built.path).unwrap_or_else(|e| panic!("{e}"));
        let module = sandbox.load(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let first = sandbox.decide(&module, &facts);
        assert!(first.fault.is_some(), "{name} was not stopped");
        group.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(sandbox.decide(&module, &facts).fault))
        });
    }
    group.finish();
}

criterion_group!(benches, decision, runaway);
criterion_main!(benches);
