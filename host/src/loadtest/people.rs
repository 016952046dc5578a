//! The load test's people: synthetic accounts in the emulator, each a copy
//! of one of the demo tenant's people with that person's situation (their
//! methods, sign-in history, password age and manager), under a new id and
//! user principal name.

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::sim::model::Tenant;
use crate::sim::seed::{self, SeedError};

/// A situation a simulated user resolves (DESIGN.md's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Situation {
    /// 1. Forgot the password, MFA available: step-up, then a new password.
    ForgotPassword,
    /// 3. Locked out by smart lockout: step-up, then a new password.
    LockedOut,
    /// 4. The password expired: step-up, then a new password.
    PasswordExpired,
    /// 7. Just mistyped: explained; nothing changes.
    Mistyped,
}

impl Situation {
    /// Every situation, in the order accounts are given them.
    pub const ALL: [Situation; 4] = [
        Situation::ForgotPassword,
        Situation::LockedOut,
        Situation::PasswordExpired,
        Situation::Mistyped,
    ];

    /// The demo tenant's person whose situation this is.
    fn template(self) -> &'static str {
        match self {
            Situation::ForgotPassword => "adele.vance@contoso.com",
            Situation::LockedOut => "henrietta.mueller@contoso.com",
            Situation::PasswordExpired => "grady.archie@contoso.com",
            Situation::Mistyped => "megan.bowen@contoso.com",
        }
    }

    /// What the person says in the chat.
    pub fn message(self) -> &'static str {
        match self {
            Situation::ForgotPassword => "I forgot my password",
            Situation::LockedOut => "My account is locked",
            Situation::PasswordExpired => "My password expired",
            Situation::Mistyped => "I can't log in",
        }
    }

    /// Whether it ends with a new password, after an MFA step-up.
    pub fn resets_password(self) -> bool {
        !matches!(self, Situation::Mistyped)
    }

    /// The entries one resolution adds to Latchkey's activity log, by kind.
    ///
    /// A reset: the request as understood and the policy's decision, twice
    /// (first on the facts gathered, a decision that asks for MFA; then on
    /// the facts with the verification, an allow the host signs); the
    /// step-up offered and passed; an intent and an outcome for each of the
    /// two writes (the password reset, the sessions revoked). A mistyped
    /// password: the request and the decision, which explains and changes
    /// nothing.
    pub fn audit_entries(self) -> &'static [(&'static str, u64)] {
        if self.resets_password() {
            &[
                ("request", 2),
                ("decision", 2),
                ("verification", 2),
                ("intent", 2),
                ("outcome", 2),
            ]
        } else {
            &[("request", 1), ("decision", 1)]
        }
    }

    /// A short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Situation::ForgotPassword => "forgot password",
            Situation::LockedOut => "locked out",
            Situation::PasswordExpired => "password expired",
            Situation::Mistyped => "mistyped",
        }
    }
}

/// One synthetic account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Its user principal name.
    pub upn: String,
    /// What it resolves.
    pub situation: Situation,
}

/// The demo tenant plus `count` synthetic accounts, the situations taken in
/// turn, prepared to be served at `now`.
pub fn tenant(count: usize, now: OffsetDateTime) -> Result<(Tenant, Vec<Account>), SeedError> {
    let mut seed: Value = serde_json::from_str(seed::DEMO)?;
    let users = seed
        .get_mut("users")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| SeedError::Invalid("the demo seed has no users".to_owned()))?;
    let templates = Situation::ALL
        .iter()
        .map(|s| {
            users
                .iter()
                .find(|u| u["user_principal_name"] == s.template())
                .cloned()
                .ok_or_else(|| SeedError::Invalid(format!("the demo seed has no {}", s.template())))
        })
        .collect::<Result<Vec<Value>, SeedError>>()?;
    let mut accounts = Vec::with_capacity(count);
    for n in 0..count {
        let index = n % Situation::ALL.len();
        let situation = Situation::ALL[index];
        let mut user = templates[index].clone();
        let (local, domain) = situation
            .template()
            .split_once('@')
            .unwrap_or((situation.template(), "contoso.com"));
        let upn = format!("{local}.{n:05}@{domain}");
        let name = format!(
            "{} {n}",
            user["display_name"].as_str().unwrap_or("Load Test")
        );
        user["id"] = Value::from(object_id(n));
        user["user_principal_name"] = Value::from(upn.clone());
        user["mail"] = Value::from(upn.clone());
        user["display_name"] = Value::from(name);
        users.push(user);
        accounts.push(Account { upn, situation });
    }
    let tenant = seed::from_json(&seed.to_string(), now)?;
    Ok((tenant, accounts))
}

/// The `n`th account's object id: a version 4 GUID, random-looking as
/// Entra's are (so that nothing that compares ids is flattered or harmed by
/// a shared prefix), and the same in every run.
fn object_id(n: usize) -> String {
    let digest = Sha256::digest(format!("latchkey loadtest account {n}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_copy_their_templates_under_new_names() {
        let now = OffsetDateTime::now_utc();
        let (tenant, accounts) = tenant(9, now).unwrap();
        assert_eq!(accounts.len(), 9);
        assert_eq!(accounts[4].situation, Situation::ForgotPassword);
        assert_eq!(accounts[7].situation, Situation::Mistyped);
        let copy = tenant.user(&accounts[5].upn).unwrap();
        let original = tenant.user("henrietta.mueller@contoso.com").unwrap();
        assert_ne!(copy.id, original.id);
        assert_eq!(copy.display_name, "Henrietta Mueller 5");
        assert_eq!(copy.manager, original.manager);
        assert_eq!(copy.methods.len(), original.methods.len());
        assert_eq!(copy.sign_ins.len(), original.sign_ins.len());
        // Version 4 GUIDs, distinct, without a common prefix; the same in
        // every run.
        let ids: std::collections::BTreeSet<String> = accounts
            .iter()
            .map(|a| tenant.user(&a.upn).unwrap().id.clone())
            .collect();
        assert_eq!(ids.len(), 9);
        assert!(
            ids.iter()
                .all(|id| uuid::Uuid::parse_str(id).unwrap().get_version_num() == 4)
        );
        let firsts: std::collections::BTreeSet<&str> = ids.iter().map(|id| &id[..4]).collect();
        assert!(firsts.len() > 1, "{ids:?}");
        assert_eq!(object_id(5), object_id(5));
        // The demo's own people are still there, managers included.
        assert!(tenant.user("lynne.robbins@contoso.com").is_some());
    }
}
