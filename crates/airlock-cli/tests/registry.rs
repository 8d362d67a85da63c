//! Registries: push, pull, copy and login against the real CNCF distribution registry
//! (`docker-registry`), started on loopback by each test, with skopeo and podman as oracles.
//!
//! What a real registry cannot do (issue bearer tokens, lie about a digest, stall an upload,
//! show the headers of each request) comes from a small HTTP proxy in this file that sits in
//! front of the real registry and forwards what it does not change. Requests are counted in
//! the registry's own access log (one Apache-style line per request on its stdout) or in the
//! proxy's record of what passed through it.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    expected, fixtures, layer_with_file, noise, require_tool, scratch, sh, sha256, tree_hash,
    write_docker_archive, Airlock, Podman,
};

const APP: &str = "localhost/airlock-test/app:1";
const APP2: &str = "localhost/airlock-test/app2:1";

// ------------------------------------------------------------------ small helpers

fn fx(name: &str) -> String {
    fixtures().join(name).to_str().unwrap().to_string()
}

/// A name nobody else uses: for tokens, markers and registry instance ids.
fn unique(what: &str) -> String {
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

fn base64(data: &[u8]) -> String {
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
fn query(uri: &str) -> Vec<(String, String)> {
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
fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn skopeo(args: &[&str]) -> String {
    require_tool("skopeo");
    sh(Command::new("skopeo").args(args))
}

/// `skopeo inspect` of a loopback registry reference, parsed.
fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&target);
    serde_json::from_str(&skopeo(&args)).unwrap()
}

/// The raw manifest bytes skopeo reads for a loopback registry reference.
fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
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

fn layer_digests(inspect: &serde_json::Value) -> Vec<String> {
    inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Digest"].as_str().unwrap().to_string())
        .collect()
}

// ------------------------------------------------------------------ HTTP/1.1, minimal

/// Header names and values, in order.
type Headers = Vec<(String, String)>;

/// A request as the proxy received it.
#[derive(Clone, Debug, Default)]
struct Request {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A response, from the registry or made up by the proxy.
#[derive(Clone, Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

impl Response {
    fn new(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

/// Hop-by-hop headers and framing the proxy sets itself.
fn is_framing(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The start line and headers of a message; None at end of stream.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Headers)>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of headers",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((start, headers)))
}

/// A body framed by Content-Length or chunked encoding; without either, a request has none
/// and a response runs to the end of the stream.
fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if find_header(headers, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    }
    if let Some(len) = find_header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Send `req` to 127.0.0.1:`port` on a fresh connection and read the whole answer.
fn send(port: u16, req: &Request) -> io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.uri);
    for (k, v) in &req.headers {
        if !is_framing(k) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if !req.body.is_empty() || ["PUT", "POST", "PATCH"].contains(&req.method.as_str()) {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&req.body)?;
    s.flush()?;
    let mut r = BufReader::new(s);
    let (start, mut headers) = read_head(&mut r)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let status: u16 = start
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, start.clone()))?;
    let bodiless = req.method == "HEAD" || status == 204 || status == 304 || status < 200;
    let body = if bodiless {
        Vec::new()
    } else {
        read_body(&mut r, &headers, true)?
    };
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A plain request from the test itself (no auth) to a loopback port.
fn http(port: u16, method: &str, path: &str) -> Response {
    let req = Request {
        method: method.into(),
        uri: path.into(),
        headers: vec![("Host".into(), format!("127.0.0.1:{port}"))],
        body: Vec::new(),
    };
    send(port, &req).unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

fn write_response(s: &mut TcpStream, resp: &Response, head_request: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} Whatever\r\n", resp.status);
    for (k, v) in &resp.headers {
        // A HEAD answer keeps the length of the body it would have had.
        let keep_length = head_request && k.eq_ignore_ascii_case("content-length");
        if keep_length || !is_framing(k) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if !head_request {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    if !head_request {
        s.write_all(&resp.body)?;
    }
    s.flush()
}

// ------------------------------------------------------------------ the real registry

/// One request line of the registry's access log.
#[derive(Clone, Debug)]
struct Logged {
    method: String,
    uri: String,
    status: u16,
}

impl Logged {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    /// A request that carries or commits blob data.
    fn sends_blob(&self) -> bool {
        self.method == "PATCH"
            || self.method == "POST"
            || (self.method == "PUT" && self.path().contains("/blobs/"))
    }
}

/// `docker-registry serve` on 127.0.0.1, a free port, its own storage; killed on drop.
struct RegistryServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    markers: AtomicUsize,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RegistryServer {
    /// A registry without auth.
    fn start() -> RegistryServer {
        Self::launch(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, basic auth).
    fn with_htpasswd(user: &str, password: &str) -> RegistryServer {
        Self::launch(Some((user, password)))
    }

    fn launch(login: Option<(&str, &str)>) -> RegistryServer {
        require_tool("docker-registry");
        let dir = scratch();
        let mut auth = String::new();
        if let Some((user, password)) = login {
            require_tool("htpasswd");
            let line = sh(Command::new("htpasswd").args(["-Bbn", user, password]));
            let file = dir.path().join("htpasswd");
            fs::write(&file, line.trim_end().to_string() + "\n").unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: airlock-test\n    path: {}\n",
                file.display()
            );
        }
        // The header proves the answering registry is this one, not a neighbour's that won
        // a race for the same port.
        let instance = unique("reg");
        let stderr_of = |dir: &tempfile::TempDir| {
            fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        };
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: 127.0.0.1:{port}\n  \
                     headers:\n    X-Airlock-Instance: [{instance}]\n\
                     {auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.path().join("access.log")).unwrap())
                .stderr(fs::File::create(dir.path().join("registry.log")).unwrap())
                .spawn()
                .expect("start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken after all: try another
                }
                let req = Request {
                    method: "GET".into(),
                    uri: "/v2/".into(),
                    headers: vec![("Host".into(), format!("127.0.0.1:{port}"))],
                    body: Vec::new(),
                };
                if let Ok(r) = send(port, &req) {
                    if r.header("X-Airlock-Instance") == Some(instance.as_str()) {
                        return RegistryServer {
                            child,
                            port,
                            dir,
                            markers: AtomicUsize::new(0),
                        };
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry did not answer on port {port}: {}",
                        stderr_of(&dir)
                    );
                }
                thread::sleep(Duration::from_millis(25));
            }
        }
        panic!(
            "docker-registry would not start on a free port: {}",
            stderr_of(&dir)
        );
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request the registry logged so far, in order. A marker request is sent and
    /// waited for first, so nothing airlock already got an answer to is missing.
    fn access_log(&self) -> Vec<Logged> {
        let marker = format!(
            "airlock-marker={}",
            self.markers.fetch_add(1, Ordering::SeqCst)
        );
        http(self.port, "GET", &format!("/v2/?{marker}"));
        let path = self.dir.path().join("access.log");
        let mut text = String::new();
        wait_for("the access log marker", Duration::from_secs(10), || {
            text = fs::read_to_string(&path).unwrap();
            text.contains(&marker)
        });
        text.lines()
            .filter(|l| !l.contains("airlock-marker="))
            .filter_map(|l| {
                // 127.0.0.1 - - [date] "PUT /v2/... HTTP/1.1" 201 0 "" "ureq/2.12.1"
                let (_, rest) = l.split_once('"')?;
                let (request, rest) = rest.split_once('"')?;
                let mut parts = request.split(' ');
                Some(Logged {
                    method: parts.next()?.to_string(),
                    uri: parts.next()?.to_string(),
                    status: rest.split_whitespace().next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// Whether repository `repo` holds blob `digest` (asked without auth: only for open
    /// registries).
    fn has_blob(&self, repo: &str, digest: &str) -> bool {
        http(self.port, "HEAD", &format!("/v2/{repo}/blobs/{digest}")).status == 200
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ a proxy in front of it

/// What the proxy does with one request.
enum Reply {
    /// Answer with this.
    Send(Response),
    /// Answer nothing, forward nothing: hold the connection until the client goes away.
    Hang,
}

/// What the proxy saw of one request (bodies are not kept, only their length).
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body_len: usize,
}

impl Seen {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    /// The digest a blob upload is committed with (`PUT ...?digest=`).
    fn committed_digest(&self) -> Option<String> {
        if self.method != "PUT" || !self.path().contains("/blobs/uploads/") {
            return None;
        }
        query(&self.uri)
            .into_iter()
            .find(|(k, _)| k == "digest")
            .map(|(_, v)| v)
    }
}

/// The forwarding function handed to a proxy's handler.
type Forward<'a> = &'a dyn Fn(&Request) -> Response;
type Handler = dyn Fn(&Request, Forward) -> Reply + Send + Sync;

/// An HTTP/1.1 proxy on loopback in front of one upstream port: one request per
/// connection, whole bodies in memory, every request recorded.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Forward everything unchanged.
    fn transparent(upstream: u16) -> Proxy {
        Self::start(upstream, |req, forward| Reply::Send(forward(req)))
    }

    fn start(
        upstream: u16,
        handler: impl Fn(&Request, Forward) -> Reply + Send + Sync + 'static,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen2, stop2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (handler, seen) = (handler.clone(), seen2.clone());
                thread::spawn(move || {
                    let _ = serve(conn, upstream, &*handler, &seen);
                });
            }
        });
        Proxy { port, seen, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: u16,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let Some((start, headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let uri = parts.next().unwrap_or("").to_string();
    let body = read_body(&mut r, &headers, false)?;
    let req = Request {
        method,
        uri,
        headers,
        body,
    };
    seen.lock().unwrap().push(Seen {
        method: req.method.clone(),
        uri: req.uri.clone(),
        headers: req.headers.clone(),
        body_len: req.body.len(),
    });
    let forward = |req: &Request| {
        send(upstream, req).unwrap_or_else(|e| {
            Response::new(502, &[], format!("proxy: upstream failed: {e}").as_bytes())
        })
    };
    match handler(&req, &forward) {
        Reply::Send(resp) => write_response(&mut conn, &resp, req.method == "HEAD"),
        Reply::Hang => {
            // Until the client closes its end (or gives up).
            conn.set_read_timeout(Some(Duration::from_millis(200)))?;
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ airlock, isolated

/// A scratch directory holding its own docker config (DOCKER_CONFIG), HOME and stores: no
/// test ever reads or writes the real ~/.docker.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = scratch();
        fs::create_dir_all(dir.path().join("docker")).unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        Sandbox { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker/config.json")
    }

    /// airlock on the store `name` of this sandbox.
    fn store(&self, name: &str) -> Cli {
        Cli {
            airlock: Airlock::new(&self.dir.path().join(name)),
            docker_config: self.dir.path().join("docker"),
            home: self.dir.path().join("home"),
        }
    }
}

struct Cli {
    airlock: Airlock,
    docker_config: PathBuf,
    home: PathBuf,
}

impl Cli {
    fn cmd(&self) -> Command {
        let mut c = self.airlock.cmd();
        c.env("DOCKER_CONFIG", &self.docker_config)
            .env("HOME", &self.home);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run airlock")
    }

    fn ok(&self, args: &[&str]) -> String {
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
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "airlock {args:?} should fail with exit 1:\n{}",
            all_output(&out)
        );
        all_output(&out)
    }

    fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", image])).unwrap();
        v[0].clone()
    }

    /// `airlock login -u USER --password-stdin HOST` with the password on a pipe.
    fn login(&self, host: &str, user: &str, password: &str) -> Output {
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
fn docker_config(sb: &Sandbox) -> serde_json::Value {
    match fs::read(sb.docker_config()) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => serde_json::json!({}),
    }
}

/// A docker-archive holding one image of incompressible layers of these sizes.
fn big_image(path: &Path, name: &str, sizes: &[usize], seed: u64) {
    let layers: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| layer_with_file(&format!("big{i}.bin"), &noise(n, seed + i as u64)))
        .collect();
    write_docker_archive(path, name, &layers);
}

// ------------------------------------------------------------------ 1. push, skopeo reads

/// What airlock pushes is what skopeo reads back: the manifest digest airlock reports, its
/// bytes, the config (whose digest is the image ID) and every layer.
#[test]
fn pushed_image_reads_back_in_skopeo_with_the_same_digests() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    for (fixture, repo) in [
        ("skopeo-docker-archive.tar", "t1/from-docker-archive"),
        ("skopeo-oci-archive.tar", "t1/from-oci-archive"),
    ] {
        let cli = sb.store(fixture);
        cli.ok(&["load", "-q", "-i", &fx(fixture)]);
        let local = cli.inspect(APP);
        let manifest_digest = local["ManifestDigest"].as_str().unwrap();
        let id = local["Id"].as_str().unwrap();
        let dest = format!("{}/{repo}:1", reg.host());
        let out = cli.ok(&["push", APP, &dest]);
        assert!(
            out.contains(&format!("Pushed {dest} ({manifest_digest})")),
            "{fixture}: {out}"
        );

        let remote = skopeo_inspect(&dest, &[]);
        assert_eq!(
            remote["Digest"], manifest_digest,
            "{fixture}: manifest digest"
        );
        assert_eq!(
            remote["Layers"].as_array().unwrap(),
            &layer_digests(&local),
            "{fixture}: layers"
        );
        let raw = skopeo_raw(&dest, &[]);
        assert_eq!(sha256(&raw), manifest_digest, "{fixture}: manifest bytes");
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["config"]["digest"], id, "{fixture}: config digest");
        let config = skopeo_raw(&dest, &["--config"]);
        assert_eq!(
            sha256(&config),
            id,
            "{fixture}: config bytes are the image ID"
        );
        if fixture.contains("oci") {
            // An image that came with a manifest goes up with that very manifest.
            assert_eq!(
                manifest_digest,
                expected()[fixture][0]["manifest_digest"],
                "{fixture}: the original manifest"
            );
        }
    }
}

// ------------------------------------------------------------------ 2. pull what skopeo pushed

#[test]
fn pulls_what_skopeo_pushed_with_the_digests_the_tools_report() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    for (fixture, tag, repo) in [
        ("skopeo-oci-dir", "app", "t2/skopeo"),
        ("umoci-layout", "app2", "t2/umoci"),
    ] {
        let want = expected()[fixture]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["names"][0] == tag)
            .unwrap_or_else(|| panic!("{fixture}: no {tag} in expected.json"));
        let dest = format!("{}/{repo}:1", reg.host());
        skopeo(&[
            "copy",
            "-q",
            "--insecure-policy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("oci:{}:{tag}", fx(fixture)),
            &format!("docker://{dest}"),
        ]);

        let cli = sb.store(fixture);
        let out = cli.ok(&["pull", &dest]);
        assert!(out.contains("Pulled"), "{fixture}: {out}");
        let got = cli.inspect(&dest);
        assert_eq!(got["ManifestDigest"], want["manifest_digest"], "{fixture}");
        assert_eq!(got["Id"], want["config_digest"], "{fixture}");
        assert_eq!(got["RootFS"]["Layers"], want["diff_ids"], "{fixture}");
        assert_eq!(
            serde_json::json!(layer_digests(&got)),
            want["layer_digests"],
            "{fixture}"
        );

        // Again: the store has every blob, so none is fetched.
        let mark = reg.access_log().len();
        cli.ok(&["pull", "-q", &dest]);
        let fetched: Vec<Logged> = reg.access_log()[mark..]
            .iter()
            .filter(|l| l.path().contains("/blobs/"))
            .cloned()
            .collect();
        assert!(
            fetched.is_empty(),
            "{fixture}: second pull fetched {fetched:?}"
        );
    }
}

// ------------------------------------------------------------------ 3. archive -> registry -> podman run

#[test]
fn archive_goes_to_a_registry_prefix_and_podman_runs_it() {
    require_tool("runc");
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let host = reg.host();
    let cli = sb.store("store");

    // Straight from the archive, renamed below the prefix.
    let out = cli.ok(&[
        "copy",
        &format!("docker-archive:{}", fx("podman-multi.tar")),
        &format!("docker://{host}/airgap"),
    ]);
    for name in ["airlock-test/app:1", "airlock-test/app2:1"] {
        assert!(
            out.contains(&format!("Pushed {host}/airgap/{name} ")),
            "copy output lacks {name}: {out}"
        );
    }
    // app2 shares its base layer with app: mounted across repositories, not sent again.
    let app2_line = out.lines().find(|l| l.contains("/app2:1")).unwrap();
    assert!(app2_line.contains("1 mounted"), "{app2_line}");
    let catalog: serde_json::Value =
        serde_json::from_slice(&http(reg.port, "GET", "/v2/_catalog").body).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["airgap/airlock-test/app", "airgap/airlock-test/app2"])
    );

    // The same through the store: load, then push --all with a prefix.
    cli.ok(&["load", "-q", "-i", &fx("podman-multi.tar")]);
    let out = cli.ok(&["push", "--all", "--registry", &host, "--prefix", "airgap2"]);
    for image in [APP, APP2] {
        let path = image.strip_prefix("localhost/").unwrap();
        assert!(
            out.contains(&format!("Pushed {host}/airgap2/{path} ")),
            "{out}"
        );
        let local = cli.inspect(image);
        for prefix in ["airgap", "airgap2"] {
            let remote = skopeo_inspect(&format!("{host}/{prefix}/{path}"), &[]);
            assert_eq!(remote["Digest"], local["ManifestDigest"], "{prefix}/{path}");
        }
    }

    // podman pulls it from the registry and runs it.
    let podman = Podman::new();
    for (path, says) in [
        ("airlock-test/app:1", "hello from airlock layer 2"),
        ("airlock-test/app2:1", "hello from app2"),
    ] {
        let remote = format!("{host}/airgap/{path}");
        podman.ok(&["pull", "-q", "--tls-verify=false", &remote]);
        let ran = podman.ok(&[
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
            &remote,
        ]);
        assert_eq!(ran.trim(), says, "{remote}");
    }
}

// ------------------------------------------------------------------ 4. second push: no bodies

#[test]
fn second_push_sends_no_blob_bodies() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    let blobs = layer_digests(&cli.inspect(APP)).len() + 1;
    let dest = format!("{}/t4/app:1", reg.host());
    let out = cli.ok(&["push", APP, &dest]);
    assert!(out.contains(&format!("{blobs} blobs sent")), "{out}");
    let first = reg.access_log();
    assert!(
        first.iter().filter(|l| l.sends_blob()).count() >= 2 * blobs,
        "the first push should upload every blob: {first:?}"
    );

    let out = cli.ok(&["push", APP, &dest]);
    assert!(
        out.contains(&format!("0 blobs sent (0 bytes), {blobs} already there")),
        "{out}"
    );
    let second = &reg.access_log()[first.len()..];
    let uploads: Vec<&Logged> = second.iter().filter(|l| l.sends_blob()).collect();
    assert!(uploads.is_empty(), "second push uploaded: {uploads:?}");
    let heads = second
        .iter()
        .filter(|l| l.method == "HEAD" && l.path().contains("/blobs/") && l.status == 200)
        .count();
    assert_eq!(heads, blobs, "one HEAD per blob: {second:?}");
    let manifests: Vec<&Logged> = second
        .iter()
        .filter(|l| l.method == "PUT" && l.path() == "/v2/t4/app/manifests/1")
        .collect();
    assert_eq!(manifests.len(), 1, "{second:?}");
    assert_eq!(second.len(), blobs + 1, "nothing else: {second:?}");
}

// ------------------------------------------------------------------ 5. htpasswd, login, logout

#[test]
fn basic_auth_login_push_logout_and_no_password_in_output() {
    const USER: &str = "airlock";
    const PASSWORD: &str = "Right-Pa55word-7781";
    const WRONG: &str = "Wr0ng-Pa55word-4432";
    let reg = RegistryServer::with_htpasswd(USER, PASSWORD);
    let host = reg.host();
    let sb = Sandbox::new();
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    let dest = format!("{host}/t5/app:1");
    let secrets = [
        PASSWORD.to_string(),
        WRONG.to_string(),
        base64(format!("{USER}:{PASSWORD}").as_bytes()),
        base64(format!("{USER}:{WRONG}").as_bytes()),
    ];
    let no_secret = |what: &str, text: &str| {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} shows a secret ({s}):\n{text}"
            );
        }
    };

    // No login yet.
    let err = cli.fails(&["push", APP, &dest]);
    assert!(
        err.to_lowercase().contains("authenticat") && err.contains("airlock login"),
        "push without login: {err}"
    );

    // Wrong password: refused, nothing stored, never echoed.
    let out = cli.login(&host, USER, WRONG);
    let text = all_output(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "login with a wrong password:\n{text}"
    );
    assert!(text.contains("airlock: error:"), "{text}");
    no_secret("login with a wrong password", &text);
    assert!(docker_config(&sb)["auths"].get(&host).is_none());

    // Right password.
    let out = cli.login(&host, USER, PASSWORD);
    let text = all_output(&out);
    assert!(out.status.success(), "login:\n{text}");
    assert!(text.contains("Login Succeeded"), "{text}");
    no_secret("login", &text);
    let mode = fs::metadata(sb.docker_config()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(
        docker_config(&sb)["auths"][&host]["auth"],
        base64(format!("{USER}:{PASSWORD}").as_bytes())
    );

    let pushed = cli.run(&["push", APP, &dest]);
    assert!(pushed.status.success(), "{}", all_output(&pushed));
    no_secret("push", &all_output(&pushed));
    let remote = skopeo_inspect(&dest, &["--creds", &format!("{USER}:{PASSWORD}")]);
    assert_eq!(remote["Digest"], cli.inspect(APP)["ManifestDigest"]);
    let puller = sb.store("pulled");
    puller.ok(&["pull", "-q", &dest]);
    assert_eq!(puller.inspect(&dest)["Id"], cli.inspect(APP)["Id"]);

    // Logout forgets it; pushing is refused again.
    let out = cli.ok(&["logout", &host]);
    assert!(out.contains("Removed"), "{out}");
    assert!(docker_config(&sb)["auths"].get(&host).is_none());
    let err = cli.fails(&["push", APP, &dest]);
    assert!(err.contains("airlock login"), "{err}");

    // A wrong password stored in config.json: refused, and neither it nor its base64 shows.
    fs::write(
        sb.docker_config(),
        serde_json::to_vec(&serde_json::json!({
            "auths": {&host: {"auth": base64(format!("{USER}:{WRONG}").as_bytes())}}
        }))
        .unwrap(),
    )
    .unwrap();
    let other = sb.store("other");
    for (who, args) in [
        (&cli, vec!["push", APP, dest.as_str()]),
        (&other, vec!["pull", dest.as_str()]),
    ] {
        let err = who.fails(&args);
        assert!(
            err.to_lowercase().contains("authenticat"),
            "{args:?}: {err}"
        );
        no_secret("a command with a wrong stored password", &err);
    }
}

// ------------------------------------------------------------------ 6. bearer tokens

/// A token service in front of the real registry, the way Docker Hub or Harbor answer.
#[test]
fn bearer_token_flow_with_stored_credentials() {
    const USER: &str = "tokuser";
    const PASSWORD: &str = "tok-Pa55";
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let token = unique("token");
    let scopes: Arc<Mutex<Vec<Headers>>> = Arc::default(); // token request queries
    let realm_port = Arc::new(AtomicUsize::new(0));
    let proxy = {
        let (token, scopes, realm_port) = (token.clone(), scopes.clone(), realm_port.clone());
        let basic = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
        Proxy::start(reg.port, move |req, forward| {
            if req.path() == "/token" {
                scopes.lock().unwrap().push(query(&req.uri));
                if req.header("Authorization") != Some(basic.as_str()) {
                    return Reply::Send(Response::new(401, &[], b"{\"details\":\"bad login\"}"));
                }
                let body = serde_json::json!({"token": token}).to_string();
                return Reply::Send(Response::new(
                    200,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ));
            }
            if req.header("Authorization") != Some(format!("Bearer {token}").as_str()) {
                let challenge = format!(
                    "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"airlock-test\"",
                    realm_port.load(Ordering::SeqCst)
                );
                return Reply::Send(Response::new(
                    401,
                    &[
                        ("WWW-Authenticate", challenge.as_str()),
                        ("Content-Type", "application/json"),
                    ],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ));
            }
            Reply::Send(forward(req))
        })
    };
    realm_port.store(proxy.port as usize, Ordering::SeqCst);
    let host = proxy.host();
    let dest = format!("{host}/tok/app:1");
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);

    let err = cli.fails(&["push", APP, &dest]);
    assert!(err.contains("airlock login"), "push before login: {err}");
    assert!(!reg.has_blob("tok/app", cli.inspect(APP)["Id"].as_str().unwrap()));

    let out = cli.login(&host, USER, PASSWORD);
    assert!(out.status.success(), "login: {}", all_output(&out));

    let scope_of = |from: usize| -> Vec<String> {
        scopes.lock().unwrap()[from..]
            .iter()
            .flat_map(|q| {
                q.iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    };
    let mark = scopes.lock().unwrap().len();
    let out = cli.ok(&["push", APP, &dest]);
    assert!(out.contains("Pushed"), "{out}");
    assert!(
        scope_of(mark).contains(&"repository:tok/app:pull,push".to_string()),
        "push token scopes: {:?}",
        scope_of(mark)
    );
    for q in &scopes.lock().unwrap()[mark..] {
        assert!(
            q.contains(&("service".to_string(), "airlock-test".to_string())),
            "{q:?}"
        );
    }
    // The registry behind the proxy has it.
    let remote = skopeo_inspect(&format!("{}/tok/app:1", reg.host()), &[]);
    assert_eq!(remote["Digest"], cli.inspect(APP)["ManifestDigest"]);

    let mark = scopes.lock().unwrap().len();
    let puller = sb.store("pulled");
    puller.ok(&["pull", "-q", &dest]);
    assert_eq!(puller.inspect(&dest)["Id"], cli.inspect(APP)["Id"]);
    assert_eq!(
        scope_of(mark),
        vec!["repository:tok/app:pull".to_string()],
        "pull token scopes"
    );
    let leaked: Vec<Seen> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.path() != "/token")
        .filter(|s| {
            s.header("Authorization")
                .is_some_and(|a| a.starts_with("Basic"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the password went to the registry: {leaked:?}"
    );
}

// ------------------------------------------------------------------ 7. a lying registry

#[test]
fn a_registry_that_lies_about_a_digest_is_caught_and_the_store_is_untouched() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let want = &expected()["skopeo-oci-dir"][0];
    let true_manifest = want["manifest_digest"].as_str().unwrap().to_string();
    let layers: Vec<String> = want["layer_digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    skopeo(&[
        "copy",
        "-q",
        "--insecure-policy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:app", fx("skopeo-oci-dir")),
        &format!("docker://{}/t7/app:1", reg.host()),
    ]);
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-multi.tar")]);
    let before = tree_hash(&cli.airlock.store);
    let images = cli.ok(&["images"]);

    type Lie = fn(&Request, &mut Response, &[String], u16);
    let lies: [(&str, &str, Lie); 3] = [
        // The body changes, the Docker-Content-Digest header still names the original.
        ("manifest by tag", ":1", |req, resp, _, _| {
            if req.method == "GET" && req.path().contains("/manifests/") {
                resp.body.extend_from_slice(b"\n");
            }
        }),
        // Asked by digest, answers another document and no header.
        ("manifest by digest", "@", |req, resp, _, _| {
            if req.method == "GET" && req.path().contains("/manifests/") {
                resp.remove_header("Docker-Content-Digest");
                resp.body.extend_from_slice(b" ");
            }
        }),
        // A layer answered with another (valid) layer's bytes.
        ("layer blob", ":1", |req, resp, layers, upstream| {
            if req.method == "GET" && req.path().ends_with(&layers[layers.len() - 1]) {
                let other = http(
                    upstream,
                    "GET",
                    &req.path().replace(&layers[layers.len() - 1], &layers[1]),
                );
                resp.body = other.body;
            }
        }),
    ];
    for (what, how, lie) in lies {
        let served: Arc<Mutex<Vec<String>>> = Arc::default();
        let proxy = {
            let (served, layers, upstream) = (served.clone(), layers.clone(), reg.port);
            Proxy::start(reg.port, move |req, forward| {
                let mut resp = forward(req);
                if resp.status == 200 {
                    let before = resp.body.clone();
                    lie(req, &mut resp, &layers, upstream);
                    if resp.body != before {
                        served.lock().unwrap().push(sha256(&resp.body));
                    }
                }
                Reply::Send(resp)
            })
        };
        let reference = match how {
            "@" => format!("{}/t7/app@{true_manifest}", proxy.host()),
            _ => format!("{}/t7/app:1", proxy.host()),
        };
        let err = cli.fails(&["pull", &reference]);
        let lied = served.lock().unwrap().clone();
        assert_eq!(lied.len(), 1, "{what}: the proxy should have lied once");
        let expected_digest = if what == "layer blob" {
            layers[layers.len() - 1].clone()
        } else {
            true_manifest.clone()
        };
        assert!(
            err.contains(&format!("expected {expected_digest}, got {}", lied[0])),
            "{what}: the error should name both digests:\n{err}"
        );
        assert!(
            err.contains("served damaged content") && err.contains("nothing was stored"),
            "{what}: the error should blame the registry, not an archive:\n{err}"
        );
        assert_eq!(
            tree_hash(&cli.airlock.store),
            before,
            "{what}: store changed"
        );
        assert_eq!(cli.ok(&["images"]), images, "{what}");
    }
}

// ------------------------------------------------------------------ 8. chunked upload

#[test]
fn a_large_blob_goes_up_in_chunks() {
    const CHUNK: usize = 32 << 20;
    let reg = RegistryServer::start();
    let proxy = Proxy::transparent(reg.port);
    let sb = Sandbox::new();
    let archive = sb.path().join("big.tar");
    big_image(&archive, "localhost/big/one:1", &[40 << 20], 80);
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let local = cli.inspect("localhost/big/one:1");
    let layer = &local["Layers"][0];
    let (digest, size) = (
        layer["Digest"].as_str().unwrap(),
        layer["Size"].as_u64().unwrap() as usize,
    );
    assert!(size > CHUNK);

    let dest = format!("{}/t8/big:1", proxy.host());
    let out = cli.ok(&["push", "localhost/big/one:1", &dest]);
    assert!(out.contains("2 blobs sent"), "{out}");

    let seen = proxy.seen();
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    let ranges: Vec<(String, usize)> = patches
        .iter()
        .map(|s| {
            let range = s.header("Content-Range").unwrap_or("(none)");
            (range.to_string(), s.body_len)
        })
        .collect();
    let want_ranges = [
        (format!("0-{}", CHUNK - 1), CHUNK),
        (format!("{CHUNK}-{}", size - 1), size - CHUNK),
    ];
    assert_eq!(
        ranges, want_ranges,
        "PATCH requests (Content-Range, body length)"
    );
    let commits: Vec<(String, usize)> = seen
        .iter()
        .filter_map(|s| s.committed_digest().map(|d| (d, s.body_len)))
        .collect();
    assert!(
        commits.contains(&(digest.to_string(), 0)),
        "the chunked blob is committed by an empty PUT: {commits:?}"
    );

    let direct = format!("{}/t8/big:1", reg.host());
    let remote = skopeo_inspect(&direct, &[]);
    assert_eq!(remote["Digest"], local["ManifestDigest"]);
    assert_eq!(remote["Layers"], serde_json::json!([digest]));
    let blob = http(reg.port, "GET", &format!("/v2/t8/big/blobs/{digest}"));
    assert_eq!(blob.body.len(), size);
    assert_eq!(
        sha256(&blob.body),
        digest,
        "the registry holds the right bytes"
    );
}

// ------------------------------------------------------------------ 9. interrupted push resumes

/// The proxy lets the config and the first layer through and holds the commits of the other
/// two layers; airlock is SIGKILLed once the first layer is in the registry. Pushing again
/// sends only the two missing layers.
#[test]
fn an_interrupted_push_resumes_sending_only_missing_blobs() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let archive = sb.path().join("big3.tar");
    let image = "localhost/big/three:1";
    big_image(&archive, image, &[40 << 20, 40 << 20, 40 << 20], 90);
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let local = cli.inspect(image);
    let layers = layer_digests(&local);
    let config = local["Id"].as_str().unwrap().to_string();

    let hold = Arc::new(AtomicBool::new(true));
    let held = Arc::new(AtomicUsize::new(0));
    let proxy = {
        let (hold, held) = (hold.clone(), held.clone());
        let later: Vec<String> = layers[1..].to_vec();
        Proxy::start(reg.port, move |req, forward| {
            let commits_later = req.method == "PUT"
                && req.path().contains("/blobs/uploads/")
                && query(&req.uri)
                    .iter()
                    .any(|(k, v)| k == "digest" && later.contains(v));
            if commits_later && hold.load(Ordering::SeqCst) {
                held.fetch_add(1, Ordering::SeqCst);
                return Reply::Hang;
            }
            Reply::Send(forward(req))
        })
    };
    let dest = format!("{}/t9/big:1", proxy.host());
    let mut child = cli
        .cmd()
        .args(["push", image, &dest])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the first layer in the registry and the others held",
        Duration::from_secs(60),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("airlock push ended early ({status})");
            }
            reg.has_blob("t9/big", &layers[0]) && held.load(Ordering::SeqCst) == 2
        },
    );
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    hold.store(false, Ordering::SeqCst);

    assert!(reg.has_blob("t9/big", &config));
    assert!(reg.has_blob("t9/big", &layers[0]));
    assert!(!reg.has_blob("t9/big", &layers[1]));
    assert!(!reg.has_blob("t9/big", &layers[2]));
    assert_eq!(http(reg.port, "GET", "/v2/t9/big/manifests/1").status, 404);

    let mark = proxy.seen().len();
    let out = cli.ok(&["push", image, &dest]);
    assert!(
        out.contains("2 blobs sent") && out.contains("2 already there"),
        "{out}"
    );
    let again = &proxy.seen()[mark..];
    let committed: BTreeSet<String> = again.iter().filter_map(Seen::committed_digest).collect();
    assert_eq!(
        committed,
        layers[1..].iter().cloned().collect::<BTreeSet<_>>(),
        "only the missing layers are sent"
    );
    assert_eq!(again.iter().filter(|s| s.method == "POST").count(), 2);
    assert_eq!(again.iter().filter(|s| s.method == "PATCH").count(), 4);
    let remote = skopeo_inspect(&format!("{}/t9/big:1", reg.host()), &[]);
    assert_eq!(remote["Digest"], local["ManifestDigest"]);
    assert_eq!(remote["Layers"], serde_json::json!(layers));
}

// ------------------------------------------------------------------ 10. multi-platform

/// An OCI layout holding one two-platform image (amd64 and arm64) under the tag `multi`.
fn two_platform_layout(dir: &Path) -> (String, String, String) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = sha256(bytes);
        fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = crate::util::layer_with_file("arch.txt", arch.as_bytes());
        let (ld, ls) = put(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux", "config": {"Cmd": ["cat", "/arch.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [ld]},
        }))
        .unwrap();
        let (cd, cs) = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
        }))
        .unwrap();
        let (md, ms) = put(&manifest);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
    }))
    .unwrap();
    let (idx, idx_size) = put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx, "size": idx_size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"}}],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (
        idx,
        manifests[0]["digest"].as_str().unwrap().to_string(),
        manifests[1]["digest"].as_str().unwrap().to_string(),
    )
}

#[test]
fn multi_platform_pull_picks_one_or_keeps_the_whole_index() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let layout = sb.path().join("multi-layout");
    let (index_digest, amd64, arm64) = two_platform_layout(&layout);
    let remote = format!("{}/multi/img:1", reg.host());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{remote}"),
    ]);

    // Default: the host's platform, stored as that manifest alone, never as a sparse index.
    let one = sb.store("host");
    one.ok(&["pull", &remote]);
    let got = one.inspect(&remote);
    assert_eq!(got["ManifestDigest"], amd64.as_str());
    assert_eq!(got["IndexDigest"], serde_json::Value::Null);
    assert_eq!(got["Platforms"], serde_json::json!(["linux/amd64"]));

    let arm = sb.store("arm");
    arm.ok(&["pull", "--platform", "linux/arm64", &remote]);
    assert_eq!(arm.inspect(&remote)["ManifestDigest"], arm64.as_str());
    let err = arm.fails(&["pull", "--platform", "linux/s390x", &remote]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );

    // --all-platforms keeps the index, complete, and it goes back up byte for byte.
    let all = sb.store("all");
    all.ok(&["pull", "--all-platforms", &remote]);
    let got = all.inspect(&remote);
    assert_eq!(got["IndexDigest"], index_digest.as_str());
    assert_eq!(got["Id"], index_digest.as_str());
    assert_eq!(got["Platforms"].as_array().unwrap().len(), 2);
    let again = format!("{}/multi/copy:1", reg.host());
    all.ok(&["push", &remote, &again]);
    assert_eq!(sha256(&skopeo_raw(&again, &[])), index_digest);
}
