//! A module's identity: the sha256 of its bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The sha256 of a policy module's bytes, written as 64 lowercase hex digits.
///
/// This is the module's identity everywhere: in tenant configuration, in
/// receipts, in the audit log and in the compiled-module cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ModuleHash([u8; 32]);

impl ModuleHash {
    /// Hashes module bytes.
    pub fn of(bytes: &[u8]) -> ModuleHash {
        ModuleHash(Sha256::digest(bytes).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleHash({self})")
    }
}

/// Why a string is not a module hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a module hash is 64 lowercase hex digits (sha256), got {0:?}")]
pub struct ParseModuleHashError(String);

impl FromStr for ModuleHash {
    type Err = ParseModuleHashError;

    /// Accepts exactly 64 lowercase hex digits: a hash pinned in configuration
    /// is compared as text by people, so there is one way to write it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(ParseModuleHashError(s.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseModuleHashError(s.to_owned()))?;
        Ok(ModuleHash(out))
    }
}

impl Serialize for ModuleHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_as_lowercase_hex() {
        let h = ModuleHash::of(b"abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_string().parse::<ModuleHash>(), Ok(h));
    }

    #[test]
    fn uppercase_short_and_non_hex_are_rejected() {
        let upper = ModuleHash::of(b"abc").to_string().to_uppercase();
        assert!(upper.parse::<ModuleHash>().is_err());
        assert!("abc".parse::<ModuleHash>().is_err());
        assert!("g".repeat(64).parse::<ModuleHash>().is_err());
        assert!(serde_json::from_str::<ModuleHash>("\"1234\"").is_err());
    }
}
