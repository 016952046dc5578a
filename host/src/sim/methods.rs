//! Graph's authentication methods API, under `/v1.0/users/{id}/authentication/`:
//! listing a user's methods, registering phones and the SSPR email, deleting
//! lost ones, and the Temporary Access Pass (TAP) with all its rules.
//!
//! | Path | Verbs | Permission |
//! |---|---|---|
//! | `methods` | GET (polymorphic, always with the password) | [`READ_METHODS`] |
//! | `passwordMethods` | GET | [`READ_METHODS`] |
//! | `phoneMethods[/{id}]` | GET, POST, DELETE | [`READ_METHODS`] / [`WRITE_METHODS`] |
//! | `emailMethods[/{id}]` | GET, POST, DELETE | [`READ_METHODS`] / [`WRITE_METHODS`] |
//! | `microsoftAuthenticatorMethods[/{id}]` | GET, DELETE | [`READ_METHODS`] / [`WRITE_METHODS`] |
//! | `fido2Methods[/{id}]` | GET, DELETE | [`READ_METHODS`] / [`WRITE_METHODS`] |
//! | `temporaryAccessPassMethods[/{id}]` | GET, POST, DELETE | [`READ_METHODS`] (or the TAP scopes) / [`WRITE_TAP`] |
//!
//! Permissions are checked before the user is looked up, as Graph does, so a
//! caller without them learns nothing about who exists. Every write appends
//! the directory audit entry Entra writes ("Admin registered security info",
//! "Admin deleted security info"; category `UserManagement`, logged by
//! `Authentication Methods`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};
use axum::{Json, response::IntoResponse};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::sim::auth::{Caller, READ_METHODS, WRITE_METHODS, WRITE_TAP};
use crate::sim::error::GraphError;
use crate::sim::model::{Method, Tap, Tenant};
use crate::sim::state::{Audit, Initiator, Sim, rfc3339};

/// The id Graph gives every user's password method.
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";
/// The id Graph gives every user's (single) SSPR email method.
pub const EMAIL_METHOD_ID: &str = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f";
/// Phone types and the fixed method id Graph gives each.
pub const PHONE_TYPES: [(&str, &str); 3] = [
    ("mobile", "3179e48a-750b-4051-897c-87b9720928f7"),
    ("alternateMobile", "b6332ec1-7057-4abe-9331-3d72feddfe41"),
    ("office", "e37fc753-ff3b-4958-9484-eaa9425c82bc"),
];

/// The TAP policy's defaults and bounds (Entra: default one hour; Graph
/// accepts 10 minutes to 30 days).
const TAP_DEFAULT_MINUTES: u32 = 60;
const TAP_MIN_MINUTES: i64 = 10;
const TAP_MAX_MINUTES: i64 = 43_200;
/// The policy's default TAP length.
const TAP_LENGTH: usize = 8;
/// No characters that read alike (0/O, 1/l/I), so a pass read out over a
/// call or typed from a chat message survives the trip.
const TAP_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// Reading a TAP: the general read permissions, or the TAP-only ones that
/// Learn lists as least privileged for it.
const READ_TAP: &[&str] = &[
    "UserAuthenticationMethod.Read.All",
    "UserAuthenticationMethod.ReadWrite.All",
    "UserAuthMethod-TAP.Read.All",
    "UserAuthMethod-TAP.ReadWrite.All",
];

const BASE: &str = "/v1.0/users/{id}/authentication";

/// This module's routes.
pub fn routes() -> Router<Sim> {
    let mut router = Router::new()
        .route(&format!("{BASE}/methods"), get(list_all))
        .route(&format!("{BASE}/passwordMethods"), get(list_password));
    for kind in [
        Kind::Phone,
        Kind::Email,
        Kind::Authenticator,
        Kind::Fido2,
        Kind::Tap,
    ] {
        let collection = match kind {
            Kind::Phone => list_route(kind).post(create_phone),
            Kind::Email => list_route(kind).post(create_email),
            Kind::Tap => list_route(kind).post(create_tap),
            Kind::Authenticator | Kind::Fido2 => list_route(kind),
        };
        router = router
            .route(&format!("{BASE}/{}", kind.segment()), collection)
            .route(
                &format!("{BASE}/{}/{{method_id}}", kind.segment()),
                item_route(kind),
            );
    }
    router
}

/// Whether a TAP can be used at `now`, and Graph's `methodUsabilityReason`.
pub fn tap_usability(tap: &Tap, now: OffsetDateTime) -> (bool, &'static str) {
    // A start far in the future can overflow; such a pass simply never ends.
    let end = tap
        .start
        .checked_add(time::Duration::minutes(i64::from(tap.lifetime_minutes)));
    if tap.usable_once && tap.used {
        (false, "OneTimeUsed")
    } else if now < tap.start {
        (false, "NotYetValid")
    } else if end.is_some_and(|end| now >= end) {
        (false, "Expired")
    } else {
        (true, "EnabledByPolicy")
    }
}

/// Reads a JSON request body into `T`, as Graph does: malformed JSON, unknown
/// properties and wrong types are 400 `Request_BadRequest`. An empty body
/// reads as `{}`, so that a request whose fields are all optional may omit it.
pub(crate) fn read_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, GraphError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text)
        .map_err(|e| GraphError::bad_request(format!("Invalid request body: {e}.")))
}

/// The kinds of method this API addresses one collection each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Phone,
    Email,
    Authenticator,
    Fido2,
    Tap,
}

impl Kind {
    fn of(method: &Method) -> Kind {
        match method {
            Method::Phone { .. } => Kind::Phone,
            Method::Email { .. } => Kind::Email,
            Method::MicrosoftAuthenticator { .. } => Kind::Authenticator,
            Method::Fido2 { .. } => Kind::Fido2,
            Method::TemporaryAccessPass(_) => Kind::Tap,
        }
    }

    /// The collection's path segment.
    fn segment(self) -> &'static str {
        match self {
            Kind::Phone => "phoneMethods",
            Kind::Email => "emailMethods",
            Kind::Authenticator => "microsoftAuthenticatorMethods",
            Kind::Fido2 => "fido2Methods",
            Kind::Tap => "temporaryAccessPassMethods",
        }
    }

    /// `@odata.type` of its items.
    fn odata_type(self) -> &'static str {
        match self {
            Kind::Phone => "#microsoft.graph.phoneAuthenticationMethod",
            Kind::Email => "#microsoft.graph.emailAuthenticationMethod",
            Kind::Authenticator => "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
            Kind::Fido2 => "#microsoft.graph.fido2AuthenticationMethod",
            Kind::Tap => "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
        }
    }

    /// How the audit log's `resultReason` names it.
    fn label(self) -> &'static str {
        match self {
            Kind::Phone => "phone",
            Kind::Email => "email",
            Kind::Authenticator => "Microsoft Authenticator",
            Kind::Fido2 => "FIDO2 security key",
            Kind::Tap => "temporary access pass",
        }
    }

    fn read_permission(self) -> &'static [&'static str] {
        match self {
            Kind::Tap => READ_TAP,
            _ => READ_METHODS,
        }
    }

    fn write_permission(self) -> &'static [&'static str] {
        match self {
            Kind::Tap => WRITE_TAP,
            _ => WRITE_METHODS,
        }
    }
}

/// The id Graph shows for a method: fixed for the password, phones and email.
fn method_id(method: &Method) -> &str {
    match method {
        Method::Phone { phone_type, .. } => phone_id(phone_type).unwrap_or_default(),
        Method::Email { .. } => EMAIL_METHOD_ID,
        Method::MicrosoftAuthenticator { id, .. } | Method::Fido2 { id, .. } => {
            id.as_deref().unwrap_or_default()
        }
        Method::TemporaryAccessPass(tap) => &tap.id,
    }
}

/// The fixed id of a phone type (ignoring case), if it is one.
fn phone_id(phone_type: &str) -> Option<&'static str> {
    PHONE_TYPES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(phone_type))
        .map(|(_, id)| *id)
}

/// A method as Graph returns it. The TAP secret is never part of it: only the
/// creation response adds it.
fn method_json(method: &Method, now: OffsetDateTime) -> Value {
    let kind = Kind::of(method);
    let mut value = match method {
        Method::Phone {
            phone_number,
            phone_type,
        } => json!({
            "phoneNumber": phone_number,
            "phoneType": phone_type,
            // SMS sign-in is off in the default authentication methods
            // policy, and never available on office phones.
            "smsSignInState": if phone_type == "mobile" { "notAllowedByPolicy" } else { "notSupported" },
        }),
        Method::Email { email_address } => json!({ "emailAddress": email_address }),
        Method::MicrosoftAuthenticator {
            display_name,
            phone_app_version,
            ..
        } => json!({
            "displayName": display_name,
            "deviceTag": "SoftwareTokenActivated",
            "phoneAppVersion": phone_app_version,
            // Null unless passwordless phone sign-in is registered.
            "createdDateTime": null,
        }),
        Method::Fido2 { display_name, .. } => json!({
            "displayName": display_name,
            "createdDateTime": null,
            "aaGuid": null,
            "model": null,
            "attestationCertificates": [],
            "attestationLevel": "notAttested",
        }),
        Method::TemporaryAccessPass(tap) => {
            let (usable, reason) = tap_usability(tap, now);
            json!({
                "temporaryAccessPass": null,
                "createdDateTime": rfc3339(tap.created),
                "startDateTime": rfc3339(tap.start),
                "lifetimeInMinutes": tap.lifetime_minutes,
                "isUsableOnce": tap.usable_once,
                "isUsable": usable,
                "methodUsabilityReason": reason,
            })
        }
    };
    if let Value::Object(map) = &mut value {
        map.insert("@odata.type".to_owned(), json!(kind.odata_type()));
        map.insert("id".to_owned(), json!(method_id(method)));
    }
    value
}

/// The password method every user has. Graph never returns the password, and
/// documents `createdDateTime` as not populated.
fn password_json() -> Value {
    json!({
        "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
        "id": PASSWORD_METHOD_ID,
        "password": null,
        "createdDateTime": null,
    })
}

/// `@odata.context` for `users('{id}')/authentication/{rest}`, naming the user
/// as the request did (Graph echoes the segment, with `@` encoded).
fn context(sim: &Sim, user: &str, rest: &str) -> String {
    format!(
        "{}/$metadata#users('{}')/authentication/{rest}",
        sim.graph_base(),
        user.replace('@', "%40")
    )
}

fn collection(sim: &Sim, user: &str, segment: &str, value: Vec<Value>) -> Json<Value> {
    Json(json!({
        "@odata.context": context(sim, user, segment),
        "value": value,
    }))
}

fn entity(sim: &Sim, user: &str, segment: &str, mut value: Value) -> Json<Value> {
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".to_owned(),
            json!(context(sim, user, &format!("{segment}/$entity"))),
        );
    }
    Json(value)
}

/// The index of the user addressed by id or UPN, 404 otherwise. Gives ids to
/// Authenticator and FIDO2 methods that have none (users added after seeding),
/// so that every method can be addressed.
fn user_index(tenant: &mut Tenant, id: &str) -> Result<usize, GraphError> {
    let index = tenant
        .user_index(id)
        .ok_or_else(|| GraphError::not_found(id))?;
    for method in &mut tenant.users[index].methods {
        if let Method::MicrosoftAuthenticator { id, .. } | Method::Fido2 { id, .. } = method
            && id.is_none()
        {
            *id = Some(uuid::Uuid::new_v4().to_string());
        }
    }
    Ok(index)
}

/// Appends the audit entry Entra writes when an admin (here, an app) changes
/// a user's security info.
fn audit(
    tenant: &mut Tenant,
    user: usize,
    caller: &Caller,
    now: OffsetDateTime,
    added: bool,
    kind: Kind,
) {
    let target = tenant.users[user].clone();
    let (activity, operation, verb) = if added {
        ("Admin registered security info", "Add", "registered")
    } else {
        ("Admin deleted security info", "Delete", "deleted")
    };
    let reason = format!("Admin {verb} {} method for user", kind.label());
    let (id, name) = caller.app();
    tenant.audit(
        now,
        Initiator::App { id, name },
        &target,
        Audit {
            service: "Authentication Methods",
            category: "UserManagement",
            activity,
            operation,
            result_reason: &reason,
            modified: Vec::new(),
            details: Vec::new(),
        },
    );
}

/// Checks a request body's optional `@odata.type` (the Python SDK sends it,
/// the JavaScript one does not).
fn check_type(given: Option<&str>, kind: Kind) -> Result<(), GraphError> {
    match given {
        Some(t)
            if !t
                .strip_prefix('#')
                .unwrap_or(t)
                .eq_ignore_ascii_case(kind.odata_type().trim_start_matches('#')) =>
        {
            Err(GraphError::bad_request(format!(
                "The @odata.type '{t}' does not match the collection; expected '{}'.",
                kind.odata_type()
            )))
        }
        _ => Ok(()),
    }
}

async fn list_all(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    caller.require(READ_METHODS)?;
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, &id)?;
    let value = std::iter::once(password_json())
        .chain(
            tenant.users[user]
                .methods
                .iter()
                .map(|m| method_json(m, now)),
        )
        .collect();
    Ok(collection(&sim, &id, "methods", value))
}

async fn list_password(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    caller.require(READ_METHODS)?;
    let mut tenant = sim.tenant();
    user_index(&mut tenant, &id)?;
    let mut password = password_json();
    if let Value::Object(map) = &mut password {
        // The collection's type is known, so its items carry no @odata.type.
        map.remove("@odata.type");
    }
    Ok(collection(&sim, &id, "passwordMethods", vec![password]))
}

fn list_route(kind: Kind) -> MethodRouter<Sim> {
    get(
        move |State(sim): State<Sim>, caller: Caller, Path(id): Path<String>| async move {
            list(&sim, &caller, &id, kind)
        },
    )
}

fn item_route(kind: Kind) -> MethodRouter<Sim> {
    get(
        move |State(sim): State<Sim>,
              caller: Caller,
              Path((id, method_id)): Path<(String, String)>| async move {
            get_one(&sim, &caller, &id, &method_id, kind)
        },
    )
    .delete(
        move |State(sim): State<Sim>,
              caller: Caller,
              Path((id, method_id)): Path<(String, String)>| async move {
            delete(&sim, &caller, &id, &method_id, kind)
        },
    )
}

fn list(sim: &Sim, caller: &Caller, id: &str, kind: Kind) -> Result<Json<Value>, GraphError> {
    caller.require(kind.read_permission())?;
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, id)?;
    let value = tenant.users[user]
        .methods
        .iter()
        .filter(|m| Kind::of(m) == kind)
        .map(|m| method_json(m, now))
        .collect();
    Ok(collection(sim, id, kind.segment(), value))
}

fn get_one(
    sim: &Sim,
    caller: &Caller,
    id: &str,
    method: &str,
    kind: Kind,
) -> Result<Json<Value>, GraphError> {
    caller.require(kind.read_permission())?;
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, id)?;
    let found = tenant.users[user]
        .methods
        .iter()
        .find(|m| Kind::of(m) == kind && method_id(m).eq_ignore_ascii_case(method))
        .ok_or_else(|| GraphError::not_found(method))?;
    Ok(entity(sim, id, kind.segment(), method_json(found, now)))
}

fn delete(
    sim: &Sim,
    caller: &Caller,
    id: &str,
    method: &str,
    kind: Kind,
) -> Result<StatusCode, GraphError> {
    caller.require(kind.write_permission())?;
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, id)?;
    let methods = &mut tenant.users[user].methods;
    let position = methods
        .iter()
        .position(|m| Kind::of(m) == kind && method_id(m).eq_ignore_ascii_case(method))
        .ok_or_else(|| GraphError::not_found(method))?;
    if let Method::Phone { phone_type, .. } = &methods[position]
        && phone_type == "mobile"
        && methods.iter().any(
            |m| matches!(m, Method::Phone { phone_type, .. } if phone_type == "alternateMobile"),
        )
    {
        return Err(GraphError::bad_request(
            "The mobile phone method can't be deleted while an alternateMobile phone method exists; update the mobile phone method instead.",
        ));
    }
    methods.remove(position);
    audit(&mut tenant, user, caller, now, false, kind);
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST phoneMethods`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewPhone {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    phone_number: String,
    phone_type: String,
}

async fn create_phone(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, GraphError> {
    caller.require(WRITE_METHODS)?;
    let request: NewPhone = read_json(&body)?;
    check_type(request.odata_type.as_deref(), Kind::Phone)?;
    let phone_type = PHONE_TYPES
        .iter()
        .map(|(t, _)| *t)
        .find(|t| t.eq_ignore_ascii_case(&request.phone_type))
        .ok_or_else(|| {
            GraphError::bad_request(format!(
                "Invalid phoneType '{}': use mobile, alternateMobile or office.",
                request.phone_type
            ))
        })?;
    if !valid_phone_number(&request.phone_number) {
        return Err(GraphError::bad_request(format!(
            "Invalid phoneNumber '{}': use the format +{{country code}} {{number}}x{{extension}}, for example +1 5555551234.",
            request.phone_number
        )));
    }
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, &id)?;
    let methods = &mut tenant.users[user].methods;
    if methods
        .iter()
        .any(|m| matches!(m, Method::Phone { phone_type: t, .. } if t == phone_type))
    {
        return Err(GraphError::bad_request(format!(
            "A {phone_type} phone method is already registered for this user; update or delete it instead."
        )));
    }
    let method = Method::Phone {
        phone_number: request.phone_number,
        phone_type: phone_type.to_owned(),
    };
    let value = method_json(&method, now);
    methods.push(method);
    audit(&mut tenant, user, &caller, now, true, Kind::Phone);
    Ok((
        StatusCode::CREATED,
        entity(&sim, &id, Kind::Phone.segment(), value),
    ))
}

/// `+{country code} {number}` with an optional `x{extension}`, all digits, as
/// Graph requires of phone methods.
fn valid_phone_number(number: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((country, rest)) = number
        .strip_prefix('+')
        .and_then(|rest| rest.split_once(' '))
    else {
        return false;
    };
    let (subscriber, extension) = match rest.split_once('x') {
        Some((subscriber, extension)) => (subscriber, Some(extension)),
        None => (rest, None),
    };
    digits(country)
        && country.len() <= 3
        && digits(subscriber)
        && (4..=15).contains(&subscriber.len())
        && extension.is_none_or(digits)
}

/// The body of `POST emailMethods`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewEmail {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    email_address: String,
}

async fn create_email(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, GraphError> {
    caller.require(WRITE_METHODS)?;
    let request: NewEmail = read_json(&body)?;
    check_type(request.odata_type.as_deref(), Kind::Email)?;
    let valid = request
        .email_address
        .split_once('@')
        .is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !request.email_address.contains(' ')
        });
    if !valid {
        return Err(GraphError::bad_request(format!(
            "Invalid emailAddress '{}'.",
            request.email_address
        )));
    }
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, &id)?;
    let methods = &mut tenant.users[user].methods;
    if methods.iter().any(|m| Kind::of(m) == Kind::Email) {
        return Err(GraphError::bad_request(
            "An email method is already registered for this user (one per user); update or delete it instead.",
        ));
    }
    let method = Method::Email {
        email_address: request.email_address,
    };
    let value = method_json(&method, now);
    methods.push(method);
    audit(&mut tenant, user, &caller, now, true, Kind::Email);
    Ok((
        StatusCode::CREATED,
        entity(&sim, &id, Kind::Email.segment(), value),
    ))
}

/// The body of `POST temporaryAccessPassMethods`; every field is optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewTap {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    start_date_time: Option<String>,
    lifetime_in_minutes: Option<i64>,
    is_usable_once: Option<bool>,
}

async fn create_tap(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, GraphError> {
    caller.require(WRITE_TAP)?;
    let request: NewTap = read_json(&body)?;
    check_type(request.odata_type.as_deref(), Kind::Tap)?;
    let lifetime = match request.lifetime_in_minutes {
        None => TAP_DEFAULT_MINUTES,
        Some(m) => u32::try_from(m)
            .ok()
            .filter(|_| (TAP_MIN_MINUTES..=TAP_MAX_MINUTES).contains(&m))
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "lifetimeInMinutes must be between {TAP_MIN_MINUTES} and {TAP_MAX_MINUTES}; got {m}."
                ))
            })?,
    };
    let now = sim.now();
    let start = match &request.start_date_time {
        None => now,
        Some(s) => OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
            GraphError::bad_request(format!(
                "Invalid startDateTime '{s}' ({e}); use an ISO 8601 instant such as 2026-06-05T00:00:00Z."
            ))
        })?,
    };
    let secret = new_secret()?;
    let mut tenant = sim.tenant();
    let user = user_index(&mut tenant, &id)?;
    let tap = Tap {
        id: uuid::Uuid::new_v4().to_string(),
        secret,
        created: now,
        start,
        lifetime_minutes: lifetime,
        usable_once: request.is_usable_once.unwrap_or(false),
        used: false,
    };
    let mut value = method_json(&Method::TemporaryAccessPass(tap.clone()), now);
    value["temporaryAccessPass"] = json!(tap.secret);
    // One TAP per user: a new one replaces whatever pass the user had.
    let methods = &mut tenant.users[user].methods;
    methods.retain(|m| Kind::of(m) != Kind::Tap);
    methods.push(Method::TemporaryAccessPass(tap));
    audit(&mut tenant, user, &caller, now, true, Kind::Tap);
    Ok((
        StatusCode::CREATED,
        entity(&sim, &id, Kind::Tap.segment(), value),
    ))
}

/// A new pass: [`TAP_LENGTH`] characters of [`TAP_ALPHABET`] from the OS
/// CSPRNG, drawn without modulo bias.
fn new_secret() -> Result<String, GraphError> {
    let len = TAP_ALPHABET.len();
    // The largest multiple of the alphabet's size that fits in a byte: bytes
    // at or above it are discarded so that every character is equally likely.
    let limit = 256 - 256 % len;
    let mut secret = String::with_capacity(TAP_LENGTH);
    let mut buffer = [0u8; 32];
    while secret.len() < TAP_LENGTH {
        OsRng.try_fill_bytes(&mut buffer).map_err(|_| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UnknownError",
                "The operating system's random number generator failed.",
            )
        })?;
        for byte in buffer.iter().map(|b| usize::from(*b)) {
            if byte < limit && secret.len() < TAP_LENGTH {
                secret.push(char::from(TAP_ALPHABET[byte % len]));
            }
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(start: OffsetDateTime, minutes: u32, once: bool, used: bool) -> Tap {
        Tap {
            id: "t".to_owned(),
            secret: "s".to_owned(),
            created: start,
            start,
            lifetime_minutes: minutes,
            usable_once: once,
            used,
        }
    }

    #[test]
    fn tap_usability_follows_start_lifetime_and_use() {
        let now = OffsetDateTime::now_utc();
        let minute = time::Duration::minutes(1);
        assert_eq!(
            tap_usability(&tap(now, 60, false, false), now),
            (true, "EnabledByPolicy")
        );
        assert_eq!(
            tap_usability(&tap(now + minute, 60, false, false), now),
            (false, "NotYetValid")
        );
        assert_eq!(
            tap_usability(&tap(now - 60 * minute, 60, false, false), now),
            (false, "Expired")
        );
        assert_eq!(
            tap_usability(&tap(now - 59 * minute, 60, false, false), now),
            (true, "EnabledByPolicy")
        );
        assert_eq!(
            tap_usability(&tap(now, 60, true, true), now),
            (false, "OneTimeUsed")
        );
        // `used` means nothing for a multi-use pass.
        assert_eq!(
            tap_usability(&tap(now, 60, false, true), now),
            (true, "EnabledByPolicy")
        );
    }

    #[test]
    fn a_start_at_the_end_of_time_does_not_overflow() {
        let start = time::PrimitiveDateTime::MAX.assume_utc();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            tap_usability(&tap(start, 43_200, false, false), now),
            (false, "NotYetValid")
        );
    }

    #[test]
    fn secrets_are_eight_unambiguous_characters_and_differ() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_eq!(a.len(), TAP_LENGTH);
        assert!(a.bytes().all(|c| TAP_ALPHABET.contains(&c)), "{a}");
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']));
        assert_ne!(a, b);
    }

    #[test]
    fn phone_numbers_need_graphs_format() {
        assert!(valid_phone_number("+1 5555551234"));
        assert!(valid_phone_number("+44 2071234567x12"));
        assert!(!valid_phone_number("5555551234"));
        assert!(!valid_phone_number("+1 555-555-1234"));
        assert!(!valid_phone_number("+1 5555551234x"));
        assert!(!valid_phone_number("+1234 5555551234"));
    }

    #[test]
    fn bodies_reject_unknown_fields_and_accept_an_empty_body() {
        let empty: NewTap = read_json(&Bytes::from_static(b"")).unwrap();
        assert!(empty.lifetime_in_minutes.is_none());
        let typed: NewTap = read_json(&Bytes::from_static(
            br##"{"@odata.type":"#microsoft.graph.temporaryAccessPassAuthenticationMethod","isUsableOnce":true}"##,
        ))
        .unwrap();
        assert_eq!(typed.is_usable_once, Some(true));
        let err = read_json::<NewTap>(&Bytes::from_static(br#"{"lifetime":60}"#))
            .err()
            .unwrap();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("lifetime"), "{}", err.message);
        assert!(read_json::<NewTap>(&Bytes::from_static(b"{not json")).is_err());
    }

    #[test]
    fn phone_ids_are_fixed_per_type() {
        let phone = Method::Phone {
            phone_number: "+1 5555551234".to_owned(),
            phone_type: "alternateMobile".to_owned(),
        };
        assert_eq!(method_id(&phone), "b6332ec1-7057-4abe-9331-3d72feddfe41");
        let email = Method::Email {
            email_address: "a@b.c".to_owned(),
        };
        assert_eq!(method_id(&email), EMAIL_METHOD_ID);
    }
}
