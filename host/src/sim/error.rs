//! Graph's error envelope, and the middleware that gives every response the
//! `request-id` headers and every error the envelope, once, in one place.
//!
//! Handlers return [`GraphError`]; it carries only the status, code and
//! message. [`envelope`] runs around every request, assigns the request id,
//! and writes the body Graph writes:
//!
//! ```json
//! {"error":{"code":"Request_ResourceNotFound","message":"...",
//!   "innerError":{"date":"2026-11-26T08:00:00","request-id":"...","client-request-id":"..."}}}
//! ```
//!
//! Responses that did not come from a handler (an unknown route, a wrong
//! method, a body too large, JSON that does not parse) get the envelope too.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A Graph error: status, code and message. The request id and date are added
/// by [`envelope`].
#[derive(Debug, Clone)]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// Graph's error code (`Request_ResourceNotFound`, ...).
    pub code: &'static str,
    /// The message.
    pub message: String,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl GraphError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 404 for an object that does not exist.
    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// 400 for a request Graph would refuse.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 400 for a query option Graph does not support.
    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    /// 403 for a caller without the permission or role.
    pub fn denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// 401 for a missing or invalid token.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Marks a response whose body [`envelope`] must write.
#[derive(Clone, Debug)]
struct Pending {
    code: &'static str,
    message: String,
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response.extensions_mut().insert(Pending {
            code: self.code,
            message: self.message,
        });
        response
    }
}

/// The request id of the request being served, for handlers that need it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Middleware: assigns the request id, echoes `client-request-id`, and writes
/// the error envelope for every error response.
pub async fn envelope(mut request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let mut response = next.run(request).await;

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let pending = response.extensions_mut().remove::<Pending>();
        let already_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if pending.is_some() || !already_json {
            let (code, message) = match pending {
                Some(p) => (p.code, p.message),
                None => fallback(status),
            };
            let body = json!({"error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": graph_date(),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                }
            }});
            *response.body_mut() = Body::from(body.to_string());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
    }
    let headers = response.headers_mut();
    for (name, value) in [
        ("request-id", &request_id),
        ("client-request-id", &client_request_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

/// Codes and messages for errors raised outside the handlers.
fn fallback(status: StatusCode) -> (&'static str, String) {
    match status {
        StatusCode::NOT_FOUND => (
            "BadRequest",
            "Resource not found for the segment of this request.".to_owned(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "Request_BadRequest",
            "The requested HTTP method is not supported on this resource.".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "RequestEntityTooLarge",
            "The request body is too large.".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "Request_BadRequest",
            "The request body must be JSON (Content-Type: application/json).".to_owned(),
        ),
        s if s.is_client_error() => (
            "Request_BadRequest",
            "Invalid request: the body or a parameter could not be read.".to_owned(),
        ),
        _ => ("UnknownError", "An unexpected error occurred.".to_owned()),
    }
}

/// The `innerError.date` format: no fractional seconds, no `Z`.
pub fn graph_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
