//! The web chat: Latchkey's own chat page, the demo channel, and the JSON API
//! it talks to (which tests and scripts can use directly).
//!
//! It serves one tenant (`[web] tenant`). A person's identity is that
//! tenant's sign-in (OIDC authorization code with PKCE, validated by the
//! [`Verifier`](crate::verification::Verifier) through the
//! [`Engine`](crate::conversation::Engine)); nothing said in the chat
//! changes it. The page is labelled as a demo channel: in production people
//! reach Latchkey in Teams or Slack, where they are already signed in.
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | the page (plain HTML and JavaScript, no external resources) |
//! | `GET /auth/login` | starts a sign-in and redirects the browser to the tenant's authorize page |
//! | `GET /callback?code&state` | where the sign-in comes back: a sign-in sets the session cookie and redirects to `/`; an MFA step-up continues the conversation and redirects to `/#verified`. With `Accept: application/json`, answers `{"session", "me"}` or `{"verified": true}` instead of redirecting |
//! | `POST /api/session` | a sign-in for scripts: `{"authorize_url"}` (and the sign-in cookie the callback checks) |
//! | `GET /api/me` | the signed-in person: `{"tenant", "user", "channel", "display_name"}` |
//! | `POST /api/messages` `{"text"}` | says something; `{"events": [...]}`, the events it produced |
//! | `GET /api/events?after=N` | `{"events": [...]}`, the conversation's events with `seq > N` |
//! | `POST /api/requests/{id}` `{"approve": bool}` | answers an approval or a manager confirmation; `{"events": [...]}` |
//! | `POST /api/secrets/{id}` | `{"value"}`, a new password or Temporary Access Pass, once; then 404 |
//! | `POST /api/logout` | ends the session; 204 |
//!
//! Sessions: the `latchkey_session` cookie (`HttpOnly`, `SameSite=Strict`)
//! or `Authorization: Bearer <token>` with the same token, for scripts (the
//! callback's JSON answer hands it out). See [`session`].
//!
//! Cross-site requests: every `POST` must carry `Content-Type:
//! application/json` (a form on another site cannot send that without a
//! CORS preflight, which this API never grants), the session cookie is
//! `SameSite=Strict`, and a `POST` whose `Origin` is another site, or whose
//! `Sec-Fetch-Site` is `cross-site`, is refused. A sign-in only becomes a
//! session in the browser that started it: `/auth/login` and `/api/session`
//! set a short-lived `latchkey_login` cookie holding the sign-in's `state`,
//! and the callback compares them, so nobody can sign someone else's browser
//! in to their own account.
//!
//! Errors are JSON, `{"error": {"code", "message"}}`: 400 `bad_request`,
//! 401 `unauthorized`, 403 `forbidden`, 404 `not_found`, 405
//! `method_not_allowed`, 409 `conflict`, 413 `payload_too_large` (bodies
//! over [`MAX_BODY_BYTES`]), 415 `unsupported_media_type`, 429, 503, 500
//! `internal` (whose detail goes to the log only). Every answer carries a
//! `request-id` header. Nothing here is meant for beyond this machine
//! without TLS in front: the configuration refuses a non-loopback address
//! unless `allow_remote = true`.

mod error;
mod pages;
pub mod session;

#[cfg(feature = "sim")]
pub mod demo;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, LOCATION,
    SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tracing::Instrument as _;

use crate::conversation::{Callback, Engine, EngineError, Event, Speaker};
use crate::sdk::Channel;
use crate::service::Service;
use crate::tenant::TenantId;

pub use error::WebError;
use session::{SESSION_COOKIE, Sessions};

/// The largest request body accepted, in bytes: a chat message is far
/// smaller.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The cookie that ties a sign-in to the browser that started it.
pub const LOGIN_COOKIE: &str = "latchkey_login";
/// How long a started sign-in may take, in seconds (the verifier's own
/// limit on a pending sign-in is 10 minutes too).
pub const LOGIN_SECONDS: u64 = 600;
/// How often the engine's deadlines are swept while serving.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The web chat: the engine it talks to, the tenant it serves, and its
/// sessions. Share it as `Arc<WebChat>`.
pub struct WebChat {
    engine: Arc<Engine>,
    tenant: TenantId,
    sessions: Sessions,
    server_timing: bool,
}

impl std::fmt::Debug for WebChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebChat")
            .field("tenant", &self.tenant)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl WebChat {
    /// The web chat for `tenant`, over `engine`.
    pub fn new(engine: Arc<Engine>, tenant: TenantId) -> WebChat {
        WebChat {
            engine,
            tenant,
            sessions: Sessions::default(),
            server_timing: false,
        }
    }

    /// With `on`, every answer carries a `Server-Timing` header: `total`,
    /// the time the request took in the service, and `upstream`, the part
    /// of it spent waiting on Microsoft Graph and Entra
    /// ([`crate::upstream`]), both in milliseconds. `total - upstream` is
    /// Latchkey's own time; `latchkey loadtest` reads it.
    pub fn with_server_timing(mut self, on: bool) -> WebChat {
        self.server_timing = on;
        self
    }

    /// The web chat for `tenant` over `service`, with its own verifier and
    /// an engine with the default intent reader and settings: what
    /// `latchkey serve` (with a `[web]` table) and `latchkey demo` run.
    pub fn for_service(service: &Arc<Service>, tenant: TenantId) -> WebChat {
        WebChat::new(Arc::new(Engine::standard(service)), tenant)
    }

    /// The tenant it serves.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The conversation engine behind it.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The live sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Serves the page and the API on `listener` until `shutdown` completes,
    /// sweeping the engine's deadlines every [`SWEEP_EVERY`] meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let engine = Arc::clone(&self.engine);
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = engine.sweep().await {
                    tracing::warn!("web chat: sweeping expired conversations failed: {e}");
                }
            }
        });
        let served = axum::serve(listener, app(self))
            .with_graceful_shutdown(shutdown)
            .await;
        sweeper.abort();
        served
    }
}

/// The web chat's routes around `chat`. Tests call this without a socket.
pub fn app(chat: Arc<WebChat>) -> Router {
    let server_timing = chat.server_timing;
    let router = Router::new()
        .route("/", get(pages::index))
        .route("/chat.js", get(pages::script))
        .route("/chat.css", get(pages::style))
        .route("/auth/login", get(login))
        .route("/callback", get(callback))
        .route("/api/session", post(api_session))
        .route("/api/me", get(me))
        .route("/api/messages", post(messages))
        .route("/api/events", get(events))
        .route("/api/requests/{id}", post(answer))
        .route("/api/secrets/{id}", post(secret))
        .route("/api/logout", post(logout))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(chat)
        .layer(middleware::from_fn(same_site_posts))
        .layer(middleware::from_fn(limit_body))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_span));
    if server_timing {
        router.layer(middleware::from_fn(add_server_timing))
    } else {
        router
    }
}

async fn not_found() -> WebError {
    WebError::NotFound("no such page or API route; the API is documented in the README".to_owned())
}

async fn method_not_allowed() -> WebError {
    WebError::MethodNotAllowed
}

// ---------------------------------------------------------------------------
// Middleware

/// Times the request and says so in a `Server-Timing` header (see
/// [`WebChat::with_server_timing`]).
async fn add_server_timing(request: Request, next: Next) -> Response {
    let (mut response, timing) = crate::upstream::measure(next.run(request)).await;
    let value = server_timing_value(&timing);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// `total;dur=MS, upstream;dur=MS`, the W3C Server Timing syntax.
pub fn server_timing_value(timing: &crate::upstream::Timing) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "total;dur={:.3}, upstream;dur={:.3}",
        ms(timing.elapsed),
        ms(timing.upstream)
    )
}

/// Refuses a declared body over [`MAX_BODY_BYTES`] before anything reads it.
async fn limit_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => WebError::PayloadTooLarge.into_response(),
        _ => next.run(request).await,
    }
}

/// Refuses a `POST` that a browser says comes from another site.
async fn same_site_posts(request: Request, next: Next) -> Response {
    if request.method() == Method::POST
        && let Some(why) = cross_site(request.headers())
    {
        return WebError::Forbidden(why.to_owned()).into_response();
    }
    next.run(request).await
}

fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Some("cross-site requests are refused");
    }
    let origin = headers
        .get("origin")
        .map(|v| v.to_str().unwrap_or("null"))?;
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => None,
        _ => Some("requests from another origin are refused"),
    }
}

/// A span per request with a fresh request id, sent back in `request-id`;
/// a failure is logged here, once.
async fn request_span(request: Request, next: Next) -> Response {
    let request_id = crate::ids::random_bytes::<8>()
        .map(hex::encode)
        .unwrap_or_else(|_| "unavailable".to_owned());
    let span = tracing::info_span!(
        "web",
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
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert("request-id", value);
        }
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        // The callback's URL holds an authorization code: never pass it on.
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        response
    }
    .instrument(span)
    .await
}

// ---------------------------------------------------------------------------
// Requests: sessions, cookies, JSON bodies

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The session token: `Authorization: Bearer` first, else the cookie.
fn session_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    bearer.or_else(|| cookie(headers, SESSION_COOKIE))
}

/// The signed-in person, or 401.
fn speaker(chat: &WebChat, headers: &HeaderMap) -> Result<Speaker, WebError> {
    let token = session_token(headers).ok_or(WebError::Unauthorized)?;
    chat.sessions.speaker(token).ok_or(WebError::Unauthorized)
}

/// A JSON body: `Content-Type: application/json` required, an empty body
/// read as `{}`, unknown fields refused by `T`.
fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, WebError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(WebError::NotJson);
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::PayloadTooLarge
        } else {
            WebError::BadRequest(format!("cannot read the body: {e}"))
        }
    })?;
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(text)
        .map_err(|e| WebError::BadRequest(format!("the body is not the JSON expected: {e}")))
}

/// A body with no fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// Whether the client asked for JSON rather than a page.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains("text/html"))
}

/// JSON, never cached.
fn fresh(body: impl serde::Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn events_json(events: Vec<Event>) -> Response {
    fresh(json!({ "events": events }))
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `state` parameter of an authorize URL.
fn state_of(authorize_url: &str) -> Result<String, WebError> {
    reqwest::Url::parse(authorize_url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            WebError::Internal(format!(
                "the sign-in URL has no state parameter: {authorize_url}"
            ))
        })
}

fn login_cookie(state: &str) -> String {
    // Lax, not Strict: the callback is a top-level redirect from the
    // tenant's sign-in page, another site in production.
    format!(
        "{LOGIN_COOKIE}={state}; Path=/callback; Max-Age={LOGIN_SECONDS}; HttpOnly; SameSite=Lax"
    )
}

fn session_cookie(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        session::MAX_LIFETIME.as_secs()
    )
}

fn expired_cookie(name: &str, path: &str) -> String {
    format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict")
}

// ---------------------------------------------------------------------------
// Handlers

/// Starts a sign-in to the web tenant: the authorize URL, and the cookie
/// that binds it to this browser.
async fn begin_sign_in(chat: &WebChat) -> Result<(String, String), WebError> {
    let url = chat
        .engine
        .begin_sign_in(&chat.tenant, Channel::Web)
        .await
        .map_err(WebError::from)?;
    let state = state_of(&url)?;
    Ok((url, login_cookie(&state)))
}

/// `GET /auth/login`.
async fn login(State(chat): State<Arc<WebChat>>) -> Response {
    match begin_sign_in(&chat).await {
        Ok((url, cookie)) => {
            let mut response = see_other(&url);
            set_cookie(&mut response, &cookie);
            response
        }
        Err(e) => pages::failure(&e),
    }
}

/// `POST /api/session`.
async fn api_session(
    State(chat): State<Arc<WebChat>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let NoFields {} = json_body(&headers, body)?;
    let (url, cookie) = begin_sign_in(&chat).await?;
    let mut response = fresh(json!({ "authorize_url": url }));
    set_cookie(&mut response, &cookie);
    Ok(response)
}

/// What the authorize endpoint sends back.
#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /callback`.
async fn callback(
    State(chat): State<Arc<WebChat>>,
    headers: HeaderMap,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let json = wants_json(&headers);
    let fail = |e: WebError| {
        if json {
            e.into_response()
        } else {
            pages::failure(&e)
        }
    };
    let Ok(Query(params)) = params else {
        return fail(WebError::BadRequest(
            "the sign-in came back malformed; start again from the chat".to_owned(),
        ));
    };
    if let Some(error) = params.error {
        let description = params.error_description.unwrap_or_default();
        // Entra's descriptions start with the AADSTS code; keep the first line.
        let first = description.lines().next().unwrap_or_default();
        return fail(WebError::Forbidden(format!(
            "the sign-in did not complete ({error}): {first}"
        )));
    }
    let (Some(code), Some(state)) = (params.code, params.state) else {
        return fail(WebError::BadRequest(
            "the sign-in came back without code and state; start again from the chat".to_owned(),
        ));
    };
    let completed = match chat.engine.oidc_callback(&state, &code).await {
        Ok(completed) => completed,
        Err(e) => return fail(WebError::from(e)),
    };
    match completed {
        Callback::SignedIn(speaker) => {
            let started_here = cookie(&headers, LOGIN_COOKIE)
                .is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
            if !started_here {
                return fail(WebError::Forbidden(
                    "this sign-in was not started in this browser; sign in again from the chat"
                        .to_owned(),
                ));
            }
            if speaker.tenant != chat.tenant {
                return fail(WebError::Forbidden(format!(
                    "this chat serves tenant {}, not {}",
                    chat.tenant, speaker.tenant
                )));
            }
            let token = match chat.sessions.create(speaker.clone()) {
                Ok(token) => token,
                Err(e) => return fail(WebError::Internal(e.to_string())),
            };
            tracing::info!(user = %speaker.user, "web chat: signed in");
            let mut response = if json {
                fresh(json!({ "session": token.expose(), "me": speaker }))
            } else {
                see_other("/")
            };
            set_cookie(&mut response, &session_cookie(token.expose()));
            set_cookie(&mut response, &expired_cookie(LOGIN_COOKIE, "/callback"));
            response
        }
        Callback::SteppedUp(speaker) => {
            tracing::info!(user = %speaker.user, "web chat: step-up verified");
            if json {
                fresh(json!({ "verified": true, "user": speaker.user }))
            } else {
                see_other("/#verified")
            }
        }
    }
}

/// `GET /api/me`.
async fn me(State(chat): State<Arc<WebChat>>, headers: HeaderMap) -> Result<Response, WebError> {
    Ok(fresh(speaker(&chat, &headers)?))
}

/// `POST /api/messages` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    text: String,
}

/// `POST /api/messages`.
async fn messages(
    State(chat): State<Arc<WebChat>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let who = speaker(&chat, &headers)?;
    let Message { text } = json_body(&headers, body)?;
    let events = chat.engine.post(&who, &text).await?;
    Ok(events_json(events))
}

/// `GET /api/events` query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct After {
    #[serde(default)]
    after: u64,
}

/// `GET /api/events`.
async fn events(
    State(chat): State<Arc<WebChat>>,
    headers: HeaderMap,
    query: Result<Query<After>, QueryRejection>,
) -> Result<Response, WebError> {
    let who = speaker(&chat, &headers)?;
    let Query(After { after }) = query.map_err(|_| {
        WebError::BadRequest("after is the last event's seq, a whole number".to_owned())
    })?;
    let events = chat.engine.events(&who, after).await?;
    Ok(events_json(events))
}

/// `POST /api/requests/{id}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    approve: bool,
}

/// `POST /api/requests/{id}`.
async fn answer(
    State(chat): State<Arc<WebChat>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let who = speaker(&chat, &headers)?;
    let Answer { approve } = json_body(&headers, body)?;
    let events = chat.engine.answer(&who, &id, approve).await?;
    Ok(events_json(events))
}

/// `POST /api/secrets/{id}`.
async fn secret(
    State(chat): State<Arc<WebChat>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let who = speaker(&chat, &headers)?;
    let NoFields {} = json_body(&headers, body)?;
    let value = chat.engine.take_secret(&who, &id).ok_or_else(|| {
        WebError::NotFound(
            "no such secret, or it was already shown: a secret is shown once".to_owned(),
        )
    })?;
    Ok(fresh(json!({ "value": value.expose() })))
}

/// `POST /api/logout`.
async fn logout(
    State(chat): State<Arc<WebChat>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WebError> {
    let NoFields {} = json_body(&headers, body)?;
    if let Some(token) = session_token(&headers) {
        chat.sessions.remove(token);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &expired_cookie(SESSION_COOKIE, "/"));
    Ok(response)
}

impl From<EngineError> for WebError {
    fn from(e: EngineError) -> WebError {
        use crate::verification::VerificationError as V;
        let message = e.to_string();
        match e {
            EngineError::UnknownState => WebError::BadRequest(message),
            EngineError::Verification(
                V::Authority { .. } | V::Graph(_) | V::Store(_) | V::Random(_),
            ) => WebError::Unavailable(message),
            EngineError::Verification(
                V::UnknownState | V::StateUsed | V::Expired | V::InvalidInput(_),
            ) => WebError::BadRequest(message),
            EngineError::Verification(V::RateLimited { .. }) => WebError::TooManyRequests(message),
            EngineError::Verification(_) | EngineError::NotApprover(_) => {
                WebError::Forbidden(message)
            }
            EngineError::UnknownRequest(_) => WebError::NotFound(message),
            EngineError::RequestClosed(_) => WebError::Conflict(message),
            EngineError::UnknownTenant(_)
            | EngineError::SignInUnavailable { .. }
            | EngineError::Approval(_) => WebError::Unavailable(message),
            _ => WebError::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = headers(&[
            ("cookie", "a=1; latchkey_session_x=no; latchkey_session=tok"),
            ("cookie", "latchkey_login=st"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("st"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(
            cookie(&headers(&[("cookie", "latchkey_session=")]), SESSION_COOKIE),
            None
        );
    }

    #[test]
    fn a_bearer_token_wins_over_the_cookie() {
        let h = headers(&[
            ("authorization", "bearer abc"),
            ("cookie", "latchkey_session=tok"),
        ]);
        assert_eq!(session_token(&h), Some("abc"));
        let h = headers(&[
            ("authorization", "Basic abc"),
            ("cookie", "latchkey_session=tok"),
        ]);
        assert_eq!(session_token(&h), Some("tok"));
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-origin")])).is_none());
        assert!(
            cross_site(&HeaderMap::new()).is_none(),
            "scripts send neither"
        );
        let same = headers(&[
            ("origin", "http://127.0.0.1:7700"),
            ("host", "127.0.0.1:7700"),
        ]);
        assert!(cross_site(&same).is_none());
        let other = headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:7700"),
        ]);
        assert!(cross_site(&other).is_some());
        let null = headers(&[("origin", "null"), ("host", "127.0.0.1:7700")]);
        assert!(cross_site(&null).is_some());
    }

    #[test]
    fn json_bodies_need_the_content_type_and_the_shape() {
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        let ok: Message = json_body(&json, Ok(Bytes::from_static(br#"{"text":"hi"}"#))).unwrap();
        assert_eq!(ok.text, "hi");
        let NoFields {} = json_body(&json, Ok(Bytes::new())).unwrap();
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert!(matches!(
            json_body::<Message>(&form, Ok(Bytes::from_static(br#"{"text":"hi"}"#))),
            Err(WebError::NotJson)
        ));
        assert!(matches!(
            json_body::<Message>(&HeaderMap::new(), Ok(Bytes::new())),
            Err(WebError::NotJson)
        ));
        for bad in [
            &br#"{"text":1}"#[..],
            br#"{"text":"a","user":"x"}"#,
            b"not json",
        ] {
            assert!(matches!(
                json_body::<Message>(&json, Ok(Bytes::copy_from_slice(bad))),
                Err(WebError::BadRequest(_))
            ));
        }
    }

    #[test]
    fn the_state_is_read_from_the_authorize_url() {
        assert_eq!(
            state_of(
                "http://127.0.0.1:7710/t/oauth2/v2.0/authorize?client_id=c&state=abc%2Bd&nonce=n"
            )
            .unwrap(),
            "abc+d"
        );
        assert!(state_of("http://127.0.0.1:7710/authorize?client_id=c").is_err());
        assert!(state_of("not a url").is_err());
    }

    #[test]
    fn cookies_are_http_only_and_same_site() {
        let session = session_cookie("tok");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
        let login = login_cookie("st");
        assert!(login.contains("HttpOnly") && login.contains("SameSite=Lax"));
        assert!(login.contains("Path=/callback"));
    }
}
