//! `load --into containerd` against a containerd the test starts itself (Debian's
//! `containerd`, its own root, state and socket): images land in the `k8s.io` namespace
//! with the archive's digests, unpacked, `ctr run` runs them, a second load sends nothing,
//! and containerd's garbage collector keeps what the images need and only that.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::artifacts::gallery::{Gallery, MULTI};
use crate::serve::busybox_store;
use crate::util::{require_tool, scratch, Airlock};

/// A containerd of the test's own, stopped when dropped.
struct Containerd {
    child: Child,
    dir: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        require_tool("containerd");
        require_tool("ctr");
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("config.toml");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n[debug]\n  address = \"{d}/debug.sock\"\n"
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .unwrap();
        let c = Containerd {
            child,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn socket(&self) -> String {
        self.dir.join("c.sock").display().to_string()
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .args(["--address", &self.socket(), "-n", "k8s.io"])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// name -> target digest.
    fn images(&self) -> Vec<(String, String)> {
        self.ok(&["images", "ls", "-q"]);
        self.ok(&["images", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2).then(|| (f[0].to_string(), f[2].to_string()))
            })
            .collect()
    }

    fn content(&self) -> Vec<String> {
        self.ok(&["content", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Unpacked snapshots may still be mounted by a container that failed.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("root"))
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn an_archive_of_several_images_loads_into_containerd_runs_and_a_second_load_sends_nothing() {
    let dir = scratch();
    let store = busybox_store(
        dir.path(),
        "registry.example/team/hello:1",
        "hello from containerd",
    );
    // A second image sharing the busybox layer, and a two-platform index with signatures.
    let rootfs = dir.path().join("rootfs");
    store.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "docker.io/library/other:2",
        "-c",
        "CMD [\"/bin/busybox\", \"echo\", \"other\"]",
    ]);
    let g = Gallery::new();
    let layout = dir.path().join("layout");
    g.write(&layout);
    store.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let archive = dir.path().join("set.tar");
    store.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "registry.example/team/hello:1",
        "docker.io/library/other:2",
        MULTI,
    ]);
    let hello = store.inspect("registry.example/team/hello:1")["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let multi = store.inspect(MULTI)["IndexDigest"]
        .as_str()
        .unwrap()
        .to_string();

    let ctd = Containerd::start(&dir.path().join("ctd"));
    let far = Airlock::new(&dir.path().join("far"));
    let load = |snapshotter: &str| {
        far.ok(&[
            "load",
            "-i",
            archive.to_str().unwrap(),
            "--into",
            "containerd",
            "--address",
            &ctd.socket(),
            "--namespace",
            "k8s.io",
            "--snapshotter",
            snapshotter,
        ])
    };
    let out = load("overlayfs");
    assert!(
        out.contains("Loaded registry.example/team/hello:1 into containerd (namespace k8s.io)"),
        "{out}"
    );
    assert!(out.contains(" 0 already there"), "{out}");
    // The archive's digests, under the names `ctr images import` would give.
    let images = ctd.images();
    assert!(
        images.contains(&("registry.example/team/hello:1".into(), hello.clone())),
        "{images:?}"
    );
    assert!(
        images.iter().any(|(n, _)| n == "docker.io/library/other:2"),
        "{images:?}"
    );
    assert!(
        images.contains(&(MULTI.into(), multi.clone())),
        "{images:?}"
    );
    // Unpacked: the runnable images have their snapshot, and they run.
    let snapshots = ctd.ok(&["snapshots", "--snapshotter", "overlayfs", "ls"]);
    assert!(snapshots.contains("Committed"), "{snapshots}");
    let ran = ctd.ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "overlayfs",
        "registry.example/team/hello:1",
        "airlock-hello",
    ]);
    assert_eq!(ran, "hello from containerd\n");

    // A second load sends no blob and unpacks nothing again.
    let out = load("overlayfs");
    assert!(
        out.contains("0 blobs sent (0 bytes)") && out.contains("0 layers unpacked"),
        "{out}"
    );

    // containerd's garbage collector keeps all an image needs (its labels say what), and
    // takes what only a removed image needed.
    let before = ctd.content();
    ctd.ok(&["images", "rm", "--sync", "docker.io/library/other:2"]);
    let after = ctd.content();
    let other_config = store.inspect("docker.io/library/other:2")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !after.contains(&other_config),
        "the removed image's config stayed"
    );
    assert_eq!(
        after.len(),
        before.len() - 2,
        "only the removed image's manifest and config go: {before:?} -> {after:?}"
    );
    let ran = ctd.ok(&[
        "run",
        "--rm",
        "--snapshotter",
        "overlayfs",
        "registry.example/team/hello:1",
        "airlock-hello2",
    ]);
    assert_eq!(ran, "hello from containerd\n");
}

#[test]
fn a_missing_socket_or_snapshotter_is_one_clear_sentence_and_nothing_is_named() {
    let dir = scratch();
    let store = busybox_store(dir.path(), "registry.example/team/hello:1", "hi");
    let archive = dir.path().join("one.tar");
    store.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "registry.example/team/hello:1",
    ]);
    let far = Airlock::new(&dir.path().join("far"));
    let missing = dir.path().join("nothing.sock");
    let err = far.fails(&[
        "load",
        "-i",
        archive.to_str().unwrap(),
        "--into",
        "containerd",
        "--address",
        missing.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!("cannot reach containerd at {}", missing.display()))
            && err.contains("is containerd running"),
        "{err}"
    );

    let ctd = Containerd::start(&dir.path().join("ctd"));
    let err = far.fails(&[
        "load",
        "-i",
        archive.to_str().unwrap(),
        "--into",
        "containerd",
        "--address",
        &ctd.socket(),
        "--namespace",
        "k8s.io",
        "--snapshotter",
        "nosuch",
    ]);
    assert!(
        err.contains("nosuch") && err.contains("--snapshotter"),
        "{err}"
    );
    // All or nothing: the image is not named when it could not be unpacked.
    assert!(ctd.images().is_empty(), "{:?}", ctd.images());
}

#[test]
fn an_archive_written_for_k3s_agent_images_is_what_containerd_imports() {
    // k3s and RKE2 import every archive in /var/lib/rancher/{k3s,rke2}/agent/images/ at
    // start: `.tar` as it is, `.tar.zst` decompressed first, each through containerd's
    // importer. The README's commands, into a directory of that shape, then the importer.
    require_tool("zstd");
    let dir = scratch();
    let store = busybox_store(dir.path(), "registry.example/team/hello:1", "hi");
    let digest = store.inspect("registry.example/team/hello:1")["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let images = dir.path().join("var/lib/rancher/k3s/agent/images");
    std::fs::create_dir_all(&images).unwrap();
    let plain = images.join("hello.tar");
    let zst = images.join("hello.tar.zst");
    store.ok(&[
        "save",
        "-o",
        plain.to_str().unwrap(),
        "registry.example/team/hello:1",
    ]);
    store.ok(&[
        "save",
        "--compress",
        "zstd",
        "-o",
        zst.to_str().unwrap(),
        "registry.example/team/hello:1",
    ]);
    let unpacked = dir.path().join("from-zst.tar");
    let status = Command::new("zstd")
        .args(["-q", "-d", "-o"])
        .arg(&unpacked)
        .arg(&zst)
        .status()
        .unwrap();
    assert!(status.success(), "the .tar.zst is not a zstd stream");
    let ctd = Containerd::start(&dir.path().join("ctd"));
    for archive in [&plain, &unpacked] {
        ctd.ok(&["images", "rm", "registry.example/team/hello:1"]);
        ctd.ok(&["images", "import", archive.to_str().unwrap()]);
        assert!(
            ctd.images()
                .contains(&("registry.example/team/hello:1".into(), digest.clone())),
            "{}: {:?}",
            archive.display(),
            ctd.images()
        );
    }
}

#[test]
fn images_come_back_out_of_containerd_byte_for_byte() {
    let dir = scratch();
    let store = busybox_store(dir.path(), "registry.example/team/hello:1", "back out");
    let g = Gallery::new();
    let layout = dir.path().join("layout");
    g.write(&layout);
    store.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let hello = store.inspect("registry.example/team/hello:1")["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let ctd = Containerd::start(&dir.path().join("ctd"));
    let socket = ctd.socket();
    let at = ["--address", socket.as_str(), "--namespace", "k8s.io"];
    for image in ["registry.example/team/hello:1", MULTI] {
        let mut args = vec!["copy", image, "containerd:"];
        args.extend(at);
        args.extend(["--snapshotter", "native"]);
        store.ok(&args);
    }
    // save containerd:NAME: an archive airlock (and docker) load, with containerd's digests.
    let archive = dir.path().join("out.tar");
    let mut args = vec![
        "save",
        "-o",
        archive.to_str().unwrap(),
        "containerd:registry.example/team/hello:1",
    ];
    args.extend(at);
    store.ok(&args);
    let far = Airlock::new(&dir.path().join("far"));
    far.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        far.inspect("registry.example/team/hello:1")["ManifestDigest"],
        hello.as_str()
    );
    // copy containerd:NAME into a store, the index kept whole with --all-platforms.
    let multi_src = format!("containerd:{MULTI}");
    let mut args = vec!["copy", "--all-platforms", multi_src.as_str(), "store:"];
    args.extend(at);
    far.ok(&args);
    let got = far.inspect(MULTI);
    assert_eq!(got["IndexDigest"], g.multi_index.as_str());
    assert_eq!(got["Complete"], true);
    // A name containerd does not have: one sentence naming it.
    let mut args = vec![
        "save",
        "-o",
        "/dev/null",
        "containerd:registry.example/none:1",
    ];
    args.extend(at);
    let err = far.fails(&args);
    assert!(
        err.contains("has no image registry.example/none:1"),
        "{err}"
    );
}
