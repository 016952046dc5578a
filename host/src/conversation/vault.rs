//! The secrets a resolution produced (a temporary password, a Temporary
//! Access Pass), held in memory until their owner fetches them once.
//!
//! Never written anywhere: a restart loses them, and the conversation's
//! `secret` event then fetches nothing (the user asks again, and a new
//! decision issues a new one). A secret nobody fetched is dropped after the
//! engine's `secret_ttl`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::graph::Secret;
use crate::ids::UserId;
use crate::tenant::TenantId;

struct Held {
    tenant: TenantId,
    owner: UserId,
    secret: Secret,
    until: i64,
}

/// One-time secrets by id.
#[derive(Default)]
pub struct Vault {
    held: Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Holds `secret` for `owner` under `id` until `until` (Unix seconds).
    pub fn put(&self, id: String, tenant: &TenantId, owner: &UserId, secret: Secret, until: i64) {
        self.lock().insert(
            id,
            Held {
                tenant: tenant.clone(),
                owner: owner.clone(),
                secret,
                until,
            },
        );
    }

    /// The secret, once, for its owner while it is held; `None` for anyone
    /// else (and the secret stays for its owner).
    pub fn take(&self, id: &str, tenant: &TenantId, owner: &UserId, now: i64) -> Option<Secret> {
        let mut held = self.lock();
        let mine = held
            .get(id)
            .is_some_and(|h| &h.tenant == tenant && &h.owner == owner);
        if !mine {
            return None;
        }
        held.remove(id).filter(|h| h.until >= now).map(|h| h.secret)
    }

    /// Drops every secret held past its time.
    pub fn expire(&self, now: i64) {
        self.lock().retain(|_, h| h.until >= now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_given_once_and_only_to_its_owner() {
        let vault = Vault::default();
        let tenant: TenantId = "9a3f6c2e-1b4d-4f8a-b5c7-2d6e8f0a1b3c".parse().unwrap();
        let owner: UserId = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f".parse().unwrap();
        let other: UserId = "8f080165-38fe-44c1-b3b8-6f4dafad5194".parse().unwrap();
        vault.put("s1".into(), &tenant, &owner, Secret::new("pw"), 100);
        assert!(vault.take("s1", &tenant, &other, 10).is_none());
        assert_eq!(
            vault.take("s1", &tenant, &owner, 10).unwrap().expose(),
            "pw"
        );
        assert!(vault.take("s1", &tenant, &owner, 10).is_none());
        vault.put("s2".into(), &tenant, &owner, Secret::new("pw"), 100);
        vault.expire(101);
        assert!(vault.take("s2", &tenant, &owner, 101).is_none());
    }
}
