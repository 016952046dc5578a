//! The page and its two static files, compiled into the binary, and the
//! small HTML answer the browser gets when a sign-in cannot complete.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::WebError;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/chat.js");
const STYLE: &str = include_str!("page/chat.css");

/// Only our own script, style and API; no framing, no inline script, no
/// forms posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

fn asset(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Small, and changed with every release: always revalidate.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`.
pub(super) async fn index() -> Response {
    asset(StatusCode::OK, "text/html; charset=utf-8", INDEX.to_owned())
}

/// `GET /chat.js`.
pub(super) async fn script() -> Response {
    asset(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        SCRIPT.to_owned(),
    )
}

/// `GET /chat.css`.
pub(super) async fn style() -> Response {
    asset(StatusCode::OK, "text/css; charset=utf-8", STYLE.to_owned())
}

/// A page saying why a sign-in did not complete, with a way back.
pub(super) fn failure(error: &WebError) -> Response {
    let (status, code) = error.status_and_code();
    let message = match error {
        WebError::Internal(_) => "Something went wrong on our side. Try again, and tell your IT service desk if it persists.".to_owned(),
        other => capitalise(&other.to_string()),
    };
    if status.is_server_error() {
        tracing::error!(code, "{error}");
    } else {
        tracing::info!(code, "{error}");
    }
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Latchkey: sign-in not completed</title><link rel="stylesheet" href="/chat.css"></head>
<body><header><span class="brand">Latchkey</span><span class="demo-label">Demo channel</span></header>
<main><h1>That did not work</h1><p id="failure">{}</p><p><a class="button" href="/">Back to the chat</a></p></main></body></html>"#,
        escape(&message)
    );
    asset(status, "text/html; charset=utf-8", body)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// HTML-escapes text for element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_labelled_a_demo_channel_and_loads_nothing_from_elsewhere() {
        assert!(INDEX.contains(">Demo channel<"));
        for text in [INDEX, SCRIPT, STYLE] {
            assert!(!text.contains("https://"), "no external resources");
            assert!(!text.contains("http://"), "no external resources");
        }
        assert!(!INDEX.contains("<script>"), "no inline script (CSP)");
        assert!(!SCRIPT.contains("innerHTML"), "text only, never markup");
    }

    #[tokio::test]
    async fn failures_escape_what_they_show_and_hide_internal_detail() {
        let response = failure(&WebError::Forbidden("<script>x</script>".to_owned()));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("&lt;script&gt;x&lt;/script&gt;"), "{body}");
        assert!(!body.contains("<script>"), "{body}");

        let internal = failure(&WebError::Internal("database at /var/lib/x".to_owned()));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(internal.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("/var/lib/x"));
    }
}
