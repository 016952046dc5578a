//! One entry of the activity log: its kind, its identity in a tenant's chain,
//! its hash, and the canonical bytes that hash covers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::tenant::TenantId;

/// The version of the canonical form (see [`crate::audit`]), the `v` in every
/// entry. A change to what the hash covers or how the bytes are written is a
/// new version, and verification must go on accepting the old ones.
pub const FORMAT_VERSION: i64 = 1;

/// What an entry records. Stored and hashed as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Kind {
    /// A user's request, as the conversation engine understood it.
    Request,
    /// The facts the investigator gathered, with their digest.
    Facts,
    /// A policy module's decision, with the module's sha256.
    Decision,
    /// A Graph write about to be made (written before the write).
    Intent,
    /// What became of an intent (written after the write, or by reconciliation).
    Outcome,
    /// Something refused in code: scope, receipt, module load.
    Refusal,
    /// An approval asked for, given or refused.
    Approval,
    /// An identity verification and its method.
    Verification,
    /// Anything else worth keeping in the chain.
    Note,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 9] = [
        Kind::Request,
        Kind::Facts,
        Kind::Decision,
        Kind::Intent,
        Kind::Outcome,
        Kind::Refusal,
        Kind::Approval,
        Kind::Verification,
        Kind::Note,
    ];

    /// The name stored and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Facts => "facts",
            Kind::Decision => "decision",
            Kind::Intent => "intent",
            Kind::Outcome => "outcome",
            Kind::Refusal => "refusal",
            Kind::Approval => "approval",
            Kind::Verification => "verification",
            Kind::Note => "note",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an entry kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entry kind {0:?}")]
pub struct ParseKindError(String);

impl FromStr for Kind {
    type Err = ParseKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError(s.chars().take(40).collect()))
    }
}

/// An entry's place: its tenant's chain and its sequence number there (1, 2,
/// 3...). Only the log hands these out.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    tenant: TenantId,
    seq: u64,
}

impl EntryId {
    pub(super) fn new(tenant: TenantId, seq: u64) -> EntryId {
        EntryId { tenant, seq }
    }

    /// The tenant whose chain holds the entry.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The entry's sequence number in that chain, from 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.tenant, self.seq)
    }
}

/// Why a string is not an entry id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an entry id is <tenant id>#<seq>, as `audit verify` and the admin API print them; got {0:?}"
)]
pub struct ParseEntryIdError(String);

impl FromStr for EntryId {
    type Err = ParseEntryIdError;

    /// Parses `<tenant>#<seq>`, as [`EntryId`]'s `Display` writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseEntryIdError(s.chars().take(80).collect());
        let (tenant, digits) = s.split_once('#').ok_or_else(bad)?;
        let tenant: TenantId = tenant.parse().map_err(|_| bad())?;
        let seq: u64 = digits.parse().map_err(|_| bad())?;
        // One spelling per id: no sign, no leading zeros.
        if seq == 0 || seq.to_string() != digits {
            return Err(bad());
        }
        Ok(EntryId { tenant, seq })
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryId({self})")
    }
}

/// The sha256 of an entry's canonical bytes, written as 64 lowercase hex
/// digits. The first entry of a chain links to [`EntryHash::GENESIS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryHash([u8; 32]);

impl EntryHash {
    /// What the first entry of every chain names as its predecessor: 64 zeros.
    pub const GENESIS: EntryHash = EntryHash([0; 32]);

    /// Hashes canonical bytes.
    pub fn of(canonical: &[u8]) -> EntryHash {
        EntryHash(Sha256::digest(canonical).into())
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({self})")
    }
}

/// Why a string is not an entry hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an entry hash is 64 lowercase hex digits (sha256), got {0:?}")]
pub struct ParseEntryHashError(String);

impl FromStr for EntryHash {
    type Err = ParseEntryHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut out = [0u8; 32];
        if !valid || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(ParseEntryHashError(s.chars().take(80).collect()));
        }
        Ok(EntryHash(out))
    }
}

impl Serialize for EntryHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntryHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An entry as read back from the log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// Tenant and sequence number.
    pub id: EntryId,
    /// The storage row id: how the database, not the chain, names the entry.
    pub row: i64,
    /// What it records.
    pub kind: Kind,
    /// When it was appended, in milliseconds since the Unix epoch (UTC).
    pub at: i64,
    /// The recorded JSON, with object keys sorted.
    pub body: Value,
    /// The sha256 of the entry before it in the chain.
    pub prev_sha256: EntryHash,
    /// The sha256 of this entry's canonical bytes.
    pub sha256: EntryHash,
}

/// Returns `value` with every object's keys in sorted order, recursively.
///
/// serde_json's `Map` is a `BTreeMap` unless its `preserve_order` feature is
/// on, so with this workspace's features maps are already sorted and this is
/// a copy. It sorts explicitly anyway, so that the canonical form does not
/// silently change if some dependency ever turns `preserve_order` on through
/// feature unification (a test pins that keys come out sorted either way).
pub fn canonicalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonicalize(v)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonicalize).collect()),
        other => other.clone(),
    }
}

/// The fields an entry's hash covers, as stored. Raw, so that a verifier can
/// hash what is in the database even when a field no longer parses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields<'a> {
    pub v: i64,
    pub tenant: &'a str,
    pub seq: i64,
    pub kind: &'a str,
    pub at: i64,
    pub prev_sha256: &'a str,
    pub body: &'a Value,
}

/// The canonical bytes of an entry: the compact JSON array
/// `[v, tenant, seq, kind, at, prev_sha256, body]` with `body`'s keys sorted.
/// See the module documentation of [`crate::audit`] for the exact rules.
pub(super) fn canonical_bytes(f: Fields<'_>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&(
        f.v,
        f.tenant,
        f.seq,
        f.kind,
        f.at,
        f.prev_sha256,
        canonicalize(f.body),
    ))
}

/// The sha256 of an entry's canonical bytes, as lowercase hex.
pub(super) fn hash_fields(f: Fields<'_>) -> Result<String, serde_json::Error> {
    Ok(EntryHash::of(&canonical_bytes(f)?).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_json_maps_come_out_with_sorted_keys() {
        // The canonical form relies on this: without serde_json's
        // `preserve_order`, `Map` is a BTreeMap and serialises keys sorted.
        let mut map = Map::new();
        map.insert("zeta".into(), json!(1));
        map.insert("alpha".into(), json!({"b": 1, "a": 2}));
        map.insert("Mid".into(), json!(null));
        let text = serde_json::to_string(&Value::Object(map)).unwrap();
        assert_eq!(text, r#"{"Mid":null,"alpha":{"a":2,"b":1},"zeta":1}"#);
        let parsed: Value = serde_json::from_str(r#"{"b":[{"d":1,"c":2}],"a":0}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"{"a":0,"b":[{"c":2,"d":1}]}"#
        );
        assert_eq!(canonicalize(&parsed), parsed);
    }

    #[test]
    fn canonical_bytes_are_the_documented_array() {
        let body = json!({"z": "é\n", "a": [3, {"y": true, "x": null}]});
        let bytes = canonical_bytes(Fields {
            v: 1,
            tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47",
            seq: 7,
            kind: "note",
            at: 1_764_000_000_123,
            prev_sha256: &EntryHash::GENESIS.to_string(),
            body: &body,
        })
        .unwrap();
        let expected = format!(
            r#"[1,"72f988bf-86f1-41af-91ab-2d7cd011db47",7,"note",1764000000123,"{}",{{"a":[3,{{"x":null,"y":true}}],"z":"é\n"}}]"#,
            "0".repeat(64)
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn entry_ids_round_trip_as_tenant_hash_seq() {
        let id: EntryId = "72f988bf-86f1-41af-91ab-2d7cd011db47#12".parse().unwrap();
        assert_eq!(id.seq(), 12);
        assert_eq!(id.to_string(), "72f988bf-86f1-41af-91ab-2d7cd011db47#12");
        for bad in [
            "",
            "12",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "72f988bf-86f1-41af-91ab-2d7cd011db47#0",
            "72f988bf-86f1-41af-91ab-2d7cd011db47#+3",
            "72f988bf-86f1-41af-91ab-2d7cd011db47#012",
            "72f988bf-86f1-41af-91ab-2d7cd011db47#-1",
            "contoso#1",
        ] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                json!(kind.as_str()),
                "serde and as_str agree"
            );
        }
        assert!("Intent".parse::<Kind>().is_err());
    }

    #[test]
    fn entry_hashes_are_lowercase_hex() {
        let h = EntryHash::of(b"abc");
        assert_eq!(h.to_string().parse::<EntryHash>(), Ok(h));
        assert!(h.to_string().to_uppercase().parse::<EntryHash>().is_err());
        assert_eq!(EntryHash::GENESIS.to_string(), "0".repeat(64));
    }
}
