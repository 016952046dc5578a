//! Who is calling Graph, from the bearer token, and what they may do.
//!
//! Every Graph route takes a [`Caller`]; a missing, malformed, expired or
//! wrongly signed token, or one for another audience or tenant, is a 401 with
//! Graph's envelope before the handler runs. Handlers then ask
//! [`Caller::require`] for the permissions the route needs (application roles
//! in app tokens, scopes in delegated ones), 403 `Authorization_RequestDenied`
//! otherwise.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::Value;

use crate::sim::batch::VerifiedCaller;
use crate::sim::error::GraphError;
use crate::sim::identity::{GRAPH_APP_ID, GRAPH_AUDIENCE};
use crate::sim::model::{User, roles};
use crate::sim::state::Sim;

/// Reading users, their manager and devices.
pub const READ_USERS: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Reading group memberships.
pub const READ_MEMBERSHIP: &[&str] = &[
    "GroupMember.Read.All",
    "User.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Setting `passwordProfile`.
pub const WRITE_PASSWORD: &[&str] = &[
    "User-PasswordProfile.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
/// Setting `accountEnabled`.
pub const ENABLE_DISABLE: &[&str] = &[
    "User.EnableDisableAccount.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
/// Revoking sessions.
pub const REVOKE_SESSIONS: &[&str] = &[
    "User.RevokeSessions.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
/// Reading authentication methods of others.
pub const READ_METHODS: &[&str] = &[
    "UserAuthenticationMethod.Read.All",
    "UserAuthenticationMethod.ReadWrite.All",
];
/// Writing authentication methods of others.
pub const WRITE_METHODS: &[&str] = &["UserAuthenticationMethod.ReadWrite.All"];
/// Creating and deleting Temporary Access Passes.
pub const WRITE_TAP: &[&str] = &[
    "UserAuthMethod-TAP.ReadWrite.All",
    "UserAuthenticationMethod.ReadWrite.All",
];
/// Reading sign-in and audit logs and registration details.
pub const READ_AUDIT: &[&str] = &["AuditLog.Read.All"];
/// Reading role assignments.
pub const READ_ROLES: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Reading Conditional Access policies.
pub const READ_POLICY: &[&str] = &["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"];
/// Reading domains.
pub const READ_DOMAINS: &[&str] = &[
    "Domain.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Sending mail as a user.
pub const SEND_MAIL: &[&str] = &["Mail.Send"];

/// The verified caller of a Graph route.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The calling app's client id.
    pub app_id: String,
    /// The calling app's display name.
    pub app_name: String,
    /// Application permissions (app tokens).
    pub roles: Vec<String>,
    /// Delegated scopes (user tokens).
    pub scopes: Vec<String>,
    /// Directory role template ids of the app (or the signed-in user).
    pub wids: Vec<String>,
    /// The signed-in user's object id (delegated tokens only).
    pub user_id: Option<String>,
}

impl Caller {
    /// `Ok` when the token grants any of `permissions`, else 403.
    pub fn require(&self, permissions: &[&str]) -> Result<(), GraphError> {
        let granted = permissions.iter().any(|p| {
            self.roles
                .iter()
                .chain(&self.scopes)
                .any(|g| g.eq_ignore_ascii_case(p))
        });
        if granted {
            Ok(())
        } else {
            Err(GraphError::denied())
        }
    }

    /// `(app id, app display name)`, for audit entries.
    pub fn app(&self) -> (&str, &str) {
        (&self.app_id, &self.app_name)
    }

    /// True when the caller holds the directory role with this template id.
    pub fn has_role(&self, template_id: &str) -> bool {
        self.wids
            .iter()
            .any(|w| w.eq_ignore_ascii_case(template_id))
    }

    /// Whether the caller's directory roles allow resetting `target`'s
    /// password ("Who can reset passwords" in Entra's role reference):
    /// ordinary users by Helpdesk, Password, User, Authentication,
    /// Privileged Authentication or Global Administrators; users holding the
    /// limited admin roles by User Administrators and up; every other
    /// administrator (Global Administrators included) only by Privileged
    /// Authentication or Global Administrators.
    pub fn may_reset_password_of(&self, target: &User) -> bool {
        let top = [
            roles::GLOBAL_ADMINISTRATOR,
            roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR,
        ];
        let limited_admins = [
            roles::HELPDESK_ADMINISTRATOR,
            roles::PASSWORD_ADMINISTRATOR,
            roles::USER_ADMINISTRATOR,
        ];
        if top.iter().any(|r| self.has_role(r)) {
            return true;
        }
        if target.roles.is_empty() {
            return [
                roles::USER_ADMINISTRATOR,
                roles::HELPDESK_ADMINISTRATOR,
                roles::PASSWORD_ADMINISTRATOR,
                roles::AUTHENTICATION_ADMINISTRATOR,
            ]
            .iter()
            .any(|r| self.has_role(r));
        }
        let only_limited = target
            .roles
            .iter()
            .all(|r| limited_admins.iter().any(|l| l.eq_ignore_ascii_case(r)));
        only_limited && self.has_role(roles::USER_ADMINISTRATOR)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Sim: FromRef<S>,
{
    type Rejection = GraphError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A request inside a batch: the batch's token was checked already.
        if let Some(VerifiedCaller(caller)) = parts.extensions.get::<VerifiedCaller>() {
            return Ok(caller.clone());
        }
        let sim = &Sim::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
        let claims = sim.verify_token(token).map_err(|e| {
            if e.contains("Expired") || e.contains("ImmatureSignature") {
                GraphError::unauthenticated("Access token has expired or is not yet valid.")
            } else {
                GraphError::unauthenticated(
                    "Access token validation failure. Invalid signature or token.",
                )
            }
        })?;
        let aud = claims
            .get("aud")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if aud != GRAPH_AUDIENCE && aud != GRAPH_APP_ID {
            return Err(GraphError::unauthenticated(
                "Access token validation failure. Invalid audience.",
            ));
        }
        let tenant_id = sim.tenant().id.clone();
        if claims.get("tid").and_then(Value::as_str) != Some(tenant_id.as_str()) {
            return Err(GraphError::unauthenticated(
                "Access token validation failure. Invalid tenant.",
            ));
        }
        // Expiry is checked with leeway by the verifier; check it exactly
        // against the emulator's clock too, which tests can move forward.
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= sim.now().unix_timestamp() {
            return Err(GraphError::unauthenticated(
                "Access token has expired or is not yet valid.",
            ));
        }
        let strings = |name: &str| -> Vec<String> {
            claims
                .get(name)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let scopes = claims
            .get("scp")
            .and_then(Value::as_str)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let delegated = claims.get("idtyp").and_then(Value::as_str) != Some("app");
        Ok(Caller {
            app_id: claims
                .get("appid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            app_name: claims
                .get("app_displayname")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            roles: strings("roles"),
            scopes,
            wids: strings("wids"),
            user_id: delegated
                .then(|| claims.get("oid").and_then(Value::as_str).map(str::to_owned))
                .flatten(),
        })
    }
}
