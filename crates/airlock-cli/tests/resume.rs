//! A load of split volumes that stops (issue 13, 4) goes on where it stopped: the volumes
//! before that point are not read again (counted with strace), need not even be there, and
//! the store ends as an uninterrupted load leaves it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    airlock_bin, layer_with_file, noise, require_tool, scratch, tree_hash, write_docker_archive,
    Airlock,
};

const IMAGE: &str = "localhost/resume/app:1";

/// The bytes `read` returned per file whose name ends in a volume suffix, from an
/// `strace -f -e trace=openat,read,close` log.
fn bytes_read_per_volume(log: &str) -> BTreeMap<String, u64> {
    // Per process: fd -> path; and the fd of a read left unfinished by a thread switch.
    let mut fds: BTreeMap<(String, i64), String> = BTreeMap::new();
    let mut pending: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let is_volume = |p: &str| {
        p.rsplit('.')
            .next()
            .is_some_and(|x| x.len() == 3 && x.bytes().all(|b| b.is_ascii_digit()))
    };
    for line in log.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let result = rest
            .rsplit_once(" = ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|r| r.parse::<i64>().ok());
        if let Some(args) = rest.strip_prefix("openat(") {
            if let (Some(path), Some(fd)) = (args.split('"').nth(1), result) {
                if fd >= 0 {
                    fds.insert((pid.to_string(), fd), path.to_string());
                }
            }
        } else if let Some(args) = rest.strip_prefix("close(") {
            if let Ok(fd) = args.split(')').next().unwrap_or("").parse::<i64>() {
                fds.remove(&(pid.to_string(), fd));
            }
        } else if let Some(args) = rest.strip_prefix("read(") {
            let fd: i64 = args.split(',').next().unwrap_or("").parse().unwrap_or(-1);
            if rest.ends_with("<unfinished ...>") {
                pending.insert(pid.to_string(), (pid.to_string(), fd));
            } else if let (Some(path), Some(n)) = (fds.get(&(pid.to_string(), fd)), result) {
                if is_volume(path) && n > 0 {
                    *out.entry(path.clone()).or_insert(0) += n as u64;
                }
            }
        } else if rest.starts_with("<... read resumed>") {
            if let (Some(key), Some(n)) = (pending.remove(pid), result) {
                if let Some(path) = fds.get(&key) {
                    if is_volume(path) && n > 0 {
                        *out.entry(path.clone()).or_insert(0) += n as u64;
                    }
                }
            }
        }
    }
    out
}

fn volume(base: &Path, i: usize) -> PathBuf {
    PathBuf::from(format!("{}.{i:03}", base.display()))
}

/// The store's visible state: its index and blobs (not its `tmp/`).
fn visible(store: &Path) -> (String, String) {
    (
        std::fs::read_to_string(store.join("index.json")).unwrap(),
        tree_hash(&store.join("blobs")),
    )
}

/// An image of three 3 MiB layers that cannot compress, saved from the store `near` in
/// `dir` as exactly four volumes of 2600 KiB (which cut through the layers). Returns their
/// base name.
fn four_volumes(dir: &Path, near: &Airlock) -> PathBuf {
    let layers: Vec<Vec<u8>> = (1..=3)
        .map(|i| layer_with_file(&format!("l{i}"), &noise(3 << 20, i)))
        .collect();
    let archive = dir.join("app.tar");
    write_docker_archive(&archive, IMAGE, &layers);
    near.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let stick = dir.join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    let base = stick.join("ship.tar");
    near.ok(&[
        "save",
        "--split",
        "2600K",
        "-o",
        base.to_str().unwrap(),
        IMAGE,
    ]);
    for i in 0..4 {
        assert!(volume(&base, i).exists(), "volume {i}");
    }
    assert!(!volume(&base, 4).exists(), "exactly four volumes");
    base
}

/// kill -9 at every fsync, rename and unlink of a load of the volumes (strace injects it),
/// then the same load again, straight away: it goes on from what the killed run left, and
/// ends with the store an uninterrupted load leaves.
#[test]
fn a_load_of_volumes_killed_anywhere_goes_on_when_run_again() {
    require_tool("strace");
    let dir = scratch();
    let base = four_volumes(dir.path(), &Airlock::new(&dir.path().join("near")));
    let whole = dir.path().join("whole");
    Airlock::new(&whole).ok(&["load", "-q", "-i", base.to_str().unwrap()]);
    let want = visible(&whole);
    let mut kills = 0;
    for syscall in ["fsync", "fdatasync", "rename", "unlink"] {
        for n in 1.. {
            let store = dir.path().join(format!("far-{syscall}-{n}"));
            let status = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("trace={syscall}"))
                .arg("-e")
                .arg(format!("inject={syscall}:signal=SIGKILL:when={n}"))
                .arg(airlock_bin())
                .arg("--store")
                .arg(&store)
                .args(["load", "-q", "-i"])
                .arg(&base)
                .env_remove("AIRLOCK_STORE")
                .output()
                .unwrap()
                .status;
            if status.success() {
                break;
            }
            kills += 1;
            let again = Airlock::new(&store);
            let (ok, out) = again.run_text(&["load", "-i", base.to_str().unwrap()]);
            assert!(ok, "killed at {syscall} #{n}, then run again: {out}");
            assert_eq!(visible(&store), want, "killed at {syscall} #{n}");
            again.ok(&["fsck"]);
            std::fs::remove_dir_all(&store).unwrap();
        }
    }
    assert!(kills >= 10, "only {kills} kill points");
}

#[test]
fn an_interrupted_load_of_four_volumes_reads_only_the_volumes_after_the_stop() {
    require_tool("strace");
    let dir = scratch();
    let near = Airlock::new(&dir.path().join("near"));
    let base = four_volumes(dir.path(), &near);

    // The reference: one load with every volume there.
    let whole = dir.path().join("whole");
    Airlock::new(&whole).ok(&["load", "-q", "-i", base.to_str().unwrap()]);

    // Volume 3 (ship.tar.002) is not there: the load stops after volume 2, says where it
    // goes on, and nothing is visible in the store.
    let far_path = dir.path().join("far");
    let far = Airlock::new(&far_path);
    far.ok(&["images"]);
    let before = visible(&far_path);
    let third = volume(&base, 2);
    let aside = dir.path().join("aside.002");
    std::fs::rename(&third, &aside).unwrap();
    let err = far.fails(&["load", "-i", base.to_str().unwrap()]);
    assert!(
        err.contains("ship.tar.002") && err.contains("run the same command again"),
        "{err}"
    );
    assert_eq!(visible(&far_path), before, "a stopped load shows nothing");
    // A verify stops there too, and keeps its own place.
    let checker = Airlock::new(&dir.path().join("checker"));
    let err = checker.fails(&["verify", "-i", base.to_str().unwrap()]);
    assert!(err.contains("ship.tar.002"), "{err}");

    // The first two volumes go back to their owner; the third arrives. The rerun reads
    // volumes 3 and 4, whole, and nothing else.
    let sizes: Vec<u64> = (0..4)
        .map(|i| {
            let p = if i == 2 {
                aside.clone()
            } else {
                volume(&base, i)
            };
            std::fs::metadata(p).unwrap().len()
        })
        .collect();
    std::fs::remove_file(volume(&base, 0)).unwrap();
    std::fs::remove_file(volume(&base, 1)).unwrap();
    std::fs::rename(&aside, &third).unwrap();
    let log = dir.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat,read,close", "-o"])
        .arg(&log)
        .arg(airlock_bin())
        .arg("--store")
        .arg(&far_path)
        .args(["load", "-i"])
        .arg(&base)
        .env_remove("AIRLOCK_STORE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Resumed at") && text.contains("ship.tar.002"),
        "{text}"
    );
    let read = bytes_read_per_volume(&std::fs::read_to_string(&log).unwrap());
    let want: BTreeMap<String, u64> = [2, 3]
        .into_iter()
        .map(|i| (volume(&base, i).display().to_string(), sizes[i]))
        .collect();
    assert_eq!(read, want, "only volumes 3 and 4 are read, each once");
    // The verify goes on from volume 3 as well, and checks the rest.
    let (ok, out) = checker.run_text(&["verify", "-i", base.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Resumed at") && out.contains("verified by the interrupted run"),
        "{out}"
    );
    assert!(out.contains(IMAGE) || out.contains("resume/app"), "{out}");

    // The same store as the uninterrupted load, and no resume state left behind.
    assert_eq!(visible(&far_path), visible(&whole));
    let left: Vec<_> = std::fs::read_dir(far_path.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("resume-")),
        "{left:?}"
    );
    let fsck = far.ok(&["fsck"]);
    assert!(!fsck.to_lowercase().contains("missing"), "{fsck}");
    assert_eq!(far.inspect(IMAGE)["Id"], near.inspect(IMAGE)["Id"]);
}
