//! The emulator's Graph routes over real HTTP: users and what hangs off them,
//! the writes (password, account, sessions, mail), logs, reports, roles,
//! policies and domains; OData query options, paging, permissions and the
//! error envelope.
//!
//! Each test builds its own people into the demo tenant (all named `zz.*`),
//! so that it does not depend on who else the demo seed holds.

use latchkey::sim::Tenant;
use latchkey::sim::model::roles;
use latchkey_tests::TestSim;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

const KIM: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a01";
const BOSS: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a02";
const DANA: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a03";
const GAIL: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a04";
const NOMAIL: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a05";
const INNER: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4b01";
const OUTER: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4b02";
const LAPTOP: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4c01";
const PHONE: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4c02";
const POLICY: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4d01";
const READER_APP: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4e01";
const AUDITOR_APP: &str = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4e02";
const SECRET: &str = "test-secret";

fn person(id: &str, upn: &str, given: &str, surname: &str) -> Value {
    json!({
        "id": id,
        "user_principal_name": upn,
        "display_name": format!("{given} {surname}"),
        "given_name": given,
        "surname": surname,
        "mail": upn,
        "password": "Original-Pass-1",
        "last_password_change": "2026-01-01T00:00:00Z",
    })
}

/// The demo tenant with the people, groups, devices, policy and apps these
/// tests use, through the seed loader (so seeded sign-ins are prepared).
fn tenant() -> Tenant {
    let mut seed: Value = serde_json::from_str(latchkey::sim::seed::DEMO).unwrap();
    let mut kim = person(KIM, "zz.kim.akers@contoso.com", "Kim", "Akers");
    kim["manager"] = json!(BOSS);
    kim["department"] = json!("Zeta Sales");
    kim["job_title"] = json!("Account Manager");
    kim["groups"] = json!([INNER]);
    kim["roles"] = json!([roles::HELPDESK_ADMINISTRATOR]);
    kim["methods"] = json!([
        {"type": "microsoftAuthenticator", "display_name": "Pixel 8"},
        {"type": "email", "email_address": "kim.private@example.com"}
    ]);
    kim["sign_ins"] = json!([
        {"minutes_ago": 5, "error_code": 50053},
        {"minutes_ago": 30, "error_code": 50126, "app": "Microsoft Teams"},
        {"minutes_ago": 120, "error_code": 53003, "ca_policies": ["zz block untrusted"]},
        {"minutes_ago": 600, "error_code": 0}
    ]);
    let boss = person(BOSS, "zz.bob.boss@contoso.com", "Bob", "Boss");
    let mut dana = person(DANA, "zz.dana.off@contoso.com", "Dana", "Off");
    dana["account_enabled"] = json!(false);
    let mut gail = person(GAIL, "zz.gail.root@contoso.com", "Gail", "Root");
    gail["roles"] = json!([roles::GLOBAL_ADMINISTRATOR]);
    let mut nomail = person(NOMAIL, "zz.no.mail@contoso.com", "Noel", "Mailless");
    nomail["mail"] = Value::Null;
    for user in [kim, boss, dana, gail, nomail] {
        seed["users"].as_array_mut().unwrap().push(user);
    }
    seed["groups"].as_array_mut().unwrap().extend([
        json!({"id": INNER, "display_name": "zz Inner Team", "groups": [OUTER]}),
        json!({"id": OUTER, "display_name": "zz Whole Division", "mail_enabled": true, "security_enabled": false}),
    ]);
    seed["devices"].as_array_mut().unwrap().extend([
        json!({"id": LAPTOP, "device_id": "d-laptop", "display_name": "KIM-LAPTOP", "operating_system": "Windows",
               "operating_system_version": "10.0.22631", "trust_type": "AzureAd", "is_compliant": true,
               "is_managed": true, "owner": KIM, "registered_users": [KIM]}),
        json!({"id": PHONE, "device_id": "d-phone", "display_name": "Kim's iPhone", "operating_system": "iOS",
               "trust_type": "Workplace", "is_compliant": false, "registered_users": ["zz.kim.akers@contoso.com"]}),
    ]);
    seed["conditional_access_policies"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "id": POLICY, "displayName": "zz block untrusted", "state": "enabled",
            "conditions": {"users": {"includeUsers": [KIM]}},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}
        }));
    seed["apps"].as_array_mut().unwrap().extend([
        json!({"client_id": READER_APP, "display_name": "zz Reader", "client_secret": SECRET,
               "roles": ["User.Read.All"]}),
        json!({"client_id": AUDITOR_APP, "display_name": "zz Auditor", "client_secret": SECRET,
               "roles": ["AuditLog.Read.All"]}),
    ]);
    latchkey::sim::seed::from_json(&seed.to_string(), OffsetDateTime::now_utc()).unwrap()
}

struct Graph {
    sim: TestSim,
    token: String,
}

impl Graph {
    async fn start() -> Graph {
        let sim = TestSim::start_with(tenant()).await;
        let token = sim.app_token().await;
        Graph { sim, token }
    }

    async fn token_of(&self, client_id: &str) -> String {
        let (tenant_id, _, _) = self.sim.app();
        self.sim.token_for(&tenant_id, client_id, SECRET).await
    }

    /// A request with `token` to an absolute URL or a Graph path.
    async fn call(
        &self,
        method: Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            self.sim.graph(url)
        };
        let mut request = self.sim.client.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, value)
    }

    async fn get(&self, url: &str) -> (StatusCode, Value) {
        self.call(Method::GET, url, &self.token, None).await
    }

    async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, &self.token, Some(body))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, &self.token, Some(body)).await
    }

    /// Every item of a collection, following nextLinks; checks each link is
    /// absolute and the last page has none.
    async fn all_pages(&self, first: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut url = first.to_owned();
        loop {
            let (status, body) = self.get(&url).await;
            assert_eq!(status, 200, "{url}: {body}");
            pages += 1;
            items.extend(body["value"].as_array().unwrap().iter().cloned());
            match body["@odata.nextLink"].as_str() {
                Some(next) => {
                    assert!(next.starts_with(&self.sim.graph("/")), "absolute: {next}");
                    assert!(next.contains("$skiptoken="), "{next}");
                    url = next.to_owned();
                }
                None => break,
            }
            assert!(pages < 100, "paging does not end");
        }
        (items, pages)
    }

    fn graph_base(&self) -> String {
        self.sim.graph("")
    }
}

/// The error envelope Graph writes, with its code.
fn assert_envelope(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
    assert!(body["error"]["innerError"]["date"].is_string(), "{body}");
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_user_has_graphs_default_properties_and_context() {
    let g = Graph::start().await;
    let (status, body) = g.get("/users/adele.vance%40contoso.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!("{}/$metadata#users/$entity", g.graph_base())
    );
    let mut expected: Vec<String> = [
        "@odata.context",
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
    ]
    .map(str::to_owned)
    .to_vec();
    expected.sort();
    assert_eq!(keys(&body), expected, "select-only properties are left out");
    assert_eq!(body["businessPhones"], json!([]));
    assert_eq!(body["preferredLanguage"], Value::Null);
    assert_eq!(body["userPrincipalName"], "adele.vance@contoso.com");
    let id = body["id"].as_str().unwrap().to_owned();

    for address in [
        "/users/ADELE.VANCE@Contoso.com".to_owned(),
        format!("/users/{}", id.to_uppercase()),
    ] {
        let (status, again) = g.get(&address).await;
        assert_eq!(status, 200, "{address}");
        assert_eq!(again["id"], id.as_str(), "{address}");
    }
}

#[tokio::test]
async fn select_returns_exactly_what_was_asked_with_nulls() {
    let g = Graph::start().await;
    let select = "displayName,accountEnabled,lastPasswordChangeDateTime,passwordProfile,onPremisesSyncEnabled,department,passwordPolicies,userType,signInSessionsValidFromDateTime,createdDateTime,employeeType,otherMails";
    let (status, body) = g
        .get(&format!(
            "/users/zz.dana.off%40contoso.com?$select={select}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!("{}/$metadata#users({select})/$entity", g.graph_base())
    );
    let mut expected: Vec<String> = select.split(',').map(str::to_owned).collect();
    expected.push("@odata.context".to_owned());
    expected.sort();
    assert_eq!(keys(&body), expected);
    assert_eq!(body["accountEnabled"], false);
    assert_eq!(body["lastPasswordChangeDateTime"], "2026-01-01T00:00:00Z");
    assert_eq!(body["passwordProfile"], Value::Null, "never readable");
    assert_eq!(body["onPremisesSyncEnabled"], Value::Null, "cloud-only");
    assert_eq!(body["department"], Value::Null, "selected but empty");
    assert_eq!(body["employeeType"], Value::Null, "not modelled: null");
    assert_eq!(
        body["otherMails"],
        json!([]),
        "collections are empty, not null"
    );
    assert_eq!(body["userType"], "Member");
    assert!(body.get("id").is_none(), "id only when selected");

    let (status, body) = g
        .get("/users/zz.dana.off%40contoso.com?$select=nosuch")
        .await;
    assert_eq!(status, 400);
    assert_envelope(&body, "BadRequest");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nosuch")
    );
}

#[tokio::test]
async fn sign_in_activity_needs_audit_permission() {
    let g = Graph::start().await;
    let (status, body) = g.get(&format!("/users/{KIM}?$select=signInActivity")).await;
    assert_eq!(status, 200, "{body}");
    let activity = &body["signInActivity"];
    assert!(activity["lastSignInDateTime"].is_string(), "{body}");
    assert!(
        activity["lastSuccessfulSignInDateTime"].is_string(),
        "{body}"
    );
    assert_ne!(
        activity["lastSignInDateTime"], activity["lastSuccessfulSignInDateTime"],
        "the latest sign-in failed"
    );
    let reader = g.token_of(READER_APP).await;
    let (status, body) = g
        .call(
            Method::GET,
            &format!("/users/{KIM}?$select=signInActivity"),
            &reader,
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert_envelope(&body, "Authorization_RequestDenied");
}

#[tokio::test]
async fn an_unknown_user_is_graphs_404() {
    let g = Graph::start().await;
    let (status, body) = g.get("/users/nobody%40contoso.com").await;
    assert_eq!(status, 404);
    assert_envelope(&body, "Request_ResourceNotFound");
    assert_eq!(
        body["error"]["message"],
        "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present."
    );
}

#[tokio::test]
async fn users_filter_select_and_page_through_next_links() {
    let g = Graph::start().await;
    let (items, pages) = g
        .all_pages(&g.sim.graph(
            "/users?$filter=startsWith(userPrincipalName,%27ZZ.%27)&$top=1&$select=id,userPrincipalName,accountEnabled",
        ))
        .await;
    let mut upns: Vec<&str> = items
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert_eq!(pages, 5, "one user a page, the last without a nextLink");
    upns.sort();
    assert_eq!(
        upns,
        [
            "zz.bob.boss@contoso.com",
            "zz.dana.off@contoso.com",
            "zz.gail.root@contoso.com",
            "zz.kim.akers@contoso.com",
            "zz.no.mail@contoso.com"
        ]
    );
    assert!(
        items
            .iter()
            .all(|u| keys(u) == ["accountEnabled", "id", "userPrincipalName"])
    );

    let (status, body) = g
        .get("/users?$filter=startsWith(userPrincipalName,'zz.')%20and%20accountEnabled%20eq%20false&$select=id,accountEnabled")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!("{}/$metadata#users(id,accountEnabled)", g.graph_base())
    );
    assert_eq!(
        body["value"],
        json!([{"id": DANA, "accountEnabled": false}])
    );
    assert!(body.get("@odata.nextLink").is_none());

    for (filter, expected) in [
        ("userPrincipalName eq 'ZZ.KIM.AKERS@contoso.com'", vec![KIM]),
        (&format!("id eq '{GAIL}'") as &str, vec![GAIL]),
        ("department eq 'zeta sales'", vec![KIM]),
        ("startsWith(displayName,'zz') or displayName eq 'x'", vec![]),
    ] {
        let (status, body) = g.get(&format!("/users?$filter={filter}")).await;
        if filter.contains(" or ") {
            assert_eq!(status, 400, "{body}");
            continue;
        }
        assert_eq!(status, 200, "{filter}: {body}");
        let ids: Vec<&str> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, expected, "{filter}");
    }

    // The default page is 100; a small tenant fits in one page.
    let (status, body) = g.get("/users").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        format!("{}/$metadata#users", g.graph_base())
    );
    assert!(body.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn bad_queries_are_400_with_the_envelope() {
    let g = Graph::start().await;
    for (url, code) in [
        (
            "/users?$filter=userPrincipalName%20ne%20'x'",
            "Request_UnsupportedQuery",
        ),
        (
            "/users?$filter=endsWith(mail,'@contoso.com')",
            "Request_UnsupportedQuery",
        ),
        (
            "/users?$filter=not%20(accountEnabled%20eq%20true)",
            "Request_UnsupportedQuery",
        ),
        (
            "/users?$filter=jobTitle%20eq%20'x'",
            "Request_UnsupportedQuery",
        ),
        (
            "/users?$filter=accountEnabled%20ge%20true",
            "Request_UnsupportedQuery",
        ),
        ("/users?$filter=nosuch%20eq%20'x'", "BadRequest"),
        ("/users?$filter=userPrincipalName%20eq", "BadRequest"),
        (
            "/users?$filter=userPrincipalName%20eq%20'unterminated",
            "BadRequest",
        ),
        ("/users?$filter=accountEnabled%20eq%20'true'", "BadRequest"),
        ("/users?$filter=))((", "BadRequest"),
        ("/users?$top=0", "Request_BadRequest"),
        ("/users?$top=1000", "Request_BadRequest"),
        ("/users?$top=many", "Request_BadRequest"),
        ("/users?$orderby=displayName", "Request_UnsupportedQuery"),
        ("/users?$count=true", "Request_UnsupportedQuery"),
        ("/users?$nonsense=1", "BadRequest"),
        (
            "/users?filter=accountEnabled%20eq%20true",
            "Request_BadRequest",
        ),
        ("/users?$skiptoken=forged", "Request_BadRequest"),
        (
            "/users/adele.vance%40contoso.com?$filter=id%20eq%20'x'",
            "Request_UnsupportedQuery",
        ),
        (
            "/auditLogs/signIns?$filter=status/errorCode%20eq%20'50053'",
            "BadRequest",
        ),
        (
            "/auditLogs/signIns?$filter=createdDateTime%20ge%20'2024-03-01T00:00:00Z'",
            "BadRequest",
        ),
        (
            "/auditLogs/signIns?$filter=createdDateTime%20ge%202024-03-01",
            "BadRequest",
        ),
        ("/auditLogs/signIns?$select=id", "Request_UnsupportedQuery"),
        ("/auditLogs/signIns?$top=1001", "Request_BadRequest"),
        (
            "/auditLogs/directoryAudits?$filter=targetResources/any(t:t/id%20eq%20'x')",
            "Request_UnsupportedQuery",
        ),
        (
            "/auditLogs/directoryAudits?$orderby=activityDateTime",
            "Request_UnsupportedQuery",
        ),
        (
            "/identity/conditionalAccess/policies?$top=1",
            "Request_UnsupportedQuery",
        ),
    ] {
        let (status, body) = g.get(url).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_envelope(&body, code);
    }
}

#[tokio::test]
async fn the_manager_is_a_user_object_and_its_absence_a_404() {
    let g = Graph::start().await;
    let (status, body) = g.get("/users/zz.kim.akers%40contoso.com/manager").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["@odata.type"], "#microsoft.graph.user");
    assert_eq!(body["id"], BOSS);
    assert_eq!(body["userPrincipalName"], "zz.bob.boss@contoso.com");
    assert_eq!(
        body["@odata.context"],
        format!("{}/$metadata#directoryObjects/$entity", g.graph_base())
    );
    assert!(body.get("value").is_none(), "a single object, no wrapper");

    let (status, body) = g.get(&format!("/users/{BOSS}/manager")).await;
    assert_eq!(status, 404);
    assert_envelope(&body, "Request_ResourceNotFound");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manager")
    );
}

#[tokio::test]
async fn memberships_nest_and_include_directory_roles() {
    let g = Graph::start().await;
    let (status, direct) = g.get(&format!("/users/{KIM}/memberOf")).await;
    assert_eq!(status, 200, "{direct}");
    assert_eq!(
        direct["@odata.context"],
        format!("{}/$metadata#directoryObjects", g.graph_base())
    );
    let ids = |body: &Value| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let direct_ids = ids(&direct);
    assert_eq!(direct_ids.len(), 2, "{direct}");
    assert_eq!(direct_ids[0], INNER);
    let role = &direct["value"][1];
    assert_eq!(role["@odata.type"], "#microsoft.graph.directoryRole");
    assert_eq!(role["roleTemplateId"], roles::HELPDESK_ADMINISTRATOR);
    assert_eq!(role["displayName"], "Helpdesk Administrator");

    let (status, transitive) = g.get(&format!("/users/{KIM}/transitiveMemberOf")).await;
    assert_eq!(status, 200);
    let all = ids(&transitive);
    assert_eq!(&all[..2], [INNER, OUTER]);
    let outer = &transitive["value"][1];
    assert_eq!(outer["@odata.type"], "#microsoft.graph.group");
    assert_eq!(outer["groupTypes"], json!(["Unified"]));
    assert_eq!(
        transitive["value"][2]["roleTemplateId"],
        roles::HELPDESK_ADMINISTRATOR
    );
    assert_eq!(
        transitive["value"][2]["id"], role["id"],
        "role object ids are stable"
    );

    let (status, groups) = g
        .get(&format!(
            "/users/{KIM}/transitiveMemberOf/microsoft.graph.group?$select=displayName"
        ))
        .await;
    assert_eq!(status, 200, "{groups}");
    assert_eq!(
        groups["@odata.context"],
        format!("{}/$metadata#groups(displayName)", g.graph_base())
    );
    assert_eq!(
        groups["value"],
        json!([
            {"@odata.type": "#microsoft.graph.group", "displayName": "zz Inner Team"},
            {"@odata.type": "#microsoft.graph.group", "displayName": "zz Whole Division"}
        ])
    );
    let (status, body) = g
        .get(&format!("/users/{KIM}/memberOf/microsoft.graph.nothing"))
        .await;
    assert_eq!(status, 400);
    assert_envelope(&body, "BadRequest");
}

#[tokio::test]
async fn owned_and_registered_devices() {
    let g = Graph::start().await;
    let (status, owned) = g.get(&format!("/users/{KIM}/ownedDevices")).await;
    assert_eq!(status, 200, "{owned}");
    assert_eq!(owned["value"].as_array().unwrap().len(), 1);
    let laptop = &owned["value"][0];
    assert_eq!(laptop["@odata.type"], "#microsoft.graph.device");
    assert_eq!(laptop["id"], LAPTOP);
    assert_eq!(laptop["deviceId"], "d-laptop");
    assert_eq!(laptop["trustType"], "AzureAd");
    assert_eq!(laptop["isCompliant"], true);
    assert_eq!(laptop["operatingSystemVersion"], "10.0.22631");

    let (items, pages) = g
        .all_pages(
            &g.sim
                .graph(&format!("/users/{KIM}/registeredDevices?$top=1")),
        )
        .await;
    assert_eq!(pages, 2);
    let names: Vec<&str> = items
        .iter()
        .map(|d| d["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["KIM-LAPTOP", "Kim's iPhone"], "by id or UPN");
    assert_eq!(items[1]["trustType"], "Workplace");
    assert_eq!(items[1]["isManaged"], Value::Null);
}

#[tokio::test]
async fn permissions_are_enforced_per_route() {
    let g = Graph::start().await;
    let reader = g.token_of(READER_APP).await;
    let (status, _) = g.call(Method::GET, "/users", &reader, None).await;
    assert_eq!(status, 200, "User.Read.All reads users");
    let reset = json!({"passwordProfile": {"password": "Fresh-Start-2026", "forceChangePasswordNextSignIn": true}});
    let mail = json!({"message": {"subject": "s", "body": {"contentType": "Text", "content": "c"},
        "toRecipients": [{"emailAddress": {"address": "x@example.com"}}]}});
    for (method, path, body) in [
        (Method::GET, "/auditLogs/signIns".to_owned(), None),
        (Method::GET, "/auditLogs/directoryAudits".to_owned(), None),
        (
            Method::GET,
            format!("/reports/authenticationMethods/userRegistrationDetails/{KIM}"),
            None,
        ),
        (
            Method::GET,
            format!("/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{KIM}'"),
            None,
        ),
        (
            Method::GET,
            "/identity/conditionalAccess/policies".to_owned(),
            None,
        ),
        (Method::GET, "/domains/contoso.com".to_owned(), None),
        (Method::PATCH, format!("/users/{KIM}"), Some(&reset)),
        (
            Method::PATCH,
            format!("/users/{KIM}"),
            Some(&json!({"accountEnabled": false})),
        ),
        (
            Method::POST,
            format!("/users/{KIM}/revokeSignInSessions"),
            None,
        ),
        (Method::POST, format!("/users/{KIM}/sendMail"), Some(&mail)),
    ] {
        let (status, response) = g.call(method.clone(), &path, &reader, body).await;
        assert_eq!(status, 403, "{method} {path}: {response}");
        assert_envelope(&response, "Authorization_RequestDenied");
    }
    // Nothing was changed by the refused writes.
    let tenant = g.sim.sim.tenant();
    let kim = tenant.user(KIM).unwrap();
    assert!(kim.account_enabled);
    assert_eq!(kim.password, "Original-Pass-1");
    assert!(tenant.outbox.is_empty());
}

#[tokio::test]
async fn a_user_administrator_app_cannot_reset_a_global_administrator() {
    let g = Graph::start().await;
    let body = json!({"passwordProfile": {"password": "Fresh-Start-2026", "forceChangePasswordNextSignIn": true}});
    let (status, response) = g.patch("/users/zz.gail.root%40contoso.com", &body).await;
    assert_eq!(status, 403, "{response}");
    assert_envelope(&response, "Authorization_RequestDenied");
    let (status, response) = g
        .patch(
            "/users/zz.gail.root%40contoso.com",
            &json!({"accountEnabled": false}),
        )
        .await;
    assert_eq!(
        status, 403,
        "disabling an admin takes the same standing: {response}"
    );
    let tenant = g.sim.sim.tenant();
    let gail = tenant.user(GAIL).unwrap();
    assert_eq!(gail.password, "Original-Pass-1");
    assert!(gail.account_enabled);
    assert!(tenant.audits.is_empty(), "no audit for a refused change");
}

#[tokio::test]
async fn weak_passwords_are_refused_with_graphs_message() {
    let g = Graph::start().await;
    for password in [
        "short1A",
        "alllowercaseletters",
        "Kim-Is-Great-2026",
        "Akers.Family.99",
        "zz.kim.akers!X1",
    ] {
        let body = json!({"passwordProfile": {"password": password, "forceChangePasswordNextSignIn": true}});
        let (status, response) = g.patch(&format!("/users/{KIM}"), &body).await;
        assert_eq!(status, 400, "{password}: {response}");
        assert_envelope(&response, "Request_BadRequest");
        assert_eq!(
            response["error"]["message"],
            "The specified password does not comply with password complexity requirements. Please provide a different password."
        );
    }
    assert_eq!(
        g.sim.sim.tenant().user(KIM).unwrap().password,
        "Original-Pass-1"
    );
}

#[tokio::test]
async fn a_reset_sets_the_password_clears_lockout_and_is_audited() {
    let g = Graph::start().await;
    {
        let mut tenant = g.sim.sim.tenant();
        let index = tenant.user_index(KIM).unwrap();
        let lockout = &mut tenant.users[index].lockout;
        lockout.failures = 10;
        lockout.times_locked = 2;
        lockout.locked_until = Some(OffsetDateTime::now_utc() + time::Duration::hours(1));
    }
    let body = json!({"passwordProfile": {"password": "Fresh-Start-2026", "forceChangePasswordNextSignIn": true}});
    let (status, response) = g.patch("/users/ZZ.Kim.Akers%40contoso.com", &body).await;
    assert_eq!(status, 204, "{response}");
    assert_eq!(response, Value::Null, "no body");
    {
        let tenant = g.sim.sim.tenant();
        let kim = tenant.user(KIM).unwrap();
        assert_eq!(kim.password, "Fresh-Start-2026");
        assert!(kim.force_change_password);
        assert_eq!(kim.lockout.failures, 0);
        assert_eq!(kim.lockout.times_locked, 0);
        assert!(kim.lockout.locked_until.is_none());
    }
    let (_, user) = g
        .get(&format!("/users/{KIM}?$select=lastPasswordChangeDateTime"))
        .await;
    let changed = user["lastPasswordChangeDateTime"].as_str().unwrap();
    assert!(!changed.starts_with("2026-01-01"), "{changed}");

    let (status, audits) = g
        .get("/auditLogs/directoryAudits?$filter=activityDisplayName%20eq%20'Reset%20password%20(by%20admin)'")
        .await;
    assert_eq!(status, 200, "{audits}");
    assert_eq!(
        audits["@odata.context"],
        format!("{}/$metadata#auditLogs/directoryAudits", g.graph_base())
    );
    let entries = audits["value"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audits}");
    let entry = &entries[0];
    assert_eq!(entry["category"], "UserManagement");
    assert_eq!(entry["loggedByService"], "Core Directory");
    assert_eq!(entry["result"], "success");
    assert_eq!(entry["initiatedBy"]["app"]["appId"], g.sim.app().1);
    assert_eq!(entry["initiatedBy"]["user"], Value::Null);
    assert_eq!(entry["targetResources"][0]["id"], KIM);
    let modified = entry["targetResources"][0]["modifiedProperties"]
        .as_array()
        .unwrap();
    assert!(
        modified
            .iter()
            .all(|m| m["newValue"].is_string() || m["newValue"].is_null())
    );
    assert!(
        !entry.to_string().contains("Fresh-Start-2026"),
        "never the password"
    );
}

#[tokio::test]
async fn disabling_an_account_is_audited_as_update_user() {
    let g = Graph::start().await;
    let (status, _) = g
        .patch(&format!("/users/{BOSS}"), &json!({"accountEnabled": false}))
        .await;
    assert_eq!(status, 204);
    let (_, user) = g
        .get(&format!("/users/{BOSS}?$select=accountEnabled"))
        .await;
    assert_eq!(user["accountEnabled"], false);
    let (_, audits) = g
        .get("/auditLogs/directoryAudits?$filter=activityDisplayName%20eq%20'Update%20user'%20and%20category%20eq%20'UserManagement'")
        .await;
    let entry = &audits["value"][0];
    assert_eq!(
        entry["targetResources"][0]["userPrincipalName"],
        "zz.bob.boss@contoso.com"
    );
    assert_eq!(
        entry["targetResources"][0]["modifiedProperties"][0],
        json!({"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"})
    );
}

#[tokio::test]
async fn malformed_and_unsupported_requests_get_the_envelope() {
    let g = Graph::start().await;
    let response = g
        .sim
        .client
        .patch(g.sim.graph(&format!("/users/{KIM}")))
        .bearer_auth(&g.token)
        .header("content-type", "application/json")
        .body("{\"accountEnabled\": fal")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_envelope(
        &response.json::<Value>().await.unwrap(),
        "Request_BadRequest",
    );

    for body in [
        json!({"displayName": "New Name"}),
        json!({"favouriteColour": "blue"}),
        json!({"accountEnabled": "no"}),
        json!({"passwordProfile": {"password": "Fresh-Start-2026", "colour": 1}}),
        json!(["not", "an", "object"]),
    ] {
        let (status, response) = g.patch(&format!("/users/{KIM}"), &body).await;
        assert_eq!(status, 400, "{body}: {response}");
        assert_envelope(&response, "Request_BadRequest");
    }
    let (status, response) = g
        .call(Method::DELETE, &format!("/users/{KIM}"), &g.token, None)
        .await;
    assert_eq!(status, 405);
    assert_envelope(&response, "Request_BadRequest");
    let (status, response) = g.get("/nosuchthing").await;
    assert_eq!(status, 404);
    assert_envelope(&response, "BadRequest");
    let (status, response) = g
        .patch(
            "/users/nobody%40contoso.com",
            &json!({"accountEnabled": true}),
        )
        .await;
    assert_eq!(status, 404);
    assert_envelope(&response, "Request_ResourceNotFound");
}

#[tokio::test]
async fn revoking_sessions_returns_true_and_moves_the_valid_from_instant() {
    let g = Graph::start().await;
    let (_, before) = g
        .get(&format!(
            "/users/{KIM}?$select=signInSessionsValidFromDateTime"
        ))
        .await;
    let (status, body) = g
        .call(
            Method::POST,
            &format!("/users/{KIM}/revokeSignInSessions"),
            &g.token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"@odata.context": format!("{}/$metadata#Edm.Boolean", g.graph_base()), "value": true})
    );
    let (_, after) = g
        .get(&format!(
            "/users/{KIM}?$select=signInSessionsValidFromDateTime"
        ))
        .await;
    assert_ne!(before, after);
    assert!(
        g.sim
            .sim
            .tenant()
            .user(KIM)
            .unwrap()
            .sessions_valid_from
            .is_some()
    );
    let (_, audits) = g
        .get("/auditLogs/directoryAudits?$filter=startsWith(activityDisplayName,'Update%20StsRefreshTokenValidFrom')")
        .await;
    assert_eq!(
        audits["value"][0]["targetResources"][0]["id"], KIM,
        "{audits}"
    );
}

#[tokio::test]
async fn send_mail_lands_in_the_outbox() {
    let g = Graph::start().await;
    let mail = json!({
        "message": {
            "subject": "Your password was reset",
            "body": {"contentType": "Text", "content": "Sign in with the new password."},
            "toRecipients": [{"emailAddress": {"address": "zz.bob.boss@contoso.com", "name": "Bob"}}],
            "ccRecipients": [{"emailAddress": {"address": "helpdesk@contoso.com"}}]
        },
        "saveToSentItems": false
    });
    let response = g
        .sim
        .client
        .post(g.sim.graph("/users/adele.vance%40contoso.com/sendMail"))
        .bearer_auth(&g.token)
        .json(&mail)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(response.text().await.unwrap().is_empty(), "202 has no body");
    {
        let tenant = g.sim.sim.tenant();
        assert_eq!(tenant.outbox.len(), 1);
        let sent = &tenant.outbox[0];
        assert_eq!(sent["from"], "adele.vance@contoso.com");
        assert_eq!(sent["to"], json!(["zz.bob.boss@contoso.com"]));
        assert_eq!(sent["cc"], json!(["helpdesk@contoso.com"]));
        assert_eq!(sent["subject"], "Your password was reset");
        assert_eq!(sent["body"], "Sign in with the new password.");
        assert_eq!(sent["saveToSentItems"], false);
        assert!(sent["sentDateTime"].is_string());
    }
    for (body, code) in [
        (
            json!({"message": {"subject": "x", "toRecipients": []}}),
            "ErrorInvalidRecipients",
        ),
        (
            json!({"message": {"toRecipients": [{"emailAddress": {"address": "not an address"}}]}}),
            "ErrorInvalidRecipients",
        ),
        (
            json!({"message": {"toRecipients": [{"emailAddress": {"address": "a@b.com"}}], "body": {"contentType": "rtf", "content": "x"}}}),
            "ErrorInvalidRequest",
        ),
        (json!({"subject": "no message"}), "ErrorInvalidRequest"),
        (
            json!({"message": {"toRecipients": [{"emailAddress": {"address": "a@b.com"}}], "attachments": []}}),
            "ErrorInvalidRequest",
        ),
    ] {
        let (status, response) = g
            .post("/users/adele.vance%40contoso.com/sendMail", &body)
            .await;
        assert_eq!(status, 400, "{body}: {response}");
        assert_envelope(&response, code);
    }
    let ok = json!({"message": {"toRecipients": [{"emailAddress": {"address": "a@b.com"}}]}});
    let (status, response) = g.post(&format!("/users/{NOMAIL}/sendMail"), &ok).await;
    assert_eq!(status, 404);
    assert_envelope(&response, "MailboxNotEnabledForRESTAPI");
    assert_eq!(
        g.sim.sim.tenant().outbox.len(),
        1,
        "refused mail is not sent"
    );
}

#[tokio::test]
async fn sign_ins_are_newest_first_filterable_and_shaped_like_graphs() {
    let g = Graph::start().await;
    let (status, body) = g
        .get(&format!("/auditLogs/signIns?$filter=userId%20eq%20'{KIM}'"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!("{}/$metadata#auditLogs/signIns", g.graph_base())
    );
    let log = body["value"].as_array().unwrap();
    let codes: Vec<u64> = log
        .iter()
        .map(|s| s["status"]["errorCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [50053, 50126, 53003, 0], "newest first");
    let locked = &log[0];
    assert_eq!(
        locked["status"]["failureReason"],
        "Account is locked because user tried to sign in too many times with an incorrect user ID or password."
    );
    assert_eq!(locked["userPrincipalName"], "zz.kim.akers@contoso.com");
    assert_eq!(locked["conditionalAccessStatus"], "notApplied");
    assert!(locked["deviceDetail"].is_object() && locked["location"].is_object());
    assert_eq!(log[1]["appDisplayName"], "Microsoft Teams");
    assert_eq!(log[1]["appId"], "1fec8e78-bce4-4aaf-ab1b-5451cc387264");
    assert!(log[1]["status"]["additionalDetails"].is_string());
    let blocked = &log[2];
    assert_eq!(blocked["conditionalAccessStatus"], "failure");
    assert_eq!(
        blocked["appliedConditionalAccessPolicies"],
        json!([{"id": POLICY, "displayName": "zz block untrusted", "enforcedGrantControls": ["Block"],
                "enforcedSessionControls": [], "result": "failure"}])
    );
    assert_eq!(log[3]["status"]["failureReason"], Value::Null);
    assert_eq!(log[3]["status"]["errorCode"], 0);

    // Without Conditional Access read rights the policies are left out.
    let auditor = g.token_of(AUDITOR_APP).await;
    let (status, body) = g
        .call(Method::GET, &format!("/auditLogs/signIns?$filter=userId%20eq%20'{KIM}'%20and%20status/errorCode%20eq%2053003"), &auditor, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["value"][0]["appliedConditionalAccessPolicies"],
        json!([])
    );
    assert_eq!(body["value"][0]["conditionalAccessStatus"], "failure");

    let since = (OffsetDateTime::now_utc() - time::Duration::minutes(60))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for (filter, expected) in [
        (
            format!("userId eq '{KIM}' and createdDateTime ge {since}"),
            vec![50053u64, 50126],
        ),
        (
            format!("userId eq '{KIM}' and createdDateTime le {since}"),
            vec![53003, 0],
        ),
        (
            "userPrincipalName eq 'ZZ.KIM.AKERS@contoso.com' and status/errorCode eq 50053"
                .to_owned(),
            vec![50053],
        ),
        (
            format!("userId eq '{KIM}' and startsWith(appDisplayName,'microsoft t')"),
            vec![50126],
        ),
    ] {
        let url = format!(
            "/auditLogs/signIns?$filter={}",
            filter.replace(' ', "%20").replace('+', "%2B")
        );
        let (status, body) = g.get(&url).await;
        assert_eq!(status, 200, "{filter}: {body}");
        let codes: Vec<u64> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"]["errorCode"].as_u64().unwrap())
            .collect();
        assert_eq!(codes, expected, "{filter}");
    }
}

#[tokio::test]
async fn sign_ins_page_with_top_one_collects_every_record_once() {
    let g = Graph::start().await;
    let everything = g.get("/auditLogs/signIns").await.1["value"]
        .as_array()
        .unwrap()
        .clone();
    assert!(everything.len() >= 4);
    let (items, pages) = g.all_pages(&g.sim.graph("/auditLogs/signIns?$top=1")).await;
    assert_eq!(pages, everything.len());
    assert_eq!(items, everything, "the same records in the same order");
    let (items, pages) = g
        .all_pages(&g.sim.graph(&format!(
            "/auditLogs/signIns?$top=1&$filter=userId%20eq%20'{KIM}'"
        )))
        .await;
    assert_eq!((items.len(), pages), (4, 4));
    assert!(
        items.iter().all(|s| s["userId"] == KIM),
        "the filter holds on every page"
    );

    // A record logged while paging does not shift the pages already served.
    let (_, first) = g.get("/auditLogs/signIns?$top=2").await;
    let next = first["@odata.nextLink"].as_str().unwrap().to_owned();
    {
        let mut tenant = g.sim.sim.tenant();
        let mut newest = tenant.sign_ins[0].clone();
        newest.id = "zz-new-record".to_owned();
        newest.created = OffsetDateTime::now_utc();
        tenant.sign_ins.insert(0, newest);
    }
    let (_, second) = g.get(&next).await;
    assert_eq!(second["value"][0], everything[2]);
}

#[tokio::test]
async fn directory_audits_page_newest_first() {
    let g = Graph::start().await;
    for user in [KIM, BOSS, DANA] {
        let (status, _) = g
            .call(
                Method::POST,
                &format!("/users/{user}/revokeSignInSessions"),
                &g.token,
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let (items, pages) = g
        .all_pages(&g.sim.graph("/auditLogs/directoryAudits?$top=1"))
        .await;
    assert_eq!(pages, 3);
    let targets: Vec<&str> = items
        .iter()
        .map(|a| a["targetResources"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [DANA, BOSS, KIM], "newest first");
    let since = items[2]["activityDateTime"].as_str().unwrap();
    let (status, body) = g
        .get(&format!("/auditLogs/directoryAudits?$filter=activityDateTime%20ge%20{since}%20and%20initiatedBy/app/appId%20eq%20'{}'", g.sim.app().1))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn registration_details_follow_the_methods_and_roles() {
    let g = Graph::start().await;
    let (status, kim) = g
        .get(&format!(
            "/reports/authenticationMethods/userRegistrationDetails/{KIM}"
        ))
        .await;
    assert_eq!(status, 200, "{kim}");
    assert_eq!(kim["id"], KIM);
    assert_eq!(kim["userPrincipalName"], "zz.kim.akers@contoso.com");
    assert_eq!(kim["isAdmin"], true);
    assert_eq!(kim["isMfaRegistered"], true);
    assert_eq!(kim["isMfaCapable"], true);
    assert_eq!(kim["isSsprRegistered"], true);
    assert_eq!(kim["isPasswordlessCapable"], false);
    assert_eq!(
        kim["methodsRegistered"],
        json!(["microsoftAuthenticatorPush", "email"])
    );
    assert_eq!(kim["defaultMfaMethod"], "microsoftAuthenticatorPush");
    assert_eq!(kim["userPreferredMethodForSecondaryAuthentication"], "push");
    assert_eq!(kim["userType"], "member");

    let (_, bob) = g
        .get(&format!(
            "/reports/authenticationMethods/userRegistrationDetails/{BOSS}"
        ))
        .await;
    assert_eq!(bob["isAdmin"], false);
    assert_eq!(bob["isMfaRegistered"], false);
    assert_eq!(bob["methodsRegistered"], json!([]));
    assert_eq!(bob["defaultMfaMethod"], "none");

    for missing in [
        DANA,
        "zz.kim.akers%40contoso.com",
        "0b1c2d3e-0000-0000-0000-000000000000",
    ] {
        let (status, body) = g
            .get(&format!(
                "/reports/authenticationMethods/userRegistrationDetails/{missing}"
            ))
            .await;
        assert_eq!(
            status, 404,
            "{missing}: disabled users and UPNs have no entry"
        );
        assert_envelope(&body, "Request_ResourceNotFound");
    }
}

#[tokio::test]
async fn role_assignments_need_a_principal_and_expand_their_definition() {
    let g = Graph::start().await;
    let (status, body) = g.get("/roleManagement/directory/roleAssignments").await;
    assert_eq!(status, 400);
    assert_envelope(&body, "Request_UnsupportedQuery");

    let (status, body) = g
        .get(&format!("/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{GAIL}'&$expand=roleDefinition"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!(
            "{}/$metadata#roleManagement/directory/roleAssignments(roleDefinition())",
            g.graph_base()
        )
    );
    let items = body["value"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let assignment = &items[0];
    assert_eq!(assignment["principalId"], GAIL);
    assert_eq!(assignment["roleDefinitionId"], roles::GLOBAL_ADMINISTRATOR);
    assert_eq!(assignment["directoryScopeId"], "/");
    assert!(
        assignment["id"]
            .as_str()
            .unwrap()
            .starts_with("lAPpYvVpN0KRkAEhdxReEA")
    );
    assert_eq!(
        assignment["roleDefinition"],
        json!({"id": roles::GLOBAL_ADMINISTRATOR, "displayName": "Global Administrator", "description": null,
               "isBuiltIn": true, "isEnabled": true, "templateId": roles::GLOBAL_ADMINISTRATOR})
    );

    let (status, body) = g
        .get(&format!(
            "/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{BOSS}'"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], json!([]));
    assert!(body["value"].as_array().unwrap().is_empty());
    let (status, body) = g
        .get(&format!("/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{GAIL}'&$expand=principal"))
        .await;
    assert_eq!(status, 400);
    assert_envelope(&body, "Request_UnsupportedQuery");
}

#[tokio::test]
async fn conditional_access_policies_and_domains() {
    let g = Graph::start().await;
    let (status, body) = g.get("/identity/conditionalAccess/policies").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!(
            "{}/$metadata#identity/conditionalAccess/policies",
            g.graph_base()
        )
    );
    let ours = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == POLICY)
        .unwrap();
    assert_eq!(
        ours["grantControls"]["builtInControls"],
        json!(["block"]),
        "the seed's JSON as is"
    );

    let (status, domain) = g.get("/domains/CONTOSO.com").await;
    assert_eq!(status, 200, "{domain}");
    assert_eq!(domain["id"], "contoso.com");
    assert_eq!(domain["isDefault"], true);
    assert_eq!(domain["passwordValidityPeriodInDays"], 90);
    assert_eq!(domain["passwordNotificationWindowInDays"], 14);
    assert_eq!(
        domain["@odata.context"],
        format!("{}/$metadata#domains/$entity", g.graph_base())
    );
    let (status, body) = g.get("/domains/fabrikam.com").await;
    assert_eq!(status, 404);
    assert_envelope(&body, "Request_ResourceNotFound");
}
