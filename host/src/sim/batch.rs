//! JSON batching: `POST /v1.0/$batch`, Graph's way of sending up to 20
//! requests in one HTTP exchange.
//!
//! ```json
//! {"requests": [
//!   {"id": "1", "method": "GET", "url": "/users/{id}?$select=id"},
//!   {"id": "2", "method": "PATCH", "url": "/users/{id}",
//!    "headers": {"Content-Type": "application/json"}, "body": {"accountEnabled": true}}
//! ]}
//! ```
//!
//! answers `200 {"responses": [{"id", "status", "headers", "body"}, ...]}`,
//! one response per request, each exactly what the request would have been
//! answered on its own: every request goes through the emulator's own routes,
//! with their permission checks, error envelope and injected faults. (Graph
//! may answer in any order; the emulator answers in the order asked.) The
//! requests run concurrently, so a batch takes as long as its slowest
//! request; faults apply to the requests inside a batch, not to the batch.
//!
//! The batch itself is refused, 400 `BadRequest`, when it is not JSON, has
//! no requests or more than [`MAX_REQUESTS`], repeats an id (ignoring case),
//! names a method Graph does not serve, has a URL that is not relative to
//! the version (`/users`, not `https://...` or `/v1.0/users`), or has a body
//! without a `Content-Type` header, as Graph refuses them; and when it uses
//! a non-empty `dependsOn` or nests a batch, which the emulator does not
//! model. A batch without a valid token is a 401, as any Graph request.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, State};
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::sim::auth::Caller;
use crate::sim::error::GraphError;
use crate::sim::methods::read_json;
use crate::sim::state::Sim;

/// The most requests in one batch, as Graph allows.
pub const MAX_REQUESTS: usize = 20;

/// The path of the batch endpoint.
pub const PATH: &str = "/v1.0/$batch";

/// The largest answer to one request in a batch that is read back.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The HTTP methods a request in a batch may use.
const METHODS: [(&str, Method); 5] = [
    ("GET", Method::GET),
    ("POST", Method::POST),
    ("PATCH", Method::PATCH),
    ("PUT", Method::PUT),
    ("DELETE", Method::DELETE),
];

/// What the batch route runs on: the emulator's state, to check the token,
/// and its Graph routes, to run each request.
#[derive(Clone)]
struct Batch {
    sim: Sim,
    graph: Router,
}

impl FromRef<Batch> for Sim {
    fn from_ref(batch: &Batch) -> Sim {
        batch.sim.clone()
    }
}

/// The batch route, running its requests on `graph`.
pub fn routes(sim: Sim, graph: Router) -> Router {
    Router::new()
        .route(PATH, post(run))
        .with_state(Batch { sim, graph })
}

/// The caller the batch's token was verified as, handed to each request in
/// it so that the token is checked once per batch, not once per request.
/// (An extension, so no client can set it.)
#[derive(Clone, Debug)]
pub(crate) struct VerifiedCaller(pub Caller);

/// The batch's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Requests {
    requests: Vec<Item>,
}

/// One request in it. Other properties are ignored, as Graph ignores them:
/// Microsoft's Graph SDK for Python sends `depends_on: []` with every one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    body: Option<Value>,
    depends_on: Option<Value>,
}

async fn run(
    State(batch): State<Batch>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, GraphError> {
    let Requests { requests } = read_json(&body)?;
    if requests.is_empty() || requests.len() > MAX_REQUESTS {
        return Err(GraphError::bad_request(format!(
            "A batch holds from 1 to {MAX_REQUESTS} requests; this one has {}.",
            requests.len()
        )));
    }
    check_ids(requests.iter().map(|item| item.id.as_str()))?;
    let requests = requests
        .into_iter()
        .map(|item| {
            let id = item.id.clone();
            Ok((id, request(item, &caller)?))
        })
        .collect::<Result<Vec<_>, GraphError>>()?;
    // Concurrently, as Graph runs requests that depend on nothing.
    let running: Vec<_> = requests
        .into_iter()
        .map(|(id, request)| {
            let graph = batch.graph.clone();
            (id, tokio::spawn(graph.oneshot(request)))
        })
        .collect();
    let mut responses = Vec::with_capacity(running.len());
    for (id, task) in running {
        let answer = match task.await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(e) => {
                tracing::error!("a request in a batch failed: {e}");
                GraphError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "UnknownError",
                    "The request failed inside the emulator.",
                )
                .into_response()
            }
        };
        responses.push(response_json(id, answer).await);
    }
    Ok(axum::Json(json!({ "responses": responses })).into_response())
}

/// Refuses a batch that repeats an id; ids compare ignoring case.
fn check_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), GraphError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id.is_empty() {
            return Err(GraphError::bad_request(
                "Every request in a batch needs a non-empty id.",
            ));
        }
        if !seen.insert(id.to_lowercase()) {
            return Err(GraphError::bad_request(format!(
                "The id '{id}' is used by more than one request in the batch; ids must be unique."
            )));
        }
    }
    Ok(())
}

/// The HTTP request `item` stands for, carrying the batch's verified caller.
fn request(item: Item, caller: &Caller) -> Result<Request<Body>, GraphError> {
    let Item {
        id,
        method,
        url,
        headers,
        body,
        depends_on,
    } = item;
    let depends = match &depends_on {
        None | Some(Value::Null) => false,
        Some(Value::Array(ids)) => !ids.is_empty(),
        Some(_) => true,
    };
    if depends {
        return Err(GraphError::bad_request(format!(
            "Request '{id}': dependsOn is not supported by the emulator; send dependent requests in separate batches."
        )));
    }
    let Some((_, method)) = METHODS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&method))
    else {
        return Err(GraphError::bad_request(format!(
            "Request '{id}': the method must be one of {}; got '{method}'.",
            METHODS.map(|(name, _)| name).join(", ")
        )));
    };
    let relative = url.strip_prefix('/').unwrap_or(&url);
    let segment = relative.split(['/', '?']).next().unwrap_or_default();
    if relative.is_empty()
        || relative.starts_with('/')
        || url.contains("://")
        || segment.eq_ignore_ascii_case("v1.0")
        || segment.eq_ignore_ascii_case("beta")
    {
        return Err(GraphError::bad_request(format!(
            "Request '{id}': the url must be relative to the Graph version, like /users/{{id}}; got '{url}'."
        )));
    }
    if segment.eq_ignore_ascii_case("$batch") {
        return Err(GraphError::bad_request(format!(
            "Request '{id}': a batch cannot contain a batch."
        )));
    }
    // Graph takes the URL as written, spaces in `$filter` and all; encode
    // it as it would have been sent alone, and keep it under the version.
    let parsed = reqwest::Url::parse(&format!("http://emulator/v1.0/{relative}"))
        .ok()
        .filter(|parsed| parsed.path().starts_with("/v1.0/"))
        .ok_or_else(|| {
            GraphError::bad_request(format!(
                "Request '{id}': the url '{url}' is not a path under the Graph version."
            ))
        })?;
    let uri = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    let mut has_content_type = false;
    for (name, value) in &headers {
        let Some(value) = value.as_str() else {
            return Err(GraphError::bad_request(format!(
                "Request '{id}': the header '{name}' must be a string."
            )));
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            GraphError::bad_request(format!("Request '{id}': '{name}' is not a header name."))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            GraphError::bad_request(format!(
                "Request '{id}': the value of the header '{name}' is not valid."
            ))
        })?;
        has_content_type |= name == header::CONTENT_TYPE;
        builder = builder.header(name, value);
    }
    let body = match body {
        None => Body::empty(),
        Some(_) if !has_content_type => {
            return Err(GraphError::bad_request(format!(
                "Request '{id}' has a body but no Content-Type header."
            )));
        }
        Some(Value::String(encoded)) => Body::from(
            base64::engine::general_purpose::STANDARD
                .decode(&encoded)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&encoded))
                .map_err(|_| {
                    GraphError::bad_request(format!(
                        "Request '{id}': a string body must be base64."
                    ))
                })?,
        ),
        Some(json) => Body::from(json.to_string()),
    };
    let mut request = builder
        .body(body)
        .map_err(|e| GraphError::bad_request(format!("Request '{id}': {e}.")))?;
    request
        .extensions_mut()
        .insert(VerifiedCaller(caller.clone()));
    Ok(request)
}

/// One entry of `responses`: the status, the headers, and the body as JSON
/// (or, when it is not JSON, base64, as Graph encodes binary bodies).
async fn response_json(id: String, response: Response) -> Value {
    let (parts, body) = response.into_parts();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::from(value));
        }
    }
    let mut entry = json!({
        "id": id,
        "status": parts.status.as_u16(),
        "headers": headers,
    });
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!("reading an answer inside a batch: {e}");
            Bytes::new()
        }
    };
    if !bytes.is_empty() {
        entry["body"] = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::from(base64::engine::general_purpose::STANDARD.encode(&bytes))
        });
    }
    entry
}
