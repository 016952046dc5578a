//! The emulator's shared state: the tenant, its signing key, a clock that
//! tests can move, and the faults to inject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::sim::identity::SigningKey;
use crate::sim::model::{SignIn, Tenant, User};

/// A fault to inject on matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Requests whose path starts with this (after `/v1.0`), or every request when empty.
    pub path_prefix: String,
    /// Respond with this status instead (429, 503, ...), if set.
    pub status: Option<u16>,
    /// The `Retry-After` header to send with it, in seconds (may be fractional).
    pub retry_after: Option<String>,
    /// Delay every matching response by this much.
    pub latency: Duration,
    /// How many more requests it applies to (`None`: until cleared).
    pub remaining: Option<u32>,
    /// Only requests with this HTTP method (uppercase), or any when `None`.
    pub method: Option<String>,
    /// Carry the request out first, then delay and replace its answer: a
    /// write that happened although its caller never heard so.
    pub run_request: bool,
}

/// Shared, cheaply cloned handle to the emulator's state.
#[derive(Clone)]
pub struct Sim(Arc<Inner>);

struct Inner {
    base_url: String,
    key: SigningKey,
    tenant: Mutex<Tenant>,
    clock_offset: Mutex<time::Duration>,
    faults: Mutex<Vec<Fault>>,
    /// Authorization codes issued and not yet redeemed.
    codes: Mutex<HashMap<String, Value>>,
    /// Access tokens whose signature was verified, with their claims: a
    /// client reuses one token for an hour, and RSA is the emulator's
    /// costliest work under load.
    verified: Mutex<HashMap<String, Value>>,
    /// When the pending codes were last swept of expired entries (Unix
    /// seconds): at most once a second, not on every store.
    swept: std::sync::atomic::AtomicI64,
}

/// The most verified tokens remembered; the memory is cleared when full.
const MAX_VERIFIED: usize = 1024;

impl Sim {
    /// State for `tenant`, served at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(tenant: Tenant, base_url: String, key: SigningKey) -> Sim {
        Sim(Arc::new(Inner {
            base_url,
            key,
            tenant: Mutex::new(tenant),
            clock_offset: Mutex::new(time::Duration::ZERO),
            faults: Mutex::new(Vec::new()),
            codes: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            swept: std::sync::atomic::AtomicI64::new(i64::MIN),
        }))
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// The Graph base URL (`{base}/v1.0`).
    pub fn graph_base(&self) -> String {
        format!("{}/v1.0", self.0.base_url)
    }

    /// The token signing key.
    pub fn key(&self) -> &SigningKey {
        &self.0.key
    }

    /// The tenant, locked. Hold it briefly: never across an `.await`.
    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        self.0.tenant.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The emulator's notion of now: the wall clock plus whatever tests
    /// advanced it by.
    pub fn now(&self) -> OffsetDateTime {
        let offset = *self
            .0
            .clock_offset
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        OffsetDateTime::now_utc() + offset
    }

    /// Moves the emulator's clock forward.
    pub fn advance_clock(&self, by: time::Duration) {
        let mut offset = self
            .0
            .clock_offset
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *offset += by;
    }

    /// The faults currently configured.
    pub fn faults(&self) -> MutexGuard<'_, Vec<Fault>> {
        self.0.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verifies `token`'s signature (and, the first time, its expiry with
    /// the key's leeway), remembering tokens already verified; returns its
    /// claims. Callers check the expiry against [`Sim::now`] themselves.
    pub fn verify_token(&self, token: &str) -> Result<Value, String> {
        let remembered = || self.0.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(claims) = remembered().get(token) {
            return Ok(claims.clone());
        }
        let claims = self.0.key.verify(token)?;
        let mut verified = remembered();
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// Whether the pending codes are due a sweep at `now` (Unix seconds):
    /// true at most once a second, and then the sweep is the caller's.
    pub fn sweep_due(&self, now: i64) -> bool {
        let last = self.0.swept.swap(now, std::sync::atomic::Ordering::Relaxed);
        last < now
    }

    /// Pending authorization codes.
    pub fn codes(&self) -> MutexGuard<'_, HashMap<String, Value>> {
        self.0.codes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Tenant {
    /// True when `name` is this tenant's GUID or short name (case-insensitive),
    /// or one of its domains.
    pub fn is_named(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(&self.id)
            || name.eq_ignore_ascii_case(&self.name)
            || name.eq_ignore_ascii_case(&self.domain)
    }

    /// The index of the user with this object id or UPN (UPNs compare
    /// ignoring case).
    pub fn user_index(&self, id_or_upn: &str) -> Option<usize> {
        self.index.find(&self.users, id_or_upn)
    }

    /// Adds `record` to the sign-in log, which is kept newest first (after
    /// any records of the same instant).
    pub fn log_sign_in(&mut self, record: SignIn) {
        let position = self
            .sign_ins
            .partition_point(|s| s.created > record.created);
        self.sign_ins.insert(position, record);
        self.sign_in_keys.inserted(&self.sign_ins, position);
    }

    /// The user with this object id or UPN.
    pub fn user(&self, id_or_upn: &str) -> Option<&User> {
        self.user_index(id_or_upn).map(|i| &self.users[i])
    }

    /// Appends a directory audit entry about `target`, as Graph writes it.
    pub fn audit(
        &mut self,
        now: OffsetDateTime,
        by: Initiator<'_>,
        target: &User,
        entry: Audit<'_>,
    ) {
        let (prefix, initiated_by) = match by {
            Initiator::App { id, name } => (
                "Directory",
                json!({"user": null, "app": {
                    "appId": id, "displayName": name,
                    "servicePrincipalId": id, "servicePrincipalName": name,
                }}),
            ),
            Initiator::User(user) => (
                "SSGM",
                json!({"user": {
                    "id": user.id, "displayName": user.display_name,
                    "userPrincipalName": user.user_principal_name, "ipAddress": null,
                }, "app": null}),
            ),
        };
        self.audits.push(json!({
            "id": format!("{prefix}_{}", uuid::Uuid::new_v4()),
            "category": entry.category,
            "correlationId": uuid::Uuid::new_v4().to_string(),
            "result": "success",
            "resultReason": entry.result_reason,
            "activityDisplayName": entry.activity,
            "activityDateTime": rfc3339(now),
            "loggedByService": entry.service,
            "operationType": entry.operation,
            "initiatedBy": initiated_by,
            "targetResources": [{
                "id": target.id,
                "displayName": target.display_name,
                "type": "User",
                "userPrincipalName": target.user_principal_name,
                "groupType": null,
                "modifiedProperties": entry.modified,
            }],
            "additionalDetails": entry.details,
        }));
    }
}

/// Who made a change recorded in the directory audit.
#[derive(Clone, Copy, Debug)]
pub enum Initiator<'a> {
    /// An app, with its client id and display name (app-only tokens).
    App {
        /// Client id.
        id: &'a str,
        /// Display name.
        name: &'a str,
    },
    /// The user themself (self-service).
    User(&'a User),
}

/// What a directory audit entry says.
#[derive(Clone, Debug)]
pub struct Audit<'a> {
    /// The service that logs it: `Core Directory`, `Authentication Methods`,
    /// `Self-service Password Management`.
    pub service: &'a str,
    /// `category`, e.g. `UserManagement`.
    pub category: &'a str,
    /// `activityDisplayName`.
    pub activity: &'a str,
    /// `operationType`: `Add`, `Update`, `Delete`.
    pub operation: &'a str,
    /// `resultReason`.
    pub result_reason: &'a str,
    /// The target's `modifiedProperties`.
    pub modified: Vec<Value>,
    /// `additionalDetails` (`[{key, value}]`).
    pub details: Vec<Value>,
}

/// RFC 3339 with seven fractional digits and `Z`, as Graph writes instants.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}
