//! Keyless (Fulcio) cosign signatures, checked offline against a trusted root given by the
//! user, never a network call. A keyless signature carries, in its layer annotations, the
//! short-lived certificate Fulcio issued (`dev.sigstore.cosign/certificate`), its chain
//! (`.../chain`) and Rekor's signed entry timestamp (`.../bundle`). It counts when:
//! 1. the certificate's key made the signature over the payload;
//! 2. Rekor's signed entry timestamp verifies with a Rekor key of the trusted root, and the
//!    entry it covers is this signature, this payload's hash and this certificate;
//! 3. the certificate chains to a Fulcio CA of the trusted root, every link valid at the
//!    time Rekor logged it (Fulcio certificates live ten minutes), with code signing usage;
//! 4. its identity (the e-mail or URI it was issued to, and the OIDC issuer that vouched for
//!    it) is the one required.
//!
//! The x509 parsing is RustCrypto's `x509-cert`, the signatures p256/p384's.

use std::collections::BTreeMap;

use base64::Engine;
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::Digest as _;
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;

use crate::error::{Error, Result};

/// The annotation holding the signing certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Fulcio's OIDC issuer extensions: v1 (raw string) and v2 (DER UTF8String).
const ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";

/// Fulcio CAs and Rekor keys to trust.
#[derive(Clone, Debug)]
pub struct TrustedRoot {
    cas: Vec<Certificate>,
    rekor: Vec<([u8; 32], p256::ecdsa::VerifyingKey)>,
    /// Where it came from.
    pub label: String,
}

/// Who a keyless signature must have been issued to.
#[derive(Clone, Debug)]
pub struct KeylessIdentity {
    /// The OIDC issuer (`https://github.com/login/oauth`, ...).
    pub issuer: String,
    /// The e-mail address or URI the certificate names.
    pub subject: String,
}

/// A trusted root and the identity required, as `--trusted-root` or a policy gives them.
#[derive(Clone, Debug)]
pub struct Keyless {
    /// The CAs and logs.
    pub root: TrustedRoot,
    /// The identity.
    pub identity: KeylessIdentity,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootFile {
    #[serde(default)]
    tlogs: Vec<Tlog>,
    #[serde(default)]
    certificate_authorities: Vec<Authority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tlog {
    public_key: RawBytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authority {
    cert_chain: Chain,
}

#[derive(Deserialize)]
struct Chain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

pub(super) fn unusable(label: &str, why: impl std::fmt::Display) -> Error {
    Error::Usage(format!(
        "{label} is not a trusted root airlock can use: {why}"
    ))
}

/// Base64, line-wrapped or not (some signers wrap it at 76 columns).
pub(super) fn b64(s: &str) -> std::result::Result<Vec<u8>, String> {
    let joined: String = s.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .map_err(|_| "it is not base64".to_string())
}

/// A Rekor key and its log ID (the SHA-256 of its DER public key).
fn rekor_key(der_spki: &[u8]) -> Option<([u8; 32], p256::ecdsa::VerifyingKey)> {
    let key = p256::PublicKey::from_public_key_der(der_spki).ok()?;
    Some((sha2::Sha256::digest(der_spki).into(), key.into()))
}

impl TrustedRoot {
    /// Read sigstore's `trusted_root.json` (what `cosign verify --trusted-root` takes).
    pub fn from_file(path: &std::path::Path) -> Result<TrustedRoot> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let file: RootFile = serde_json::from_slice(&bytes).map_err(|e| unusable(&label, e))?;
        let mut cas = Vec::new();
        for a in &file.certificate_authorities {
            for c in &a.cert_chain.certificates {
                let der = b64(&c.raw_bytes).map_err(|e| unusable(&label, e))?;
                cas.push(Certificate::from_der(&der).map_err(|e| unusable(&label, e))?);
            }
        }
        let mut rekor = Vec::new();
        for t in &file.tlogs {
            let der = b64(&t.public_key.raw_bytes).map_err(|e| unusable(&label, e))?;
            // Logs with other key types are not Rekor's ECDSA P-256: left out.
            rekor.extend(rekor_key(&der));
        }
        if cas.is_empty() || rekor.is_empty() {
            return Err(unusable(&label, "it names no Fulcio CA or no Rekor key"));
        }
        Ok(TrustedRoot { cas, rekor, label })
    }

    /// A Fulcio CA bundle (PEM certificates) and a Rekor public key (PEM), as a
    /// containers-policy.json `fulcio.caPath` and `rekorPublicKeyPath` give them.
    pub fn from_pem(ca_pem: &[u8], rekor_pem: &str, label: &str) -> Result<TrustedRoot> {
        let cas = Certificate::load_pem_chain(ca_pem).map_err(|e| unusable(label, e))?;
        let key = p256::PublicKey::from_public_key_pem(rekor_pem)
            .map_err(|e| unusable(label, format!("the Rekor key: {e}")))?;
        let der = p256::pkcs8::EncodePublicKey::to_public_key_der(&key)
            .map_err(|e| unusable(label, e))?;
        let rekor = rekor_key(der.as_bytes()).into_iter().collect();
        Ok(TrustedRoot {
            cas,
            rekor,
            label: label.to_string(),
        })
    }
}

#[derive(Deserialize)]
struct SetBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: SetPayload,
}

#[derive(Deserialize, serde::Serialize)]
struct SetPayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// Rekor's `hashedrekord` entry: what was logged.
#[derive(Deserialize)]
struct Entry {
    spec: EntrySpec,
}

#[derive(Deserialize)]
struct EntrySpec {
    data: EntryData,
    signature: EntrySignature,
}

#[derive(Deserialize)]
struct EntryData {
    hash: EntryHash,
}

#[derive(Deserialize)]
struct EntryHash {
    value: String,
}

#[derive(Deserialize)]
struct EntrySignature {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: EntryKey,
}

#[derive(Deserialize)]
struct EntryKey {
    content: String,
}

/// Check Rekor's signed entry timestamp `set` against `root`, and that the entry it covers
/// is `signature_b64` over a payload hashing to `payload_hex` by `cert_pem`. Returns the
/// time it was logged (Unix seconds).
fn check_set(
    set: &str,
    root: &TrustedRoot,
    signature_b64: &str,
    payload_hex: &str,
    cert: &Certificate,
) -> std::result::Result<i64, String> {
    use p256::ecdsa::signature::Verifier;
    let bundle: SetBundle =
        serde_json::from_str(set).map_err(|e| format!("its Rekor bundle does not parse: {e}"))?;
    let p = &bundle.payload;
    let id = hex::decode(&p.log_id).map_err(|_| "its Rekor log ID is not hex".to_string())?;
    let key = root
        .rekor
        .iter()
        .find(|(k, _)| k.as_slice() == id.as_slice())
        .map(|(_, k)| k)
        .ok_or_else(|| {
            format!(
                "it was logged by Rekor log {}, which {} does not trust",
                p.log_id, root.label
            )
        })?;
    // The signed form is the payload's canonical JSON (RFC 8785: sorted keys, no spaces).
    let canonical: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
        ("body", p.body.clone().into()),
        ("integratedTime", p.integrated_time.into()),
        ("logID", p.log_id.clone().into()),
        ("logIndex", p.log_index.into()),
    ]);
    let message = serde_json::to_vec(&canonical).map_err(|e| e.to_string())?;
    let sig = p256::ecdsa::Signature::from_der(&b64(&bundle.signed_entry_timestamp)?)
        .map_err(|_| "its Rekor signed entry timestamp is not an ECDSA signature".to_string())?;
    key.verify(&message, &sig)
        .map_err(|_| "its Rekor signed entry timestamp does not verify".to_string())?;
    let body = b64(&p.body)?;
    let entry: Entry = serde_json::from_slice(&body)
        .map_err(|e| format!("its Rekor entry is not a hashedrekord: {e}"))?;
    if entry.spec.signature.content.trim() != signature_b64.trim() {
        return Err("its Rekor entry logs another signature".into());
    }
    if !entry.spec.data.hash.value.eq_ignore_ascii_case(payload_hex) {
        return Err("its Rekor entry logs another payload".into());
    }
    let logged_cert = b64(&entry.spec.signature.public_key.content)?;
    let logged = Certificate::from_pem(&logged_cert)
        .map_err(|_| "its Rekor entry logs no certificate".to_string())?;
    if logged != *cert {
        return Err("its Rekor entry logs another certificate".into());
    }
    Ok(p.integrated_time)
}

/// Whether `cert` was valid at `when` (Unix seconds).
fn valid_at(cert: &Certificate, when: i64) -> bool {
    let v = &cert.tbs_certificate.validity;
    let t = when.max(0) as u64;
    v.not_before.to_unix_duration().as_secs() <= t && t <= v.not_after.to_unix_duration().as_secs()
}

/// Whether `issuer`'s key made `cert`'s signature.
fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    let (digest, rsa_hash): (Vec<u8>, bool) =
        match cert.signature_algorithm.oid.to_string().as_str() {
            "1.2.840.10045.4.3.2" => (sha2::Sha256::digest(&tbs).to_vec(), false),
            "1.2.840.10045.4.3.3" => (sha2::Sha384::digest(&tbs).to_vec(), false),
            "1.2.840.113549.1.1.11" => (sha2::Sha256::digest(&tbs).to_vec(), true),
            "1.2.840.113549.1.1.12" => (sha2::Sha384::digest(&tbs).to_vec(), true),
            _ => return false,
        };
    let Some(sig) = cert.signature.as_bytes() else {
        return false;
    };
    let Ok(spki) = issuer.tbs_certificate.subject_public_key_info.to_der() else {
        return false;
    };
    if let Ok(k) = p256::PublicKey::from_public_key_der(&spki) {
        let k = p256::ecdsa::VerifyingKey::from(k);
        return p256::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok());
    }
    if let Ok(k) = p384::PublicKey::from_public_key_der(&spki) {
        let k = p384::ecdsa::VerifyingKey::from(k);
        return p384::ecdsa::Signature::from_der(sig)
            .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok());
    }
    if let (Ok(k), true) = (rsa::RsaPublicKey::from_public_key_der(&spki), rsa_hash) {
        let Ok(s) = rsa::pkcs1v15::Signature::try_from(sig) else {
            return false;
        };
        return if digest.len() == 32 {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(k)
                .verify_prehash(&digest, &s)
                .is_ok()
        } else {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(k)
                .verify_prehash(&digest, &s)
                .is_ok()
        };
    }
    false
}

/// The chain from `leaf` up to a CA of `root`, each link checked at `when`.
fn check_chain(
    leaf: &Certificate,
    chain: &[Certificate],
    root: &TrustedRoot,
    when: i64,
) -> std::result::Result<(), String> {
    chain_to(leaf, chain, &root.cas, &root.label, when)
}

/// The chain from `leaf` up to a self-signed certificate among `cas` (through `cas` and
/// the carried `chain`), each link valid at `when`.
pub(super) fn chain_to(
    leaf: &Certificate,
    chain: &[Certificate],
    cas: &[Certificate],
    label: &str,
    when: i64,
) -> std::result::Result<(), String> {
    let root = Anchors { cas, label };
    let mut current = leaf.clone();
    for _ in 0..8 {
        if !valid_at(&current, when) {
            return Err(format!(
                "certificate {} was not valid when Rekor logged the signature",
                current.tbs_certificate.subject
            ));
        }
        // Reaching a trusted CA ends the chain; carried certificates only help get there.
        if root.cas.contains(&current)
            && current.tbs_certificate.subject == current.tbs_certificate.issuer
        {
            return Ok(());
        }
        if current.tbs_certificate.subject == current.tbs_certificate.issuer {
            return Err(format!(
                "the chain ends in {}, a root {} does not trust",
                current.tbs_certificate.subject, root.label
            ));
        }
        let issuer = root
            .cas
            .iter()
            .chain(chain)
            .find(|c| {
                c.tbs_certificate.subject == current.tbs_certificate.issuer
                    && signed_by(&current, c)
            })
            .ok_or_else(|| {
                format!(
                    "certificate {} is not issued by a CA {} trusts",
                    current.tbs_certificate.subject, root.label
                )
            })?;
        if root.cas.contains(issuer)
            && issuer.tbs_certificate.subject == issuer.tbs_certificate.issuer
        {
            return if valid_at(issuer, when) {
                Ok(())
            } else {
                Err("the Fulcio root was not valid when Rekor logged the signature".into())
            };
        }
        if !root.cas.contains(issuer) && !chain.contains(issuer) {
            return Err("the chain leaves the trusted root".into());
        }
        current = issuer.clone();
    }
    Err("the certificate chain is too long".into())
}

/// The CAs a chain may end in, for [`chain_to`].
struct Anchors<'a> {
    cas: &'a [Certificate],
    label: &'a str,
}

/// The identity a Fulcio certificate was issued to: (OIDC issuer, e-mail, URI or
/// `dns:` host names), and whether it may sign code.
pub(super) fn identity_of(cert: &Certificate) -> (Option<String>, Vec<String>, bool) {
    use x509_cert::ext::pkix::name::GeneralName;
    let mut issuer = None;
    let mut subjects = Vec::new();
    // As Go's x509 reads it: no extended key usage extension allows every usage.
    let mut code_signing = true;
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        match ext.extn_id.to_string().as_str() {
            ISSUER_V1 => issuer = issuer.or_else(|| String::from_utf8(value.to_vec()).ok()),
            ISSUER_V2 => {
                if let Ok(s) = x509_cert::der::asn1::Utf8StringRef::from_der(value) {
                    issuer = Some(s.as_str().to_string());
                }
            }
            "2.5.29.17" => {
                if let Ok(san) = x509_cert::ext::pkix::SubjectAltName::from_der(value) {
                    for name in san.0 {
                        match name {
                            GeneralName::Rfc822Name(s) => subjects.push(s.to_string()),
                            GeneralName::UniformResourceIdentifier(s) => {
                                subjects.push(s.to_string())
                            }
                            GeneralName::DnsName(s) => subjects.push(format!("dns:{s}")),
                            _ => {}
                        }
                    }
                }
            }
            "2.5.29.37" => {
                if let Ok(eku) = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(value) {
                    code_signing = eku.0.iter().any(|o| o.to_string() == CODE_SIGNING);
                }
            }
            _ => {}
        }
    }
    (issuer, subjects, code_signing)
}

/// The certificate (and the chain carried with it) whose key made `signature_b64` over
/// `payload`, from a cosign layer's `annotations`.
pub(super) fn signing_certificate(
    payload: &[u8],
    signature_b64: &str,
    annotations: &BTreeMap<String, String>,
) -> std::result::Result<(Certificate, Vec<Certificate>), String> {
    let cert_pem = annotations
        .get(CERTIFICATE_ANNOTATION)
        .ok_or("it carries no certificate")?;
    let cert = Certificate::from_pem(cert_pem.as_bytes())
        .map_err(|e| format!("its certificate does not parse: {e}"))?;
    let chain = annotations
        .get(CHAIN_ANNOTATION)
        .map(|c| Certificate::load_pem_chain(c.as_bytes()))
        .transpose()
        .map_err(|e| format!("its certificate chain does not parse: {e}"))?
        .unwrap_or_default();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let key =
        super::PublicKey::from_spki_der(&spki, "its certificate").map_err(|e| e.to_string())?;
    if !key.verifies(payload, &b64(signature_b64)?) {
        return Err("it is not signed by its certificate's key".into());
    }
    Ok((cert, chain))
}

/// Check a keyless cosign signature: `payload` signed with `signature_b64`, carrying
/// `annotations`, against `keyless`. Returns who signed it.
pub fn check(
    payload: &[u8],
    signature_b64: &str,
    annotations: &BTreeMap<String, String>,
    keyless: &Keyless,
) -> std::result::Result<String, String> {
    let (cert, chain) = signing_certificate(payload, signature_b64, annotations)?;
    let set = annotations.get(BUNDLE_ANNOTATION).ok_or(
        "it carries no Rekor entry (a keyless signature needs one, to prove when it was made)",
    )?;
    let payload_hex = hex::encode(sha2::Sha256::digest(payload));
    check_logged(&cert, &chain, signature_b64, &payload_hex, set, keyless)
}

/// The rest of a keyless check once `cert`'s key is known to have made `signature_b64`:
/// Rekor's signed entry timestamp `set` (the JSON of cosign's bundle annotation) logs that
/// signature over `payload_hex` by `cert`, the chain reaches the trusted root at that time,
/// and the certificate names the identity required. Returns who signed.
pub(super) fn check_logged(
    cert: &Certificate,
    chain: &[Certificate],
    signature_b64: &str,
    payload_hex: &str,
    set: &str,
    keyless: &Keyless,
) -> std::result::Result<String, String> {
    let when = check_set(set, &keyless.root, signature_b64, payload_hex, cert)?;
    check_chain(cert, chain, &keyless.root, when)?;
    let (issuer, subjects, code_signing) = identity_of(cert);
    if !code_signing {
        return Err("its certificate is not for code signing".into());
    }
    let want = &keyless.identity;
    if issuer.as_deref() != Some(want.issuer.as_str()) {
        return Err(format!(
            "its certificate was vouched for by {}, not {}",
            issuer.as_deref().unwrap_or("no OIDC issuer"),
            want.issuer
        ));
    }
    if !subjects.iter().any(|s| s == &want.subject) {
        return Err(format!(
            "its certificate was issued to {}, not {}",
            subjects.join(", "),
            want.subject
        ));
    }
    Ok(format!(
        "{} ({}, Fulcio via {})",
        want.subject, want.issuer, keyless.root.label
    ))
}
