//! The embedded store as a source (`save`) and as a destination (`load`).

use std::io::Read;
use std::path::PathBuf;

use super::{ImageDestination, ImageSource, PlatformManifest, SourceImage};
use crate::digest::Digest;
use crate::error::Result;
use crate::spec::Descriptor;
use crate::store::{ImageRecord, NewImage, Staging, Store, StoreLock, TagChange};

/// The store as a source of images. Holds the read lock so `gc` cannot remove blobs
/// while they are being read.
pub struct StoreSource<'a> {
    store: &'a Store,
    images: Vec<SourceImage>,
    _lock: StoreLock,
}

impl<'a> StoreSource<'a> {
    /// Open every image of the store as a source.
    pub fn new(store: &'a Store) -> Result<Self> {
        let lock = store.read_lock()?;
        let images = store.images()?.into_iter().map(source_image).collect();
        Ok(StoreSource {
            store,
            images,
            _lock: lock,
        })
    }
}

fn source_image(r: ImageRecord) -> SourceImage {
    let id = r.id();
    SourceImage {
        names: r.names,
        root: r.root,
        generated: r.generated,
        id,
        platforms: r
            .platforms
            .into_iter()
            .map(|p| PlatformManifest {
                descriptor: p.descriptor,
                manifest: p.manifest,
                diff_ids: p.config.rootfs.diff_ids,
            })
            .collect(),
    }
}

impl ImageSource for StoreSource<'_> {
    fn images(&self) -> &[SourceImage] {
        &self.images
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.store.open_blob(digest)?))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest)
    }
    fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        self.store
            .has_blob(digest)
            .then(|| self.store.blob_path(digest))
    }
}

/// The store as a destination: blobs go to a staging area, `finish` commits them and the
/// names in one step.
pub struct StoreDestination<'a> {
    store: &'a Store,
    staging: &'a Staging,
}

impl<'a> StoreDestination<'a> {
    /// Write into `store` through `staging` (which may already hold blobs a streaming source
    /// staged there).
    pub fn new(store: &'a Store, staging: &'a Staging) -> Self {
        StoreDestination { store, staging }
    }
}

impl ImageDestination for StoreDestination<'_> {
    fn begin(&mut self, _images: &[SourceImage], _source: &dyn ImageSource) -> Result<()> {
        Ok(())
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest) || self.staging.path_of(digest).is_some()
    }
    fn put_blob(&mut self, blob: &Descriptor, source: &dyn ImageSource) -> Result<()> {
        let mut reader = source.open_blob(&blob.digest)?;
        self.staging
            .write_blob(&mut reader, Some(&blob.digest), &blob.digest.to_string())?;
        Ok(())
    }
    fn finish(self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>> {
        let new: Vec<NewImage> = images
            .iter()
            .map(|i| NewImage {
                root: i.root.clone(),
                names: i.names.clone(),
                generated: i.generated,
                id: i.id.clone(),
            })
            .collect();
        self.store.commit(self.staging, &new)
    }
}
