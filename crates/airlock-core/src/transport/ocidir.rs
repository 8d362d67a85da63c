//! An OCI image layout directory as a destination (`oci:DIR`), the way skopeo and umoci
//! read it: blobs under `blobs/sha256`, one `index.json` descriptor per name with the name
//! in `org.opencontainers.image.ref.name`. Existing contents are kept; a name already there
//! moves to the new image.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{ImageDestination, SourceImage};
use crate::blob_reader::BlobReader;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::{self, Index, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::store::{sync_dir, write_atomic, TagChange};

/// Writes images into an OCI layout directory.
pub struct OciDirDestination {
    dir: PathBuf,
    ref_name: Option<String>,
}

impl OciDirDestination {
    /// Write into `dir` (created if missing).
    pub fn new(dir: &Path) -> Self {
        OciDirDestination {
            dir: dir.to_path_buf(),
            ref_name: None,
        }
    }

    /// Record the (single) image under exactly this `ref.name` (`oci:DIR:app` writes `app`,
    /// as skopeo and umoci expect), instead of its full image names.
    pub fn with_ref_name(mut self, name: &str) -> Self {
        self.ref_name = Some(name.to_string());
        self
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }
}

impl OciDirDestination {
    /// Write a blob under a temporary name, then rename it to the digest the reader proved.
    fn write(&self, data: &mut BlobReader<'_>) -> Result<Digest> {
        super::write_blob_file(&self.dir.join("blobs/sha256"), data, |d| self.blob_path(d))
    }
}

impl ImageDestination for OciDirDestination {
    fn describe(&self) -> String {
        format!("the OCI layout {}", self.dir.display())
    }

    fn parallelism(&self) -> usize {
        3
    }

    fn begin(&mut self, _images: &[SourceImage]) -> Result<()> {
        let blobs = self.dir.join("blobs/sha256");
        super::refuse_linked_dirs(&self.dir, &["blobs", "blobs/sha256"])?;
        fs::create_dir_all(&blobs).map_err(|e| Error::io("create", &blobs, e))?;
        Ok(())
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
        let blobs = self.dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io("create", &blobs, e))?;
        sync_dir(&blobs)?;
        let index_path = self.dir.join("index.json");
        let mut index: Index = match fs::read(&index_path) {
            Ok(b) => spec::parse_json(&b, "index.json", "OCI image index")?,
            Err(_) => Index::empty(),
        };
        let mut changes = Vec::new();
        for img in images {
            if img.names.is_empty() {
                index.manifests.push(img.root.clone());
            }
            if let Some(ref_name) = &self.ref_name {
                index
                    .manifests
                    .retain(|d| d.annotation(ANNOTATION_REF_NAME) != Some(ref_name.as_str()));
                let mut d = img.root.clone();
                let mut ann = BTreeMap::from([(ANNOTATION_REF_NAME.to_string(), ref_name.clone())]);
                if let Some(n) = img.names.first() {
                    ann.insert(ANNOTATION_IMAGE_NAME.to_string(), n.to_string());
                }
                d.annotations = Some(ann);
                index.manifests.push(d);
                changes.push(TagChange {
                    name: img.names.first().cloned(),
                    image_id: img.id(),
                    moved_from: None,
                });
                continue;
            }
            for name in &img.names {
                let full = name.to_string();
                let moved_from = index
                    .manifests
                    .iter()
                    .position(|d| d.annotation(ANNOTATION_REF_NAME) == Some(full.as_str()))
                    .map(|i| index.manifests.remove(i).digest);
                let mut d = img.root.clone();
                d.annotations = Some(BTreeMap::from([
                    (ANNOTATION_REF_NAME.to_string(), full.clone()),
                    (ANNOTATION_IMAGE_NAME.to_string(), full),
                ]));
                index.manifests.push(d);
                changes.push(TagChange {
                    name: Some(name.clone()),
                    image_id: img.id(),
                    moved_from: moved_from.filter(|m| m != &img.root.digest),
                });
            }
        }
        let bytes = serde_json::to_vec(&index).map_err(|e| Error::Usage(e.to_string()))?;
        write_atomic(&self.dir, &index_path, &bytes)?;
        write_atomic(
            &self.dir,
            &self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(changes)
    }
}
