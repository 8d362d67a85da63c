//! The copy engine: the one path every command that moves images takes.
//!
//! It owns what containers/image's `copy/` package owns: which blobs go (each once, none the
//! destination has, foreign layers left where they are), verification (every blob through
//! one [`BlobReader`]: digest and size at the end, the diffID of layers whose source has not
//! checked it), parallelism (as many blobs at once as the destination takes, on one worker
//! pool) and progress (a [`Progress`] record, counted where bytes are read, with the blobs
//! in flight). Destinations only write.
//!
//! Two schedules share it: [`copy_images`] for sources with random access (the store, a
//! registry), where the destination learns the plan first; and [`stream`] for archives and
//! the Docker Engine, read once front to back, each blob handed on as it streams by.

pub use crate::progress;
pub mod stream;

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod wild_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::blob_reader::{BlobFacts, BlobReader, Expect};
pub use progress::{BlobProgress, Finished, InFlight, Progress};

use crate::compression::{self, Compression};
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::spec::Descriptor;
use crate::store::TagChange;
use crate::transport::{ImageDestination, ImageSource, SourceImage};

/// How a copy runs.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Where the copy reports its progress (a display reads it). A planned copy counts
    /// every blob's bytes into the total; a streamed one shows its blobs, and leaves the
    /// total to whoever reads the stream ([`Progress::add_done`]).
    pub progress: Option<Progress>,
    /// What the chosen images must pass before the destination makes any visible.
    pub gate: Option<Arc<dyn Gate>>,
}

/// A check the chosen images must pass before a destination makes any of them visible (a
/// signature policy). `read` gives the bytes of a small blob (a signature payload), checked
/// against its digest.
pub trait Gate: Send + Sync + std::fmt::Debug {
    /// Refuse the copy (nothing becomes visible) or let it go on.
    fn check(
        &self,
        images: &[SourceImage],
        read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
    ) -> Result<()>;
}

/// The most a gate reads of one blob: payloads are small JSON documents.
const GATE_READ_LIMIT: u64 = 1 << 20;

/// Ask `opts`' gate about `images`, reading blobs from `source`.
fn pass_gate(opts: &CopyOptions, source: &dyn ImageSource, images: &[SourceImage]) -> Result<()> {
    let Some(gate) = &opts.gate else {
        return Ok(());
    };
    let read = |d: &Digest| -> Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::new();
        source
            .open_blob(d)?
            .take(GATE_READ_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::stream(format!("read {d}"), e))?;
        if Digest::of(&bytes) != *d {
            return Err(Error::DigestMismatch {
                what: "blob",
                path_in_archive: source.describe(),
                expected: d.clone(),
                actual: Digest::of(&bytes),
            });
        }
        Ok(bytes)
    };
    gate.check(images, &read)
}

/// Every blob `images` need, each once, in the order a reader wants them: root, manifests,
/// configs, layers.
pub fn blobs_of(images: &[SourceImage]) -> Vec<Descriptor> {
    let mut seen = BTreeSet::new();
    images
        .iter()
        .flat_map(|i| i.blobs())
        .filter(|b| seen.insert(b.digest.clone()))
        .collect()
}

/// Layer digest -> diffID, for the layers of `images`.
fn expected_diff_ids(images: &[SourceImage]) -> BTreeMap<Digest, Digest> {
    images
        .iter()
        .flat_map(|i| &i.platforms)
        .flat_map(|p| p.manifest.layers.iter().zip(&p.diff_ids))
        .map(|(l, d)| (l.digest.clone(), d.clone()))
        .collect()
}

/// Copy `images` from `source` to `dest`: every blob once, none the destination has.
pub fn copy_images(
    source: &dyn ImageSource,
    images: &[SourceImage],
    dest: Box<dyn ImageDestination + '_>,
    opts: &CopyOptions,
) -> Result<Vec<TagChange>> {
    copy_planned(source, images, dest, opts, true)
}

/// [`copy_images`]; `counts_total` is false when the bytes were counted already, as a
/// stream staged for a registry was read.
pub(crate) fn copy_planned(
    source: &dyn ImageSource,
    images: &[SourceImage],
    mut dest: Box<dyn ImageDestination + '_>,
    opts: &CopyOptions,
    counts_total: bool,
) -> Result<Vec<TagChange>> {
    pass_gate(opts, source, images)?;
    dest.begin(images)?;
    let check_diffs = (!source.diff_ids_verified()).then(|| expected_diff_ids(images));
    let blobs: Vec<Descriptor> = blobs_of(images)
        .into_iter()
        // A foreign layer (with urls) the source lacks stays where its urls point.
        .filter(|b| source.has_blob(&b.digest) || b.urls.is_none())
        .collect();
    let dest_ref: &dyn ImageDestination = dest.as_ref();
    run_pool(dest_ref.parallelism(), &blobs, |blob| {
        let progress = opts.progress.as_ref();
        if dest_ref.has_blob(&blob.digest) {
            // Counted as done: the progress total holds every blob.
            match progress {
                Some(p) if counts_total => p.present(blob.digest.to_string(), blob.size),
                Some(p) => p.present_within(blob.digest.to_string(), blob.size),
                None => {}
            }
            return Ok(());
        }
        let ticket = progress.map(|p| match counts_total {
            true => p.start(blob.digest.to_string(), Some(blob.size)),
            false => p.start_within(blob.digest.to_string(), Some(blob.size)),
        });
        let diff = check_diffs.as_ref().and_then(|m| m.get(&blob.digest));
        let label = format!("blob {} from {}", blob.digest, source.describe());
        let mut reader = BlobReader::new(
            source.open_blob(&blob.digest)?,
            label,
            Expect {
                digest: Some(blob.digest.clone()),
                size: Some(blob.size),
                diff_id: diff.is_some(),
            },
            ticket,
        );
        dest_ref.put_blob(blob, &mut reader)?;
        let facts = reader.finish()?;
        if let Some(expected) = diff {
            check_diff_id(&facts, expected, reader.label())?;
        }
        Ok(())
    })?;
    for (blob, diff_id) in dest.uncompressed_copies() {
        put_uncompressed(source, dest.as_ref(), &blob, &diff_id)?;
    }
    dest.finish(images)
}

/// A layer's diffID, learned while it streamed, must be the one its config names.
pub(crate) fn check_diff_id(facts: &BlobFacts, expected: &Digest, label: &str) -> Result<()> {
    let actual = match &facts.diff_id {
        None => facts.digest.clone(),
        Some(Ok(d)) => d.clone(),
        Some(Err(msg)) => {
            return Err(Error::Decompress {
                codec: facts.compression.name(),
                detail: format!("{label}: {msg}"),
            })
        }
    };
    if &actual != expected {
        return Err(Error::DiffIdMismatch {
            index: 0,
            path_in_archive: label.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Write the uncompressed form of a compressed layer under its diffID. A tar header needs
/// the size first, so the layer is decompressed twice: once to count (and prove the
/// diffID), once to write.
fn put_uncompressed(
    source: &dyn ImageSource,
    dest: &dyn ImageDestination,
    blob: &Descriptor,
    diff_id: &Digest,
) -> Result<()> {
    if dest.has_blob(diff_id) {
        return Ok(());
    }
    let codec = if blob.media_type.ends_with("zstd") {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    let decode_err = |e: std::io::Error| Error::Decompress {
        codec: codec.name(),
        detail: format!("layer {}: {e}", blob.digest),
    };
    let (actual, size) =
        digest::hash_reader(compression::decoder(codec, source.open_blob(&blob.digest)?))
            .map_err(decode_err)?;
    if &actual != diff_id {
        return Err(Error::DiffIdMismatch {
            index: 0,
            path_in_archive: format!("layer {}", blob.digest),
            expected: diff_id.clone(),
            actual,
        });
    }
    let plain = Descriptor::new(crate::spec::media_type::OCI_LAYER, diff_id.clone(), size);
    let mut reader = BlobReader::new(
        Box::new(compression::decoder(codec, source.open_blob(&blob.digest)?)),
        format!("uncompressed copy of layer {}", blob.digest),
        Expect {
            digest: Some(diff_id.clone()),
            size: Some(size),
            diff_id: false,
        },
        None,
    );
    dest.put_blob(&plain, &mut reader)?;
    reader.finish().map(|_| ())
}

/// Run `work` over `items` on `workers` threads (in order on the caller's thread when one);
/// the first error stops the pool and is returned.
pub(crate) fn run_pool<T: Sync>(
    workers: usize,
    items: &[T],
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().try_for_each(work);
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() || stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = work(&items[i]) {
                    stop.store(true, Ordering::SeqCst);
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert(e);
                    }
                    return;
                }
            });
        }
    });
    match failure.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
