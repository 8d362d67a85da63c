//! A staging area as a source and as a destination: where a streaming source's blobs wait
//! when the destination must know every image before the first blob (a registry), and
//! what they are read back from.

use std::io::Read;
use std::path::PathBuf;

use super::{ImageDestination, ImageSource, SourceImage};
use crate::blob_reader::BlobReader;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{Staging, Store, TagChange};

/// Verified images over staged blobs (and blobs the store already has).
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
    fn describe(&self) -> String {
        "the staging area".into()
    }
}

/// Writes blobs into a staging area and commits nothing: the first half of a copy whose
/// destination needs the whole plan first.
pub struct StagingDestination<'a> {
    staging: &'a Staging,
    store: Option<&'a Store>,
}

impl<'a> StagingDestination<'a> {
    /// Stage into `staging`; blobs `store` has are skipped.
    pub fn new(staging: &'a Staging, store: Option<&'a Store>) -> Self {
        StagingDestination { staging, store }
    }
}

impl ImageDestination for StagingDestination<'_> {
    fn describe(&self) -> String {
        "the staging area".into()
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.staging.path_of(digest).is_some() || self.store.is_some_and(|s| s.has_blob(digest))
    }
    fn store(&self) -> Option<&Store> {
        self.store
    }
    fn put_unnamed_blob(
        &self,
        _hint: &str,
        _size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<Digest> {
        Ok(self.staging.write_verified(data)?.digest)
    }
    fn finish(self: Box<Self>, _images: &[SourceImage]) -> Result<Vec<TagChange>> {
        Ok(Vec::new())
    }
}
