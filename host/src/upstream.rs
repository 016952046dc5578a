//! Time spent waiting on services outside Latchkey (Microsoft Graph, Entra's
//! token and key endpoints, Slack, the Bot Connector), measured per task, so
//! that Latchkey's own time can be told apart from theirs.
//!
//! [`measure`] runs a future (a web request's handler, say) with a clock in
//! task-local storage; every outbound call made inside it, wrapped in
//! [`waiting`], counts on that clock. Calls that overlap (the investigator's
//! reads go out together) count once: the clock adds up the time during
//! which *at least one* call was in flight, so `elapsed - upstream` is the
//! time the task spent on its own work (or queued behind other tasks for
//! the CPU, a lock or the database: time the service, not Microsoft, is
//! responsible for).
//!
//! Outside [`measure`], [`waiting`] is a plain `await`. Work a task hands to
//! another task (`tokio::spawn`) is not counted on the caller's clock.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static CLOCK: RefCell<Clock>;
}

/// The task's clock: how many calls are in flight, since when, and the
/// total so far.
#[derive(Default)]
struct Clock {
    in_flight: u32,
    since: Option<Instant>,
    total: Duration,
}

/// How long a measured future took, and how much of it was spent waiting on
/// outside services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// From the first poll to completion.
    pub elapsed: Duration,
    /// The part with at least one outbound call in flight.
    pub upstream: Duration,
}

impl Timing {
    /// `elapsed - upstream`: the service's own time.
    pub fn own(&self) -> Duration {
        self.elapsed.saturating_sub(self.upstream)
    }
}

/// Runs `future`, measuring its time and the part of it spent in
/// [`waiting`] calls.
pub async fn measure<F: Future>(future: F) -> (F::Output, Timing) {
    let started = Instant::now();
    let clock = RefCell::new(Clock::default());
    let (output, clock) = CLOCK
        .scope(clock, async {
            let output = future.await;
            let clock = CLOCK.with(|c| std::mem::take(&mut *c.borrow_mut()));
            (output, clock)
        })
        .await;
    let now = Instant::now();
    let elapsed = now.saturating_duration_since(started);
    // A call still in flight (a future dropped mid-call) counts until now.
    let upstream = clock.upstream(now);
    (
        output,
        Timing {
            elapsed,
            upstream: upstream.min(elapsed),
        },
    )
}

/// Awaits `call`, an outbound request to a service outside Latchkey,
/// counting it on the current [`measure`] clock, if any.
pub async fn waiting<F: Future>(call: F) -> F::Output {
    let _in_flight = InFlight::start();
    call.await
}

impl Clock {
    /// A call starts at `now`.
    fn start(&mut self, now: Instant) {
        if self.in_flight == 0 {
            self.since = Some(now);
        }
        self.in_flight += 1;
    }

    /// A call ends at `now`.
    fn end(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0
            && let Some(since) = self.since.take()
        {
            self.total += now.saturating_duration_since(since);
        }
    }

    /// The waiting so far, counting a call still in flight until `now`.
    fn upstream(&self, now: Instant) -> Duration {
        self.total
            + self
                .since
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

/// One call in flight; ends when dropped, so a cancelled call ends too.
struct InFlight {
    counted: bool,
}

impl InFlight {
    fn start() -> InFlight {
        let counted = CLOCK
            .try_with(|c| c.borrow_mut().start(Instant::now()))
            .is_ok();
        InFlight { counted }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted {
            let _ = CLOCK.try_with(|c| c.borrow_mut().end(Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn overlapping_calls_count_once() {
        let t0 = Instant::now();
        let mut clock = Clock::default();
        // Two calls together, 0..30 and 5..25: 30 ms of waiting, not 50.
        clock.start(t0);
        clock.start(t0 + ms(5));
        clock.end(t0 + ms(25));
        clock.end(t0 + ms(30));
        // Own work from 30 to 35, then one more call, 35..45.
        clock.start(t0 + ms(35));
        clock.end(t0 + ms(45));
        assert_eq!(clock.upstream(t0 + ms(50)), ms(40));
    }

    #[test]
    fn a_call_still_in_flight_counts_until_now() {
        let t0 = Instant::now();
        let mut clock = Clock::default();
        clock.start(t0);
        assert_eq!(clock.upstream(t0 + ms(15)), ms(15));
        // An end without a start (never happens) does not underflow.
        let mut other = Clock::default();
        other.end(t0);
        assert_eq!(other.upstream(t0 + ms(1)), Duration::ZERO);
    }

    #[tokio::test]
    async fn calls_inside_a_measurement_are_counted_and_outside_are_not() {
        let call = || waiting(tokio::time::sleep(ms(20)));
        call().await;
        let ((), timing) = measure(async {
            tokio::join!(call(), call());
            tokio::time::sleep(ms(20)).await;
        })
        .await;
        // Lower bounds only: a loaded machine stretches every sleep.
        assert!(timing.upstream >= ms(20), "{timing:?}");
        assert!(timing.own() >= ms(20), "{timing:?}");
        assert!(timing.upstream <= timing.elapsed, "{timing:?}");
        let ((), plain) = measure(tokio::time::sleep(ms(5))).await;
        assert_eq!(plain.upstream, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_call_dropped_mid_flight_ends_when_dropped() {
        let ((), timing) = measure(async {
            let _ = tokio::time::timeout(ms(10), waiting(tokio::time::sleep(ms(10_000)))).await;
            tokio::time::sleep(ms(30)).await;
        })
        .await;
        assert!(timing.upstream >= ms(10), "{timing:?}");
        assert!(
            timing.own() >= ms(30),
            "the dropped call stopped counting: {timing:?}"
        );
    }
}
