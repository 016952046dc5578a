//! The Slack channel over real HTTP, offline: a fake Slack Web API (axum on
//! loopback) records what the bot sends and answers `users.info` from a
//! table; the emulator is Entra; every request is signed here with an HMAC
//! written independently of the product's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey::slack::{Slack, SlackSettings};
use latchkey_tests::{emulator_sign_in, temporary_access_pass};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5-test";
const ADELE: &str = "adele.vance@contoso.com";
const ALEX: &str = "alex.wilber@contoso.com";
const MEGAN: &str = "megan.bowen@contoso.com";

/// HMAC-SHA256 (RFC 2104), written out here so the test does not sign with
/// the code it checks.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut base = format!("v0:{timestamp}:").into_bytes();
    base.extend_from_slice(body);
    format!("v0={}", hex::encode(hmac_sha256(secret.as_bytes(), &base)))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What the fake Web API saw and knows.
#[derive(Default)]
struct Fake {
    /// `(method, body)` of each call, in order.
    calls: Vec<(String, Value)>,
    /// `users.info` answers by user id.
    users: HashMap<String, Value>,
    /// `users.lookupByEmail` answers: user ids by email.
    emails: HashMap<String, String>,
}

type Shared = Arc<Mutex<Fake>>;

async fn users_info(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let id = query.get("user").cloned().unwrap_or_default();
    let mut fake = fake.lock().unwrap();
    fake.calls
        .push(("users.info".into(), json!({ "user": id })));
    Json(match fake.users.get(&id) {
        Some(user) => json!({ "ok": true, "user": user }),
        None => json!({ "ok": false, "error": "user_not_found" }),
    })
}

async fn lookup_by_email(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let email = query.get("email").cloned().unwrap_or_default();
    let mut fake = fake.lock().unwrap();
    fake.calls
        .push(("users.lookupByEmail".into(), json!({ "email": email })));
    Json(match fake.emails.get(&email) {
        Some(id) => json!({ "ok": true, "user": { "id": id } }),
        None => json!({ "ok": false, "error": "users_not_found" }),
    })
}

async fn open(State(fake): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let user = body["users"].as_str().unwrap_or_default().to_owned();
    fake.lock()
        .unwrap()
        .calls
        .push(("conversations.open".into(), body));
    Json(json!({ "ok": true, "channel": { "id": format!("D{user}") } }))
}

async fn post_message(State(fake): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let channel = body["channel"].clone();
    fake.lock()
        .unwrap()
        .calls
        .push(("chat.postMessage".into(), body));
    Json(json!({ "ok": true, "channel": channel, "ts": "1700000000.000100" }))
}

fn person(id: &str, email: Option<&str>, extra: Value) -> Value {
    let mut user = json!({ "id": id, "team_id": "T1", "profile": {} });
    if let Some(email) = email {
        user["profile"]["email"] = json!(email);
    }
    for (k, v) in extra.as_object().unwrap() {
        user[k] = v.clone();
    }
    user
}

struct Running {
    demo_url: String,
    sim: latchkey::sim::Sim,
    slack_url: String,
    fake: Shared,
    http: reqwest::Client,
}

async fn start() -> Running {
    let demo = latchkey_tests::demo().await;
    let fake: Shared = Arc::default();
    {
        let mut f = fake.lock().unwrap();
        f.users.insert(
            "UADELE".into(),
            person("UADELE", Some(ADELE), json!({"is_email_confirmed": true})),
        );
        f.users
            .insert("UALEX".into(), person("UALEX", Some(ALEX), json!({})));
        f.users.insert(
            "UMEGAN".into(),
            person("UMEGAN", Some(MEGAN), json!({"is_email_confirmed": true})),
        );
        f.emails.insert(MEGAN.into(), "UMEGAN".into());
        f.users.insert(
            "UGUEST".into(),
            person("UGUEST", Some(MEGAN), json!({"is_restricted": true})),
        );
        f.users.insert(
            "USINGLE".into(),
            person("USINGLE", Some(MEGAN), json!({"is_ultra_restricted": true})),
        );
        f.users.insert(
            "UBOT".into(),
            person("UBOT", Some(MEGAN), json!({"is_bot": true})),
        );
        f.users.insert(
            "UGONE".into(),
            person("UGONE", Some(MEGAN), json!({"deleted": true})),
        );
        f.users
            .insert("UNOMAIL".into(), person("UNOMAIL", None, json!({})));
        f.users.insert(
            "UUNCONF".into(),
            person("UUNCONF", Some(MEGAN), json!({"is_email_confirmed": false})),
        );
        f.users.insert(
            "UNOBODY".into(),
            person("UNOBODY", Some("nobody@contoso.com"), json!({})),
        );
    }
    let api = Router::new()
        .route("/api/users.info", get(users_info))
        .route("/api/users.lookupByEmail", get(lookup_by_email))
        .route("/api/conversations.open", post(open))
        .route("/api/chat.postMessage", post(post_message))
        .with_state(Arc::clone(&fake));
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}/api", api_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(api_listener, api).await });

    let slack = Slack::new(
        Arc::clone(demo.chat.engine()),
        Arc::clone(&demo.service),
        SlackSettings {
            signing_secret: SECRET.into(),
            bot_token: "xoxb-offline".into(),
            api_base_url: api_url,
            tenant: demo.tenant.clone(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slack_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(Arc::new(slack).serve(listener, std::future::pending()));
    let running = Running {
        demo_url: demo.url.trim_end_matches('/').to_owned(),
        sim: demo.sim.clone(),
        slack_url,
        fake,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    tokio::spawn(demo.serve(std::future::pending()));
    running
}

fn message(event_id: &str, user: &str, channel: &str, channel_type: &str, text: &str) -> Value {
    json!({
        "token": "unused", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id, "event_time": now(),
        "event": { "type": "message", "channel_type": channel_type, "user": user,
                   "channel": channel, "text": text, "ts": "1700000000.000001" }
    })
}

impl Running {
    /// POSTs `body` to `path` signed with `secret` at `timestamp`.
    async fn send_signed(
        &self,
        path: &str,
        body: &[u8],
        content_type: &str,
        secret: &str,
        timestamp: i64,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let ts = timestamp.to_string();
        let mut request = self
            .http
            .post(format!("{}{path}", self.slack_url))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", sign(secret, &ts, body))
            .body(body.to_vec());
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        request.send().await.unwrap()
    }

    async fn event(&self, body: &Value) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).unwrap();
        let started = Instant::now();
        let answer = self
            .send_signed(
                "/slack/events",
                &bytes,
                "application/json",
                SECRET,
                now(),
                &[],
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "acknowledged within 3 s"
        );
        answer
    }

    fn posts(&self) -> Vec<Value> {
        self.fake
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(m, _)| m == "chat.postMessage")
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn calls(&self) -> usize {
        self.fake.lock().unwrap().calls.len()
    }

    /// Waits for a posted message matching `found`.
    async fn wait_post(&self, what: &str, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = self.posts().into_iter().find(|p| found(p)) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no post {what}: {:#?}",
                self.posts()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The emulator's sign-in at `authorize_url` as `upn` with password and
    /// Authenticator (approved through the simulated phone): the redirect
    /// back to the web chat's callback.
    async fn sign_in_at_emulator(&self, authorize_url: &str, upn: &str) -> String {
        emulator_sign_in(&self.http, &self.sim, authorize_url, upn, "password").await
    }
}

#[tokio::test]
async fn url_verification_echoes_the_challenge() {
    let slack = start().await;
    let answer = slack
        .event(&json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}))
        .await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[tokio::test]
async fn unsigned_stale_future_tampered_and_wrongly_signed_requests_get_401_and_nothing_happens() {
    let slack = start().await;
    let body = serde_json::to_vec(&message(
        "Ev1",
        "UADELE",
        "DUADELE",
        "im",
        "I forgot my password",
    ))
    .unwrap();
    let json_type = "application/json";
    let cases: Vec<(&str, reqwest::Response)> = vec![
        (
            "stale by 6 minutes",
            slack
                .send_signed("/slack/events", &body, json_type, SECRET, now() - 360, &[])
                .await,
        ),
        (
            "6 minutes in the future",
            slack
                .send_signed("/slack/events", &body, json_type, SECRET, now() + 360, &[])
                .await,
        ),
        (
            "wrong secret",
            slack
                .send_signed(
                    "/slack/events",
                    &body,
                    json_type,
                    "not-the-secret",
                    now(),
                    &[],
                )
                .await,
        ),
        (
            "missing headers",
            slack
                .http
                .post(format!("{}/slack/events", slack.slack_url))
                .header("content-type", json_type)
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        ),
        (
            "missing signature",
            slack
                .http
                .post(format!("{}/slack/events", slack.slack_url))
                .header("x-slack-request-timestamp", now().to_string())
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        ),
        (
            "garbage signature",
            slack
                .http
                .post(format!("{}/slack/events", slack.slack_url))
                .header("x-slack-request-timestamp", now().to_string())
                .header("x-slack-signature", "v0=00")
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, answer) in cases {
        assert_eq!(answer.status(), 401, "{what}");
    }
    // Tampered: signed over one body, another sent.
    let ts = now().to_string();
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("UADELE", "UALEX");
    let answer = slack
        .http
        .post(format!("{}/slack/events", slack.slack_url))
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(SECRET, &ts, &body))
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401, "tampered body");
    // The same for a button press.
    let form = "payload=%7B%22type%22%3A%22block_actions%22%7D";
    let answer = slack
        .send_signed(
            "/slack/interactivity",
            form.as_bytes(),
            "application/x-www-form-urlencoded",
            SECRET,
            now() - 360,
            &[],
        )
        .await;
    assert_eq!(answer.status(), 401, "stale button press");
    // A body over the limit is refused.
    let big = vec![b' '; latchkey::slack::MAX_BODY_BYTES + 1];
    let answer = slack
        .send_signed("/slack/events", &big, json_type, SECRET, now(), &[])
        .await;
    assert_eq!(answer.status(), 413);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.calls(), 0, "nothing was looked up or posted");
    // The one correctly signed copy is processed.
    assert_eq!(
        slack
            .event(&serde_json::from_slice(&body).unwrap())
            .await
            .status(),
        200
    );
    slack
        .wait_post("the greeting or step-up", |p| p["channel"] == "DUADELE")
        .await;
}

#[tokio::test]
async fn situation_1_in_a_dm_step_up_then_the_password_only_in_the_dm_and_a_retry_is_processed_once()
 {
    let slack = start().await;
    let before = slack.sim.tenant().user(ADELE).unwrap().password.clone();
    let event = message("Ev100", "UADELE", "DUADELE", "im", "I forgot my password");
    assert_eq!(slack.event(&event).await.status(), 200);
    // Slack's retry of the same event: acknowledged, not processed again.
    let bytes = serde_json::to_vec(&event).unwrap();
    let retry = slack
        .send_signed(
            "/slack/events",
            &bytes,
            "application/json",
            SECRET,
            now(),
            &[
                ("x-slack-retry-num", "1"),
                ("x-slack-retry-reason", "http_timeout"),
            ],
        )
        .await;
    assert_eq!(retry.status(), 200);
    let step_up = slack
        .wait_post("with the step-up button", |p| {
            p["blocks"].to_string().contains("\"url\"")
        })
        .await;
    assert_eq!(step_up["channel"], "DUADELE");
    let url = step_up["blocks"][1]["elements"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let step_ups = slack
        .posts()
        .iter()
        .filter(|p| p["blocks"].to_string().contains("\"url\""))
        .count();
    assert_eq!(
        step_ups,
        1,
        "the retry was not processed: {:#?}",
        slack.posts()
    );
    let lookups = slack
        .fake
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, _)| m == "users.info")
        .count();
    assert_eq!(lookups, 1);
    assert_eq!(
        slack.sim.tenant().user(ADELE).unwrap().password,
        before,
        "nothing before the step-up"
    );

    let back = slack.sign_in_at_emulator(&url, ADELE).await;
    latchkey_tests::follow_callback(&slack.http, &slack.demo_url, &back, None).await;

    let password = loop {
        let now_password = slack.sim.tenant().user(ADELE).unwrap().password.clone();
        if now_password != before {
            break now_password;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let shown = slack
        .wait_post("with the new password", |p| {
            p["text"].as_str().unwrap_or_default().contains(&password)
        })
        .await;
    assert_eq!(shown["channel"], "DUADELE", "only in the DM");
    for post in slack.posts() {
        if post["channel"] != "DUADELE" {
            assert!(!post.to_string().contains(&password), "{post}");
        }
    }
    assert!(
        slack
            .sim
            .tenant()
            .user(ADELE)
            .unwrap()
            .force_change_password
    );
}

#[tokio::test]
async fn a_message_in_a_channel_moves_to_a_dm_before_anything_is_said() {
    let slack = start().await;
    let mut event = message(
        "Ev200",
        "UADELE",
        "CGENERAL",
        "channel",
        "<@UBOT1> I forgot my password",
    );
    event["event"]["type"] = json!("app_mention");
    assert_eq!(slack.event(&event).await.status(), 200);
    let moved = slack
        .wait_post("in the channel", |p| p["channel"] == "CGENERAL")
        .await;
    assert_eq!(moved["text"], latchkey::slack::MOVED_TO_DM);
    assert_eq!(moved["thread_ts"], "1700000000.000001");
    slack
        .wait_post("with the step-up, in the DM", |p| {
            p["channel"] == "DUADELE" && p["blocks"].to_string().contains("\"url\"")
        })
        .await;
    let opened = slack
        .fake
        .lock()
        .unwrap()
        .calls
        .iter()
        .any(|(m, b)| m == "conversations.open" && b["users"] == "UADELE");
    assert!(opened, "the DM was opened with conversations.open");
    let in_channel = slack
        .posts()
        .into_iter()
        .filter(|p| p["channel"] == "CGENERAL")
        .count();
    assert_eq!(in_channel, 1, "only the move is said in the channel");
}

#[tokio::test]
async fn guests_bots_deleted_unconfirmed_and_unmatched_people_are_refused_with_a_reply() {
    let slack = start().await;
    // Two Entra users with Alex's address.
    {
        let mut tenant = slack.sim.tenant();
        let megan = tenant
            .users
            .iter_mut()
            .find(|u| u.user_principal_name == MEGAN)
            .unwrap();
        megan.mail = Some(ALEX.to_owned());
    }
    let cases = [
        ("UGUEST", "Guests"),
        ("USINGLE", "Guests"),
        ("UBOT", "not bots"),
        ("UGONE", "deactivated"),
        ("UNOMAIL", "no confirmed email"),
        ("UUNCONF", "no confirmed email"),
        ("UNOBODY", "no Microsoft 365 account"),
        ("UALEX", "more than one"),
        ("USTRANGER", "could not look up your Slack profile"),
    ];
    for (i, (user, _)) in cases.iter().enumerate() {
        let event = message(
            &format!("Ev3{i}"),
            user,
            &format!("D{user}"),
            "im",
            "I forgot my password",
        );
        assert_eq!(slack.event(&event).await.status(), 200);
    }
    for (user, says) in cases {
        let reply = slack
            .wait_post(says, |p| p["channel"] == format!("D{user}"))
            .await;
        assert!(
            reply["text"].as_str().unwrap().contains(says),
            "{user}: {reply}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slack.posts().len(),
        cases.len(),
        "one refusal each, nothing else: {:#?}",
        slack.posts()
    );
    let opened = slack
        .fake
        .lock()
        .unwrap()
        .calls
        .iter()
        .any(|(m, _)| m == "conversations.open");
    assert!(!opened);
}

#[tokio::test]
async fn bot_messages_edits_and_a_button_from_a_guest_do_nothing_but_refuse() {
    let slack = start().await;
    let mut bot = message("Ev400", "UADELE", "DUADELE", "im", "I forgot my password");
    bot["event"]["bot_id"] = json!("B1");
    let mut edit = message("Ev401", "UADELE", "DUADELE", "im", "I forgot my password");
    edit["event"]["subtype"] = json!("message_changed");
    assert_eq!(slack.event(&bot).await.status(), 200);
    assert_eq!(slack.event(&edit).await.status(), 200);
    let payload = json!({"type": "block_actions", "user": {"id": "UGUEST"}, "team": {"id": "T1"},
        "actions": [{"action_id": "approve", "value": "req-1"}]});
    let form = format!("payload={}", urlencode(&payload.to_string()));
    let answer = slack
        .send_signed(
            "/slack/interactivity",
            form.as_bytes(),
            "application/x-www-form-urlencoded",
            SECRET,
            now(),
            &[],
        )
        .await;
    assert_eq!(answer.status(), 200);
    let refusal = slack
        .wait_post("refusing the guest", |p| p["channel"] == "DUGUEST")
        .await;
    assert!(refusal["text"].as_str().unwrap().contains("Guests"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.posts().len(), 1, "{:#?}", slack.posts());
}

#[tokio::test]
async fn a_manager_who_never_wrote_gets_the_card_by_email_and_only_their_press_counts() {
    let slack = start().await;
    let asked = message(
        "Ev500",
        "UALEX",
        "DUALEX",
        "im",
        "my phone was stolen, I can't do MFA",
    );
    assert_eq!(slack.event(&asked).await.status(), 200);
    // Megan never wrote to the bot: found by her Entra email, checked back
    // to her Entra account, and sent the card in a new DM.
    let card = slack
        .wait_post("the card to Megan", |p| {
            p["channel"] == "DUMEGAN" && p["blocks"].is_array()
        })
        .await;
    let request = card["blocks"][1]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let press = |user: &str| {
        let payload = json!({"type": "block_actions", "user": {"id": user}, "team": {"id": "T1"},
            "actions": [{"action_id": "approve", "value": request}]});
        format!("payload={}", urlencode(&payload.to_string()))
    };
    let tap = |slack: &Running| temporary_access_pass(&slack.sim, ALEX);
    for (user, body) in [("UADELE", press("UADELE")), ("UMEGAN", press("UMEGAN"))] {
        let answer = slack
            .send_signed(
                "/slack/interactivity",
                body.as_bytes(),
                "application/x-www-form-urlencoded",
                SECRET,
                now(),
                &[],
            )
            .await;
        assert_eq!(answer.status(), 200);
        if user == "UADELE" {
            slack
                .wait_post("Adele told no", |p| p["channel"] == "DUADELE")
                .await;
            assert!(tap(&slack).is_none(), "Adele is not Alex's manager");
        }
    }
    let pass = slack
        .wait_post("the pass in Alex's DM", |p| {
            tap(&slack).is_some_and(|t| {
                p["channel"] == "DUALEX" && p["text"].as_str().unwrap_or_default().contains(&t)
            })
        })
        .await;
    assert!(pass["blocks"].is_null());
    for post in slack.posts() {
        if post["channel"] != "DUALEX" {
            assert!(
                !post.to_string().contains(&tap(&slack).unwrap()),
                "the pass went elsewhere: {post}"
            );
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
