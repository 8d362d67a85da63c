//! Writing big files durably without stalling at the end.
//!
//! An fsync of a 1 GiB file written at full speed can take as long as writing it did. A
//! [`SyncingFile`] asks a helper thread to flush what has been written so far every few tens
//! of MiB, so the disk works while the caller keeps producing, and the final fsync only has
//! the tail left.

use std::fs::File;
use std::io::{self, Write};
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
