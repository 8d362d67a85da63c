//! What a copy reports while it runs, for whoever draws it (the command line's bars, a
//! library user's log): bytes done of the total, the blobs in flight with their bytes so
//! far, and an event when one finishes. It knows nothing about terminals.
//!
//! The per-read cost is two relaxed atomic adds (the blob's count and the total's); the
//! lock is taken only when a blob starts or finishes. A finished blob leaves the set in
//! flight at once, so memory stays bounded by the blobs being copied at the same time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Called once for every blob that finished (verified) or was found at the destination.
pub type Listener = Arc<dyn Fn(&Finished) + Send + Sync>;

/// A copy's progress; clones share one record.
#[derive(Clone, Default)]
pub struct Progress {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    done: AtomicU64,
    total: AtomicU64,
    next_id: AtomicU64,
    in_flight: Mutex<BTreeMap<u64, Arc<Flight>>>,
    listener: Mutex<Option<Listener>>,
}

struct Flight {
    name: String,
    size: Option<u64>,
    read: AtomicU64,
}

/// One blob being copied, as seen at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Started in this order (a display keeps a blob's row by it).
    pub id: u64,
    /// The blob's digest, or its path in an archive while the digest is not known yet.
    pub name: String,
    /// Its size, when known.
    pub size: Option<u64>,
    /// Bytes read so far.
    pub done: u64,
}

/// A blob that is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Its digest (or archive path).
    pub name: String,
    /// Bytes it holds.
    pub size: u64,
    /// The destination had it already: nothing was copied.
    pub present: bool,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("done", &self.done())
            .field("total", &self.total())
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// A fresh record: nothing done, total unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes read so far.
    pub fn done(&self) -> u64 {
        self.shared.done.load(Ordering::Relaxed)
    }

    /// Bytes expected (0 while unknown).
    pub fn total(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// Say how many bytes the copy will read.
    pub fn set_total(&self, total: u64) {
        self.shared.total.store(total, Ordering::Relaxed);
    }

    /// Expect `n` more bytes: copies that share one record (`sync`'s pulls) sum theirs.
    pub fn add_total(&self, n: u64) {
        self.shared.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Count bytes read outside any one blob (a whole archive stream as it is read).
    pub fn add_done(&self, n: u64) {
        self.shared.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Be told of every blob that finishes from now on (replacing any earlier listener).
    pub fn set_listener(&self, listener: Option<Listener>) {
        if let Ok(mut l) = self.shared.listener.lock() {
            *l = listener;
        }
    }

    /// A blob starts; the bytes its handle counts are added to the total's too.
    pub fn start(&self, name: impl Into<String>, size: Option<u64>) -> BlobProgress {
        self.begin(name.into(), size, true)
    }

    /// A blob inside a stream whose bytes are counted as the stream is read
    /// ([`Progress::add_done`]): its handle counts the blob only.
    pub fn start_within(&self, name: impl Into<String>, size: Option<u64>) -> BlobProgress {
        self.begin(name.into(), size, false)
    }

    fn begin(&self, name: String, size: Option<u64>, counts_total: bool) -> BlobProgress {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let flight = Arc::new(Flight {
            name,
            size,
            read: AtomicU64::new(0),
        });
        if let Ok(mut m) = self.shared.in_flight.lock() {
            m.insert(id, flight.clone());
        }
        BlobProgress {
            id,
            flight,
            shared: self.shared.clone(),
            counts_total,
            finished: false,
        }
    }

    /// The destination has the blob already: its bytes count as done, nothing is read.
    pub fn present(&self, name: impl Into<String>, size: u64) {
        self.add_done(size);
        self.tell(&Finished {
            name: name.into(),
            size,
            present: true,
        });
    }

    /// The destination has a blob of a stream already (its bytes were counted with the
    /// stream's, or the stream skipped it).
    pub fn present_within(&self, name: impl Into<String>, size: u64) {
        self.tell(&Finished {
            name: name.into(),
            size,
            present: true,
        });
    }

    /// A blob held in memory was handed on whole (a stream's small JSON file): finished
    /// without ever being in flight; its bytes were counted with the stream's.
    pub fn delivered_within(&self, name: impl Into<String>, size: u64) {
        self.tell(&Finished {
            name: name.into(),
            size,
            present: false,
        });
    }

    /// The blobs in flight, oldest first.
    pub fn in_flight(&self) -> Vec<InFlight> {
        let Ok(m) = self.shared.in_flight.lock() else {
            return Vec::new();
        };
        m.iter()
            .map(|(id, f)| InFlight {
                id: *id,
                name: f.name.clone(),
                size: f.size,
                done: f.read.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn tell(&self, event: &Finished) {
        // Cloned out so the listener runs without the lock held.
        let listener = self.shared.listener.lock().ok().and_then(|l| l.clone());
        if let Some(l) = listener {
            l(event);
        }
    }
}

/// The handle of one blob in flight: counts its bytes, and leaves the set in flight when
/// dropped (with a [`Finished`] event only if [`BlobProgress::finish`] was called, so a
/// blob that failed is not reported done).
pub struct BlobProgress {
    id: u64,
    flight: Arc<Flight>,
    shared: Arc<Shared>,
    counts_total: bool,
    finished: bool,
}

impl BlobProgress {
    /// `n` more bytes of the blob were read.
    pub fn add(&self, n: u64) {
        self.flight.read.fetch_add(n, Ordering::Relaxed);
        if self.counts_total {
            self.shared.done.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Bytes of this blob read so far.
    pub fn read(&self) -> u64 {
        self.flight.read.load(Ordering::Relaxed)
    }

    /// The blob is complete and verified.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for BlobProgress {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shared.in_flight.lock() {
            m.remove(&self.id);
        }
        if self.finished {
            let p = Progress {
                shared: self.shared.clone(),
            };
            p.tell(&Finished {
                name: self.flight.name.clone(),
                size: self.read(),
                present: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_in_flight_until_done_and_then_reported_once() {
        let p = Progress::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        p.set_listener(Some(Arc::new(move |f: &Finished| {
            s.lock().unwrap().push(f.clone())
        })));
        let a = p.start("sha256:aaaa", Some(10));
        let b = p.start_within("blobs/x", None);
        a.add(4);
        b.add(3);
        let now = p.in_flight();
        assert_eq!(now.len(), 2);
        assert_eq!((now[0].name.as_str(), now[0].done), ("sha256:aaaa", 4));
        assert_eq!((now[1].name.as_str(), now[1].done), ("blobs/x", 3));
        // Only the blob that counts the total adds to it.
        assert_eq!(p.done(), 4);
        a.add(6);
        a.finish();
        // A failed blob leaves the set without being reported.
        drop(b);
        assert!(p.in_flight().is_empty());
        p.present("sha256:cccc", 5);
        assert_eq!(p.done(), 15);
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                Finished {
                    name: "sha256:aaaa".into(),
                    size: 10,
                    present: false
                },
                Finished {
                    name: "sha256:cccc".into(),
                    size: 5,
                    present: true
                },
            ]
        );
    }
}
