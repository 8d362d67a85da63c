//! One pass over an archive stream: every file goes straight to the destination as it
//! streams by, through the copy engine's verifying reader (which also decompresses a copy of
//! compressed layers on a second thread to learn their diffIDs); metadata files and small
//! JSON blobs (configs, manifests) are also kept in memory for `resolve`, which checks it
//! all before the destination makes anything visible.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::sniff::{self, EntryKind};
use super::strict::Kind;
use crate::blob_reader::{BlobReader, Expect};
use crate::compression::{self, Compression};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::spec::Descriptor;
use crate::store::{StagedBlob, Store};
use crate::transport::ImageDestination;

/// How much is read after the end-of-archive marker (tar blocking pads to 10 KiB; a
/// compressed stream's trailer follows).
const AFTER_END: u64 = 1 << 20;
/// Metadata files larger than this are refused: real ones are a few KiB.
const MAX_METADATA: u64 = 64 << 20;
/// JSON blobs up to this size (configs, manifests) are also kept in memory for `resolve`.
const SMALL_JSON: u64 = 8 << 20;
/// The largest OpenPGP signed message kept in memory (a simple-signing one is under 1 KiB).
const SMALL_SIGNATURE: u64 = 64 << 10;
/// All kept JSON together may not exceed this (a hostile archive of many "configs").
const SMALL_JSON_TOTAL: u64 = 512 << 20;

/// True for the first byte of an OpenPGP signed message: a compressed-data, one-pass
/// signature, signature or literal-data packet header, old or new format. (No compressed
/// layer starts so: gzip, zstd, xz and bzip2 magics differ.)
fn opens_openpgp_message(b: u8) -> bool {
    let tag = if b & 0xc0 == 0xc0 {
        b & 0x3f
    } else if b & 0xc0 == 0x80 {
        (b >> 2) & 0x0f
    } else {
        return false;
    };
    matches!(tag, 2 | 4 | 8 | 11)
}

/// What one pass over an archive found.
#[derive(Default)]
pub struct ArchiveContents {
    /// Metadata files by path (`manifest.json`, `index.json`, `repositories`, `oci-layout`).
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// Every regular file by path, with the digest of its bytes.
    pub files: BTreeMap<String, StagedBlob>,
    /// Small JSON blobs (configs, manifests) by digest, verified.
    pub small: BTreeMap<Digest, Vec<u8>>,
    /// Blobs handed to the destination (or found there), by digest.
    pub delivered: std::collections::BTreeSet<Digest>,
    /// Where a blob of unknown name (a legacy `<id>/layer.tar`) was, by its digest.
    pub unnamed: BTreeMap<Digest, String>,
    /// Symbolic and hard links by path, target resolved to an archive path.
    pub links: BTreeMap<String, String>,
    /// diffIDs of compressed files (by blob digest), or why decompression failed.
    pub diff_ids: BTreeMap<Digest, std::result::Result<Digest, String>>,
    /// Compression detected per blob digest.
    pub compression: BTreeMap<Digest, Compression>,
    /// True when the stream ended without a tar end-of-archive marker.
    pub cut_short: bool,
}

impl ArchiveContents {
    /// Follow links from `path` to a regular file.
    pub fn file(&self, path: &str) -> Option<&StagedBlob> {
        let mut p = normalize(path);
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

pub use super::sniff::normalize;

mod delta;
mod directory;
pub(crate) use delta::blob_path_of;
pub use directory::read_directory;

fn is_metadata(path: &str) -> bool {
    super::sniff::is_dir_signature(path)
        || matches!(
            path,
            "manifest.json"
                | "index.json"
                | "repositories"
                | "oci-layout"
                | "version"
                | super::writer::INCREMENTAL_FILE
                | crate::transfer::TRANSFER_FILE
                | crate::transfer::TRANSFER_SIGNATURE_FILE
        )
}

/// Collects the files of an archive, from a tar stream or a directory, handing every blob
/// to the destination as it streams by.
struct Ingest<'a> {
    dest: &'a dyn ImageDestination,
    store: Option<&'a Store>,
    contents: ArchiveContents,
    seen_archive_entry: bool,
    /// The first entry that is not an image-archive file.
    first_foreign: Option<String>,
    /// A root filesystem path (`etc/`, `bin/` ...) was among them.
    saw_rootfs: bool,
    /// A registry's storage tree (`docker/registry/v2/...`) was among them.
    saw_registry_storage: bool,
    /// Refuse a root filesystem on its first path (a stream); a directory is judged from
    /// all of its names instead.
    refuse_early: bool,
    small_total: u64,
    deltas: delta::Deltas,
    /// Where blobs are shown as they stream by, and whether their bytes go into the total
    /// (a directory's do; a stream's were counted as the stream was read).
    progress: Option<(Progress, bool)>,
}

impl<'a> Ingest<'a> {
    fn new(dest: &'a dyn ImageDestination) -> Self {
        Ingest {
            dest,
            store: dest.store(),
            contents: ArchiveContents::default(),
            seen_archive_entry: false,
            first_foreign: None,
            saw_rootfs: false,
            saw_registry_storage: false,
            refuse_early: true,
            small_total: 0,
            deltas: delta::Deltas::default(),
            progress: None,
        }
    }

    /// Decide whether an entry matters. In a stream, a root-filesystem path (`etc/`,
    /// `bin/`, `.dockerenv` ...) before any image-archive file means a filesystem snapshot:
    /// fail on the first header, not after reading gigabytes. Other names (a README beside
    /// an OCI layout) are skipped; what the input is gets decided at the end.
    fn wants(&mut self, raw_path: &str, path: &str, is_dir: bool) -> Result<bool> {
        match sniff::classify(path, is_dir) {
            EntryKind::Foreign => {
                if self.refuse_early && !self.seen_archive_entry && sniff::is_rootfs_path(path) {
                    return Err(Error::FilesystemSnapshot {
                        first_entry: raw_path.to_string(),
                    });
                }
                self.first_foreign
                    .get_or_insert_with(|| raw_path.to_string());
                self.saw_rootfs |= sniff::is_rootfs_path(path);
                self.saw_registry_storage |= path.starts_with("docker/registry/v2");
                // manifest.json may name a config or layer by any path (jib writes
                // `config.json`, others `layers/layer0.tar`; skopeo reads them): a file
                // outside a root filesystem's directories is kept, without making the input
                // an archive.
                Ok(!is_dir && !sniff::is_rootfs_path(path))
            }
            EntryKind::ArchiveDir => Ok(false),
            EntryKind::ImageArchive => {
                self.seen_archive_entry = true;
                Ok(true)
            }
        }
    }

    /// After the last entry: no image-archive file at all is a filesystem (or nothing).
    fn judge(&self) -> Result<()> {
        if self.seen_archive_entry {
            return Ok(());
        }
        Err(match &self.first_foreign {
            Some(_) if self.saw_registry_storage => Error::NoImage {
                detail: "it is a registry's storage directory (docker/registry/v2/...), not an image archive: serve it with a registry (`docker-registry`) and pull from that".into(),
            },
            Some(first) if self.saw_rootfs => Error::FilesystemSnapshot {
                first_entry: first.clone(),
            },
            Some(first) => Error::NoImage {
                detail: format!(
                    "it has no manifest.json, index.json or blobs/ directory; its first entry is '{first}'"
                ),
            },
            None => Error::NoImage {
                detail: "the tar is empty".into(),
            },
        })
    }

    fn file(&mut self, path: String, size: u64, reader: &mut dyn Read) -> Result<()> {
        if is_metadata(&path) {
            if size > MAX_METADATA {
                return Err(Error::BadMetadata {
                    path_in_archive: path,
                    what: "metadata",
                    detail: format!("{size} bytes is far larger than any real one"),
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| read_err(&path, e))?;
            check_len(&path, size, bytes.len() as u64)?;
            let marker = path == super::writer::INCREMENTAL_FILE;
            self.contents.metadata.insert(path, bytes);
            if marker {
                self.check_deltas()?;
            }
            return Ok(());
        }
        if path.starts_with(crate::delta::DIR)
            && (path.ends_with(".patch") || path.ends_with(".fix"))
        {
            return self.delta_file(path, size, reader);
        }
        // Named by digest: an OCI blob, or a `dir:` layout's blob or instance manifest.
        let named = path
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex)
            .or_else(|| Digest::from_hex(&path))
            .or_else(|| sniff::dir_instance_manifest(&path).and_then(Digest::from_hex));
        if let Some(d) = &named {
            // A stored copy is used only once it proves whole: a damaged one is replaced
            // by this archive's (the commit prefers staged copies).
            let stored = self.store.is_some_and(|s| s.blob_is_intact(d));
            if stored || self.contents.delivered.contains(d) {
                // Already there and verified (or a second copy): skip the body.
                let skipped = io::copy(reader, &mut io::sink()).map_err(|e| read_err(&path, e))?;
                if let Some((p, counts_total)) = &self.progress {
                    if *counts_total {
                        p.add_done(skipped);
                    }
                    if stored {
                        p.present_within(d.to_string(), size);
                    }
                }
                self.record(path, d.clone(), size);
                return Ok(());
            }
        }
        let (head, mut rest) = compression::peek(reader, 64).map_err(|e| read_err(&path, e))?;
        let json = head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        // A GPG signature's payload is read by the signature check, like a JSON document.
        let signed_message =
            size <= SMALL_SIGNATURE && head.first().is_some_and(|b| opens_openpgp_message(*b));
        if (size <= SMALL_JSON && json) || signed_message {
            return self.small_json(path, size, named, &mut rest);
        }
        let expect = Expect {
            digest: named.clone(),
            size: Some(size),
            diff_id: true,
        };
        // Shown by digest when the name gives it, else by path until hashing tells.
        let shown = named
            .as_ref()
            .map_or_else(|| path.clone(), |d| d.to_string());
        let ticket = self
            .progress
            .as_ref()
            .map(|(p, counts_total)| match counts_total {
                true => p.start(shown, Some(size)),
                false => p.start_within(shown, Some(size)),
            });
        let mut blob = BlobReader::new(Box::new(&mut rest), path.clone(), expect, ticket);
        let digest = match &named {
            Some(d) => {
                self.dest
                    .put_blob(&Descriptor::new("", d.clone(), size), &mut blob)
                    .map_err(|e| truncation(&path, size, e))?;
                d.clone()
            }
            None => {
                let d = self
                    .dest
                    .put_unnamed_blob(&path, size, &mut blob)
                    .map_err(|e| truncation(&path, size, e))?;
                self.contents.unnamed.insert(d.clone(), path.clone());
                d
            }
        };
        let facts = blob.finish().map_err(|e| truncation(&path, size, e))?;
        if facts.digest != digest {
            return Err(Error::DigestMismatch {
                what: "blob",
                path_in_archive: path,
                expected: digest,
                actual: facts.digest,
            });
        }
        self.contents
            .compression
            .insert(digest.clone(), facts.compression);
        if let Some(diff) = facts.diff_id {
            self.contents.diff_ids.insert(digest.clone(), diff);
        }
        self.record(path, digest, size);
        Ok(())
    }

    /// A small JSON file: kept in memory for `resolve`, and delivered under its digest.
    fn small_json(
        &mut self,
        path: String,
        size: u64,
        named: Option<Digest>,
        reader: &mut dyn Read,
    ) -> Result<()> {
        self.small_total += size;
        if self.small_total > SMALL_JSON_TOTAL {
            return Err(Error::BadMetadata {
                path_in_archive: path,
                what: "metadata",
                detail:
                    "the archive holds more than 512 MiB of JSON files; real ones hold a few MiB"
                        .into(),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| read_err(&path, e))?;
        check_len(&path, size, bytes.len() as u64)?;
        let digest = Digest::of(&bytes);
        if let Some(n) = &named {
            if n != &digest {
                return Err(Error::DigestMismatch {
                    what: "blob",
                    path_in_archive: path,
                    expected: n.clone(),
                    actual: digest,
                });
            }
        }
        if let Some((p, true)) = &self.progress {
            p.add_done(size);
        }
        if !self.contents.delivered.contains(&digest)
            && !self.store.is_some_and(|s| s.blob_is_intact(&digest))
        {
            deliver_bytes(self.dest, &bytes, &digest, &path)?;
            if let Some((p, _)) = &self.progress {
                p.delivered_within(digest.to_string(), size);
            }
        }
        self.contents.small.insert(digest.clone(), bytes);
        self.record(path, digest, size);
        Ok(())
    }

    fn record(&mut self, path: String, digest: Digest, size: u64) {
        self.contents.delivered.insert(digest.clone());
        self.contents
            .files
            .insert(path, StagedBlob { digest, size });
    }
}

/// Hand bytes held in memory to a destination under their digest.
pub(crate) fn deliver_bytes(
    dest: &dyn ImageDestination,
    bytes: &[u8],
    digest: &Digest,
    label: &str,
) -> Result<()> {
    let mut blob = BlobReader::new(
        Box::new(bytes),
        label.to_string(),
        Expect {
            digest: Some(digest.clone()),
            size: Some(bytes.len() as u64),
            diff_id: false,
        },
        None,
    );
    dest.put_blob(
        &Descriptor::new("", digest.clone(), bytes.len() as u64),
        &mut blob,
    )?;
    blob.finish().map(|_| ())
}

/// A blob that ended early is a truncated archive, not a damaged blob.
fn truncation(path: &str, size: u64, e: Error) -> Error {
    match e {
        Error::SizeMismatch { actual, .. } if actual < size => Error::Truncated {
            detail: format!("the stream ended inside {path} after {actual} of {size} bytes"),
        },
        other => other,
    }
}

/// Read a whole tar stream, handing every blob to `dest`. Files the destination's store
/// already has under `blobs/sha256/<hex>` are skipped (not re-written).
pub fn read_archive(input: &mut dyn Read, dest: &dyn ImageDestination) -> Result<ArchiveContents> {
    read_archive_from(input, dest, None, None)
}

/// What a resumable read tells about each tar entry (the resume journal, in
/// [`super::resume`]).
pub trait EntryLog {
    /// An entry's headers were read: its data starts at `data_start` and holds `size` bytes.
    fn entry(&self, data_start: u64, size: u64) -> Result<()>;
    /// The entry at `path` is done; `contents` holds what was learned of it.
    fn done(&self, path: &str, contents: &ArchiveContents, archive: bool) -> Result<()>;
    /// The entry was skipped.
    fn skipped(&self);
}

/// Where a resumed read of split volumes starts (see [`super::resume`]).
pub struct ResumeFrom<'j> {
    /// The journal every entry is logged to.
    pub journal: &'j dyn EntryLog,
    /// What the interrupted run had read.
    pub contents: ArchiveContents,
    /// Whether that included an image-archive file.
    pub seen_archive_entry: bool,
    /// The offset of the stream's first byte in the joined volumes.
    pub start: u64,
}

/// [`read_archive`], logging every entry to a resume journal (and starting from what an
/// interrupted run had read) when `resume` is given, and showing each blob in `progress`
/// as it streams by (the stream's bytes are the caller's to count).
pub fn read_archive_from(
    input: &mut dyn Read,
    dest: &dyn ImageDestination,
    resume: Option<ResumeFrom<'_>>,
    progress: Option<&Progress>,
) -> Result<ArchiveContents> {
    // Judge the first block ourselves so a non-tar gets a useful message, not a parser's.
    let (head, rest) =
        compression::peek(input, 512).map_err(|e| Error::stream("read the archive", e))?;
    // (A resumed stream may start at the end-of-archive blocks.)
    if resume.is_none() && !sniff::is_tar_header(&head) {
        return Err(Error::NotATar {
            looks_like: sniff::describe_non_tar(&head, head.len()),
        });
    }
    let mut archive = tar::Archive::new(super::guard::RecordCap::new(EofWatch {
        inner: rest,
        hit_eof: false,
    }));
    let mut ingest = Ingest::new(dest);
    ingest.progress = progress.map(|p| (p.clone(), false));
    let (journal, start) = match resume {
        Some(r) => {
            ingest.contents = r.contents;
            ingest.seen_archive_entry = r.seen_archive_entry;
            (Some(r.journal), r.start)
        }
        None => (None, 0),
    };
    let mut strict = super::strict::Strict::default();
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        if let Some(j) = journal {
            j.entry(start + entry.raw_file_position(), entry.size())?;
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize(&raw_path);
        let kind = strict.check(&mut entry, &raw_path, &path)?;
        if kind == Kind::Ignored || !ingest.wants(&raw_path, &path, kind == Kind::Dir)? {
            if let Some(j) = journal {
                j.skipped();
            }
            continue;
        }
        if kind == Kind::Symlink || kind == Kind::HardLink {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let resolved = if kind == Kind::Symlink {
                resolve_relative(&path, &target)
            } else {
                normalize(&target)
            };
            ingest.contents.links.insert(path.clone(), resolved);
        } else if kind == Kind::File {
            let size = entry.size();
            ingest.file(path.clone(), size, &mut entry)?;
        }
        if let Some(j) = journal {
            j.done(&path, &ingest.contents, ingest.seen_archive_entry)?;
        }
    }
    ingest.judge()?;
    // The tar reader stops at the end-of-archive marker without reading past it; running
    // into the end of the stream instead means the archive was cut at a file boundary.
    let mut rest = archive.into_inner().inner;
    ingest.contents.cut_short = rest.hit_eof;
    // Read on a little: a compressed stream's checksum sits in its last bytes, and a writer
    // on the other end of a pipe should not die of SIGPIPE over the tar's block padding. Not
    // to the end: whatever follows the archive (`cat ok.tar /dev/zero`) is not read.
    io::copy(&mut (&mut rest.inner).take(AFTER_END), &mut io::sink())
        .map_err(|e| Error::stream("read the end of the archive", e))?;
    Ok(ingest.contents)
}

/// Notes whether the underlying stream ran dry.
struct EofWatch<R> {
    inner: R,
    hit_eof: bool,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

fn check_len(path: &str, expected: u64, actual: u64) -> Result<()> {
    if actual < expected {
        return Err(Error::Truncated {
            detail: format!("the stream ended inside {path} after {actual} of {expected} bytes"),
        });
    }
    Ok(())
}

fn bad_tar(e: io::Error) -> Error {
    let e = match Error::from_carried(e) {
        Ok(carried) => return carried,
        Err(e) => e,
    };
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Truncated {
            detail: "the stream ended inside a tar header".into(),
        }
    } else {
        Error::BadTar {
            detail: e.to_string(),
        }
    }
}

fn read_err(path: &str, e: io::Error) -> Error {
    crate::error::Error::reading(path, e)
}

/// A symlink target relative to the link's directory, as an archive path.
fn resolve_relative(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return normalize(target);
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        assert_eq!(normalize("./manifest.json"), "manifest.json");
        assert_eq!(normalize("blobs/sha256/"), "blobs/sha256");
        assert_eq!(normalize("./"), "");
    }

    #[test]
    fn resolves_legacy_layer_symlinks() {
        assert_eq!(
            resolve_relative("abc/layer.tar", "../def/layer.tar"),
            "def/layer.tar"
        );
        assert_eq!(resolve_relative("abc/layer.tar", "../def.tar"), "def.tar");
    }
}
