//! Helpers shared by Latchkey's integration tests: modules built once per test
//! process with `latchkey policy build`, realistic facts from the corpora, and
//! hand-made components for what no Rust guest can produce.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use latchkey::policy::build::{self, BuildOptions, Built};
use latchkey::policy::{DiskCache, Limits, Sandbox};
use latchkey_policy::Facts;
use latchkey_policy::corpus::Corpus;
use serde_json::{Value, json};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_owned()
}

/// Where the tests build modules; separate from the workspace's own target
/// directory so that a nested cargo never waits on the outer one's lock.
pub fn target_dir() -> PathBuf {
    root().join("target/test-modules")
}

/// Builds the policy crate at `path` (relative to the repository root) once
/// per test process, and returns the build.
pub fn built(path: &str) -> Built {
    static BUILT: OnceLock<Mutex<HashMap<String, Built>>> = OnceLock::new();
    let cache = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    // Held across the build: cargo serialises builds in one target directory anyway.
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(built) = cache.get(path) {
        return built.clone();
    }
    let built = build::build(
        &root().join(path),
        &BuildOptions {
            target_dir: Some(target_dir()),
            quiet: true,
        },
    )
    .unwrap_or_else(|e| panic!("building {path}: {e}"));
    cache.insert(path.to_owned(), built.clone());
    built
}

/// The bytes of the module built from `path`.
pub fn module_bytes(path: &str) -> Vec<u8> {
    std::fs::read(built(path).path).unwrap()
}

/// The bytes of one of the hostile guests in tests/guests.
pub fn guest(name: &str) -> Vec<u8> {
    module_bytes(&format!("tests/guests/{name}"))
}

/// A sandbox with default limits and an in-memory cache.
pub fn sandbox() -> Sandbox {
    Sandbox::new(Limits::default(), DiskCache::in_memory()).unwrap()
}

/// A policy's case corpus.
pub fn corpus(policy: &str) -> Corpus {
    let text =
        std::fs::read_to_string(root().join(format!("policies/{policy}/cases.json"))).unwrap();
    Corpus::from_json(&text).unwrap()
}

/// Realistic facts: the default corpus's first case that expects an allow.
pub fn allow_facts() -> Facts {
    corpus("default")
        .cases
        .into_iter()
        .find(|c| c.expect.decision == "allow")
        .expect("the default corpus has an allow case")
        .facts
}

/// A component that implements the contract's world but returns a decision
/// whose variant discriminant is out of range: no Rust guest can produce it.
pub fn malformed_decision_component() -> Vec<u8> {
    // `evaluate` takes a pointer to the facts (too many to pass flat) and
    // returns a pointer to the decision; byte 0 of a decision is its case.
    let wat = r#"
        (module
          (memory (export "memory") 1)
          (global $next (mut i32) (i32.const 4096))
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
            (local $ptr i32)
            (local.set $ptr (i32.and
              (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
              (i32.sub (i32.const 0) (local.get 2))))
            (global.set $next (i32.add (local.get $ptr) (local.get 3)))
            (local.get $ptr))
          (func (export "evaluate") (param i32) (result i32)
            (i32.store8 (i32.const 1024) (i32.const 200))
            (i32.const 1024)))
    "#;
    componentize(wat)
}

/// Wraps a core module in WAT as a component of the `policy` world.
pub fn componentize(wat: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(root().join("wit")).unwrap();
    let world = resolve.select_world(&[package], Some("policy")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// A running emulator on a free loopback port, with the demo tenant, and an
/// HTTP client for it.
pub struct TestSim {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The emulator's state, for tests that look behind the HTTP surface
    /// (the outbox, the clock).
    pub sim: latchkey::sim::Sim,
    /// An HTTP client.
    pub client: reqwest::Client,
}

impl TestSim {
    /// Starts the demo tenant. Call from a `#[tokio::test]`.
    pub async fn start() -> TestSim {
        let tenant = latchkey::sim::seed::demo(time::OffsetDateTime::now_utc()).unwrap();
        TestSim::start_with(tenant).await
    }

    /// Starts `tenant`.
    pub async fn start_with(tenant: latchkey::sim::Tenant) -> TestSim {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = latchkey::sim::spawn(listener, tenant).unwrap();
        TestSim {
            base_url: running.base_url(),
            sim: running.sim,
            client: reqwest::Client::new(),
        }
    }

    /// `{base}/v1.0{path}`.
    pub fn graph(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.base_url)
    }

    /// Adds a fault through `POST /_sim/faults` (see the emulator's control
    /// routes); the emulator must accept it.
    pub async fn add_fault(&self, fault: serde_json::Value) {
        let response = self
            .client
            .post(format!("{}/_sim/faults", self.base_url))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// The faults still in force: `{"value": [...]}`.
    pub async fn faults(&self) -> serde_json::Value {
        self.client
            .get(format!("{}/_sim/faults", self.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Clears every fault.
    pub async fn clear_faults(&self) {
        let response = self
            .client
            .delete(format!("{}/_sim/faults", self.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    /// The demo app's credentials: (tenant id, client id, client secret).
    pub fn app(&self) -> (String, String, String) {
        let tenant = self.sim.tenant();
        let app = &tenant.apps[0];
        (
            tenant.id.clone(),
            app.client_id.clone(),
            app.client_secret.clone(),
        )
    }

    /// An app-only Graph token for the demo app, from the token endpoint.
    pub async fn app_token(&self) -> String {
        let (tenant, client_id, secret) = self.app();
        self.token_for(&tenant, &client_id, &secret).await
    }

    /// An app-only Graph token for any app of the tenant.
    pub async fn token_for(&self, tenant: &str, client_id: &str, secret: &str) -> String {
        let response = self
            .client
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base_url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token request failed");
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// The demo `latchkey demo` starts (the emulator with Contoso, the service
/// with the default policy, the web chat) on free loopback ports, not yet
/// serving: the channel tests build on it.
pub async fn demo() -> latchkey::web::demo::Demo {
    latchkey::web::demo::Demo::start(latchkey::web::demo::DemoOptions {
        port: 0,
        sim_port: 0,
        module: module_bytes("policies/default"),
    })
    .await
    .unwrap()
}

/// The secret of `upn`'s Temporary Access Pass in the emulator, if they
/// have one.
pub fn temporary_access_pass(sim: &latchkey::sim::Sim, upn: &str) -> Option<String> {
    sim.tenant()
        .user(upn)?
        .methods
        .iter()
        .find_map(|m| match m {
            latchkey::sim::model::Method::TemporaryAccessPass(tap) => Some(tap.secret.clone()),
            _ => None,
        })
}

/// Drives the emulator's sign-in at `authorize_url` as `upn` with `step`
/// (`password`, or `passwordless` for phone sign-in), then the Authenticator
/// (approved through the simulated phone's API) when the user has one, as
/// `latchkey loadtest` does ([`latchkey::sim::browser`]). Returns the
/// redirect back to the app (`.../callback?code=...&state=...`). `http`
/// must not follow redirects.
pub async fn emulator_sign_in(
    http: &reqwest::Client,
    sim: &latchkey::sim::Sim,
    authorize_url: &str,
    upn: &str,
    step: &str,
) -> String {
    use latchkey::sim::browser::{self, Step};
    let password = sim.tenant().user(upn).unwrap().password.clone();
    let step = match step {
        "password" => Step::Password(&password),
        "passwordless" => Step::Passwordless,
        other => panic!("no sign-in step {other:?}"),
    };
    browser::sign_in(http, authorize_url, upn, step)
        .await
        .unwrap_or_else(|e| panic!("{upn}: {e}"))
}

/// Follows `back`, the emulator's redirect to the OIDC callback of the app
/// at `app`, as the web chat's page does (asking for JSON), with `cookie`
/// if given, and returns the app's answer, which must be a 200.
pub async fn follow_callback(
    http: &reqwest::Client,
    app: &str,
    back: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    assert!(back.starts_with(&format!("{app}/callback?")), "{back}");
    let mut request = http.get(back).header("accept", "application/json");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    assert_eq!(status, 200, "{:?}", answer.text().await);
    answer
}

/// Approves `upn`'s pending Authenticator request, as the phone would.
pub async fn approve_on_phone(http: &reqwest::Client, sim: &latchkey::sim::Sim, upn: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending: Value = http
            .get(format!("{}/_sim/authenticator/pending", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = pending["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["user"] == upn)
            .cloned();
        if let Some(approval) = found {
            let answered = http
                .post(format!(
                    "{}/_sim/authenticator/{}",
                    sim.base_url(),
                    approval["id"].as_str().unwrap()
                ))
                .json(&json!({"approve": true, "number": approval["number"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(answered.status(), 200);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no Authenticator request for {upn}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
