//! (being written)

use axum::Router;

use crate::sim::state::Sim;

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
}

use axum::response::Response;

use crate::sim::identity::TokenRequest;
use crate::sim::model::{App, Tenant};

/// Redeems an authorization code (the token endpoint's `authorization_code` grant).
pub fn redeem(_sim: &Sim, _tenant: &Tenant, _app: &App, _request: &TokenRequest) -> Response {
    crate::sim::identity::oauth_error(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_grant",
        70000,
        "not yet implemented",
    )
}
