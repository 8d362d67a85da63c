//! Writing archives: the hybrid layout every loader accepts, or pure OCI.
//!
//! The `docker` format is an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/*`) plus
//! Docker's `manifest.json` and `repositories`, with all metadata written **before** the
//! blobs so readers can stream. `index.json` keeps the original manifests (registry digests
//! survive); `manifest.json` points at layers every Docker version can load: uncompressed or
//! gzip blobs as they are, and for zstd layers an extra uncompressed copy named by diffID.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use super::tarball::TarWriter;
use crate::blob_reader::BlobReader;
use crate::compression::{self, Compression, FinishWrite};
use crate::delta::{DeltaLayer, PreparedDelta};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::{
    media_type, Descriptor, DockerArchiveEntry, Index, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use crate::store::{Store, TagChange, ANNOTATION_GENERATED};
use crate::transfer::{
    TransferFiles, TransferManifest, TransferOptions, TRANSFER_FILE, TRANSFER_SIGNATURE_FILE,
};
use crate::transport::inventory::LayerPrint;
use crate::transport::{ImageDestination, SourceImage};

/// Which archive layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// OCI layout plus `manifest.json` and `repositories`: loads in docker, containerd,
    /// podman and skopeo.
    Docker,
    /// OCI layout only (`oci-archive`).
    Oci,
}

/// An archive being written; an [`ImageDestination`].
///
/// When the source knows its images up front (the store, a registry), `begin` writes the
/// metadata first so readers can stream; when it does not (an archive or the Docker
/// Engine read once, front to back) the metadata goes last, and layers whose digest was only
/// learned while they streamed by keep their original path, with a `blobs/sha256/<hex>`
/// symbolic link to it (the way Docker 25 links the other way round).
pub struct ArchiveWriter {
    tar: Mutex<Option<TarWriter<Box<dyn FinishWrite>>>>,
    format: ArchiveFormat,
    written: Mutex<BTreeSet<Digest>>,
    /// Blobs written under their original path: digest -> path.
    unnamed: Mutex<BTreeMap<Digest, String>>,
    /// zstd (or other non-gzip compressed) layers that need an uncompressed copy for
    /// `manifest.json`: blob digest -> diffID.
    uncompressed_copies: BTreeMap<Digest, Digest>,
    /// Layers the receiving store already has (from its inventory): left out.
    omit: BTreeSet<Digest>,
    inventory: Option<Digest>,
    /// Where new layers and their references are read to make deltas, and the far side's
    /// layers they may be made against.
    delta_source: Option<(Store, Vec<LayerPrint>)>,
    /// Layers shipped as deltas, by blob digest.
    deltas: BTreeMap<Digest, PreparedDelta>,
    metadata_written: bool,
    /// Write a transfer manifest (what `save` makes; the engine's load stream has none).
    transfer: Option<TransferOptions>,
    /// The transfer manifest written, and its signature (shared: the metadata may only be
    /// written when the writer is consumed by `finish`).
    transfer_written: Arc<Mutex<Option<TransferFiles>>>,
}

/// Where the docker format keeps an artifact's name (see `metadata`).
pub const ANNOTATION_ARTIFACT_NAME: &str = "dev.airlock.artifact.name";
/// Name of the file that marks an incremental archive and lists what it leaves out.
pub const INCREMENTAL_FILE: &str = "airlock-incremental.json";
/// Annotation on `index.json` of an incremental archive.
pub const ANNOTATION_INCREMENTAL: &str = "dev.airlock.incremental";

/// What `airlock-incremental.json` holds.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct IncrementalInfo {
    /// Digest of the inventory the archive was made against.
    pub inventory: Digest,
    /// The layer blobs left out because the receiving store has them.
    pub omitted: Vec<Digest>,
    /// The layers shipped as deltas against layers the receiving store has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<DeltaLayer>,
}

impl ArchiveWriter {
    /// Write to `out`, compressing the whole stream with `compression`.
    pub fn new(
        out: Box<dyn Write + Send>,
        format: ArchiveFormat,
        compression: Compression,
        level: Option<i32>,
        threads: usize,
    ) -> Result<Self> {
        let enc = compression::encoder(compression, level, threads, out)
            .map_err(|e| Error::Usage(e.to_string()))?;
        Ok(ArchiveWriter {
            tar: Mutex::new(Some(TarWriter::new(enc))),
            format,
            written: Mutex::new(BTreeSet::new()),
            unnamed: Mutex::new(BTreeMap::new()),
            uncompressed_copies: BTreeMap::new(),
            omit: BTreeSet::new(),
            inventory: None,
            delta_source: None,
            deltas: BTreeMap::new(),
            metadata_written: false,
            transfer: None,
            transfer_written: Arc::default(),
        })
    }

    /// Make an incremental archive: leave out the layer blobs in `have` (the receiving
    /// store's inventory, whose digest is `inventory`), and say so in the archive.
    pub fn incremental(mut self, have: BTreeSet<Digest>, inventory: Digest) -> Self {
        self.omit = have;
        self.inventory = Some(inventory);
        self
    }

    /// Ship new layers as deltas against `layers` of the far side where that is smaller,
    /// reading both from `store` (the layers the near side holds too).
    pub fn with_deltas(mut self, store: Store, layers: Vec<LayerPrint>) -> Self {
        if !layers.is_empty() {
            self.delta_source = Some((store, layers));
        }
        self
    }

    /// Make the deltas of the layers of `images` that the far side lacks.
    fn prepare_deltas(&mut self, images: &[SourceImage]) -> Result<()> {
        let Some((store, candidates)) = &self.delta_source else {
            return Ok(());
        };
        for img in images.iter().filter(|i| i.artifact_type().is_none()) {
            let name = img.names.first().map(|n| n.to_string()).unwrap_or_default();
            let repository = crate::delta::repository_of(&name).unwrap_or_default();
            for p in img.image_platforms() {
                for (position, (layer, diff_id)) in
                    p.manifest.layers.iter().zip(&p.diff_ids).enumerate()
                {
                    let d = &layer.digest;
                    if self.omit.contains(d) || self.deltas.contains_key(d) || !store.has_blob(d) {
                        continue;
                    }
                    let made = crate::delta::make(
                        store, d, layer.size, diff_id, repository, position, candidates,
                    )?;
                    if let crate::delta::Made::Delta(delta) = made {
                        self.deltas.insert(d.clone(), *delta);
                    }
                }
            }
        }
        Ok(())
    }

    /// Write a transfer manifest first in the archive, signed and with verdicts as `opts`
    /// says.
    pub fn with_transfer(mut self, opts: TransferOptions) -> Self {
        self.transfer = Some(opts);
        self
    }

    /// Where the transfer manifest written and its signature are kept once the metadata
    /// is out.
    pub fn transfer_written(&self) -> Arc<Mutex<Option<TransferFiles>>> {
        self.transfer_written.clone()
    }

    /// Run `f` on the tar stream (one writer at a time).
    fn with_tar<T>(
        &self,
        f: impl FnOnce(&mut TarWriter<Box<dyn FinishWrite>>) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.tar.lock().unwrap_or_else(|p| p.into_inner());
        let tar = guard
            .as_mut()
            .ok_or_else(|| Error::Usage("the archive is already finished".into()))?;
        f(tar)
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))
}

impl ArchiveWriter {
    /// The metadata files for `images`: `oci-layout`, `index.json`, the incremental marker,
    /// and for the docker format `manifest.json` and `repositories`. `streamed` means the
    /// blobs are already written (no uncompressed copies can be added any more).
    fn metadata(
        &mut self,
        images: &[SourceImage],
        streamed: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let unnamed = self
            .unnamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut index = Index::empty();
        let mut manifest_json = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for img in images {
            // index.json: one descriptor per name (untagged: one bare descriptor).
            // A manifest airlock made from a docker-archive says so, so the far side does not
            // take its digest for a registry's.
            let generated = || {
                img.generated
                    .then(|| (ANNOTATION_GENERATED.to_string(), "true".to_string()))
            };
            let artifact_type = img.artifact_type();
            let mut root = img.root.clone();
            root.artifact_type = artifact_type.clone();
            if img.names.is_empty() {
                let mut d = root.clone();
                d.annotations = generated().map(|kv| BTreeMap::from([kv]));
                index.manifests.push(d);
            }
            if artifact_type.is_some() && self.format == ArchiveFormat::Docker {
                // containerd's import unpacks every image it names, and a signature or SBOM
                // does not unpack: in the archive docker, podman and containerd load, an
                // artifact's name is kept where only airlock reads it.
                for name in &img.names {
                    let mut d = root.clone();
                    d.annotations = Some(BTreeMap::from([(
                        ANNOTATION_ARTIFACT_NAME.to_string(),
                        name.to_string(),
                    )]));
                    index.manifests.push(d);
                }
                continue;
            }
            for name in &img.names {
                let mut d = root.clone();
                let ref_name = match self.format {
                    // Docker and containerd put the tag here and the full name beside it.
                    ArchiveFormat::Docker => name.tag().unwrap_or("latest").to_string(),
                    // skopeo/podman oci-archive readers take the full reference from here.
                    ArchiveFormat::Oci => name.to_string(),
                };
                let mut ann = BTreeMap::from([
                    (ANNOTATION_IMAGE_NAME.to_string(), name.to_string()),
                    (ANNOTATION_REF_NAME.to_string(), ref_name),
                ]);
                ann.extend(generated());
                d.annotations = Some(ann);
                index.manifests.push(d);
            }
            if self.format == ArchiveFormat::Oci {
                continue;
            }
            // manifest.json: the platform docker would run here. Artifacts (signatures,
            // SBOMs) are only in index.json: docker and podman would try to run them.
            let mut candidates = img.image_platforms().peekable();
            let Some(&first) = candidates.peek() else {
                continue;
            };
            let p = candidates
                .find(|p| {
                    p.descriptor
                        .platform
                        .as_ref()
                        .is_none_or(|pl| crate::spec::Platform::host().matches(pl))
                })
                .unwrap_or(first);
            if p.diff_ids.len() != p.manifest.layers.len() {
                // No diffIDs to name its layers by (a config without rootfs): docker could
                // not load it, so manifest.json leaves it out; index.json has it.
                continue;
            }
            let mut layers = Vec::new();
            for (layer, diff_id) in p.manifest.layers.iter().zip(&p.diff_ids) {
                let plain_or_gzip = layer.media_type.ends_with("tar")
                    || layer.media_type.ends_with("gzip")
                    || layer.media_type == media_type::OCI_LAYER
                    || &layer.digest == diff_id;
                if let Some(path) = unnamed.get(&layer.digest) {
                    layers.push(path.clone());
                } else if plain_or_gzip || streamed {
                    layers.push(blob_path(&layer.digest));
                } else {
                    self.uncompressed_copies
                        .insert(layer.digest.clone(), diff_id.clone());
                    layers.push(blob_path(diff_id));
                }
            }
            let familiar: Vec<String> = img.names.iter().map(|n| n.familiar()).collect();
            if let (Some(top), false) = (p.diff_ids.last(), img.names.is_empty()) {
                for n in &img.names {
                    repositories
                        .entry(n.familiar_repository())
                        .or_default()
                        .insert(
                            n.tag().unwrap_or("latest").to_string(),
                            top.hex().to_string(),
                        );
                }
            }
            manifest_json.push(DockerArchiveEntry {
                config: blob_path(&p.manifest.config.digest),
                repo_tags: familiar,
                layers,
                layer_sources: None,
            });
        }
        // Only layers are left out; configs and manifests are small and every reader needs
        // them to resolve the images.
        let omitted: Vec<Digest> = images
            .iter()
            .flat_map(|i| i.platforms.iter().flat_map(|p| p.manifest.layers.iter()))
            .filter(|l| self.omit.contains(&l.digest))
            .map(|l| l.digest.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.omit = omitted.iter().cloned().collect();
        let deltas: Vec<DeltaLayer> = self.deltas.values().map(|d| d.record.clone()).collect();
        let incremental = match &self.inventory {
            Some(inv) if !omitted.is_empty() || !deltas.is_empty() => {
                index.annotations = Some(BTreeMap::from([(
                    ANNOTATION_INCREMENTAL.to_string(),
                    format!(
                        "{} layer blobs left out, {} shipped as deltas; made against inventory {inv}",
                        omitted.len(),
                        deltas.len()
                    ),
                )]));
                Some(to_json(&IncrementalInfo {
                    inventory: inv.clone(),
                    omitted,
                    deltas,
                })?)
            }
            _ => None,
        };
        let mut files = Vec::new();
        if let Some(opts) = &self.transfer {
            // First in the stream, so review reads it without reading the blobs.
            let mut manifest = TransferManifest::of(images, opts.checks.as_deref());
            let origin = crate::transfer::Origin {
                shipment: opts.shipment.clone(),
                inventory: self.inventory.clone(),
                deltas: self.deltas.len(),
            };
            if self.inventory.is_some() {
                manifest.set_shipped(images, &|b| match (
                    self.omit.contains(&b.digest),
                    self.deltas.get(&b.digest),
                ) {
                    (true, _) => 0,
                    (_, Some(d)) => d.record.shipped(),
                    _ => b.size,
                });
            }
            if origin != crate::transfer::Origin::default() {
                manifest.origin = Some(origin);
            }
            let manifest = manifest.to_bytes()?;
            let signature = match &opts.signer {
                Some(s) => Some(s.sign_detached(&manifest)?.into_bytes()),
                None => None,
            };
            files.push((TRANSFER_FILE.to_string(), manifest.clone()));
            if let Some(sig) = &signature {
                files.push((TRANSFER_SIGNATURE_FILE.to_string(), sig.clone()));
            }
            *self
                .transfer_written
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(TransferFiles {
                manifest,
                signature,
            });
        }
        files.extend([
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), to_json(&index)?),
        ]);
        if let Some(info) = incremental {
            files.push((INCREMENTAL_FILE.to_string(), info));
        }
        if self.format == ArchiveFormat::Docker {
            files.push(("manifest.json".to_string(), to_json(&manifest_json)?));
            files.push(("repositories".to_string(), to_json(&repositories)?));
        }
        Ok(files)
    }

    fn write_metadata(&mut self, images: &[SourceImage], streamed: bool) -> Result<()> {
        let files = self.metadata(images, streamed)?;
        self.with_tar(|tar| {
            files
                .iter()
                .try_for_each(|(path, bytes)| tar.append_bytes(path, bytes))
        })?;
        self.metadata_written = true;
        Ok(())
    }

    /// Write one blob's bytes under `path`, or read past them when the far side has them.
    fn write_entry(
        &self,
        path: &str,
        digest: Option<&Digest>,
        size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<()> {
        let skip = digest.is_some_and(|d| {
            self.omit.contains(d) || self.written.lock().map(|w| w.contains(d)).unwrap_or(false)
        });
        if skip {
            std::io::copy(data, &mut std::io::sink()).map_err(|e| data.to_error(e))?;
            return Ok(());
        }
        self.with_tar(|tar| tar.append_stream(path, size, data))
            .map_err(|e| match e {
                Error::Stream { source, .. }
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    data.to_error(source)
                }
                other => other,
            })
    }
}

impl ArchiveWriter {
    /// In place of a layer's bytes (read through, so the copy engine still verifies
    /// them), its corrections and then its patch.
    fn write_delta(&self, delta: &PreparedDelta, data: &mut BlobReader<'_>) -> Result<()> {
        let skip = self
            .written
            .lock()
            .map(|w| w.contains(&delta.record.digest));
        std::io::copy(data, &mut std::io::sink()).map_err(|e| data.to_error(e))?;
        if skip.unwrap_or(false) {
            return Ok(());
        }
        let files = [
            delta.fix.as_ref().map(|f| (delta.record.fix_path(), f)),
            Some((delta.record.patch_path(), &delta.patch)),
        ];
        for (path, file) in files.into_iter().flatten() {
            let f = std::fs::File::open(file).map_err(|e| Error::io("open", file, e))?;
            let size = f.metadata().map_err(|e| Error::io("read", file, e))?.len();
            let mut r = std::io::BufReader::new(f);
            self.with_tar(|tar| tar.append_stream(&path, size, &mut r))?;
        }
        if let Ok(mut w) = self.written.lock() {
            w.insert(delta.record.digest.clone());
        }
        Ok(())
    }
}

/// An archive path for a blob kept under its original name: the name if it is a plain
/// relative path, else one we make up.
fn safe_entry_path(hint: &str, n: usize) -> String {
    let clean = super::sniff::normalize(hint);
    let ok = !clean.is_empty()
        && clean.len() < 200
        && !clean.split('/').any(|c| c == ".." || c.is_empty())
        && !clean.starts_with("blobs/")
        && clean.is_ascii();
    if ok {
        clean
    } else {
        format!("layers/{n}.tar")
    }
}

impl ImageDestination for ArchiveWriter {
    fn describe(&self) -> String {
        "the archive".into()
    }

    fn begin(&mut self, images: &[SourceImage]) -> Result<()> {
        // Deltas are made before anything is written: the metadata up front lists them.
        self.prepare_deltas(images)?;
        self.write_metadata(images, false)
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        // Left-out layers count as present: the copy engine then never sends them.
        self.omit.contains(digest)
            || self
                .written
                .lock()
                .map(|w| w.contains(digest))
                .unwrap_or(false)
    }

    fn uncompressed_copies(&self) -> Vec<(Descriptor, Digest)> {
        // Only those the manifest.json of `begin` promised; the engine asks after the
        // compressed blobs are written.
        self.uncompressed_copies
            .iter()
            .map(|(blob, diff)| {
                (
                    Descriptor::new(media_type::OCI_LAYER_ZSTD, blob.clone(), 0),
                    diff.clone(),
                )
            })
            .collect()
    }

    fn put_blob(&self, blob: &Descriptor, data: &mut BlobReader<'_>) -> Result<()> {
        if let Some(delta) = self.deltas.get(&blob.digest) {
            return self.write_delta(delta, data);
        }
        self.write_entry(
            &blob_path(&blob.digest),
            Some(&blob.digest),
            blob.size,
            data,
        )?;
        if let Ok(mut w) = self.written.lock() {
            w.insert(blob.digest.clone());
        }
        Ok(())
    }

    fn put_unnamed_blob(
        &self,
        path_hint: &str,
        size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<Digest> {
        let n = self.unnamed.lock().map(|u| u.len()).unwrap_or(0);
        let path = safe_entry_path(path_hint, n);
        self.write_entry(&path, None, size, data)?;
        let digest = data.verified_digest().ok_or_else(|| Error::Truncated {
            detail: format!("{path_hint} was not read to its end"),
        })?;
        if let Ok(mut u) = self.unnamed.lock() {
            u.entry(digest.clone()).or_insert(path);
        }
        Ok(digest)
    }

    fn finish(mut self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>> {
        if !self.metadata_written {
            self.write_metadata(images, true)?;
        }
        // Blobs kept under their original path get their OCI name as a link to it.
        let unnamed = std::mem::take(&mut *self.unnamed.lock().unwrap_or_else(|p| p.into_inner()));
        let written = self.written.lock().map(|w| w.clone()).unwrap_or_default();
        self.with_tar(|tar| {
            for (digest, path) in &unnamed {
                if !written.contains(digest) {
                    tar.append_symlink(&blob_path(digest), &format!("../../{path}"))?;
                }
            }
            Ok(())
        })?;
        let tar = self
            .tar
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Error::Usage("the archive is already finished".into()))?;
        let enc = tar.finish()?;

        enc.finish()
            .map_err(|e| Error::stream("finish the archive", e))?;
        Ok(images
            .iter()
            .flat_map(|i| {
                let names: Vec<_> = if i.names.is_empty() {
                    vec![None]
                } else {
                    i.names.iter().cloned().map(Some).collect()
                };
                names.into_iter().map(|n| TagChange {
                    name: n,
                    image_id: i.id(),
                    moved_from: None,
                })
            })
            .collect())
    }
}
