//! Responses: the spec's JSON errors, small JSON bodies, and blobs streamed from disk.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};

/// The body every response has.
pub type ReplyBody = BoxBody<Bytes, io::Error>;

/// How much of a blob is read from disk per frame: the memory one download holds.
const FRAME: usize = 256 << 10;

/// An error code of the distribution spec, with the status it is sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Manifest unknown.
    ManifestUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// A blob the manifest names is unknown.
    ManifestBlobUnknown,
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Provided digest did not match uploaded content, or is malformed.
    DigestInvalid,
    /// Tag invalid (the spec folds it into MANIFEST_INVALID's family; distribution says TAG_INVALID).
    TagInvalid,
    /// Authentication required.
    Unauthorized,
    /// The operation is unsupported (a push to a read-only server).
    Unsupported,
    /// Too many requests (the connection limit).
    TooManyRequests,
    /// No such endpoint.
    NotFound,
}

impl Code {
    fn parts(self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Code::NameInvalid => (S::BAD_REQUEST, "NAME_INVALID"),
            Code::NameUnknown => (S::NOT_FOUND, "NAME_UNKNOWN"),
            Code::ManifestUnknown => (S::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Code::ManifestInvalid => (S::BAD_REQUEST, "MANIFEST_INVALID"),
            Code::ManifestBlobUnknown => (S::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            Code::BlobUnknown => (S::NOT_FOUND, "BLOB_UNKNOWN"),
            Code::BlobUploadUnknown => (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Code::BlobUploadInvalid => (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Code::DigestInvalid => (S::BAD_REQUEST, "DIGEST_INVALID"),
            Code::TagInvalid => (S::BAD_REQUEST, "TAG_INVALID"),
            Code::Unauthorized => (S::UNAUTHORIZED, "UNAUTHORIZED"),
            Code::Unsupported => (S::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Code::TooManyRequests => (S::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            Code::NotFound => (S::NOT_FOUND, "NOT_FOUND"),
        }
    }
}

/// A response under construction.
pub type Builder = hyper::http::response::Builder;

/// The headers every answer carries.
pub fn builder(status: StatusCode) -> Builder {
    Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", "registry/2.0")
}

/// An error in the spec's form: `{"errors":[{"code":..., "message":...}]}`.
pub fn error(code: Code, message: impl Into<String>) -> Response<ReplyBody> {
    let (status, name) = code.parts();
    let body =
        serde_json::json!({"errors": [{"code": name, "message": message.into(), "detail": null}]});
    let mut b = builder(status).header("Content-Type", "application/json");
    if code == Code::Unauthorized {
        b = b.header("WWW-Authenticate", "Basic realm=\"airlock\"");
    }
    finish(b, full(serde_json::to_vec(&body).unwrap_or_default()))
}

/// A JSON document.
pub fn json(b: Builder, content_type: &str, bytes: Vec<u8>) -> Response<ReplyBody> {
    let len = bytes.len();
    finish(
        b.header("Content-Type", content_type)
            .header("Content-Length", len),
        full(bytes),
    )
}

/// A body of bytes in memory.
pub fn full(bytes: Vec<u8>) -> ReplyBody {
    Full::new(Bytes::from(bytes))
        .map_err(|e| match e {})
        .boxed()
}

/// No body.
pub fn empty() -> ReplyBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// Build, falling back to a bare 500 if a header value was unusable (none is: they are
/// digests, numbers and fixed strings).
pub fn finish(b: Builder, body: ReplyBody) -> Response<ReplyBody> {
    b.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// `len` bytes of an open file, read a frame at a time as the client takes them: memory
/// stays at one frame per download, whatever the blob's size.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl FileBody {
    /// Stream `len` bytes of `file` from where it is positioned.
    pub fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: vec![0; FRAME.min(len as usize)],
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = (this.remaining as usize).min(this.buf.len());
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    // The file is shorter than the store says: cut the response off rather
                    // than let the client take a short blob for a whole one.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its size",
                    ))));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A byte range of a blob of `size` bytes asked for by a `Range` header, inclusive.
/// `None`: serve the whole blob; `Err`: the range cannot be served (416).
pub fn range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None); // another unit: ignored, as RFC 9110 allows
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole blob instead
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A response body that writes the access-log line when it has been sent (or was cut off),
/// so the line gives the whole transfer's time and bytes, not the time to the headers.
pub struct LoggedBody {
    inner: ReplyBody,
    line: String,
    start: std::time::Instant,
    sent: u64,
    done: bool,
}

impl LoggedBody {
    /// Log `line` (peer, method, path, status) once `inner` is sent.
    pub fn new(inner: ReplyBody, line: String, start: std::time::Instant) -> LoggedBody {
        LoggedBody {
            inner,
            line,
            start,
            sent: 0,
            done: false,
        }
    }

    fn log(&mut self, how: &str) {
        if !self.done {
            self.done = true;
            eprintln!(
                "{} {} bytes {}ms{how}",
                self.line,
                self.sent,
                self.start.elapsed().as_millis()
            );
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.log(" (failed)"),
            Poll::Ready(None) => this.log(""),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // An empty body may never be polled; a cut-off one is dropped part-way.
        if self.inner.is_end_stream() {
            self.log("");
        } else {
            self.log(" (cut off)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range(None, 10), Ok(None));
        assert_eq!(range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(range(Some("bytes=x-2"), 10), Err(()));
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(range(Some("items=0-1"), 10), Ok(None));
    }
}
