//! The admin API: tenants and their pinned modules, module reloads, recent
//! audit entries; bearer-token protected, loopback by default.
//!
//! Routes, all under `/admin/v1/` and all requiring
//! `Authorization: Bearer <token>` (the token from `[admin] token_file`):
//!
//! | route | what it does |
//! |---|---|
//! | `GET tenants` | every tenant: id, name, pinned module and sha256, publisher key ids, the active module (sha256, file, `compiled` or `disk_cache`, signer, since when, what applied it) and the last refusal |
//! | `GET tenants/{id}` | one tenant, the same shape |
//! | `POST tenants/{id}/reload` | re-reads the configuration file and re-applies that tenant's module (see [`Service::reload`]); 200 with the tenant when applied, 409 `module_refused` with the tenant (still on its previous module) when refused |
//! | `GET audit?tenant={id}&limit={n}` | the tenant's most recent audit entries, newest first; `limit` defaults to [`DEFAULT_AUDIT_LIMIT`], at most [`MAX_AUDIT_LIMIT`] |
//!
//! Every answer is JSON. Errors are `{"error": {"code": "...", "message":
//! "..."}}`: 401 `unauthorized` (with `WWW-Authenticate: Bearer`), 400
//! `bad_request` for a malformed id or parameter, 404 `not_found` for an
//! unknown tenant or route, 405 `method_not_allowed`, 413
//! `payload_too_large` for a body over [`MAX_BODY_BYTES`], 409 for a reload
//! that cannot be applied, 500 `internal`. Every answer carries a
//! `request-id` header, which the log line of a failure names too.
//!
//! The token is compared in constant time (see [`AdminToken`]). Nothing here
//! is safe to expose beyond the machine without TLS in front: the
//! configuration refuses a non-loopback address unless `allow_remote = true`.

mod auth;
mod entries;
mod error;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{CONTENT_LENGTH, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument as _;

use crate::service::Service;

pub use auth::AdminToken;
pub use error::AdminError;

/// The largest request body accepted, in bytes. No route reads a body; this
/// only bounds what a client may send.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The number of audit entries `GET audit` returns without `limit`.
pub const DEFAULT_AUDIT_LIMIT: u32 = 50;
/// The most audit entries one `GET audit` returns.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// The admin API's routes around `service`, answering only requests that
/// carry `token`. Tests call this without a socket.
pub fn app(service: Arc<Service>, token: AdminToken) -> Router {
    let api = Router::new()
        .route("/admin/v1/tenants", get(tenants::list))
        .route("/admin/v1/tenants/{id}", get(tenants::show))
        .route("/admin/v1/tenants/{id}/reload", post(tenants::reload))
        .route("/admin/v1/audit", get(entries::recent))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service);
    api.layer(middleware::from_fn_with_state(
        Arc::new(token),
        auth::require_token,
    ))
    .layer(middleware::from_fn(limit_body))
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(middleware::from_fn(request_span))
}

async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin route; see /admin/v1/tenants".to_owned())
}

async fn method_not_allowed() -> AdminError {
    AdminError::MethodNotAllowed
}

/// Refuses a declared body over [`MAX_BODY_BYTES`] before anything else
/// looks at the request.
async fn limit_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => AdminError::PayloadTooLarge.into_response(),
        _ => next.run(request).await,
    }
}

/// A span per request with a fresh request id, sent back in `request-id`;
/// a failure is logged here, once, with the code it was answered with.
async fn request_span(request: Request, next: Next) -> Response {
    let request_id = crate::ids::random_bytes::<8>()
        .map(hex::encode)
        .unwrap_or_else(|_| "unavailable".to_owned());
    let span = tracing::info_span!(
        "admin",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    async move {
        let mut response = next.run(request).await;
        if let Some(logged) = response.extensions().get::<error::Logged>() {
            let status = response.status().as_u16();
            if response.status().is_server_error() {
                tracing::error!(status, code = logged.code, "{}", logged.message);
            } else {
                tracing::info!(status, code = logged.code, "{}", logged.message);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("request-id", value);
        }
        response
    }
    .instrument(span)
    .await
}
