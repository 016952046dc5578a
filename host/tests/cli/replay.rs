//! `latchkey audit replay`: the recorded module on the recorded facts, found
//! offline by its sha256.

use std::path::{Path, PathBuf};

use latchkey::audit::records::DecisionRecord;
use latchkey::audit::{AuditLog, Kind};
use latchkey::ids::{DecisionId, UserId};
use latchkey::policy::{DiskCache, Limits, Sandbox};
use latchkey::sdk::{Action, Facts, Method, Scenario, Verification};
use latchkey::tenant::TenantId;
use serde_json::json;

use crate::{assert_usage_error, default_module, latchkey_in};

const TENANT: &str = "9a3f6c2e-1b4d-4f8a-b5c7-2d6e8f0a1b3c";
const ADELE: &str = "3d4c5b6a-7e8f-4a1b-9c2d-0e1f2a3b4c5d";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn facts() -> Facts {
    let mut facts = Facts {
        tenant_id: TENANT.into(),
        scenario: Scenario::ForgotPassword,
        requested_actions: vec![Action::ResetPassword],
        ..Facts::default()
    };
    facts.requester.id = ADELE.into();
    facts.requester.user_principal_name = "adele.vance@contoso.com".into();
    facts.mfa.mfa_capable = true;
    facts.verifications = vec![Verification {
        method: Method::MfaStepUp,
        verified_at: facts.time.unix_seconds - 30,
    }];
    facts
}

/// A log whose seq 2 is the default policy's decision on [`facts`], made
/// with a cache directory in `dir/cache`; seq 3 is the same record with its
/// decision changed to a deny (as a tampering host would have written it).
fn make_log(dir: &Path) -> PathBuf {
    let module = std::fs::read(default_module()).unwrap();
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    let cache = cap_std::fs::Dir::open_ambient_dir(dir.join("cache"), cap_std::ambient_authority())
        .unwrap();
    let sandbox = Sandbox::new(Limits::default(), DiskCache::in_dir(cache)).unwrap();
    let loaded = sandbox.load(&module).unwrap();
    let facts = facts();
    let evaluation = sandbox.decide(&loaded, &facts);
    assert_eq!(
        evaluation.decision.kind(),
        "allow",
        "{:?}",
        evaluation.decision
    );
    let requester: UserId = ADELE.parse().unwrap();
    let record = DecisionRecord::new(
        DecisionId::generate().unwrap(),
        requester,
        &facts,
        &evaluation,
    )
    .unwrap();
    let mut altered = record.clone();
    altered.decision = latchkey::sdk::Decision::deny("no");
    let path = dir.join("audit.db");
    block_on(async {
        let log = AuditLog::open(&path).await.unwrap();
        let tenant: TenantId = TENANT.parse().unwrap();
        log.append(
            &tenant,
            Kind::Request,
            json!({"text": "I forgot my password"}),
        )
        .await
        .unwrap();
        for r in [&record, &altered] {
            log.append(&tenant, Kind::Decision, serde_json::to_value(r).unwrap())
                .await
                .unwrap();
        }
        log.close().await;
    });
    path
}

#[test]
fn a_recorded_decision_replays_the_same_from_the_module_file_or_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let module = default_module().to_str().unwrap().to_owned();
    let entry = format!("{TENANT}#2");

    let run = latchkey_in(
        dir.path(),
        &[
            "audit", "replay", "--db", "audit.db", "--module", &module, &entry,
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with(&format!("same     {entry}: allow ")),
        "{}",
        run.stdout
    );

    // Offline, from the archive the host kept in its cache directory.
    let run = latchkey_in(
        dir.path(),
        &[
            "audit",
            "replay",
            "--db",
            "audit.db",
            "--cache-dir",
            "cache",
            &entry,
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // And from a directory of modules, searched by hash.
    let modules = default_module()
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let run = latchkey_in(
        dir.path(),
        &[
            "audit",
            "replay",
            "--db",
            "audit.db",
            "--modules",
            &modules,
            &entry,
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_decision_that_does_not_replay_the_same_exits_1_and_says_how() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let entry = format!("{TENANT}#3");
    let run = latchkey_in(
        dir.path(),
        &[
            "audit",
            "replay",
            "--db",
            "audit.db",
            "--cache-dir",
            "cache",
            &entry,
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with(&format!("DIFFERENT {entry}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("decision: recorded deny"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_broken_chain_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_log(dir.path());
    block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(&db),
        )
        .await
        .unwrap();
        // Make the recorded decision a deny, in place.
        sqlx::raw_sql(
            "DROP TRIGGER audit_entries_no_update; \
             UPDATE audit_entries SET body = replace(body, '\"allow\"', '\"deny\"') WHERE seq = 2",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let entry = format!("{TENANT}#2");
    let run = latchkey_in(
        dir.path(),
        &[
            "audit",
            "replay",
            "--db",
            "audit.db",
            "--cache-dir",
            "cache",
            &entry,
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("the chain is broken at seq 2"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_entries_and_missing_modules_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let replay = |args: &[&str]| {
        let mut all = vec!["audit", "replay", "--db", "audit.db"];
        all.extend_from_slice(args);
        latchkey_in(dir.path(), &all)
    };
    assert_usage_error(&replay(&["contoso#2"]), "an entry id is <tenant id>#<seq>");
    assert_usage_error(&replay(&[&format!("{TENANT}#99")]), "there is no entry");
    assert_usage_error(
        &replay(&["--cache-dir", "cache", &format!("{TENANT}#1")]),
        "only decision entries can be replayed",
    );
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    assert_usage_error(
        &replay(&["--cache-dir", "empty", &format!("{TENANT}#2")]),
        "is not in the given places",
    );
}
