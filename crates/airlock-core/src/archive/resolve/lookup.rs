//! Where `resolve` reads blobs: what the pass kept in memory, then the destination's store.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;

use crate::archive::reader::ArchiveContents;
use crate::compression::{self, Compression};
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::store::{StagedBlob, Store};

/// Where blobs can be read while resolving: what the pass kept in memory, then the store
/// (for blobs it skipped because the store has them, or an incremental archive left out).
pub(crate) struct BlobLookup<'a> {
    pub contents: &'a ArchiveContents,
    pub store: Option<&'a Store>,
    /// Manifests made here for docker-archive images (they have none), by digest.
    pub generated: RefCell<BTreeMap<Digest, Vec<u8>>>,
    /// What was done with names that could not be taken as they are, for the user.
    pub notes: RefCell<Vec<String>>,
}

impl BlobLookup<'_> {
    pub(crate) fn read(&self, d: &Digest, label: &str) -> Result<Vec<u8>> {
        if let Some(b) = self.contents.small.get(d) {
            return Ok(b.clone());
        }
        if let Some(b) = self.generated.borrow().get(d) {
            return Ok(b.clone());
        }
        if let Some(s) = self.store.filter(|s| s.has_blob(d)) {
            return s.read_blob(d);
        }
        let missing = || Error::MissingBlob {
            referenced_by: label.to_string(),
            missing: d.to_string(),
        };
        if self.contents.delivered.contains(d) {
            // Passed through to the destination, but too large to be a config or manifest.
            return Err(Error::BadMetadata {
                path_in_archive: d.to_string(),
                what: "JSON document",
                detail: "it is too large or does not start with '{'".into(),
            });
        }
        Err(missing())
    }

    pub(super) fn has(&self, d: &Digest) -> bool {
        self.contents.delivered.contains(d) || self.store.is_some_and(|s| s.has_blob(d))
    }

    /// The file at `path`, or, for a `blobs/sha256/<hex>` path an incremental archive left
    /// out, the store's copy.
    pub(super) fn file(&self, path: &str) -> Option<StagedBlob> {
        if let Some(f) = self.contents.file(path) {
            return Some(f.clone());
        }
        let d = path
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex)?;
        let size = self.store?.blob_size(&d)?;
        Some(StagedBlob { digest: d, size })
    }

    pub(super) fn read_path(&self, path: &str, referenced_by: &str) -> Result<(Digest, Vec<u8>)> {
        let f = self.file(path).ok_or_else(|| Error::MissingBlob {
            referenced_by: referenced_by.to_string(),
            missing: path.to_string(),
        })?;
        Ok((f.digest.clone(), self.read(&f.digest, path)?))
    }

    /// Compression of a blob and its diffID: learned while it streamed by, or computed now
    /// from the store's copy.
    pub(super) fn layer_facts(&self, d: &Digest, label: &str) -> Result<(Compression, Digest)> {
        if let Some(c) = self.contents.compression.get(d) {
            return match c {
                Compression::Gzip | Compression::Zstd => match self.contents.diff_ids.get(d) {
                    Some(Ok(diff)) => Ok((*c, diff.clone())),
                    Some(Err(msg)) => Err(Error::Decompress {
                        codec: c.name(),
                        detail: format!("{label}: {msg}"),
                    }),
                    None => self.compute_facts(d, label),
                },
                _ => Ok((*c, d.clone())),
            };
        }
        if self.contents.small.contains_key(d) {
            return Ok((Compression::None, d.clone()));
        }
        self.compute_facts(d, label)
    }

    fn compute_facts(&self, d: &Digest, label: &str) -> Result<(Compression, Digest)> {
        let path = self
            .store
            .filter(|s| s.has_blob(d))
            .map(|s| s.blob_path(d))
            .ok_or_else(|| Error::MissingBlob {
                referenced_by: label.to_string(),
                missing: d.to_string(),
            })?;
        let file = fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let (magic, rest) = compression::peek(file, compression::MAGIC_LEN)
            .map_err(|e| Error::io("read", &path, e))?;
        let c = Compression::detect(&magic);
        if c == Compression::None {
            return Ok((c, d.clone()));
        }
        let (diff, _) =
            digest::hash_reader(compression::decoder(c, rest)).map_err(|e| Error::Decompress {
                codec: c.name(),
                detail: format!("{label}: {e}"),
            })?;
        Ok((c, diff))
    }
}
