//! The DSSE envelope a receipt travels in.
//!
//! ```json
//! {"payloadType":"application/vnd.latchkey.receipt+json;v=1",
//!  "payload":"<base64 of the exact payload bytes>",
//!  "signatures":[{"keyid":"ed25519:...","sig":"<base64>"}]}
//! ```
//!
//! The signature covers the pre-authentication encoding of the payload type
//! and the payload bytes ([`pae`]), never a re-serialization: the verifier
//! checks the bytes it decoded, then parses exactly those bytes. There is no
//! canonical JSON to get wrong, and a payload cannot be passed off as another
//! type (DSSE; the same construction Sigstore uses).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};

use super::VerifyError;
use crate::keys::KeyId;

/// The payload type of a receipt, version 1. Signed along with the payload.
pub const PAYLOAD_TYPE: &str = "application/vnd.latchkey.receipt+json;v=1";

/// The largest envelope, in bytes, the verifier reads. A receipt is well under
/// 2 KiB; anything near this is not one.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal bytes.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + body.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Envelope {
    #[serde(rename = "payloadType")]
    pub(super) payload_type: String,
    pub(super) payload: String,
    pub(super) signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvelopeSignature {
    pub(super) keyid: String,
    pub(super) sig: String,
}

/// Signs `payload` and returns the envelope's JSON text.
pub(super) fn seal(key: &SigningKey, kid: &KeyId, payload: &[u8]) -> serde_json::Result<String> {
    let signature = key.sign(&pae(PAYLOAD_TYPE, payload));
    serde_json::to_string(&Envelope {
        payload_type: PAYLOAD_TYPE.to_owned(),
        payload: BASE64.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: kid.to_string(),
            sig: BASE64.encode(signature.to_bytes()),
        }],
    })
}

/// An envelope taken apart, its signature not yet checked.
pub(super) struct Opened {
    pub(super) payload: Vec<u8>,
    pub(super) keyid: String,
    pub(super) signature: Signature,
}

/// Parses an envelope: its shape, its payload type and its one signature.
/// Checks nothing cryptographic.
pub(super) fn open(text: &str) -> Result<Opened, VerifyError> {
    if text.len() > MAX_ENVELOPE_BYTES {
        return Err(VerifyError::BadEnvelope(format!(
            "{} bytes, more than the {MAX_ENVELOPE_BYTES}-byte limit",
            text.len()
        )));
    }
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| VerifyError::BadEnvelope(e.to_string()))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(VerifyError::WrongPayloadType(
            envelope.payload_type.chars().take(120).collect(),
        ));
    }
    // The host signs with one key at a time; more than one signature is not
    // something it made, and would leave open which one counts.
    let [signature] = <[EnvelopeSignature; 1]>::try_from(envelope.signatures).map_err(|all| {
        VerifyError::BadEnvelope(format!("{} signatures, expected exactly one", all.len()))
    })?;
    let payload = BASE64
        .decode(envelope.payload.as_bytes())
        .map_err(|e| VerifyError::BadEnvelope(format!("the payload is not base64: {e}")))?;
    let sig: [u8; 64] = BASE64
        .decode(signature.sig.as_bytes())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            VerifyError::BadEnvelope("the signature is not a base64 ed25519 signature".into())
        })?;
    Ok(Opened {
        payload,
        keyid: signature.keyid,
        signature: Signature::from_bytes(&sig),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // The example in the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn envelopes_of_the_wrong_shape_are_refused_before_any_key_is_looked_up() {
        let key = crate::keys::generate();
        let kid = KeyId::of(&key.verifying_key());
        let good = seal(&key, &kid, b"{}").unwrap();
        assert!(open(&good).is_ok());

        let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
        value["payloadType"] = "application/vnd.in-toto+json".into();
        assert!(matches!(
            open(&value.to_string()),
            Err(VerifyError::WrongPayloadType(t)) if t == "application/vnd.in-toto+json"
        ));

        let mut two: serde_json::Value = serde_json::from_str(&good).unwrap();
        let sig = two["signatures"][0].clone();
        two["signatures"].as_array_mut().unwrap().push(sig);
        assert!(matches!(
            open(&two.to_string()),
            Err(VerifyError::BadEnvelope(_))
        ));

        for bad in [
            "",
            "[]",
            "{}",
            &good.replace("\"payload\":\"", "\"payload\":\"@"),
            &good.replace("\"sig\":\"", "\"sig\":\"AAAA"),
            &good.replace("\"keyid\"", "\"extra\":1,\"keyid\""),
            &" ".repeat(MAX_ENVELOPE_BYTES + 1),
        ] {
            assert!(
                matches!(open(bad), Err(VerifyError::BadEnvelope(_))),
                "{bad:.80}"
            );
        }
    }
}
