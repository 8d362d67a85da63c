//! Turning the files of an archive into verified images, whatever the dialect.
//!
//! `manifest.json` (every Docker-style dialect) is the authority for which images exist and
//! their layer order; `index.json` supplies the original manifests, indexes and names when it
//! is there and agrees. An OCI-only archive is read from `index.json` alone. Every config is
//! checked against its name and every layer's diffID against the config.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;

use super::reader::ArchiveContents;
use crate::compression::{self, Compression};
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{
    self, media_type, ConfigView, Descriptor, DockerArchiveEntry, Document, Index, Manifest,
    ANNOTATION_BASE_NAME, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use crate::store::{StagedBlob, Store, ANNOTATION_GENERATED};
use crate::transport::{PlatformManifest, SourceImage};

/// Which dialect an archive was written in, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `manifest.json` and blobs, no OCI layout (Docker <= 24, podman, skopeo, crane).
    DockerArchive,
    /// `manifest.json` plus an OCI layout (Docker 25+, containerd, airlock).
    Hybrid,
    /// An OCI layout only.
    Oci,
    /// containers/image's `dir:` layout (`skopeo copy ... dir:PATH`).
    Dir,
}

impl Dialect {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::DockerArchive => "docker-archive",
            Dialect::Hybrid => "docker/OCI hybrid archive",
            Dialect::Oci => "OCI archive",
            Dialect::Dir => "dir: layout",
        }
    }
}

/// Where blobs can be read while resolving: what the pass kept in memory, then the store
/// (for blobs it skipped because the store has them, or an incremental archive left out).
pub(crate) struct BlobLookup<'a> {
    pub contents: &'a ArchiveContents,
    pub store: Option<&'a Store>,
    /// Manifests made here for docker-archive images (they have none), by digest.
    pub generated: RefCell<BTreeMap<Digest, Vec<u8>>>,
    /// What was done with names that could not be taken as they are, for the user.
    pub notes: RefCell<Vec<String>>,
}

impl BlobLookup<'_> {
    fn read(&self, d: &Digest, label: &str) -> Result<Vec<u8>> {
        if let Some(b) = self.contents.small.get(d) {
            return Ok(b.clone());
        }
        if let Some(b) = self.generated.borrow().get(d) {
            return Ok(b.clone());
        }
        if let Some(s) = self.store.filter(|s| s.has_blob(d)) {
            return s.read_blob(d);
        }
        let missing = || Error::MissingBlob {
            referenced_by: label.to_string(),
            missing: d.to_string(),
        };
        if self.contents.delivered.contains(d) {
            // Passed through to the destination, but too large to be a config or manifest.
            return Err(Error::BadMetadata {
                path_in_archive: d.to_string(),
                what: "JSON document",
                detail: "it is too large or does not start with '{'".into(),
            });
        }
        Err(missing())
    }

    fn has(&self, d: &Digest) -> bool {
        self.contents.delivered.contains(d) || self.store.is_some_and(|s| s.has_blob(d))
    }

    /// The file at `path`, or, for a `blobs/sha256/<hex>` path an incremental archive left
    /// out, the store's copy.
    fn file(&self, path: &str) -> Option<StagedBlob> {
        if let Some(f) = self.contents.file(path) {
            return Some(f.clone());
        }
        let d = path
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex)?;
        let size = self.store?.blob_size(&d)?;
        Some(StagedBlob { digest: d, size })
    }

    fn read_path(&self, path: &str, referenced_by: &str) -> Result<(Digest, Vec<u8>)> {
        let f = self.file(path).ok_or_else(|| Error::MissingBlob {
            referenced_by: referenced_by.to_string(),
            missing: path.to_string(),
        })?;
        Ok((f.digest.clone(), self.read(&f.digest, path)?))
    }

    /// Compression of a blob and its diffID: learned while it streamed by, or computed now
    /// from the store's copy.
    fn layer_facts(&self, d: &Digest, label: &str) -> Result<(Compression, Digest)> {
        if let Some(c) = self.contents.compression.get(d) {
            return match c {
                Compression::Gzip | Compression::Zstd => match self.contents.diff_ids.get(d) {
                    Some(Ok(diff)) => Ok((*c, diff.clone())),
                    Some(Err(msg)) => Err(Error::Decompress {
                        codec: c.name(),
                        detail: format!("{label}: {msg}"),
                    }),
                    None => self.compute_facts(d, label),
                },
                _ => Ok((*c, d.clone())),
            };
        }
        if self.contents.small.contains_key(d) {
            return Ok((Compression::None, d.clone()));
        }
        self.compute_facts(d, label)
    }

    fn compute_facts(&self, d: &Digest, label: &str) -> Result<(Compression, Digest)> {
        let path = self
            .store
            .filter(|s| s.has_blob(d))
            .map(|s| s.blob_path(d))
            .ok_or_else(|| Error::MissingBlob {
                referenced_by: label.to_string(),
                missing: d.to_string(),
            })?;
        let file = fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let (magic, rest) = compression::peek(file, compression::MAGIC_LEN)
            .map_err(|e| Error::io("read", &path, e))?;
        let c = Compression::detect(&magic);
        if c == Compression::None {
            return Ok((c, d.clone()));
        }
        let (diff, _) =
            digest::hash_reader(compression::decoder(c, rest)).map_err(|e| Error::Decompress {
                codec: c.name(),
                detail: format!("{label}: {e}"),
            })?;
        Ok((c, diff))
    }
}

/// The dialect an archive's metadata files say it is in.
pub(crate) fn dialect_of(contents: &ArchiveContents) -> Dialect {
    let md = &contents.metadata;
    if md
        .get("version")
        .is_some_and(|v| super::sniff::is_dir_layout_version(v))
    {
        return Dialect::Dir;
    }
    let manifest_is_document = md
        .get("manifest.json")
        .is_some_and(|b| b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{'));
    if manifest_is_document && !md.contains_key("index.json") {
        // containers/image before it wrote `version`: manifest.json is the image's manifest.
        return Dialect::Dir;
    }
    match (
        md.contains_key("manifest.json"),
        md.contains_key("index.json"),
    ) {
        (true, true) if manifest_is_document => Dialect::Oci,
        (true, true) => Dialect::Hybrid,
        (true, false) => Dialect::DockerArchive,
        _ => Dialect::Oci,
    }
}

/// Resolve the images of an archive. Generated manifests are staged.
pub(crate) fn resolve(lookup: &BlobLookup) -> Result<(Dialect, Vec<SourceImage>)> {
    let md = &lookup.contents.metadata;
    if dialect_of(lookup.contents) == Dialect::Dir {
        return Ok((Dialect::Dir, vec![from_dir_layout(lookup)?]));
    }
    let index = md
        .get("index.json")
        .map(|b| spec::parse_json::<Index>(b, "index.json", "OCI image index"))
        .transpose()?;
    // `null` (Go's nil list) lists no image, like `[]`.
    let entries: Vec<DockerArchiveEntry> = match md.get("manifest.json") {
        Some(mj) if dialect_of(lookup.contents) != Dialect::Oci => {
            spec::parse_json::<Option<Vec<DockerArchiveEntry>>>(
                mj,
                "manifest.json",
                "manifest.json",
            )?
            .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if md.contains_key("manifest.json") && entries.is_empty() && index.is_none() {
        return Err(Error::NoImage {
            detail: "manifest.json lists no image".into(),
        });
    }
    // With no image in manifest.json (only artifacts, which docker does not list),
    // index.json decides.
    if !entries.is_empty() {
        let dialect = if index.is_some() {
            Dialect::Hybrid
        } else {
            Dialect::DockerArchive
        };
        let roots = match &index {
            Some(idx) => index_roots(lookup, idx)?,
            None => Vec::new(),
        };
        return Ok((dialect, match_entries(lookup, &entries, roots)?));
    }
    if let Some(idx) = index {
        let mut images = Vec::new();
        for desc in &idx.manifests {
            let names = names_from_annotations(lookup, desc);
            if let Some(img) = from_oci_descriptor(lookup, desc, names)? {
                images.push(img);
            }
        }
        if images.is_empty() {
            return Err(Error::NoImage {
                detail: "index.json lists no manifest whose blobs are in the archive".into(),
            });
        }
        return Ok((Dialect::Oci, merge_same_root(images)));
    }
    if md.contains_key("repositories") {
        return Err(Error::NoImage {
            detail: "it has a 'repositories' file but no manifest.json: it was written by Docker older than 1.10; load it there and save it again".into(),
        });
    }
    Err(Error::NoImage {
        detail: "it has neither manifest.json nor index.json".into(),
    })
}

/// A `dir:` layout: `manifest.json` is the image's manifest (or index; its instances sit
/// beside it as `<hex>.manifest.json`), every other blob is named by its hex digest. It
/// carries no name. The root is handed on like a generated manifest: it is no blob file.
fn from_dir_layout(lookup: &BlobLookup) -> Result<SourceImage> {
    let bytes = lookup
        .contents
        .metadata
        .get("manifest.json")
        .ok_or_else(|| Error::NoImage {
            detail: "the dir: layout has no manifest.json".into(),
        })?;
    let digest = Digest::of(bytes);
    let media = match spec::parse_document(bytes, "manifest.json")? {
        Document::Manifest(m) => m
            .media_type
            .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string()),
        Document::Index(i) => i
            .media_type
            .unwrap_or_else(|| media_type::OCI_INDEX.to_string()),
    };
    lookup
        .generated
        .borrow_mut()
        .insert(digest.clone(), bytes.clone());
    let root = Descriptor::new(&media, digest, bytes.len() as u64);
    from_oci_descriptor(lookup, &root, Vec::new())?.ok_or_else(|| Error::NoImage {
        detail: "the dir: layout's manifest.json lists no manifest whose blobs are there".into(),
    })
}

/// Several manifest.json entries (or index descriptors) for one root become one image with
/// all the names.
fn merge_same_root(images: Vec<SourceImage>) -> Vec<SourceImage> {
    let mut out: Vec<SourceImage> = Vec::new();
    for img in images {
        if let Some(existing) = out.iter_mut().find(|o| o.root.digest == img.root.digest) {
            for n in img.names {
                if !existing.names.contains(&n) {
                    existing.names.push(n);
                }
            }
        } else {
            out.push(img);
        }
    }
    out
}

/// The name an index descriptor gives its image: `io.containerd.image.name` (the full
/// name), else `org.opencontainers.image.ref.name`. A `ref.name` that is only a tag (as the
/// OCI layout spec allows) takes its repository from `org.opencontainers.image.base.name`
/// when that is there; one that is no valid name at all is noted, not silently dropped.
fn names_from_annotations(lookup: &BlobLookup, desc: &Descriptor) -> Vec<Reference> {
    if let Some(full) = desc
        .annotation(ANNOTATION_IMAGE_NAME)
        .or_else(|| desc.annotation(super::writer::ANNOTATION_ARTIFACT_NAME))
        .and_then(|n| Reference::parse(n).ok())
    {
        return vec![full];
    }
    let Some(ref_name) = desc.annotation(ANNOTATION_REF_NAME) else {
        return Vec::new();
    };
    let tag_only = !ref_name.contains('/') && !ref_name.contains(':') && !ref_name.contains('@');
    if tag_only {
        if let Some(base) = desc
            .annotation(ANNOTATION_BASE_NAME)
            .and_then(|b| Reference::parse(b).ok())
        {
            if let Ok(r) = Reference::parse(&format!("{}:{ref_name}", base.repository())) {
                return vec![r];
            }
        }
    }
    match Reference::parse(ref_name) {
        Ok(r) => vec![r],
        Err(e) => {
            lookup.notes.borrow_mut().push(format!(
                "index.json names {} \"{ref_name}\", which is not a valid image name ({e}); it is kept untagged",
                desc.digest
            ));
            Vec::new()
        }
    }
}

/// One root of `index.json`, resolved on its own, or why it could not be.
struct IndexRoot {
    descriptor: Descriptor,
    /// The configs of the images it holds, read without checking anything else (so a
    /// root that fails can still be matched to the manifest.json entry that covers it).
    configs: Vec<Digest>,
    image: Result<SourceImage>,
    /// A manifest.json entry matched it.
    used: bool,
}

/// Every root of a hybrid archive's `index.json`, each with its own names: a name keeps its
/// root (a manifest, an index and a manifest list over the same config stay three roots).
fn index_roots(lookup: &BlobLookup, index: &Index) -> Result<Vec<IndexRoot>> {
    let mut out: Vec<IndexRoot> = Vec::new();
    for desc in &index.manifests {
        if !lookup.has(&desc.digest) {
            continue;
        }
        let names = names_from_annotations(lookup, desc);
        if let Some(r) = out.iter_mut().find(|r| r.descriptor.digest == desc.digest) {
            if let Ok(img) = &mut r.image {
                for n in names {
                    if !img.names.contains(&n) {
                        img.names.push(n);
                    }
                }
            }
            continue;
        }
        out.push(IndexRoot {
            descriptor: desc.clone(),
            configs: configs_of(lookup, desc),
            image: from_oci_descriptor(lookup, desc, names).and_then(|i| {
                i.ok_or_else(|| Error::NoImage {
                    detail: format!("none of the manifests of {} is in the archive", desc.digest),
                })
            }),
            used: false,
        });
    }
    Ok(out)
}

/// The config digests a root's image manifests name, read shallowly.
fn configs_of(lookup: &BlobLookup, desc: &Descriptor) -> Vec<Digest> {
    let config = |d: &Digest| match lookup.read(d, "").map(|b| spec::parse_document(&b, "")) {
        Ok(Ok(Document::Manifest(m))) => Some(m.config.digest),
        _ => None,
    };
    match lookup
        .read(&desc.digest, "")
        .map(|b| spec::parse_document(&b, ""))
    {
        Ok(Ok(Document::Manifest(m))) => vec![m.config.digest],
        Ok(Ok(Document::Index(idx))) => idx
            .manifests
            .iter()
            .filter_map(|c| config(&c.digest))
            .collect(),
        _ => Vec::new(),
    }
}

/// Match each manifest.json entry to the `index.json` root that holds its config and
/// carries its names; an entry no verified root covers gets a manifest made from
/// manifest.json (Docker <= 24 wrote none; Docker 25.0.0's disagreed with its config). The
/// roots no entry names (artifacts, signatures, roots docker does not list) come after.
fn match_entries(
    lookup: &BlobLookup,
    entries: &[DockerArchiveEntry],
    mut roots: Vec<IndexRoot>,
) -> Result<Vec<SourceImage>> {
    let mut images: Vec<SourceImage> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let label = format!("manifest.json entry {i}");
        let (config_digest, config_bytes) = lookup.read_path(&entry.config, &label)?;
        check_named_digest(&entry.config, &config_digest)?;
        let mut names: Vec<Reference> = Vec::new();
        for tag in &entry.repo_tags {
            names.push(Reference::parse(tag)?);
        }
        let holds = |r: &IndexRoot| {
            r.image.as_ref().is_ok_and(|img| {
                img.image_platforms()
                    .any(|p| p.manifest.config.digest == config_digest)
            })
        };
        let named = |r: &IndexRoot| {
            r.image
                .as_ref()
                .is_ok_and(|img| img.names.iter().any(|n| names.contains(n)))
        };
        let pick = roots
            .iter()
            .position(|r| holds(r) && named(r))
            .or_else(|| {
                roots.iter().position(|r| {
                    holds(r) && !r.used && r.image.as_ref().is_ok_and(|i| i.names.is_empty())
                })
            })
            .or_else(|| roots.iter().position(|r| holds(r) && !r.used))
            .or_else(|| roots.iter().position(holds));
        match pick {
            Some(at) => {
                let root = &mut roots[at];
                root.used = true;
                let Ok(img) = &mut root.image else {
                    unreachable!("a picked root resolved")
                };
                for n in names {
                    if !img.names.contains(&n) {
                        img.names.push(n);
                    }
                }
                let digest = img.root.digest.clone();
                match images.iter_mut().find(|o| o.root.digest == digest) {
                    Some(o) => o.names = img.names.clone(),
                    None => images.push(img.clone()),
                }
            }
            None => {
                let img =
                    from_docker_entry(lookup, &label, entry, names, config_digest, &config_bytes)?;
                // A root that failed on its own but holds this config is covered by the entry.
                for r in roots.iter_mut().filter(|r| r.configs.contains(&img.id())) {
                    r.used = true;
                }
                images.push(img);
            }
        }
    }
    for r in roots {
        match r.image {
            Ok(img) if !images.iter().any(|o| o.root.digest == img.root.digest) => images.push(img),
            Ok(_) => {}
            Err(_) if r.used => {}
            Err(e) => return Err(e),
        }
    }
    Ok(merge_same_root(images))
}

fn manifest_complete(lookup: &BlobLookup, desc: &Descriptor) -> bool {
    let Ok(bytes) = lookup.read(&desc.digest, "") else {
        return false;
    };
    match spec::parse_document(&bytes, "") {
        Ok(Document::Manifest(m)) => std::iter::once(&m.config).chain(&m.layers).all(|d| {
            lookup.has(&d.digest) || d.urls.is_some() || d.digest == Digest::of(EMPTY_JSON)
        }),
        _ => false,
    }
}

fn from_docker_entry(
    lookup: &BlobLookup,
    label: &str,
    entry: &DockerArchiveEntry,
    names: Vec<Reference>,
    config_digest: Digest,
    config_bytes: &[u8],
) -> Result<SourceImage> {
    let config: ConfigView = spec::parse_json(config_bytes, &entry.config, "image config")?;
    let label = label.to_string();
    // Otherwise build an OCI manifest from manifest.json's layer files.
    if entry.layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::LayerCountMismatch {
            image: label,
            layers: entry.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let mut layers = Vec::new();
    for (li, path) in entry.layers.iter().enumerate() {
        let f = lookup.file(path).ok_or_else(|| Error::MissingBlob {
            referenced_by: "manifest.json".into(),
            missing: path.clone(),
        })?;
        let (codec, diff) = lookup.layer_facts(&f.digest, path)?;
        if diff != config.rootfs.diff_ids[li] {
            return Err(Error::DiffIdMismatch {
                index: li,
                path_in_archive: path.clone(),
                expected: config.rootfs.diff_ids[li].clone(),
                actual: diff,
            });
        }
        let mt = match codec {
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            _ => media_type::OCI_LAYER,
        };
        layers.push(Descriptor::new(mt, f.digest.clone(), f.size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: Descriptor::new(
            media_type::OCI_CONFIG,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers,
        annotations: None,
        artifact_type: None,
        subject: None,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
    let digest = Digest::of(&bytes);
    let descriptor = Descriptor::new(media_type::OCI_MANIFEST, digest.clone(), bytes.len() as u64);
    lookup.generated.borrow_mut().insert(digest, bytes);
    Ok(SourceImage {
        names,
        root: descriptor.clone(),
        generated: true,
        platforms: vec![PlatformManifest {
            descriptor,
            manifest,
            diff_ids: config.rootfs.diff_ids.clone(),
        }],
    })
}

fn bare(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest.clone(), d.size)
}

/// A config file named after a digest must hash to it.
fn check_named_digest(path: &str, actual: &Digest) -> Result<()> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let hex = name
        .strip_suffix(".json")
        .or_else(|| name.strip_prefix("sha256:"))
        .unwrap_or(name);
    if let Some(expected) = Digest::from_hex(hex) {
        if &expected != actual {
            return Err(Error::DigestMismatch {
                what: "config",
                path_in_archive: path.to_string(),
                expected,
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

/// Check a manifest's config and layers against the config's diffIDs. Returns the diffIDs.
fn verify_layers(
    lookup: &BlobLookup,
    m: &Manifest,
    config: &ConfigView,
    label: &str,
) -> Result<Vec<Digest>> {
    let diff_ids = &config.rootfs.diff_ids;
    if m.layers.len() != diff_ids.len() {
        return Err(Error::LayerCountMismatch {
            image: label.to_string(),
            layers: m.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    for (i, layer) in m.layers.iter().enumerate() {
        if !lookup.has(&layer.digest) {
            if layer.urls.is_some() {
                continue; // a foreign layer left out on purpose
            }
            return Err(Error::MissingBlob {
                referenced_by: format!("manifest {label}"),
                missing: layer.digest.to_string(),
            });
        }
        let (_, diff) = lookup.layer_facts(
            &layer.digest,
            &format!("blobs/sha256/{}", layer.digest.hex()),
        )?;
        if diff != diff_ids[i] {
            return Err(Error::DiffIdMismatch {
                index: i,
                path_in_archive: format!("blobs/sha256/{}", layer.digest.hex()),
                expected: diff_ids[i].clone(),
                actual: diff,
            });
        }
    }
    Ok(diff_ids.clone())
}

fn platform_from(
    lookup: &BlobLookup,
    desc: &Descriptor,
    m: Manifest,
    label: &str,
) -> Result<PlatformManifest> {
    if m.artifact_type().is_some() {
        // An artifact (signature, SBOM, chart ...): its blobs are checked by digest as they
        // stream by; there are no diffIDs and its config need not be JSON at all.
        check_artifact_blobs(lookup, &m, label)?;
        return Ok(PlatformManifest {
            descriptor: desc.clone(),
            manifest: m,
            diff_ids: Vec::new(),
        });
    }
    let config_bytes = lookup.read(&m.config.digest, label)?;
    let config: ConfigView = spec::parse_json(
        &config_bytes,
        &format!("blobs/sha256/{}", m.config.digest.hex()),
        "image config",
    )?;
    let diff_ids = verify_layers(lookup, &m, &config, label)?;
    Ok(PlatformManifest {
        descriptor: desc.clone(),
        manifest: m,
        diff_ids,
    })
}

/// Every blob an artifact names must be here, except foreign ones (with urls) and the empty
/// config `{}`, which writers may leave out because everyone knows its bytes: it is made.
fn check_artifact_blobs(lookup: &BlobLookup, m: &Manifest, label: &str) -> Result<()> {
    for d in std::iter::once(&m.config).chain(&m.layers) {
        if lookup.has(&d.digest)
            || d.urls.is_some()
            || lookup.generated.borrow().contains_key(&d.digest)
        {
            continue;
        }
        if d.digest == Digest::of(EMPTY_JSON) {
            lookup
                .generated
                .borrow_mut()
                .insert(d.digest.clone(), EMPTY_JSON.to_vec());
            continue;
        }
        return Err(Error::MissingBlob {
            referenced_by: format!("manifest {label}"),
            missing: d.digest.to_string(),
        });
    }
    Ok(())
}

/// The bytes of the OCI empty descriptor.
const EMPTY_JSON: &[u8] = b"{}";

/// One image from an `index.json` descriptor of an OCI-only archive. An index is kept as
/// the root even when some of its manifests are absent (a one-platform save of a
/// multi-platform image): its digest is the image's identity; `platforms` says which of
/// its manifests are here, so nothing claims the missing ones.
fn from_oci_descriptor(
    lookup: &BlobLookup,
    desc: &Descriptor,
    names: Vec<Reference>,
) -> Result<Option<SourceImage>> {
    let label = desc.digest.to_string();
    let bytes = lookup.read(&desc.digest, "index.json")?;
    match spec::parse_document(&bytes, &label)? {
        Document::Manifest(m) => {
            let p = platform_from(lookup, desc, *m, &label)?;
            Ok(Some(SourceImage {
                names,
                root: bare(desc),
                generated: desc.annotation(ANNOTATION_GENERATED).is_some(),
                platforms: vec![p],
            }))
        }
        Document::Index(idx) => {
            let mut platforms = Vec::new();
            for child in &idx.manifests {
                if !manifest_complete(lookup, child) {
                    continue;
                }
                let cb = lookup.read(&child.digest, &label)?;
                if let Document::Manifest(m) = spec::parse_document(&cb, &child.digest.to_string())?
                {
                    platforms.push(platform_from(lookup, child, *m, &child.digest.to_string())?);
                }
            }
            if platforms.is_empty() {
                return Ok(None);
            }
            Ok(Some(SourceImage {
                names,
                root: bare(desc),
                generated: false,
                platforms,
            }))
        }
    }
}
