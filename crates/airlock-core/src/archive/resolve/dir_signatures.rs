//! The signatures beside an image in containers/image's `dir:` layout (`signature-1`,
//! `signature-2`, ...), made into referrers of the image so they are stored, travel and are
//! checked like any other signature. Each file is one of two formats c/image writes:
//! - GPG simple signing: the OpenPGP signed message itself (`skopeo copy --sign-by`);
//! - sigstore: `\0sigstore-json\n` and a JSON object holding the cosign payload (base64),
//!   its media type and the layer annotations cosign would give it (the signature, and any
//!   certificate, chain or Rekor bundle).
//!
//! The referrer manifests are generated (they have no file in the layout), so their
//! digests are airlock's; the payload and signature bytes are the files' own.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use super::lookup::BlobLookup;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::SIGSTORE_SIGNATURE_MARKER as SIGSTORE_MARKER;
use crate::spec::{media_type, Descriptor, Manifest};
use crate::transport::{PlatformManifest, SourceImage};

#[derive(Deserialize)]
struct SigstoreJson {
    #[serde(rename = "mimeType")]
    mime_type: String,
    payload: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The referrers the `signature-N` files of a `dir:` layout make for its image `subject`.
pub(super) fn signature_referrers(
    lookup: &BlobLookup,
    subject: &Descriptor,
) -> Result<Vec<SourceImage>> {
    let mut files: Vec<(u32, &String)> = lookup
        .contents
        .metadata
        .keys()
        .filter(|k| crate::archive::sniff::is_dir_signature(k))
        .filter_map(|k| Some((k.strip_prefix("signature-")?.parse().ok()?, k)))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (_, name) in files {
        let bytes = &lookup.contents.metadata[name];
        let (layer, payload, artifact_type) = match bytes.strip_prefix(SIGSTORE_MARKER) {
            Some(json) => {
                let doc: SigstoreJson = crate::spec::parse_json(json, name, "sigstore signature")?;
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(doc.payload.trim())
                    .map_err(|_| Error::BadMetadata {
                        path_in_archive: name.clone(),
                        what: "sigstore signature",
                        detail: "its payload is not base64".into(),
                    })?;
                let mut layer =
                    Descriptor::new(&doc.mime_type, Digest::of(&payload), payload.len() as u64);
                layer.annotations = (!doc.annotations.is_empty()).then_some(doc.annotations);
                (layer, payload, media_type::COSIGN_SIGNATURE_ARTIFACT)
            }
            None => {
                let layer = Descriptor::new(
                    media_type::GPG_SIMPLE_SIGNING,
                    Digest::of(bytes),
                    bytes.len() as u64,
                );
                (layer, bytes.clone(), media_type::GPG_SIMPLE_SIGNING)
            }
        };
        let empty = super::blobs::EMPTY_JSON;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: Descriptor::new(media_type::OCI_EMPTY, Digest::of(empty), empty.len() as u64),
            layers: vec![layer],
            annotations: None,
            artifact_type: Some(artifact_type.to_string()),
            subject: Some(subject.clone()),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
        let root = Descriptor::new(
            media_type::OCI_MANIFEST,
            Digest::of(&manifest_bytes),
            manifest_bytes.len() as u64,
        );
        let mut generated = lookup.generated.borrow_mut();
        generated.insert(Digest::of(&payload), payload);
        generated.insert(Digest::of(empty), empty.to_vec());
        generated.insert(root.digest.clone(), manifest_bytes);
        out.push(SourceImage {
            names: Vec::new(),
            root: root.clone(),
            generated: false,
            platforms: vec![PlatformManifest {
                descriptor: root,
                manifest,
                diff_ids: Vec::new(),
            }],
        });
    }
    Ok(out)
}
