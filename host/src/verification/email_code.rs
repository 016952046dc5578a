//! Recovery email codes: 8 digits sent to the address the requester
//! registered as an email authentication method, typed back in chat.
//!
//! The address comes from Graph (`GET /users/{id}/authentication/emailMethods`),
//! never from the conversation: a code sent to an address the requester just
//! typed would prove nothing. Only the latest code of a requester counts;
//! it is kept as an HMAC bound to its id, tenant and requester, so a code
//! sent to someone else never matches.

use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use super::{
    CODE_RATE_WINDOW_SECONDS, CODE_SECONDS, CODE_TRIES, CODES_PER_WINDOW, MacKey,
    VerificationError, Verifier,
};
use crate::graph::GraphClient;
use crate::ids::{UserId, random_bytes, random_uuid_v4};
use crate::sdk;
use crate::tenant::TenantId;

/// A code, sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSent {
    /// The code's id (not the code).
    pub id: String,
    /// Where it went, masked for display: `a***@example.net`.
    pub to_masked: String,
    /// When it stops working, in Unix seconds.
    pub expires_at: i64,
}

/// A recovery email code, entered right.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodePassed {
    /// The tenant.
    pub tenant: TenantId,
    /// The requester.
    pub requester: UserId,
    /// When the code was entered, in Unix seconds.
    pub verified_at: i64,
}

impl CodePassed {
    /// The fact for the policy module.
    pub fn verification(&self) -> sdk::Verification {
        sdk::Verification {
            method: sdk::Method::RecoveryEmailCode,
            verified_at: self.verified_at,
        }
    }
}

/// An email address for display: its first character, `***`, and its
/// domain (`adele.vance@example.net` becomes `a***@example.net`). Anything
/// without an `@` becomes `***`.
pub fn mask_email(address: &str) -> String {
    match address.trim().rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".to_owned(),
    }
}

/// 8 decimal digits, uniformly distributed, from the OS generator.
fn new_code() -> Result<String, VerificationError> {
    // The largest multiple of 10^8 that fits in a u32: drawing below it
    // and reducing keeps every code equally likely.
    const LIMIT: u32 = 4_200_000_000;
    loop {
        let n = u32::from_be_bytes(random_bytes::<4>()?);
        if n < LIMIT {
            return Ok(format!("{:08}", n % 100_000_000));
        }
    }
}

fn code_mac(key: &MacKey, id: &str, tenant: &TenantId, requester: &UserId, code: &str) -> [u8; 32] {
    key.mac(&[
        b"recovery email code",
        id.as_bytes(),
        tenant.as_str().as_bytes(),
        requester.as_str().as_bytes(),
        code.as_bytes(),
    ])
}

/// The latest code of a requester, as stored.
struct StoredCode {
    id: String,
    code_mac: String,
    key_id: String,
    expires_at: i64,
    attempts: i64,
    used_at: Option<i64>,
}

impl Verifier {
    /// Sends a new code to `requester`'s recovery email address, from the
    /// mailbox `mail_from` (a UPN or object id), through `graph` (which needs
    /// `UserAuthenticationMethod.Read.All` and `Mail.Send`). It replaces any
    /// earlier code. At most [`CODES_PER_WINDOW`] per requester per hour:
    /// beyond, [`VerificationError::RateLimited`].
    pub async fn send_email_code(
        &self,
        graph: &GraphClient,
        mail_from: &str,
        tenant: &TenantId,
        requester: &UserId,
    ) -> Result<CodeSent, VerificationError> {
        if mail_from.trim().is_empty() {
            return Err(VerificationError::InvalidInput(
                "no mailbox to send codes from (sign_in.mail_from)".to_owned(),
            ));
        }
        let key = self.key()?;
        let now = self.now();
        self.prune(now).await?;
        // Checked before Graph is asked anything, and again, atomically,
        // when the code is recorded.
        self.rate_limit(tenant, requester, now).await?;
        let address = recovery_address(graph, requester).await?;
        let id = random_uuid_v4()?;
        let code = new_code()?;
        let mac = hex::encode(code_mac(key, &id, tenant, requester, &code));
        let to_masked = mask_email(&address);
        let expires_at = now + CODE_SECONDS;
        let inserted = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO verification_codes \
                     (id, tenant, requester, code_mac, key_id, to_masked, created_at, expires_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                     WHERE (SELECT COUNT(*) FROM verification_codes \
                            WHERE tenant = $2 AND requester = $3 AND created_at > $9) < $10",
                )?
                .execute(params![
                    id,
                    tenant.as_str(),
                    requester.as_str(),
                    mac,
                    key.id,
                    to_masked,
                    now,
                    expires_at,
                    now - CODE_RATE_WINDOW_SECONDS,
                    CODES_PER_WINDOW
                ])
            })
            .await?;
        if inserted != 1 {
            self.rate_limit(tenant, requester, now).await?;
            return Err(VerificationError::RateLimited {
                retry_after_secs: 1,
            });
        }
        let message = json!({
            "message": {
                "subject": "Your Latchkey verification code",
                "body": {
                    "contentType": "Text",
                    "content": format!(
                        "Your verification code is {code}\n\n\
                         Type it in your chat with Latchkey within 10 minutes. \
                         Nobody from IT will ever ask you for it.\n\n\
                         If you did not ask for a code, someone may be trying to \
                         get into your account: tell your IT team."
                    ),
                },
                "toRecipients": [{"emailAddress": {"address": address}}],
            },
            // The code must not linger in the sending mailbox.
            "saveToSentItems": false,
        });
        let path = format!("{}/sendMail", GraphClient::user_path(mail_from.trim()));
        if let Err(e) = graph.post(&path, &message).await {
            // Not sent: it must not count against the requester, nor be
            // accepted.
            self.db
                .run(|c| {
                    c.prepare_cached("DELETE FROM verification_codes WHERE id = $1")?
                        .execute([&id])
                })
                .await?;
            return Err(e.into());
        }
        Ok(CodeSent {
            id,
            to_masked,
            expires_at,
        })
    }

    /// `Err(RateLimited)` when the requester was sent the maximum number of
    /// codes in the last hour.
    async fn rate_limit(
        &self,
        tenant: &TenantId,
        requester: &UserId,
        now: i64,
    ) -> Result<(), VerificationError> {
        let (count, oldest): (i64, Option<i64>) = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT COUNT(*), MIN(created_at) FROM verification_codes \
                     WHERE tenant = $1 AND requester = $2 AND created_at > $3",
                )?
                .query_row(
                    params![
                        tenant.as_str(),
                        requester.as_str(),
                        now - CODE_RATE_WINDOW_SECONDS
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await?;
        if count >= CODES_PER_WINDOW {
            let retry_after_secs = oldest.map_or(CODE_RATE_WINDOW_SECONDS, |oldest| {
                (oldest + CODE_RATE_WINDOW_SECONDS - now + 1).max(1)
            });
            return Err(VerificationError::RateLimited { retry_after_secs });
        }
        Ok(())
    }

    /// Checks `code` against `requester`'s latest code: single use, within
    /// [`CODE_SECONDS`], at most [`CODE_TRIES`] tries (the right one
    /// included), compared in constant time. Spaces and dashes the user
    /// typed between digits are ignored.
    pub async fn check_email_code(
        &self,
        tenant: &TenantId,
        requester: &UserId,
        code: &str,
    ) -> Result<CodePassed, VerificationError> {
        let key = self.key()?;
        let now = self.now();
        let stored: Option<StoredCode> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT id, code_mac, key_id, expires_at, attempts, used_at \
                     FROM verification_codes \
                     WHERE tenant = $1 AND requester = $2 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([tenant.as_str(), requester.as_str()], |r| {
                    Ok(StoredCode {
                        id: r.get(0)?,
                        code_mac: r.get(1)?,
                        key_id: r.get(2)?,
                        expires_at: r.get(3)?,
                        attempts: r.get(4)?,
                        used_at: r.get(5)?,
                    })
                })
                .optional()
            })
            .await?;
        let Some(stored) = stored else {
            return Err(VerificationError::NoCode);
        };
        if stored.used_at.is_some() {
            return Err(VerificationError::NoCode);
        }
        if stored.attempts >= i64::from(CODE_TRIES) {
            return Err(VerificationError::TooManyTries);
        }
        // A code made before a restart cannot be checked: its key is gone.
        if now >= stored.expires_at || stored.key_id != key.id {
            return Err(VerificationError::Expired);
        }
        // The try is counted before the comparison, atomically: however many
        // guesses arrive at once, at most CODE_TRIES are ever compared.
        let attempts: Option<i64> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "UPDATE verification_codes SET attempts = attempts + 1 \
                     WHERE id = $1 AND used_at IS NULL AND attempts < $2 RETURNING attempts",
                )?
                .query_row(params![stored.id, i64::from(CODE_TRIES)], |r| r.get(0))
                .optional()
            })
            .await?;
        let Some(attempts) = attempts else {
            // Another try got there first and used or burnt it.
            let used: Option<i64> = self
                .db
                .run(|c| {
                    c.prepare_cached("SELECT used_at FROM verification_codes WHERE id = $1")?
                        .query_row([&stored.id], |r| r.get(0))
                })
                .await?;
            return Err(if used.is_some() {
                VerificationError::NoCode
            } else {
                VerificationError::TooManyTries
            });
        };
        let typed: String = code
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .take(64)
            .collect();
        let expected = hex::decode(&stored.code_mac).map_err(|_| {
            VerificationError::Store("a stored code is not in the expected form".to_owned())
        })?;
        let actual = code_mac(key, &stored.id, tenant, requester, &typed);
        if bool::from(actual.as_slice().ct_eq(&expected)) {
            let used = self
                .db
                .run(|c| {
                    c.prepare_cached(
                        "UPDATE verification_codes SET used_at = $1 \
                         WHERE id = $2 AND used_at IS NULL",
                    )?
                    .execute(params![now, stored.id])
                })
                .await?;
            if used != 1 {
                return Err(VerificationError::NoCode);
            }
            return Ok(CodePassed {
                tenant: tenant.clone(),
                requester: requester.clone(),
                verified_at: now,
            });
        }
        let tries_left = u32::try_from(i64::from(CODE_TRIES) - attempts).unwrap_or(0);
        if tries_left == 0 {
            Err(VerificationError::TooManyTries)
        } else {
            Err(VerificationError::Wrong { tries_left })
        }
    }
}

/// The requester's registered recovery email address, from Graph.
async fn recovery_address(
    graph: &GraphClient,
    requester: &UserId,
) -> Result<String, VerificationError> {
    let path = format!(
        "{}/authentication/emailMethods",
        GraphClient::user_path(requester.as_str())
    );
    let response = graph.get(&path).await?;
    response
        .body
        .get("value")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("emailAddress").and_then(Value::as_str))
        .map(str::trim)
        .find(|a| {
            a.len() <= 254
                && a.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && !a.chars().any(|c| c.is_whitespace() || c.is_control())
        })
        .map(str::to_owned)
        .ok_or(VerificationError::NoRecoveryEmail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_to_a_first_letter_and_a_domain() {
        assert_eq!(
            mask_email("adele.vance.home@example.net"),
            "a***@example.net"
        );
        assert_eq!(mask_email("élise@example.fr"), "é***@example.fr");
        assert_eq!(mask_email("nobody"), "***");
        assert_eq!(mask_email("@example.net"), "***");
    }

    #[test]
    fn codes_are_eight_digits_and_vary() {
        let codes: Vec<String> = (0..50).map(|_| new_code().unwrap()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert!(distinct.len() > 45, "{distinct:?}");
    }

    #[test]
    fn a_code_is_bound_to_its_requester() {
        let key = MacKey::generate().unwrap();
        let tenant: TenantId = "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap();
        let adele: UserId = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f".parse().unwrap();
        let alex: UserId = "8f080165-38fe-44c1-b3b8-6f4dafad5194".parse().unwrap();
        assert_ne!(
            code_mac(&key, "id", &tenant, &adele, "12345678"),
            code_mac(&key, "id", &tenant, &alex, "12345678")
        );
    }
}
