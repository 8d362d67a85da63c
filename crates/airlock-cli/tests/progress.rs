//! Progress as people see it: bars on a real terminal (a tmux pane, its screen compared
//! while a load waits for the rest of its archive and once it is done), one line per
//! finished blob with `--progress plain`, nothing on a non-terminal by default, and no
//! colour under `NO_COLOR`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{
    airlock_bin, layer_with_file, noise, require_tool, scratch, sh, sha256, write_docker_archive,
    Airlock,
};

/// An archive of one image with a 1 MiB and a 16 MiB layer, and the layers.
fn archive(dir: &Path) -> (PathBuf, Vec<Vec<u8>>) {
    let layers = vec![
        layer_with_file("small.bin", &noise(1 << 20, 7)),
        layer_with_file("big.bin", &noise(16 << 20, 8)),
    ];
    let path = dir.join("image.tar");
    write_docker_archive(&path, "progress/test:1", &layers);
    (path, layers)
}

/// How the bars show a blob known by its archive path (`<hex>.tar`): its last 18
/// characters.
fn shown_path(layer: &[u8]) -> String {
    let name = format!("{}.tar", &sha256(layer)[7..]);
    let tail: String = name.chars().skip(name.chars().count() - 18).collect();
    format!("…{tail}")
}

/// A tmux server of its own, killed when the test ends (pass or fail).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        require_tool("tmux");
        Tmux {
            socket: format!("airlock-progress-{tag}-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    /// Run `line` in a 120x30 pane of a new session.
    fn start(&self, line: &str) {
        sh(self.cmd().args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "30",
            line,
        ]));
    }

    /// The pane as shown (with `escapes`: with its colour and attribute escapes).
    fn screen(&self, escapes: bool) -> String {
        let mut c = self.cmd();
        c.args(["capture-pane", "-p", "-t", "t"]);
        if escapes {
            c.arg("-e");
        }
        sh(&mut c)
    }

    /// Wait until `test` holds for the screen; panic with the screen after `secs`.
    fn wait_for(&self, what: &str, secs: u64, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen(false);
            if test(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// What a load showed in a 120x30 pane: the screen (plain and with escapes) while it
/// waited inside the big layer, and the screen once it was done.
struct Seen {
    mid: String,
    mid_escapes: String,
    end: String,
}

/// Run `airlock load` in a tmux pane, reading the archive from a FIFO that this test feeds:
/// everything up to the middle of the big layer, then (once the screen has been read) the
/// rest.
fn load_in_a_pane(tag: &str, env: &str, archive: &Path, big: &[u8]) -> Seen {
    let tmp = scratch();
    let fifo = tmp.path().join("feed");
    sh(Command::new("mkfifo").arg(&fifo));
    let store = tmp.path().join("store");
    let tmux = Tmux::new(tag);
    let line = format!(
        "env {env} {bin} --store {store} load -i {fifo}; echo EXIT=$?; sleep 600",
        bin = airlock_bin().display(),
        store = store.display(),
        fifo = fifo.display(),
    );
    tmux.start(&line);
    let bytes = std::fs::read(archive).unwrap();
    // Cut in the middle of the big layer's bytes.
    let at = find(&bytes, &big[..4096]) + big.len() / 2;
    let (go, wait) = mpsc::channel::<()>();
    let feeder = {
        let (fifo, bytes) = (fifo.clone(), bytes.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            f.write_all(&bytes[..at]).unwrap();
            f.flush().unwrap();
            if wait.recv().is_ok() {
                f.write_all(&bytes[at..]).unwrap();
            }
        })
    };
    let row = shown_path(big);
    let mid = tmux.wait_for("the big layer's bar", 60, |s| {
        s.contains(&row) && s.contains("8.39 MB/16.78 MB")
    });
    let mid_escapes = tmux.screen(true);
    go.send(()).unwrap();
    feeder.join().unwrap();
    let end = tmux.wait_for("the load to end", 60, |s| s.contains("EXIT="));
    Seen {
        mid,
        mid_escapes,
        end,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("the layer is in the archive")
}

/// An SGR escape that sets a foreground colour (`ESC [ 3x m`, also inside `ESC [ 1;36 m`).
fn has_colour(s: &str) -> bool {
    s.split('\x1b').skip(1).any(|e| {
        e.strip_prefix('[')
            .and_then(|e| e.split_once('m'))
            .is_some_and(|(params, _)| {
                params
                    .split(';')
                    .any(|p| p.len() == 2 && p.starts_with('3') && p != "39")
            })
    })
}

#[test]
fn progress_bars_on_a_terminal_one_per_blob_in_flight_and_a_total() {
    let tmp = scratch();
    let (path, layers) = archive(tmp.path());
    let seen = load_in_a_pane("bars", "-u NO_COLOR", &path, &layers[1]);
    let mid: Vec<&str> = seen.mid.lines().collect();
    // The blob in flight has its bar: its name, bytes so far of its size.
    let big_row = shown_path(&layers[1]);
    let bar = mid
        .iter()
        .find(|l| l.contains(&big_row))
        .unwrap_or_else(|| panic!("no bar for the big layer:\n{}", seen.mid));
    assert!(
        bar.contains("8.39 MB/16.78 MB") && bar.contains('['),
        "{bar}"
    );
    // The small layer finished: a line says so, and it has no bar any more.
    let small_row = shown_path(&layers[0]);
    let small: Vec<&&str> = mid.iter().filter(|l| l.contains(&small_row)).collect();
    assert_eq!(small.len(), 1, "{}", seen.mid);
    assert!(small[0].ends_with("1.1MB done"), "{}", small[0]);
    // The total: what was read of the stream (a FIFO has no size to count down from) and
    // the rate.
    let total = mid
        .iter()
        .find(|l| l.starts_with("Loading "))
        .unwrap_or_else(|| panic!("no total line:\n{}", seen.mid));
    assert!(total.contains(" MB") && total.ends_with("/s"), "{total}");
    // Bars are coloured on a terminal.
    assert!(has_colour(&seen.mid_escapes), "{:?}", seen.mid_escapes);

    // Done: the bars are gone, every blob has its line, then the summary and the result.
    assert!(seen.end.contains("EXIT=0"), "{}", seen.end);
    assert!(!seen.end.contains("MB/16.78 MB"), "{}", seen.end);
    assert!(!seen.end.contains('['), "{}", seen.end);
    let end: Vec<&str> = seen.end.lines().collect();
    assert!(end
        .iter()
        .any(|l| l.contains(&big_row) && l.ends_with("16.8MB done")));
    assert!(end.iter().any(|l| l.starts_with("Loading done: 3 blobs, ")));
    assert!(
        end.contains(&"Loaded image: progress/test:1"),
        "{}",
        seen.end
    );
}

#[test]
fn progress_without_colour_when_no_color_is_set() {
    let tmp = scratch();
    let (path, layers) = archive(tmp.path());
    let seen = load_in_a_pane("nocolor", "NO_COLOR=1", &path, &layers[1]);
    assert!(seen.mid.contains(&shown_path(&layers[1])), "{}", seen.mid);
    assert!(!has_colour(&seen.mid_escapes), "{:?}", seen.mid_escapes);
    assert!(seen.end.contains("EXIT=0"), "{}", seen.end);
}

#[test]
fn progress_plain_writes_a_line_per_finished_blob() {
    let tmp = scratch();
    let (path, layers) = archive(tmp.path());
    let airlock = Airlock::new(&tmp.path().join("store"));
    let out = airlock
        .cmd()
        .args(["--progress", "plain", "load", "-i"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    // The config and both layers, each once, then the summary.
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[..3]
        .iter()
        .all(|l| l.starts_with("Loading ") && l.ends_with(" done")));
    for l in &layers {
        let row = shown_path(l);
        assert_eq!(
            lines.iter().filter(|x| x.contains(&row)).count(),
            1,
            "{err}"
        );
    }
    assert!(lines[3].starts_with("Loading done: 3 blobs, "), "{err}");

    // A save (a planned copy, blobs named by digest) alike.
    let out = airlock
        .cmd()
        .args(["--progress", "plain", "save", "progress/test:1", "-o"])
        .arg(tmp.path().join("out.tar"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    for l in &layers {
        let line = format!("Saving {} ", &sha256(l)[..19]);
        assert_eq!(
            err.lines().filter(|x| x.starts_with(&line)).count(),
            1,
            "{err}"
        );
    }
    assert!(err.contains("Saving done: "), "{err}");

    // --quiet wins.
    let store2 = tmp.path().join("store2");
    let out = Airlock::new(&store2)
        .cmd()
        .args(["--progress", "plain", "load", "--quiet", "-i"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn progress_by_default_shows_nothing_on_a_non_terminal() {
    let tmp = scratch();
    let (path, _) = archive(tmp.path());
    let run = |store: &str, extra: &[&str]| {
        let out = Airlock::new(&tmp.path().join(store))
            .cmd()
            .args(extra)
            .args(["load", "-i"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (out, err) = run("a", &[]);
    assert_eq!(out, "Loaded image: progress/test:1\n");
    // Nothing but what `--progress none` prints: no progress, no escapes.
    assert_eq!((out, err.clone()), run("b", &["--progress", "none"]));
    assert!(!err.contains("Loading") && !err.contains('\x1b'), "{err:?}");
}

/// One HTTP/1.1 request on a connection of its own; the status line and headers of the
/// answer. With `pause`, the body is sent in two halves and `pause` runs between them.
fn http(addr: &str, head: &str, body: &[u8], pause: impl FnOnce()) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{head} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let half = body.len() / 2;
    s.write_all(&body[..half]).unwrap();
    s.flush().unwrap();
    pause();
    s.write_all(&body[half..]).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn header<'a>(answer: &'a str, name: &str) -> &'a str {
    answer
        .lines()
        .find_map(|l| {
            l.split_once(": ")
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
}

/// `serve --read-write` on a terminal: an upload in flight has its bar (bytes of its
/// Content-Length) while the client is still sending, and leaves a line naming the blob's
/// digest once it is stored; Ctrl-C stops the server with the summary.
#[test]
fn serve_draws_a_bar_per_upload_in_flight() {
    let tmp = scratch();
    let tmux = Tmux::new("serve");
    let line = format!(
        "env -u NO_COLOR {bin} --store {store} serve --read-write --listen 127.0.0.1:0 --progress tty; echo EXIT=$?; sleep 600",
        bin = airlock_bin().display(),
        store = tmp.path().join("store").display(),
    );
    tmux.start(&line);
    let screen = tmux.wait_for("the server to listen", 30, |s| s.contains("/v2/"));
    let addr = screen
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_once("/v2/"))
        .map(|(a, _)| a.to_string())
        .unwrap_or_else(|| panic!("no address on the screen:\n{screen}"));

    let started = http(&addr, "POST /v2/team/app/blobs/uploads/", b"", || {});
    assert!(started.starts_with("HTTP/1.1 202"), "{started}");
    let location = header(&started, "Location").to_string();
    let id = header(&started, "Docker-Upload-UUID").to_string();
    let blob = noise(4 << 20, 5);
    let row = format!("upload {}", &id[..12]);
    let patched = http(&addr, &format!("PATCH {location}"), &blob, || {
        let mid = tmux.wait_for("the upload's bar", 30, |s| {
            s.contains(&row) && s.contains("2.10 MB/4.19 MB")
        });
        let bar = mid.lines().find(|l| l.contains(&row)).unwrap();
        assert!(bar.contains('['), "{bar}");
        assert!(
            mid.lines().any(|l| l.starts_with("Receiving ")),
            "no total line:\n{mid}"
        );
    });
    assert!(patched.starts_with("HTTP/1.1 202"), "{patched}");
    let digest = sha256(&blob);
    let put = http(
        &addr,
        &format!("PUT {location}?digest={digest}"),
        b"",
        || {},
    );
    assert!(put.starts_with("HTTP/1.1 201"), "{put}");
    let done = format!("{} 4.2MB done", &digest[..7 + 12]);
    let after = tmux.wait_for("the stored blob's line", 30, |s| s.contains(&done));
    assert!(
        !after.contains(&row),
        "the bar stays after the upload:\n{after}"
    );

    sh(tmux.cmd().args(["send-keys", "-t", "t", "C-c"]));
    let end = tmux.wait_for("the server to stop", 30, |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(
        end.lines()
            .any(|l| l.starts_with("Receiving done: 1 blobs, ")),
        "{end}"
    );
}

/// `sync` on a terminal: its own "Pulled SOURCE" lines go above the bars, so that the
/// final screen has each of them whole, beside the blobs' lines and the summary.
#[test]
fn sync_prints_its_lines_above_the_bars() {
    let tmp = scratch();
    for (file, name, seed) in [("a.tar", "progress/a:1", 21), ("b.tar", "progress/b:1", 22)] {
        write_docker_archive(
            &tmp.path().join(file),
            name,
            &[layer_with_file("big.bin", &noise(3 << 20, seed))],
        );
    }
    let shipment = tmp.path().join("shipment.yaml");
    std::fs::write(
        &shipment,
        "apiVersion: airlock.dev/v1\nkind: Shipment\nimages:\n  - archive: a.tar\n  - archive: b.tar\n",
    )
    .unwrap();
    let tmux = Tmux::new("sync");
    let line = format!(
        "env -u NO_COLOR {bin} --store {store} sync -f {shipment} --progress tty; echo EXIT=$?; sleep 600",
        bin = airlock_bin().display(),
        store = tmp.path().join("store").display(),
        shipment = shipment.display(),
    );
    tmux.start(&line);
    let end = tmux.wait_for("the sync to end", 60, |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
    let lines: Vec<&str> = end.lines().map(str::trim_end).collect();
    for file in ["a.tar", "b.tar"] {
        let name = format!("archive:{}", tmp.path().join(file).display());
        assert!(
            lines.iter().any(|l| *l == format!("Pulled {name}")),
            "no whole line for {name}:\n{end}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("Pulling done: ")),
        "{end}"
    );
    assert!(!end.contains('['), "bars left on the screen:\n{end}");
}
