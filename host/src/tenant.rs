//! Tenant identity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Entra tenant id: a GUID, kept in lowercase canonical form
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a tenant id is the Entra tenant's GUID (like 72f988bf-86f1-41af-91ab-2d7cd011db47), got {0:?}"
)]
pub struct ParseTenantIdError(String);

impl FromStr for TenantId {
    type Err = ParseTenantIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::ids::canonical_guid(s)
            .map(TenantId)
            .ok_or_else(|| ParseTenantIdError(s.chars().take(80).collect()))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_accepted_and_lowercased() {
        let t: TenantId = "72F988BF-86F1-41AF-91AB-2D7CD011DB47".parse().unwrap();
        assert_eq!(t.as_str(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
    }

    #[test]
    fn other_text_is_not_a_tenant_id() {
        for bad in [
            "contoso",
            "",
            "72f988bf-86f1-41af-91ab-2d7cd011db4",
            "72f988bf86f141af91ab2d7cd011db47",
        ] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad}");
        }
    }
}
