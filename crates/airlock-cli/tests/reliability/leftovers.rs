//! What killed commands leave outside the store proper: hidden temporary outputs, half
//! created or half removed work containers. The next run or `gc` removes them; nothing a
//! running command holds is touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::util::{layer_with_file, noise, scratch, write_docker_archive, Airlock};

fn store_with_app() -> (tempfile::TempDir, Airlock, std::path::PathBuf) {
    let dir = scratch();
    let archive = dir.path().join("app.tar");
    write_docker_archive(
        &archive,
        "app:1",
        // Larger than a pipe's buffer: a closed reader is always noticed.
        &[layer_with_file("f.bin", &noise(300_000, 7))],
    );
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    (dir, airlock, archive)
}

#[test]
fn gc_removes_what_killed_creates_and_rms_left() {
    let (_dir, airlock, _) = store_with_app();
    airlock.ok(&["create", "app:1", "--name", "keep"]);
    let containers = airlock.store.join("containers");
    // What a kill leaves: a half-unpacked container (with a read-only directory from the
    // image, as real ones have) and a half-deleted one renamed aside.
    for leftover in [".creating-Ab12Cd", ".removing-4242-old"] {
        let ro = containers.join(leftover).join("rootfs/usr");
        fs::create_dir_all(&ro).unwrap();
        fs::write(ro.join("file"), b"x").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    }
    airlock.ok(&["gc"]);
    let left: Vec<String> = fs::read_dir(&containers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["keep".to_string()]);
    assert!(airlock.ok(&["containers"]).contains("keep"));
}

#[test]
fn rm_removes_a_container_directory_without_a_record() {
    let (_dir, airlock, _) = store_with_app();
    // An older airlock killed in `rm` left the directory without its record: `create
    // --name` refused the name and `rm` said there was no such container.
    let broken = airlock.store.join("containers/work/rootfs/etc");
    fs::create_dir_all(&broken).unwrap();
    airlock.ok(&["rm", "work"]);
    assert!(!airlock.store.join("containers/work").exists());
    airlock.ok(&["create", "app:1", "--name", "work"]);
    let err = airlock.fails(&["rm", "nothere"]);
    assert!(err.contains("nothere"), "{err}");
}

#[test]
fn save_sweeps_abandoned_temporary_outputs_but_not_live_ones() {
    let (dir, airlock, _) = store_with_app();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let stale = out.join(".airlock-Xy12Zw");
    fs::write(&stale, vec![0u8; 4096]).unwrap();
    // One a running airlock holds (its lock taken by another process).
    let live = out.join(".airlock-volume-Live01");
    fs::write(&live, b"in progress").unwrap();
    let mut holder = Command::new("flock")
        .arg(&live)
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .expect("run flock (util-linux)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let tar = out.join("app.tar");
    airlock.ok(&["save", "app:1", "-o", tar.to_str().unwrap()]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!stale.exists(), "an abandoned temporary output stayed");
    assert!(live.exists(), "a temporary output in use was removed");
    let mode = fs::metadata(&tar).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn layout_files_are_readable_by_others() {
    let (dir, airlock, _) = store_with_app();
    let layout = dir.path().join("layout");
    airlock.ok(&["copy", "app:1", &format!("oci:{}", layout.display())]);
    for rel in ["index.json", "oci-layout"] {
        for root in [&layout, &airlock.store] {
            let mode = fs::metadata(root.join(rel)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{}", root.join(rel).display());
        }
    }
    for e in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}

#[test]
fn an_archive_into_a_closed_pipe_is_an_error_and_a_bare_output_name_works() {
    // `airlock save img | consumer` where the consumer dies: the archive never arrived
    // whole, which a script must be able to see.
    let (dir, airlock, _) = store_with_app();
    for args in [&["save", "app:1"][..], &["export", "app:1"]] {
        let mut child = airlock
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("stopped before the output was complete"),
            "{stderr}"
        );
    }
    // A bare file name is written in the current directory.
    let status = airlock
        .cmd()
        .args(["inventory", "-o", "inv.json"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(dir.path().join("inv.json").is_file());
}

#[test]
fn a_layout_whose_blobs_directory_is_a_link_elsewhere_is_refused() {
    let (dir, airlock, _) = store_with_app();
    let layout = dir.path().join("layout");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(&layout).unwrap();
    std::os::unix::fs::symlink(&elsewhere, layout.join("blobs")).unwrap();
    let err = airlock.fails(&["copy", "app:1", &format!("oci:{}", layout.display())]);
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(
        walk(&elsewhere),
        Vec::<String>::new(),
        "written through the link"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
