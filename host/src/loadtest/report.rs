//! What a load test found, as text for people and JSON for `bench/report.py`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::service::Memory;

/// The resolutions-per-second goal with no injected Graph latency.
pub const GOAL_PER_SECOND: f64 = 300.0;
/// The goal for the 99th percentile of Latchkey's own time, in ms.
pub const GOAL_OWN_P99_MS: f64 = 50.0;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 99th percentile (nearest rank).
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Percentiles {
    /// Of `samples` (any order); all zero when there are none.
    pub fn of(samples: &[Duration]) -> Percentiles {
        let mut sorted: Vec<Duration> = samples.to_vec();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let rank = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest value with at least p of the samples
            // at or below it.
            let n = sorted.len() as f64;
            let index = ((p * n).ceil() as usize).clamp(1, sorted.len()) - 1;
            ms(sorted[index])
        };
        Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: sorted.last().map_or(0.0, |d| ms(*d)),
        }
    }
}

/// Entries counted against entries expected, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// What the log (or the directory) gained during the run.
    pub written: BTreeMap<String, u64>,
    /// What the completed resolutions should have written.
    pub expected: BTreeMap<String, u64>,
}

impl Tally {
    /// Whether every kind's count is exactly as expected.
    pub fn matches(&self) -> bool {
        let kinds = self.written.keys().chain(self.expected.keys());
        kinds.into_iter().all(|k| {
            self.written.get(k).copied().unwrap_or(0) == self.expected.get(k).copied().unwrap_or(0)
        })
    }

    /// The written total.
    pub fn written_total(&self) -> u64 {
        self.written.values().sum()
    }

    /// The expected total.
    pub fn expected_total(&self) -> u64 {
        self.expected.values().sum()
    }

    /// `kind: written of expected` for each kind that differs.
    pub fn differences(&self) -> Vec<String> {
        let mut kinds: Vec<&String> = self.written.keys().chain(self.expected.keys()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
            .into_iter()
            .filter_map(|k| {
                let written = self.written.get(k).copied().unwrap_or(0);
                let expected = self.expected.get(k).copied().unwrap_or(0);
                (written != expected)
                    .then(|| format!("{k}: {written} written, {expected} expected"))
            })
            .collect()
    }
}

/// A load test's findings.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The CPU model and how many cores the process may use.
    pub machine: String,
    /// Simulated users at once.
    pub users: usize,
    /// Resolutions attempted (one per synthetic account).
    pub resolutions: usize,
    /// Resolutions that ended as they should.
    pub completed: usize,
    /// How many did not, and the first few reasons.
    pub errors: usize,
    /// Up to ten of the errors, as said.
    pub first_errors: Vec<String>,
    /// Latency the emulator added to every Graph request, in ms.
    pub graph_latency_ms: u64,
    /// The measured phase's wall time, in seconds.
    pub seconds: f64,
    /// Completed resolutions per second of the measured phase.
    pub per_second: f64,
    /// Latchkey's own time per resolution: its requests' time in the service
    /// less the time spent waiting on Graph and Entra.
    pub own_ms: Percentiles,
    /// Time per resolution the service spent waiting on Graph and Entra.
    pub upstream_ms: Percentiles,
    /// A resolution as the person sees it, from the message to the secret
    /// shown, including their sign-in at the emulator and the phone.
    pub observed_ms: Percentiles,
    /// The service's memory at the end of the run.
    pub memory: Option<Memory>,
    /// The service's CPU time (user and system, every thread) during the
    /// measured phase, per completed resolution, in ms: what a resolution
    /// costs the service however the machine is shared with the driver and
    /// the emulator.
    pub service_cpu_ms_per_resolution: Option<f64>,
    /// Sign-ins of the set-up phase tried again after a failure.
    pub sign_in_retries: usize,
    /// Latchkey's activity log.
    pub audit: Tally,
    /// Whether `audit verify` found the tenant's chain intact afterwards.
    pub chain_intact: bool,
    /// Entra's own audit: password resets recorded by the directory.
    pub directory_audit: Tally,
}

impl Report {
    /// Whether the run was clean: no errors, every entry where expected, the
    /// chain intact. (Speed goals are reported, not judged: shared machines
    /// are noisy.)
    pub fn is_clean(&self) -> bool {
        self.errors == 0
            && self.completed == self.resolutions
            && self.audit.matches()
            && self.directory_audit.matches()
            && self.chain_intact
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("machine: {}", self.machine));
        line(format!(
            "{} resolutions by {} simulated users at once, {} ms injected Graph latency",
            self.resolutions, self.users, self.graph_latency_ms
        ));
        line(format!(
            "completed: {} of {}, errors: {}",
            self.completed, self.resolutions, self.errors
        ));
        for e in &self.first_errors {
            line(format!("  error: {e}"));
        }
        line(format!(
            "throughput: {:.1} resolutions/s ({:.2} s)",
            self.per_second, self.seconds
        ));
        let p = |p: &Percentiles| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                p.p50, p.p99, p.max
            )
        };
        line(format!(
            "Latchkey's own time per resolution: {}",
            p(&self.own_ms)
        ));
        line(format!(
            "waiting on Graph and Entra per resolution: {}",
            p(&self.upstream_ms)
        ));
        line(format!(
            "as the person sees it (with their sign-ins at the emulator): {}",
            p(&self.observed_ms)
        ));
        match self.service_cpu_ms_per_resolution {
            Some(ms) => line(format!(
                "service CPU per resolution: {ms:.2} ms (at that cost one core serves {:.0} resolutions/s)",
                if ms > 0.0 { 1000.0 / ms } else { 0.0 }
            )),
            None => line("service CPU per resolution: not measured (no /proc)".to_owned()),
        }
        if self.sign_in_retries > 0 {
            line(format!(
                "set-up sign-ins tried again: {}",
                self.sign_in_retries
            ));
        }
        match &self.memory {
            Some(m) => line(format!(
                "service memory: {:.1} MiB resident at the end, {:.1} MiB peak",
                m.rss_kib as f64 / 1024.0,
                m.peak_rss_kib as f64 / 1024.0
            )),
            None => line("service memory: not measured (no /proc on this system)".to_owned()),
        }
        let tally = |t: &Tally| {
            if t.matches() {
                format!(
                    "{} written, {} expected",
                    t.written_total(),
                    t.expected_total()
                )
            } else {
                format!(
                    "{} written, {} expected: {}",
                    t.written_total(),
                    t.expected_total(),
                    t.differences().join("; ")
                )
            }
        };
        line(format!("activity log entries: {}", tally(&self.audit)));
        line(format!(
            "activity log chain: {}",
            if self.chain_intact {
                "intact"
            } else {
                "BROKEN"
            }
        ));
        line(format!(
            "Entra directory audit: {}",
            tally(&self.directory_audit)
        ));
        if self.graph_latency_ms == 0 {
            let met = |ok: bool| if ok { "met" } else { "not met" };
            line(format!(
                "goals (no injected latency): >= {GOAL_PER_SECOND} resolutions/s {}; own p99 < {GOAL_OWN_P99_MS} ms {}",
                met(self.per_second >= GOAL_PER_SECOND),
                met(self.own_ms.p99 < GOAL_OWN_P99_MS),
            ));
        }
        line(format!(
            "result: {}",
            if self.is_clean() {
                "clean (no errors, no lost entries)"
            } else {
                "FAILED"
            }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(p.p50, 100.0);
        assert_eq!(p.p99, 198.0);
        assert_eq!(p.max, 200.0);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        let one = Percentiles::of(&[Duration::from_millis(7)]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
    }

    #[test]
    fn a_missing_or_extra_entry_is_a_difference() {
        let map = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        let even = Tally {
            written: map(&[("intent", 4), ("outcome", 4)]),
            expected: map(&[("intent", 4), ("outcome", 4)]),
        };
        assert!(even.matches());
        let lost = Tally {
            written: map(&[("intent", 4), ("outcome", 3)]),
            expected: map(&[("intent", 4), ("outcome", 4)]),
        };
        assert!(!lost.matches());
        assert_eq!(lost.differences(), ["outcome: 3 written, 4 expected"]);
        let extra = Tally {
            written: map(&[("intent", 4), ("refusal", 1)]),
            expected: map(&[("intent", 4)]),
        };
        assert!(!extra.matches());
        assert_eq!(extra.differences(), ["refusal: 1 written, 0 expected"]);
    }
}
