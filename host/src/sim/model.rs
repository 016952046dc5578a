//! The emulated tenant: everything the emulator knows, as plain data.
//!
//! The same types are the seed format (see [`crate::sim::seed`]): a seed is a
//! JSON document of a [`Tenant`], and fields marked "runtime" are never read
//! from a seed; they start empty and change as the emulator is used.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// One Entra tenant.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant's GUID.
    pub id: String,
    /// Its short name, usable in URLs instead of the GUID (`contoso`).
    pub name: String,
    /// A display name (`Contoso`).
    pub display_name: String,
    /// The default verified domain (`contoso.com`).
    pub domain: String,
    /// Lockout, password and permission behaviour.
    #[serde(default)]
    pub settings: Settings,
    /// App registrations that may get tokens.
    #[serde(default)]
    pub apps: Vec<App>,
    /// Users.
    #[serde(default)]
    pub users: Vec<User>,
    /// Groups (security or Microsoft 365); may be members of other groups.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Devices.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Conditional Access policies, as Graph returns them (`id`, `displayName`,
    /// `state`, `conditions`, `grantControls`, ...). Read-only.
    #[serde(default)]
    pub conditional_access_policies: Vec<Value>,
    /// Domains, with their password expiry settings.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Sign-in log, newest first (runtime; seeded sign-ins come from each
    /// user's `sign_ins`). A deque, because new records go in at the front.
    #[serde(skip)]
    pub sign_ins: std::collections::VecDeque<SignIn>,
    /// Directory audit log (runtime).
    #[serde(skip)]
    pub audits: Vec<Value>,
    /// Mail sent with `sendMail` (runtime), newest last.
    #[serde(skip)]
    pub outbox: Vec<Value>,
    /// Where each user is in `users`, by id and by UPN (runtime; see
    /// [`Tenant::user_index`](crate::sim::model::Tenant::user_index)).
    #[serde(skip)]
    pub index: UserIndex,
    /// A digest of each sign-in's lowercased user id, in the log's order
    /// (runtime; see [`SignInKeys`]).
    #[serde(skip)]
    pub sign_in_keys: SignInKeys,
}

/// A digest of the lowercased `user_id` of every record in
/// [`Tenant::sign_ins`], in the same order, so that one user's records are
/// found by scanning eight bytes a record rather than following each
/// record's id to the heap (the load test's log holds tens of thousands).
/// Kept in step by [`Tenant::log_sign_in`](crate::sim::model::Tenant::log_sign_in),
/// and built again whenever its length differs from the log's (a log
/// replaced or changed directly). A record's `user_id` changed in place is
/// not noticed: change the log by adding or removing records.
#[derive(Debug, Default)]
pub struct SignInKeys(std::sync::RwLock<std::collections::VecDeque<u64>>);

impl Clone for SignInKeys {
    /// A copy starts empty: it is built again from the copy's log.
    fn clone(&self) -> Self {
        SignInKeys::default()
    }
}

impl SignInKeys {
    /// The digest of a lowercased user id.
    pub(crate) fn key(lower: &str) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::hash::DefaultHasher::new();
        lower.hash(&mut hasher);
        hasher.finish()
    }

    /// Notes a record inserted at `position` of `log` (already there).
    pub(crate) fn inserted(&self, log: &std::collections::VecDeque<SignIn>, position: usize) {
        let mut keys = self.0.write().unwrap_or_else(|p| p.into_inner());
        if keys.len() + 1 == log.len() {
            keys.insert(position, Self::key(&log[position].user_id.to_lowercase()));
        } else {
            keys.clear();
        }
    }

    /// The positions in `log` of the records whose lowercased user id may
    /// be `lower` (every one that is, and rarely one that only shares its
    /// digest), oldest position first.
    pub(crate) fn candidates(
        &self,
        log: &std::collections::VecDeque<SignIn>,
        lower: &str,
    ) -> Vec<usize> {
        let key = Self::key(lower);
        let find = |keys: &std::collections::VecDeque<u64>| -> Vec<usize> {
            keys.iter()
                .enumerate()
                .filter(|(_, k)| **k == key)
                .map(|(i, _)| i)
                .collect()
        };
        {
            let keys = self.0.read().unwrap_or_else(|p| p.into_inner());
            if keys.len() == log.len() {
                return find(&keys);
            }
        }
        let mut keys = self.0.write().unwrap_or_else(|p| p.into_inner());
        *keys = log
            .iter()
            .map(|s| Self::key(&s.user_id.to_lowercase()))
            .collect();
        find(&keys)
    }
}

/// Positions in [`Tenant::users`] by lowercased object id and UPN. A
/// position found is checked against the user there before it is trusted;
/// a name not found is searched for in `users`, and when it is there the
/// index is built again. So the index needs no bookkeeping when `users`
/// change, and costs a linear search only for names nobody has.
#[derive(Debug, Default)]
pub struct UserIndex(std::sync::RwLock<std::collections::HashMap<String, usize>>);

impl Clone for UserIndex {
    /// A copy starts empty: it is built again from the copy's users.
    fn clone(&self) -> Self {
        UserIndex::default()
    }
}

impl UserIndex {
    /// The user whose object id or UPN is `key`, ignoring ASCII case (ids
    /// and UPNs are unique in a tenant).
    pub(crate) fn find(&self, users: &[User], key: &str) -> Option<usize> {
        let is = |u: &User| {
            u.id.eq_ignore_ascii_case(key) || u.user_principal_name.eq_ignore_ascii_case(key)
        };
        let lower = key.to_ascii_lowercase();
        let known = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&lower)
            .copied();
        if let Some(i) = known.filter(|&i| users.get(i).is_some_and(is)) {
            return Some(i);
        }
        let found = users.iter().position(is)?;
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.clear();
        for (i, user) in users.iter().enumerate() {
            for name in [&user.id, &user.user_principal_name] {
                map.entry(name.to_ascii_lowercase()).or_insert(i);
            }
        }
        Some(found)
    }
}

/// Tenant-wide behaviour.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Failed sign-ins (with distinct wrong passwords) before smart lockout. Entra: 10.
    pub lockout_threshold: u32,
    /// How long the first lockout lasts, in seconds. Entra: 60. Each further
    /// lockout of the same user doubles it.
    pub lockout_duration_seconds: u64,
    /// Whether an app needs a directory role (User Administrator or higher)
    /// besides `User-PasswordProfile.ReadWrite.All` to set passwords, as
    /// Learn currently documents. Default true.
    pub app_password_reset_requires_role: bool,
    /// Minimum password length for `passwordProfile` (Entra: 8).
    pub password_min_length: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lockout_threshold: 10,
            lockout_duration_seconds: 60,
            app_password_reset_requires_role: true,
            password_min_length: 8,
        }
    }
}

/// An app registration (and its service principal).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The application (client) id.
    pub client_id: String,
    /// Display name.
    pub display_name: String,
    /// The client secret.
    pub client_secret: String,
    /// Application permissions granted (Graph app roles, e.g. `User.Read.All`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Directory role template ids assigned to the app's service principal.
    #[serde(default)]
    pub directory_roles: Vec<String>,
    /// Redirect URIs allowed in the authorization code flow.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Delegated scopes users have consented to (for the `scp` claim).
    #[serde(default)]
    pub delegated_scopes: Vec<String>,
}

/// A user.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Object id (GUID).
    pub id: String,
    /// `userPrincipalName`.
    pub user_principal_name: String,
    /// `displayName`.
    pub display_name: String,
    /// `givenName`.
    #[serde(default)]
    pub given_name: Option<String>,
    /// `surname`.
    #[serde(default)]
    pub surname: Option<String>,
    /// `mail`.
    #[serde(default)]
    pub mail: Option<String>,
    /// `jobTitle`.
    #[serde(default)]
    pub job_title: Option<String>,
    /// `department`.
    #[serde(default)]
    pub department: Option<String>,
    /// `officeLocation`.
    #[serde(default)]
    pub office_location: Option<String>,
    /// `mobilePhone`.
    #[serde(default)]
    pub mobile_phone: Option<String>,
    /// `userType`: `Member` or `Guest`.
    #[serde(default = "member")]
    pub user_type: String,
    /// `accountEnabled`.
    #[serde(default = "yes")]
    pub account_enabled: bool,
    /// `onPremisesSyncEnabled` (null when cloud-only).
    #[serde(default)]
    pub on_premises_sync_enabled: Option<bool>,
    /// Object id or UPN of the manager.
    #[serde(default)]
    pub manager: Option<String>,
    /// The current password (to simulate sign-ins). Never returned by Graph.
    pub password: String,
    /// `lastPasswordChangeDateTime`. A seed gives it or `password_age_days`.
    #[serde(default = "epoch", with = "time::serde::rfc3339")]
    pub last_password_change: OffsetDateTime,
    /// Seed only: the password was last changed this many days before
    /// start-up (overrides `last_password_change`), so that a seed's password
    /// ages stay the same whenever it is loaded.
    #[serde(default, skip_serializing)]
    pub password_age_days: Option<u32>,
    /// `passwordPolicies` (`None`, `DisablePasswordExpiration`, ...).
    #[serde(default = "none_policy")]
    pub password_policies: String,
    /// `createdDateTime`.
    #[serde(default = "epoch", with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Object ids of the groups the user is a direct member of.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Directory role template ids assigned to the user.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Registered authentication methods, besides the password.
    #[serde(default)]
    pub methods: Vec<Method>,
    /// Sign-ins to put in the log at start-up, relative to the start.
    #[serde(default)]
    pub sign_ins: Vec<SeedSignIn>,
    /// Runtime: `forceChangePasswordNextSignIn` of the last reset.
    #[serde(skip)]
    pub force_change_password: bool,
    /// Runtime: `signInSessionsValidFromDateTime`.
    #[serde(skip)]
    pub sessions_valid_from: Option<OffsetDateTime>,
    /// Runtime: smart lockout state.
    #[serde(skip)]
    pub lockout: Lockout,
}

fn member() -> String {
    "Member".to_owned()
}
fn yes() -> bool {
    true
}
fn none_policy() -> String {
    "None".to_owned()
}
fn epoch() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH
}

/// Smart lockout state of one user.
#[derive(Clone, Debug, Default)]
pub struct Lockout {
    /// Failed attempts counted toward the threshold.
    pub failures: u32,
    /// The last three distinct wrong passwords (repeats do not count).
    pub recent_wrong: Vec<String>,
    /// Locked until this instant.
    pub locked_until: Option<OffsetDateTime>,
    /// How many times the user has been locked (each doubles the duration).
    pub times_locked: u32,
}

/// A registered authentication method.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Method {
    /// Microsoft Authenticator.
    MicrosoftAuthenticator {
        /// Method id; generated when absent.
        #[serde(default)]
        id: Option<String>,
        /// Device name.
        display_name: String,
        /// App version.
        #[serde(default)]
        phone_app_version: Option<String>,
    },
    /// A phone.
    Phone {
        /// `+1 4255550100`.
        phone_number: String,
        /// `mobile`, `alternateMobile` or `office` (the id follows from it).
        phone_type: String,
    },
    /// The SSPR email address.
    Email {
        /// The address.
        email_address: String,
    },
    /// A FIDO2 key.
    Fido2 {
        /// Method id; generated when absent.
        #[serde(default)]
        id: Option<String>,
        /// Key name.
        display_name: String,
    },
    /// A Temporary Access Pass (runtime: created through Graph).
    #[serde(skip)]
    TemporaryAccessPass(Tap),
}

/// A Temporary Access Pass as stored (the secret only as created).
/// `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Tap {
    /// Method id.
    pub id: String,
    /// The pass itself; Graph returns it only in the creation response.
    pub secret: String,
    /// Created.
    pub created: OffsetDateTime,
    /// Valid from.
    pub start: OffsetDateTime,
    /// Lifetime in minutes.
    pub lifetime_minutes: u32,
    /// One-time use.
    pub usable_once: bool,
    /// Already used (one-time passes).
    pub used: bool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("created", &self.created)
            .field("start", &self.start)
            .field("lifetime_minutes", &self.lifetime_minutes)
            .field("usable_once", &self.usable_once)
            .field("used", &self.used)
            .finish()
    }
}

/// A sign-in to seed, relative to the emulator's start.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSignIn {
    /// How long before start-up it happened.
    pub minutes_ago: u32,
    /// `status.errorCode` (0 for success).
    #[serde(default)]
    pub error_code: u32,
    /// Display names of Conditional Access policies that applied (with
    /// `failure` when error_code is 530xx, else `success`).
    #[serde(default)]
    pub ca_policies: Vec<String>,
    /// The app signed in to.
    #[serde(default = "default_app")]
    pub app: String,
    /// The client IP address.
    #[serde(default = "default_ip")]
    pub ip_address: String,
}

fn default_app() -> String {
    "Office 365 Exchange Online".to_owned()
}
fn default_ip() -> String {
    "203.0.113.24".to_owned()
}

/// One sign-in log record, as stored.
#[derive(Clone, Debug)]
pub struct SignIn {
    /// Record id.
    pub id: String,
    /// When.
    pub created: OffsetDateTime,
    /// The user's object id.
    pub user_id: String,
    /// The user's UPN.
    pub user_principal_name: String,
    /// The user's display name.
    pub user_display_name: String,
    /// App display name.
    pub app_display_name: String,
    /// Client IP.
    pub ip_address: String,
    /// `status.errorCode`.
    pub error_code: u32,
    /// Applied Conditional Access policies: (id, displayName, result).
    pub ca_policies: Vec<(String, String, String)>,
}

/// A group.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// `securityEnabled`.
    #[serde(default = "yes")]
    pub security_enabled: bool,
    /// `mailEnabled`.
    #[serde(default)]
    pub mail_enabled: bool,
    /// Groups this group is a direct member of (for `transitiveMemberOf`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A device.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Object id.
    pub id: String,
    /// `deviceId`.
    pub device_id: String,
    /// Display name.
    pub display_name: String,
    /// `operatingSystem`.
    pub operating_system: String,
    /// `operatingSystemVersion`.
    #[serde(default)]
    pub operating_system_version: Option<String>,
    /// `trustType`: `Workplace`, `AzureAd` or `ServerAd`.
    pub trust_type: String,
    /// `isCompliant`.
    #[serde(default)]
    pub is_compliant: Option<bool>,
    /// `isManaged`.
    #[serde(default)]
    pub is_managed: Option<bool>,
    /// Object id of the owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Object ids of registered users.
    #[serde(default)]
    pub registered_users: Vec<String>,
}

/// A domain.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The domain name, its id.
    pub id: String,
    /// `isDefault`.
    #[serde(default)]
    pub is_default: bool,
    /// `authenticationType`: `Managed` or `Federated`.
    #[serde(default = "managed")]
    pub authentication_type: String,
    /// `passwordValidityPeriodInDays`.
    #[serde(default)]
    pub password_validity_period_in_days: Option<u32>,
    /// `passwordNotificationWindowInDays`.
    #[serde(default)]
    pub password_notification_window_in_days: Option<u32>,
}

fn managed() -> String {
    "Managed".to_owned()
}

/// Well-known role template ids (tenant-independent).
pub mod roles {
    /// Global Administrator.
    pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
    /// Privileged Role Administrator.
    pub const PRIVILEGED_ROLE_ADMINISTRATOR: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
    /// Privileged Authentication Administrator.
    pub const PRIVILEGED_AUTHENTICATION_ADMINISTRATOR: &str =
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13";
    /// Authentication Administrator.
    pub const AUTHENTICATION_ADMINISTRATOR: &str = "c4e39bd9-1100-46d3-8c65-fb160da0071f";
    /// User Administrator.
    pub const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
    /// Helpdesk Administrator.
    pub const HELPDESK_ADMINISTRATOR: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";
    /// Password Administrator.
    pub const PASSWORD_ADMINISTRATOR: &str = "966707d0-3269-4727-9be2-8c3a10f19b9d";
    /// Security Administrator.
    pub const SECURITY_ADMINISTRATOR: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";
    /// Conditional Access Administrator.
    pub const CONDITIONAL_ACCESS_ADMINISTRATOR: &str = "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9";
    /// Global Reader.
    pub const GLOBAL_READER: &str = "f2ef992c-3afb-46b9-b7cf-a126ee74c451";

    /// Display name of a role template id, for role definitions.
    pub fn display_name(template_id: &str) -> &'static str {
        match template_id {
            GLOBAL_ADMINISTRATOR => "Global Administrator",
            PRIVILEGED_ROLE_ADMINISTRATOR => "Privileged Role Administrator",
            PRIVILEGED_AUTHENTICATION_ADMINISTRATOR => "Privileged Authentication Administrator",
            AUTHENTICATION_ADMINISTRATOR => "Authentication Administrator",
            USER_ADMINISTRATOR => "User Administrator",
            HELPDESK_ADMINISTRATOR => "Helpdesk Administrator",
            PASSWORD_ADMINISTRATOR => "Password Administrator",
            SECURITY_ADMINISTRATOR => "Security Administrator",
            CONDITIONAL_ACCESS_ADMINISTRATOR => "Conditional Access Administrator",
            GLOBAL_READER => "Global Reader",
            _ => "Directory role",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(names: &[&str]) -> Tenant {
        let users: Vec<Value> = names
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": format!("ID-{n}"),
                    "user_principal_name": format!("{n}@contoso.com"),
                    "display_name": n,
                    "password": "Right-Password-1",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": "tenant", "name": "contoso", "display_name": "Contoso",
            "domain": "contoso.com", "users": users,
        }))
        .unwrap()
    }

    fn record(user_id: &str, seconds: i64) -> SignIn {
        SignIn {
            id: format!("{user_id}-{seconds}"),
            created: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds),
            user_id: user_id.to_owned(),
            user_principal_name: String::new(),
            user_display_name: String::new(),
            app_display_name: String::new(),
            ip_address: String::new(),
            error_code: 0,
            ca_policies: Vec::new(),
        }
    }

    #[test]
    fn one_users_sign_ins_are_found_however_the_log_changed() {
        let mut t = tenant(&[]);
        let mine = |t: &Tenant, user: &str| -> Vec<String> {
            t.sign_in_keys
                .candidates(&t.sign_ins, user)
                .into_iter()
                .map(|i| t.sign_ins[i].id.clone())
                .filter(|id| id.to_lowercase().starts_with(user))
                .collect()
        };
        t.log_sign_in(record("AA", 1));
        t.log_sign_in(record("bb", 2));
        assert_eq!(mine(&t, "aa"), ["AA-1"]);
        // Kept in step: newest first, an older record after the newer.
        t.log_sign_in(record("aa", 5));
        t.log_sign_in(record("Aa", 3));
        assert_eq!(mine(&t, "aa"), ["aa-5", "Aa-3", "AA-1"]);
        assert_eq!(mine(&t, "bb"), ["bb-2"]);
        assert_eq!(mine(&t, "cc"), Vec::<String>::new());
        // Changed directly, or replaced: built again.
        t.sign_ins.insert(0, record("bb", 9));
        assert_eq!(mine(&t, "bb"), ["bb-9", "bb-2"]);
        t.sign_ins.pop_back();
        t.log_sign_in(record("aa", 10));
        assert_eq!(mine(&t, "aa"), ["aa-10", "aa-5", "Aa-3"]);
        t.sign_ins = vec![record("bb", 1)].into();
        assert_eq!(mine(&t, "aa"), Vec::<String>::new());
        assert_eq!(mine(&t.clone(), "bb"), ["bb-1"]);
    }

    #[test]
    fn users_are_found_by_id_or_upn_in_any_case_and_after_the_list_changes() {
        let mut t = tenant(&["ann", "bob", "cy"]);
        assert_eq!(t.user_index("bob@contoso.com"), Some(1));
        assert_eq!(t.user_index("BOB@Contoso.com"), Some(1));
        assert_eq!(t.user_index("id-cy"), Some(2));
        assert_eq!(t.user_index("ID-ANN"), Some(0));
        assert_eq!(t.user_index("dee@contoso.com"), None);
        // Changed under the index: a stale position is not trusted, and a
        // user added later is found.
        t.users.swap(0, 2);
        assert_eq!(t.user_index("ann@contoso.com"), Some(2));
        assert_eq!(t.user_index("cy@contoso.com"), Some(0));
        let mut dee = t.users[1].clone();
        dee.id = "ID-dee".into();
        dee.user_principal_name = "dee@contoso.com".into();
        t.users.push(dee);
        assert_eq!(t.user_index("Dee@contoso.com"), Some(3));
        t.users.remove(0);
        assert_eq!(t.user_index("cy@contoso.com"), None);
        assert_eq!(t.user_index("dee@contoso.com"), Some(2));
        // A copy finds the same users.
        assert_eq!(t.clone().user_index("bob@contoso.com"), Some(0));
    }
}
