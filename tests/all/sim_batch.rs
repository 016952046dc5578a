//! The emulator's JSON batching (`POST /v1.0/$batch`) over real HTTP: each
//! request answered as if sent alone, faults applied per request, writes
//! carried out, and the batches Graph refuses refused whole, running nothing.

use std::time::{Duration, Instant};

use latchkey_tests::TestSim;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ALEX: &str = "8f080165-38fe-44c1-b3b8-6f4dafad5194";

/// Posts `body` to the batch endpoint with `token`.
async fn batch(sim: &TestSim, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = sim.client.post(sim.graph("/$batch")).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// `GET path` alone.
async fn alone(sim: &TestSim, token: &str, path: &str) -> (StatusCode, Value) {
    let response = sim
        .client
        .get(sim.graph(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Whether Alex's account is enabled, read alone.
async fn alex_enabled(sim: &TestSim, token: &str) -> Value {
    let (_, alex) = alone(sim, token, &format!("/users/{ALEX}?$select=accountEnabled")).await;
    alex["accountEnabled"].clone()
}

/// A body with the volatile parts of Graph's error envelope removed.
fn stable(mut body: Value) -> Value {
    if let Some(inner) = body.pointer_mut("/error/innerError") {
        *inner = Value::Null;
    }
    body
}

fn gets(paths: &[&str]) -> Value {
    let requests: Vec<Value> = paths
        .iter()
        .enumerate()
        .map(|(i, url)| json!({"id": format!("r{i}"), "method": "GET", "url": url}))
        .collect();
    json!({ "requests": requests })
}

#[tokio::test]
async fn each_request_is_answered_as_if_sent_alone() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    let paths = [
        format!("/users/{ADELE}?$select=id,displayName,accountEnabled"),
        "/users/nobody@contoso.com".to_owned(),
        // Spaces as written, as Graph takes them in a batch.
        format!("/auditLogs/signIns?$filter=userId eq '{ADELE}'&$top=2"),
        "/domains/contoso.com".to_owned(),
        format!("/users/{ALEX}/manager?$select=id"),
    ];
    let mut requests: Vec<&str> = paths.iter().map(String::as_str).collect();
    // Without the leading slash, as Graph's own examples write it.
    requests.push("users?$top=1&$select=id");
    let (status, answer) = batch(&sim, Some(&token), &gets(&requests)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let responses = answer["responses"].as_array().unwrap();
    assert_eq!(responses.len(), requests.len());
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response["id"], format!("r{i}"));
        let path = format!("/{}", requests[i].trim_start_matches('/'));
        let (alone_status, alone_body) = alone(&sim, &token, &path).await;
        assert_eq!(
            response["status"],
            alone_status.as_u16(),
            "{path}: {response}"
        );
        assert_eq!(
            stable(response["body"].clone()),
            stable(alone_body),
            "{path}"
        );
        assert!(
            response["headers"]["content-type"]
                .as_str()
                .unwrap()
                .starts_with("application/json"),
            "{response}"
        );
        assert!(response["headers"]["request-id"].is_string(), "{response}");
    }
    assert_eq!(responses[1]["status"], 404);
    assert_eq!(
        responses[1]["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert_eq!(responses[2]["body"]["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn faults_apply_to_each_request_in_a_batch_not_to_the_batch() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    sim.add_fault(
        json!({"path_prefix": "/reports", "status": 429, "retry_after": "7", "count": 1}),
    )
    .await;
    let registration = format!("/reports/authenticationMethods/userRegistrationDetails/{ADELE}");
    let body = gets(&[&format!("/users/{ADELE}"), &registration]);
    let (status, answer) = batch(&sim, Some(&token), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["responses"][0]["status"], 200);
    assert_eq!(answer["responses"][1]["status"], 429);
    assert_eq!(answer["responses"][1]["headers"]["retry-after"], "7");
    assert_eq!(
        answer["responses"][1]["body"]["error"]["code"],
        "TooManyRequests"
    );
    // The fault was used up by the request it applied to.
    let (_, again) = batch(&sim, Some(&token), &body).await;
    assert_eq!(again["responses"][1]["status"], 200, "{again}");

    // Latency applies to each request, and they run at once: five requests
    // of 400 ms each take 2 s one after the other.
    sim.add_fault(json!({"latency_ms": 400})).await;
    let adele = format!("/users/{ADELE}");
    let five = gets(&[adele.as_str(); 5]);
    let started = Instant::now();
    let (status, answer) = batch(&sim, Some(&token), &five).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1600), "{elapsed:?}");
}

#[tokio::test]
async fn a_write_in_a_batch_is_carried_out() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    let body = json!({"requests": [{
        "id": "1",
        "method": "PATCH",
        "url": format!("/users/{ALEX}"),
        "headers": {"Content-Type": "application/json"},
        "body": {"accountEnabled": false},
    }]});
    let (status, answer) = batch(&sim, Some(&token), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["responses"][0]["status"], 204, "{answer}");
    assert!(answer["responses"][0].get("body").is_none(), "{answer}");
    assert_eq!(alex_enabled(&sim, &token).await, false);
}

#[tokio::test]
async fn batches_graph_refuses_are_refused_whole_and_run_nothing() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    let disable_alex = json!({
        "id": "w",
        "method": "PATCH",
        "url": format!("/users/{ALEX}"),
        "headers": {"Content-Type": "application/json"},
        "body": {"accountEnabled": false},
    });
    let get = |id: &str, url: &str| json!({"id": id, "method": "GET", "url": url});
    let cases = [
        (json!({"requests": []}), "from 1 to 20"),
        (
            json!({"requests": (0..21).map(|i| get(&i.to_string(), "/users")).collect::<Vec<_>>()}),
            "from 1 to 20",
        ),
        (
            json!({"requests": [get("A", "/users"), get("a", "/users"), disable_alex]}),
            "unique",
        ),
        (
            json!({"requests": [disable_alex, get("2", "https://graph.microsoft.com/v1.0/users")]}),
            "relative",
        ),
        (
            json!({"requests": [disable_alex, get("2", "/v1.0/users")]}),
            "relative",
        ),
        (
            json!({"requests": [disable_alex, get("2", "/$batch")]}),
            "cannot contain a batch",
        ),
        (
            json!({"requests": [disable_alex, {"id": "2", "method": "GET", "url": "/users", "dependsOn": ["w"]}]}),
            "dependsOn",
        ),
        (
            json!({"requests": [{"id": "1", "method": "PATCH", "url": format!("/users/{ALEX}"), "body": {"accountEnabled": false}}]}),
            "Content-Type",
        ),
        (
            json!({"requests": [disable_alex, {"id": "2", "method": "TRACE", "url": "/users"}]}),
            "method",
        ),
        (json!({"requests": [disable_alex], "extra": 1}), "extra"),
        (json!([1, 2]), "Invalid request body"),
    ];
    for (body, says) in cases {
        let (status, answer) = batch(&sim, Some(&token), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "Request_BadRequest", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(
        alex_enabled(&sim, &token).await,
        true,
        "no refused batch ran its write"
    );

    let (status, answer) = batch(&sim, None, &json!({"requests": [disable_alex]})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "InvalidAuthenticationToken");
    let (status, _) = batch(
        &sim,
        Some("not-a-token"),
        &json!({"requests": [disable_alex]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(alex_enabled(&sim, &token).await, true);
}

#[tokio::test]
async fn a_batch_as_microsofts_python_sdk_writes_it_is_answered() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    // msgraph-core's shape: percent-encoded `$`, `depends_on` in snake case
    // (ignored), an empty `dependsOn`, lowercase header names.
    let body = json!({"requests": [{
        "id": "adele",
        "method": "GET",
        "url": "/users/adele.vance%40contoso.com?%24select=id,userPrincipalName",
        "depends_on": [],
        "dependsOn": [],
        "headers": {"accept": "application/json"},
    }]});
    let (status, answer) = batch(&sim, Some(&token), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let response = &answer["responses"][0];
    assert_eq!(response["status"], 200, "{answer}");
    assert_eq!(response["body"]["id"], ADELE);
    assert_eq!(
        response["body"]["userPrincipalName"],
        "adele.vance@contoso.com"
    );
    assert!(response["body"].get("displayName").is_none(), "{response}");
}
