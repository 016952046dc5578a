//! The situations of DESIGN.md driven over the web chat's JSON API, as a
//! script or the page would: sign in at the emulator, talk, verify, and then
//! the emulator's resulting state and directory audit. (Situation 1 and the
//! manager confirmation of situation 2 are in `web.rs`; the engine-level
//! tests of every situation are in `conversation.rs`.)

use serde_json::{Value, json};

use super::{Running, demo, of_type};

const HENRIETTA: &str = "henrietta.mueller@contoso.com";
const LIDIA: &str = "lidia.holloway@contoso.com";
const ISAIAH: &str = "isaiah.langer@contoso.com";
const LEE: &str = "lee.gu@contoso.com";
const MEGAN: &str = "megan.bowen@contoso.com";

/// Every bot-side text of a conversation, joined.
fn said(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] != "user-message")
        .map(|e| {
            ["text", "reason", "summary"]
                .iter()
                .filter_map(|k| e[*k].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A user's state and the directory audit's length: what any write changes.
fn snapshot(demo: &Running, upn: &str) -> (Value, usize) {
    let tenant = demo.sim.tenant();
    let user = serde_json::to_value(tenant.user(upn).unwrap()).unwrap();
    (user, tenant.audits.len())
}

/// Says `text` and checks that nothing changes anywhere in the directory.
async fn nothing_changes(demo: &Running, upn: &str, text: &str) -> Vec<Value> {
    let token = demo.sign_in(upn).await;
    let before = snapshot(demo, upn);
    demo.say(&token, text).await;
    let events = demo.events(&token, 0).await;
    assert!(of_type(&events, "secret").is_none(), "{events:#?}");
    assert!(of_type(&events, "step-up").is_none(), "{events:#?}");
    assert_eq!(snapshot(demo, upn), before, "nothing changed");
    events
}

#[tokio::test]
async fn situation_3_a_lockout_is_explained_then_cleared_by_a_reset_after_mfa() {
    let demo = demo().await;
    let token = demo.sign_in(HENRIETTA).await;
    let events = demo.say(&token, "My account is locked").await;
    let text = said(&events);
    assert!(text.contains("locked"), "what was found is said: {text}");
    let before = demo.sim.tenant().user(HENRIETTA).unwrap().password.clone();
    demo.complete_step_up(&events, HENRIETTA, "password").await;
    let value = demo.take_secret(&token).await;
    let tenant = demo.sim.tenant();
    let user = tenant.user(HENRIETTA).unwrap();
    assert_ne!(user.password, before);
    assert_eq!(user.password, value);
    assert!(user.force_change_password);
    assert!(
        tenant.audits.iter().any(|a| serde_json::to_string(a)
            .unwrap()
            .contains("Reset password (by admin)")),
        "Entra's directory audit records the reset"
    );
}

#[tokio::test]
async fn situation_5_a_conditional_access_block_is_named_and_nothing_changes() {
    let demo = demo().await;
    let events = nothing_changes(&demo, LIDIA, "I can't sign in from Lisbon").await;
    let text = said(&events);
    assert!(
        text.contains("Finance: block access from outside trusted locations"),
        "the blocking policy is named: {text}"
    );
}

#[tokio::test]
async fn situation_6_a_password_for_someone_else_is_refused_and_their_account_untouched() {
    let demo = demo().await;
    let lee_before = snapshot(&demo, LEE);
    let events = nothing_changes(
        &demo,
        ISAIAH,
        "Please give lee.gu@contoso.com a temporary password, he is a contractor",
    )
    .await;
    assert_eq!(
        snapshot(&demo, LEE),
        lee_before,
        "Lee's account is untouched"
    );
    let text = said(&events);
    assert!(text.to_lowercase().contains("own account"), "{text}");
}

#[tokio::test]
async fn situation_7_a_mistyped_password_is_explained_and_nothing_changes() {
    let demo = demo().await;
    let events = nothing_changes(&demo, MEGAN, "I can't log in").await;
    assert!(!said(&events).is_empty());
}

const JOHANNA: &str = "johanna.lorenz@contoso.com";
const NESTOR: &str = "nestor.wilke@contoso.com";

#[tokio::test]
async fn a_privileged_account_is_reset_only_after_its_manager_approves_over_the_api() {
    // Johanna is a User Administrator; her manager is Nestor.
    let demo = demo().await;
    let johanna = demo.sign_in(JOHANNA).await;
    let events = demo.say(&johanna, "I forgot my password").await;
    demo.complete_step_up(&events, JOHANNA, "password").await;
    let before = snapshot(&demo, JOHANNA);
    assert!(
        of_type(&demo.events(&johanna, 0).await, "secret").is_none(),
        "verified, but not approved yet"
    );

    // The request appears in Nestor's conversation; Johanna cannot answer it.
    let nestor = demo.sign_in(NESTOR).await;
    let card = demo.wait_for(&nestor, "approval-request").await;
    let id = card["request_id"].as_str().unwrap().to_owned();
    assert_eq!(card["kind"], "approval");
    let own = demo
        .post(
            &johanna,
            &format!("/api/requests/{id}"),
            json!({"approve": true}),
        )
        .await;
    assert!(own.status().is_client_error(), "{}", own.status());
    assert_eq!(snapshot(&demo, JOHANNA), before, "nothing changed");

    let answered = demo
        .post(
            &nestor,
            &format!("/api/requests/{id}"),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(answered.status(), 200, "{:?}", answered.text().await);
    let value = demo.take_secret(&johanna).await;
    let tenant = demo.sim.tenant();
    let user = tenant.user(JOHANNA).unwrap();
    assert_eq!(user.password, value);
    assert!(user.force_change_password);
}

const GRADY: &str = "grady.archie@contoso.com";

#[tokio::test]
async fn situation_4_an_expired_password_is_reset_with_a_forced_change_after_phone_sign_in() {
    // Grady's password expired 14 days ago: a password sign-in would make
    // him change it on the sign-in page (the change that failed him). Phone
    // sign-in with Authenticator uses no password, so he reaches the chat.
    let demo = demo().await;
    let token = demo.sign_in_by(GRADY, "passwordless").await;
    let before = demo.sim.tenant().user(GRADY).unwrap().password.clone();
    let events = demo
        .say(&token, "My password expired and changing it failed")
        .await;
    let text = said(&events);
    assert!(text.contains("expired"), "what was found is said: {text}");
    demo.complete_step_up(&events, GRADY, "passwordless").await;
    let value = demo.take_secret(&token).await;
    let tenant = demo.sim.tenant();
    let user = tenant.user(GRADY).unwrap();
    assert_ne!(user.password, before);
    assert_eq!(user.password, value);
    assert!(
        user.force_change_password,
        "he sets his own at next sign-in"
    );
}

#[tokio::test]
async fn a_disabled_account_cannot_reach_the_chat_even_by_phone_sign_in() {
    let demo = demo().await;
    let started = demo
        .http
        .post(demo.url("/api/session"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body: Value = started.json().await.unwrap();
    let url = reqwest::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap();
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("step".into(), "passwordless".into()));
    form.push(("username".into(), "christie.cline@contoso.com".into()));
    let mut action = url.clone();
    action.set_query(None);
    let page = demo.http.post(action).form(&form).send().await.unwrap();
    assert_eq!(page.status(), 200, "the sign-in page again, not a redirect");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Your account has been locked")
    );
}
