//! The Microsoft Graph client: how the investigator reads and the executor
//! writes, with an app-only token, over `reqwest`.
//!
//! * Tokens: OAuth 2.0 client credentials from
//!   `{authority}/{tenant}/oauth2/v2.0/token`, cached until shortly before
//!   they expire, fetched by one request at a time, and fetched again once
//!   when Graph answers 401 `InvalidAuthenticationToken` (`graph/token.rs`).
//! * Requests: paths relative to [`GraphConfig::graph_base_url`]
//!   ([`GraphClient::get`], [`GraphClient::patch`], [`GraphClient::post`],
//!   [`GraphClient::delete`], or any [`GraphRequest`] with
//!   [`GraphClient::send`]); collections are followed through
//!   `@odata.nextLink` by [`GraphClient::get_all`]; GETs that depend on
//!   nothing go to Graph together, in JSON batches of up to 20, through
//!   [`GraphClient::get_batch`] (`graph/batch.rs`). Every answer carries
//!   Graph's `request-id` ([`GraphResponse::request_id`]), which the audit
//!   log records.
//! * Retries: see [`GraphRequest::idempotent`] for what is repeated when, and
//!   `graph/retry.rs` for how long to wait (`Retry-After`, else
//!   exponential backoff with full jitter).
//! * Errors: [`GraphError`], one variant per kind of failure, parsed from
//!   Graph's error envelope and Entra's OAuth errors.
//!
//! The client knows nothing about the emulator (`latchkey sim`): tests point
//! it at the emulator's base URLs exactly as production points it at
//! Microsoft's.

mod batch;
mod error;
mod retry;
mod secret;
mod token;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument as _;

use crate::tenant::TenantId;

pub use batch::MAX_BATCH;
pub use error::GraphError;
pub use secret::Secret;

use error::Envelope;
use token::Tokens;

/// Default [`GraphConfig::authority`]: Entra ID's global cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Default [`GraphConfig::graph_base_url`]: Graph v1.0 in the global cloud
/// (never `beta` by default: its shapes change without notice).
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
/// Default [`GraphConfig::scope`]: every application permission the app has
/// been granted on Graph, which is the only scope client credentials allow.
pub const DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Default [`GraphConfig::timeout`]: 10 s per attempt. Graph answers reads in
/// well under a second; a request still open after 10 s is stuck, and a
/// chat user is waiting.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`GraphConfig::max_retries`]: 4 retries (5 attempts), which with
/// the default waits rides out a throttling burst of about a minute.
pub const DEFAULT_MAX_RETRIES: u32 = 4;
/// Default [`GraphConfig::max_retry_wait`]: 30 s. A longer `Retry-After` is
/// cut to this; a user in a chat will not wait much longer than that anyway.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// Default [`GraphConfig::retry_base_wait`]: 1 s, the ceiling of the first
/// backoff when Graph sends no `Retry-After` (then 2 s, 4 s, ...).
pub const DEFAULT_RETRY_BASE_WAIT: Duration = Duration::from_secs(1);
/// Default [`GraphConfig::max_pages`]: 100. An investigation reads one
/// user's data; a collection that needs more pages than this is a query that
/// should have had a `$filter`, and following it would only be slow.
pub const DEFAULT_MAX_PAGES: usize = 100;

/// The largest answer read (16 MiB): far above any Graph page, low enough
/// that a misbehaving server cannot exhaust memory.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Where Graph is and how to call it. [`GraphConfig::new`] fills in the
/// defaults; each is documented on its constant.
#[derive(Clone, Debug)]
pub struct GraphConfig {
    /// The Entra authority, without the tenant: tokens come from
    /// `{authority}/{tenant_id}/oauth2/v2.0/token`. Default
    /// [`DEFAULT_AUTHORITY`].
    pub authority: String,
    /// Graph's base URL, including the version; request paths are appended
    /// to it. Default [`DEFAULT_GRAPH_BASE_URL`].
    pub graph_base_url: String,
    /// The customer tenant.
    pub tenant_id: TenantId,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// The app registration's client secret.
    pub client_secret: Secret,
    /// The token scope. Default [`DEFAULT_SCOPE`]; national clouds use their
    /// own Graph host here.
    pub scope: String,
    /// How long one attempt may take, answer included. Default
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// How many times a request is retried. Default [`DEFAULT_MAX_RETRIES`].
    pub max_retries: u32,
    /// The longest wait between attempts, whatever `Retry-After` says.
    /// Default [`DEFAULT_MAX_RETRY_WAIT`].
    pub max_retry_wait: Duration,
    /// The ceiling of the first backoff without `Retry-After`; it doubles
    /// with each retry. Default [`DEFAULT_RETRY_BASE_WAIT`].
    pub retry_base_wait: Duration,
    /// How many pages [`GraphClient::get_all`] follows before it gives up.
    /// Default [`DEFAULT_MAX_PAGES`].
    pub max_pages: usize,
}

impl GraphConfig {
    /// The configuration for one app registration in `tenant_id`, with every
    /// other setting at its default.
    pub fn new(tenant_id: TenantId, client_id: impl Into<String>, client_secret: Secret) -> Self {
        GraphConfig {
            authority: DEFAULT_AUTHORITY.to_owned(),
            graph_base_url: DEFAULT_GRAPH_BASE_URL.to_owned(),
            tenant_id,
            client_id: client_id.into(),
            client_secret,
            scope: DEFAULT_SCOPE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            retry_base_wait: DEFAULT_RETRY_BASE_WAIT,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }
}

/// App-only tokens (OAuth 2.0 client credentials) for a resource other
/// than Graph, such as the Bot Connector, cached and retried exactly as
/// Graph's are.
pub(crate) struct ClientCredentials {
    tokens: Tokens,
    settings: Settings,
}

impl ClientCredentials {
    /// Tokens for `scope` from the token endpoint of `tenant` at
    /// `authority`, as `client_id` with `secret`, with the default timing.
    pub(crate) fn new(
        authority: &str,
        tenant: &str,
        client_id: &str,
        secret: Secret,
        scope: &str,
    ) -> Result<ClientCredentials, GraphError> {
        let authority = base_url("authority", authority)?;
        let token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.as_str().trim_end_matches('/'),
            encode_path_segment(tenant)
        );
        let token_url = Url::parse(&token_url)
            .map_err(|e| GraphError::Config(format!("token endpoint {token_url:?}: {e}")))?;
        Ok(ClientCredentials {
            tokens: Tokens::new(token_url, client_id.to_owned(), secret, scope.to_owned()),
            settings: Settings {
                timeout: DEFAULT_TIMEOUT,
                max_retries: DEFAULT_MAX_RETRIES,
                max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
                retry_base_wait: DEFAULT_RETRY_BASE_WAIT,
            },
        })
    }

    /// A token: the cached one while fresh, else a new one.
    pub(crate) async fn get(&self, http: &reqwest::Client) -> Result<Secret, GraphError> {
        self.tokens.get(http, &self.settings).await
    }

    /// Forgets `used` after the resource refused it.
    pub(crate) async fn invalidate(&self, used: &Secret) {
        self.tokens.invalidate(used).await;
    }

    /// The per-attempt timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.settings.timeout
    }
}

/// The timing settings every attempt needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    timeout: Duration,
    max_retries: u32,
    max_retry_wait: Duration,
    retry_base_wait: Duration,
}

/// A Graph answer: the body (`null` for `204 No Content`) and the ids that
/// tie it to Graph's own logs.
#[derive(Clone, Debug)]
pub struct GraphResponse<T> {
    /// The HTTP status (200, 201, 202, 204).
    pub status: StatusCode,
    /// Graph's `request-id` header: what Microsoft support and Graph's
    /// directory audit know this request by.
    pub request_id: Option<String>,
    /// The `client-request-id` Graph echoed (the one this client sent).
    pub client_request_id: Option<String>,
    /// The `Location` header (`202 Accepted` operations point to their
    /// status with it).
    pub location: Option<String>,
    /// The body.
    pub body: T,
}

/// Every item of a collection, from all its pages.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphPages {
    /// The items, in the order Graph returned them.
    pub items: Vec<Value>,
    /// Each page's `request-id`, in order.
    pub request_ids: Vec<String>,
    /// How many pages were read.
    pub pages: usize,
}

/// One Graph request, for [`GraphClient::send`].
#[derive(Clone, Debug)]
pub struct GraphRequest {
    method: Method,
    path: String,
    body: Option<Value>,
    idempotent: bool,
}

impl GraphRequest {
    /// `GET path_and_query`; safe to repeat.
    pub fn get(path_and_query: impl Into<String>) -> Self {
        GraphRequest::new(Method::GET, path_and_query, None).idempotent()
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(path: impl Into<String>, body: Value) -> Self {
        GraphRequest::new(Method::PATCH, path, Some(body))
    }

    /// `POST path` with a JSON body.
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        GraphRequest::new(Method::POST, path, Some(body))
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> Self {
        GraphRequest::new(Method::DELETE, path, None)
    }

    fn new(method: Method, path: impl Into<String>, body: Option<Value>) -> Self {
        GraphRequest {
            method,
            path: path.into(),
            body,
            idempotent: false,
        }
    }

    /// Marks the request as safe to send twice.
    ///
    /// Every request is retried on `429 Too Many Requests`: Graph throttles
    /// before it acts, so a throttled write did not happen. Only idempotent
    /// requests are also retried on 503, 504, a timeout or a broken
    /// connection, because then the write may well have happened and only
    /// the answer was lost: repeating a Temporary Access Pass creation would
    /// issue a second pass (replacing the one the user was just shown), and
    /// repeating a password reset would reset again. GETs are idempotent;
    /// writes are not unless the caller says so here (the executor will make
    /// its writes idempotent with its own keys before it does).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// A Graph client for one app registration in one tenant. Cheap to clone;
/// clones share the connection pool and the token.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The base URL without a trailing slash.
    graph_base: String,
    graph_base_url: Url,
    settings: Settings,
    max_pages: usize,
    tokens: Tokens,
    /// HTTP exchanges with Graph, every attempt counted.
    exchanges: AtomicU64,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph_base_url", &self.inner.graph_base)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client for `config`. Fails when a URL does not parse, when a URL
    /// is plain `http` to anything but this machine (the secret and tokens
    /// would cross the network in clear), or when a setting cannot work.
    pub fn new(config: GraphConfig) -> Result<GraphClient, GraphError> {
        let authority = base_url("authority", &config.authority)?;
        let graph_base = base_url("graph_base_url", &config.graph_base_url)?;
        if config.client_id.trim().is_empty() {
            return Err(GraphError::Config("client_id is empty".to_owned()));
        }
        if config.client_secret.is_empty() {
            return Err(GraphError::Config("client_secret is empty".to_owned()));
        }
        if config.timeout.is_zero() {
            return Err(GraphError::Config("timeout must be above zero".to_owned()));
        }
        if config.max_pages == 0 {
            return Err(GraphError::Config(
                "max_pages must be at least 1".to_owned(),
            ));
        }
        let token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.as_str().trim_end_matches('/'),
            config.tenant_id
        );
        let token_url = Url::parse(&token_url)
            .map_err(|e| GraphError::Config(format!("token endpoint {token_url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            // Graph does not redirect the calls we make; following a redirect
            // could only take the request somewhere we did not decide to send it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GraphError::Config(format!("HTTP client: {e}")))?;
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                graph_base: graph_base.as_str().trim_end_matches('/').to_owned(),
                graph_base_url: graph_base,
                settings: Settings {
                    timeout: config.timeout,
                    max_retries: config.max_retries,
                    max_retry_wait: config.max_retry_wait,
                    retry_base_wait: config.retry_base_wait,
                },
                max_pages: config.max_pages,
                exchanges: AtomicU64::new(0),
                tokens: Tokens::new(
                    token_url,
                    config.client_id,
                    config.client_secret,
                    config.scope,
                ),
            }),
        })
    }

    /// The path of a user, by object id or UPN: `/users/{segment}`, with the
    /// segment percent-encoded (`adele@contoso.com` becomes
    /// `adele%40contoso.com`, a guest's `#EXT#` becomes `%23EXT%23`). A UPN
    /// that starts with `$` would read as a system query option, so it is
    /// addressed as `/users('$...')`, as Graph documents.
    pub fn user_path(id_or_upn: &str) -> String {
        if id_or_upn.starts_with('$') {
            let quoted = id_or_upn.replace('\'', "''");
            format!("/users('{}')", encode_path_segment(&quoted))
        } else {
            format!("/users/{}", encode_path_segment(id_or_upn))
        }
    }

    /// How many tokens this client (and its clones) has fetched from the
    /// token endpoint: one per token lifetime, plus one per token Graph
    /// refused. For metrics and tests.
    pub fn token_fetches(&self) -> u64 {
        self.inner.tokens.fetches()
    }

    /// How many HTTP exchanges with Graph this client (and its clones) has
    /// had, each attempt counted and a JSON batch counted once; token
    /// fetches are [`GraphClient::token_fetches`].
    pub fn exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
    }

    /// `GET path_and_query` (relative to the base URL, starting with `/`);
    /// retried as any idempotent request.
    pub async fn get(&self, path_and_query: &str) -> Result<GraphResponse<Value>, GraphError> {
        self.send(GraphRequest::get(path_and_query)).await
    }

    /// Every item of the collection at `path_and_query`, following
    /// `@odata.nextLink` verbatim (it is opaque) for at most
    /// [`GraphConfig::max_pages`] pages. A next link to any other origin
    /// than the base URL's is refused rather than sent the token.
    pub async fn get_all(&self, path_and_query: &str) -> Result<GraphPages, GraphError> {
        let first = self.get(path_and_query).await?;
        self.all_pages(first).await
    }

    /// Every item of the collection whose first page is `first` (read alone
    /// or in a batch, [`GraphClient::get_batch`]), following
    /// `@odata.nextLink` as [`GraphClient::get_all`] does.
    pub async fn all_pages(&self, first: GraphResponse<Value>) -> Result<GraphPages, GraphError> {
        let mut collected = GraphPages {
            items: Vec::new(),
            request_ids: Vec::new(),
            pages: 0,
        };
        let mut page = first;
        loop {
            collected.pages += 1;
            collected.request_ids.extend(page.request_id);
            let Value::Object(mut body) = page.body else {
                return Err(GraphError::InvalidResponse(
                    "a collection page is not a JSON object".to_owned(),
                ));
            };
            let Some(Value::Array(items)) = body.remove("value") else {
                return Err(GraphError::InvalidResponse(
                    "a collection page has no \"value\" array".to_owned(),
                ));
            };
            collected.items.extend(items);
            let url = match body.remove("@odata.nextLink") {
                None | Some(Value::Null) => return Ok(collected),
                Some(Value::String(next)) => self.next_link(&next)?,
                Some(_) => {
                    return Err(GraphError::InvalidResponse(
                        "@odata.nextLink is not a string".to_owned(),
                    ));
                }
            };
            if collected.pages >= self.inner.max_pages {
                return Err(GraphError::TooManyPages {
                    limit: self.inner.max_pages,
                });
            }
            page = self.execute(Method::GET, url, None, true).await?;
        }
    }

    /// `PATCH path` with a JSON body (Graph answers 204 with no body).
    /// Retried only on 429; see [`GraphRequest::idempotent`].
    pub async fn patch(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<GraphResponse<Value>, GraphError> {
        self.send(GraphRequest::patch(path, body.clone())).await
    }

    /// `POST path` with a JSON body. Retried only on 429; see
    /// [`GraphRequest::idempotent`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<GraphResponse<Value>, GraphError> {
        self.send(GraphRequest::post(path, body.clone())).await
    }

    /// `POST path` with a JSON body, for an action the caller knows is safe
    /// to repeat (revoking sessions, sending the same mail with its own
    /// dedupe key): retried as a GET is.
    pub async fn post_idempotent(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<GraphResponse<Value>, GraphError> {
        self.send(GraphRequest::post(path, body.clone()).idempotent())
            .await
    }

    /// `DELETE path`. Retried only on 429; see [`GraphRequest::idempotent`].
    pub async fn delete(&self, path: &str) -> Result<GraphResponse<Value>, GraphError> {
        self.send(GraphRequest::delete(path)).await
    }

    /// Sends `request`.
    pub async fn send(&self, request: GraphRequest) -> Result<GraphResponse<Value>, GraphError> {
        let url = self.url(&request.path)?;
        self.execute(
            request.method,
            url,
            request.body.as_ref(),
            request.idempotent,
        )
        .await
    }

    /// The absolute URL of `path_and_query`, which must be relative to the
    /// base URL and stay under it (a caller cannot send the token elsewhere).
    fn url(&self, path_and_query: &str) -> Result<Url, GraphError> {
        let invalid = |why: &str| {
            GraphError::InvalidRequest(format!(
                "{path_and_query:?}: {why}; give a path relative to the Graph base URL, like /users/{{id}}"
            ))
        };
        if !path_and_query.starts_with('/') || path_and_query.starts_with("//") {
            return Err(invalid("not a path starting with one /"));
        }
        let url = Url::parse(&format!("{}{path_and_query}", self.inner.graph_base))
            .map_err(|e| invalid(&e.to_string()))?;
        let base_path = self.inner.graph_base_url.path().trim_end_matches('/');
        let under_base = url
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'));
        if !same_origin(&url, &self.inner.graph_base_url) || !under_base {
            return Err(invalid("it leaves the Graph base URL"));
        }
        Ok(url)
    }

    /// A next link, checked to stay on Graph's origin.
    fn next_link(&self, next: &str) -> Result<Url, GraphError> {
        let url = Url::parse(next).map_err(|e| {
            GraphError::InvalidResponse(format!("@odata.nextLink is not an absolute URL: {e}"))
        })?;
        if !same_origin(&url, &self.inner.graph_base_url) {
            return Err(GraphError::InvalidResponse(format!(
                "@odata.nextLink points to {}, not to Graph; not following it",
                host_of(&url)
            )));
        }
        Ok(url)
    }

    /// Sends one request, with its retries and at most one token refresh;
    /// a successful answer's body is read as a `T` (`null` when empty).
    async fn execute<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<GraphResponse<T>, GraphError> {
        let inner = &self.inner;
        // One id for every attempt, so that Graph's logs tie them together;
        // none if the OS has no randomness to give (Graph then uses its own).
        let client_request_id = crate::ids::random_uuid_v4().ok();
        let mut attempt = Attempt {
            method: &method,
            idempotent,
            retries: 0,
            attempts: 0,
            refreshed: false,
            settings: &inner.settings,
            host: host_of(&url),
        };
        loop {
            attempt.attempts += 1;
            let span = tracing::info_span!(
                "graph_request",
                method = %method,
                path = %url.path(),
                attempt = attempt.attempts,
                client_request_id = client_request_id.as_deref().unwrap_or_default(),
                status = tracing::field::Empty,
                request_id = tracing::field::Empty,
            );
            let step = async {
                let token = inner.tokens.get(&inner.http, &inner.settings).await?;
                inner.exchanges.fetch_add(1, Ordering::Relaxed);
                let mut request = inner
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(token.expose())
                    .header(ACCEPT, "application/json")
                    .timeout(inner.settings.timeout);
                if let Some(id) = &client_request_id {
                    request = request.header("client-request-id", id);
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                let outcome = exchange(request).await;
                Ok::<_, GraphError>((attempt.decide(outcome), token))
            }
            .instrument(span.clone())
            .await;
            match step? {
                (Step::Done(result), _) => return result,
                (Step::Refresh, token) => {
                    attempt.refreshed = true;
                    inner.tokens.invalidate(&token).await;
                }
                (Step::Retry(wait), _) => {
                    attempt.retries += 1;
                    // Graph asked for the pause: its time, not ours.
                    crate::upstream::waiting(tokio::time::sleep(wait))
                        .instrument(span)
                        .await;
                }
            }
        }
    }
}

/// Where one logical request stands across its attempts.
struct Attempt<'a> {
    method: &'a Method,
    idempotent: bool,
    retries: u32,
    attempts: u32,
    refreshed: bool,
    settings: &'a Settings,
    host: String,
}

/// What to do after an attempt.
enum Step<T> {
    Done(Result<GraphResponse<T>, GraphError>),
    /// Graph refused the token: forget it and try again with a new one.
    Refresh,
    /// Wait this long, then try again.
    Retry(Duration),
}

impl Attempt<'_> {
    /// Runs inside the attempt's span, which it completes.
    fn decide<T: DeserializeOwned>(&self, outcome: Result<Answer, Failure>) -> Step<T> {
        let can_retry = self.retries < self.settings.max_retries;
        let backoff = || {
            retry::wait(
                None,
                self.retries,
                self.settings.retry_base_wait,
                self.settings.max_retry_wait,
            )
        };
        let answer = match outcome {
            Ok(answer) => answer,
            Err(Failure::Timeout) if self.idempotent && can_retry => {
                let wait = backoff();
                tracing::warn!(?wait, "Graph did not answer in time; retrying");
                return Step::Retry(wait);
            }
            Err(Failure::Transport(e)) if self.idempotent && can_retry => {
                let wait = backoff();
                tracing::warn!(?wait, error = %e.without_url(), "could not reach Graph; retrying");
                return Step::Retry(wait);
            }
            Err(Failure::Timeout) => {
                tracing::warn!("Graph did not answer in time");
                return Step::Done(Err(GraphError::Timeout {
                    timeout: self.settings.timeout,
                    attempts: self.attempts,
                }));
            }
            Err(Failure::Transport(e)) => {
                return Step::Done(Err(GraphError::Transport {
                    host: self.host.clone(),
                    source: e.without_url(),
                }));
            }
            Err(Failure::TooLarge) => {
                return Step::Done(Err(GraphError::InvalidResponse(format!(
                    "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
                ))));
            }
        };

        let span = tracing::Span::current();
        let status = answer.status;
        let request_id = header(&answer.headers, "request-id");
        let client_request_id = header(&answer.headers, "client-request-id");
        span.record("status", status.as_u16());
        if let Some(id) = &request_id {
            span.record("request_id", id.as_str());
        }

        if status.is_success() {
            tracing::debug!("Graph answered");
            let text: &[u8] = if answer.body.iter().all(u8::is_ascii_whitespace) {
                b"null"
            } else {
                &answer.body
            };
            let body = match serde_json::from_slice(text) {
                Ok(body) => body,
                Err(e) => {
                    return Step::Done(Err(GraphError::InvalidResponse(format!(
                        "{status} with a body that is not what was expected ({e})"
                    ))));
                }
            };
            return Step::Done(Ok(GraphResponse {
                status,
                location: header(&answer.headers, "location"),
                request_id,
                client_request_id,
                body,
            }));
        }

        let envelope = Envelope::parse(&answer.body);
        if status == StatusCode::UNAUTHORIZED
            && envelope.code.as_deref() == Some("InvalidAuthenticationToken")
            && !self.refreshed
        {
            tracing::info!("Graph refused the token; fetching a new one");
            return Step::Refresh;
        }
        let transient = match status {
            // Throttled requests were not carried out: always safe to repeat.
            StatusCode::TOO_MANY_REQUESTS => true,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => self.idempotent,
            _ => false,
        };
        if transient && can_retry {
            let retry_after = header(&answer.headers, "retry-after");
            let wait = retry::wait(
                retry_after.as_deref(),
                self.retries,
                self.settings.retry_base_wait,
                self.settings.max_retry_wait,
            );
            tracing::warn!(
                ?wait,
                retry_after,
                "Graph is throttling or unavailable; retrying"
            );
            return Step::Retry(wait);
        }
        if transient {
            return Step::Done(Err(GraphError::Throttled {
                retries: self.retries,
                last_status: status,
                request_id,
            }));
        }
        tracing::debug!(code = envelope.code, method = %self.method, "Graph refused");
        Step::Done(Err(envelope.into_error(
            status,
            &answer.body,
            request_id,
            client_request_id,
        )))
    }
}

/// A whole answer.
pub(crate) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Why there is no answer.
pub(crate) enum Failure {
    Timeout,
    Transport(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Transport(e)
        }
    }
}

/// Sends `request` and reads the whole answer, up to [`MAX_RESPONSE_BYTES`].
/// Counted as time waiting on Microsoft ([`crate::upstream`]).
pub(crate) async fn exchange(request: RequestBuilder) -> Result<Answer, Failure> {
    crate::upstream::waiting(async move {
        let mut response = request.send().await?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Failure::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    })
    .await
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `host[:port]` of `url`, for messages.
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => url.scheme().to_owned(),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A configured base URL: `https`, or `http` to this machine only (the
/// emulator, a local proxy), with no query or fragment.
fn base_url(field: &str, value: &str) -> Result<Url, GraphError> {
    let invalid = |why: String| GraphError::Config(format!("{field} {value:?}: {why}"));
    let url = Url::parse(value).map_err(|e| invalid(e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid("a base URL has no query or fragment".to_owned()));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(
            "plain http is allowed only to this machine (127.0.0.1, ::1, localhost); use https"
                .to_owned(),
        )),
        other => Err(invalid(format!("scheme {other} is not http(s)"))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved
/// characters, so that `/`, `?`, `#`, `%` and `@` in an id cannot change the
/// request's meaning.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GraphConfig {
        GraphConfig::new(
            "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap(),
            "app",
            Secret::new("s3cret-value"),
        )
    }

    #[test]
    fn user_paths_are_percent_encoded() {
        assert_eq!(
            GraphClient::user_path("adele.vance@contoso.com"),
            "/users/adele.vance%40contoso.com"
        );
        assert_eq!(
            GraphClient::user_path("ann_contoso.com#EXT#@fabrikam.onmicrosoft.com"),
            "/users/ann_contoso.com%23EXT%23%40fabrikam.onmicrosoft.com"
        );
        assert_eq!(
            GraphClient::user_path("6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f"),
            "/users/6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f"
        );
        assert_eq!(
            GraphClient::user_path("a/../b?x=1 %"),
            "/users/a%2F..%2Fb%3Fx%3D1%20%25"
        );
        assert_eq!(
            GraphClient::user_path("$o'neil@contoso.com"),
            "/users('%24o%27%27neil%40contoso.com')"
        );
        assert_eq!(encode_path_segment("ü"), "%C3%BC");
    }

    #[test]
    fn the_defaults_are_microsofts_and_debug_hides_the_secret() {
        let config = config();
        assert_eq!(config.authority, "https://login.microsoftonline.com");
        assert_eq!(config.graph_base_url, "https://graph.microsoft.com/v1.0");
        assert_eq!(config.scope, "https://graph.microsoft.com/.default");
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.max_retries, 4);
        assert_eq!(config.max_retry_wait, Duration::from_secs(30));
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        let client = GraphClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
    }

    #[test]
    fn plain_http_is_only_for_this_machine() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/v1.0",
            "http://[::1]:9",
            "https://graph.microsoft.us/v1.0",
        ] {
            let mut c = config();
            c.graph_base_url = ok.to_owned();
            assert!(GraphClient::new(c).is_ok(), "{ok}");
        }
        for bad in [
            "http://graph.example.com/v1.0",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://graph.microsoft.com/v1.0?x=1",
            "graph.microsoft.com",
        ] {
            let mut c = config();
            c.authority = bad.to_owned();
            assert!(
                matches!(GraphClient::new(c), Err(GraphError::Config(_))),
                "{bad}"
            );
        }
        let mut c = config();
        c.client_secret = Secret::new("");
        assert!(GraphClient::new(c).is_err());
    }

    #[test]
    fn request_paths_stay_under_the_base_url() {
        let client = GraphClient::new(config()).unwrap();
        assert_eq!(
            client.url("/users/x?$select=id").unwrap().as_str(),
            "https://graph.microsoft.com/v1.0/users/x?$select=id"
        );
        assert_eq!(
            client
                .url("/auditLogs/signIns?$filter=userId eq 'x'")
                .unwrap()
                .as_str(),
            "https://graph.microsoft.com/v1.0/auditLogs/signIns?$filter=userId%20eq%20%27x%27"
        );
        for bad in [
            "users",
            "https://evil.example/v1.0/users",
            "//evil.example/users",
            "/../beta/users",
            "/users/../../x",
            "",
        ] {
            assert!(
                matches!(client.url(bad), Err(GraphError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn next_links_must_stay_on_graphs_origin() {
        let client = GraphClient::new(config()).unwrap();
        let next = "https://graph.microsoft.com/v1.0/users?$skiptoken=X%27Y";
        assert_eq!(client.next_link(next).unwrap().as_str(), next, "verbatim");
        for bad in [
            "https://evil.example/v1.0/users?$skiptoken=x",
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com:8443/v1.0/users",
            "/v1.0/users?$skiptoken=x",
        ] {
            assert!(
                matches!(client.next_link(bad), Err(GraphError::InvalidResponse(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn client_request_ids_are_uuid_v4() {
        let a = crate::ids::random_uuid_v4().unwrap();
        let b = crate::ids::random_uuid_v4().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
