//! The web chat and `latchkey demo`'s assembly, over real HTTP: the JSON API
//! end to end for situation 1 (sign-in and MFA step-up driven through the
//! emulator's own pages), its refusals, and the page in headless Chromium.

mod browser;
mod situations;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use latchkey_tests::{approve_on_phone, emulator_sign_in, follow_callback, temporary_access_pass};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

const ADELE: &str = "adele.vance@contoso.com";
const ADELE_ID: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const MEGAN: &str = "megan.bowen@contoso.com";
const ALEX: &str = "alex.wilber@contoso.com";

/// The demo, as `latchkey demo --port 0 --sim-port 0` starts it, serving in
/// the background.
struct Running {
    url: String,
    sim: latchkey::sim::Sim,
    chat: Arc<latchkey::web::WebChat>,
    /// No redirects followed: each hop is checked.
    http: reqwest::Client,
}

async fn demo() -> Running {
    let demo = latchkey_tests::demo().await;
    let running = Running {
        url: demo.url.trim_end_matches('/').to_owned(),
        sim: demo.sim.clone(),
        chat: Arc::clone(&demo.chat),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    tokio::spawn(demo.serve(std::future::pending()));
    running
}

fn cookie_from(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Drives the emulator's sign-in at `authorize_url` as `upn`: the
    /// password form, then the Authenticator (approved through the
    /// simulated phone's API) when the user has one. Returns the redirect
    /// back to the app (`.../callback?code=...&state=...`).
    async fn sign_in_at_emulator(&self, authorize_url: &str, upn: &str) -> String {
        self.sign_in_with(authorize_url, upn, "password").await
    }

    async fn sign_in_with(&self, authorize_url: &str, upn: &str, step: &str) -> String {
        emulator_sign_in(&self.http, &self.sim, authorize_url, upn, step).await
    }

    /// Approves `upn`'s pending Authenticator request, as the phone would.
    async fn approve_on_phone(&self, upn: &str) {
        approve_on_phone(&self.http, &self.sim, upn).await
    }

    /// Signs in through the JSON API as `upn`; returns the session token.
    async fn sign_in(&self, upn: &str) -> String {
        self.sign_in_by(upn, "password").await
    }

    /// Signs in through the JSON API as `upn` with the sign-in `step`
    /// (`password`, or `passwordless` for phone sign-in).
    async fn sign_in_by(&self, upn: &str, step: &str) -> String {
        let started = self
            .http
            .post(self.url("/api/session"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 200);
        let login = cookie_from(started.headers(), "latchkey_login").expect("the sign-in cookie");
        let body: Value = started.json().await.unwrap();
        let authorize = body["authorize_url"].as_str().unwrap();
        let back = self.sign_in_with(authorize, upn, step).await;
        let login = format!("latchkey_login={login}");
        let done = follow_callback(&self.http, &self.url, &back, Some(&login)).await;
        let cookie = cookie_from(done.headers(), "latchkey_session").expect("the session cookie");
        let body: Value = done.json().await.unwrap();
        assert_eq!(body["session"], cookie.as_str());
        assert_eq!(
            body["me"]["display_name"],
            self.sim.tenant().user(upn).unwrap().display_name.as_str()
        );
        cookie
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn say(&self, token: &str, text: &str) -> Vec<Value> {
        let response = self
            .post(token, "/api/messages", json!({ "text": text }))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["events"].as_array().unwrap().clone()
    }

    async fn events(&self, token: &str, after: u64) -> Vec<Value> {
        let response = self
            .http
            .get(self.url(&format!("/api/events?after={after}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["events"].as_array().unwrap().clone()
    }

    /// Waits for an event of `kind` in the conversation.
    async fn wait_for(&self, token: &str, kind: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events(token, 0).await;
            if let Some(found) = events.iter().find(|e| e["type"] == kind) {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} event; the conversation: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Completes the MFA step-up the chat asked for in `events`, as `upn`
    /// signing in at the emulator with `step` (`password` or
    /// `passwordless`), and returns the chat's answer to the redirect back
    /// to its callback.
    async fn complete_step_up(&self, events: &[Value], upn: &str, step: &str) -> Value {
        let step_up =
            of_type(events, "step-up").unwrap_or_else(|| panic!("an MFA step-up: {events:#?}"));
        let back = self
            .sign_in_with(step_up["url"].as_str().unwrap(), upn, step)
            .await;
        follow_callback(&self.http, &self.url, &back, None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Waits for the new password offered in the conversation and takes it.
    async fn take_secret(&self, token: &str) -> String {
        let secret = self.wait_for(token, "secret").await;
        let shown = self
            .post(
                token,
                &format!("/api/secrets/{}", secret["secret_id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        shown.json::<Value>().await.unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Signs `upn` in on the emulator's sign-in page the browser shows: their
/// name typed, then [`password_and_phone`].
async fn sign_in_in_browser(c: &fantoccini::Client, demo: &Running, upn: &str) {
    let password = demo.sim.tenant().user(upn).unwrap().password.clone();
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(upn)
        .await
        .unwrap();
    password_and_phone(c, demo, upn, &password).await;
}

/// On the emulator's sign-in page: `password` typed and the form
/// submitted, then the request approved on `upn`'s simulated phone.
async fn password_and_phone(c: &fantoccini::Client, demo: &Running, upn: &str, password: &str) {
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    demo.approve_on_phone(upn).await;
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == kind)
}

#[tokio::test]
async fn situation_1_over_the_json_api_mfa_step_up_then_a_password_shown_once() {
    let demo = demo().await;
    let token = demo.sign_in(ADELE).await;

    let me: Value = demo
        .http
        .get(demo.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"], ADELE_ID);
    assert_eq!(me["channel"], "web");

    let events = demo.say(&token, "I forgot my password").await;
    assert_eq!(
        of_type(&events, "user-message").unwrap()["text"],
        "I forgot my password"
    );
    assert!(
        of_type(&events, "step-up").is_some(),
        "an MFA step-up is offered: {events:#?}"
    );
    let before = demo.sim.tenant().user(ADELE).unwrap().password.clone();
    assert!(
        !demo.sim.tenant().user(ADELE).unwrap().force_change_password,
        "nothing changed before verification"
    );

    // The step-up: the emulator's sign-in with Authenticator, back to our
    // callback, which continues the conversation.
    let verified = demo.complete_step_up(&events, ADELE, "password").await;
    assert_eq!(verified["verified"], true);

    let secret = demo.wait_for(&token, "secret").await;
    let secret_id = secret["secret_id"].as_str().unwrap();
    let shown = demo
        .post(&token, &format!("/api/secrets/{secret_id}"), json!({}))
        .await;
    assert_eq!(shown.status(), 200);
    assert_eq!(
        shown.headers().get("cache-control").unwrap(),
        "no-store",
        "a secret is never cached"
    );
    let value = shown.json::<Value>().await.unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    {
        let tenant = demo.sim.tenant();
        let adele = tenant.user(ADELE).unwrap();
        assert_ne!(adele.password, before);
        assert_eq!(adele.password, value, "the password shown is the one set");
        assert!(adele.force_change_password, "changed at next sign-in");
    }
    // Once only.
    let again = demo
        .post(&token, &format!("/api/secrets/{secret_id}"), json!({}))
        .await;
    assert_eq!(again.status(), 404);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let resolved = demo.wait_for(&token, "resolved").await;
    assert!(resolved["summary"].is_string());
    // The conversation never carries the secret itself.
    let all = serde_json::to_string(&demo.events(&token, 0).await).unwrap();
    assert!(!all.contains(&value));
}

#[tokio::test]
async fn the_manager_confirms_over_the_api_and_only_the_manager_can() {
    let demo = demo().await;
    let alex = demo.sign_in(ALEX).await;
    let megan = demo.sign_in(MEGAN).await;
    let adele = demo.sign_in(ADELE).await;

    let events = demo.say(&alex, "my phone was stolen, I can't do MFA").await;
    assert!(of_type(&events, "step-up").is_none(), "{events:#?}");
    // The card is in the manager's own conversation, and only there.
    let card = demo.wait_for(&megan, "approval-request").await;
    assert_eq!(card["kind"], "manager-confirmation");
    assert!(
        card["requester"].as_str().unwrap().contains("Alex Wilber"),
        "{card}"
    );
    assert!(card["expires_at"].as_i64().unwrap() > 0);
    let id = card["request_id"].as_str().unwrap();
    let path = format!("/api/requests/{id}");
    for impostor in [&alex, &adele] {
        let refused = demo.post(impostor, &path, json!({"approve": true})).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            refused.json::<Value>().await.unwrap()["error"]["code"],
            "forbidden"
        );
    }
    let no_answer = demo.post(&megan, &path, json!({})).await;
    assert_eq!(
        no_answer.status(),
        StatusCode::BAD_REQUEST,
        "approve is required"
    );
    let unknown = demo
        .post(
            &megan,
            "/api/requests/no-such-request",
            json!({"approve": true}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let answered = demo.post(&megan, &path, json!({"approve": true})).await;
    assert_eq!(answered.status(), StatusCode::OK);
    let answered: Value = answered.json().await.unwrap();
    assert!(
        answered["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "request-answered" && e["approved"] == true),
        "{answered:#}"
    );
    let again = demo.post(&megan, &path, json!({"approve": false})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "answered once");

    // Alex gets his Temporary Access Pass, once, and only he can fetch it.
    let secret = demo.wait_for(&alex, "secret").await;
    let secret_path = format!("/api/secrets/{}", secret["secret_id"].as_str().unwrap());
    let stolen = demo.post(&megan, &secret_path, json!({})).await;
    assert_eq!(
        stolen.status(),
        StatusCode::NOT_FOUND,
        "not the manager's to see"
    );
    let pass = demo.post(&alex, &secret_path, json!({})).await;
    assert_eq!(pass.status(), StatusCode::OK);
    let pass = pass.json::<Value>().await.unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let issued = temporary_access_pass(&demo.sim, ALEX).is_some_and(|tap| tap == pass);
    assert!(issued, "the pass shown is the one issued");
    let twice = demo.post(&alex, &secret_path, json!({})).await;
    assert_eq!(twice.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_api_refuses_missing_or_bad_sessions_non_json_posts_and_cross_site_posts() {
    let demo = demo().await;
    // No session, a made-up one, a malformed header.
    for auth in [None, Some("Bearer not-a-session"), Some("Bearer ")] {
        let mut request = demo.http.get(demo.url("/api/me"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let no_session = demo
        .http
        .post(demo.url("/api/messages"))
        .header("cookie", "latchkey_session=forged")
        .json(&json!({"text": "reset my password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), StatusCode::UNAUTHORIZED);

    let token = demo.sign_in(MEGAN).await;
    // A form post (what another site could send) is refused before anything.
    let form = demo
        .http
        .post(demo.url("/api/messages"))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hello")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        form.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_media_type"
    );
    let plain = demo
        .http
        .post(demo.url("/api/messages"))
        .bearer_auth(&token)
        .body(r#"{"text":"hello"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let cross = demo
        .http
        .post(demo.url("/api/messages"))
        .bearer_auth(&token)
        .header("origin", "http://evil.example")
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // Bad bodies are clear JSON errors; a huge one is refused by size.
    for bad in [
        r#"{"text": 5}"#,
        r#"{"text":"hi","user":"someone-else"}"#,
        "{",
    ] {
        let response = demo
            .http
            .post(demo.url("/api/messages"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            "bad_request"
        );
    }
    let huge = demo
        .post(&token, "/api/messages", json!({"text": "a".repeat(20_000)}))
        .await;
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_after = demo
        .http
        .get(demo.url("/api/events?after=minus-one"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_after.status(), StatusCode::BAD_REQUEST);
    // Nobody else's secret, and no secret by guessing.
    let guessed = demo.post(&token, "/api/secrets/0", json!({})).await;
    assert_eq!(guessed.status(), StatusCode::NOT_FOUND);
    let unknown = demo
        .http
        .get(demo.url("/api/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let wrong_method = demo
        .http
        .get(demo.url("/api/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The session still works; logging out ends it.
    let ok = demo.say(&token, "hello").await;
    assert!(of_type(&ok, "bot-message").is_some(), "{ok:#?}");
    let out = demo.post(&token, "/api/logout", json!({})).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = demo
        .http
        .get(demo.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(demo.chat.sessions().len(), 0);
}

#[tokio::test]
async fn a_sign_in_becomes_a_session_only_in_the_browser_that_started_it() {
    let demo = demo().await;
    // An attacker starts a sign-in as themselves and sends the victim the
    // callback link: without the attacker's sign-in cookie, no session.
    let started: Value = demo
        .post("unused", "/api/session", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let back = demo
        .sign_in_at_emulator(started["authorize_url"].as_str().unwrap(), MEGAN)
        .await;
    let victim = demo
        .http
        .get(&back)
        .header("cookie", "latchkey_login=something-else")
        .send()
        .await
        .unwrap();
    assert_eq!(victim.status(), StatusCode::FORBIDDEN);
    assert!(cookie_from(victim.headers(), "latchkey_session").is_none());
    assert!(
        victim
            .text()
            .await
            .unwrap()
            .contains("not started in this browser")
    );
    assert_eq!(demo.chat.sessions().len(), 0);
    // A callback with an error from the sign-in page, or with nothing.
    let denied = demo
        .http
        .get(demo.url("/callback?error=access_denied&error_description=AADSTS500121%3A+denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(denied.text().await.unwrap().contains("AADSTS500121"));
    let empty = demo.http.get(demo.url("/callback")).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let forged = demo
        .http
        .get(demo.url("/callback?code=abc&state=made-up"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(forged.status().is_client_error(), "{}", forged.status());
    assert!(forged.json::<Value>().await.unwrap()["error"]["code"].is_string());
}

#[tokio::test]
async fn the_page_is_served_with_its_own_script_and_a_strict_policy() {
    let demo = demo().await;
    let page = demo.http.get(demo.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(page.headers().get("x-frame-options").unwrap(), "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("Demo channel"));
    for asset in ["/chat.js", "/chat.css"] {
        let response = demo.http.get(demo.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let login = demo.http.get(demo.url("/auth/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let location = login.headers().get(LOCATION).unwrap().to_str().unwrap();
    assert!(
        location.starts_with(demo.sim.base_url()) && location.contains("/oauth2/v2.0/authorize?"),
        "{location}"
    );
    let cookie = login.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.starts_with("latchkey_login=") && cookie.contains("HttpOnly"));
}

/// Situation 1 in the page itself, in headless Chromium: sign in as Adele,
/// say "I forgot my password", follow the step-up link, approve on the
/// (simulated) phone, and see the temporary password once.
#[tokio::test]
async fn situation_1_in_headless_chromium() {
    // The browser first: without Chromium this fails at once, saying so.
    let browser = browser::Browser::start().await;
    let demo = demo().await;
    let c = &browser.client;
    let wait = || c.wait().at_most(Duration::from_secs(30));
    c.goto(&demo.url("/")).await.unwrap();
    let label = wait().for_element(Locator::Id("demo-label")).await.unwrap();
    assert!(
        label
            .text()
            .await
            .unwrap()
            .eq_ignore_ascii_case("Demo channel"),
        "the page says it is a demo channel"
    );

    // Sign in to the chat: the emulator's page, then the phone.
    wait()
        .for_element(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    sign_in_in_browser(c, &demo, ADELE).await;
    // The waiting page refreshes itself, goes back to the chat, signed in.
    let who = wait().for_element(Locator::Id("who")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while who.text().await.unwrap_or_default() != "Adele Vance" {
        assert!(
            Instant::now() < deadline,
            "not signed in: {}",
            c.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let input = wait().for_element(Locator::Id("text")).await.unwrap();
    input.send_keys("I forgot my password").await.unwrap();
    c.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let step_up = wait()
        .for_element(Locator::Css(".step-up a"))
        .await
        .unwrap();
    let before = demo.sim.tenant().user(ADELE).unwrap().password.clone();
    step_up.click().await.unwrap();

    // The step-up: the sign-in page again, then the phone. The name field
    // comes filled in with the login hint, the user principal name, which
    // the page's email field accepts as it is.
    let username = wait().for_element(Locator::Id("username")).await.unwrap();
    assert_eq!(
        username.prop("value").await.unwrap().as_deref(),
        Some(ADELE),
        "the step-up pre-fills the user's sign-in name"
    );
    password_and_phone(c, &demo, ADELE, &before).await;
    let notice = wait().for_element(Locator::Id("notice")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !notice.text().await.unwrap_or_default().contains("Verified") {
        assert!(
            Instant::now() < deadline,
            "not back from the step-up: {}",
            c.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The temporary password, shown once.
    wait()
        .for_element(Locator::Css(".secret button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = wait()
        .for_element(Locator::Css("code.secret-value"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    {
        let tenant = demo.sim.tenant();
        let adele = tenant.user(ADELE).unwrap();
        assert_ne!(adele.password, before);
        assert_eq!(
            shown, adele.password,
            "the page shows the password that was set"
        );
        assert!(adele.force_change_password);
    }
    // After a reload the conversation is still there, the secret is not.
    c.refresh().await.unwrap();
    wait()
        .for_element(Locator::Css(".secret button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let gone = wait()
        .for_element(Locator::Css(".secret .small"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(gone.contains("Already shown"), "{gone}");
    let page = c.source().await.unwrap();
    assert!(
        !page.contains(&shown),
        "the password is not on the page any more"
    );
    browser.close().await;
}

/// The approver's side in the page: Megan signs in and confirms Alex with
/// the card's button; Alex (over the API) gets his pass.
#[tokio::test]
async fn a_manager_confirms_with_the_pages_button_in_headless_chromium() {
    let browser = browser::Browser::start().await;
    let demo = demo().await;
    let alex = demo.sign_in(ALEX).await;
    demo.say(&alex, "I lost my phone and can't sign in").await;

    let c = &browser.client;
    let wait = || c.wait().at_most(Duration::from_secs(30));
    c.goto(&demo.url("/auth/login")).await.unwrap();
    sign_in_in_browser(c, &demo, MEGAN).await;

    let approve = wait()
        .for_element(Locator::Css(".actions.approval button.approve"))
        .await
        .unwrap();
    let card = c
        .find(Locator::Css("li.approval-request .body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(card.contains("Alex Wilber"), "{card}");
    approve.click().await.unwrap();
    let answered = wait()
        .for_element(Locator::Css("li.request-answered .body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answered, "Approved.");
    let disabled = approve.attr("disabled").await.unwrap();
    assert!(disabled.is_some(), "the card's buttons are spent");
    browser.close().await;

    let secret = demo.wait_for(&alex, "secret").await;
    assert!(secret["label"].is_string());
}
