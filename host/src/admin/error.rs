//! The admin API's one error type and its JSON envelope.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{HeaderValue, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::service::{ReloadError, TenantStatus};

/// Why an admin request failed. Answered as `{"error": {"code", "message"}}`
/// with the status each variant documents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// 401 `unauthorized`: no bearer token.
    #[error("this API needs `Authorization: Bearer <token>` with the admin token")]
    MissingToken,
    /// 401 `unauthorized`: a token that is not the admin token.
    #[error("the bearer token is not the admin token")]
    WrongToken,
    /// 400 `bad_request`: a malformed id or parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 404 `not_found`: an unknown tenant or route.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// 413 `payload_too_large`.
    #[error("the request body is larger than {} bytes", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// 409 `module_refused`: the reload's module was refused; the tenant (on
    /// its previous module) is in the answer.
    #[error("{message}")]
    Refused {
        /// Why.
        message: String,
        /// The tenant as it is now.
        tenant: Box<TenantStatus>,
    },
    /// 409 `conflict`: the reload cannot be applied as the file stands.
    #[error("{0}")]
    Conflict(String),
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

impl AdminError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::MissingToken | AdminError::WrongToken => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AdminError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AdminError::Refused { .. } => (StatusCode::CONFLICT, "module_refused"),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AdminError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<ReloadError> for AdminError {
    fn from(e: ReloadError) -> AdminError {
        match e {
            ReloadError::UnknownTenant(_) => AdminError::NotFound(e.to_string()),
            ReloadError::Refused { refusal, status } => AdminError::Refused {
                message: format!("module refused, the tenant keeps its previous module: {refusal}"),
                tenant: status,
            },
            ReloadError::Audit(_) | ReloadError::Internal(_) => AdminError::Internal(e.to_string()),
            other => AdminError::Conflict(other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        let mut body = json!({"error": {"code": code, "message": message}});
        if let AdminError::Refused { tenant, .. } = &self
            && let (Some(object), Ok(tenant)) = (body.as_object_mut(), serde_json::to_value(tenant))
        {
            object.insert("tenant".to_owned(), tenant);
        }
        let mut response = (status, Json::<Value>(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match self {
                AdminError::WrongToken => {
                    "Bearer realm=\"latchkey-admin\", error=\"invalid_token\""
                }
                _ => "Bearer realm=\"latchkey-admin\"",
            };
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response.extensions_mut().insert(Logged { code, message });
        response
    }
}
