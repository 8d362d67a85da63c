//! Just enough HTTP/1.1 for the Docker Engine API, over whatever [`Endpoint`] reaches the
//! engine (a unix socket, TCP, TLS, ssh): one request per connection (`Connection: close`), request bodies sent chunked as they are produced,
//! response bodies read as a stream (chunked, sized, or until close). Every read and write
//! of the socket has a timeout, so that an engine that hangs fails the command instead of
//! blocking it forever.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{RemoteError, Result};

mod endpoint;
mod ssh;
pub(crate) mod tls;

pub use endpoint::Endpoint;
use endpoint::Stream;
pub use tls::TlsSettings;

/// An HTTP response whose body has not been read yet.
pub struct Response {
    pub status: u16,
    pub body: Box<dyn Read + Send>,
}

impl Response {
    /// Read the whole (small) body as text.
    pub fn text(mut self) -> Result<String> {
        let mut s = String::new();
        self.body
            .read_to_string(&mut s)
            .map_err(|e| io_err("read the engine's answer", e))?;
        Ok(s)
    }
}

/// How long the engine may go without sending or taking a byte before a request fails,
/// unless `AIRLOCK_ENGINE_TIMEOUT` says otherwise. Generous, because the engine can
/// legitimately be silent for minutes: `docker save` of a big image may take that long
/// before its first byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// After a request body failed, how long to wait at most for the engine's answer: it only
/// adds to an error that is already known, and an engine that stopped reading the body may
/// well never answer.
const EXPLANATION_WAIT: Duration = Duration::from_secs(30);

/// An I/O error on the engine connection, as a [`RemoteError`]: a timeout (see [`Conn`])
/// keeps the error that says so, anything else gets `context`.
pub fn io_err(context: &str, source: io::Error) -> RemoteError {
    if let Some(t) = source.get_ref().and_then(|e| e.downcast_ref::<TimedOut>()) {
        return t.to_error();
    }
    RemoteError::Io {
        context: context.to_string(),
        source,
    }
}

/// Connect, with `timeout` (`None`: none) on every read and write, for `method path`.
pub fn connect(
    endpoint: &Endpoint,
    timeout: Option<Duration>,
    method: &str,
    path: &str,
) -> Result<Conn> {
    // A zero timeout is refused by sockets; it means "none" here.
    let timeout = timeout.filter(|t| !t.is_zero());
    let stream = endpoint.connect(timeout)?;
    Ok(Conn {
        stream,
        what: Arc::new(What {
            socket: endpoint.to_string(),
            request: format!("{method} {}", path.split('?').next().unwrap_or(path)),
            seconds: timeout.map_or(0, |t| t.as_secs()),
        }),
    })
}

/// The engine connection. The socket's timeouts show as `WouldBlock` (or `TimedOut`)
/// errors, which say nothing of what stalled: they become a [`TimedOut`], which names the
/// socket and the request, carried in the `io::Error` through whatever reads or writes the
/// connection (the archive reader and writer of airlock-core included).
pub struct Conn {
    stream: Stream,
    what: Arc<What>,
}

struct What {
    socket: String,
    request: String,
    seconds: u64,
}

impl Conn {
    fn try_clone(&self) -> Result<Conn> {
        Ok(Conn {
            stream: self
                .stream
                .try_clone()
                .map_err(|e| io_err("clone the engine connection", e))?,
            what: self.what.clone(),
        })
    }

    fn timed_out(&self, e: io::Error, doing: &str) -> io::Error {
        if !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return e;
        }
        io::Error::new(
            io::ErrorKind::TimedOut,
            TimedOut {
                socket: self.what.socket.clone(),
                doing: format!("{doing} {}", self.what.request),
                seconds: self.what.seconds,
            },
        )
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream
            .read(buf)
            .map_err(|e| self.timed_out(e, "reading the answer to"))
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream
            .write(buf)
            .map_err(|e| self.timed_out(e, "sending"))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream
            .flush()
            .map_err(|e| self.timed_out(e, "sending"))
    }
}

/// A timeout on the engine connection, inside an `io::Error`; [`io_err`] turns it back
/// into [`RemoteError::EngineTimeout`].
#[derive(Debug)]
struct TimedOut {
    socket: String,
    doing: String,
    seconds: u64,
}

impl TimedOut {
    fn to_error(&self) -> RemoteError {
        RemoteError::EngineTimeout {
            socket: self.socket.clone(),
            doing: self.doing.clone(),
            seconds: self.seconds,
        }
    }
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_error().fmt(f)
    }
}

impl std::error::Error for TimedOut {}

fn write_head(stream: &mut Conn, method: &str, path: &str, extra: &str) -> Result<()> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: airlock/{}\r\nConnection: close\r\n{extra}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| io_err("send a request to the engine", e))
}

/// A request without a body; `timeout` as for [`connect`].
pub fn request(
    endpoint: &Endpoint,
    timeout: Option<Duration>,
    method: &str,
    path: &str,
) -> Result<Response> {
    let mut stream = connect(endpoint, timeout, method, path)?;
    write_head(&mut stream, method, path, "")?;
    read_response(stream)
}

/// A request whose body `produce` writes; it is sent chunked while being produced.
///
/// The body ends cleanly (with the last, empty chunk) only when `produce` succeeded and all
/// of it went out. Otherwise the write half of the connection is shut down without that
/// last chunk, so the engine sees a cut-off body and cannot take a truncated archive for a
/// whole one; the error is then the local one, with the engine's answer, if it gave one,
/// attached ([`RemoteError::BodyAborted`]).
pub fn request_with_body(
    endpoint: &Endpoint,
    timeout: Option<Duration>,
    method: &str,
    path: &str,
    content_type: &str,
    produce: impl FnOnce(Box<dyn Write + Send>) -> std::result::Result<(), RemoteError>,
) -> Result<Response> {
    let mut stream = connect(endpoint, timeout, method, path)?;
    write_head(
        &mut stream,
        method,
        path,
        &format!("Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"),
    )?;
    let writer = stream.try_clone()?;
    // The producer gets a handle, not the writer: dropping it (which the producer does
    // whether it succeeded or not) must not end the body; only the outcome decides.
    let shared = Arc::new(Mutex::new(Some(ChunkedWriter {
        inner: io::BufWriter::with_capacity(1 << 20, writer),
    })));
    let outcome = produce(Box::new(BodyHandle(shared.clone())));
    // Taken out, so that a handle the producer kept somewhere can no longer write.
    let chunked = shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let sent = match (outcome, chunked) {
        (Ok(()), Some(mut chunked)) => match chunked.finish() {
            Ok(()) => return read_response(stream),
            Err(e) => {
                // Whatever the last chunk's fate, what is still buffered must not follow.
                drop(chunked.inner.into_parts());
                io_err("send the request body to the engine", e)
            }
        },
        // Only this function takes the writer out; kept as an error rather than a panic.
        (Ok(()), None) => io_err(
            "send the request body to the engine",
            io::Error::other("its writer is gone"),
        ),
        (Err(e), chunked) => {
            // Dropped unsent: flushing could block on an engine that stopped reading, and
            // the body is being cut off anyway.
            drop(chunked.map(|c| c.inner.into_parts()));
            e
        }
    };
    // The peer sees the end of the stream before the last chunk: a broken body, not a
    // complete one. (It may be gone already; then there is nothing to tell it.)
    let _ = stream.stream.shutdown_write();
    let wait = timeout
        .filter(|t| !t.is_zero())
        .map_or(EXPLANATION_WAIT, |t| t.min(EXPLANATION_WAIT));
    let _ = stream.stream.set_read_timeout(Some(wait));
    // The engine may have answered (an error) before taking the whole body, or answers now
    // that it broke: its message says more, but the local error is what went wrong.
    Err(match read_response(stream) {
        Ok(r) if r.status >= 400 => {
            let status = r.status;
            let message = error_message(&r.text().unwrap_or_default());
            if message.is_empty() {
                sent
            } else {
                RemoteError::BodyAborted {
                    source: Box::new(sent),
                    status,
                    message,
                }
            }
        }
        _ => sent,
    })
}

/// Percent-encode a query or path value (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `message` of an engine error body, or the body itself.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string())
}

/// Writes HTTP chunks. The last (empty) chunk is written by [`ChunkedWriter::finish`] only,
/// never on drop: a body whose producer failed must not look complete.
struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    /// End the body: the last chunk, then everything flushed.
    fn finish(&mut self) -> io::Result<()> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.inner, "{:x}\r\n", buf.len())?;
        self.inner.write_all(buf)?;
        self.inner.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a body producer writes to: the [`ChunkedWriter`] stays with
/// [`request_with_body`], which ends or cuts off the body once the producer is done.
struct BodyHandle<W: Write>(Arc<Mutex<Option<ChunkedWriter<W>>>>);

impl<W: Write> BodyHandle<W> {
    fn with<T>(&self, f: impl FnOnce(&mut ChunkedWriter<W>) -> io::Result<T>) -> io::Result<T> {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.as_mut() {
            Some(w) => f(w),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the request body was already ended",
            )),
        }
    }
}

impl<W: Write> Write for BodyHandle<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.with(|w| w.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.with(|w| w.flush())
    }
}

fn read_response(stream: Conn) -> Result<Response> {
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => return Err(silent_engine(reader.get_ref())),
        // A peer that hangs up on the request (a TLS server given plain HTTP does).
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(silent_engine(reader.get_ref()))
        }
        Err(e) => {
            return Err(refused_tls(reader.get_ref(), &e)
                .unwrap_or_else(|| io_err("read the engine's answer", e)))
        }
        Ok(_) => {}
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RemoteError::Protocol(format!("status line '{}'", line.trim())))?;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| io_err("read the engine's answer", e))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse().ok();
            }
        }
    }
    let body: Box<dyn Read + Send> = if chunked {
        Box::new(ChunkedReader {
            inner: reader,
            left: 0,
            done: false,
        })
    } else if let Some(n) = length {
        Box::new(reader.take(n))
    } else {
        Box::new(reader)
    };
    Ok(Response { status, body })
}

/// The error for a connection that ended before the engine said anything: what the
/// transport said (ssh's complaint), else a guess at the usual cause.
fn silent_engine(conn: &Conn) -> RemoteError {
    let socket = conn.what.socket.clone();
    let why = match conn.stream.diagnostics() {
        Some(said) => said,
        None if socket.starts_with("tcp://") && !matches!(conn.stream, Stream::Tls(_)) => {
            "it closed the connection without answering (if it speaks TLS, set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or use a context with TLS)".into()
        }
        None => "it closed the connection without answering".into(),
    };
    RemoteError::NoEngine {
        socket,
        source: io::Error::new(io::ErrorKind::UnexpectedEof, why),
    }
}

/// A TLS alert in place of the first answer: with TLS 1.3 the client's handshake ends
/// before the engine has judged its certificate, so a refused (or missing) client
/// certificate shows up here, and is reported as the TLS problem it is.
fn refused_tls(conn: &Conn, e: &io::Error) -> Option<RemoteError> {
    let origin = conn.stream.tls_origin()?;
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(RemoteError::EngineTls {
        host: conn.what.socket.clone(),
        reason: tls.to_string(),
        origin: origin.to_string(),
    })
}

/// Reads an HTTP chunked body.
struct ChunkedReader<R: BufRead> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size '{}'", line.trim()),
                )
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the engine closed the connection mid-chunk",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;

/// True for registries on this machine, which may speak plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    // A real loopback address, not a name that merely starts like one (`127.evil.com`).
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
