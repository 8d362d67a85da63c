//! Sigstore bundles (v0.3, what cosign v3 writes by default): a referrer of the image whose
//! one layer is the bundle JSON. It signs the image in one of two forms:
//! - a DSSE envelope over an in-toto statement whose `subject` digest is the image's
//!   manifest digest; the signature is over DSSE's pre-authentication encoding (PAE) of the
//!   payload type and payload;
//! - a message signature: the signature over the manifest itself, with the manifest's
//!   digest given beside it.
//!
//! Only the key signature is checked here, offline, against the keys given. The transparency
//! log entry a bundle carries (Rekor's inclusion proof and promise) is not checked: that
//! needs the log's key, which keyless verification will take.

use base64::Engine;
use serde::Deserialize;

use super::cosign::ValidSignature;
use super::TrustedKeys;
use crate::digest::Digest;

/// The media type of a sigstore bundle layer (and its artifact type), v0.3.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The in-toto payload type of a DSSE envelope.
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// True for a bundle layer's media type (v0.1 to v0.3).
pub fn is_bundle(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle") && media_type.ends_with("+json")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    #[serde(default)]
    dsse_envelope: Option<Envelope>,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: MessageDigest,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    subject: Vec<StatementSubject>,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| format!("its {what} is not base64"))
}

/// DSSE's pre-authentication encoding: what a DSSE signature is made over.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// Whether the bundle `bytes` validly signs `subject` by one of `keys`, or why not.
pub fn check(bytes: &[u8], subject: &Digest, keys: &TrustedKeys) -> Result<ValidSignature, String> {
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| format!("it is not a sigstore bundle: {e}"))?;
    if let Some(env) = bundle.dsse_envelope {
        if env.payload_type != IN_TOTO {
            return Err(format!(
                "its DSSE payload is a '{}', not an in-toto statement",
                env.payload_type
            ));
        }
        let payload = b64(&env.payload, "DSSE payload")?;
        let message = pae(&env.payload_type, &payload);
        let mut signer = None;
        for s in &env.signatures {
            let sig = b64(&s.sig, "DSSE signature")?;
            if let Some(k) = keys.pem.iter().find(|k| k.verifies(&message, &sig)) {
                signer = Some(format!("{} ({})", k.label, k.algorithm()));
                break;
            }
        }
        let signer = signer.ok_or("it is not signed by any of the keys given")?;
        let statement: Statement = serde_json::from_slice(&payload)
            .map_err(|e| format!("its payload is not an in-toto statement: {e}"))?;
        let hex = subject.hex();
        let named = statement
            .subject
            .iter()
            .find(|s| s.digest.get("sha256").is_some_and(|d| d == hex));
        return match named {
            Some(s) => Ok(ValidSignature {
                signer,
                identity: s.name.clone(),
                gpg: false,
            }),
            None => Err(format!(
                "its statement names {}, not {subject}",
                statement
                    .subject
                    .iter()
                    .filter_map(|s| s.digest.get("sha256"))
                    .map(|d| format!("sha256:{d}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
    }
    if let Some(m) = bundle.message_signature {
        if m.message_digest.algorithm != "SHA2_256" {
            return Err(format!(
                "its message digest is {}, not SHA2_256",
                m.message_digest.algorithm
            ));
        }
        let digest = b64(&m.message_digest.digest, "message digest")?;
        if hex::encode(&digest) != subject.hex() {
            return Err(format!(
                "it signs sha256:{}, not {subject}",
                hex::encode(&digest)
            ));
        }
        let sig = b64(&m.signature, "signature")?;
        let key = keys
            .pem
            .iter()
            .find(|k| k.verifies_prehash(&digest, &sig))
            .ok_or("it is not signed by any of the keys given")?;
        return Ok(ValidSignature {
            signer: format!("{} ({})", key.label, key.algorithm()),
            identity: String::new(),
            gpg: false,
        });
    }
    Err("it holds neither a DSSE envelope nor a message signature".into())
}

#[cfg(test)]
mod tests {
    use super::pae;

    #[test]
    fn pae_is_dsse_v1() {
        // The example in the DSSE specification's protocol description.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }
}
