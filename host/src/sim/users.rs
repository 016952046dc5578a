//! (being written)

use axum::Router;

use crate::sim::state::Sim;

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
}
