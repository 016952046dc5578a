//! The emulator's authentication methods API (phones, email, Authenticator,
//! FIDO2, Temporary Access Passes) and its `/_sim/` control surface (sign-in
//! simulation under smart lockout, faults, the clock), over real HTTP.

use std::time::{Duration, Instant};

use latchkey::sim::model::{App, Domain, Method, User};
use latchkey::sim::{Tenant, seed};
use latchkey_tests::TestSim;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The one demo user these tests rely on; everyone else they add themselves.
const ADELE: &str = "adele.vance@contoso.com";
const PASSWORD_METHOD: &str = "28c10230-6103-485e-b985-444c60001490";
const MOBILE: &str = "3179e48a-750b-4051-897c-87b9720928f7";
const ALTERNATE_MOBILE: &str = "b6332ec1-7057-4abe-9331-3d72feddfe41";
const EMAIL: &str = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f";
const TAP_REASON: &str = "Admin registered temporary access pass method for user";

/// An app of the tests' own, so they do not depend on the demo app's roles.
fn app(client_id: &str, roles: &[&str]) -> App {
    App {
        client_id: client_id.to_owned(),
        display_name: format!("Test app {client_id}"),
        client_secret: format!("{client_id}-secret"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        directory_roles: Vec::new(),
        redirect_uris: Vec::new(),
        delegated_scopes: Vec::new(),
    }
}

const ADMIN: &str = "11111111-1111-4111-8111-111111111111";

/// A user with a fresh password, `Right-Password-1`.
fn user(n: u32, upn: &str) -> User {
    serde_json::from_value(json!({
        "id": format!("00000000-0000-4000-8000-{n:012}"),
        "user_principal_name": upn,
        "display_name": upn.split('@').next().unwrap(),
        "password": "Right-Password-1",
        "last_password_change": OffsetDateTime::now_utc().format(&Rfc3339).unwrap(),
    }))
    .unwrap()
}

fn demo() -> Tenant {
    let mut tenant = seed::demo(OffsetDateTime::now_utc()).unwrap();
    tenant.apps.push(app(
        ADMIN,
        &[
            "UserAuthenticationMethod.ReadWrite.All",
            "AuditLog.Read.All",
        ],
    ));
    tenant
}

/// The emulator with `tenant`, and a token for the tests' admin app.
async fn start(tenant: Tenant) -> (TestSim, String) {
    let sim = TestSim::start_with(tenant).await;
    let token = token(&sim, ADMIN).await;
    (sim, token)
}

async fn token(sim: &TestSim, client_id: &str) -> String {
    let tenant = sim.sim.tenant().id.clone();
    sim.token_for(&tenant, client_id, &format!("{client_id}-secret"))
        .await
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body)
}

async fn get(sim: &TestSim, token: &str, path: &str) -> (u16, Value) {
    answer(
        sim.client
            .get(sim.graph(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post(sim: &TestSim, token: &str, path: &str, body: &Value) -> (u16, Value) {
    answer(
        sim.client
            .post(sim.graph(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_raw(sim: &TestSim, token: &str, path: &str, body: &str) -> (u16, Value) {
    answer(
        sim.client
            .post(sim.graph(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn delete(sim: &TestSim, token: &str, path: &str) -> (u16, Value) {
    answer(
        sim.client
            .delete(sim.graph(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `POST {base}/_sim/{path}`.
async fn control(sim: &TestSim, path: &str, body: &Value) -> (u16, Value) {
    answer(
        sim.client
            .post(format!("{}/_sim/{path}", sim.base_url))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn control_get(sim: &TestSim, path: &str) -> (u16, Value) {
    answer(
        sim.client
            .get(format!("{}/_sim/{path}", sim.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn control_delete(sim: &TestSim, path: &str) -> u16 {
    sim.client
        .delete(format!("{}/_sim/{path}", sim.base_url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn sign_in(sim: &TestSim, body: Value) -> u64 {
    let (status, answer) = control(sim, "signins", &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["errorCode"].as_u64().unwrap()
}

fn tap_path(user: &str) -> String {
    format!("/users/{user}/authentication/temporaryAccessPassMethods")
}

/// Audit entries for `activity`, as the emulator recorded them.
fn audits(sim: &TestSim, activity: &str) -> Vec<Value> {
    sim.sim
        .tenant()
        .audits
        .iter()
        .filter(|a| a["activityDisplayName"] == activity)
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_methods_list_is_polymorphic_and_always_has_the_password() {
    let (sim, token) = start(demo()).await;
    for name in [
        ADELE,
        "Adele.Vance@CONTOSO.com",
        "adele.vance%40contoso.com",
    ] {
        let (status, body) = get(
            &sim,
            &token,
            &format!("/users/{name}/authentication/methods"),
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(
            body["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("/authentication/methods"),
            "{body}"
        );
        let value = body["value"].as_array().unwrap();
        assert_eq!(value[0]["id"], PASSWORD_METHOD);
        assert_eq!(
            value[0]["@odata.type"],
            "#microsoft.graph.passwordAuthenticationMethod"
        );
        assert!(value[0]["password"].is_null());
        assert!(
            value
                .iter()
                .all(|m| m["@odata.type"].is_string() && m["id"].is_string())
        );
    }

    let (status, body) = get(
        &sim,
        &token,
        &format!("/users/{ADELE}/authentication/passwordMethods"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"][0]["id"], PASSWORD_METHOD);
    assert!(body["value"][0]["password"].is_null());

    let (status, body) = get(
        &sim,
        &token,
        "/users/nobody@contoso.com/authentication/methods",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
}

#[tokio::test]
async fn phones_and_email_have_fixed_ids_and_graphs_rules() {
    let mut tenant = demo();
    tenant.users.push(user(1, "phones@contoso.com"));
    let (sim, token) = start(tenant).await;
    let phones = "/users/phones@contoso.com/authentication/phoneMethods";

    let (status, body) = post(
        &sim,
        &token,
        phones,
        &json!({"phoneNumber": "+1 5555550100", "phoneType": "mobile"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], MOBILE);
    assert_eq!(body["phoneNumber"], "+1 5555550100");
    let (status, body) = post(
        &sim,
        &token,
        phones,
        &json!({"@odata.type": "#microsoft.graph.phoneAuthenticationMethod", "phoneNumber": "+1 5555550101", "phoneType": "alternateMobile"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], ALTERNATE_MOBILE);

    let (status, _) = post(
        &sim,
        &token,
        phones,
        &json!({"phoneNumber": "+1 5555550102", "phoneType": "mobile"}),
    )
    .await;
    assert_eq!(status, 400, "one phone per type");
    let (status, _) = post(
        &sim,
        &token,
        phones,
        &json!({"phoneNumber": "555-0100", "phoneType": "office"}),
    )
    .await;
    assert_eq!(status, 400, "Graph's phone number format");
    let (status, _) = post(
        &sim,
        &token,
        phones,
        &json!({"phoneNumber": "+1 5555550100", "phoneType": "pager"}),
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = delete(&sim, &token, &format!("{phones}/{MOBILE}")).await;
    assert_eq!(status, 400, "mobile can't go while alternateMobile exists");
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    assert_eq!(
        delete(&sim, &token, &format!("{phones}/{ALTERNATE_MOBILE}"))
            .await
            .0,
        204
    );
    assert_eq!(
        delete(&sim, &token, &format!("{phones}/{MOBILE}")).await.0,
        204
    );
    assert_eq!(
        delete(&sim, &token, &format!("{phones}/{MOBILE}")).await.0,
        404
    );
    let (_, body) = get(&sim, &token, phones).await;
    assert_eq!(body["value"], json!([]));

    let emails = "/users/phones@contoso.com/authentication/emailMethods";
    let (status, body) = post(
        &sim,
        &token,
        emails,
        &json!({"emailAddress": "kim@fabrikam.example"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], EMAIL);
    let (status, _) = post(
        &sim,
        &token,
        emails,
        &json!({"emailAddress": "other@fabrikam.example"}),
    )
    .await;
    assert_eq!(status, 400, "one email method per user");
    let (_, body) = get(&sim, &token, &format!("{emails}/{EMAIL}")).await;
    assert_eq!(body["emailAddress"], "kim@fabrikam.example");
    assert_eq!(
        delete(&sim, &token, &format!("{emails}/{EMAIL}")).await.0,
        204
    );

    let registered = audits(&sim, "Admin registered security info");
    let deleted = audits(&sim, "Admin deleted security info");
    assert_eq!(registered.len(), 3, "two phones and an email");
    assert_eq!(deleted.len(), 3, "two phones and an email");
    for entry in registered.iter().chain(&deleted) {
        assert_eq!(entry["category"], "UserManagement");
        assert_eq!(entry["loggedByService"], "Authentication Methods");
        assert_eq!(entry["initiatedBy"]["app"]["appId"], ADMIN);
        assert_eq!(
            entry["targetResources"][0]["userPrincipalName"],
            "phones@contoso.com"
        );
    }
}

#[tokio::test]
async fn a_tap_is_shown_once_and_a_new_one_replaces_it() {
    let (sim, token) = start(demo()).await;
    let path = tap_path(ADELE);

    let (status, created) = post(&sim, &token, &path, &json!({})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["temporaryAccessPass"].as_str().unwrap();
    assert_eq!(secret.len(), 8);
    assert_eq!(created["isUsable"], true);
    assert_eq!(created["methodUsabilityReason"], "EnabledByPolicy");
    assert_eq!(created["lifetimeInMinutes"], 60);
    assert_eq!(created["isUsableOnce"], false);
    assert_eq!(
        created["@odata.type"],
        "#microsoft.graph.temporaryAccessPassAuthenticationMethod"
    );

    let (status, listed) = get(&sim, &token, &path).await;
    assert_eq!(status, 200);
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    assert_eq!(listed["value"][0]["id"], created["id"]);
    assert!(
        listed["value"][0]["temporaryAccessPass"].is_null(),
        "the secret only at creation"
    );
    let (_, one) = get(
        &sim,
        &token,
        &format!("{path}/{}", created["id"].as_str().unwrap()),
    )
    .await;
    assert!(one["temporaryAccessPass"].is_null());
    assert_eq!(one["isUsable"], true);

    // The Python SDK sends @odata.type; that is accepted.
    let (status, second) = post(
        &sim,
        &token,
        &path,
        &json!({"@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethod", "lifetimeInMinutes": 120, "isUsableOnce": true}),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["id"], created["id"]);
    assert_ne!(
        second["temporaryAccessPass"],
        created["temporaryAccessPass"]
    );
    let (_, listed) = get(&sim, &token, &path).await;
    assert_eq!(
        listed["value"].as_array().unwrap().len(),
        1,
        "one TAP per user"
    );
    assert_eq!(listed["value"][0]["id"], second["id"]);
    assert_eq!(listed["value"][0]["isUsableOnce"], true);
    let (status, _) = get(
        &sim,
        &token,
        &format!("{path}/{}", created["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 404);

    // The polymorphic list shows it too, without the secret.
    let (_, methods) = get(
        &sim,
        &token,
        &format!("/users/{ADELE}/authentication/methods"),
    )
    .await;
    let tap = methods["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["@odata.type"] == "#microsoft.graph.temporaryAccessPassAuthenticationMethod")
        .unwrap();
    assert!(tap["temporaryAccessPass"].is_null());

    let registered = audits(&sim, "Admin registered security info");
    assert_eq!(registered.len(), 2);
    assert_eq!(registered[0]["resultReason"], TAP_REASON);
    assert_eq!(registered[0]["loggedByService"], "Authentication Methods");
}

#[tokio::test]
async fn tap_lifetimes_outside_10_to_43200_minutes_and_bad_bodies_are_400() {
    let (sim, token) = start(demo()).await;
    let path = tap_path(ADELE);
    for minutes in [9, 43_201, 0, -5] {
        let (status, body) =
            post(&sim, &token, &path, &json!({"lifetimeInMinutes": minutes})).await;
        assert_eq!(status, 400, "{minutes}: {body}");
        assert_eq!(body["error"]["code"], "Request_BadRequest");
    }
    for minutes in [10, 43_200] {
        let (status, body) =
            post(&sim, &token, &path, &json!({"lifetimeInMinutes": minutes})).await;
        assert_eq!(status, 201, "{minutes}: {body}");
        assert_eq!(body["lifetimeInMinutes"], minutes);
    }
    for bad in [
        r#"{"lifetime": 60}"#,
        r#"{"lifetimeInMinutes": "sixty"}"#,
        r#"{"startDateTime": "tomorrow"}"#,
        r##"{"@odata.type": "#microsoft.graph.phoneAuthenticationMethod"}"##,
        r#"{"isUsableOnce": true"#,
    ] {
        let (status, body) = post_raw(&sim, &token, &path, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "Request_BadRequest", "{bad}");
    }
    let (status, _) = post(&sim, &token, &tap_path("nobody@contoso.com"), &json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_tap_is_not_yet_valid_before_its_start_and_expired_after_its_lifetime() {
    let (sim, token) = start(demo()).await;
    let path = tap_path(ADELE);
    let tomorrow = (sim.sim.now() + time::Duration::days(1))
        .format(&Rfc3339)
        .unwrap();
    let (status, body) = post(&sim, &token, &path, &json!({"startDateTime": tomorrow})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["isUsable"], false);
    assert_eq!(body["methodUsabilityReason"], "NotYetValid");

    let (_, body) = post(&sim, &token, &path, &json!({"lifetimeInMinutes": 10})).await;
    assert_eq!(body["methodUsabilityReason"], "EnabledByPolicy");
    let (status, _) = control(&sim, "clock", &json!({"advance_seconds": 11 * 60})).await;
    assert_eq!(status, 200);
    let (_, listed) = get(&sim, &token, &path).await;
    assert_eq!(listed["value"][0]["isUsable"], false);
    assert_eq!(listed["value"][0]["methodUsabilityReason"], "Expired");
}

#[tokio::test]
async fn a_one_time_tap_is_used_up_by_a_sign_in() {
    let (sim, token) = start(demo()).await;
    let path = tap_path(ADELE);
    let (_, created) = post(&sim, &token, &path, &json!({"isUsableOnce": true})).await;
    let secret = created["temporaryAccessPass"].as_str().unwrap().to_owned();

    let (status, first) = control(&sim, "signins", &json!({"user": ADELE, "tap": secret})).await;
    assert_eq!(status, 200);
    assert_eq!(first["errorCode"], 0, "{first}");
    let (_, listed) = get(&sim, &token, &path).await;
    assert_eq!(listed["value"][0]["isUsable"], false);
    assert_eq!(listed["value"][0]["methodUsabilityReason"], "OneTimeUsed");

    let (_, second) = control(&sim, "signins", &json!({"user": ADELE, "tap": secret})).await;
    assert_eq!(second["errorCode"], 50126);
    assert_eq!(second["methodUsabilityReason"], "OneTimeUsed");
    assert_eq!(
        sign_in(&sim, json!({"user": ADELE, "tap": "not-the-pass"})).await,
        50126
    );
}

#[tokio::test]
async fn lost_methods_are_deleted_with_an_audit_entry() {
    let mut tenant = demo();
    // Added after seeding, so without an id: the emulator must give it one.
    let adele = tenant.user_index(ADELE).unwrap();
    tenant.users[adele]
        .methods
        .push(Method::MicrosoftAuthenticator {
            id: None,
            display_name: "Lost iPhone".to_owned(),
            phone_app_version: Some("6.8.12".to_owned()),
        });
    let (sim, token) = start(tenant).await;
    let (_, methods) = get(
        &sim,
        &token,
        &format!("/users/{ADELE}/authentication/microsoftAuthenticatorMethods"),
    )
    .await;
    let authenticators = methods["value"].as_array().unwrap().clone();
    assert!(
        authenticators
            .iter()
            .any(|a| a["displayName"] == "Lost iPhone" && !a["id"].as_str().unwrap().is_empty())
    );
    for a in &authenticators {
        let id = a["id"].as_str().unwrap();
        let path = format!("/users/{ADELE}/authentication/microsoftAuthenticatorMethods/{id}");
        let (status, one) = get(&sim, &token, &path).await;
        assert_eq!(status, 200);
        assert_eq!(one["displayName"], a["displayName"]);
        assert_eq!(delete(&sim, &token, &path).await.0, 204);
        assert_eq!(delete(&sim, &token, &path).await.0, 404);
    }
    let (_, methods) = get(
        &sim,
        &token,
        &format!("/users/{ADELE}/authentication/microsoftAuthenticatorMethods"),
    )
    .await;
    assert_eq!(methods["value"], json!([]));

    let (_, tap) = post(&sim, &token, &tap_path(ADELE), &json!({})).await;
    let tap_id = tap["id"].as_str().unwrap();
    assert_eq!(
        delete(&sim, &token, &format!("{}/{tap_id}", tap_path(ADELE)))
            .await
            .0,
        204
    );
    let (_, listed) = get(&sim, &token, &tap_path(ADELE)).await;
    assert_eq!(listed["value"], json!([]));
    let (_, fido) = get(
        &sim,
        &token,
        &format!("/users/{ADELE}/authentication/fido2Methods"),
    )
    .await;
    assert!(fido["value"].is_array());
    let (status, _) = delete(
        &sim,
        &token,
        &format!("/users/{ADELE}/authentication/fido2Methods/no-such-key"),
    )
    .await;
    assert_eq!(status, 404);

    let deleted = audits(&sim, "Admin deleted security info");
    assert_eq!(deleted.len(), authenticators.len() + 1);
    assert!(
        deleted.iter().all(|d| d["operationType"] == "Delete"
            && d["targetResources"][0]["userPrincipalName"] == ADELE)
    );
}

#[tokio::test]
async fn apps_without_the_permission_get_403() {
    let mut tenant = demo();
    tenant
        .apps
        .push(app("reader", &["UserAuthenticationMethod.Read.All"]));
    tenant
        .apps
        .push(app("tap-only", &["UserAuthMethod-TAP.ReadWrite.All"]));
    tenant.apps.push(app("nobody", &["User.Read.All"]));
    let (sim, _) = start(tenant).await;
    let reader = token(&sim, "reader").await;
    let tap_only = token(&sim, "tap-only").await;
    let nobody = token(&sim, "nobody").await;
    let methods = format!("/users/{ADELE}/authentication/methods");
    let phones = format!("/users/{ADELE}/authentication/phoneMethods");
    let phone = json!({"phoneNumber": "+1 5555550100", "phoneType": "mobile"});

    let (status, body) = get(&sim, &nobody, &methods).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    // Permission first: an app without it learns nothing about who exists.
    assert_eq!(
        get(
            &sim,
            &nobody,
            "/users/ghost@contoso.com/authentication/methods"
        )
        .await
        .0,
        403
    );

    assert_eq!(get(&sim, &reader, &methods).await.0, 200);
    assert_eq!(
        post(&sim, &reader, &tap_path(ADELE), &json!({})).await.0,
        403
    );
    assert_eq!(post(&sim, &reader, &phones, &phone).await.0, 403);
    assert_eq!(
        delete(&sim, &reader, &format!("{phones}/{MOBILE}")).await.0,
        403
    );

    assert_eq!(
        post(&sim, &tap_only, &tap_path(ADELE), &json!({})).await.0,
        201
    );
    assert_eq!(get(&sim, &tap_only, &tap_path(ADELE)).await.0, 200);
    assert_eq!(post(&sim, &tap_only, &phones, &phone).await.0, 403);
    assert_eq!(get(&sim, &tap_only, &methods).await.0, 403);
    assert!(audits(&sim, "Admin registered security info").len() == 1);
}

#[tokio::test]
async fn ten_distinct_wrong_passwords_lock_the_account_until_the_lock_expires() {
    let mut tenant = demo();
    tenant.users.push(user(2, "locked.out@contoso.com"));
    let (sim, _) = start(tenant).await;
    let who = "locked.out@contoso.com";
    for n in 1..10 {
        assert_eq!(
            sign_in(&sim, json!({"user": who, "password": format!("wrong-{n}")})).await,
            50126
        );
    }
    let (_, locked) = control(
        &sim,
        "signins",
        &json!({"user": who, "password": "wrong-10"}),
    )
    .await;
    assert_eq!(locked["errorCode"], 50053);
    assert!(locked["failureReason"].as_str().unwrap().contains("locked"));
    assert_eq!(
        sign_in(&sim, json!({"user": who, "password": "Right-Password-1"})).await,
        50053
    );
    let (status, state) = control_get(&sim, &format!("users/{who}/lockout")).await;
    assert_eq!(status, 200);
    assert_eq!(state["locked"], true);
    assert_eq!(state["failures"], 10);
    assert!(state["lockedUntil"].is_string());

    control(&sim, "clock", &json!({"advance_seconds": 61})).await;
    assert_eq!(
        sign_in(&sim, json!({"user": who, "password": "Right-Password-1"})).await,
        0
    );
    let (_, state) = control_get(&sim, &format!("users/{who}/lockout")).await;
    assert_eq!(
        state,
        json!({"locked": false, "lockedUntil": null, "failures": 0, "timesLocked": 1})
    );

    // Every attempt is in the sign-in log, newest first.
    let tenant = sim.sim.tenant();
    let log: Vec<u32> = tenant
        .sign_ins
        .iter()
        .filter(|s| s.user_principal_name == who)
        .map(|s| s.error_code)
        .collect();
    assert_eq!(log.len(), 12);
    assert_eq!(&log[..3], &[0, 50053, 50053]);
    assert_eq!(log[11], 50126);
}

#[tokio::test]
async fn repeating_the_same_wrong_password_never_locks() {
    let mut tenant = demo();
    tenant.users.push(user(3, "caps.lock@contoso.com"));
    let (sim, _) = start(tenant).await;
    let who = "caps.lock@contoso.com";
    for _ in 0..15 {
        assert_eq!(
            sign_in(&sim, json!({"user": who, "password": "rIGHT-pASSWORD-1"})).await,
            50126
        );
    }
    let (_, state) = control_get(&sim, &format!("users/{who}/lockout")).await;
    assert_eq!(state["failures"], 1);
    assert_eq!(state["locked"], false);
    assert_eq!(
        sign_in(&sim, json!({"user": who, "password": "Right-Password-1"})).await,
        0
    );
}

#[tokio::test]
async fn sign_ins_fail_the_way_entra_logs_them() {
    let mut tenant = demo();
    let mut disabled = user(4, "gone@contoso.com");
    disabled.account_enabled = false;
    tenant.users.push(disabled);
    tenant.users.push(user(5, "mfa@contoso.com"));
    tenant.domains.push(Domain {
        id: "expiry.contoso.com".to_owned(),
        is_default: false,
        authentication_type: "Managed".to_owned(),
        password_validity_period_in_days: Some(90),
        password_notification_window_in_days: Some(14),
    });
    let mut old = user(6, "old@expiry.contoso.com");
    old.last_password_change = OffsetDateTime::now_utc() - time::Duration::days(120);
    tenant.users.push(old.clone());
    let mut synced = user(7, "synced@expiry.contoso.com");
    synced.last_password_change = old.last_password_change;
    synced.on_premises_sync_enabled = Some(true);
    tenant.users.push(synced);
    let mut exempt = user(8, "exempt@expiry.contoso.com");
    exempt.last_password_change = old.last_password_change;
    exempt.password_policies = "DisablePasswordExpiration".to_owned();
    tenant.users.push(exempt);
    let (sim, _) = start(tenant).await;
    let right = "Right-Password-1";

    assert_eq!(
        sign_in(&sim, json!({"user": "gone@contoso.com", "password": right})).await,
        50057
    );
    assert_eq!(
        sign_in(&sim, json!({"user": "typo@contoso.com", "password": right})).await,
        50034
    );
    assert_eq!(
        sign_in(
            &sim,
            json!({"user": "mfa@contoso.com", "password": right, "outcome": "mfa_denied"})
        )
        .await,
        500121
    );
    assert_eq!(
        sign_in(
            &sim,
            json!({"user": "mfa@contoso.com", "password": right, "outcome": "expired_password"})
        )
        .await,
        50055
    );
    assert_eq!(
        sign_in(
            &sim,
            json!({"user": "old@expiry.contoso.com", "password": right})
        )
        .await,
        50055
    );
    assert_eq!(
        sign_in(
            &sim,
            json!({"user": "synced@expiry.contoso.com", "password": right})
        )
        .await,
        50144
    );
    assert_eq!(
        sign_in(
            &sim,
            json!({"user": "exempt@expiry.contoso.com", "password": right})
        )
        .await,
        0
    );

    // The log records the app and address given.
    assert_eq!(
        sign_in(&sim, json!({"user": "MFA@contoso.com", "password": right, "app": "Microsoft Teams", "ip": "198.51.100.7"})).await,
        0
    );
    {
        let tenant = sim.sim.tenant();
        let newest = &tenant.sign_ins[0];
        assert_eq!(newest.user_principal_name, "mfa@contoso.com");
        assert_eq!(newest.app_display_name, "Microsoft Teams");
        assert_eq!(newest.ip_address, "198.51.100.7");
    }

    for bad in [
        json!({"user": "mfa@contoso.com"}),
        json!({"user": "mfa@contoso.com", "password": right, "tap": "x"}),
        json!({"user": "mfa@contoso.com", "password": right, "outcome": "sunspots"}),
        json!({"user": "mfa@contoso.com", "password": right, "ip": "not-an-ip"}),
        json!({"user": "mfa@contoso.com", "password": right, "colour": "blue"}),
        json!({"user": "mfa@contoso.com", "tap": "x", "outcome": "mfa_denied"}),
    ] {
        let (status, body) = control(&sim, "signins", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn a_conditional_access_block_names_the_policy() {
    let mut tenant = demo();
    tenant.conditional_access_policies.clear();
    tenant.users.push(user(9, "traveller@contoso.com"));
    let (sim, _) = start(tenant).await;
    let body = json!({"user": "traveller@contoso.com", "password": "Right-Password-1", "outcome": "ca_blocked"});
    let (status, answer) = control(&sim, "signins", &body).await;
    assert_eq!(status, 400, "no blocking policy to blame: {answer}");

    sim.sim.tenant().conditional_access_policies.push(json!({
        "id": "0a1b2c3d-0000-4000-8000-00000000ca01",
        "displayName": "Block sign-ins from outside the EU",
        "state": "enabled",
        "conditions": {"users": {"includeUsers": ["All"]}},
        "grantControls": {"operator": "OR", "builtInControls": ["block"]},
    }));
    assert_eq!(sign_in(&sim, body).await, 53003);
    let tenant = sim.sim.tenant();
    assert_eq!(
        tenant.sign_ins[0].ca_policies,
        vec![(
            "0a1b2c3d-0000-4000-8000-00000000ca01".to_owned(),
            "Block sign-ins from outside the EU".to_owned(),
            "failure".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_throttling_fault_sends_a_fractional_retry_after_then_stops() {
    let (sim, token) = start(demo()).await;
    let methods = format!("/users/{ADELE}/authentication/methods");
    let (status, fault) = control(
        &sim,
        "faults",
        &json!({"path_prefix": "/users", "status": 429, "retry_after": "0.5", "count": 2}),
    )
    .await;
    assert_eq!(status, 201, "{fault}");
    // Another prefix is untouched.
    control(
        &sim,
        "faults",
        &json!({"path_prefix": "/groups", "status": 503}),
    )
    .await;

    for _ in 0..2 {
        let response = sim
            .client
            .get(sim.graph(&methods))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "0.5");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "TooManyRequests");
        assert_eq!(body["error"]["message"], "Please retry again later.");
        assert!(body["error"]["innerError"]["request-id"].is_string());
    }
    assert_eq!(get(&sim, &token, &methods).await.0, 200, "count exhausted");
    let (_, faults) = control_get(&sim, "faults").await;
    assert_eq!(faults["value"].as_array().unwrap().len(), 1);
    assert_eq!(faults["value"][0]["path_prefix"], "/groups");
    assert_eq!(control_delete(&sim, "faults").await, 204);
    let (_, faults) = control_get(&sim, "faults").await;
    assert_eq!(faults["value"], json!([]));
}

#[tokio::test]
async fn unavailable_and_timeout_faults_use_graphs_codes() {
    let (sim, token) = start(demo()).await;
    let methods = format!("/users/{ADELE}/authentication/methods");
    control(
        &sim,
        "faults",
        &json!({"status": 503, "retry_after": 2, "count": 1}),
    )
    .await;
    let response = sim
        .client
        .get(sim.graph(&methods))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "serviceNotAvailable");

    control(
        &sim,
        "faults",
        &json!({"path_prefix": "/v1.0/users", "status": 504, "count": 1}),
    )
    .await;
    let (status, body) = get(&sim, &token, &methods).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "UnknownError");
    assert_eq!(get(&sim, &token, &methods).await.0, 200);

    // Faults never touch the control surface.
    control(&sim, "faults", &json!({"status": 503})).await;
    assert_eq!(control_get(&sim, "clock").await.0, 200);
    assert_eq!(control_delete(&sim, "faults").await, 204);
    assert_eq!(get(&sim, &token, &methods).await.0, 200);

    for bad in [
        json!({"status": 500}),
        json!({"status": 429, "retry_after": "soon"}),
        json!({}),
        json!({"path_prefix": "users", "status": 429}),
    ] {
        let (status, body) = control(&sim, "faults", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_latency_fault_delays_matching_requests() {
    let (sim, token) = start(demo()).await;
    let methods = format!("/users/{ADELE}/authentication/methods");
    control(
        &sim,
        "faults",
        &json!({"path_prefix": "/users", "latency_ms": 300, "count": 1}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(get(&sim, &token, &methods).await.0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(get(&sim, &token, &methods).await.0, 200);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the fault was used up"
    );
}

#[tokio::test]
async fn the_clock_and_the_outbox_are_controllable() {
    let (sim, _) = start(demo()).await;
    let before = sim.sim.now();
    let (status, body) = control(&sim, "clock", &json!({"advance_seconds": 3600})).await;
    assert_eq!(status, 200);
    assert!(body["now"].is_string());
    assert!(sim.sim.now() - before >= time::Duration::hours(1));
    for bad in [
        json!({"advance_seconds": -1}),
        json!({"seconds": 5}),
        json!({"advance_seconds": u64::MAX}),
    ] {
        assert_eq!(control(&sim, "clock", &bad).await.0, 400, "{bad}");
    }

    sim.sim
        .tenant()
        .outbox
        .push(json!({"subject": "Your code"}));
    let (status, outbox) = control_get(&sim, "outbox").await;
    assert_eq!(status, 200);
    assert_eq!(outbox["value"][0]["subject"], "Your code");
    assert_eq!(control_delete(&sim, "outbox").await, 204);
    assert_eq!(control_get(&sim, "outbox").await.1["value"], json!([]));
    assert_eq!(
        control_get(&sim, "users/nobody@contoso.com/lockout")
            .await
            .0,
        404
    );
}
