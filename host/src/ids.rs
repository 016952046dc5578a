//! GUID-shaped identifiers: the user a receipt is about, the receipt itself
//! and the decision behind it; and the one GUID parser and random-UUID
//! generator the rest of the host uses (tenant ids, client request ids).
//!
//! Each is a newtype kept in lowercase canonical form
//! (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`) and validated on parse, including
//! when deserialized, so two spellings of one GUID compare equal and nothing
//! else gets in.

use std::fmt;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not the identifier expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is a GUID (like 6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f), got {got:?}")]
pub struct ParseIdError {
    what: &'static str,
    got: String,
}

/// The operating system's random number generator failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// `N` bytes from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

/// The canonical (lowercase) form of `s` if it is a GUID.
pub(crate) fn canonical_guid(s: &str) -> Option<String> {
    let lengths = [8, 4, 4, 4, 12];
    let mut groups = s.split('-');
    let valid = lengths.iter().all(|&n| {
        groups
            .next()
            .is_some_and(|g| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
    }) && groups.next().is_none();
    valid.then(|| s.to_ascii_lowercase())
}

/// A random (version 4) UUID in canonical form.
pub(crate) fn random_uuid_v4() -> Result<String, RandomError> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id as text, in lowercase canonical form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                canonical_guid(s).map($name).ok_or_else(|| ParseIdError {
                    what: $what,
                    got: s.chars().take(80).collect(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

guid_id!(
    /// An Entra user's object id: the requester, or the account acted on.
    UserId,
    "a user id (Entra object id)"
);

guid_id!(
    /// Names one receipt: a random (version 4) UUID.
    ReceiptId,
    "a receipt id"
);

guid_id!(
    /// Names one policy decision, as recorded in the audit log: a UUID.
    DecisionId,
    "a decision id"
);

impl ReceiptId {
    /// A fresh random id.
    pub fn generate() -> Result<ReceiptId, RandomError> {
        random_uuid_v4().map(ReceiptId)
    }
}

impl DecisionId {
    /// A fresh random id.
    pub fn generate() -> Result<DecisionId, RandomError> {
        random_uuid_v4().map(DecisionId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_lowercased_and_other_text_refused() {
        let id: UserId = "6EA91A8D-E32E-41A1-B7F6-3A2B1C0D9E8F".parse().unwrap();
        assert_eq!(id.as_str(), "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f");
        assert_eq!(
            id,
            "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f"
                .parse::<UserId>()
                .unwrap()
        );
        for bad in [
            "",
            "alice@contoso.com",
            "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8",
            "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f-00",
            "6ea91a8de32e41a1b7f63a2b1c0d9e8f",
            "{6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f}",
            "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8g",
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<UserId>("\"nobody\"").is_err());
    }

    #[test]
    fn generated_ids_are_distinct_version_4_uuids() {
        let a = ReceiptId::generate().unwrap();
        let b = ReceiptId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(&a.as_str()[14..15], "4");
        assert!(matches!(&a.as_str()[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(a.as_str().parse::<ReceiptId>().unwrap(), a);
    }
}
