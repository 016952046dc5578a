//! The emulator's identity endpoints and token checks.

use latchkey_tests::TestSim;

#[tokio::test]
async fn client_credentials_give_a_token_graph_accepts() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let missing = sim.client.get(sim.graph("/users")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client() {
    let sim = TestSim::start().await;
    let (tenant, client_id, _) = sim.app();
    let response = sim
        .client
        .post(format!("{}/{tenant}/oauth2/v2.0/token", sim.base_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", "wrong"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"][0], 7000215);
}
