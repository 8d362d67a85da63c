//! The OCI referrers tag schema, for registries without the referrers API (distribution
//! 2.x): a client that pushes a manifest with a `subject` and gets no `OCI-Subject` header
//! back keeps an index of the subject's referrers under the tag `sha256-<hex>` of the
//! subject's digest, so oras, regctl and notation find signatures and SBOMs there.

use std::io::Read;

use airlock_core::spec::{self, media_type, Descriptor, Document, Index};
use airlock_core::Digest;

use super::Registry;
use crate::{RemoteError, Result};

/// The fallback tag of `subject`'s referrers index.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The descriptor a referrers index lists for a manifest: its artifact type and its
/// annotations travel with it, so readers can filter without fetching it.
pub fn referrer_descriptor(root: &Descriptor, manifest: &spec::Manifest) -> Descriptor {
    let mut d = Descriptor::new(&root.media_type, root.digest.clone(), root.size);
    d.artifact_type = manifest
        .artifact_type
        .clone()
        .or_else(|| Some(manifest.config.media_type.clone()));
    d.annotations = manifest.annotations.clone();
    d
}

/// How many times a referrers index is read, merged and written back when another client
/// changed it in between (the registry answers 412 to the conditional write).
const FALLBACK_ATTEMPTS: usize = 4;

/// Add `referrers` to the index tagged with `subject`'s fallback tag in `repo`, keeping
/// what it already lists (another tool's signatures stay). When the registry gives the
/// index an `ETag`, the write is conditional on it (`If-Match`), so two pushers of
/// signatures of one image cannot drop each other's; a new index is written with
/// `If-None-Match: *` for the same reason.
pub fn add_to_fallback_index(
    reg: &Registry,
    repo: &str,
    subject: &Digest,
    referrers: &[Descriptor],
) -> Result<()> {
    let tag = fallback_tag(subject);
    let path = format!("/v2/{repo}/manifests/{tag}");
    let scope = format!("repository:{repo}:pull,push");
    for _ in 0..FALLBACK_ATTEMPTS {
        let (mut index, condition) = read_fallback_index(reg, repo, &tag, &path, &scope)?;
        let before = index.manifests.len();
        for r in referrers {
            if !index.manifests.iter().any(|m| m.digest == r.digest) {
                index.manifests.push(r.clone());
            }
        }
        if index.manifests.len() == before && before > 0 {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&index).map_err(|e| {
            RemoteError::Protocol(format!("cannot encode the referrers index: {e}"))
        })?;
        let body = || -> Result<(Box<dyn Read + Send + '_>, u64)> {
            Ok((Box::new(&bytes[..]), bytes.len() as u64))
        };
        let mut headers = vec![("Content-Type", media_type::OCI_INDEX.to_string())];
        headers.extend(condition);
        match reg.call_allow("PUT", &path, &scope, &headers, Some(&body), &[412])? {
            Ok(_) => return Ok(()),
            Err(_) => continue, // changed since it was read: read it again and merge
        }
    }
    Err(RemoteError::Protocol(format!(
        "{}/{repo}:{tag} kept changing while airlock added to it ({FALLBACK_ATTEMPTS} tries); push again",
        reg.host()
    )))
}

/// The referrers index under `tag` (empty when there is none) and the precondition a write
/// of its successor carries.
fn read_fallback_index(
    reg: &Registry,
    repo: &str,
    tag: &str,
    path: &str,
    scope: &str,
) -> Result<(Index, Option<(&'static str, String)>)> {
    let accept = [("Accept", media_type::OCI_INDEX.to_string())];
    let r = match reg.call_allow("GET", path, scope, &accept, None, &[404])? {
        Ok(r) => r,
        Err(_) => return Ok((Index::empty(), Some(("If-None-Match", "*".to_string())))),
    };
    let etag = r.header("ETag").map(str::to_string);
    let mut bytes = Vec::new();
    r.into_reader()
        .take(4 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| RemoteError::Io {
            context: format!("read {}/{repo}:{tag}", reg.host()),
            source: e,
        })?;
    match spec::parse_document(&bytes, tag) {
        Ok(Document::Index(i)) => Ok((i, etag.map(|e| ("If-Match", e)))),
        // Something else under that tag is not ours to replace.
        _ => Err(RemoteError::Protocol(format!(
            "{}/{repo}:{tag} holds something other than a referrers index; leave the tag to referrers",
            reg.host()
        ))),
    }
}
