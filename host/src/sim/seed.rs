//! Seeds: the tenant the emulator starts with.
//!
//! A seed is a JSON document describing one tenant; its shape is
//! [`crate::sim::model::Tenant`] with snake_case field names (see the README's
//! "The emulator" section for a walk-through, and `seed/demo.json`, the
//! built-in demo tenant, for a complete example). Unknown fields are errors,
//! so a typo never silently drops a setting. Sign-ins are given relative to
//! start-up (`minutes_ago`), so a seed's situations are always recent.

use std::collections::HashSet;

use serde_json::json;
use time::OffsetDateTime;

use crate::sim::model::{Method, SignIn, Tenant};

/// The built-in demo tenant, Contoso.
pub const DEMO: &str = include_str!("seed/demo.json");

/// Why a seed was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// Not JSON of the seed's shape.
    #[error("invalid seed: {0}")]
    Json(#[from] serde_json::Error),
    /// Shape is right but the content is inconsistent.
    #[error("invalid seed: {0}")]
    Invalid(String),
}

/// The demo tenant, ready to serve.
pub fn demo(now: OffsetDateTime) -> Result<Tenant, SeedError> {
    from_json(DEMO, now)
}

/// Parses and checks a seed, and prepares it to be served at `now`.
pub fn from_json(text: &str, now: OffsetDateTime) -> Result<Tenant, SeedError> {
    let mut tenant: Tenant = serde_json::from_str(text)?;
    validate(&tenant)?;
    prepare(&mut tenant, now);
    Ok(tenant)
}

fn validate(tenant: &Tenant) -> Result<(), SeedError> {
    let invalid = |m: String| Err(SeedError::Invalid(m));
    let mut ids = HashSet::new();
    let mut upns = HashSet::new();
    for user in &tenant.users {
        if !ids.insert(user.id.to_ascii_lowercase()) {
            return invalid(format!("the id {} is used twice", user.id));
        }
        if !upns.insert(user.user_principal_name.to_ascii_lowercase()) {
            return invalid(format!(
                "the user principal name {} is used twice",
                user.user_principal_name
            ));
        }
        if user.password_age_days.is_none()
            && user.last_password_change == OffsetDateTime::UNIX_EPOCH
        {
            return invalid(format!(
                "{} needs last_password_change (a date) or password_age_days",
                user.user_principal_name
            ));
        }
        if !user.user_principal_name.contains('@') {
            return invalid(format!(
                "{} is not a user principal name (name@domain)",
                user.user_principal_name
            ));
        }
    }
    let groups: HashSet<String> = tenant
        .groups
        .iter()
        .map(|g| g.id.to_ascii_lowercase())
        .collect();
    for user in &tenant.users {
        if let Some(manager) = &user.manager
            && tenant.user(manager).is_none()
        {
            return invalid(format!(
                "{}'s manager {manager} is not a user of the seed",
                user.user_principal_name
            ));
        }
        if let Some(group) = user
            .groups
            .iter()
            .find(|g| !groups.contains(&g.to_ascii_lowercase()))
        {
            return invalid(format!(
                "{} is in group {group}, which the seed does not define",
                user.user_principal_name
            ));
        }
        for method in &user.methods {
            if let Method::Phone { phone_type, .. } = method
                && !["mobile", "alternateMobile", "office"].contains(&phone_type.as_str())
            {
                return invalid(format!(
                    "phone type {phone_type} is not mobile, alternateMobile or office"
                ));
            }
        }
    }
    for group in &tenant.groups {
        if let Some(parent) = group
            .groups
            .iter()
            .find(|g| !groups.contains(&g.to_ascii_lowercase()))
        {
            return invalid(format!(
                "group {} is in group {parent}, which the seed does not define",
                group.display_name
            ));
        }
    }
    for device in &tenant.devices {
        for user in device.owner.iter().chain(&device.registered_users) {
            if tenant.user(user).is_none() {
                return invalid(format!(
                    "device {} refers to {user}, who is not a user of the seed",
                    device.display_name
                ));
            }
        }
    }
    if tenant.apps.is_empty() {
        return invalid("a seed needs at least one app registration".to_owned());
    }
    Ok(())
}

/// Fills in what a seed leaves implicit: method ids, password dates given as
/// ages, and the sign-in log from each user's relative sign-ins, newest first.
fn prepare(tenant: &mut Tenant, now: OffsetDateTime) {
    let policies: Vec<(String, String)> = tenant
        .conditional_access_policies
        .iter()
        .map(|p| {
            (
                p.get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                p.get("displayName")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let mut log = Vec::new();
    for user in &mut tenant.users {
        if let Some(days) = user.password_age_days {
            user.last_password_change = now - time::Duration::days(i64::from(days));
        }
        for method in &mut user.methods {
            match method {
                Method::MicrosoftAuthenticator { id, .. } | Method::Fido2 { id, .. }
                    if id.is_none() =>
                {
                    *id = Some(uuid::Uuid::new_v4().to_string());
                }
                _ => {}
            }
        }
        for s in &user.sign_ins {
            let blocked = (53000..=53004).contains(&s.error_code) || s.error_code == 530032;
            let ca_policies = s
                .ca_policies
                .iter()
                .map(|name| {
                    let id = policies
                        .iter()
                        .find(|(_, n)| n == name)
                        .map(|(id, _)| id.clone())
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                    let result = if blocked { "failure" } else { "success" };
                    (id, name.clone(), result.to_owned())
                })
                .collect();
            log.push(SignIn {
                id: uuid::Uuid::new_v4().to_string(),
                created: now - time::Duration::minutes(i64::from(s.minutes_ago)),
                user_id: user.id.clone(),
                user_principal_name: user.user_principal_name.clone(),
                user_display_name: user.display_name.clone(),
                app_display_name: s.app.clone(),
                ip_address: s.ip_address.clone(),
                error_code: s.error_code,
                ca_policies,
            });
        }
    }
    log.sort_by_key(|s| std::cmp::Reverse(s.created));
    tenant.sign_ins = log.into();
    let _ = json!(null);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_seed_is_valid() {
        let tenant = demo(OffsetDateTime::now_utc()).unwrap();
        assert!(!tenant.users.is_empty());
        assert!(!tenant.apps.is_empty());
    }

    #[test]
    fn unknown_fields_and_dangling_references_are_refused() {
        let typo = DEMO.replacen("\"display_name\"", "\"dispaly_name\"", 1);
        assert!(from_json(&typo, OffsetDateTime::now_utc()).is_err());
        let mut value: serde_json::Value = serde_json::from_str(DEMO).unwrap();
        value["users"][0]["manager"] = json!("nobody@example.com");
        let err = from_json(&value.to_string(), OffsetDateTime::now_utc()).unwrap_err();
        assert!(err.to_string().contains("nobody@example.com"), "{err}");
        let mut value: serde_json::Value = serde_json::from_str(DEMO).unwrap();
        value["users"][0]
            .as_object_mut()
            .unwrap()
            .remove("password_age_days");
        let err = from_json(&value.to_string(), OffsetDateTime::now_utc()).unwrap_err();
        assert!(err.to_string().contains("password_age_days"), "{err}");
    }

    #[test]
    fn password_ages_are_relative_to_start_up() {
        let now = OffsetDateTime::now_utc();
        let tenant = demo(now).unwrap();
        let grady = tenant.user("grady.archie@contoso.com").unwrap();
        assert_eq!(
            (now - grady.last_password_change).whole_days(),
            i64::from(grady.password_age_days.unwrap())
        );
    }

    /// The README's cast: each of DESIGN.md's seven situations, as the
    /// investigator would recognise it from the seed.
    #[test]
    fn the_demo_seed_puts_each_of_the_seven_situations_in_place() {
        use crate::sim::control::password_expired;
        use crate::sim::model::{User, roles};

        let now = OffsetDateTime::now_utc();
        let tenant = demo(now).unwrap();
        // The user's sign-ins of the last hour, newest first.
        let recent = |u: &User| -> Vec<&SignIn> {
            tenant
                .sign_ins
                .iter()
                .filter(|s| s.user_id == u.id && now - s.created < time::Duration::hours(1))
                .collect()
        };
        let codes = |u: &User| -> Vec<u32> { recent(u).iter().map(|s| s.error_code).collect() };
        let authenticator = |u: &User| {
            u.methods
                .iter()
                .any(|m| matches!(m, Method::MicrosoftAuthenticator { .. }))
        };
        let blocking_policy = |name: &str| {
            tenant.conditional_access_policies.iter().any(|p| {
                p["displayName"] == name
                    && p["state"] == "enabled"
                    && p["grantControls"]["builtInControls"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c == "block"))
            })
        };
        type Situation<'a> = (&'a str, &'a str, Box<dyn Fn(&User) -> bool + 'a>);
        let situations: Vec<Situation> = vec![
            (
                "1 forgot password, MFA available",
                "adele.vance@contoso.com",
                Box::new(|u| {
                    let c = codes(u);
                    authenticator(u) && c.len() >= 2 && c.iter().all(|&c| c == 50126)
                }),
            ),
            (
                "2 lost MFA device",
                "alex.wilber@contoso.com",
                Box::new(|u| {
                    let c = codes(u);
                    authenticator(u)
                        && c.iter().filter(|&&c| c == 500121).count() >= 2
                        && !c.contains(&0)
                }),
            ),
            (
                "3 locked out",
                "henrietta.mueller@contoso.com",
                Box::new(|u| {
                    let c = codes(u);
                    c.first() == Some(&50053)
                        && c.iter().filter(|&&c| c == 50126).count() >= 5
                        && u.on_premises_sync_enabled != Some(true)
                }),
            ),
            (
                "4 password expired",
                "grady.archie@contoso.com",
                Box::new(|u| {
                    password_expired(&tenant, u, now)
                        && codes(u).first() == Some(&50055)
                        && u.on_premises_sync_enabled != Some(true)
                }),
            ),
            (
                "5 blocked by Conditional Access",
                "lidia.holloway@contoso.com",
                Box::new(|u| {
                    recent(u).iter().any(|s| {
                        s.error_code == 53003
                            && s.ca_policies.iter().any(|(_, name, result)| {
                                result == "failure" && blocking_policy(name)
                            })
                    })
                }),
            ),
            (
                "6 a contractor someone else asks for",
                "lee.gu@contoso.com",
                Box::new(|u| {
                    u.department.as_deref() == Some("Contractors")
                        && u.user_type == "Member"
                        && u.account_enabled
                        && u.manager.is_some()
                }),
            ),
            (
                "7 just mistyped",
                "megan.bowen@contoso.com",
                Box::new(|u| codes(u) == [0, 50126]),
            ),
        ];
        for (situation, upn, shows) in &situations {
            let user = tenant.user(upn).unwrap();
            assert!(shows(user), "{upn} should show situation {situation}");
            assert!(user.account_enabled, "{upn}");
        }
        // Nobody else's password has expired, whenever the seed is loaded.
        for user in &tenant.users {
            assert_eq!(
                password_expired(&tenant, user, now),
                user.user_principal_name == "grady.archie@contoso.com",
                "{}",
                user.user_principal_name
            );
        }

        // The accounts that are facts rather than situations.
        let privileged = |role: &str| {
            tenant
                .users
                .iter()
                .any(|u| u.roles.iter().any(|r| r == role) && authenticator(u))
        };
        assert!(privileged(roles::GLOBAL_ADMINISTRATOR));
        assert!(privileged(roles::USER_ADMINISTRATOR));
        assert!(tenant.users.iter().any(|u| !u.account_enabled));
        let synced = tenant
            .users
            .iter()
            .find(|u| u.on_premises_sync_enabled == Some(true))
            .unwrap();
        assert_eq!(codes(synced).first(), Some(&50053), "a hybrid lockout");
        let chain = |u: &User| {
            let mut depth = 0;
            let mut next = u.manager.clone();
            while let Some(manager) = next.and_then(|m| tenant.user(&m)) {
                depth += 1;
                next = manager.manager.clone();
            }
            depth
        };
        assert!(
            tenant.users.iter().any(|u| chain(u) >= 2),
            "a manager chain"
        );
        let with_email = tenant
            .users
            .iter()
            .filter(|u| u.methods.iter().any(|m| matches!(m, Method::Email { .. })))
            .count();
        assert!(with_email >= 2);
        let trust: HashSet<&str> = tenant
            .devices
            .iter()
            .map(|d| d.trust_type.as_str())
            .collect();
        assert_eq!(trust.len(), 3, "{trust:?}");
        let nested = tenant.groups.iter().any(|g| {
            g.groups.iter().any(|p| {
                tenant
                    .groups
                    .iter()
                    .any(|q| q.id == *p && !q.groups.is_empty())
            })
        });
        assert!(nested, "a group nested two levels deep");
        for name in ["All Staff", "Finance", "IT Service Desk"] {
            assert!(
                tenant.groups.iter().any(|g| g.display_name == name),
                "{name}"
            );
        }
        for user in &tenant.users {
            assert!(user.job_title.is_some() && user.department.is_some() && user.mail.is_some());
        }
    }
}
