//! The Graph client against the emulator over real HTTP: tokens (cached,
//! shared, replaced when refused, refused for a wrong secret), reads, writes,
//! paging, Graph's error envelope, and retries under injected throttling,
//! unavailability and latency (`/_sim/faults`).

use std::time::{Duration, Instant};

use latchkey::graph::{GraphClient, GraphConfig, GraphError, GraphRequest, Secret};
use latchkey_tests::TestSim;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADELE: &str = "adele.vance@contoso.com";
const ADELE_ID: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ALEX: &str = "alex.wilber@contoso.com";

/// The demo app's configuration pointed at `sim`, with waits short enough
/// for tests.
fn config(sim: &TestSim) -> GraphConfig {
    let (tenant, client_id, secret) = sim.app();
    let mut config = GraphConfig::new(tenant.parse().unwrap(), client_id, Secret::new(secret));
    config.authority = sim.base_url.clone();
    config.graph_base_url = sim.graph("");
    config.retry_base_wait = Duration::from_millis(20);
    config.max_retry_wait = Duration::from_secs(2);
    config
}

fn client(sim: &TestSim) -> GraphClient {
    GraphClient::new(config(sim)).unwrap()
}

/// How many requests the only fault left still applies to.
async fn remaining(sim: &TestSim) -> Value {
    let faults = sim.faults().await;
    assert_eq!(faults["value"].as_array().unwrap().len(), 1, "{faults}");
    faults["value"][0]["count"].clone()
}

#[tokio::test]
async fn one_token_serves_concurrent_and_later_requests() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.spawn(async move { client.get(&GraphClient::user_path(ADELE)).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().unwrap().status, StatusCode::OK);
    }
    assert_eq!(client.token_fetches(), 1, "one fetch for eight requests");
    client.get("/users?$top=1").await.unwrap();
    assert_eq!(client.token_fetches(), 1, "the token is reused");
}

#[tokio::test]
async fn a_token_graph_refuses_is_replaced_once() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    client.get(&GraphClient::user_path(ADELE)).await.unwrap();
    // Two hours on at the emulator: the cached token has expired there,
    // while this client's own clock still holds it fresh.
    let response = sim
        .client
        .post(format!("{}/_sim/clock", sim.base_url))
        .json(&json!({"advance_seconds": 7200}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let user = client.get(&GraphClient::user_path(ADELE)).await.unwrap();
    assert_eq!(user.body["id"], ADELE_ID);
    assert_eq!(client.token_fetches(), 2);
}

#[tokio::test]
async fn a_wrong_secret_is_a_token_error_with_aadsts_7000215() {
    let sim = TestSim::start().await;
    let mut config = config(&sim);
    config.client_secret = Secret::new("not-the-secret-4711");
    let client = GraphClient::new(config).unwrap();
    let error = client
        .get(&GraphClient::user_path(ADELE))
        .await
        .unwrap_err();
    let GraphError::Token {
        status,
        error: oauth_error,
        error_codes,
        description,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*status, StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error, "invalid_client");
    assert_eq!(error_codes, &[7000215]);
    assert!(description.starts_with("AADSTS7000215"), "{description}");
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("not-the-secret-4711"), "{text}");
    }
    assert_eq!(client.token_fetches(), 0);
}

#[tokio::test]
async fn a_user_by_upn_comes_back_with_graphs_request_id() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let path = GraphClient::user_path(ADELE);
    assert_eq!(path, "/users/adele.vance%40contoso.com");
    let user = client
        .get(&format!(
            "{path}?$select=id,userPrincipalName,accountEnabled"
        ))
        .await
        .unwrap();
    assert_eq!(user.status, StatusCode::OK);
    assert_eq!(user.body["id"], ADELE_ID);
    assert_eq!(user.body["userPrincipalName"], ADELE);
    assert_eq!(user.body["accountEnabled"], true);
    let request_id = user.request_id.unwrap();
    assert_eq!(request_id.len(), 36, "{request_id}");
    let echoed = user.client_request_id.unwrap();
    assert_ne!(echoed, request_id, "our own client-request-id is echoed");
}

#[tokio::test]
async fn an_unknown_user_is_graphs_404_with_code_and_request_id() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let error = client
        .get(&GraphClient::user_path("nobody@contoso.com"))
        .await
        .unwrap_err();
    let GraphError::Api {
        status,
        code,
        message,
        request_id,
        client_request_id,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*status, StatusCode::NOT_FOUND);
    assert_eq!(code, "Request_ResourceNotFound");
    assert!(message.contains("nobody@contoso.com"), "{message}");
    assert!(request_id.as_deref().is_some_and(|id| id.len() == 36));
    assert!(client_request_id.is_some());
    assert!(error.to_string().contains("Request_ResourceNotFound"));
}

#[tokio::test]
async fn paging_with_top_one_collects_every_sign_in_once() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let everything = client.get("/auditLogs/signIns").await.unwrap().body["value"]
        .as_array()
        .unwrap()
        .clone();
    assert!(everything.len() > 3, "the demo tenant has sign-ins");
    let paged = client.get_all("/auditLogs/signIns?$top=1").await.unwrap();
    assert_eq!(paged.pages, everything.len());
    assert_eq!(paged.items, everything, "every record once, in order");
    assert_eq!(paged.request_ids.len(), paged.pages);

    let filtered = client
        .get_all(&format!(
            "/auditLogs/signIns?$top=1&$filter=userId eq '{ADELE_ID}'"
        ))
        .await
        .unwrap();
    assert!(filtered.pages > 1);
    assert!(filtered.items.iter().all(|s| s["userId"] == ADELE_ID));

    let mut limited = config(&sim);
    limited.max_pages = 3;
    let error = GraphClient::new(limited)
        .unwrap()
        .get_all("/auditLogs/signIns?$top=1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, GraphError::TooManyPages { limit: 3 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_429_with_a_fractional_retry_after_is_waited_out() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    sim.add_fault(
        json!({"path_prefix": "/users", "status": 429, "retry_after": "0.2", "count": 2}),
    )
    .await;
    let started = Instant::now();
    let user = client.get(&GraphClient::user_path(ADELE)).await.unwrap();
    assert_eq!(user.body["id"], ADELE_ID);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two waits of 0.2 s: {:?}",
        started.elapsed()
    );
    assert_eq!(sim.faults().await, json!({"value": []}), "both consumed");
}

#[tokio::test]
async fn a_503_without_retry_after_is_retried_with_backoff() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    sim.add_fault(json!({"path_prefix": "/users", "status": 503, "count": 2}))
        .await;
    let user = client.get(&GraphClient::user_path(ADELE)).await.unwrap();
    assert_eq!(user.status, StatusCode::OK);
    assert_eq!(sim.faults().await, json!({"value": []}));
}

#[tokio::test]
async fn throttling_through_every_retry_is_a_throttled_error() {
    let sim = TestSim::start().await;
    let mut config = config(&sim);
    config.max_retries = 2;
    let client = GraphClient::new(config).unwrap();
    sim.add_fault(
        json!({"path_prefix": "/users", "status": 429, "retry_after": "0.01", "count": 3}),
    )
    .await;
    let error = client
        .get(&GraphClient::user_path(ADELE))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            GraphError::Throttled { retries: 2, last_status, request_id: Some(_) }
                if *last_status == StatusCode::TOO_MANY_REQUESTS
        ),
        "{error:?}"
    );
    assert_eq!(
        sim.faults().await,
        json!({"value": []}),
        "exactly three attempts"
    );
    client.get(&GraphClient::user_path(ADELE)).await.unwrap();
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_and_a_get_is_tried_again() {
    let sim = TestSim::start().await;
    let mut config = config(&sim);
    config.timeout = Duration::from_millis(300);
    config.max_retries = 1;
    let client = GraphClient::new(config).unwrap();
    // Fetch the token first, so that only Graph's latency is timed.
    client.get("/users?$top=1").await.unwrap();
    sim.add_fault(json!({"path_prefix": "/users", "latency_ms": 1500, "count": 2}))
        .await;
    let started = Instant::now();
    let error = client
        .get(&GraphClient::user_path(ADELE))
        .await
        .unwrap_err();
    assert!(
        matches!(error, GraphError::Timeout { attempts: 2, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert_eq!(sim.faults().await, json!({"value": []}), "tried twice");
}

#[tokio::test]
async fn a_post_is_not_repeated_after_a_503_or_a_timeout_unless_marked_idempotent() {
    let sim = TestSim::start().await;
    let mut config = config(&sim);
    config.timeout = Duration::from_millis(300);
    let client = GraphClient::new(config).unwrap();
    let revoke = format!("{}/revokeSignInSessions", GraphClient::user_path(ALEX));

    sim.add_fault(json!({"path_prefix": "/users", "status": 503, "count": 2}))
        .await;
    let error = client.post(&revoke, &json!({})).await.unwrap_err();
    assert!(
        matches!(&error, GraphError::Api { status, code, .. }
            if *status == StatusCode::SERVICE_UNAVAILABLE && code == "serviceNotAvailable"),
        "{error:?}"
    );
    assert_eq!(remaining(&sim).await, 1, "sent once");
    let revoked = client.post_idempotent(&revoke, &json!({})).await.unwrap();
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.body["value"], true);
    assert_eq!(sim.faults().await, json!({"value": []}));

    sim.add_fault(json!({"path_prefix": "/users", "latency_ms": 1500, "count": 2}))
        .await;
    let error = client.post(&revoke, &json!({})).await.unwrap_err();
    assert!(
        matches!(error, GraphError::Timeout { attempts: 1, .. }),
        "{error:?}"
    );
    assert_eq!(remaining(&sim).await, 1, "sent once");
    sim.clear_faults().await;

    // A throttled POST was not carried out, so it is always retried.
    sim.add_fault(
        json!({"path_prefix": "/users", "status": 429, "retry_after": "0.05", "count": 1}),
    )
    .await;
    let revoked = client
        .send(GraphRequest::post(revoke.clone(), json!({})))
        .await
        .unwrap();
    assert_eq!(revoked.body["value"], true);
    assert_eq!(sim.faults().await, json!({"value": []}));
}

#[tokio::test]
async fn patch_answers_204_without_a_body() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let user = GraphClient::user_path(ALEX);
    let patched = client
        .patch(&user, &json!({"accountEnabled": false}))
        .await
        .unwrap();
    assert_eq!(patched.status, StatusCode::NO_CONTENT);
    assert_eq!(patched.body, Value::Null);
    assert!(patched.request_id.is_some());
    let after = client
        .get(&format!("{user}?$select=accountEnabled"))
        .await
        .unwrap();
    assert_eq!(after.body["accountEnabled"], false);
}

#[tokio::test]
async fn a_temporary_access_pass_is_created_with_201_and_deleted_with_204() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let taps = format!(
        "{}/authentication/temporaryAccessPassMethods",
        GraphClient::user_path(ALEX)
    );
    let created = client
        .post(
            &taps,
            &json!({"lifetimeInMinutes": 60, "isUsableOnce": true}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(created.body["temporaryAccessPass"].is_string());
    let id = created.body["id"].as_str().unwrap();
    let deleted = client.delete(&format!("{taps}/{id}")).await.unwrap();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    let left = client.get_all(&taps).await.unwrap();
    assert_eq!(left.items, Vec::<Value>::new());
}

#[tokio::test]
async fn requests_outside_the_graph_base_url_are_refused_before_anything_is_sent() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    for path in [
        format!("{}/_sim/faults", sim.base_url),
        "users".to_owned(),
        "/../_sim/faults".to_owned(),
    ] {
        let error = client.get(&path).await.unwrap_err();
        assert!(
            matches!(error, GraphError::InvalidRequest(_)),
            "{path}: {error:?}"
        );
    }
    assert_eq!(client.token_fetches(), 0);
}

#[tokio::test]
async fn a_batch_answers_each_get_as_a_get_alone_would() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let paths = [
        GraphClient::user_path(ADELE),
        "/users/nobody@contoso.com".to_owned(),
        // Not a path under the base URL: refused before anything is sent.
        "users".to_owned(),
        format!("/auditLogs/signIns?$filter=userId eq '{ADELE_ID}'&$top=1"),
    ];
    let answers = client.get_batch(&paths).await.unwrap();
    assert_eq!(client.exchanges(), 1, "one exchange for the whole batch");
    assert_eq!(answers.len(), paths.len());
    let mut answers = answers.into_iter();

    let adele = answers.next().unwrap().unwrap();
    assert_eq!(adele.status, StatusCode::OK);
    assert!(adele.request_id.is_some());
    assert_eq!(adele.body, client.get(&paths[0]).await.unwrap().body);

    match answers.next().unwrap().unwrap_err() {
        GraphError::Api { status, code, .. } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(code, "Request_ResourceNotFound");
        }
        other => panic!("{other}"),
    }
    let refused = answers.next().unwrap().unwrap_err();
    assert!(
        matches!(refused, GraphError::InvalidRequest(_)),
        "{refused}"
    );

    // A page read in a batch is followed through its next links.
    let first = answers.next().unwrap().unwrap();
    assert!(first.body["@odata.nextLink"].is_string(), "{}", first.body);
    let pages = client.all_pages(first).await.unwrap();
    let alone = client.get_all(&paths[3]).await.unwrap();
    assert!(pages.pages > 1);
    assert_eq!(pages.items, alone.items);
}

#[tokio::test]
async fn more_than_twenty_gets_go_in_batches_of_twenty() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    let paths: Vec<String> = (0..25)
        .map(|i| GraphClient::user_path(if i % 2 == 0 { ADELE } else { ALEX }))
        .collect();
    let answers = client.get_batch(&paths).await.unwrap();
    assert_eq!(client.exchanges(), 2);
    for (i, answer) in answers.into_iter().enumerate() {
        let expected = if i % 2 == 0 { ADELE } else { ALEX };
        assert_eq!(answer.unwrap().body["userPrincipalName"], expected, "{i}");
    }
    assert!(client.get_batch(&[]).await.unwrap().is_empty());
    assert_eq!(client.exchanges(), 2, "nothing to ask, nothing sent");
}

#[tokio::test]
async fn a_request_throttled_in_a_batch_is_sent_again_without_the_others() {
    let sim = TestSim::start().await;
    let client = client(&sim);
    sim.add_fault(
        json!({"path_prefix": "/reports", "status": 429, "retry_after": "0.05", "count": 2}),
    )
    .await;
    sim.add_fault(json!({"path_prefix": "/domains", "status": 503, "count": 1}))
        .await;
    let paths = [
        GraphClient::user_path(ADELE),
        format!("/reports/authenticationMethods/userRegistrationDetails/{ADELE_ID}"),
        "/domains/contoso.com".to_owned(),
    ];
    let started = Instant::now();
    let answers = client.get_batch(&paths).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    for answer in answers {
        assert_eq!(answer.unwrap().status, StatusCode::OK);
    }
    // The batch, then the two throttled or unavailable, then the one
    // throttled twice.
    assert_eq!(client.exchanges(), 3);
    assert_eq!(sim.faults().await, json!({"value": []}));
}

#[tokio::test]
async fn a_request_throttled_through_every_retry_fails_alone() {
    let sim = TestSim::start().await;
    let mut config = config(&sim);
    config.max_retries = 1;
    let client = GraphClient::new(config).unwrap();
    sim.add_fault(json!({"path_prefix": "/reports", "status": 429, "retry_after": "0.01"}))
        .await;
    let paths = [
        GraphClient::user_path(ADELE),
        format!("/reports/authenticationMethods/userRegistrationDetails/{ADELE_ID}"),
    ];
    let answers = client.get_batch(&paths).await.unwrap();
    assert!(answers[0].is_ok());
    match &answers[1] {
        Err(GraphError::Throttled {
            retries,
            last_status,
            ..
        }) => {
            assert_eq!(*retries, 1);
            assert_eq!(*last_status, StatusCode::TOO_MANY_REQUESTS);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.exchanges(), 2);
}
