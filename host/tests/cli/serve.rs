//! `latchkey serve` as a real process: it reconciles the audit log at start,
//! answers the admin API, and stops cleanly on SIGTERM; `--check` validates
//! for deployment pipelines.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use latchkey::audit::{AuditLog, Kind};
use latchkey::tenant::TenantId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{assert_usage_error, default_module, latchkey_in};

const CONTOSO: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const TOKEN: &str = "5f1c0e7a9b3d4c2e8f6a1b0c9d8e7f6a5b4c3d2e";
const SECRET_ENV: &str = "LATCHKEY_TEST_CONTOSO_SECRET";

/// A directory with the default module, a host key, an admin token and a
/// configuration (plus `extra` appended); returns the module's sha256.
fn setup(d: &Path, extra: &str) -> String {
    std::fs::create_dir(d.join("modules")).unwrap();
    std::fs::copy(default_module(), d.join("modules/default.wasm")).unwrap();
    let hash = hex::encode(Sha256::digest(std::fs::read(default_module()).unwrap()));
    assert_eq!(latchkey_in(d, &["keygen", "--out", "host"]).code, 0);
    std::fs::write(d.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    // Readable by the service alone, or it warns (on stderr, which the
    // one-line error checks below would count).
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            d.join("admin.token"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let config = format!(
        "[host]\nsigning_key = \"host.pem\"\ndatabase = \"audit.db\"\nreconcile_grace_seconds = 1\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
         [policy]\nmodules_dir = \"modules\"\n\n\
         [tenants.{CONTOSO}]\nname = \"Contoso\"\nmodule = \"default.wasm\"\nsha256 = \"{hash}\"\n\n\
         [tenants.{CONTOSO}.graph]\nclient_id = \"app\"\nclient_secret_env = \"{SECRET_ENV}\"\n\
         authority = \"http://127.0.0.1:9\"\ngraph_base_url = \"http://127.0.0.1:9/v1.0\"\n{extra}"
    );
    std::fs::write(d.join("latchkey.toml"), config).unwrap();
    hash
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Kills the server if a test fails before it stops it.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .current_dir(dir)
            .args(["serve", "--config", "latchkey.toml"])
            .env(SECRET_ENV, "not-a-real-secret")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {prefix:?}; output so far: {:#?}", self.seen),
            }
        }
    }
}

#[test]
fn serve_reconciles_answers_the_admin_api_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hash = setup(d, "");
    let tenant: TenantId = CONTOSO.parse().unwrap();

    // A previous run announced a Graph write and stopped before its outcome.
    block_on(async {
        let log = AuditLog::open(&d.join("audit.db")).await.unwrap();
        log.append_intent(&tenant, json!({"action": "resetPassword"}))
            .await
            .unwrap();
        log.close().await;
    });
    // Older than the configured grace period (1 s).
    std::thread::sleep(Duration::from_millis(1200));

    let mut server = Server::start(d);
    let audit = server.line("audit ");
    assert!(
        audit.contains("reconciled 1 intent") && audit.contains(&format!("{CONTOSO}#2")),
        "{audit}"
    );
    let ok = server.line("ok ");
    assert_eq!(ok, format!("ok       {CONTOSO} (Contoso): {hash}"));
    let listening = server.line("admin API listening on ");
    let base = listening
        .trim_start_matches("admin API listening on ")
        .trim_end_matches('/')
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    block_on(async {
        let http = reqwest::Client::new();
        let anonymous = http.get(format!("{base}/tenants")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let listed = http
            .get(format!("{base}/tenants"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
        let body: Value = listed.json().await.unwrap();
        assert_eq!(body["tenants"][0]["id"], CONTOSO);
        assert_eq!(body["tenants"][0]["active"]["sha256"], hash.as_str());
        let recent: Value = http
            .get(format!("{base}/audit?tenant={CONTOSO}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kinds: Vec<&str> = recent["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["note", "outcome", "intent"], "{recent}");
    });

    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    server.line("latchkey serve stopped");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));

    // The intent now has its outcome, as unknown; the chain still verifies.
    let entries = block_on(async {
        let log = AuditLog::open_read_only(&d.join("audit.db")).await.unwrap();
        let entries = log.entries(&tenant).await.unwrap();
        log.close().await;
        entries
    });
    assert_eq!(entries[1].kind, Kind::Outcome);
    assert_eq!(entries[1].body["intent"]["seq"], 1);
    assert_eq!(entries[1].body["outcome"]["status"], "unknown");
    assert_eq!(entries[2].kind, Kind::Note);
    assert_eq!(entries[2].body["event"], "policy_applied");
    let verify = latchkey_in(d, &["audit", "verify", "--db", "audit.db"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

#[test]
fn check_validates_and_exits_without_touching_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hash = setup(d, "");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .current_dir(d)
            .args(args)
            .env(SECRET_ENV, "not-a-real-secret")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        crate::Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    let good = run(&["serve", "--config", "latchkey.toml", "--check"]);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(
        good.stdout
            .contains(&format!("ok       {CONTOSO} (Contoso): {hash}"))
    );
    assert!(good.stdout.trim_end().ends_with("1 accepted, 0 refused"));
    assert!(!d.join("audit.db").exists(), "--check opens no database");

    // The secret comes from the environment: without it, a one-line error.
    assert_usage_error(
        &latchkey_in(d, &["serve", "--config", "latchkey.toml", "--check"]),
        SECRET_ENV,
    );

    // A module whose hash is not the pinned one: refused, exit 1.
    std::fs::write(d.join("modules/default.wasm"), b"\0asm not this one").unwrap();
    let refused = run(&["serve", "--config", "latchkey.toml", "--check"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains(&format!(
        "REFUSED  {CONTOSO} (Contoso): module hash mismatch"
    )));
}

#[test]
fn check_on_a_bad_config_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, "");
    let config = std::fs::read_to_string(d.join("latchkey.toml")).unwrap();

    let remote = config.replace("127.0.0.1:0", "0.0.0.0:7720");
    std::fs::write(d.join("remote.toml"), remote).unwrap();
    assert_usage_error(
        &latchkey_in(d, &["serve", "--config", "remote.toml", "--check"]),
        "line 6: [admin] listen = \"0.0.0.0:7720\" is not a loopback address",
    );

    std::fs::write(d.join("admin.token"), "short\n").unwrap();
    assert_usage_error(
        &latchkey_in(d, &["serve", "--config", "latchkey.toml", "--check"]),
        "at least 32",
    );
    // The service itself refuses to start the same way.
    assert_usage_error(
        &latchkey_in(d, &["serve", "--config", "latchkey.toml"]),
        "at least 32",
    );

    let keyless = config.replace("signing_key = \"host.pem\"\n", "");
    std::fs::write(d.join("keyless.toml"), keyless).unwrap();
    assert_usage_error(
        &latchkey_in(d, &["serve", "--config", "keyless.toml", "--check"]),
        "signing_key is required",
    );
    assert_usage_error(
        &latchkey_in(d, &["serve", "--config", "absent.toml", "--check"]),
        "absent.toml",
    );
}

#[test]
fn check_reads_the_slack_secrets_and_names_the_one_missing() {
    const BOT_ENV: &str = "LATCHKEY_TEST_SLACK_BOT_TOKEN";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(
        d,
        &format!(
            "\n[slack]\nsigning_secret_file = \"slack-signing.secret\"\n\
             bot_token_env = \"{BOT_ENV}\"\nlisten = \"127.0.0.1:0\"\n"
        ),
    );
    let write_secret = |text: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        let path = d.join("slack-signing.secret");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let check = |bot_token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command
            .current_dir(d)
            .args(["serve", "--config", "latchkey.toml", "--check"])
            .env(SECRET_ENV, "not-a-real-secret")
            .env_remove(BOT_ENV)
            .env_remove("RUST_LOG");
        if let Some(token) = bot_token {
            command.env(BOT_ENV, token);
        }
        let output = command.output().unwrap();
        crate::Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };

    // The signing secret's file is missing: named, with the reason.
    let missing = check(Some("xoxb-offline"));
    assert_usage_error(&missing, "[slack] signing secret from file");
    assert!(
        missing.stderr.contains("slack-signing.secret") && missing.stderr.contains("No such file"),
        "{}",
        missing.stderr
    );
    // Present but empty.
    write_secret("\n");
    let empty = check(Some("xoxb-offline"));
    assert_usage_error(&empty, "[slack] signing secret from file");
    assert!(empty.stderr.contains("it is empty"), "{}", empty.stderr);
    // The bot token's environment variable is unset.
    write_secret("8f742231b10e8888abcd99yyyzzz85a5\n");
    assert_usage_error(
        &check(None),
        &format!("[slack] bot token from environment variable {BOT_ENV}"),
    );
    // Both there: accepted, and still no database.
    let good = check(Some("xoxb-offline"));
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(good.stdout.trim_end().ends_with("1 accepted, 0 refused"));
    assert!(!d.join("audit.db").exists(), "--check opens no database");
}

#[test]
fn check_reads_the_teams_app_secret() {
    const APP_ENV: &str = "LATCHKEY_TEST_TEAMS_APP_SECRET";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(
        d,
        &format!(
            "\n[teams]\napp_id = \"5b0c4ab2-7e11-4c5e-9d4f-2f3c1a9e7d10\"\n\
             app_secret_env = \"{APP_ENV}\"\nlisten = \"127.0.0.1:0\"\n"
        ),
    );
    let check = |secret: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command
            .current_dir(d)
            .args(["serve", "--config", "latchkey.toml", "--check"])
            .env(SECRET_ENV, "not-a-real-secret")
            .env_remove(APP_ENV)
            .env_remove("RUST_LOG");
        if let Some(secret) = secret {
            command.env(APP_ENV, secret);
        }
        let output = command.output().unwrap();
        crate::Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    assert_usage_error(
        &check(None),
        &format!("[teams] app secret from environment variable {APP_ENV}"),
    );
    let good = check(Some("bot-secret"));
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
}
