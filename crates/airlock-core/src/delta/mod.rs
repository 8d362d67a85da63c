//! Sub-layer deltas: ship the difference between a new layer and one the far side holds,
//! and rebuild the new layer there byte for byte, so every digest (blob, diffID, manifest,
//! signature) stays what the registry had.
//!
//! A delta is two files in the archive, written and read in this order:
//! - `deltas/<hex>.fix`: the corrections that turn the layer's tar back into its exact
//!   gzip stream ([`deflate`]); absent for an uncompressed layer;
//! - `deltas/<hex>.patch`: the layer's tar as a zstd delta against the reference's tar
//!   ([`patch`]).
//!
//! On the far side the reference blob is decompressed to a private file and mapped, the
//! patch is decoded against it, the tar's SHA-256 is checked against the diffID, the gzip
//! stream is rebuilt piece by piece, and only a blob whose digest matches enters the
//! staging area. zstd, xz and bzip2 layers ship whole: nothing rebuilds their bytes yet.

pub mod deflate;
pub mod patch;
mod rebuild;

pub use rebuild::rebuild;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compression::{self, Compression};
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::transport::inventory::LayerPrint;

/// Where a delta's files are in an archive.
pub const DIR: &str = "deltas/";
/// Layers smaller than this ship whole: a delta would save a few KiB for a rebuild.
pub const MIN_LAYER: u64 = 64 << 10;

/// One layer an archive ships as a delta (recorded in `airlock-incremental.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeltaLayer {
    /// The layer blob it rebuilds.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The digest of its uncompressed tar.
    pub diff_id: Digest,
    /// The far side's layer blob it is a delta against.
    pub reference: Digest,
    /// That layer's diffID.
    pub reference_diff_id: Digest,
    /// The image the far side holds that layer in.
    pub reference_image: String,
    /// Digest and size of the patch file.
    pub patch: Digest,
    /// Size of the patch file.
    pub patch_size: u64,
    /// Digest of the corrections file (none for an uncompressed layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrections: Option<Digest>,
    /// Size of the corrections file.
    #[serde(default)]
    pub corrections_size: u64,
}

impl DeltaLayer {
    /// The archive path of its patch.
    pub fn patch_path(&self) -> String {
        format!("{DIR}{}.patch", self.digest.hex())
    }
    /// The archive path of its corrections.
    pub fn fix_path(&self) -> String {
        format!("{DIR}{}.fix", self.digest.hex())
    }
    /// Bytes it puts in the archive.
    pub fn shipped(&self) -> u64 {
        self.patch_size + self.corrections_size
    }
}

/// Bytes made a piece at a time and read out of a buffer (the rebuilt gzip stream, the
/// patched tar).
#[derive(Default)]
pub(crate) struct Piece {
    bytes: Vec<u8>,
    pos: usize,
}

impl Piece {
    /// Everything made so far has been read.
    pub(crate) fn is_spent(&self) -> bool {
        self.pos == self.bytes.len()
    }
    /// The buffer, emptied, for the next piece.
    pub(crate) fn refill(&mut self) -> &mut Vec<u8> {
        self.pos = 0;
        self.bytes.clear();
        &mut self.bytes
    }
    /// Copy what is left of the piece into `buf`, as much as fits.
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.bytes.len() - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        n
    }
}

/// A delta made on the near side: its record and its two files, removed when dropped.
pub struct PreparedDelta {
    /// What the archive records about it.
    pub record: DeltaLayer,
    /// The patch file.
    pub patch: tempfile::TempPath,
    /// The corrections file.
    pub fix: Option<tempfile::TempPath>,
}

/// Copies what it reads into a hasher.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("delta-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a file in", dir, e))
}

/// Decompress the store's layer `digest` into a private file under `dir`, checking it is
/// the tar `diff_id` names.
pub(crate) fn plaintext_of(
    store: &Store,
    digest: &Digest,
    diff_id: &Digest,
    dir: &Path,
) -> Result<tempfile::TempPath> {
    let path = store.blob_path(digest);
    let (_, mut plain) = compression::auto_decoder(BufReader::new(store.open_blob(digest)?))
        .map_err(|e| Error::io("read", &path, e))?;
    let tmp = temp_in(dir)?;
    let mut out = HashingWriter::new(BufWriter::new(tmp.as_file()));
    io::copy(&mut plain, &mut out).map_err(|e| Error::io("decompress", &path, e))?;
    out.flush().map_err(|e| Error::io("write", tmp.path(), e))?;
    let (_, got, _) = out.finish();
    if &got != diff_id {
        return Err(Error::DigestMismatch {
            what: "uncompressed layer",
            path_in_archive: path.display().to_string(),
            expected: diff_id.clone(),
            actual: got,
        });
    }
    Ok(tmp.into_temp_path())
}

/// The layer of the far side to make a delta against, if any is worth it: one with the
/// same content; else the same repository's layer at the same position, unless another
/// shares far more of its chunks; else the one sharing most chunks, if it shares an
/// eighth of them. Only layers `near_has` (the near side holds them too) can serve.
pub fn choose_reference<'a>(
    chunks: &[u64],
    diff_id: &Digest,
    repository: &str,
    position: usize,
    candidates: &'a [LayerPrint],
    near_has: &dyn Fn(&Digest) -> bool,
) -> Option<&'a LayerPrint> {
    let usable: Vec<&LayerPrint> = candidates
        .iter()
        .filter(|c| c.diff_id.is_some() && near_has(&c.digest))
        .collect();
    if let Some(same) = usable.iter().find(|c| c.diff_id.as_ref() == Some(diff_id)) {
        return Some(same);
    }
    let scored: Vec<(usize, &LayerPrint)> = usable
        .iter()
        .map(|c| (crate::fingerprint::overlap(chunks, &c.chunks), *c))
        .collect();
    let best = scored.iter().max_by_key(|(n, _)| *n).copied();
    let sibling = scored
        .iter()
        .find(|(_, c)| c.position == position && repository_of(&c.image) == Some(repository));
    match (sibling, best) {
        (Some((n, s)), Some((b, _))) if *n * 2 >= b => Some(s),
        (_, Some((b, c))) if b > 0 && b * 8 >= chunks.len() => Some(c),
        (Some((_, s)), _) => Some(s),
        _ => None,
    }
}

/// The repository of an image reference as the inventory writes it (`NAME:TAG`, or
/// `NAME@DIGEST`); none for a bare digest.
pub fn repository_of(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name = match name[slash..].rfind(':') {
        Some(i) => &name[..slash + i],
        None => name,
    };
    (!name.is_empty() && !name.starts_with("sha256")).then_some(name)
}

/// What making a delta for one layer gave.
pub enum Made {
    /// The delta, smaller than the layer.
    Delta(Box<PreparedDelta>),
    /// No delta: why the layer ships whole.
    Whole(String),
}

/// Make the delta of the store's layer `layer` (of `size` bytes, tar `diff_id`) against a
/// far-side layer chosen from `candidates` by [`choose_reference`], with scratch files in
/// the store's temporary directory.
pub fn make(
    store: &Store,
    layer: &Digest,
    size: u64,
    diff_id: &Digest,
    repository: &str,
    position: usize,
    candidates: &[LayerPrint],
) -> Result<Made> {
    if size < MIN_LAYER {
        return Ok(Made::Whole("it is too small to be worth a delta".into()));
    }
    let dir = store.tmp_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let path = store.blob_path(layer);
    let mut head = [0u8; 8];
    let n = store
        .open_blob(layer)?
        .read(&mut head)
        .map_err(|e| Error::io("read", &path, e))?;
    let kind = Compression::detect(&head[..n]);
    // The layer's tar, and for gzip the corrections that rebuild its bytes.
    let (plain, fix) = match kind {
        Compression::None if layer == diff_id => (None, None),
        Compression::Gzip => {
            let plain = temp_in(&dir)?;
            let fix = temp_in(&dir)?;
            let mut input = BufReader::new(store.open_blob(layer)?);
            let mut plain_out = HashingWriter::new(BufWriter::new(plain.as_file()));
            let mut fix_out = BufWriter::new(fix.as_file());
            match deflate::split_gzip(&mut input, &mut plain_out, &mut fix_out) {
                Ok(_) => {}
                Err(deflate::SplitError::Unsupported(why)) => return Ok(Made::Whole(why)),
                Err(deflate::SplitError::Io(e)) => return Err(Error::io("split", &path, e)),
            }
            plain_out
                .flush()
                .map_err(|e| Error::io("write", plain.path(), e))?;
            fix_out
                .flush()
                .map_err(|e| Error::io("write", fix.path(), e))?;
            drop(fix_out);
            let (_, got, _) = plain_out.finish();
            if &got != diff_id {
                return Ok(Made::Whole(format!(
                    "it decompresses to {got}, not its diffID {diff_id}"
                )));
            }
            (Some(plain.into_temp_path()), Some(fix.into_temp_path()))
        }
        other => {
            return Ok(Made::Whole(format!(
                "nothing rebuilds {} layers byte for byte",
                other.name()
            )))
        }
    };
    let plain_path = plain.as_deref().unwrap_or(&path).to_path_buf();
    let mut plain_file =
        BufReader::new(File::open(&plain_path).map_err(|e| Error::io("open", &plain_path, e))?);
    let target_spans = crate::fingerprint::spans(&mut plain_file)
        .map_err(|e| Error::io("read", &plain_path, e))?;
    let chunks: Vec<u64> = target_spans.iter().map(|s| s.hash).collect();
    let near_has = |d: &Digest| store.has_blob(d);
    let Some(reference) = choose_reference(
        &chunks, diff_id, repository, position, candidates, &near_has,
    ) else {
        return Ok(Made::Whole(
            "the far side holds no similar layer that this store has too".into(),
        ));
    };
    let ref_diff = reference
        .diff_id
        .clone()
        .unwrap_or_else(|| reference.digest.clone());
    let ref_plain = plaintext_of(store, &reference.digest, &ref_diff, &dir)?;
    let ref_file = File::open(&ref_plain).map_err(|e| Error::io("open", &ref_plain, e))?;
    let ref_len = ref_file
        .metadata()
        .map_err(|e| Error::io("read", &ref_plain, e))?
        .len();
    let ref_spans = crate::fingerprint::spans(&mut BufReader::new(&ref_file))
        .map_err(|e| Error::io("read", &ref_plain, e))?;
    let patch_file = temp_in(&dir)?;
    let mut target = Hashing {
        inner: BufReader::new(
            File::open(&plain_path).map_err(|e| Error::io("open", &plain_path, e))?,
        ),
        hasher: Hasher::new(),
    };
    let mut patch_out = HashingWriter::new(BufWriter::new(patch_file.as_file()));
    patch::make(
        &ref_file,
        ref_len,
        &ref_spans,
        &mut target,
        &target_spans,
        &mut patch_out,
    )
    .map_err(|e| Error::io("make the delta of", &path, e))?;
    patch_out
        .flush()
        .map_err(|e| Error::io("write", patch_file.path(), e))?;
    if std::mem::take(&mut target.hasher).finish() != *diff_id {
        return Err(Error::io(
            "read",
            &plain_path,
            io::Error::other("the layer changed while its delta was made"),
        ));
    }
    let (_, patch_digest, patch_size) = patch_out.finish();
    let (corrections, corrections_size) = match &fix {
        Some(f) => {
            let bytes = std::fs::read(f).map_err(|e| Error::io("read", f, e))?;
            (Some(Digest::of(&bytes)), bytes.len() as u64)
        }
        None => (None, 0),
    };
    let record = DeltaLayer {
        digest: layer.clone(),
        size,
        diff_id: diff_id.clone(),
        reference: reference.digest.clone(),
        reference_diff_id: ref_diff,
        reference_image: reference.image.clone(),
        patch: patch_digest,
        patch_size,
        corrections,
        corrections_size,
    };
    // Only worth it when clearly smaller: the far side pays a rebuild for it.
    if record.shipped() * 10 >= size * 9 {
        return Ok(Made::Whole(format!(
            "its delta ({} bytes) is not much smaller than the layer",
            record.shipped()
        )));
    }
    Ok(Made::Delta(Box::new(PreparedDelta {
        record,
        patch: patch_file.into_temp_path(),
        fix,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_inventory_names() {
        assert_eq!(
            repository_of("docker.io/library/app:1"),
            Some("docker.io/library/app")
        );
        assert_eq!(
            repository_of("localhost:5000/app:2"),
            Some("localhost:5000/app")
        );
        assert_eq!(
            repository_of("localhost:5000/app"),
            Some("localhost:5000/app")
        );
        assert_eq!(repository_of("r.io/app@sha256:ab"), Some("r.io/app"));
        assert_eq!(repository_of("sha256:abcd"), None);
    }

    #[test]
    fn chooses_the_same_content_then_the_sibling_then_the_most_shared() {
        let print = |image: &str, position, chunks: Vec<u64>, n: u8| LayerPrint {
            digest: Digest::of(&[n]),
            diff_id: Some(Digest::of(&[n, n])),
            image: image.into(),
            position,
            chunks,
        };
        let all = vec![
            print("r/app:1", 1, vec![1, 2, 3], 1),
            print("r/other:1", 0, vec![4, 5, 6, 7], 2),
            print("r/app:0", 0, vec![9], 3),
        ];
        let yes = |_: &Digest| true;
        let new = [4, 5, 6, 8];
        // The same tar elsewhere wins outright.
        let same = choose_reference(&new, &Digest::of(&[3, 3]), "r/app", 1, &all, &yes);
        assert_eq!(same.map(|c| c.position), Some(0));
        // The sibling shares nothing; another layer shares 3 of 4 chunks: that one.
        let pick = choose_reference(&new, &Digest::of(b"n"), "r/app", 1, &all, &yes).unwrap();
        assert_eq!(pick.image, "r/other:1");
        // Where nothing is shared, the sibling (a rebuilt layer: new mtimes in every header).
        let pick = choose_reference(&[42], &Digest::of(b"n"), "r/app", 1, &all, &yes).unwrap();
        assert_eq!(pick.image, "r/app:1");
        assert!(choose_reference(&[42], &Digest::of(b"n"), "r/new", 5, &all, &yes).is_none());
        // A layer the near side lacks cannot serve.
        let not_other = |d: &Digest| *d != Digest::of(&[2]);
        let pick = choose_reference(&new, &Digest::of(b"n"), "r/app", 1, &all, &not_other);
        assert_eq!(pick.map(|c| c.image.as_str()), Some("r/app:1"));
    }
}
