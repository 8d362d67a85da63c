//! The real registry on loopback and a small HTTP/1.1 proxy in front of it.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{require_tool, scratch, sh};

use super::*;

// ------------------------------------------------------------------ HTTP/1.1, minimal

/// Header names and values, in order.
pub(super) type Headers = Vec<(String, String)>;

/// A request as the proxy received it.
#[derive(Clone, Debug, Default)]
pub(super) struct Request {
    pub(super) method: String,
    pub(super) uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A response, from the registry or made up by the proxy.
#[derive(Clone, Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    pub(super) fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    pub(super) fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Response {
    pub(super) fn new(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
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
    pub(super) fn remove_header(&mut self, name: &str) {
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
pub(super) fn http(port: u16, method: &str, path: &str) -> Response {
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
pub(super) struct Logged {
    pub(super) method: String,
    uri: String,
    pub(super) status: u16,
}

impl Logged {
    pub(super) fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    /// A request that carries or commits blob data.
    pub(super) fn sends_blob(&self) -> bool {
        self.method == "PATCH"
            || self.method == "POST"
            || (self.method == "PUT" && self.path().contains("/blobs/"))
    }
}

/// `docker-registry serve` on 127.0.0.1, a free port, its own storage; killed on drop.
pub(super) struct RegistryServer {
    child: Child,
    pub(super) port: u16,
    dir: tempfile::TempDir,
    markers: AtomicUsize,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RegistryServer {
    /// A registry without auth.
    pub(super) fn start() -> RegistryServer {
        Self::launch(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, basic auth).
    pub(super) fn with_htpasswd(user: &str, password: &str) -> RegistryServer {
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

    pub(super) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request the registry logged so far, in order. A marker request is sent and
    /// waited for first, so nothing airlock already got an answer to is missing.
    pub(super) fn access_log(&self) -> Vec<Logged> {
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
    pub(super) fn has_blob(&self, repo: &str, digest: &str) -> bool {
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
pub(super) enum Reply {
    /// Answer with this.
    Send(Response),
    /// Answer nothing, forward nothing: hold the connection until the client goes away.
    Hang,
}

/// What the proxy saw of one request (bodies are not kept, only their length).
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) method: String,
    uri: String,
    headers: Vec<(String, String)>,
    pub(super) body_len: usize,
}

impl Seen {
    pub(super) fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    /// The digest a blob upload is committed with (`PUT ...?digest=`).
    pub(super) fn committed_digest(&self) -> Option<String> {
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
pub(super) struct Proxy {
    pub(super) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Forward everything unchanged.
    pub(super) fn transparent(upstream: u16) -> Proxy {
        Self::start(upstream, |req, forward| Reply::Send(forward(req)))
    }

    pub(super) fn start(
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

    pub(super) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
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
