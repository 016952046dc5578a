//! (being written)

use axum::Router;

use crate::sim::state::Sim;

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
}

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: applies configured faults (latency, 429, 503) to matching requests.
pub async fn inject_faults(State(_sim): State<Sim>, request: Request, next: Next) -> Response {
    next.run(request).await
}
