//! Writing big files durably without stalling at the end.
//!
//! An fsync of a 1 GiB file written at full speed can take as long as writing it did. A
//! [`SyncingFile`] asks a helper thread to flush what has been written so far every few tens
//! of MiB, so the disk works while the caller keeps producing, and the final fsync only has
//! the tail left.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

const FLUSH_EVERY: u64 = 64 << 20;

/// A file writer that keeps writeback going in the background.
pub struct SyncingFile {
    file: File,
    pending: u64,
    kick: Option<SyncSender<()>>,
    flusher: Option<JoinHandle<io::Result<()>>>,
}

impl SyncingFile {
    /// Wrap an open file.
    pub fn new(file: File) -> io::Result<Self> {
        let handle = file.try_clone()?;
        let (kick, rx) = mpsc::sync_channel::<()>(1);
        let flusher = std::thread::spawn(move || {
            for () in rx {
                handle.sync_data()?;
            }
            Ok(())
        });
        Ok(SyncingFile {
            file,
            pending: 0,
            kick: Some(kick),
            flusher: Some(flusher),
        })
    }

    /// Stop the background flushing; with `sync`, also fsync everything now.
    pub fn finish(mut self, sync: bool) -> io::Result<()> {
        self.stop()?;
        if sync {
            self.file.sync_all()?;
        }
        Ok(())
    }

    fn stop(&mut self) -> io::Result<()> {
        self.kick = None;
        match self.flusher.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("flush thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.pending += n as u64;
        if self.pending >= FLUSH_EVERY {
            if let Some(k) = &self.kick {
                match k.try_send(()) {
                    // Busy flushing already: the next kick will cover these bytes too.
                    Ok(()) | Err(TrySendError::Full(())) => self.pending = 0,
                    Err(TrySendError::Disconnected(())) => {
                        self.kick = None;
                        return Err(self
                            .stop()
                            .err()
                            .unwrap_or_else(|| io::Error::other("flush thread stopped")));
                    }
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for SyncingFile {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// What every temporary output file airlock writes beside its destination is named with.
pub const OUTPUT_TEMP_PREFIX: &str = ".airlock-";

/// A temporary file in `dir` for an output that will be renamed into place. It is locked
/// while its writer lives, so [`sweep_abandoned_outputs`] can tell it from one a killed
/// run left behind; the directory is swept of those first.
pub fn output_temp(dir: &Path, kind: &str) -> io::Result<tempfile::NamedTempFile> {
    sweep_abandoned_outputs(dir);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{OUTPUT_TEMP_PREFIX}{kind}"))
        .tempfile_in(dir)?;
    tmp.as_file().lock()?;
    Ok(tmp)
}

/// Remove `.airlock-*` temporary files in `dir` that no running airlock holds (left by a
/// killed save or export). Best effort: a file that cannot be removed stays.
pub fn sweep_abandoned_outputs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let is_ours = name
            .to_str()
            .is_some_and(|n| n.starts_with(OUTPUT_TEMP_PREFIX));
        if !is_ours || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(f) = File::open(e.path()) else {
            continue;
        };
        if f.try_lock().is_ok() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Give a finished temporary output its name: readable by others (a temp file is 0600, an
/// archive or layout is meant to be handed on), fsynced, renamed, and the rename made
/// durable by an fsync of the directory.
pub fn publish(tmp: tempfile::NamedTempFile, dest: &Path) -> io::Result<()> {
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    sync_parent(dest)
}

/// fsync the directory holding `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}
