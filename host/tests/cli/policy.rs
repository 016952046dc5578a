//! `latchkey policy build|hash|test` and bad input.

use sha2::{Digest, Sha256};

use crate::{assert_usage_error, default_module, latchkey, latchkey_in, root};

#[test]
fn hash_prints_the_sha256_of_the_file() {
    let module = default_module();
    let run = latchkey(&["policy", "hash", module.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = hex::encode(Sha256::digest(std::fs::read(module).unwrap()));
    assert_eq!(
        run.stdout.split_whitespace().next(),
        Some(expected.as_str())
    );
}

#[test]
fn build_copies_the_module_with_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("policy.wasm");
    let run = latchkey(&[
        "policy",
        "build",
        "policies/default",
        "--target-dir",
        "target/test-modules",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(default_module()).unwrap()
    );
    assert!(run.stdout.contains(out.to_str().unwrap()));
}

#[test]
fn test_prints_a_line_per_case_and_passes() {
    let run = latchkey(&[
        "policy",
        "test",
        default_module().to_str().unwrap(),
        "policies/default/cases.json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let cases = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("PASS  "))
        .count();
    assert!(cases >= 20, "{}", run.stdout);
    assert!(
        run.stdout
            .trim_end()
            .ends_with(&format!("{cases} passed, 0 failed"))
    );
}

#[test]
fn test_with_a_cache_dir_keeps_the_compiled_module_and_uses_it_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = || {
        latchkey(&[
            "policy",
            "test",
            default_module().to_str().unwrap(),
            "policies/default/cases.json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
    };
    let first = run();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let compiled: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(
        compiled.len(),
        1,
        "the compiled module is kept: {compiled:?}"
    );
    let written = std::fs::metadata(&compiled[0]).unwrap().modified().unwrap();
    let second = run();
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert_eq!(
        std::fs::metadata(&compiled[0]).unwrap().modified().unwrap(),
        written,
        "loaded from the cache, not compiled and written again"
    );
}

#[test]
fn test_fails_with_exit_1_when_a_case_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        r#"{"cases": [
            {"name": "mistyped is explained", "facts": {"scenario": "mistyped"}, "expect": {"decision": "deny"}},
            {"name": "wrongly expects an allow", "facts": {"scenario": "mistyped"}, "expect": {"decision": "allow"}}
        ]}"#,
    )
    .unwrap();
    let run = latchkey(&[
        "policy",
        "test",
        default_module().to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("PASS  mistyped is explained"));
    assert!(
        run.stdout
            .contains("FAIL  wrongly expects an allow: expected allow, got deny")
    );
    assert!(run.stdout.trim_end().ends_with("1 passed, 1 failed"));
}

#[test]
fn test_on_a_crate_directory_builds_it_and_uses_its_cases() {
    let run = latchkey(&["policy", "test", "policies/northwind"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(" passed, 0 failed"));
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("garbage.wasm"), b"\x00asm\x0d\x00\x01\x00garbage").unwrap();
    std::fs::write(d.join("bad.json"), "{ not json").unwrap();
    std::fs::write(d.join("empty.json"), r#"{"cases": []}"#).unwrap();
    std::fs::write(
        d.join("badfacts.json"),
        r#"{"cases": [{"name": "x", "facts": {"scenario": "tuesday"}, "expect": {"decision": "deny"}}]}"#,
    )
    .unwrap();
    let module = default_module().to_str().unwrap().to_owned();

    assert_usage_error(&latchkey_in(d, &[]), "a command is required");
    assert_usage_error(&latchkey_in(d, &["policy"]), "a command is required");
    assert_usage_error(&latchkey_in(d, &["frobnicate"]), "frobnicate");
    assert_usage_error(&latchkey_in(d, &["policy", "hash"]), "<MODULE>");
    assert_usage_error(
        &latchkey_in(d, &["policy", "hash", "missing.wasm"]),
        "missing.wasm",
    );
    assert_usage_error(&latchkey_in(d, &["policy", "test", &module]), "cases.json");
    assert_usage_error(
        &latchkey_in(d, &["policy", "test", &module, "bad.json"]),
        "bad.json",
    );
    assert_usage_error(
        &latchkey_in(d, &["policy", "test", &module, "empty.json"]),
        "no cases",
    );
    assert_usage_error(
        &latchkey_in(d, &["policy", "test", &module, "badfacts.json"]),
        "tuesday",
    );
    assert_usage_error(
        &latchkey_in(d, &["policy", "test", "garbage.wasm", "empty.json"]),
        "no cases",
    );
    let cases = root().join("policies/default/cases.json");
    assert_usage_error(
        &latchkey_in(
            d,
            &["policy", "test", "garbage.wasm", cases.to_str().unwrap()],
        ),
        "not a valid WebAssembly component",
    );
    assert_usage_error(&latchkey_in(d, &["policy", "build", "."]), "no Cargo.toml");
}
