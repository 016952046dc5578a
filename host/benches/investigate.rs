#![allow(missing_docs, clippy::panic)]
//! One full investigation of a demo user: the emulator with the demo tenant
//! on loopback, in process, and the investigator reading it through the
//! Graph client over HTTP, every read of a real investigation included
//! (profile, domain, manager, groups, roles, devices, sign-ins, methods,
//! registration report). The token is fetched once, before measuring, as a
//! running host would have it cached.
//!
//! Run with `cargo bench -p latchkey --bench investigate`.

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::graph::{GraphClient, GraphConfig, Secret};
use latchkey::ids::UserId;
use latchkey::investigator::{Claim, Inquiry, Investigator, Settings};
use latchkey::sdk::Scenario;
use latchkey::tenant::TenantId;
use serde_json::Value;

/// Henrietta Mueller, locked out: the demo user with the most sign-ins.
const HENRIETTA: &str = "c7a89585-cf99-48dd-bf22-07ec2ab83009";

fn text(credentials: &Value, name: &str) -> String {
    credentials[name]
        .as_str()
        .unwrap_or_else(|| panic!("the emulator's credentials have no {name}"))
        .to_owned()
}

fn investigate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let tenant = latchkey::sim::seed::demo(time::OffsetDateTime::now_utc())
        .unwrap_or_else(|e| panic!("{e}"));
    let running = runtime
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            latchkey::sim::spawn(listener, tenant)
        })
        .unwrap_or_else(|e| panic!("starting the emulator: {e}"));
    let credentials = latchkey::sim::credentials(&running.sim);
    let tenant_id: TenantId = text(&credentials, "tenant_id")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = GraphConfig::new(
        tenant_id.clone(),
        text(&credentials, "client_id"),
        Secret::new(text(&credentials, "client_secret")),
    );
    config.authority = text(&credentials, "authority");
    config.graph_base_url = text(&credentials, "graph_base_url");
    let graph = GraphClient::new(config).unwrap_or_else(|e| panic!("{e}"));
    let investigator =
        Investigator::new(graph, Settings::default()).unwrap_or_else(|e| panic!("{e}"));

    let requester: UserId = HENRIETTA.parse().unwrap_or_else(|e| panic!("{e}"));
    let now = running.sim.now().unix_timestamp();
    let inquiry = Inquiry::new(&tenant_id, &requester, Claim::LockedOut, now);
    let first = runtime
        .block_on(investigator.investigate(&inquiry))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.scenario, Scenario::AccountLocked);
    assert_eq!(first.sign_in.recent_failures, 13);

    c.bench_function("investigate/emulator/locked_user", |b| {
        b.iter(|| {
            let facts = runtime
                .block_on(investigator.investigate(std::hint::black_box(&inquiry)))
                .unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(facts);
        })
    });
}

criterion_group!(benches, investigate);
criterion_main!(benches);
