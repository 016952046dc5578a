//! `latchkey sim`: the emulator as a user starts it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::{assert_usage_error, latchkey_in, root};

#[test]
fn print_credentials_is_one_json_object_with_what_a_client_needs() {
    let run = latchkey_in(&root(), &["sim", "--port", "0", "--print-credentials"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let credentials: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    for key in [
        "tenant_id",
        "client_id",
        "client_secret",
        "authority",
        "graph_base_url",
    ] {
        assert!(credentials[key].is_string(), "{key} missing: {credentials}");
    }
    let authority = credentials["authority"].as_str().unwrap();
    assert!(authority.starts_with("http://127.0.0.1:"), "{authority}");
    assert_eq!(
        credentials["graph_base_url"].as_str().unwrap(),
        format!("{authority}/v1.0")
    );
}

#[test]
fn a_bad_seed_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"id": "x", "nmae": "typo"}"#,
    )
    .unwrap();
    let run = latchkey_in(dir.path(), &["sim", "--port", "0", "--seed", "bad.json"]);
    assert_usage_error(&run, "bad.json");
    let missing = latchkey_in(
        dir.path(),
        &["sim", "--port", "0", "--seed", "missing.json"],
    );
    assert_usage_error(&missing, "missing.json");
}

#[test]
fn a_custom_seed_is_served_on_the_printed_address() {
    let dir = tempfile::tempdir().unwrap();
    let seed = r#"{
      "id": "2b0c4a71-8f7e-4d53-9a16-3e5f0d2c8b94", "name": "fabrikam",
      "display_name": "Fabrikam", "domain": "fabrikam.com",
      "apps": [{"client_id": "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e", "display_name": "Bot",
                "client_secret": "s3cret", "roles": ["User.Read.All"]}],
      "users": [{"id": "5d6e7f80-91a2-4b3c-8d4e-5f60718293a4", "user_principal_name": "sam.lee@fabrikam.com",
                 "display_name": "Sam Lee", "password": "Known-Pass-123", "password_age_days": 3}]
    }"#;
    std::fs::write(dir.path().join("fabrikam.json"), seed).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .current_dir(dir.path())
        .args(["sim", "--port", "0", "--seed", "fabrikam.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("latchkey sim listening on ")
        .unwrap()
        .to_owned();
    let credentials: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        credentials["client_id"],
        "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e"
    );
    assert_eq!(credentials["tenant"], "fabrikam");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let client = reqwest::Client::new();
        let token: serde_json::Value = client
            .post(format!("{base}/fabrikam/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "0f1e2d3c-4b5a-4968-8778-695a4b3c2d1e"),
                ("client_secret", "s3cret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = client
            .get(format!("{base}/v1.0/users/SAM.LEE%40fabrikam.com"))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        user.status().as_u16()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
}
