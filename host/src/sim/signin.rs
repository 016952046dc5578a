//! The interactive sign-in: the authorize endpoint and its pages, the
//! simulated Microsoft Authenticator, and the redemption of authorization
//! codes (OIDC authorization code flow with PKCE).
//!
//! This is how Latchkey verifies who it is talking to (DESIGN.md, "Identity
//! verification"): the user signs in to Latchkey's app registration, and
//! Latchkey checks the ID token's `oid` and that `amr` contains `mfa`.
//!
//! * `GET /{tenant}/oauth2/v2.0/authorize`: checks the request and renders
//!   the sign-in page. A request whose tenant, client or redirect URI cannot
//!   be trusted gets an error page, never a redirect; once the redirect URI is
//!   known to be registered, other errors go back to it, as RFC 6749 §4.1.2.1
//!   and Entra do.
//! * `POST /{tenant}/oauth2/v2.0/authorize`: checks the password against the
//!   seeded user (smart lockout, disabled accounts, expired or must-change
//!   passwords, blocking Conditional Access policies), then asks the
//!   Authenticator for a number-matched approval, or completes with the
//!   password alone for users without Authenticator. Its second button,
//!   "Use the Authenticator app instead", is phone sign-in without a password
//!   (`amr` `["rsa","mfa"]`): password expiry and smart lockout do not apply,
//!   a disabled account and Conditional Access still do.
//! * `GET /{tenant}/oauth2/v2.0/authorize/mfa/{approval}`: the "Approve sign
//!   in request" page; it refreshes itself and redirects to the app once the
//!   request is answered.
//! * `GET /_sim/authenticator/pending`, `GET|POST /_sim/authenticator/{id}`:
//!   the simulated phone, for tests and for a person running the demo.
//!
//! The password rules (smart lockout, disabled accounts, expiry) are
//! [`control::attempt`]'s, the same as for `POST /_sim/signins`, and every
//! attempt is written to the sign-in log with the code Entra would use
//! (50034, 50126, 50053, 50057, 50055, 50144, 53003, 500121, or 0). Users
//! without Microsoft Authenticator sign in with the password alone (`amr`
//! `["pwd"]`): the emulator simulates no other second factor. It has no
//! network locations: its sign-ins come from the trusted corporate network,
//! so Conditional Access policies with a location condition do not apply to
//! them (the seeded sign-in log is where location blocks show).
//!
//! Pending approvals and codes live in [`Sim::codes`], keyed `approval:ID`
//! and `code:CODE`. Codes are single use, expire after ten minutes and are
//! bound to the client, the redirect URI, the PKCE challenge, the nonce, the
//! user and the methods used.

use std::collections::HashSet;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::sim::control;
use crate::sim::error::GraphError;
use crate::sim::identity::{
    ACCESS_TOKEN_SECONDS, GRAPH_APP_ID, GRAPH_AUDIENCE, TokenRequest, issuer, oauth_error,
};
use crate::sim::model::{App, Method, SignIn, Tenant, User};
use crate::sim::state::{Audit, Initiator, Sim, rfc3339};

/// How long an authorization code may be redeemed, in seconds (Entra: 10 minutes).
pub const CODE_SECONDS: i64 = 600;
/// How long an Authenticator request waits for an answer, in seconds.
pub const APPROVAL_SECONDS: i64 = 300;
/// ID token lifetime, in seconds (Entra: one hour).
pub const ID_TOKEN_SECONDS: i64 = 3600;

/// Scopes that are about the sign-in itself rather than a Graph permission.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
const GRAPH_PREFIX: &str = "https://graph.microsoft.com/";
/// What to percent-encode in a query value or path segment: all but
/// RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// This module's routes.
pub fn routes() -> Router<Sim> {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize_page).post(authorize_submit),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize/mfa/{approval}",
            get(mfa_page),
        )
        .route("/_sim/authenticator/pending", get(pending_approvals))
        .route(
            "/_sim/authenticator/{approval}",
            get(approval_status).post(answer_approval),
        )
}

// ---------------------------------------------------------------------------
// The authorization request

/// The authorize endpoint's parameters, as sent (query or hidden form fields).
#[derive(Clone, Debug, Default, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    login_hint: Option<String>,
    response_mode: Option<String>,
}

/// A checked authorization request.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Authorization {
    /// The tenant as named in the URL, for links back to these pages.
    tenant: String,
    client_id: String,
    app_name: String,
    redirect_uri: String,
    form_post: bool,
    /// The scope parameter as sent.
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    login_hint: Option<String>,
}

impl Authorization {
    fn target(&self) -> Target {
        Target {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            form_post: self.form_post,
        }
    }

    /// The parameters to carry in hidden fields, normalised.
    fn hidden(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("client_id", self.client_id.clone()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scope.clone()),
            ("code_challenge", self.code_challenge.clone()),
            ("code_challenge_method", "S256".to_owned()),
        ];
        if self.form_post {
            fields.push(("response_mode", "form_post".to_owned()));
        }
        for (name, value) in [
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("login_hint", &self.login_hint),
        ] {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
        fields
    }
}

/// Where a response goes back to the app.
#[derive(Clone, Debug)]
struct Target {
    redirect_uri: String,
    state: Option<String>,
    form_post: bool,
}

/// Why an authorization request is refused.
enum Refusal {
    /// Shown to the user: the redirect URI cannot be trusted (yet).
    Page { code: u32, message: String },
    /// Sent back to the app's registered redirect URI.
    Redirect {
        target: Target,
        error: &'static str,
        code: u32,
        message: String,
    },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Page { code, message } => error_page(code, &message),
            Refusal::Redirect {
                target,
                error,
                code,
                message,
            } => redirect_error(&target, error, code, &message),
        }
    }
}

/// Checks an authorization request against the tenant and the app registration.
fn validate(
    sim: &Sim,
    tenant_name: &str,
    params: &AuthorizeParams,
) -> Result<Authorization, Refusal> {
    let tenant = sim.tenant();
    if !tenant.is_named(tenant_name) {
        return Err(Refusal::Page {
            code: 90002,
            message: format!(
                "Tenant '{tenant_name}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        });
    }
    let Some(client_id) = non_empty(&params.client_id) else {
        return Err(Refusal::Page {
            code: 900144,
            message: "The request body must contain the following parameter: 'client_id'."
                .to_owned(),
        });
    };
    let Some(app) = tenant.apps.iter().find(|a| a.client_id == client_id) else {
        return Err(Refusal::Page {
            code: 700016,
            message: format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                tenant.display_name
            ),
        });
    };
    let Some(redirect_uri) = non_empty(&params.redirect_uri) else {
        return Err(Refusal::Page {
            code: 900144,
            message: "The request body must contain the following parameter: 'redirect_uri'."
                .to_owned(),
        });
    };
    if !app
        .redirect_uris
        .iter()
        .any(|registered| redirect_uri_matches(registered, redirect_uri))
    {
        return Err(Refusal::Page {
            code: 50011,
            message: format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal.",
                app.client_id
            ),
        });
    }
    // From here on the redirect URI is trusted: errors go back to the app.
    let form_post = match params.response_mode.as_deref() {
        None | Some("") | Some("query") => false,
        Some("form_post") => true,
        Some(other) => {
            return Err(Refusal::Redirect {
                target: Target {
                    redirect_uri: redirect_uri.to_owned(),
                    state: params.state.clone(),
                    form_post: false,
                },
                error: "invalid_request",
                code: 9002313,
                message: format!(
                    "Invalid request. The response_mode '{other}' is not supported for the authorization code flow; use 'query' or 'form_post'."
                ),
            });
        }
    };
    let target = Target {
        redirect_uri: redirect_uri.to_owned(),
        state: params.state.clone(),
        form_post,
    };
    let refuse = |error: &'static str, code: u32, message: String| Refusal::Redirect {
        target: target.clone(),
        error,
        code,
        message,
    };
    match params.response_type.as_deref() {
        Some("code") => {}
        None | Some("") => {
            return Err(refuse(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'response_type'."
                    .to_owned(),
            ));
        }
        Some(other) => {
            return Err(refuse(
                "unsupported_response_type",
                700054,
                format!(
                    "response_type '{other}' is not enabled for the application. Only 'code' is supported."
                ),
            ));
        }
    }
    let scope = non_empty(&params.scope).unwrap_or_default();
    if !scope
        .split_whitespace()
        .any(|s| s.eq_ignore_ascii_case("openid"))
    {
        return Err(refuse(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' must include 'openid' for a sign-in."
            ),
        ));
    }
    let Some(code_challenge) = non_empty(&params.code_challenge) else {
        return Err(refuse(
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required. Send code_challenge and code_challenge_method=S256."
                .to_owned(),
        ));
    };
    if params.code_challenge_method.as_deref() != Some("S256") {
        return Err(refuse(
            "invalid_request",
            9002313,
            "Invalid request. The code_challenge_method must be 'S256'; 'plain' is not accepted."
                .to_owned(),
        ));
    }
    // S256 challenges are 32 bytes in unpadded base64url.
    if code_challenge.len() != 43
        || !code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(refuse(
            "invalid_request",
            9002313,
            "Invalid request. The code_challenge is not a base64url-encoded SHA-256 digest."
                .to_owned(),
        ));
    }
    if params.prompt.as_deref() == Some("none") {
        return Err(refuse(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.".to_owned(),
        ));
    }
    Ok(Authorization {
        tenant: tenant_name.to_owned(),
        client_id: app.client_id.clone(),
        app_name: app.display_name.clone(),
        redirect_uri: redirect_uri.to_owned(),
        form_post,
        scope: scope.to_owned(),
        state: params.state.clone(),
        nonce: params.nonce.clone(),
        code_challenge: code_challenge.to_owned(),
        login_hint: non_empty(&params.login_hint).map(str::to_owned),
    })
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Exact comparison, except that a registered loopback URI
/// (`http://127.0.0.1/...` or `http://localhost/...`) matches any port, as
/// Entra allows for native apps.
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(requested)) {
        (Some((host_a, rest_a)), Some((host_b, rest_b))) => host_a == host_b && rest_a == rest_b,
        _ => false,
    }
}

/// `(host, path-and-query)` of an `http://127.0.0.1[:port]/...` or
/// `http://localhost[:port]/...` URI.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => authority,
    };
    (host == "127.0.0.1" || host == "localhost").then_some((host, path))
}

// ---------------------------------------------------------------------------
// The sign-in page

/// `GET /{tenant}/oauth2/v2.0/authorize`.
async fn authorize_page(
    State(sim): State<Sim>,
    Path(tenant_name): Path<String>,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    match validate(&sim, &tenant_name, &params) {
        Ok(auth) => {
            let username = auth.login_hint.clone().unwrap_or_default();
            let display = sim.tenant().display_name.clone();
            login_page(&auth, &display, &username, None)
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The sign-in form: the request's parameters plus what the user typed.
/// Deliberately not `Debug`: it holds passwords.
#[derive(Deserialize)]
struct SignInForm {
    #[serde(flatten)]
    params: AuthorizeParams,
    /// `password` (default) or `update_password`.
    step: Option<String>,
    username: Option<String>,
    password: Option<String>,
    new_password: Option<String>,
    confirm_password: Option<String>,
}

/// What the password step decided.
enum Step {
    /// Back to the sign-in page with this message.
    Retry { username: String, message: String },
    /// The password must be changed first (expired, or reset with
    /// "change at next sign-in"); `message` explains a refused new one.
    UpdatePassword {
        username: String,
        reason: String,
        message: Option<String>,
    },
    /// Refused for good: a page with this code and message.
    Blocked { code: u32, message: String },
    /// Waiting for the Authenticator.
    Mfa(Box<Approval>),
    /// Signed in with the password alone.
    Done { user_id: String, amr: Vec<String> },
}

/// `POST /{tenant}/oauth2/v2.0/authorize`.
async fn authorize_submit(
    State(sim): State<Sim>,
    Path(tenant_name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    // The hidden fields came back from the browser: check them again.
    let auth = match validate(&sim, &tenant_name, &form.params) {
        Ok(auth) => auth,
        Err(refusal) => return refusal.into_response(),
    };
    let ip = client_ip(&headers);
    let now = sim.now();
    let (step, display) = {
        let mut tenant = sim.tenant();
        let step = password_step(&mut tenant, &auth, &form, now, &ip);
        (step, tenant.display_name.clone())
    };
    match step {
        Step::Retry { username, message } => login_page(&auth, &display, &username, Some(&message)),
        Step::UpdatePassword {
            username,
            reason,
            message,
        } => update_password_page(&auth, &username, &reason, message.as_deref()),
        Step::Blocked { code, message } => error_page(code, &message),
        Step::Mfa(approval) => {
            let location = format!(
                "/{}/oauth2/v2.0/authorize/mfa/{}",
                utf8_percent_encode(&auth.tenant, COMPONENT),
                approval.id
            );
            put(
                &sim,
                &approval_key(&approval.id),
                &approval,
                approval.keep_until,
            );
            see_other(&location)
        }
        Step::Done { user_id, amr } => {
            let code = issue_code(&sim, &auth, &user_id, amr, now);
            finish(&auth.target(), &[("code", code.as_str())])
        }
    }
}

/// The password step, with the tenant locked: checks the credentials, the
/// account and Conditional Access, and records the attempt.
fn password_step(
    tenant: &mut Tenant,
    auth: &Authorization,
    form: &SignInForm,
    now: OffsetDateTime,
    ip: &str,
) -> Step {
    let username = form
        .username
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let password = form.password.as_deref().unwrap_or_default();
    if username.is_empty() {
        return Step::Retry {
            username,
            message: "Enter a valid email address, phone number, or Skype name.".to_owned(),
        };
    }
    let Some(index) = tenant.user_index(&username) else {
        // Entra logs the attempt under the name typed; there is no object id.
        tenant.log_sign_in(SignIn {
            id: uuid::Uuid::new_v4().to_string(),
            created: now,
            user_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            user_principal_name: username.clone(),
            user_display_name: String::new(),
            app_display_name: auth.app_name.clone(),
            ip_address: ip.to_owned(),
            error_code: control::USER_NOT_FOUND,
            ca_policies: Vec::new(),
        });
        return Step::Retry {
            username,
            message: "This username may be incorrect. Make sure you typed it correctly. Otherwise, contact your admin.".to_owned(),
        };
    };
    let log = |tenant: &mut Tenant, code: u32, ca: Vec<(String, String, String)>| {
        record_sign_in(tenant, index, now, &auth.app_name, ip, code, ca);
    };
    if form.step.as_deref() == Some("passwordless") {
        return passwordless_step(tenant, index, auth, username, now, ip);
    }
    if password.is_empty() {
        return Step::Retry {
            username,
            message: "Please enter your password.".to_owned(),
        };
    }
    let updating = form.step.as_deref() == Some("update_password");
    // Smart lockout, disabled accounts and expiry follow the same rules as
    // `POST /_sim/signins`.
    let code = control::attempt(tenant, index, password, now);
    let message = match code {
        control::SUCCESS | control::PASSWORD_EXPIRED => None,
        control::LOCKED => Some(
            "Your account is temporarily locked to prevent unauthorized use. Try again later, and if you still have trouble, contact your admin.",
        ),
        control::INVALID_PASSWORD => Some(
            "Your account or password is incorrect. If you don't remember your password, reset it now.",
        ),
        control::DISABLED => Some(
            "Your account has been locked. Contact your support person to unlock it, then try again.",
        ),
        control::ON_PREM_PASSWORD_EXPIRED => Some(
            "Your password has expired. Your password is managed by your organization's on-premises directory: change it from a computer on your organization's network, or contact your admin.",
        ),
        _ => Some("We couldn't sign you in. Contact your admin."),
    };
    if let Some(message) = message {
        log(tenant, code, Vec::new());
        return Step::Retry {
            username,
            message: message.to_owned(),
        };
    }
    let expired = code == control::PASSWORD_EXPIRED;
    if expired || tenant.users[index].force_change_password {
        let reason = if expired {
            "Your password has expired. You need to update your password before you can sign in."
        } else {
            "You need to update your password because this is the first time you are signing in, or because your password was reset by an administrator."
        };
        if !updating {
            if expired {
                log(tenant, code, Vec::new());
            }
            return Step::UpdatePassword {
                username,
                reason: reason.to_owned(),
                message: None,
            };
        }
        let new_password = form.new_password.as_deref().unwrap_or_default();
        let confirm = form.confirm_password.as_deref().unwrap_or_default();
        if let Err(message) = acceptable_password(tenant, index, password, new_password, confirm) {
            return Step::UpdatePassword {
                username,
                reason: reason.to_owned(),
                message: Some(message),
            };
        }
        change_password(tenant, index, new_password, now, &auth.app_name);
    }
    let user = &tenant.users[index];
    if let Some((id, name)) = blocking_policy(tenant, user, &auth.client_id) {
        log(tenant, 53003, vec![(id, name, "failure".to_owned())]);
        return Step::Blocked {
            code: 53003,
            message: "You cannot access this right now. Your sign-in was successful but does not meet the criteria to access this resource. For example, you might be signing in from a browser, app, or location that is restricted by your admin.".to_owned(),
        };
    }
    let user = &tenant.users[index];
    let authenticator = user.methods.iter().find_map(|m| match m {
        Method::MicrosoftAuthenticator { display_name, .. } => Some(display_name.clone()),
        _ => None,
    });
    match authenticator {
        Some(device) => Step::Mfa(Box::new(Approval::new(auth, user, device, ip, now))),
        None => {
            log(tenant, control::SUCCESS, Vec::new());
            Step::Done {
                user_id: tenant.users[index].id.clone(),
                amr: vec!["pwd".to_owned()],
            }
        }
    }
}

/// Phone sign-in with Microsoft Authenticator instead of a password: for an
/// enabled account with Authenticator, a number-matched approval on the
/// phone is the whole sign-in. Password expiry and smart lockout do not
/// apply (no password is used); a disabled account and Conditional Access
/// still block.
fn passwordless_step(
    tenant: &mut Tenant,
    index: usize,
    auth: &Authorization,
    username: String,
    now: OffsetDateTime,
    ip: &str,
) -> Step {
    let user = &tenant.users[index];
    if !user.account_enabled {
        record_sign_in(
            tenant,
            index,
            now,
            &auth.app_name,
            ip,
            control::DISABLED,
            Vec::new(),
        );
        return Step::Retry {
            username,
            message: "Your account has been locked. Contact your support person to unlock it, then try again.".to_owned(),
        };
    }
    let device = user.methods.iter().find_map(|m| match m {
        Method::MicrosoftAuthenticator { display_name, .. } => Some(display_name.clone()),
        _ => None,
    });
    let Some(device) = device else {
        return Step::Retry {
            username,
            message: "You have no Microsoft Authenticator set up for phone sign-in. Sign in with your password.".to_owned(),
        };
    };
    if let Some((id, name)) = blocking_policy(tenant, user, &auth.client_id) {
        record_sign_in(
            tenant,
            index,
            now,
            &auth.app_name,
            ip,
            53003,
            vec![(id, name, "failure".to_owned())],
        );
        return Step::Blocked {
            code: 53003,
            message: "You cannot access this right now. Your sign-in was successful but does not meet the criteria to access this resource. For example, you might be signing in from a browser, app, or location that is restricted by your admin.".to_owned(),
        };
    }
    let mut approval = Approval::new(auth, user, device, ip, now);
    approval.passwordless = true;
    Step::Mfa(Box::new(approval))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new password the user chose: confirmed, not the current one, and
/// within the rules an admin-set password follows
/// ([`crate::sim::users::check_password`]).
fn acceptable_password(
    tenant: &Tenant,
    index: usize,
    current: &str,
    new: &str,
    confirm: &str,
) -> Result<(), String> {
    if new != confirm {
        return Err("The passwords don't match.".to_owned());
    }
    if new == current {
        return Err(
            "You can't reuse your current password. Choose a different password.".to_owned(),
        );
    }
    let min = tenant.settings.password_min_length;
    crate::sim::users::check_password(new, &tenant.users[index], min).map_err(|_| {
        format!(
            "Passwords must have at least {min} characters and contain at least three of the following: uppercase letters, lowercase letters, numbers, and symbols. They can't contain your name."
        )
    })
}

/// The user changes their own password at sign-in: the new password,
/// the timestamp, the flag cleared, and a directory audit entry.
fn change_password(
    tenant: &mut Tenant,
    index: usize,
    new: &str,
    now: OffsetDateTime,
    app_name: &str,
) {
    let user = &mut tenant.users[index];
    user.password = new.to_owned();
    user.last_password_change = now;
    user.force_change_password = false;
    user.lockout.failures = 0;
    user.lockout.recent_wrong.clear();
    let user = user.clone();
    tenant.audit(
        now,
        Initiator::User(&user),
        &user,
        Audit {
            service: "Self-service Password Management",
            category: "UserManagement",
            activity: "Change password (self-service)",
            operation: "Update",
            result_reason: "User changed password",
            modified: Vec::new(),
            details: vec![json!({"key": "AppDisplayName", "value": app_name})],
        },
    );
}

/// The first enabled Conditional Access policy that blocks this sign-in
/// (grant control `block`, the user, the app and the client type in scope),
/// as `(id, displayName)`.
fn blocking_policy(tenant: &Tenant, user: &User, client_id: &str) -> Option<(String, String)> {
    let groups = transitive_groups(tenant, user);
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default()
    };
    tenant
        .conditional_access_policies
        .iter()
        .find_map(|policy| {
            if policy.get("state").and_then(Value::as_str) != Some("enabled") {
                return None;
            }
            let grant = policy.get("grantControls").unwrap_or(&Value::Null);
            if !strings(grant, "builtInControls")
                .iter()
                .any(|c| c == "block")
            {
                return None;
            }
            let conditions = policy.get("conditions").unwrap_or(&Value::Null);
            let users = conditions.get("users").unwrap_or(&Value::Null);
            let id = user.id.to_ascii_lowercase();
            let roles: Vec<String> = user.roles.iter().map(|r| r.to_ascii_lowercase()).collect();
            let hit = |list: &[String], ours: &[String]| list.iter().any(|x| ours.contains(x));
            let included = strings(users, "includeUsers")
                .iter()
                .any(|u| u == "all" || *u == id)
                || hit(&strings(users, "includeGroups"), &groups)
                || hit(&strings(users, "includeRoles"), &roles);
            let excluded = strings(users, "excludeUsers").contains(&id)
                || hit(&strings(users, "excludeGroups"), &groups)
                || hit(&strings(users, "excludeRoles"), &roles);
            if !included || excluded {
                return None;
            }
            let apps = conditions.get("applications").unwrap_or(&Value::Null);
            let client = client_id.to_ascii_lowercase();
            let app_included = strings(apps, "includeApplications")
                .iter()
                .any(|a| a == "all" || *a == client);
            if !app_included || strings(apps, "excludeApplications").contains(&client) {
                return None;
            }
            let client_types = strings(conditions, "clientAppTypes");
            if !client_types.is_empty()
                && !client_types.iter().any(|t| t == "all" || t == "browser")
            {
                return None;
            }
            // No named locations, platforms or risk in the emulator: a policy
            // scoped by them does not apply to its (trusted, riskless) sign-ins.
            // "All, with no exclusions" is the only location or platform
            // condition that still covers them.
            let covers_all = |name: &str, include: &str, exclude: &str| {
                let condition = conditions.get(name).unwrap_or(&Value::Null);
                condition.is_null()
                    || (strings(condition, include).iter().any(|x| x == "all")
                        && strings(condition, exclude).is_empty())
            };
            if !covers_all("locations", "includeLocations", "excludeLocations")
                || !covers_all("platforms", "includePlatforms", "excludePlatforms")
            {
                return None;
            }
            if !strings(conditions, "signInRiskLevels").is_empty()
                || !strings(conditions, "userRiskLevels").is_empty()
            {
                return None;
            }
            Some((
                policy
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                policy
                    .get("displayName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ))
        })
}

/// The ids (lowercase) of the groups the user is in, directly or through
/// nested groups.
fn transitive_groups(tenant: &Tenant, user: &User) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: Vec<String> = user.groups.iter().map(|g| g.to_ascii_lowercase()).collect();
    while let Some(group) = queue.pop() {
        if !seen.insert(group.clone()) {
            continue;
        }
        if let Some(g) = tenant
            .groups
            .iter()
            .find(|g| g.id.eq_ignore_ascii_case(&group))
        {
            queue.extend(g.groups.iter().map(|p| p.to_ascii_lowercase()));
        }
    }
    seen.into_iter().collect()
}

/// Appends an interactive sign-in to the log (newest first).
fn record_sign_in(
    tenant: &mut Tenant,
    index: usize,
    now: OffsetDateTime,
    app_name: &str,
    ip: &str,
    error_code: u32,
    ca_policies: Vec<(String, String, String)>,
) {
    let user = &tenant.users[index];
    let record = SignIn {
        id: uuid::Uuid::new_v4().to_string(),
        created: now,
        user_id: user.id.clone(),
        user_principal_name: user.user_principal_name.clone(),
        user_display_name: user.display_name.clone(),
        app_display_name: app_name.to_owned(),
        ip_address: ip.to_owned(),
        error_code,
        ca_policies,
    };
    tenant.log_sign_in(record);
}

fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("127.0.0.1")
        .to_owned()
}

// ---------------------------------------------------------------------------
// The simulated Microsoft Authenticator

/// Where an Authenticator request stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    /// The sign-in page has acted on the answer (or on the timeout).
    Completed,
}

/// A sign-in waiting for the user to approve it on their phone.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Approval {
    id: String,
    status: ApprovalStatus,
    /// The number the sign-in page shows and the phone asks for.
    number: u8,
    user_id: String,
    user_principal_name: String,
    display_name: String,
    /// The Authenticator's device name.
    device: String,
    /// The client's address, for the sign-in log.
    ip: String,
    created: i64,
    expires: i64,
    keep_until: i64,
    auth: Authorization,
    /// Phone sign-in without a password: the approval is the only factor
    /// (`amr` `["rsa", "mfa"]`, as Entra writes it), so neither password
    /// expiry nor smart lockout, which are about passwords, stand in its way.
    #[serde(default)]
    passwordless: bool,
}

impl Approval {
    fn new(
        auth: &Authorization,
        user: &User,
        device: String,
        ip: &str,
        now: OffsetDateTime,
    ) -> Approval {
        let id = uuid::Uuid::new_v4();
        let now = now.unix_timestamp();
        Approval {
            id: id.to_string(),
            status: ApprovalStatus::Pending,
            // Two digits, from the id's randomness.
            number: 10 + id.as_bytes()[0] % 90,
            user_id: user.id.clone(),
            user_principal_name: user.user_principal_name.clone(),
            display_name: user.display_name.clone(),
            device,
            ip: ip.to_owned(),
            created: now,
            expires: now + APPROVAL_SECONDS,
            keep_until: now + APPROVAL_SECONDS + CODE_SECONDS,
            auth: auth.clone(),
            passwordless: false,
        }
    }

    fn expired(&self, now: i64) -> bool {
        self.status == ApprovalStatus::Pending && now >= self.expires
    }

    fn summary(&self, now: i64) -> Value {
        let status = if self.expired(now) {
            "expired"
        } else {
            match self.status {
                ApprovalStatus::Pending => "pending",
                ApprovalStatus::Approved => "approved",
                ApprovalStatus::Denied => "denied",
                ApprovalStatus::Completed => "completed",
            }
        };
        json!({
            "id": self.id,
            "status": status,
            "user": self.user_principal_name,
            "userId": self.user_id,
            "displayName": self.display_name,
            "number": self.number,
            "device": self.device,
            "app": self.auth.app_name,
            "createdDateTime": rfc3339(unix(self.created)),
            "expiresDateTime": rfc3339(unix(self.expires)),
        })
    }
}

fn approval_key(id: &str) -> String {
    format!("approval:{id}")
}

fn code_key(code: &str) -> String {
    format!("code:{code}")
}

fn unix(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What the waiting page found.
enum Settled {
    /// No answer yet.
    Waiting,
    /// The page already acted on the answer.
    AlreadyDone,
    /// Approved (`Some(true)`), denied, or timed out (`None`): now completed.
    Answered(Option<bool>),
}

/// `GET /{tenant}/oauth2/v2.0/authorize/mfa/{approval}`: waits for the
/// answer, then goes back to the app.
async fn mfa_page(State(sim): State<Sim>, Path((_tenant, id)): Path<(String, String)>) -> Response {
    let now = sim.now();
    // Read and settle the request under one lock, so that two polls cannot
    // both act on one answer.
    let settled = with_approval(&sim, &id, |approval| {
        let answer = if approval.expired(now.unix_timestamp()) {
            None
        } else {
            match approval.status {
                ApprovalStatus::Pending => return Settled::Waiting,
                ApprovalStatus::Approved => Some(true),
                ApprovalStatus::Denied => Some(false),
                ApprovalStatus::Completed => return Settled::AlreadyDone,
            }
        };
        approval.status = ApprovalStatus::Completed;
        Settled::Answered(answer)
    });
    let (approval, answer) = match settled {
        Some((approval, Settled::Answered(answer))) => (approval, answer),
        Some((approval, Settled::Waiting)) => return approve_page(&approval),
        Some((_, Settled::AlreadyDone)) => {
            return error_page(
                50000,
                "This sign-in request has already been completed. Go back to the app and sign in again.",
            );
        }
        None => {
            return error_page(
                50000,
                "This sign-in request was not found or has expired. Go back to the app and sign in again.",
            );
        }
    };
    let user_exists = {
        let mut tenant = sim.tenant();
        let index = tenant.user_index(&approval.user_id);
        let error_code = if answer == Some(true) {
            control::SUCCESS
        } else {
            control::MFA_FAILED
        };
        if let Some(index) = index {
            record_sign_in(
                &mut tenant,
                index,
                now,
                &approval.auth.app_name,
                &approval.ip,
                error_code,
                Vec::new(),
            );
        }
        index.is_some()
    };
    let target = approval.auth.target();
    match answer {
        Some(true) if user_exists => {
            let code = issue_code(
                &sim,
                &approval.auth,
                &approval.user_id,
                if approval.passwordless {
                    vec!["rsa".to_owned(), "mfa".to_owned()]
                } else {
                    vec!["pwd".to_owned(), "mfa".to_owned()]
                },
                now,
            );
            finish(&target, &[("code", code.as_str())])
        }
        Some(true) => error_page(50034, "The user account does not exist in the directory."),
        Some(false) => redirect_error(
            &target,
            "access_denied",
            500121,
            "Authentication failed during strong authentication request. The sign-in was denied in Microsoft Authenticator.",
        ),
        None => redirect_error(
            &target,
            "access_denied",
            500121,
            "Authentication failed during strong authentication request. The request timed out: it was not answered in Microsoft Authenticator.",
        ),
    }
}

/// `GET /_sim/authenticator/pending`: the requests waiting for an answer,
/// oldest first.
async fn pending_approvals(State(sim): State<Sim>) -> Json<Value> {
    let now = sim.now().unix_timestamp();
    let mut pending: Vec<Approval> = {
        let codes = sim.codes();
        codes
            .iter()
            .filter(|(k, _)| k.starts_with("approval:"))
            .filter_map(|(_, v)| serde_json::from_value::<Approval>(v.clone()).ok())
            .filter(|a| a.status == ApprovalStatus::Pending && !a.expired(now))
            .collect()
    };
    pending.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Json(json!({"value": pending.iter().map(|a| a.summary(now)).collect::<Vec<_>>()}))
}

/// `GET /_sim/authenticator/{approval}`.
async fn approval_status(
    State(sim): State<Sim>,
    Path(id): Path<String>,
) -> Result<Json<Value>, GraphError> {
    let approval =
        load::<Approval>(&sim, &approval_key(&id)).ok_or_else(|| GraphError::not_found(&id))?;
    Ok(Json(approval.summary(sim.now().unix_timestamp())))
}

/// The phone's answer.
#[derive(Debug, Deserialize)]
struct Answer {
    approve: bool,
    /// The number the user typed on the phone; a wrong one denies.
    #[serde(default)]
    number: Option<u32>,
}

/// `POST /_sim/authenticator/{approval}` with `{"approve": true|false}`
/// (JSON, or a form from the approval page's simulated phone).
async fn answer_approval(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let answer: Answer = if is_form {
        form_answer(&body)
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            GraphError::bad_request(format!(
                "Expected {{\"approve\": true|false}} (optionally \"number\"): {e}"
            ))
        })?
    }
    .ok_or_else(|| GraphError::bad_request("Expected approve=true|false (optionally number)."))?;
    let now = sim.now().unix_timestamp();
    let (approval, answered) = with_approval(&sim, &id, |approval| {
        if approval.status != ApprovalStatus::Pending || approval.expired(now) {
            return false;
        }
        let number_ok = answer
            .number
            .is_none_or(|n| n == u32::from(approval.number));
        approval.status = if answer.approve && number_ok {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        true
    })
    .ok_or_else(|| GraphError::not_found(&id))?;
    if !answered {
        return Err(GraphError::new(
            StatusCode::CONFLICT,
            "Request_BadRequest",
            format!(
                "The sign-in request {id} is no longer waiting for an answer ({}).",
                approval.summary(now)["status"]
                    .as_str()
                    .unwrap_or("answered")
            ),
        ));
    }
    if is_form {
        // The demo's simulated phone: back to the waiting page, which now
        // goes on to the app.
        Ok(see_other(&format!(
            "/{}/oauth2/v2.0/authorize/mfa/{}",
            utf8_percent_encode(&approval.auth.tenant, COMPONENT),
            approval.id
        )))
    } else {
        Ok(Json(approval.summary(now)).into_response())
    }
}

/// Reads `approve=true|false&number=NN` from a form body.
fn form_answer(body: &[u8]) -> Option<Answer> {
    let text = std::str::from_utf8(body).ok()?;
    let mut approve = None;
    let mut number = None;
    for pair in text.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "approve" => approve = Some(value == "true"),
            "number" => number = value.parse().ok(),
            _ => {}
        }
    }
    Some(Answer {
        approve: approve?,
        number,
    })
}

// ---------------------------------------------------------------------------
// Codes and the token endpoint's authorization code grant

/// An authorization code as issued.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Code {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    user_id: String,
    amr: Vec<String>,
    /// The scope parameter of the authorization request.
    scope: String,
    auth_time: i64,
    expires: i64,
    /// Kept after redemption, so that a second redemption is told so.
    redeemed: bool,
    keep_until: i64,
}

fn issue_code(
    sim: &Sim,
    auth: &Authorization,
    user_id: &str,
    amr: Vec<String>,
    now: OffsetDateTime,
) -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
    let now = now.unix_timestamp();
    let record = Code {
        client_id: auth.client_id.clone(),
        redirect_uri: auth.redirect_uri.clone(),
        code_challenge: auth.code_challenge.clone(),
        nonce: auth.nonce.clone(),
        user_id: user_id.to_owned(),
        amr,
        scope: auth.scope.clone(),
        auth_time: now,
        expires: now + CODE_SECONDS,
        redeemed: false,
        keep_until: now + 2 * CODE_SECONDS,
    };
    put(sim, &code_key(&code), &record, record.keep_until);
    code
}

/// What looking a code up found.
enum Lookup {
    Unknown,
    AlreadyRedeemed,
    Found(Code),
}

/// Takes a code: the first call returns it and marks it redeemed, whatever
/// the rest of the request turns out to be, so a code is tried only once.
fn take_code(sim: &Sim, code: &str) -> Lookup {
    let key = code_key(code);
    let mut codes = sim.codes();
    let Some(record) = codes
        .get(&key)
        .and_then(|v| serde_json::from_value::<Code>(v.clone()).ok())
    else {
        return Lookup::Unknown;
    };
    if record.redeemed {
        return Lookup::AlreadyRedeemed;
    }
    let mut spent = record.clone();
    spent.redeemed = true;
    if let Ok(value) = serde_json::to_value(&spent) {
        codes.insert(key, value);
    } else {
        codes.remove(&key);
    }
    Lookup::Found(record)
}

/// Redeems an authorization code (the token endpoint's `authorization_code`
/// grant; the client is already authenticated): checks the code, its client,
/// redirect URI and PKCE verifier, and returns an ID token and a delegated
/// Graph access token.
pub fn redeem(sim: &Sim, tenant: &Tenant, app: &App, request: &TokenRequest) -> Response {
    let bad = |error: &str, code: u32, message: &str| {
        oauth_error(StatusCode::BAD_REQUEST, error, code, message)
    };
    let Some(code) = request.code.as_deref().filter(|c| !c.is_empty()) else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        );
    };
    let grant = match take_code(sim, code) {
        Lookup::Found(grant) => grant,
        Lookup::AlreadyRedeemed => {
            return bad(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
            );
        }
        Lookup::Unknown => {
            return bad(
                "invalid_grant",
                70000,
                "The provided value for the 'code' parameter is not valid.",
            );
        }
    };
    let now = sim.now().unix_timestamp();
    if now >= grant.expires {
        return bad(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
    }
    if grant.client_id != app.client_id {
        return bad(
            "invalid_grant",
            70000,
            "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
        );
    }
    match request.redirect_uri.as_deref() {
        None | Some("") => {
            return bad(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'redirect_uri'.",
            );
        }
        Some(uri) if uri != grant.redirect_uri => {
            return bad(
                "invalid_grant",
                500112,
                "The reply address does not match the reply address provided when requesting Authorization code.",
            );
        }
        Some(_) => {}
    }
    let Some(verifier) = request.code_verifier.as_deref().filter(|v| !v.is_empty()) else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code_verifier'.",
        );
    };
    if !constant_time_eq(
        pkce_challenge(verifier).as_bytes(),
        grant.code_challenge.as_bytes(),
    ) {
        return bad(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        );
    }
    let Some(user) = tenant.user(&grant.user_id) else {
        return bad(
            "invalid_grant",
            50034,
            "The user account does not exist in the directory.",
        );
    };
    if !user.account_enabled {
        return bad("invalid_grant", 50057, "The user account is disabled.");
    }
    match tokens(sim, tenant, app, user, &grant, now) {
        Ok(body) => Json(body).into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 50000, &e),
    }
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge of a PKCE verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The token response for a redeemed code.
fn tokens(
    sim: &Sim,
    tenant: &Tenant,
    app: &App,
    user: &User,
    grant: &Code,
    now: i64,
) -> Result<Value, String> {
    let requested: Vec<&str> = grant.scope.split_whitespace().collect();
    let wanted = |scope: &str| {
        requested.iter().any(|r| {
            let r = r.strip_prefix(GRAPH_PREFIX).unwrap_or(r);
            r.eq_ignore_ascii_case(scope)
        })
    };
    let granted: Vec<&str> = app
        .delegated_scopes
        .iter()
        .map(String::as_str)
        .filter(|s| wanted(s))
        .collect();
    let scope_response = granted
        .iter()
        .map(|s| {
            if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s)) {
                (*s).to_owned()
            } else {
                format!("{GRAPH_PREFIX}{s}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let iss = issuer(sim, &tenant.id);
    let mut id_claims = json!({
        "aud": app.client_id,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_SECONDS,
        "auth_time": grant.auth_time,
        "amr": grant.amr,
        "name": user.display_name,
        "oid": user.id,
        "preferred_username": user.user_principal_name,
        "sub": pairwise_subject(&tenant.id, &user.id, &app.client_id),
        "tid": tenant.id,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "2.0",
    });
    if let Some(nonce) = &grant.nonce {
        id_claims["nonce"] = json!(nonce);
    }
    if wanted("email")
        && let Some(mail) = &user.mail
    {
        id_claims["email"] = json!(mail);
    }
    let access_claims = json!({
        "aud": GRAPH_AUDIENCE,
        "iss": iss,
        "iat": now,
        "nbf": now,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "acr": "1",
        "amr": grant.amr,
        "app_displayname": app.display_name,
        "appid": app.client_id,
        "azp": app.client_id,
        "family_name": user.surname,
        "given_name": user.given_name,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.id,
        "scp": granted.join(" "),
        "sub": pairwise_subject(&tenant.id, &user.id, GRAPH_APP_ID),
        "tid": tenant.id,
        "unique_name": user.user_principal_name,
        "upn": user.user_principal_name,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "2.0",
        "wids": user.roles,
    });
    let key = sim.key();
    Ok(json!({
        "token_type": "Bearer",
        "scope": scope_response,
        "expires_in": ACCESS_TOKEN_SECONDS,
        "ext_expires_in": ACCESS_TOKEN_SECONDS,
        "access_token": key.sign(&access_claims)?,
        "id_token": key.sign(&id_claims)?,
    }))
}

/// Entra's `sub` is pairwise: stable for one user and one app, different
/// across apps.
fn pairwise_subject(tenant_id: &str, user_id: &str, client_id: &str) -> String {
    let digest = Sha256::digest(format!("{tenant_id}|{user_id}|{client_id}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..30])
}

// ---------------------------------------------------------------------------
// The pending store

/// Stores `value` under `key`, and drops entries past their `keep_until`.
fn put<T: Serialize>(sim: &Sim, key: &str, value: &T, keep_until: i64) {
    let now = sim.now().unix_timestamp();
    let mut codes = sim.codes();
    // Expired entries go once a second: sweeping on every store made each
    // one cost as much as all pending sign-ins.
    if sim.sweep_due(now) {
        codes.retain(|_, v| {
            v.get("keep_until")
                .and_then(Value::as_i64)
                .is_none_or(|until| until > now)
        });
    }
    match serde_json::to_value(value) {
        Ok(value) if keep_until > now => {
            codes.insert(key.to_owned(), value);
        }
        Ok(_) => {
            codes.remove(key);
        }
        Err(e) => tracing::error!("cannot store {key}: {e}"),
    }
}

/// Runs `change` on the stored approval `id` and stores it back, under the
/// store's lock; returns the approval as changed and what `change` returned.
fn with_approval<R>(
    sim: &Sim,
    id: &str,
    change: impl FnOnce(&mut Approval) -> R,
) -> Option<(Approval, R)> {
    let key = approval_key(id);
    let mut codes = sim.codes();
    let mut approval: Approval = codes
        .get(&key)
        .and_then(|v| serde_json::from_value(v.clone()).ok())?;
    let result = change(&mut approval);
    match serde_json::to_value(&approval) {
        Ok(value) => {
            codes.insert(key, value);
        }
        Err(e) => tracing::error!("cannot store approval {id}: {e}"),
    }
    Some((approval, result))
}

fn load<T: DeserializeOwned>(sim: &Sim, key: &str) -> Option<T> {
    let codes = sim.codes();
    codes
        .get(key)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

// ---------------------------------------------------------------------------
// Responses back to the app

/// Sends `params` (and the state) back to the app: a 302 to the redirect URI
/// with a query, or a self-submitting form for `response_mode=form_post`.
fn finish(target: &Target, params: &[(&str, &str)]) -> Response {
    let mut all: Vec<(&str, &str)> = params.to_vec();
    if let Some(state) = &target.state {
        all.push(("state", state));
    }
    if target.form_post {
        let fields: String = all
            .iter()
            .map(|(k, v)| {
                format!(
                    r#"<input type="hidden" name="{}" value="{}">"#,
                    escape(k),
                    escape(v)
                )
            })
            .collect();
        let body = format!(
            r#"<form method="post" action="{}" id="f">{fields}<noscript><button type="submit">Continue</button></noscript></form><script>document.getElementById("f").submit()</script>"#,
            escape(&target.redirect_uri)
        );
        return html(page("Working...", &body, None));
    }
    let query: String = all
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, COMPONENT)))
        .collect::<Vec<_>>()
        .join("&");
    let separator = if target.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{separator}{query}", target.redirect_uri);
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(&mut response);
    response
}

fn redirect_error(target: &Target, error: &str, code: u32, message: &str) -> Response {
    let trace = uuid::Uuid::new_v4().to_string();
    let description = format!(
        "AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {} Timestamp: {}",
        uuid::Uuid::new_v4(),
        rfc3339(OffsetDateTime::now_utc())
    );
    finish(
        target,
        &[
            ("error", error),
            ("error_description", description.as_str()),
        ],
    )
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

// ---------------------------------------------------------------------------
// Pages

/// HTML-escapes text for element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{margin:0;background:#f2f2f2;font-family:"Segoe UI","Helvetica Neue",Arial,sans-serif;color:#1b1b1b}
.banner{background:#fff4ce;color:#5c4a00;font-size:13px;padding:6px 12px;text-align:center}
.card{background:#fff;max-width:440px;margin:48px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.brand{font-weight:600;font-size:15px;color:#5e5e5e;margin-bottom:16px}
h1{font-size:24px;font-weight:600;margin:0 0 12px}
p{font-size:15px;line-height:1.4}
label{display:block;font-size:13px;margin-top:14px;color:#505050}
input[type=text],input[type=email],input[type=password]{width:100%;box-sizing:border-box;border:0;border-bottom:1px solid #666;padding:8px 0;font-size:15px;outline:none}
input:focus{border-bottom-color:#0067b8}
.error{color:#e81123;font-size:15px;margin:8px 0}
.actions{text-align:right;margin-top:28px}
button,.button{background:#0067b8;color:#fff;border:0;padding:8px 32px;font-size:15px;cursor:pointer;text-decoration:none;display:inline-block}
button.secondary,.button.secondary{background:#ccc;color:#1b1b1b}
.number{font-size:48px;font-weight:600;text-align:center;margin:20px 0;letter-spacing:4px}
.phone{border:1px dashed #8a8886;padding:16px;margin-top:28px;background:#faf9f8}
.phone h2{font-size:15px;margin:0 0 8px}
.phone form{display:inline}
.details{font-size:12px;color:#605e5c;word-break:break-word;margin-top:24px}
.user{font-size:15px;margin-bottom:8px}
"#;

fn page(title: &str, body: &str, refresh_seconds: Option<u32>) -> String {
    let refresh = refresh_seconds
        .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{title}</title><style>{STYLE}</style></head>
<body><div class="banner">Latchkey sim: a simulated Microsoft Entra sign-in for tests and demos. Never enter a real password here.</div>
<main class="card">{body}</main></body></html>"#,
        title = escape(title),
    )
}

fn html(text: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], text).into_response();
    no_store(&mut response);
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn hidden_fields(auth: &Authorization) -> String {
    auth.hidden()
        .iter()
        .map(|(name, value)| {
            format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                escape(value)
            )
        })
        .collect()
}

fn form_action(auth: &Authorization) -> String {
    format!(
        "/{}/oauth2/v2.0/authorize",
        utf8_percent_encode(&auth.tenant, COMPONENT)
    )
}

fn login_page(auth: &Authorization, tenant: &str, username: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!(r#"<div class="error" role="alert">{}</div>"#, escape(e)))
        .unwrap_or_default();
    let autofocus_user = if username.is_empty() {
        " autofocus"
    } else {
        ""
    };
    let autofocus_pass = if username.is_empty() {
        ""
    } else {
        " autofocus"
    };
    let body = format!(
        r#"<div class="brand">{tenant}</div>
<h1>Sign in</h1>
<p>to continue to {app}</p>
{error}
<form method="post" action="{action}">
{hidden}
<label for="username">Email, phone, or Skype</label>
<input type="email" id="username" name="username" value="{username}" autocomplete="username" required{autofocus_user}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required{autofocus_pass}>
<div class="actions"><button type="submit" name="step" value="password">Sign in</button></div>
<p>Can't use your password? With Microsoft Authenticator you can approve a sign-in on your phone instead.</p>
<div class="actions"><button type="submit" id="passwordless" name="step" value="passwordless" formnovalidate>Use the Authenticator app instead</button></div>
</form>"#,
        tenant = escape(tenant),
        app = escape(&auth.app_name),
        action = form_action(auth),
        hidden = hidden_fields(auth),
        username = escape(username),
    );
    html(page("Sign in to your account", &body, None))
}

fn update_password_page(
    auth: &Authorization,
    username: &str,
    reason: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!(r#"<div class="error" role="alert">{}</div>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="user">{username}</div>
<h1>Update your password</h1>
<p>{reason}</p>
{error}
<form method="post" action="{action}">
{hidden}
<input type="hidden" name="step" value="update_password">
<input type="hidden" name="username" value="{username}">
<label for="password">Current password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required autofocus>
<label for="new_password">New password</label>
<input type="password" id="new_password" name="new_password" autocomplete="new-password" required>
<label for="confirm_password">Confirm password</label>
<input type="password" id="confirm_password" name="confirm_password" autocomplete="new-password" required>
<div class="actions"><button type="submit">Sign in</button></div>
</form>"#,
        username = escape(username),
        reason = escape(reason),
        action = form_action(auth),
        hidden = hidden_fields(auth),
    );
    html(page("Update your password", &body, None))
}

fn approve_page(approval: &Approval) -> Response {
    let tenant = utf8_percent_encode(&approval.auth.tenant, COMPONENT).to_string();
    let here = format!("/{tenant}/oauth2/v2.0/authorize/mfa/{}", approval.id);
    let phone = format!("/_sim/authenticator/{}", approval.id);
    let body = format!(
        r#"<div class="user">{upn}</div>
<h1>Approve sign in request</h1>
<p>Open your Authenticator app ({device}), and enter the number shown to sign in.</p>
<div class="number" aria-label="Number to enter in Authenticator">{number}</div>
<p>No numbers in your app? Make sure to upgrade to the latest version.</p>
<div class="actions"><a class="button" href="{here}">Continue</a></div>
<div class="phone">
<h2>Simulated phone ({device})</h2>
<p>Are you trying to sign in to {app}? Enter the number shown to sign in: <strong>{number}</strong></p>
<form method="post" action="{phone}"><input type="hidden" name="approve" value="true"><input type="hidden" name="number" value="{number}"><button type="submit">Approve on my phone (simulated)</button></form>
<form method="post" action="{phone}"><input type="hidden" name="approve" value="false"><button type="submit" class="secondary">Deny</button></form>
</div>"#,
        upn = escape(&approval.user_principal_name),
        device = escape(&approval.device),
        number = approval.number,
        app = escape(&approval.auth.app_name),
    );
    // Refreshing polls: once the phone answers, the page goes on by itself.
    html(page("Approve sign in request", &body, Some(2)))
}

fn error_page(code: u32, message: &str) -> Response {
    let body = format!(
        r#"<h1>Sorry, but we're having trouble signing you in.</h1>
<p>AADSTS{code}: {message}</p>
<div class="details">Error code: {code}<br>Request Id: {request}<br>Timestamp: {now}</div>"#,
        message = escape(message),
        request = uuid::Uuid::new_v4(),
        now = rfc3339(OffsetDateTime::now_utc()),
    );
    // Entra shows these pages with 200; a 4xx would also be rewritten into
    // Graph's JSON envelope by the error middleware.
    html(page("Sign in to your account", &body, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_uris_match_any_port() {
        let registered = "http://127.0.0.1/callback";
        assert!(redirect_uri_matches(
            registered,
            "http://127.0.0.1/callback"
        ));
        assert!(redirect_uri_matches(
            registered,
            "http://127.0.0.1:53117/callback"
        ));
        assert!(!redirect_uri_matches(
            registered,
            "http://127.0.0.1:53117/other"
        ));
        assert!(!redirect_uri_matches(
            registered,
            "http://localhost:80/callback"
        ));
        assert!(!redirect_uri_matches(
            registered,
            "http://127.0.0.1.evil.example/callback"
        ));
        assert!(!redirect_uri_matches(
            registered,
            "http://127.0.0.1:80@evil.example/callback"
        ));
        assert!(redirect_uri_matches(
            "http://localhost/callback",
            "http://localhost:8400/callback"
        ));
        // Other URIs compare exactly.
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example/cb/"
        ));
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn conditional_access_blocks_only_what_is_in_scope_of_a_sign_in_here() {
        let now = OffsetDateTime::now_utc();
        let mut tenant = crate::sim::seed::demo(now).unwrap();
        let app = tenant.apps[0].client_id.clone();
        let lidia = tenant.user("lidia.holloway@contoso.com").unwrap().clone();
        let adele = tenant.user("adele.vance@contoso.com").unwrap().clone();
        // The demo's Finance policy is about locations, and legacy
        // authentication is not a browser: neither applies here.
        assert_eq!(blocking_policy(&tenant, &lidia, &app), None);
        let finance = tenant
            .groups
            .iter()
            .find(|g| g.display_name == "Finance")
            .unwrap()
            .id
            .clone();
        let all_staff = tenant
            .groups
            .iter()
            .find(|g| g.display_name == "All Staff")
            .unwrap()
            .id
            .clone();
        let policy = |users: Value, apps: Value| {
            json!({
                "id": "p1", "displayName": "Block them", "state": "enabled",
                "conditions": {"users": users, "applications": apps, "clientAppTypes": ["all"], "locations": null},
                "grantControls": {"operator": "OR", "builtInControls": ["block"]},
            })
        };
        // Through a nested group (Finance is in All Staff).
        tenant.conditional_access_policies = vec![policy(
            json!({"includeGroups": [all_staff]}),
            json!({"includeApplications": ["All"]}),
        )];
        assert_eq!(
            blocking_policy(&tenant, &lidia, &app),
            Some(("p1".to_owned(), "Block them".to_owned()))
        );
        tenant.conditional_access_policies = vec![policy(
            json!({"includeGroups": [finance.clone()]}),
            json!({"includeApplications": [app.clone()]}),
        )];
        assert!(blocking_policy(&tenant, &lidia, &app).is_some());
        assert!(
            blocking_policy(&tenant, &adele, &app).is_none(),
            "not in Finance"
        );
        // Exclusions win; other apps are out of scope.
        tenant.conditional_access_policies = vec![policy(
            json!({"includeUsers": ["All"], "excludeUsers": [lidia.id.clone()]}),
            json!({"includeApplications": ["All"]}),
        )];
        assert!(blocking_policy(&tenant, &lidia, &app).is_none());
        assert!(blocking_policy(&tenant, &adele, &app).is_some());
        tenant.conditional_access_policies = vec![policy(
            json!({"includeUsers": ["All"]}),
            json!({"includeApplications": ["00000002-0000-0ff1-ce00-000000000000"]}),
        )];
        assert!(blocking_policy(&tenant, &adele, &app).is_none());
        // Report-only and disabled policies never block.
        let mut report_only = policy(
            json!({"includeUsers": ["All"]}),
            json!({"includeApplications": ["All"]}),
        );
        report_only["state"] = json!("enabledForReportingButNotEnforced");
        tenant.conditional_access_policies = vec![report_only];
        assert!(blocking_policy(&tenant, &adele, &app).is_none());
    }

    #[test]
    fn a_new_password_must_follow_entras_rules() {
        let now = OffsetDateTime::now_utc();
        let tenant = crate::sim::seed::demo(now).unwrap();
        let i = tenant.user_index("adele.vance@contoso.com").unwrap();
        let ok = |new: &str| acceptable_password(&tenant, i, "Old-Pass-1", new, new);
        assert!(ok("Fresh-Start-2026").is_ok());
        assert!(ok("short1A").is_err());
        assert!(ok("alllowercaseletters").is_err());
        assert!(ok("Old-Pass-1").is_err());
        assert!(ok("Adele.Vance-2026").is_err());
        assert!(
            acceptable_password(&tenant, i, "Old", "Fresh-Start-2026", "Fresh-Start-2027").is_err()
        );
    }
}
