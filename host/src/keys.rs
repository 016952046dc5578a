//! Ed25519 keys: generation, PEM files, and the key id that names a key.
//!
//! Keys are stored as PEM (PKCS#8 for private keys, SubjectPublicKeyInfo for
//! public keys), the formats OpenSSL writes with `openssl genpkey -algorithm
//! ed25519`, so an MSP can create and use keys with the tools it already has.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Names a public key: `ed25519:` and the first 16 hex digits of the sha256
/// of its 32 raw bytes. Short enough to read, long enough not to collide
/// among the handful of keys a tenant trusts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The key id of `key`.
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        KeyId(format!("ed25519:{}", &hex::encode(digest)[..16]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a PEM ed25519 private key.
    #[error("not an ed25519 private key in PKCS#8 PEM ({0}); create one with `latchkey keygen`")]
    BadPrivateKey(String),
    /// The text is not a PEM ed25519 public key.
    #[error(
        "not an ed25519 public key in PEM ({0}); `latchkey keygen` writes one beside the private key"
    )]
    BadPublicKey(String),
    /// Encoding failed (should not happen for valid keys).
    #[error("could not encode the key: {0}")]
    Encode(String),
}

/// A fresh signing key from the operating system's random number generator.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// Reads a PKCS#8 PEM private key.
pub fn private_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::BadPrivateKey(e.to_string()))
}

/// Reads a SubjectPublicKeyInfo PEM public key.
pub fn public_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyError::BadPublicKey(e.to_string()))
}

/// Writes a private key as PKCS#8 PEM. The caller must keep the text secret.
pub fn private_to_pem(key: &SigningKey) -> Result<String, KeyError> {
    key.to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(|e| KeyError::Encode(e.to_string()))
}

/// Writes a public key as SubjectPublicKeyInfo PEM.
pub fn public_to_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key_and_its_id() {
        let key = generate();
        let private = private_to_pem(&key).unwrap();
        let public = public_to_pem(&key.verifying_key()).unwrap();
        assert!(private.contains("BEGIN PRIVATE KEY"));
        assert!(public.contains("BEGIN PUBLIC KEY"));
        let back = private_from_pem(&private).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let pubkey = public_from_pem(&public).unwrap();
        assert_eq!(KeyId::of(&pubkey), KeyId::of(&key.verifying_key()));
        assert!(KeyId::of(&pubkey).as_str().starts_with("ed25519:"));
    }

    #[test]
    fn a_public_key_is_not_a_private_key() {
        let key = generate();
        let public = public_to_pem(&key.verifying_key()).unwrap();
        assert!(matches!(
            private_from_pem(&public),
            Err(KeyError::BadPrivateKey(_))
        ));
        assert!(matches!(
            public_from_pem("junk"),
            Err(KeyError::BadPublicKey(_))
        ));
    }
}
