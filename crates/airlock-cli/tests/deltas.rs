//! Sub-layer deltas (issue 14): an incremental archive ships a new layer as the difference
//! from a layer the far side holds, and the far side rebuilds the very bytes the registry
//! had, for gzip from every common compressor; without the reference, or with the delta
//! damaged, nothing enters the store.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{append_file, require_tool, scratch, sha256, tree_hash, Airlock};

/// Text-like bytes (words from a small vocabulary), compressible the way source and
/// documentation files are.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "import", "numpy", "def", "return", "self", "array", "value", "float", "the", "of",
        "class", "=", "(", ")", "\n", "    ",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
        if x.is_multiple_of(3) {
            out.extend_from_slice(format!("{}", (x >> 20) % 1000).as_bytes());
        }
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// A layer tar of `files` files of text; `changed` of them differ in the second release.
fn release(files: usize, changed: usize, second: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let step = files / changed;
    for i in 0..files {
        let mut content = text(40 << 10, i as u64 + 1);
        if second && i % step == 0 && i / step < changed {
            content.extend_from_slice(format!("# patched in release 2 ({i})\n").as_bytes());
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(
            &mut h,
            format!("usr/lib/python3/site/m{i}.py"),
            &content[..],
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

/// How a layer is compressed: a command line reading the tar on standard input, or the
/// flate2 crate at a level.
#[derive(Clone, Copy, Debug)]
enum How {
    Command(&'static [&'static str]),
    Flate2(u32),
}

/// zlib with a memory level and strategy no registry's default uses: preflate has more to
/// correct there.
const ODD_ZLIB: &str = "import sys,zlib
c=zlib.compressobj(5,zlib.DEFLATED,31,3,zlib.Z_FILTERED)
sys.stdout.buffer.write(c.compress(sys.stdin.buffer.read())+c.flush())";

fn compress(how: How, tar: &[u8]) -> Vec<u8> {
    let argv = match how {
        How::Flate2(level) => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(tar).unwrap();
            return e.finish().unwrap();
        }
        How::Command(argv) => argv,
    };
    require_tool(argv[0]);
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = tar.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "{how:?} failed");
    out.stdout
}

/// Write an OCI archive of one image `name` whose one layer is `blob` (tar `tar`).
fn write_oci_archive(path: &Path, name: &str, tar: &[u8], blob: &[u8]) {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(blob), "size": blob.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha256(&manifest), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    });
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |p: &str, data: &[u8]| append_file(&mut b, p, data);
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &serde_json::to_vec(&index).unwrap());
    for blob in [&config, &manifest, &blob.to_vec()] {
        add(&format!("blobs/sha256/{}", &sha256(blob)[7..]), blob);
    }
    b.finish().unwrap();
}

/// Two releases compressed by `how`: the far store holds the first, the near store both;
/// returns the stores, the second release's layer blob and the delta archive.
struct Case {
    far: Airlock,
    near: Airlock,
    blob2: Vec<u8>,
    archive: std::path::PathBuf,
    dir: tempfile::TempDir,
}

fn case(how: How) -> Case {
    let dir = scratch();
    let d = dir.path();
    let (tar1, tar2) = (release(60, 3, false), release(60, 3, true));
    let (blob1, blob2) = (compress(how, &tar1), compress(how, &tar2));
    let (a1, a2) = (d.join("v1.tar"), d.join("v2.tar"));
    write_oci_archive(&a1, "example.org/app:1", &tar1, &blob1);
    write_oci_archive(&a2, "example.org/app:2", &tar2, &blob2);
    let far = Airlock::new(&d.join("far"));
    far.ok(&["load", "-q", "-i", a1.to_str().unwrap()]);
    let near = Airlock::new(&d.join("near"));
    near.ok(&["load", "-q", "-i", a1.to_str().unwrap()]);
    near.ok(&["load", "-q", "-i", a2.to_str().unwrap()]);
    let inv = d.join("far.json");
    far.ok(&["inventory", "-o", inv.to_str().unwrap()]);
    let archive = d.join("delta.tar");
    let inv = inv.to_str().unwrap();
    let (ok, said) = near.run_text(&[
        "save",
        "example.org/app:2",
        "--incremental-from",
        inv,
        "-o",
        archive.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
    // It says what it saved against what the layers weigh.
    let line = said.lines().find(|l| l.starts_with("example.org/app:2: "));
    assert!(
        line.is_some_and(|l| l.contains(" as layers, ") && l.contains(" shipped (")),
        "{said}"
    );
    assert!(said.contains("1 layer(s) ship as deltas"), "{said}");
    Case {
        far,
        near,
        blob2,
        archive,
        dir,
    }
}

/// The delta files of an archive: path -> size.
fn delta_entries(archive: &Path) -> Vec<(String, u64)> {
    let mut t = tar::Archive::new(std::fs::File::open(archive).unwrap());
    t.entries()
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.path().unwrap().to_string_lossy().into_owned(), e.size()))
        .filter(|(p, _)| p.starts_with("deltas/"))
        .collect()
}

#[test]
fn delta_archives_rebuild_gzip_layers_byte_for_byte_from_every_compressor() {
    let cases = [
        How::Command(&["gzip", "-6", "-n"]),
        How::Command(&["gzip", "-9", "-n"]),
        How::Command(&["gzip", "-1", "-n"]),
        How::Command(&["pigz", "-6", "-n"]),
        How::Flate2(1),
        How::Flate2(6),
        How::Flate2(9),
        How::Command(&["python3", "-c", ODD_ZLIB]),
    ];
    let mut fixes = Vec::new();
    for (i, how) in cases.into_iter().enumerate() {
        let c = case(how);
        let entries = delta_entries(&c.archive);
        let shipped: u64 = entries.iter().map(|(_, s)| s).sum();
        assert_eq!(
            entries.len(),
            2,
            "{how:?}: a patch and its corrections: {entries:?}"
        );
        // Under a tenth of the layer; the odd zlib's corrections take it to about a sixth.
        let share = if i == 7 { 4 } else { 10 };
        assert!(
            shipped * share < c.blob2.len() as u64,
            "{how:?}: {shipped} bytes shipped for a {}-byte layer",
            c.blob2.len()
        );
        let fix = entries.iter().find(|(p, _)| p.ends_with(".fix")).unwrap().1;
        fixes.push(fix);
        c.far.ok(&["load", "-q", "-i", c.archive.to_str().unwrap()]);
        // The far side now holds the registry's exact bytes under the registry's digest.
        let digest = sha256(&c.blob2);
        let stored = std::fs::read(c.dir.path().join("far/blobs/sha256").join(&digest[7..]))
            .unwrap_or_else(|e| panic!("{how:?}: the rebuilt layer is not in the store: {e}"));
        assert!(stored == c.blob2, "{how:?}: the rebuilt layer differs");
        assert_eq!(
            c.far.inspect("example.org/app:2")["Id"],
            c.near.inspect("example.org/app:2")["Id"],
            "{how:?}"
        );
        c.far.ok(&["fsck"]);
    }
    assert!(
        fixes[7] > fixes[0],
        "the unusual compressor needs more corrections than gzip -6: {fixes:?}"
    );
}

#[test]
fn a_store_without_the_reference_refuses_the_delta_by_name_and_stays_as_it_was() {
    let c = case(How::Command(&["gzip", "-6", "-n"]));
    let empty = Airlock::new(&c.dir.path().join("empty"));
    empty.ok(&["images"]);
    let before = tree_hash(&c.dir.path().join("empty"));
    let err = empty.fails(&["load", "-i", c.archive.to_str().unwrap()]);
    assert!(
        err.contains("as a delta against layer") && err.contains("example.org/app:1"),
        "{err}"
    );
    assert_eq!(tree_hash(&c.dir.path().join("empty")), before);
    let err = empty.fails(&["verify", "-i", c.archive.to_str().unwrap()]);
    assert!(err.contains("as a delta against layer"), "{err}");
    // The far side checks the archive against its store before loading it.
    let far_before = tree_hash(&c.dir.path().join("far"));
    let verified = c.far.ok(&["verify", "-i", c.archive.to_str().unwrap()]);
    assert!(
        verified.contains("every digest and diffID verified"),
        "{verified}"
    );
    assert_eq!(tree_hash(&c.dir.path().join("far")), far_before);
    // review says what it is before anyone tries.
    let review = c.near.ok(&["review", c.archive.to_str().unwrap()]);
    assert!(
        review.contains("Deltas: 1 layer(s)") && review.contains("SHIPPED"),
        "{review}"
    );
    // --no-deltas ships the layer whole.
    let whole = c.dir.path().join("whole.tar");
    let inv = c.dir.path().join("far.json");
    c.near.ok(&[
        "save",
        "example.org/app:2",
        "--incremental-from",
        inv.to_str().unwrap(),
        "--no-deltas",
        "-o",
        whole.to_str().unwrap(),
    ]);
    assert!(delta_entries(&whole).is_empty());
}

/// Flip one byte in the middle of the archive entry at `path`.
fn damage(archive: &Path, path: &str) {
    let mut bytes = std::fs::read(archive).unwrap();
    let mut t = tar::Archive::new(&bytes[..]);
    let (offset, size) = t
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy() == path)
        .map(|e| (e.raw_file_position(), e.size()))
        .unwrap();
    bytes[(offset + size / 2) as usize] ^= 0x40;
    std::fs::write(archive, bytes).unwrap();
}

#[test]
fn a_damaged_patch_or_corrections_file_is_caught_and_nothing_enters_the_store() {
    let c = case(How::Command(&["gzip", "-6", "-n"]));
    let entries = delta_entries(&c.archive);
    let far_dir = c.dir.path().join("far");
    for (path, _) in &entries {
        let copy = c.dir.path().join("damaged.tar");
        std::fs::copy(&c.archive, &copy).unwrap();
        damage(&copy, path);
        let before = tree_hash(&far_dir);
        let err = c.far.fails(&["load", "-i", copy.to_str().unwrap()]);
        assert!(err.contains("does not rebuild it"), "{path}: {err}");
        assert_eq!(tree_hash(&far_dir), before, "{path}: the store changed");
    }
    c.far.ok(&["load", "-q", "-i", c.archive.to_str().unwrap()]);
}

#[test]
fn a_load_of_delta_volumes_stopped_at_any_volume_goes_on_and_rebuilds_the_layer() {
    let c = case(How::Command(&["gzip", "-6", "-n"]));
    let d = c.dir.path();
    let inv = d.join("far.json");
    let base = d.join("split.tar");
    c.near.ok(&[
        "save",
        "example.org/app:2",
        "--incremental-from",
        inv.to_str().unwrap(),
        "--split",
        "4K",
        "-o",
        base.to_str().unwrap(),
    ]);
    let volume = |i: usize| std::path::PathBuf::from(format!("{}.{i:03}", base.display()));
    let count = (0..).take_while(|i| volume(*i).exists()).count();
    assert!(count >= 3, "{count} volumes");
    let digest = sha256(&c.blob2);
    for missing in 1..count {
        // A fresh far side each time, a copy of the one that holds release 1.
        let far_dir = d.join(format!("far-{missing}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(d.join("far"))
            .arg(&far_dir)
            .status()
            .unwrap();
        assert!(status.success());
        let far = Airlock::new(&far_dir);
        let aside = d.join("aside");
        let kept: Vec<Vec<u8>> = (0..count)
            .map(|i| std::fs::read(volume(i)).unwrap())
            .collect();
        std::fs::rename(volume(missing), &aside).unwrap();
        let err = far.fails(&["load", "-i", base.to_str().unwrap()]);
        assert!(
            err.contains("run the same command again"),
            "{missing}: {err}"
        );
        // The volumes before the stop are gone when it goes on.
        for i in 0..missing {
            std::fs::remove_file(volume(i)).unwrap();
        }
        std::fs::rename(&aside, volume(missing)).unwrap();
        let out = far.run(&["load", "-q", "-i", base.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "stopped at volume {missing} of {count}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = std::fs::read(far_dir.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert!(
            stored == c.blob2,
            "stopped at volume {missing}: the layer differs"
        );
        far.ok(&["fsck"]);
        for (i, bytes) in kept.iter().enumerate() {
            std::fs::write(volume(i), bytes).unwrap();
        }
    }
}
