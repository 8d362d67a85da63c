//! A stored blob damaged after it was verified: export and create refuse it, fsck finds
//! it, loading a good archive again repairs it, `fsck --repair` drops what it breaks.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{layer_with_file, noise, scratch, tar_listing, write_docker_archive, Airlock};

/// A store holding `app:1` (two layers), and the archive it came from.
struct Damaged {
    dir: tempfile::TempDir,
    airlock: Airlock,
    archive: PathBuf,
}

impl Damaged {
    fn new() -> Self {
        let dir = scratch();
        let archive = dir.path().join("app.tar");
        write_docker_archive(
            &archive,
            "app:1",
            &[
                layer_with_file("base.bin", &noise(300_000, 1)),
                layer_with_file("top.bin", &noise(200_000, 2)),
            ],
        );
        let airlock = Airlock::new(&dir.path().join("store"));
        airlock.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        Damaged {
            dir,
            airlock,
            archive,
        }
    }

    /// The stored blob of the image's bottom layer (the only one of about 300 kB).
    fn bottom_layer(&self) -> PathBuf {
        let blobs: Vec<PathBuf> = fs::read_dir(self.airlock.store.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| (290_000..320_000).contains(&fs::metadata(p).unwrap().len()))
            .collect();
        assert_eq!(blobs.len(), 1, "one stored blob of the 300 kB layer");
        blobs[0].clone()
    }

    /// Flip one byte in the middle of the bottom layer.
    fn flip(&self) -> String {
        let p = self.bottom_layer();
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        fs::write(&p, bytes).unwrap();
        format!("sha256:{}", p.file_name().unwrap().to_string_lossy())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    store
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn hidden_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn export_refuses_a_damaged_stored_layer_and_writes_nothing() {
    let s = Damaged::new();
    let damaged = s.flip();
    let out = s.path("rootfs.tar");
    let err = s
        .airlock
        .fails(&["export", "app:1", "-o", out.to_str().unwrap()]);
    assert!(
        err.contains(&format!("the store's blob {damaged} is damaged")),
        "{err}"
    );
    assert!(err.contains("airlock fsck"), "the hint names fsck: {err}");
    assert!(!out.exists(), "a failed export left {}", out.display());
    assert_eq!(hidden_files(s.dir.path()), Vec::<String>::new());
    // Through a pipe, too: the damage is found before anything is written.
    let piped = s.airlock.run(&["export", "app:1"]);
    assert_eq!(piped.status.code(), Some(1));
    assert!(piped.stdout.is_empty(), "export wrote before it checked");
}

#[test]
fn create_refuses_a_damaged_stored_layer_and_leaves_no_container() {
    let s = Damaged::new();
    let damaged = s.flip();
    let err = s.airlock.fails(&["create", "app:1", "--name", "work"]);
    assert!(err.contains(&format!("{damaged} is damaged")), "{err}");
    assert_eq!(s.airlock.ok(&["containers"]).lines().count(), 1);
    let containers = s.airlock.store.join("containers");
    assert_eq!(hidden_files(&containers), Vec::<String>::new());
}

#[test]
fn fsck_finds_the_damage_and_loading_the_archive_again_repairs_it() {
    let s = Damaged::new();
    let good = s.path("good.tar");
    s.airlock
        .ok(&["export", "app:1", "-o", good.to_str().unwrap()]);
    let clean = s.airlock.ok(&["fsck"]);
    assert!(clean.contains("The store is consistent"), "{clean}");

    let damaged = s.flip();
    let out = s.airlock.run(&["fsck"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("Damaged: {damaged}")), "{stdout}");
    assert!(stdout.contains("Cannot be used whole: app:1"), "{stdout}");
    assert!(stderr.contains("1 damaged blobs"), "{stderr}");

    let loaded = s.airlock.ok(&["load", "-i", s.archive.to_str().unwrap()]);
    assert!(loaded.contains("app:1"), "{loaded}");
    let repaired = s.airlock.ok(&["fsck"]);
    assert!(repaired.contains("The store is consistent"), "{repaired}");
    let again = s.path("again.tar");
    s.airlock
        .ok(&["export", "app:1", "-o", again.to_str().unwrap()]);
    assert_eq!(tar_listing(&again), tar_listing(&good));
}

#[test]
fn fsck_repair_drops_the_broken_image_and_keeps_the_rest() {
    let s = Damaged::new();
    let other = s.path("other.tar");
    write_docker_archive(
        &other,
        "other:1",
        &[layer_with_file("o.bin", &noise(1000, 3))],
    );
    s.airlock.ok(&["load", "-q", "-i", other.to_str().unwrap()]);
    let damaged = s.flip();
    let out = s.airlock.ok(&["fsck", "--repair"]);
    assert!(out.contains(&format!("Damaged: {damaged}")), "{out}");
    assert!(out.contains("Dropped app:1"), "{out}");
    assert!(out.contains("The store is consistent"), "{out}");
    let images = s.airlock.ok(&["images"]);
    assert!(images.contains("other"), "{images}");
    assert!(!images.contains("app "), "{images}");
    assert!(!blob_path(&s.airlock.store, &damaged).exists());
    // The archive brings it back whole.
    s.airlock
        .ok(&["load", "-q", "-i", s.archive.to_str().unwrap()]);
    assert!(s.airlock.ok(&["fsck"]).contains("The store is consistent"));
    s.airlock.ok(&["export", "app:1", "-o", "/dev/null"]);
}
