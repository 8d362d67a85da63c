//! The inventory: what a store holds, written on the far side (`airlock inventory`) and read
//! on the near side (`save --incremental-from`, `sync --incremental-from`) to leave out the
//! layers already there, and (`sync`) the images it holds under the names they would get.
//!
//! ```json
//! { "kind": "airlock-inventory/v1",
//!   "blobs": ["sha256:...", ...],
//!   "images": [{ "name": "registry.example/app:1.4", "digest": "sha256:..." }, ...] }
//! ```
//! `images` came later: an inventory without it still reads (its store's names unknown).
//! So did `layers`: for each layer blob its diffID, the image and position it first
//! appears at, and its content fingerprint ([`crate::fingerprint`]), from which the near
//! side can tell which layer over there a new one overlaps most.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;

/// The `kind` every inventory carries.
pub const INVENTORY_KIND: &str = "airlock-inventory/v1";

/// What a store holds, as written to a file.
#[derive(Clone, Debug)]
pub struct Inventory {
    /// Every blob digest of the store.
    pub blobs: BTreeSet<Digest>,
    /// Each name the store holds, and the digest of the image it names.
    pub images: BTreeMap<String, Digest>,
    /// What each layer holds (from inventories that list it).
    pub layers: Vec<LayerPrint>,
    /// Digest of the inventory file itself (recorded in an incremental archive).
    pub digest: Digest,
}

/// One layer of the far side, as its inventory describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPrint {
    /// The blob's digest.
    pub digest: Digest,
    /// The digest of its uncompressed tar.
    pub diff_id: Option<Digest>,
    /// The image it is a layer of (its first name, or its digest).
    pub image: String,
    /// Its position in that image's layers, bottom first.
    pub position: usize,
    /// Its content fingerprint.
    pub chunks: Vec<u64>,
}

/// The fingerprint of every layer of the store (each once, at its first image).
fn layer_prints(store: &Store) -> Result<Vec<serde_json::Value>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for img in store.images()? {
        let image = img
            .names
            .first()
            .map(|n| n.to_string())
            .unwrap_or_else(|| img.root.digest.to_string());
        for p in &img.platforms {
            for (position, layer) in p.manifest.layers.iter().enumerate() {
                if !seen.insert(layer.digest.clone()) || !store.has_blob(&layer.digest) {
                    continue;
                }
                let path = store.blob_path(&layer.digest);
                let f = store.open_blob(&layer.digest)?;
                let (_, mut plain) =
                    crate::compression::auto_decoder(f).map_err(|e| Error::io("read", &path, e))?;
                let chunks = crate::fingerprint::chunks(&mut plain)
                    .map_err(|e| Error::io("decompress", &path, e))?;
                out.push(serde_json::json!({
                    "digest": layer.digest.to_string(),
                    "diffId": p.config.rootfs.diff_ids.get(position).map(|d| d.to_string()),
                    "image": image,
                    "position": position,
                    "chunks": crate::fingerprint::encode(&chunks),
                }));
            }
        }
    }
    Ok(out)
}

/// The inventory document of a store.
pub fn of_store(store: &Store) -> Result<Vec<u8>> {
    let blobs: Vec<String> = store
        .blob_digests()?
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut images = Vec::new();
    for img in store.images()? {
        for n in &img.names {
            images.push(
                serde_json::json!({ "name": n.to_string(), "digest": img.root.digest.to_string() }),
            );
        }
    }
    let layers = layer_prints(store)?;
    let doc = serde_json::json!({
        "kind": INVENTORY_KIND, "blobs": blobs, "images": images, "layers": layers,
    });
    serde_json::to_vec_pretty(&doc).map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))
}

/// Read an inventory file.
pub fn read(path: &Path) -> Result<Inventory> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    parse(&bytes, &path.display().to_string())
}

/// Parse an inventory document; `label` names it in errors.
pub fn parse(bytes: &[u8], label: &str) -> Result<Inventory> {
    let not_one = |detail: String| {
        Error::Usage(format!(
            "{label} is not an inventory written by `airlock inventory`{detail}"
        ))
    };
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| not_one(format!(": {e}")))?;
    if doc.get("kind").and_then(|k| k.as_str()) != Some(INVENTORY_KIND) {
        return Err(not_one(String::new()));
    }
    let mut blobs = BTreeSet::new();
    for b in doc["blobs"].as_array().into_iter().flatten() {
        let d = b
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Usage(format!("{label}: '{b}' is not a digest")))?;
        blobs.insert(d);
    }
    let mut images = BTreeMap::new();
    for i in doc["images"].as_array().into_iter().flatten() {
        let (name, digest) = (i["name"].as_str(), i["digest"].as_str());
        let parsed = digest.and_then(|d| d.parse::<Digest>().ok());
        match (name, parsed) {
            (Some(n), Some(d)) => {
                images.insert(n.to_string(), d);
            }
            _ => {
                return Err(Error::Usage(format!(
                    "{label}: image entry {i} needs a name and a digest"
                )))
            }
        }
    }
    let mut layers = Vec::new();
    for l in doc["layers"].as_array().into_iter().flatten() {
        let bad = || Error::Usage(format!("{label}: layer entry {} is damaged", l["digest"]));
        layers.push(LayerPrint {
            digest: l["digest"]
                .as_str()
                .and_then(|d| d.parse().ok())
                .ok_or_else(bad)?,
            diff_id: l["diffId"].as_str().and_then(|d| d.parse().ok()),
            image: l["image"].as_str().unwrap_or_default().to_string(),
            position: l["position"].as_u64().unwrap_or(0) as usize,
            chunks: l["chunks"]
                .as_str()
                .and_then(crate::fingerprint::decode)
                .ok_or_else(bad)?,
        });
    }
    Ok(Inventory {
        blobs,
        images,
        layers,
        digest: Digest::of(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_json() {
        let d = Digest::of(b"x");
        let doc = serde_json::json!({ "kind": INVENTORY_KIND, "blobs": [d.to_string()] });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let inv = parse(&bytes, "inv.json").unwrap();
        assert!(inv.blobs.contains(&d));
        assert_eq!(inv.digest, Digest::of(&bytes));
        let e = parse(br#"{"kind":"other"}"#, "inv.json").unwrap_err();
        assert!(e.to_string().contains("not an inventory"), "{e}");
        assert!(parse(br#"{"kind":"airlock-inventory/v1","blobs":["nope"]}"#, "i").is_err());
        assert!(
            inv.images.is_empty(),
            "an inventory of blobs only still reads"
        );
        let named = serde_json::json!({ "kind": INVENTORY_KIND, "blobs": [],
            "images": [{ "name": "docker.io/library/a:1", "digest": d.to_string() }] });
        let inv = parse(&serde_json::to_vec(&named).unwrap(), "i").unwrap();
        assert_eq!(inv.images.get("docker.io/library/a:1"), Some(&d));
        let bad = serde_json::json!({ "kind": INVENTORY_KIND, "images": [{ "name": "a" }] });
        assert!(parse(&serde_json::to_vec(&bad).unwrap(), "i").is_err());
    }
}
