//! JSON batching: many GETs in one HTTP exchange with Graph
//! (`POST {graph_base_url}/$batch`), as Microsoft recommends for reads that
//! do not depend on each other. One investigation's reads go this way.
//!
//! Each request in a batch is answered on its own, with its own status, and
//! is treated as if it had been sent alone: the same parsing, the same
//! errors, the same retries. A request Graph throttles (429) or finds
//! unavailable (503, 504) is sent again, in a batch of those still to
//! answer, after the longest wait any of them was asked for. The batch
//! itself is retried as any idempotent request (it holds only GETs); when it
//! fails for good, every request in it has failed with it.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tracing::Instrument as _;

use super::{Answer, Attempt, GraphClient, GraphError, GraphResponse, Step, host_of};

/// The most requests Graph takes in one batch.
pub const MAX_BATCH: usize = 20;

/// A batch's answer.
#[derive(Deserialize)]
struct Answers {
    responses: Vec<Entry>,
}

/// The answer to one request in a batch; its body stays unparsed until the
/// request's own rules read it.
#[derive(Deserialize)]
struct Entry {
    id: String,
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    body: Option<Box<RawValue>>,
}

impl Entry {
    /// The answer as if the request had been sent alone.
    fn into_answer(self) -> Result<Answer, GraphError> {
        let status = StatusCode::from_u16(self.status).map_err(|_| {
            GraphError::InvalidResponse(format!(
                "a batch answered request {} with the status {}",
                self.id, self.status
            ))
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) else {
                continue;
            };
            headers.insert(name, value);
        }
        Ok(Answer {
            status,
            headers,
            body: self
                .body
                .map(|raw| raw.get().as_bytes().to_vec())
                .unwrap_or_default(),
        })
    }
}

impl GraphClient {
    /// `url`, which [`GraphClient::url`] made, relative to the base URL.
    fn relative(&self, url: &reqwest::Url) -> String {
        let base_path = self.inner.graph_base_url.path().trim_end_matches('/');
        let path = url.path().strip_prefix(base_path).unwrap_or(url.path());
        match url.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        }
    }

    /// `GET` each of `paths` (each as [`GraphClient::get`] takes it),
    /// [`MAX_BATCH`] to an HTTP exchange; the answers come back in the order
    /// of `paths`, each as [`GraphClient::get`] would have answered it. The
    /// outer `Err` is a failure of a batch as a whole (Graph unreachable, the
    /// token refused, no answer in time), which would have failed every
    /// request in it.
    pub async fn get_batch(
        &self,
        paths: &[String],
    ) -> Result<Vec<Result<GraphResponse<Value>, GraphError>>, GraphError> {
        let mut answers: Vec<Option<Result<GraphResponse<Value>, GraphError>>> =
            std::iter::repeat_with(|| None).take(paths.len()).collect();
        let batch_url = self.url("/$batch")?;
        let settings = &self.inner.settings;
        let mut attempts = Vec::with_capacity(paths.len());
        let mut pending = Vec::with_capacity(paths.len());
        // Each path as checked and percent-encoded by `url`, relative to
        // the version, as a batch names it.
        let mut relative = Vec::with_capacity(paths.len());
        for (index, path) in paths.iter().enumerate() {
            let url = self.url(path);
            attempts.push(Attempt {
                method: &Method::GET,
                idempotent: true,
                retries: 0,
                attempts: 0,
                // The batch's token was accepted: a request in it refused
                // for its token is an error, not a reason to fetch another.
                refreshed: true,
                settings,
                host: url.as_ref().map(host_of).unwrap_or_default(),
            });
            match url {
                Ok(url) => {
                    relative.push(self.relative(&url));
                    pending.push(index);
                }
                Err(e) => {
                    relative.push(String::new());
                    answers[index] = Some(Err(e));
                }
            }
        }
        while !pending.is_empty() {
            let mut again = Vec::new();
            let mut wait = Duration::ZERO;
            for chunk in pending.chunks(MAX_BATCH) {
                let requests: Vec<Value> = chunk
                    .iter()
                    .map(|&index| json!({"id": index.to_string(), "method": "GET", "url": relative[index]}))
                    .collect();
                let batch = self
                    .execute::<Answers>(
                        Method::POST,
                        batch_url.clone(),
                        Some(&json!({ "requests": requests })),
                        true,
                    )
                    .await?;
                let mut by_id: HashMap<String, Entry> = batch
                    .body
                    .responses
                    .into_iter()
                    .map(|entry| (entry.id.clone(), entry))
                    .collect();
                for &index in chunk {
                    let attempt = &mut attempts[index];
                    attempt.attempts += 1;
                    let Some(entry) = by_id.remove(&index.to_string()) else {
                        answers[index] = Some(Err(GraphError::InvalidResponse(format!(
                            "the batch had no answer to the request for {}",
                            paths[index]
                        ))));
                        continue;
                    };
                    let span = tracing::info_span!(
                        "graph_request",
                        method = "GET",
                        path = %paths[index],
                        batch = true,
                        attempt = attempt.attempts,
                        status = tracing::field::Empty,
                        request_id = tracing::field::Empty,
                    );
                    let step = span.in_scope(|| match entry.into_answer() {
                        Ok(answer) => attempt.decide::<Value>(Ok(answer)),
                        Err(e) => Step::Done(Err(e)),
                    });
                    match step {
                        Step::Done(mut answer) => {
                            if let Ok(response) = &mut answer {
                                // Graph ties a request in a batch to the
                                // batch's id when it gives it none of its own.
                                if response.request_id.is_none() {
                                    response.request_id.clone_from(&batch.request_id);
                                }
                            }
                            answers[index] = Some(answer);
                        }
                        Step::Retry(after) => {
                            attempt.retries += 1;
                            wait = wait.max(after);
                            again.push(index);
                        }
                        Step::Refresh => {
                            answers[index] = Some(Err(GraphError::InvalidResponse(format!(
                                "the batch's token was refused for {}",
                                paths[index]
                            ))));
                        }
                    }
                }
            }
            if !again.is_empty() {
                // Graph asked for the pause: its time, not ours.
                crate::upstream::waiting(tokio::time::sleep(wait))
                    .instrument(tracing::info_span!(
                        "graph_batch_retry",
                        requests = again.len()
                    ))
                    .await;
            }
            pending = again;
        }
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(GraphError::InvalidResponse(
                        "a request in a batch was never answered".to_owned(),
                    ))
                })
            })
            .collect())
    }
}
