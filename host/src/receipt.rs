//! Signed receipts: the host's signature over an allow, which the executor
//! checks before every Graph write.
//!
//! A policy module's allow is only input. The host turns it into a receipt
//! ([`issue`]) only when the decision is an allow without fault, from the
//! tenant's pinned module, for the verified requester's own account, and for
//! actions that were requested. The receipt binds tenant, requester, target,
//! actions, constraints, the facts' digest, the module's sha256, expiry and a
//! one-time nonce, and is signed with the host's ed25519 key inside a DSSE
//! envelope ([`envelope`]).
//!
//! Before each write the executor calls [`verify`] (signature, key, expiry),
//! [`NonceStore::consume`] (single use) and [`Receipt::authorizes`] (scope:
//! this tenant, the verified requester's own account, this action, these
//! constraints). All three must pass; each says why when it does not.
//!
//! Anyone with the host's public key can check a receipt:
//! `latchkey receipt verify --pub host.pub.pem receipt.json`.

pub mod envelope;
mod host_keys;
mod nonce;

use std::fmt;

use latchkey_policy::{Action, Constraints, Decision, Facts};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{Evaluation, ModuleHash, TAP_LIFETIME_MINUTES};
use crate::tenant::TenantId;

pub use crate::ids::{DecisionId, ParseIdError, RandomError, ReceiptId, UserId};
pub use envelope::{MAX_ENVELOPE_BYTES, PAYLOAD_TYPE};
pub use host_keys::{HostKeyError, HostKeys, TrustedKey, VerifyingKeys};
pub use nonce::{
    ConsumeFuture, MemoryNonceStore, NONCE_RETENTION_MARGIN_SECS, Nonce, NonceStore,
    NonceStoreError, ParseNonceError, SqliteNonceStore,
};

/// The receipt format version this host writes and reads.
pub const VERSION: u32 = 1;

/// How long a receipt is valid after it is issued, in seconds. Long enough
/// for the executor to verify it and make its Graph calls right after the
/// decision, short enough that a leaked receipt is soon worthless (and its
/// nonce can be forgotten).
pub const DEFAULT_LIFETIME_SECS: i64 = 120;

/// How far the clocks of the host that issues a receipt and the one that
/// verifies it may disagree, in seconds. The only leeway: a receipt is
/// accepted until `expires_at + CLOCK_SKEW_SECS` and from
/// `issued_at - CLOCK_SKEW_SECS`.
pub const CLOCK_SKEW_SECS: i64 = 5;

/// The canonical bytes of `facts`: `serde_json`'s compact serialization.
///
/// The order of the JSON object keys is the declaration order of the fields
/// of [`Facts`] and its parts (serde's derive writes them in that order),
/// which mirrors `record facts` in `wit/policy.wit`. That order is therefore
/// part of the receipt contract: reordering, renaming or adding a field
/// changes every digest, and needs a new receipt version.
pub fn facts_canonical_bytes(facts: &Facts) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(facts)
}

/// The sha256, as 64 lowercase hex digits, of the
/// [canonical bytes](facts_canonical_bytes) of `facts`: what a receipt's
/// `facts_sha256` holds, and what an auditor recomputes on replay.
///
/// Serializing [`Facts`] cannot fail in practice (no maps, no custom
/// serializers); the error is passed on rather than assumed away.
pub fn facts_digest(facts: &Facts) -> Result<String, serde_json::Error> {
    Ok(hex::encode(Sha256::digest(facts_canonical_bytes(facts)?)))
}

/// What is signed, field for field, in this order. Private: a [`Receipt`] can
/// only be had from [`issue`] or [`verify`], never parsed unchecked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    v: u32,
    receipt_id: ReceiptId,
    tenant: TenantId,
    requester: UserId,
    target: UserId,
    actions: Vec<Action>,
    constraints: Constraints,
    #[serde(deserialize_with = "sha256_hex")]
    facts_sha256: String,
    module_sha256: ModuleHash,
    decision_id: DecisionId,
    issued_at: i64,
    expires_at: i64,
    nonce: Nonce,
    kid: String,
}

fn sha256_hex<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(
            "facts_sha256 is 64 lowercase hex digits",
        ))
    }
}

/// A receipt the host issued, or one whose signature was verified.
///
/// Serializes as its payload (for the audit log); it cannot be deserialized:
/// the only way in from outside is [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Receipt(Payload);

impl Receipt {
    /// This receipt's id.
    pub fn id(&self) -> &ReceiptId {
        &self.0.receipt_id
    }

    /// The tenant it is valid in.
    pub fn tenant(&self) -> &TenantId {
        &self.0.tenant
    }

    /// The verified requester the decision was made for.
    pub fn requester(&self) -> &UserId {
        &self.0.requester
    }

    /// The account the actions are for (always the requester's own).
    pub fn target(&self) -> &UserId {
        &self.0.target
    }

    /// The actions allowed, in the module's order.
    pub fn actions(&self) -> &[Action] {
        &self.0.actions
    }

    /// The limits on those actions.
    pub fn constraints(&self) -> &Constraints {
        &self.0.constraints
    }

    /// The sha256 of the facts the module decided on ([`facts_digest`]).
    pub fn facts_sha256(&self) -> &str {
        &self.0.facts_sha256
    }

    /// The module that decided.
    pub fn module(&self) -> &ModuleHash {
        &self.0.module_sha256
    }

    /// The decision, as recorded in the audit log.
    pub fn decision_id(&self) -> &DecisionId {
        &self.0.decision_id
    }

    /// When it was issued, Unix seconds.
    pub fn issued_at(&self) -> i64 {
        self.0.issued_at
    }

    /// When it stops being valid (before [`CLOCK_SKEW_SECS`]), Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.0.expires_at
    }

    /// The one-time nonce to [consume](NonceStore::consume) before acting.
    pub fn nonce(&self) -> &Nonce {
        &self.0.nonce
    }

    /// The id of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.0.kid
    }

    /// True when, at `now`, the receipt is past its expiry and the clock skew.
    pub fn is_expired(&self, now: i64) -> bool {
        now > self.0.expires_at.saturating_add(CLOCK_SKEW_SECS)
    }

    /// Checks that the receipt is valid at `now`: issued no later than
    /// `now` (give or take [`CLOCK_SKEW_SECS`]) and not expired.
    pub fn check_time(&self, now: i64) -> Result<(), VerifyError> {
        if self.0.issued_at > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(VerifyError::NotYetValid {
                issued_at: self.0.issued_at,
                now,
            });
        }
        if self.is_expired(now) {
            return Err(VerifyError::Expired {
                expires_at: self.0.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// Checks that this receipt covers the write the executor is about to
    /// make: in `tenant`, by `verified_requester` on their own account, of
    /// `action`, with exactly `constraints`.
    ///
    /// This is where the scope guardrail lives: whatever the module said and
    /// whatever the chat asked for, a receipt whose target is not the
    /// verified requester authorizes nothing.
    pub fn authorizes(
        &self,
        tenant: &TenantId,
        verified_requester: &UserId,
        action: Action,
        constraints: &Constraints,
    ) -> Result<(), ScopeError> {
        let p = &self.0;
        if &p.tenant != tenant {
            return Err(ScopeError::WrongTenant {
                receipt: p.tenant.clone(),
                expected: tenant.clone(),
            });
        }
        if p.target != p.requester || &p.target != verified_requester {
            return Err(ScopeError::NotSelf {
                target: p.target.clone(),
                verified_requester: verified_requester.clone(),
            });
        }
        if !p.actions.contains(&action) {
            return Err(ScopeError::ActionNotAllowed(action));
        }
        if &p.constraints != constraints {
            return Err(ScopeError::ConstraintsDiffer);
        }
        Ok(())
    }
}

/// An issued receipt and its signed envelope.
#[derive(Clone, Debug)]
pub struct SignedReceipt {
    receipt: Receipt,
    envelope: String,
}

impl SignedReceipt {
    /// What was signed.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The DSSE envelope, as JSON text: what the executor and auditors get.
    pub fn envelope(&self) -> &str {
        &self.envelope
    }

    /// The envelope, owned.
    pub fn into_envelope(self) -> String {
        self.envelope
    }
}

/// Everything a receipt is issued from.
#[derive(Clone, Copy, Debug)]
pub struct IssueRequest<'a> {
    /// The tenant the request is in.
    pub tenant: &'a TenantId,
    /// The verified requester (from the chat channel's verified identity).
    pub requester: &'a UserId,
    /// The account the actions would change.
    pub target: &'a UserId,
    /// The module hash the tenant's configuration pins.
    pub pinned_module: &'a ModuleHash,
    /// The facts the module decided on.
    pub facts: &'a Facts,
    /// The module's decision, as the sandbox returned it.
    pub evaluation: &'a Evaluation,
    /// The decision's id in the audit log.
    pub decision_id: &'a DecisionId,
    /// The tenant's longest Temporary Access Pass, in minutes: the receipt's
    /// lifetime is the decision's, or the tenant's maximum when the decision
    /// leaves it unset, and never more than the maximum.
    pub max_tap_lifetime_minutes: u32,
}

/// Why no receipt was issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// Only an allow without fault is signed.
    #[error("only an allow is signed, and the decision is {0}")]
    NotAnAllow(String),
    /// The target is not the requester: Latchkey acts only on the verified
    /// requester's own account, whatever the module said.
    #[error(
        "the target {target} is not the verified requester {requester}; Latchkey acts only on the requester's own account"
    )]
    NotSelf {
        /// The verified requester.
        requester: UserId,
        /// The account asked about.
        target: UserId,
    },
    /// The decision came from a module other than the tenant's pinned one.
    #[error("the decision came from module {evaluated}, but the tenant pins {pinned}")]
    ModuleNotPinned {
        /// The tenant's pinned module.
        pinned: ModuleHash,
        /// The module that decided.
        evaluated: ModuleHash,
    },
    /// The facts describe another tenant, requester or target.
    #[error("the facts were gathered for {0} other than this request's")]
    FactsMismatch(&'static str),
    /// The allow names an action the facts did not request.
    #[error("the allow names {}, which was not requested", action_name(*.0))]
    NotRequested(Action),
    /// The allow does not pass the host's checks on decisions.
    #[error("the allow does not pass the host's checks: {0}")]
    Unchecked(String),
    /// No randomness for the receipt id or nonce.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The payload or envelope could not be written.
    #[error("cannot encode the receipt: {0}")]
    Encode(String),
}

/// Signs a receipt for `request`'s allow, valid from `now` (Unix seconds) for
/// [`DEFAULT_LIFETIME_SECS`].
///
/// Refuses, in this order: anything but an allow without fault; a target
/// other than the requester; a module other than the tenant's pinned one;
/// facts about another tenant, requester or target; and an allow that would
/// fail the host's decision checks (an unrequested, repeated or missing
/// action, an out-of-range Temporary Access Pass lifetime). The sandbox has
/// already checked the decision; this checks again, because an
/// [`Evaluation`] can be built by anyone and a signature is forever.
pub fn issue(
    keys: &HostKeys,
    request: &IssueRequest<'_>,
    now: i64,
) -> Result<SignedReceipt, IssueError> {
    let evaluation = request.evaluation;
    let (actions, constraints) = match (&evaluation.decision, &evaluation.fault) {
        (
            Decision::Allow {
                actions,
                constraints,
                ..
            },
            None,
        ) => (actions, constraints),
        (decision, None) => return Err(IssueError::NotAnAllow(decision.kind().to_owned())),
        (_, Some(fault)) => {
            return Err(IssueError::NotAnAllow(format!(
                "a deny after a policy fault ({})",
                fault.code()
            )));
        }
    };
    if request.target != request.requester {
        return Err(IssueError::NotSelf {
            requester: request.requester.clone(),
            target: request.target.clone(),
        });
    }
    if &evaluation.module != request.pinned_module {
        return Err(IssueError::ModuleNotPinned {
            pinned: *request.pinned_module,
            evaluated: evaluation.module,
        });
    }
    check_facts(request)?;
    check_allow(actions, constraints, request.facts)?;
    let constraints = &clamp(actions, constraints, request.max_tap_lifetime_minutes)?;

    let facts_sha256 =
        facts_digest(request.facts).map_err(|e| IssueError::Encode(e.to_string()))?;
    let payload = Payload {
        v: VERSION,
        receipt_id: ReceiptId::generate()?,
        tenant: request.tenant.clone(),
        requester: request.requester.clone(),
        target: request.target.clone(),
        actions: actions.clone(),
        constraints: *constraints,
        facts_sha256,
        module_sha256: evaluation.module,
        decision_id: request.decision_id.clone(),
        issued_at: now,
        expires_at: now.saturating_add(DEFAULT_LIFETIME_SECS),
        nonce: Nonce::generate()?,
        kid: keys.kid().to_string(),
    };
    let bytes = serde_json::to_vec(&payload).map_err(|e| IssueError::Encode(e.to_string()))?;
    let envelope = envelope::seal(keys.signing(), keys.kid(), &bytes)
        .map_err(|e| IssueError::Encode(e.to_string()))?;
    Ok(SignedReceipt {
        receipt: Receipt(payload),
        envelope,
    })
}

/// The constraints the receipt binds: the decision's, with the Temporary
/// Access Pass lifetime made explicit and held to the tenant's maximum
/// (policy-host.md 7.4, rule 3: the guest's decision is only input). Without a
/// pass among the actions there is no lifetime to bind.
fn clamp(
    actions: &[Action],
    constraints: &Constraints,
    max_minutes: u32,
) -> Result<Constraints, IssueError> {
    if !TAP_LIFETIME_MINUTES.contains(&max_minutes) {
        return Err(IssueError::Unchecked(format!(
            "the tenant's maximum Temporary Access Pass lifetime is {max_minutes} minutes (Entra accepts 10 to 43200)"
        )));
    }
    if !actions.contains(&Action::IssueTemporaryAccessPass) {
        return Ok(Constraints {
            tap_lifetime_minutes: None,
            ..*constraints
        });
    }
    let wanted = constraints.tap_lifetime_minutes.unwrap_or(max_minutes);
    if wanted > max_minutes {
        tracing::info!(
            wanted,
            max_minutes,
            "Temporary Access Pass lifetime clamped to the tenant's maximum"
        );
    }
    Ok(Constraints {
        tap_lifetime_minutes: Some(wanted.min(max_minutes)),
        ..*constraints
    })
}

/// The facts must be about this request: its tenant, its requester, and the
/// requester's own account.
fn check_facts(request: &IssueRequest<'_>) -> Result<(), IssueError> {
    let facts = request.facts;
    if facts.tenant_id.parse::<TenantId>().ok().as_ref() != Some(request.tenant) {
        return Err(IssueError::FactsMismatch("a tenant"));
    }
    if facts.requester.id.parse::<UserId>().ok().as_ref() != Some(request.requester) {
        return Err(IssueError::FactsMismatch("a requester"));
    }
    if !facts.target_is_self {
        return Err(IssueError::FactsMismatch("a target"));
    }
    Ok(())
}

/// The host's rules for an allow (as the sandbox applies them): at least one
/// action, each requested, none twice, and a Temporary Access Pass lifetime
/// Entra accepts.
fn check_allow(
    actions: &[Action],
    constraints: &Constraints,
    facts: &Facts,
) -> Result<(), IssueError> {
    if actions.is_empty() {
        return Err(IssueError::Unchecked("an allow with no actions".into()));
    }
    if let Some(action) = actions.iter().find(|a| !facts.requests(**a)) {
        return Err(IssueError::NotRequested(*action));
    }
    if let Some((i, _)) = actions
        .iter()
        .enumerate()
        .find(|(i, a)| actions[..*i].contains(a))
    {
        return Err(IssueError::Unchecked(format!(
            "{} is named twice",
            action_name(actions[i])
        )));
    }
    if let Some(minutes) = constraints.tap_lifetime_minutes
        && !TAP_LIFETIME_MINUTES.contains(&minutes)
    {
        return Err(IssueError::Unchecked(format!(
            "a Temporary Access Pass lifetime of {minutes} minutes (Entra accepts 10 to 43200)"
        )));
    }
    Ok(())
}

/// Why a receipt was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a DSSE envelope as the host writes them.
    #[error("not a receipt envelope: {0}")]
    BadEnvelope(String),
    /// The envelope carries something other than a version 1 receipt.
    #[error("the payload type is {0:?}, not {PAYLOAD_TYPE:?}")]
    WrongPayloadType(String),
    /// Signed by a key that is not in the verification set.
    #[error("signed by {kid:?}, which is not a trusted host key (trusted: {trusted})")]
    UnknownKey {
        /// The key id the envelope names.
        kid: String,
        /// The trusted key ids, comma-separated.
        trusted: String,
    },
    /// The signature does not verify: the receipt was changed or forged.
    #[error(
        "the signature does not verify with {kid}: the receipt was altered or not signed by it"
    )]
    BadSignature {
        /// The key it was checked against.
        kid: String,
    },
    /// Signed, but the payload is not a valid receipt.
    #[error("the signed payload is not a valid receipt: {0}")]
    Malformed(String),
    /// Issued after the signing key's `not_after`.
    #[error("issued at {issued_at}, after key {kid} stopped being valid at {not_after}")]
    KeyRetired {
        /// The signing key.
        kid: String,
        /// The key's `not_after`.
        not_after: i64,
        /// When the receipt says it was issued.
        issued_at: i64,
    },
    /// Issued later than now (beyond the clock skew).
    #[error("issued at {issued_at}, later than now ({now}); check the clocks")]
    NotYetValid {
        /// When the receipt says it was issued.
        issued_at: i64,
        /// Now.
        now: i64,
    },
    /// Past its expiry (and the clock skew).
    #[error("expired at {expires_at} (now {now})")]
    Expired {
        /// When it expired.
        expires_at: i64,
        /// Now.
        now: i64,
    },
}

/// Verifies a receipt envelope at `now` (Unix seconds): the signature over
/// the exact payload bytes, by a trusted key valid when the receipt was
/// issued, and the receipt's time window. The executor must still consume
/// the nonce and check [`Receipt::authorizes`].
pub fn verify(envelope_json: &str, keys: &VerifyingKeys, now: i64) -> Result<Receipt, VerifyError> {
    let receipt = verify_authenticity(envelope_json, keys)?;
    receipt.check_time(now)?;
    Ok(receipt)
}

/// Verifies everything [`verify`] does except the time window: whether the
/// host signed this receipt, not whether it is still valid. For auditors and
/// `latchkey receipt verify`; never enough to act on.
pub fn verify_authenticity(
    envelope_json: &str,
    keys: &VerifyingKeys,
) -> Result<Receipt, VerifyError> {
    let opened = envelope::open(envelope_json)?;
    let (kid, trusted) = keys
        .get(&opened.keyid)
        .ok_or_else(|| VerifyError::UnknownKey {
            kid: opened.keyid.chars().take(80).collect(),
            trusted: keys
                .ids()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    // Exactly the decoded bytes, never a re-serialization of them.
    trusted
        .key
        .verify_strict(
            &envelope::pae(PAYLOAD_TYPE, &opened.payload),
            &opened.signature,
        )
        .map_err(|_| VerifyError::BadSignature {
            kid: kid.to_string(),
        })?;
    let payload: Payload = serde_json::from_slice(&opened.payload)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if payload.v != VERSION {
        return Err(VerifyError::Malformed(format!(
            "version {}, where the payload type says {VERSION}",
            payload.v
        )));
    }
    if payload.kid != kid.as_str() {
        return Err(VerifyError::Malformed(format!(
            "it names key {:?} but was signed with {kid}",
            payload.kid
        )));
    }
    if payload.expires_at <= payload.issued_at {
        return Err(VerifyError::Malformed(
            "it expires before it is issued".into(),
        ));
    }
    if let Some(not_after) = trusted.not_after
        && payload.issued_at > not_after
    {
        return Err(VerifyError::KeyRetired {
            kid: kid.to_string(),
            not_after,
            issued_at: payload.issued_at,
        });
    }
    Ok(Receipt(payload))
}

/// Why a receipt does not cover a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Issued in another tenant.
    #[error("the receipt is for tenant {receipt}, not {expected}")]
    WrongTenant {
        /// The receipt's tenant.
        receipt: TenantId,
        /// The tenant of the write.
        expected: TenantId,
    },
    /// Its target is not the verified requester.
    #[error(
        "the receipt's target {target} is not the verified requester {verified_requester}; Latchkey acts only on the requester's own account"
    )]
    NotSelf {
        /// The receipt's target.
        target: UserId,
        /// Who is verified in this conversation.
        verified_requester: UserId,
    },
    /// It does not allow this action.
    #[error("the receipt does not allow {}", action_name(*.0))]
    ActionNotAllowed(Action),
    /// The write's constraints are not the receipt's.
    #[error("the write's constraints differ from the receipt's")]
    ConstraintsDiffer,
}

/// The action's name as written in the contract and in receipts.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::ResetPassword => "reset-password",
        Action::IssueTemporaryAccessPass => "issue-temporary-access-pass",
        Action::RemoveLostMfaMethods => "remove-lost-mfa-methods",
        Action::RevokeSessions => "revoke-sessions",
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "receipt {} (tenant {}, requester {})",
            self.0.receipt_id, self.0.tenant, self.0.requester
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::keys;
    use crate::policy::Fault;

    const NOW: i64 = 1_795_428_000;
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const ALICE: &str = "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f";
    const BOB: &str = "8f080165-38fe-44c1-b3b8-6f4dafad5194";

    fn tenant() -> TenantId {
        TENANT.parse().unwrap()
    }

    fn user(id: &str) -> UserId {
        id.parse().unwrap()
    }

    fn module() -> ModuleHash {
        ModuleHash::of(b"the tenant's module")
    }

    fn facts(requested: &[Action]) -> Facts {
        let mut facts = Facts {
            tenant_id: TENANT.into(),
            requested_actions: requested.to_vec(),
            ..Facts::default()
        };
        facts.requester.id = ALICE.into();
        facts
    }

    fn evaluation(decision: Decision) -> Evaluation {
        Evaluation {
            module: module(),
            decision,
            fault: None,
            fuel_used: 1_795,
            elapsed: Duration::from_micros(20),
        }
    }

    fn allow(actions: &[Action]) -> Evaluation {
        evaluation(
            Decision::allow(actions.iter().copied())
                .tap_lifetime_minutes(60)
                .because("verified by MFA"),
        )
    }

    /// Issues for Alice, on her own account, with the tenant's pinned module.
    fn issue_for(
        keys: &HostKeys,
        facts: &Facts,
        evaluation: &Evaluation,
        now: i64,
    ) -> Result<SignedReceipt, IssueError> {
        let (tenant, alice, pinned, decision) = (
            tenant(),
            user(ALICE),
            module(),
            DecisionId::generate().unwrap(),
        );
        issue(
            keys,
            &IssueRequest {
                tenant: &tenant,
                requester: &alice,
                target: &alice,
                pinned_module: &pinned,
                facts,
                evaluation,
                decision_id: &decision,
                max_tap_lifetime_minutes: 60,
            },
            now,
        )
    }

    fn signed(keys: &HostKeys) -> SignedReceipt {
        let actions = [Action::ResetPassword, Action::IssueTemporaryAccessPass];
        issue_for(keys, &facts(&actions), &allow(&actions), NOW).unwrap()
    }

    fn envelope_value(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn payload_bytes(text: &str) -> Vec<u8> {
        BASE64
            .decode(envelope_value(text)["payload"].as_str().unwrap())
            .unwrap()
    }

    /// The envelope with its payload replaced by `bytes`, signature kept.
    fn with_payload(text: &str, bytes: &[u8]) -> String {
        let mut v = envelope_value(text);
        v["payload"] = BASE64.encode(bytes).into();
        v.to_string()
    }

    /// An envelope over `bytes`, signed by `key`, naming `kid`.
    fn sealed_by(key: &SigningKey, kid: &str, bytes: &[u8]) -> String {
        let sig = key.sign(&envelope::pae(PAYLOAD_TYPE, bytes));
        serde_json::json!({
            "payloadType": PAYLOAD_TYPE,
            "payload": BASE64.encode(bytes),
            "signatures": [{"keyid": kid, "sig": BASE64.encode(sig.to_bytes())}],
        })
        .to_string()
    }

    use ed25519_dalek::Signer as _;

    #[test]
    fn the_pass_lifetime_is_held_to_the_tenant_maximum() {
        let keys = HostKeys::new(keys::generate());
        let actions = [Action::IssueTemporaryAccessPass];
        let facts = facts(&actions);
        let (tenant, alice, pinned, decision) = (
            tenant(),
            user(ALICE),
            module(),
            DecisionId::generate().unwrap(),
        );
        let lifetime = |asked: Option<u32>, max: u32| {
            let mut builder = Decision::allow(actions);
            if let Some(m) = asked {
                builder = builder.tap_lifetime_minutes(m);
            }
            let d = builder.because("verified");
            let request = IssueRequest {
                tenant: &tenant,
                requester: &alice,
                target: &alice,
                pinned_module: &pinned,
                facts: &facts,
                evaluation: &evaluation(d),
                decision_id: &decision,
                max_tap_lifetime_minutes: max,
            };
            issue(&keys, &request, NOW).map(|s| s.receipt().constraints().tap_lifetime_minutes)
        };
        assert_eq!(lifetime(Some(480), 60), Ok(Some(60)), "clamped down");
        assert_eq!(lifetime(Some(30), 60), Ok(Some(30)), "kept when shorter");
        assert_eq!(lifetime(None, 45), Ok(Some(45)), "made explicit");
        assert!(matches!(
            lifetime(Some(30), 5),
            Err(IssueError::Unchecked(_))
        ));
        // No pass among the actions: no lifetime is bound.
        let reset = facts_for_reset();
        let request = IssueRequest {
            tenant: &tenant,
            requester: &alice,
            target: &alice,
            pinned_module: &pinned,
            facts: &reset,
            evaluation: &allow(&[Action::ResetPassword]),
            decision_id: &decision,
            max_tap_lifetime_minutes: 60,
        };
        let signed = issue(&keys, &request, NOW).unwrap();
        assert_eq!(signed.receipt().constraints().tap_lifetime_minutes, None);
    }

    fn facts_for_reset() -> Facts {
        facts(&[Action::ResetPassword])
    }

    #[test]
    fn an_issued_receipt_verifies_and_binds_the_request() {
        let keys = HostKeys::new(keys::generate());
        let actions = [Action::ResetPassword, Action::IssueTemporaryAccessPass];
        let facts = facts(&actions);
        let signed = issue_for(&keys, &facts, &allow(&actions), NOW).unwrap();

        let receipt = verify(signed.envelope(), keys.verifying(), NOW + 1).unwrap();
        assert_eq!(&receipt, signed.receipt());
        assert_eq!(receipt.tenant(), &tenant());
        assert_eq!(receipt.requester(), &user(ALICE));
        assert_eq!(receipt.target(), &user(ALICE));
        assert_eq!(receipt.actions(), &actions);
        assert_eq!(receipt.constraints().tap_lifetime_minutes, Some(60));
        assert_eq!(receipt.facts_sha256(), facts_digest(&facts).unwrap());
        assert_eq!(receipt.module(), &module());
        assert_eq!(receipt.issued_at(), NOW);
        assert_eq!(receipt.expires_at(), NOW + DEFAULT_LIFETIME_SECS);
        assert_eq!(receipt.kid(), keys.kid().as_str());

        // The envelope is DSSE, and the payload's keys are in the documented order.
        let v = envelope_value(signed.envelope());
        assert_eq!(v["payloadType"], PAYLOAD_TYPE);
        assert_eq!(v["signatures"][0]["keyid"], keys.kid().as_str());
        let payload = String::from_utf8(payload_bytes(signed.envelope())).unwrap();
        let order = [
            "v",
            "receipt_id",
            "tenant",
            "requester",
            "target",
            "actions",
            "constraints",
            "facts_sha256",
            "module_sha256",
            "decision_id",
            "issued_at",
            "expires_at",
            "nonce",
            "kid",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| payload.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "{payload}");
        assert!(payload.starts_with("{\"v\":1,"), "{payload}");

        // Two receipts for the same decision differ in id and nonce.
        let again = issue_for(&keys, &facts, &allow(&actions), NOW).unwrap();
        assert_ne!(again.receipt().id(), receipt.id());
        assert_ne!(again.receipt().nonce(), receipt.nonce());
    }

    #[test]
    fn a_flipped_payload_byte_does_not_verify() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        let bytes = payload_bytes(signed.envelope());
        for i in [0, 1, bytes.len() / 2, bytes.len() - 2, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            let err = verify(
                &with_payload(signed.envelope(), &flipped),
                keys.verifying(),
                NOW,
            )
            .unwrap_err();
            assert!(
                matches!(err, VerifyError::BadSignature { .. }),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn a_flipped_signature_does_not_verify() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        let mut v = envelope_value(signed.envelope());
        let mut sig = BASE64
            .decode(v["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        for i in [0, 31, 32, 63] {
            sig[i] ^= 0x01;
            v["signatures"][0]["sig"] = BASE64.encode(&sig).into();
            let err = verify(&v.to_string(), keys.verifying(), NOW).unwrap_err();
            assert!(
                matches!(err, VerifyError::BadSignature { .. }),
                "byte {i}: {err}"
            );
            sig[i] ^= 0x01;
        }
    }

    #[test]
    fn an_unknown_key_id_is_named() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        // Verified against another host's keys.
        let other = HostKeys::new(keys::generate());
        let err = verify(signed.envelope(), other.verifying(), NOW).unwrap_err();
        assert!(
            matches!(&err, VerifyError::UnknownKey { kid, trusted }
                if kid == keys.kid().as_str() && trusted == other.kid().as_str()),
            "{err}"
        );
        // The key id rewritten in the envelope.
        let mut v = envelope_value(signed.envelope());
        v["signatures"][0]["keyid"] = "ed25519:0000000000000000".into();
        let err = verify(&v.to_string(), keys.verifying(), NOW).unwrap_err();
        assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err}");
    }

    #[test]
    fn another_key_claiming_a_trusted_key_id_does_not_verify() {
        let keys = HostKeys::new(keys::generate());
        let bytes = payload_bytes(signed(&keys).envelope());
        let forger = keys::generate();
        let forged = sealed_by(&forger, keys.kid().as_str(), &bytes);
        let err = verify(&forged, keys.verifying(), NOW).unwrap_err();
        assert_eq!(
            err,
            VerifyError::BadSignature {
                kid: keys.kid().to_string()
            }
        );
    }

    #[test]
    fn a_receipt_expires_after_its_lifetime_and_the_clock_skew() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        let expires_at = NOW + DEFAULT_LIFETIME_SECS;
        assert!(
            verify(
                signed.envelope(),
                keys.verifying(),
                expires_at + CLOCK_SKEW_SECS
            )
            .is_ok()
        );
        let err = verify(
            signed.envelope(),
            keys.verifying(),
            expires_at + CLOCK_SKEW_SECS + 1,
        )
        .unwrap_err();
        assert_eq!(
            err,
            VerifyError::Expired {
                expires_at,
                now: expires_at + CLOCK_SKEW_SECS + 1
            }
        );
        // Still authentic, and says so.
        let authentic = verify_authenticity(signed.envelope(), keys.verifying()).unwrap();
        assert!(authentic.is_expired(expires_at + CLOCK_SKEW_SECS + 1));
        // A receipt from the future (beyond the skew) is not valid yet.
        assert!(verify(signed.envelope(), keys.verifying(), NOW - CLOCK_SKEW_SECS).is_ok());
        assert!(matches!(
            verify(
                signed.envelope(),
                keys.verifying(),
                NOW - CLOCK_SKEW_SECS - 1
            ),
            Err(VerifyError::NotYetValid { .. })
        ));
    }

    #[test]
    fn verification_uses_the_exact_signed_bytes() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        let bytes = payload_bytes(signed.envelope());

        // The same JSON with its keys sorted: equal as JSON, different bytes.
        let sorted: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
        let reordered = serde_json::to_vec(&sorted).unwrap();
        assert_ne!(reordered, bytes);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&reordered).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        );
        let err = verify(
            &with_payload(signed.envelope(), &reordered),
            keys.verifying(),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");

        // Insignificant whitespace is a change too.
        let mut spaced = bytes.clone();
        spaced.insert(1, b' ');
        assert!(matches!(
            verify(
                &with_payload(signed.envelope(), &spaced),
                keys.verifying(),
                NOW
            ),
            Err(VerifyError::BadSignature { .. })
        ));

        // Re-serialized in the host's own order the bytes are identical, and
        // only therefore does it still verify.
        let payload: Payload = serde_json::from_slice(&bytes).unwrap();
        let same = serde_json::to_vec(&payload).unwrap();
        assert_eq!(same, bytes);
        assert!(
            verify(
                &with_payload(signed.envelope(), &same),
                keys.verifying(),
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn only_a_checked_allow_of_requested_actions_is_issued() {
        let keys = HostKeys::new(keys::generate());
        let requested = facts(&[Action::ResetPassword]);
        // An Evaluation built by hand, never checked by the sandbox, allowing
        // more than was requested: refused.
        let greedy = allow(&[Action::ResetPassword, Action::RevokeSessions]);
        assert_eq!(
            issue_for(&keys, &requested, &greedy, NOW).unwrap_err(),
            IssueError::NotRequested(Action::RevokeSessions)
        );
        let twice = evaluation(Decision::Allow {
            actions: vec![Action::ResetPassword, Action::ResetPassword],
            constraints: Constraints::default(),
            reason: "x".into(),
        });
        assert!(matches!(
            issue_for(&keys, &requested, &twice, NOW),
            Err(IssueError::Unchecked(_))
        ));
        let nothing = evaluation(Decision::Allow {
            actions: vec![],
            constraints: Constraints::default(),
            reason: "x".into(),
        });
        assert!(matches!(
            issue_for(&keys, &requested, &nothing, NOW),
            Err(IssueError::Unchecked(_))
        ));
        let tap = facts(&[Action::IssueTemporaryAccessPass]);
        let forever = evaluation(
            Decision::allow([Action::IssueTemporaryAccessPass])
                .tap_lifetime_minutes(43_201)
                .because("x"),
        );
        assert!(matches!(
            issue_for(&keys, &tap, &forever, NOW),
            Err(IssueError::Unchecked(_))
        ));
        // The requested subset is fine.
        assert!(issue_for(&keys, &requested, &allow(&[Action::ResetPassword]), NOW).is_ok());
    }

    #[test]
    fn denials_and_faults_are_never_signed() {
        let keys = HostKeys::new(keys::generate());
        let facts = facts(&[Action::ResetPassword]);
        for decision in [
            Decision::deny("no"),
            Decision::escalate("help desk"),
            Decision::approval(latchkey_policy::Approver::Manager, "ask"),
            Decision::verify()
                .method(latchkey_policy::Method::MfaStepUp)
                .because("mfa"),
        ] {
            let kind = decision.kind();
            assert_eq!(
                issue_for(&keys, &facts, &evaluation(decision), NOW).unwrap_err(),
                IssueError::NotAnAllow(kind.to_owned())
            );
        }
        // A fault with an allow beside it (the sandbox never does this, but an
        // Evaluation can be built by hand) is still refused.
        let mut faulted = allow(&[Action::ResetPassword]);
        faulted.fault = Some(Fault::OutOfFuel);
        let err = issue_for(&keys, &facts, &faulted, NOW).unwrap_err();
        assert!(
            matches!(&err, IssueError::NotAnAllow(why) if why.contains("out-of-fuel")),
            "{err}"
        );
    }

    #[test]
    fn a_receipt_for_someone_else_is_refused_whatever_the_module_said() {
        let keys = HostKeys::new(keys::generate());
        let facts = facts(&[Action::ResetPassword]);
        let allowed = allow(&[Action::ResetPassword]);
        let (tenant, alice, bob, pinned) = (tenant(), user(ALICE), user(BOB), module());
        let decision = DecisionId::generate().unwrap();
        let request = IssueRequest {
            tenant: &tenant,
            requester: &alice,
            target: &bob,
            pinned_module: &pinned,
            facts: &facts,
            evaluation: &allowed,
            decision_id: &decision,
            max_tap_lifetime_minutes: 60,
        };
        assert!(matches!(
            issue(&keys, &request, NOW),
            Err(IssueError::NotSelf { .. })
        ));
        // Facts that say the target is someone else are refused too.
        let mut other = facts.clone();
        other.target_is_self = false;
        assert_eq!(
            issue_for(&keys, &other, &allowed, NOW).unwrap_err(),
            IssueError::FactsMismatch("a target")
        );
        // And so are facts gathered for another requester or tenant.
        let mut bobs = facts.clone();
        bobs.requester.id = BOB.into();
        assert_eq!(
            issue_for(&keys, &bobs, &allowed, NOW).unwrap_err(),
            IssueError::FactsMismatch("a requester")
        );
        let mut elsewhere = facts.clone();
        elsewhere.tenant_id = "contoso".into();
        assert_eq!(
            issue_for(&keys, &elsewhere, &allowed, NOW).unwrap_err(),
            IssueError::FactsMismatch("a tenant")
        );
    }

    #[test]
    fn a_decision_by_an_unpinned_module_is_refused() {
        let keys = HostKeys::new(keys::generate());
        let mut rogue = allow(&[Action::ResetPassword]);
        rogue.module = ModuleHash::of(b"another module");
        assert_eq!(
            issue_for(&keys, &facts(&[Action::ResetPassword]), &rogue, NOW).unwrap_err(),
            IssueError::ModuleNotPinned {
                pinned: module(),
                evaluated: ModuleHash::of(b"another module")
            }
        );
    }

    #[test]
    fn rotation_keeps_old_receipts_valid_until_the_old_key_is_removed() {
        let old = keys::generate();
        let old_keys = HostKeys::new(old.clone());
        let receipt = signed(&old_keys);

        let mut new_keys = HostKeys::new(keys::generate());
        assert!(matches!(
            verify(receipt.envelope(), new_keys.verifying(), NOW),
            Err(VerifyError::UnknownKey { .. })
        ));
        let old_kid = new_keys.trust(old.verifying_key(), Some(NOW)).unwrap();
        assert_eq!(
            verify(receipt.envelope(), new_keys.verifying(), NOW).unwrap(),
            *receipt.receipt()
        );
        // New receipts are signed with the new key.
        let fresh = signed(&new_keys);
        assert_eq!(fresh.receipt().kid(), new_keys.kid().as_str());
        assert!(verify(fresh.envelope(), new_keys.verifying(), NOW).is_ok());

        // Issued after the old key's not_after: refused.
        let late = issue_for(
            &old_keys,
            &facts(&[Action::ResetPassword]),
            &allow(&[Action::ResetPassword]),
            NOW + 1,
        )
        .unwrap();
        assert!(matches!(
            verify(late.envelope(), new_keys.verifying(), NOW + 1),
            Err(VerifyError::KeyRetired { not_after: NOW, issued_at, .. }) if issued_at == NOW + 1
        ));

        assert!(new_keys.retire(&old_kid));
        assert!(matches!(
            verify(receipt.envelope(), new_keys.verifying(), NOW),
            Err(VerifyError::UnknownKey { .. })
        ));
    }

    #[test]
    fn signed_payloads_that_are_not_receipts_are_malformed() {
        let key = keys::generate();
        let keys = HostKeys::new(key.clone());
        let kid = keys.kid().to_string();
        let bytes = payload_bytes(signed(&keys).envelope());
        let edit = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let mut map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).unwrap();
            f(&mut map);
            sealed_by(&key, &kid, &serde_json::to_vec(&map).unwrap())
        };
        let cases = [
            edit(&|m| {
                m.insert("v".into(), 2.into());
            }),
            edit(&|m| {
                m.insert("kid".into(), "ed25519:0000000000000000".into());
            }),
            edit(&|m| {
                m.insert("extra".into(), true.into());
            }),
            edit(&|m| {
                m.remove("nonce");
            }),
            edit(&|m| {
                m.insert("target".into(), "bob@contoso.com".into());
            }),
            edit(&|m| {
                m.insert("facts_sha256".into(), "ABC".into());
            }),
            edit(&|m| {
                m.insert("expires_at".into(), NOW.into());
            }),
            sealed_by(&key, &kid, b"not json"),
        ];
        for envelope in cases {
            let err = verify(&envelope, keys.verifying(), NOW).unwrap_err();
            assert!(matches!(err, VerifyError::Malformed(_)), "{err}");
        }
        // The control: the unedited payload, sealed the same way, verifies.
        assert!(verify(&sealed_by(&key, &kid, &bytes), keys.verifying(), NOW).is_ok());
    }

    #[test]
    fn a_receipt_authorizes_only_its_own_scope() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        let receipt = verify(signed.envelope(), keys.verifying(), NOW).unwrap();
        let constraints = *receipt.constraints();
        let (tenant, alice, bob) = (tenant(), user(ALICE), user(BOB));

        assert_eq!(
            receipt.authorizes(&tenant, &alice, Action::ResetPassword, &constraints),
            Ok(())
        );
        // Case does not matter in object ids; the guardrail compares GUIDs.
        assert_eq!(
            receipt.authorizes(
                &tenant,
                &user(&ALICE.to_uppercase()),
                Action::ResetPassword,
                &constraints
            ),
            Ok(())
        );
        assert!(matches!(
            receipt.authorizes(&tenant, &bob, Action::ResetPassword, &constraints),
            Err(ScopeError::NotSelf { .. })
        ));
        let elsewhere: TenantId = "00000000-0000-0000-0000-000000000001".parse().unwrap();
        assert!(matches!(
            receipt.authorizes(&elsewhere, &alice, Action::ResetPassword, &constraints),
            Err(ScopeError::WrongTenant { .. })
        ));
        assert_eq!(
            receipt.authorizes(&tenant, &alice, Action::RevokeSessions, &constraints),
            Err(ScopeError::ActionNotAllowed(Action::RevokeSessions))
        );
        let longer = Constraints {
            tap_lifetime_minutes: Some(600),
            ..constraints
        };
        assert_eq!(
            receipt.authorizes(&tenant, &alice, Action::IssueTemporaryAccessPass, &longer),
            Err(ScopeError::ConstraintsDiffer)
        );
    }

    #[test]
    fn a_verified_receipt_authorizes_one_write() {
        let keys = HostKeys::new(keys::generate());
        let signed = signed(&keys);
        let store = MemoryNonceStore::with_clock(|| NOW);
        let receipt = verify(signed.envelope(), keys.verifying(), NOW).unwrap();
        let consume = |r: &Receipt| store.consume(r.tenant(), r.nonce(), r.expires_at());
        assert_eq!(consume(&receipt), Ok(true));
        // The same envelope presented again verifies, but its nonce is spent.
        let replay = verify(signed.envelope(), keys.verifying(), NOW).unwrap();
        assert_eq!(consume(&replay), Ok(false));
    }

    #[test]
    fn facts_digest_is_over_fields_in_declaration_order() {
        let facts = facts(&[Action::ResetPassword]);
        let bytes = facts_canonical_bytes(&facts).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with(
                "{\"tenant_id\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\",\"requester\":{\"id\":"
            ),
            "{text}"
        );
        assert!(text.ends_with("\"time\":{\"unix_seconds\":1795428000,\"local_hour\":10,\"local_weekday\":\"monday\"}}"), "{text}");
        let digest = facts_digest(&facts).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(digest, facts_digest(&facts.clone()).unwrap());
        let mut later = facts.clone();
        later.time.unix_seconds += 1;
        assert_ne!(facts_digest(&later).unwrap(), digest);
    }
}
