//! Filesystem snapshots out of the store: `export` (an image flattened to one tar).

use std::io::{Read, Write};

use crate::compression::{self, Compression};
use crate::error::{Error, Result};
use crate::layer::flatten::{flatten, FlattenReport};
use crate::store::{ImageRecord, Store, VerifiedAtEnd};

/// Open a stored layer blob as an uncompressed tar stream. Its end is reported only once
/// the blob proved to match its digest ([`Error::DamagedBlob`] otherwise), so a consumer
/// that reads it to the end never uses damaged content unnoticed.
pub fn open_layer(store: &Store, digest: &crate::Digest) -> Result<Box<dyn Read + Send>> {
    let (blob, check) = store.open_checked_blob(digest)?;
    let (codec, reader) = compression::auto_decoder(blob)
        .map_err(|e| Error::io("read blob", store.blob_path(digest), e))?;
    let reader = if codec == Compression::None {
        reader
    } else {
        Box::new(compression::ReadAhead::new(reader, 1 << 20, 4))
    };
    Ok(Box::new(VerifiedAtEnd::new(reader, check)))
}

/// Write the image's root filesystem (its layers flattened) as one tar to `out`.
pub fn export_image(
    store: &Store,
    image: &ImageRecord,
    out: &mut dyn Write,
) -> Result<FlattenReport> {
    image.require_image("export")?;
    let _lock = store.read_lock()?;
    let layers: Vec<crate::Digest> = image
        .primary()
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect();
    flatten(layers.len(), &mut |i| open_layer(store, &layers[i]), out)
}
