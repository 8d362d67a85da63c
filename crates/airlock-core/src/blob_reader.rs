//! The one verifying reader every blob passes through on its way to a destination.
//!
//! Like containers/image's digesting reader, it hashes what the destination reads and, at
//! the end of the stream, fails the last read when the bytes do not hash to the digest (or
//! size) that names them: a destination that writes through a temporary file never renames
//! bad bytes into place, because its copy loop sees the error before it commits. It also
//! counts progress where the bytes are read, and, for layers whose diffID nobody has checked
//! yet (a registry pull), decompresses a copy on a helper thread to learn it.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::compression::{self, ChunkReader, Compression};
use crate::digest::{self, Digest, Hasher};
use crate::error::{Error, Result};
use crate::progress::BlobProgress;

/// What the bytes of a blob must be.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The digest that names the blob (None: learn it while reading).
    pub digest: Option<Digest>,
    /// Its size, when known.
    pub size: Option<u64>,
    /// Decompress a copy to learn the diffID (when the blob starts with gzip/zstd magic).
    pub diff_id: bool,
}

/// Chunks above this size are hashed on a helper thread, overlapping the destination's
/// writes; small blobs (configs, manifests) are hashed inline.
const THREAD_HASH_ABOVE: usize = 64 << 10;

/// A reader that verifies, counts and (optionally) learns the diffID of one blob.
pub struct BlobReader<'a> {
    inner: Box<dyn Read + 'a>,
    label: String,
    expect: Expect,
    hasher: HashSide,
    read: u64,
    progress: Option<BlobProgress>,
    diff: Option<DiffSide>,
    first: bool,
    outcome: Option<std::result::Result<Digest, String>>,
    actual: Option<Digest>,
}

/// A blob may run this far past its descriptor's size and still be hashed to the end, so
/// the error can name the digest of what was really served; beyond it, reading stops.
const OVERRUN_SLACK: u64 = 64 << 20;

enum HashSide {
    Inline(Hasher),
    /// Chunks go to the hashing thread and come back for reuse: no allocation (and no
    /// cross-thread free) per chunk.
    Thread {
        tx: Option<SyncSender<Vec<u8>>>,
        free: Receiver<Vec<u8>>,
        allocated: usize,
        pending: Vec<u8>,
        done: Option<JoinHandle<Hasher>>,
    },
}

/// Chunks in flight to the hashing thread at most.
const HASH_BUFFERS: usize = 8;
/// Bytes gathered before a chunk goes to the hashing or decoding thread.
const HASH_CHUNK: usize = 1 << 20;

struct DiffSide {
    codec: Compression,
    pending: Vec<u8>,
    tx: Option<SyncSender<io::Result<Vec<u8>>>>,
    done: Option<JoinHandle<std::result::Result<Digest, String>>>,
}

/// The facts a finished [`BlobReader`] learned.
#[derive(Clone, Debug)]
pub struct BlobFacts {
    /// Digest of the bytes (verified against the expected one, if any).
    pub digest: Digest,
    /// Number of bytes.
    pub size: u64,
    /// How the blob is compressed (from its first bytes).
    pub compression: Compression,
    /// Digest of the uncompressed bytes, when asked for and the blob is gzip or zstd;
    /// `Err` carries the decoder's complaint.
    pub diff_id: Option<std::result::Result<Digest, String>>,
}

impl<'a> BlobReader<'a> {
    /// Wrap `inner`; `label` names the blob in errors ("layer sha256:… of registry x").
    pub fn new(
        inner: Box<dyn Read + 'a>,
        label: impl Into<String>,
        expect: Expect,
        progress: Option<BlobProgress>,
    ) -> Self {
        let big = expect.size.is_none_or(|s| s > THREAD_HASH_ABOVE as u64);
        let hasher = if big {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS);
            let (back, free) = mpsc::channel::<Vec<u8>>();
            let done = std::thread::spawn(move || {
                let mut h = Hasher::new();
                for chunk in rx {
                    h.update(&chunk);
                    let _ = back.send(chunk);
                }
                h
            });
            HashSide::Thread {
                tx: Some(tx),
                free,
                allocated: 0,
                pending: Vec::with_capacity(HASH_CHUNK + (64 << 10)),
                done: Some(done),
            }
        } else {
            HashSide::Inline(Hasher::new())
        };
        BlobReader {
            inner,
            label: label.into(),
            expect,
            hasher,
            read: 0,
            progress,
            diff: None,
            first: true,
            outcome: None,
            actual: None,
        }
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn start_diff(&mut self, head: &[u8]) {
        let codec = Compression::detect(head);
        if !self.expect.diff_id || !matches!(codec, Compression::Gzip | Compression::Zstd) {
            self.diff = Some(DiffSide {
                codec,
                pending: Vec::new(),
                tx: None,
                done: None,
            });
            return;
        }
        let (tx, rx): (_, Receiver<io::Result<Vec<u8>>>) = mpsc::sync_channel(8);
        let done = std::thread::spawn(move || {
            let dec = compression::decoder(codec, ChunkReader::new(rx));
            digest::hash_reader(dec)
                .map(|(d, _)| d)
                .map_err(|e| e.to_string())
        });
        self.diff = Some(DiffSide {
            codec,
            pending: Vec::with_capacity(HASH_CHUNK),
            tx: Some(tx),
            done: Some(done),
        });
    }

    /// Hand `chunk` to the hasher and the decoder. Reads from a socket come in small
    /// pieces; they are gathered into chunks of [`HASH_CHUNK`] so each thread hop carries
    /// real work.
    fn feed(&mut self, chunk: &[u8]) {
        // A destination may read many MiB at once (a registry chunk is 32 MiB): hand them on
        // in pieces of HASH_CHUNK, so no reused buffer grows past it.
        for piece in chunk.chunks(HASH_CHUNK) {
            self.feed_piece(piece);
        }
    }

    fn feed_piece(&mut self, piece: &[u8]) {
        match &mut self.hasher {
            HashSide::Inline(h) => h.update(piece),
            HashSide::Thread { pending, .. } => {
                if pending.len() + piece.len() > HASH_CHUNK {
                    self.flush_hash();
                }
                if let HashSide::Thread { pending, .. } = &mut self.hasher {
                    pending.extend_from_slice(piece);
                }
            }
        }
        let flush = match &mut self.diff {
            Some(d) if d.tx.is_some() => d.pending.len() + piece.len() > HASH_CHUNK,
            _ => false,
        };
        if flush {
            self.flush_diff();
        }
        if let Some(d) = &mut self.diff {
            if d.tx.is_some() {
                d.pending.extend_from_slice(piece);
            }
        }
    }

    fn flush_hash(&mut self) {
        if let HashSide::Thread {
            tx,
            free,
            allocated,
            pending,
            ..
        } = &mut self.hasher
        {
            if pending.is_empty() {
                return;
            }
            let Some(t) = tx else {
                pending.clear();
                return;
            };
            let next = match free.try_recv() {
                Ok(b) => b,
                Err(_) if *allocated < HASH_BUFFERS => {
                    *allocated += 1;
                    Vec::with_capacity(HASH_CHUNK + (64 << 10))
                }
                // All buffers in flight: wait for the hasher to hand one back.
                Err(_) => free.recv().unwrap_or_default(),
            };
            let mut full = std::mem::replace(pending, next);
            pending.clear();
            if t.send(std::mem::take(&mut full)).is_err() {
                *tx = None;
            }
        }
    }

    fn flush_diff(&mut self) {
        if let Some(d) = &mut self.diff {
            if d.pending.is_empty() {
                return;
            }
            let chunk = std::mem::replace(&mut d.pending, Vec::with_capacity(HASH_CHUNK));
            if let Some(t) = &d.tx {
                if t.send(Ok(chunk)).is_err() {
                    // The decoder gave up on a damaged stream; it reports at the end.
                    d.tx = None;
                }
            }
        }
    }

    /// End of stream: compare with what was expected. Runs once.
    fn conclude(&mut self) -> std::result::Result<Digest, String> {
        if let Some(o) = &self.outcome {
            return o.clone();
        }
        self.flush_hash();
        self.flush_diff();
        let hasher = match std::mem::replace(&mut self.hasher, HashSide::Inline(Hasher::new())) {
            HashSide::Inline(h) => h,
            HashSide::Thread { tx, done, .. } => {
                drop(tx);
                done.and_then(|d| d.join().ok()).unwrap_or_else(Hasher::new)
            }
        };
        let actual = hasher.finish();
        self.actual = Some(actual.clone());
        // A short blob is a cut stream (say so by size); otherwise the digest says more
        // than the size: name both digests when they differ.
        let outcome = match (&self.expect.digest, self.expect.size) {
            (_, Some(size)) if self.read < size => Err(format!(
                "{}: descriptor says {size} bytes, found {}",
                self.label, self.read
            )),
            (Some(exp), _) if exp != &actual => {
                Err(format!("{}: expected {exp}, got {actual}", self.label))
            }
            (_, Some(size)) if size != self.read => Err(format!(
                "{}: descriptor says {size} bytes, found {}",
                self.label, self.read
            )),
            _ => Ok(actual),
        };
        self.outcome = Some(outcome.clone());
        outcome
    }

    /// The verified digest, once the stream has been read to its end and matched.
    pub fn verified_digest(&self) -> Option<Digest> {
        self.outcome.as_ref().and_then(|o| o.as_ref().ok().cloned())
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Read to the end (what the destination left unread is checked too) and return the
    /// verified facts; the error names the blob, the expected and the actual digest.
    pub fn finish(&mut self) -> Result<BlobFacts> {
        io::copy(self, &mut io::sink()).map_err(|e| self.to_error(e))?;
        let digest = self.conclude().map_err(|_| self.mismatch_error())?;
        let diff = self.diff.take();
        let (compression, diff_id) = match diff {
            None => (Compression::None, None),
            Some(DiffSide {
                codec, tx, done, ..
            }) => {
                drop(tx);
                let d = done.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("decoder thread panicked".into()))
                });
                (codec, d)
            }
        };
        // Verified: only now is the blob reported done.
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        Ok(BlobFacts {
            digest,
            size: self.read,
            compression,
            diff_id,
        })
    }

    fn mismatch_error(&self) -> Error {
        match (&self.expect.digest, &self.actual, self.expect.size) {
            (_, _, Some(size)) if self.read < size => Error::SizeMismatch {
                path_in_archive: self.label.clone(),
                expected: size,
                actual: self.read,
            },
            (Some(exp), Some(actual), _) if exp != actual => Error::DigestMismatch {
                what: "blob",
                path_in_archive: self.label.clone(),
                expected: exp.clone(),
                actual: actual.clone(),
            },
            (_, _, Some(size)) => Error::SizeMismatch {
                path_in_archive: self.label.clone(),
                expected: size,
                actual: self.read,
            },
            _ => Error::Usage(format!("{}: verification failed", self.label)),
        }
    }

    /// Turn an error a destination got from this reader back into the typed one.
    pub fn to_error(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::InvalidData
            && self.outcome.as_ref().is_some_and(|o| o.is_err())
        {
            return self.mismatch_error();
        }
        crate::error::Error::reading(&self.label, e)
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(o) = &self.outcome {
            return match o {
                Ok(_) => Ok(0),
                Err(msg) => Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone())),
            };
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if self.diff.is_none() {
                self.start_diff(&[]);
            }
            return match self.conclude() {
                Ok(_) => Ok(0),
                Err(msg) => Err(io::Error::new(io::ErrorKind::InvalidData, msg)),
            };
        }
        if self.first {
            self.first = false;
            self.start_diff(&buf[..n.min(compression::MAGIC_LEN)]);
        }
        self.read += n as u64;
        if let Some(limit) = self.expect.size {
            if self.read > limit.saturating_add(OVERRUN_SLACK) {
                self.outcome = Some(Err(format!(
                    "{}: descriptor says {limit} bytes, found more",
                    self.label
                )));
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: longer than its descriptor says", self.label),
                ));
            }
        }
        self.feed(&buf[..n]);
        if let Some(p) = &self.progress {
            p.add(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8], expect: Expect) -> BlobReader<'static> {
        BlobReader::new(Box::new(bytes), "blob x", expect, None)
    }

    #[test]
    fn passes_matching_bytes_and_counts_progress() {
        let counter = crate::progress::Progress::new();
        let mut r = BlobReader::new(
            Box::new(&b"hello"[..]),
            "blob x",
            Expect {
                digest: Some(Digest::of(b"hello")),
                size: Some(5),
                diff_id: false,
            },
            Some(counter.start("blob x", Some(5))),
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(counter.in_flight()[0].done, 5);
        let facts = r.finish().unwrap();
        assert_eq!(facts.digest, Digest::of(b"hello"));
        assert_eq!(counter.done(), 5);
        assert!(counter.in_flight().is_empty());
    }

    #[test]
    fn fails_the_last_read_on_a_wrong_digest() {
        let mut r = reader(
            b"hellO",
            Expect {
                digest: Some(Digest::of(b"hello")),
                size: Some(5),
                diff_id: false,
            },
        );
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        match r.finish() {
            Err(Error::DigestMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(expected, Digest::of(b"hello"));
                assert_eq!(actual, Digest::of(b"hellO"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_blob_longer_than_its_descriptor_fails() {
        let mut r = reader(
            b"hello!",
            Expect {
                digest: None,
                size: Some(5),
                diff_id: false,
            },
        );
        assert!(matches!(r.finish(), Err(Error::SizeMismatch { .. })));
    }

    #[test]
    fn large_reads_are_hashed_in_pieces() {
        // One 9 MiB read (as a registry upload does with its chunks), hashed right.
        let data: Vec<u8> = (0..9u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut r = BlobReader::new(
            Box::new(std::io::Cursor::new(data.clone())),
            "big",
            Expect {
                digest: Some(Digest::of(&data)),
                size: Some(data.len() as u64),
                diff_id: false,
            },
            None,
        );
        let mut buf = vec![0u8; data.len()];
        let mut n = 0;
        while n < buf.len() {
            n += r.read(&mut buf[n..]).unwrap();
        }
        assert_eq!(r.finish().unwrap().digest, Digest::of(&data));
    }

    #[test]
    fn learns_the_diff_id_of_a_gzip_blob() {
        use std::io::Write;
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&plain).unwrap();
        let gz = enc.finish().unwrap();
        let mut r = BlobReader::new(
            Box::new(std::io::Cursor::new(gz.clone())),
            "layer",
            Expect {
                digest: Some(Digest::of(&gz)),
                size: Some(gz.len() as u64),
                diff_id: true,
            },
            None,
        );
        let facts = r.finish().unwrap();
        assert_eq!(facts.compression, Compression::Gzip);
        assert_eq!(facts.diff_id.unwrap().unwrap(), Digest::of(&plain));
    }
}
