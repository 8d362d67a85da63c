//! Just enough HTTP/1.1 over a unix socket for the Docker Engine API: one request per
//! connection (`Connection: close`), request bodies sent chunked as they are produced,
//! response bodies read as a stream (chunked, sized, or until close).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

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
    let chunked = ChunkedWriter {
        inner: io::BufWriter::with_capacity(1 << 20, writer),
        finished: false,
    };
    let outcome = produce(Box::new(chunked));
    // The engine may have answered (an error) before taking the whole body: read it either
    // way; its message is the better explanation.
    let response = read_response(stream);
    match (outcome, response) {
        (Ok(()), r) => r,
        (Err(e), Ok(r)) if r.status >= 400 => {
            let status = r.status;
            let message = error_message(&r.text().unwrap_or_default());
            let _ = e;
            Err(RemoteError::Engine {
                status,
                message,
                what: format!("{method} {path}"),
            })
        }
        (Err(e), _) => Err(e),
    }
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

/// Writes HTTP chunks; the last (empty) chunk is written on drop, when the producer is done.
struct ChunkedWriter<W: Write> {
    inner: W,
    finished: bool,
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

impl<W: Write> Drop for ChunkedWriter<W> {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.inner.write_all(b"0\r\n\r\n");
            let _ = self.inner.flush();
        }
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
            let mut w = ChunkedWriter {
                inner: &mut out,
                finished: false,
            };
            w.write_all(b"hello ").unwrap();
            w.write_all(b"world").unwrap();
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
    fn error_message_prefers_the_json_message() {
        assert_eq!(
            error_message(r#"{"message":"No such image: x"}"#),
            "No such image: x"
        );
        assert_eq!(error_message("plain text\n"), "plain text");
    }
}
