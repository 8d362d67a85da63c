//! The embedded store as a source (`save`) and as a destination (`load`).

use std::io::Read;

use super::{ImageDestination, ImageSource, PlatformManifest, SourceImage};
use crate::blob_reader::BlobReader;
use crate::digest::Digest;
use crate::error::Result;
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
    SourceImage {
        names: r.names,
        root: r.root,
        generated: r.generated,
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
    fn describe(&self) -> String {
        format!("the store {}", self.store.root().display())
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
        // (`Staging` is Sync: its fsync queue sits behind a mutex.)
        StoreDestination { store, staging }
    }
}

impl ImageDestination for StoreDestination<'_> {
    fn describe(&self) -> String {
        format!("the store {}", self.store.root().display())
    }
    fn parallelism(&self) -> usize {
        // Staged files are independent; a lazy registry source fetches several at once.
        3
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest) || self.staging.path_of(digest).is_some()
    }
    fn store(&self) -> Option<&Store> {
        Some(self.store)
    }
    fn put_unnamed_blob(
        &self,
        _hint: &str,
        _size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<Digest> {
        Ok(self.staging.write_verified(data)?.digest)
    }
    fn finish(self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>> {
        let new: Vec<NewImage> = images
            .iter()
            .map(|i| NewImage {
                root: i.root.clone(),
                names: i.names.clone(),
                generated: i.generated,
                id: i.id(),
            })
            .collect();
        self.store.commit(self.staging, &new)
    }
}
