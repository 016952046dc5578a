//! The Teams channel driven end to end by Microsoft's own Teams client for
//! developers, the Microsoft 365 Agents Playground (`tests/teams`, from npm;
//! `.ci/run` installs it), offline, on loopback:
//!
//! ```text
//! Playground --activity--> token proxy (test only: adds a Bot Framework JWT
//!     signed by a loopback key) --> the bot (full validation, as in production)
//! bot --replies, cards, new conversations--> recorder --> Playground's connector
//! ```
//!
//! The bot's trust anchors point at loopback (OpenID metadata and JWKS with
//! `endorsements`, token endpoint); nothing in the product is switched off.
//! The Playground's `--service-url` names the recorder, so every call the
//! bot makes to the connector is seen and then forwarded to the Playground.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use latchkey::graph::Secret;
use latchkey::teams::{Teams, TeamsSettings};
use latchkey_tests::{root, temporary_access_pass};
use serde_json::{Value, json};

const APP_ID: &str = "5b0c4ab2-7e11-4c5e-9d4f-2f3c1a9e7d10";
const BOT_TOKEN: &str = "bot-token-from-loopback-authority";
const ALEX: &str = "alex.wilber@contoso.com";
const MEGAN: &str = "megan.bowen@contoso.com";
const ADELE: &str = "adele.vance@contoso.com";
const SIGNING_KEY: &str = include_str!("../../host/src/sim/keys/well-known-signing-key.pem");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// One call the bot made to the connector.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    authorization: String,
    body: Value,
    /// The Playground's answer.
    answer: Value,
}

#[derive(Clone)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Where calls are forwarded; `None`: the recorder answers as a
    /// connector would.
    playground: Option<String>,
    http: reqwest::Client,
}

/// Records the bot's connector call, then forwards it to the Playground.
async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = match &r.playground {
        Some(playground) => {
            let forwarded = r
                .http
                .request(method.clone(), format!("{playground}{}", uri.path()))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = StatusCode::from_u16(forwarded.status().as_u16()).unwrap();
            (status, forwarded.bytes().await.unwrap())
        }
        None => {
            let n = r.calls.lock().unwrap().len();
            let answer = if uri.path().ends_with("/v3/conversations") {
                json!({ "id": format!("created-{n}") })
            } else {
                json!({ "id": format!("activity-{n}") })
            };
            (StatusCode::OK, Bytes::from(answer.to_string()))
        }
    };
    r.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization,
        body: request,
        answer: serde_json::from_slice(&answer).unwrap_or(Value::Null),
    });
    (status, [("content-type", "application/json")], answer).into_response()
}

#[derive(Clone)]
struct Proxy {
    bot: String,
    kid: String,
    http: reqwest::Client,
}

/// The test-only proxy: a Bot Framework token for each activity, minted
/// with the loopback key, then the activity to the bot; the bot's answer back.
async fn proxy(State(p): State<Proxy>, body: Bytes) -> Response {
    let activity: Value = serde_json::from_slice(&body).unwrap();
    let token = bot_framework_token(&p.kid, activity["serviceUrl"].as_str().unwrap());
    let answer = p
        .http
        .post(format!("{}/api/messages", p.bot))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let body = answer.bytes().await.unwrap();
    (status, [("content-type", "application/json")], body).into_response()
}

fn bot_framework_token(kid: &str, service_url: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = json!({
        "iss": "https://api.botframework.com",
        "aud": APP_ID,
        "exp": now() + 300,
        "nbf": now() - 5,
        "serviceurl": service_url,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(SIGNING_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// The Playground process, killed on drop.
struct Playground {
    child: Child,
    url: String,
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn playground_bin() -> PathBuf {
    let bin = root().join("tests/teams/node_modules/.bin/agentsplayground");
    assert!(
        bin.exists(),
        "the Microsoft 365 Agents Playground is not installed: run `npm ci --prefix tests/teams` \
         (.ci/run does)"
    );
    bin
}

struct Person<'a> {
    teams_id: &'a str,
    upn: &'a str,
    name: &'a str,
    oid: String,
}

/// The Playground's configuration: the emulator's tenant and people.
fn playground_config(dir: &std::path::Path, tenant: &str, people: &[Person<'_>]) -> PathBuf {
    let user = |p: &Person<'_>, indent: &str| {
        let (given, surname) = p.name.split_once(' ').unwrap();
        format!(
            "{indent}id: {}\n{indent}name: {}\n{indent}userPrincipleName: {}\n{indent}aadObjectId: {}\n\
             {indent}email: {}\n{indent}givenName: {given}\n{indent}surname: {surname}\n",
            p.teams_id, p.name, p.upn, p.oid, p.upn
        )
    };
    let mut yaml = format!(
        "version: \"0.1.1\"\ntenantId: {tenant}\nbot:\n  id: {APP_ID}\n  name: Latchkey\ncurrentUser:\n{}users:\n",
        user(&people[0], "  ")
    );
    for p in &people[1..] {
        yaml.push_str(&user(p, "    ").replacen("    id:", "  - id:", 1));
    }
    yaml.push_str(
        "personalChat:\n  id: personal-1\ngroupChat:\n  id: group-1\n  name: Group Chat\n\
         team:\n  id: team-1\n  name: Team\n  aadGroupId: 00000000-0000-0000-0000-000000000031\n\
         \x20 channels:\n    - id: channel-1\n      name: General\n",
    );
    let path = dir.join("playground.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Starts the Playground on `port`, sending to the proxy, its connector
/// announced at the recorder; returns once it answers.
#[allow(clippy::too_many_arguments)]
async fn spawn_playground(
    bin: &std::path::Path,
    dir: &std::path::Path,
    tenant: &str,
    people: &[Person<'_>],
    proxy_url: &str,
    recorder: &str,
    port: u16,
    http: &reqwest::Client,
) -> Playground {
    let config = playground_config(dir, tenant, people);
    let child = Command::new(bin)
        .args([
            "-e",
            &format!("{proxy_url}/api/messages"),
            "-c",
            "msteams",
            "-p",
            &port.to_string(),
            "--service-url",
            &format!("{recorder}/_connector"),
            "--disable-telemetry",
        ])
        .env("TEAMSAPPTESTER_BROWSER", "none")
        .env("M365_AGENTS_PLAYGROUND_CONFIG_PATH", &config)
        .env("M365_AGENTS_PLAYGROUND_LOGFILE", dir.join("playground.log"))
        // It stops when its standard input closes: keep a pipe open.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let playground = Playground {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = http
            .get(format!("{}/_internal/v1/testConfig", playground.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Playground did not start: {}",
            std::fs::read_to_string(dir.join("playground.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    playground
}

struct Running {
    playground: Option<Playground>,
    kid: String,
    calls: Arc<Mutex<Vec<Call>>>,
    recorder: String,
    bot: String,
    tenant: String,
    sim: latchkey::sim::Sim,
    http: reqwest::Client,
    oids: std::collections::HashMap<&'static str, String>,
    _dir: tempfile::TempDir,
}

/// The bot in front of the emulator, and the Playground in front of the
/// bot when `with_playground`.
async fn start(with_playground: bool) -> Running {
    let bin = with_playground.then(playground_bin);
    let demo = latchkey_tests::demo().await;
    let http = reqwest::Client::new();
    let tenant = demo.tenant.as_str().to_owned();

    // The loopback Bot Framework: OpenID metadata, the emulator's signing
    // key endorsed for msteams, and a token endpoint for the bot.
    let keys: Value = http
        .get(format!(
            "{}/{tenant}/discovery/v2.0/keys",
            demo.sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut key = keys["keys"][0].clone();
    let kid = key["kid"].as_str().unwrap().to_owned();
    key["endorsements"] = json!(["msteams"]);
    let token_requests = Arc::new(Mutex::new(0u32));
    let counted = Arc::clone(&token_requests);
    let authority = serve(
        Router::new()
            .route(
                "/keys",
                get(move || {
                    let key = key.clone();
                    async move { Json(json!({ "keys": [key] })) }
                }),
            )
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(move || {
                    *counted.lock().unwrap() += 1;
                    async {
                        Json(json!({"access_token": BOT_TOKEN, "expires_in": 3600, "token_type": "Bearer"}))
                    }
                }),
            ),
    )
    .await;
    let metadata = serve(Router::new().route(
        "/openid",
        get({
            let jwks = format!("{authority}/keys");
            move || async move {
                Json(
                    json!({"issuer": "https://api.botframework.com", "jwks_uri": jwks,
                    "id_token_signing_alg_values_supported": ["RS256"]}),
                )
            }
        }),
    ))
    .await;

    // The bot, as `latchkey serve` runs it, on the demo's engine.
    let teams = Teams::new(
        Arc::clone(demo.chat.engine()),
        &demo.service,
        TeamsSettings {
            app_id: APP_ID.into(),
            app_secret: Secret::new("bot-secret"),
            app_tenant: tenant.clone(),
            authority: authority.clone(),
            openid_metadata_url: format!("{metadata}/openid"),
            service_url_hosts: vec!["127.0.0.1".into()],
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(Arc::new(teams).serve(listener, std::future::pending()));

    let pg_port = free_port();
    let playground_url = format!("http://127.0.0.1:{pg_port}");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorder = serve(Router::new().fallback(any(record)).with_state(Recorder {
        calls: Arc::clone(&calls),
        playground: with_playground.then(|| playground_url.clone()),
        http: http.clone(),
    }))
    .await;
    let proxy_url = serve(
        Router::new()
            .route("/api/messages", post(proxy))
            .with_state(Proxy {
                bot: bot.clone(),
                kid: kid.clone(),
                http: http.clone(),
            }),
    )
    .await;

    let sim = demo.sim.clone();
    let oid = |upn: &str| sim.tenant().user(upn).unwrap().id.clone();
    let people = [
        Person {
            teams_id: "user-id-0",
            upn: ALEX,
            name: "Alex Wilber",
            oid: oid(ALEX),
        },
        Person {
            teams_id: "user-id-1",
            upn: MEGAN,
            name: "Megan Bowen",
            oid: oid(MEGAN),
        },
        Person {
            teams_id: "user-id-2",
            upn: ADELE,
            name: "Adele Vance",
            oid: oid(ADELE),
        },
        Person {
            teams_id: "user-id-3",
            upn: "u3@contoso.com",
            name: "Three Person",
            oid: "00000000-0000-0000-0000-000000000903".into(),
        },
        Person {
            teams_id: "user-id-4",
            upn: "u4@contoso.com",
            name: "Four Person",
            oid: "00000000-0000-0000-0000-000000000904".into(),
        },
        Person {
            teams_id: "user-id-5",
            upn: "u5@contoso.com",
            name: "Five Person",
            oid: "00000000-0000-0000-0000-000000000905".into(),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let playground = match bin {
        Some(bin) => Some(
            spawn_playground(
                &bin,
                dir.path(),
                &tenant,
                &people,
                &proxy_url,
                &recorder,
                pg_port,
                &http,
            )
            .await,
        ),
        None => None,
    };
    tokio::spawn(demo.serve(std::future::pending()));
    let oids = [ALEX, MEGAN, ADELE]
        .into_iter()
        .map(|upn| (upn, oid(upn)))
        .collect();
    Running {
        playground,
        kid,
        calls,
        recorder,
        bot,
        tenant,
        sim,
        http,
        oids,
        _dir: dir,
    }
}

impl Running {
    fn playground(&self) -> &Playground {
        self.playground.as_ref().unwrap()
    }

    /// The user types `text` in `conversation` of the Playground.
    async fn say(&self, conversation: &str, text: &str, mention: bool) -> String {
        let mut body = json!({"from": {"id": "user-id-0"}, "text": text, "textFormat": "plain"});
        if mention {
            body["text"] = json!(format!("<at>Latchkey</at> {text}"));
            body["mentions"] = json!([{"mentioned": {"id": APP_ID, "name": "Latchkey"}, "text": "<at>Latchkey</at>"}]);
        }
        let r = self
            .http
            .post(format!(
                "{}/_conversation/v1/conversations/{conversation}/messages",
                self.playground().url
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let sent: Value = r.json().await.unwrap();
        sent["messageId"].to_string().trim_matches('"').to_owned()
    }

    /// Waits for the first recorded call `pick` accepts.
    async fn wait_for<T>(&self, what: &str, pick: impl Fn(&Call) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.calls.lock().unwrap().iter().find_map(&pick) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; the bot sent: {:#?}",
                self.calls.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An Adaptive Card button press by `who` (Teams id, Entra object id),
    /// as Teams relays it: an `invoke` through the Playground.
    async fn press(
        &self,
        who: (&str, &str),
        conversation: &str,
        card: &str,
        verb: &str,
        request: &str,
    ) -> Value {
        let activity = json!({
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": format!("press-{}", now()),
            "channelId": "msteams",
            "serviceUrl": format!("{}/_connector", self.recorder),
            "from": {"id": who.0, "aadObjectId": who.1},
            "recipient": {"id": APP_ID, "name": "Latchkey"},
            "conversation": {"id": conversation, "conversationType": "personal", "tenantId": self.tenant},
            "channelData": {"tenant": {"id": self.tenant}},
            "replyToId": card,
            "value": {"action": {"type": "Action.Execute", "verb": verb, "data": {"request": request}},
                      "trigger": "manual"},
        });
        let r = self
            .http
            .post(format!(
                "{}/_internal/v1/customActivities",
                self.playground().url
            ))
            .json(&activity)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    fn posts_to(&self, conversation: &str) -> Vec<Call> {
        let path = format!("/_connector/v3/conversations/{conversation}/activities");
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == "POST" && c.path.starts_with(&path))
            .cloned()
            .collect()
    }
}

fn card_request(call: &Call) -> Option<(String, String)> {
    let actions = call
        .body
        .pointer("/attachments/0/content/actions")?
        .as_array()?;
    let approve = actions.iter().find(|a| a["verb"] == "approve")?;
    Some((
        approve.pointer("/data/request")?.as_str()?.to_owned(),
        call.path.split('/').nth(4)?.to_owned(),
    ))
}

#[tokio::test]
async fn situation_2_through_the_agents_playground_manager_approves_on_a_proactive_card() {
    let t = start(true).await;

    // Forged activities never reach the engine: no token, a token for
    // another bot.
    let forged = json!({"type": "message", "channelId": "msteams", "text": "I lost my phone",
        "serviceUrl": format!("{}/_connector", t.recorder),
        "from": {"id": "user-id-0", "aadObjectId": t.oids[ALEX]},
        "conversation": {"id": "personal-1", "conversationType": "personal"},
        "channelData": {"tenant": {"id": t.tenant}}});
    let unsigned = t
        .http
        .post(format!("{}/api/messages", t.bot))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // Alex, in his personal chat with the bot.
    let said = t
        .say("personal-1", "my phone was stolen, I can't do MFA", false)
        .await;
    t.wait_for("a first answer to Alex", |c| {
        (c.method == "POST"
            && c.path
                .starts_with("/_connector/v3/conversations/personal-1/"))
        .then_some(())
    })
    .await;

    // His manager, Megan, has never written to the bot: a personal chat is
    // created with her, proactively, and the approval card posted there.
    let created = t
        .wait_for("a conversation created with Megan", |c| {
            (c.method == "POST" && c.path == "/_connector/v3/conversations").then(|| c.body.clone())
        })
        .await;
    assert_eq!(created["members"][0]["id"], t.oids[MEGAN].as_str());
    assert_eq!(created["tenantId"], t.tenant.as_str());
    let (request, megans_chat) = t.wait_for("an approval card", card_request).await;
    assert_ne!(
        megans_chat, "personal-1",
        "the card is in Megan's chat, not Alex's"
    );

    // Alex presses Approve himself (the Playground's invoke, as the user of
    // the Playground, answered in the response): refused, nothing changes.
    let refused: Value = t
        .http
        .post(format!("{}/_conversation/v1/invoke", t.playground().url))
        .json(
            &json!({"name": "adaptiveCard/action", "from": {"id": "user-id-0"},
            "conversation": {"id": "personal-1"}, "replyToId": said,
            "value": {"action": {"type": "Action.Execute", "verb": "approve",
                "data": {"request": request}}, "trigger": "manual"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let has_tap = || temporary_access_pass(&t.sim, ALEX);
    let shown = refused.to_string();
    assert!(
        shown.contains("application/vnd.microsoft.card.adaptive") && !shown.contains("Approved"),
        "the invoke is answered with a card saying why not: {refused}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(has_tap().is_none(), "an impostor's press changes nothing");

    // Megan approves on her card (an invoke from her, relayed verbatim).
    t.press(
        ("user-id-1", &t.oids[MEGAN]),
        &megans_chat,
        "card-1",
        "approve",
        &request,
    )
    .await;

    // Alex gets his Temporary Access Pass in his personal chat, and only there.
    let pass = t
        .wait_for("the Temporary Access Pass", |c| {
            let tap = has_tap()?;
            (c.path
                .starts_with("/_connector/v3/conversations/personal-1/")
                && c.body["text"].as_str()?.contains(&tap))
            .then_some(tap)
        })
        .await;
    for call in t.posts_to(&megans_chat) {
        assert!(
            !call.body.to_string().contains(&pass),
            "the pass went to Megan: {call:?}"
        );
    }
    // Every connector call carried the bot's client-credentials token.
    for call in t.calls.lock().unwrap().iter() {
        assert_eq!(
            call.authorization,
            format!("Bearer {BOT_TOKEN}"),
            "{call:?}"
        );
    }

    // A request in a group chat moves to a personal chat; nothing from the
    // conversation is said in the group.
    let before = t.calls.lock().unwrap().len();
    t.say("group-1", "I forgot my password", true).await;
    let moved = t
        .wait_for("the group's answer", |c| {
            (c.path.starts_with("/_connector/v3/conversations/group-1/"))
                .then(|| c.body["text"].clone())
        })
        .await;
    assert_eq!(moved, latchkey::teams::MOVED_TO_PERSONAL);
    let private = t
        .wait_for("a personal chat created for the group request", |c| {
            (c.path == "/_connector/v3/conversations" && c.body["members"][0]["id"] == "user-id-0")
                .then(|| c.answer["id"].as_str().map(str::to_owned))
                .flatten()
        })
        .await;
    let prefix = format!("/_connector/v3/conversations/{private}/activities");
    t.wait_for("the answer in the new personal chat", |c| {
        (c.method == "POST" && c.path.starts_with(&prefix)).then_some(())
    })
    .await;
    let group_posts: Vec<Call> = t.calls.lock().unwrap()[before..]
        .iter()
        .filter(|c| c.path.contains("/group-1/"))
        .cloned()
        .collect();
    assert_eq!(
        group_posts.len(),
        1,
        "one message in the group: {group_posts:#?}"
    );
}

impl Running {
    /// An activity of `kind` from `from` (Teams id, Entra object id) in
    /// the personal conversation `conversation`.
    fn activity(&self, kind: &str, from: (&str, Option<&str>), conversation: &str) -> Value {
        let mut activity = json!({
            "type": kind,
            "id": format!("in-{}", now()),
            "channelId": "msteams",
            "serviceUrl": format!("{}/_connector", self.recorder),
            "from": {"id": from.0, "name": "Someone"},
            "recipient": {"id": APP_ID},
            "conversation": {"id": conversation, "conversationType": "personal", "tenantId": self.tenant},
            "channelData": {"tenant": {"id": self.tenant}},
        });
        if let Some(oid) = from.1 {
            activity["from"]["aadObjectId"] = json!(oid);
        }
        activity
    }

    /// Posts `activity` to the bot with `token` (none: no header).
    async fn send(&self, activity: &Value, token: Option<String>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/api/messages", self.bot))
            .json(activity);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// A good token for `activity`.
    fn token_for(&self, activity: &Value) -> String {
        bot_framework_token(&self.kid, activity["serviceUrl"].as_str().unwrap())
    }

    async fn signed(&self, activity: &Value) -> reqwest::Response {
        self.send(activity, Some(self.token_for(activity))).await
    }
}

#[tokio::test]
async fn activities_failing_a_check_are_refused_before_anything_is_done() {
    let t = start(false).await;
    let alex = t.oids[ALEX].clone();
    let mut message = t.activity("message", ("29:alex", Some(&alex)), "a-alex");
    message["text"] = json!("I forgot my password");

    assert_eq!(t.send(&message, None).await.status(), 401, "no token");
    let elsewhere = bot_framework_token(&t.kid, "https://smba.trafficmanager.net/amer/");
    assert_eq!(
        t.send(&message, Some(elsewhere)).await.status(),
        401,
        "a token for another serviceUrl"
    );
    let mut webchat = message.clone();
    webchat["channelId"] = json!("webchat");
    assert_eq!(
        t.signed(&webchat).await.status(),
        401,
        "the key is endorsed for msteams only"
    );
    let mut stranger = message.clone();
    stranger["channelData"]["tenant"]["id"] = json!("11111111-2222-3333-4444-555555555555");
    stranger["conversation"]["tenantId"] = stranger["channelData"]["tenant"]["id"].clone();
    assert_eq!(
        t.signed(&stranger).await.status(),
        403,
        "a tenant not served"
    );
    let mut mixed = message.clone();
    mixed["conversation"]["tenantId"] = json!("11111111-2222-3333-4444-555555555555");
    assert_eq!(t.signed(&mixed).await.status(), 403, "two tenants");
    let mut unlisted = message.clone();
    unlisted["serviceUrl"] = json!("http://localhost:9/_connector");
    assert_eq!(
        t.signed(&unlisted).await.status(),
        403,
        "a serviceUrl host not allowed, even with a matching token"
    );
    let garbage = t
        .http
        .post(format!("{}/api/messages", t.bot))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        t.calls.lock().unwrap().is_empty(),
        "nothing was said to anyone: {:#?}",
        t.calls.lock().unwrap()
    );

    // An installation is acknowledged, and says nothing.
    let update = t.activity("conversationUpdate", ("29:alex", Some(&alex)), "a-alex");
    assert_eq!(t.signed(&update).await.status(), 200);

    // No Entra object id: told so, nothing else.
    let mut anonymous = t.activity("message", ("29:guest", None), "a-guest");
    anonymous["text"] = json!("I forgot my password");
    assert_eq!(t.signed(&anonymous).await.status(), 200);
    let told = t
        .wait_for("the refusal", |c| {
            c.path
                .starts_with("/_connector/v3/conversations/a-guest/")
                .then(|| c.body["text"].clone())
        })
        .await;
    assert!(
        told.as_str().unwrap().contains("only help people"),
        "{told}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.calls.lock().unwrap().len(), 1, "one reply, nothing more");
}

#[tokio::test]
async fn an_action_submit_is_an_answer_only_from_the_approver_and_the_card_is_replaced() {
    let t = start(false).await;
    let (alex, megan, adele) = (
        t.oids[ALEX].clone(),
        t.oids[MEGAN].clone(),
        t.oids[ADELE].clone(),
    );
    // Alex writes; the tenant's serviceUrl is now known, so Megan is reached.
    let mut hello = t.activity("message", ("29:alex", Some(&alex)), "a-alex");
    hello["text"] = json!("my phone was stolen, I can't do MFA");
    assert_eq!(t.signed(&hello).await.status(), 200);
    let (request, megans_chat) = t.wait_for("an approval card", card_request).await;
    let card_activity = t
        .wait_for("the card's id", |c| {
            card_request(c).and_then(|_| c.answer["id"].as_str().map(str::to_owned))
        })
        .await;

    let submit = |who: (&str, &str), conversation: &str| {
        let mut a = t.activity("message", (who.0, Some(who.1)), conversation);
        a["from"]["name"] = json!(if who.1 == megan {
            "Megan Bowen"
        } else {
            "Someone"
        });
        a["replyToId"] = json!(card_activity);
        a["value"] = json!({"action": "approve", "request": request});
        a
    };
    // Adele, in her own chat, submits Megan's request id: refused.
    assert_eq!(
        t.signed(&submit(("29:adele", &adele), "a-adele"))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let tap = |t: &Running| temporary_access_pass(&t.sim, ALEX);
    assert!(tap(&t).is_none(), "not Adele's to approve");

    // Megan submits: the approval, and her card replaced in place.
    assert_eq!(
        t.signed(&submit(("29:megan", &megan), &megans_chat))
            .await
            .status(),
        200
    );
    let replaced = t
        .wait_for("the card replaced", |c| {
            (c.method == "PUT"
                && c.path
                    == format!(
                        "/_connector/v3/conversations/{megans_chat}/activities/{card_activity}"
                    ))
            .then(|| c.body.clone())
        })
        .await;
    let shown = replaced.to_string();
    assert!(shown.contains("Approved by Megan Bowen"), "{shown}");
    assert!(
        !shown.contains("Action.Execute"),
        "no buttons left: {shown}"
    );
    let pass = t
        .wait_for("the pass in Alex's chat", |c| {
            let tap = tap(&t)?;
            (c.path.starts_with("/_connector/v3/conversations/a-alex/")
                && c.body["text"].as_str()?.contains(&tap))
            .then_some(tap)
        })
        .await;
    assert!(!pass.is_empty());
}
