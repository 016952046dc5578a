//! Manager confirmation: the requester's manager, in the manager's own
//! verified chat, confirms that the request is really the requester's.
//!
//! The caller looks the manager up in Graph and shows the request to them;
//! the verifier keeps who may answer and accepts one answer, from that
//! identity only, before the deadline.

use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};

use super::{MANAGER_SECONDS, VerificationError, Verifier};
use crate::ids::{UserId, random_uuid_v4};
use crate::sdk;
use crate::tenant::TenantId;

/// A confirmation request, waiting for the manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerAsk {
    /// The request's id, for the manager's buttons.
    pub id: String,
    /// The only identity whose answer counts.
    pub manager: UserId,
    /// When it stops being accepted, in Unix seconds.
    pub expires_at: i64,
}

/// The manager's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerAnswer {
    /// The tenant.
    pub tenant: TenantId,
    /// Whose request it was.
    pub requester: UserId,
    /// True when the manager confirmed, false when they refused.
    pub confirmed: bool,
    /// When they answered, in Unix seconds.
    pub at: i64,
}

impl ManagerAnswer {
    /// The fact for the policy module: a confirmation is a passed
    /// verification; a refusal is none.
    pub fn verification(&self) -> Option<sdk::Verification> {
        self.confirmed.then_some(sdk::Verification {
            method: sdk::Method::ManagerConfirmation,
            verified_at: self.at,
        })
    }
}

impl Verifier {
    /// Records a confirmation request from `requester` to `manager`, open
    /// for [`MANAGER_SECONDS`]. Nobody confirms themselves.
    pub async fn ask_manager(
        &self,
        tenant: &TenantId,
        requester: &UserId,
        manager: &UserId,
    ) -> Result<ManagerAsk, VerificationError> {
        if requester == manager {
            return Err(VerificationError::InvalidInput(
                "the requester cannot confirm their own request".to_owned(),
            ));
        }
        let now = self.now();
        self.prune(now).await?;
        let id = random_uuid_v4()?;
        let expires_at = now + MANAGER_SECONDS;
        self.db
            .run(|c| {
                c.prepare_cached(
                    "INSERT INTO verification_manager_asks \
                     (id, tenant, requester, manager, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )?
                .execute(rusqlite::params![
                    id,
                    tenant.as_str(),
                    requester.as_str(),
                    manager.as_str(),
                    now,
                    expires_at
                ])
            })
            .await?;
        Ok(ManagerAsk {
            id,
            manager: manager.clone(),
            expires_at,
        })
    }

    /// The answer to request `id`, by `answered_by`: the verified identity
    /// of whoever pressed the button (from the channel, never from chat
    /// text). Accepted once, before the deadline, and only when
    /// `answered_by` is the recorded manager; anyone else gets
    /// [`VerificationError::NotTheManager`] and nothing is recorded.
    pub async fn answer_manager(
        &self,
        id: &str,
        answered_by: &UserId,
        confirm: bool,
    ) -> Result<ManagerAnswer, VerificationError> {
        let unknown = || VerificationError::UnknownRequest(id.chars().take(80).collect());
        let row: Option<(String, String, String, i64, Option<i64>)> = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "SELECT tenant, requester, manager, expires_at, answered_at \
                     FROM verification_manager_asks WHERE id = $1",
                )?
                .query_row([id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .await?;
        let Some((tenant, requester, manager, expires_at, answered_at)) = row else {
            return Err(unknown());
        };
        let corrupt = || {
            VerificationError::Store(
                "a stored confirmation request is not in the expected form".to_owned(),
            )
        };
        let tenant: TenantId = tenant.parse().map_err(|_| corrupt())?;
        let requester: UserId = requester.parse().map_err(|_| corrupt())?;
        let manager: UserId = manager.parse().map_err(|_| corrupt())?;
        if *answered_by != manager {
            return Err(VerificationError::NotTheManager);
        }
        if answered_at.is_some() {
            return Err(VerificationError::AlreadyAnswered);
        }
        let now = self.now();
        if now >= expires_at {
            return Err(VerificationError::Expired);
        }
        let answered = self
            .db
            .run(|c| {
                c.prepare_cached(
                    "UPDATE verification_manager_asks SET answered_at = $1, confirmed = $2 \
                     WHERE id = $3 AND answered_at IS NULL",
                )?
                .execute(rusqlite::params![now, i64::from(confirm), id])
            })
            .await?;
        if answered != 1 {
            return Err(VerificationError::AlreadyAnswered);
        }
        Ok(ManagerAnswer {
            tenant,
            requester,
            confirmed: confirm,
            at: now,
        })
    }
}
