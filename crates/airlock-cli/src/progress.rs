//! Drawing a copy's progress on standard error. The library fills an
//! [`airlock_remote::transports::Progress`] (bytes done of the total, the blobs in flight,
//! an event per finished blob) and knows nothing about terminals; this module chooses how
//! to show it (`--progress`): bars on a terminal, one line per finished blob for a CI log,
//! or nothing. A leaf module: only [`crate::output`] below it.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_remote::transports::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use airlock_core::copy::Finished;

use crate::output::human_size;

/// `--progress`: how a copy's progress is shown on standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// Bars when standard error is a terminal, else nothing.
    #[default]
    Auto,
    /// Bars (one per blob in flight and a total with rate and time left), even when
    /// standard error is no terminal.
    Tty,
    /// One line per finished blob and a summary: for CI logs.
    Plain,
    /// Nothing.
    None,
}

/// What is drawn, once `auto` and `--quiet` are decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Off,
}

impl Choice {
    fn mode(self, quiet: bool) -> Mode {
        match self {
            _ if quiet => Mode::Off,
            Choice::Auto if io::stderr().is_terminal() => Mode::Bars,
            Choice::Auto | Choice::None => Mode::Off,
            Choice::Tty => Mode::Bars,
            Choice::Plain => Mode::Lines,
        }
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but "" (what
/// no-color.org asks). `console`, which draws the bars, reads NO_COLOR itself but also
/// takes an empty value as "no colour", and decides for standard output, not standard
/// error: so airlock decides and tells it.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && io::stderr().is_terminal()
}

/// A running progress display; [`Meter::finish`] prints the summary of a copy that
/// succeeded, dropping it without stops the display silently (the error says the rest).
pub struct Meter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    progress: Progress,
    mode: Mode,
    label: String,
    started: Instant,
    blobs: Arc<AtomicU64>,
    /// To the bars' thread, which prints lines above the bars.
    lines: Option<Sender<Shown>>,
}

/// What the bars' thread prints above the bars.
enum Shown {
    Finished(Finished),
    Line(String),
}

impl Meter {
    /// Start showing `label` ("Loading") for `progress` as `choice` says; `quiet` shows
    /// nothing.
    pub fn start(label: &str, progress: &Progress, choice: Choice, quiet: bool) -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let blobs = Arc::new(AtomicU64::new(0));
        let mode = choice.mode(quiet);
        let counted = blobs.clone();
        let mut lines = None;
        let thread = match mode {
            Mode::Off => None,
            Mode::Lines => {
                let verb = label.to_string();
                progress.set_listener(Some(Arc::new(move |f: &Finished| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{verb} {}", finished_line(f));
                })));
                None
            }
            Mode::Bars => {
                let (tx, rx) = mpsc::channel();
                lines = Some(tx.clone());
                progress.set_listener(Some(Arc::new(move |f: &Finished| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(Shown::Finished(f.clone()));
                })));
                let (p, stop, label) = (progress.clone(), stop.clone(), label.to_string());
                Some(std::thread::spawn(move || draw_bars(&label, &p, &stop, rx)))
            }
        };
        Meter {
            stop,
            thread,
            progress: progress.clone(),
            mode,
            label: label.to_string(),
            started: Instant::now(),
            blobs,
            lines,
        }
    }

    /// A line of the command's own on standard error (`Pulled NAME`): above the bars
    /// while they are drawn, so that no redraw overwrites it.
    pub fn say(&self, line: String) {
        match &self.lines {
            Some(tx) if self.thread.is_some() => {
                let _ = tx.send(Shown::Line(line));
            }
            _ => eprintln!("{line}"),
        }
    }

    /// The copy succeeded: stop drawing and say what moved.
    pub fn finish(mut self) {
        self.stop_drawing();
        if self.mode == Mode::Off {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let done = self.progress.done();
        eprintln!(
            "{} done: {} blobs, {} in {secs:.1}s ({}/s)",
            self.label,
            self.blobs.load(Ordering::Relaxed),
            human_size(done),
            human_size((done as f64 / secs.max(0.001)) as u64)
        );
    }

    fn stop_drawing(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.progress.set_listener(None);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop_drawing();
    }
}

/// "sha256:0123456789ab 12.3MB done": a blob as a log line shows it.
fn finished_line(f: &Finished) -> String {
    let what = if f.present { "already there" } else { "done" };
    format!("{} {} {what}", short(&f.name), human_size(f.size))
}

/// A digest cut to the 12 hex digits people recognise; an archive path (a blob whose
/// digest is not known yet) cut to fit a row.
fn short(name: &str) -> String {
    if let Some(hex) = name.strip_prefix("sha256:") {
        return format!("sha256:{}", &hex[..hex.len().min(12)]);
    }
    let n = name.chars().count();
    match n > 19 {
        true => format!("…{}", name.chars().skip(n - 18).collect::<String>()),
        false => name.to_string(),
    }
}

fn styles(colour: bool) -> (ProgressStyle, ProgressStyle, ProgressStyle) {
    let (bar, blob) = match colour {
        true => ("{bar:30.cyan/blue}", "{prefix:19.bold}"),
        false => ("{bar:30}", "{prefix:19}"),
    };
    let style = |t: String| {
        ProgressStyle::with_template(&t)
            .expect("a valid progress template")
            .progress_chars("=> ")
    };
    (
        style(format!(
            "{blob} [{bar}] {{decimal_bytes}}/{{decimal_total_bytes}}"
        )),
        style(format!(
            "{{msg}} [{bar}] {{decimal_bytes}}/{{decimal_total_bytes}} {{decimal_bytes_per_sec}}, {{eta}} left"
        )),
        // The total of a stream of unknown length: no bar, no time left.
        style("{msg} {decimal_bytes} {decimal_bytes_per_sec}".into()),
    )
}

/// The bars' thread: polls the record a few times a second, one bar per blob in flight
/// above the total; finished blobs leave a line above the bars.
fn draw_bars(label: &str, p: &Progress, stop: &AtomicBool, shown: Receiver<Shown>) {
    let colour = colour();
    console::set_colors_enabled(colour);
    console::set_colors_enabled_stderr(colour);
    let (blob_style, total_style, stream_style) = styles(colour);
    // Drawn on standard error whatever it is (`--progress tty` asked for bars).
    let target = ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10);
    let multi = MultiProgress::with_draw_target(target);
    // Styled before they are added: a bar draws as soon as it is, in indicatif's default
    // style otherwise.
    let total = multi.add(
        ProgressBar::new(0)
            .with_style(stream_style.clone())
            .with_message(label.to_string()),
    );
    let mut rows: Vec<(u64, ProgressBar)> = Vec::new();
    loop {
        let last = stop.load(Ordering::Relaxed);
        for s in shown.try_iter() {
            let _ = multi.println(match s {
                Shown::Finished(f) => finished_line(&f),
                Shown::Line(l) => l,
            });
        }
        let now = p.in_flight();
        rows.retain(|(id, bar)| {
            let keep = now.iter().any(|b| b.id == *id);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
        for b in &now {
            let bar = match rows.iter().find(|(id, _)| *id == b.id) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = ProgressBar::new(b.size.unwrap_or(b.done))
                        .with_style(blob_style.clone())
                        .with_prefix(short(&b.name));
                    let bar = multi.insert_before(&total, bar);
                    rows.push((b.id, bar.clone()));
                    bar
                }
            };
            bar.set_length(b.size.unwrap_or(b.done));
            bar.set_position(b.done);
        }
        let (done, of) = (p.done(), p.total());
        total.set_style(match of {
            0 => stream_style.clone(),
            _ => total_style.clone(),
        });
        total.set_length(of.max(done));
        total.set_position(done);
        if last {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (_, bar) in rows {
        bar.finish_and_clear();
    }
    total.finish_and_clear();
    let _ = multi.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_cut_to_twelve_digits_and_paths_to_a_row() {
        assert_eq!(
            short("sha256:0123456789abcdef0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(short("abc/layer.tar"), "abc/layer.tar");
        assert_eq!(
            short("0123456789abcdef0123456789/layer.tar")
                .chars()
                .count(),
            19
        );
    }

    #[test]
    fn quiet_and_none_draw_nothing_and_plain_always_writes_lines() {
        assert_eq!(Choice::Tty.mode(true), Mode::Off);
        assert_eq!(Choice::None.mode(false), Mode::Off);
        assert_eq!(Choice::Plain.mode(false), Mode::Lines);
        assert_eq!(Choice::Tty.mode(false), Mode::Bars);
    }
}
