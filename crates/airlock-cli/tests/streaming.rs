//! Each byte read once and written once: what streams from an archive, the Docker Engine or
//! a registry to an archive, a layout or nowhere (`verify`) never lands in the store. Each
//! test puts the store on a tmpfs far smaller than the image, so any staging there fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    layer_with_file, noise, require_tool, scratch, sh, write_docker_archive, Airlock,
};

/// A tmpfs of a few MiB, mounted for the test and unmounted when dropped. Mounting needs
/// root (CI runs as root); a failure to mount fails the test, it never skips it.
pub struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    pub fn new(mib: u64) -> SmallDisk {
        let dir = scratch();
        let mount = dir.path().join("small");
        std::fs::create_dir(&mount).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mount)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a {mib} MiB tmpfs (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { _dir: dir, mount }
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Bytes in use on it.
    pub fn used(&self) -> u64 {
        let out = sh(Command::new("du").args(["-sb"]).arg(&self.mount));
        out.split_whitespace().next().unwrap().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
    }
}

/// A 24 MiB image (three 8 MiB layers of noise) as a Docker <= 24 archive, whose layers are
/// named `<hex>.tar` (their digest is only learned while they stream by).
pub fn big_archive(path: &Path, name: &str) {
    let layers: Vec<Vec<u8>> = (0..3u64)
        .map(|i| layer_with_file(&format!("big{i}.bin"), &noise(8 << 20, 7 + i)))
        .collect();
    write_docker_archive(path, name, &layers);
}

#[test]
fn verify_needs_no_room_for_the_archive() {
    let work = scratch();
    let legacy = work.path().join("big.tar");
    big_archive(&legacy, "stream/verify:1");
    let small = SmallDisk::new(4);
    let tiny = Airlock::new(&small.path().join("store"));
    let out = tiny.ok(&["verify", "-i", legacy.to_str().unwrap()]);
    assert!(out.contains("every digest and diffID verified"), "{out}");
    assert!(out.contains("stream/verify:1"), "{out}");

    // The same image as airlock's hybrid archive (blobs named by digest), plain and zstd.
    let normal = Airlock::new(&work.path().join("store"));
    normal.ok(&["load", "-q", "-i", legacy.to_str().unwrap()]);
    for compress in ["none", "zstd"] {
        let hybrid = work.path().join(format!("hybrid-{compress}.tar"));
        normal.ok(&[
            "save",
            "--compress",
            compress,
            "-o",
            hybrid.to_str().unwrap(),
            "stream/verify:1",
        ]);
        let out = tiny.ok(&["verify", "-i", hybrid.to_str().unwrap()]);
        assert!(
            out.contains("every digest and diffID verified"),
            "{compress}: {out}"
        );
    }

    // A flipped byte deep inside a layer is still caught, and nothing is left behind.
    let hybrid = work.path().join("hybrid-none.tar");
    let mut bytes = std::fs::read(&hybrid).unwrap();
    let at = bytes.len() - (5 << 20);
    bytes[at] ^= 0xff;
    let damaged = work.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let err = tiny.fails(&["verify", "-i", damaged.to_str().unwrap()]);
    assert!(err.contains("expected sha256:"), "{err}");
    assert!(small.used() < 1 << 20, "verify left {} bytes", small.used());
}

#[test]
fn copy_between_archives_and_layouts_streams_past_a_small_store() {
    require_tool("skopeo");
    let work = scratch();
    let legacy = work.path().join("big.tar");
    big_archive(&legacy, "stream/copy:1");
    let normal = Airlock::new(&work.path().join("store"));
    normal.ok(&["load", "-q", "-i", legacy.to_str().unwrap()]);
    let id = normal.inspect("stream/copy:1")["Id"].clone();

    let small = SmallDisk::new(4);
    let tiny = Airlock::new(&small.path().join("store"));
    let src = format!("docker-archive:{}", legacy.display());
    let zst = work.path().join("out.tar.zst");
    tiny.ok(&[
        "copy",
        "--compress",
        "zstd",
        &src,
        &format!("docker-archive:{}", zst.display()),
    ]);
    let layout = work.path().join("layout");
    tiny.ok(&["copy", &src, &format!("oci:{}:copy", layout.display())]);
    assert!(
        small.used() < 1 << 20,
        "the copies staged {} bytes",
        small.used()
    );

    // What was written is whole: airlock loads it with the same ID, skopeo reads the layout
    // and the archive (whose legacy-named layers are linked under blobs/sha256).
    let back = Airlock::new(&work.path().join("back"));
    back.ok(&["load", "-q", "-i", zst.to_str().unwrap()]);
    assert_eq!(back.inspect("stream/copy:1")["Id"], id);
    let plain = work.path().join("out.tar");
    tiny.ok(&["copy", &src, &format!("docker-archive:{}", plain.display())]);
    for reference in [
        format!("oci:{}:copy", layout.display()),
        format!("docker-archive:{}", plain.display()),
        format!("oci-archive:{}", plain.display()),
    ] {
        let copied = work.path().join(format!("skopeo-{}", reference.len()));
        sh(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &reference,
            &format!("dir:{}", copied.display()),
        ]));
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(copied.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["config"]["digest"], id, "{reference}");
    }

    // Split volumes join wherever an archive is read, `copy` included.
    let vol = work.path().join("vol.tar");
    normal.ok(&[
        "save",
        "--split",
        "5M",
        "-o",
        vol.to_str().unwrap(),
        "stream/copy:1",
    ]);
    let joined = Airlock::new(&work.path().join("joined"));
    let out = joined.ok(&[
        "copy",
        &format!("docker-archive:{}.000", vol.display()),
        "store:",
    ]);
    assert!(out.contains("Loaded image: stream/copy:1"), "{out}");
    assert_eq!(joined.inspect("stream/copy:1")["Id"], id);
}

/// Images tagged into the engine by a test, removed when dropped.
struct EngineTags(Vec<String>);

impl Drop for EngineTags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", t]).output();
        }
    }
}

#[test]
fn save_from_the_engine_streams_past_a_small_store() {
    require_tool("docker");
    require_tool("skopeo");
    let work = scratch();
    let pid = std::process::id();
    let name = format!("airlock-stream-{pid}/big:1");
    let legacy = work.path().join("big.tar");
    big_archive(&legacy, &name);
    let _tags = EngineTags(vec![name.clone()]);
    sh(Command::new("docker").args(["load", "-q", "-i", legacy.to_str().unwrap()]));
    let engine_id =
        sh(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &name]));

    let small = SmallDisk::new(4);
    let tiny = Airlock::new(&small.path().join("store"));
    let out = work.path().join("out.tar");
    tiny.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        &format!("docker-daemon:{name}"),
    ]);
    // The seed's batch export, straight from the engine: every image matching a glob.
    let matched = work.path().join("matched.tar");
    tiny.ok(&[
        "save",
        "--match",
        &format!("airlock-stream-{pid}/*"),
        "-o",
        matched.to_str().unwrap(),
        "docker-daemon:",
    ]);
    let layout = work.path().join("layout");
    tiny.ok(&[
        "copy",
        &format!("docker-daemon:{name}"),
        &format!("oci:{}:engine", layout.display()),
    ]);
    assert!(
        small.used() < 1 << 20,
        "the engine stream staged {} bytes",
        small.used()
    );

    let back = Airlock::new(&work.path().join("back"));
    for archive in [&out, &matched] {
        let loaded = back.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert!(
            loaded.contains(&format!("Loaded image: {name}")),
            "{loaded}"
        );
        assert_eq!(back.inspect(&name)["Id"], engine_id.trim());
    }
    let copied = work.path().join("skopeo");
    sh(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}:engine", layout.display()),
        &format!("dir:{}", copied.display()),
    ]));

    // And docker loads what came out of it, under the same ID.
    sh(Command::new("docker").args(["rmi", &name]));
    sh(Command::new("docker").args(["load", "-q", "-i", out.to_str().unwrap()]));
    let again = sh(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &name]));
    assert_eq!(again.trim(), engine_id.trim());
}

#[test]
fn save_names_images_the_way_inspect_does() {
    let work = scratch();
    let legacy = work.path().join("big.tar");
    write_docker_archive(&legacy, "stream/named:1", &[layer_with_file("a", b"a")]);
    let cli = Airlock::new(&work.path().join("store"));
    cli.ok(&["load", "-q", "-i", legacy.to_str().unwrap()]);
    let info = cli.inspect("stream/named:1");
    let manifest = info["ManifestDigest"].as_str().unwrap().to_string();
    let id = info["Id"].as_str().unwrap().to_string();
    for query in [
        format!("stream/named@{manifest}"),
        manifest.clone(),
        id.clone(),
        id[7..19].to_string(),
    ] {
        assert_eq!(cli.inspect(&query)["Id"], id, "inspect {query}");
        let out = work.path().join("out.tar");
        cli.ok(&["save", "-o", out.to_str().unwrap(), &query]);
        let listed = cli.ok(&["verify", "-i", out.to_str().unwrap()]);
        assert!(listed.contains(&id[7..19]), "save {query}: {listed}");
    }
}

#[test]
fn a_damaged_archive_streamed_into_the_engine_loads_nothing() {
    require_tool("docker");
    let work = scratch();
    let pid = std::process::id();
    let name = format!("airlock-stream-{pid}/damaged:1");
    let legacy = work.path().join("big.tar");
    big_archive(&legacy, &name);
    let _tags = EngineTags(vec![name.clone()]);
    // A flipped byte in the last layer: airlock finds it only once most of the archive has
    // gone into the engine, and must cut the upload off rather than end it.
    let mut bytes = std::fs::read(&legacy).unwrap();
    let at = bytes.len() - (3 << 20);
    bytes[at] ^= 0xff;
    let damaged = work.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let cli = Airlock::new(&work.path().join("store"));
    let err = cli.fails(&[
        "load",
        "--into",
        "docker-daemon",
        "-i",
        damaged.to_str().unwrap(),
    ]);
    assert!(err.contains("expected") || err.contains("diffID"), "{err}");
    let inspect = Command::new("docker")
        .args(["image", "inspect", &name])
        .output()
        .unwrap();
    assert!(
        !inspect.status.success(),
        "the engine loaded a damaged image: {}",
        String::from_utf8_lossy(&inspect.stdout)
    );
    // The intact archive goes in the same way.
    let out = cli.ok(&[
        "load",
        "--into",
        "docker-daemon",
        "-i",
        legacy.to_str().unwrap(),
    ]);
    assert!(out.contains(&name), "{out}");
}

#[test]
fn archives_and_snapshots_written_to_dev_null_leave_it_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let work = scratch();
    let legacy = work.path().join("small.tar");
    write_docker_archive(&legacy, "stream/null:1", &[layer_with_file("a", b"a")]);
    let cli = Airlock::new(&work.path().join("store"));
    cli.ok(&["load", "-q", "-i", legacy.to_str().unwrap()]);
    cli.ok(&["save", "-o", "/dev/null", "stream/null:1"]);
    cli.ok(&["export", "-o", "/dev/null", "stream/null:1"]);
    let kind = std::fs::metadata("/dev/null").unwrap().file_type();
    assert!(kind.is_char_device(), "/dev/null was replaced: {kind:?}");
}
