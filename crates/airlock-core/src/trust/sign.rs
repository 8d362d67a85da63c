//! `airlock sign`: a cosign signature made on the near side, for images a site builds or
//! approves itself, stored in the store as a referrer of the image (and, if asked, under
//! cosign's legacy tag `sha256-<hex>.sig`), so it travels with the image and the far side's
//! `--key` finds it.

use std::collections::BTreeMap;

use serde_json::json;

use super::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING};
use super::SigningKey;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{media_type, Descriptor, Manifest};
use crate::store::{NewImage, Store, TagChange};

/// What `sign_image` made.
#[derive(Debug)]
pub struct Signed {
    /// The image's name signed (its repository is the payload's identity).
    pub name: Option<Reference>,
    /// The digest signed: the image's root manifest or index.
    pub image: Digest,
    /// The signature manifest stored.
    pub signature: Digest,
    /// The legacy tag, when one was set.
    pub changes: Vec<TagChange>,
}

fn encode(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))
}

/// Sign the image `query` names in `store` with `key`: a simple-signing payload naming its
/// root digest, signed as cosign signs, in a manifest whose `subject` is the image.
/// `legacy_tag` also tags it `REPO:sha256-<hex>.sig`, keeping the signatures already there.
pub fn sign_image(
    store: &Store,
    query: &str,
    key: &SigningKey,
    legacy_tag: bool,
) -> Result<Signed> {
    let record = store.resolve(query)?;
    let name = Reference::parse(query)
        .ok()
        .filter(|r| record.names.contains(r))
        .or_else(|| record.names.first().cloned());
    let identity = name.as_ref().map(|n| n.repository()).unwrap_or_default();
    let payload = encode(&json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": record.root.digest.to_string()},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))?;
    let signature = key.sign_raw(&payload)?;
    use base64::Engine;
    let mut layer = Descriptor::new(SIMPLE_SIGNING, Digest::of(&payload), payload.len() as u64);
    layer.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_string(),
        base64::engine::general_purpose::STANDARD.encode(signature),
    )]));
    let tag = match (&name, legacy_tag) {
        (Some(n), true) => Some(n.with_tag(&format!("sha256-{}.sig", record.root.digest.hex()))),
        (None, true) => {
            return Err(Error::Usage(format!(
                "{query} has no name, so there is no repository for the legacy tag: give it one with `airlock tag`, or sign without --legacy-tag"
            )))
        }
        _ => None,
    };
    // cosign appends to the signature manifest a tag already names.
    let mut layers = Vec::new();
    if let Some(existing) = tag
        .as_ref()
        .and_then(|t| store.resolve(&t.to_string()).ok())
    {
        layers.extend(
            existing
                .platforms
                .iter()
                .flat_map(|p| p.manifest.layers.iter().cloned())
                .filter(|l| l.media_type == SIMPLE_SIGNING && l.digest != layer.digest),
        );
    }
    layers.push(layer);
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = encode(&json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let staging = store.staging()?;
    staging.write_bytes(&payload)?;
    let config_blob = staging.write_bytes(&config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: Descriptor::new(media_type::OCI_CONFIG, config_blob.digest, config_blob.size),
        layers,
        annotations: None,
        artifact_type: None,
        subject: Some(record.root.clone()),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
    let blob = staging.write_bytes(&bytes)?;
    let root = Descriptor::new(media_type::OCI_MANIFEST, blob.digest.clone(), blob.size);
    let changes = store.commit(
        &staging,
        &[NewImage {
            root,
            names: tag.into_iter().collect(),
            generated: false,
            id: blob.digest.clone(),
        }],
    )?;
    Ok(Signed {
        name,
        image: record.root.digest,
        signature: blob.digest,
        changes,
    })
}
