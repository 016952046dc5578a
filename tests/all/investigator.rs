//! The investigator against the emulator's demo tenant over real HTTP: every
//! demo user classified as seeded with the signals right, privileged,
//! disabled and synced accounts, requests about other accounts, reads that
//! are throttled or not permitted, a missing requester, and the facts run
//! through the default policy so that investigator and policy agree.

use std::time::Duration;

use latchkey::graph::{GraphClient, GraphConfig, Secret};
use latchkey::ids::UserId;
use latchkey::investigator::{
    Claim, Inquiry, InvestigateError, Investigator, PROFILE_PROPERTIES, Settings,
};
use latchkey::sdk::{
    Action, AuthMethod, BlockingPolicy, Channel, Facts, Method, Scenario, Verification, Weekday,
};
use latchkey::tenant::TenantId;
use latchkey_tests::{TestSim, module_bytes, sandbox};
use serde_json::json;

const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ALEX: &str = "8f080165-38fe-44c1-b3b8-6f4dafad5194";
const HENRIETTA: &str = "c7a89585-cf99-48dd-bf22-07ec2ab83009";
const JONI: &str = "3312b0a5-a84a-4606-8112-0919b8819c21";
const GRADY: &str = "11819143-12fb-451a-b400-e927093be9e8";
const LIDIA: &str = "01819de6-3400-4e1f-9f12-c12ec6e9b84b";
const LEE: &str = "f076e392-469f-4fdf-9ff9-5ec6c20d6044";
const MEGAN: &str = "929282d2-453e-4a90-82de-9182debcc53a";
const PATTI: &str = "1ee47d68-adbf-4490-be70-84a7d6ddd673";
const LYNNE: &str = "d74a95ba-814d-4f28-a740-9d115c0505b7";
const DIEGO: &str = "b63b2df3-1943-4e9d-b14f-360eaca0d93f";
const ISAIAH: &str = "1d9d26b2-d4d3-489e-9c6e-e21035bda97e";
const NESTOR: &str = "ee568a73-1362-4e63-b294-43d1e4f85ecb";
const JOHANNA: &str = "7b6e0671-6941-4342-9bdc-816527694b5e";
const CHRISTIE: &str = "94e95831-2ec6-4884-894f-91b7286f34a5";

const RETAIL_GROUP: &str = "7c78c782-d1df-458c-8147-1233b8a3bcea";
const ALL_STAFF_GROUP: &str = "98357c24-772c-4424-a92a-223e3b92b13a";
const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
const FINANCE_CA_POLICY: &str = "1d3076c5-6ca8-4257-b54e-e6bbadcc4b45";

/// The demo app pointed at `sim`, with retry waits short enough for tests.
fn config(sim: &TestSim) -> GraphConfig {
    let (tenant, client_id, secret) = sim.app();
    let mut config = GraphConfig::new(tenant.parse().unwrap(), client_id, Secret::new(secret));
    config.authority = sim.base_url.clone();
    config.graph_base_url = sim.graph("");
    config.retry_base_wait = Duration::from_millis(20);
    config.max_retry_wait = Duration::from_secs(2);
    config
}

fn investigator(sim: &TestSim) -> Investigator {
    Investigator::new(GraphClient::new(config(sim)).unwrap(), Settings::default()).unwrap()
}

fn tenant(sim: &TestSim) -> TenantId {
    sim.app().0.parse().unwrap()
}

/// The emulator's now: the seed's sign-ins are relative to it.
fn now(sim: &TestSim) -> i64 {
    sim.sim.now().unix_timestamp()
}

fn id(text: &str) -> UserId {
    text.parse().unwrap()
}

/// Investigates `user`'s own account with the given claim.
async fn facts(sim: &TestSim, user: &str, claim: Claim) -> Facts {
    let tenant = tenant(sim);
    let user = id(user);
    let inquiry = Inquiry::new(&tenant, &user, claim, now(sim));
    investigator(sim).investigate(&inquiry).await.unwrap()
}

/// Removes application permissions from the demo app before any token is
/// issued for it.
fn revoke(sim: &TestSim, permissions: &[&str]) {
    sim.sim.tenant().apps[0]
        .roles
        .retain(|r| !permissions.contains(&r.as_str()));
}

#[tokio::test]
async fn every_demo_user_is_classified_as_seeded() {
    let sim = TestSim::start().await;
    let cases = [
        (ADELE, Claim::ForgotPassword, Scenario::ForgotPassword),
        (ALEX, Claim::LostMfaDevice, Scenario::LostMfaDevice),
        // 500121s alone say the same, without the user's word.
        (ALEX, Claim::CannotSignIn, Scenario::LostMfaDevice),
        (HENRIETTA, Claim::LockedOut, Scenario::AccountLocked),
        // The lockout shows whatever the user believes.
        (HENRIETTA, Claim::ForgotPassword, Scenario::AccountLocked),
        (JONI, Claim::CannotSignIn, Scenario::AccountLocked),
        (GRADY, Claim::PasswordExpired, Scenario::PasswordExpired),
        (GRADY, Claim::CannotSignIn, Scenario::PasswordExpired),
        (
            LIDIA,
            Claim::CannotSignIn,
            Scenario::ConditionalAccessBlocked,
        ),
        (
            LIDIA,
            Claim::ForgotPassword,
            Scenario::ConditionalAccessBlocked,
        ),
        (MEGAN, Claim::CannotSignIn, Scenario::Mistyped),
        (MEGAN, Claim::ForgotPassword, Scenario::Mistyped),
        // Two wrong passwords and no success in the window.
        (LEE, Claim::CannotSignIn, Scenario::ForgotPassword),
        // Signed in fine, nothing to go on.
        (LYNNE, Claim::CannotSignIn, Scenario::Unknown),
        (ISAIAH, Claim::CannotSignIn, Scenario::Unknown),
        (PATTI, Claim::CannotSignIn, Scenario::Unknown),
        // Conditional Access applied and let the sign-in through.
        (DIEGO, Claim::CannotSignIn, Scenario::Unknown),
        (NESTOR, Claim::ForgotPassword, Scenario::ForgotPassword),
        (JOHANNA, Claim::ForgotPassword, Scenario::ForgotPassword),
        (CHRISTIE, Claim::CannotSignIn, Scenario::Unknown),
    ];
    let mut wrong = Vec::new();
    for (user, claim, expected) in cases {
        let facts = facts(&sim, user, claim).await;
        if facts.scenario != expected {
            wrong.push(format!(
                "{} ({claim:?}): {:?}, expected {expected:?}",
                facts.requester.user_principal_name, facts.scenario
            ));
        }
        assert!(facts.target_is_self);
        assert_eq!(facts.requester.id, user);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn forgot_password_fills_every_field_of_the_facts() {
    let sim = TestSim::start().await;
    let tenant = tenant(&sim);
    let adele = id(ADELE);
    let verified = [Verification {
        method: Method::MfaStepUp,
        verified_at: now(&sim) - 60,
    }];
    // Monday 2026-11-23 10:00 UTC; the tenant is UTC+01:00.
    let monday = 1_795_428_000;
    let asked_at = now(&sim);
    let mut inquiry = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, asked_at);
    inquiry.channel = Channel::Teams;
    inquiry.verifications = &verified;
    let settings = Settings {
        utc_offset_minutes: 60,
        ..Settings::default()
    };
    let investigator =
        Investigator::new(GraphClient::new(config(&sim)).unwrap(), settings).unwrap();
    let facts = investigator.investigate(&inquiry).await.unwrap();

    assert_eq!(facts.tenant_id, tenant.as_str());
    let requester = &facts.requester;
    assert_eq!(requester.user_principal_name, "adele.vance@contoso.com");
    assert_eq!(requester.display_name, "Adele Vance");
    assert_eq!(requester.department.as_deref(), Some("Retail"));
    assert_eq!(requester.job_title.as_deref(), Some("Retail Manager"));
    // Transitively: Retail, and All Staff through it.
    let mut groups = vec![RETAIL_GROUP, ALL_STAFF_GROUP];
    groups.sort_unstable();
    assert_eq!(requester.group_ids, groups);
    assert!(requester.role_template_ids.is_empty());
    assert!(!requester.is_privileged);
    assert!(requester.account_enabled);
    assert!(!requester.on_premises_synced);
    assert!(requester.has_manager);

    assert_eq!(facts.scenario, Scenario::ForgotPassword);
    let sign_in = &facts.sign_in;
    assert_eq!(sign_in.recent_failures, 3);
    assert_eq!(sign_in.error_codes, [50126]);
    assert!(!sign_in.locked_out && !sign_in.password_expired);
    assert!(sign_in.blocking_policies.is_empty());
    // Her last success was two days ago, outside the 24-hour window.
    assert_eq!(sign_in.last_success_at, None);
    let changed = sign_in.last_password_change_at.unwrap();
    assert!(
        (now(&sim) - changed - 56 * 86_400).abs() < 120,
        "56 days ago"
    );

    assert_eq!(
        facts.mfa.registered_methods,
        [
            AuthMethod::MicrosoftAuthenticator,
            AuthMethod::Phone,
            AuthMethod::Email
        ]
    );
    assert!(facts.mfa.mfa_capable);
    assert!(facts.mfa.has_recovery_email);
    assert!(!facts.mfa.device_reported_lost);

    assert_eq!(facts.verifications, verified);
    assert!(facts.approvals.is_empty());
    assert_eq!(
        facts.requested_actions,
        [Action::ResetPassword, Action::RevokeSessions]
    );
    assert_eq!(facts.channel, Channel::Teams);
    assert_eq!(facts.time.unix_seconds, asked_at);
    // The clock is the inquiry's, in the tenant's offset.
    let at_monday = Inquiry {
        now: monday,
        ..inquiry
    };
    let clock = investigator.investigate(&at_monday).await.unwrap().time;
    assert_eq!(
        (clock.unix_seconds, clock.local_hour, clock.local_weekday),
        (monday, 11, Weekday::Monday)
    );
}

#[tokio::test]
async fn the_signals_of_each_situation_are_right() {
    let sim = TestSim::start().await;

    let alex = facts(&sim, ALEX, Claim::LostMfaDevice).await;
    assert!(alex.mfa.device_reported_lost);
    assert_eq!(alex.sign_in.error_codes, [500_121]);
    assert_eq!(alex.sign_in.recent_failures, 3);
    assert!(alex.mfa.has_recovery_email);
    assert_eq!(
        alex.requested_actions,
        [
            Action::IssueTemporaryAccessPass,
            Action::RemoveLostMfaMethods,
            Action::RevokeSessions
        ]
    );
    let alex_unsaid = facts(&sim, ALEX, Claim::CannotSignIn).await;
    assert!(
        !alex_unsaid.mfa.device_reported_lost,
        "only the user says so"
    );

    let henrietta = facts(&sim, HENRIETTA, Claim::LockedOut).await;
    assert!(henrietta.sign_in.locked_out);
    assert_eq!(henrietta.sign_in.recent_failures, 13);
    assert_eq!(henrietta.sign_in.error_codes, [50053, 50126]);
    assert_eq!(
        henrietta.requested_actions,
        [Action::ResetPassword, Action::RevokeSessions]
    );
    // Authenticator and a phone, no email.
    assert!(henrietta.mfa.mfa_capable && !henrietta.mfa.has_recovery_email);

    let grady = facts(&sim, GRADY, Claim::PasswordExpired).await;
    assert!(grady.sign_in.password_expired);
    assert_eq!(grady.sign_in.error_codes, [50055, 120_002]);
    let changed = grady.sign_in.last_password_change_at.unwrap();
    assert!(
        (now(&sim) - changed - 104 * 86_400).abs() < 120,
        "104 days ago"
    );

    let lidia = facts(&sim, LIDIA, Claim::CannotSignIn).await;
    assert_eq!(lidia.sign_in.error_codes, [53003]);
    assert_eq!(lidia.sign_in.recent_failures, 2);
    assert_eq!(
        lidia.sign_in.blocking_policies,
        [BlockingPolicy {
            id: FINANCE_CA_POLICY.into(),
            display_name: "Finance: block access from outside trusted locations".into(),
        }]
    );
    assert!(lidia.requested_actions.is_empty(), "nothing to change");
    // Diego's sign-ins passed the same policy: nothing blocked him.
    let diego = facts(&sim, DIEGO, Claim::CannotSignIn).await;
    assert!(diego.sign_in.blocking_policies.is_empty());

    let megan = facts(&sim, MEGAN, Claim::CannotSignIn).await;
    assert_eq!(megan.sign_in.error_codes, [50126]);
    assert!(megan.sign_in.last_success_at.unwrap() > now(&sim) - 7 * 60);
    assert!(megan.requested_actions.is_empty());

    let lee = facts(&sim, LEE, Claim::ForgotPassword).await;
    assert!(lee.mfa.registered_methods.is_empty());
    assert!(!lee.mfa.mfa_capable && !lee.mfa.has_recovery_email);
}

#[tokio::test]
async fn privileged_disabled_synced_and_managerless_accounts_are_facts() {
    let sim = TestSim::start().await;

    let nestor = facts(&sim, NESTOR, Claim::ForgotPassword).await;
    assert!(nestor.requester.is_privileged);
    assert_eq!(nestor.requester.role_template_ids, [GLOBAL_ADMINISTRATOR]);
    assert!(nestor.mfa.registered_methods.contains(&AuthMethod::Fido2));

    let johanna = facts(&sim, JOHANNA, Claim::ForgotPassword).await;
    assert!(johanna.requester.is_privileged);
    assert_eq!(johanna.requester.role_template_ids, [USER_ADMINISTRATOR]);

    let adele = facts(&sim, ADELE, Claim::ForgotPassword).await;
    assert!(!adele.requester.is_privileged);

    // Disabled: Graph has no registration report for her, and the methods
    // stand in for it.
    let christie = facts(&sim, CHRISTIE, Claim::ForgotPassword).await;
    assert!(!christie.requester.account_enabled);
    assert_eq!(christie.sign_in.error_codes, [50057]);
    assert!(christie.mfa.mfa_capable);
    assert_eq!(christie.scenario, Scenario::ForgotPassword);

    let joni = facts(&sim, JONI, Claim::LockedOut).await;
    assert!(joni.requester.on_premises_synced);
    assert!(joni.sign_in.locked_out);
    assert!(!adele.requester.on_premises_synced);

    let patti = facts(&sim, PATTI, Claim::CannotSignIn).await;
    assert!(!patti.requester.has_manager, "the CEO reports to nobody");
}

#[tokio::test]
async fn requests_about_another_account_are_other_account() {
    let sim = TestSim::start().await;
    let tenant = tenant(&sim);
    let isaiah = id(ISAIAH);
    for about in [
        "lee.gu@contoso.com",
        LEE,
        "LEE.GU@CONTOSO.COM",
        "nobody@contoso.com",
    ] {
        let mut inquiry = Inquiry::new(&tenant, &isaiah, Claim::ForgotPassword, now(&sim));
        inquiry.about = Some(about);
        let facts = investigator(&sim).investigate(&inquiry).await.unwrap();
        assert_eq!(facts.scenario, Scenario::OtherAccount, "{about}");
        assert!(!facts.target_is_self, "{about}");
        assert!(facts.requested_actions.is_empty(), "{about}");
        // The facts describe the verified requester, never the other account.
        assert_eq!(facts.requester.id, ISAIAH);
        assert_eq!(
            facts.requester.user_principal_name,
            "isaiah.langer@contoso.com"
        );
    }
    // Naming one's own account, however spelled, is not another account.
    let adele = id(ADELE);
    for about in ["Adele.Vance@contoso.com", &ADELE.to_uppercase()] {
        let mut inquiry = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now(&sim));
        inquiry.about = Some(about);
        let facts = investigator(&sim).investigate(&inquiry).await.unwrap();
        assert!(facts.target_is_self, "{about}");
        assert_eq!(facts.scenario, Scenario::ForgotPassword, "{about}");
    }
    let mut blank = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now(&sim));
    blank.about = Some("  ");
    assert!(matches!(
        investigator(&sim).investigate(&blank).await,
        Err(InvestigateError::InvalidInquiry(_))
    ));
}

#[tokio::test]
async fn explicit_requested_actions_are_kept() {
    let sim = TestSim::start().await;
    let tenant = tenant(&sim);
    let adele = id(ADELE);
    let wanted = [
        Action::ResetPassword,
        Action::RevokeSessions,
        Action::ResetPassword,
    ];
    let mut inquiry = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now(&sim));
    inquiry.requested_actions = Some(&wanted);
    let facts = investigator(&sim).investigate(&inquiry).await.unwrap();
    assert_eq!(
        facts.requested_actions,
        [Action::ResetPassword, Action::RevokeSessions]
    );
}

#[tokio::test]
async fn throttled_reads_complete_through_retries() {
    let sim = TestSim::start().await;
    sim.add_fault(json!({"path_prefix": "/auditLogs/signIns", "status": 429, "retry_after": "0.05", "count": 2}),
    )
    .await;
    sim.add_fault(json!({"path_prefix": "/users", "status": 503, "count": 3}))
        .await;
    let facts = facts(&sim, HENRIETTA, Claim::LockedOut).await;
    assert_eq!(facts.scenario, Scenario::AccountLocked);
    assert_eq!(facts.sign_in.recent_failures, 13);
    assert_eq!(
        sim.faults().await,
        json!({"value": []}),
        "every injected fault was met"
    );
}

#[tokio::test]
async fn the_reads_run_concurrently() {
    let sim = TestSim::start().await;
    // Every Graph request takes 300 ms. One after the other, the ten reads
    // would take three seconds; the batch of nine (run at once) and then the
    // domain (named by the profile's UPN) take 600 ms.
    sim.add_fault(json!({"latency_ms": 300})).await;
    let started = std::time::Instant::now();
    let facts = facts(&sim, ADELE, Claim::ForgotPassword).await;
    let elapsed = started.elapsed();
    assert_eq!(facts.scenario, Scenario::ForgotPassword);
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn an_investigation_is_two_exchanges_with_graph() {
    let sim = TestSim::start().await;
    let graph = GraphClient::new(config(&sim)).unwrap();
    let investigator = Investigator::new(graph.clone(), Settings::default()).unwrap();
    let tenant = tenant(&sim);
    // Adele's password is mastered in the cloud: her domain's policy is read
    // too, once the profile has named the domain.
    let adele = id(ADELE);
    let inquiry = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now(&sim));
    let facts = investigator.investigate(&inquiry).await.unwrap();
    assert_eq!(facts.scenario, Scenario::ForgotPassword);
    assert_eq!(
        graph.exchanges(),
        2,
        "the batch of nine reads, then the domain"
    );
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_fails_with_the_read_named() {
    let sim = TestSim::start().await;
    sim.add_fault(json!({"path_prefix": "/reports", "status": 429, "retry_after": "0.01"}))
        .await;
    let mut config = config(&sim);
    config.max_retries = 1;
    let investigator =
        Investigator::new(GraphClient::new(config).unwrap(), Settings::default()).unwrap();
    let tenant = tenant(&sim);
    let adele = id(ADELE);
    let inquiry = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now(&sim));
    let error = investigator.investigate(&inquiry).await.unwrap_err();
    assert!(
        matches!(
            &error,
            InvestigateError::Graph {
                read: "registration details",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_requester_is_a_typed_error() {
    let sim = TestSim::start().await;
    let tenant = tenant(&sim);
    let ghost = id("00000000-0000-4000-8000-000000000001");
    let inquiry = Inquiry::new(&tenant, &ghost, Claim::ForgotPassword, now(&sim));
    match investigator(&sim).investigate(&inquiry).await {
        Err(InvestigateError::RequesterNotFound {
            requester,
            request_id,
        }) => {
            assert_eq!(requester, ghost);
            assert!(request_id.is_some(), "Graph's request id is kept");
        }
        other => panic!("expected RequesterNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn without_audit_log_access_the_claim_and_the_methods_decide() {
    let sim = TestSim::start().await;
    // Sign-ins and the registration report both need AuditLog.Read.All.
    revoke(&sim, &["AuditLog.Read.All"]);
    let adele = facts(&sim, ADELE, Claim::ForgotPassword).await;
    assert_eq!(adele.scenario, Scenario::ForgotPassword);
    assert_eq!(adele.sign_in.recent_failures, 0);
    assert!(adele.mfa.mfa_capable, "computed from the methods");
    assert!(adele.mfa.has_recovery_email);
    // Without sign-ins, a lockout cannot be seen: a person looks at it.
    let henrietta = facts(&sim, HENRIETTA, Claim::LockedOut).await;
    assert_eq!(henrietta.scenario, Scenario::Unknown);
}

#[tokio::test]
async fn without_policy_access_the_block_is_seen_but_not_named() {
    let sim = TestSim::start().await;
    revoke(&sim, &["Policy.Read.All"]);
    let lidia = facts(&sim, LIDIA, Claim::CannotSignIn).await;
    assert_eq!(lidia.scenario, Scenario::ConditionalAccessBlocked);
    assert!(lidia.sign_in.blocking_policies.is_empty());
}

#[tokio::test]
async fn without_role_assignments_activated_roles_still_flag_privilege() {
    let sim = TestSim::start().await;
    revoke(
        &sim,
        &["RoleManagement.Read.Directory", "Directory.Read.All"],
    );
    let nestor = facts(&sim, NESTOR, Claim::ForgotPassword).await;
    assert!(nestor.requester.is_privileged);
    assert_eq!(nestor.requester.role_template_ids, [GLOBAL_ADMINISTRATOR]);
}

#[tokio::test]
async fn without_methods_or_registration_the_mfa_state_is_an_error() {
    let sim = TestSim::start().await;
    revoke(
        &sim,
        &[
            "AuditLog.Read.All",
            "UserAuthenticationMethod.ReadWrite.All",
        ],
    );
    let tenant = tenant(&sim);
    let adele = id(ADELE);
    let inquiry = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now(&sim));
    let error = investigator(&sim).investigate(&inquiry).await.unwrap_err();
    assert!(
        matches!(error, InvestigateError::MfaStateUnknown { .. }),
        "{error}"
    );
}

#[test]
fn the_profile_selects_exactly_what_the_facts_use() {
    let selected: Vec<&str> = PROFILE_PROPERTIES.split(',').collect();
    for needed in [
        "id",
        "userPrincipalName",
        "displayName",
        "department",
        "jobTitle",
        "accountEnabled",
        "onPremisesSyncEnabled",
        "lastPasswordChangeDateTime",
        "passwordPolicies",
    ] {
        assert!(selected.contains(&needed), "{needed}");
    }
    assert!(!selected.contains(&"passwordProfile"));
    assert!(
        !selected.contains(&"signInActivity"),
        "needs P1; sign-ins say more"
    );
}

/// The decision the default policy takes on `facts`.
fn decide(facts: &Facts) -> latchkey::sdk::Decision {
    let sandbox = sandbox();
    let module = sandbox.load(&module_bytes("policies/default")).unwrap();
    let evaluation = sandbox.decide(&module, facts);
    assert!(evaluation.fault.is_none(), "{:?}", evaluation.fault);
    evaluation.decision
}

#[tokio::test]
async fn the_default_policy_decides_each_situation_as_intended() {
    let sim = TestSim::start().await;
    let tenant = tenant(&sim);
    let isaiah = id(ISAIAH);
    let mut contractor = Inquiry::new(&tenant, &isaiah, Claim::ForgotPassword, now(&sim));
    contractor.about = Some("lee.gu@contoso.com");
    let other_account = investigator(&sim).investigate(&contractor).await.unwrap();

    let cases = [
        // 1. MFA step-up first.
        (
            facts(&sim, ADELE, Claim::ForgotPassword).await,
            "require-verification",
        ),
        // 2. Manager or recovery email, not MFA.
        (
            facts(&sim, ALEX, Claim::LostMfaDevice).await,
            "require-verification",
        ),
        // 3. Verify, then reset.
        (
            facts(&sim, HENRIETTA, Claim::LockedOut).await,
            "require-verification",
        ),
        // 4. The same.
        (
            facts(&sim, GRADY, Claim::PasswordExpired).await,
            "require-verification",
        ),
        // 5. Explained, nothing changed.
        (facts(&sim, LIDIA, Claim::CannotSignIn).await, "deny"),
        // 6. Never another account.
        (other_account, "deny"),
        // 7. Nothing to fix.
        (facts(&sim, MEGAN, Claim::CannotSignIn).await, "deny"),
        // Synced from AD: a cloud reset may not reach it.
        (facts(&sim, JONI, Claim::LockedOut).await, "escalate"),
        (
            facts(&sim, CHRISTIE, Claim::ForgotPassword).await,
            "escalate",
        ),
        (facts(&sim, LYNNE, Claim::CannotSignIn).await, "escalate"),
    ];
    let sandbox = sandbox();
    let module = sandbox.load(&module_bytes("policies/default")).unwrap();
    let mut wrong = Vec::new();
    for (facts, expected) in &cases {
        let evaluation = sandbox.decide(&module, facts);
        assert!(evaluation.fault.is_none(), "{:?}", evaluation.fault);
        if evaluation.decision.kind() != *expected {
            wrong.push(format!(
                "{} {:?}: {:?}, expected {expected}",
                facts.requester.user_principal_name, facts.scenario, evaluation.decision
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The CA block is explained by the policy's name.
    let lidia = facts(&sim, LIDIA, Claim::CannotSignIn).await;
    assert!(
        decide(&lidia)
            .reason()
            .contains("Finance: block access from outside trusted locations")
    );
}

#[tokio::test]
async fn verified_requesters_get_the_standard_remedy_allowed() {
    let sim = TestSim::start().await;
    let tenant = tenant(&sim);
    let now = now(&sim);
    let step_up = [Verification {
        method: Method::MfaStepUp,
        verified_at: now - 60,
    }];
    let adele = id(ADELE);
    let mut forgot = Inquiry::new(&tenant, &adele, Claim::ForgotPassword, now);
    forgot.verifications = &step_up;
    let decision = decide(&investigator(&sim).investigate(&forgot).await.unwrap());
    assert!(
        matches!(&decision, latchkey::sdk::Decision::Allow { actions, .. } if actions == &[Action::ResetPassword, Action::RevokeSessions]),
        "{decision:?}"
    );

    let manager = [Verification {
        method: Method::ManagerConfirmation,
        verified_at: now - 60,
    }];
    let alex = id(ALEX);
    let mut lost = Inquiry::new(&tenant, &alex, Claim::LostMfaDevice, now);
    lost.verifications = &manager;
    let decision = decide(&investigator(&sim).investigate(&lost).await.unwrap());
    assert!(
        matches!(&decision, latchkey::sdk::Decision::Allow { actions, .. }
        if actions == &[
            Action::IssueTemporaryAccessPass,
            Action::RemoveLostMfaMethods,
            Action::RevokeSessions
        ]),
        "{decision:?}"
    );

    // A privileged account, verified, still needs its manager's approval.
    let nestor = id(NESTOR);
    let mut admin = Inquiry::new(&tenant, &nestor, Claim::ForgotPassword, now);
    admin.verifications = &step_up;
    let decision = decide(&investigator(&sim).investigate(&admin).await.unwrap());
    assert_eq!(decision.kind(), "require-approval", "{decision:?}");
}
