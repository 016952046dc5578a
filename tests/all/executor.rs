//! The executor against the emulator over real HTTP: every write path and the
//! directory it leaves behind, throttling, answers lost after the write
//! happened, every way a receipt is refused (with nothing written), the
//! re-check before each write, and single use across a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latchkey::audit::{AuditLog, Entry, Kind, Scope};
use latchkey::executor::{
    Applied, ExecuteError, Execution, Executor, LOST_METHOD_TYPES, Write, WriteStatus, password,
};
use latchkey::graph::{GraphClient, GraphConfig, Secret};
use latchkey::ids::{DecisionId, UserId};
use latchkey::keys;
use latchkey::policy::{Evaluation, ModuleHash};
use latchkey::receipt::{
    self, HostKeys, IssueRequest, MemoryNonceStore, NonceStore, ScopeError, SignedReceipt,
    SqliteNonceStore, VerifyError,
};
use latchkey::sdk::{Action, Constraints, Decision, Facts};
use latchkey::sim::model::{Method, Tap};
use latchkey::tenant::TenantId;
use latchkey_tests::TestSim;
use serde_json::{Value, json};

const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ALEX: &str = "8f080165-38fe-44c1-b3b8-6f4dafad5194";
const HENRIETTA: &str = "c7a89585-cf99-48dd-bf22-07ec2ab83009";
const MEGAN: &str = "929282d2-453e-4a90-82de-9182debcc53a";
const PATTI: &str = "1ee47d68-adbf-4490-be70-84a7d6ddd673";
const LYNNE: &str = "d74a95ba-814d-4f28-a740-9d115c0505b7";
const DIEGO: &str = "b63b2df3-1943-4e9d-b14f-360eaca0d93f";

const ALL: [Action; 4] = [
    Action::ResetPassword,
    Action::IssueTemporaryAccessPass,
    Action::RemoveLostMfaMethods,
    Action::RevokeSessions,
];

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn user(id: &str) -> UserId {
    id.parse().unwrap()
}

/// The emulator, a Graph client for it, the host's keys, an audit log on a
/// temporary file, and an executor over them.
struct Fixture {
    sim: TestSim,
    graph: GraphClient,
    keys: HostKeys,
    audit: Arc<AuditLog>,
    executor: Executor,
    tenant: TenantId,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::with_timeout(Duration::from_secs(5)).await
    }

    /// With a per-attempt Graph timeout of `timeout`.
    async fn with_timeout(timeout: Duration) -> Fixture {
        let sim = TestSim::start().await;
        let (tenant, client_id, secret) = sim.app();
        let tenant: TenantId = tenant.parse().unwrap();
        let mut config = GraphConfig::new(tenant.clone(), client_id, Secret::new(secret));
        config.authority = sim.base_url.clone();
        config.graph_base_url = sim.graph("");
        config.retry_base_wait = Duration::from_millis(20);
        config.max_retry_wait = Duration::from_secs(2);
        config.timeout = timeout;
        let graph = GraphClient::new(config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let audit = Arc::new(AuditLog::open(&path).await.unwrap());
        let keys = HostKeys::new(keys::generate());
        let nonces: Arc<dyn NonceStore> = Arc::new(SqliteNonceStore::new(&audit));
        let executor = Executor::new(keys.verifying().clone(), nonces, audit.clone());
        Fixture {
            sim,
            graph,
            keys,
            audit,
            executor,
            tenant,
            path,
            _dir: dir,
        }
    }

    /// A receipt signed with the fixture's key for `actions` on `target`'s
    /// own account, issued at `at`.
    fn receipt(&self, target: &str, actions: &[Action], at: i64) -> SignedReceipt {
        issue_with(&self.keys, &self.tenant, target, actions, at)
    }

    async fn execute(
        &self,
        requester: &str,
        envelope: &str,
        writes: &[Write],
    ) -> Result<Execution, ExecuteError> {
        self.executor
            .execute(
                &self.graph,
                &self.tenant,
                &user(requester),
                envelope,
                writes,
            )
            .await
    }

    /// Everything the emulator knows about a user, and the length of its
    /// directory audit: what a write would change.
    fn state(&self, id: &str) -> (Value, usize) {
        let tenant = self.sim.sim.tenant();
        let user = tenant.user(id).unwrap();
        (serde_json::to_value(user).unwrap(), tenant.audits.len())
    }

    /// The directory audit activities about `id`, oldest first.
    fn directory_audit(&self, id: &str) -> Vec<String> {
        self.sim
            .sim
            .tenant()
            .audits
            .iter()
            .filter(|a| a["targetResources"][0]["id"] == id)
            .map(|a| a["activityDisplayName"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn entries(&self) -> Vec<Entry> {
        self.audit.entries(&self.tenant).await.unwrap()
    }

    async fn last_entry(&self) -> Entry {
        self.entries().await.pop().unwrap()
    }

    async fn assert_chain_verifies(&self) {
        let report = self.audit.verify(Scope::All).await.unwrap();
        assert!(report.is_ok(), "{report:?}");
    }

    async fn add_fault(&self, fault: Value) {
        self.sim.add_fault(fault).await;
    }

    async fn faults_left(&self) -> usize {
        self.sim.faults().await["value"].as_array().unwrap().len()
    }

    fn taps(&self, id: &str) -> Vec<Tap> {
        self.sim
            .sim
            .tenant()
            .user(id)
            .unwrap()
            .methods
            .iter()
            .filter_map(|m| match m {
                Method::TemporaryAccessPass(tap) => Some(tap.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Issues a receipt as the service does: facts for `target` as requester
/// and target, an allow of `actions` by the tenant's pinned module (a
/// one-hour, one-time pass when a pass is among them).
fn issue_with(
    keys: &HostKeys,
    tenant: &TenantId,
    target: &str,
    actions: &[Action],
    at: i64,
) -> SignedReceipt {
    let mut facts = Facts {
        tenant_id: tenant.to_string(),
        requested_actions: actions.to_vec(),
        target_is_self: true,
        ..Facts::default()
    };
    facts.requester.id = target.to_owned();
    let module = ModuleHash::of(b"contoso's pinned module");
    let evaluation = Evaluation {
        module,
        decision: Decision::allow(actions.iter().copied())
            .tap_lifetime_minutes(60)
            .tap_one_time_use()
            .because("verified by MFA"),
        fault: None,
        fuel_used: 1_795,
        elapsed: Duration::from_micros(20),
    };
    let target = user(target);
    receipt::issue(
        keys,
        &IssueRequest {
            tenant,
            requester: &target,
            target: &target,
            pinned_module: &module,
            facts: &facts,
            evaluation: &evaluation,
            decision_id: &DecisionId::generate().unwrap(),
            max_tap_lifetime_minutes: 480,
        },
        at,
    )
    .unwrap()
}

/// The writes a receipt allows, in the given order, under its constraints.
fn writes(signed: &SignedReceipt, order: &[Action]) -> Vec<Write> {
    order
        .iter()
        .map(|a| Write::new(*a, *signed.receipt().constraints()))
        .collect()
}

#[tokio::test]
async fn every_write_path_changes_the_directory_and_is_bracketed_in_the_audit_log() {
    let f = Fixture::start().await;
    let signed = f.receipt(ADELE, &ALL, now());
    assert_eq!(
        signed.receipt().constraints(),
        &Constraints {
            tap_lifetime_minutes: Some(60),
            tap_one_time_use: true
        }
    );
    let had_authenticator = f
        .sim
        .sim
        .tenant()
        .user(ADELE)
        .unwrap()
        .methods
        .iter()
        .any(|m| matches!(m, Method::MicrosoftAuthenticator { .. }));
    assert!(had_authenticator);
    let started = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);

    // Asked in any order; run in the executor's.
    let asked = [
        Action::RevokeSessions,
        Action::RemoveLostMfaMethods,
        Action::IssueTemporaryAccessPass,
        Action::ResetPassword,
    ];
    let execution = f
        .execute(ADELE, signed.envelope(), &writes(&signed, &asked))
        .await
        .unwrap();
    assert!(execution.is_complete(), "{:?}", execution.failure());
    let order: Vec<Action> = execution.writes.iter().map(|w| w.action).collect();
    assert_eq!(order, ALL);

    // The password: generated to the rules, set, to be changed at next sign-in.
    let Some(Applied::PasswordReset { password }) = execution.applied(Action::ResetPassword) else {
        panic!("{execution:?}")
    };
    assert!(password::meets_rules(
        password.expose(),
        &["Adele", "Vance", "adele.vance@contoso.com"]
    ));
    // The pass: one-time, an hour, the value returned once.
    let Some(Applied::TemporaryAccessPass(pass)) =
        execution.applied(Action::IssueTemporaryAccessPass)
    else {
        panic!("{execution:?}")
    };
    let pass_value = pass.pass.as_ref().unwrap().expose().to_owned();
    assert_eq!(pass.lifetime_minutes, Some(60));
    assert_eq!(pass.usable_once, Some(true));
    let Some(Applied::LostMethodsRemoved { removed }) =
        execution.applied(Action::RemoveLostMfaMethods)
    else {
        panic!("{execution:?}")
    };
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].collection, LOST_METHOD_TYPES[0].1);
    assert!(!removed[0].already_gone);

    {
        let tenant = f.sim.sim.tenant();
        let adele = tenant.user(ADELE).unwrap();
        assert_eq!(&adele.password, password.expose());
        assert!(adele.force_change_password);
        assert!(adele.last_password_change >= started);
        let taps: Vec<_> = adele
            .methods
            .iter()
            .filter_map(|m| match m {
                Method::TemporaryAccessPass(tap) => Some(tap),
                _ => None,
            })
            .collect();
        assert_eq!(taps.len(), 1);
        assert_eq!(taps[0].secret, pass_value);
        assert_eq!(taps[0].id, pass.method_id);
        assert_eq!(taps[0].lifetime_minutes, 60);
        assert!(taps[0].usable_once);
        // The Authenticator is gone; the phone and the recovery email stay.
        assert!(
            !adele
                .methods
                .iter()
                .any(|m| matches!(m, Method::MicrosoftAuthenticator { .. }))
        );
        assert!(
            adele
                .methods
                .iter()
                .any(|m| matches!(m, Method::Phone { .. }))
        );
        assert!(
            adele
                .methods
                .iter()
                .any(|m| matches!(m, Method::Email { .. }))
        );
        assert!(adele.sessions_valid_from.is_some_and(|t| t >= started));
    }
    assert_eq!(
        f.directory_audit(ADELE),
        [
            "Reset password (by admin)",
            "Admin registered security info",
            "Admin deleted security info",
            "Update StsRefreshTokenValidFrom Timestamp",
        ]
    );

    // Four intents, each answered by its applied outcome, in the chain.
    let entries = f.entries().await;
    let kinds: Vec<Kind> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Intent, Kind::Outcome].repeat(4));
    for (write, pair) in execution.writes.iter().zip(entries.chunks(2)) {
        let (intent, outcome) = (&pair[0], &pair[1]);
        assert_eq!(write.intent.as_ref(), Some(&intent.id));
        assert_eq!(write.outcome.as_ref(), Some(&outcome.id));
        assert_eq!(intent.body["receipt_id"], signed.receipt().id().to_string());
        assert_eq!(intent.body["target"], ADELE);
        assert_eq!(
            intent.body["module_sha256"],
            signed.receipt().module().to_string()
        );
        assert_eq!(
            intent.body["idempotency_key"],
            format!(
                "{}:{}",
                signed.receipt().id(),
                receipt::action_name(write.action)
            )
        );
        assert_eq!(
            intent.body["receipt"]["nonce"],
            signed.receipt().nonce().to_string()
        );
        let answered = &outcome.body["outcome"];
        assert_eq!(outcome.body["intent"]["seq"], intent.id.seq());
        assert_eq!(answered["status"], "applied");
        assert_eq!(answered["action"], receipt::action_name(write.action));
        assert!(!write.request_ids.is_empty());
        assert_eq!(answered["request_ids"], json!(write.request_ids));
    }
    // The secrets are nowhere in the log.
    let mut export = Vec::new();
    f.audit.export_jsonl(&mut export).await.unwrap();
    let export = String::from_utf8(export).unwrap();
    assert!(!export.contains(password.expose()));
    assert!(!export.contains(&pass_value));
    assert!(export.contains("[redacted]"), "the PATCH's shape is shown");
    f.assert_chain_verifies().await;
}

#[tokio::test]
async fn throttled_writes_are_retried_after_retry_after() {
    let f = Fixture::start().await;
    f.add_fault(json!({
        "path_prefix": format!("/users/{ALEX}/revokeSignInSessions"),
        "status": 429, "retry_after": "0.2", "count": 2
    }))
    .await;
    // Graph never carries out a throttled request, so even the pass's POST
    // is retried on 429.
    f.add_fault(json!({
        "path_prefix": format!("/users/{ALEX}/authentication/temporaryAccessPassMethods"),
        "method": "POST", "status": 429, "retry_after": "0.1", "count": 1
    }))
    .await;
    let actions = [Action::IssueTemporaryAccessPass, Action::RevokeSessions];
    let signed = f.receipt(ALEX, &actions, now());
    let started = std::time::Instant::now();
    let execution = f
        .execute(ALEX, signed.envelope(), &writes(&signed, &actions))
        .await
        .unwrap();
    assert!(execution.is_complete(), "{:?}", execution.failure());
    assert!(started.elapsed() >= Duration::from_millis(500), "waited");
    assert_eq!(f.faults_left().await, 0, "every fault was hit");
    assert_eq!(f.taps(ALEX).len(), 1, "one pass");
    assert_eq!(
        f.directory_audit(ALEX),
        [
            "Admin registered security info",
            "Update StsRefreshTokenValidFrom Timestamp"
        ]
    );
    f.assert_chain_verifies().await;
}

#[tokio::test]
async fn a_pass_whose_answer_is_lost_is_read_back_and_never_created_twice() {
    let f = Fixture::with_timeout(Duration::from_millis(700)).await;
    let actions = [Action::IssueTemporaryAccessPass];
    let taps_path = |id: &str| format!("/users/{id}/authentication/temporaryAccessPassMethods");

    // The pass is created, but the answer comes too late: a timeout.
    f.add_fault(json!({
        "path_prefix": taps_path(MEGAN), "method": "POST",
        "latency_ms": 1500, "run_request": true, "count": 1
    }))
    .await;
    // The pass is created, and a gateway answers 504.
    f.add_fault(json!({
        "path_prefix": taps_path(PATTI), "method": "POST",
        "status": 504, "run_request": true, "count": 1
    }))
    .await;
    for id in [MEGAN, PATTI] {
        let signed = f.receipt(id, &actions, now());
        let execution = f
            .execute(id, signed.envelope(), &writes(&signed, &actions))
            .await
            .unwrap();
        assert!(execution.is_complete(), "{id}: {:?}", execution.failure());
        let Some(Applied::TemporaryAccessPass(pass)) =
            execution.applied(Action::IssueTemporaryAccessPass)
        else {
            panic!("{execution:?}")
        };
        assert!(pass.pass.is_none(), "the value went with the answer");
        let taps = f.taps(id);
        assert_eq!(taps.len(), 1, "{id}: read back, not created again");
        assert_eq!(taps[0].id, pass.method_id);
        assert_eq!(pass.lifetime_minutes, Some(60));
        assert_eq!(
            f.directory_audit(id),
            ["Admin registered security info"],
            "{id}: one creation in Graph's own audit"
        );
        let outcome = f.last_entry().await;
        assert_eq!(outcome.kind, Kind::Outcome);
        let answered = &outcome.body["outcome"];
        assert_eq!(answered["status"], "applied", "{answered}");
        assert_eq!(answered["value_lost"], true);
        assert_eq!(answered["read_back"], true);
        assert_eq!(answered["method_id"], taps[0].id);
    }

    // Not carried out, and a 503: read back, none found, not repeated.
    f.add_fault(json!({
        "path_prefix": taps_path(LYNNE), "method": "POST", "status": 503, "count": 1
    }))
    .await;
    let signed = f.receipt(LYNNE, &actions, now());
    let execution = f
        .execute(LYNNE, signed.envelope(), &writes(&signed, &actions))
        .await
        .unwrap();
    assert!(
        matches!(
            execution.failure(),
            Some(ExecuteError::PassNotCreated { .. })
        ),
        "{execution:?}"
    );
    assert!(f.taps(LYNNE).is_empty());
    assert!(f.directory_audit(LYNNE).is_empty());
    let outcome = f.last_entry().await;
    assert_eq!(outcome.body["outcome"]["status"], "failed");
    assert_eq!(outcome.body["outcome"]["http_status"], 503);
    assert_eq!(outcome.body["outcome"]["reason_code"], "pass-not-created");
    f.assert_chain_verifies().await;
}

#[tokio::test]
async fn a_reset_whose_answer_is_lost_is_repeated_with_the_same_password() {
    let f = Fixture::start().await;
    f.add_fault(json!({
        "path_prefix": format!("/users/{DIEGO}"), "method": "PATCH",
        "status": 503, "run_request": true, "count": 1
    }))
    .await;
    let actions = [Action::ResetPassword];
    let signed = f.receipt(DIEGO, &actions, now());
    let execution = f
        .execute(DIEGO, signed.envelope(), &writes(&signed, &actions))
        .await
        .unwrap();
    let Some(Applied::PasswordReset { password }) = execution.applied(Action::ResetPassword) else {
        panic!("{execution:?}")
    };
    assert_eq!(f.faults_left().await, 0);
    // Two PATCHes reached the directory, one password: the one returned.
    assert_eq!(
        f.directory_audit(DIEGO),
        ["Reset password (by admin)", "Reset password (by admin)"]
    );
    let tenant = f.sim.sim.tenant();
    assert_eq!(&tenant.user(DIEGO).unwrap().password, password.expose());
}

#[tokio::test]
async fn a_method_already_gone_when_its_delete_is_repeated_counts_as_removed() {
    let f = Fixture::start().await;
    f.add_fault(json!({
        "path_prefix": format!("/users/{HENRIETTA}/authentication/microsoftAuthenticatorMethods"),
        "method": "DELETE", "status": 503, "run_request": true, "count": 1
    }))
    .await;
    let actions = [Action::RemoveLostMfaMethods];
    let signed = f.receipt(HENRIETTA, &actions, now());
    let execution = f
        .execute(HENRIETTA, signed.envelope(), &writes(&signed, &actions))
        .await
        .unwrap();
    let Some(Applied::LostMethodsRemoved { removed }) =
        execution.applied(Action::RemoveLostMfaMethods)
    else {
        panic!("{execution:?}")
    };
    assert_eq!(removed.len(), 1);
    assert!(removed[0].already_gone, "the repeat found it gone (404)");
    assert_eq!(
        f.directory_audit(HENRIETTA),
        ["Admin deleted security info"]
    );
    assert!(
        !f.sim
            .sim
            .tenant()
            .user(HENRIETTA)
            .unwrap()
            .methods
            .iter()
            .any(|m| matches!(m, Method::MicrosoftAuthenticator { .. }))
    );
}

/// Presents `envelope` for `writes` as `requester`, expects `matches` of the
/// error, no change to `target` in the emulator, and a refusal coded `code`
/// as the log's last entry.
async fn assert_refused(
    f: &Fixture,
    requester: &str,
    target: &str,
    envelope: &str,
    writes: &[Write],
    code: &str,
    matches: impl Fn(&ExecuteError) -> bool,
) {
    let before = f.state(target);
    let entries = f.entries().await.len();
    let error = f.execute(requester, envelope, writes).await.unwrap_err();
    assert!(matches(&error), "{code}: {error}");
    assert_eq!(error.code(), code);
    assert_eq!(f.state(target), before, "{code}: nothing written");
    let log = f.entries().await;
    assert_eq!(log.len(), entries + 1, "{code}: one entry, the refusal");
    let refusal = log.last().unwrap();
    assert_eq!(refusal.kind, Kind::Refusal);
    assert_eq!(refusal.body["refused"], code);
    assert_eq!(refusal.body["reason"], error.to_string());
    assert_eq!(refusal.body["verified_requester"], requester);
}

#[tokio::test]
async fn forged_expired_foreign_and_out_of_scope_receipts_write_nothing() {
    let f = Fixture::start().await;
    let all = f.receipt(ADELE, &ALL, now());

    // Forged: another receipt's payload under this one's signature.
    let small = f.receipt(ADELE, &[Action::RevokeSessions], now());
    let mut forged: Value = serde_json::from_str(small.envelope()).unwrap();
    let all_payload: Value = serde_json::from_str(all.envelope()).unwrap();
    forged["payload"] = all_payload["payload"].clone();
    assert_refused(
        &f,
        ADELE,
        ADELE,
        &forged.to_string(),
        &writes(&all, &ALL),
        "receipt-bad-signature",
        |e| matches!(e, ExecuteError::Receipt(VerifyError::BadSignature { .. })),
    )
    .await;

    // Expired: issued long ago.
    let old = f.receipt(ADELE, &ALL, now() - 3_600);
    assert_refused(
        &f,
        ADELE,
        ADELE,
        old.envelope(),
        &writes(&old, &ALL),
        "receipt-expired",
        |e| matches!(e, ExecuteError::Receipt(VerifyError::Expired { .. })),
    )
    .await;

    // Another tenant's host key: a real signature, not by a trusted key.
    let elsewhere = HostKeys::new(keys::generate());
    let foreign = issue_with(&elsewhere, &f.tenant, ADELE, &ALL, now());
    assert_refused(
        &f,
        ADELE,
        ADELE,
        foreign.envelope(),
        &writes(&foreign, &ALL),
        "receipt-unknown-key",
        |e| matches!(e, ExecuteError::Receipt(VerifyError::UnknownKey { .. })),
    )
    .await;

    // Target swapped: Adele's receipt, presented by verified requester Alex,
    // for writes on Adele's account or his own.
    let alex_before = f.state(ALEX);
    assert_refused(
        &f,
        ALEX,
        ADELE,
        all.envelope(),
        &writes(&all, &ALL),
        "scope-not-self",
        |e| matches!(e, ExecuteError::Scope(ScopeError::NotSelf { .. })),
    )
    .await;
    assert_eq!(f.state(ALEX).0, alex_before.0);

    // An action the receipt does not allow.
    let revoke_only = f.receipt(ADELE, &[Action::RevokeSessions], now());
    assert_refused(
        &f,
        ADELE,
        ADELE,
        revoke_only.envelope(),
        &[Write::new(Action::ResetPassword, Constraints::default())],
        "scope-action-not-allowed",
        |e| {
            matches!(
                e,
                ExecuteError::Scope(ScopeError::ActionNotAllowed(Action::ResetPassword))
            )
        },
    )
    .await;

    // Constraints that differ from the receipt's: a longer pass.
    let longer = Constraints {
        tap_lifetime_minutes: Some(600),
        tap_one_time_use: true,
    };
    assert_refused(
        &f,
        ADELE,
        ADELE,
        all.envelope(),
        &[Write::new(Action::IssueTemporaryAccessPass, longer)],
        "scope-constraints-differ",
        |e| matches!(e, ExecuteError::Scope(ScopeError::ConstraintsDiffer)),
    )
    .await;

    // Another tenant's id.
    let other: TenantId = "00000000-0000-0000-0000-000000000001".parse().unwrap();
    let error = f
        .executor
        .execute(
            &f.graph,
            &other,
            &user(ADELE),
            revoke_only.envelope(),
            &writes(&revoke_only, &[Action::RevokeSessions]),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "scope-wrong-tenant");

    // Malformed calls.
    assert_refused(&f, ADELE, ADELE, all.envelope(), &[], "no-writes", |e| {
        matches!(e, ExecuteError::NoWrites)
    })
    .await;
    let twice = writes(&all, &[Action::RevokeSessions, Action::RevokeSessions]);
    assert_refused(
        &f,
        ADELE,
        ADELE,
        all.envelope(),
        &twice,
        "repeated-write",
        |e| matches!(e, ExecuteError::RepeatedWrite(Action::RevokeSessions)),
    )
    .await;
    assert_refused(
        &f,
        ADELE,
        ADELE,
        "{\"not\": \"a receipt\"}",
        &writes(&all, &ALL),
        "receipt-malformed",
        |e| matches!(e, ExecuteError::Receipt(_)),
    )
    .await;

    // None of the refusals spent the genuine receipt: scope is checked
    // before the nonce, so a caller's mistake does not burn it.
    let execution = f
        .execute(
            ADELE,
            all.envelope(),
            &writes(&all, &[Action::RevokeSessions]),
        )
        .await
        .unwrap();
    assert!(execution.is_complete());
    f.assert_chain_verifies().await;
}

#[tokio::test]
async fn a_receipt_is_executed_once_and_a_replay_writes_nothing() {
    let f = Fixture::start().await;
    let actions = [Action::ResetPassword, Action::RevokeSessions];
    let signed = f.receipt(ADELE, &actions, now());
    let first = f
        .execute(ADELE, signed.envelope(), &writes(&signed, &actions))
        .await
        .unwrap();
    assert!(first.is_complete());
    // The same receipt again: the whole of it, or any part of it.
    for again in [&actions[..], &actions[..1], &actions[1..]] {
        assert_refused(
            &f,
            ADELE,
            ADELE,
            signed.envelope(),
            &writes(&signed, again),
            "receipt-replayed",
            |e| matches!(e, ExecuteError::Replayed { receipt } if receipt == signed.receipt().id()),
        )
        .await;
    }
    assert_eq!(
        f.directory_audit(ADELE),
        [
            "Reset password (by admin)",
            "Update StsRefreshTokenValidFrom Timestamp"
        ]
    );
    f.assert_chain_verifies().await;
}

#[tokio::test]
async fn the_receipt_is_checked_again_right_before_each_write() {
    let f = Fixture::start().await;
    let issued = now();
    let actions = [Action::ResetPassword, Action::RevokeSessions];
    let signed = f.receipt(ADELE, &actions, issued);
    // The executor reads the clock to verify the receipt, then right before
    // each write. Valid for the first two readings, long expired after:
    // the reset goes through, the revocation is refused.
    let readings = Arc::new(AtomicUsize::new(0));
    let counter = readings.clone();
    let nonces: Arc<dyn NonceStore> = Arc::new(MemoryNonceStore::new());
    let executor =
        Executor::new(f.keys.verifying().clone(), nonces, f.audit.clone()).with_clock(move || {
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                issued
            } else {
                issued + 3_600
            }
        });
    let sessions_before = f.sim.sim.tenant().user(ADELE).unwrap().sessions_valid_from;
    let execution = executor
        .execute(
            &f.graph,
            &f.tenant,
            &user(ADELE),
            signed.envelope(),
            &writes(&signed, &actions),
        )
        .await
        .unwrap();
    assert_eq!(readings.load(Ordering::SeqCst), 3);
    assert!(matches!(
        execution.applied(Action::ResetPassword),
        Some(Applied::PasswordReset { .. })
    ));
    assert!(matches!(
        execution.writes[1].status,
        WriteStatus::Failed(ExecuteError::Receipt(VerifyError::Expired { .. }))
    ));
    assert!(
        execution.writes[1].request_ids.is_empty(),
        "no request sent"
    );
    assert_eq!(
        f.sim.sim.tenant().user(ADELE).unwrap().sessions_valid_from,
        sessions_before,
        "sessions not revoked"
    );
    assert_eq!(f.directory_audit(ADELE), ["Reset password (by admin)"]);

    let entries = f.entries().await;
    let kinds: Vec<Kind> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Intent,
            Kind::Outcome,
            Kind::Intent,
            Kind::Outcome,
            Kind::Refusal
        ]
    );
    assert_eq!(entries[3].body["outcome"]["status"], "refused");
    assert_eq!(entries[4].body["refused"], "receipt-expired");
    assert_eq!(entries[4].body["applied_before"], json!(["reset-password"]));
    f.assert_chain_verifies().await;
}

async fn reopen(path: &Path) -> Arc<AuditLog> {
    Arc::new(AuditLog::open(path).await.unwrap())
}

#[tokio::test]
async fn a_receipt_consumed_before_a_restart_stays_consumed() {
    let f = Fixture::start().await;
    let actions = [Action::RevokeSessions];
    let signed = f.receipt(ADELE, &actions, now());
    let execution = f
        .execute(ADELE, signed.envelope(), &writes(&signed, &actions))
        .await
        .unwrap();
    assert!(execution.is_complete());
    let Fixture {
        sim,
        graph,
        keys,
        audit,
        executor,
        tenant,
        path,
        _dir,
    } = f;
    drop(executor);
    Arc::try_unwrap(audit).unwrap().close().await;

    // A new process: the log reopened, a new store and executor over it.
    let audit = reopen(&path).await;
    let nonces: Arc<dyn NonceStore> = Arc::new(SqliteNonceStore::new(&audit));
    let executor = Executor::new(keys.verifying().clone(), nonces, audit.clone());
    let revoked = sim.sim.tenant().user(ADELE).unwrap().sessions_valid_from;
    let error = executor
        .execute(
            &graph,
            &tenant,
            &user(ADELE),
            signed.envelope(),
            &writes(&signed, &actions),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ExecuteError::Replayed { .. }), "{error}");
    assert_eq!(
        sim.sim.tenant().user(ADELE).unwrap().sessions_valid_from,
        revoked
    );
    assert_eq!(
        audit.entries(&tenant).await.unwrap().last().unwrap().kind,
        Kind::Refusal
    );
    let report = audit.verify(Scope::All).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}
