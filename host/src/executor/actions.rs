//! The four Graph writes, each made idempotent in its own way (see the
//! executor's module documentation), and what each asks Graph.

use std::collections::HashSet;

use latchkey_policy::{Action, Constraints};
use serde_json::{Map, Value, json};

use super::password;
use super::records::{PlannedRequest, redacted_password_profile};
use super::{Applied, ExecuteError, Guard, IssuedPass, RemovedMethod};
use crate::graph::{
    GraphClient, GraphError, GraphRequest, GraphResponse, Secret, encode_path_segment,
};

/// The `@odata.type` of a Temporary Access Pass in the methods list.
const TAP_TYPE: &str = "#microsoft.graph.temporaryAccessPassAuthenticationMethod";

/// The methods removed as lost, by `@odata.type`, with the collection each
/// is deleted from.
///
/// A lost phone takes with it the authenticator apps on it: Microsoft
/// Authenticator and software OATH (third-party authenticator apps), both
/// bound to the device, both usable by whoever holds it. They are removed.
///
/// Phone methods (SMS and voice) are kept: a phone number is not the
/// device. The carrier can block the SIM and move the number to a new one,
/// and the user keeps receiving codes there; the facts do not say which
/// number, if any, was lost; and Graph refuses to delete some phone methods
/// in ways that depend on the others (`mobile` while `alternateMobile`
/// exists, the default method). FIDO2 keys and Windows Hello are separate
/// hardware and are kept too. A policy that wants a phone removed can say
/// so once the contract can name it.
pub const LOST_METHOD_TYPES: [(&str, &str); 2] = [
    (
        "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
        "microsoftAuthenticatorMethods",
    ),
    (
        "#microsoft.graph.softwareOathAuthenticationMethod",
        "softwareOathMethods",
    ),
];

/// The request ids of every answer an action got, and what it did so far.
#[derive(Default)]
pub(super) struct Trace {
    pub request_ids: Vec<String>,
    pub detail: Map<String, Value>,
}

impl Trace {
    fn answered(&mut self, response: &GraphResponse<Value>) {
        self.request_ids.extend(response.request_id.clone());
    }

    fn failed(&mut self, error: &GraphError) {
        self.request_ids
            .extend(error.request_id().map(str::to_owned));
    }

    fn note(&mut self, key: &str, value: Value) {
        self.detail.insert(key.to_owned(), value);
    }

    /// Sends `request`, keeping the answer's request id either way.
    async fn send(
        &mut self,
        graph: &GraphClient,
        request: GraphRequest,
    ) -> Result<GraphResponse<Value>, GraphError> {
        let result = graph.send(request).await;
        match &result {
            Ok(response) => self.answered(response),
            Err(error) => self.failed(error),
        }
        result
    }

    /// Every item of a collection (one page is the norm for these).
    async fn get_all(&mut self, graph: &GraphClient, path: &str) -> Result<Vec<Value>, GraphError> {
        match graph.get_all(path).await {
            Ok(pages) => {
                self.request_ids.extend(pages.request_ids);
                Ok(pages.items)
            }
            Err(error) => {
                self.failed(&error);
                Err(error)
            }
        }
    }
}

/// True when the write may have happened although no success came back: no
/// answer in time, a broken connection, an unreadable answer, or a 5xx
/// (a gateway can time out while the directory completes the write). A 429
/// or any 4xx means Graph did not act.
pub(super) fn outcome_unknown(error: &GraphError) -> bool {
    match error {
        GraphError::Timeout { .. }
        | GraphError::Transport { .. }
        | GraphError::InvalidResponse(_) => true,
        GraphError::Throttled { last_status, .. } => last_status.as_u16() != 429,
        GraphError::Api { status, .. } => status.is_server_error(),
        _ => false,
    }
}

/// The error for a failed write of `action`: unknown or refused.
fn graph_error(action: Action, error: GraphError) -> ExecuteError {
    if outcome_unknown(&error) {
        ExecuteError::OutcomeUnknown {
            action,
            source: error,
        }
    } else {
        ExecuteError::Graph {
            action,
            source: error,
        }
    }
}

/// The requests `action` makes on `user_path`, for its intent.
pub(super) fn plan(
    action: Action,
    user_path: &str,
    constraints: &Constraints,
) -> Vec<PlannedRequest> {
    let methods = format!("{user_path}/authentication/methods");
    match action {
        Action::ResetPassword => vec![
            PlannedRequest::new("GET", names_query(user_path), None),
            PlannedRequest::new(
                "PATCH",
                user_path.to_owned(),
                Some(redacted_password_profile()),
            ),
        ],
        Action::IssueTemporaryAccessPass => vec![
            PlannedRequest::new("GET", methods, None),
            PlannedRequest::new(
                "POST",
                format!("{user_path}/authentication/temporaryAccessPassMethods"),
                Some(Value::Object(tap_body(constraints))),
            ),
        ],
        Action::RemoveLostMfaMethods => vec![
            PlannedRequest::new("GET", methods, None),
            PlannedRequest::new(
                "DELETE",
                format!(
                    "{user_path}/authentication/{{{}}}/{{id}}",
                    LOST_METHOD_TYPES.map(|(_, segment)| segment).join("|")
                ),
                None,
            ),
        ],
        Action::RevokeSessions => vec![PlannedRequest::new(
            "POST",
            format!("{user_path}/revokeSignInSessions"),
            None,
        )],
    }
}

fn names_query(user_path: &str) -> String {
    format!("{user_path}?$select=givenName,surname,displayName,userPrincipalName")
}

/// Resets the password to a generated one, changed at next sign-in.
///
/// Idempotent within the execution: the password is generated once, before
/// the PATCH, and the PATCH is marked idempotent so the Graph client repeats
/// it on a timeout or a 503/504. Setting the same password twice leaves the
/// same state as setting it once, so a lost answer costs one more directory
/// audit line, never a second, different password.
pub(super) async fn reset_password(
    graph: &GraphClient,
    user_path: &str,
    guard: &Guard<'_>,
    trace: &mut Trace,
) -> Result<Applied, ExecuteError> {
    let action = Action::ResetPassword;
    let user = trace
        .send(graph, GraphRequest::get(names_query(user_path)))
        .await
        .map_err(|e| graph_error(action, e))?
        .body;
    let names: Vec<&str> = ["givenName", "surname", "displayName", "userPrincipalName"]
        .iter()
        .filter_map(|k| user.get(*k).and_then(Value::as_str))
        .collect();
    let password = password::generate(&names)?;
    trace.note("force_change_next_sign_in", json!(true));
    let body = json!({
        "passwordProfile": {
            "password": password.expose(),
            "forceChangePasswordNextSignIn": true,
        }
    });
    guard.check()?;
    trace
        .send(graph, GraphRequest::patch(user_path, body).idempotent())
        .await
        .map_err(|e| graph_error(action, e))?;
    Ok(Applied::PasswordReset { password })
}

/// The body of the pass request: the receipt's lifetime when it sets one
/// (else the tenant's TAP policy default, one hour unless changed), and
/// one-time use when the receipt asks for it (else the policy's default,
/// multi-use unless changed).
fn tap_body(constraints: &Constraints) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(minutes) = constraints.tap_lifetime_minutes {
        body.insert("lifetimeInMinutes".to_owned(), json!(minutes));
    }
    if constraints.tap_one_time_use {
        body.insert("isUsableOnce".to_owned(), json!(true));
    }
    body
}

/// The user's Temporary Access Passes, as the methods list shows them.
async fn taps(
    graph: &GraphClient,
    user_path: &str,
    trace: &mut Trace,
) -> Result<Vec<Value>, GraphError> {
    let methods = trace
        .get_all(graph, &format!("{user_path}/authentication/methods"))
        .await?;
    Ok(methods
        .into_iter()
        .filter(|m| m.get("@odata.type").and_then(Value::as_str) == Some(TAP_TYPE))
        .collect())
}

fn method_id(method: &Value) -> Option<&str> {
    method.get("id").and_then(Value::as_str)
}

/// Issues a Temporary Access Pass.
///
/// Never repeated blindly: a second POST would create a second pass,
/// replacing the one whose answer was lost (or, worse, the one the user was
/// just shown). So the POST is not marked idempotent (the Graph client
/// repeats it only on 429, which Graph never carries out), and the user's
/// passes are listed before it. When no answer comes back (a timeout, a
/// 5xx), they are listed again: a pass that was not there before is this
/// one, and the outcome is recorded as applied with the value lost (Graph
/// shows a pass's value only in the answer to its creation). When there is
/// none, the outcome is failed, and it is still not repeated: a delayed
/// request could yet land, and a fresh decision is the way to try again.
pub(super) async fn issue_tap(
    graph: &GraphClient,
    user_path: &str,
    constraints: &Constraints,
    guard: &Guard<'_>,
    trace: &mut Trace,
) -> Result<Applied, ExecuteError> {
    let action = Action::IssueTemporaryAccessPass;
    let before: HashSet<String> = taps(graph, user_path, trace)
        .await
        .map_err(|e| graph_error(action, e))?
        .iter()
        .filter_map(|m| method_id(m).map(str::to_owned))
        .collect();
    let body = Value::Object(tap_body(constraints));
    let path = format!("{user_path}/authentication/temporaryAccessPassMethods");
    guard.check()?;
    let lost = match trace.send(graph, GraphRequest::post(path, body)).await {
        Ok(response) => return Ok(created_pass(response.body, trace)),
        Err(error) if !outcome_unknown(&error) => return Err(graph_error(action, error)),
        Err(error) => error,
    };
    trace.note("read_back", json!(true));
    let after = match taps(graph, user_path, trace).await {
        Ok(after) => after,
        Err(read_back) => {
            tracing::warn!(error = %read_back, "cannot read the passes back after a lost answer");
            return Err(ExecuteError::OutcomeUnknown {
                action,
                source: lost,
            });
        }
    };
    let new = after
        .into_iter()
        .find(|m| method_id(m).is_some_and(|id| !before.contains(id)));
    match new {
        // Listed passes never carry their value: the same parsing, value lost.
        Some(pass) => Ok(created_pass(pass, trace)),
        None => Err(ExecuteError::PassNotCreated { source: lost }),
    }
}

/// The pass from the answer to its creation. The value is the only secret
/// here; everything else goes to the outcome.
fn created_pass(mut body: Value, trace: &mut Trace) -> Applied {
    let pass = match body.get_mut("temporaryAccessPass").map(Value::take) {
        Some(Value::String(value)) if !value.is_empty() => Some(Secret::new(value)),
        _ => None,
    };
    let method_id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let lifetime_minutes = body
        .get("lifetimeInMinutes")
        .and_then(Value::as_u64)
        .and_then(|m| u32::try_from(m).ok());
    let usable_once = body.get("isUsableOnce").and_then(Value::as_bool);
    trace.note("method_id", json!(method_id));
    trace.note("lifetime_in_minutes", json!(lifetime_minutes));
    trace.note("is_usable_once", json!(usable_once));
    trace.note(
        "start",
        body.get("startDateTime").cloned().unwrap_or(Value::Null),
    );
    trace.note("value_lost", json!(pass.is_none()));
    Applied::TemporaryAccessPass(IssuedPass {
        pass,
        method_id,
        lifetime_minutes,
        usable_once,
    })
}

/// Deletes the user's [lost methods](LOST_METHOD_TYPES).
///
/// Idempotent: each DELETE names one method, so repeating it cannot remove
/// anything else; it is marked idempotent for the Graph client, and a 404
/// (on a repeat, or because the user removed it meanwhile) means the method
/// is already gone, which is what was wanted.
pub(super) async fn remove_lost_methods(
    graph: &GraphClient,
    user_path: &str,
    guard: &Guard<'_>,
    trace: &mut Trace,
) -> Result<Applied, ExecuteError> {
    let action = Action::RemoveLostMfaMethods;
    let methods = trace
        .get_all(graph, &format!("{user_path}/authentication/methods"))
        .await
        .map_err(|e| graph_error(action, e))?;
    let lost: Vec<(&str, String)> = methods
        .iter()
        .filter_map(|m| {
            let kind = m.get("@odata.type").and_then(Value::as_str)?;
            let (_, segment) = LOST_METHOD_TYPES.iter().find(|(t, _)| *t == kind)?;
            let id = m.get("id").and_then(Value::as_str)?;
            Some((*segment, id.to_owned()))
        })
        .collect();
    let mut removed = Vec::new();
    for (segment, id) in lost {
        if let Err(refused) = guard.check() {
            trace.note("removed", json!(removed));
            return Err(refused);
        }
        let path = format!(
            "{user_path}/authentication/{segment}/{}",
            encode_path_segment(&id)
        );
        let already_gone = match trace
            .send(graph, GraphRequest::delete(path).idempotent())
            .await
        {
            Ok(_) => false,
            Err(GraphError::Api { status, .. }) if status.as_u16() == 404 => true,
            Err(error) => {
                trace.note("removed", json!(removed));
                return Err(graph_error(action, error));
            }
        };
        removed.push(RemovedMethod {
            collection: segment.to_owned(),
            id,
            already_gone,
        });
    }
    trace.note("removed", json!(removed));
    Ok(Applied::LostMethodsRemoved { removed })
}

/// Revokes the user's sessions and refresh tokens.
///
/// Idempotent by nature: it moves `signInSessionsValidFromDateTime` to now,
/// and doing that twice leaves every session revoked, as once does. So it
/// is sent as an idempotent POST, repeated on a timeout or a 503/504.
pub(super) async fn revoke_sessions(
    graph: &GraphClient,
    user_path: &str,
    guard: &Guard<'_>,
    trace: &mut Trace,
) -> Result<Applied, ExecuteError> {
    let action = Action::RevokeSessions;
    guard.check()?;
    // No body is documented; Graph's own SDKs send `{}`.
    let request = GraphRequest::post(format!("{user_path}/revokeSignInSessions"), json!({}));
    let response = trace
        .send(graph, request.idempotent())
        .await
        .map_err(|e| graph_error(action, e))?;
    match response.body.get("value") {
        Some(Value::Bool(true)) => Ok(Applied::SessionsRevoked),
        other => Err(ExecuteError::InvalidResponse {
            action,
            detail: format!("revokeSignInSessions answered value {other:?}, not true"),
        }),
    }
}
