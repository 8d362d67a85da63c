//! "Simple signing" signatures of an image, found among the roots copied with it: cosign's
//! (a manifest whose layers are JSON payloads naming the signed manifest's digest, each
//! with its signature in the layer annotation `dev.cosignproject.cosign/signature`, found by
//! the tag `sha256-<hex>.sig` or as a referrer by `subject`) and GPG ones (a referrer layer
//! holding the OpenPGP signed payload: [`super::gpg`]).

use base64::Engine;
use serde::Deserialize;

use super::TrustedKeys;
use super::{bundle, gpg, keyless};
use crate::digest::Digest;
use crate::error::Result;
use crate::graph;
use crate::transport::SourceImage;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = crate::spec::media_type::COSIGN_SIMPLE_SIGNING;
/// The layer annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// What `critical.type` says in a cosign payload.
const PAYLOAD_TYPE: &str = "cosign container image signature";

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: SignedImage,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference", default)]
    docker_reference: String,
}

#[derive(Deserialize)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    manifest_digest: String,
}

/// What the signatures of one image came to.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The image's root digest.
    pub image: Digest,
    /// The key (its file) a valid signature was made with, if one was.
    pub signed_by: Option<String>,
    /// Why each other signature found did not count, or that none was found.
    pub problems: Vec<String>,
    /// The policy accepted it without a signature (`signed_by` then says which rule).
    pub unsigned_ok: bool,
}

/// A signature that verified: who made it and what name it signs the image as.
#[derive(Clone, Debug)]
pub struct ValidSignature {
    /// The key (its file, algorithm or fingerprint).
    pub signer: String,
    /// The payload's `critical.identity.docker-reference`.
    pub identity: String,
    /// Whether it is a GPG signature (else cosign).
    pub gpg: bool,
}

/// Every signature among `all` of `image`, checked against `keys`: those that verified,
/// and why each other one did not. `read` gives a payload's bytes (already checked against
/// its digest by whoever holds it).
pub fn signatures(
    image: &SourceImage,
    all: &[SourceImage],
    keys: &TrustedKeys,
    read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
) -> (Vec<ValidSignature>, Vec<String>) {
    // What a signer may have signed: the root (an index) or one of its manifests.
    let mut signed_digests = vec![image.root.digest.clone()];
    signed_digests.extend(image.platforms.iter().map(|p| p.descriptor.digest.clone()));
    let mut valid = Vec::new();
    let mut problems = Vec::new();
    for sig in all {
        let Some(subject) = graph::subject_from(sig.subject(), &sig.names) else {
            continue;
        };
        if !signed_digests.contains(&subject) {
            continue;
        }
        for layer in sig
            .platforms
            .iter()
            .flat_map(|p| &p.manifest.layers)
            .filter(|l| {
                l.media_type == SIMPLE_SIGNING
                    || l.media_type == crate::spec::media_type::GPG_SIMPLE_SIGNING
                    || bundle::is_bundle(&l.media_type)
            })
        {
            match check_layer(layer, &subject, keys, read) {
                Ok(v) => valid.push(v),
                Err(why) => problems.push(format!("signature {}: {why}", sig.root.digest)),
            }
        }
    }
    (valid, problems)
}

/// Check the signatures among `all` of `image` against `keys` (see [`signatures`]).
pub fn verify_image(
    image: &SourceImage,
    all: &[SourceImage],
    keys: &TrustedKeys,
    read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
) -> Verdict {
    let (valid, mut problems) = signatures(image, all, keys, read);
    if valid.is_empty() && problems.is_empty() {
        problems.push("no signature found".into());
    }
    Verdict {
        image: image.root.digest.clone(),
        signed_by: valid.first().map(|v| v.signer.clone()),
        problems,
        unsigned_ok: false,
    }
}

/// The key one payload layer is validly signed with, or why it is not.
fn check_layer(
    layer: &crate::spec::Descriptor,
    subject: &Digest,
    keys: &TrustedKeys,
    read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
) -> std::result::Result<ValidSignature, String> {
    if bundle::is_bundle(&layer.media_type) {
        let bytes = read(&layer.digest).map_err(|e| format!("it cannot be read: {e}"))?;
        return bundle::check(&bytes, subject, keys);
    }
    if layer.media_type == crate::spec::media_type::GPG_SIMPLE_SIGNING {
        let message = read(&layer.digest).map_err(|e| format!("it cannot be read: {e}"))?;
        if keys.gpg.is_empty() {
            return Err("it is a GPG signature, and no GPG keyring was given".into());
        }
        let signed = gpg::verify(&message, &keys.gpg)?;
        let identity = check_payload(&signed.payload, gpg::PAYLOAD_TYPE, subject)?;
        return Ok(ValidSignature {
            signer: signed.signer,
            identity,
            gpg: true,
        });
    }
    let b64 = layer
        .annotation(SIGNATURE_ANNOTATION)
        .ok_or("it carries no signature annotation")?;
    // Some signers wrap the base64 at 76 columns.
    let joined: String = b64.split_ascii_whitespace().collect();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&joined)
        .map_err(|_| "its signature is not base64")?;
    let payload = read(&layer.digest).map_err(|e| format!("its payload cannot be read: {e}"))?;
    let annotations = layer.annotations.clone().unwrap_or_default();
    let signer = match keys.pem.iter().find(|k| k.verifies(&payload, &signature)) {
        Some(key) => format!("{} ({})", key.label, key.algorithm()),
        None if annotations.contains_key(keyless::CERTIFICATE_ANNOTATION) => {
            if keys.keyless.is_empty() && keys.pki.is_empty() {
                return Err("it is a keyless (Fulcio) signature: give --trusted-root with --certificate-identity and --certificate-oidc-issuer, or a policy with fulcio or pki".into());
            }
            let sig = b64.trim();
            let fulcio = keys
                .keyless
                .iter()
                .map(|k| keyless::check(&payload, sig, &annotations, k));
            let pki = keys
                .pki
                .iter()
                .map(|p| super::pki::check(&payload, sig, &annotations, p));
            let mut why = Vec::new();
            let mut found = None;
            for outcome in fulcio.chain(pki) {
                match outcome {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => why.push(e),
                }
            }
            found.ok_or_else(|| why.join("; "))?
        }
        None => return Err("it is not signed by any of the keys given".into()),
    };
    let identity = check_payload(&payload, PAYLOAD_TYPE, subject)?;
    Ok(ValidSignature {
        signer,
        identity,
        gpg: false,
    })
}

/// A signed payload must be of `kind` and name `subject`'s digest; returns the identity it
/// names.
fn check_payload(
    payload: &[u8],
    kind: &str,
    subject: &Digest,
) -> std::result::Result<String, String> {
    let parsed: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("its payload is not a simple-signing payload: {e}"))?;
    if parsed.critical.kind != kind {
        return Err(format!(
            "its payload is a '{}', not a '{kind}'",
            parsed.critical.kind
        ));
    }
    if parsed.critical.image.manifest_digest != subject.to_string() {
        return Err(format!(
            "it signs {}, not {subject}",
            parsed.critical.image.manifest_digest
        ));
    }
    Ok(parsed
        .critical
        .identity
        .map(|i| i.docker_reference)
        .unwrap_or_default())
}
