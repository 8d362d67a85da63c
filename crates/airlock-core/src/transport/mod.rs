//! Sources and destinations of images; the one copy engine between them is [`crate::copy`].
//!
//! Every command that moves images (`load`, `save`, `copy`, `push`, `pull`, `verify`) is a
//! source, a destination and a call into the copy engine: digest checks, blob
//! de-duplication, parallelism and progress live there once, the way containers/image's
//! `copy` package serves every transport.
//!
//! A source with random access ([`ImageSource`]) presents images up front; a destination
//! is then told the whole plan first ([`ImageDestination::begin`]) so an archive writer can
//! put metadata before blobs. Archives and the Docker Engine's stream are read once, front
//! to back, each blob handed straight to the destination ([`crate::copy::stream`]).
//! [`name`] parses every transport name (`docker-archive:`, `oci:`, `docker://` ...).

pub mod dir;
pub mod discard;
pub mod inventory;
pub mod name;
pub mod ocidir;
pub mod staged;
pub mod store;
pub mod volumes;

use std::io::Read;

use crate::blob_reader::BlobReader;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{Descriptor, Manifest};
use crate::store::{Store, TagChange};

/// One image a source offers.
#[derive(Clone, Debug)]
pub struct SourceImage {
    /// Names it carries (may be empty).
    pub names: Vec<Reference>,
    /// The root manifest or index.
    pub root: Descriptor,
    /// True when the manifest was generated from a docker-archive (no registry digest).
    pub generated: bool,
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
    /// Docker's image ID, derived: the config digest of a single-platform image, the
    /// index digest of a multi-platform one. An artifact's ID is its manifest's digest:
    /// artifacts share configs (most have the empty `{}`).
    pub fn id(&self) -> Digest {
        match self.platforms.first() {
            Some(p)
                if !crate::spec::media_type::is_index(&self.root.media_type)
                    && p.manifest.artifact_type().is_none() =>
            {
                p.manifest.config.digest.clone()
            }
            _ => self.root.digest.clone(),
        }
    }

    /// The artifact type when this root holds no container image at all (a signature, an
    /// SBOM, a chart); `None` for an image, even one that carries attestations.
    pub fn artifact_type(&self) -> Option<String> {
        crate::graph::artifact_type_of(self.platforms.iter().map(|p| &p.manifest))
    }

    /// The manifest this root refers to, when it is a referrer (a signature, an SBOM).
    pub fn subject(&self) -> Option<&Descriptor> {
        self.platforms
            .iter()
            .find(|p| p.descriptor.digest == self.root.digest)
            .and_then(|p| p.manifest.subject.as_ref())
    }

    /// The platform manifests that are container images (not attestations beside them).
    pub fn image_platforms(&self) -> impl Iterator<Item = &PlatformManifest> {
        self.platforms
            .iter()
            .filter(|p| p.manifest.artifact_type().is_none())
    }

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

/// Something images can be read from, with random access to its blobs: the store, an
/// image pulled lazily from a registry, a staging area. (Archives and the Docker Engine are
/// read once, front to back: see [`crate::copy::stream`].)
pub trait ImageSource: Sync {
    /// The images on offer.
    fn images(&self) -> &[SourceImage];
    /// Stream one blob. The copy engine verifies what it reads; sources need not.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>>;
    /// True when the source has the blob.
    fn has_blob(&self, digest: &Digest) -> bool;
    /// True when every layer's diffID was already checked against its config (the store,
    /// a verified archive); false makes the copy engine learn and check them on the way.
    fn diff_ids_verified(&self) -> bool {
        true
    }
    /// What the source is, for messages ("the store", "registry.example.com/app").
    fn describe(&self) -> String;
    /// Read a whole small blob, verified.
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut v)
            .map_err(|e| Error::stream(format!("read blob {digest}"), e))?;
        let actual = Digest::of(&v);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: "blob",
                path_in_archive: format!("{digest} from {}", self.describe()),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(v)
    }
}

/// Something images can be written to. Destinations only write: the copy engine hands
/// them a [`BlobReader`] that fails its last read when the bytes are not what their digest
/// says, so a destination that copies to the end of the reader before making a blob
/// visible never publishes bad bytes.
pub trait ImageDestination: Send + Sync {
    /// What the destination is, for messages.
    fn describe(&self) -> String;
    /// How many blobs it takes at once (a tar stream takes one; a registry several).
    fn parallelism(&self) -> usize {
        1
    }
    /// True when it must know every image before the first blob (a registry must know
    /// which repository a blob goes to). Streaming sources then stage first.
    fn needs_plan(&self) -> bool {
        false
    }
    /// Called with every image before any blob, when the source knows them up front
    /// (archive writers then put their metadata first).
    fn begin(&mut self, _images: &[SourceImage]) -> Result<()> {
        Ok(())
    }
    /// True when the destination already holds the blob (it will not be sent).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// The store, when the destination is one: a streaming reader then skips the bodies of
    /// blobs it holds (already verified) and reads them from it while resolving.
    fn store(&self) -> Option<&Store> {
        None
    }
    /// The store whose layers rebuild the layers an archive ships as deltas
    /// ([`crate::delta`]): the destination's own store, if it is one.
    fn delta_references(&self) -> Option<&Store> {
        self.store()
    }
    /// Compressed layers (descriptor, diffID) it also wants uncompressed, under the diffID,
    /// known after [`ImageDestination::begin`] (Docker < 23 reads no zstd).
    fn uncompressed_copies(&self) -> Vec<(Descriptor, Digest)> {
        Vec::new()
    }
    /// Store one blob, reading `data` to its end. Destinations that name every blob by the
    /// digest the reader proves (the store, layouts) need only `put_unnamed_blob`.
    fn put_blob(&self, blob: &Descriptor, data: &mut BlobReader<'_>) -> Result<()> {
        self.put_unnamed_blob(&blob.digest.to_string(), blob.size, data)
            .map(|_| ())
    }
    /// Store a blob whose digest is only known once it has streamed by (a layer of a
    /// Docker <= 24 archive, named `<id>/layer.tar`); `path_hint` is its name there.
    /// Returns the digest ([`BlobReader::verified_digest`] after the end).
    fn put_unnamed_blob(
        &self,
        path_hint: &str,
        size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<Digest>;
    /// Make everything visible at once. Returns what happened to each name.
    fn finish(self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>>;
}

impl crate::graph::Candidate for SourceImage {
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
        crate::graph::member_digests(self.platforms.iter().map(|p| (&p.descriptor, &p.manifest)))
    }
    fn subject_digest(&self) -> Option<Digest> {
        crate::graph::subject_from(self.subject(), &self.names)
    }
}

/// Refuse a destination directory whose `rels` (below `base`) are symbolic links: blobs
/// written "into the layout" would land wherever the link points.
pub(crate) fn refuse_linked_dirs(base: &std::path::Path, rels: &[&str]) -> Result<()> {
    for rel in rels {
        let p = base.join(rel);
        if fs_is_symlink(&p) {
            return Err(Error::Usage(format!(
                "{} is a symbolic link; a layout airlock writes holds its files itself: remove the link or write to another directory",
                p.display()
            )));
        }
    }
    Ok(())
}

fn fs_is_symlink(p: &std::path::Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Write a blob the copy engine is verifying into `dir` under a temporary name, fsync it,
/// and rename it to `name_of(digest)` once the reader has proved the digest: what every
/// directory destination (an OCI layout, a `dir:` layout) does with a blob.
pub(crate) fn write_blob_file(
    dir: &std::path::Path,
    data: &mut BlobReader<'_>,
    name_of: impl Fn(&Digest) -> std::path::PathBuf,
) -> Result<Digest> {
    use crate::digest::CopyError;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".part-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temp file in", dir, e))?;
    crate::store::copy_plain(data, tmp.as_file_mut()).map_err(|e| match e {
        CopyError::Read(e) => data.to_error(e),
        CopyError::Write(e) => Error::io("write", tmp.path(), e),
    })?;
    let digest = data.verified_digest().ok_or_else(|| Error::Truncated {
        detail: format!("{} was not read to its end", data.label()),
    })?;
    // Layout blobs are read by other tools and users; a temp file is private (0600).
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io("chmod", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("sync", tmp.path(), e))?;
    let dest = name_of(&digest);
    tmp.persist(&dest)
        .map_err(|e| Error::io("rename", &dest, e.error))?;
    Ok(digest)
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
        let (i, named) = crate::graph::find(images, q)?;
        push(&images[i], named.as_ref());
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
