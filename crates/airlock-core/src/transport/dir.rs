//! containers/image's `dir:` layout as a destination (`copy ... dir:PATH`), the way skopeo
//! writes it: every blob a file named by its hex digest, the image's manifest (or index) as
//! `manifest.json`, an index's instances as `<hex>.manifest.json`, and a `version` file.
//! One image per directory.

use std::fs;
use std::path::{Path, PathBuf};

use super::{ImageDestination, SourceImage};
use crate::blob_reader::BlobReader;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::media_type;
use crate::store::{sync_dir, write_atomic, TagChange};

/// What containers/image writes into `version`.
const VERSION: &[u8] = b"Directory Transport Version: 1.1\n";

/// Writes one image as a `dir:` layout.
pub struct DirDestination {
    dir: PathBuf,
}

impl DirDestination {
    /// Write into `dir` (created if missing).
    pub fn new(dir: &Path) -> Self {
        DirDestination {
            dir: dir.to_path_buf(),
        }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    fn write(&self, data: &mut BlobReader<'_>) -> Result<Digest> {
        super::write_blob_file(&self.dir, data, |d| self.blob_path(d))
    }

    /// Give a manifest blob its `dir:` name.
    fn name_manifest(&self, d: &Digest, name: &str) -> Result<()> {
        let from = self.blob_path(d);
        let to = self.dir.join(name);
        fs::rename(&from, &to).map_err(|e| Error::io("rename", &to, e))
    }
}

/// The one container image a `dir:` layout can hold (its referrers come along beside it).
fn one_image(images: &[SourceImage]) -> Result<&SourceImage> {
    let containers: Vec<&SourceImage> = images
        .iter()
        .filter(|i| i.artifact_type().is_none())
        .collect();
    match containers.as_slice() {
        [img] => Ok(img),
        _ => Err(Error::Usage(format!(
            "a dir: layout holds one image, and {} were chosen: name one",
            containers.len()
        ))),
    }
}

/// The `signature-N` files for the signatures among `images` that refer to `img`: GPG
/// signatures as they are, cosign ones in c/image's sigstore JSON. Other referrers (SBOMs,
/// attestations) have no place in a `dir:` layout and are left out.
fn signature_files(
    img: &SourceImage,
    images: &[SourceImage],
    read: impl Fn(&Digest) -> Result<Vec<u8>>,
) -> Result<Vec<Vec<u8>>> {
    use base64::Engine;
    let mut files = Vec::new();
    let signed: Vec<&Digest> = std::iter::once(&img.root.digest).collect();
    for sig in images.iter().filter(|i| i.artifact_type().is_some()) {
        let subject = crate::graph::subject_from(sig.subject(), &sig.names);
        if !subject.is_some_and(|s| signed.contains(&&s)) {
            continue;
        }
        for layer in sig.platforms.iter().flat_map(|p| &p.manifest.layers) {
            if layer.media_type == media_type::GPG_SIMPLE_SIGNING {
                files.push(read(&layer.digest)?);
            } else if layer.media_type == media_type::COSIGN_SIMPLE_SIGNING {
                let doc = serde_json::json!({
                    "mimeType": layer.media_type,
                    "payload": base64::engine::general_purpose::STANDARD.encode(read(&layer.digest)?),
                    "annotations": layer.annotations.clone().unwrap_or_default(),
                });
                let mut bytes = crate::spec::SIGSTORE_SIGNATURE_MARKER.to_vec();
                bytes.extend(serde_json::to_vec(&doc).map_err(|e| Error::Usage(e.to_string()))?);
                files.push(bytes);
            }
        }
    }
    Ok(files)
}

impl ImageDestination for DirDestination {
    fn describe(&self) -> String {
        format!("the dir: layout {}", self.dir.display())
    }
    fn parallelism(&self) -> usize {
        3
    }
    fn begin(&mut self, images: &[SourceImage]) -> Result<()> {
        one_image(images).map(|_| ())
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }
    fn put_unnamed_blob(
        &self,
        _hint: &str,
        _size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<Digest> {
        self.write(data)
    }
    fn finish(self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>> {
        let img = one_image(images)?;
        for p in &img.platforms {
            if p.descriptor.digest != img.root.digest {
                let name = format!("{}.manifest.json", p.descriptor.digest.hex());
                self.name_manifest(&p.descriptor.digest, &name)?;
            }
        }
        // The signatures become files; the blobs of their manifests are not the image's.
        let read = |d: &Digest| -> Result<Vec<u8>> {
            fs::read(self.blob_path(d)).map_err(|e| Error::io("read", self.blob_path(d), e))
        };
        let signatures = signature_files(img, images, read)?;
        let own: std::collections::BTreeSet<Digest> =
            img.blobs().into_iter().map(|b| b.digest).collect();
        for other in images.iter().filter(|i| i.root.digest != img.root.digest) {
            for b in other.blobs().iter().filter(|b| !own.contains(&b.digest)) {
                let _ = fs::remove_file(self.blob_path(&b.digest));
            }
        }
        for (i, bytes) in signatures.iter().enumerate() {
            let path = self.dir.join(format!("signature-{}", i + 1));
            write_atomic(&self.dir, &path, bytes)?;
        }
        self.name_manifest(&img.root.digest, "manifest.json")?;
        write_atomic(&self.dir, &self.dir.join("version"), VERSION)?;
        sync_dir(&self.dir)?;
        Ok(vec![TagChange {
            name: None,
            image_id: img.id(),
            moved_from: None,
        }])
    }
}
