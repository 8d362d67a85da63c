//! cosign's "simple signing" signatures: a manifest whose layers are JSON payloads naming
//! the signed manifest's digest, each with its signature in the layer annotation
//! `dev.cosignproject.cosign/signature` (base64). cosign finds it by the tag
//! `sha256-<hex>.sig` of the signed digest, or (OCI 1.1 mode) as a referrer by `subject`.

use base64::Engine;
use serde::Deserialize;

use super::keys::PublicKey;
use crate::digest::Digest;
use crate::error::Result;
use crate::graph;
use crate::transport::SourceImage;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
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
    #[serde(rename = "type")]
    kind: String,
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
}

/// Check the cosign signatures among `all` of `image` against `keys`; `read` gives a
/// payload's bytes (already checked against its digest by whoever holds it).
pub fn verify_image(
    image: &SourceImage,
    all: &[SourceImage],
    keys: &[PublicKey],
    read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
) -> Verdict {
    // What a signer may have signed: the root (an index) or one of its manifests.
    let mut signed_digests = vec![image.root.digest.clone()];
    signed_digests.extend(image.platforms.iter().map(|p| p.descriptor.digest.clone()));
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
            .filter(|l| l.media_type == SIMPLE_SIGNING)
        {
            match check_layer(layer, &subject, keys, read) {
                Ok(key) => {
                    return Verdict {
                        image: image.root.digest.clone(),
                        signed_by: Some(key),
                        problems,
                    }
                }
                Err(why) => problems.push(format!("signature {}: {why}", sig.root.digest)),
            }
        }
    }
    if problems.is_empty() {
        problems.push("no cosign signature found".into());
    }
    Verdict {
        image: image.root.digest.clone(),
        signed_by: None,
        problems,
    }
}

/// The key one payload layer is validly signed with, or why it is not.
fn check_layer(
    layer: &crate::spec::Descriptor,
    subject: &Digest,
    keys: &[PublicKey],
    read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
) -> std::result::Result<String, String> {
    let b64 = layer
        .annotation(SIGNATURE_ANNOTATION)
        .ok_or("it carries no signature annotation")?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "its signature is not base64")?;
    let payload = read(&layer.digest).map_err(|e| format!("its payload cannot be read: {e}"))?;
    let key = keys
        .iter()
        .find(|k| k.verifies(&payload, &signature))
        .ok_or("it is not signed by any of the keys given")?;
    let parsed: Payload = serde_json::from_slice(&payload)
        .map_err(|e| format!("its payload is not a cosign payload: {e}"))?;
    if parsed.critical.kind != PAYLOAD_TYPE {
        return Err(format!(
            "its payload is a '{}', not a '{PAYLOAD_TYPE}'",
            parsed.critical.kind
        ));
    }
    if parsed.critical.image.manifest_digest != subject.to_string() {
        return Err(format!(
            "it signs {}, not {subject}",
            parsed.critical.image.manifest_digest
        ));
    }
    Ok(format!("{} ({})", key.label, key.algorithm()))
}
