//! The emulator's control surface under `/_sim/`: what tests and demos use to
//! make things happen that Graph has no API for (a user signing in, time
//! passing, Graph misbehaving), and to look behind the surface (the outbox,
//! lockout state). Also the smart-lockout and sign-in rules themselves, as
//! plain functions on the tenant ([`attempt`], [`sign_in`]).
//!
//! These routes take no token: the emulator is a local test double, and they
//! exist precisely to do what no Graph caller may. Bodies and answers are
//! JSON; bad input is a 400 with Graph's error envelope and a message that
//! says what to send instead.
//!
//! | Route | Body | Answer |
//! |---|---|---|
//! | `POST /_sim/signins` | `{"user": UPN or id, "password": "..."}` or `{"user", "tap": "..."}`, optional `"outcome": "mfa_denied" \| "ca_blocked" \| "expired_password"` (password sign-ins only), `"app"`, `"ip"` | `{"errorCode", "failureReason", "signInId"}` (+ `methodUsabilityReason` for a TAP); the sign-in is in the log |
//! | `GET /_sim/outbox` | | `{"value": [...]}`, mail sent with `sendMail`, newest last |
//! | `DELETE /_sim/outbox` | | 204, outbox emptied |
//! | `POST /_sim/faults` | `{"path_prefix"?: "/users", "method"?: "POST", "status"?: 429 \| 503 \| 504, "retry_after"?: "2.5", "latency_ms"?: 200, "run_request"?: true, "count"?: 3}` | 201, the fault |
//! | `GET /_sim/faults` | | `{"value": [...]}`, faults in the order they apply |
//! | `DELETE /_sim/faults` | | 204, all faults cleared |
//! | `POST /_sim/clock` | `{"advance_seconds": N}` | `{"now"}`, the emulator's clock after moving it forward |
//! | `GET /_sim/clock` | | `{"now"}` |
//! | `GET /_sim/users/{id}/lockout` | | `{"locked", "lockedUntil", "failures", "timesLocked"}` |
//!
//! Faults apply to Graph requests (`/v1.0/...`) whose path after `/v1.0`
//! starts with `path_prefix` (ignoring case; empty or absent: every Graph
//! request) and, when `method` is given, whose HTTP method is that one. The
//! first matching fault applies: it delays the request by `latency_ms`, then
//! answers with `status` instead of running the request, with `Retry-After`
//! verbatim when given (Graph's throttling sometimes omits it, so it is never
//! invented). With `"run_request": true` the request is carried out first and
//! only its answer is delayed and, with a `status`, replaced: the write
//! happened, but the caller times out or hears a 503/504, which is how a
//! client learns that it must not blindly repeat a write. A fault with a
//! `count` applies to that many requests and is then removed; without one it
//! lasts until cleared. A JSON batch (`/v1.0/$batch`) is never faulted
//! itself; the requests in it are, each as if sent alone.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::sim::error::GraphError;
use crate::sim::methods::{read_json, tap_usability};
use crate::sim::model::{Method, SignIn, Tenant, User};
use crate::sim::state::{Fault, Sim, rfc3339};

/// `status.errorCode` of a successful sign-in.
pub const SUCCESS: u32 = 0;
/// The user does not exist (a mistyped UPN).
pub const USER_NOT_FOUND: u32 = 50034;
/// Locked by smart lockout.
pub const LOCKED: u32 = 50053;
/// The (cloud) password has expired.
pub const PASSWORD_EXPIRED: u32 = 50055;
/// The account is disabled.
pub const DISABLED: u32 = 50057;
/// Wrong user name or password.
pub const INVALID_PASSWORD: u32 = 50126;
/// The on-premises Active Directory password has expired (synced users).
pub const ON_PREM_PASSWORD_EXPIRED: u32 = 50144;
/// MFA denied, timed out or failed.
pub const MFA_FAILED: u32 = 500_121;
/// Blocked by Conditional Access.
pub const BLOCKED_BY_CONDITIONAL_ACCESS: u32 = 53003;

/// The app a simulated sign-in is to when the request names none (the same
/// default as seeded sign-ins).
const DEFAULT_APP: &str = "Office 365 Exchange Online";
/// The client address of a simulated sign-in when the request gives none
/// (documentation range, as in seeded sign-ins).
const DEFAULT_IP: &str = "203.0.113.24";
/// `userId` of a sign-in by a user who does not exist. Entra logs the attempt
/// under the name typed; there is no object, so there is no id.
const NO_USER: &str = "00000000-0000-0000-0000-000000000000";
/// How many distinct wrong passwords smart lockout remembers.
const REMEMBERED_WRONG_PASSWORDS: usize = 3;
/// The longest a lockout lasts however often it repeats, so that doubling
/// never overflows the clock.
const MAX_LOCKOUT_SECONDS: u64 = 365 * 24 * 3600;
/// The longest latency a fault may add: more looks like a hung test.
const MAX_LATENCY_MS: u64 = 120_000;
/// The HTTP methods a fault can be limited to: the ones Graph serves.
const FAULT_METHODS: [&str; 5] = ["GET", "POST", "PATCH", "PUT", "DELETE"];

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/signins", post(simulate_sign_in))
        .route("/_sim/outbox", get(outbox).delete(clear_outbox))
        .route(
            "/_sim/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/clock", get(clock).post(advance_clock))
        .route("/_sim/users/{id}/lockout", get(lockout))
}

/// What a simulated sign-in should end with once the password is right: the
/// ways a sign-in fails that the emulator does not model from first
/// principles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The user denies (or never answers) the MFA prompt: 500121.
    MfaDenied,
    /// Conditional Access blocks the sign-in: 53003, with the blocking policy
    /// recorded as applied.
    CaBlocked,
    /// The password has expired: 50055 (50144 for synced users).
    ExpiredPassword,
}

/// The credential a simulated sign-in presents.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// A password.
    Password(&'a str),
    /// A Temporary Access Pass.
    Tap(&'a str),
}

/// How a sign-in ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `status.errorCode`.
    pub error_code: u32,
    /// Conditional Access policies applied: (id, displayName, result).
    pub ca_policies: Vec<(String, String, String)>,
    /// For TAP sign-ins with the right pass: its `methodUsabilityReason` at
    /// the time of the attempt.
    pub tap_usability: Option<&'static str>,
}

impl Verdict {
    fn code(error_code: u32) -> Verdict {
        Verdict {
            error_code,
            ca_policies: Vec::new(),
            tap_usability: None,
        }
    }
}

/// A password sign-in by `tenant.users[user]` at `now`, under smart lockout;
/// returns `status.errorCode` and updates the user's lockout state.
///
/// In order: a disabled account is 50057 and a locked one 50053, whatever the
/// password, and neither changes the counter. A wrong password is 50126 and
/// counts toward `settings.lockout_threshold` unless it is one of the last
/// three distinct wrong passwords (smart lockout remembers their hashes so
/// that a user retrying the same typo does not lock themselves out). The
/// counted failure that reaches the threshold locks the account for
/// `lockout_duration_seconds`, doubled for each earlier lockout, and is
/// itself 50053. The counter survives the lockout, so each further counted
/// failure locks again, for longer, as Entra does. A right password clears
/// the counter (the password check succeeded, whatever comes next) and is
/// 50055 (50144 for synced users) when the password has expired, else 0. A
/// threshold of 0 turns lockout off.
pub fn attempt(tenant: &mut Tenant, user: usize, password: &str, now: OffsetDateTime) -> u32 {
    let threshold = tenant.settings.lockout_threshold;
    let base_seconds = tenant.settings.lockout_duration_seconds;
    let Some(expired) = tenant
        .users
        .get(user)
        .map(|u| password_expired(tenant, u, now))
    else {
        return USER_NOT_FOUND;
    };
    let Some(u) = tenant.users.get_mut(user) else {
        return USER_NOT_FOUND;
    };
    if !u.account_enabled {
        return DISABLED;
    }
    if is_locked(u, now) {
        return LOCKED;
    }
    if u.password != password {
        let hash = wrong_password_hash(&u.id, password);
        let lockout = &mut u.lockout;
        if let Some(seen) = lockout.recent_wrong.iter().position(|h| *h == hash) {
            // A repeat: it does not count, but it is now the most recent.
            let hash = lockout.recent_wrong.remove(seen);
            lockout.recent_wrong.push(hash);
            return INVALID_PASSWORD;
        }
        lockout.recent_wrong.push(hash);
        if lockout.recent_wrong.len() > REMEMBERED_WRONG_PASSWORDS {
            lockout.recent_wrong.remove(0);
        }
        lockout.failures = lockout.failures.saturating_add(1);
        if threshold > 0 && lockout.failures >= threshold {
            let duration = lockout_duration(base_seconds, lockout.times_locked);
            lockout.locked_until = Some(now.checked_add(duration).unwrap_or(now));
            lockout.times_locked = lockout.times_locked.saturating_add(1);
            return LOCKED;
        }
        return INVALID_PASSWORD;
    }
    u.lockout.failures = 0;
    u.lockout.recent_wrong.clear();
    if expired { expired_code(u) } else { SUCCESS }
}

/// A sign-in by `tenant.users[user]` at `now` with `credential`, ending as
/// `outcome` asks once the password is right (see [`attempt`] for the password
/// rules). A TAP sign-in succeeds when the pass is the user's and usable, and
/// uses up a one-time pass; a wrong or unusable pass is 50126 (Entra's
/// generic invalid-credential code; the pass's state is in
/// [`Verdict::tap_usability`]).
pub fn sign_in(
    tenant: &mut Tenant,
    user: usize,
    credential: Credential<'_>,
    outcome: Option<Outcome>,
    now: OffsetDateTime,
) -> Verdict {
    let secret = match credential {
        Credential::Password(password) => {
            let code = attempt(tenant, user, password, now);
            if code != SUCCESS {
                return Verdict::code(code);
            }
            return match (outcome, tenant.users.get(user)) {
                (Some(Outcome::MfaDenied), _) => Verdict::code(MFA_FAILED),
                (Some(Outcome::ExpiredPassword), Some(u)) => Verdict::code(expired_code(u)),
                (Some(Outcome::CaBlocked), _) => Verdict {
                    error_code: BLOCKED_BY_CONDITIONAL_ACCESS,
                    ca_policies: blocking_policy(tenant, user)
                        .map(|(id, name)| vec![(id, name, "failure".to_owned())])
                        .unwrap_or_default(),
                    tap_usability: None,
                },
                _ => Verdict::code(SUCCESS),
            };
        }
        Credential::Tap(secret) => secret,
    };
    let Some(u) = tenant.users.get_mut(user) else {
        return Verdict::code(USER_NOT_FOUND);
    };
    if !u.account_enabled {
        return Verdict::code(DISABLED);
    }
    if is_locked(u, now) {
        return Verdict::code(LOCKED);
    }
    let tap = u.methods.iter_mut().find_map(|m| match m {
        Method::TemporaryAccessPass(tap) if tap.secret == secret => Some(tap),
        _ => None,
    });
    let Some(tap) = tap else {
        return Verdict::code(INVALID_PASSWORD);
    };
    let (usable, reason) = tap_usability(tap, now);
    if usable && tap.usable_once {
        tap.used = true;
    }
    Verdict {
        error_code: if usable { SUCCESS } else { INVALID_PASSWORD },
        ca_policies: Vec::new(),
        tap_usability: Some(reason),
    }
}

/// The first enabled Conditional Access policy whose grant controls block,
/// preferring one that targets the user: (id, displayName).
pub fn blocking_policy(tenant: &Tenant, user: usize) -> Option<(String, String)> {
    let user = tenant.users.get(user)?;
    let blocking: Vec<&Value> = tenant
        .conditional_access_policies
        .iter()
        .filter(|p| p["state"].as_str() == Some("enabled"))
        .filter(|p| {
            p["grantControls"]["builtInControls"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.as_str().is_some_and(|c| c.eq_ignore_ascii_case("block")))
                })
        })
        .collect();
    let policy = blocking
        .iter()
        .find(|p| targets(p, user))
        .or(blocking.first())?;
    let text = |name: &str| policy[name].as_str().unwrap_or_default().to_owned();
    Some((text("id"), text("displayName")))
}

/// Whether a policy's `conditions.users` includes the user (directly, by
/// `All`, or by a direct group or role) and does not exclude them.
fn targets(policy: &Value, user: &User) -> bool {
    let users = &policy["conditions"]["users"];
    if users.is_null() {
        return true;
    }
    let mentions = |list: &str, ids: &[&str]| {
        users[list].as_array().is_some_and(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .any(|x| ids.iter().any(|id| x.eq_ignore_ascii_case(id)))
        })
    };
    let groups: Vec<&str> = user.groups.iter().map(String::as_str).collect();
    let roles: Vec<&str> = user.roles.iter().map(String::as_str).collect();
    let included = mentions("includeUsers", &["All", &user.id])
        || mentions("includeGroups", &groups)
        || mentions("includeRoles", &roles);
    let excluded = mentions("excludeUsers", &[&user.id])
        || mentions("excludeGroups", &groups)
        || mentions("excludeRoles", &roles);
    included && !excluded
}

/// Whether smart lockout holds the user at `now`.
pub fn is_locked(user: &User, now: OffsetDateTime) -> bool {
    user.lockout.locked_until.is_some_and(|until| until > now)
}

/// Whether the user's password is older than their domain allows: the
/// domain of their UPN if the tenant lists it, else the default domain. A
/// domain without `password_validity_period_in_days` (or no domain at all)
/// never expires passwords, so that small seeds need not think about expiry;
/// `DisablePasswordExpiration` in `password_policies` exempts the user.
pub fn password_expired(tenant: &Tenant, user: &User, now: OffsetDateTime) -> bool {
    let exempt = user
        .password_policies
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("DisablePasswordExpiration"));
    if exempt {
        return false;
    }
    let upn_domain = user
        .user_principal_name
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default();
    let domain = tenant
        .domains
        .iter()
        .find(|d| d.id.eq_ignore_ascii_case(upn_domain))
        .or_else(|| tenant.domains.iter().find(|d| d.is_default));
    match domain.and_then(|d| d.password_validity_period_in_days) {
        Some(days) => now - user.last_password_change > time::Duration::days(i64::from(days)),
        None => false,
    }
}

/// 50144 for users whose password lives in on-premises AD, else 50055.
fn expired_code(user: &User) -> u32 {
    if user.on_premises_sync_enabled == Some(true) {
        ON_PREM_PASSWORD_EXPIRED
    } else {
        PASSWORD_EXPIRED
    }
}

/// How long the lockout after `times_locked` earlier ones lasts.
fn lockout_duration(base_seconds: u64, times_locked: u32) -> time::Duration {
    let factor = 1u64.checked_shl(times_locked.min(40)).unwrap_or(u64::MAX);
    let seconds = base_seconds.saturating_mul(factor).min(MAX_LOCKOUT_SECONDS);
    time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
}

/// Smart lockout remembers hashes of wrong passwords, never the passwords;
/// salted with the user id so equal typos of two users do not match.
fn wrong_password_hash(user_id: &str, password: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(user_id.as_bytes());
    hasher.update([0]);
    hasher.update(password.as_bytes());
    hex::encode(hasher.finalize())
}

/// `status.failureReason` for an error code: one table, kept with the sign-in log.
pub use crate::sim::directory::failure_reason;

/// The body of `POST /_sim/signins`. Deliberately not `Debug`: it holds a
/// password or a pass.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInRequest {
    user: String,
    password: Option<String>,
    tap: Option<String>,
    outcome: Option<Outcome>,
    app: Option<String>,
    ip: Option<String>,
}

async fn simulate_sign_in(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, GraphError> {
    let request: SignInRequest = read_json(&body)?;
    let credential = match (&request.password, &request.tap) {
        (Some(password), None) => Credential::Password(password),
        (None, Some(tap)) => Credential::Tap(tap),
        _ => {
            return Err(GraphError::bad_request(
                "Give exactly one of \"password\" or \"tap\".",
            ));
        }
    };
    if matches!(credential, Credential::Tap(_)) && request.outcome.is_some() {
        return Err(GraphError::bad_request(
            "\"outcome\" applies to password sign-ins only: a TAP satisfies MFA and has no expiry of its own to force.",
        ));
    }
    if let Some(ip) = &request.ip
        && ip.parse::<IpAddr>().is_err()
    {
        return Err(GraphError::bad_request(format!(
            "\"ip\" must be an IPv4 or IPv6 address; got '{ip}'."
        )));
    }
    if request.app.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err(GraphError::bad_request(
            "\"app\" must be an app display name such as \"Microsoft Teams\", or left out.",
        ));
    }

    let now = sim.now();
    let mut tenant = sim.tenant();
    let index = tenant.user_index(&request.user);
    if let Some(index) = index
        && request.outcome == Some(Outcome::CaBlocked)
        && blocking_policy(&tenant, index).is_none()
    {
        return Err(GraphError::bad_request(
            "\"ca_blocked\" needs an enabled Conditional Access policy whose grantControls.builtInControls contain \"block\"; the tenant has none, so add one to the seed.",
        ));
    }
    let (verdict, user_id, upn, display_name) = match index {
        Some(index) => {
            let verdict = sign_in(&mut tenant, index, credential, request.outcome, now);
            let u = &tenant.users[index];
            (
                verdict,
                u.id.clone(),
                u.user_principal_name.clone(),
                u.display_name.clone(),
            )
        }
        None => (
            Verdict::code(USER_NOT_FOUND),
            NO_USER.to_owned(),
            request.user.clone(),
            String::new(),
        ),
    };
    let record = SignIn {
        id: uuid::Uuid::new_v4().to_string(),
        created: now,
        user_id,
        user_principal_name: upn,
        user_display_name: display_name,
        app_display_name: request.app.unwrap_or_else(|| DEFAULT_APP.to_owned()),
        ip_address: request.ip.unwrap_or_else(|| DEFAULT_IP.to_owned()),
        error_code: verdict.error_code,
        ca_policies: verdict.ca_policies,
    };
    let id = record.id.clone();
    tenant.log_sign_in(record);

    let mut answer = json!({
        "errorCode": verdict.error_code,
        "failureReason": failure_reason(verdict.error_code),
        "signInId": id,
    });
    if let Some(reason) = verdict.tap_usability {
        answer["methodUsabilityReason"] = json!(reason);
    }
    Ok(Json(answer))
}

async fn outbox(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({ "value": sim.tenant().outbox }))
}

async fn clear_outbox(State(sim): State<Sim>) -> StatusCode {
    sim.tenant().outbox.clear();
    StatusCode::NO_CONTENT
}

/// The body of `POST /_sim/faults`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewFault {
    path_prefix: Option<String>,
    status: Option<u16>,
    /// A string (verbatim) or a number of seconds.
    retry_after: Option<Value>,
    latency_ms: Option<u64>,
    count: Option<u32>,
    method: Option<String>,
    run_request: Option<bool>,
}

fn fault_json(fault: &Fault) -> Value {
    json!({
        "path_prefix": fault.path_prefix,
        "status": fault.status,
        "retry_after": fault.retry_after,
        "latency_ms": u64::try_from(fault.latency.as_millis()).unwrap_or(u64::MAX),
        "count": fault.remaining,
        "method": fault.method,
        "run_request": fault.run_request,
    })
}

async fn list_faults(State(sim): State<Sim>) -> Json<Value> {
    let faults: Vec<Value> = sim.faults().iter().map(fault_json).collect();
    Json(json!({ "value": faults }))
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.faults().clear();
    StatusCode::NO_CONTENT
}

async fn add_fault(
    State(sim): State<Sim>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), GraphError> {
    let request: NewFault = read_json(&body)?;
    let fault = validate_fault(request)?;
    let answer = fault_json(&fault);
    sim.faults().push(fault);
    Ok((StatusCode::CREATED, Json(answer)))
}

fn validate_fault(request: NewFault) -> Result<Fault, GraphError> {
    let bad = |m: String| Err(GraphError::bad_request(m));
    let mut prefix = request.path_prefix.unwrap_or_default().trim().to_owned();
    // Forgive a prefix written as the full Graph path.
    if prefix == "/v1.0" || prefix.starts_with("/v1.0/") {
        prefix.replace_range(.."/v1.0".len(), "");
    }
    if !prefix.is_empty() && !prefix.starts_with('/') {
        return bad(format!(
            "path_prefix '{prefix}' must start with '/' and is matched after /v1.0, for example \"/users\"."
        ));
    }
    if let Some(status) = request.status
        && ![429, 503, 504].contains(&status)
    {
        return bad(format!("status must be 429, 503 or 504; got {status}."));
    }
    let retry_after = match request.retry_after {
        None => None,
        Some(_) if request.status.is_none() => {
            return bad(
                "retry_after goes with a status (429 or 503); a latency-only fault sends no Retry-After."
                    .to_owned(),
            );
        }
        Some(value) => Some(retry_after(&value)?),
    };
    let latency_ms = request.latency_ms.unwrap_or(0);
    if latency_ms > MAX_LATENCY_MS {
        return bad(format!(
            "latency_ms must be at most {MAX_LATENCY_MS}; got {latency_ms}."
        ));
    }
    if request.status.is_none() && latency_ms == 0 {
        return bad("A fault needs a status, a latency_ms, or both.".to_owned());
    }
    if request.run_request == Some(true) && request.status == Some(429) {
        return bad(
            "run_request cannot go with status 429: Graph never carries out a throttled request; use 503 or 504 for a write whose answer was lost."
                .to_owned(),
        );
    }
    if request.count == Some(0) {
        return bad(
            "count must be at least 1; leave it out for a fault that lasts until DELETE /_sim/faults."
                .to_owned(),
        );
    }
    let method = match request.method.as_deref().map(str::trim) {
        None => None,
        Some(m) if FAULT_METHODS.iter().any(|k| k.eq_ignore_ascii_case(m)) => {
            Some(m.to_ascii_uppercase())
        }
        Some(m) => {
            return bad(format!(
                "method must be one of {}; got '{m}'.",
                FAULT_METHODS.join(", ")
            ));
        }
    };
    Ok(Fault {
        path_prefix: prefix,
        status: request.status,
        retry_after,
        latency: Duration::from_millis(latency_ms),
        remaining: request.count,
        method,
        run_request: request.run_request.unwrap_or(false),
    })
}

/// `Retry-After` as given: seconds, possibly fractional (Graph sends values
/// such as `2.128`), kept verbatim so clients' parsing is tested as is.
fn retry_after(value: &Value) -> Result<String, GraphError> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let mut parts = text.split('.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && fraction.is_none_or(digits) && parts.next().is_none() {
        Ok(text)
    } else {
        Err(GraphError::bad_request(format!(
            "retry_after must be a non-negative number of seconds such as \"2\" or \"0.5\"; got {value}."
        )))
    }
}

/// The body of `POST /_sim/clock`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    advance_seconds: u64,
}

async fn clock(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({ "now": rfc3339(sim.now()) }))
}

async fn advance_clock(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, GraphError> {
    let request: ClockRequest = read_json(&body)?;
    let by = i64::try_from(request.advance_seconds)
        .ok()
        .map(time::Duration::seconds)
        .filter(|by| {
            // Far enough from the end of time that the wall clock moving on
            // can never overflow the emulator's.
            sim.now()
                .checked_add(*by)
                .is_some_and(|then| then.year() < 9000)
        })
        .ok_or_else(|| {
            GraphError::bad_request(format!(
                "advance_seconds {} would move the clock past the year 9000.",
                request.advance_seconds
            ))
        })?;
    sim.advance_clock(by);
    Ok(Json(json!({ "now": rfc3339(sim.now()) })))
}

async fn lockout(
    State(sim): State<Sim>,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    let now = sim.now();
    let tenant = sim.tenant();
    let user = tenant.user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let locked = is_locked(user, now);
    Ok(Json(json!({
        "locked": locked,
        "lockedUntil": user.lockout.locked_until.filter(|_| locked).map(rfc3339),
        "failures": user.lockout.failures,
        "timesLocked": user.lockout.times_locked,
    })))
}

/// Middleware: applies the first configured fault whose `path_prefix` matches
/// a Graph request (see the module docs), counting it down.
pub async fn inject_faults(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let Some(fault) = take_fault(&sim, request.method().as_str(), request.uri().path()) else {
        return next.run(request).await;
    };
    if fault.run_request {
        // The write happens whatever becomes of its answer.
        let answer = next.run(request).await;
        if !fault.latency.is_zero() {
            tokio::time::sleep(fault.latency).await;
        }
        return match fault.status {
            Some(status) => fault_error(status, fault.retry_after).into_response(),
            None => answer,
        };
    }
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    match fault.status {
        Some(status) => fault_error(status, fault.retry_after).into_response(),
        None => next.run(request).await,
    }
}

/// The fault that applies to a `method` request for `path`, if any, with its
/// count taken; the lock is released before the caller awaits anything.
fn take_fault(sim: &Sim, method: &str, path: &str) -> Option<Fault> {
    let rest = path.strip_prefix("/v1.0")?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut faults = sim.faults();
    let index = faults.iter().position(|f| {
        rest.get(..f.path_prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(&f.path_prefix))
            && f.method.as_deref().is_none_or(|m| m == method)
    })?;
    let fault = faults[index].clone();
    if let Some(remaining) = &mut faults[index].remaining {
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            faults.remove(index);
        }
    }
    Some(fault)
}

/// Graph's answer for an injected status.
fn fault_error(status: u16, retry_after: Option<String>) -> GraphError {
    let error = match status {
        429 => GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        ),
        503 => GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry again later.",
        ),
        504 => GraphError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "UnknownError",
            "GatewayTimeout: the request timed out.",
        ),
        other => GraphError::new(
            StatusCode::from_u16(other).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "UnknownError",
            "An injected fault.",
        ),
    };
    match retry_after {
        Some(seconds) => error.with_header(header::RETRY_AFTER, seconds),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::Tap;
    use time::format_description::well_known::Rfc3339;

    fn user(id: &str, last_change: OffsetDateTime) -> Value {
        json!({
            "id": id,
            "user_principal_name": format!("{id}@contoso.com"),
            "display_name": id,
            "password": "Right-Password-1",
            "last_password_change": last_change.format(&Rfc3339).unwrap(),
        })
    }

    fn tenant(now: OffsetDateTime) -> Tenant {
        serde_json::from_value(json!({
            "id": "tenant",
            "name": "contoso",
            "display_name": "Contoso",
            "domain": "contoso.com",
            "users": [user("ann", now)],
            "domains": [{"id": "contoso.com", "is_default": true, "password_validity_period_in_days": 90}],
        }))
        .unwrap()
    }

    #[test]
    fn ten_distinct_wrong_passwords_lock_and_the_lock_holds_even_for_the_right_one() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        for n in 1..10 {
            assert_eq!(
                attempt(&mut t, 0, &format!("wrong-{n}"), now),
                INVALID_PASSWORD
            );
        }
        assert_eq!(t.users[0].lockout.failures, 9);
        assert_eq!(attempt(&mut t, 0, "wrong-10", now), LOCKED);
        assert_eq!(
            t.users[0].lockout.locked_until,
            Some(now + time::Duration::seconds(60))
        );
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", now), LOCKED);
        assert_eq!(t.users[0].lockout.failures, 10, "no change while locked");
    }

    #[test]
    fn repeating_a_wrong_password_does_not_count_but_a_forgotten_one_does() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        for _ in 0..25 {
            assert_eq!(attempt(&mut t, 0, "same-typo", now), INVALID_PASSWORD);
        }
        assert_eq!(t.users[0].lockout.failures, 1);
        // a, b, c push "same-typo" out of the last three: it counts again.
        for p in ["a", "b", "c", "same-typo"] {
            attempt(&mut t, 0, p, now);
        }
        assert_eq!(t.users[0].lockout.failures, 5);
        // Only hashes are kept.
        assert!(
            t.users[0]
                .lockout
                .recent_wrong
                .iter()
                .all(|h| h.len() == 64 && !h.contains("typo"))
        );
    }

    #[test]
    fn the_lock_expires_and_each_further_failure_locks_for_twice_as_long() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        for n in 0..10 {
            attempt(&mut t, 0, &format!("w{n}"), now);
        }
        let later = now + time::Duration::seconds(61);
        assert!(!is_locked(&t.users[0], later));
        assert_eq!(attempt(&mut t, 0, "w-after", later), LOCKED);
        assert_eq!(
            t.users[0].lockout.locked_until,
            Some(later + time::Duration::seconds(120))
        );
        let much_later = later + time::Duration::seconds(121);
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", much_later), SUCCESS);
        assert_eq!(t.users[0].lockout.failures, 0);
        assert!(t.users[0].lockout.recent_wrong.is_empty());
    }

    #[test]
    fn a_right_password_clears_the_counter() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        for n in 0..9 {
            attempt(&mut t, 0, &format!("w{n}"), now);
        }
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", now), SUCCESS);
        assert_eq!(attempt(&mut t, 0, "w-new", now), INVALID_PASSWORD);
        assert_eq!(t.users[0].lockout.failures, 1);
    }

    #[test]
    fn a_threshold_of_zero_never_locks() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        t.settings.lockout_threshold = 0;
        for n in 0..50 {
            assert_eq!(attempt(&mut t, 0, &format!("w{n}"), now), INVALID_PASSWORD);
        }
    }

    #[test]
    fn disabled_users_get_50057_whatever_the_password() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        t.users[0].account_enabled = false;
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", now), DISABLED);
        assert_eq!(attempt(&mut t, 0, "wrong", now), DISABLED);
        assert_eq!(t.users[0].lockout.failures, 0);
        assert_eq!(attempt(&mut t, 7, "x", now), USER_NOT_FOUND);
    }

    #[test]
    fn old_passwords_expire_unless_exempt_and_synced_users_get_50144() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        t.users[0].last_password_change = now - time::Duration::days(91);
        assert_eq!(
            attempt(&mut t, 0, "Right-Password-1", now),
            PASSWORD_EXPIRED
        );
        t.users[0].on_premises_sync_enabled = Some(true);
        assert_eq!(
            attempt(&mut t, 0, "Right-Password-1", now),
            ON_PREM_PASSWORD_EXPIRED
        );
        t.users[0].password_policies = "DisableStrongPassword, DisablePasswordExpiration".into();
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", now), SUCCESS);
        t.users[0].password_policies = "None".into();
        t.domains[0].password_validity_period_in_days = None;
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", now), SUCCESS);
        t.users[0].last_password_change = now - time::Duration::days(89);
        t.domains[0].password_validity_period_in_days = Some(90);
        assert_eq!(attempt(&mut t, 0, "Right-Password-1", now), SUCCESS);
    }

    #[test]
    fn outcomes_apply_only_after_the_right_password() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        let password = Credential::Password("Right-Password-1");
        let mfa = sign_in(&mut t, 0, password, Some(Outcome::MfaDenied), now);
        assert_eq!(mfa.error_code, MFA_FAILED);
        let expired = sign_in(&mut t, 0, password, Some(Outcome::ExpiredPassword), now);
        assert_eq!(expired.error_code, PASSWORD_EXPIRED);
        let wrong = sign_in(
            &mut t,
            0,
            Credential::Password("nope"),
            Some(Outcome::MfaDenied),
            now,
        );
        assert_eq!(wrong.error_code, INVALID_PASSWORD);
    }

    #[test]
    fn ca_blocked_names_the_enabled_blocking_policy_that_targets_the_user() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        let block = json!({"builtInControls": ["block"]});
        t.conditional_access_policies = vec![
            json!({"id": "p1", "displayName": "Off", "state": "disabled", "grantControls": block}),
            json!({"id": "p2", "displayName": "MFA", "state": "enabled", "grantControls": {"builtInControls": ["mfa"]}}),
            json!({"id": "p3", "displayName": "Not Ann", "state": "enabled", "grantControls": block,
                   "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": ["ann"]}}}),
            json!({"id": "p4", "displayName": "Block legacy", "state": "enabled", "grantControls": block,
                   "conditions": {"users": {"includeUsers": ["All"]}}}),
        ];
        let verdict = sign_in(
            &mut t,
            0,
            Credential::Password("Right-Password-1"),
            Some(Outcome::CaBlocked),
            now,
        );
        assert_eq!(verdict.error_code, BLOCKED_BY_CONDITIONAL_ACCESS);
        assert_eq!(
            verdict.ca_policies,
            vec![(
                "p4".to_owned(),
                "Block legacy".to_owned(),
                "failure".to_owned()
            )]
        );
        t.conditional_access_policies.truncate(2);
        assert_eq!(blocking_policy(&t, 0), None);
    }

    #[test]
    fn a_one_time_tap_signs_in_once() {
        let now = OffsetDateTime::now_utc();
        let mut t = tenant(now);
        t.users[0].methods.push(Method::TemporaryAccessPass(Tap {
            id: "tap".into(),
            secret: "Secret88".into(),
            created: now,
            start: now,
            lifetime_minutes: 60,
            usable_once: true,
            used: false,
        }));
        let wrong = sign_in(&mut t, 0, Credential::Tap("secret88"), None, now);
        assert_eq!(wrong.error_code, INVALID_PASSWORD);
        let first = sign_in(&mut t, 0, Credential::Tap("Secret88"), None, now);
        assert_eq!(first.error_code, SUCCESS);
        assert_eq!(first.tap_usability, Some("EnabledByPolicy"));
        let second = sign_in(&mut t, 0, Credential::Tap("Secret88"), None, now);
        assert_eq!(second.error_code, INVALID_PASSWORD);
        assert_eq!(second.tap_usability, Some("OneTimeUsed"));
    }

    #[test]
    fn fault_bodies_are_validated() {
        let fault = |v: Value| validate_fault(serde_json::from_value(v).unwrap());
        let ok = fault(
            json!({"path_prefix": "/v1.0/users", "status": 429, "retry_after": 0.5, "count": 2}),
        )
        .unwrap();
        assert_eq!(ok.path_prefix, "/users");
        assert_eq!(ok.retry_after.as_deref(), Some("0.5"));
        assert_eq!(
            fault(json!({"status": 429, "retry_after": "2.128"}))
                .unwrap()
                .retry_after
                .as_deref(),
            Some("2.128")
        );
        for bad in [
            json!({"status": 500}),
            json!({"status": 429, "retry_after": "-1"}),
            json!({"status": 429, "retry_after": "1.2.3"}),
            json!({"status": 429, "retry_after": "soon"}),
            json!({"latency_ms": 10, "retry_after": "1"}),
            json!({"path_prefix": "users", "status": 503}),
            json!({"status": 503, "count": 0}),
            json!({"latency_ms": 999_999}),
            json!({}),
        ] {
            assert!(fault(bad.clone()).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn run_request_and_method_faults_are_validated() {
        let fault = |v: Value| validate_fault(serde_json::from_value(v).unwrap());
        let lost = fault(json!({"method": "post", "status": 504, "run_request": true})).unwrap();
        assert_eq!(lost.method.as_deref(), Some("POST"));
        assert!(lost.run_request);
        assert!(!fault(json!({"status": 503})).unwrap().run_request);
        for bad in [
            json!({"run_request": true}),
            json!({"status": 429, "run_request": true}),
            json!({"status": 503, "method": "BREW"}),
        ] {
            assert!(fault(bad.clone()).is_err(), "{bad} should be refused");
        }
    }

    /// The emulator on a loopback port with the demo tenant, and an app-only
    /// token for it.
    async fn running_demo() -> (crate::sim::Running, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tenant = crate::sim::seed::demo(OffsetDateTime::now_utc()).unwrap();
        let running = crate::sim::spawn(listener, tenant).unwrap();
        let (tenant_id, client_id, secret) = {
            let t = running.sim.tenant();
            (
                t.id.clone(),
                t.apps[0].client_id.clone(),
                t.apps[0].client_secret.clone(),
            )
        };
        let token: Value = reqwest::Client::new()
            .post(format!(
                "{}/{tenant_id}/oauth2/v2.0/token",
                running.base_url()
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (running, token["access_token"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_run_request_fault_carries_out_the_write_and_loses_its_answer() {
        const ADELE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
        let (running, token) = running_demo().await;
        let taps = format!("/users/{ADELE}/authentication/temporaryAccessPassMethods");
        running.sim.faults().push(
            validate_fault(
                serde_json::from_value(json!({
                    "path_prefix": taps, "method": "POST", "status": 504,
                    "run_request": true, "count": 1
                }))
                .unwrap(),
            )
            .unwrap(),
        );
        let http = reqwest::Client::new();
        let url = format!("{}/v1.0{taps}", running.base_url());
        // A GET of the same path is not the fault's method: untouched.
        let listed = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(listed.status(), 200);
        let count_taps = || {
            running
                .sim
                .tenant()
                .users
                .iter()
                .find(|u| u.id == ADELE)
                .map_or(0, |u| {
                    u.methods
                        .iter()
                        .filter(|m| matches!(m, Method::TemporaryAccessPass(_)))
                        .count()
                })
        };
        assert_eq!(count_taps(), 0);
        let audits = running.sim.tenant().audits.len();

        let answer = http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"lifetimeInMinutes": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 504, "the answer is the fault's");
        let body: Value = answer.json().await.unwrap();
        assert!(body.get("temporaryAccessPass").is_none(), "{body}");
        // ...but the pass was created, and audited, exactly once.
        assert_eq!(count_taps(), 1);
        assert_eq!(running.sim.tenant().audits.len(), audits + 1);
        assert!(running.sim.faults().is_empty(), "count used up");
    }

    #[test]
    fn every_error_code_we_write_has_a_reason() {
        assert_eq!(failure_reason(SUCCESS), None);
        for code in [
            USER_NOT_FOUND,
            LOCKED,
            PASSWORD_EXPIRED,
            DISABLED,
            INVALID_PASSWORD,
            ON_PREM_PASSWORD_EXPIRED,
            MFA_FAILED,
            BLOCKED_BY_CONDITIONAL_ACCESS,
        ] {
            assert_ne!(failure_reason(code), Some("Other."), "{code}");
        }
    }
}
