//! Filesystem snapshots out of the store: `export` (an image flattened to one tar).

use std::io::{Read, Write};

use crate::compression::{self, Compression};
use crate::error::{Error, Result};
use crate::layer::flatten::{flatten, FlattenReport};
use crate::store::{ImageRecord, Store};

/// Open a stored layer blob as an uncompressed tar stream.
pub fn open_layer(store: &Store, digest: &crate::Digest) -> Result<Box<dyn Read + Send>> {
    let file = store.open_blob(digest)?;
    let (codec, reader) = compression::auto_decoder(file)
        .map_err(|e| Error::io("read blob", store.blob_path(digest), e))?;
    if codec == Compression::None {
        return Ok(reader);
    }
    Ok(Box::new(compression::ReadAhead::new(reader, 1 << 20, 4)))
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
