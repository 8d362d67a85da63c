//! Small helpers for the registry tests, and airlock run in a sandbox of its own.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    fixtures, layer_with_file, noise, require_tool, scratch, sh, write_docker_archive, Airlock,
};

// ------------------------------------------------------------------ small helpers

/// Write a shipment file: the header, then `rest` (the `images:` items, and any `rename:`).
pub(super) fn write_shipment(path: &Path, rest: &str) {
    fs::write(
        path,
        format!("apiVersion: airlock.dev/v1\nkind: Shipment\nimages:\n{rest}"),
    )
    .unwrap();
}

/// `sync -f FILE --dry-run --format json` on `cli`, which must succeed, parsed.
pub(super) fn dry_run_plan(cli: &Cli, file: &str) -> serde_json::Value {
    serde_json::from_str(&cli.ok(&["sync", "-f", file, "--dry-run", "--format", "json"])).unwrap()
}

pub(super) fn fx(name: &str) -> String {
    fixtures().join(name).to_str().unwrap().to_string()
}

/// A name nobody else uses: for tokens, markers and registry instance ids.
pub(super) fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{what}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub(super) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `key=value` pairs of a URI's query.
pub(super) fn query(uri: &str) -> Vec<(String, String)> {
    let Some((_, q)) = uri.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// stdout and stderr of a finished command, together.
pub(super) fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(super) fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn skopeo(args: &[&str]) -> String {
    require_tool("skopeo");
    sh(Command::new("skopeo").args(args))
}

/// `skopeo inspect` of a loopback registry reference, parsed.
pub(super) fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&target);
    serde_json::from_str(&skopeo(&args)).unwrap()
}

/// The raw manifest bytes skopeo reads for a loopback registry reference.
pub(super) fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false", "--raw"];
    args.extend_from_slice(extra);
    args.push(&target);
    let out = Command::new("skopeo").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        all_output(&out)
    );
    out.stdout
}

pub(super) fn layer_digests(inspect: &serde_json::Value) -> Vec<String> {
    inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Digest"].as_str().unwrap().to_string())
        .collect()
}

// ------------------------------------------------------------------ airlock, isolated

/// A scratch directory holding its own docker config (DOCKER_CONFIG), HOME and stores: no
/// test ever reads or writes the real ~/.docker.
pub(super) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(super) fn new() -> Sandbox {
        let dir = scratch();
        fs::create_dir_all(dir.path().join("docker")).unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        Sandbox { dir }
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker/config.json")
    }

    /// airlock on the store `name` of this sandbox.
    pub(super) fn store(&self, name: &str) -> Cli {
        Cli {
            airlock: Airlock::new(&self.dir.path().join(name)),
            docker_config: self.dir.path().join("docker"),
            home: self.dir.path().join("home"),
        }
    }
}

pub(super) struct Cli {
    pub(super) airlock: Airlock,
    docker_config: PathBuf,
    home: PathBuf,
}

impl Cli {
    pub(super) fn cmd(&self) -> Command {
        let mut c = self.airlock.cmd();
        // podman's auth files count too: none of the machine's may leak in.
        c.env("DOCKER_CONFIG", &self.docker_config)
            .env("HOME", &self.home)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("REGISTRY_AUTH_FILE");
        c
    }

    pub(super) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run airlock")
    }

    pub(super) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "airlock {args:?} failed ({}):\n{}",
            out.status,
            all_output(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run, insisting on exit code 1; returns stdout and stderr together.
    pub(super) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "airlock {args:?} should fail with exit 1:\n{}",
            all_output(&out)
        );
        all_output(&out)
    }

    pub(super) fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", image])).unwrap();
        v[0].clone()
    }

    /// `airlock login -u USER --password-stdin HOST` with the password on a pipe.
    pub(super) fn login(&self, host: &str, user: &str, password: &str) -> Output {
        let mut child = self
            .cmd()
            .args(["login", "-u", user, "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// The docker config a sandbox holds, parsed (empty object when absent).
pub(super) fn docker_config(sb: &Sandbox) -> serde_json::Value {
    match fs::read(sb.docker_config()) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => serde_json::json!({}),
    }
}

/// A docker-archive holding one image of incompressible layers of these sizes.
pub(super) fn big_image(path: &Path, name: &str, sizes: &[usize], seed: u64) {
    let layers: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| layer_with_file(&format!("big{i}.bin"), &noise(n, seed + i as u64)))
        .collect();
    write_docker_archive(path, name, &layers);
}
