//! A progress line on standard error (only when it is a terminal): bytes done of the total,
//! rate and time left, redrawn a few times a second by a helper thread. The library only
//! bumps the counters of an [`airlock_remote::transports::Progress`] where it reads bytes;
//! it knows nothing about terminals. A leaf module.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_remote::transports::Progress;

/// A running progress display.
pub struct Meter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Meter {
    /// Start showing `label` for `progress`; shows nothing when `quiet` or standard error
    /// is not a terminal.
    pub fn start(label: &str, progress: &Progress, quiet: bool) -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && io::stderr().is_terminal()).then(|| {
            let (p, stop, label) = (progress.clone(), stop.clone(), label.to_string());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    draw(
                        &label,
                        p.done.load(Ordering::Relaxed),
                        p.total.load(Ordering::Relaxed),
                        started.elapsed(),
                    );
                }
                eprint!("\r\x1b[2K");
            })
        });
        Meter { stop, thread }
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
    let line = if total > 0 && done == 0 {
        // Nothing moved yet (deltas being made, a connection opening): no rate to go by.
        format!("{label} 0/{:.0} MB", mb(total as f64))
    } else if total > 0 {
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
