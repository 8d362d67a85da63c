//! The streaming schedule of the copy engine: an archive (a file, standard input, split
//! volumes, the Docker Engine's `docker save` stream) or a layout directory is read once,
//! front to back, and every blob goes straight to the destination through the verifying
//! reader as it streams by. Nothing is staged unless the destination is the store (whose
//! commit is all or nothing) or must know every image before the first blob (a registry).
//!
//! Which images exist is only known at the end (Docker <= 24 writes `manifest.json` last),
//! so the destination learns them in [`ImageDestination::finish`], after `resolve` has
//! checked every config against its digest and every layer against its diffID; a
//! destination makes nothing visible before that.

use std::cell::RefCell;
use std::io::Read;
use std::path::PathBuf;

use crate::archive::reader::{self, deliver_bytes, ArchiveContents};
use crate::archive::resolve::{self, BlobLookup, Dialect};
use crate::archive::writer::INCREMENTAL_FILE;
use crate::compression::{self, Compression, ReadAhead};
use crate::copy::{copy_planned, CopyOptions};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{Store, TagChange};
use crate::transfer::{TransferFiles, TRANSFER_FILE, TRANSFER_SIGNATURE_FILE};
use crate::transport::staged::{StagedSource, StagingDestination};
use crate::transport::{ImageDestination, SourceImage};

/// Where an archive is read from.
pub enum ArchiveInput {
    /// A tar stream, plain or compressed (gzip, zstd, xz, bzip2: detected by magic).
    Stream(Box<dyn Read + Send>),
    /// An OCI layout, or an unpacked docker-archive, on disk.
    Dir(PathBuf),
    /// Plain split volumes, journalled so that an interrupted load resumes
    /// ([`crate::archive::resume`]).
    Resumable(Box<crate::archive::resume::Resumable>),
}

/// What a streamed copy found and did.
pub struct StreamReport {
    /// The dialect recognised.
    pub dialect: Dialect,
    /// How the whole stream was compressed.
    pub compression: Compression,
    /// The images copied (after selection and renaming).
    pub images: Vec<SourceImage>,
    /// What happened to each name at the destination.
    pub changes: Vec<TagChange>,
    /// What was done with content that could not be taken as it is (an invalid name).
    pub notes: Vec<String>,
    /// The transfer manifest the archive carries (airlock's `save` writes one).
    pub transfer: Option<TransferFiles>,
}

/// Picks and renames the images of a source once they are known.
pub type Chooser<'c> = &'c dyn Fn(Vec<SourceImage>) -> Result<Vec<SourceImage>>;

/// Read an archive once and copy the images `choose` keeps into `dest`.
///
/// `opts.progress` shows each blob as it streams by; the bytes of a stream (and of
/// resumable volumes) are the caller's to count as it reads them, those of a directory are
/// counted here.
///
/// A destination that needs the plan first ([`ImageDestination::needs_plan`]) gets it from
/// a staging area in `store`, filled by the same pass; every other destination receives each
/// blob as it streams by.
pub fn copy_archive(
    input: ArchiveInput,
    dest: Box<dyn ImageDestination + '_>,
    choose: Chooser<'_>,
    store: Option<&Store>,
    opts: &CopyOptions,
) -> Result<StreamReport> {
    if dest.needs_plan() {
        let store = store.ok_or_else(|| {
            Error::Usage(format!(
                "{} needs every image before the first blob: give a store to stage in",
                dest.describe()
            ))
        })?;
        let staging = store.staging()?;
        let stage = StagingDestination::new(&staging, Some(store));
        let (dialect, compression, contents) = read(input, &stage, opts.progress.as_ref())?;
        let lookup = BlobLookup {
            contents: &contents,
            store: Some(store),
            generated: RefCell::default(),
            notes: RefCell::default(),
        };
        let all = resolve_images(&lookup)?;
        for bytes in lookup.generated.borrow().values() {
            staging.write_bytes(bytes)?;
        }
        let images = choose(all)?;
        let notes = lookup.notes.take();
        let source = StagedSource::new(&staging, Some(store), images.clone());
        // The planned copy asks the gate, reading from the staging area; the bytes were
        // counted as the stream came in.
        let changes = copy_planned(&source, &images, dest, opts, false)?;
        return Ok(StreamReport {
            dialect,
            compression,
            images,
            changes,
            notes,
            transfer: transfer_of(&contents),
        });
    }
    let (dialect, compression, contents) = read(input, dest.as_ref(), opts.progress.as_ref())?;
    let lookup = BlobLookup {
        contents: &contents,
        store: dest.store(),
        generated: RefCell::default(),
        notes: RefCell::default(),
    };
    let all = resolve_images(&lookup)?;
    let images = choose(all)?;
    if let Some(gate) = &opts.gate {
        gate.check(&images, &|d| lookup.read(d, "a signature"))?;
    }
    // Manifests made for docker-archive images (and the empty `{}` config an artifact's
    // writer left out) go last, once the images are known.
    let generated = lookup.generated.into_inner();
    for img in &images {
        let roots = std::iter::once(&img.root.digest);
        let configs = img.platforms.iter().map(|p| &p.manifest.config.digest);
        // (and the payloads of the signatures a `dir:` layout keeps as files)
        let layers = img
            .platforms
            .iter()
            .flat_map(|p| p.manifest.layers.iter().map(|l| &l.digest));
        for d in roots
            .chain(img.platforms.iter().map(|p| &p.descriptor.digest))
            .chain(configs)
            .chain(layers)
        {
            if let Some(bytes) = generated.get(d) {
                if !dest.has_blob(d) {
                    deliver_bytes(dest.as_ref(), bytes, d, &format!("manifest {d}"))?;
                }
            }
        }
    }
    let notes = lookup.notes.take();
    let changes = dest.finish(&images)?;
    Ok(StreamReport {
        dialect,
        compression,
        images,
        changes,
        notes,
        transfer: transfer_of(&contents),
    })
}

/// The transfer manifest among an archive's files, and its signature.
fn transfer_of(contents: &ArchiveContents) -> Option<TransferFiles> {
    Some(TransferFiles {
        manifest: contents.metadata.get(TRANSFER_FILE)?.clone(),
        signature: contents.metadata.get(TRANSFER_SIGNATURE_FILE).cloned(),
    })
}

/// One pass over the input, every blob handed to `dest`.
fn read(
    input: ArchiveInput,
    dest: &dyn ImageDestination,
    progress: Option<&Progress>,
) -> Result<(Dialect, Compression, ArchiveContents)> {
    let (codec, contents) = match input {
        ArchiveInput::Dir(dir) => (
            Compression::None,
            reader::read_directory(&dir, dest, progress)?,
        ),
        ArchiveInput::Resumable(r) => {
            let r = *r;
            let mut input = r.reader;
            let from = reader::ResumeFrom {
                journal: &r.journal,
                contents: r.contents,
                seen_archive_entry: r.seen_archive_entry,
                start: r.start,
            };
            let contents = reader::read_archive_from(&mut input, dest, Some(from), progress)?;
            (Compression::None, contents)
        }
        ArchiveInput::Stream(stream) => {
            let (codec, decoded) = compression::auto_decoder(stream)
                .map_err(|e| Error::stream("read the archive", e))?;
            // Decompression runs one buffer ahead on its own thread. A plain stream is read
            // directly: hashing already has a thread of its own, and the extra copy and hop
            // cost more than they bring (measured: 12 % of the CPU of `save docker-daemon:`,
            // and load from a file went from 1.3 s to 1.0 s per GiB without it).
            let mut ahead: Box<dyn Read + Send> = if codec == Compression::None {
                decoded
            } else {
                Box::new(ReadAhead::new(decoded, 1 << 20, 4))
            };
            let contents = reader::read_archive_from(&mut ahead, dest, None, progress).map_err(
                |e| match e {
                    Error::Stream { context, source } if codec != Compression::None => {
                        Error::Decompress {
                            codec: codec.name(),
                            detail: format!("{context}: {source}"),
                        }
                    }
                    other => other,
                },
            )?;
            (codec, contents)
        }
    };
    Ok((resolve::dialect_of(&contents), codec, contents))
}

/// Every image of the archive, verified; errors say what really happened when the stream
/// stopped early or an incremental archive's base is missing.
fn resolve_images(lookup: &BlobLookup) -> Result<Vec<SourceImage>> {
    let contents = lookup.contents;
    resolve::resolve(lookup)
        .map(|(_, images)| images)
        .map_err(|e| match e {
            Error::MissingBlob { missing, .. }
                if contents.metadata.contains_key(INCREMENTAL_FILE) && !contents.cut_short =>
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
        })
}
