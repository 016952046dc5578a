//! The `latchkey` command line: argument parsing and the commands for MSPs and
//! security teams. `main.rs` only calls [`main`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use latchkey_policy::corpus::Corpus;

use crate::audit::{AuditLog, Report, Scope};
use crate::config::Config;
use crate::keys::{self, KeyId};
use crate::policy::build::{self, BuildOptions};
use crate::policy::{DiskCache, Limits, ModuleHash, PolicyRegistry, Sandbox, trust};
use crate::receipt::{self, VerifyError, VerifyingKeys};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and the answer is "no" (a case failed, a
/// signature did not verify).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: wrong arguments or bad input.
pub const EXIT_USAGE: u8 = 2;

/// Resolves "I can't log in" for Microsoft 365, under each tenant's own
/// sandboxed WebAssembly policy.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The one-command first run: the emulator with the demo tenant, the
    /// service with the default policy, and the web chat, on loopback.
    #[cfg(feature = "sim")]
    Demo {
        /// The web chat's port; 0 picks a free one.
        #[arg(long, default_value_t = crate::web::demo::DEFAULT_PORT)]
        port: u16,
        /// The emulator's port; 0 picks a free one.
        #[arg(long, default_value_t = crate::web::demo::DEFAULT_SIM_PORT)]
        sim_port: u16,
        /// The policy module the demo tenant runs; by default the one built
        /// from policies/default.
        #[arg(long, value_name = "FILE")]
        module: Option<PathBuf>,
    },
    /// Load-test the service: simulated users resolving situations through
    /// the web chat's API against the emulator, with Latchkey's own time,
    /// throughput, memory and the activity log checked (see the README's
    /// Performance section). Exit 1 if any resolution failed or any entry
    /// is missing.
    #[cfg(feature = "sim")]
    Loadtest {
        /// Simulated users at once.
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Resolutions in all (one synthetic account each); default: four
        /// per user, at least 200.
        #[arg(long)]
        resolutions: Option<usize>,
        /// Latency the emulator adds to every Graph request, in ms.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        graph_latency_ms: u64,
        /// The policy module the tenant runs; by default the one built from
        /// policies/default.
        #[arg(long, value_name = "FILE")]
        module: Option<PathBuf>,
        /// Print the report as JSON (for bench/report.py) instead of text.
        #[arg(long)]
        json: bool,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Build, test, hash, sign and verify policy modules.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the Entra ID / Microsoft Graph emulator on loopback.
    #[cfg(feature = "sim")]
    Sim {
        /// The port to listen on; 0 picks a free one.
        #[arg(long, default_value_t = DEFAULT_SIM_PORT)]
        port: u16,
        /// A seed file (JSON) describing the tenant; the built-in Contoso demo
        /// tenant when absent.
        #[arg(long, value_name = "FILE")]
        seed: Option<PathBuf>,
        /// Print the demo app's credentials as JSON and exit.
        #[arg(long)]
        print_credentials: bool,
    },
    /// Check receipts, the host's signatures over allowed actions.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Verify and export the hash-chained activity log, for auditors.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the service: check the configuration, reconcile the audit log,
    /// apply every tenant's module, and serve the admin API until Ctrl-C or
    /// SIGTERM.
    Serve {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check the configuration, keys, secrets and every module, then
        /// exit without opening the database: 0 when all is well, 1 when a
        /// module is refused.
        #[arg(long)]
        check: bool,
    },
    /// Create an ed25519 key pair (PEM), for signing modules or receipts.
    Keygen {
        /// Write the private key to PREFIX.pem and the public key to PREFIX.pub.pem.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Build a policy crate to a component, reproducibly; prints its path and sha256.
    Build {
        /// The policy crate's directory.
        crate_dir: PathBuf,
        /// Also copy the module to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Cargo's target directory.
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
    },
    /// Print a module's sha256, its identity.
    Hash {
        /// The module file.
        module: PathBuf,
    },
    /// Run a JSON case corpus against a module in the sandbox: a line per case.
    ///
    /// Given a policy crate's directory instead of a module, builds it first and
    /// uses its cases.json.
    Test {
        /// The module file, or a policy crate's directory.
        module: PathBuf,
        /// The case corpus (default: cases.json in the crate's directory).
        cases: Option<PathBuf>,
        /// Keep the compiled module in this directory (created if missing)
        /// and load it from there next time, as `latchkey serve` does with
        /// `[policy] cache_dir`.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Check every tenant's pinned module as the service loads it: file,
    /// sha256, publisher signature, sandbox. A line per tenant; exit 1 if any
    /// is refused.
    Check {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Sign a module with a publisher's private key (a detached signature).
    Sign {
        /// The publisher's private key (PKCS#8 PEM).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The module file.
        module: PathBuf,
        /// Where to write the signature (default: MODULE.sig).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify a module's signature against a publisher's public key.
    Verify {
        /// The publisher's public key (PEM).
        #[arg(long = "pub", value_name = "KEY")]
        public: PathBuf,
        /// The module file.
        module: PathBuf,
        /// The signature file (default: MODULE.sig).
        #[arg(long, value_name = "FILE")]
        sig: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Check a receipt with only the host's public key, and print what it
    /// allows. Exit 0 when valid, 1 when not (or expired).
    Verify {
        /// The host's public key (PEM); repeat it for keys from before a rotation.
        #[arg(long = "pub", value_name = "KEY", required = true)]
        public: Vec<PathBuf>,
        /// Exit 0 for an authentic receipt that has expired.
        #[arg(long)]
        allow_expired: bool,
        /// The receipt: a DSSE envelope (JSON).
        receipt: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every tenant's hash chain: a line per tenant, naming the first
    /// bad entry of a broken chain; exit 1 if any chain is broken.
    Verify {
        /// The audit database (SQLite); opened read-only, never created.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
    /// Write every entry as canonical JSON to stdout, one per line, each
    /// tenant's chain in order, for checking without Latchkey.
    Export {
        /// The audit database (SQLite); opened read-only, never created.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Run the recorded module on the recorded facts of a decision entry and
    /// confirm the same decision; exit 1 if it differs. Offline: the module
    /// comes from --module, a cache directory's archive or a modules
    /// directory, found by its sha256.
    Replay {
        /// The audit database (SQLite); opened read-only, never created.
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The module file to use (it must have the recorded sha256).
        #[arg(long, value_name = "FILE")]
        module: Option<PathBuf>,
        /// A module cache directory (the host's `cache_dir`), where every
        /// module the host loaded is kept as `<sha256>.wasm`.
        #[arg(long, value_name = "DIR")]
        cache_dir: Vec<PathBuf>,
        /// A directory of module files, searched by sha256.
        #[arg(long, value_name = "DIR")]
        modules: Vec<PathBuf>,
        /// The decision entry, as `<tenant id>#<seq>`.
        entry: String,
    },
}

/// Formats `latchkey audit export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// JSON Lines: one entry per line.
    Jsonl,
}

/// An error the user can act on, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

impl CliError {
    fn new(message: impl Into<String>) -> CliError {
        CliError(message.into())
    }
}

/// Parses arguments and runs the command. Usage errors print one line and
/// exit with 2; so does any bad input.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message, up to its usage block, on one line.
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect::<Vec<_>>()
                .join(" ");
            let first =
                if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    "a command is required"
                } else {
                    message.trim_start_matches("error: ")
                };
            eprintln!("latchkey: {first} (see `latchkey --help`)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("latchkey: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Runs a parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Keygen { out } => keygen(&out),
        Command::Serve { config, check } => serve(&config, check),
        Command::Audit(AuditCommand::Verify { db }) => audit_verify(&db),
        Command::Audit(AuditCommand::Export { db, format }) => audit_export(&db, format),
        Command::Audit(AuditCommand::Replay {
            db,
            module,
            cache_dir,
            modules,
            entry,
        }) => audit_replay(&db, &entry, module.as_deref(), &cache_dir, &modules),
        Command::Receipt(ReceiptCommand::Verify {
            public,
            allow_expired,
            receipt,
        }) => receipt_verify(&public, &receipt, allow_expired),
        #[cfg(feature = "sim")]
        Command::Sim {
            port,
            seed,
            print_credentials,
        } => sim(port, seed.as_deref(), print_credentials),
        #[cfg(feature = "sim")]
        Command::Demo {
            port,
            sim_port,
            module,
        } => demo(port, sim_port, module.as_deref()),
        #[cfg(feature = "sim")]
        Command::Loadtest {
            users,
            resolutions,
            graph_latency_ms,
            module,
            json,
            quiet,
        } => loadtest(
            crate::loadtest::Options {
                users,
                resolutions: resolutions.unwrap_or_else(|| users.saturating_mul(4).max(200)),
                graph_latency_ms,
                module: Vec::new(),
                progress: !quiet,
            },
            module.as_deref(),
            json,
        ),
        Command::Policy(command) => match command {
            PolicyCommand::Build {
                crate_dir,
                out,
                target_dir,
            } => policy_build(&crate_dir, out.as_deref(), target_dir),
            PolicyCommand::Hash { module } => {
                let bytes = read(&module)?;
                println!("{}  {}", ModuleHash::of(&bytes), module.display());
                Ok(EXIT_OK)
            }
            PolicyCommand::Test {
                module,
                cases,
                cache_dir,
            } => policy_test(&module, cases.as_deref(), cache_dir.as_deref()),
            PolicyCommand::Check { config } => policy_check(&config),
            PolicyCommand::Sign { key, module, out } => policy_sign(&key, &module, out),
            PolicyCommand::Verify {
                public,
                module,
                sig,
            } => policy_verify(&public, &module, sig),
        },
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn policy_build(
    crate_dir: &Path,
    out: Option<&Path>,
    target_dir: Option<PathBuf>,
) -> Result<u8, CliError> {
    let built = build::build(
        crate_dir,
        &BuildOptions {
            target_dir,
            quiet: false,
        },
    )
    .map_err(|e| CliError::new(e.to_string()))?;
    let path = match out {
        Some(out) => {
            std::fs::copy(&built.path, out)
                .map_err(|e| CliError::new(format!("cannot write {}: {e}", out.display())))?;
            out.to_owned()
        }
        None => built.path,
    };
    println!("{}  {}", built.hash, path.display());
    Ok(EXIT_OK)
}

fn policy_test(
    module: &Path,
    cases: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<u8, CliError> {
    let (module_path, cases_path) = if module.is_dir() {
        let built = build::build(module, &BuildOptions::default())
            .map_err(|e| CliError::new(e.to_string()))?;
        let cases = cases
            .map(Path::to_owned)
            .unwrap_or_else(|| module.join("cases.json"));
        (built.path, cases)
    } else {
        let cases = cases.ok_or_else(|| {
            CliError::new("give the case corpus: latchkey policy test <module.wasm> <cases.json>")
        })?;
        (module.to_owned(), cases.to_owned())
    };
    let corpus = Corpus::from_json(&read_text(&cases_path)?)
        .map_err(|e| CliError::new(format!("{}: {e}", cases_path.display())))?;
    let bytes = read(&module_path)?;
    let cache = match cache_dir {
        Some(dir) => DiskCache::at(dir).map_err(|e| {
            CliError::new(format!(
                "cannot open the cache directory {}: {e}",
                dir.display()
            ))
        })?,
        None => DiskCache::in_memory(),
    };
    let sandbox =
        Sandbox::new(Limits::default(), cache).map_err(|e| CliError::new(e.to_string()))?;
    let loaded = sandbox
        .load(&bytes)
        .map_err(|e| CliError::new(format!("{}: {e}", module_path.display())))?;
    let sandbox = Arc::new(sandbox);

    let mut stdout = std::io::stdout().lock();
    let (mut passed, mut failed) = (0usize, 0usize);
    let _ = writeln!(
        stdout,
        "module {}  {}",
        loaded.hash(),
        module_path.display()
    );
    for case in &corpus.cases {
        let evaluation = sandbox.decide(&loaded, &case.facts);
        let verdict = match (&evaluation.fault, case.expect.check(&evaluation.decision)) {
            (Some(fault), _) => Err(format!("policy fault: {fault}")),
            (None, result) => result,
        };
        match verdict {
            Ok(()) => {
                passed += 1;
                let _ = writeln!(stdout, "PASS  {}", case.name);
            }
            Err(why) => {
                failed += 1;
                let _ = writeln!(stdout, "FAIL  {}: {why}", case.name);
            }
        }
    }
    let _ = writeln!(stdout, "{passed} passed, {failed} failed");
    Ok(if failed == 0 { EXIT_OK } else { EXIT_FAILED })
}

fn policy_check(config_path: &Path) -> Result<u8, CliError> {
    let text = read_text(config_path)?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let config = Config::from_toml(&text, base)
        .map_err(|e| CliError::new(format!("{}: {e}", config_path.display())))?;
    if config.tenants.is_empty() {
        return Err(CliError::new(format!(
            "{}: no tenants are configured",
            config_path.display()
        )));
    }
    let (_registry, reports) = PolicyRegistry::open(&config, Limits::default())
        .map_err(|e| CliError::new(e.to_string()))?;
    let mut refused = 0usize;
    for (tenant, result) in &reports {
        let name = config.tenants.get(tenant).map_or("", |t| t.name.as_str());
        match result {
            Ok(applied) => {
                let signed = applied
                    .signed_by
                    .as_ref()
                    .map(|kid| format!(", signed by {kid}"))
                    .unwrap_or_default();
                println!("ok       {tenant} ({name}): {}{signed}", applied.module);
            }
            Err(refusal) => {
                refused += 1;
                println!("REFUSED  {tenant} ({name}): {refusal}");
            }
        }
    }
    println!("{} accepted, {refused} refused", reports.len() - refused);
    Ok(if refused == 0 { EXIT_OK } else { EXIT_FAILED })
}

fn policy_sign(key: &Path, module: &Path, out: Option<PathBuf>) -> Result<u8, CliError> {
    let key = keys::private_from_pem(&read_text(key)?)
        .map_err(|e| CliError::new(format!("{}: {e}", key.display())))?;
    let hash = ModuleHash::of(&read(module)?);
    let out = out.unwrap_or_else(|| with_suffix(module, ".sig"));
    std::fs::write(&out, trust::sign(&key, &hash))
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "signed {hash} with {} -> {}",
        KeyId::of(&key.verifying_key()),
        out.display()
    );
    Ok(EXIT_OK)
}

fn policy_verify(public: &Path, module: &Path, sig: Option<PathBuf>) -> Result<u8, CliError> {
    let key = keys::public_from_pem(&read_text(public)?)
        .map_err(|e| CliError::new(format!("{}: {e}", public.display())))?;
    let hash = ModuleHash::of(&read(module)?);
    let sig = sig.unwrap_or_else(|| with_suffix(module, ".sig"));
    let text = read_text(&sig)?;
    match trust::Publishers::new(vec![key]).verify(&hash, &text) {
        Ok(kid) => {
            println!("valid signature by {kid} for {hash}");
            Ok(EXIT_OK)
        }
        Err(e) => {
            println!("INVALID: {e} (module {hash}, signature {})", sig.display());
            Ok(EXIT_FAILED)
        }
    }
}

fn receipt_verify(public: &[PathBuf], path: &Path, allow_expired: bool) -> Result<u8, CliError> {
    let mut keys = VerifyingKeys::new();
    for key in public {
        keys.insert_pem_file(key, None)
            .map_err(|e| CliError::new(e.to_string()))?;
    }
    let text = read_text(path)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| CliError::new("the system clock is before 1970; set it and try again"))?;
    let receipt = match receipt::verify_authenticity(&text, &keys) {
        Ok(receipt) => receipt,
        Err(e) => {
            println!("INVALID: {e} (receipt {})", path.display());
            return Ok(EXIT_FAILED);
        }
    };
    let expires_at = receipt.expires_at();
    let (status, code) = match receipt.check_time(now) {
        Ok(()) => ("valid: authentic, not expired".to_owned(), EXIT_OK),
        Err(VerifyError::Expired { .. }) => (
            format!(
                "authentic, expired {} s ago",
                now.saturating_sub(expires_at)
            ),
            if allow_expired { EXIT_OK } else { EXIT_FAILED },
        ),
        Err(e) => (format!("INVALID: authentic, but {e}"), EXIT_FAILED),
    };
    let expiry = if now <= expires_at {
        format!("in {} s", expires_at.saturating_sub(now))
    } else {
        format!("{} s ago", now.saturating_sub(expires_at))
    };
    let actions: Vec<&str> = receipt
        .actions()
        .iter()
        .map(|a| receipt::action_name(*a))
        .collect();
    let constraints =
        serde_json::to_string(receipt.constraints()).map_err(|e| CliError::new(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{status}");
    let _ = writeln!(out, "receipt      {}", receipt.id());
    let _ = writeln!(out, "signed by    {}", receipt.kid());
    let _ = writeln!(out, "tenant       {}", receipt.tenant());
    let _ = writeln!(out, "requester    {}", receipt.requester());
    let _ = writeln!(out, "target       {}", receipt.target());
    let _ = writeln!(out, "actions      {}", actions.join(", "));
    let _ = writeln!(out, "constraints  {constraints}");
    let _ = writeln!(out, "module       {}", receipt.module());
    let _ = writeln!(out, "facts        {}", receipt.facts_sha256());
    let _ = writeln!(out, "decision     {}", receipt.decision_id());
    let _ = writeln!(out, "issued at    {}", receipt.issued_at());
    let _ = writeln!(out, "expires at   {expires_at} ({expiry})");
    Ok(code)
}

/// A runtime for the commands that talk to the database.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))
}

fn audit_verify(db: &Path) -> Result<u8, CliError> {
    let report = runtime()?.block_on(async {
        let log = AuditLog::open_read_only(db)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        let report = log.verify(Scope::All).await;
        log.close().await;
        report.map_err(|e| CliError::new(e.to_string()))
    })?;
    print_report(&report);
    Ok(if report.is_ok() { EXIT_OK } else { EXIT_FAILED })
}

fn print_report(report: &Report) {
    let mut out = std::io::stdout().lock();
    for t in &report.tenants {
        match (&t.problem, &t.head) {
            (Some(bad), _) => {
                let _ = writeln!(
                    out,
                    "BAD      {}: {}; first bad entry: seq {} (row {}): {}",
                    t.tenant,
                    count(t.entries, "entry"),
                    bad.seq,
                    bad.row,
                    bad.problem
                );
            }
            (None, head) => {
                let open = match t.open_intents {
                    0 => String::new(),
                    n => format!(", {} without outcome", count(n as u64, "intent")),
                };
                let head = head.as_deref().unwrap_or("none");
                let _ = writeln!(
                    out,
                    "ok       {}: {}, head {head}{open}",
                    t.tenant,
                    count(t.entries, "entry")
                );
            }
        }
    }
    for guard in &report.missing_guards {
        let _ = writeln!(
            out,
            "MISSING  trigger {guard}: the append-only guard was dropped from the database"
        );
    }
    let bad = report.tenants.iter().filter(|t| !t.is_ok()).count();
    let missing = report.missing_guards.len();
    let summary = match (bad, missing) {
        (0, 0) => "ok".to_owned(),
        (bad, 0) => format!("{bad} broken"),
        (0, missing) => format!("chains intact, {} missing", count(missing as u64, "guard")),
        (bad, missing) => format!("{bad} broken, {} missing", count(missing as u64, "guard")),
    };
    let _ = writeln!(
        out,
        "{}, {}: {summary}",
        count(report.tenants.len() as u64, "tenant"),
        count(report.entries(), "entry")
    );
}

/// "1 tenant", "2 tenants", "2 entries".
fn count(n: u64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (n, Some(stem)) => format!("{n} {stem}ies"),
        (n, None) => format!("{n} {noun}s"),
    }
}

fn audit_export(db: &Path, format: ExportFormat) -> Result<u8, CliError> {
    match format {
        ExportFormat::Jsonl => runtime()?.block_on(async {
            let log = AuditLog::open_read_only(db)
                .await
                .map_err(|e| CliError::new(e.to_string()))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = log.export_jsonl(&mut out).await;
            log.close().await;
            written.map_err(|e| CliError::new(e.to_string()))?;
            Ok(EXIT_OK)
        }),
    }
}

fn audit_replay(
    db: &Path,
    entry: &str,
    module: Option<&Path>,
    cache_dirs: &[PathBuf],
    module_dirs: &[PathBuf],
) -> Result<u8, CliError> {
    use crate::audit::EntryId;
    use crate::audit::replay::{self, describe};

    let id: EntryId = entry.parse().map_err(|e| CliError::new(format!("{e}")))?;
    let (report, found) = runtime()?.block_on(async {
        let log = AuditLog::open_read_only(db)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        let report = log.verify(Scope::Tenant(id.tenant())).await;
        let entries = log.entries(id.tenant()).await;
        log.close().await;
        let report = report.map_err(|e| CliError::new(e.to_string()))?;
        let entries = entries.map_err(|e| CliError::new(e.to_string()))?;
        Ok::<_, CliError>((report, entries.into_iter().find(|e| e.id == id)))
    })?;
    let Some(found) = found else {
        return Err(CliError::new(format!(
            "{}: there is no entry {id}",
            db.display()
        )));
    };
    // A record from a broken chain proves nothing: refuse before replaying.
    if let Some(bad) = report.tenants.iter().find_map(|t| t.problem.as_ref())
        && u64::try_from(bad.seq).map_or(true, |seq| seq <= id.seq())
    {
        println!(
            "BAD      {id}: the chain is broken at seq {} ({}), at or before this entry; run `latchkey audit verify`",
            bad.seq, bad.problem
        );
        return Ok(EXIT_FAILED);
    }
    let record = replay::decision_record(&found).map_err(|e| CliError::new(e.to_string()))?;
    let bytes = find_module(&record.module_sha256, module, cache_dirs, module_dirs)?;
    let sandbox = Sandbox::new(Limits::default(), DiskCache::in_memory())
        .map_err(|e| CliError::new(e.to_string()))?;
    let replayed =
        replay::replay(&found, &sandbox, &bytes).map_err(|e| CliError::new(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    if replayed.matches() {
        let _ = writeln!(
            out,
            "same     {id}: {} by module {} on facts {}",
            describe(&replayed.evaluation.decision),
            record.module_sha256,
            record.facts_sha256
        );
        Ok(EXIT_OK)
    } else {
        let _ = writeln!(out, "DIFFERENT {id}: module {}", record.module_sha256);
        for difference in &replayed.differences {
            let _ = writeln!(out, "  {difference}");
        }
        Ok(EXIT_FAILED)
    }
}

/// The bytes of the module with `hash`: the file given, else a cache
/// directory's archive, else a file in a modules directory that hashes to it.
fn find_module(
    hash: &ModuleHash,
    module: Option<&Path>,
    cache_dirs: &[PathBuf],
    module_dirs: &[PathBuf],
) -> Result<Vec<u8>, CliError> {
    if let Some(path) = module {
        let bytes = read(path)?;
        let given = ModuleHash::of(&bytes);
        if given != *hash {
            return Err(CliError::new(format!(
                "{} is module {given}, but the decision was made by {hash}",
                path.display()
            )));
        }
        return Ok(bytes);
    }
    for dir in cache_dirs {
        let handle = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())
            .map_err(|e| CliError::new(format!("cannot open {}: {e}", dir.display())))?;
        if let Some(bytes) = crate::policy::archived_module(&handle, hash) {
            return Ok(bytes);
        }
    }
    for dir in module_dirs {
        let entries =
            std::fs::read_dir(dir).map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && ModuleHash::of(&bytes) == *hash
            {
                return Ok(bytes);
            }
        }
    }
    Err(CliError::new(format!(
        "module {hash} is not in the given places; pass --module FILE, --cache-dir DIR or --modules DIR"
    )))
}

fn serve(config_path: &Path, check: bool) -> Result<u8, CliError> {
    use crate::service::{Service, TenantStatus};

    let print_tenants = |tenants: &[TenantStatus]| -> usize {
        let mut refused = 0usize;
        for t in tenants {
            match (&t.active, &t.last_refusal) {
                (Some(active), None) => {
                    let signed = active
                        .signed_by
                        .as_ref()
                        .map(|kid| format!(", signed by {kid}"))
                        .unwrap_or_default();
                    println!("ok       {} ({}): {}{signed}", t.id, t.name, active.sha256);
                }
                (_, Some(refusal)) => {
                    refused += 1;
                    println!("REFUSED  {} ({}): {}", t.id, t.name, refusal.reason);
                }
                (None, None) => {}
            }
        }
        refused
    };
    if check {
        let report = Service::check(config_path).map_err(|e| CliError::new(e.to_string()))?;
        println!("host key {}", report.key_id);
        let refused = print_tenants(&report.tenants);
        println!(
            "{} accepted, {refused} refused",
            report.tenants.len() - refused
        );
        return Ok(if refused == 0 { EXIT_OK } else { EXIT_FAILED });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let (service, startup) = Service::start(config_path)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        println!(
            "host key {} ({} verifying)",
            startup.key_id,
            count(startup.verifying_keys as u64, "key")
        );
        match startup.reconciled.as_slice() {
            [] => println!(
                "audit    {}: no intent left without outcome",
                service.audit().path().display()
            ),
            ids => println!(
                "audit    {}: reconciled {} left without outcome, recorded as unknown: {}",
                service.audit().path().display(),
                count(ids.len() as u64, "intent"),
                ids.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        let refused = print_tenants(&startup.tenants);
        println!(
            "{} accepted, {refused} refused",
            startup.tenants.len() - refused
        );
        let listener = service
            .bind_admin()
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        match &listener {
            Some(l) => {
                let addr = l.local_addr().map_err(|e| CliError::new(e.to_string()))?;
                println!("admin API listening on http://{addr}/admin/v1/");
            }
            None => println!("admin API off (no [admin] table)"),
        }
        let channels = Config::load(config_path)
            .map_err(|e| CliError::new(format!("{}: {e}", config_path.display())))?;
        // One conversation engine behind every channel: a step-up that
        // comes back to the web chat's /callback continues a Slack or Teams
        // conversation, and a manager answers wherever they are.
        let engine = Arc::new(crate::conversation::Engine::standard(&service));
        let web = match channels.web {
            Some(web) => {
                let bound = tokio::net::TcpListener::bind(web.listen)
                    .await
                    .map_err(|e| {
                        CliError::new(format!(
                            "cannot listen on {} for the web chat: {e}",
                            web.listen
                        ))
                    })?;
                let addr = bound
                    .local_addr()
                    .map_err(|e| CliError::new(e.to_string()))?;
                println!(
                    "web chat listening on http://{addr}/ (tenant {})",
                    web.tenant
                );
                let chat = crate::web::WebChat::new(Arc::clone(&engine), web.tenant)
                    .with_server_timing(web.server_timing);
                Some((Arc::new(chat), bound))
            }
            None => {
                println!("web chat off (no [web] table)");
                None
            }
        };
        let slack = match channels.slack {
            Some(slack) => {
                let settings = crate::slack::SlackSettings::from_config(&slack)
                    .map_err(|e| CliError::new(e.to_string()))?;
                let bound = tokio::net::TcpListener::bind(slack.listen)
                    .await
                    .map_err(|e| {
                        CliError::new(format!("cannot listen on {} for Slack: {e}", slack.listen))
                    })?;
                let addr = bound
                    .local_addr()
                    .map_err(|e| CliError::new(e.to_string()))?;
                println!(
                    "Slack listening on http://{addr}/slack/events (tenant {})",
                    slack.tenant
                );
                let channel =
                    crate::slack::Slack::new(Arc::clone(&engine), Arc::clone(&service), settings);
                Some((Arc::new(channel), bound))
            }
            None => {
                println!("Slack off (no [slack] table)");
                None
            }
        };
        let teams = match channels.teams {
            Some(teams) => {
                let settings = crate::teams::TeamsSettings::from_config(&teams)
                    .map_err(|e| CliError::new(e.to_string()))?;
                let bound = tokio::net::TcpListener::bind(teams.listen)
                    .await
                    .map_err(|e| {
                        CliError::new(format!("cannot listen on {} for Teams: {e}", teams.listen))
                    })?;
                let addr = bound
                    .local_addr()
                    .map_err(|e| CliError::new(e.to_string()))?;
                let channel = crate::teams::Teams::new(Arc::clone(&engine), &service, settings)
                    .map_err(|e| CliError::new(format!("[teams] {e}")))?;
                println!(
                    "Teams listening on http://{addr}/api/messages (bot {})",
                    teams.app_id
                );
                Some((Arc::new(channel), bound))
            }
            None => {
                println!("Teams off (no [teams] table)");
                None
            }
        };
        println!("latchkey serve running; Ctrl-C or SIGTERM stops it");
        // One signal stops both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin = Arc::clone(&service).run(listener, until(stopped.clone()));
        let chat = async {
            match web {
                Some((chat, bound)) => chat.serve(bound, until(stopped.clone())).await,
                None => Ok(()),
            }
        };
        let slack = async {
            match slack {
                Some((slack, bound)) => slack.serve(bound, until(stopped.clone())).await,
                None => Ok(()),
            }
        };
        let teams = async {
            match teams {
                Some((teams, bound)) => teams.serve(bound, until(stopped.clone())).await,
                None => Ok(()),
            }
        };
        let (admin, chat, slack, teams) = tokio::join!(admin, chat, slack, teams);
        slack.map_err(|e| CliError::new(format!("the Slack channel stopped: {e}")))?;
        teams.map_err(|e| CliError::new(format!("the Teams channel stopped: {e}")))?;
        admin.map_err(|e| CliError::new(e.to_string()))?;
        chat.map_err(|e| CliError::new(format!("the web chat stopped: {e}")))?;
        service.close().await;
        println!("latchkey serve stopped");
        Ok(EXIT_OK)
    })
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what service managers
/// send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The emulator's default port.
#[cfg(feature = "sim")]
pub const DEFAULT_SIM_PORT: u16 = 7710;

#[cfg(feature = "sim")]
fn sim(port: u16, seed: Option<&Path>, print_credentials: bool) -> Result<u8, CliError> {
    use crate::sim;

    let now = time::OffsetDateTime::now_utc();
    let tenant = match seed {
        Some(path) => sim::seed::from_json(&read_text(path)?, now)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?,
        None => sim::seed::demo(now).map_err(|e| CliError::new(e.to_string()))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| CliError::new(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new(e.to_string()))?;
        if print_credentials {
            let key = sim::SigningKey::well_known().map_err(CliError::new)?;
            let state = sim::Sim::new(tenant, format!("http://{addr}"), key);
            println!("{}", sim::credentials(&state));
            return Ok(EXIT_OK);
        }
        let running = sim::spawn(listener, tenant).map_err(|e| CliError::new(e.to_string()))?;
        println!("latchkey sim listening on {}", running.base_url());
        println!("{}", sim::credentials(&running.sim));
        let _ = tokio::signal::ctrl_c().await;
        Ok(EXIT_OK)
    })
}

#[cfg(feature = "sim")]
fn demo(port: u16, sim_port: u16, module: Option<&Path>) -> Result<u8, CliError> {
    use crate::web::demo::{self, Demo, DemoOptions};

    let module = match module {
        Some(path) => read(path)?,
        None => {
            println!(
                "building the default policy (policies/default); the first build takes a minute"
            );
            demo::default_policy().map_err(|e| CliError::new(e.to_string()))?
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let started = Demo::start(DemoOptions {
            port,
            sim_port,
            module,
        })
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
        print!("{}", started.welcome());
        println!("latchkey demo running; Ctrl-C or SIGTERM stops it");
        started
            .serve(shutdown_signal())
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        println!("latchkey demo stopped");
        Ok(EXIT_OK)
    })
}

#[cfg(feature = "sim")]
fn loadtest(
    mut options: crate::loadtest::Options,
    module: Option<&Path>,
    json: bool,
) -> Result<u8, CliError> {
    // Bad options are refused before the default policy is built.
    options.check().map_err(|e| CliError::new(e.to_string()))?;
    options.module = match module {
        Some(path) => read(path)?,
        None => {
            eprintln!(
                "building the default policy (policies/default); the first build takes a minute"
            );
            crate::web::demo::default_policy().map_err(|e| CliError::new(e.to_string()))?
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    let report = runtime
        .block_on(crate::loadtest::run(&options))
        .map_err(|e| CliError::new(e.to_string()))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::new(format!("writing the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.is_clean() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn keygen(prefix: &Path) -> Result<u8, CliError> {
    let private_path = with_suffix(prefix, ".pem");
    let public_path = with_suffix(prefix, ".pub.pem");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(CliError::new(format!(
                "{} already exists; not overwriting a key",
                path.display()
            )));
        }
    }
    let key = keys::generate();
    let private = keys::private_to_pem(&key).map_err(|e| CliError::new(e.to_string()))?;
    let public =
        keys::public_to_pem(&key.verifying_key()).map_err(|e| CliError::new(e.to_string()))?;
    write_private(&private_path, &private)?;
    std::fs::write(&public_path, public)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", public_path.display())))?;
    println!(
        "{}  {} {}",
        KeyId::of(&key.verifying_key()),
        private_path.display(),
        public_path.display()
    );
    Ok(EXIT_OK)
}

/// Creates a file only its owner can read, failing if it exists.
fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))
}
