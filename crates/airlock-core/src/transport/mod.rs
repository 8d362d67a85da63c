//! Sources and destinations of images, and the one copy path between them.
//!
//! Every command that moves images (`load`, `save`, and later `copy`, `push`, `pull`) is a
//! source, a destination and [`copy_images`]: digest checks and blob de-duplication live
//! here once, the way containers/image's `copy` package serves every transport.
//!
//! A source presents resolved, verified images plus random access to their blobs. Streaming
//! archives become sources by one pass into a staging area ([`crate::archive::ArchiveSource`]).
//! A destination is told the whole plan first ([`ImageDestination::begin`]) so an archive
//! writer can put metadata before blobs.

pub mod ocidir;
pub mod staged;
pub mod store;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{Descriptor, Manifest};
use crate::store::TagChange;

/// One image a source offers.
#[derive(Clone, Debug)]
pub struct SourceImage {
    /// Names it carries (may be empty).
    pub names: Vec<Reference>,
    /// The root manifest or index.
    pub root: Descriptor,
    /// True when the manifest was generated from a docker-archive (no registry digest).
    pub generated: bool,
    /// Docker's image ID.
    pub id: Digest,
    /// Platform manifests present (all of an index's, or the one).
    pub platforms: Vec<PlatformManifest>,
}

/// One platform's manifest within an image.
#[derive(Clone, Debug)]
pub struct PlatformManifest {
    /// Descriptor of the manifest (with platform, inside an index).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The config's diffIDs, verified against the layers.
    pub diff_ids: Vec<Digest>,
}

impl SourceImage {
    /// Every blob the image needs, root first, then manifests, configs and layers; layers
    /// absent on purpose (foreign, with urls) are left out by the caller.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut v = vec![self.root.clone()];
        for p in &self.platforms {
            if p.descriptor.digest != self.root.digest {
                v.push(p.descriptor.clone());
            }
            v.push(p.manifest.config.clone());
            v.extend(p.manifest.layers.iter().cloned());
        }
        v
    }
}

/// Something images can be read from.
pub trait ImageSource: Sync {
    /// The images on offer.
    fn images(&self) -> &[SourceImage];
    /// Stream one blob. The copy path verifies the digest of what it reads.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>>;
    /// True when the source has the blob.
    fn has_blob(&self, digest: &Digest) -> bool;
    /// A file holding the blob, when the source keeps one on local disk (lets a destination
    /// on the same filesystem link instead of copy).
    fn blob_file(&self, _digest: &Digest) -> Option<PathBuf> {
        None
    }
    /// Read a whole small blob.
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut v)
            .map_err(|e| Error::stream(format!("read blob {digest}"), e))?;
        let actual = Digest::of(&v);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: "blob",
                path_in_archive: digest.to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(v)
    }
}

/// Something images can be written to.
pub trait ImageDestination {
    /// Called once with every image before any blob (archive writers emit metadata here).
    fn begin(&mut self, images: &[SourceImage], source: &dyn ImageSource) -> Result<()>;
    /// True when the destination already holds the blob (it will not be sent).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Store one blob from the source.
    fn put_blob(&mut self, blob: &Descriptor, source: &dyn ImageSource) -> Result<()>;
    /// Make everything visible at once. Returns what happened to each name.
    fn finish(self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>>;
}

/// Copy `images` from `source` to `dest`: every blob once, none the destination has.
pub fn copy_images(
    source: &dyn ImageSource,
    images: &[SourceImage],
    mut dest: Box<dyn ImageDestination + '_>,
) -> Result<Vec<TagChange>> {
    dest.begin(images, source)?;
    let mut done = BTreeSet::new();
    for img in images {
        for blob in img.blobs() {
            if !done.insert(blob.digest.clone()) || dest.has_blob(&blob.digest) {
                continue;
            }
            if !source.has_blob(&blob.digest) && blob.urls.is_some() {
                continue;
            }
            dest.put_blob(&blob, source)?;
        }
    }
    dest.finish(images)
}

/// Pick images from a source: by name or ID (`queries`), by glob (`patterns`), or all.
pub fn select(
    images: &[SourceImage],
    queries: &[String],
    patterns: &[String],
    all: bool,
) -> Result<Vec<SourceImage>> {
    if all {
        return Ok(images.to_vec());
    }
    let mut out: Vec<SourceImage> = Vec::new();
    let mut push = |img: &SourceImage, only_name: Option<&Reference>| {
        let mut img = img.clone();
        if let Some(n) = only_name {
            img.names = vec![n.clone()];
        }
        match out.iter_mut().find(|o| o.root.digest == img.root.digest) {
            Some(o) => {
                for n in img.names {
                    if !o.names.contains(&n) {
                        o.names.push(n);
                    }
                }
            }
            None => out.push(img),
        }
    };
    for q in queries {
        let wanted = Reference::parse(q).ok();
        let by_name = wanted
            .as_ref()
            .and_then(|r| images.iter().find(|i| i.names.contains(r)).map(|i| (i, r)));
        if let Some((img, name)) = by_name {
            push(img, Some(name));
            continue;
        }
        let hex = q.strip_prefix("sha256:").unwrap_or(q);
        let hits: Vec<&SourceImage> = images
            .iter()
            .filter(|i| {
                hex.len() >= 4
                    && (i.id.hex().starts_with(hex) || i.root.digest.hex().starts_with(hex))
            })
            .collect();
        match hits.as_slice() {
            [one] => push(one, None),
            [] => {
                return Err(Error::ImageNotFound {
                    reference: q.clone(),
                })
            }
            _ => return Err(Error::AmbiguousId { prefix: q.clone() }),
        }
    }
    for pat in patterns {
        let mut any = false;
        for img in images {
            for n in &img.names {
                if crate::reference::glob_match(pat, &n.familiar())
                    || crate::reference::glob_match(pat, &n.to_string())
                {
                    push(img, Some(n));
                    any = true;
                }
            }
        }
        if !any {
            return Err(Error::NothingMatches {
                pattern: pat.clone(),
            });
        }
    }
    Ok(out)
}
