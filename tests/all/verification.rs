//! Identity verification over real HTTP: the MFA step-up and the plain
//! sign-in against the emulator's authorize endpoint (its sign-in form and
//! simulated Authenticator driven with reqwest), every way an ID token is
//! refused (some through an authority the test serves itself), recovery
//! email codes through Graph `sendMail`, and manager confirmation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey::audit::AuditLog;
use latchkey::graph::{GraphClient, GraphConfig, Secret};
use latchkey::ids::UserId;
use latchkey::sdk::Method;
use latchkey::tenant::TenantId;
use latchkey::verification::{
    CODE_RATE_WINDOW_SECONDS, CODE_SECONDS, Completed, FLOW_SECONDS, MANAGER_SECONDS, OidcClient,
    StepUpStart, TokenProblem, VerificationError, Verifier,
};
use latchkey_tests::{TestSim, root};
use reqwest::Url;
use serde_json::{Value, json};
use sha2::Digest as _;

const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ALEX: &str = "8f080165-38fe-44c1-b3b8-6f4dafad5194";
const HENRIETTA: &str = "c7a89585-cf99-48dd-bf22-07ec2ab83009";
const LEE: &str = "f076e392-469f-4fdf-9ff9-5ec6c20d6044";
const LYNNE: &str = "d74a95ba-814d-4f28-a740-9d115c0505b7";
const HELPDESK: &str = "johanna.lorenz@contoso.com";
const REDIRECT: &str = "http://127.0.0.1:7700/callback";

fn user(id: &str) -> UserId {
    id.parse().unwrap()
}

fn real_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

struct Fixture {
    sim: TestSim,
    tenant: TenantId,
    oidc: OidcClient,
    graph: GraphClient,
    verifier: Arc<Verifier>,
    audit: AuditLog,
    /// Seconds added to the real time on the verifier's clock.
    offset: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let sim = TestSim::start().await;
        let (tenant, client_id, secret) = sim.app();
        let tenant: TenantId = tenant.parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&dir.path().join("latchkey.db"))
            .await
            .unwrap();
        let offset = Arc::new(AtomicI64::new(0));
        let verifier = Arc::new(verifier_on(&audit, &offset));
        let oidc = OidcClient::new(
            &sim.base_url,
            tenant.clone(),
            &client_id,
            Some(Secret::new(secret.clone())),
        )
        .unwrap();
        let mut config = GraphConfig::new(tenant.clone(), client_id, Secret::new(secret));
        config.authority = sim.base_url.clone();
        config.graph_base_url = sim.graph("");
        Fixture {
            graph: GraphClient::new(config).unwrap(),
            sim,
            tenant,
            oidc,
            verifier,
            audit,
            offset,
            _dir: dir,
        }
    }

    fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }

    async fn outbox(&self) -> Vec<Value> {
        let body: Value = self
            .sim
            .client
            .get(format!("{}/_sim/outbox", self.sim.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["value"].as_array().unwrap().clone()
    }

    /// The code in the last mail sent to `address`.
    async fn last_code_to(&self, address: &str) -> String {
        let outbox = self.outbox().await;
        let mail = outbox
            .iter()
            .rev()
            .find(|m| m["to"] == json!([address]))
            .unwrap_or_else(|| panic!("no mail to {address} in {outbox:?}"));
        eight_digits(mail["body"].as_str().unwrap()).unwrap()
    }
}

fn verifier_on(audit: &AuditLog, offset: &Arc<AtomicI64>) -> Verifier {
    let offset = offset.clone();
    Verifier::with_clock(audit, move || real_now() + offset.load(Ordering::SeqCst))
}

fn eight_digits(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(7))
        .find(|&i| {
            bytes[i..i + 8].iter().all(u8::is_ascii_digit)
                && (i == 0 || !bytes[i - 1].is_ascii_digit())
                && bytes.get(i + 8).is_none_or(|b| !b.is_ascii_digit())
        })
        .map(|i| text[i..i + 8].to_owned())
}

fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let mut url = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The sign-in form's action and hidden fields.
fn sign_in_form(html: &str) -> (String, Vec<(String, String)>) {
    let action = html
        .split("<form method=\"post\" action=\"")
        .nth(1)
        .and_then(|rest| rest.split_once('"'))
        .map(|(action, _)| unescape(action))
        .unwrap_or_else(|| panic!("no sign-in form in {html}"));
    let fields = html
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|piece| {
            let (name, rest) = piece.split_once('"').unwrap();
            let rest = rest.strip_prefix(" value=\"").unwrap();
            let (value, _) = rest.split_once('"').unwrap();
            (name.to_owned(), unescape(value))
        })
        .collect();
    (action, fields)
}

/// Where the authority sent the browser back.
#[derive(Debug)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// A person at the browser: opens `authorize_url`, signs in with
/// `username` and `password`, approves on the simulated phone when asked,
/// and follows the redirects up to the callback (not requested: it is the
/// Latchkey host's, which this test plays).
async fn browser_sign_in(
    sim: &TestSim,
    authorize_url: &str,
    username: &str,
    password: &str,
) -> Callback {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser.get(authorize_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in"), "{html}");
    let (action, mut fields) = sign_in_form(&html);
    fields.push(("username".into(), username.into()));
    fields.push(("password".into(), password.into()));
    let submitted = browser
        .post(format!("{}{action}", sim.base_url))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let mut location = submitted
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no redirect after the password: {}", submitted.status()))
        .to_str()
        .unwrap()
        .to_owned();
    if submitted.status() == 303 {
        // Waiting for the Authenticator: approve on the simulated phone.
        latchkey_tests::approve_on_phone(&sim.client, &sim.sim, username).await;
        let waited = browser
            .get(format!("{}{location}", sim.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(waited.status(), 302, "the waiting page goes on to the app");
        location = waited.headers()["location"].to_str().unwrap().to_owned();
    }
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query(&location);
    Callback {
        code: q.get("code").cloned(),
        state: q.get("state").cloned(),
        error: q.get("error").cloned(),
    }
}

fn refused(result: Result<Completed, VerificationError>) -> TokenProblem {
    match result {
        Err(VerificationError::TokenRefused(problem)) => problem,
        other => panic!("expected a refused ID token, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// MFA step-up and sign-in against the emulator

#[tokio::test]
async fn a_step_up_passes_when_the_requester_signs_in_with_mfa_and_the_state_is_single_use() {
    let f = Fixture::new().await;
    let adele = user(ADELE);
    let start = f
        .verifier
        .begin_step_up(
            &f.oidc,
            &f.tenant,
            &adele,
            Some("adele.vance@contoso.com"),
            REDIRECT,
        )
        .await
        .unwrap();
    let now = real_now();
    assert!((start.expires_at - now - FLOW_SECONDS).abs() <= 2);
    let q = query(&start.authorize_url);
    assert!(start.authorize_url.starts_with(&format!(
        "{}/{}/oauth2/v2.0/authorize?",
        f.sim.base_url, f.tenant
    )));
    assert_eq!(q["prompt"], "login");
    assert_eq!(
        q["login_hint"], "adele.vance@contoso.com",
        "the sign-in page is pre-filled with the user principal name"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["state"], start.state);
    assert_eq!(q["scope"], "openid profile");
    assert!(q["nonce"].len() >= 43);
    assert_eq!(
        f.verifier.pending_tenant(&start.state).await.unwrap(),
        f.tenant
    );

    // Nothing secret at rest: neither the state nor anything derived from it.
    let rows: Vec<(String, String, Option<String>, String)> = stored_flows(&f.audit).await;
    assert_eq!(rows.len(), 1);
    let stored = format!("{rows:?}");
    assert!(!stored.contains(&start.state));
    assert!(!stored.contains(&q["nonce"]));
    assert!(!stored.contains(&q["code_challenge"]));

    let callback = browser_sign_in(
        &f.sim,
        &start.authorize_url,
        "adele.vance@contoso.com",
        "Correct-Horse-42",
    )
    .await;
    assert_eq!(callback.state.as_deref(), Some(start.state.as_str()));
    let code = callback.code.expect("a code");
    let completed = f
        .verifier
        .complete(&f.oidc, &start.state, &code)
        .await
        .unwrap();
    let Completed::StepUp(passed) = completed else {
        panic!("expected a step-up, got {completed:?}");
    };
    assert_eq!(passed.requester, adele);
    assert_eq!(passed.tenant, f.tenant);
    assert!((passed.verified_at - real_now()).abs() <= 2);
    assert_eq!(passed.verification().method, Method::MfaStepUp);

    // Reused: refused, with the same code or any other.
    for code in [code.as_str(), "another-code"] {
        assert!(matches!(
            f.verifier.complete(&f.oidc, &start.state, code).await,
            Err(VerificationError::StateUsed)
        ));
    }
    assert!(matches!(
        f.verifier.pending_tenant(&start.state).await,
        Err(VerificationError::StateUsed)
    ));
}

/// The stored flows, every column that could hold something derived from
/// the state.
async fn stored_flows(audit: &AuditLog) -> Vec<(String, String, Option<String>, String)> {
    audit
        .db()
        .run(|c| {
            c.prepare(
                "SELECT state_sha256, tenant, requester, redirect_uri FROM verification_flows",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_plain_sign_in_names_whoever_signed_in_without_asking_for_mfa() {
    let f = Fixture::new().await;
    let start = f.verifier.begin_sign_in(&f.oidc, REDIRECT).await.unwrap();
    let q = query(&start.authorize_url);
    assert!(!q.contains_key("login_hint") && !q.contains_key("prompt"));
    // Lee has no Authenticator: a password-only sign-in is enough here.
    let callback = browser_sign_in(
        &f.sim,
        &start.authorize_url,
        "lee.gu@contoso.com",
        "Contract-Oak-51",
    )
    .await;
    let completed = f
        .verifier
        .complete(&f.oidc, &start.state, &callback.code.unwrap())
        .await
        .unwrap();
    assert_eq!(
        completed,
        Completed::SignIn {
            tenant: f.tenant.clone(),
            user: user(LEE),
            display_name: "Lee Gu".to_owned(),
        }
    );
}

#[tokio::test]
async fn a_step_up_is_refused_for_another_user_or_without_mfa() {
    let f = Fixture::new().await;
    // Adele's step-up, but Alex signs in (with MFA).
    let start = f
        .verifier
        .begin_step_up(&f.oidc, &f.tenant, &user(ADELE), None, REDIRECT)
        .await
        .unwrap();
    let callback = browser_sign_in(
        &f.sim,
        &start.authorize_url,
        "alex.wilber@contoso.com",
        "Sunny-Meadow-17",
    )
    .await;
    let problem = refused(
        f.verifier
            .complete(&f.oidc, &start.state, &callback.code.unwrap())
            .await,
    );
    assert_eq!(
        problem,
        TokenProblem::WrongUser {
            expected: user(ADELE),
            got: ALEX.to_owned()
        }
    );

    // Lee is who he says, but signs in with a password alone.
    let start = f
        .verifier
        .begin_step_up(&f.oidc, &f.tenant, &user(LEE), None, REDIRECT)
        .await
        .unwrap();
    let callback = browser_sign_in(
        &f.sim,
        &start.authorize_url,
        "lee.gu@contoso.com",
        "Contract-Oak-51",
    )
    .await;
    let problem = refused(
        f.verifier
            .complete(&f.oidc, &start.state, &callback.code.unwrap())
            .await,
    );
    assert_eq!(
        problem,
        TokenProblem::NoMfa {
            amr: vec!["pwd".to_owned()]
        }
    );
}

#[tokio::test]
async fn a_token_from_a_sign_in_with_another_nonce_is_refused() {
    let f = Fixture::new().await;
    let start = f
        .verifier
        .begin_step_up(&f.oidc, &f.tenant, &user(ADELE), None, REDIRECT)
        .await
        .unwrap();
    // The request is altered on its way through the browser.
    let tampered = with_query_param(&start.authorize_url, "nonce", "attacker-chosen-nonce");
    let callback = browser_sign_in(
        &f.sim,
        &tampered,
        "adele.vance@contoso.com",
        "Correct-Horse-42",
    )
    .await;
    let problem = refused(
        f.verifier
            .complete(&f.oidc, &start.state, &callback.code.unwrap())
            .await,
    );
    assert_eq!(problem, TokenProblem::Nonce);
}

#[tokio::test]
async fn unknown_expired_and_misdirected_states_are_refused() {
    let f = Fixture::new().await;
    for state in ["garbage", "", &"A".repeat(43), &"x".repeat(10_000)] {
        assert!(
            matches!(
                f.verifier.complete(&f.oidc, state, "code").await,
                Err(VerificationError::UnknownState)
            ),
            "{state:.20}"
        );
        assert!(matches!(
            f.verifier.pending_tenant(state).await,
            Err(VerificationError::UnknownState)
        ));
    }

    // Another tenant's client: refused, and the sign-in is still pending.
    let start = f
        .verifier
        .begin_step_up(&f.oidc, &f.tenant, &user(ADELE), None, REDIRECT)
        .await
        .unwrap();
    let other: TenantId = "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap();
    let elsewhere = OidcClient::new(&f.sim.base_url, other.clone(), "app", None).unwrap();
    assert!(matches!(
        f.verifier.complete(&elsewhere, &start.state, "code").await,
        Err(VerificationError::WrongTenant { .. })
    ));
    assert!(matches!(
        f.verifier
            .begin_step_up(&elsewhere, &f.tenant, &user(ADELE), None, REDIRECT)
            .await,
        Err(VerificationError::WrongTenant { .. })
    ));
    assert_eq!(
        f.verifier.pending_tenant(&start.state).await.unwrap(),
        f.tenant
    );

    // A code the authority never issued: refused by its token endpoint, and
    // the state is spent.
    match f
        .verifier
        .complete(&f.oidc, &start.state, "not-a-code")
        .await
    {
        Err(VerificationError::CodeRefused { error, description }) => {
            assert_eq!(error, "invalid_grant");
            assert!(description.contains("AADSTS70000"), "{description}");
        }
        other => panic!("expected the token endpoint's refusal, got {other:?}"),
    }
    assert!(matches!(
        f.verifier.pending_tenant(&start.state).await,
        Err(VerificationError::StateUsed)
    ));

    // Past its ten minutes: expired, before anything is redeemed.
    let start = f
        .verifier
        .begin_step_up(&f.oidc, &f.tenant, &user(ADELE), None, REDIRECT)
        .await
        .unwrap();
    let callback = browser_sign_in(
        &f.sim,
        &start.authorize_url,
        "adele.vance@contoso.com",
        "Correct-Horse-42",
    )
    .await;
    f.advance(FLOW_SECONDS + 1);
    assert!(matches!(
        f.verifier.pending_tenant(&start.state).await,
        Err(VerificationError::Expired)
    ));
    assert!(matches!(
        f.verifier
            .complete(&f.oidc, &start.state, callback.code.as_deref().unwrap())
            .await,
        Err(VerificationError::Expired)
    ));

    // Redirect URIs that could leak the code are refused up front.
    for bad in [
        "http://chat.example/callback",
        "callback",
        "https://x/cb#frag",
    ] {
        assert!(matches!(
            f.verifier.begin_sign_in(&f.oidc, bad).await,
            Err(VerificationError::InvalidInput(_))
        ));
    }
}

#[tokio::test]
async fn a_restart_invalidates_pending_sign_ins() {
    let f = Fixture::new().await;
    let start = f
        .verifier
        .begin_step_up(&f.oidc, &f.tenant, &user(ADELE), None, REDIRECT)
        .await
        .unwrap();
    let callback = browser_sign_in(
        &f.sim,
        &start.authorize_url,
        "adele.vance@contoso.com",
        "Correct-Horse-42",
    )
    .await;
    // A new process: a new key, so the flow's verifier and nonce are gone.
    let restarted = verifier_on(&f.audit, &f.offset);
    assert!(matches!(
        restarted
            .complete(&f.oidc, &start.state, &callback.code.unwrap())
            .await,
        Err(VerificationError::Expired)
    ));
    assert!(callback.error.is_none());
}

// ---------------------------------------------------------------------------
// ID tokens from an authority the test serves itself

/// A stand-in authority: a token endpoint that answers with whatever ID
/// token the test set, and a JWKS the test controls.
#[derive(Clone, Default)]
struct FakeAuthority {
    id_token: Arc<Mutex<String>>,
    jwks: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    /// The last token request's form.
    last_form: Arc<Mutex<HashMap<String, String>>>,
}

async fn fake_token(
    State(fake): State<FakeAuthority>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    *fake.last_form.lock().unwrap() = form;
    Json(json!({"token_type": "Bearer", "id_token": *fake.id_token.lock().unwrap()}))
}

async fn fake_keys(State(fake): State<FakeAuthority>) -> Json<Value> {
    fake.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(fake.jwks.lock().unwrap().clone())
}

impl FakeAuthority {
    /// Serves on a free loopback port; returns the authority's base URL.
    async fn start(&self) -> String {
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(fake_token))
            .route("/{tenant}/discovery/v2.0/keys", get(fake_keys))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }
}

/// The emulator's well-known development key: a real RSA key the test can
/// sign with.
fn signing_key() -> EncodingKey {
    let pem = std::fs::read(root().join("host/src/sim/keys/well-known-signing-key.pem")).unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

fn jwk(kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    jwk
}

/// The same key id, another public key: what a forged token would meet.
fn tampered_jwk(kid: &str) -> Jwk {
    let mut jwk = jwk(kid);
    if let AlgorithmParameters::RSA(rsa) = &mut jwk.algorithm {
        let mut n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&rsa.n)
            .unwrap();
        let last = n.len() - 1;
        n[last] ^= 0x02;
        rsa.n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n);
    }
    jwk
}

fn sign(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &signing_key()).unwrap()
}

struct FakeFixture {
    fake: FakeAuthority,
    oidc: OidcClient,
    verifier: Verifier,
    tenant: TenantId,
    offset: Arc<AtomicI64>,
    _audit: AuditLog,
    _dir: tempfile::TempDir,
}

impl FakeFixture {
    async fn new(keys: Vec<Jwk>) -> FakeFixture {
        let fake = FakeAuthority::default();
        *fake.jwks.lock().unwrap() = serde_json::to_value(JwkSet { keys }).unwrap();
        let authority = fake.start().await;
        let tenant: TenantId = "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap();
        let oidc = OidcClient::new(&authority, tenant.clone(), "latchkey-app", None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&dir.path().join("latchkey.db"))
            .await
            .unwrap();
        let offset = Arc::new(AtomicI64::new(0));
        FakeFixture {
            verifier: verifier_on(&audit, &offset),
            fake,
            oidc,
            tenant,
            offset,
            _audit: audit,
            _dir: dir,
        }
    }

    /// Claims that pass for a step-up of Adele started as `start`.
    fn claims(&self, start: &StepUpStart) -> Value {
        let now = real_now() + self.offset.load(Ordering::SeqCst);
        json!({
            "iss": format!("{}/{}/v2.0", self.oidc.authority(), self.tenant),
            "aud": "latchkey-app",
            "iat": now, "nbf": now, "exp": now + 3600, "auth_time": now,
            "nonce": query(&start.authorize_url)["nonce"],
            "tid": self.tenant.as_str(),
            "oid": ADELE,
            "name": "Adele Vance",
            "amr": ["pwd", "mfa"],
        })
    }

    /// A step-up of Adele whose token endpoint answers with `token(claims)`.
    async fn step_up(
        &self,
        token: impl Fn(Value) -> String,
    ) -> Result<Completed, VerificationError> {
        let start = self
            .verifier
            .begin_step_up(&self.oidc, &self.tenant, &user(ADELE), None, REDIRECT)
            .await
            .unwrap();
        *self.fake.id_token.lock().unwrap() = token(self.claims(&start));
        let result = self
            .verifier
            .complete(&self.oidc, &start.state, "the-code")
            .await;
        // Whatever the token, the redemption was a proper PKCE one.
        let form = self.fake.last_form.lock().unwrap().clone();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(form["code_verifier"].as_bytes()));
        assert_eq!(challenge, query(&start.authorize_url)["code_challenge"]);
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["code"], "the-code");
        assert_eq!(form["redirect_uri"], REDIRECT);
        assert!(
            !form.contains_key("client_secret"),
            "a public client sends none"
        );
        result
    }
}

#[tokio::test]
async fn every_claim_of_the_id_token_is_checked() {
    let f = FakeFixture::new(vec![jwk("k1")]).await;
    // The control: everything right passes.
    let passed = f.step_up(|c| sign(&c, "k1")).await.unwrap();
    assert!(matches!(passed, Completed::StepUp(ref p) if p.requester == user(ADELE)));

    let edit = |key: &'static str, value: Value| {
        move |mut c: Value| {
            c[key] = value.clone();
            sign(&c, "k1")
        }
    };
    assert_eq!(
        refused(f.step_up(edit("aud", json!("someone-elses-app"))).await),
        TokenProblem::Audience {
            expected: "latchkey-app".into(),
            got: "someone-elses-app".into()
        }
    );
    assert!(matches!(
        refused(
            f.step_up(edit("iss", json!("https://evil.example/x/v2.0")))
                .await
        ),
        TokenProblem::Issuer { .. }
    ));
    assert!(matches!(
        refused(
            f.step_up(edit("tid", json!("00000000-0000-0000-0000-000000000001")))
                .await
        ),
        TokenProblem::Tenant { .. }
    ));
    let long_ago = real_now() - 7200;
    assert_eq!(
        refused(f.step_up(edit("exp", json!(long_ago))).await),
        TokenProblem::Expired { exp: long_ago }
    );
    let later = real_now() + 3600;
    assert_eq!(
        refused(f.step_up(edit("nbf", json!(later))).await),
        TokenProblem::NotYetValid { nbf: later }
    );
    assert_eq!(
        refused(f.step_up(edit("nonce", json!("replayed"))).await),
        TokenProblem::Nonce
    );
    assert!(matches!(
        refused(f.step_up(edit("auth_time", json!(long_ago))).await),
        TokenProblem::Stale { .. }
    ));
    // A key id the authority does not publish.
    assert_eq!(
        refused(f.step_up(|c| sign(&c, "k-unknown")).await),
        TokenProblem::UnknownKey("k-unknown".into())
    );
    // Not RS256: an HMAC "signature" with a key anyone could guess, and an
    // unsigned token.
    let hs256 = |c: Value| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(b"latchkey-app")).unwrap()
    };
    assert!(matches!(
        refused(f.step_up(hs256).await),
        TokenProblem::Algorithm(_)
    ));
    let unsigned = |c: Value| {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            b64.encode(c.to_string())
        )
    };
    assert!(matches!(
        refused(f.step_up(unsigned).await),
        TokenProblem::Malformed(_)
    ));
    // Claims altered after signing.
    let altered = |c: Value| {
        let token = sign(&c, "k1");
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = c.clone();
        claims["oid"] = json!(ALEX);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        )
    };
    assert_eq!(
        refused(f.step_up(altered).await),
        TokenProblem::BadSignature
    );
    assert!(matches!(
        refused(f.step_up(|_| "not.a.jwt".into()).await),
        TokenProblem::Malformed(_)
    ));
}

#[tokio::test]
async fn a_token_signed_by_a_key_other_than_the_authoritys_is_refused() {
    // The JWKS publishes another public key under the token's key id.
    let f = FakeFixture::new(vec![tampered_jwk("k1")]).await;
    assert_eq!(
        refused(f.step_up(|c| sign(&c, "k1")).await),
        TokenProblem::BadSignature
    );
}

#[tokio::test]
async fn the_jwks_is_cached_and_fetched_again_for_a_new_key_id() {
    let f = FakeFixture::new(vec![jwk("k1")]).await;
    for _ in 0..3 {
        f.step_up(|c| sign(&c, "k1")).await.unwrap();
    }
    assert_eq!(f.fake.jwks_fetches.load(Ordering::SeqCst), 1, "cached");
    // The authority rolls over to a new key id.
    *f.fake.jwks.lock().unwrap() = serde_json::to_value(JwkSet {
        keys: vec![jwk("k2")],
    })
    .unwrap();
    // Right after a fetch, an unknown key id does not hammer the authority.
    assert!(matches!(
        refused(f.step_up(|c| sign(&c, "k2")).await),
        TokenProblem::UnknownKey(_)
    ));
    assert_eq!(f.fake.jwks_fetches.load(Ordering::SeqCst), 1);
    // A minute later, it looks again and finds the new key.
    f.offset.fetch_add(61, Ordering::SeqCst);
    f.step_up(|c| sign(&c, "k2")).await.unwrap();
    assert_eq!(f.fake.jwks_fetches.load(Ordering::SeqCst), 2);
    // And the old key is gone.
    f.offset.fetch_add(61, Ordering::SeqCst);
    assert!(matches!(
        refused(f.step_up(|c| sign(&c, "k1")).await),
        TokenProblem::UnknownKey(_)
    ));
}

// ---------------------------------------------------------------------------
// Recovery email codes

#[tokio::test]
async fn a_recovery_code_goes_to_the_registered_address_and_passes_once() {
    let f = Fixture::new().await;
    let adele = user(ADELE);
    let sent = f
        .verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    assert_eq!(sent.to_masked, "a***@example.net");
    assert!((sent.expires_at - real_now() - CODE_SECONDS).abs() <= 2);
    let outbox = f.outbox().await;
    assert_eq!(outbox.len(), 1);
    let mail = &outbox[0];
    assert_eq!(mail["to"], json!(["adele.vance.home@example.net"]));
    assert_eq!(mail["from"], HELPDESK);
    assert_eq!(mail["saveToSentItems"], false);
    let code = f.last_code_to("adele.vance.home@example.net").await;

    // Only an HMAC is kept: the code is nowhere in the database.
    let rows: Vec<(String, String, String)> = f
        .audit
        .db()
        .run(|c| {
            c.prepare("SELECT id, code_mac, to_masked FROM verification_codes")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!format!("{rows:?}").contains(&code));

    // Typed with a space in the middle, as people do.
    let typed = format!("{} {}", &code[..4], &code[4..]);
    let passed = f
        .verifier
        .check_email_code(&f.tenant, &adele, &typed)
        .await
        .unwrap();
    assert_eq!(passed.requester, adele);
    assert_eq!(passed.verification().method, Method::RecoveryEmailCode);
    assert!(matches!(
        f.verifier.check_email_code(&f.tenant, &adele, &code).await,
        Err(VerificationError::NoCode)
    ));
}

fn wrong_code(right: &str) -> String {
    if right == "00000000" {
        "11111111"
    } else {
        "00000000"
    }
    .to_owned()
}

#[tokio::test]
async fn wrong_codes_count_down_and_the_fifth_burns_the_code() {
    let f = Fixture::new().await;
    let adele = user(ADELE);
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    let code = f.last_code_to("adele.vance.home@example.net").await;
    let wrong = wrong_code(&code);
    for left in [4, 3] {
        assert!(matches!(
            f.verifier.check_email_code(&f.tenant, &adele, &wrong).await,
            Err(VerificationError::Wrong { tries_left }) if tries_left == left
        ));
    }
    // Still within its tries: the right code passes.
    f.verifier
        .check_email_code(&f.tenant, &adele, &code)
        .await
        .unwrap();

    // A new code, five wrong tries.
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    let code = f.last_code_to("adele.vance.home@example.net").await;
    let wrong = wrong_code(&code);
    for left in [4, 3, 2, 1] {
        assert!(matches!(
            f.verifier.check_email_code(&f.tenant, &adele, &wrong).await,
            Err(VerificationError::Wrong { tries_left }) if tries_left == left
        ));
    }
    assert!(matches!(
        f.verifier.check_email_code(&f.tenant, &adele, &wrong).await,
        Err(VerificationError::TooManyTries)
    ));
    // Burnt: even the right code no longer works.
    assert!(matches!(
        f.verifier.check_email_code(&f.tenant, &adele, &code).await,
        Err(VerificationError::TooManyTries)
    ));
}

#[tokio::test]
async fn concurrent_guesses_get_five_tries_between_them() {
    let f = Fixture::new().await;
    let adele = user(ADELE);
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    let code = f.last_code_to("adele.vance.home@example.net").await;
    let guesses: Vec<_> = (0..20u32)
        .map(|i| {
            let (verifier, tenant, adele) = (f.verifier.clone(), f.tenant.clone(), adele.clone());
            let guess = format!(
                "{:08}",
                (code.parse::<u32>().unwrap() + 1 + i) % 100_000_000
            );
            tokio::spawn(async move { verifier.check_email_code(&tenant, &adele, &guess).await })
        })
        .collect();
    let mut wrong = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            Err(VerificationError::Wrong { .. }) => wrong += 1,
            Err(VerificationError::TooManyTries) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(wrong, 4, "four wrong answers, then the fifth try burns it");
    assert!(matches!(
        f.verifier.check_email_code(&f.tenant, &adele, &code).await,
        Err(VerificationError::TooManyTries)
    ));
}

#[tokio::test]
async fn a_code_expires_after_ten_minutes_and_a_restart_voids_it() {
    let f = Fixture::new().await;
    let adele = user(ADELE);
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    let code = f.last_code_to("adele.vance.home@example.net").await;
    f.advance(CODE_SECONDS + 1);
    assert!(matches!(
        f.verifier.check_email_code(&f.tenant, &adele, &code).await,
        Err(VerificationError::Expired)
    ));

    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    let code = f.last_code_to("adele.vance.home@example.net").await;
    let restarted = verifier_on(&f.audit, &f.offset);
    assert!(matches!(
        restarted.check_email_code(&f.tenant, &adele, &code).await,
        Err(VerificationError::Expired)
    ));
}

#[tokio::test]
async fn codes_are_rate_limited_per_requester_and_only_the_latest_counts() {
    let f = Fixture::new().await;
    let adele = user(ADELE);
    let mut codes = Vec::new();
    for _ in 0..3 {
        f.verifier
            .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
            .await
            .unwrap();
        codes.push(f.last_code_to("adele.vance.home@example.net").await);
    }
    match f
        .verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
    {
        Err(VerificationError::RateLimited { retry_after_secs }) => {
            assert!(
                (3590..=3601).contains(&retry_after_secs),
                "{retry_after_secs}"
            );
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    assert_eq!(f.outbox().await.len(), 3, "the fourth was not sent");
    // Another requester is not limited by Adele's codes.
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &user(ALEX))
        .await
        .unwrap();

    // An earlier code was replaced by the later ones.
    if codes[0] != codes[2] {
        assert!(matches!(
            f.verifier
                .check_email_code(&f.tenant, &adele, &codes[0])
                .await,
            Err(VerificationError::Wrong { .. })
        ));
    }
    f.verifier
        .check_email_code(&f.tenant, &adele, &codes[2])
        .await
        .unwrap();

    // An hour later, codes can be sent again.
    f.advance(CODE_RATE_WINDOW_SECONDS + 1);
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_code_only_verifies_the_requester_it_was_sent_to() {
    let f = Fixture::new().await;
    let (adele, alex) = (user(ADELE), user(ALEX));
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &adele)
        .await
        .unwrap();
    let adeles = f.last_code_to("adele.vance.home@example.net").await;
    assert!(matches!(
        f.verifier.check_email_code(&f.tenant, &alex, &adeles).await,
        Err(VerificationError::NoCode)
    ));
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &alex)
        .await
        .unwrap();
    let alexs = f.last_code_to("alex.wilber.home@example.net").await;
    if adeles != alexs {
        assert!(matches!(
            f.verifier.check_email_code(&f.tenant, &alex, &adeles).await,
            Err(VerificationError::Wrong { tries_left: 4 })
        ));
    }
    // Adele's code still works for Adele.
    f.verifier
        .check_email_code(&f.tenant, &adele, &adeles)
        .await
        .unwrap();
}

#[tokio::test]
async fn no_code_is_sent_without_a_registered_recovery_address() {
    let f = Fixture::new().await;
    // Henrietta has Authenticator and a phone, no email method.
    assert!(matches!(
        f.verifier
            .send_email_code(&f.graph, HELPDESK, &f.tenant, &user(HENRIETTA))
            .await,
        Err(VerificationError::NoRecoveryEmail)
    ));
    assert!(f.outbox().await.is_empty());
    assert!(matches!(
        f.verifier
            .check_email_code(&f.tenant, &user(HENRIETTA), "12345678")
            .await,
        Err(VerificationError::NoCode)
    ));
    // A mailbox Graph cannot send from: the error is Graph's, and the
    // failed send does not count against the requester.
    for _ in 0..4 {
        assert!(matches!(
            f.verifier
                .send_email_code(&f.graph, "nobody@contoso.com", &f.tenant, &user(ADELE))
                .await,
            Err(VerificationError::Graph(_))
        ));
    }
    f.verifier
        .send_email_code(&f.graph, HELPDESK, &f.tenant, &user(ADELE))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// Manager confirmation

#[tokio::test]
async fn only_the_managers_own_identity_can_answer_and_only_once() {
    let f = Fixture::new().await;
    let (adele, lynne) = (user(ADELE), user(LYNNE));
    let ask = f
        .verifier
        .ask_manager(&f.tenant, &adele, &lynne)
        .await
        .unwrap();
    assert_eq!(ask.manager, lynne);
    assert!((ask.expires_at - real_now() - MANAGER_SECONDS).abs() <= 2);

    // Someone else, and the requester herself: refused, nothing recorded.
    for impostor in [user(ALEX), adele.clone()] {
        assert!(matches!(
            f.verifier.answer_manager(&ask.id, &impostor, true).await,
            Err(VerificationError::NotTheManager)
        ));
    }
    // Survives a restart: a confirmation request holds no secret.
    let restarted = verifier_on(&f.audit, &f.offset);
    let answer = restarted
        .answer_manager(&ask.id, &lynne, true)
        .await
        .unwrap();
    assert_eq!(answer.tenant, f.tenant);
    assert_eq!(answer.requester, adele);
    assert!(answer.confirmed);
    assert_eq!(
        answer.verification().map(|v| v.method),
        Some(Method::ManagerConfirmation)
    );
    for confirm in [true, false] {
        assert!(matches!(
            f.verifier.answer_manager(&ask.id, &lynne, confirm).await,
            Err(VerificationError::AlreadyAnswered)
        ));
    }

    // A refusal is an answer, and verifies nothing.
    let ask = f
        .verifier
        .ask_manager(&f.tenant, &adele, &lynne)
        .await
        .unwrap();
    let refusal = f
        .verifier
        .answer_manager(&ask.id, &lynne, false)
        .await
        .unwrap();
    assert!(!refusal.confirmed);
    assert_eq!(refusal.verification(), None);

    // Too late.
    let ask = f
        .verifier
        .ask_manager(&f.tenant, &adele, &lynne)
        .await
        .unwrap();
    f.advance(MANAGER_SECONDS + 1);
    assert!(matches!(
        f.verifier.answer_manager(&ask.id, &lynne, true).await,
        Err(VerificationError::Expired)
    ));
    assert!(matches!(
        f.verifier
            .answer_manager("no-such-request", &lynne, true)
            .await,
        Err(VerificationError::UnknownRequest(_))
    ));
    assert!(matches!(
        f.verifier.ask_manager(&f.tenant, &adele, &adele).await,
        Err(VerificationError::InvalidInput(_))
    ));
}
