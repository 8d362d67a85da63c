//! Image archives: reading every dialect in the wild, writing the one that loads everywhere.
//!
//! Reading is one pass ([`reader`]) followed by resolution ([`resolve`]); the result is an
//! [`ArchiveSource`], an ordinary [`ImageSource`] over verified, staged blobs. Writing is
//! [`writer::ArchiveWriter`], an [`crate::transport::ImageDestination`].

pub mod reader;
pub mod resolve;
pub mod sniff;
pub mod tarball;
#[cfg(test)]
mod tests;
pub mod writer;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use resolve::Dialect;

use crate::compression::{self, Compression, ReadAhead};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{Staging, Store};
use crate::transport::staged::StagedSource;
use crate::transport::{ImageSource, SourceImage};

/// An archive read into a staging area: its images, verified, and their blobs.
pub struct ArchiveSource<'a> {
    inner: StagedSource<'a>,
    dialect: Dialect,
    compression: Compression,
}

impl<'a> ArchiveSource<'a> {
    /// Read an archive stream (plain or gzip/zstd/xz/bzip2, detected by magic bytes).
    /// Blobs `store` already has are not written again.
    pub fn read_stream(
        input: Box<dyn Read + Send>,
        staging: &'a Staging,
        store: Option<&'a Store>,
    ) -> Result<Self> {
        let (codec, decoded) =
            compression::auto_decoder(input).map_err(|e| Error::stream("read the archive", e))?;
        // Decompression (or the disk read) runs one buffer ahead on its own thread.
        let mut ahead = ReadAhead::new(decoded, 1 << 20, 4);
        let contents = reader::read_archive(&mut ahead, staging, store).map_err(|e| match e {
            Error::Stream { context, source } if codec != Compression::None => Error::Decompress {
                codec: codec.name(),
                detail: format!("{context}: {source}"),
            },
            other => other,
        })?;
        Self::resolve(contents, staging, store, codec)
    }

    /// Read an OCI layout (or unpacked docker-archive) directory.
    pub fn read_dir(dir: &Path, staging: &'a Staging, store: Option<&'a Store>) -> Result<Self> {
        let contents = reader::read_directory(dir, staging, store)?;
        Self::resolve(contents, staging, store, Compression::None)
    }

    fn resolve(
        contents: reader::ArchiveContents,
        staging: &'a Staging,
        store: Option<&'a Store>,
        compression: Compression,
    ) -> Result<Self> {
        let lookup = resolve::BlobLookup {
            contents: &contents,
            staging,
            store,
        };
        let (dialect, images) = resolve::resolve(&lookup).map_err(|e| match e {
            // Something is missing and the stream stopped early: say what really happened.
            Error::MissingBlob { missing, .. }
                if contents.metadata.contains_key(writer::INCREMENTAL_FILE)
                    && !contents.cut_short =>
            {
                Error::IncrementalBaseMissing { missing }
            }
            Error::NoImage { .. } | Error::MissingBlob { .. } if contents.cut_short => {
                Error::Truncated {
                    detail: format!(
                        "the stream ended after {} files without the end-of-archive marker ({e})",
                        contents.files.len() + contents.metadata.len()
                    ),
                }
            }
            other => other,
        })?;
        Ok(ArchiveSource {
            inner: StagedSource::new(staging, store, images),
            dialect,
            compression,
        })
    }

    /// The dialect recognised.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// How the whole stream was compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

impl ImageSource for ArchiveSource<'_> {
    fn images(&self) -> &[SourceImage] {
        self.inner.images()
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.open_blob(digest)
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.inner.has_blob(digest)
    }
    fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        self.inner.blob_file(digest)
    }
}
