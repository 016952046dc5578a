//! The service under load: `latchkey serve` in a process of its own (this
//! same executable), so that its memory is its own and it meets the driver
//! and the emulator over HTTP only, as in production.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::LoadError;

/// How long the service may take to start (it compiles the module when
/// the cache is cold).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// The line `latchkey serve` prints when the web chat listens.
const LISTENING: &str = "web chat listening on http://";

/// A running `latchkey serve`.
pub struct Service {
    child: Child,
    stderr: PathBuf,
    /// The web chat's base URL, `http://127.0.0.1:PORT`.
    pub web: String,
}

/// The service's memory, from `/proc/PID/status` (Linux only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// Resident set size now, in KiB.
    pub rss_kib: u64,
    /// The peak resident set size since it started, in KiB.
    pub peak_rss_kib: u64,
}

impl Service {
    /// Starts `exe serve --config CONFIG`, its standard error in
    /// `dir/serve.stderr`, and waits until its web chat listens.
    pub fn start(exe: &Path, config: &Path, dir: &Path) -> Result<Service, LoadError> {
        let stderr = dir.join("serve.stderr");
        let log = std::fs::File::create(&stderr)
            .map_err(|e| LoadError::Setup(format!("cannot create {}: {e}", stderr.display())))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                LoadError::Service(format!("cannot start {} serve: {e}", exe.display()))
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(LoadError::Service("no standard output to read".to_owned()));
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // After start-up nobody listens; the lines are dropped.
                let _ = tx.send(line);
            }
        });
        let mut service = Service {
            child,
            stderr,
            web: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(rest) = line.split_once(LISTENING).map(|(_, r)| r) {
                        let addr = rest.split('/').next().unwrap_or_default();
                        service.web = format!("http://{addr}");
                        return Ok(service);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(service.failed(format!(
                        "the service did not start within {} s",
                        START_TIMEOUT.as_secs()
                    )));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(service.failed("the service stopped while starting".to_owned()));
                }
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now, where the OS says (Linux); `None` elsewhere.
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            peak_rss_kib: field("VmHWM:")?,
        })
    }

    /// The CPU time it has used so far, user and system, all threads, from
    /// `/proc/PID/stat` (Linux; in units of USER_HZ, 100 per second there).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // The command name, in parentheses, may hold spaces: count after it.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        let (user, system) = (ticks(11)?, ticks(12)?);
        Some(Duration::from_millis((user + system) * 10))
    }

    /// Stops it: SIGTERM (its graceful shutdown), then a kill if it has not
    /// stopped in time. Errors if it had already stopped on its own.
    pub fn stop(mut self) -> Result<(), LoadError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.failed(format!("the service stopped during the run ({status})")));
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }

    /// `why`, with the end of what the service wrote to standard error;
    /// the process is killed.
    fn failed(&mut self, why: String) -> LoadError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.stderr) {
            let _ = file.read_to_string(&mut text);
        }
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        LoadError::Service(format!("{why}; its last words:\n{}", tail.join("\n")))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
