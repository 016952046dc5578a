//! `latchkey demo`: the one-command first run, as a new user starts it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{assert_usage_error, default_module, latchkey_in, root};

/// Kills the demo if a test fails before it stops it.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .current_dir(root())
            .arg("demo")
            .args(args)
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
        Running { child, lines }
    }

    /// Every line up to and including the first that contains `text`.
    fn until(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(text);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {text:?}; saw {seen:#?}"),
            }
        }
    }
}

#[test]
fn demo_prints_the_url_and_the_cast_serves_the_chat_and_stops_cleanly() {
    let module = default_module().to_str().unwrap().to_owned();
    let mut demo = Running::start(&["--port", "0", "--sim-port", "0", "--module", &module]);
    let lines = demo.until("latchkey demo running");
    let text = lines.join("\n");
    let url = lines[0]
        .strip_prefix("Latchkey demo: open ")
        .unwrap_or_else(|| panic!("first line: {}", lines[0]))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    for shown in [
        "adele.vance@contoso.com",
        "Correct-Horse-42",
        "1. forgot password",
        "2. lost MFA device",
        "3. locked out",
        "4. password expired",
        "5. blocked by Conditional Access",
        "6. ",
        "7. just mistyped",
        "/_sim/outbox",
    ] {
        assert!(text.contains(shown), "{shown:?} missing from:\n{text}");
    }
    let config = lines
        .iter()
        .find_map(|l| l.strip_prefix("Configuration (thrown away on exit): "))
        .map(PathBuf::from)
        .unwrap();
    assert!(config.is_file());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (page, login) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client.get(&url).send().await.unwrap();
        let page = (page.status().as_u16(), page.text().await.unwrap());
        let login = client.get(format!("{url}auth/login")).send().await.unwrap();
        let location = login
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (page, location)
    });
    assert_eq!(page.0, 200);
    assert!(page.1.contains("Demo channel"));
    let login = login.expect("the sign-in redirects to the emulator");
    assert!(login.contains("/oauth2/v2.0/authorize?"), "{login}");
    let redirect_uri = reqwest::Url::parse(&login)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect_uri.as_deref(),
        Some(format!("{url}callback").as_str()),
        "the callback on the web chat's own (free) port"
    );

    let pid = demo.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    demo.until("latchkey demo stopped");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(!config.exists(), "the throwaway configuration is removed");
}

#[test]
fn a_taken_port_or_a_missing_module_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let module = default_module().to_str().unwrap().to_owned();
    let run = latchkey_in(
        &root(),
        &[
            "demo",
            "--port",
            &port,
            "--sim-port",
            "0",
            "--module",
            &module,
        ],
    );
    assert_usage_error(&run, "--port 0");
    let missing = latchkey_in(
        &root(),
        &["demo", "--port", "0", "--module", "missing.wasm"],
    );
    assert_usage_error(&missing, "missing.wasm");
}

#[test]
fn serve_with_a_web_table_serves_the_chat_beside_the_service() {
    const CONTOSO: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("modules")).unwrap();
    std::fs::copy(default_module(), d.join("modules/default.wasm")).unwrap();
    let module = std::fs::read(default_module()).unwrap();
    assert_eq!(latchkey_in(d, &["keygen", "--out", "host"]).code, 0);
    let config = format!(
        "[host]\nsigning_key = \"host.pem\"\ndatabase = \"audit.db\"\n\n\
         [web]\nlisten = \"127.0.0.1:0\"\n\n\
         [policy]\nmodules_dir = \"modules\"\n\n\
         [tenants.{CONTOSO}]\nmodule = \"default.wasm\"\nsha256 = \"{}\"\n\n\
         [tenants.{CONTOSO}.graph]\nclient_id = \"app\"\nclient_secret_env = \"LATCHKEY_TEST_WEB_SECRET\"\n\
         authority = \"http://127.0.0.1:9\"\ngraph_base_url = \"http://127.0.0.1:9/v1.0\"\n\n\
         [tenants.{CONTOSO}.sign_in]\nredirect_uri = \"http://127.0.0.1:7700/callback\"\n",
        latchkey::policy::ModuleHash::of(&module)
    );
    std::fs::write(d.join("latchkey.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .current_dir(d)
        .args(["serve", "--config", "latchkey.toml"])
        .env("LATCHKEY_TEST_WEB_SECRET", "not-a-real-secret")
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
    let server = Running { child, lines };
    let lines = server.until("latchkey serve running");
    let url = lines
        .iter()
        .find_map(|l| l.strip_prefix("web chat listening on "))
        .unwrap_or_else(|| panic!("{lines:#?}"))
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (page, login) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = client.get(&url).send().await.unwrap();
        let page = (page.status().as_u16(), page.text().await.unwrap());
        let login = client.get(format!("{url}auth/login")).send().await.unwrap();
        let location = login
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (page, location)
    });
    assert_eq!(page.0, 200);
    assert!(page.1.contains("Demo channel"));
    let login = login.expect("the sign-in redirects to the tenant's authority");
    assert!(
        login.starts_with(&format!(
            "http://127.0.0.1:9/{CONTOSO}/oauth2/v2.0/authorize?"
        )),
        "{login}"
    );
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    server.until("latchkey serve stopped");
}
