//! The delta files of an incremental archive (`deltas/*.fix`, `deltas/*.patch`): each
//! layer is rebuilt from the store's copy of its reference as its patch streams by.

use std::io::{self, Read};

use super::{read_err, Ingest};
use crate::archive::writer::{IncrementalInfo, INCREMENTAL_FILE};
use crate::compression::Compression;
use crate::delta::DeltaLayer;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Corrections larger than this are refused: real ones are well under 1% of their layer.
const MAX_CORRECTIONS: u64 = 256 << 20;

/// The archive's deltas (read from its incremental marker once it streamed by).
///
/// Corrections wait for their patch in `ArchiveContents::metadata` under their path, and a
/// rebuilt layer is recorded under its patch's path with `blobs/sha256/<hex>` linked to it:
/// both are what the resume journal logs of an entry, so a resumed load goes on from
/// either.
#[derive(Default)]
pub(super) struct Deltas {
    layers: Option<Vec<DeltaLayer>>,
}

impl Ingest<'_> {
    /// The deltas the incremental marker lists (none without one).
    fn delta_layers(&mut self) -> Result<&[DeltaLayer]> {
        if self.deltas.layers.is_none() {
            let layers = match self.contents.metadata.get(INCREMENTAL_FILE) {
                Some(bytes) => {
                    serde_json::from_slice::<IncrementalInfo>(bytes)
                        .map_err(|e| Error::BadMetadata {
                            path_in_archive: INCREMENTAL_FILE.into(),
                            what: "incremental marker",
                            detail: e.to_string(),
                        })?
                        .deltas
                }
                None => Vec::new(),
            };
            self.deltas.layers = Some(layers);
        }
        Ok(self.deltas.layers.as_deref().unwrap_or_default())
    }

    /// Once the incremental marker is read: refuse at once what could not be rebuilt, before
    /// any blob is staged.
    pub(super) fn check_deltas(&mut self) -> Result<()> {
        let store = self.dest.delta_references();
        let to = self.dest.describe();
        let layers = self.delta_layers()?;
        if layers.is_empty() {
            return Ok(());
        }
        let Some(store) = store else {
            return Err(Error::DeltaNeedsStore {
                count: layers.len(),
                to,
            });
        };
        match layers.iter().find(|d| !store.has_blob(&d.reference)) {
            Some(d) => Err(Error::DeltaReferenceMissing {
                layer: d.digest.clone(),
                reference: d.reference.clone(),
                image: d.reference_image.clone(),
            }),
            None => Ok(()),
        }
    }

    /// One file under `deltas/`.
    pub(super) fn delta_file(
        &mut self,
        path: String,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<()> {
        let Some(delta) = self
            .delta_layers()?
            .iter()
            .find(|d| d.patch_path() == path || d.fix_path() == path)
            .cloned()
        else {
            return Err(Error::BadMetadata {
                path_in_archive: path,
                what: "delta",
                detail: format!("{INCREMENTAL_FILE} does not list it"),
            });
        };
        let have = self.contents.delivered.contains(&delta.digest)
            || self.store.is_some_and(|s| s.blob_is_intact(&delta.digest));
        if path == delta.fix_path() {
            if size > MAX_CORRECTIONS {
                return Err(Error::BadMetadata {
                    path_in_archive: path,
                    what: "delta",
                    detail: format!(
                        "{size} bytes of corrections is far more than any real layer needs"
                    ),
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| read_err(&path, e))?;
            if !have {
                self.contents.metadata.insert(path, bytes);
            }
            return Ok(());
        }
        if have {
            io::copy(reader, &mut io::sink()).map_err(|e| read_err(&path, e))?;
        } else {
            let store = self
                .dest
                .delta_references()
                .ok_or_else(|| Error::DeltaNeedsStore {
                    count: 1,
                    to: self.dest.describe(),
                })?;
            let fix = self.contents.metadata.remove(&delta.fix_path());
            if delta.corrections.is_some() && fix.is_none() {
                return Err(Error::DeltaBroken {
                    layer: delta.digest.clone(),
                    detail: format!(
                        "its corrections {} are not before its patch",
                        delta.fix_path()
                    ),
                });
            }
            crate::delta::rebuild(store, &delta, fix.as_deref(), reader, self.dest)?;
        }
        let d = delta.digest.clone();
        let codec = if delta.corrections.is_some() {
            Compression::Gzip
        } else {
            Compression::None
        };
        self.contents.compression.insert(d.clone(), codec);
        self.contents
            .diff_ids
            .insert(d.clone(), Ok(delta.diff_id.clone()));
        self.contents.links.insert(blob_path_of(&d), path.clone());
        self.record(path, d, delta.size);
        Ok(())
    }
}

/// Where the layer a delta rebuilds is named in the archive's manifests.
pub(crate) fn blob_path_of(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}
