#!/usr/bin/env python3
"""Writes BENCHMARKS.md from criterion's results in target/criterion.

Run by bench/run after the benchmarks; reads each benchmark's
new/estimates.json (the median and its confidence interval) and
new/benchmark.json (its id). Prints Markdown to standard output.
"""

import datetime
import json
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The root workspace's results, and bench/peers' (a workspace of its own).
CRITERION = [ROOT / "target" / "criterion", ROOT / "bench" / "peers" / "target" / "criterion"]

# (criterion id, what it measures, goal in seconds or None, the peer to compare with)
ROWS = [
    ("latchkey/fresh_sandbox", "Latchkey: a fresh sandbox per decision (production)", None, None),
    ("latchkey/warm_instance", "Latchkey: one warm instance reused (the floor)", None, None),
    ("cedar/is_authorized", "Cedar `is_authorized` (request built beforehand)", None, None),
    ("cedar/build_request+is_authorized", "Cedar, request built from the facts per call", None, None),
    ("regorus/eval_rule", "regorus `eval_rule` (policy pre-parsed)", None, None),
    ("regorus/rvm", "regorus precompiled RVM (the bar beyond)", None, None),
    ("decision/fresh_sandbox/default_policy", "Fresh-sandbox decision, default policy", None, None),
    ("decision/whole_path/decide_sign_verify", "Facts -> sandbox -> decision -> receipt signed -> verified", 100e-6, None),
    ("cold_start/first_decision/with_cache", "Process start to first decision, compiled module cached", 50e-3, None),
    ("cold_start/first_decision/without_cache", "Process start to first decision, compiled at start", None, None),
    ("investigate/emulator/locked_user", "Investigation of a locked-out user (emulator, loopback HTTP)", 150e-3, None),
]


def results():
    found = {}
    for estimates in (e for d in CRITERION if d.is_dir() for e in d.glob("**/new/estimates.json")):
        meta = estimates.parent / "benchmark.json"
        if not meta.exists():
            continue
        bench = json.loads(meta.read_text())
        median = json.loads(estimates.read_text())["median"]
        found[bench["full_id"]] = (
            median["point_estimate"] * 1e-9,
            median["confidence_interval"]["lower_bound"] * 1e-9,
            median["confidence_interval"]["upper_bound"] * 1e-9,
            datetime.datetime.fromtimestamp(estimates.stat().st_mtime, datetime.timezone.utc),
        )
    return found


def human(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


# (files NAME-RUN.json under target/loadtest, what they are); written by bench/run with
# `latchkey loadtest --json`, some configurations several times.
LOAD_TESTS = [
    ("no-latency", "no injected Graph latency"),
    ("light", "no injected Graph latency, a light load"),
    ("heavy", "no injected Graph latency, a heavy load"),
    ("latency-100ms", "100 ms injected on every Graph request"),
]


def load_tests():
    """The service under load: a table of `latchkey loadtest --json` reports."""
    out = [
        "\n## The service under load\n",
        "`latchkey loadtest` runs `latchkey serve` in its own process against the emulator; simulated "
        "users, already signed in to the web chat, resolve situations through its JSON API (forgot "
        "password, locked out, password expired: MFA step-up at the emulator, new password taken once "
        "and checked; mistyped: explained). Own time is the service's time per resolution less its "
        "time waiting on Graph and Entra, from its `Server-Timing` headers. Goals with no injected "
        "latency: >= 300 resolutions/s and own-time p99 < 50 ms; with 100 ms injected and 1,000 "
        "users: no errors, no lost entries. The driver and the emulator share the machine with "
        "the service.\n",
        "| run | command | resolutions/s | own time p50 / p99 | waiting on Graph p50 / p99 | as the person sees it p50 / p99 | service CPU per resolution | service memory (peak) | errors | activity log written / expected | chain | goals | measured |",
        "|---|---|---:|---|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for name, what in LOAD_TESTS:
        runs = []
        for path in sorted((ROOT / "target" / "loadtest").glob(f"{name}-*.json")):
            try:
                runs.append((json.loads(path.read_text()), path))
            except (OSError, ValueError):
                continue
        if not runs:
            out.append(f"| {what} | | not measured | | | | | | | | | | |")
            continue
        # The median run by throughput stands for the configuration; the
        # range of all runs is shown beside it.
        runs.sort(key=lambda run: run[0]["per_second"])
        r, path = runs[len(runs) // 2]
        rates = [run[0]["per_second"] for run in runs]
        spread = f" (median of {len(runs)} runs: {rates[0]:.1f} to {rates[-1]:.1f})" if len(runs) > 1 else ""
        at = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        command = (
            f"`latchkey loadtest --users {r['users']} --resolutions {r['resolutions']}"
            + (f" --graph-latency-ms {r['graph_latency_ms']}" if r["graph_latency_ms"] else "")
            + "`"
        )
        p = lambda k: f"{r[k]['p50']:.2f} / {r[k]['p99']:.2f} ms"
        memory = f"{r['memory']['peak_rss_kib'] / 1024:.0f} MiB" if r.get("memory") else "not measured"
        cpu = r.get("service_cpu_ms_per_resolution")
        cpu = f"{cpu:.2f} ms" if cpu is not None else "not measured"
        written = sum(r["audit"]["written"].values())
        expected = sum(r["audit"]["expected"].values())
        clean = r["errors"] == 0 and r["completed"] == r["resolutions"] and written == expected
        if r["graph_latency_ms"] == 0:
            goals = (
                f">= 300/s: {'met' if r['per_second'] >= 300 else 'NOT met'}; "
                f"p99 < 50 ms: {'met' if r['own_ms']['p99'] < 50 else 'NOT met'}"
            )
        else:
            goals = f"no errors, no lost entries: {'met' if clean else 'NOT met'}"
        out.append(
            f"| {what}, {r['users']} users at once | {command} | {r['per_second']:.1f}{spread} | {p('own_ms')} "
            f"| {p('upstream_ms')} | {p('observed_ms')} | {cpu} | {memory} | {r['errors']} | {written} / {expected} "
            f"| {'intact' if r['chain_intact'] else 'BROKEN'} | {goals} | {at:%Y-%m-%d %H:%M} UTC |"
        )
    out.append("")
    history = ROOT / "bench" / "loadtest-history.md"
    if history.exists():
        out.append(history.read_text())
    return out


def machine():
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or "?"
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return f"{model}, {cores} cores, {platform.system()} {platform.machine()}; {rustc}"


def main():
    found = results()
    out = []
    out.append("# Benchmarks\n")
    out.append(
        "Medians measured by criterion, regenerated by `bench/run` (which runs every benchmark "
        "below once, then `bench/report.py`). Machines here are shared and noisy: trust ratios "
        "more than absolutes, and rerun before quoting.\n"
    )
    out.append(f"Machine: {machine()}.\n")
    cedar = found.get("cedar/is_authorized")
    rego = found.get("regorus/eval_rule")
    out.append(
        "Commands: `cargo bench --bench side_by_side` in bench/peers (latchkey/, cedar/, "
        "regorus/: the default policy in all three engines on the same facts, their agreement "
        "checked by `cargo test` there on every corpus case and 2,325 more); "
        "`cargo bench -p latchkey --bench decision` (decision/, runaway/); "
        "`cargo bench -p latchkey --bench cold_start`; `cargo bench -p latchkey --bench investigate`.\n"
    )
    out.append("| benchmark | what | median | 95% CI of the median | goal | vs Cedar | vs regorus eval_rule | measured |")
    out.append("|---|---|---:|---|---|---:|---:|---|")
    listed = set()
    for bench_id, what, goal, _ in ROWS:
        listed.add(bench_id)
        if bench_id not in found:
            out.append(f"| `{bench_id}` | {what} | not measured | | {('< ' + human(goal)) if goal else ''} | | | |")
            continue
        median, low, high, at = found[bench_id]
        goal_text = ""
        if bench_id == "latchkey/fresh_sandbox" and cedar and rego:
            met = median <= cedar[0] and median <= rego[0]
            goal_text = f"<= Cedar and <= regorus eval_rule: {'met' if met else 'NOT met'}"
        if goal:
            goal_text = f"< {human(goal)}: {'met' if median < goal else 'NOT met'}"
        side_by_side = bench_id.split("/")[0] in ("latchkey", "cedar", "regorus")
        vs_cedar = f"{median / cedar[0]:.2f}x" if cedar and side_by_side else ""
        vs_rego = f"{median / rego[0]:.2f}x" if rego and side_by_side else ""
        out.append(
            f"| `{bench_id}` | {what} | {human(median)} | {human(low)} – {human(high)} | {goal_text} "
            f"| {vs_cedar} | {vs_rego} | {at:%Y-%m-%d %H:%M} UTC |"
        )
    others = sorted(k for k in found if k not in listed)
    if others:
        out.append("\nOther benchmarks found in target/criterion:\n")
        out.append("| benchmark | median |")
        out.append("|---|---:|")
        for k in others:
            out.append(f"| `{k}` | {human(found[k][0])} |")
    out.extend(load_tests())
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
