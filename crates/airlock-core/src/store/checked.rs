//! Stored blobs read with their digest checked on the way: a flipped byte on disk must not
//! be exported, unpacked or kept as "already there" unnoticed.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use super::Store;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

struct State {
    file: File,
    hasher: Hasher,
    eof: bool,
}

/// A stored blob's bytes, hashed as they are read. Hand it to a decoder; the matching
/// [`BlobCheck`] gives the verdict once the reading is over.
pub struct CheckedBlob(Arc<Mutex<State>>);

/// The verdict on a [`CheckedBlob`]: [`BlobCheck::finish`] reads whatever the consumer left
/// (a decoder stops at its trailer, a tar reader at its end marker) and compares digests.
pub struct BlobCheck {
    state: Arc<Mutex<State>>,
    digest: Digest,
}

impl Read for CheckedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = s.file.read(buf)?;
        s.hasher.update(&buf[..n]);
        s.eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

impl BlobCheck {
    /// Read the rest of the blob and check it hashes to its name.
    pub fn finish(&self) -> Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0u8; 64 << 10];
        while !s.eof {
            let n = s
                .file
                .read(&mut buf)
                .map_err(|e| Error::stream(format!("read stored blob {}", self.digest), e))?;
            s.hasher.update(&buf[..n]);
            s.eof = n == 0;
        }
        let actual = std::mem::take(&mut s.hasher).finish();
        if actual != self.digest {
            return Err(Error::DamagedBlob {
                digest: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl Store {
    /// Open a blob to be read with its digest checked (see [`BlobCheck`]).
    pub fn open_checked_blob(&self, digest: &Digest) -> Result<(CheckedBlob, BlobCheck)> {
        let file = self.open_blob(digest)?;
        let state = Arc::new(Mutex::new(State {
            file,
            hasher: Hasher::new(),
            eof: false,
        }));
        Ok((
            CheckedBlob(state.clone()),
            BlobCheck {
                state,
                digest: digest.clone(),
            },
        ))
    }

    /// True when the stored blob hashes to its name (false when absent or damaged).
    pub fn blob_is_intact(&self, digest: &Digest) -> bool {
        self.open_checked_blob(digest)
            .is_ok_and(|(_, check)| check.finish().is_ok())
    }
}

/// A decoded stream whose end is reported only once the blob under it proved whole: an
/// [`Error::DamagedBlob`] arrives (carried in the `io::Error`) instead of the end of data.
pub struct VerifiedAtEnd {
    inner: Box<dyn Read + Send>,
    check: Option<BlobCheck>,
}

impl VerifiedAtEnd {
    /// Wrap the decoded stream of a blob opened with [`Store::open_checked_blob`].
    pub fn new(inner: Box<dyn Read + Send>, check: BlobCheck) -> Self {
        VerifiedAtEnd {
            inner,
            check: Some(check),
        }
    }
}

impl Read for VerifiedAtEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(check) = self.check.take() {
                check.finish().map_err(Error::carried)?;
            }
        }
        Ok(n)
    }
}
