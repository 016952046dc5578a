//! The web chat API's one error type and its JSON envelope.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{HeaderValue, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a web chat API request failed. Answered as
/// `{"error": {"code", "message"}}` with the status each variant documents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// 401 `unauthorized`: no session, or one that ended.
    #[error("sign in first: GET /auth/login in a browser, or POST /api/session from a script")]
    Unauthorized,
    /// 400 `bad_request`: a body or parameter that does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// 403 `forbidden`: a cross-site request, or an action the signed-in
    /// person may not take.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`: an unknown route, request or secret.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// 409 `conflict`: the request no longer applies (answered, expired).
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload_too_large`.
    #[error("the request body is larger than {} bytes", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: a POST without `Content-Type:
    /// application/json` (which also keeps plain HTML forms of other sites
    /// out).
    #[error("send the body as JSON, with Content-Type: application/json")]
    NotJson,
    /// 429 `too_many_requests`.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503 `unavailable`: the tenant cannot serve the chat right now.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `internal`.
    #[error("{0}")]
    Internal(String),
}

/// What the request span logs about a failure (the body is already JSON).
#[derive(Clone, Debug)]
pub(super) struct Logged {
    pub code: &'static str,
    pub message: String,
}

impl WebError {
    /// The HTTP status and the error code sent.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            WebError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            WebError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            WebError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            WebError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            WebError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            WebError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            WebError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            WebError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            WebError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            WebError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            WebError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // An internal error's detail goes to the log, not to the client.
        let message = self.to_string();
        let shown = match self {
            WebError::Internal(_) => {
                "something went wrong on our side; try again, and tell your IT service desk if it persists"
                    .to_owned()
            }
            _ => message.clone(),
        };
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": shown}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"latchkey-web\""),
            );
        }
        response.extensions_mut().insert(Logged { code, message });
        response
    }
}
