//! Who is speaking on Slack: the Slack user (from a signed request) through
//! `users.info` to their verified email, then through Graph to exactly one
//! Entra user. Everything doubtful fails closed.

use serde_json::Value;

use crate::conversation::Speaker;
use crate::graph::GraphClient;
use crate::ids::UserId;
use crate::sdk::Channel;
use crate::tenant::TenantId;

use super::api::{SlackApi, SlackApiError, SlackUser};

/// Why a Slack user was not mapped to an Entra user. The message is what
/// the person is told.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The Slack user is a bot or an app.
    #[error("I only help people, not bots or apps.")]
    Bot,
    /// The Slack account is deactivated.
    #[error("Your Slack account is deactivated, so I cannot help you here.")]
    Deleted,
    /// A guest, or a user of another workspace.
    #[error(
        "Guests and people from other workspaces cannot use me here; please contact your help desk."
    )]
    Guest,
    /// No email, or one Slack has not confirmed.
    #[error(
        "Your Slack profile has no confirmed email address, so I cannot tell which account is yours; please contact your help desk."
    )]
    NoEmail,
    /// The email matches no Entra user.
    #[error(
        "I found no Microsoft 365 account for your Slack email address; please contact your help desk."
    )]
    NoMatch,
    /// The email matches several Entra users.
    #[error(
        "Your Slack email address matches more than one Microsoft 365 account, so I cannot tell which is yours; please contact your help desk."
    )]
    SeveralMatches,
    /// `users.info` failed.
    #[error("I could not look up your Slack profile just now; please try again in a minute.")]
    Slack(#[source] SlackApiError),
    /// A Graph read failed, or the tenant has no Graph client.
    #[error("I could not look up your account just now; please try again in a minute.")]
    Graph(String),
}

/// Checks a `users.info` answer, and returns the verified email.
pub fn verified_email(user: &SlackUser) -> Result<String, IdentityError> {
    if user.is_bot || user.is_app_user {
        return Err(IdentityError::Bot);
    }
    if user.deleted {
        return Err(IdentityError::Deleted);
    }
    if user.is_restricted || user.is_ultra_restricted || user.is_stranger {
        return Err(IdentityError::Guest);
    }
    if user.is_email_confirmed == Some(false) {
        return Err(IdentityError::NoEmail);
    }
    let email = user
        .profile
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| plausible_email(e))
        .ok_or(IdentityError::NoEmail)?;
    Ok(email.to_ascii_lowercase())
}

/// An address made only of the characters an OData string literal and a
/// URL carry safely, with one `@`: anything else is refused rather than
/// escaped.
fn plausible_email(email: &str) -> bool {
    let safe = email
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '@' | '\''));
    safe && email.len() <= 254 && email.matches('@').count() == 1 && !email.starts_with('@')
}

/// The Slack user `slack_user` as a [`Speaker`] of `tenant`: `users.info`,
/// the checks of [`verified_email`], then the Entra users whose `mail` or
/// `userPrincipalName` equals the email, which must be exactly one.
pub async fn resolve(
    api: &SlackApi,
    graph: Option<GraphClient>,
    tenant: &TenantId,
    slack_user: &str,
) -> Result<Speaker, IdentityError> {
    let user = api
        .users_info(slack_user)
        .await
        .map_err(IdentityError::Slack)?;
    let email = verified_email(&user)?;
    let graph =
        graph.ok_or_else(|| IdentityError::Graph(format!("no Graph client for {tenant}")))?;
    let literal = email.replace('\'', "''");
    let mut found: Vec<Value> = Vec::new();
    for property in ["mail", "userPrincipalName"] {
        let pages = graph
            .get_all(&format!(
                "/users?$filter={property} eq '{literal}'&$select=id,displayName,mail,userPrincipalName"
            ))
            .await
            .map_err(|e| IdentityError::Graph(e.to_string()))?;
        for item in pages.items {
            let id = item.get("id").and_then(Value::as_str);
            let known = found
                .iter()
                .any(|f| f.get("id").and_then(Value::as_str) == id);
            if !known {
                found.push(item);
            }
        }
    }
    let entra = match found.as_slice() {
        [] => return Err(IdentityError::NoMatch),
        [one] => one,
        _ => return Err(IdentityError::SeveralMatches),
    };
    let id: UserId = entra
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| IdentityError::Graph("Graph returned a user without an id".to_owned()))?;
    let display_name = entra
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or(&email)
        .to_owned();
    Ok(Speaker {
        tenant: tenant.clone(),
        user: id,
        channel: Channel::Slack,
        display_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(email: &str) -> SlackUser {
        serde_json::from_value(serde_json::json!({
            "id": "U1", "profile": { "email": email }
        }))
        .unwrap()
    }

    #[test]
    fn only_confirmed_people_with_a_plain_email_pass() {
        assert_eq!(verified_email(&person("A.B@x.com")).unwrap(), "a.b@x.com");
        for bad in ["", "nobody", "a@b@c", "a&b@x.com", "a b@x.com", "@x.com"] {
            assert!(
                matches!(verified_email(&person(bad)), Err(IdentityError::NoEmail)),
                "{bad}"
            );
        }
        let mut guest = person("g@x.com");
        guest.is_restricted = true;
        assert!(matches!(verified_email(&guest), Err(IdentityError::Guest)));
        let mut single = person("g@x.com");
        single.is_ultra_restricted = true;
        assert!(matches!(verified_email(&single), Err(IdentityError::Guest)));
        let mut bot = person("b@x.com");
        bot.is_bot = true;
        assert!(matches!(verified_email(&bot), Err(IdentityError::Bot)));
        let mut gone = person("d@x.com");
        gone.deleted = true;
        assert!(matches!(verified_email(&gone), Err(IdentityError::Deleted)));
        let mut unconfirmed = person("u@x.com");
        unconfirmed.is_email_confirmed = Some(false);
        assert!(matches!(
            verified_email(&unconfirmed),
            Err(IdentityError::NoEmail)
        ));
    }
}
