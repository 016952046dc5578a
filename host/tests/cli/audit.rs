//! `latchkey audit verify` and `latchkey audit export` on logs written by the
//! library, intact and tampered with.

use std::future::Future;
use std::path::{Path, PathBuf};

use latchkey::audit::{AuditLog, Kind};
use latchkey::tenant::TenantId;
use serde_json::{Value, json};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::{assert_usage_error, latchkey_in};

const T1: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const T2: &str = "11111111-2222-3333-4444-555555555555";

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A log with 5 entries for T1 (an intent answered, an intent not) and 3
/// for T2, written through the library.
fn make_log(dir: &Path) -> PathBuf {
    let path = dir.join("audit.db");
    block_on(async {
        let log = AuditLog::open(&path).await.unwrap();
        let (t1, t2): (TenantId, TenantId) = (T1.parse().unwrap(), T2.parse().unwrap());
        log.append(&t1, Kind::Request, json!({"text": "I can't log in"}))
            .await
            .unwrap();
        log.append(&t2, Kind::Request, json!({"text": "locked out"}))
            .await
            .unwrap();
        log.append(&t1, Kind::Decision, json!({"decision": "allow"}))
            .await
            .unwrap();
        let intent = log
            .append_intent(&t1, json!({"action": "resetPassword"}))
            .await
            .unwrap();
        log.append_outcome(&intent, json!({"status": "done"}))
            .await
            .unwrap();
        log.append_intent(&t1, json!({"action": "revokeSignInSessions"}))
            .await
            .unwrap();
        for i in 0..2 {
            log.append(&t2, Kind::Note, json!({"i": i})).await.unwrap();
        }
        log.close().await;
    });
    path
}

fn tamper(path: &Path, sql: &str) {
    block_on(async {
        let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    });
}

#[test]
fn verify_reports_each_tenant_and_ok() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let run = latchkey_in(dir.path(), &["audit", "verify", "--db", "audit.db"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].starts_with(&format!("ok       {T2}: 3 entries, head ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("ok       {T1}: 5 entries, head ")),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(", 1 intent without outcome"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "2 tenants, 8 entries: ok");
}

#[test]
fn verify_names_the_first_bad_entry_after_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_log(dir.path());
    tamper(
        &db,
        &format!(
            "DROP TRIGGER audit_entries_no_update;
             UPDATE audit_entries SET body = '{{\"decision\":\"deny\"}}'
             WHERE tenant = '{T1}' AND seq = 2;"
        ),
    );
    let run = latchkey_in(dir.path(), &["audit", "verify", "--db", "audit.db"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("ok       {T2}")),
        "{}",
        run.stdout
    );
    let bad = run
        .stdout
        .lines()
        .find(|l| l.starts_with("BAD"))
        .unwrap_or_else(|| panic!("no BAD line in {}", run.stdout));
    assert!(
        bad.starts_with(&format!(
            "BAD      {T1}: 5 entries; first bad entry: seq 2 (row 3): "
        )),
        "{bad}"
    );
    assert!(bad.contains("altered"), "{bad}");
    assert!(
        run.stdout
            .contains("MISSING  trigger audit_entries_no_update")
    );
    assert!(
        run.stdout.trim_end().ends_with("1 broken, 1 guard missing"),
        "{}",
        run.stdout
    );
}

#[test]
fn verify_names_a_deleted_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = make_log(dir.path());
    tamper(
        &db,
        &format!(
            "DROP TRIGGER audit_entries_no_delete;
             DELETE FROM audit_entries WHERE tenant = '{T2}' AND seq = 2;"
        ),
    );
    let run = latchkey_in(dir.path(), &["audit", "verify", "--db", "audit.db"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("BAD      {T2}: 2 entries; first bad entry: seq 3")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("deleted"), "{}", run.stdout);
}

#[test]
fn export_writes_one_canonical_line_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    for args in [
        &["audit", "export", "--db", "audit.db"][..],
        &["audit", "export", "--db", "audit.db", "--format", "jsonl"][..],
    ] {
        let run = latchkey_in(dir.path(), args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 8, "{}", run.stdout);
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["tenant"], T2, "tenant by tenant");
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev_sha256"], "0".repeat(64).as_str());
        let seqs: Vec<i64> = lines[3..]
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "each chain in order");
    }
}

#[test]
fn export_formats_other_than_jsonl_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    let run = latchkey_in(
        dir.path(),
        &["audit", "export", "--db", "audit.db", "--format", "csv"],
    );
    assert_usage_error(&run, "csv");
    assert!(run.stdout.is_empty());
}

#[test]
fn a_missing_database_is_a_usage_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["audit", "verify", "--db", "nope.db"][..],
        &["audit", "export", "--db", "nope.db"][..],
    ] {
        let run = latchkey_in(dir.path(), args);
        assert_usage_error(&run, "nope.db");
        assert!(!dir.path().join("nope.db").exists());
    }
}

#[test]
fn a_file_that_is_not_an_audit_log_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        "some notes, not a database at all, long enough to have a header",
    )
    .unwrap();
    let run = latchkey_in(dir.path(), &["audit", "verify", "--db", "notes.txt"]);
    assert_usage_error(&run, "notes.txt");
}
