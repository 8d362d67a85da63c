//! Just enough HTTP/1.1 over a unix socket for the Docker Engine API: one request per
//! connection (`Connection: close`), request bodies sent chunked as they are produced,
//! response bodies read as a stream (chunked, sized, or until close).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::{RemoteError, Result};

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

pub fn io_err(context: &str, source: io::Error) -> RemoteError {
    RemoteError::Io {
        context: context.to_string(),
        source,
    }
}

pub fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket).map_err(|source| RemoteError::NoEngine {
        socket: socket.display().to_string(),
        source,
    })
}

fn write_head(stream: &mut UnixStream, method: &str, path: &str, extra: &str) -> Result<()> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: airlock/{}\r\nConnection: close\r\n{extra}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| io_err("send a request to the engine", e))
}

/// A request without a body.
pub fn request(socket: &Path, method: &str, path: &str) -> Result<Response> {
    let mut stream = connect(socket)?;
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
    socket: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    produce: impl FnOnce(Box<dyn Write + Send>) -> std::result::Result<(), RemoteError>,
) -> Result<Response> {
    let mut stream = connect(socket)?;
    write_head(
        &mut stream,
        method,
        path,
        &format!("Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"),
    )?;
    let writer = stream
        .try_clone()
        .map_err(|e| io_err("clone the engine connection", e))?;
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
    let _ = stream.shutdown(Shutdown::Write);
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

fn read_response(stream: UnixStream) -> Result<Response> {
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| io_err("read the engine's answer", e))?;
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
mod tests {
    use super::*;

    #[test]
    fn chunked_round_trip() {
        let mut out = Vec::new();
        {
            let mut w = ChunkedWriter { inner: &mut out };
            w.write_all(b"hello ").unwrap();
            w.write_all(b"world").unwrap();
            w.finish().unwrap();
        }
        assert_eq!(out, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
        let mut r = ChunkedReader {
            inner: &out[..],
            left: 0,
            done: false,
        };
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
    }

    #[test]
    fn a_chunked_body_is_not_ended_by_dropping_the_writer() {
        let mut out = Vec::new();
        {
            let mut w = ChunkedWriter { inner: &mut out };
            w.write_all(b"hello").unwrap();
        }
        assert_eq!(out, b"5\r\nhello\r\n");
    }

    /// A directory for test sockets, removed on drop (no tempfile dependency for this).
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("airlock-http-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn socket(&self) -> std::path::PathBuf {
            self.0.join("engine.sock")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An engine that takes one request, reading until `done` says the request is over (or
    /// 5 s passed, so that a test fails rather than hangs), then gives `answer`. Returns
    /// what it received.
    fn one_shot_engine(
        socket: &Path,
        done: fn(&[u8]) -> bool,
        answer: String,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !done(&got) {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(answer.as_bytes());
            got
        })
    }

    fn error_answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn a_failed_body_is_cut_off_and_the_local_error_wins() {
        let dir = TempDir::new("cut");
        let socket = dir.socket();
        // Reads until the client shuts its write half down: only then does it answer.
        let engine = one_shot_engine(
            &socket,
            |_| false,
            error_answer(
                "500 Internal Server Error",
                r#"{"message":"unexpected EOF"}"#,
            ),
        );
        let result = request_with_body(
            &socket,
            "POST",
            "/images/load",
            "application/x-tar",
            |mut w| {
                w.write_all(b"partial").map_err(|e| io_err("write", e))?;
                w.flush().map_err(|e| io_err("write", e))?;
                w.write_all(b"never sent").map_err(|e| io_err("write", e))?;
                Err(RemoteError::Protocol("the source broke".into()))
            },
        );
        let got = engine.join().unwrap();
        assert!(
            got.ends_with(b"\r\n\r\n7\r\npartial\r\n"),
            "the body must stop after the flushed chunk, without the last chunk: {:?}",
            String::from_utf8_lossy(&got)
        );
        match result {
            Err(e @ RemoteError::BodyAborted { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "unexpected answer from the Docker Engine: the source broke; \
                     the Docker Engine said: unexpected EOF (HTTP 500)"
                );
                let RemoteError::BodyAborted { source, status, .. } = e else {
                    unreachable!()
                };
                assert_eq!(status, 500);
                assert!(matches!(*source, RemoteError::Protocol(_)));
            }
            Err(other) => panic!("the local error must win: {other:?}"),
            Ok(r) => panic!("a failed body was accepted: HTTP {}", r.status),
        }
    }

    #[test]
    fn a_failed_body_without_an_engine_message_keeps_the_local_error() {
        let dir = TempDir::new("cut-quiet");
        let socket = dir.socket();
        let engine = one_shot_engine(&socket, |_| false, String::new());
        let result =
            request_with_body(&socket, "POST", "/images/load", "application/x-tar", |_| {
                Err(RemoteError::Protocol("the source broke".into()))
            });
        let got = engine.join().unwrap();
        assert!(got.ends_with(b"Transfer-Encoding: chunked\r\n\r\n"));
        assert!(
            matches!(&result, Err(RemoteError::Protocol(m)) if m == "the source broke"),
            "{:?}",
            result.map(|r| r.status)
        );
    }

    #[test]
    fn a_produced_body_ends_cleanly() {
        let dir = TempDir::new("whole");
        let socket = dir.socket();
        let engine = one_shot_engine(
            &socket,
            |got| got.ends_with(b"0\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".into(),
        );
        let r = request_with_body(
            &socket,
            "POST",
            "/images/load",
            "application/x-tar",
            |mut w| w.write_all(b"hello").map_err(|e| io_err("write", e)),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text().unwrap(), "{}");
        let got = engine.join().unwrap();
        assert!(got.ends_with(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
    }

    #[test]
    fn error_message_prefers_the_json_message() {
        assert_eq!(
            error_message(r#"{"message":"No such image: x"}"#),
            "No such image: x"
        );
        assert_eq!(error_message("plain text\n"), "plain text");
    }
}
