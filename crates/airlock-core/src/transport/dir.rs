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

/// The one image a `dir:` layout can hold.
fn one_image(images: &[SourceImage]) -> Result<&SourceImage> {
    match images {
        [img] => Ok(img),
        _ => Err(Error::Usage(format!(
            "a dir: layout holds one image, and {} were chosen: name one",
            images.len()
        ))),
    }
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
