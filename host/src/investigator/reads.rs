//! The Graph reads of one investigation, run concurrently, each parsed into
//! what the facts need, with the documented default when Graph says the data
//! is absent or not ours to read (see the table in the parent module).

use reqwest::StatusCode;
use serde_json::Value;

use latchkey_policy::AuthMethod;

use super::clock::parse_instant;
use super::sign_ins::{self, SignIn};
use super::{InvestigateError, methods, roles};
use crate::graph::{GraphClient, GraphError, GraphPages, GraphResponse};
use crate::ids::UserId;

/// The profile properties read: exactly those the facts use. Graph returns
/// most of them only when `$select` names them.
pub const PROFILE_PROPERTIES: &str = "id,userPrincipalName,displayName,mail,department,jobTitle,accountEnabled,onPremisesSyncEnabled,lastPasswordChangeDateTime,passwordPolicies";

/// `$top` for `transitiveMemberOf`: Graph's largest page, so that nearly
/// every user's groups come in one request.
const MEMBERSHIP_PAGE: u32 = 999;

/// `passwordValidityPeriodInDays` meaning "never expires".
const NEVER_EXPIRES_DAYS: u64 = i32::MAX as u64;

/// The requester's profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Profile {
    pub id: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    /// A profile without `accountEnabled` reads as disabled: the policies
    /// then escalate, which is the safe way to be wrong.
    pub account_enabled: bool,
    /// `onPremisesSyncEnabled`; `null` (never synchronised) is false.
    pub on_premises_synced: bool,
    /// `lastPasswordChangeDateTime`, Unix seconds.
    pub last_password_change: Option<i64>,
    /// `passwordPolicies` includes `DisablePasswordExpiration`.
    pub password_never_expires: bool,
}

impl Profile {
    /// Whether `about` (a UPN, mail address or object id) names this user.
    /// UPNs and mail addresses compare ignoring case, as Entra does.
    pub fn is(&self, about: &str) -> bool {
        if let Some(guid) = crate::ids::canonical_guid(about) {
            return guid.eq_ignore_ascii_case(&self.id);
        }
        about.eq_ignore_ascii_case(&self.user_principal_name)
            || self
                .mail
                .as_deref()
                .is_some_and(|mail| about.eq_ignore_ascii_case(mail))
    }

    /// The domain of the UPN, if it is one Graph can be asked about.
    fn domain(&self) -> Option<&str> {
        let (_, domain) = self.user_principal_name.rsplit_once('@')?;
        let plain = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        plain.then_some(domain)
    }

    /// Whether the cloud password policy applies: not to a password mastered
    /// in Active Directory (AD's own policy does, seen as 50144), nor to one
    /// set never to expire.
    fn cloud_expiry_applies(&self) -> bool {
        !self.on_premises_synced && !self.password_never_expires
    }
}

/// Directory roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Roles {
    /// Role template ids, lowercase, sorted, each once.
    pub template_ids: Vec<String>,
    /// Any of them is privileged.
    pub privileged: bool,
}

/// MFA registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Mfa {
    /// Methods besides the password, each kind once, in Graph's order.
    pub methods: Vec<AuthMethod>,
    pub capable: bool,
    pub recovery_email: bool,
}

/// Everything read, parsed.
#[derive(Clone, Debug)]
pub(super) struct Evidence {
    pub profile: Profile,
    pub has_manager: bool,
    /// Group object ids, lowercase, sorted, each once.
    pub group_ids: Vec<String>,
    pub roles: Roles,
    /// Newest first.
    pub sign_ins: Vec<SignIn>,
    pub mfa: Mfa,
    /// The domain's `passwordValidityPeriodInDays`, when read and set.
    pub password_validity_days: Option<u64>,
}

impl Evidence {
    /// The cloud password policy says the password has expired at `now`.
    pub fn password_expired_by_policy(&self, now: i64) -> bool {
        let (Some(days), Some(changed)) = (
            self.password_validity_days,
            self.profile.last_password_change,
        ) else {
            return false;
        };
        if !self.profile.cloud_expiry_applies() || days == 0 || days >= NEVER_EXPIRES_DAYS {
            return false;
        }
        let validity = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        changed.saturating_add(validity) <= now
    }
}

/// Whether Graph said the data is absent (404) or not ours to read (403).
fn absent(error: &GraphError) -> bool {
    matches!(
        error,
        GraphError::Api { status, .. }
            if *status == StatusCode::FORBIDDEN || *status == StatusCode::NOT_FOUND
    )
}

/// A read with a documented default: `Ok(Err(_))` when Graph said the data
/// is absent or not ours, any other failure fails the investigation.
fn optional<T>(
    read: &'static str,
    result: Result<T, GraphError>,
) -> Result<Result<T, GraphError>, InvestigateError> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) if absent(&error) => {
            tracing::warn!(
                read,
                code = error.code().unwrap_or_default(),
                request_id = error.request_id().unwrap_or_default(),
                "Graph read unavailable; using its default"
            );
            Ok(Err(error))
        }
        Err(source) => Err(InvestigateError::Graph { read, source }),
    }
}

fn invalid(read: &'static str, reason: impl Into<String>) -> InvestigateError {
    InvestigateError::InvalidResponse {
        read,
        reason: reason.into(),
    }
}

/// The `value` array of a collection page.
fn items(read: &'static str, mut body: Value) -> Result<Vec<Value>, InvestigateError> {
    match body.get_mut("value").map(Value::take) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(invalid(read, "no \"value\" array")),
    }
}

fn text(body: &Value, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// One answer of the investigation's batch.
type Answer = Result<GraphResponse<Value>, GraphError>;

/// The paths of the reads that depend on nothing, in the order
/// [`gather`] takes their answers.
fn paths(requester: &UserId, since: &str, max_sign_ins: u16) -> [String; 9] {
    let user = GraphClient::user_path(requester.as_str());
    [
        format!("{user}?$select={PROFILE_PROPERTIES}"),
        format!("{user}/manager?$select=id"),
        format!("{user}/transitiveMemberOf?$select=id,roleTemplateId&$top={MEMBERSHIP_PAGE}"),
        format!(
            "/roleManagement/directory/roleAssignments?$filter=principalId eq '{requester}'&$expand=roleDefinition"
        ),
        format!("{user}/ownedDevices?$select=id"),
        format!("{user}/registeredDevices?$select=id"),
        // One page, newest first: the newest are what the situation is about.
        format!(
            "/auditLogs/signIns?$filter=userId eq '{requester}' and createdDateTime ge {since}&$top={max_sign_ins}"
        ),
        format!("{user}/authentication/methods"),
        format!("/reports/authenticationMethods/userRegistrationDetails/{requester}"),
    ]
}

/// Runs every read for `requester`: those that depend on nothing in one
/// Graph JSON batch, then the domain's password policy, which needs the
/// profile's domain, and any further pages of the collections, concurrently.
/// `since` is the look-back window's start as an OData literal.
pub(super) async fn gather(
    graph: &GraphClient,
    requester: &UserId,
    since: &str,
    max_sign_ins: u16,
) -> Result<Evidence, InvestigateError> {
    let answers = graph
        .get_batch(&paths(requester, since, max_sign_ins))
        .await
        .map_err(|source| InvestigateError::Graph {
            read: "the batch of reads",
            source,
        })?;
    let [
        profile_answer,
        manager_answer,
        memberships_answer,
        assignments_answer,
        owned_answer,
        registered_answer,
        sign_ins_answer,
        methods_answer,
        registration_answer,
    ]: [Answer; 9] = answers
        .try_into()
        .map_err(|_| invalid("the batch of reads", "not one answer per read"))?;
    let profile_and_domain = async {
        let profile = profile(requester, profile_answer)?;
        let validity = password_validity(graph, &profile).await?;
        Ok::<_, InvestigateError>((profile, validity))
    };
    let (
        (profile, password_validity_days),
        (group_ids, activated_roles),
        assigned_roles,
        (),
        methods,
    ) = tokio::try_join!(
        profile_and_domain,
        memberships(graph, memberships_answer),
        role_assignments(graph, assignments_answer),
        devices(graph, owned_answer, registered_answer),
        authentication_methods(graph, methods_answer),
    )?;
    Ok(Evidence {
        profile,
        has_manager: manager(manager_answer)?,
        group_ids,
        roles: merge_roles(activated_roles, assigned_roles),
        sign_ins: sign_ins(sign_ins_answer)?,
        mfa: mfa(methods, registration(registration_answer)?)?,
        password_validity_days,
    })
}

/// Every page of the collection whose first page is `first`.
async fn pages(graph: &GraphClient, first: Answer) -> Result<GraphPages, GraphError> {
    graph.all_pages(first?).await
}

fn profile(requester: &UserId, answer: Answer) -> Result<Profile, InvestigateError> {
    const READ: &str = "profile";
    let body = match answer {
        Ok(response) => response.body,
        Err(GraphError::Api {
            status, request_id, ..
        }) if status == StatusCode::NOT_FOUND => {
            return Err(InvestigateError::RequesterNotFound {
                requester: requester.clone(),
                request_id,
            });
        }
        Err(source) => return Err(InvestigateError::Graph { read: READ, source }),
    };
    parse_profile(requester, &body)
}

fn parse_profile(requester: &UserId, body: &Value) -> Result<Profile, InvestigateError> {
    const READ: &str = "profile";
    let id = text(body, "id").ok_or_else(|| invalid(READ, "no id"))?;
    if !id.eq_ignore_ascii_case(requester.as_str()) {
        return Err(invalid(
            READ,
            format!("asked for {requester}, got the user {id}"),
        ));
    }
    let user_principal_name =
        text(body, "userPrincipalName").ok_or_else(|| invalid(READ, "no userPrincipalName"))?;
    let last_password_change = match body.get("lastPasswordChangeDateTime") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_str()
                .and_then(parse_instant)
                .ok_or_else(|| invalid(READ, "lastPasswordChangeDateTime is not an instant"))?,
        ),
    };
    let password_never_expires = text(body, "passwordPolicies").is_some_and(|policies| {
        policies
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("DisablePasswordExpiration"))
    });
    Ok(Profile {
        id,
        user_principal_name,
        display_name: text(body, "displayName").unwrap_or_default(),
        mail: text(body, "mail"),
        department: text(body, "department"),
        job_title: text(body, "jobTitle"),
        account_enabled: body
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        on_premises_synced: body
            .get("onPremisesSyncEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        last_password_change,
        password_never_expires,
    })
}

/// The domain's password validity, when the cloud policy applies to this
/// user at all (otherwise the read is skipped).
async fn password_validity(
    graph: &GraphClient,
    profile: &Profile,
) -> Result<Option<u64>, InvestigateError> {
    const READ: &str = "domain password policy";
    if !profile.cloud_expiry_applies() {
        return Ok(None);
    }
    let Some(domain) = profile.domain() else {
        return Ok(None);
    };
    let body = match optional(READ, graph.get(&format!("/domains/{domain}")).await)? {
        Ok(response) => response.body,
        Err(_) => return Ok(None),
    };
    // Unset means Graph has no policy to tell; then only 50055 shows expiry.
    Ok(body
        .get("passwordValidityPeriodInDays")
        .and_then(Value::as_u64))
}

fn manager(answer: Answer) -> Result<bool, InvestigateError> {
    Ok(optional("manager", answer)?.is_ok())
}

/// Group ids and the role template ids of activated directory roles.
async fn memberships(
    graph: &GraphClient,
    first: Answer,
) -> Result<(Vec<String>, Vec<String>), InvestigateError> {
    const READ: &str = "transitive group memberships";
    let pages = pages(graph, first)
        .await
        .map_err(|source| InvestigateError::Graph { read: READ, source })?;
    let mut groups = Vec::new();
    let mut roles = Vec::new();
    for item in &pages.items {
        match item.get("@odata.type").and_then(Value::as_str) {
            Some("#microsoft.graph.group") => {
                groups.push(text(item, "id").ok_or_else(|| invalid(READ, "a group without id"))?);
            }
            Some("#microsoft.graph.directoryRole") => roles.extend(text(item, "roleTemplateId")),
            // Administrative units, and whatever else a user can be in.
            _ => {}
        }
    }
    Ok((canonical_set(groups), roles))
}

/// A role assignment: its template id, and Graph's `isPrivileged` if given.
type Assignment = (String, Option<bool>);

async fn role_assignments(
    graph: &GraphClient,
    first: Answer,
) -> Result<Result<Vec<Assignment>, GraphError>, InvestigateError> {
    const READ: &str = "directory role assignments";
    let pages = match optional(READ, pages(graph, first).await)? {
        Ok(pages) => pages,
        Err(error) => return Ok(Err(error)),
    };
    let assignments = pages
        .items
        .iter()
        .map(|item| {
            let definition = item.get("roleDefinition");
            // Built-in roles' definition id is their template id; the
            // expanded definition says so explicitly.
            let template = definition
                .and_then(|d| text(d, "templateId"))
                .or_else(|| text(item, "roleDefinitionId"))
                .ok_or_else(|| invalid(READ, "an assignment without a role"))?;
            let flagged = definition
                .and_then(|d| d.get("isPrivileged"))
                .and_then(Value::as_bool);
            Ok((template, flagged))
        })
        .collect::<Result<Vec<_>, InvestigateError>>()?;
    Ok(Ok(assignments))
}

/// Owned and registered devices. Contract 0.1.0 has no device fact, so they
/// only go to the log; a failure to read them changes nothing.
async fn devices(
    graph: &GraphClient,
    owned: Answer,
    registered: Answer,
) -> Result<(), InvestigateError> {
    let (owned, registered) = tokio::join!(pages(graph, owned), pages(graph, registered));
    let owned = optional("owned devices", owned)?.map_or(0, |p| p.items.len());
    let registered = optional("registered devices", registered)?.map_or(0, |p| p.items.len());
    tracing::debug!(owned, registered, "devices");
    Ok(())
}

fn sign_ins(answer: Answer) -> Result<Vec<SignIn>, InvestigateError> {
    const READ: &str = "recent sign-ins";
    let body = match optional(READ, answer)? {
        Ok(response) => response.body,
        Err(_) => return Ok(Vec::new()),
    };
    sign_ins::parse(&items(READ, body)?).map_err(|reason| invalid(READ, reason))
}

async fn authentication_methods(
    graph: &GraphClient,
    first: Answer,
) -> Result<Result<Vec<AuthMethod>, GraphError>, InvestigateError> {
    const READ: &str = "authentication methods";
    let pages = match optional(READ, pages(graph, first).await)? {
        Ok(pages) => pages,
        Err(error) => return Ok(Err(error)),
    };
    let mut kinds = Vec::new();
    for item in &pages.items {
        let odata_type = item
            .get("@odata.type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(READ, "a method without @odata.type"))?;
        if let Some(kind) = methods::from_odata_type(odata_type) {
            kinds.push(kind);
        }
    }
    Ok(Ok(kinds))
}

/// `userRegistrationDetails`: `isMfaCapable` and `methodsRegistered`.
struct Registration {
    mfa_capable: Option<bool>,
    methods: Vec<AuthMethod>,
}

fn registration(answer: Answer) -> Result<Result<Registration, GraphError>, InvestigateError> {
    const READ: &str = "registration details";
    let body = match optional(READ, answer)? {
        Ok(response) => response.body,
        Err(error) => return Ok(Err(error)),
    };
    let methods = body
        .get("methodsRegistered")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(methods::from_registration)
        .collect();
    Ok(Ok(Registration {
        mfa_capable: body.get("isMfaCapable").and_then(Value::as_bool),
        methods,
    }))
}

/// The MFA state from the methods (preferred: they are the live list) and
/// the registration report (Entra's own verdict on MFA capability), each
/// standing in for the other; neither is an error.
fn mfa(
    methods: Result<Vec<AuthMethod>, GraphError>,
    registration: Result<Registration, GraphError>,
) -> Result<Mfa, InvestigateError> {
    let (listed, capable) = match (methods, registration) {
        (Ok(listed), Ok(report)) => {
            let computed = listed.iter().any(|m| methods::answers_mfa(*m));
            (listed, report.mfa_capable.unwrap_or(computed))
        }
        (Ok(listed), Err(_)) => {
            let computed = listed.iter().any(|m| methods::answers_mfa(*m));
            (listed, computed)
        }
        (Err(_), Ok(report)) => {
            let computed = report.methods.iter().any(|m| methods::answers_mfa(*m));
            (report.methods, report.mfa_capable.unwrap_or(computed))
        }
        (Err(methods), Err(registration)) => {
            return Err(InvestigateError::MfaStateUnknown {
                methods: Box::new(methods),
                registration: Box::new(registration),
            });
        }
    };
    let mut kinds: Vec<AuthMethod> = Vec::with_capacity(listed.len());
    for kind in listed {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(Mfa {
        recovery_email: kinds.contains(&AuthMethod::Email),
        capable,
        methods: kinds,
    })
}

/// Role template ids from both sources, and whether any is privileged.
fn merge_roles(activated: Vec<String>, assigned: Result<Vec<Assignment>, GraphError>) -> Roles {
    let mut flagged = false;
    let mut ids = activated;
    for (template, privileged) in assigned.unwrap_or_default() {
        flagged |= privileged == Some(true);
        ids.push(template);
    }
    let template_ids = canonical_set(ids);
    let privileged = flagged || template_ids.iter().any(|id| roles::is_privileged(id));
    Roles {
        template_ids,
        privileged,
    }
}

/// Lowercase, sorted, each once: GUIDs compare ignoring case, and a stable
/// order gives the same facts (and digest) for the same directory.
fn canonical_set(ids: Vec<String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().map(|id| id.to_ascii_lowercase()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";

    fn requester() -> UserId {
        ID.parse().unwrap()
    }

    fn profile(body: Value) -> Result<Profile, InvestigateError> {
        parse_profile(&requester(), &body)
    }

    fn api_error(status: StatusCode) -> GraphError {
        GraphError::Api {
            status,
            code: "Authorization_RequestDenied".into(),
            message: "Insufficient privileges to complete the operation.".into(),
            request_id: None,
            client_request_id: None,
        }
    }

    #[test]
    fn profiles_parse_with_safe_readings_of_missing_values() {
        let adele = profile(json!({
            "id": ID.to_uppercase(), "userPrincipalName": "adele.vance@contoso.com",
            "displayName": "Adele Vance", "mail": "adele.vance@contoso.com",
            "department": "Retail", "jobTitle": null, "accountEnabled": true,
            "onPremisesSyncEnabled": null, "lastPasswordChangeDateTime": "2026-11-23T10:00:00Z",
            "passwordPolicies": "DisableStrongPassword, DisablePasswordExpiration",
        }))
        .unwrap();
        assert_eq!(adele.job_title, None);
        assert!(adele.account_enabled && !adele.on_premises_synced);
        assert_eq!(adele.last_password_change, Some(1_795_428_000));
        assert!(adele.password_never_expires);
        assert!(adele.is("ADELE.VANCE@contoso.com"));
        assert!(adele.is(&ID.to_uppercase()));
        assert!(!adele.is("lee.gu@contoso.com"));
        assert!(!adele.is("f076e392-469f-4fdf-9ff9-5ec6c20d6044"));
        assert_eq!(adele.domain(), Some("contoso.com"));

        let bare = profile(json!({"id": ID, "userPrincipalName": "x@contoso.com"})).unwrap();
        assert!(
            !bare.account_enabled,
            "missing accountEnabled reads as disabled"
        );
        assert_eq!(bare.display_name, "");

        for bad in [
            json!({"userPrincipalName": "x@contoso.com"}),
            json!({"id": "f076e392-469f-4fdf-9ff9-5ec6c20d6044", "userPrincipalName": "x@y"}),
            json!({"id": ID}),
            json!({"id": ID, "userPrincipalName": "x@y", "lastPasswordChangeDateTime": "soon"}),
        ] {
            assert!(
                matches!(
                    profile(bad.clone()),
                    Err(InvestigateError::InvalidResponse { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn odd_upn_domains_are_not_sent_to_graph() {
        for upn in ["x@", "x", "x@contoso.com/../users", "x@cont oso.com"] {
            let p = profile(json!({"id": ID, "userPrincipalName": upn})).unwrap();
            assert_eq!(p.domain(), None, "{upn}");
        }
    }

    fn evidence(validity: Option<u64>, changed: Option<i64>, synced: bool) -> Evidence {
        let mut profile = profile(json!({"id": ID, "userPrincipalName": "x@contoso.com"})).unwrap();
        profile.last_password_change = changed;
        profile.on_premises_synced = synced;
        Evidence {
            profile,
            has_manager: true,
            group_ids: Vec::new(),
            roles: Roles::default(),
            sign_ins: Vec::new(),
            mfa: Mfa::default(),
            password_validity_days: validity,
        }
    }

    #[test]
    fn the_domain_policy_expires_cloud_passwords_only() {
        let day = 86_400;
        let now = 200 * day;
        assert!(evidence(Some(90), Some(now - 104 * day), false).password_expired_by_policy(now));
        assert!(evidence(Some(90), Some(now - 90 * day), false).password_expired_by_policy(now));
        assert!(!evidence(Some(90), Some(now - 89 * day), false).password_expired_by_policy(now));
        assert!(!evidence(Some(90), Some(now - 104 * day), true).password_expired_by_policy(now));
        assert!(
            !evidence(Some(NEVER_EXPIRES_DAYS), Some(0), false).password_expired_by_policy(now)
        );
        assert!(!evidence(None, Some(0), false).password_expired_by_policy(now));
        assert!(!evidence(Some(90), None, false).password_expired_by_policy(now));
        assert!(!evidence(Some(u64::MAX - 1), Some(0), false).password_expired_by_policy(now));
    }

    #[test]
    fn only_forbidden_and_not_found_take_the_default() {
        assert!(
            optional::<()>("x", Err(api_error(StatusCode::FORBIDDEN)))
                .unwrap()
                .is_err()
        );
        assert!(
            optional::<()>("x", Err(api_error(StatusCode::NOT_FOUND)))
                .unwrap()
                .is_err()
        );
        for fatal in [
            api_error(StatusCode::BAD_REQUEST),
            api_error(StatusCode::INTERNAL_SERVER_ERROR),
            GraphError::InvalidResponse("x".into()),
        ] {
            assert!(matches!(
                optional::<()>("x", Err(fatal)),
                Err(InvestigateError::Graph { read: "x", .. })
            ));
        }
    }

    #[test]
    fn the_methods_and_the_report_stand_in_for_each_other() {
        let listed = vec![
            AuthMethod::MicrosoftAuthenticator,
            AuthMethod::Phone,
            AuthMethod::Phone,
            AuthMethod::Email,
        ];
        let report = || Registration {
            mfa_capable: Some(false),
            methods: vec![AuthMethod::Email],
        };
        let both = mfa(Ok(listed.clone()), Ok(report())).unwrap();
        assert_eq!(both.methods.len(), 3, "each kind once");
        assert!(!both.capable, "Entra's verdict wins");
        assert!(both.recovery_email);
        let methods_only = mfa(Ok(listed), Err(api_error(StatusCode::NOT_FOUND))).unwrap();
        assert!(methods_only.capable);
        let report_only = mfa(Err(api_error(StatusCode::FORBIDDEN)), Ok(report())).unwrap();
        assert_eq!(report_only.methods, [AuthMethod::Email]);
        assert!(report_only.recovery_email && !report_only.capable);
        assert!(matches!(
            mfa(
                Err(api_error(StatusCode::FORBIDDEN)),
                Err(api_error(StatusCode::FORBIDDEN))
            ),
            Err(InvestigateError::MfaStateUnknown { .. })
        ));
    }

    #[test]
    fn roles_merge_and_any_privileged_one_counts() {
        let user_admin = "FE930BE7-5E62-47DB-91AF-98C3A49A38B1".to_owned();
        let reader = "4a5d8f65-41da-4de4-8968-e035b65339cf".to_owned();
        let merged = merge_roles(
            vec![user_admin.clone()],
            Ok(vec![
                (user_admin.to_lowercase(), None),
                (reader.clone(), None),
            ]),
        );
        assert_eq!(
            merged.template_ids,
            [reader.clone(), user_admin.to_lowercase()]
        );
        assert!(merged.privileged);
        assert!(!merge_roles(vec![reader.clone()], Ok(Vec::new())).privileged);
        let flagged_by_graph = merge_roles(Vec::new(), Ok(vec![(reader.clone(), Some(true))]));
        assert!(flagged_by_graph.privileged, "Graph's isPrivileged counts");
        let fallback = merge_roles(vec![user_admin], Err(api_error(StatusCode::FORBIDDEN)));
        assert!(fallback.privileged, "activated roles stand in");
    }
}
