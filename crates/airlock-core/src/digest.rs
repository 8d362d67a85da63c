//! Content digests (`sha256:<hex>`) and the readers/writers that compute them in passing.
//!
//! Hashing always happens on the bytes as they stream by, so a blob is read once: the same
//! pass that writes it to disk proves it matches its name.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 content digest. Other algorithms are refused at parse time: every tool that
/// writes the archives we read uses sha256.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// Build from 64 lowercase hex characters (no `sha256:` prefix).
    pub fn from_hex(hex: &str) -> Option<Self> {
        is_sha256_hex(hex).then(|| Digest {
            hex: hex.to_string(),
        })
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

/// True for exactly 64 lowercase hex characters.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Error returned when a string is not a `sha256:<64 hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a sha256 digest (sha256:<64 hex characters>)")]
pub struct BadDigest(pub String);

impl FromStr for Digest {
    type Err = BadDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("sha256:")
            .and_then(Digest::from_hex)
            .ok_or_else(|| BadDigest(s.to_string()))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256 that also counts bytes.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.inner)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap a writer.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digest and byte count so far, and the inner writer.
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hash everything a reader yields, discarding the bytes.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    let len = hasher.len();
    Ok((hasher.finish(), len))
}

const PIPE_CHUNK: usize = 1 << 20;
const PIPE_BUFFERS: usize = 4;

/// Copy at most `limit` bytes from `reader` to `writer`, hashing them on a helper thread so
/// that hashing overlaps with the reads and writes (sha256 is the slowest step of a load or
/// save). Returns the digest and the count.
pub fn copy_hashing(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    limit: u64,
) -> Result<(Digest, u64), CopyError> {
    use std::sync::mpsc;
    let mut first = vec![0u8; PIPE_CHUNK];
    let n = read_up_to(reader, &mut first, limit)?;
    if (n as u64) < limit.min(PIPE_CHUNK as u64) || n == 0 {
        // Small blob: one chunk, hash inline.
        writer.write_all(&first[..n]).map_err(CopyError::Write)?;
        let mut h = Hasher::new();
        h.update(&first[..n]);
        return Ok((h.finish(), n as u64));
    }
    let (to_hasher, hasher_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPE_BUFFERS);
    let (back_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let hasher = std::thread::spawn(move || {
        let mut h = Hasher::new();
        for (buf, len) in hasher_rx {
            h.update(&buf[..len]);
            let _ = back_tx.send(buf);
        }
        h
    });
    let mut total = 0u64;
    let mut result = Ok(());
    let (mut buf, mut len) = (first, n);
    let mut allocated = 1;
    loop {
        if let Err(e) = writer.write_all(&buf[..len]) {
            result = Err(CopyError::Write(e));
            break;
        }
        total += len as u64;
        if to_hasher.send((buf, len)).is_err() {
            break; // the hasher died: join() below reports it
        }
        if total >= limit {
            break;
        }
        buf = match free_rx.try_recv() {
            Ok(b) => b,
            Err(_) if allocated < PIPE_BUFFERS => {
                allocated += 1;
                vec![0u8; PIPE_CHUNK]
            }
            Err(_) => match free_rx.recv() {
                Ok(b) => b,
                Err(_) => break,
            },
        };
        len = match read_up_to(reader, &mut buf, limit - total) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
    }
    drop(to_hasher);
    let h = hasher
        .join()
        .map_err(|_| CopyError::Write(io::Error::other("hash thread panicked")))?;
    result?;
    Ok((h.finish(), total))
}

/// Which side of a copy failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the destination failed.
    Write(io::Error),
}

/// Fill `buf` (up to `limit` bytes) from `reader`; fewer bytes only at end of stream.
fn read_up_to(reader: &mut dyn Read, buf: &mut [u8], limit: u64) -> Result<usize, CopyError> {
    let want = (buf.len() as u64).min(limit) as usize;
    let mut filled = 0;
    while filled < want {
        match reader.read(&mut buf[filled..want]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CopyError::Read(e)),
        }
    }
    Ok(filled)
}

/// Docker's chain ID of a layer stack: ChainID(L0) = DiffID(L0),
/// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let mut iter = diff_ids.iter();
    let mut chain = iter.next()?.clone();
    for d in iter {
        chain = Digest::of(format!("{chain} {d}").as_bytes());
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_rejects_other_algorithms_and_bad_hex() {
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:ABCDEF".parse::<Digest>().is_err());
        let d = Digest::of(b"x");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn chain_id_follows_docker_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let expect = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a, b]), Some(expect));
    }

    #[test]
    fn hashing_writer_matches_one_shot() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, d, n) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(&bytes));
    }
}
