//! One pass over an archive stream: every file is hashed and staged as it streams by,
//! compressed layers are decompressed on a second thread to compute their diffIDs, and
//! metadata files are kept in memory. Nothing is trusted yet; `resolve` checks it all.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use super::sniff::{self, EntryKind};
use crate::compression::{self, Compression};
use crate::digest::{self, Digest};
use crate::error::{Error, Result};
use crate::store::{StagedBlob, Staging, Store};

/// Metadata files larger than this are refused: real ones are a few KiB.
const MAX_METADATA: u64 = 64 << 20;

/// What one pass over an archive found.
#[derive(Default)]
pub struct ArchiveContents {
    /// Metadata files by path (`manifest.json`, `index.json`, `repositories`, `oci-layout`).
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// Every regular file by path, with the digest of its bytes.
    pub files: BTreeMap<String, StagedBlob>,
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

/// Normalise an archive path: no leading `./` or `/`, no trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

fn is_metadata(path: &str) -> bool {
    matches!(
        path,
        "manifest.json"
            | "index.json"
            | "repositories"
            | "oci-layout"
            | super::writer::INCREMENTAL_FILE
    )
}

/// Collects the files of an archive, from a tar stream or a directory.
struct Ingest<'a> {
    staging: &'a Staging,
    store: Option<&'a Store>,
    contents: ArchiveContents,
    seen_archive_entry: bool,
}

impl<'a> Ingest<'a> {
    fn new(staging: &'a Staging, store: Option<&'a Store>) -> Self {
        Ingest {
            staging,
            store,
            contents: ArchiveContents::default(),
            seen_archive_entry: false,
        }
    }

    /// Decide whether an entry matters. A root-filesystem path before any image-archive
    /// file means this is a filesystem snapshot: fail on the first header, not after
    /// reading gigabytes.
    fn wants(&mut self, raw_path: &str, path: &str, is_dir: bool) -> Result<bool> {
        match sniff::classify(path, is_dir) {
            EntryKind::Foreign if !self.seen_archive_entry => Err(Error::FilesystemSnapshot {
                first_entry: raw_path.to_string(),
            }),
            EntryKind::Foreign | EntryKind::ArchiveDir => Ok(false),
            EntryKind::ImageArchive => {
                self.seen_archive_entry = true;
                Ok(true)
            }
        }
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
            self.contents.metadata.insert(path, bytes);
            return Ok(());
        }
        let named = path
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex);
        if let (Some(d), Some(store)) = (&named, self.store) {
            if store.has_blob(d) {
                // Already stored and verified: skip the body.
                io::copy(reader, &mut io::sink()).map_err(|e| read_err(&path, e))?;
                self.contents.files.insert(
                    path,
                    StagedBlob {
                        digest: d.clone(),
                        size,
                    },
                );
                return Ok(());
            }
        }
        let staged = stage_entry(
            reader,
            &path,
            named.as_ref(),
            self.staging,
            &mut self.contents,
        )?;
        check_len(&path, size, staged.size)?;
        self.contents.files.insert(path, staged);
        Ok(())
    }
}

/// Read a whole tar stream into `staging`. Files already in `store` under
/// `blobs/sha256/<hex>` are skipped (not re-written).
pub fn read_archive(
    input: &mut dyn Read,
    staging: &Staging,
    store: Option<&Store>,
) -> Result<ArchiveContents> {
    // Judge the first block ourselves so a non-tar gets a useful message, not a parser's.
    let (head, rest) =
        compression::peek(input, 512).map_err(|e| Error::stream("read the archive", e))?;
    if !sniff::is_tar_header(&head) {
        return Err(Error::NotATar {
            looks_like: sniff::describe_non_tar(&head, head.len()),
        });
    }
    let mut archive = tar::Archive::new(EofWatch {
        inner: rest,
        hit_eof: false,
    });
    let mut ingest = Ingest::new(staging, store);
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize(&raw_path);
        let kind = entry.header().entry_type();
        if !ingest.wants(&raw_path, &path, kind.is_dir())? {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() {
                resolve_relative(&path, &target)
            } else {
                normalize(&target)
            };
            ingest.contents.links.insert(path, resolved);
        } else if kind.is_file() {
            let size = entry.size();
            ingest.file(path, size, &mut entry)?;
        }
    }
    if !ingest.seen_archive_entry {
        return Err(Error::NoImage {
            detail: "the tar is empty".into(),
        });
    }
    // The tar reader stops at the end-of-archive marker without reading past it; running
    // into the end of the stream instead means the archive was cut at a file boundary.
    let mut rest = archive.into_inner();
    ingest.contents.cut_short = rest.hit_eof;
    // Read on to the end: a compressed stream's checksum sits in its last bytes, and a
    // writer on the other end of a pipe should not die of SIGPIPE.
    io::copy(&mut rest.inner, &mut io::sink())
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

/// Read an image layout directory (OCI layout, or an unpacked docker-archive).
pub fn read_directory(
    dir: &Path,
    staging: &Staging,
    store: Option<&Store>,
) -> Result<ArchiveContents> {
    let mut ingest = Ingest::new(staging, store);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d)
            .map_err(|e| Error::io("read", &d, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::io("read", &d, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let meta = fs::metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
            if meta.is_dir() {
                if sniff::classify(&rel, true) == EntryKind::ArchiveDir {
                    stack.push(p);
                } else {
                    ingest.wants(&rel, &rel, true)?;
                }
                continue;
            }
            if !ingest.wants(&rel, &rel, false)? {
                continue;
            }
            if meta.is_file() {
                let mut f = fs::File::open(&p).map_err(|e| Error::io("open", &p, e))?;
                ingest.file(rel, meta.len(), &mut f)?;
            }
        }
    }
    Ok(ingest.contents)
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
    crate::store::staging_read_error(path, e)
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

/// Stage a layer blob that must hash to `expected`, learning its diffID in the same pass
/// (decompressing a copy on another thread when it is gzip or zstd).
pub fn stage_layer(
    reader: &mut dyn Read,
    label: &str,
    expected: &Digest,
    staging: &Staging,
) -> Result<(StagedBlob, Digest)> {
    let mut contents = ArchiveContents::default();
    let staged = stage_entry(reader, label, Some(expected), staging, &mut contents)?;
    let diff = match contents.diff_ids.remove(&staged.digest) {
        None => staged.digest.clone(),
        Some(Ok(d)) => d,
        Some(Err(msg)) => {
            let codec = contents
                .compression
                .get(&staged.digest)
                .copied()
                .unwrap_or(Compression::Gzip);
            return Err(Error::Decompress {
                codec: codec.name(),
                detail: format!("{label}: {msg}"),
            });
        }
    };
    Ok((staged, diff))
}

/// Stage one entry; if it starts with gzip or zstd magic, decompress a copy on another
/// thread to learn its diffID in the same pass.
fn stage_entry(
    entry: &mut dyn Read,
    path: &str,
    expected: Option<&Digest>,
    staging: &Staging,
    contents: &mut ArchiveContents,
) -> Result<StagedBlob> {
    let (magic, mut rest) =
        compression::peek(entry, compression::MAGIC_LEN).map_err(|e| read_err(path, e))?;
    let codec = Compression::detect(&magic);
    if !matches!(codec, Compression::Gzip | Compression::Zstd) {
        let staged = staging.write_blob(&mut rest, expected, path)?;
        contents.compression.insert(staged.digest.clone(), codec);
        return Ok(staged);
    }
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    let worker: JoinHandle<std::result::Result<Digest, String>> = std::thread::spawn(move || {
        let dec = compression::decoder(codec, compression::ChunkReader::new(rx));
        digest::hash_reader(dec)
            .map(|(d, _)| d)
            .map_err(|e| e.to_string())
    });
    let mut tee = Tee {
        inner: &mut rest,
        tx: Some(tx),
    };
    let staged = staging.write_blob(&mut tee, expected, path);
    tee.tx = None;
    let diff = worker
        .join()
        .unwrap_or_else(|_| Err("decoder thread panicked".into()));
    let staged = staged?;
    contents.compression.insert(staged.digest.clone(), codec);
    contents.diff_ids.insert(staged.digest.clone(), diff);
    Ok(staged)
}

/// Passes reads through and sends a copy of each chunk to a channel.
struct Tee<'a, R: Read> {
    inner: &'a mut R,
    tx: Option<SyncSender<io::Result<Vec<u8>>>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(tx) = &self.tx {
                if tx.send(Ok(buf[..n].to_vec())).is_err() {
                    // The decoder gave up (damaged stream); keep staging, it reports later.
                    self.tx = None;
                }
            }
        }
        Ok(n)
    }
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
