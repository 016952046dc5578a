//! The log against real SQLite files: chains verify, every kind of tampering
//! is named, the guards hold, secrets stay out, intents get outcomes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

use super::entry::{Fields, hash_fields};
use super::*;

const T1: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const T2: &str = "11111111-2222-3333-4444-555555555555";

fn tenant(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("audit.db")
}

/// A log with 9 entries for T1 and 5 for T2, appended interleaved.
async fn filled() -> (TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(&dir)).await.unwrap();
    let (t1, t2) = (tenant(T1), tenant(T2));
    for i in 0..9 {
        log.append(
            &t1,
            Kind::Note,
            json!({"i": i, "z": "last", "a": {"y": 1, "x": [2, 1]}}),
        )
        .await
        .unwrap();
        if i % 2 == 0 {
            log.append(&t2, Kind::Request, json!({"i": i}))
                .await
                .unwrap();
        }
    }
    (dir, log)
}

/// Runs SQL on the file through a connection of its own, as someone with
/// write access to the file would.
async fn tamper(path: &Path, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await?;
    let result = sqlx::raw_sql(sql).execute(&mut conn).await.map(|_| ());
    conn.close().await?;
    result
}

fn first(report: &Report) -> &Finding {
    report.first_problem().expect("a problem was expected")
}

#[tokio::test]
async fn chains_of_two_tenants_verify() {
    let (_dir, log) = filled().await;
    let report = log.verify(Scope::All).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries(), 14);
    let counts: Vec<(&str, u64)> = report
        .tenants
        .iter()
        .map(|t| (t.tenant.as_str(), t.entries))
        .collect();
    assert_eq!(counts, [(T2, 5), (T1, 9)], "ordered by tenant");

    let entries = log.entries(&tenant(T1)).await.unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.id.seq()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert_eq!(entries[0].prev_sha256, EntryHash::GENESIS);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_sha256, pair[0].sha256);
    }
    let head = report.tenants[1].head.as_deref();
    assert_eq!(head, Some(entries[8].sha256.to_string().as_str()));
    assert_eq!(entries[3].body["i"], 3);

    let one = log.verify(Scope::Tenant(&tenant(T2))).await.unwrap();
    assert_eq!(one.tenants.len(), 1);
    assert_eq!(one.entries(), 5);
    let none = log
        .verify(Scope::Tenant(&tenant(
            "00000000-0000-0000-0000-000000000000",
        )))
        .await
        .unwrap();
    assert!(none.is_ok());
    assert_eq!(none.tenants[0].entries, 0);
}

#[tokio::test]
async fn bodies_are_stored_canonically() {
    let (dir, log) = filled().await;
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db(&dir)))
        .await
        .unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM audit_entries WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(body, r#"{"a":{"x":[2,1],"y":1},"i":0,"z":"last"}"#);
    drop(log);
}

#[tokio::test]
async fn update_and_delete_are_refused_by_the_triggers() {
    let (dir, log) = filled().await;
    let update = tamper(
        &db(&dir),
        "UPDATE audit_entries SET body = '{}' WHERE seq = 2",
    )
    .await;
    let delete = tamper(&db(&dir), "DELETE FROM audit_entries WHERE seq = 9").await;
    for result in [update, delete] {
        let message = result.unwrap_err().to_string();
        assert!(message.contains("append-only"), "{message}");
    }
    assert!(log.verify(Scope::All).await.unwrap().is_ok());
}

#[tokio::test]
async fn an_altered_body_is_named() {
    let (dir, log) = filled().await;
    tamper(
        &db(&dir),
        &format!(
            "DROP TRIGGER audit_entries_no_update;
             UPDATE audit_entries SET body = '{{\"i\":2,\"z\":\"forged\"}}'
             WHERE tenant = '{T1}' AND seq = 3;"
        ),
    )
    .await
    .unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.missing_guards, ["audit_entries_no_update"]);
    let finding = first(&report);
    assert_eq!((finding.tenant.as_str(), finding.seq), (T1, 3));
    assert!(
        matches!(finding.problem, Problem::Altered { .. }),
        "{finding}"
    );
    assert!(finding.to_string().contains("altered"), "{finding}");
    assert!(
        report.tenants[0].is_ok(),
        "the other tenant's chain is intact"
    );
    assert_eq!(
        report.tenants[1].entries, 9,
        "counting goes on past the problem"
    );
}

#[tokio::test]
async fn an_altered_time_or_kind_is_named() {
    let (dir, log) = filled().await;
    tamper(
        &db(&dir),
        &format!(
            "DROP TRIGGER audit_entries_no_update;
             UPDATE audit_entries SET at = at + 1 WHERE tenant = '{T2}' AND seq = 2;
             UPDATE audit_entries SET kind = 'decision' WHERE tenant = '{T1}' AND seq = 5;"
        ),
    )
    .await
    .unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    let seqs: Vec<Option<i64>> = report
        .tenants
        .iter()
        .map(|t| t.problem.as_ref().map(|f| f.seq))
        .collect();
    assert_eq!(seqs, [Some(2), Some(5)]);
    assert_eq!(first(&report).tenant, T2);
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    let (dir, log) = filled().await;
    tamper(
        &db(&dir),
        &format!(
            "DROP TRIGGER audit_entries_no_delete;
             DELETE FROM audit_entries WHERE tenant = '{T1}' AND seq = 4;"
        ),
    )
    .await
    .unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    let finding = first(&report);
    assert_eq!((finding.tenant.as_str(), finding.seq), (T1, 5));
    assert_eq!(finding.problem, Problem::Gap { expected: 4 });
    assert!(finding.to_string().contains("deleted"), "{finding}");
}

#[tokio::test]
async fn a_deleted_first_entry_is_named() {
    let (dir, log) = filled().await;
    tamper(
        &db(&dir),
        &format!(
            "DROP TRIGGER audit_entries_no_delete;
             DELETE FROM audit_entries WHERE tenant = '{T2}' AND seq = 1;"
        ),
    )
    .await
    .unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    assert_eq!(first(&report).problem, Problem::Gap { expected: 1 });
}

/// A forged entry with a correctly computed hash, as anyone who read this
/// module could make one.
fn forged_insert(seq: i64, prev_sha256: &str) -> String {
    let body = json!({"forged": true});
    let at = 1_700_000_000_000i64;
    let sha = hash_fields(Fields {
        v: FORMAT_VERSION,
        tenant: T1,
        seq,
        kind: "note",
        at,
        prev_sha256,
        body: &body,
    })
    .unwrap();
    format!(
        "INSERT INTO audit_entries (v, tenant, seq, kind, at, body, prev_sha256, sha256)
         VALUES (1, '{T1}', {seq}, 'note', {at}, '{body}', '{prev_sha256}', '{sha}');"
    )
}

#[tokio::test]
async fn an_inserted_entry_is_named() {
    let (dir, log) = filled().await;
    let entries = log.entries(&tenant(T1)).await.unwrap();
    // Claims seq 3, linked to seq 2: a well-formed entry in the wrong place.
    let sql = format!(
        "DROP INDEX audit_entries_chain; {}",
        forged_insert(3, &entries[1].sha256.to_string())
    );
    tamper(&db(&dir), &sql).await.unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    let finding = first(&report);
    assert_eq!((finding.tenant.as_str(), finding.seq), (T1, 3));
    assert_eq!(finding.problem, Problem::Duplicate);
    assert!(
        finding.row > entries[8].row,
        "the forged row is the one named"
    );
    assert!(report.missing_guards.is_empty());
}

#[tokio::test]
async fn an_entry_appended_off_the_chain_is_named() {
    let (dir, log) = filled().await;
    let entries = log.entries(&tenant(T1)).await.unwrap();
    // Seq 10 is next, but it links to seq 3 rather than seq 9.
    tamper(
        &db(&dir),
        &forged_insert(10, &entries[2].sha256.to_string()),
    )
    .await
    .unwrap();
    let finding = first(&log.verify(Scope::All).await.unwrap()).clone();
    assert_eq!(finding.seq, 10);
    assert_eq!(finding.problem, Problem::BrokenLink { links_to: Some(3) });

    // One that links to nothing at all.
    let (dir, log) = filled().await;
    tamper(&db(&dir), &forged_insert(10, &"ab".repeat(32)))
        .await
        .unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    assert_eq!(
        first(&report).problem,
        Problem::BrokenLink { links_to: None }
    );
}

#[tokio::test]
async fn reordered_entries_are_named() {
    let (dir, log) = filled().await;
    tamper(
        &db(&dir),
        &format!(
            "DROP INDEX audit_entries_chain;
             DROP TRIGGER audit_entries_no_update;
             UPDATE audit_entries SET seq = CASE seq WHEN 6 THEN 7 ELSE 6 END
             WHERE tenant = '{T1}' AND seq IN (6, 7);"
        ),
    )
    .await
    .unwrap();
    let report = log.verify(Scope::All).await.unwrap();
    let finding = first(&report);
    assert_eq!((finding.tenant.as_str(), finding.seq), (T1, 6));
    assert_eq!(finding.problem, Problem::Reordered { links_to: 7 });
    assert!(finding.to_string().contains("reordered"), "{finding}");
}

#[tokio::test]
async fn secrets_are_refused() {
    let (_dir, log) = filled().await;
    let t1 = tenant(T1);
    for body in [
        json!({"passwordProfile": {"password": "hunter2"}}),
        json!({"result": {"temporaryAccessPass": "abc"}}),
        json!({"Code": "123456"}),
        json!({"TOKEN": "eyJ"}),
        json!([{"secret": 1}]),
    ] {
        let err = log.append(&t1, Kind::Decision, body.clone()).await;
        assert!(
            matches!(err, Err(AuditError::SecretInBody { .. })),
            "{body}"
        );
    }
    let intent = log
        .append_intent(&t1, json!({"action": "resetPassword"}))
        .await
        .unwrap();
    let err = log
        .append_outcome(&intent, json!({"password": "new-one"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/password"), "{err}");

    // A redacted body goes in, and what was removed is said.
    let mut body = json!({"passwordProfile": {"password": "hunter2"}});
    let erased = redact(&mut body);
    log.append_outcome(&intent, json!({"request": body, "erased": erased}))
        .await
        .unwrap();
    let entries = log.entries(&t1).await.unwrap();
    assert_eq!(
        entries.len(),
        11,
        "only the intent and the redacted outcome"
    );
    assert!(
        !serde_json::to_string(&entries[10].body)
            .unwrap()
            .contains("hunter2")
    );
}

#[tokio::test]
async fn outcomes_answer_one_intent_once() {
    let (_dir, log) = filled().await;
    let t1 = tenant(T1);
    let intent = log
        .append_intent(&t1, json!({"action": "revokeSignInSessions"}))
        .await
        .unwrap();
    assert_eq!(intent.seq(), 10);
    let outcome = log
        .append_outcome(
            &intent,
            json!({"status": "done", "graph_request_ids": ["r-1"]}),
        )
        .await
        .unwrap();
    let again = log.append_outcome(&intent, json!({"status": "done"})).await;
    assert!(
        matches!(&again, Err(AuditError::OutcomeExists { outcome: o, .. }) if *o == outcome),
        "{again:?}"
    );
    let note = log.entries(&t1).await.unwrap()[0].id.clone();
    assert!(matches!(
        log.append_outcome(&note, json!({})).await,
        Err(AuditError::NotAnIntent { .. })
    ));
    assert!(matches!(
        log.append(&t1, Kind::Outcome, json!({})).await,
        Err(AuditError::OutcomeWithoutIntent)
    ));

    let entries = log.entries(&t1).await.unwrap();
    let last = &entries[10];
    assert_eq!(last.kind, Kind::Outcome);
    assert_eq!(last.body["intent"]["seq"], 10);
    assert_eq!(
        last.body["intent"]["sha256"],
        entries[9].sha256.to_string().as_str()
    );
    assert_eq!(last.body["outcome"]["status"], "done");
    assert!(log.verify(Scope::All).await.unwrap().is_ok());
}

#[tokio::test]
async fn an_unanswered_intent_is_reconciled_once() {
    let (_dir, log) = filled().await;
    let (t1, t2) = (tenant(T1), tenant(T2));
    let lost = log
        .append_intent(&t1, json!({"action": "a"}))
        .await
        .unwrap();
    let answered = log
        .append_intent(&t1, json!({"action": "b"}))
        .await
        .unwrap();
    log.append_outcome(&answered, json!({"status": "done"}))
        .await
        .unwrap();
    let lost2 = log
        .append_intent(&t2, json!({"action": "c"}))
        .await
        .unwrap();

    let report = log.verify(Scope::All).await.unwrap();
    let open: Vec<usize> = report.tenants.iter().map(|t| t.open_intents).collect();
    assert_eq!(open, [1, 1]);

    // Within the grace period the writes may still be in flight.
    assert_eq!(log.reconcile(SystemTime::now()).await.unwrap(), []);

    let later = SystemTime::now() + DEFAULT_RECONCILE_GRACE + Duration::from_secs(1);
    let outcomes = log.reconcile(later).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].tenant(), lost2.tenant(), "ordered by tenant");
    assert_eq!(log.reconcile(later).await.unwrap(), [], "only once");

    let entries = log.entries(&t1).await.unwrap();
    let outcome = entries.last().unwrap();
    assert_eq!(outcome.id, outcomes[1]);
    assert_eq!(outcome.body["intent"]["seq"], lost.seq());
    assert_eq!(
        outcome.body["outcome"],
        json!({"status": "unknown", "reason": UNKNOWN_OUTCOME_REASON})
    );
    assert_eq!(
        entries.iter().filter(|e| e.kind == Kind::Outcome).count(),
        2
    );

    let report = log.verify(Scope::All).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.tenants.iter().all(|t| t.open_intents == 0));

    // A real outcome after reconciliation is refused, not lost silently.
    let late = log.append_outcome(&lost, json!({"status": "done"})).await;
    assert!(matches!(late, Err(AuditError::OutcomeExists { .. })));
}

#[tokio::test]
async fn a_short_grace_reconciles_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(&dir))
        .await
        .unwrap()
        .with_reconcile_grace(Duration::ZERO);
    log.append_intent(&tenant(T1), json!({})).await.unwrap();
    let outcomes = log.reconcile(SystemTime::now()).await.unwrap();
    assert_eq!(outcomes.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_one_chain_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(&db(&dir)).await.unwrap());
    // A second handle on the same file stands in for a second process.
    let other = Arc::new(AuditLog::open(&db(&dir)).await.unwrap());
    let mut tasks = Vec::new();
    for task in 0..24 {
        let log = if task % 3 == 0 {
            other.clone()
        } else {
            log.clone()
        };
        tasks.push(tokio::spawn(async move {
            let t = tenant(if task % 2 == 0 { T1 } else { T2 });
            for i in 0..4 {
                let id = log
                    .append_intent(&t, json!({"task": task, "i": i}))
                    .await
                    .unwrap();
                log.append_outcome(&id, json!({"status": "done"}))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = log.verify(Scope::All).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let counts: Vec<u64> = report.tenants.iter().map(|t| t.entries).collect();
    assert_eq!(counts, [96, 96]);
    assert!(report.tenants.iter().all(|t| t.open_intents == 0));
}

#[tokio::test]
async fn a_head_remembered_from_before_another_process_appended_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(&dir)).await.unwrap();
    let other = AuditLog::open(&db(&dir)).await.unwrap();
    let t = tenant(T1);
    let first = log
        .append(&t, Kind::Request, json!({"n": 1}))
        .await
        .unwrap();
    // `log` remembers seq 1 as the head; the other process writes seq 2.
    let second = other
        .append(&t, Kind::Request, json!({"n": 2}))
        .await
        .unwrap();
    let third = log
        .append(&t, Kind::Request, json!({"n": 3}))
        .await
        .unwrap();
    let intent = other.append_intent(&t, json!({"n": 4})).await.unwrap();
    let outcome = log
        .append_outcome(&intent, json!({"status": "done"}))
        .await
        .unwrap();
    let seqs: Vec<u64> = [&first, &second, &third, &intent, &outcome]
        .iter()
        .map(|id| id.seq())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let report = log.verify(Scope::Tenant(&t)).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.tenants[0].entries, 5);
}

#[tokio::test]
async fn export_lines_rehash_to_their_sha256() {
    let (_dir, log) = filled().await;
    let intent = log
        .append_intent(&tenant(T2), json!({"é": "\n"}))
        .await
        .unwrap();
    log.append_outcome(&intent, json!({"status": "done"}))
        .await
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(log.export_jsonl(&mut out).await.unwrap(), 16);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 16);

    // Checked the way an auditor without Latchkey would: from the line alone.
    let mut prev: Option<(String, String)> = None;
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&e).unwrap(), line, "canonical");
        let array = json!([
            e["v"],
            e["tenant"],
            e["seq"],
            e["kind"],
            e["at"],
            e["prev_sha256"],
            e["body"]
        ]);
        let sha = hex::encode(Sha256::digest(serde_json::to_vec(&array).unwrap()));
        assert_eq!(e["sha256"], sha.as_str());
        let tenant = e["tenant"].as_str().unwrap().to_owned();
        let expected_prev = match &prev {
            Some((t, h)) if *t == tenant => h.clone(),
            _ => "0".repeat(64),
        };
        assert_eq!(e["prev_sha256"], expected_prev.as_str());
        prev = Some((tenant, sha));
    }
}

#[tokio::test]
async fn opening_for_verification_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let err = AuditLog::open_read_only(&missing).await.unwrap_err();
    assert!(matches!(err, AuditError::Missing { .. }), "{err}");
    assert!(!missing.exists());

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database, just some text that is long enough").unwrap();
    let err = AuditLog::open_read_only(&junk).await.unwrap_err();
    assert!(matches!(err, AuditError::Open { .. }), "{err}");

    let empty = dir.path().join("empty.db");
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&empty)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql("CREATE TABLE other (x INTEGER)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = AuditLog::open_read_only(&empty).await.unwrap_err();
    assert!(matches!(err, AuditError::NotAnAuditLog { .. }), "{err}");
}

#[tokio::test]
async fn a_read_only_log_verifies_and_refuses_writes() {
    let (dir, log) = filled().await;
    let expected = log.verify(Scope::All).await.unwrap();
    log.close().await;
    let reader = AuditLog::open_read_only(&db(&dir)).await.unwrap();
    assert_eq!(reader.verify(Scope::All).await.unwrap(), expected);
    let write = reader.append(&tenant(T1), Kind::Note, json!({})).await;
    assert!(matches!(write, Err(AuditError::Commit(_))), "{write:?}");
    assert_eq!(reader.verify(Scope::All).await.unwrap(), expected);
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_together_are_committed_together_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(&db(&dir)).await.unwrap());
    let t = tenant(T1);
    let request = log
        .append(&t, Kind::Request, json!({"n": 0}))
        .await
        .unwrap();
    // Hold the writer so that the next three queue up behind it.
    let writer = Arc::clone(&log.writer).lock_owned().await;
    let intent = |n: u32| {
        let (log, t) = (Arc::clone(&log), t.clone());
        tokio::spawn(async move { log.append_intent(&t, json!({ "n": n })).await })
    };
    let first = intent(1);
    // An outcome for an entry that is not an intent: refused on its own.
    let bad = {
        let (log, request) = (Arc::clone(&log), request.clone());
        tokio::spawn(async move { log.append_outcome(&request, json!({})).await })
    };
    let last = intent(3);
    while log.queued().len() < 3 {
        tokio::task::yield_now().await;
    }
    drop(writer);
    let first = first.await.unwrap().unwrap();
    let last = last.await.unwrap().unwrap();
    assert!(matches!(
        bad.await.unwrap(),
        Err(AuditError::NotAnIntent { .. })
    ));
    let mut seqs = [first.seq(), last.seq()];
    seqs.sort_unstable();
    assert_eq!(seqs, [2, 3], "the good ones follow each other in the chain");
    assert!(log.queued().is_empty());
    let report = log.verify(Scope::All).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries(), 3);
}

#[test]
fn a_prune_is_due_once_per_interval_of_the_clock() {
    let pruning = Pruning::new();
    assert!(pruning.due(1_000), "due at once");
    assert!(!pruning.due(1_000));
    assert!(!pruning.due(1_000 + Pruning::EVERY - 1));
    assert!(pruning.due(1_000 + Pruning::EVERY));
    assert!(!pruning.due(1_000 + Pruning::EVERY + 1));
    // A clock moved back by more than the interval: due again, not never.
    assert!(pruning.due(500));
    assert!(!pruning.due(501));
}

#[tokio::test]
async fn the_writing_connection_is_set_as_storage_says_and_refuses_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&db(&dir)).await.unwrap();
    let db = log.db().clone();
    let pragma = |name: &'static str| {
        let db = db.clone();
        async move {
            let value = db
                .run(|c| c.pragma_query_value(None, name, |r| r.get(0)))
                .await
                .unwrap();
            match value {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(text) => text,
                other => panic!("PRAGMA {name} is {other:?}"),
            }
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    // NORMAL: appends fsync the write-ahead log themselves ("Storage").
    assert_eq!(pragma("synchronous").await, "1");
    assert_eq!(pragma("foreign_keys").await, "1");
    assert_eq!(pragma("busy_timeout").await, "5000");
    // Statements the stores write with are on it (migrated).
    let tables: i64 = db
        .run(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN \
                 ('conversations', 'receipt_nonces', 'verification_flows', 'approval_requests')",
                [],
                |r| r.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(tables, 4);
    log.close().await;
    assert!(matches!(db.run(|_| Ok(())).await, Err(DbError::Closed)));
}
