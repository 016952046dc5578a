//! The host's receipt keys: one active signing key, and the public keys
//! receipts are verified against.
//!
//! Rotation: the host signs with the new key and keeps the old public keys in
//! its verification set (each with an optional `not_after`) for as long as
//! receipts, and audits of them, may need them. Removing a key from the set
//! makes every receipt it signed fail with [`UnknownKey`](super::VerifyError::UnknownKey).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::keys::{self, KeyError, KeyId};

/// Why host keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// A key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file does not hold the kind of key expected.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KeyError,
    },
    /// Two different keys have the same key id: the set could not tell which
    /// one a receipt names.
    #[error("two different keys have the id {0}; generate another key")]
    DuplicateKeyId(KeyId),
}

/// A public key receipts are verified against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key.
    pub key: VerifyingKey,
    /// Receipts issued after this time (Unix seconds) are not accepted from
    /// this key; `None` for no limit.
    pub not_after: Option<i64>,
}

/// The public keys receipts are verified against, by key id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyingKeys {
    keys: BTreeMap<KeyId, TrustedKey>,
}

impl VerifyingKeys {
    /// An empty set: verifies nothing.
    pub fn new() -> VerifyingKeys {
        VerifyingKeys::default()
    }

    /// Trusts `key` for receipts issued up to `not_after` (Unix seconds;
    /// `None` for no limit). Trusting a key again replaces its `not_after`.
    pub fn insert(
        &mut self,
        key: VerifyingKey,
        not_after: Option<i64>,
    ) -> Result<KeyId, HostKeyError> {
        let kid = KeyId::of(&key);
        if let Some(existing) = self.keys.get(&kid)
            && existing.key != key
        {
            return Err(HostKeyError::DuplicateKeyId(kid));
        }
        self.keys.insert(kid.clone(), TrustedKey { key, not_after });
        Ok(kid)
    }

    /// Trusts the public key in a PEM file (as `latchkey keygen` writes it).
    pub fn insert_pem_file(
        &mut self,
        path: &Path,
        not_after: Option<i64>,
    ) -> Result<KeyId, HostKeyError> {
        let key = keys::public_from_pem(&read(path)?).map_err(|source| HostKeyError::Key {
            path: path.to_owned(),
            source,
        })?;
        self.insert(key, not_after)
    }

    /// Stops trusting the key with this id; true if it was trusted.
    pub fn remove(&mut self, kid: &KeyId) -> bool {
        self.keys.remove(kid).is_some()
    }

    /// The trusted key with this id, given as text (as a receipt names it).
    pub fn get(&self, kid: &str) -> Option<(&KeyId, &TrustedKey)> {
        self.keys.iter().find(|(id, _)| id.as_str() == kid)
    }

    /// The ids of the trusted keys, in order.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The host's receipt keys: the active signing key and the verification set,
/// which always includes the active key's public half.
///
/// `Debug` shows key ids only: the private key is never printed.
pub struct HostKeys {
    signing: SigningKey,
    kid: KeyId,
    verifying: VerifyingKeys,
}

impl HostKeys {
    /// Signs with `signing`; verifies with its public key alone until others
    /// are trusted with [`HostKeys::trust`].
    pub fn new(signing: SigningKey) -> HostKeys {
        let public = signing.verifying_key();
        let kid = KeyId::of(&public);
        let mut verifying = VerifyingKeys::new();
        verifying.keys.insert(
            kid.clone(),
            TrustedKey {
                key: public,
                not_after: None,
            },
        );
        HostKeys {
            signing,
            kid,
            verifying,
        }
    }

    /// Loads the active signing key from a PKCS#8 PEM file (as `latchkey
    /// keygen` writes it).
    pub fn load(private_key: &Path) -> Result<HostKeys, HostKeyError> {
        let signing =
            keys::private_from_pem(&read(private_key)?).map_err(|source| HostKeyError::Key {
                path: private_key.to_owned(),
                source,
            })?;
        Ok(HostKeys::new(signing))
    }

    /// Also verifies receipts signed by `key` (a previous host key) if issued
    /// up to `not_after`.
    pub fn trust(
        &mut self,
        key: VerifyingKey,
        not_after: Option<i64>,
    ) -> Result<KeyId, HostKeyError> {
        self.verifying.insert(key, not_after)
    }

    /// Also verifies receipts signed by the public key in this PEM file.
    pub fn trust_pem_file(
        &mut self,
        path: &Path,
        not_after: Option<i64>,
    ) -> Result<KeyId, HostKeyError> {
        self.verifying.insert_pem_file(path, not_after)
    }

    /// Stops verifying receipts signed by the key with this id. The active
    /// key cannot be removed (false): the host must verify what it signs.
    pub fn retire(&mut self, kid: &KeyId) -> bool {
        kid != &self.kid && self.verifying.remove(kid)
    }

    /// The active key's id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The verification set.
    pub fn verifying(&self) -> &VerifyingKeys {
        &self.verifying
    }

    pub(super) fn signing(&self) -> &SigningKey {
        &self.signing
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKeys")
            .field("kid", &self.kid)
            .field("verifying", &self.verifying.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, HostKeyError> {
    std::fs::read_to_string(path).map_err(|source| HostKeyError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_from_pem_files_and_debug_hides_the_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = keys::generate();
        let new = keys::generate();
        std::fs::write(
            dir.path().join("new.pem"),
            keys::private_to_pem(&new).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("old.pub.pem"),
            keys::public_to_pem(&old.verifying_key()).unwrap(),
        )
        .unwrap();

        let mut host = HostKeys::load(&dir.path().join("new.pem")).unwrap();
        assert_eq!(host.kid(), &KeyId::of(&new.verifying_key()));
        let old_kid = host
            .trust_pem_file(&dir.path().join("old.pub.pem"), Some(10))
            .unwrap();
        assert_eq!(host.verifying().ids().count(), 2);
        assert_eq!(
            host.verifying().get(old_kid.as_str()).unwrap().1.not_after,
            Some(10)
        );

        let debug = format!("{host:?}");
        assert!(debug.contains(host.kid().as_str()), "{debug}");
        let secret = hex::encode(new.to_bytes());
        assert!(!debug.contains(&secret) && !debug.contains("signing"));

        // The active key stays; a retired one goes.
        let active = host.kid().clone();
        assert!(!host.retire(&active));
        assert!(host.retire(&old_kid));
        assert_eq!(host.verifying().ids().collect::<Vec<_>>(), vec![&active]);
    }

    #[test]
    fn a_public_key_file_is_not_a_host_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub.pem");
        std::fs::write(
            &path,
            keys::public_to_pem(&keys::generate().verifying_key()).unwrap(),
        )
        .unwrap();
        let err = HostKeys::load(&path).unwrap_err();
        assert!(matches!(err, HostKeyError::Key { .. }), "{err}");
        assert!(err.to_string().contains("private key"), "{err}");
        let missing = HostKeys::load(&dir.path().join("nope.pem")).unwrap_err();
        assert!(matches!(missing, HostKeyError::Read { .. }));
    }
}
