//! Publisher signatures over policy modules.
//!
//! An MSP signs the modules it ships; a tenant's configuration lists the
//! publisher keys it trusts. The signature is detached (the module bytes stay
//! exactly as built, so the sha256 auditors see is the file's sha256) and
//! covers a domain-separated statement naming the module's sha256:
//!
//! ```text
//! latchkey-policy-module/v1 sha256:<64 lowercase hex digits>
//! ```
//!
//! A signature file holds the 64-byte ed25519 signature in base64. The
//! statement can also be signed with OpenSSL:
//! `printf 'latchkey-policy-module/v1 sha256:%s' "$(sha256sum m.wasm | cut -d' ' -f1)" > stmt;
//! openssl pkeyutl -sign -rawin -inkey key.pem -in stmt | base64 -w0 > m.wasm.sig`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::keys::KeyId;
use crate::policy::ModuleHash;

/// What a publisher signs for a module with hash `hash`.
pub fn statement(hash: &ModuleHash) -> String {
    format!("latchkey-policy-module/v1 sha256:{hash}")
}

/// Signs the module with this hash and returns the signature file's text.
pub fn sign(key: &SigningKey, hash: &ModuleHash) -> String {
    let signature = key.sign(statement(hash).as_bytes());
    format!("{}\n", BASE64.encode(signature.to_bytes()))
}

/// Why a module's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature file is not base64 of 64 bytes.
    #[error("the signature file is not a base64 ed25519 signature")]
    Malformed,
    /// No trusted publisher key verifies it.
    #[error("the signature does not verify with any trusted publisher key ({keys})")]
    NotTrusted {
        /// The key ids tried, comma-separated.
        keys: String,
    },
}

/// Parses a signature file's text.
pub fn parse_signature(text: &str) -> Result<Signature, SignatureError> {
    let compact: String = text.split_whitespace().collect();
    let bytes = BASE64
        .decode(compact.as_bytes())
        .map_err(|_| SignatureError::Malformed)?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| SignatureError::Malformed)?;
    Ok(Signature::from_bytes(&bytes))
}

/// The publisher keys a tenant trusts.
#[derive(Clone, Debug, Default)]
pub struct Publishers {
    keys: Vec<VerifyingKey>,
}

impl Publishers {
    /// Trusts exactly these keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Publishers {
        Publishers { keys }
    }

    /// True when no key is trusted (no signature is required).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The ids of the trusted keys.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(KeyId::of).collect()
    }

    /// Checks the signature over the module with this hash; returns the id of
    /// the key that made it. Uses strict verification, which rejects
    /// non-canonical and small-order encodings.
    pub fn verify(&self, hash: &ModuleHash, signature_text: &str) -> Result<KeyId, SignatureError> {
        let signature = parse_signature(signature_text)?;
        let statement = statement(hash);
        self.keys
            .iter()
            .find(|key| key.verify_strict(statement.as_bytes(), &signature).is_ok())
            .map(KeyId::of)
            .ok_or_else(|| SignatureError::NotTrusted {
                keys: self
                    .ids()
                    .iter()
                    .map(KeyId::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    #[test]
    fn a_signature_verifies_only_for_its_module_and_key() {
        let key = keys::generate();
        let other = keys::generate();
        let hash = ModuleHash::of(b"module");
        let sig = sign(&key, &hash);
        let trusted = Publishers::new(vec![other.verifying_key(), key.verifying_key()]);
        assert_eq!(
            trusted.verify(&hash, &sig),
            Ok(KeyId::of(&key.verifying_key()))
        );
        // Another module, or only the other key trusted: refused.
        assert!(matches!(
            trusted.verify(&ModuleHash::of(b"tampered"), &sig),
            Err(SignatureError::NotTrusted { .. })
        ));
        let wrong = Publishers::new(vec![other.verifying_key()]);
        assert!(matches!(
            wrong.verify(&hash, &sig),
            Err(SignatureError::NotTrusted { .. })
        ));
    }

    #[test]
    fn garbage_signature_files_are_malformed() {
        let trusted = Publishers::new(vec![keys::generate().verifying_key()]);
        let hash = ModuleHash::of(b"m");
        assert_eq!(
            trusted.verify(&hash, "not base64!"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            trusted.verify(&hash, "AAAA"),
            Err(SignatureError::Malformed)
        );
    }
}
