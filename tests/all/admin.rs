//! The admin API over real HTTP on a loopback port, in front of a service
//! started from a configuration file whose tenant is the emulator's demo
//! tenant: bearer tokens, the tenant list, module reloads (refused and
//! applied), recent audit entries, and JSON errors for bad input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use latchkey::keys::{self, KeyId};
use latchkey::policy::ModuleHash;
use latchkey::policy::trust;
use latchkey::service::{Service, ServiceError};
use latchkey::tenant::TenantId;
use latchkey_tests::{TestSim, module_bytes};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

const TOKEN: &str = "9c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b";

struct Fixture {
    dir: tempfile::TempDir,
    sim: TestSim,
    tenant: TenantId,
    service: Arc<Service>,
    base: String,
    http: reqwest::Client,
    default_hash: ModuleHash,
    northwind_hash: ModuleHash,
    publisher: KeyId,
    stop: Option<oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<Result<(), ServiceError>>,
}

/// The configuration: the demo tenant pinned to `module` with `hash`,
/// signed by the MSP key, its Graph app pointed at the emulator.
fn config_text(sim: &TestSim, module: &str, hash: &ModuleHash) -> String {
    let (tenant, client_id, _) = sim.app();
    format!(
        "[host]\nsigning_key = \"host.pem\"\ndatabase = \"audit.db\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n\
         [policy]\nmodules_dir = \"modules\"\n\n\
         [tenants.{tenant}]\nname = \"Contoso\"\nmodule = \"{module}\"\nsha256 = \"{hash}\"\n\
         publisher_keys = [\"msp.pub.pem\"]\nmax_tap_lifetime_minutes = 120\n\n\
         [tenants.{tenant}.graph]\nclient_id = \"{client_id}\"\nclient_secret_file = \"contoso.secret\"\n\
         authority = \"{}\"\ngraph_base_url = \"{}\"\n",
        sim.base_url,
        sim.graph("")
    )
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn fixture() -> Fixture {
    let sim = TestSim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let modules = d.join("modules");
    std::fs::create_dir(&modules).unwrap();
    let default = module_bytes("policies/default");
    let northwind = module_bytes("policies/northwind");
    let (default_hash, northwind_hash) = (ModuleHash::of(&default), ModuleHash::of(&northwind));
    std::fs::write(modules.join("default.wasm"), &default).unwrap();
    std::fs::write(modules.join("northwind.wasm"), &northwind).unwrap();
    let msp = keys::generate();
    std::fs::write(
        modules.join("msp.pub.pem"),
        keys::public_to_pem(&msp.verifying_key()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        modules.join("default.wasm.sig"),
        trust::sign(&msp, &default_hash),
    )
    .unwrap();
    std::fs::write(
        modules.join("northwind.wasm.sig"),
        trust::sign(&msp, &northwind_hash),
    )
    .unwrap();
    write_private(
        &d.join("host.pem"),
        &keys::private_to_pem(&keys::generate()).unwrap(),
    );
    write_private(&d.join("admin.token"), &format!("{TOKEN}\n"));
    write_private(&d.join("contoso.secret"), &sim.app().2);
    std::fs::write(
        d.join("latchkey.toml"),
        config_text(&sim, "default.wasm", &default_hash),
    )
    .unwrap();

    let (service, startup) = Service::start(&d.join("latchkey.toml")).await.unwrap();
    assert_eq!(startup.tenants.len(), 1);
    assert!(startup.reconciled.is_empty());
    let listener = service.bind_admin().await.unwrap().unwrap();
    let base = format!("http://{}/admin/v1", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(Arc::clone(&service).run(Some(listener), async {
        let _ = stopped.await;
    }));
    Fixture {
        tenant: sim.app().0.parse().unwrap(),
        dir,
        sim,
        service,
        base,
        http: reqwest::Client::new(),
        default_hash,
        northwind_hash,
        publisher: KeyId::of(&msp.verifying_key()),
        stop: Some(stop),
        running,
    }
}

impl Fixture {
    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn reload(&self) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/tenants/{}/reload", self.base, self.tenant))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn tenant_json(&self) -> Value {
        let (status, body) = self.get("/tenants").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tenants"].as_array().unwrap().len(), 1);
        body["tenants"][0].clone()
    }

    /// Stops the service and checks that it stopped cleanly.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(Duration::from_secs(10), self.running)
            .await
            .expect("the service stops on shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}

#[tokio::test]
async fn requests_need_the_bearer_token() {
    let f = fixture().await;
    let url = format!("{}/tenants", f.base);

    let anonymous = f.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(anonymous.headers().contains_key("request-id"));
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    // Same length, last character different.
    let wrong = format!("{}0", &TOKEN[..TOKEN.len() - 1]);
    let response = f.http.get(&url).bearer_auth(&wrong).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");

    let basic = f
        .http
        .get(&url)
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    // Authentication comes before routing: no route is revealed without it.
    let unknown = f
        .http
        .get(format!("{}/nothing-here", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    let reload = f
        .http
        .post(format!("{}/tenants/{}/reload", f.base, f.tenant))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 401);
    assert_eq!(
        f.service.registry().active(&f.tenant).unwrap().hash(),
        f.default_hash
    );

    let right = f.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(right.status(), 200);
    // The scheme is case-insensitive (RFC 7235).
    let lower = f
        .http
        .get(&url)
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);
    f.stop().await;
}

#[tokio::test]
async fn the_tenant_list_shows_the_pin_the_publisher_and_the_active_module() {
    let f = fixture().await;
    let t = f.tenant_json().await;
    assert_eq!(t["id"], f.tenant.as_str());
    assert_eq!(t["name"], "Contoso");
    assert_eq!(t["module_file"], "default.wasm");
    assert_eq!(t["pinned_sha256"], f.default_hash.to_string());
    assert_eq!(
        t["publisher_keys"],
        serde_json::json!([f.publisher.as_str()])
    );
    assert_eq!(t["max_tap_lifetime_minutes"], 120);
    assert_eq!(t["utc_offset_minutes"], 0);
    assert_eq!(t["active"]["sha256"], f.default_hash.to_string());
    assert_eq!(t["active"]["module_file"], "default.wasm");
    assert_eq!(t["active"]["signed_by"], f.publisher.as_str());
    assert_eq!(t["active"]["trigger"], "startup");
    assert_eq!(t["active"]["loaded_from"], "compiled");
    assert!(t["last_refusal"].is_null());

    let (status, one) = f.get(&format!("/tenants/{}", f.tenant)).await;
    assert_eq!(status, 200);
    assert_eq!(one, t);
    f.stop().await;
}

#[tokio::test]
async fn a_reload_refuses_a_changed_module_and_applies_a_new_pin() {
    let f = fixture().await;
    let modules = f.path().join("modules");

    // The file changes under the pin: refused, the tenant keeps its module.
    std::fs::copy(modules.join("northwind.wasm"), modules.join("default.wasm")).unwrap();
    let (status, body) = f.reload().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "module_refused");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("module hash mismatch"), "{message}");
    assert_eq!(
        body["tenant"]["active"]["sha256"],
        f.default_hash.to_string()
    );
    assert_eq!(
        f.service.registry().active(&f.tenant).unwrap().hash(),
        f.default_hash
    );
    let listed = f.tenant_json().await;
    assert_eq!(listed["active"]["sha256"], f.default_hash.to_string());
    let refusal = &listed["last_refusal"];
    assert_eq!(refusal["trigger"], "admin_reload");
    assert_eq!(refusal["pinned_sha256"], f.default_hash.to_string());
    let reason = refusal["reason"].as_str().unwrap();
    assert!(
        reason.contains("module hash mismatch") && reason.contains(&f.northwind_hash.to_string()),
        "{reason}"
    );

    // The configuration now pins the other module: applied.
    std::fs::write(
        f.path().join("latchkey.toml"),
        config_text(&f.sim, "northwind.wasm", &f.northwind_hash),
    )
    .unwrap();
    let (status, body) = f.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "applied");
    let t = &body["tenant"];
    assert_eq!(t["pinned_sha256"], f.northwind_hash.to_string());
    assert_eq!(t["active"]["sha256"], f.northwind_hash.to_string());
    assert_eq!(t["active"]["module_file"], "northwind.wasm");
    assert_eq!(t["active"]["trigger"], "admin_reload");
    assert_eq!(t["active"]["signed_by"], f.publisher.as_str());
    assert!(t["last_refusal"].is_null());
    assert_eq!(
        f.service.registry().active(&f.tenant).unwrap().hash(),
        f.northwind_hash
    );
    assert_eq!(f.tenant_json().await, *t);

    // Each step is in the tenant's audit chain, newest first.
    let (status, recent) = f.get(&format!("/audit?tenant={}&limit=2", f.tenant)).await;
    assert_eq!(status, 200, "{recent}");
    let entries = recent["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "note");
    assert_eq!(entries[0]["seq"], 3);
    assert_eq!(entries[0]["body"]["event"], "policy_applied");
    assert_eq!(entries[0]["body"]["trigger"], "admin_reload");
    assert_eq!(
        entries[0]["body"]["module_sha256"],
        f.northwind_hash.to_string()
    );
    assert_eq!(entries[0]["prev_sha256"], entries[1]["sha256"]);
    assert_eq!(entries[1]["kind"], "refusal");
    assert_eq!(entries[1]["body"]["event"], "policy_refused");
    assert_eq!(
        entries[1]["body"]["kept_sha256"],
        f.default_hash.to_string()
    );

    let (_, all) = f.get(&format!("/audit?tenant={}", f.tenant)).await;
    let seqs: Vec<u64> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
    assert_eq!(all["entries"][2]["body"]["trigger"], "startup");
    f.stop().await;
}

#[tokio::test]
async fn a_reload_with_a_broken_configuration_changes_nothing() {
    let f = fixture().await;
    let path = f.path().join("latchkey.toml");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, format!("{good}\nsurprise = true\n")).unwrap();
    let (status, body) = f.reload().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("surprise"),
        "{body}"
    );

    let moved = good.replace("modules_dir = \"modules\"", "modules_dir = \"elsewhere\"");
    std::fs::write(&path, moved).unwrap();
    let (status, body) = f.reload().await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("modules_dir changed"),
        "{body}"
    );

    let t = f.tenant_json().await;
    assert_eq!(t["active"]["sha256"], f.default_hash.to_string());
    assert!(t["last_refusal"].is_null(), "nothing was tried");
    f.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_json_error_and_never_a_panic() {
    let f = fixture().await;
    let unknown = "11111111-2222-3333-4444-555555555555";
    let cases: Vec<(reqwest::Method, String, u16, &str)> = vec![
        (
            reqwest::Method::POST,
            "/tenants/not-a-guid/reload".into(),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::POST,
            format!("/tenants/{unknown}/reload"),
            404,
            "not_found",
        ),
        (
            reqwest::Method::GET,
            format!("/tenants/{unknown}"),
            404,
            "not_found",
        ),
        (
            reqwest::Method::GET,
            "/tenants/%ff%fe".into(),
            400,
            "bad_request",
        ),
        (reqwest::Method::GET, "/audit".into(), 400, "bad_request"),
        (
            reqwest::Method::GET,
            "/audit?tenant=contoso".into(),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            format!("/audit?tenant={unknown}"),
            404,
            "not_found",
        ),
        (
            reqwest::Method::GET,
            format!("/audit?tenant={}&limit=0", f.tenant),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            format!("/audit?tenant={}&limit=1001", f.tenant),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            format!("/audit?tenant={}&limit=-1", f.tenant),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            format!("/audit?tenant={}&limit=99999999999999999999", f.tenant),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            format!("/audit?tenant={}&before=3", f.tenant),
            400,
            "bad_request",
        ),
        (
            reqwest::Method::GET,
            "/nothing-here".into(),
            404,
            "not_found",
        ),
        (
            reqwest::Method::GET,
            format!("/tenants/{}/reload", f.tenant),
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::DELETE,
            "/tenants".into(),
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let response = f
            .http
            .request(method.clone(), format!("{}{path}", f.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert!(response.headers().contains_key("request-id"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    let limit = f
        .get(&format!("/audit?tenant={}&limit=1000", f.tenant))
        .await;
    assert_eq!(limit.0, 200);

    let huge = f
        .http
        .post(format!("{}/tenants/{}/reload", f.base, f.tenant))
        .bearer_auth(TOKEN)
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let body: Value = huge.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    f.stop().await;
}

#[tokio::test]
async fn each_tenant_gets_a_graph_client_for_its_configured_app() {
    let f = fixture().await;
    let config = f.service.tenant_config(&f.tenant).unwrap();
    assert_eq!(config.max_tap_lifetime_minutes, 120);
    let graph = f.service.graph(&f.tenant).unwrap();
    let me = graph
        .get("/users/6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f?$select=id,userPrincipalName")
        .await
        .unwrap();
    assert_eq!(me.body["userPrincipalName"], "adele.vance@contoso.com");
    assert!(me.request_id.is_some());
    assert_eq!(
        graph.token_fetches(),
        1,
        "the secret from the file was accepted"
    );
    f.stop().await;
}

#[tokio::test]
async fn the_service_needs_graph_settings_for_every_tenant() {
    let sim = TestSim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("modules")).unwrap();
    let default = module_bytes("policies/default");
    std::fs::write(d.join("modules/default.wasm"), &default).unwrap();
    write_private(
        &d.join("host.pem"),
        &keys::private_to_pem(&keys::generate()).unwrap(),
    );
    let tenant = sim.app().0;
    std::fs::write(
        d.join("latchkey.toml"),
        format!(
            "[host]\nsigning_key = \"host.pem\"\ndatabase = \"audit.db\"\n\
             [policy]\nmodules_dir = \"modules\"\n\
             [tenants.{tenant}]\nmodule = \"default.wasm\"\nsha256 = \"{}\"\n",
            ModuleHash::of(&default)
        ),
    )
    .unwrap();
    let err = Service::start(&d.join("latchkey.toml")).await.unwrap_err();
    assert!(matches!(err, ServiceError::NoGraph(_)), "{err}");
    assert!(err.to_string().contains(".graph]"), "{err}");
    assert!(
        !d.join("audit.db").exists(),
        "nothing is opened before the checks pass"
    );
}

#[tokio::test]
async fn a_tenant_added_to_the_file_starts_with_its_first_reload() {
    let f = fixture().await;
    let path = f.path().join("latchkey.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let fabrikam = "0d4e1b8a-5c3f-4e2d-9a7b-6c5d4e3f2a1b";
    let added = format!(
        "{good}\n[tenants.{fabrikam}]\nname = \"Fabrikam\"\nmodule = \"northwind.wasm\"\n\
         sha256 = \"{}\"\n\n[tenants.{fabrikam}.graph]\nclient_id = \"app\"\n\
         client_secret_file = \"contoso.secret\"\nauthority = \"{}\"\ngraph_base_url = \"{}\"\n",
        f.northwind_hash,
        f.sim.base_url,
        f.sim.graph("")
    );
    std::fs::write(&path, &added).unwrap();
    let response = f
        .http
        .post(format!("{}/tenants/{fabrikam}/reload", f.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, listed) = f.get("/tenants").await;
    let names: Vec<&str> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Fabrikam", "Contoso"], "in id order");
    assert_eq!(
        listed["tenants"][0]["active"]["sha256"],
        f.northwind_hash.to_string()
    );
    assert!(f.service.graph(&fabrikam.parse().unwrap()).is_some());

    // A tenant removed from the file keeps running until a restart.
    let without_contoso = format!(
        "[host]\nsigning_key = \"host.pem\"\ndatabase = \"audit.db\"\n\
         [policy]\nmodules_dir = \"modules\"\n{}",
        &added[added.find(&format!("[tenants.{fabrikam}]")).unwrap()..]
    );
    std::fs::write(&path, without_contoso).unwrap();
    let (status, body) = f.reload().await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer in the configuration"),
        "{body}"
    );
    assert_eq!(
        f.service.registry().active(&f.tenant).unwrap().hash(),
        f.default_hash
    );
    f.stop().await;
}
