//! Keys Go's encoding/json reads differently from serde: Go (every other loader) also takes a
//! key that matches a field only ignoring case (`Layers`, `RootFS`); serde does not. Such a
//! key would make a document mean one thing to docker and another to airlock: refused.

use crate::error::{Error, Result};

const DESCRIPTOR_KEYS: &[&str] = &[
    "mediaType",
    "digest",
    "size",
    "urls",
    "annotations",
    "platform",
    "artifactType",
];
const PLATFORM_KEYS: &[&str] = &["architecture", "os", "variant", "os.version", "os.features"];
const DOCUMENT_KEYS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "manifests",
    "annotations",
    "artifactType",
    "subject",
];
const CONFIG_KEYS: &[&str] = &["architecture", "os", "variant", "created", "rootfs"];
const ROOTFS_KEYS: &[&str] = &["type", "diff_ids"];

fn check_keys(v: &serde_json::Value, known: &[&str], path: &str) -> Result<()> {
    let Some(obj) = v.as_object() else {
        return Ok(());
    };
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            if let Some(field) = known.iter().find(|f| f.eq_ignore_ascii_case(k)) {
                return Err(Error::BadMetadata {
                    path_in_archive: path.to_string(),
                    what: "JSON document",
                    detail: format!(
                        "its key \"{k}\" is \"{field}\" to Go-based loaders (docker, podman, containerd) but not to others; spell it \"{field}\""
                    ),
                });
            }
        }
    }
    Ok(())
}

fn check_descriptor(d: &serde_json::Value, path: &str) -> Result<()> {
    check_keys(d, DESCRIPTOR_KEYS, path)?;
    if let Some(p) = d.get("platform") {
        check_keys(p, PLATFORM_KEYS, path)?;
    }
    Ok(())
}

/// A manifest or index read as Go reads it, or refused.
pub(super) fn check_document(v: &serde_json::Value, path: &str) -> Result<()> {
    check_keys(v, DOCUMENT_KEYS, path)?;
    for key in ["config", "subject"] {
        if let Some(d) = v.get(key) {
            check_descriptor(d, path)?;
        }
    }
    for key in ["layers", "manifests"] {
        for d in v.get(key).and_then(|l| l.as_array()).into_iter().flatten() {
            check_descriptor(d, path)?;
        }
    }
    Ok(())
}

/// An image config read as Go reads it, or refused.
pub(super) fn check_config(v: &serde_json::Value, path: &str) -> Result<()> {
    check_keys(v, CONFIG_KEYS, path)?;
    if let Some(r) = v.get("rootfs") {
        check_keys(r, ROOTFS_KEYS, path)?;
    }
    Ok(())
}

/// The deepest nesting airlock reads: serde_json's own limit, so that every document read
/// also parses whole (and gets the key checks above). Go stops at 10,000, so what Go refuses
/// airlock refuses too; real manifests and configs nest a few levels.
pub const MAX_JSON_DEPTH: usize = 128;

/// Refuse a document nested deeper than [`MAX_JSON_DEPTH`], before a parser that skips
/// unknown fields without counting their depth would accept what Go refuses.
pub fn check_depth(bytes: &[u8], path: &str, what: &'static str) -> Result<()> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_JSON_DEPTH {
        return Err(Error::BadMetadata {
            path_in_archive: path.to_string(),
            what,
            detail: format!(
                "it is nested {deepest} levels deep; airlock reads at most {MAX_JSON_DEPTH} (docker refuses past 10000), and no image tool writes such a document"
            ),
        });
    }
    Ok(())
}
