#![allow(missing_docs, clippy::panic)]
//! Cold start (issue 7, item 4): the time from process start to the first
//! decision. Each iteration runs `latchkey policy test <default policy>
//! <one case>` as a new process: start, load the module, one decision in a
//! fresh sandbox, print, exit. Once with the compiled module in a cache
//! directory (as `latchkey serve` starts with `[policy] cache_dir`), once
//! without (the module compiled with Cranelift at start).
//!
//! Run with `cargo bench -p latchkey --bench cold_start`.

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::policy::build::{self, BuildOptions};
use serde_json::{Value, json};

fn cold_start(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = build::build(
        &root.join("policies/default"),
        &BuildOptions {
            target_dir: Some(root.join("target/bench-policies")),
            quiet: true,
        },
    )
    .unwrap_or_else(|e| panic!("building the default policy: {e}"));
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("policies/default/cases.json"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let allow = corpus["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["expect"]["decision"] == "allow"))
        .unwrap_or_else(|| panic!("the corpus has no allow case"))
        .clone();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let case = dir.path().join("one-case.json");
    // The corpus with only that case (its shared defaults kept).
    let mut one = corpus.clone();
    one["cases"] = json!([allow]);
    std::fs::write(&case, one.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let cache = dir.path().join("cache");
    let module = built.path.to_string_lossy().into_owned();
    let case = case.to_string_lossy().into_owned();
    let cache = cache.to_string_lossy().into_owned();

    let run = |with_cache: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command.args(["policy", "test", &module, &case]);
        if with_cache {
            command.args(["--cache-dir", &cache]);
        }
        let output = command.output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    // Fills the cache, and checks the case passes.
    run(true);

    let mut group = c.benchmark_group("cold_start");
    group.sample_size(20);
    group.bench_function("first_decision/with_cache", |b| b.iter(|| run(true)));
    group.bench_function("first_decision/without_cache", |b| b.iter(|| run(false)));
    group.finish();
}

criterion_group!(benches, cold_start);
criterion_main!(benches);
