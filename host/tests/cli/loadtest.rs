//! `latchkey loadtest`: small runs of the real command (its own `latchkey
//! serve` process, the emulator, the simulated users), checking what it
//! reports against what the resolutions must have done.

use serde_json::Value;

use crate::{assert_usage_error, default_module, latchkey};

fn load(args: &[&str]) -> Value {
    let module = default_module().to_str().unwrap().to_owned();
    let mut all = vec!["loadtest", "--module", &module, "--json", "--quiet"];
    all.extend_from_slice(args);
    let run = latchkey(&all);
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn a_small_run_resolves_everyone_and_finds_every_entry() {
    // 12 accounts: the four situations in turn, so 9 resets and 3 mistyped.
    let report = load(&["--users", "4", "--resolutions", "12"]);
    assert_eq!(report["resolutions"], 12);
    assert_eq!(report["completed"], 12, "{report:#}");
    assert_eq!(report["errors"], 0);
    // Counted in the log itself, kind by kind: a reset writes its request
    // and decision twice (before and after MFA), the step-up offered and
    // passed, and an intent and outcome for each of its two writes; a
    // mistyped password one request and one decision.
    let written = &report["audit"]["written"];
    assert_eq!(written["request"], 9 * 2 + 3, "{report:#}");
    assert_eq!(written["decision"], 9 * 2 + 3);
    assert_eq!(written["verification"], 9 * 2);
    assert_eq!(written["intent"], 9 * 2);
    assert_eq!(written["outcome"], 9 * 2);
    assert!(written.get("refusal").is_none(), "{report:#}");
    assert_eq!(report["audit"]["written"], report["audit"]["expected"]);
    assert_eq!(report["chain_intact"], true);
    // Entra's own audit has every reset too.
    assert_eq!(
        report["directory_audit"]["written"]["Reset password (by admin)"],
        9
    );
    for key in ["own_ms", "upstream_ms", "observed_ms"] {
        let p = &report[key];
        assert!(p["p50"].as_f64().unwrap() > 0.0, "{key}: {p}");
        assert!(p["p50"].as_f64() <= p["p99"].as_f64(), "{key}: {p}");
    }
    assert!(report["per_second"].as_f64().unwrap() > 0.0);
    assert!(report["memory"]["peak_rss_kib"].as_u64().unwrap() > 1024);
}

#[test]
fn injected_graph_latency_is_counted_as_graphs_not_latchkeys() {
    let report = load(&[
        "--users",
        "3",
        "--resolutions",
        "3",
        "--graph-latency-ms",
        "100",
    ]);
    assert_eq!(report["completed"], 3, "{report:#}");
    assert_eq!(report["graph_latency_ms"], 100);
    // Every resolution here is a reset: two investigations (each at least
    // two rounds of reads) and two writes, 100 ms each at the least.
    let upstream = report["upstream_ms"]["p50"].as_f64().unwrap();
    let own = report["own_ms"]["p50"].as_f64().unwrap();
    let observed = report["observed_ms"]["p50"].as_f64().unwrap();
    assert!(upstream >= 400.0, "{report:#}");
    assert!(
        own < upstream,
        "the waiting is not Latchkey's own time: {report:#}"
    );
    assert!(observed >= upstream, "{report:#}");
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    assert_usage_error(&latchkey(&["loadtest", "--users", "0"]), "--users");
    assert_usage_error(
        &latchkey(&["loadtest", "--resolutions", "0"]),
        "--resolutions",
    );
    assert_usage_error(
        &latchkey(&["loadtest", "--graph-latency-ms", "999999"]),
        "--graph-latency-ms",
    );
    assert_usage_error(&latchkey(&["loadtest", "--users", "many"]), "--users");
    assert_usage_error(
        &latchkey(&["loadtest", "--module", "/nonexistent/policy.wasm"]),
        "/nonexistent/policy.wasm",
    );
}
