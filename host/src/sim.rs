//! The Entra ID and Microsoft Graph emulator behind `latchkey sim`.
//!
//! A faithful subset of Graph v1.0 and of the Entra identity endpoints, so that
//! Latchkey runs, demos and is tested offline, and so that moving to a real
//! tenant is only a change of base URLs. It is a separate HTTP server: the rest
//! of Latchkey never imports this module and reaches it only over HTTP,
//! exactly as it reaches Microsoft.
//!
//! Layout: [`identity`] (tokens, keys, discovery) and [`signin`] (the
//! authorize page, PKCE, the simulated Authenticator); [`users`],
//! [`methods`] and [`directory`] (Graph routes); [`odata`] (query options);
//! [`batch`] (JSON batching); [`auth`] (who is calling, and may they);
//! [`error`] (Graph's envelope); [`control`] (`/_sim/`: sign-in simulation, faults, the outbox); [`seed`]
//! and [`model`] (the tenant).

pub mod auth;
pub mod batch;
pub mod browser;
pub mod control;
pub mod directory;
pub mod error;
pub mod identity;
pub mod methods;
pub mod model;
pub mod odata;
pub mod seed;
pub mod signin;
pub mod state;
pub mod users;

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use identity::SigningKey;
pub use model::Tenant;
pub use state::Sim;

/// The largest request body the emulator reads (Graph's own limit is 4 MB).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The emulator's routes, around `sim`. Tests call this without a socket.
pub fn app(sim: Sim) -> Router {
    let graph = routes(sim.clone());
    let batch = batch::routes(sim, graph.clone());
    graph.merge(around(batch))
}

/// Every route but the batch's, which runs its requests through these.
fn routes(sim: Sim) -> Router {
    let routes = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route("/{tenant}/discovery/v2.0/keys", get(identity::keys))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::openid_configuration),
        )
        .merge(signin::routes())
        .merge(users::routes())
        .merge(methods::routes())
        .merge(directory::routes())
        .merge(control::routes())
        .layer(middleware::from_fn_with_state(
            sim.clone(),
            control::inject_faults,
        ))
        .with_state(sim);
    around(routes)
}

/// The layers every response passes: the body limit and Graph's envelope.
fn around(routes: Router) -> Router {
    routes
        .layer(middleware::from_fn(error::envelope))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The demo app's credentials, as `latchkey sim` prints them: what a client
/// needs to point at this emulator.
pub fn credentials(sim: &Sim) -> Value {
    let tenant = sim.tenant();
    let app = tenant.apps.first();
    json!({
        "tenant_id": tenant.id,
        "tenant": tenant.name,
        "client_id": app.map(|a| a.client_id.as_str()),
        "client_secret": app.map(|a| a.client_secret.as_str()),
        "authority": sim.base_url(),
        "graph_base_url": sim.graph_base(),
    })
}

/// A running emulator.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (the tenant, the clock, the faults).
    pub sim: Sim,
}

impl Running {
    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        self.sim.base_url().to_owned()
    }
}

/// Serves `tenant` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tenant: Tenant,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (running, router) = prepare(&listener, tenant)?;
    tracing::info!(addr = %running.addr, "emulator listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Starts the emulator on `listener` in the background (for tests and the
/// demo) and returns its address and state.
pub fn spawn(listener: TcpListener, tenant: Tenant) -> std::io::Result<Running> {
    let (running, router) = prepare(&listener, tenant)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("emulator stopped: {e}");
        }
    });
    Ok(running)
}

fn prepare(listener: &TcpListener, tenant: Tenant) -> std::io::Result<(Running, Router)> {
    let addr = listener.local_addr()?;
    let key = SigningKey::well_known().map_err(std::io::Error::other)?;
    let sim = Sim::new(tenant, format!("http://{addr}"), key);
    let router = app(sim.clone());
    Ok((Running { addr, sim }, router))
}
