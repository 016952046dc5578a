//! The whole trust chain against the emulator, with the real default policy:
//! request, investigation, decision, receipt, executor, and the audit chain
//! that records it, verified and replayed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use latchkey::audit::replay;
use latchkey::audit::{Entry, Kind, Scope};
use latchkey::executor::{Applied, Execution};
use latchkey::ids::UserId;
use latchkey::investigator::{Claim, Inquiry};
use latchkey::keys;
use latchkey::policy::ModuleHash;
use latchkey::receipt;
use latchkey::resolution::{Decided, ResolveError};
use latchkey::sdk::{Action, Method, Verification};
use latchkey::service::Service;
use latchkey::sim::model::Method as SimMethod;
use latchkey::tenant::TenantId;
use latchkey_tests::{TestSim, module_bytes, sandbox};

const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ALEX: &str = "8f080165-38fe-44c1-b3b8-6f4dafad5194";
const ISAIAH: &str = "1d9d26b2-d4d3-489e-9c6e-e21035bda97e";
const LEE: &str = "f076e392-469f-4fdf-9ff9-5ec6c20d6044";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

struct Fixture {
    sim: TestSim,
    service: Arc<Service>,
    tenant: TenantId,
    module: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// A service started from a configuration file: the demo tenant pinned to
/// the default policy, its Graph app pointed at the emulator.
async fn fixture(max_tap_lifetime_minutes: u32) -> Fixture {
    use std::os::unix::fs::PermissionsExt as _;
    let sim = TestSim::start().await;
    let (tenant, client_id, secret) = sim.app();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("modules")).unwrap();
    let module = module_bytes("policies/default");
    std::fs::write(d.join("modules/default.wasm"), &module).unwrap();
    for (file, text) in [
        ("host.pem", keys::private_to_pem(&keys::generate()).unwrap()),
        ("contoso.secret", secret),
    ] {
        std::fs::write(d.join(file), text).unwrap();
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = format!(
        "[host]\nsigning_key = \"host.pem\"\ndatabase = \"latchkey.db\"\n\n\
         [policy]\nmodules_dir = \"modules\"\ncache_dir = \"cache\"\n\n\
         [tenants.{tenant}]\nmodule = \"default.wasm\"\nsha256 = \"{}\"\n\
         max_tap_lifetime_minutes = {max_tap_lifetime_minutes}\n\n\
         [tenants.{tenant}.graph]\nclient_id = \"{client_id}\"\nclient_secret_file = \"contoso.secret\"\n\
         authority = \"{}\"\ngraph_base_url = \"{}\"\n",
        ModuleHash::of(&module),
        sim.base_url,
        sim.graph("")
    );
    std::fs::create_dir(d.join("cache")).unwrap();
    std::fs::write(d.join("latchkey.toml"), config).unwrap();
    let (service, _) = Service::start(&d.join("latchkey.toml")).await.unwrap();
    Fixture {
        tenant: tenant.parse().unwrap(),
        sim,
        service,
        module,
        _dir: dir,
    }
}

impl Fixture {
    async fn decide(&self, inquiry: &Inquiry<'_>) -> Result<Decided, ResolveError> {
        let runtime = self.service.runtime(&self.tenant).unwrap();
        self.service.resolver().decide(&runtime, inquiry).await
    }

    async fn act(&self, requester: &UserId, decided: &Decided) -> Result<Execution, ResolveError> {
        let runtime = self.service.runtime(&self.tenant).unwrap();
        self.service
            .resolver()
            .act(&runtime, &self.tenant, requester, decided)
            .await
    }

    async fn entries(&self) -> Vec<Entry> {
        self.service.audit().entries(&self.tenant).await.unwrap()
    }
}

fn user(id: &str) -> UserId {
    id.parse().unwrap()
}

#[tokio::test]
async fn a_forgotten_password_is_reset_after_mfa_and_every_step_is_recorded_and_replays() {
    let f = fixture(60).await;
    let adele = user(ADELE);
    let t = now();

    // Not verified yet: the policy asks for MFA, and nothing is signed.
    let first = f
        .decide(&Inquiry::new(&f.tenant, &adele, Claim::ForgotPassword, t))
        .await
        .unwrap();
    assert_eq!(first.decision().kind(), "require-verification");
    assert!(first.receipt.is_none());
    assert!(matches!(
        f.act(&adele, &first).await,
        Err(ResolveError::NothingToDo(_))
    ));

    // Verified by MFA: an allow, signed.
    let verified = [Verification {
        method: Method::MfaStepUp,
        verified_at: t - 5,
    }];
    let mut inquiry = Inquiry::new(&f.tenant, &adele, Claim::ForgotPassword, t);
    inquiry.verifications = &verified;
    let decided = f.decide(&inquiry).await.unwrap();
    assert_eq!(
        decided.decision().kind(),
        "allow",
        "{:?}",
        decided.decision()
    );
    let signed = decided.receipt.as_ref().expect("an allow is signed");
    assert_eq!(
        signed.receipt().actions(),
        &[Action::ResetPassword, Action::RevokeSessions]
    );
    assert_eq!(signed.receipt().target(), &adele);

    let before = f.sim.sim.tenant().user(ADELE).unwrap().password.clone();
    let execution = f.act(&adele, &decided).await.unwrap();
    assert!(execution.is_complete(), "{execution:?}");
    let Some(Applied::PasswordReset { password }) = execution.applied(Action::ResetPassword) else {
        panic!("no reset: {execution:?}")
    };
    {
        let tenant = f.sim.sim.tenant();
        let user = tenant.user(ADELE).unwrap();
        assert_ne!(user.password, before);
        assert_eq!(&user.password, password.expose());
        assert!(user.force_change_password);
        assert!(user.sessions_valid_from.is_some(), "signed out everywhere");
    }

    // The chain: the start-up note, then request, decision, request,
    // decision, and an intent and outcome per write.
    let entries = f.entries().await;
    assert_eq!(entries[0].kind, Kind::Note);
    let entries = &entries[1..];
    let kinds: Vec<Kind> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Request,
            Kind::Decision,
            Kind::Request,
            Kind::Decision,
            Kind::Intent,
            Kind::Outcome,
            Kind::Intent,
            Kind::Outcome
        ]
    );
    let text = serde_json::to_string(&entries.iter().map(|e| &e.body).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(password.expose()),
        "the password is never recorded"
    );
    let report = f.service.audit().verify(Scope::All).await.unwrap();
    assert!(report.is_ok(), "{report:?}");

    // The decision entry replays to the same allow, and its receipt verifies
    // with only the host's public key.
    let decision_entry = &entries[3];
    assert_eq!(decision_entry.id, decided.entry);
    let replayed = replay::replay(decision_entry, &sandbox(), &f.module).unwrap();
    assert!(replayed.matches(), "{:?}", replayed.differences);
    let recorded = replayed.record.receipt.expect("the receipt is recorded");
    let authentic =
        receipt::verify_authenticity(&recorded.to_string(), f.service.keys().verifying()).unwrap();
    assert_eq!(authentic.decision_id(), &decided.decision_id);
    assert_eq!(authentic.facts_sha256(), replayed.record.facts_sha256);
}

#[tokio::test]
async fn a_lost_device_gets_a_pass_held_to_the_tenant_maximum_and_loses_the_lost_methods() {
    let f = fixture(30).await;
    let alex = user(ALEX);
    let t = now();
    let verified = [Verification {
        method: Method::ManagerConfirmation,
        verified_at: t - 60,
    }];
    let mut inquiry = Inquiry::new(&f.tenant, &alex, Claim::LostMfaDevice, t);
    inquiry.verifications = &verified;
    let decided = f.decide(&inquiry).await.unwrap();
    assert_eq!(
        decided.decision().kind(),
        "allow",
        "{:?}",
        decided.decision()
    );
    // The policy asks for 60 minutes; the tenant allows 30.
    let constraints = *decided.receipt.as_ref().unwrap().receipt().constraints();
    assert_eq!(constraints.tap_lifetime_minutes, Some(30));
    assert!(constraints.tap_one_time_use);

    let execution = f.act(&alex, &decided).await.unwrap();
    assert!(execution.is_complete(), "{execution:?}");
    let tenant = f.sim.sim.tenant();
    let methods = &tenant.user(ALEX).unwrap().methods;
    assert!(
        !methods
            .iter()
            .any(|m| matches!(m, SimMethod::MicrosoftAuthenticator { .. })),
        "the lost Authenticator is gone: {methods:?}"
    );
    let pass = methods
        .iter()
        .find_map(|m| match m {
            SimMethod::TemporaryAccessPass(tap) => Some(tap),
            _ => None,
        })
        .expect("a pass was issued");
    assert_eq!(pass.lifetime_minutes, 30);
    assert!(pass.usable_once);
}

#[tokio::test]
async fn a_request_about_someone_else_signs_nothing_and_changes_nothing() {
    let f = fixture(60).await;
    let isaiah = user(ISAIAH);
    let t = now();
    let before = serde_json::to_value(f.sim.sim.tenant().user(LEE).unwrap()).unwrap();
    let verified = [Verification {
        method: Method::MfaStepUp,
        verified_at: t - 5,
    }];
    let actions = [Action::ResetPassword];
    let mut inquiry = Inquiry::new(&f.tenant, &isaiah, Claim::ForgotPassword, t);
    inquiry.about = Some("lee.gu@contoso.com");
    inquiry.verifications = &verified;
    inquiry.requested_actions = Some(&actions);
    let decided = f.decide(&inquiry).await.unwrap();
    assert!(!decided.facts.target_is_self);
    assert!(decided.receipt.is_none(), "{:?}", decided.decision());
    assert!(f.act(&isaiah, &decided).await.is_err());
    let after = serde_json::to_value(f.sim.sim.tenant().user(LEE).unwrap()).unwrap();
    assert_eq!(before, after);
    let entries = f.entries().await;
    assert!(entries.iter().all(|e| e.kind != Kind::Intent));
}

#[tokio::test]
async fn an_unknown_requester_is_refused_and_the_refusal_recorded() {
    let f = fixture(60).await;
    let nobody = user("00000000-0000-4000-8000-000000000001");
    let err = f
        .decide(&Inquiry::new(
            &f.tenant,
            &nobody,
            Claim::ForgotPassword,
            now(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Investigate(_)), "{err}");
    let entries = f.entries().await;
    assert_eq!(entries.last().unwrap().kind, Kind::Refusal);
}
