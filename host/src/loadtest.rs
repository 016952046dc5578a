//! `latchkey loadtest`: the service under load, as people would load it.
//!
//! It starts the emulator with the demo tenant plus one synthetic account
//! per resolution (copies of the demo's people: forgot password, locked
//! out, password expired, mistyped; see [`people`]), and `latchkey serve`
//! in a process of its own, configured for that tenant with its web chat
//! answering `Server-Timing` headers. Then:
//!
//! 1. **Sign-in** (not measured): every simulated user signs in to the web
//!    chat at the emulator (phone sign-in, approved on the simulated phone)
//!    and holds a session, as a person who already has the chat open.
//! 2. **Resolutions** (measured): `users` simulated users at once, each
//!    taking the next account: says what is wrong over the chat's JSON API;
//!    for a reset, completes the MFA step-up at the emulator, and takes the
//!    new password once (checked against the emulator's). With
//!    `graph_latency_ms`, the emulator delays every Graph request by that
//!    much during this phase.
//!
//! Measured: completed resolutions per second of the phase; per
//! resolution, **Latchkey's own time** (the sum over its requests of the
//! service's time less the time it spent waiting on Graph and Entra, both
//! from the service's `Server-Timing` headers, see [`crate::upstream`]),
//! that waiting, and the time as the person sees it; the service's memory
//! (resident and peak, from `/proc`). Checked: the activity-log entries the
//! run added against those the completed resolutions must write, kind by
//! kind; the chain verified afterwards; Entra's directory audit holding one
//! password reset per reset.

mod people;
mod report;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::audit::{AuditLog, Scope};
use crate::sim::browser::{self, Step};
use crate::sim::{self, Sim};
use crate::tenant::TenantId;
use crate::web::{LOGIN_COOKIE, demo};

pub use people::{Account, Situation};
pub use report::{GOAL_OWN_P99_MS, GOAL_PER_SECOND, Percentiles, Report, Tally};
pub use service::Memory;

/// The most simulated users at once.
pub const MAX_USERS: usize = 5_000;
/// The most resolutions in one run.
pub const MAX_RESOLUTIONS: usize = 100_000;
/// The most latency the emulator may add to each Graph request, in ms.
pub const MAX_GRAPH_LATENCY_MS: u64 = 10_000;
/// How long one HTTP request of the driver may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The directory audit's activity for a password reset by an administrator.
const RESET_ACTIVITY: &str = "Reset password (by admin)";

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Simulated users at once.
    pub users: usize,
    /// Resolutions in all, one per synthetic account.
    pub resolutions: usize,
    /// Latency the emulator adds to every Graph request during the
    /// measured phase, in ms.
    pub graph_latency_ms: u64,
    /// The policy module the tenant runs.
    pub module: Vec<u8>,
    /// Draw progress bars on standard error (they hide themselves when it
    /// is not a terminal).
    pub progress: bool,
}

/// Why a load test could not run. (A run with errors is a [`Report`] that
/// is not clean, not an error.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The options are out of range.
    #[error("{0}")]
    Options(String),
    /// The emulator, the configuration or the driver could not be set up.
    #[error("setting up the load test: {0}")]
    Setup(String),
    /// The service did not start, or stopped.
    #[error("the service: {0}")]
    Service(String),
}

impl Options {
    /// Refuses options out of range.
    pub fn check(&self) -> Result<(), LoadError> {
        if !(1..=MAX_USERS).contains(&self.users) {
            return Err(LoadError::Options(format!(
                "--users must be from 1 to {MAX_USERS}; got {}",
                self.users
            )));
        }
        if !(1..=MAX_RESOLUTIONS).contains(&self.resolutions) {
            return Err(LoadError::Options(format!(
                "--resolutions must be from 1 to {MAX_RESOLUTIONS}; got {}",
                self.resolutions
            )));
        }
        if self.graph_latency_ms > MAX_GRAPH_LATENCY_MS {
            return Err(LoadError::Options(format!(
                "--graph-latency-ms must be at most {MAX_GRAPH_LATENCY_MS}; got {}",
                self.graph_latency_ms
            )));
        }
        Ok(())
    }
}

/// Runs the load test. Call inside a multi-threaded tokio runtime.
pub async fn run(options: &Options) -> Result<Report, LoadError> {
    options.check()?;
    let setup = |what: &str, e: &dyn std::fmt::Display| LoadError::Setup(format!("{what}: {e}"));
    let (tenant, accounts) = people::tenant(options.resolutions, time::OffsetDateTime::now_utc())
        .map_err(|e| setup("the synthetic tenant", &e))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| setup("the emulator's port", &e))?;
    let sim = sim::spawn(listener, tenant)
        .map_err(|e| setup("the emulator", &e))?
        .sim;
    let dir = tempfile::Builder::new()
        .prefix("latchkey-loadtest-")
        .tempdir()
        .map_err(|e| setup("a temporary directory", &e))?;
    let web = free_port().map_err(|e| setup("the web chat's port", &e))?;
    let (tenant_id, config) = demo::write_config(dir.path(), &sim, web, &options.module, true)
        .map_err(|e| setup("the service's configuration", &e))?;
    let exe = std::env::current_exe().map_err(|e| setup("this program's path", &e))?;
    let started = {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || service::Service::start(&exe, &config, &dir))
            .await
            .map_err(|e| setup("starting the service", &e))??
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| setup("the HTTP client", &e))?;
    let driver = Arc::new(Driver {
        http,
        web: started.web.clone(),
        sim: sim.clone(),
    });
    let accounts = Arc::new(accounts);

    // 1. Everyone signs in to the chat.
    let bar = progress(options, accounts.len(), "signing in");
    let retries = Arc::new(AtomicUsize::new(0));
    let sessions = {
        let (driver, accounts) = (Arc::clone(&driver), Arc::clone(&accounts));
        let (bar, retries) = (bar.clone(), Arc::clone(&retries));
        in_parallel(accounts.len(), options.users, move |i| {
            let (driver, accounts, bar) = (Arc::clone(&driver), Arc::clone(&accounts), bar.clone());
            let retries = Arc::clone(&retries);
            async move {
                // Setting up, not measured: a sign-in that fails (a burst of
                // a thousand new connections can overflow a listen queue) is
                // tried again, twice at most, and counted.
                let mut session = driver.sign_in(&accounts[i].upn).await;
                for _ in 0..2 {
                    if session.is_ok() {
                        break;
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    session = driver.sign_in(&accounts[i].upn).await;
                }
                bar.inc(1);
                session
            }
        })
        .await
    };
    bar.finish_and_clear();

    // 2. The measured phase.
    if options.graph_latency_ms > 0 {
        driver
            .latency(options.graph_latency_ms)
            .await
            .map_err(|e| setup("injecting Graph latency", &e))?;
    }
    let db = dir.path().join("latchkey.db");
    let before = audit_counts(&db, &tenant_id).await?;
    let resets_before = resets(&sim);
    let bar = progress(options, accounts.len(), "resolving");
    let cpu_before = started.cpu_time();
    let clock = Instant::now();
    let outcomes = {
        let (driver, accounts) = (Arc::clone(&driver), Arc::clone(&accounts));
        let sessions = Arc::new(sessions);
        let bar = bar.clone();
        in_parallel(accounts.len(), options.users, move |i| {
            let (driver, accounts, sessions, bar) = (
                Arc::clone(&driver),
                Arc::clone(&accounts),
                Arc::clone(&sessions),
                bar.clone(),
            );
            async move {
                let account = &accounts[i];
                let outcome = match &sessions[i] {
                    Ok(token) => driver.resolve(account, token).await,
                    Err(e) => Err(e.clone()),
                };
                bar.inc(1);
                outcome.map_err(|e| format!("{} ({}): {e}", account.upn, account.situation.name()))
            }
        })
        .await
    };
    let seconds = clock.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let memory = started.memory();
    let cpu = started
        .cpu_time()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    if options.graph_latency_ms > 0 {
        driver
            .latency(0)
            .await
            .map_err(|e| setup("clearing the Graph latency", &e))?;
    }
    tokio::task::spawn_blocking(move || started.stop())
        .await
        .map_err(|e| setup("stopping the service", &e))??;

    // 3. What was written.
    let after = audit_counts(&db, &tenant_id).await?;
    let chain_intact = {
        let log = open_log(&db).await?;
        let report = log
            .verify(Scope::Tenant(&tenant_id))
            .await
            .map_err(|e| LoadError::Setup(format!("verifying the activity log: {e}")))?;
        log.close().await;
        report.is_ok()
    };
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut audit = Tally::default();
    let mut directory_audit = Tally::default();
    directory_audit
        .written
        .insert(RESET_ACTIVITY.to_owned(), resets(&sim) - resets_before);
    directory_audit
        .expected
        .insert(RESET_ACTIVITY.to_owned(), 0);
    for (outcome, account) in outcomes.into_iter().zip(accounts.iter()) {
        match outcome {
            Ok(sample) => {
                samples.push(sample);
                for (kind, n) in account.situation.audit_entries() {
                    *audit.expected.entry((*kind).to_owned()).or_default() += n;
                }
                if account.situation.resets_password() {
                    *directory_audit
                        .expected
                        .entry(RESET_ACTIVITY.to_owned())
                        .or_default() += 1;
                }
            }
            Err(e) => errors.push(e),
        }
    }
    for (kind, n) in &after {
        let gained = n.saturating_sub(before.get(kind).copied().unwrap_or(0));
        if gained > 0 {
            audit.written.insert(kind.clone(), gained);
        }
    }
    let pick = |f: fn(&Sample) -> Duration| samples.iter().map(f).collect::<Vec<_>>();
    let completed = samples.len();
    drop(dir);
    Ok(Report {
        machine: machine(),
        users: options.users,
        resolutions: options.resolutions,
        completed,
        errors: errors.len(),
        first_errors: errors.into_iter().take(10).collect(),
        graph_latency_ms: options.graph_latency_ms,
        seconds,
        per_second: if seconds > 0.0 {
            completed as f64 / seconds
        } else {
            0.0
        },
        own_ms: Percentiles::of(&pick(|s| s.own)),
        upstream_ms: Percentiles::of(&pick(|s| s.upstream)),
        observed_ms: Percentiles::of(&pick(|s| s.observed)),
        memory,
        service_cpu_ms_per_resolution: cpu
            .filter(|_| completed > 0)
            .map(|cpu| cpu.as_secs_f64() * 1000.0 / completed as f64),
        sign_in_retries: retries.load(Ordering::Relaxed),
        audit,
        chain_intact,
        directory_audit,
    })
}

/// One resolution's times.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    own: Duration,
    upstream: Duration,
    observed: Duration,
}

/// What a simulated person does, over HTTP: the chat's JSON API, the
/// emulator's sign-in pages and phone.
struct Driver {
    http: reqwest::Client,
    /// The web chat, `http://127.0.0.1:PORT`.
    web: String,
    /// The emulator: its URL, and its directory to check the new password.
    sim: Sim,
}

impl Driver {
    /// Signs `upn` in to the web chat (phone sign-in) and returns the
    /// session's bearer token.
    async fn sign_in(&self, upn: &str) -> Result<String, String> {
        let mut ignored = Sample::default();
        let started = self
            .latchkey(
                self.http.post(self.url("/api/session")).json(&json!({})),
                &mut ignored,
                "starting a sign-in",
            )
            .await?;
        let login = started
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{LOGIN_COOKIE}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
            .ok_or("the sign-in set no login cookie")?;
        let body = json_of(started, "starting a sign-in").await?;
        let authorize = body["authorize_url"]
            .as_str()
            .ok_or("no authorize_url to sign in at")?;
        let back = browser::sign_in(&self.http, authorize, upn, Step::Passwordless)
            .await
            .map_err(|e| e.to_string())?;
        let done = self
            .latchkey(
                self.http
                    .get(&back)
                    .header(ACCEPT, "application/json")
                    .header(COOKIE, format!("{LOGIN_COOKIE}={login}")),
                &mut ignored,
                "completing the sign-in",
            )
            .await?;
        let body = json_of(done, "completing the sign-in").await?;
        body["session"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "the sign-in gave no session".to_owned())
    }

    /// Resolves `account`'s situation in the session `token`.
    async fn resolve(&self, account: &Account, token: &str) -> Result<Sample, String> {
        let mut sample = Sample::default();
        let started = Instant::now();
        let said = self
            .latchkey(
                self.http
                    .post(self.url("/api/messages"))
                    .bearer_auth(token)
                    .json(&json!({ "text": account.situation.message() })),
                &mut sample,
                "saying what is wrong",
            )
            .await?;
        let events = events_of(said, "saying what is wrong").await?;
        if !account.situation.resets_password() {
            if of_type(&events, "step-up").is_some() || of_type(&events, "secret").is_some() {
                return Err(format!(
                    "a step-up or a secret for a mistyped password: {events:?}"
                ));
            }
            of_type(&events, "resolved").ok_or("the conversation did not end resolved")?;
            sample.observed = started.elapsed();
            return Ok(sample);
        }
        let step_up = of_type(&events, "step-up")
            .and_then(|e| e["url"].as_str())
            .ok_or_else(|| format!("no MFA step-up was asked for: {events:?}"))?;
        let back = browser::sign_in(&self.http, step_up, &account.upn, Step::Passwordless)
            .await
            .map_err(|e| e.to_string())?;
        let verified = self
            .latchkey(
                self.http.get(&back).header(ACCEPT, "application/json"),
                &mut sample,
                "completing the step-up",
            )
            .await?;
        json_of(verified, "completing the step-up").await?;
        let listed = self
            .latchkey(
                self.http
                    .get(self.url("/api/events?after=0"))
                    .bearer_auth(token),
                &mut sample,
                "reading the conversation",
            )
            .await?;
        let events = events_of(listed, "reading the conversation").await?;
        let secret_id = of_type(&events, "secret")
            .and_then(|e| e["secret_id"].as_str())
            .ok_or_else(|| format!("no new password was offered: {events:?}"))?;
        of_type(&events, "resolved").ok_or("the conversation did not end resolved")?;
        let shown = self
            .latchkey(
                self.http
                    .post(self.url(&format!("/api/secrets/{secret_id}")))
                    .bearer_auth(token)
                    .json(&json!({})),
                &mut sample,
                "taking the new password",
            )
            .await?;
        let value = json_of(shown, "taking the new password").await?;
        let password = value["value"].as_str().ok_or("the secret has no value")?;
        let in_directory = self
            .sim
            .tenant()
            .user(&account.upn)
            .map(|u| u.password == password);
        if in_directory != Some(true) {
            return Err("the password shown is not the account's new password".to_owned());
        }
        sample.observed = started.elapsed();
        Ok(sample)
    }

    /// Sends a request to the service; a success answer's `Server-Timing`
    /// is added to `sample`, anything else is an error naming `what`.
    async fn latchkey(
        &self,
        request: RequestBuilder,
        sample: &mut Sample,
        what: &str,
    ) -> Result<Response, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("{what}: {}", browser::chain(&e.without_url())))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "{what}: HTTP {status}: {}",
                crate::jwks::shorten(&body, 300)
            ));
        }
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_server_timing)
            .ok_or_else(|| format!("{what}: the answer has no Server-Timing header"))?;
        sample.own += timing.own();
        sample.upstream += timing.upstream;
        Ok(response)
    }

    /// Sets (or, with 0, clears) the emulator's latency on every Graph
    /// request.
    async fn latency(&self, ms: u64) -> Result<(), String> {
        let faults = format!("{}/_sim/faults", self.sim.base_url());
        let cleared = self
            .http
            .delete(&faults)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if cleared.status() != StatusCode::NO_CONTENT {
            return Err(format!("clearing faults: HTTP {}", cleared.status()));
        }
        if ms == 0 {
            return Ok(());
        }
        let set = self
            .http
            .post(&faults)
            .json(&json!({ "latency_ms": ms }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if set.status() != StatusCode::CREATED {
            return Err(format!("HTTP {}", set.status()));
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.web)
    }
}

/// `total;dur=MS, upstream;dur=MS`, as [`crate::web::server_timing_value`]
/// writes it.
fn parse_server_timing(header: &str) -> Option<crate::upstream::Timing> {
    let mut total = None;
    let mut upstream = None;
    for metric in header.split(',') {
        let mut parts = metric.trim().split(';');
        let name = parts.next()?.trim();
        let dur = parts.find_map(|p| p.trim().strip_prefix("dur="))?;
        let ms: f64 = dur
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
        let value = Duration::from_secs_f64(ms / 1000.0);
        match name {
            "total" => total = Some(value),
            "upstream" => upstream = Some(value),
            _ => {}
        }
    }
    Some(crate::upstream::Timing {
        elapsed: total?,
        upstream: upstream?,
    })
}

async fn json_of(response: Response, what: &str) -> Result<Value, String> {
    response
        .json()
        .await
        .map_err(|e| format!("{what}: the answer is not JSON: {e}"))
}

async fn events_of(response: Response, what: &str) -> Result<Vec<Value>, String> {
    let body = json_of(response, what).await?;
    body["events"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("{what}: the answer has no events"))
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == kind)
}

/// Runs `work(0..count)` with at most `width` at once; the outputs in order.
async fn in_parallel<T, F, Fut>(count: usize, width: usize, work: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let workers: Vec<_> = (0..width.min(count))
        .map(|_| {
            let (next, work) = (Arc::clone(&next), Arc::clone(&work));
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return done;
                    }
                    done.push((i, work(i).await));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        // A worker only ends by returning: its work's errors are values.
        if let Ok(done) = worker.await {
            all.extend(done);
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

fn progress(options: &Options, len: usize, what: &str) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(
        "{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} elapsed {elapsed}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// A free loopback port, for the service's web chat (whose redirect URI
/// must be known before it starts).
fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

async fn open_log(db: &Path) -> Result<AuditLog, LoadError> {
    AuditLog::open_read_only(db)
        .await
        .map_err(|e| LoadError::Setup(format!("reading the activity log: {e}")))
}

async fn audit_counts(
    db: &Path,
    tenant: &TenantId,
) -> Result<std::collections::BTreeMap<String, u64>, LoadError> {
    let log = open_log(db).await?;
    let counts = log
        .counts(tenant)
        .await
        .map_err(|e| LoadError::Setup(format!("counting the activity log: {e}")))?;
    log.close().await;
    Ok(counts)
}

/// Password resets in the emulator's directory audit.
fn resets(sim: &Sim) -> u64 {
    sim.tenant()
        .audits
        .iter()
        .filter(|a| a["activityDisplayName"] == RESET_ACTIVITY)
        .count() as u64
}

/// The CPU model and the cores this process may use.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    format!("{model}, {cores} cores")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_is_read_as_written() {
        let timing = crate::upstream::Timing {
            elapsed: Duration::from_micros(12_345),
            upstream: Duration::from_micros(2_500),
        };
        let read = parse_server_timing(&crate::web::server_timing_value(&timing)).unwrap();
        assert_eq!(read.elapsed, timing.elapsed);
        assert_eq!(read.upstream, timing.upstream);
        assert!(parse_server_timing("total;dur=1").is_none());
        assert!(parse_server_timing("total;dur=-1, upstream;dur=0").is_none());
        assert!(parse_server_timing("garbage").is_none());
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let ok = Options {
            users: 1,
            resolutions: 1,
            graph_latency_ms: 0,
            module: Vec::new(),
            progress: false,
        };
        assert!(ok.check().is_ok());
        for bad in [
            Options {
                users: 0,
                ..ok.clone()
            },
            Options {
                resolutions: 0,
                ..ok.clone()
            },
            Options {
                users: MAX_USERS + 1,
                ..ok.clone()
            },
            Options {
                graph_latency_ms: MAX_GRAPH_LATENCY_MS + 1,
                ..ok.clone()
            },
        ] {
            assert!(matches!(bad.check(), Err(LoadError::Options(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn in_parallel_keeps_order_and_width() {
        let running = Arc::new(AtomicUsize::new(0));
        let widest = Arc::new(AtomicUsize::new(0));
        let (r, w) = (Arc::clone(&running), Arc::clone(&widest));
        let out = in_parallel(20, 3, move |i| {
            let (r, w) = (Arc::clone(&r), Arc::clone(&w));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                w.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(widest.load(Ordering::SeqCst) <= 3);
    }
}
