//! `airlock serve` with the real clients: docker, podman, skopeo, containerd's ctr and
//! airlock itself pull from it and run what they pulled; mirror names, referrers, what
//! hostile clients get, TLS and basic auth.

mod auth;
mod hostile;
mod mirror;
mod push;
mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::containerd::Ctr;
use crate::util::{require_tool, scratch, sha256, Airlock, Podman};

/// The manifest skopeo reads for `reference` (`HOST:PORT/REPO:TAG`), as the server sent
/// it.
pub(crate) fn skopeo_raw(reference: &str) -> Vec<u8> {
    require_tool("skopeo");
    crate::util::sh(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    )
    .into_bytes()
}

/// `airlock serve` on a free port, stopped with SIGTERM when dropped.
pub(crate) struct Served {
    child: Option<Child>,
    pub(crate) port: u16,
    /// `HOST:PORT` as the server printed it.
    addr: String,
    /// `http` or `https`, as the server printed it.
    pub(crate) scheme: String,
    log: PathBuf,
    /// Everything the server printed on standard output, read as it comes (the pipe is
    /// drained so the server never blocks on it).
    stdout: Arc<Mutex<String>>,
}

impl Served {
    /// On a free loopback port.
    pub(crate) fn start(store: &Airlock, extra: &[&str]) -> Served {
        Self::start_on(store, "127.0.0.1:0", extra, &[])
    }

    /// On `listen`, with `env` set for the server.
    pub(crate) fn start_on(
        store: &Airlock,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        let log = store
            .store
            .with_extension(format!("serve-{}.log", extra.len()));
        let mut child = store
            .cmd()
            .args(["serve", "--listen", listen, "--access-log"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        // "Serving STORE at http://127.0.0.1:PORT/v2/ ..." (https:// with TLS)
        let (scheme, addr) = line
            .split_once(" at ")
            .and_then(|(_, r)| r.split_once("://"))
            .and_then(|(scheme, r)| Some((scheme, r.split_once("/v2/")?.0)))
            .unwrap_or_else(|| {
                let _ = child.kill();
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("serve did not say where it listens: {line:?}\n{err}")
            });
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        let (scheme, addr) = (scheme.to_string(), addr.to_string());
        let stdout = Arc::new(Mutex::new(line));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            while reader.read_line(&mut rest).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&rest);
                rest.clear();
            }
        });
        Served {
            child: Some(child),
            port,
            addr,
            scheme,
            log,
            stdout,
        }
    }

    pub(crate) fn host(&self) -> String {
        self.addr.clone()
    }

    /// Standard output once it holds `marker` (waiting up to ten seconds for it).
    pub(crate) fn stdout_with(&self, marker: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.stdout.lock().unwrap().clone();
            if out.contains(marker) || start.elapsed() > Duration::from_secs(10) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The access log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One raw HTTP/1.1 request, exactly as written (no client normalises the path), and the
/// status, head and body of the answer.
pub(crate) fn raw(
    port: u16,
    method: &str,
    target: &str,
    headers: &[&str],
) -> (u16, String, Vec<u8>) {
    raw_with_body(port, method, target, headers, b"")
}

/// The same with a request body (sent as is: give its `Content-Length` in `headers`).
pub(crate) fn raw_with_body(
    port: u16,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, all[split + 4..].to_vec())
}

/// A store holding one busybox image whose CMD prints `message`, named `name`.
pub(crate) fn busybox_store(dir: &Path, name: &str, message: &str) -> Airlock {
    require_tool("busybox");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = if Path::new("/bin/busybox").exists() {
        PathBuf::from("/bin/busybox")
    } else {
        PathBuf::from("/usr/bin/busybox")
    };
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let store = Airlock::new(&dir.join("store"));
    let cmd = format!("CMD [\"/bin/busybox\", \"echo\", \"{message}\"]");
    store.ok(&["import", root.to_str().unwrap(), name, "-c", &cmd]);
    store
}

#[test]
fn docker_podman_skopeo_ctr_and_airlock_pull_from_serve_and_run_what_they_pulled() {
    let dir = scratch();
    let name = "registry.example/team/hello:1";
    let store = busybox_store(dir.path(), name, "hello from serve");
    let digest = store.inspect(name)["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let served = Served::start(&store, &[]);
    let remote = format!("{}/{name}", served.host());

    // skopeo: the manifest byte for byte, and a copy that checks every digest.
    assert_eq!(sha256(&skopeo_raw(&remote)), digest);
    let layout = dir.path().join("copied");
    let status = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{remote}"))
        .arg(format!("oci:{}:hello", layout.display()))
        .status()
        .unwrap();
    assert!(status.success());

    // docker pulls it (127.0.0.0/8 is an insecure registry by default) and runs it.
    require_tool("docker");
    let out = Command::new("docker")
        .args(["pull", &remote])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    let run = Command::new("docker")
        .args(["run", "--rm", &remote])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", &remote]).output();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello from serve\n");

    // podman too.
    let podman = Podman::new();
    podman.ok(&["pull", "-q", "--tls-verify=false", &remote]);
    assert_eq!(podman.run_image(&remote), "hello from serve\n");

    // containerd's ctr, the digest kept.
    let ctr = Ctr::new_named("-serve");
    ctr.run(&["images", "pull", "--plain-http", &remote]);
    assert!(
        ctr.images()
            .iter()
            .any(|(n, d)| n == &remote && d == &digest),
        "{:?}",
        ctr.images()
    );
    // ...and runs it (ctr pull unpacked it for containerd's default snapshotter).
    let container = format!("airlock-serve-{}", std::process::id());
    assert_eq!(
        ctr.run(&["run", "--rm", &remote, &container]),
        "hello from serve\n"
    );

    // airlock itself.
    let far = Airlock::new(&dir.path().join("far"));
    far.ok(&["pull", &remote]);
    assert_eq!(far.inspect(&remote)["ManifestDigest"], digest.as_str());

    // Ranges: what a resumed download asks for.
    let layer = store.inspect(name)["Layers"][0]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let whole = std::fs::read(dir.path().join("store/blobs/sha256").join(&layer[7..])).unwrap();
    let (status, head, body) = raw(
        served.port,
        "GET",
        &format!("/v2/registry.example/team/hello/blobs/{layer}"),
        &["Range: bytes=100-199"],
    );
    assert_eq!(status, 206, "{head}");
    assert_eq!(body, whole[100..200]);
    assert!(
        head.contains(&format!("bytes 100-199/{}", whole.len())),
        "{head}"
    );

    // The access log line is written when the body has gone, with what was sent.
    std::thread::sleep(Duration::from_millis(100));
    let log = served.log();
    assert!(
        log.contains(&format!("/blobs/{layer} 206 100 bytes")),
        "{log}"
    );
    assert!(
        log.contains("GET /v2/registry.example/team/hello/manifests/1 200"),
        "{log}"
    );
    let mut served = served;
    assert!(served.stop().success(), "SIGTERM is a clean stop");
}
