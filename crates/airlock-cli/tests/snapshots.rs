//! `export`, `import` and work containers, against podman as the oracle.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::util::{
    fixtures, layer_with_file, scratch, tar_listing, tree_hash, write_docker_archive, Airlock,
    Podman,
};

const APP: &str = "localhost/airlock-test/app:1";

/// Files an engine injects into a container at run time; not part of the image.
const INJECTED: [&str; 5] = [
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    ".dockerenv",
    "run/.containerenv",
];

fn listing_without_injected(path: &Path) -> BTreeMap<String, String> {
    let mut l = tar_listing(path);
    for p in INJECTED {
        l.remove(p);
    }
    l
}

fn loaded(fixture: &str) -> (tempfile::TempDir, Airlock) {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&[
        "load",
        "-q",
        "-i",
        fixtures().join(fixture).to_str().unwrap(),
    ]);
    (dir, airlock)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn export_of_an_image_equals_podman_export() {
    // export-rootfs.tar is `podman export` of a container of the app image.
    let want = listing_without_injected(&fixtures().join("export-rootfs.tar"));
    assert!(want.contains_key("data/hl-second.txt") && !want.contains_key("data/doomed.txt"));
    for fixture in [
        "podman-docker-archive.tar",
        "skopeo-oci-zstd-archive.tar",
        "podman-oci-archive.tar",
    ] {
        let (dir, airlock) = loaded(fixture);
        let out = dir.path().join("flat.tar");
        airlock.ok(&["export", "-o", s(&out), APP]);
        assert_eq!(
            listing_without_injected(&out),
            want,
            "{fixture}: flatten differs from podman export"
        );
    }
}

#[test]
fn compressed_export_decompresses_to_the_same_tar() {
    let (dir, airlock) = loaded("podman-docker-archive.tar");
    let plain = dir.path().join("flat.tar");
    let zst = dir.path().join("flat.tar.zst");
    airlock.ok(&["export", "-o", s(&plain), APP]);
    airlock.ok(&["export", "--compress", "zstd", "-o", s(&zst), APP]);
    crate::util::require_tool("zstd");
    let decoded = Command::new("zstd")
        .args(["-dc", s(&zst)])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(decoded, std::fs::read(&plain).unwrap());
}

#[test]
fn import_builds_a_runnable_image_with_docker_import_config() {
    let (dir, airlock) = loaded("podman-docker-archive.tar");
    let rootfs = fixtures().join("export-rootfs.tar");
    let out = airlock.ok(&[
        "import",
        "-c",
        r#"CMD ["/bin/sh", "-c", "echo imported-ok $GREETING; cat /data/hello.txt"]"#,
        "-c",
        "ENV GREETING=hi",
        "-c",
        "WORKDIR /data",
        "-m",
        "from the far side",
        s(&rootfs),
        "imported/app:1",
    ]);
    let id = out.trim();
    assert!(id.starts_with("sha256:"), "{out}");
    let img = airlock.inspect("imported/app:1");
    assert_eq!(img["Id"], id);
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(img["Config"]["WorkingDir"], "/data");
    assert_eq!(img["History"][0]["comment"], "from the far side");
    assert_eq!(img["Os"], "linux");
    // The layer is the input tar itself: its diffID is the tar's digest.
    assert_eq!(
        img["RootFS"]["Layers"][0],
        crate::util::sha256(&std::fs::read(&rootfs).unwrap()).as_str()
    );

    let saved = dir.path().join("imp.tar");
    airlock.ok(&["save", "-o", s(&saved), "imported/app:1"]);
    let podman = Podman::new();
    podman.ok(&["load", "-i", s(&saved)]);
    let run = podman.run_image("docker.io/imported/app:1");
    assert_eq!(run, "imported-ok hi\nhello from airlock layer 2\n");
}

#[test]
fn import_default_message_and_platform() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    let tar = dir.path().join("fs.tar");
    std::fs::write(&tar, layer_with_file("./etc/motd", b"hi\n")).unwrap();
    let id = airlock.ok(&["import", "--platform", "linux/arm64/v8", s(&tar)]);
    let img = airlock.inspect(id.trim());
    assert_eq!(img["Architecture"], "arm64");
    assert_eq!(img["Variant"], "v8");
    assert_eq!(
        img["History"][0]["comment"],
        format!("Imported from {}", s(&tar)).as_str()
    );
    // From stdin, gzip-compressed: detected by magic.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &std::fs::read(&tar).unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    let mut child = airlock
        .cmd()
        .args(["import", "-", "from/stdin:1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &gz).unwrap();
    drop(child.stdin.take());
    assert!(child.wait_with_output().unwrap().status.success());
    let img = airlock.inspect("from/stdin:1");
    assert_eq!(img["History"][0]["comment"], "Imported from -");
    assert_eq!(
        img["RootFS"]["Layers"][0],
        crate::util::sha256(&std::fs::read(&tar).unwrap()).as_str()
    );
}

#[test]
fn image_archive_given_to_import_is_refused_and_store_unchanged() {
    let (dir, airlock) = loaded("podman-docker-archive.tar");
    let before = tree_hash(&airlock.store);
    for fixture in [
        "podman-docker-archive.tar",
        "skopeo-oci-archive.tar",
        "skopeo-docker-archive.tar.gz",
        "podman-multi.tar",
    ] {
        let err = airlock.fails(&["import", s(&fixtures().join(fixture)), "broken:1"]);
        assert!(
            err.contains("this is an image archive") && err.contains("airlock load"),
            "{fixture}: {err}"
        );
        assert_eq!(
            before,
            tree_hash(&airlock.store),
            "{fixture}: store changed"
        );
    }
    // --force is there for the rare rootfs that really holds a manifest.json.
    airlock.ok(&[
        "import",
        "--force",
        s(&fixtures().join("podman-docker-archive.tar")),
        "forced:1",
    ]);
    airlock.inspect("forced:1");
    let _ = dir;
}

#[test]
fn bad_change_names_the_instruction_and_store_unchanged() {
    let (_dir, airlock) = loaded("podman-docker-archive.tar");
    let before = tree_hash(&airlock.store);
    let rootfs = fixtures().join("export-rootfs.tar");
    for (change, word) in [
        ("RUN echo hi", "RUN"),
        ("EXPOSE 80/sctpx", "EXPOSE"),
        ("FOO bar", "FOO"),
    ] {
        let err = airlock.fails(&["import", "-c", change, s(&rootfs), "x:1"]);
        assert!(err.contains(word), "{change}: {err}");
        assert_eq!(before, tree_hash(&airlock.store), "{change}: store changed");
    }
}

#[test]
fn export_dir_writes_the_directory() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    let root = dir.path().join("chroot");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("motd", root.join("etc/motd.link")).unwrap();
    let out = dir.path().join("dir.tar");
    airlock.ok(&["export", "--dir", s(&root), "-o", s(&out)]);
    let l = tar_listing(&out);
    assert_eq!(
        l.keys().cloned().collect::<Vec<_>>(),
        vec!["etc", "etc/motd", "etc/motd.link"]
    );
    // And import of the same directory gives an image whose export lists the same paths.
    airlock.ok(&["import", s(&root), "dir/img:1"]);
    let back = dir.path().join("back.tar");
    airlock.ok(&["export", "-o", s(&back), "dir/img:1"]);
    assert_eq!(tar_listing(&back), l);
}

#[test]
fn work_container_commit_round_trip_runs_in_podman() {
    let (dir, airlock) = loaded("podman-docker-archive.tar");
    let rootfs = airlock
        .ok(&["create", APP, "--name", "work"])
        .trim()
        .to_string();
    let root = Path::new(&rootfs);
    assert!(root.join("data/hello.txt").is_file());
    assert!(airlock.ok(&["containers"]).contains("work"));
    // add, modify, delete, replace a directory
    std::fs::write(root.join("data/new.txt"), b"added in the work container\n").unwrap();
    std::fs::write(root.join("data/hello.txt"), b"changed\n").unwrap();
    std::fs::remove_file(root.join("data/replaced.txt")).unwrap();
    std::fs::remove_dir_all(root.join("data/old")).unwrap();
    std::fs::create_dir(root.join("data/old")).unwrap();
    std::fs::write(root.join("data/old/fresh.txt"), b"fresh\n").unwrap();
    let id = airlock.ok(&[
        "commit",
        "work",
        "committed/app:2",
        "-c",
        "CMD cat /data/new.txt /data/old/fresh.txt",
        "-m",
        "hand edits",
    ]);
    assert!(id.trim().starts_with("sha256:"));
    let img = airlock.inspect("committed/app:2");
    let base_layers = airlock.inspect(APP)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        base_layers + 1,
        "one new layer"
    );

    // The committed image flattens to exactly the container's directory.
    let from_image = dir.path().join("image.tar");
    let from_container = dir.path().join("container.tar");
    airlock.ok(&["export", "-o", s(&from_image), "committed/app:2"]);
    airlock.ok(&["export", "-o", s(&from_container), "work"]);
    let a = tar_listing(&from_image);
    let b = tar_listing(&from_container);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same paths"
    );
    for (k, v) in &a {
        // mtimes are not compared by tar_listing; types, modes, owners, links and data are.
        assert_eq!(v, &b[k], "{k}");
    }
    assert!(
        !a.contains_key("data/replaced.txt")
            && a.contains_key("data/old/fresh.txt")
            && !a.contains_key("data/old/new.txt")
    );

    let saved = dir.path().join("c.tar");
    airlock.ok(&["save", "-o", s(&saved), "committed/app:2"]);
    let podman = Podman::new();
    podman.ok(&["load", "-i", s(&saved)]);
    let run = podman.run_image("docker.io/committed/app:2");
    assert_eq!(run, "added in the work container\nfresh\n");
    airlock.ok(&["rm", "work"]);
    assert!(!root.exists());
}

#[test]
fn malicious_layers_never_touch_anything_outside_the_container() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"untouched").unwrap();
    let victim = outside.join("victim");
    // Layer 1: a symlink pointing outside; layer 2: writes through it and climbs out.
    let mut l1 = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    l1.append_link(&mut h, "escape", &outside).unwrap();
    let l1 = l1.into_inner().unwrap();
    let mut l2 = tar::Builder::new(Vec::new());
    for path in ["escape/victim", "escape/new-file"] {
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        l2.append_data(&mut h, path, &b"owned"[..]).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    l2.append_link(&mut h, "hard", &victim).unwrap();
    let l2 = l2.into_inner().unwrap();
    let archive = dir.path().join("evil.tar");
    write_docker_archive(&archive, "evil:1", &[l1, l2]);
    airlock.ok(&["load", "-i", s(&archive)]);
    let _ = airlock.run(&["create", "evil:1", "--name", "evil"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing new outside"
    );
    // A layer with `..` in a path.
    let mut l3 = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    // set_path refuses '..', so write the name bytes directly.
    h.as_gnu_mut().unwrap().name[..17].copy_from_slice(b"../../outside/pwn");
    h.set_cksum();
    l3.append(&h, &b"owned"[..]).unwrap();
    let archive = dir.path().join("evil2.tar");
    write_docker_archive(&archive, "evil:2", &[l3.into_inner().unwrap()]);
    airlock.ok(&["load", "-i", s(&archive)]);
    let _ = airlock.run(&["create", "evil:2", "--name", "evil2"]);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing new outside"
    );
    assert!(!airlock.store.join("containers/outside").exists() && !dir.path().join("pwn").exists());
}

#[test]
fn non_root_create_records_owners_it_cannot_apply_and_export_keeps_them() {
    crate::util::require_tool("setpriv");
    let (dir, airlock) = loaded("podman-docker-archive.tar");
    // Let an unprivileged user (nobody's uid, no passwd entry needed) use the store.
    crate::util::sh(Command::new("chmod").args(["-R", "a+rwX", s(dir.path())]));
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(crate::util::airlock_bin())
            .arg("--store")
            .arg(&airlock.store)
            .args(args);
        c.output().unwrap()
    };
    let out = as_nobody(&["create", APP, "--name", "rootless"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("keep owners this user cannot set").count(),
        1,
        "said once: {stderr}"
    );
    // On disk the files belong to the unprivileged user; the export says root, as the image does.
    let root = Path::new(String::from_utf8_lossy(&out.stdout).trim()).to_path_buf();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(root.join("etc/passwd")).unwrap()),
        65534
    );
    let flat = dir.path().join("rootless.tar");
    let out = as_nobody(&["export", "-o", s(&flat), "rootless"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = tar_listing(&flat);
    assert!(
        listing["etc/passwd"].contains("uid=0 gid=0"),
        "{}",
        listing["etc/passwd"]
    );
    assert!(
        listing["data/suid-tool"].contains("mode=4755"),
        "{}",
        listing["data/suid-tool"]
    );
}

#[test]
fn gc_keeps_the_image_a_work_container_builds_on() {
    let (dir, airlock) = loaded("podman-docker-archive.tar");
    let rootfs = airlock
        .ok(&["create", APP, "--name", "keep"])
        .trim()
        .to_string();
    airlock.ok(&["rmi", APP]);
    airlock.ok(&["gc"]);
    std::fs::write(
        Path::new(&rootfs).join("data/after-gc.txt"),
        b"still here\n",
    )
    .unwrap();
    airlock.ok(&["commit", "keep", "kept/app:1"]);
    let out = dir.path().join("kept.tar");
    airlock.ok(&["export", "-o", s(&out), "kept/app:1"]);
    let listing = tar_listing(&out);
    assert!(listing.contains_key("data/after-gc.txt") && listing.contains_key("data/hello.txt"));
    // Once the container is gone, gc may take the old layers... but not the committed image's.
    airlock.ok(&["rm", "keep"]);
    airlock.ok(&["gc"]);
    airlock.ok(&["export", "-o", s(&out), "kept/app:1"]);
}
