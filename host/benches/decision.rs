#![allow(missing_docs, clippy::panic)]
//! The fresh-sandbox decision: instantiate the default policy from its
//! `InstancePre`, evaluate realistic facts, check the decision, drop the store.
//!
//! The whole decision path (issue 7, item 2): facts -> fresh sandbox ->
//! decision -> receipt signed (ed25519, DSSE) -> receipt verified and its
//! scope checked for each action, as the executor does before a write.
//!
//! Also how long runaway modules run before they are stopped.
//!
//! Run with `cargo bench -p latchkey --bench decision`. The default policy is
//! built first (reproducibly, into target/bench-policies).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::ids::{DecisionId, UserId};
use latchkey::keys;
use latchkey::policy::build::{self, BuildOptions};
use latchkey::policy::{DiskCache, Limits, Sandbox};
use latchkey::receipt::{self, HostKeys, IssueRequest};
use latchkey::tenant::TenantId;
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

    // The whole path, for a verified requester on their own account.
    let keys = HostKeys::new(keys::generate());
    let mut facts = case.facts.clone();
    facts.tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47".into();
    facts.requester.id = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f".into();
    let tenant: TenantId = facts.tenant_id.parse().unwrap_or_else(|e| panic!("{e}"));
    let requester: UserId = facts.requester.id.parse().unwrap_or_else(|e| panic!("{e}"));
    let pinned = module.hash();
    let now = 1_800_000_000;
    let path = || {
        let evaluation = sandbox.decide(&module, std::hint::black_box(&facts));
        let decision_id = DecisionId::generate().unwrap_or_else(|e| panic!("{e}"));
        let signed = receipt::issue(
            &keys,
            &IssueRequest {
                tenant: &tenant,
                requester: &requester,
                target: &requester,
                pinned_module: &pinned,
                facts: &facts,
                evaluation: &evaluation,
                decision_id: &decision_id,
                max_tap_lifetime_minutes: 60,
            },
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let verified = receipt::verify(signed.envelope(), keys.verifying(), now + 1)
            .unwrap_or_else(|e| panic!("{e}"));
        for action in verified.actions() {
            verified
                .authorizes(&tenant, &requester, *action, verified.constraints())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        verified
    };
    assert!(!path().actions().is_empty(), "the allow authorizes actions");
    c.bench_function("decision/whole_path/decide_sign_verify", |b| {
        b.iter(|| std::hint::black_box(path()))
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
