//! The emulator's identity endpoints and token checks.

use latchkey_tests::TestSim;

#[tokio::test]
async fn client_credentials_give_a_token_graph_accepts() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let missing = sim.client.get(sim.graph("/users")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client() {
    let sim = TestSim::start().await;
    let (tenant, client_id, _) = sim.app();
    let response = sim
        .client
        .post(format!("{}/{tenant}/oauth2/v2.0/token", sim.base_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", "wrong"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"][0], 7000215);
}

// ---------------------------------------------------------------------------
// The interactive sign-in: authorize, the simulated Authenticator, and the
// authorization code grant with PKCE.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{StatusCode, Url};
use serde_json::Value;

/// RFC 7636, appendix B: a verifier and its S256 challenge, computed by
/// someone else than the emulator.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The demo app registers `http://127.0.0.1/callback`; loopback matches any port.
const REDIRECT: &str = "http://127.0.0.1:8765/callback";
const ADELE: &str = "adele.vance@contoso.com";
const ADELE_ID: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
const ADELE_PASSWORD: &str = "Correct-Horse-42";

/// A browser for the sign-in pages: follows no redirects, so each step is seen.
struct Browser {
    sim: TestSim,
    http: reqwest::Client,
    tenant: String,
    client_id: String,
    secret: String,
}

impl Browser {
    async fn start() -> Browser {
        Browser::start_with(latchkey::sim::seed::demo(time::OffsetDateTime::now_utc()).unwrap())
            .await
    }

    async fn start_with(tenant: latchkey::sim::Tenant) -> Browser {
        let sim = TestSim::start_with(tenant).await;
        let (tenant, client_id, secret) = sim.app();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            sim,
            http,
            tenant,
            client_id,
            secret,
        }
    }

    fn authorize_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/authorize",
            self.sim.base_url, self.tenant
        )
    }

    /// The authorization request's parameters (PKCE S256, openid, a nonce).
    fn params(&self, redirect_uri: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", self.client_id.clone()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("scope", "openid profile email User.Read".to_owned()),
            ("state", "state-123".to_owned()),
            ("nonce", "nonce-456".to_owned()),
            ("code_challenge", CHALLENGE.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
            ("prompt", "login".to_owned()),
        ]
    }

    async fn get_authorize(&self, params: &[(&str, String)]) -> reqwest::Response {
        self.http
            .get(self.authorize_url())
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// Posts the sign-in form (the request's parameters plus the credentials).
    async fn post_sign_in(&self, user: &str, password: &str) -> reqwest::Response {
        let mut form = self.params(REDIRECT);
        form.push(("username", user.to_owned()));
        form.push(("password", password.to_owned()));
        self.post_form(&form).await
    }

    async fn post_form(&self, form: &[(&str, String)]) -> reqwest::Response {
        self.http
            .post(self.authorize_url())
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The pending Authenticator request for `upn`, as the test API lists it.
    async fn pending_for(&self, upn: &str) -> Value {
        let list: Value = self
            .http
            .get(format!("{}/_sim/authenticator/pending", self.sim.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["user"] == upn)
            .cloned()
            .unwrap_or_else(|| panic!("no pending approval for {upn}: {list}"))
    }

    async fn answer(&self, approval: &Value, approve: bool) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/_sim/authenticator/{}",
                self.sim.base_url,
                approval["id"].as_str().unwrap()
            ))
            .json(&serde_json::json!({"approve": approve, "number": approval["number"]}))
            .send()
            .await
            .unwrap()
    }

    /// Follows a relative `Location` of the emulator's own.
    async fn follow(&self, response: &reqwest::Response) -> reqwest::Response {
        let location = location(response);
        self.http
            .get(format!("{}{location}", self.sim.base_url))
            .send()
            .await
            .unwrap()
    }

    /// Signs `upn` in and approves the Authenticator request: the final
    /// redirect to the app.
    async fn sign_in_with_mfa(&self, upn: &str, password: &str, approve: bool) -> Url {
        let submitted = self.post_sign_in(upn, password).await;
        assert_eq!(submitted.status(), StatusCode::SEE_OTHER, "to the MFA page");
        let waiting = self.follow(&submitted).await;
        assert_eq!(waiting.status(), StatusCode::OK);
        let page = waiting.text().await.unwrap();
        assert!(page.contains("Approve sign in request"), "{page}");
        let approval = self.pending_for(upn).await;
        assert!(
            page.contains(&approval["number"].to_string()),
            "the page shows the number to match"
        );
        let answered = self.answer(&approval, approve).await;
        assert_eq!(answered.status(), StatusCode::OK);
        let done = self.follow(&submitted).await;
        assert_eq!(done.status(), StatusCode::FOUND, "back to the app");
        Url::parse(&location(&done)).unwrap()
    }

    async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.sim.base_url, self.tenant
            ))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.as_str()),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
                ("scope", "openid profile email User.Read"),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn openid_configuration(&self) -> Value {
        self.http
            .get(format!(
                "{}/{}/v2.0/.well-known/openid-configuration",
                self.sim.base_url, self.tenant
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Verifies a token's signature against the published JWKS, and its
    /// audience and issuer; returns its claims.
    async fn verify(&self, token: &str, audience: &str) -> Value {
        let config = self.openid_configuration().await;
        let jwks: JwkSet = self
            .http
            .get(config["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[config["issuer"].as_str().unwrap()]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .unwrap()
            .claims
    }

    /// The newest sign-in log record of a user.
    fn last_sign_in_code(&self, upn: &str) -> u32 {
        let tenant = self.sim.sim.tenant();
        tenant
            .sign_ins
            .iter()
            .find(|s| s.user_principal_name.eq_ignore_ascii_case(upn))
            .unwrap()
            .error_code
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_code_flow_with_an_authenticator_approval_gives_an_id_token_with_mfa() {
    let browser = Browser::start().await;
    let page = browser
        .get_authorize(&{
            let mut p = browser.params(REDIRECT);
            p.push(("login_hint", ADELE.to_owned()));
            p
        })
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!(r#"value="{ADELE}""#)),
        "login_hint prefills"
    );
    assert!(html.contains(&format!(r#"name="code_challenge" value="{CHALLENGE}""#)));

    let back = browser.sign_in_with_mfa(ADELE, ADELE_PASSWORD, true).await;
    assert_eq!(
        back.origin().unicode_serialization(),
        "http://127.0.0.1:8765"
    );
    assert_eq!(back.path(), "/callback");
    assert_eq!(query(&back, "state").as_deref(), Some("state-123"));
    let code = query(&back, "code").unwrap();

    let response = browser.redeem(&code, VERIFIER).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let scope = body["scope"].as_str().unwrap();
    assert!(
        scope.contains("openid") && scope.contains("User.Read"),
        "{scope}"
    );

    let id = browser
        .verify(body["id_token"].as_str().unwrap(), &browser.client_id)
        .await;
    assert_eq!(
        id["iss"],
        format!("{}/{}/v2.0", browser.sim.base_url, browser.tenant)
    );
    assert_eq!(id["aud"], browser.client_id);
    assert_eq!(id["nonce"], "nonce-456");
    assert_eq!(id["oid"], ADELE_ID);
    assert_eq!(id["tid"], browser.tenant);
    assert_eq!(id["preferred_username"], ADELE);
    assert_eq!(id["name"], "Adele Vance");
    assert_eq!(id["ver"], "2.0");
    let amr: Vec<&str> = id["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(amr.contains(&"mfa") && amr.contains(&"pwd"), "{amr:?}");
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());

    let access = browser
        .verify(
            body["access_token"].as_str().unwrap(),
            "https://graph.microsoft.com",
        )
        .await;
    assert_eq!(access["idtyp"], "user");
    assert_eq!(access["oid"], ADELE_ID);
    assert_eq!(access["appid"], browser.client_id);
    assert_eq!(access["scp"], "openid profile email User.Read");
    assert_eq!(access["wids"], serde_json::json!([]));
    assert_eq!(browser.last_sign_in_code(ADELE), 0, "the success is logged");
}

#[tokio::test]
async fn a_denied_approval_sends_access_denied_back_to_the_app() {
    let browser = Browser::start().await;
    let back = browser.sign_in_with_mfa(ADELE, ADELE_PASSWORD, false).await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert!(
        query(&back, "error_description")
            .unwrap()
            .starts_with("AADSTS500121")
    );
    assert_eq!(query(&back, "state").as_deref(), Some("state-123"));
    assert!(query(&back, "code").is_none());
    assert_eq!(browser.last_sign_in_code(ADELE), 500121);
}

#[tokio::test]
async fn a_wrong_number_on_the_phone_denies_and_an_answered_request_cannot_be_answered_again() {
    let browser = Browser::start().await;
    let submitted = browser.post_sign_in(ADELE, ADELE_PASSWORD).await;
    assert_eq!(submitted.status(), StatusCode::SEE_OTHER);
    let mut approval = browser.pending_for(ADELE).await;
    let right = approval["number"].as_u64().unwrap();
    approval["number"] = serde_json::json!(if right == 99 { 10 } else { right + 1 });
    let answered: Value = browser.answer(&approval, true).await.json().await.unwrap();
    assert_eq!(answered["status"], "denied");
    assert_eq!(
        browser.answer(&approval, true).await.status(),
        StatusCode::CONFLICT
    );
    let done = browser.follow(&submitted).await;
    let back = Url::parse(&location(&done)).unwrap();
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
}

#[tokio::test]
async fn a_wrong_code_verifier_is_invalid_grant_and_burns_the_code() {
    let browser = Browser::start().await;
    let back = browser.sign_in_with_mfa(ADELE, ADELE_PASSWORD, true).await;
    let code = query(&back, "code").unwrap();
    let response = browser
        .redeem(&code, "a-different-verifier-of-forty-three-chars-xx")
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"][0], 501481);
    // A code is tried once: the right verifier is too late now.
    let again: Value = browser.redeem(&code, VERIFIER).await.json().await.unwrap();
    assert_eq!(again["error"], "invalid_grant");
}

#[tokio::test]
async fn a_code_redeems_once() {
    let browser = Browser::start().await;
    let back = browser.sign_in_with_mfa(ADELE, ADELE_PASSWORD, true).await;
    let code = query(&back, "code").unwrap();
    assert_eq!(
        browser.redeem(&code, VERIFIER).await.status(),
        StatusCode::OK
    );
    let reused = browser.redeem(&code, VERIFIER).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let body: Value = reused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"][0], 54005);
    let unknown: Value = browser
        .redeem("not-a-code", VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["error"], "invalid_grant");
}

#[tokio::test]
async fn a_code_expires_after_ten_minutes() {
    let browser = Browser::start().await;
    let back = browser.sign_in_with_mfa(ADELE, ADELE_PASSWORD, true).await;
    let code = query(&back, "code").unwrap();
    browser
        .sim
        .sim
        .advance_clock(time::Duration::minutes(10) + time::Duration::seconds(1));
    let body: Value = browser.redeem(&code, VERIFIER).await.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"][0], 70008);
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect() {
    let browser = Browser::start().await;
    for redirect in [
        "https://attacker.example/callback",
        "http://127.0.0.1:8765/elsewhere",
        "http://127.0.0.1.attacker.example/callback",
    ] {
        let response = browser.get_authorize(&browser.params(redirect)).await;
        assert_eq!(response.status(), StatusCode::OK, "{redirect}");
        assert!(response.headers().get("location").is_none(), "{redirect}");
        let html = response.text().await.unwrap();
        assert!(html.contains("AADSTS50011"), "{redirect}: {html}");
        // Posting the form directly is refused the same way.
        let mut form = browser.params(redirect);
        form.push(("username", ADELE.to_owned()));
        form.push(("password", ADELE_PASSWORD.to_owned()));
        let posted = browser.post_form(&form).await;
        assert!(posted.headers().get("location").is_none(), "{redirect}");
        assert!(posted.text().await.unwrap().contains("AADSTS50011"));
    }
    // An unknown client is an error page too.
    let mut params = browser.params(REDIRECT);
    params[0].1 = "00000000-0000-0000-0000-000000000001".to_owned();
    let unknown = browser.get_authorize(&params).await;
    assert!(unknown.headers().get("location").is_none());
    assert!(unknown.text().await.unwrap().contains("AADSTS700016"));
}

#[tokio::test]
async fn without_pkce_the_error_goes_back_to_the_registered_redirect_uri() {
    let browser = Browser::start().await;
    let params: Vec<(&str, String)> = browser
        .params(REDIRECT)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let response = browser.get_authorize(&params).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let back = Url::parse(&location(&response)).unwrap();
    assert!(back.as_str().starts_with(REDIRECT));
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&back, "state").as_deref(), Some("state-123"));
}

#[tokio::test]
async fn a_wrong_password_shows_the_error_on_the_page_and_is_logged() {
    let browser = Browser::start().await;
    let response = browser.post_sign_in(ADELE, "Wrong-Horse-41").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Your account or password is incorrect"),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"value="{ADELE}""#)),
        "the name stays"
    );
    assert_eq!(browser.last_sign_in_code(ADELE), 50126);
    let pending: Value = browser
        .http
        .get(format!(
            "{}/_sim/authenticator/pending",
            browser.sim.base_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["value"], serde_json::json!([]), "no MFA prompt");
}

#[tokio::test]
async fn disabled_and_locked_accounts_cannot_sign_in() {
    let browser = Browser::start().await;
    let disabled = browser
        .post_sign_in("christie.cline@contoso.com", "Spring-Catalog-07")
        .await;
    assert!(disabled.headers().get("location").is_none());
    assert!(
        disabled
            .text()
            .await
            .unwrap()
            .contains("Contact your support person")
    );
    assert_eq!(
        browser.last_sign_in_code("christie.cline@contoso.com"),
        50057
    );

    let megan = "megan.bowen@contoso.com";
    for i in 0..10 {
        browser.post_sign_in(megan, &format!("Guess-{i}")).await;
    }
    assert_eq!(browser.last_sign_in_code(megan), 50053);
    let locked = browser.post_sign_in(megan, "Bright-Lantern-29").await;
    assert!(locked.headers().get("location").is_none());
    assert!(locked.text().await.unwrap().contains("temporarily locked"));
}

#[tokio::test]
async fn a_user_without_authenticator_signs_in_with_the_password_alone() {
    let browser = Browser::start().await;
    let response = browser
        .post_sign_in("lee.gu@contoso.com", "Contract-Oak-51")
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let back = Url::parse(&location(&response)).unwrap();
    let code = query(&back, "code").unwrap();
    let body: Value = browser.redeem(&code, VERIFIER).await.json().await.unwrap();
    let id = browser
        .verify(body["id_token"].as_str().unwrap(), &browser.client_id)
        .await;
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
}

#[tokio::test]
async fn an_expired_password_is_updated_before_the_mfa_prompt() {
    let browser = Browser::start().await;
    let grady = "grady.archie@contoso.com";
    let response = browser.post_sign_in(grady, "Blue-Canvas-2026").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Update your password")
    );
    assert_eq!(browser.last_sign_in_code(grady), 50055);

    let update = |new: &str, confirm: &str| {
        let mut form = browser.params(REDIRECT);
        form.push(("step", "update_password".to_owned()));
        form.push(("username", grady.to_owned()));
        form.push(("password", "Blue-Canvas-2026".to_owned()));
        form.push(("new_password", new.to_owned()));
        form.push(("confirm_password", confirm.to_owned()));
        form
    };
    let weak = browser.post_form(&update("password", "password")).await;
    assert!(weak.text().await.unwrap().contains("at least three"));
    let done = browser
        .post_form(&update("Fresh-Canvas-2027", "Fresh-Canvas-2027"))
        .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "on to the MFA prompt");
    {
        let tenant = browser.sim.sim.tenant();
        let user = tenant.user(grady).unwrap();
        assert_eq!(user.password, "Fresh-Canvas-2027");
        assert!(
            tenant
                .audits
                .iter()
                .any(|a| a["activityDisplayName"] == "Change password (self-service)")
        );
    }
    let approval = browser.pending_for(grady).await;
    assert_eq!(approval["displayName"], "Grady Archie");
}

#[tokio::test]
async fn the_openid_configuration_points_at_working_endpoints() {
    let browser = Browser::start().await;
    let config = browser.openid_configuration().await;
    let base = format!("{}/{}", browser.sim.base_url, browser.tenant);
    assert_eq!(config["issuer"], format!("{base}/v2.0"));
    assert_eq!(
        config["authorization_endpoint"],
        format!("{base}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        config["token_endpoint"],
        format!("{base}/oauth2/v2.0/token")
    );
    assert_eq!(config["jwks_uri"], format!("{base}/discovery/v2.0/keys"));
    assert!(
        config["code_challenge_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("S256"))
    );
    assert!(
        config["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("RS256"))
    );
    // The authorization endpoint it names serves the sign-in page.
    let page = browser
        .http
        .get(config["authorization_endpoint"].as_str().unwrap())
        .query(&browser.params(REDIRECT))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("Sign in"));
}

#[tokio::test]
async fn an_app_token_verifies_against_the_published_jwks() {
    let browser = Browser::start().await;
    let token = browser.sim.app_token().await;
    let claims = browser.verify(&token, "https://graph.microsoft.com").await;
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["appid"], browser.client_id);
    assert_eq!(claims["tid"], browser.tenant);
    // A token signed by another key does not verify.
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let config = browser.openid_configuration().await;
    let jwks: JwkSet = browser
        .http
        .get(config["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://graph.microsoft.com"]);
    assert!(jsonwebtoken::decode::<Value>(&tampered, &key, &validation).is_err());
}

#[tokio::test]
async fn the_simulated_phone_on_the_page_approves_with_a_form_and_the_page_moves_on() {
    let browser = Browser::start().await;
    let submitted = browser.post_sign_in(ADELE, ADELE_PASSWORD).await;
    let waiting = browser.follow(&submitted).await.text().await.unwrap();
    assert!(waiting.contains("Approve on my phone (simulated)"));
    assert!(
        waiting.contains(r#"http-equiv="refresh""#),
        "the page polls"
    );
    let approval = browser.pending_for(ADELE).await;
    let id = approval["id"].as_str().unwrap();
    assert!(waiting.contains(&format!(r#"action="/_sim/authenticator/{id}""#)));
    // What the page's button posts.
    let pressed = browser
        .http
        .post(format!("{}/_sim/authenticator/{id}", browser.sim.base_url))
        .form(&[
            ("approve", "true"),
            ("number", &approval["number"].to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(pressed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&pressed),
        location(&submitted),
        "back to the waiting page"
    );
    let done = browser.follow(&pressed).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let back = Url::parse(&location(&done)).unwrap();
    assert!(query(&back, "code").is_some());
    // The waiting page is single use too.
    let again = browser.follow(&pressed).await;
    assert!(again.headers().get("location").is_none());
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("already been completed")
    );
}

#[tokio::test]
async fn a_blocking_conditional_access_policy_stops_the_sign_in_after_the_password() {
    let mut tenant = latchkey::sim::seed::demo(time::OffsetDateTime::now_utc()).unwrap();
    let lidia = tenant
        .user("lidia.holloway@contoso.com")
        .unwrap()
        .id
        .clone();
    tenant.conditional_access_policies.push(serde_json::json!({
        "id": "5b1f0c1e-0000-4000-8000-000000000053",
        "displayName": "Block Lidia everywhere",
        "state": "enabled",
        "conditions": {
            "users": {"includeUsers": [lidia]},
            "applications": {"includeApplications": ["All"]},
            "clientAppTypes": ["all"],
            "locations": null,
        },
        "grantControls": {"operator": "OR", "builtInControls": ["block"]},
    }));
    let browser = Browser::start_with(tenant).await;
    let response = browser
        .post_sign_in("lidia.holloway@contoso.com", "Ledger-Tide-63")
        .await;
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("AADSTS53003"), "{html}");
    let tenant = browser.sim.sim.tenant();
    let record = &tenant.sign_ins[0];
    assert_eq!(record.error_code, 53003);
    assert_eq!(record.ca_policies[0].1, "Block Lidia everywhere");
    assert_eq!(record.ca_policies[0].2, "failure");
}

#[tokio::test]
async fn form_post_sends_the_code_in_a_self_submitting_form() {
    let browser = Browser::start().await;
    let mut form = browser.params(REDIRECT);
    form.push(("response_mode", "form_post".to_owned()));
    form.push(("username", "lee.gu@contoso.com".to_owned()));
    form.push(("password", "Contract-Oak-51".to_owned()));
    let response = browser.post_form(&form).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains(&format!(r#"action="{REDIRECT}""#)), "{html}");
    assert!(html.contains(r#"name="code""#));
    assert!(html.contains(r#"name="state" value="state-123""#));
}

#[tokio::test]
async fn expired_foreign_and_tampered_tokens_are_401_with_the_envelope() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    let get = |token: String| {
        let client = sim.client.clone();
        let url = sim.graph("/users/adele.vance@contoso.com");
        async move {
            let response = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    assert_eq!(get(token.clone()).await.0, 200);

    // Tampered: one character of the signature changed.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = get(tampered).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    // Signed by another key: a token we sign ourselves with a fresh RSA key.
    let foreign = {
        let pem = include_str!("../fixtures/foreign-rsa-key.pem");
        let key = latchkey::sim::SigningKey::from_pem(pem.as_bytes()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64_url_decode(token.split('.').nth(1).unwrap())).unwrap();
        key.sign(&claims).unwrap()
    };
    let (status, body) = get(foreign).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    // Expired: the emulator's clock moves past the token's lifetime.
    sim.sim.advance_clock(time::Duration::seconds(3600));
    let (status, body) = get(token).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    // A JWT segment is unpadded base64url; decode it without another dependency.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let value = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[tokio::test]
async fn a_huge_body_gets_the_envelope_and_the_server_keeps_serving() {
    let sim = TestSim::start().await;
    let token = sim.app_token().await;
    let huge = format!(
        "{{\"accountEnabled\": true, \"pad\": \"{}\"}}",
        "x".repeat(5 << 20)
    );
    let response = sim
        .client
        .patch(sim.graph("/users/adele.vance@contoso.com"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let after = sim
        .client
        .get(sim.graph("/users/adele.vance@contoso.com"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
}

/// Posts the sign-in form's "Use the Authenticator app instead" button.
async fn post_passwordless(browser: &Browser, user: &str) -> reqwest::Response {
    let mut form = browser.params(REDIRECT);
    form.push(("step", "passwordless".to_owned()));
    form.push(("username", user.to_owned()));
    browser.post_form(&form).await
}

#[tokio::test]
async fn phone_sign_in_needs_no_password_so_expiry_and_lockout_do_not_stop_it() {
    let browser = Browser::start().await;
    let page = browser.get_authorize(&browser.params(REDIRECT)).await;
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Use the Authenticator app instead"),
        "the page offers phone sign-in"
    );
    // Grady's password expired; a password sign-in would send him to the
    // update page. Henrietta is locked out by smart lockout.
    for upn in ["grady.archie@contoso.com", "henrietta.mueller@contoso.com"] {
        let submitted = post_passwordless(&browser, upn).await;
        assert_eq!(
            submitted.status(),
            StatusCode::SEE_OTHER,
            "{upn}: to the phone"
        );
        let approval = browser.pending_for(upn).await;
        assert_eq!(
            browser.answer(&approval, true).await.status(),
            StatusCode::OK
        );
        let done = browser.follow(&submitted).await;
        assert_eq!(done.status(), StatusCode::FOUND, "{upn}: back to the app");
        let code = query(&Url::parse(&location(&done)).unwrap(), "code").unwrap();
        let body: Value = browser.redeem(&code, VERIFIER).await.json().await.unwrap();
        let id = browser
            .verify(body["id_token"].as_str().unwrap(), &browser.client_id)
            .await;
        assert_eq!(id["preferred_username"], upn);
        assert_eq!(
            id["amr"],
            serde_json::json!(["rsa", "mfa"]),
            "{upn}: no password"
        );
    }
}

#[tokio::test]
async fn phone_sign_in_is_refused_to_disabled_accounts_and_users_without_authenticator() {
    let browser = Browser::start().await;
    for (upn, says) in [
        ("christie.cline@contoso.com", "Your account has been locked"),
        ("lee.gu@contoso.com", "no Microsoft Authenticator set up"),
    ] {
        let page = post_passwordless(&browser, upn).await;
        assert_eq!(page.status(), StatusCode::OK, "{upn}: the page again");
        let html = page.text().await.unwrap();
        assert!(html.contains(says), "{upn}: {html}");
    }
    assert_eq!(
        browser.last_sign_in_code("christie.cline@contoso.com"),
        50057,
        "the refused attempt is logged"
    );
}
