//! Graph's user routes: reading users and what hangs off them (manager,
//! memberships, devices), and the three writes an "I can't log in" agent
//! makes: setting `passwordProfile` or `accountEnabled`, revoking sessions,
//! and sending mail as a user.
//!
//! | Route | Permission |
//! |---|---|
//! | `GET /v1.0/users` (`$filter`, `$select`, `$top`, paging) | [`READ_USERS`] |
//! | `GET /v1.0/users/{id or UPN}` (`$select`) | [`READ_USERS`] |
//! | `GET .../manager` (`$select`) | [`READ_USERS`] |
//! | `GET .../memberOf`, `.../transitiveMemberOf` (`[/microsoft.graph.group]`) | [`READ_MEMBERSHIP`] |
//! | `GET .../ownedDevices`, `.../registeredDevices` | [`READ_USERS`] |
//! | `PATCH /v1.0/users/{id}` (`passwordProfile`, `accountEnabled`) | [`WRITE_PASSWORD`] (+ a role), [`ENABLE_DISABLE`] |
//! | `POST .../revokeSignInSessions` | [`REVOKE_SESSIONS`] |
//! | `POST .../sendMail` | [`SEND_MAIL`] |
//!
//! Graph returns a fixed default set of user properties and the rest only on
//! `$select` (`accountEnabled`, `lastPasswordChangeDateTime`, ...); that
//! split is the trap clients fall into, so it is reproduced exactly,
//! including `null` for selected properties without a value.
//!
//! Permissions are checked before the user is looked up, as Graph does, so a
//! caller without them learns nothing about who exists.

use std::collections::HashSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::sim::auth::{
    Caller, ENABLE_DISABLE, READ_AUDIT, READ_MEMBERSHIP, READ_USERS, REVOKE_SESSIONS, SEND_MAIL,
    WRITE_PASSWORD,
};
use crate::sim::directory::stable_guid;
use crate::sim::error::GraphError;
use crate::sim::model::{Device, Group, Tenant, User, roles};
use crate::sim::odata::{self, Filterable, Kind, Op, Opt, Query, Resource, Spec};
use crate::sim::state::{Audit, Initiator, Sim, rfc3339};

/// The properties Graph v1.0 returns without `$select`.
pub const DEFAULT_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

/// Every v1.0 user property `$select` accepts. Those the emulator does not
/// model come back as `null` (or `[]` for collections), as they do for a
/// real user who has no value for them.
const USER_PROPERTIES: &[&str] = &[
    "aboutMe",
    "accountEnabled",
    "ageGroup",
    "assignedLicenses",
    "assignedPlans",
    "birthday",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "createdDateTime",
    "creationType",
    "deletedDateTime",
    "department",
    "displayName",
    "employeeHireDate",
    "employeeId",
    "employeeLeaveDateTime",
    "employeeOrgData",
    "employeeType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "givenName",
    "hireDate",
    "id",
    "identities",
    "imAddresses",
    "interests",
    "isResourceAccount",
    "jobTitle",
    "lastPasswordChangeDateTime",
    "legalAgeGroupClassification",
    "licenseAssignmentStates",
    "mail",
    "mailNickname",
    "mobilePhone",
    "mySite",
    "officeLocation",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesProvisioningErrors",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "pastProjects",
    "postalCode",
    "preferredDataLocation",
    "preferredLanguage",
    "preferredName",
    "provisionedPlans",
    "proxyAddresses",
    "responsibilities",
    "schools",
    "securityIdentifier",
    "showInAddressList",
    "signInActivity",
    "signInSessionsValidFromDateTime",
    "skills",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];

/// Collection-valued user properties: empty is `[]`, never `null`.
const USER_COLLECTIONS: &[&str] = &[
    "assignedLicenses",
    "assignedPlans",
    "businessPhones",
    "identities",
    "imAddresses",
    "interests",
    "licenseAssignmentStates",
    "onPremisesProvisioningErrors",
    "otherMails",
    "pastProjects",
    "provisionedPlans",
    "proxyAddresses",
    "responsibilities",
    "schools",
    "skills",
];

const STRING_EQ_PREFIX: &[Op] = &[Op::Eq, Op::StartsWith];

static USER: Resource = Resource {
    entity_type: "microsoft.graph.user",
    display: "User",
    properties: USER_PROPERTIES,
    filterable: &[
        Filterable {
            path: "id",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "userPrincipalName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "accountEnabled",
            kind: Kind::Bool,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "displayName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "department",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "mail",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
    ],
};

/// `GET /users`: Graph pages users 100 at a time, at most 999.
static LIST_USERS: Spec = Spec {
    resource: &USER,
    options: &[Opt::Filter, Opt::Select, Opt::Top, Opt::SkipToken],
    default_top: 100,
    max_top: 999,
};

/// One user, or the manager: only `$select`.
static ONE_USER: Spec = Spec {
    resource: &USER,
    options: &[Opt::Select],
    default_top: 1,
    max_top: 1,
};

/// The union of what groups, directory roles and devices carry, which is
/// what `$select` may name on the directoryObject collections.
static DIRECTORY_OBJECT: Resource = Resource {
    entity_type: "microsoft.graph.directoryObject",
    display: "DirectoryObject",
    properties: &[
        "id",
        "deletedDateTime",
        "displayName",
        "description",
        "mail",
        "mailEnabled",
        "securityEnabled",
        "groupTypes",
        "roleTemplateId",
        "deviceId",
        "operatingSystem",
        "operatingSystemVersion",
        "accountEnabled",
        "approximateLastSignInDateTime",
        "registrationDateTime",
        "isCompliant",
        "isManaged",
        "trustType",
        "profileType",
    ],
    filterable: &[],
};

/// memberOf, transitiveMemberOf and the device lists.
static DIRECTORY_OBJECTS: Spec = Spec {
    resource: &DIRECTORY_OBJECT,
    options: &[Opt::Select, Opt::Top, Opt::SkipToken],
    default_top: 100,
    max_top: 999,
};

/// Entra's longest password.
const MAX_PASSWORD_CHARS: usize = 256;

/// Graph's message for a password that fails the policy. It says no more, so
/// neither do we: clients must not depend on which rule failed.
const COMPLEXITY_MESSAGE: &str = "The specified password does not comply with password complexity requirements. Please provide a different password.";

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/v1.0/users", get(list_users))
        .route("/v1.0/users/{id}", get(get_user).patch(update_user))
        .route("/v1.0/users/{id}/manager", get(manager))
        .route("/v1.0/users/{id}/memberOf", get(member_of))
        .route("/v1.0/users/{id}/memberOf/{cast}", get(member_of_cast))
        .route(
            "/v1.0/users/{id}/transitiveMemberOf",
            get(transitive_member_of),
        )
        .route(
            "/v1.0/users/{id}/transitiveMemberOf/{cast}",
            get(transitive_member_of_cast),
        )
        .route("/v1.0/users/{id}/ownedDevices", get(owned_devices))
        .route(
            "/v1.0/users/{id}/registeredDevices",
            get(registered_devices),
        )
        .route(
            "/v1.0/users/{id}/revokeSignInSessions",
            post(revoke_sessions),
        )
        .route("/v1.0/users/{id}/sendMail", post(send_mail))
}

/// The absolute URL of the collection being read, for its nextLink.
fn link_base(sim: &Sim, uri: &Uri) -> String {
    let path = uri.path();
    format!(
        "{}{}",
        sim.graph_base(),
        path.strip_prefix("/v1.0").unwrap_or(path)
    )
}

/// An instant as Graph writes user timestamps: whole seconds, `Z`.
fn seconds_z(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn text(value: &Option<String>) -> Value {
    value
        .as_deref()
        .map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// One property of `user` as Graph returns it.
fn user_property(tenant: &Tenant, user: &User, name: &str) -> Value {
    match name {
        "id" => json!(user.id),
        "displayName" => json!(user.display_name),
        "givenName" => text(&user.given_name),
        "surname" => text(&user.surname),
        "mail" => text(&user.mail),
        "jobTitle" => text(&user.job_title),
        "mobilePhone" => text(&user.mobile_phone),
        "officeLocation" => text(&user.office_location),
        "userPrincipalName" => json!(user.user_principal_name),
        "accountEnabled" => json!(user.account_enabled),
        "department" => text(&user.department),
        "onPremisesSyncEnabled" => json!(user.on_premises_sync_enabled),
        "lastPasswordChangeDateTime" => json!(seconds_z(user.last_password_change)),
        "passwordPolicies" => json!(user.password_policies),
        // Graph never returns a password, even when asked for the profile.
        "passwordProfile" => Value::Null,
        "signInSessionsValidFromDateTime" => {
            json!(seconds_z(user.sessions_valid_from.unwrap_or(user.created)))
        }
        "userType" => json!(user.user_type),
        "createdDateTime" => json!(seconds_z(user.created)),
        "mailNickname" => json!(
            user.user_principal_name
                .split('@')
                .next()
                .unwrap_or_default()
        ),
        "identities" => json!([{
            "signInType": "userPrincipalName",
            "issuer": user.user_principal_name.rsplit('@').next().unwrap_or_default(),
            "issuerAssignedId": user.user_principal_name,
        }]),
        "proxyAddresses" => match &user.mail {
            Some(mail) => json!([format!("SMTP:{mail}")]),
            None => json!([]),
        },
        "signInActivity" => sign_in_activity(tenant, user),
        collection if USER_COLLECTIONS.contains(&collection) => json!([]),
        _ => Value::Null,
    }
}

/// `signInActivity` from the sign-in log (all of it is interactive).
fn sign_in_activity(tenant: &Tenant, user: &User) -> Value {
    let mine = || tenant.sign_ins.iter().filter(|s| s.user_id == user.id);
    let Some(last) = mine().max_by_key(|s| s.created) else {
        return Value::Null;
    };
    let success = mine()
        .filter(|s| s.error_code == 0)
        .max_by_key(|s| s.created);
    json!({
        "lastSignInDateTime": seconds_z(last.created),
        "lastSignInRequestId": last.id,
        "lastNonInteractiveSignInDateTime": null,
        "lastNonInteractiveSignInRequestId": null,
        "lastSuccessfulSignInDateTime": success.map(|s| seconds_z(s.created)),
        "lastSuccessfulSignInRequestId": success.map(|s| s.id.clone()),
    })
}

/// `user` with the default properties, or exactly those of `$select`.
fn render_user(tenant: &Tenant, user: &User, select: Option<&[String]>) -> Map<String, Value> {
    match select {
        Some(names) => names
            .iter()
            .map(|n| (n.clone(), user_property(tenant, user, n)))
            .collect(),
        None => DEFAULT_PROPERTIES
            .iter()
            .map(|n| ((*n).to_owned(), user_property(tenant, user, n)))
            .collect(),
    }
}

/// What `$filter` sees of a user.
fn filter_view(tenant: &Tenant, user: &User) -> Value {
    let view: Map<String, Value> = USER
        .filterable
        .iter()
        .map(|f| (f.path.to_owned(), user_property(tenant, user, f.path)))
        .collect();
    Value::Object(view)
}

/// `signInActivity` is audit data: Graph wants `AuditLog.Read.All` for it.
fn require_for_select(caller: &Caller, query: &Query) -> Result<(), GraphError> {
    if query.selects("signInActivity") {
        caller.require(READ_AUDIT)?;
    }
    Ok(())
}

async fn list_users(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_USERS)?;
    let query = Query::parse(raw.as_deref(), &LIST_USERS)?;
    require_for_select(&caller, &query)?;
    let tenant = sim.tenant();
    let matching: Vec<&User> = tenant
        .users
        .iter()
        .filter(|u| query.matches(&filter_view(&tenant, u)))
        .collect();
    let (page, next) = query.page(matching, |u| u.id.clone(), &link_base(&sim, &uri))?;
    let select = query.select.as_deref();
    let value = page
        .iter()
        .map(|u| Value::Object(render_user(&tenant, u, select)))
        .collect();
    let context = odata::context(&sim.graph_base(), "users", select, false);
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, value, next),
    ))
}

async fn get_user(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_USERS)?;
    let query = Query::parse(raw.as_deref(), &ONE_USER)?;
    require_for_select(&caller, &query)?;
    let tenant = sim.tenant();
    let user = tenant.user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let select = query.select.as_deref();
    let mut body = render_user(&tenant, user, select);
    body.insert(
        "@odata.context".to_owned(),
        json!(odata::context(&sim.graph_base(), "users", select, true)),
    );
    Ok(odata::respond(StatusCode::OK, &Value::Object(body)))
}

async fn manager(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_USERS)?;
    let query = Query::parse(raw.as_deref(), &ONE_USER)?;
    require_for_select(&caller, &query)?;
    let tenant = sim.tenant();
    let user = tenant.user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let manager = user
        .manager
        .as_deref()
        .and_then(|m| tenant.user(m))
        .ok_or_else(|| GraphError::not_found("manager"))?;
    let select = query.select.as_deref();
    let mut body = render_user(&tenant, manager, select);
    body.insert(
        "@odata.context".to_owned(),
        json!(odata::context(
            &sim.graph_base(),
            "directoryObjects",
            select,
            true
        )),
    );
    body.insert("@odata.type".to_owned(), json!("#microsoft.graph.user"));
    Ok(odata::respond(StatusCode::OK, &Value::Object(body)))
}

fn group_json(group: &Group) -> Value {
    // The model has no groupTypes: a mail-enabled group that is not a
    // security group is what Entra calls a Microsoft 365 ("Unified") group.
    let group_types = if group.mail_enabled && !group.security_enabled {
        json!(["Unified"])
    } else {
        json!([])
    };
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": group.id,
        "deletedDateTime": null,
        "displayName": group.display_name,
        "description": null,
        "mail": null,
        "mailEnabled": group.mail_enabled,
        "securityEnabled": group.security_enabled,
        "groupTypes": group_types,
    })
}

/// An activated directory role as `memberOf` lists it. Its object id is
/// tenant-specific in Entra; here it is derived from tenant and template so
/// that it is stable across requests and restarts.
fn role_json(tenant: &Tenant, template_id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": stable_guid(&format!("directoryRole/{}/{}", tenant.id, template_id.to_ascii_lowercase())),
        "deletedDateTime": null,
        "displayName": roles::display_name(template_id),
        "description": null,
        "roleTemplateId": template_id,
    })
}

fn device_json(device: &Device) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.device",
        "id": device.id,
        "deletedDateTime": null,
        "accountEnabled": true,
        "approximateLastSignInDateTime": null,
        "deviceId": device.device_id,
        "displayName": device.display_name,
        "isCompliant": device.is_compliant,
        "isManaged": device.is_managed,
        "operatingSystem": device.operating_system,
        "operatingSystemVersion": device.operating_system_version,
        "profileType": "RegisteredDevice",
        "registrationDateTime": null,
        "trustType": device.trust_type,
    })
}

fn group_by_id<'t>(tenant: &'t Tenant, id: &str) -> Option<&'t Group> {
    tenant.groups.iter().find(|g| g.id.eq_ignore_ascii_case(id))
}

/// The user's groups, directly or (with `transitive`) through nesting, each
/// once, then their directory roles.
fn memberships(tenant: &Tenant, user: &User, transitive: bool) -> Vec<Value> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut groups: Vec<&Group> = Vec::new();
    let mut queue: Vec<&str> = user.groups.iter().map(String::as_str).collect();
    // Breadth-first; `seen` also stops cycles in a hand-written seed.
    let mut i = 0;
    while i < queue.len() {
        let id = queue[i];
        i += 1;
        let Some(group) = group_by_id(tenant, id) else {
            continue;
        };
        if !seen.insert(group.id.to_ascii_lowercase()) {
            continue;
        }
        groups.push(group);
        if transitive {
            queue.extend(group.groups.iter().map(String::as_str));
        }
    }
    let mut roles_seen: HashSet<String> = HashSet::new();
    groups
        .into_iter()
        .map(group_json)
        .chain(
            user.roles
                .iter()
                .filter(|r| roles_seen.insert(r.to_ascii_lowercase()))
                .map(|r| role_json(tenant, r)),
        )
        .collect()
}

/// Which objects a directoryObject collection holds, for its context.
#[derive(Clone, Copy)]
enum Cast {
    All,
    Groups,
    Roles,
}

impl Cast {
    fn parse(segment: &str) -> Result<Cast, GraphError> {
        match segment {
            "microsoft.graph.group" => Ok(Cast::Groups),
            "microsoft.graph.directoryRole" => Ok(Cast::Roles),
            other => Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Resource not found for the segment '{other}'."),
            )),
        }
    }

    fn keeps(self, item: &Value) -> bool {
        let kind = item.get("@odata.type").and_then(Value::as_str);
        match self {
            Cast::All => true,
            Cast::Groups => kind == Some("#microsoft.graph.group"),
            Cast::Roles => kind == Some("#microsoft.graph.directoryRole"),
        }
    }

    fn set(self) -> &'static str {
        match self {
            Cast::All => "directoryObjects",
            Cast::Groups => "groups",
            Cast::Roles => "directoryRoles",
        }
    }
}

/// Responds with a page of directory objects, honouring `$select` (which
/// keeps `@odata.type`, and leaves out what an item's type does not have).
fn directory_objects(
    sim: &Sim,
    uri: &Uri,
    query: &Query,
    cast: Cast,
    items: Vec<Value>,
) -> Result<Response, GraphError> {
    let items: Vec<Value> = items.into_iter().filter(|i| cast.keeps(i)).collect();
    let key = |item: &Value| {
        item.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (page, next) = query.page(items, key, &link_base(sim, uri))?;
    let select = query.select.as_deref();
    let value = page
        .into_iter()
        .map(|item| match (select, item) {
            (Some(names), Value::Object(full)) => {
                let mut kept = Map::new();
                if let Some(kind) = full.get("@odata.type") {
                    kept.insert("@odata.type".to_owned(), kind.clone());
                }
                for name in names {
                    if let Some(v) = full.get(name) {
                        kept.insert(name.clone(), v.clone());
                    }
                }
                Value::Object(kept)
            }
            (_, item) => item,
        })
        .collect();
    let context = odata::context(&sim.graph_base(), cast.set(), select, false);
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, value, next),
    ))
}

fn membership_response(
    sim: &Sim,
    caller: &Caller,
    uri: &Uri,
    raw: Option<&str>,
    id: &str,
    cast: Cast,
    transitive: bool,
) -> Result<Response, GraphError> {
    caller.require(READ_MEMBERSHIP)?;
    let query = Query::parse(raw, &DIRECTORY_OBJECTS)?;
    let items = {
        let tenant = sim.tenant();
        let user = tenant.user(id).ok_or_else(|| GraphError::not_found(id))?;
        memberships(&tenant, user, transitive)
    };
    directory_objects(sim, uri, &query, cast, items)
}

async fn member_of(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    membership_response(&sim, &caller, &uri, raw.as_deref(), &id, Cast::All, false)
}

async fn member_of_cast(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    Path((id, cast)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_MEMBERSHIP)?;
    let cast = Cast::parse(&cast)?;
    membership_response(&sim, &caller, &uri, raw.as_deref(), &id, cast, false)
}

async fn transitive_member_of(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    membership_response(&sim, &caller, &uri, raw.as_deref(), &id, Cast::All, true)
}

async fn transitive_member_of_cast(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    Path((id, cast)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_MEMBERSHIP)?;
    let cast = Cast::parse(&cast)?;
    membership_response(&sim, &caller, &uri, raw.as_deref(), &id, cast, true)
}

/// Which devices of a user to list.
#[derive(Clone, Copy)]
enum Devices {
    Owned,
    Registered,
}

fn devices_response(
    sim: &Sim,
    caller: &Caller,
    uri: &Uri,
    raw: Option<&str>,
    id: &str,
    which: Devices,
) -> Result<Response, GraphError> {
    caller.require(READ_USERS)?;
    let query = Query::parse(raw, &DIRECTORY_OBJECTS)?;
    let items = {
        let tenant = sim.tenant();
        let user = tenant.user(id).ok_or_else(|| GraphError::not_found(id))?;
        // Seeds may name users by UPN or id: compare resolved object ids.
        let is_user = |reference: &str| tenant.user(reference).is_some_and(|u| u.id == user.id);
        tenant
            .devices
            .iter()
            .filter(|d| match which {
                Devices::Owned => d.owner.as_deref().is_some_and(is_user),
                Devices::Registered => d.registered_users.iter().any(|r| is_user(r)),
            })
            .map(device_json)
            .collect()
    };
    directory_objects(sim, uri, &query, Cast::All, items)
}

async fn owned_devices(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    devices_response(&sim, &caller, &uri, raw.as_deref(), &id, Devices::Owned)
}

async fn registered_devices(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    devices_response(
        &sim,
        &caller,
        &uri,
        raw.as_deref(),
        &id,
        Devices::Registered,
    )
}

/// Reads a JSON object body; anything else is Graph's 400.
fn json_object(body: &Bytes) -> Result<Map<String, Value>, GraphError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GraphError::bad_request(
            "Invalid request body: expected a JSON object.",
        )),
        Err(e) => Err(GraphError::bad_request(format!(
            "Invalid request body: {e}."
        ))),
    }
}

fn no_such_property(name: &str) -> GraphError {
    GraphError::bad_request(format!(
        "Property '{name}' does not exist as a declared property or extension property."
    ))
}

/// `@odata.type` that SDKs add to bodies: accepted when it names the type.
fn odata_type_ok(value: &Value, expected: &str) -> Result<(), GraphError> {
    match value.as_str() {
        Some(t) if t.eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(GraphError::bad_request(format!(
            "Invalid @odata.type {value}: expected \"{expected}\"."
        ))),
    }
}

/// What a `PATCH /users/{id}` asks for, validated. Deliberately not
/// `Debug`: it holds a password.
#[derive(Default)]
struct Update {
    /// `(password, forceChangePasswordNextSignIn)`.
    password: Option<(String, bool)>,
    account_enabled: Option<bool>,
}

impl Update {
    fn read(body: &Bytes) -> Result<Update, GraphError> {
        let mut update = Update::default();
        for (name, value) in json_object(body)? {
            match name.as_str() {
                "passwordProfile" => update.password = Some(password_profile(&value)?),
                "accountEnabled" => match value {
                    Value::Bool(b) => update.account_enabled = Some(b),
                    other => {
                        return Err(GraphError::bad_request(format!(
                            "Invalid value for 'accountEnabled': expected true or false, got {other}."
                        )));
                    }
                },
                "@odata.type" => odata_type_ok(&value, "#microsoft.graph.user")?,
                known if USER_PROPERTIES.contains(&known) => {
                    return Err(GraphError::bad_request(format!(
                        "Updating '{known}' is not supported by the emulator: PATCH /users/{{id}} updates passwordProfile and accountEnabled."
                    )));
                }
                unknown => return Err(no_such_property(unknown)),
            }
        }
        Ok(update)
    }
}

fn password_profile(value: &Value) -> Result<(String, bool), GraphError> {
    let Value::Object(profile) = value else {
        return Err(GraphError::bad_request(
            "Invalid value for 'passwordProfile': expected an object with password and forceChangePasswordNextSignIn.",
        ));
    };
    let mut password = None;
    let mut force = false;
    for (name, value) in profile {
        match (name.as_str(), value) {
            ("password", Value::String(p)) => password = Some(p.clone()),
            ("forceChangePasswordNextSignIn", Value::Bool(b)) => force = *b,
            ("password" | "forceChangePasswordNextSignIn", other) => {
                return Err(GraphError::bad_request(format!(
                    "Invalid value for 'passwordProfile.{name}': {}.",
                    match other {
                        Value::Null => "null",
                        _ => "wrong type",
                    }
                )));
            }
            ("forceChangePasswordNextSignInWithMfa", _) => {
                return Err(GraphError::bad_request(
                    "'forceChangePasswordNextSignInWithMfa' is not supported by the emulator.",
                ));
            }
            ("@odata.type", v) => odata_type_ok(v, "#microsoft.graph.passwordProfile")?,
            (unknown, _) => return Err(no_such_property(unknown)),
        }
    }
    let password =
        password.ok_or_else(|| GraphError::bad_request("'passwordProfile' needs a 'password'."))?;
    Ok((password, force))
}

/// Entra's password rules for an admin-set password: the tenant's minimum
/// length, at most 256 characters of printable ASCII, three of the four
/// character classes, and none of the user's names in it.
pub fn check_password(password: &str, user: &User, min_length: usize) -> Result<(), GraphError> {
    let rejected = || GraphError::bad_request(COMPLEXITY_MESSAGE);
    let length = password.chars().count();
    if length < min_length || length > MAX_PASSWORD_CHARS {
        return Err(rejected());
    }
    if !password.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return Err(rejected());
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return Err(rejected());
    }
    let lower = password.to_lowercase();
    let prefix = user
        .user_principal_name
        .split('@')
        .next()
        .unwrap_or_default();
    let names = [
        user.given_name.as_deref().unwrap_or_default(),
        user.surname.as_deref().unwrap_or_default(),
        prefix,
    ];
    // Two-letter names (Li, Ng) would forbid too much to be a real rule.
    if names
        .iter()
        .filter(|n| n.chars().count() >= 3)
        .any(|n| lower.contains(&n.to_lowercase()))
    {
        return Err(rejected());
    }
    Ok(())
}

/// A `modifiedProperties` entry: Entra writes old and new values as JSON
/// text of a one-element array.
fn modified(name: &str, old: Value, new: Value) -> Value {
    json!({
        "displayName": name,
        "oldValue": json!([old]).to_string(),
        "newValue": json!([new]).to_string(),
    })
}

fn included(names: &[&str]) -> Value {
    json!({
        "displayName": "Included Updated Properties",
        "oldValue": null,
        "newValue": Value::String(names.join(", ")).to_string(),
    })
}

async fn update_user(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    let update = Update::read(&body)?;
    if update.password.is_some() {
        caller.require(WRITE_PASSWORD)?;
    }
    if update.account_enabled.is_some() {
        caller.require(ENABLE_DISABLE)?;
    }
    let now = sim.now();
    let mut tenant = sim.tenant();
    let index = tenant
        .user_index(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let target = &tenant.users[index];
    if let Some((password, _)) = &update.password {
        // Delegated callers always need a role; app-only ones per the
        // tenant's setting (Learn and Graph's behaviour disagree on it).
        let role_needed =
            caller.user_id.is_some() || tenant.settings.app_password_reset_requires_role;
        if role_needed && !caller.may_reset_password_of(target) {
            return Err(GraphError::denied());
        }
        check_password(password, target, tenant.settings.password_min_length)?;
    }
    // Disabling an administrator takes the same standing as resetting one.
    if update.account_enabled.is_some()
        && !target.roles.is_empty()
        && !caller.may_reset_password_of(target)
    {
        return Err(GraphError::denied());
    }

    if let Some((password, force)) = update.password {
        let user = &mut tenant.users[index];
        let old_change = user.last_password_change;
        let old_force = user.force_change_password;
        user.password = password;
        user.last_password_change = now;
        user.force_change_password = force;
        // An admin reset is Entra's only unlock for smart lockout.
        user.lockout = Default::default();
        let target = user.clone();
        tenant.audit(
            now,
            Initiator::App {
                id: &caller.app_id,
                name: &caller.app_name,
            },
            &target,
            Audit {
                service: "Core Directory",
                category: "UserManagement",
                activity: "Reset password (by admin)",
                operation: "Update",
                result_reason: "",
                modified: vec![
                    modified(
                        "LastPasswordChangeDateTime",
                        json!(seconds_z(old_change)),
                        json!(seconds_z(now)),
                    ),
                    modified("ForceChangePassword", json!(old_force), json!(force)),
                    included(&["LastPasswordChangeDateTime", "ForceChangePassword"]),
                ],
                details: Vec::new(),
            },
        );
    }
    if let Some(enabled) = update.account_enabled {
        let user = &mut tenant.users[index];
        let old = user.account_enabled;
        user.account_enabled = enabled;
        let target = user.clone();
        tenant.audit(
            now,
            Initiator::App {
                id: &caller.app_id,
                name: &caller.app_name,
            },
            &target,
            Audit {
                service: "Core Directory",
                category: "UserManagement",
                activity: "Update user",
                operation: "Update",
                result_reason: "",
                modified: vec![
                    modified("AccountEnabled", json!(old), json!(enabled)),
                    included(&["AccountEnabled"]),
                ],
                details: Vec::new(),
            },
        );
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke_sessions(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, GraphError> {
    caller.require(REVOKE_SESSIONS)?;
    let now = sim.now();
    let mut tenant = sim.tenant();
    let index = tenant
        .user_index(&id)
        .ok_or_else(|| GraphError::not_found(&id))?;
    let user = &mut tenant.users[index];
    let old = user.sessions_valid_from.unwrap_or(user.created);
    user.sessions_valid_from = Some(now);
    let target = user.clone();
    tenant.audit(
        now,
        Initiator::App {
            id: &caller.app_id,
            name: &caller.app_name,
        },
        &target,
        Audit {
            service: "Core Directory",
            category: "UserManagement",
            activity: "Update StsRefreshTokenValidFrom Timestamp",
            operation: "Update",
            result_reason: "",
            modified: vec![
                modified(
                    "StsRefreshTokenValidFrom",
                    json!(seconds_z(old)),
                    json!(seconds_z(now)),
                ),
                included(&["StsRefreshTokenValidFrom"]),
            ],
            details: Vec::new(),
        },
    );
    let body = json!({
        "@odata.context": format!("{}/$metadata#Edm.Boolean", sim.graph_base()),
        "value": true,
    });
    Ok(odata::respond(StatusCode::OK, &body))
}

fn mail_error(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", message)
}

fn invalid_recipient(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidRecipients", message)
}

/// The addresses of a `toRecipients`-style array.
fn recipients(name: &str, value: &Value) -> Result<Vec<String>, GraphError> {
    let Value::Array(items) = value else {
        return Err(mail_error(format!(
            "'{name}' must be an array of recipients."
        )));
    };
    items
        .iter()
        .map(|item| {
            let address = item
                .get("emailAddress")
                .and_then(|e| e.get("address"))
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default();
            let shaped = address
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !address.contains(char::is_whitespace);
            if shaped {
                Ok(address.to_owned())
            } else {
                Err(invalid_recipient(format!(
                    "At least one recipient is not valid: {item} in '{name}' needs emailAddress.address, an email address."
                )))
            }
        })
        .collect()
}

/// A `sendMail` body, validated, as it goes into the outbox.
struct Mail {
    subject: String,
    content_type: &'static str,
    content: String,
    to: Vec<String>,
    cc: Vec<String>,
    bcc: Vec<String>,
    save_to_sent_items: bool,
}

impl Mail {
    fn read(body: &Bytes) -> Result<Mail, GraphError> {
        let mut message = None;
        let mut save_to_sent_items = true;
        for (name, value) in json_object(body)? {
            match (name.as_str(), value) {
                ("message", Value::Object(m)) => message = Some(m),
                ("saveToSentItems", Value::Bool(b)) => save_to_sent_items = b,
                ("saveToSentItems", Value::Null) => {}
                (known @ ("message" | "saveToSentItems"), other) => {
                    return Err(mail_error(format!("Invalid value for '{known}': {other}.")));
                }
                (unknown, _) => {
                    return Err(mail_error(format!(
                        "'{unknown}' is not a parameter of sendMail (message, saveToSentItems)."
                    )));
                }
            }
        }
        let message = message.ok_or_else(|| mail_error("sendMail needs a 'message'."))?;
        let mut mail = Mail {
            subject: String::new(),
            content_type: "text",
            content: String::new(),
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            save_to_sent_items,
        };
        for (name, value) in &message {
            match name.as_str() {
                "subject" => {
                    mail.subject = match value {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => return Err(mail_error(format!("Invalid subject: {other}."))),
                    }
                }
                "body" => (mail.content_type, mail.content) = item_body(value)?,
                "toRecipients" => mail.to = recipients(name, value)?,
                "ccRecipients" => mail.cc = recipients(name, value)?,
                "bccRecipients" => mail.bcc = recipients(name, value)?,
                "@odata.type" => odata_type_ok(value, "#microsoft.graph.message")?,
                other => {
                    return Err(mail_error(format!(
                        "The message property '{other}' is not supported by the emulator (subject, body, toRecipients, ccRecipients, bccRecipients)."
                    )));
                }
            }
        }
        if mail.to.is_empty() && mail.cc.is_empty() && mail.bcc.is_empty() {
            return Err(invalid_recipient(
                "At least one recipient is required, but none were found.",
            ));
        }
        Ok(mail)
    }
}

/// `body: {contentType: Text|HTML, content}`.
fn item_body(value: &Value) -> Result<(&'static str, String), GraphError> {
    let Value::Object(body) = value else {
        return Err(mail_error(
            "'body' must be an object with contentType and content.",
        ));
    };
    let mut content_type = "text";
    let mut content = String::new();
    for (name, value) in body {
        match (name.as_str(), value) {
            ("contentType", Value::String(t)) if t.eq_ignore_ascii_case("text") => {
                content_type = "text";
            }
            ("contentType", Value::String(t)) if t.eq_ignore_ascii_case("html") => {
                content_type = "html";
            }
            ("content", Value::String(c)) => content = c.clone(),
            ("content", Value::Null) => {}
            ("@odata.type", v) => odata_type_ok(v, "#microsoft.graph.itemBody")?,
            (name, other) => {
                return Err(mail_error(format!(
                    "Invalid body property '{name}': {other} (contentType is Text or HTML; content is a string)."
                )));
            }
        }
    }
    Ok((content_type, content))
}

async fn send_mail(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(SEND_MAIL)?;
    let mail = Mail::read(&body)?;
    let now = sim.now();
    let mut tenant = sim.tenant();
    let user = tenant.user(&id).ok_or_else(|| GraphError::not_found(&id))?;
    let Some(from) = user.mail.clone() else {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ));
    };
    let record = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "from": from,
        "fromUserId": user.id,
        "to": mail.to,
        "cc": mail.cc,
        "bcc": mail.bcc,
        "subject": mail.subject,
        "contentType": mail.content_type,
        "body": mail.content,
        "saveToSentItems": mail.save_to_sent_items,
        "sentDateTime": rfc3339(now),
        "sentByAppId": caller.app_id,
    });
    tenant.outbox.push(record);
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adele() -> User {
        serde_json::from_value(json!({
            "id": "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f",
            "user_principal_name": "adele.vance@contoso.com",
            "display_name": "Adele Vance",
            "given_name": "Adele",
            "surname": "Vance",
            "password": "x",
        }))
        .unwrap()
    }

    #[test]
    fn passwords_need_length_three_classes_and_none_of_the_names() {
        let user = adele();
        for good in ["Correct-Horse-42", "sunny day 42 Meadow", "Tr0ub4dor&3xyz"] {
            assert!(check_password(good, &user, 8).is_ok(), "{good}");
        }
        for bad in [
            "Short1!",            // too short
            "alllowercase123",    // two classes
            "ALLUPPER!!!!",       // two classes
            "Adele-Rocks-42",     // given name
            "Xx-VANCE-2024",      // surname, any case
            "adele.vance!A1",     // UPN prefix
            "Pässwörd-Ümlaut-1",  // not ASCII
            "Tab\tSeparated-Pw1", // control character
        ] {
            let error = check_password(bad, &user, 8).unwrap_err();
            assert_eq!(error.message, COMPLEXITY_MESSAGE, "{bad}");
        }
        assert!(
            check_password("Correct-Horse-42", &user, 20).is_err(),
            "tenant minimum"
        );
        let long = format!("Aa1-{}", "x".repeat(300));
        assert!(check_password(&long, &user, 8).is_err(), "256 at most");
    }

    #[test]
    fn updates_read_only_what_they_support() {
        let read = |body: Value| Update::read(&Bytes::from(body.to_string()));
        let update = read(json!({"passwordProfile": {"password": "P", "forceChangePasswordNextSignIn": true}, "accountEnabled": false})).unwrap();
        assert_eq!(update.password, Some(("P".to_owned(), true)));
        assert_eq!(update.account_enabled, Some(false));
        for bad in [
            json!({"displayName": "x"}),
            json!({"nosuch": 1}),
            json!({"accountEnabled": "false"}),
            json!({"passwordProfile": {"forceChangePasswordNextSignIn": true}}),
            json!({"passwordProfile": {"password": 12}}),
            json!({"passwordProfile": {"password": "x", "extra": 1}}),
            json!({"passwordProfile": "x"}),
            json!([1]),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
        assert!(Update::read(&Bytes::from_static(b"{not json")).is_err());
    }

    #[test]
    fn nested_groups_are_listed_once_even_in_a_cycle() {
        let mut tenant = crate::sim::seed::demo(OffsetDateTime::now_utc()).unwrap();
        let group = |id: &str, parents: &[&str]| -> Group {
            serde_json::from_value(json!({"id": id, "display_name": id, "groups": parents}))
                .unwrap()
        };
        tenant.groups = vec![group("a", &["b"]), group("b", &["c"]), group("c", &["a"])];
        let mut user = adele();
        user.groups = vec!["a".into()];
        user.roles = vec![roles::HELPDESK_ADMINISTRATOR.into()];
        let direct = memberships(&tenant, &user, false);
        assert_eq!(direct.len(), 2);
        let all = memberships(&tenant, &user, true);
        let ids: Vec<&str> = all.iter().filter_map(|v| v["id"].as_str()).collect();
        assert_eq!(&ids[..3], ["a", "b", "c"]);
        assert_eq!(all[3]["roleTemplateId"], roles::HELPDESK_ADMINISTRATOR);
        assert_eq!(all[3]["displayName"], "Helpdesk Administrator");
    }
}
