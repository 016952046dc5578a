//! Graph's directory-wide reads: the sign-in and audit logs, the registration
//! report, role assignments, Conditional Access policies and domains; and
//! the table of sign-in error codes ([`failure_reason`]).
//!
//! | Route | Permission |
//! |---|---|
//! | `GET /v1.0/auditLogs/signIns` (`$filter`, `$top`, paging) | [`READ_AUDIT`] |
//! | `GET /v1.0/auditLogs/directoryAudits` (`$filter`, `$top`, paging) | [`READ_AUDIT`] |
//! | `GET /v1.0/reports/authenticationMethods/userRegistrationDetails/{id}` | [`READ_AUDIT`] |
//! | `GET /v1.0/roleManagement/directory/roleAssignments` (`$filter` on principalId required, `$expand=roleDefinition`) | [`READ_ROLES`] |
//! | `GET /v1.0/identity/conditionalAccess/policies` | [`READ_POLICY`] |
//! | `GET /v1.0/domains`, `GET /v1.0/domains/{id}` | [`READ_DOMAINS`] |
//!
//! Logs are newest first, as Graph returns them. What the model does not
//! record about a sign-in (device, location) is reported the way Entra
//! reports an unknown one, empty or null, rather than invented.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::sim::auth::{Caller, READ_AUDIT, READ_DOMAINS, READ_POLICY, READ_ROLES};
use crate::sim::error::GraphError;
use crate::sim::model::{Domain, Method, SignIn, Tenant, roles};
use crate::sim::odata::{self, Filter, Filterable, Kind, Op, Opt, Query, Resource, Spec};
use crate::sim::state::{Sim, rfc3339};

/// `status.failureReason` as Entra's sign-in log words it for an error code;
/// `None` for success (Graph writes `null`). Codes without an entry read
/// "Other.", as Entra's log shows for codes it has no text for.
pub fn failure_reason(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => return None,
        50034 => {
            "The user account does not exist in the directory. To sign into this application, the account must be added to the directory."
        }
        50053 => {
            "Account is locked because user tried to sign in too many times with an incorrect user ID or password."
        }
        50055 => "The password is expired.",
        50056 => {
            "Invalid or null password: password does not exist in the directory for this user."
        }
        50057 => "User account is disabled. The account has been disabled by an administrator.",
        50072 => "User needs to enroll for second factor authentication.",
        50074 => "Strong Authentication is required.",
        50076 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource."
        }
        50079 => {
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access this resource."
        }
        50097 => "Device authentication is required.",
        50125 => "Sign-in was interrupted due to a password reset or password registration entry.",
        50126 => "Error validating credentials due to invalid username or password.",
        50132 => "The session is not valid due to password expiration or recent password change.",
        50133 => "Session is invalid due to expiration or recent password change.",
        50144 => "User's Active Directory password has expired.",
        50158 => "External security challenge was not satisfied.",
        50173 => {
            "The provided grant has expired due to it being revoked, a fresh auth token is needed."
        }
        53000 => "Device is not in required device state: compliant.",
        53001 => "Device is not in required device state: domain joined.",
        53002 => "Application used is not an approved application.",
        53003 => {
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
        }
        500121 => "Authentication failed during strong authentication request.",
        530032 => "Blocked by a Conditional Access policy on security information registration.",
        530035 => "Access has been blocked by security defaults.",
        _ => "Other.",
    })
}

/// `status.additionalDetails`, which Entra fills for a few codes only.
fn additional_details(code: u32) -> Option<&'static str> {
    match code {
        50126 => Some(
            "The user didn't enter the right credentials. It's expected to see some number of these errors in your logs due to users making mistakes.",
        ),
        _ => None,
    }
}

/// A GUID derived from `seed`: for ids the model does not store (directory
/// role objects, correlation ids) but that must stay the same from one
/// request to the next.
pub fn stable_guid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/v1.0/auditLogs/signIns", get(sign_ins))
        .route("/v1.0/auditLogs/directoryAudits", get(directory_audits))
        .route(
            "/v1.0/reports/authenticationMethods/userRegistrationDetails/{id}",
            get(registration_details),
        )
        .route(
            "/v1.0/roleManagement/directory/roleAssignments",
            get(role_assignments),
        )
        .route(
            "/v1.0/identity/conditionalAccess/policies",
            get(conditional_access_policies),
        )
        .route("/v1.0/domains", get(domains))
        .route("/v1.0/domains/{id}", get(domain))
}

fn link_base(sim: &Sim, uri: &Uri) -> String {
    let path = uri.path();
    format!(
        "{}{}",
        sim.graph_base(),
        path.strip_prefix("/v1.0").unwrap_or(path)
    )
}

const STRING_EQ_PREFIX: &[Op] = &[Op::Eq, Op::StartsWith];
const RANGE: &[Op] = &[Op::Eq, Op::Ge, Op::Le];

static SIGN_IN: Resource = Resource {
    entity_type: "microsoft.graph.signIn",
    display: "SignIn",
    properties: &[
        "id",
        "createdDateTime",
        "userDisplayName",
        "userPrincipalName",
        "userId",
        "appId",
        "appDisplayName",
        "ipAddress",
        "clientAppUsed",
        "correlationId",
        "conditionalAccessStatus",
        "isInteractive",
        "riskDetail",
        "riskLevelAggregated",
        "riskLevelDuringSignIn",
        "riskState",
        "riskEventTypes",
        "riskEventTypes_v2",
        "resourceDisplayName",
        "resourceId",
        "status",
        "deviceDetail",
        "location",
        "appliedConditionalAccessPolicies",
    ],
    filterable: &[
        Filterable {
            path: "id",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "userId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "userPrincipalName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "userDisplayName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "appId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "appDisplayName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "ipAddress",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "createdDateTime",
            kind: Kind::DateTime,
            ops: RANGE,
        },
        Filterable {
            path: "status/errorCode",
            kind: Kind::Int,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "conditionalAccessStatus",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "correlationId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
    ],
};

/// signIns: `$filter`, `$top` and paging only; 1,000 a page by default and at most.
static SIGN_INS: Spec = Spec {
    resource: &SIGN_IN,
    options: &[Opt::Filter, Opt::Top, Opt::SkipToken],
    default_top: 1000,
    max_top: 1000,
};

static DIRECTORY_AUDIT: Resource = Resource {
    entity_type: "microsoft.graph.directoryAudit",
    display: "DirectoryAudit",
    properties: &[
        "id",
        "category",
        "correlationId",
        "result",
        "resultReason",
        "activityDisplayName",
        "activityDateTime",
        "loggedByService",
        "operationType",
        "initiatedBy",
        "targetResources",
        "additionalDetails",
    ],
    filterable: &[
        Filterable {
            path: "id",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "activityDisplayName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "activityDateTime",
            kind: Kind::DateTime,
            ops: RANGE,
        },
        Filterable {
            path: "category",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "loggedByService",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "result",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "operationType",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "correlationId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "initiatedBy/app/appId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "initiatedBy/app/displayName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
        Filterable {
            path: "initiatedBy/user/id",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "initiatedBy/user/userPrincipalName",
            kind: Kind::String,
            ops: STRING_EQ_PREFIX,
        },
    ],
};

/// directoryAudits: `$filter`, `$top`, paging (no `$orderby`: always newest first).
static DIRECTORY_AUDITS: Spec = Spec {
    resource: &DIRECTORY_AUDIT,
    options: &[Opt::Filter, Opt::Top, Opt::SkipToken],
    default_top: 1000,
    max_top: 1000,
};

static ROLE_ASSIGNMENT: Resource = Resource {
    entity_type: "microsoft.graph.unifiedRoleAssignment",
    display: "UnifiedRoleAssignment",
    properties: &[
        "id",
        "principalId",
        "roleDefinitionId",
        "directoryScopeId",
        "appScopeId",
        "condition",
        "principal",
        "roleDefinition",
        "directoryScope",
        "appScope",
    ],
    filterable: &[
        Filterable {
            path: "id",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "principalId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "roleDefinitionId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
        Filterable {
            path: "directoryScopeId",
            kind: Kind::String,
            ops: &[Op::Eq],
        },
    ],
};

static ROLE_ASSIGNMENTS: Spec = Spec {
    resource: &ROLE_ASSIGNMENT,
    options: &[Opt::Filter, Opt::Expand],
    default_top: 1000,
    max_top: 1000,
};

/// Routes that take no query options at all.
static NO_OPTIONS: Spec = Spec {
    resource: &NOTHING,
    options: &[],
    default_top: 1000,
    max_top: 1000,
};

static NOTHING: Resource = Resource {
    entity_type: "microsoft.graph.entity",
    display: "Entity",
    properties: &[],
    filterable: &[],
};

/// Client ids of first-party apps, so that `appId` is what Entra would log.
const FIRST_PARTY_APPS: &[(&str, &str)] = &[
    (
        "Office 365 Exchange Online",
        "00000002-0000-0ff1-ce00-000000000000",
    ),
    (
        "Office 365 SharePoint Online",
        "00000003-0000-0ff1-ce00-000000000000",
    ),
    ("Microsoft Graph", "00000003-0000-0000-c000-000000000000"),
    ("Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264"),
    ("Microsoft Office", "d3590ed6-52b3-4102-aeff-aad2292ab01c"),
    ("Azure Portal", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"),
    ("My Signins", "19db86c3-b2b9-44cc-b339-36da233a3be2"),
    ("Graph Explorer", "de8bc8b5-d9f9-48b1-a8ad-b748da725064"),
    ("Outlook Mobile", "27922004-5251-4030-b22d-91ecd9a37ea4"),
    (
        "Microsoft Authentication Broker",
        "29d9ed98-a469-4536-ade2-f981bc1d605e",
    ),
];

fn app_id(tenant: &Tenant, name: &str) -> Value {
    tenant
        .apps
        .iter()
        .find(|a| a.display_name.eq_ignore_ascii_case(name))
        .map(|a| a.client_id.as_str())
        .or_else(|| {
            FIRST_PARTY_APPS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, id)| *id)
        })
        .map_or(Value::Null, |id| json!(id))
}

/// The sign-in log's names for a policy's built-in grant controls.
fn enforced_grant_controls(tenant: &Tenant, policy_id: &str) -> Vec<String> {
    let policy = tenant
        .conditional_access_policies
        .iter()
        .find(|p| p.get("id").and_then(Value::as_str) == Some(policy_id));
    let controls = policy
        .and_then(|p| p.pointer("/grantControls/builtInControls"))
        .and_then(Value::as_array);
    controls
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|c| {
            match c {
                "block" => "Block",
                "mfa" => "Mfa",
                "compliantDevice" => "RequireCompliantDevice",
                "domainJoinedDevice" => "RequireDomainJoinedDevice",
                "approvedApplication" => "RequireApprovedApp",
                "compliantApplication" => "RequireCompliantApp",
                "passwordChange" => "RequirePasswordChange",
                other => other,
            }
            .to_owned()
        })
        .collect()
}

/// One sign-in as Graph returns it. `ca_visible`: whether the caller may read
/// Conditional Access data; without it Graph leaves the policies out.
fn sign_in_json(tenant: &Tenant, sign_in: &SignIn, ca_visible: bool) -> Value {
    let ca_status = if sign_in.ca_policies.is_empty() {
        "notApplied"
    } else if sign_in.ca_policies.iter().any(|(_, _, r)| r == "failure") {
        "failure"
    } else {
        "success"
    };
    let policies: Vec<Value> = if ca_visible {
        sign_in
            .ca_policies
            .iter()
            .map(|(id, name, result)| {
                json!({
                    "id": id,
                    "displayName": name,
                    "enforcedGrantControls": enforced_grant_controls(tenant, id),
                    "enforcedSessionControls": [],
                    "result": result,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let app_id = app_id(tenant, &sign_in.app_display_name);
    json!({
        "id": sign_in.id,
        "createdDateTime": rfc3339(sign_in.created),
        "userDisplayName": sign_in.user_display_name,
        "userPrincipalName": sign_in.user_principal_name,
        "userId": sign_in.user_id,
        "appId": app_id,
        "appDisplayName": sign_in.app_display_name,
        "ipAddress": sign_in.ip_address,
        "clientAppUsed": "Browser",
        "correlationId": stable_guid(&format!("correlation/{}", sign_in.id)),
        "conditionalAccessStatus": ca_status,
        "isInteractive": true,
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes": [],
        "riskEventTypes_v2": [],
        // The model does not say which resource was asked for; the app
        // itself is the usual resource of first-party sign-ins.
        "resourceDisplayName": sign_in.app_display_name,
        "resourceId": app_id,
        "status": {
            "errorCode": sign_in.error_code,
            "failureReason": failure_reason(sign_in.error_code),
            "additionalDetails": additional_details(sign_in.error_code),
        },
        "deviceDetail": {
            "deviceId": "",
            "displayName": "",
            "operatingSystem": "",
            "browser": "",
            "isCompliant": false,
            "isManaged": false,
            "trustType": "",
        },
        "location": {
            "city": null,
            "state": null,
            "countryOrRegion": null,
            "geoCoordinates": {"altitude": null, "latitude": null, "longitude": null},
        },
        "appliedConditionalAccessPolicies": policies,
    })
}

async fn sign_ins(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_AUDIT)?;
    let query = Query::parse(raw.as_deref(), &SIGN_INS)?;
    let ca_visible = caller.require(READ_POLICY).is_ok();
    let items: Vec<Value> = {
        let tenant = sim.tenant();
        // The investigator asks for one user's: skip the others' before
        // building any JSON (the log holds every user's sign-ins).
        // Compared as the filter compares strings (lowercased).
        let user = query
            .filter
            .as_ref()
            .and_then(|f| f.required_eq("userId"))
            .map(str::to_lowercase);
        let mut log: Vec<&SignIn> = match &user {
            Some(u) => tenant
                .sign_in_keys
                .candidates(&tenant.sign_ins, u)
                .into_iter()
                .map(|i| &tenant.sign_ins[i])
                .filter(|s| same_lowercase(&s.user_id, u))
                .collect(),
            None => tenant.sign_ins.iter().collect(),
        };
        // Stable: records of the same instant keep the log's order.
        log.sort_by_key(|s| std::cmp::Reverse(s.created));
        log.into_iter()
            .map(|s| sign_in_json(&tenant, s, ca_visible))
            .filter(|v| query.matches(v))
            .collect()
    };
    let (page, next) = query.page(items, id_of, &link_base(&sim, &uri))?;
    let context = odata::context(&sim.graph_base(), "auditLogs/signIns", None, false);
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, page, next),
    ))
}

/// `a.to_lowercase() == lower`, without allocating for ASCII (ids are).
fn same_lowercase(a: &str, lower: &str) -> bool {
    if a.is_ascii() && lower.is_ascii() {
        a.eq_ignore_ascii_case(lower)
    } else {
        a.to_lowercase() == lower
    }
}

fn id_of(item: &Value) -> String {
    item.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn directory_audits(
    State(sim): State<Sim>,
    caller: Caller,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_AUDIT)?;
    let query = Query::parse(raw.as_deref(), &DIRECTORY_AUDITS)?;
    let items: Vec<Value> = {
        let tenant = sim.tenant();
        let when = |entry: &Value| {
            entry
                .get("activityDateTime")
                .and_then(Value::as_str)
                .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        };
        // Appended in time order: reversed, the newest come first, and the
        // stable sort keeps that for entries of the same instant.
        let mut log: Vec<&Value> = tenant.audits.iter().rev().collect();
        log.sort_by_key(|e| std::cmp::Reverse(when(e)));
        log.into_iter()
            .filter(|v| query.matches(v))
            .cloned()
            .collect()
    };
    let (page, next) = query.page(items, id_of, &link_base(&sim, &uri))?;
    let context = odata::context(&sim.graph_base(), "auditLogs/directoryAudits", None, false);
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, page, next),
    ))
}

async fn registration_details(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_AUDIT)?;
    Query::parse(raw.as_deref(), &NO_OPTIONS)?;
    let now = sim.now();
    let tenant = sim.tenant();
    // The report is keyed by object id only, and (per Learn) has no entries
    // for disabled users.
    let user = tenant
        .users
        .iter()
        .find(|u| u.id.eq_ignore_ascii_case(&id) && u.account_enabled)
        .ok_or_else(|| GraphError::not_found(&id))?;

    let mut registered: Vec<&str> = Vec::new();
    let mut push = |m: &'static str| {
        if !registered.contains(&m) {
            registered.push(m);
        }
    };
    for method in &user.methods {
        match method {
            Method::MicrosoftAuthenticator { .. } => push("microsoftAuthenticatorPush"),
            Method::Phone { phone_type, .. } => match phone_type.as_str() {
                "mobile" => push("mobilePhone"),
                "alternateMobile" => push("alternateMobilePhone"),
                _ => push("officePhone"),
            },
            Method::Email { .. } => push("email"),
            Method::Fido2 { .. } => push("fido2SecurityKey"),
            Method::TemporaryAccessPass(tap) => {
                if crate::sim::methods::tap_usability(tap, now).0 {
                    push("temporaryAccessPass");
                }
            }
        }
    }
    let has = |m: &str| registered.contains(&m);
    let mfa = [
        "microsoftAuthenticatorPush",
        "mobilePhone",
        "alternateMobilePhone",
        "officePhone",
        "fido2SecurityKey",
    ];
    let is_mfa_registered = mfa.iter().any(|m| has(m));
    let sspr = [
        "microsoftAuthenticatorPush",
        "mobilePhone",
        "alternateMobilePhone",
        "officePhone",
        "email",
    ];
    let is_sspr_registered = sspr.iter().any(|m| has(m));
    let default_mfa = [
        "microsoftAuthenticatorPush",
        "mobilePhone",
        "alternateMobilePhone",
        "officePhone",
    ]
    .into_iter()
    .find(|m| has(m))
    .unwrap_or("none");
    let preferred = match default_mfa {
        "microsoftAuthenticatorPush" => "push",
        "mobilePhone" => "sms",
        "alternateMobilePhone" => "voiceAlternateMobile",
        "officePhone" => "voiceOffice",
        _ => "none",
    };
    let user_type = if user.user_type.eq_ignore_ascii_case("guest") {
        "guest"
    } else {
        "member"
    };
    // The model has no SSPR or MFA policy: SSPR is taken as enabled for all,
    // the tenant-wide default of a new tenant with P1.
    let body = json!({
        "@odata.context": format!("{}/$metadata#reports/authenticationMethods/userRegistrationDetails/$entity", sim.graph_base()),
        "id": user.id,
        "userPrincipalName": user.user_principal_name,
        "userDisplayName": user.display_name,
        "userType": user_type,
        "isAdmin": !user.roles.is_empty(),
        "isSsprRegistered": is_sspr_registered,
        "isSsprEnabled": true,
        "isSsprCapable": is_sspr_registered,
        "isMfaRegistered": is_mfa_registered,
        "isMfaCapable": is_mfa_registered,
        "isPasswordlessCapable": has("fido2SecurityKey"),
        "methodsRegistered": registered,
        "isSystemPreferredAuthenticationMethodEnabled": false,
        "systemPreferredAuthenticationMethods": [],
        "defaultMfaMethod": default_mfa,
        "userPreferredMethodForSecondaryAuthentication": preferred,
        "lastUpdatedDateTime": rfc3339(now),
    });
    Ok(odata::respond(StatusCode::OK, &body))
}

/// A GUID as 16 bytes in Microsoft's mixed-endian order, base64url: how
/// Entra builds role assignment ids.
fn guid_b64(guid: &str) -> String {
    let bytes = match uuid::Uuid::parse_str(guid) {
        Ok(u) => u.to_bytes_le().to_vec(),
        Err(_) => guid.as_bytes().to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `filter`'s top-level conjunction pins `principalId` with `eq`,
/// which the emulator requires: listing every assignment in the tenant is
/// never what an "I can't log in" investigation needs.
fn pins_principal(filter: &Filter) -> bool {
    filter.conjuncts().iter().any(|c| {
        matches!(c, Filter::Condition { path, op: Op::Eq, .. } if path.len() == 1 && path[0] == "principalId")
    })
}

async fn role_assignments(
    State(sim): State<Sim>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_ROLES)?;
    let query = Query::parse(raw.as_deref(), &ROLE_ASSIGNMENTS)?;
    if !query.filter.as_ref().is_some_and(pins_principal) {
        return Err(GraphError::unsupported_query(
            "The emulator lists role assignments of one principal: add $filter=principalId eq '{object id}'.",
        ));
    }
    let expand = match query.expand.as_deref() {
        None => false,
        Some("roleDefinition") => true,
        Some(other) => {
            let name = other.split(['(', '/']).next().unwrap_or(other).trim();
            return Err(if ROLE_ASSIGNMENT.properties.contains(&name) {
                GraphError::unsupported_query(format!(
                    "$expand={other} is not supported by the emulator; it expands roleDefinition only, without nested options."
                ))
            } else {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "Could not find a property named '{name}' on type 'microsoft.graph.unifiedRoleAssignment'."
                    ),
                )
            });
        }
    };
    let tenant = sim.tenant();
    let principals = tenant
        .users
        .iter()
        .map(|u| (u.id.as_str(), &u.roles))
        .chain(
            tenant
                .apps
                .iter()
                .map(|a| (a.client_id.as_str(), &a.directory_roles)),
        );
    let mut value = Vec::new();
    for (principal, templates) in principals {
        for template in templates {
            let mut item = json!({
                "id": format!("{}{}-1", guid_b64(template), guid_b64(principal)),
                "principalId": principal,
                "roleDefinitionId": template,
                "directoryScopeId": "/",
            });
            if !query.matches(&item) {
                continue;
            }
            if expand {
                item["roleDefinition"] = json!({
                    "id": template,
                    "displayName": roles::display_name(template),
                    "description": null,
                    "isBuiltIn": true,
                    "isEnabled": true,
                    "templateId": template,
                });
            }
            value.push(item);
        }
    }
    let set = if expand {
        "roleManagement/directory/roleAssignments(roleDefinition())"
    } else {
        "roleManagement/directory/roleAssignments"
    };
    let context = odata::context(&sim.graph_base(), set, None, false);
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, value, None),
    ))
}

async fn conditional_access_policies(
    State(sim): State<Sim>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_POLICY)?;
    Query::parse(raw.as_deref(), &NO_OPTIONS)?;
    let value = sim.tenant().conditional_access_policies.clone();
    let context = odata::context(
        &sim.graph_base(),
        "identity/conditionalAccess/policies",
        None,
        false,
    );
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, value, None),
    ))
}

fn domain_json(domain: &Domain) -> Value {
    json!({
        "id": domain.id,
        "authenticationType": domain.authentication_type,
        "availabilityStatus": null,
        "isAdminManaged": true,
        "isDefault": domain.is_default,
        "isInitial": domain.id.to_ascii_lowercase().ends_with(".onmicrosoft.com"),
        "isRoot": true,
        "isVerified": true,
        "supportedServices": ["Email", "OfficeCommunicationsOnlineService"],
        "passwordValidityPeriodInDays": domain.password_validity_period_in_days,
        "passwordNotificationWindowInDays": domain.password_notification_window_in_days,
        "state": null,
    })
}

async fn domains(
    State(sim): State<Sim>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_DOMAINS)?;
    Query::parse(raw.as_deref(), &NO_OPTIONS)?;
    let value = sim.tenant().domains.iter().map(domain_json).collect();
    let context = odata::context(&sim.graph_base(), "domains", None, false);
    Ok(odata::respond(
        StatusCode::OK,
        &odata::collection(context, value, None),
    ))
}

async fn domain(
    State(sim): State<Sim>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, GraphError> {
    caller.require(READ_DOMAINS)?;
    Query::parse(raw.as_deref(), &NO_OPTIONS)?;
    let tenant = sim.tenant();
    let domain = tenant
        .domains
        .iter()
        .find(|d| d.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| GraphError::not_found(&id))?;
    let mut body = domain_json(domain);
    body["@odata.context"] = json!(odata::context(&sim.graph_base(), "domains", None, true));
    Ok(odata::respond(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_has_no_reason_and_every_scenario_code_has_its_own() {
        assert_eq!(failure_reason(0), None);
        for code in [
            50126, 50053, 50055, 50057, 53003, 500121, 50144, 50074, 50076,
        ] {
            let reason = failure_reason(code).unwrap();
            assert_ne!(reason, "Other.", "{code}");
        }
        assert_eq!(
            failure_reason(50126),
            Some("Error validating credentials due to invalid username or password.")
        );
        assert_eq!(failure_reason(12345), Some("Other."));
    }

    #[test]
    fn role_assignment_ids_are_entras_base64_of_the_guids() {
        // Entra's id for Global Administrator starts with this.
        assert_eq!(
            guid_b64(roles::GLOBAL_ADMINISTRATOR),
            "lAPpYvVpN0KRkAEhdxReEA"
        );
    }

    #[test]
    fn ids_compare_as_their_unicode_lowercase() {
        assert!(same_lowercase("ABC-1", "abc-1"));
        assert!(!same_lowercase("xbc-1", "abc-1"));
        assert!(!same_lowercase("abc-2", "abc-1"));
        assert!(!same_lowercase("", "a"));
        assert!(same_lowercase("", ""));
        // Unicode lowercasing, not ASCII's: the Kelvin sign is a `k`.
        assert!(same_lowercase("\u{212A}ey", "key"));
        assert!(same_lowercase("Ä-1", "ä-1"));
        assert!(!same_lowercase("k", "\u{212A}"));
    }

    #[test]
    fn stable_guids_are_stable_and_distinct() {
        assert_eq!(stable_guid("a"), stable_guid("a"));
        assert_ne!(stable_guid("a"), stable_guid("b"));
        assert!(uuid::Uuid::parse_str(&stable_guid("a")).is_ok());
    }

    #[test]
    fn only_a_principal_equality_pins_the_principal() {
        let pinned = |text: &str| pins_principal(&Filter::parse(text).unwrap());
        assert!(pinned("principalId eq 'x'"));
        assert!(pinned("roleDefinitionId eq 'y' and principalId eq 'x'"));
        assert!(!pinned("roleDefinitionId eq 'y'"));
        assert!(!pinned("startsWith(principalId,'x')"));
    }
}
