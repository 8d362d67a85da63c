//! Turning the files of an archive into verified images, whatever the dialect.
//!
//! Each `index.json` root (a manifest, an index, an artifact) is resolved on its own with its
//! own names; in a hybrid archive each `manifest.json` entry is then matched to the root
//! that holds its config and names (`hybrid`), and an entry no verified root covers gets a
//! manifest made from `manifest.json` (Docker <= 24 wrote none, Docker 25.0.0's disagreed
//! with its config). Every image config is checked against its name and every layer's
//! diffID against the config; an artifact's blobs are checked by digest only.

mod blobs;
mod dir_signatures;
mod hybrid;
mod legacy;
mod lookup;

use crate::compression::Compression;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{
    self, media_type, ConfigView, Descriptor, DockerArchiveEntry, Document, Index, Manifest,
    ANNOTATION_BASE_NAME, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use crate::store::ANNOTATION_GENERATED;
use crate::transport::{PlatformManifest, SourceImage};

use super::reader::ArchiveContents;
use blobs::{check_artifact_blobs, check_descriptor, EMPTY_JSON};
use hybrid::{index_roots, match_entries};
pub(crate) use lookup::BlobLookup;

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
    /// Docker's format before 1.10: `repositories` and v1 image directories.
    Legacy,
}

impl Dialect {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::DockerArchive => "docker-archive",
            Dialect::Hybrid => "docker/OCI hybrid archive",
            Dialect::Oci => "OCI archive",
            Dialect::Dir => "dir: layout",
            Dialect::Legacy => "Docker < 1.10 archive",
        }
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
        (false, false) if md.contains_key("repositories") => Dialect::Legacy,
        (true, true) if manifest_is_document => Dialect::Oci,
        (true, true) => Dialect::Hybrid,
        (true, false) => Dialect::DockerArchive,
        _ => Dialect::Oci,
    }
}

/// True when the archive's transfer manifest says it was made to carry no image (`sync
/// --output` against an inventory that holds everything).
fn empty_shipment(md: &std::collections::BTreeMap<String, Vec<u8>>) -> bool {
    md.get(crate::transfer::TRANSFER_FILE)
        .and_then(|b| serde_json::from_slice::<crate::transfer::TransferManifest>(b).ok())
        .is_some_and(|t| t.images.is_empty() && t.artifacts.is_empty() && t.origin.is_some())
}

/// Resolve the images of an archive. Generated manifests are staged.
pub(crate) fn resolve(lookup: &BlobLookup) -> Result<(Dialect, Vec<SourceImage>)> {
    let md = &lookup.contents.metadata;
    if dialect_of(lookup.contents) == Dialect::Dir {
        let image = from_dir_layout(lookup)?;
        let signatures = dir_signatures::signature_referrers(lookup, &image.root)?;
        return Ok((
            Dialect::Dir,
            std::iter::once(image).chain(signatures).collect(),
        ));
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
        if idx.manifests.is_empty() && empty_shipment(md) {
            // A shipment whose every image the far side held already: it carries nothing,
            // and says so in its transfer manifest.
            return Ok((Dialect::Oci, Vec::new()));
        }
        if idx.manifests.is_empty() {
            return Err(Error::NoImage {
                detail: "index.json lists no manifest: the layout is empty".into(),
            });
        }
        if images.is_empty() {
            let why = idx
                .manifests
                .iter()
                .find_map(|d| first_missing(lookup, d, "index.json", 0))
                .map(|(by, missing)| format!(": {by} names {missing}, which is not here"))
                .unwrap_or_default();
            return Err(Error::NoImage {
                detail: format!("it is incomplete as written, no manifest index.json lists has all its blobs{why}"),
            });
        }
        return Ok((Dialect::Oci, merge_same_root(images)));
    }
    if let Some(repositories) = md.get("repositories") {
        return Ok((
            Dialect::Legacy,
            legacy::from_repositories(lookup, repositories)?,
        ));
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
    if serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|v| v.get("schemaVersion").and_then(|n| n.as_u64()) == Some(1))
    {
        return legacy::from_schema1(lookup, bytes);
    }
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

/// The first blob a root needs that the archive lacks, and what names it (for messages).
fn first_missing(
    lookup: &BlobLookup,
    d: &Descriptor,
    by: &str,
    depth: usize,
) -> Option<(String, Digest)> {
    if !lookup.has(&d.digest) {
        return Some((by.to_string(), d.digest.clone()));
    }
    let label = format!("manifest {}", d.digest);
    match spec::parse_document(&lookup.read(&d.digest, by).ok()?, by).ok()? {
        Document::Index(idx) if depth < 4 => idx
            .manifests
            .iter()
            .find_map(|c| first_missing(lookup, c, &format!("index {}", d.digest), depth + 1)),
        Document::Index(_) => None,
        Document::Manifest(m) => std::iter::once(&m.config)
            .chain(&m.layers)
            .find(|b| {
                !lookup.has(&b.digest) && b.urls.is_none() && b.digest != Digest::of(EMPTY_JSON)
            })
            .map(|b| (label, b.digest.clone())),
    }
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
    let config: ConfigView = spec::parse_config(config_bytes, &entry.config)?;
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
        layers.push(Descriptor::new(layer_type(codec), f.digest.clone(), f.size));
    }
    let desc = Descriptor::new(
        media_type::OCI_CONFIG,
        config_digest,
        config_bytes.len() as u64,
    );
    let mut img = generated_image(lookup, desc, layers, config.rootfs.diff_ids.clone());
    img.names = names;
    Ok(img)
}

/// The OCI media type of a layer blob compressed with `codec`.
fn layer_type(codec: Compression) -> &'static str {
    match codec {
        Compression::Gzip => media_type::OCI_LAYER_GZIP,
        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        _ => media_type::OCI_LAYER,
    }
}

/// An unnamed image over an OCI manifest made here (a docker-archive and the older formats
/// carry none), handed on as generated. The caller hands on the config if it made it too.
fn generated_image(
    lookup: &BlobLookup,
    config: Descriptor,
    layers: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
) -> SourceImage {
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config,
        layers,
        annotations: None,
        artifact_type: None,
        subject: None,
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest encodes");
    let digest = Digest::of(&bytes);
    let descriptor = Descriptor::new(media_type::OCI_MANIFEST, digest.clone(), bytes.len() as u64);
    lookup.generated.borrow_mut().insert(digest, bytes);
    SourceImage {
        names: Vec::new(),
        root: descriptor.clone(),
        generated: true,
        platforms: vec![PlatformManifest {
            descriptor,
            manifest,
            diff_ids,
        }],
    }
}

fn bare(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest.clone(), d.size)
}

/// A docker-archive config named after a digest it does not have (a config edited after
/// it was named, as in go-containerregistry's bazel-built test images) is what docker
/// loads: the image ID is the content's digest. It is said, not refused: this name is no
/// content address any loader checks (an OCI blob's is, and the reader checks it).
fn check_named_digest(lookup: &BlobLookup, path: &str, actual: &Digest) {
    let name = path.rsplit('/').next().unwrap_or(path);
    let hex = name
        .strip_suffix(".json")
        .or_else(|| name.strip_prefix("sha256:"))
        .unwrap_or(name);
    if let Some(named) = Digest::from_hex(hex) {
        if &named != actual {
            lookup.notes.borrow_mut().push(format!(
                "manifest.json's config {path} is named for {named} but its content is {actual}; the image ID is {actual}, as docker takes it"
            ));
        }
    }
}

/// Check a manifest's config and layers against the config's diffIDs. Returns the diffIDs.
fn verify_layers(
    lookup: &BlobLookup,
    m: &Manifest,
    config: &ConfigView,
    label: &str,
) -> Result<Vec<Digest>> {
    let diff_ids = &config.rootfs.diff_ids;
    if config.rootfs.kind.is_empty() && diff_ids.is_empty() && !m.layers.is_empty() {
        // A config with no `rootfs` at all (oras writes `{"architecture":...,"os":...}`):
        // nothing to check the layers against but their digests. No engine runs it.
        for layer in &m.layers {
            if !lookup.has(&layer.digest) && layer.urls.is_none() {
                return Err(Error::MissingBlob {
                    referenced_by: format!("manifest {label}"),
                    missing: layer.digest.to_string(),
                });
            }
        }
        lookup.notes.borrow_mut().push(format!(
            "the config of {label} has no rootfs: its layers are checked by digest only, and docker cannot load it"
        ));
        return Ok(Vec::new());
    }
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
    for d in [desc, &m.config].into_iter().chain(&m.layers) {
        check_descriptor(lookup, d, label)?;
    }
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
    let config: ConfigView = spec::parse_config(
        &config_bytes,
        &format!("blobs/sha256/{}", m.config.digest.hex()),
    )?;
    let diff_ids = verify_layers(lookup, &m, &config, label)?;
    Ok(PlatformManifest {
        descriptor: desc.clone(),
        manifest: m,
        diff_ids,
    })
}

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
    check_descriptor(lookup, desc, "index.json")?;
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
