//! Images whose blobs were written to a staging area (or are already in the store): what
//! every streaming source (an archive, the Docker Engine, a registry pull) becomes once read.

use std::io::Read;
use std::path::PathBuf;

use super::{ImageSource, SourceImage};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{Staging, Store};

/// Verified images over staged blobs.
pub struct StagedSource<'a> {
    staging: &'a Staging,
    store: Option<&'a Store>,
    images: Vec<SourceImage>,
}

impl<'a> StagedSource<'a> {
    /// Images whose blobs are in `staging` or `store`.
    pub fn new(staging: &'a Staging, store: Option<&'a Store>, images: Vec<SourceImage>) -> Self {
        StagedSource {
            staging,
            store,
            images,
        }
    }

    fn path(&self, digest: &Digest) -> Option<PathBuf> {
        self.staging.path_of(digest).or_else(|| {
            self.store
                .filter(|s| s.has_blob(digest))
                .map(|s| s.blob_path(digest))
        })
    }
}

impl ImageSource for StagedSource<'_> {
    fn images(&self) -> &[SourceImage] {
        &self.images
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        let p = self.path(digest).ok_or_else(|| Error::MissingBlob {
            referenced_by: "the images being copied".into(),
            missing: digest.to_string(),
        })?;
        let f = std::fs::File::open(&p).map_err(|e| Error::io("open", &p, e))?;
        Ok(Box::new(f))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).is_some()
    }
    fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        self.path(digest)
    }
}
