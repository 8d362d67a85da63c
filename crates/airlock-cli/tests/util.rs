//! Helpers shared by every integration test: running airlock, the real tools, fixtures
//! made by those tools, and hashing a store to prove a failed command changed nothing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Path of the airlock binary under test.
pub fn airlock_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airlock"))
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh scratch directory that lives as long as the returned guard. It sits under the
/// system temp dir, not the (possibly deep) target dir: podman refuses run roots longer
/// than 50 characters.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("airlock-t-")
        .tempdir()
        .unwrap()
}

/// An airlock invocation against one store.
pub struct Airlock {
    pub store: PathBuf,
}

impl Airlock {
    pub fn new(store: &Path) -> Self {
        Airlock {
            store: store.to_path_buf(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(airlock_bin());
        c.arg("--store").arg(&self.store);
        c.env_remove("AIRLOCK_STORE");
        c
    }

    /// Run, returning the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run airlock")
    }

    /// Run; whether it succeeded, and its stdout then stderr as one text.
    pub fn run_text(&self, args: &[&str]) -> (bool, String) {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Run and insist on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "airlock {:?} failed ({}):\nstdout: {}\nstderr: {}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and insist on exit code 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "airlock {:?} should fail with exit 1; stdout: {} stderr: {}",
            args,
            String::from_utf8_lossy(&out.stdout),
            stderr
        );
        stderr
    }

    /// `inspect` parsed as JSON (first element).
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", image]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }
}

/// Images a test tagged into the Docker Engine, removed when dropped (pass or fail).
pub struct DockerTags(pub Vec<String>);

impl Drop for DockerTags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", t]).output();
        }
    }
}

/// The docker CLI, insisting on success; returns stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panic loudly when a real tool the test needs is missing: CI must never pass by skipping.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required tool '{name}' is not installed; run .ci/run (or install it) — this test never skips"
    );
}

/// Run a command, insisting on success; returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fixtures made once per test run by tests/fixtures/make-fixtures.sh with the real tools.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = DIR.get_or_init(|| {
        for t in [
            "skopeo", "umoci", "podman", "busybox", "python3", "zstd", "xz", "bzip2", "jq",
        ] {
            require_tool(t);
        }
        remove_stale_fixtures();
        let dir = std::env::temp_dir().join(format!("airlock-fx-{}", std::process::id()));
        let script = repo_root().join("tests/fixtures/make-fixtures.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "make-fixtures.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    // Every test that needs fixtures fails with the same message; the script runs once.
    match made {
        Ok(dir) => dir,
        Err(msg) => panic!("{msg}"),
    }
}

/// Fixture directories of test runs whose process is gone.
fn remove_stale_fixtures() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("airlock-fx-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("chmod")
                .arg("-R")
                .arg("u+rwX")
                .arg(e.path())
                .status();
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// expected.json written by the fixture script.
pub fn expected() -> &'static serde_json::Value {
    static V: OnceLock<serde_json::Value> = OnceLock::new();
    V.get_or_init(|| {
        let bytes = std::fs::read(fixtures().join("expected.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    })
}

/// A podman with a private, throw-away store.
pub struct Podman {
    pub root: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Self {
        require_tool("podman");
        Podman { root: scratch() }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        let r = self.root.path();
        c.arg("--root")
            .arg(r.join("root"))
            .arg("--runroot")
            .arg(r.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
            ]);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        sh(self.cmd().args(args))
    }

    /// `podman run` the image and return what it printed. runc with lowered limits is the
    /// only way containers run on these machines (crun fails here, see TOOLS.md).
    pub fn run_image(&self, image: &str) -> String {
        self.ok(&[
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            image,
        ])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers hold read-only directories; make them removable.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwX")
            .arg(self.root.path())
            .status();
    }
}

/// sha256 of every file (path, mode, contents) and directory under `dir`: two equal values
/// mean the store is byte-identical.
pub fn tree_hash(dir: &Path) -> String {
    let mut entries = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(rel + "/", String::new());
                walk(base, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    walk(dir, dir, &mut entries);
    let mut h = Sha256::new();
    for (k, v) in &entries {
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// sha256 of a byte slice as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Entries of a tar file: path -> (type, mode, uid, gid, link target, content digest).
/// Used to compare root filesystems byte for byte.
pub fn tar_listing(path: &Path) -> BTreeMap<String, String> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(f);
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                let key = x.key().unwrap_or("").to_string();
                if key.starts_with("SCHILY.xattr.") {
                    xattrs.push(format!(
                        "{key}={}",
                        String::from_utf8_lossy(x.value_bytes())
                    ));
                }
            }
        }
        xattrs.sort();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let desc = format!(
            "{:?} mode={:o} uid={} gid={} link={} data={} xattrs={:?}",
            h.entry_type(),
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
            link,
            sha256(&data),
            xattrs
        );
        out.insert(p, desc);
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for size tests.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A layer tar holding one file.
pub fn layer_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// Append a regular file (mode 0644) to an archive being written.
pub fn append_file<W: std::io::Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, path, data).unwrap();
}

/// Write a docker-archive (the `docker save` <= 24 shape: `<cfg>.json`, `<diffid>.tar`,
/// `manifest.json`) holding one image with the given uncompressed layers.
pub fn write_docker_archive(path: &Path, name: &str, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cfg_hex = sha256(&config)[7..].to_string();
    let layer_paths: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}.tar", &d[7..]))
        .collect();
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_hex}.json"), "RepoTags": [name], "Layers": layer_paths,
    }]);
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |p: &str, data: &[u8]| append_file(&mut b, p, data);
    add(&format!("{cfg_hex}.json"), &config);
    for (p, l) in layer_paths.iter().zip(layers) {
        add(p, l);
    }
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.finish().unwrap();
}
