//! A progress line on standard error (only when it is a terminal): bytes done of the total,
//! rate and time left, redrawn a few times a second by a helper thread. The work itself only
//! bumps an atomic counter through [`Meter::reader`] and
//! [`MeteredSource`], so the library knows nothing about terminals.

use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_core::transport::{ImageSource, SourceImage};
use airlock_core::Digest;

/// A running progress display.
pub struct Meter {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Meter {
    /// Start showing `label` against `total` bytes (0 = unknown); shows nothing when
    /// `quiet` or standard error is not a terminal.
    pub fn start(label: &str, total: u64, quiet: bool) -> Meter {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && io::stderr().is_terminal()).then(|| {
            let (done, stop, label) = (done.clone(), stop.clone(), label.to_string());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    draw(
                        &label,
                        done.load(Ordering::Relaxed),
                        total,
                        started.elapsed(),
                    );
                }
                eprint!("\r\x1b[2K");
            })
        });
        Meter { done, stop, thread }
    }

    /// The counter itself, for code that counts on its own (a registry client).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// Count what passes through `r`.
    pub fn reader<R: Read>(&self, r: R) -> Counted<R> {
        Counted {
            inner: r,
            done: self.done.clone(),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw(label: &str, done: u64, total: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let mb = |b: f64| b / 1e6;
    let line = if total > 0 {
        let left = total.saturating_sub(done) as f64 / rate.max(1.0);
        format!(
            "{label} {:.0}/{:.0} MB ({:.0}%) {:.0} MB/s, {:.0}s left",
            mb(done as f64),
            mb(total as f64),
            100.0 * done as f64 / total as f64,
            mb(rate),
            left
        )
    } else {
        format!("{label} {:.0} MB {:.0} MB/s", mb(done as f64), mb(rate))
    };
    eprint!("\r\x1b[2K{line}");
}

/// A reader or writer whose bytes are counted.
pub struct Counted<T> {
    inner: T,
    done: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Any image source, with the bytes read from its blobs counted.
pub struct MeteredSource<'a> {
    pub inner: &'a dyn ImageSource,
    pub meter: &'a Meter,
}

impl ImageSource for MeteredSource<'_> {
    fn images(&self) -> &[SourceImage] {
        self.inner.images()
    }
    fn open_blob(&self, digest: &Digest) -> airlock_core::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.meter.reader(self.inner.open_blob(digest)?)))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.inner.has_blob(digest)
    }
    fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        // Chunked uploads seek in the file directly; those bytes go uncounted.
        self.inner.blob_file(digest)
    }
}

/// Total bytes of the blobs of `images`, each once.
pub fn total_size(images: &[SourceImage]) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    images
        .iter()
        .flat_map(|i| i.blobs())
        .filter(|b| seen.insert(b.digest.clone()))
        .map(|b| b.size)
        .sum()
}
