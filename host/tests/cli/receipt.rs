//! `latchkey receipt verify`: checking a receipt with only the host's public key.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use latchkey::keys;
use latchkey::policy::{Evaluation, ModuleHash};
use latchkey::receipt::{self, DecisionId, HostKeys, IssueRequest, SignedReceipt};
use latchkey::sdk::{Action, Decision, Facts};
use latchkey::tenant::TenantId;

use crate::{assert_usage_error, latchkey_in};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const ALICE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh host key with its public half written to `dir/name.pub.pem`.
fn host_key(dir: &Path, name: &str) -> (HostKeys, PathBuf) {
    let key = keys::generate();
    let path = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&path, keys::public_to_pem(&key.verifying_key()).unwrap()).unwrap();
    (HostKeys::new(key), path)
}

/// Issues, with the library, a receipt allowing Alice a password reset at
/// `issued_at`, and writes its envelope to `dir/receipt.json`.
fn sign_receipt(dir: &Path, keys: &HostKeys, issued_at: i64) -> (SignedReceipt, PathBuf) {
    let tenant: TenantId = TENANT.parse().unwrap();
    let alice = ALICE.parse().unwrap();
    let module = ModuleHash::of(b"contoso policy");
    let mut facts = Facts {
        tenant_id: TENANT.into(),
        requested_actions: vec![Action::ResetPassword],
        ..Facts::default()
    };
    facts.requester.id = ALICE.into();
    let evaluation = Evaluation {
        module,
        decision: Decision::allow([Action::ResetPassword]).because("verified by MFA"),
        fault: None,
        fuel_used: 1,
        elapsed: std::time::Duration::ZERO,
    };
    let signed = receipt::issue(
        keys,
        &IssueRequest {
            tenant: &tenant,
            requester: &alice,
            target: &alice,
            pinned_module: &module,
            facts: &facts,
            evaluation: &evaluation,
            decision_id: &DecisionId::generate().unwrap(),
            max_tap_lifetime_minutes: 60,
        },
        issued_at,
    )
    .unwrap();
    let path = dir.join("receipt.json");
    std::fs::write(&path, signed.envelope()).unwrap();
    (signed, path)
}

#[test]
fn a_fresh_receipt_is_valid_and_says_what_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (keys, public) = host_key(d, "host");
    let (signed, _) = sign_receipt(d, &keys, now());

    let run = latchkey_in(
        d,
        &[
            "receipt",
            "verify",
            "--pub",
            public.to_str().unwrap(),
            "receipt.json",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let first = run.stdout.lines().next().unwrap();
    assert_eq!(first, "valid: authentic, not expired");
    let r = signed.receipt();
    for expected in [
        format!("tenant       {TENANT}"),
        format!("requester    {ALICE}"),
        format!("target       {ALICE}"),
        "actions      reset-password".to_owned(),
        format!("module       {}", ModuleHash::of(b"contoso policy")),
        format!("signed by    {}", keys.kid()),
        format!("expires at   {} (in ", r.expires_at()),
    ] {
        assert!(
            run.stdout.contains(&expected),
            "{expected:?} not in\n{}",
            run.stdout
        );
    }
}

#[test]
fn an_expired_receipt_is_authentic_but_passes_only_with_allow_expired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (keys, _) = host_key(d, "host");
    sign_receipt(d, &keys, now() - 3_600);

    let run = latchkey_in(
        d,
        &["receipt", "verify", "--pub", "host.pub.pem", "receipt.json"],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with("authentic, expired "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("actions      reset-password"));

    let allowed = latchkey_in(
        d,
        &[
            "receipt",
            "verify",
            "--allow-expired",
            "--pub",
            "host.pub.pem",
            "receipt.json",
        ],
    );
    assert_eq!(allowed.code, 0, "{}{}", allowed.stdout, allowed.stderr);
    assert!(allowed.stdout.starts_with("authentic, expired "));
}

#[test]
fn altered_or_foreign_receipts_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (keys, _) = host_key(d, "host");
    let (_other, _) = host_key(d, "other");
    let (signed, path) = sign_receipt(d, &keys, now());

    // Another host's key: not trusted.
    let foreign = latchkey_in(
        d,
        &[
            "receipt",
            "verify",
            "--pub",
            "other.pub.pem",
            "receipt.json",
        ],
    );
    assert_eq!(foreign.code, 1, "{}{}", foreign.stdout, foreign.stderr);
    assert!(
        foreign.stdout.starts_with("INVALID: "),
        "{}",
        foreign.stdout
    );
    assert!(
        foreign.stdout.contains(keys.kid().as_str()),
        "{}",
        foreign.stdout
    );

    // Both keys given (as after a rotation): valid.
    let both = latchkey_in(
        d,
        &[
            "receipt",
            "verify",
            "--pub",
            "other.pub.pem",
            "--pub",
            "host.pub.pem",
            "receipt.json",
        ],
    );
    assert_eq!(both.code, 0, "{}{}", both.stdout, both.stderr);

    // The payload re-encoded with a requester swapped in: the signature fails.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut envelope: serde_json::Value = serde_json::from_str(signed.envelope()).unwrap();
    let payload = String::from_utf8(b64.decode(envelope["payload"].as_str().unwrap()).unwrap())
        .unwrap()
        .replace(
            &format!("\"target\":\"{ALICE}\""),
            "\"target\":\"8f080165-38fe-44c1-b3b8-6f4dafad5194\"",
        );
    envelope["payload"] = b64.encode(payload).into();
    std::fs::write(&path, envelope.to_string()).unwrap();
    let altered = latchkey_in(
        d,
        &["receipt", "verify", "--pub", "host.pub.pem", "receipt.json"],
    );
    assert_eq!(altered.code, 1, "{}{}", altered.stdout, altered.stderr);
    assert!(
        altered
            .stdout
            .starts_with("INVALID: the signature does not verify"),
        "{}",
        altered.stdout
    );

    // Not a receipt at all is a "no", not a crash.
    std::fs::write(&path, "@@@").unwrap();
    let garbage = latchkey_in(
        d,
        &["receipt", "verify", "--pub", "host.pub.pem", "receipt.json"],
    );
    assert_eq!(garbage.code, 1);
    assert!(
        garbage
            .stdout
            .starts_with("INVALID: not a receipt envelope"),
        "{}",
        garbage.stdout
    );
}

#[test]
fn bad_keys_and_missing_files_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (keys, _) = host_key(d, "host");
    sign_receipt(d, &keys, now());
    std::fs::write(d.join("junk.pem"), "-----BEGIN NONSENSE-----").unwrap();
    std::fs::write(
        d.join("private.pem"),
        keys::private_to_pem(&keys::generate()).unwrap(),
    )
    .unwrap();

    assert_usage_error(
        &latchkey_in(d, &["receipt", "verify", "receipt.json"]),
        "--pub",
    );
    assert_usage_error(
        &latchkey_in(
            d,
            &["receipt", "verify", "--pub", "junk.pem", "receipt.json"],
        ),
        "public key",
    );
    // A private key where the public one belongs.
    assert_usage_error(
        &latchkey_in(
            d,
            &["receipt", "verify", "--pub", "private.pem", "receipt.json"],
        ),
        "public key",
    );
    assert_usage_error(
        &latchkey_in(
            d,
            &["receipt", "verify", "--pub", "host.pub.pem", "missing.json"],
        ),
        "missing.json",
    );
    assert_usage_error(
        &latchkey_in(
            d,
            &["receipt", "verify", "--pub", "nope.pub.pem", "receipt.json"],
        ),
        "nope.pub.pem",
    );
}
