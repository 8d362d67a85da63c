//! Concurrent loads, gc, rmi, tag, copy and save on one store for a bounded time: no
//! deadlock (every command ends within a minute), no spurious failure (every command
//! succeeds: none of them can rightly fail here), no lost image.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{airlock_bin, layer_with_file, noise, scratch, write_docker_archive};

const RUN_FOR: Duration = Duration::from_secs(12);
const DEADLOCK_AFTER: Duration = Duration::from_secs(60);

/// Run airlock to its end (or panic after [`DEADLOCK_AFTER`]); insist on success.
fn airlock(store: &Path, args: &[String]) {
    let mut child = Command::new(airlock_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("AIRLOCK_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLOCK_AFTER {
            let _ = child.kill();
            panic!("airlock {args:?} still runs after {DEADLOCK_AFTER:?}: a deadlock");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "airlock {args:?} failed under concurrency: {err}"
    );
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

#[test]
fn concurrent_load_gc_rmi_tag_copy_and_save() {
    let dir = scratch();
    let store = dir.path().join("store");
    // Archives that share their base layer with the image every thread leans on, so a gc
    // between a load's "already stored" and its commit would break the load.
    let base_layer = layer_with_file("base.bin", &noise(200_000, 1));
    let base = dir.path().join("base.tar");
    write_docker_archive(&base, "base:1", std::slice::from_ref(&base_layer));
    airlock(&store, &s(&["load", "-q", "-i", base.to_str().unwrap()]));
    let archives: Vec<PathBuf> = (0..4)
        .map(|k| {
            let p = dir.path().join(format!("l{k}.tar"));
            let top = layer_with_file("top.bin", &noise(50_000, 100 + k));
            write_docker_archive(&p, &format!("l{k}:1"), &[base_layer.clone(), top]);
            p
        })
        .collect();
    let ops = AtomicUsize::new(0);
    let deadline = Instant::now() + RUN_FOR;
    let store = store.as_path();
    std::thread::scope(|scope| {
        let ops = &ops;
        let archives = &archives;
        let run = |args: Vec<String>| {
            airlock(store, &args);
            ops.fetch_add(1, Ordering::Relaxed);
        };
        // Loaders: load, then remove what they loaded (so gc has blobs to delete).
        for t in 0..2 {
            scope.spawn(move || {
                let mut i = t;
                while Instant::now() < deadline {
                    let a = &archives[i % archives.len()];
                    let name = format!("l{}:1", i % archives.len());
                    run(s(&["load", "-q", "-i", a.to_str().unwrap()]));
                    run(s(&["tag", &name, &format!("mine{t}:{i}")]));
                    run(s(&["rmi", &format!("mine{t}:{i}")]));
                    i += 2;
                }
            });
        }
        scope.spawn(move || {
            while Instant::now() < deadline {
                run(s(&["gc"]));
            }
        });
        scope.spawn(move || {
            let mut i = 0;
            while Instant::now() < deadline {
                let name = format!("copied:{i}");
                run(s(&["copy", "-q", "base:1", &format!("store:{name}")]));
                run(s(&["rmi", &name]));
                i += 1;
            }
        });
        let out = dir.path().join("out.tar");
        scope.spawn(move || {
            while Instant::now() < deadline {
                run(s(&["save", "base:1", "-o", out.to_str().unwrap()]));
                run(s(&["verify", "-q", "-i", out.to_str().unwrap()]));
            }
        });
    });
    let done = ops.load(Ordering::Relaxed);
    println!("races: {done} commands in {RUN_FOR:?}, none failed");
    assert!(done > 40, "only {done} commands ran");
    airlock(store, &s(&["fsck"]));
    airlock(store, &s(&["export", "base:1", "-o", "/dev/null"]));
    for k in 0..archives.len() {
        airlock(
            store,
            &s(&["export", &format!("l{k}:1"), "-o", "/dev/null"]),
        );
    }
}
