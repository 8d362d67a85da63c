//! The content graph: an image (or any OCI artifact) is a root — an index or a manifest —
//! and the blobs it reaches. One walk from a root to its children, one query resolver for
//! every list of images (the store's, an archive's, a registry pull's), so `inspect`,
//! `save`, `push` and `copy` all understand the same names.
//!
//! A node can be any OCI manifest: an image, an artifact whose config is not an image
//! config (`artifactType`, an empty config), or a manifest with a `subject` (a signature,
//! an SBOM): [`children`] follows whatever descriptors a document names.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{Descriptor, Document};
use crate::store::ImageRecord;
use crate::transport::SourceImage;

/// The descriptors a document points at: an index's manifests; a manifest's config and
/// layers (and its `subject` is not a child: it points the other way).
pub fn children(doc: &Document) -> Vec<Descriptor> {
    match doc {
        Document::Index(idx) => idx.manifests.clone(),
        Document::Manifest(m) => std::iter::once(m.config.clone())
            .chain(m.layers.iter().cloned())
            .collect(),
    }
}

/// What a query can be matched against, whatever holds the images.
pub trait Candidate {
    /// Names pointing at it.
    fn names(&self) -> &[Reference];
    /// The root (index or manifest) digest.
    fn root_digest(&self) -> &Digest;
    /// Docker's image ID.
    fn image_id(&self) -> Digest;
    /// Digests of its platform manifests and their configs.
    fn member_digests(&self) -> Vec<Digest>;
}

impl Candidate for SourceImage {
    fn names(&self) -> &[Reference] {
        &self.names
    }
    fn root_digest(&self) -> &Digest {
        &self.root.digest
    }
    fn image_id(&self) -> Digest {
        self.id()
    }
    fn member_digests(&self) -> Vec<Digest> {
        self.platforms
            .iter()
            .flat_map(|p| {
                [
                    p.descriptor.digest.clone(),
                    p.manifest.config.digest.clone(),
                ]
            })
            .collect()
    }
}

impl Candidate for ImageRecord {
    fn names(&self) -> &[Reference] {
        &self.names
    }
    fn root_digest(&self) -> &Digest {
        &self.root.digest
    }
    fn image_id(&self) -> Digest {
        self.id()
    }
    fn member_digests(&self) -> Vec<Digest> {
        self.platforms
            .iter()
            .flat_map(|p| {
                [
                    p.descriptor.digest.clone(),
                    p.manifest.config.digest.clone(),
                ]
            })
            .collect()
    }
}

/// Find the one image `query` names, the way docker resolves it: a name (`redis:alpine`),
/// `name@sha256:...` (its root or platform manifest digest), a full digest (image ID,
/// root, platform manifest or config digest), or a short image ID (4+ hex characters,
/// unique). Returns its index and, when a name matched, that name.
pub fn find<T: Candidate>(images: &[T], query: &str) -> Result<(usize, Option<Reference>)> {
    let not_found = || Error::ImageNotFound {
        reference: query.to_string(),
    };
    let full = query
        .parse::<Digest>()
        .ok()
        .or_else(|| Digest::from_hex(query));
    if let Some(d) = full {
        return images
            .iter()
            .position(|i| {
                i.image_id() == d || i.root_digest() == &d || i.member_digests().contains(&d)
            })
            .map(|i| (i, None))
            .ok_or_else(not_found);
    }
    if let Ok(r) = Reference::parse(query) {
        if let Some(d) = r.digest() {
            let hit = |i: &T| i.root_digest() == d || i.member_digests().contains(d);
            // Prefer the image that also carries the repository; any with the digest will do.
            let same_repo = images
                .iter()
                .position(|i| hit(i) && i.names().iter().any(|n| n.repository() == r.repository()));
            return same_repo
                .or_else(|| images.iter().position(hit))
                .map(|i| (i, None))
                .ok_or_else(not_found);
        }
        if let Some(i) = images.iter().position(|i| i.names().contains(&r)) {
            return Ok((i, Some(r)));
        }
    }
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if hex.len() >= 4 && hex.len() < 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.image_id().hex().starts_with(hex) || i.root_digest().hex().starts_with(hex)
            })
            .map(|(n, _)| n)
            .collect();
        return match hits.as_slice() {
            [one] => Ok((*one, None)),
            [] => Err(not_found()),
            _ => Err(Error::AmbiguousId {
                prefix: query.to_string(),
            }),
        };
    }
    Err(not_found())
}
