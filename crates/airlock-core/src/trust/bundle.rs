//! Sigstore bundles (v0.3, what cosign v3 writes by default): a referrer of the image whose
//! one layer is the bundle JSON. It signs the image in one of two forms:
//! - a DSSE envelope over an in-toto statement whose `subject` digest is the image's
//!   manifest digest; the signature is over DSSE's pre-authentication encoding (PAE) of the
//!   payload type and payload;
//! - a message signature: the signature over the manifest itself, with the manifest's
//!   digest given beside it.
//!
//! A bundle signed with a key is checked against the keys given. A keyless one (a Fulcio
//! certificate in its verification material) in the message-signature form is checked
//! against a trusted root: the certificate's key made the signature, Rekor's signed entry
//! timestamp in the bundle's tlog entry logs exactly that signature, digest and
//! certificate, and the chain and identity hold at the logged time. A keyless DSSE bundle
//! (Rekor's `dsse` entry kind) is refused with that reason.

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
    #[serde(default)]
    verification_material: Option<Material>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Material {
    /// v0.3: the signing certificate alone.
    #[serde(default)]
    certificate: Option<RawBytes>,
    /// v0.1/v0.2: the chain, signing certificate first.
    #[serde(default)]
    x509_certificate_chain: Option<CertChain>,
    #[serde(default)]
    tlog_entries: Vec<TlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct CertChain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

/// One transparency log entry; protobuf's JSON writes the 64-bit integers as strings.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntry {
    log_index: serde_json::Value,
    log_id: LogId,
    integrated_time: serde_json::Value,
    #[serde(default)]
    inclusion_promise: Option<Promise>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

fn int(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
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
        let keyless = bundle
            .verification_material
            .as_ref()
            .is_some_and(|m| m.certificate.is_some() || m.x509_certificate_chain.is_some());
        if keyless {
            return Err(
                "it is a keyless DSSE bundle, which airlock does not check yet (keyless message signatures and key-signed DSSE bundles it does)"
                    .into(),
            );
        }
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
        let material = bundle.verification_material.unwrap_or_default();
        if material.certificate.is_some() || material.x509_certificate_chain.is_some() {
            return keyless(&material, &digest, &m.signature, &sig, keys);
        }
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

/// A keyless message signature: `sig` (`sig_b64` as the bundle has it) over the manifest
/// digest `digest`, by the certificate in `material`, logged in its first tlog entry.
fn keyless(
    material: &Material,
    digest: &[u8],
    sig_b64: &str,
    sig: &[u8],
    keys: &TrustedKeys,
) -> Result<ValidSignature, String> {
    use spki::der::{Decode, Encode};
    let mut certs: Vec<x509_cert::Certificate> = Vec::new();
    let raw = material.certificate.iter().chain(
        material
            .x509_certificate_chain
            .iter()
            .flat_map(|c| &c.certificates),
    );
    for r in raw {
        let der = b64(&r.raw_bytes, "certificate")?;
        certs.push(
            x509_cert::Certificate::from_der(&der)
                .map_err(|e| format!("its certificate does not parse: {e}"))?,
        );
    }
    let (cert, chain) = certs.split_first().ok_or("it carries no certificate")?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let key =
        super::PublicKey::from_spki_der(&spki, "its certificate").map_err(|e| e.to_string())?;
    if !key.verifies_prehash(digest, sig) {
        return Err("it is not signed by its certificate's key".into());
    }
    if keys.keyless.is_empty() {
        return Err(
            "it is a keyless signature: give the trusted root (--trusted-root) and the identity (--certificate-identity, --certificate-oidc-issuer)"
                .into(),
        );
    }
    let entry = material.tlog_entries.first().ok_or(
        "it carries no Rekor entry (a keyless signature needs one, to prove when it was made)",
    )?;
    let promise = entry.inclusion_promise.as_ref().ok_or(
        "its Rekor entry has no signed entry timestamp (an inclusion proof alone is not checked)",
    )?;
    let log_id = hex::encode(b64(&entry.log_id.key_id, "log ID")?);
    let (Some(index), Some(time)) = (int(&entry.log_index), int(&entry.integrated_time)) else {
        return Err("its Rekor entry's index or time is not a number".into());
    };
    // The same promise cosign's bundle annotation carries, in that annotation's form.
    let set = serde_json::json!({
        "SignedEntryTimestamp": promise.signed_entry_timestamp,
        "Payload": {"body": entry.canonicalized_body, "integratedTime": time, "logIndex": index, "logID": log_id},
    })
    .to_string();
    let mut why = Vec::new();
    for k in &keys.keyless {
        match super::keyless::check_logged(cert, chain, sig_b64, &hex::encode(digest), &set, k) {
            Ok(signer) => {
                return Ok(ValidSignature {
                    signer,
                    identity: String::new(),
                    gpg: false,
                })
            }
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
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
