//! Store commands (images, inspect, tag, rmi, gc), exit codes, concurrency, and kill -9.

use std::process::Stdio;
use std::time::Duration;

use crate::util::{
    fixtures, layer_with_file, noise, scratch, sha256, tree_hash, write_docker_archive, Airlock,
};

const APP: &str = "localhost/airlock-test/app:1";
const APP2: &str = "localhost/airlock-test/app2:1";

fn loaded_multi() -> (tempfile::TempDir, Airlock) {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&[
        "load",
        "-i",
        fixtures().join("podman-multi.tar").to_str().unwrap(),
    ]);
    (dir, airlock)
}

#[test]
fn names_resolve_like_docker_and_short_ids_work() {
    let (_d, airlock) = loaded_multi();
    let id = airlock.inspect(APP)["Id"].as_str().unwrap().to_string();
    assert_eq!(airlock.inspect(&id)["Id"], id.as_str());
    assert_eq!(airlock.inspect(&id[7..19])["Id"], id.as_str(), "short ID");
    airlock.ok(&["tag", APP, "redis:alpine"]);
    // All three spellings are one name.
    for n in [
        "redis:alpine",
        "library/redis:alpine",
        "docker.io/library/redis:alpine",
    ] {
        assert_eq!(airlock.inspect(n)["Id"], id.as_str(), "{n}");
    }
    let tags = airlock.inspect("redis:alpine")["RepoTags"].clone();
    assert!(
        tags.as_array().unwrap().iter().any(|t| t == "redis:alpine"),
        "{tags}"
    );
}

#[test]
fn images_lists_filters_and_prints_json() {
    let (_d, airlock) = loaded_multi();
    let table = airlock.ok(&["images"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(
        table.contains("localhost/airlock-test/app ")
            && table.contains("localhost/airlock-test/app2 "),
        "{table}"
    );
    let filtered = airlock.ok(&["images", "*app2*"]);
    assert!(
        filtered.contains("app2") && !filtered.contains("airlock-test/app "),
        "{filtered}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&airlock.ok(&["images", "--format", "json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert!(r["Id"].as_str().unwrap().starts_with("sha256:"));
        assert!(r["Size"].as_u64().unwrap() > 0);
    }
    let ids = airlock.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
}

#[test]
fn tag_move_is_reported_and_old_image_stays_untagged() {
    let (_d, airlock) = loaded_multi();
    let old = airlock.inspect(APP)["Id"].as_str().unwrap().to_string();
    let out = airlock.run(&["tag", APP2, APP]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("moved") && stderr.contains(&old),
        "{stderr}"
    );
    assert_eq!(airlock.inspect(APP)["Id"], airlock.inspect(APP2)["Id"]);
    // The old image is still there, by ID, with no name.
    let orphan = airlock.inspect(&old);
    assert_eq!(orphan["RepoTags"].as_array().unwrap().len(), 0);
    assert!(airlock.ok(&["images"]).contains("<none>"));
}

#[test]
fn rmi_untags_then_deletes_and_gc_frees_blobs() {
    let (_d, airlock) = loaded_multi();
    airlock.ok(&["tag", APP, "extra:1"]);
    let out = airlock.ok(&["rmi", "extra:1"]);
    assert!(
        out.contains("Untagged: extra:1") && !out.contains("Deleted"),
        "{out}"
    );
    let id = airlock.inspect(APP)["Id"].as_str().unwrap().to_string();
    let out = airlock.ok(&["rmi", &id]);
    assert!(out.contains("Deleted: ") && out.contains(&id), "{out}");
    let err = airlock.fails(&["inspect", APP]);
    assert!(
        err.contains("no image") && err.contains("airlock images"),
        "{err}"
    );
    // app2 shares the base layer with app: gc keeps it. A stray directory among the blobs
    // is left alone and does not stop it.
    std::fs::create_dir(airlock.store.join("blobs/sha256/stray")).unwrap();
    let out = airlock.ok(&["gc"]);
    assert!(airlock.store.join("blobs/sha256/stray").is_dir());
    assert!(
        out.contains("Deleted") && !out.contains("Deleted 0 "),
        "{out}"
    );
    let app2_layers = airlock.inspect(APP2)["Layers"].clone();
    for l in app2_layers.as_array().unwrap() {
        let hex = &l["Digest"].as_str().unwrap()[7..];
        assert!(
            airlock.store.join("blobs/sha256").join(hex).is_file(),
            "gc removed a live blob"
        );
    }
    airlock.ok(&["rmi", APP2]);
    airlock.ok(&["gc"]);
    let left: Vec<_> = std::fs::read_dir(airlock.store.join("blobs/sha256"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "stray")
        .collect();
    assert!(
        left.is_empty(),
        "blobs left after removing every image: {}",
        left.len()
    );
}

#[test]
fn exit_codes_and_usage_errors() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    assert_eq!(
        airlock.run(&["load", "--no-such-flag"]).status.code(),
        Some(2)
    );
    let err = airlock.fails(&["save", "-o", "/dev/null"]);
    assert!(err.contains("--all") && err.contains("--match"), "{err}");
    let err = airlock.fails(&["save", "-o", "/dev/null", "nothing:here"]);
    assert!(err.contains("no image 'nothing:here'"), "{err}");
    let err = airlock.fails(&["tag", "a", "Not A Name"]);
    assert!(err.contains("invalid image reference"), "{err}");
    let err = airlock.fails(&["load", "-i", "/no/such/file.tar"]);
    assert!(err.contains("/no/such/file.tar"), "{err}");
}

#[test]
fn save_to_a_pipe_loads_back() {
    let (_d, airlock) = loaded_multi();
    let out = airlock
        .cmd()
        .args(["save", "--compress", "gzip", APP2])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&out.stdout[..2], &[0x1f, 0x8b], "gzip stream expected");
    let dir2 = scratch();
    let other = Airlock::new(&dir2.path().join("store"));
    let mut child = other
        .cmd()
        .args(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &out.stdout).unwrap();
    drop(child.stdin.take());
    let res = child.wait_with_output().unwrap();
    assert!(res.status.success());
    assert_eq!(other.inspect(APP2)["Id"], airlock.inspect(APP2)["Id"]);
}

#[test]
fn concurrent_loads_into_one_store_all_land() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&["images"]); // create the store
    let inputs = [
        "podman-multi.tar",
        "skopeo-oci-archive.tar",
        "skopeo-docker-archive.tar.zst",
        "umoci-layout",
    ];
    let children: Vec<_> = inputs
        .iter()
        .map(|f| {
            airlock
                .cmd()
                .args(["load", "-q", "-i", fixtures().join(f).to_str().unwrap()])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for name in [APP, APP2, "app:latest", "base:latest", "app2:latest"] {
        airlock.inspect(name);
    }
    assert_store_consistent(&airlock);
}

/// Every blob hashes to its name, every image resolves, nothing is half-written.
fn assert_store_consistent(airlock: &Airlock) {
    for e in std::fs::read_dir(airlock.store.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256(&bytes)[7..],
            *e.file_name().to_string_lossy(),
            "blob content does not match its name"
        );
    }
    let rows: serde_json::Value =
        serde_json::from_str(&airlock.ok(&["images", "--format", "json"])).unwrap();
    for r in rows.as_array().unwrap() {
        airlock.inspect(r["Id"].as_str().unwrap());
    }
}

#[test]
fn kill_9_at_any_point_leaves_the_store_consistent() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&[
        "load",
        "-i",
        fixtures().join("podman-multi.tar").to_str().unwrap(),
    ]);
    let big = dir.path().join("big.tar");
    let layers = [
        layer_with_file("a.bin", &noise(48 << 20, 1)),
        layer_with_file("b.bin", &noise(48 << 20, 2)),
    ];
    write_docker_archive(&big, "big:1", &layers);
    let before = tree_hash(&airlock.store);
    let mut landed = false;
    for delay_ms in [1u64, 10, 30, 60, 100, 150, 250, 400] {
        let mut child = airlock
            .cmd()
            .args(["load", "-q", "-i", big.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        assert_store_consistent(&airlock);
        // All or nothing: either the image is there whole (the kill came after the commit)
        // or not at all; the images already there are intact either way.
        airlock.inspect(APP);
        let probe = airlock.run(&["inspect", "big:1"]);
        match probe.status.code() {
            Some(0) => {
                landed = true;
                break;
            }
            Some(1) => assert!(!status.success(), "a load that succeeded must have landed"),
            other => panic!("inspect exited {other:?}"),
        }
    }
    // gc clears what killed runs left in tmp/; a full load then works.
    airlock.ok(&["gc"]);
    let tmp_left: Vec<_> = std::fs::read_dir(airlock.store.join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp_left.is_empty(), "gc left staging behind");
    airlock.ok(&["load", "-q", "-i", big.to_str().unwrap()]);
    airlock.inspect("big:1");
    if !landed {
        airlock.ok(&["rmi", "big:1"]);
        airlock.ok(&["gc"]);
        assert_eq!(
            before,
            tree_hash(&airlock.store),
            "load + rmi + gc returns the store to where it was"
        );
    }
}

/// Copy a tar, flipping one byte in the middle of the first entry whose path starts with
/// `prefix` and is larger than 1 KiB.
fn flip_in_tar(src: &std::path::Path, dst: &std::path::Path, prefix: &str) {
    let mut ar = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(dst).unwrap());
    let mut flipped = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if !flipped && path.starts_with(prefix) && data.len() > 1024 {
            let mid = data.len() / 2;
            data[mid] ^= 0xff;
            flipped = true;
        }
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    out.finish().unwrap();
    assert!(flipped, "nothing under {prefix} to damage");
}

#[test]
fn verify_checks_an_archive_without_loading_it() {
    let (dir, airlock) = loaded_multi();
    let before = tree_hash(&airlock.store);
    let good = fixtures().join("skopeo-oci-archive.tar");
    let out = airlock.ok(&["verify", "-i", good.to_str().unwrap()]);
    assert!(
        out.contains("OCI archive") && out.contains("every digest and diffID verified"),
        "{out}"
    );
    assert!(out.contains("localhost/airlock-test/app:1"), "{out}");
    assert_eq!(
        before,
        tree_hash(&airlock.store),
        "verify must not load anything"
    );

    // A damaged blob the store already holds: load would skip it (it has a good copy),
    // verify must not.
    airlock.ok(&["load", "-q", "-i", good.to_str().unwrap()]);
    let before = tree_hash(&airlock.store);
    let bad = dir.path().join("bad.tar");
    flip_in_tar(&good, &bad, "blobs/sha256/");
    let err = airlock.fails(&["verify", "-i", bad.to_str().unwrap()]);
    assert!(
        err.contains("expected sha256:") && err.contains("got sha256:"),
        "{err}"
    );
    assert_eq!(before, tree_hash(&airlock.store));
}

#[test]
fn split_volumes_join_on_load_and_equal_the_single_archive() {
    let (dir, airlock) = loaded_multi();
    let whole = dir.path().join("whole.tar");
    airlock.ok(&["save", "-o", whole.to_str().unwrap(), APP, APP2]);
    let base = dir.path().join("stick/transfer.tar");
    std::fs::create_dir_all(base.parent().unwrap()).unwrap();
    airlock.ok(&[
        "save",
        "--split",
        "4M",
        "-o",
        base.to_str().unwrap(),
        APP,
        APP2,
    ]);
    let mut joined = Vec::new();
    let mut n = 0;
    loop {
        let v = base.with_file_name(format!("transfer.tar.{n:03}"));
        if !v.exists() {
            break;
        }
        let bytes = std::fs::read(&v).unwrap();
        assert!(bytes.len() <= 4 << 20, "volume {n} is over the size");
        joined.extend(bytes);
        n += 1;
    }
    assert!(n >= 3, "expected several volumes, got {n}");
    assert_eq!(
        joined,
        std::fs::read(&whole).unwrap(),
        "volumes are slices of the same archive"
    );
    assert!(!base.exists(), "no unsplit file is written");
    // Beside them, checksums coreutils checks (and finds wrong once a volume changes).
    let sha256sum = |dir: &std::path::Path| {
        std::process::Command::new("sha256sum")
            .args(["-c", "transfer.tar.SHA256SUMS"])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let stick = base.parent().unwrap();
    let checked = sha256sum(stick);
    assert!(checked.status.success(), "{checked:?}");
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout)
            .matches(": OK")
            .count(),
        n
    );
    // verify and load join them, from the first volume or from the base name.
    let first = base.with_file_name("transfer.tar.000");
    airlock.ok(&["verify", "-i", first.to_str().unwrap()]);
    let far = Airlock::new(&dir.path().join("far"));
    far.ok(&["load", "-i", base.to_str().unwrap()]);
    assert_eq!(far.inspect(APP)["Id"], airlock.inspect(APP)["Id"]);
    assert_eq!(far.inspect(APP2)["Id"], airlock.inspect(APP2)["Id"]);
    // A missing middle volume is no silent success: load names it (and goes on from there
    // once it is back, tests/resume.rs); coreutils says which too.
    std::fs::remove_file(base.with_file_name("transfer.tar.001")).unwrap();
    let checked = sha256sum(stick);
    assert!(!checked.status.success());
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains("transfer.tar.001"),
        "{checked:?}"
    );
    let err =
        Airlock::new(&dir.path().join("far2")).fails(&["load", "-i", first.to_str().unwrap()]);
    assert!(err.contains("transfer.tar.001 cannot be opened"), "{err}");
}

#[test]
fn incremental_archive_leaves_out_what_the_far_side_has() {
    let (dir, near) = loaded_multi();
    // The far side already has app2, whose base layer app shares.
    let far = Airlock::new(&dir.path().join("far"));
    let app2_only = dir.path().join("app2.tar");
    near.ok(&["save", "-o", app2_only.to_str().unwrap(), APP2]);
    far.ok(&["load", "-q", "-i", app2_only.to_str().unwrap()]);
    let inventory = dir.path().join("far-inventory.json");
    far.ok(&["inventory", "-o", inventory.to_str().unwrap()]);

    let full = dir.path().join("full.tar");
    let incr = dir.path().join("incr.tar");
    near.ok(&["save", "-o", full.to_str().unwrap(), APP]);
    near.ok(&[
        "save",
        "--incremental-from",
        inventory.to_str().unwrap(),
        "-o",
        incr.to_str().unwrap(),
        APP,
    ]);
    let (full_len, incr_len) = (
        std::fs::metadata(&full).unwrap().len(),
        std::fs::metadata(&incr).unwrap().len(),
    );
    let base_layer = near.inspect(APP)["Layers"][0]["Size"].as_u64().unwrap();
    assert!(
        incr_len + base_layer <= full_len + 1024,
        "base layer left out: {incr_len} vs {full_len}"
    );
    // It says so in its metadata.
    let mut ar = tar::Archive::new(std::fs::File::open(&incr).unwrap());
    let mut index = String::new();
    let mut marker = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "index.json" {
            std::io::Read::read_to_string(&mut e, &mut index).unwrap();
        }
        marker |= p == "airlock-incremental.json";
    }
    assert!(
        marker && index.contains("dev.airlock.incremental"),
        "{index}"
    );

    // The far side loads it; the image is whole there.
    let before_far = tree_hash(&far.store);
    far.ok(&["load", "-i", incr.to_str().unwrap()]);
    assert_ne!(before_far, tree_hash(&far.store));
    assert_eq!(far.inspect(APP)["Id"], near.inspect(APP)["Id"]);
    let flat = dir.path().join("flat.tar");
    far.ok(&["export", "-o", flat.to_str().unwrap(), APP]);

    // A store without the base refuses it clearly and stays as it was.
    let empty = Airlock::new(&dir.path().join("empty"));
    empty.ok(&["images"]);
    let before = tree_hash(&empty.store);
    let err = empty.fails(&["load", "-i", incr.to_str().unwrap()]);
    assert!(
        err.contains("incremental archive leaves out") && err.contains("airlock inventory"),
        "{err}"
    );
    assert_eq!(before, tree_hash(&empty.store));
}

#[test]
fn repo_digests_only_for_manifests_that_came_with_the_image() {
    let dir = scratch();
    let near = Airlock::new(&dir.path().join("near"));
    // docker-archive: no manifest came with it, so no RepoDigest, here or after the trip.
    near.ok(&[
        "load",
        "-q",
        "-i",
        fixtures()
            .join("podman-docker-archive.tar")
            .to_str()
            .unwrap(),
    ]);
    near.ok(&["tag", APP, "from/docker-archive:1"]);
    // OCI archive: its manifest is the image's identity, kept across the trip.
    let oci = Airlock::new(&dir.path().join("oci"));
    oci.ok(&[
        "load",
        "-q",
        "-i",
        fixtures().join("skopeo-oci-archive.tar").to_str().unwrap(),
    ]);
    assert!(near.inspect("from/docker-archive:1")["RepoDigests"]
        .as_array()
        .unwrap()
        .is_empty());
    let want = oci.inspect(APP)["RepoDigests"].clone();
    assert_eq!(want.as_array().unwrap().len(), 1, "{want}");
    for (store, name) in [(&near, "from/docker-archive:1"), (&oci, APP)] {
        let archive = dir.path().join("trip.tar");
        store.ok(&["save", "-o", archive.to_str().unwrap(), name]);
        let far = Airlock::new(
            &dir.path()
                .join(format!("far-{}", name.replace(['/', ':'], "-"))),
        );
        far.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert_eq!(
            far.inspect(name)["RepoDigests"],
            store.inspect(name)["RepoDigests"],
            "{name}"
        );
    }
}

#[test]
fn archives_are_never_written_to_a_terminal() {
    crate::util::require_tool("script");
    let (_d, airlock) = loaded_multi();
    // `script` gives the command a real pseudo-terminal as standard output.
    let cmd = format!(
        "{} --store {} save {APP}; echo \"exit=$?\"",
        crate::util::airlock_bin().display(),
        airlock.store.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refusing to write an archive to a terminal"),
        "{text}"
    );
    assert!(text.contains("exit=1"), "{text}");
}

#[test]
fn listing_into_a_closed_pipe_is_not_a_crash() {
    // `airlock images | head -1`: the reader goes away before airlock writes. That is no
    // error, and certainly no panic.
    let (_dir, airlock) = loaded_multi();
    for args in [
        &["images"][..],
        &["images", "--format", "json"],
        &["artifacts"],
        &["inspect", "localhost/airlock-test/app:1"],
    ] {
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
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {stderr}");
    }
}

#[test]
fn gc_waiting_for_readers_does_not_hold_up_commits() {
    // A reader (a save, a copy between stores, a load's staging area) holds gc.lock shared
    // and may then need `lock` to commit. gc must wait for gc.lock before it takes `lock`,
    // or the two wait for each other.
    let (_dir, airlock) = loaded_multi();
    let reader = std::fs::File::open(airlock.store.join("gc.lock")).unwrap();
    reader.lock_shared().unwrap();
    let mut gc = airlock
        .cmd()
        .arg("gc")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gc.try_wait().unwrap().is_none(),
        "gc ran while a reader held gc.lock"
    );
    // A commit (here a tag) goes through while gc waits.
    let mut tag = airlock
        .cmd()
        .args(["tag", "localhost/airlock-test/app:1", "while-gc-waits:1"])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let done = loop {
        if let Some(s) = tag.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(reader);
    let gc_status = gc.wait().unwrap();
    let Some(status) = done else {
        let _ = tag.kill();
        panic!("tag waited for gc, which waited for the reader");
    };
    assert!(status.success());
    assert!(gc_status.success());
    airlock.inspect("while-gc-waits:1");
}

#[test]
fn a_store_whose_creation_was_cut_short_or_raced_still_opens() {
    let dir = scratch();
    // What a kill -9 during the first command can leave: the directories, no oci-layout.
    let half = dir.path().join("half");
    for d in ["blobs/sha256", "tmp"] {
        std::fs::create_dir_all(half.join(d)).unwrap();
    }
    std::fs::write(half.join("lock"), b"").unwrap();
    let a = Airlock::new(&half);
    a.ok(&["images"]);
    assert!(half.join("oci-layout").is_file());
    // Several processes creating one new store at once all succeed.
    let fresh = dir.path().join("fresh");
    let kids: Vec<_> = (0..6)
        .map(|_| {
            Airlock::new(&fresh)
                .cmd()
                .arg("images")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A directory of something else is still refused.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let err = Airlock::new(&other).fails(&["images"]);
    assert!(err.contains("other files"), "{err}");
}
