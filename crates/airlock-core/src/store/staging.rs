//! Staging areas: where an operation writes blobs before they are proven and committed.
//!
//! Each staging area is a directory under `STORE/tmp/` holding a locked `.owner` file for as
//! long as its process lives. Blobs in it are named by the digest computed while writing
//! them, so nothing unverified can ever be renamed into `blobs/`. `gc` removes areas whose
//! owner lock can be taken (the process died, e.g. kill -9).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use super::durable::SyncingFile;
use crate::digest::{self, CopyError, Digest};
use crate::error::{Error, Result};

const OWNER_FILE: &str = ".owner";
/// Staged blobs waiting for their fsync at most (each holds an open file).
const SYNC_QUEUE: usize = 64;

/// A directory of verified blobs waiting to be committed. Removed when dropped.
pub struct Staging {
    dir: Area,
    _owner: File,
    /// `gc.lock`, shared, for as long as the staging area lives: `gc` neither removes a blob
    /// this operation decided to reuse nor its staging area (issue 10, E).
    _gc: super::StoreLock,
    syncer: Mutex<Option<Syncer>>,
}

/// Where a staging area lives: a temporary directory removed when dropped, or (for an
/// operation that can resume) a named one kept until [`Staging::discard`].
enum Area {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Area {
    fn path(&self) -> &Path {
        match self {
            Area::Temp(t) => t.path(),
            Area::Kept(p) => p,
        }
    }
}

/// fsyncs staged blobs on a helper thread, so flushing blob N to disk overlaps with
/// writing blob N+1; [`Staging::wait_synced`] waits for all of it before a commit.
struct Syncer {
    files: mpsc::SyncSender<(File, PathBuf)>,
    done: JoinHandle<Result<()>>,
}

impl Syncer {
    fn start() -> Syncer {
        // Bounded: each queued blob is an open file, and 100,000 small blobs would run out
        // of descriptors (EMFILE). A full queue makes the writer wait for the disk.
        let (files, rx) = mpsc::sync_channel::<(File, PathBuf)>(SYNC_QUEUE);
        let done = std::thread::spawn(move || {
            for (f, path) in rx {
                f.sync_all().map_err(|e| Error::io("sync", path, e))?;
            }
            Ok(())
        });
        Syncer { files, done }
    }
}

/// A blob written into a staging area.
#[derive(Clone, Debug)]
pub struct StagedBlob {
    /// Digest of the bytes as written.
    pub digest: Digest,
    /// Number of bytes.
    pub size: u64,
}

impl Staging {
    pub(crate) fn new(tmp_dir: &Path, gc: super::StoreLock) -> Result<Staging> {
        let dir = tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(tmp_dir)
            .map_err(|e| Error::io("create staging area in", tmp_dir, e))?;
        let owner_path = dir.path().join(OWNER_FILE);
        let owner = File::create(&owner_path).map_err(|e| Error::io("create", &owner_path, e))?;
        owner
            .lock()
            .map_err(|e| Error::io("lock", &owner_path, e))?;
        Ok(Staging {
            dir: Area::Temp(dir),
            _owner: owner,
            _gc: gc,
            syncer: Mutex::new(None),
        })
    }

    /// The staging area `name` under `tmp_dir`, made or found again: what an interrupted
    /// operation staged (and proved) is still there, and it stays after this process ends,
    /// until [`Staging::discard`]. Parts of blobs a killed writer left are removed. (`gc`
    /// removes such areas too once no process holds them.)
    pub(crate) fn resumable(tmp_dir: &Path, name: &str, gc: super::StoreLock) -> Result<Staging> {
        let dir = tmp_dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let owner_path = dir.join(OWNER_FILE);
        let owner = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&owner_path)
            .map_err(|e| Error::io("create", &owner_path, e))?;
        if owner.try_lock().is_err() {
            return Err(Error::Usage(format!(
                "another airlock is already working on this input (it holds {}); wait for it to end",
                dir.display()
            )));
        }
        for e in fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("part-") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Staging {
            dir: Area::Kept(dir),
            _owner: owner,
            _gc: gc,
            syncer: Mutex::new(None),
        })
    }

    /// The blobs staged here (by a run that was interrupted, for a kept area).
    pub fn staged_count(&self) -> usize {
        fs::read_dir(self.dir.path())
            .map(|d| {
                d.flatten()
                    .filter(|e| Digest::from_hex(&e.file_name().to_string_lossy()).is_some())
                    .count()
            })
            .unwrap_or(0)
    }

    /// Check every blob a kept area holds against its name, removing those that do not
    /// match (a power cut can leave a named file whose bytes never reached the disk).
    /// Returns how many were kept.
    pub fn prove_kept(&self) -> Result<usize> {
        let mut kept = 0;
        let dir = self.dir.path();
        for e in fs::read_dir(dir)
            .map_err(|e| Error::io("read", dir, e))?
            .flatten()
        {
            let Some(d) = Digest::from_hex(&e.file_name().to_string_lossy()) else {
                continue;
            };
            let mut f = File::open(e.path()).map_err(|x| Error::io("open", e.path(), x))?;
            let (actual, _) =
                digest::copy_hashing(&mut f, &mut io::sink(), u64::MAX).map_err(|x| match x {
                    CopyError::Read(x) | CopyError::Write(x) => Error::io("read", e.path(), x),
                })?;
            if actual == d {
                kept += 1;
            } else {
                fs::remove_file(e.path()).map_err(|x| Error::io("remove", e.path(), x))?;
            }
        }
        Ok(kept)
    }

    /// Remove a staging area that was kept for resuming, once its operation is done.
    pub fn discard(self) -> Result<()> {
        let _ = self.wait_synced();
        if let Area::Kept(p) = &self.dir {
            fs::remove_dir_all(p).map_err(|e| Error::io("remove", p, e))?;
        }
        Ok(())
    }

    /// The staging directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of a staged blob, if it is here.
    pub fn path_of(&self, digest: &Digest) -> Option<PathBuf> {
        let p = self.dir.path().join(digest.hex());
        p.is_file().then_some(p)
    }

    /// Stream `reader` into a new blob, hashing as it goes; if `expected` is given the bytes
    /// must hash to it (`label` names the source in the error).
    pub fn write_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        label: &str,
    ) -> Result<StagedBlob> {
        let (tmp, mut out) = self.new_part()?;
        let write_err = |e| Error::io("write", tmp.path(), e);
        let (digest, size) =
            digest::copy_hashing(reader, &mut out, u64::MAX).map_err(|e| match e {
                CopyError::Read(e) => Error::reading(label, e),
                CopyError::Write(e) => write_err(e),
            })?;
        // The final fsync happens on the syncer thread, overlapping the next blob.
        out.finish(false).map_err(write_err)?;
        if let Some(exp) = expected {
            if exp != &digest {
                return Err(Error::DigestMismatch {
                    what: "blob",
                    path_in_archive: label.to_string(),
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        self.persist(tmp, digest, size)
    }

    /// Stream a blob the copy engine is verifying into a new staged blob, named by the
    /// digest the reader proved at its end (the reader hashes; this only writes).
    pub fn write_verified(
        &self,
        reader: &mut crate::blob_reader::BlobReader<'_>,
    ) -> Result<StagedBlob> {
        let (tmp, mut out) = self.new_part()?;
        let write_err = |e| Error::io("write", tmp.path(), e);
        copy_plain(reader, &mut out).map_err(|e| match e {
            CopyError::Read(e) => reader.to_error(e),
            CopyError::Write(e) => write_err(e),
        })?;
        out.finish(false).map_err(write_err)?;
        let Some(digest) = reader.verified_digest() else {
            return Err(Error::Truncated {
                detail: format!("{} was not read to its end", reader.label()),
            });
        };
        let size = reader.bytes_read();
        if self.path_of(&digest).is_some() {
            return Ok(StagedBlob { digest, size });
        }
        self.persist(tmp, digest, size)
    }

    /// Stage whatever `produce` writes (a tar generated on the fly), hashing it as it goes.
    pub fn write_with(
        &self,
        produce: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<StagedBlob> {
        let (tmp, file) = self.new_part()?;
        let write_err = |e| Error::io("write", tmp.path(), e);
        let mut hashing =
            digest::HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        produce(&mut hashing)?;
        let (buffered, digest, size) = hashing.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| write_err(e.into_error()))?;
        file.finish(false).map_err(write_err)?;
        self.persist(tmp, digest, size)
    }

    /// Begin a blob that arrives in parts (a registry upload session, chunk by chunk). It is
    /// hashed as it is written and becomes a staged blob only through
    /// [`PartialBlob::finish`], which checks the digest the client claims.
    pub fn begin_blob(&self) -> Result<PartialBlob> {
        let (tmp, out) = self.new_part()?;
        Ok(PartialBlob {
            out: digest::HashingWriter::new(out),
            tmp,
        })
    }

    /// A new temporary file in the staging area, with a writer that keeps writeback going.
    fn new_part(&self) -> Result<(tempfile::NamedTempFile, SyncingFile)> {
        let tmp = tempfile::Builder::new()
            .prefix("part-")
            .tempfile_in(self.dir.path())
            .map_err(|e| Error::io("create temp file in", self.dir.path(), e))?;
        let write_err = |e| Error::io("write", tmp.path(), e);
        let out =
            SyncingFile::new(tmp.as_file().try_clone().map_err(write_err)?).map_err(write_err)?;
        Ok((tmp, out))
    }

    /// Stage bytes already in memory.
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<StagedBlob> {
        let digest = Digest::of(bytes);
        if self.path_of(&digest).is_some() {
            return Ok(StagedBlob {
                digest,
                size: bytes.len() as u64,
            });
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("part-")
            .tempfile_in(self.dir.path())
            .map_err(|e| Error::io("create temp file in", self.dir.path(), e))?;
        tmp.write_all(bytes)
            .map_err(|e| Error::io("write", tmp.path(), e))?;
        self.persist(tmp, digest, bytes.len() as u64)
    }

    fn persist(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: Digest,
        size: u64,
    ) -> Result<StagedBlob> {
        let dest = self.dir.path().join(digest.hex());
        let file = tmp
            .persist(&dest)
            .map_err(|e| Error::io("rename", &dest, e.error))?;
        // Durable before commit (see wait_synced): after a crash a committed blob is whole.
        let mut guard = self.syncer.lock().unwrap_or_else(|p| p.into_inner());
        let syncer = guard.get_or_insert_with(Syncer::start);
        if syncer.files.send((file, dest.clone())).is_err() {
            // The syncer stopped on an error; wait_synced reports it.
        }
        Ok(StagedBlob { digest, size })
    }

    /// Wait until every staged blob is on disk. Called by the store before a commit.
    pub fn wait_synced(&self) -> Result<()> {
        let syncer = self.syncer.lock().unwrap_or_else(|p| p.into_inner()).take();
        match syncer {
            None => Ok(()),
            Some(Syncer { files, done }) => {
                drop(files);
                done.join()
                    .unwrap_or_else(|_| Err(Error::Usage("the fsync thread panicked".into())))
            }
        }
    }
}

/// A blob being written in parts into a staging area; see [`Staging::begin_blob`]. Dropped
/// unfinished, its temporary file is removed.
pub struct PartialBlob {
    out: digest::HashingWriter<SyncingFile>,
    tmp: tempfile::NamedTempFile,
}

impl PartialBlob {
    /// Append `bytes`.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("write", self.tmp.path(), e))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.out.len()
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// End the blob: it becomes a staged blob of `staging` if its bytes hash to `expected`
    /// (`label` names the upload in the error); otherwise it is removed.
    pub fn finish(self, staging: &Staging, expected: &Digest, label: &str) -> Result<StagedBlob> {
        let PartialBlob { out, tmp } = self;
        let (file, digest, size) = out.finish();
        file.finish(false)
            .map_err(|e| Error::io("write", tmp.path(), e))?;
        if &digest != expected {
            return Err(Error::DigestMismatch {
                what: "blob",
                path_in_archive: label.to_string(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        if staging.path_of(&digest).is_some() {
            return Ok(StagedBlob { digest, size });
        }
        staging.persist(tmp, digest, size)
    }
}

/// Copy with a large buffer, telling read errors from write errors. The buffer is filled
/// before each write: a socket hands over a few KiB per read, and a write per read would
/// cost a syscall per 8 KiB (measured: 130,000 writes for a 1 GiB pull).
pub(crate) fn copy_plain(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        writer.write_all(&buf[..filled]).map_err(CopyError::Write)?;
        total += filled as u64;
        if filled < buf.len() {
            return Ok(total);
        }
    }
}

/// Remove staging areas whose owning process is gone, and stray temp files.
pub(crate) fn remove_abandoned(tmp_dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(tmp_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", tmp_dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let owner = path.join(OWNER_FILE);
            let abandoned = match File::open(&owner) {
                Ok(f) => f.try_lock().is_ok(),
                Err(_) => true,
            };
            if abandoned {
                fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
            }
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}
