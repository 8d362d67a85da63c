//! A store with good images to fail a load against, and tar surgery to damage archives.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{fixtures, scratch, sha256, tree_hash, Airlock};

// ------------------------------------------------------------------ helpers

/// A store already holding good images, with its state recorded so a failed load can be
/// shown to have changed nothing.
pub(super) struct Loaded {
    _dir: tempfile::TempDir,
    /// Where the test writes its mutated archives.
    work: PathBuf,
    airlock: Airlock,
    hash: String,
    images: String,
}

/// What a failed command printed: the sentence after `airlock: error: ` and the hint.
pub(super) struct Failure {
    pub(super) sentence: String,
    pub(super) hint: String,
}

impl Loaded {
    /// A store holding the images of a fixture made by the real tools.
    pub(super) fn with_fixture(name: &str) -> Self {
        Self::with_archive(&fixtures().join(name))
    }

    /// A store holding the images of `archive`.
    pub(super) fn with_archive(archive: &Path) -> Self {
        let dir = scratch();
        let work = dir.path().join("work");
        fs::create_dir_all(&work).unwrap();
        let airlock = Airlock::new(&dir.path().join("store"));
        airlock.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        let images = airlock.ok(&["images"]);
        assert!(
            images.lines().count() > 1,
            "the store should hold images:\n{images}"
        );
        Loaded {
            hash: tree_hash(&airlock.store),
            images,
            airlock,
            work,
            _dir: dir,
        }
    }

    /// A path for a test archive in the scratch directory.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// `load -i archive` must fail cleanly and change nothing.
    pub(super) fn load_fails(&self, archive: &Path) -> Failure {
        let stderr = self
            .airlock
            .fails(&["load", "-i", archive.to_str().unwrap()]);
        self.assert_unchanged(&format!("load -i {}", archive.display()));
        parse_failure(&stderr)
    }

    /// `load` reading `bytes` from a pipe that stays open after them must fail without
    /// waiting for more input, cleanly, and change nothing.
    pub(super) fn load_from_open_pipe_fails(&self, bytes: Vec<u8>) -> Failure {
        let mut child = self
            .airlock
            .cmd()
            .arg("load")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run airlock");
        let mut stdin = child.stdin.take().unwrap();
        // Write, then hand the pipe back without closing it: airlock never sees EOF.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes); // airlock may exit (EPIPE) before taking it all
            stdin
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("airlock load kept reading a filesystem snapshot instead of failing early");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        drop(writer.join().unwrap());
        assert_eq!(status.code(), Some(1), "load from a pipe: stderr {stderr}");
        self.assert_unchanged("load from a pipe");
        parse_failure(&stderr)
    }

    fn assert_unchanged(&self, what: &str) {
        assert_eq!(
            tree_hash(&self.airlock.store),
            self.hash,
            "{what}: a failed load changed the store"
        );
        assert_eq!(
            self.airlock.ok(&["images"]),
            self.images,
            "{what}: a failed load changed `airlock images`"
        );
    }
}

/// Split stderr into the error sentence and the hint, insisting on exactly that shape.
fn parse_failure(stderr: &str) -> Failure {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "stderr should be one error line and one hint line:\n{stderr}"
    );
    let sentence = lines[0]
        .strip_prefix("airlock: error: ")
        .unwrap_or_else(|| panic!("no 'airlock: error: ' prefix:\n{stderr}"));
    let hint = lines[1]
        .strip_prefix("hint: ")
        .unwrap_or_else(|| panic!("no 'hint: ' line:\n{stderr}"));
    assert!(!sentence.trim().is_empty() && !hint.trim().is_empty());
    Failure {
        sentence: sentence.to_string(),
        hint: hint.to_string(),
    }
}

pub(super) const HINT_DAMAGED: &str = "the archive was damaged on the way";
pub(super) const HINT_INCOMPLETE: &str = "the archive is incomplete or inconsistent";

/// One member of a tar, held in memory.
pub(super) struct Member {
    header: tar::Header,
    pub(super) path: String,
    /// Target of a symbolic or hard link.
    link: Option<String>,
    pub(super) data: Vec<u8>,
}

pub(super) fn read_members(path: &Path) -> Vec<Member> {
    let mut ar = tar::Archive::new(File::open(path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Member {
            header,
            path,
            link,
            data,
        });
    }
    out
}

fn write_members(path: &Path, members: &[Member]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for m in members {
        let mut h = m.header.clone();
        let kind = h.entry_type();
        match &m.link {
            Some(target) if kind.is_symlink() || kind.is_hard_link() => {
                b.append_link(&mut h, &m.path, target).unwrap();
            }
            _ => {
                h.set_size(m.data.len() as u64);
                b.append_data(&mut h, &m.path, m.data.as_slice()).unwrap();
            }
        }
    }
    b.into_inner().unwrap().flush().unwrap();
}

/// Rewrite the tar `src` into `dst`, letting `edit` change each member, or drop it by
/// returning false.
pub(super) fn rewrite_tar(src: &Path, dst: &Path, mut edit: impl FnMut(&mut Member) -> bool) {
    let mut members = read_members(src);
    members.retain_mut(|m| edit(m));
    write_members(dst, &members);
}

/// Flip every bit of the byte in the middle of `data`.
pub(super) fn flip_middle(data: &mut [u8]) {
    assert!(!data.is_empty());
    let i = data.len() / 2;
    data[i] ^= 0xff;
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `<hex>` of a `<hex>.<ext>` or `blobs/sha256/<hex>` member name.
pub(super) fn hex_of(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap();
    name.split('.').next().unwrap()
}

/// Byte offsets of a member in a tar file: (start of its data, its size).
pub(super) fn member_span(archive: &Path, member: &str) -> (u64, u64) {
    let mut ar = tar::Archive::new(File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path_bytes().as_ref() == member.as_bytes() {
            return (e.raw_file_position(), e.size());
        }
    }
    panic!("{member} is not in {}", archive.display());
}

pub(super) fn truncate_copy(src: &Path, dst: &Path, len: u64) {
    let bytes = fs::read(src).unwrap();
    assert!((len as usize) < bytes.len());
    fs::write(dst, &bytes[..len as usize]).unwrap();
}

/// The largest regular member whose name satisfies `pick`.
pub(super) fn largest(members: &[Member], pick: impl Fn(&str) -> bool) -> &Member {
    members
        .iter()
        .filter(|m| m.header.entry_type().is_file() && pick(&m.path))
        .max_by_key(|m| m.data.len())
        .unwrap()
}

pub(super) fn docker_manifest(members: &[Member]) -> serde_json::Value {
    let m = members.iter().find(|m| m.path == "manifest.json").unwrap();
    serde_json::from_slice(&m.data).unwrap()
}

/// A minimal, valid docker-archive of one small image that shares no blob with the
/// fixtures (they all carry the same config), for tests whose damaged blob the store must
/// not already hold: a blob the store has is skipped, not read again.
pub(super) fn tiny_archive(path: &Path) {
    let mut layer = tar::Builder::new(Vec::new());
    let body = b"airlock corruption tests\n";
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_mtime(1_700_000_000);
    layer.append_data(&mut h, "tiny.txt", &body[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "corruption.rs"}]
    }))
    .unwrap();
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    let layer_name = format!("{}.tar", &diff_id[7..]);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["localhost/airlock-test/tiny:1"],
        "Layers": [layer_name]
    }]))
    .unwrap();
    let mut members = Vec::new();
    for (name, data) in [
        (layer_name, layer),
        (config_name, config),
        ("manifest.json".to_string(), manifest),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o444);
        members.push(Member {
            header: h,
            path: name,
            link: None,
            data,
        });
    }
    write_members(path, &members);
}
