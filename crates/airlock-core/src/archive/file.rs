//! An archive file as a destination: the archive writer over a file written under a
//! temporary name and renamed only when complete and on disk, over split volumes for
//! removable media, or over standard output.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::writer::{ArchiveFormat, ArchiveWriter};
use crate::blob_reader::BlobReader;
use crate::compression::{self, Compression};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::spec::Descriptor;
use crate::store::durable::SyncingFile;
use crate::store::TagChange;
use crate::transfer::{Signer, TransferFiles, TransferOptions};
use crate::transport::inventory::Inventory;
use crate::transport::volumes::{self, SharedSplitWriter};
use crate::transport::{ImageDestination, SourceImage};

/// Where the archive's bytes go.
#[derive(Clone, Debug)]
pub enum ArchiveTarget {
    /// One file, replaced atomically.
    File(PathBuf),
    /// Volumes `PATH.000`, `PATH.001`, ... of at most this many bytes.
    Split(PathBuf, u64),
    /// Standard output (the caller refuses a terminal).
    Stdout,
}

/// How an archive is written.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// `docker` (hybrid, loads everywhere) or `oci`.
    pub format: ArchiveFormat,
    /// Compression of the whole stream.
    pub compression: Compression,
    /// Compression level.
    pub level: Option<i32>,
    /// Leave out the layers this inventory lists (an incremental archive).
    pub incremental: Option<Inventory>,
    /// The transfer manifest's signer and verdicts.
    pub transfer: TransferOptions,
    /// With `incremental`: ship new layers as deltas against the far side's layers,
    /// reading both from this store.
    pub deltas_from: Option<crate::store::Store>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            format: ArchiveFormat::Docker,
            compression: Compression::None,
            level: None,
            incremental: None,
            transfer: TransferOptions::default(),
            deltas_from: None,
        }
    }
}

enum Output {
    File(tempfile::NamedTempFile, PathBuf),
    /// A device or pipe (`-o /dev/null`, a FIFO): written as it is, never replaced.
    Special(PathBuf),
    Split(SharedSplitWriter),
    Stdout,
}

/// True when `path` exists and is not a regular file: renaming over it would replace a
/// device or pipe with a file.
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The archive writer plus what must happen to its output once it is complete.
pub struct ArchiveFileDestination {
    writer: ArchiveWriter,
    output: Output,
    wrote: Arc<Mutex<Vec<PathBuf>>>,
    /// The SHA-256 of a single archive file, as it is written.
    hashed: Option<Arc<Mutex<Hasher>>>,
    transfer: TransferOptions,
}

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

impl ArchiveFileDestination {
    /// Start an archive at `target`.
    pub fn create(target: &ArchiveTarget, opts: &ArchiveOptions) -> Result<Self> {
        let mut hashed = None;
        let (out, output): (Box<dyn Write + Send>, Output) = match target {
            ArchiveTarget::File(path) if is_special(path) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io("open", path, e))?;
                (
                    Box::new(BufWriter::with_capacity(1 << 20, f)),
                    Output::Special(path.clone()),
                )
            }
            ArchiveTarget::File(path) => {
                let dir = dir_of(path);
                hashed = Some(Arc::default());
                let tmp = crate::store::durable::output_temp(dir, "")
                    .map_err(|e| Error::io("create a file in", dir, e))?;
                let file = tmp
                    .as_file()
                    .try_clone()
                    .map_err(|e| Error::io("open", tmp.path(), e))?;
                // Writeback runs in the background so the final fsync has little left to do.
                let syncing =
                    SyncingFile::new(file).map_err(|e| Error::io("open", tmp.path(), e))?;
                let hashing = Hashing {
                    inner: syncing,
                    hasher: hashed.clone().unwrap_or_default(),
                };
                (
                    Box::new(BufWriter::with_capacity(1 << 20, hashing)),
                    Output::File(tmp, path.clone()),
                )
            }
            ArchiveTarget::Split(path, size) => {
                let volumes = SharedSplitWriter::new(path, *size);
                (
                    Box::new(BufWriter::with_capacity(1 << 20, volumes.clone())),
                    Output::Split(volumes),
                )
            }
            ArchiveTarget::Stdout => (
                Box::new(BufWriter::with_capacity(1 << 20, StdoutWriter)),
                Output::Stdout,
            ),
        };
        let mut writer = ArchiveWriter::new(
            out,
            opts.format,
            opts.compression,
            opts.level,
            compression::default_threads(),
        )?;
        if let Some(inv) = &opts.incremental {
            writer = writer.incremental(inv.blobs.clone(), inv.digest.clone());
            if let Some(store) = &opts.deltas_from {
                writer = writer.with_deltas(store.clone(), inv.layers.clone());
            }
        }
        Ok(ArchiveFileDestination {
            writer: writer.with_transfer(opts.transfer.clone()),
            output,
            wrote: Arc::default(),
            hashed,
            transfer: opts.transfer.clone(),
        })
    }

    /// The transfer manifest written and its signature, known once the copy has finished.
    pub fn transfer_written(&self) -> Arc<Mutex<Option<TransferFiles>>> {
        self.writer.transfer_written()
    }

    /// The files written, known once the copy has finished (volumes, or the one file).
    pub fn written_files(&self) -> Arc<Mutex<Vec<PathBuf>>> {
        self.wrote.clone()
    }
}

impl ImageDestination for ArchiveFileDestination {
    fn describe(&self) -> String {
        match &self.output {
            Output::File(_, p) | Output::Special(p) => format!("the archive {}", p.display()),
            Output::Split(_) => "the split archive".into(),
            Output::Stdout => "the archive on standard output".into(),
        }
    }
    fn begin(&mut self, images: &[SourceImage]) -> Result<()> {
        self.writer.begin(images)
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.writer.has_blob(digest)
    }
    fn uncompressed_copies(&self) -> Vec<(Descriptor, Digest)> {
        self.writer.uncompressed_copies()
    }
    fn put_blob(&self, blob: &Descriptor, data: &mut BlobReader<'_>) -> Result<()> {
        self.writer.put_blob(blob, data)
    }
    fn put_unnamed_blob(&self, hint: &str, size: u64, data: &mut BlobReader<'_>) -> Result<Digest> {
        self.writer.put_unnamed_blob(hint, size, data)
    }
    fn finish(self: Box<Self>, images: &[SourceImage]) -> Result<Vec<TagChange>> {
        let ArchiveFileDestination {
            writer,
            output,
            wrote,
            hashed,
            transfer,
        } = *self;
        let written = writer.transfer_written();
        let changes = Box::new(writer).finish(images)?;
        let written = written.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let paths = match output {
            Output::File(tmp, path) => {
                // Signed: the manifest, the archive's checksum and their signatures go
                // beside it first, so a published archive never lacks them.
                if let (Some(signer), Some(hasher)) = (&transfer.signer, hashed) {
                    let digest =
                        std::mem::take(&mut *hasher.lock().unwrap_or_else(|p| p.into_inner()));
                    let file = path.file_name().unwrap_or_default().to_string_lossy();
                    let sums = format!("{}  {file}\n", digest.finish().hex());
                    let mut side =
                        side_files(&path, written.as_ref(), &sums, Some(signer.as_ref()))?;
                    side.push((volumes::sums_path(&path), sums.into_bytes()));
                    for (p, bytes) in side {
                        volumes::publish_bytes(&p, &bytes)?;
                    }
                }
                crate::store::durable::publish(tmp, &path)
                    .map_err(|e| Error::io("write the output to", &path, e))?;
                vec![path]
            }
            Output::Special(path) => vec![path],
            Output::Split(split) => {
                let base = split.base();
                let signer = transfer.signer.as_deref();
                split.finish(&|sums| side_files(&base, written.as_ref(), sums, signer))?
            }
            Output::Stdout => Vec::new(),
        };
        if let Ok(mut w) = wrote.lock() {
            *w = paths;
        }
        Ok(changes)
    }
}

/// What goes beside an archive at `base`: its transfer manifest (with its signature) and,
/// when signed, the signature over its checksums `sums`.
fn side_files(
    base: &Path,
    transfer: Option<&TransferFiles>,
    sums: &str,
    signer: Option<&dyn Signer>,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    if let Some(t) = transfer {
        files.push((volumes::beside(base, TRANSFER_SUFFIX), t.manifest.clone()));
        if let Some(sig) = &t.signature {
            files.push((
                volumes::beside(base, TRANSFER_SIGNATURE_SUFFIX),
                sig.clone(),
            ));
        }
    }
    if let Some(s) = signer {
        let sums_sig = volumes::beside(base, ".SHA256SUMS.sig");
        files.push((sums_sig, s.sign_detached(sums.as_bytes())?.into_bytes()));
    }
    Ok(files)
}

/// Suffix of the transfer manifest beside an archive (`X.transfer.json`).
pub const TRANSFER_SUFFIX: &str = ".transfer.json";
/// Suffix of its signature beside an archive.
pub const TRANSFER_SIGNATURE_SUFFIX: &str = ".transfer.json.sig";

/// Hashes what passes through to `inner`.
struct Hashing<W> {
    inner: W,
    hasher: Arc<Mutex<Hasher>>,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Standard output without its line buffering.
struct StdoutWriter;

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}
