//! [`GraphError`]: everything that can go wrong between Latchkey and Graph or
//! the Entra token endpoint, and the parsing of their error bodies.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// The longest error message kept from a response body: enough for any Graph
/// message, short enough that a proxy's HTML page does not flood the log.
const MAX_MESSAGE_CHARS: usize = 500;

/// Why a Graph call failed. Messages never contain the client secret or an
/// access token: neither is ever part of a URL or a response we quote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Graph answered with an error. Branch on `code`, never on `message`
    /// (Graph's own advice: messages change).
    #[error("Graph answered {status} {code}: {message} (request-id {})", request_id.as_deref().unwrap_or("none"))]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// Graph's error code (`Request_ResourceNotFound`,
        /// `Authorization_RequestDenied`, ...), or `UnknownError` when the
        /// body was not Graph's error envelope.
        code: String,
        /// Graph's message.
        message: String,
        /// The `request-id` Graph assigned, for its support and audit logs.
        request_id: Option<String>,
        /// The `client-request-id` (ours, echoed).
        client_request_id: Option<String>,
    },
    /// The token endpoint refused to issue a token: wrong tenant, client id
    /// or secret, an expired secret, a missing consent. These do not go away
    /// by retrying; fix the app registration or the configuration.
    #[error(
        "the token endpoint refused the client credentials ({status} {error}): {description}; check tenant_id, client_id and client_secret"
    )]
    Token {
        /// The HTTP status.
        status: StatusCode,
        /// The OAuth error (`invalid_client`, `unauthorized_client`, ...).
        error: String,
        /// The AADSTS codes (7000215: wrong secret; 7000222: expired secret;
        /// 700016: unknown app; 90002: unknown tenant).
        error_codes: Vec<u64>,
        /// Entra's description (starts with `AADSTS<code>:`).
        description: String,
    },
    /// Graph kept throttling (or being unavailable) through every retry.
    #[error("Graph still answered {last_status} after {retries} retries; try again later (request-id {})", request_id.as_deref().unwrap_or("none"))]
    Throttled {
        /// How many retries were made.
        retries: u32,
        /// The status of the last answer (429, 503 or 504; from the token
        /// endpoint, 429 or any 5xx).
        last_status: StatusCode,
        /// The last answer's `request-id`.
        request_id: Option<String>,
    },
    /// No answer in time.
    #[error("no answer from Graph within {timeout:?} ({attempts} attempts)")]
    Timeout {
        /// The per-request timeout.
        timeout: Duration,
        /// How many attempts were made (more than one only for requests that
        /// are safe to repeat).
        attempts: u32,
    },
    /// The request could not be sent or its answer not read (DNS, TCP, TLS).
    #[error("could not reach {host}: {source}")]
    Transport {
        /// The host we tried to reach.
        host: String,
        /// What failed (without the URL).
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what Graph or Entra send: not JSON, no `value` in a
    /// collection, a `nextLink` to another host, a body too large.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// A collection had more pages than the client follows.
    #[error("the collection has more than {limit} pages; narrow the query ($filter, $top)")]
    TooManyPages {
        /// The limit ([`GraphConfig::max_pages`](super::GraphConfig::max_pages)).
        limit: usize,
    },
    /// The caller asked for something the client will not send: a path that
    /// is not relative to the Graph base URL, a body that is not JSON.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The configuration cannot work (a URL that does not parse, plain HTTP
    /// to a remote host).
    #[error("invalid Graph configuration: {0}")]
    Config(String),
}

impl GraphError {
    /// The HTTP status of an [`Api`](GraphError::Api) or
    /// [`Token`](GraphError::Token) error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            GraphError::Api { status, .. } | GraphError::Token { status, .. } => Some(*status),
            GraphError::Throttled { last_status, .. } => Some(*last_status),
            _ => None,
        }
    }

    /// Graph's error code of an [`Api`](GraphError::Api) error.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The `request-id` of the answer this error came from, if there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GraphError::Api { request_id, .. } | GraphError::Throttled { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }
}

/// What Graph's error envelope says: `{"error": {"code", "message",
/// "innerError": {"request-id", "client-request-id", "date"}}}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
}

impl Envelope {
    /// Reads the envelope from a body; missing parts are `None`.
    pub fn parse(body: &[u8]) -> Envelope {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Envelope::default();
        };
        let error = &value["error"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        // Graph spells it `innerError`; older services `innererror`.
        let inner = match &error["innerError"] {
            Value::Null => &error["innererror"],
            inner => inner,
        };
        Envelope {
            code: text(&error["code"]),
            message: text(&error["message"]),
            request_id: text(&inner["request-id"]),
            client_request_id: text(&inner["client-request-id"]),
        }
    }

    /// The [`GraphError::Api`] for an answer with this envelope. The headers'
    /// ids win over the body's: they are there even when the body is not.
    pub fn into_error(
        self,
        status: StatusCode,
        body: &[u8],
        request_id: Option<String>,
        client_request_id: Option<String>,
    ) -> GraphError {
        let message = match self.message {
            Some(message) => message,
            None => String::from_utf8_lossy(body).trim().to_owned(),
        };
        GraphError::Api {
            status,
            code: self.code.unwrap_or_else(|| "UnknownError".to_owned()),
            message: truncate(&message),
            request_id: request_id.or(self.request_id),
            client_request_id: client_request_id.or(self.client_request_id),
        }
    }
}

/// The [`GraphError::Token`] for a refusal from the token endpoint:
/// `{"error", "error_description", "error_codes"}`; `None` when the body is
/// not an OAuth error.
pub(crate) fn token_error(status: StatusCode, body: &[u8]) -> Option<GraphError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?.as_str()?.to_owned();
    let description = value
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let error_codes = value
        .get("error_codes")
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    Some(GraphError::Token {
        status,
        error,
        error_codes,
        // Entra appends trace and correlation ids on new lines; one line is
        // enough for a log, the codes carry the meaning.
        description: truncate(description.lines().next().unwrap_or_default()),
    })
}

/// At most [`MAX_MESSAGE_CHARS`] characters.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_gives_code_message_and_ids() {
        let body = br#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist.",
            "innerError":{"date":"2021-04-20T17:22:30","request-id":"r-1","client-request-id":"c-1"}}}"#;
        let envelope = Envelope::parse(body);
        assert_eq!(
            envelope,
            Envelope {
                code: Some("Request_ResourceNotFound".into()),
                message: Some("Resource 'x' does not exist.".into()),
                request_id: Some("r-1".into()),
                client_request_id: Some("c-1".into()),
            }
        );
        let error = envelope.into_error(StatusCode::NOT_FOUND, body, None, Some("c-2".into()));
        assert!(matches!(
            &error,
            GraphError::Api { code, request_id: Some(r), client_request_id: Some(c), .. }
                if code == "Request_ResourceNotFound" && r == "r-1" && c == "c-2"
        ));
        assert_eq!(error.code(), Some("Request_ResourceNotFound"));
        assert_eq!(error.request_id(), Some("r-1"));
    }

    #[test]
    fn a_body_that_is_not_the_envelope_is_an_unknown_error_with_the_text() {
        let body = "<html>Bad gateway</html>".repeat(100);
        let error = Envelope::parse(body.as_bytes()).into_error(
            StatusCode::BAD_GATEWAY,
            body.as_bytes(),
            Some("r".into()),
            None,
        );
        let GraphError::Api { code, message, .. } = error else {
            panic!("{error:?}")
        };
        assert_eq!(code, "UnknownError");
        assert!(message.starts_with("<html>Bad gateway"));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn token_errors_keep_the_codes_and_the_first_line() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: t\r\nCorrelation ID: c","error_codes":[7000215],"trace_id":"t"}"#;
        let error = token_error(StatusCode::UNAUTHORIZED, body).unwrap();
        let GraphError::Token {
            error,
            error_codes,
            description,
            ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(error, "invalid_client");
        assert_eq!(error_codes, &[7000215]);
        assert_eq!(
            description,
            "AADSTS7000215: Invalid client secret provided."
        );
        assert!(token_error(StatusCode::BAD_GATEWAY, b"<html>").is_none());
    }
}
