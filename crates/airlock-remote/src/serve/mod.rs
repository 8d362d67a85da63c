//! `airlock serve`: the store as an OCI distribution registry (distribution-spec v1.1), for
//! the machines on the far side of the gap. Manifests and blobs are the store's own files,
//! served unchanged; nothing is copied into a second registry directory first.
//!
//! This is the one async part of airlock: hyper's HTTP/1.1 server on tokio, over TLS
//! ([`tls`], rustls) when asked, behind HTTP basic auth ([`auth`], an htpasswd file) when
//! asked. Store reads that are not plain file reads (the records behind the [`view::View`])
//! run on tokio's blocking pool, and so do bcrypt checks.

pub mod auth;
mod read;
mod reply;
mod route;
pub mod tls;
mod view;
mod write;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_core::store::Store;
use airlock_core::Digest;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::{RemoteError, Result};
use reply::{error, Code, ReplyBody};
use route::{Refused, Route};
use view::{Stamp, View};

/// True for a repository name as the distribution spec defines it (what `--prefix` must be).
pub fn is_repository_name(s: &str) -> bool {
    route::is_name(s)
}

/// How `airlock serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// A path every repository name is served under (`--prefix mirror`).
    pub prefix: Option<String>,
    /// Write one line per request to standard error.
    pub access_log: bool,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and to send anything at all
    /// on an idle connection.
    pub header_timeout: Duration,
    /// Accept pushes.
    pub read_write: bool,
    /// How long an upload may go without sending a byte before it is dropped.
    pub body_timeout: Duration,
    /// Serve HTTPS with this certificate (plain HTTP without).
    pub tls: Option<tls::Tls>,
    /// Answer only requests that carry the credentials of a user of this file. Refused
    /// without `tls` unless `listen` is a loopback address: the passwords would cross the
    /// network in the clear.
    pub htpasswd: Option<auth::Htpasswd>,
    /// Where pushes report their uploads: bytes as they arrive, in flight per upload, and
    /// a finished event per blob stored, named by its digest.
    pub progress: airlock_core::progress::Progress,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            prefix: None,
            access_log: false,
            max_connections: 256,
            header_timeout: Duration::from_secs(30),
            read_write: false,
            body_timeout: Duration::from_secs(60),
            tls: None,
            htpasswd: None,
            progress: airlock_core::progress::Progress::new(),
        }
    }
}

impl ServeOptions {
    /// Refuse what must not be served: basic auth without TLS beyond loopback, where the
    /// passwords would cross the network in the clear.
    pub fn check(&self) -> Result<()> {
        if self.htpasswd.is_some() && self.tls.is_none() && !self.listen.ip().is_loopback() {
            return Err(RemoteError::ServeRefused(format!(
                "--htpasswd without TLS would take passwords in the clear on {}: give --tls-cert and --tls-key (or --tls-generate DIR), or listen on a loopback address",
                self.listen
            )));
        }
        Ok(())
    }
}

/// The shared state of a running server.
pub(crate) struct Server {
    store: Store,
    opts: ServeOptions,
    view: Mutex<Option<(Stamp, Arc<View>)>>,
    writable: Option<write::Writable>,
    gate: Option<Arc<auth::Gate>>,
}

/// A request's query parameters, decoded.
pub(crate) struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let mut m = BTreeMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(decode(k), decode(v));
        }
        Query(m)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Percent-decoding of a query value (`+` is a space in a form, but a media type's `+`
/// arrives raw from every registry client, so it stays a `+`).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
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

impl Server {
    /// The current view of the store, rebuilt if a commit replaced `index.json` since.
    async fn view(&self) -> Arc<View> {
        let stamp = Stamp::of(self.store.root()).ok();
        if let Some((s, v)) = self.view.lock().ok().and_then(|g| g.clone()) {
            if Some(s) == stamp {
                return v;
            }
        }
        let store = self.store.clone();
        let built = tokio::task::spawn_blocking(move || View::load(&store))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let built = Arc::new(built);
        if let (Some(s), Ok(mut g)) = (stamp, self.view.lock()) {
            *g = Some((s, built.clone()));
        }
        built
    }

    /// A blob pushed but not yet part of a committed image (none on a read-only server).
    async fn staged_blob(&self, digest: &Digest) -> Option<tokio::fs::File> {
        let path = self.writable.as_ref()?.staged(digest)?;
        tokio::fs::File::open(path).await.ok()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<ReplyBody> {
        let route = match route::parse(req.uri().path()) {
            Ok(r) => r,
            Err(Refused::NotFound) => {
                return error(Code::NotFound, "no such endpoint of the distribution API")
            }
            Err(Refused::Name(n)) => {
                return error(
                    Code::NameInvalid,
                    format!("{n:?} is not a repository name (lower-case letters, digits and . _ - separators, in / separated parts)"),
                )
            }
            Err(Refused::Digest(d)) => {
                return error(
                    Code::DigestInvalid,
                    format!("{d:?} is not a sha256 digest (sha256: and 64 lower-case hex digits)"),
                )
            }
            Err(Refused::Tag(t)) => {
                return error(Code::TagInvalid, format!("{t:?} is not a tag"))
            }
        };
        let query = Query::parse(req.uri().query());
        let method = req.method().clone();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let reading = method == Method::GET || method == Method::HEAD;
        match (&route, reading) {
            (Route::Base, true) => reply::json(
                reply::builder(hyper::StatusCode::OK),
                "application/json",
                b"{}".to_vec(),
            ),
            (Route::Catalog, true) => self.catalog(&query).await,
            (Route::Tags { name }, true) => self.tags(name, &query).await,
            (Route::Manifest { name, reference }, true) => {
                self.manifest(&method, name, reference, &query).await
            }
            (Route::Blob { digest, .. }, true) => {
                self.blob(&method, digest, header("Range").as_deref()).await
            }
            (Route::Referrers { digest, .. }, true) => self.referrers(digest, &query).await,
            (Route::Upload { name, id }, _) if method != Method::HEAD => {
                let content_range = header("Content-Range");
                self.upload(
                    &method,
                    name,
                    id.as_deref(),
                    &query,
                    req.into_body(),
                    content_range.as_deref(),
                )
                .await
            }
            (Route::Manifest { name, reference }, false) if method == Method::PUT => {
                let content_type = header("Content-Type");
                self.put_manifest(name, reference, content_type.as_deref(), req.into_body())
                    .await
            }
            _ if self.writable.is_none() => write::read_only(),
            _ => error(
                Code::Unsupported,
                format!("{method} is not served on {}", req.uri().path()),
            ),
        }
    }
}

/// One accepted connection: the TLS handshake first when TLS is on, then HTTP.
async fn one_connection(
    server: Arc<Server>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    peer: SocketAddr,
    stream: tokio::net::TcpStream,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let Some(acceptor) = acceptor else {
        return connection(server, peer, stream, watcher).await;
    };
    // The handshake gets the time the request's headers get: a client that opens a
    // connection and sends nothing holds a connection slot no longer.
    let timeout = server.opts.header_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE => {
            plain_http_on_tls(peer, stream, &server.opts, watcher).await
        }
        Ok(Ok(1)) => {
            if let Ok(Ok(stream)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                connection(server, peer, stream, watcher).await;
            }
        }
        _ => {} // closed, or silent past the timeout
    }
}

/// The first byte of a TLS connection (a handshake record): anything else on the TLS port is
/// a client speaking plain HTTP, which is told so rather than sent bytes it cannot read.
const TLS_HANDSHAKE: u8 = 0x16;

/// Answer a plain HTTP request on the TLS port with a sentence saying what to do, and close.
async fn plain_http_on_tls(
    peer: SocketAddr,
    stream: tokio::net::TcpStream,
    opts: &ServeOptions,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let access_log = opts.access_log;
    let service = service_fn(move |req: Request<Incoming>| async move {
        let body = serde_json::json!({"errors": [{
            "code": "UNSUPPORTED",
            "message": "this registry speaks HTTPS only: use https:// (and trust its certificate)",
            "detail": null,
        }]});
        if access_log {
            eprintln!(
                "{peer} {} {} 400 plain HTTP on the TLS port",
                req.method(),
                req.uri().path()
            );
        }
        Ok::<_, Infallible>(reply::json(
            reply::builder(hyper::StatusCode::BAD_REQUEST).header("Connection", "close"),
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        ))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = watcher.watch(conn).await;
}

/// Serve HTTP/1.1 on one connection (plain or TLS) until it closes or the server stops.
async fn connection<S>(
    server: Arc<Server>,
    peer: SocketAddr,
    stream: S,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = server.opts.header_timeout;
    let service = service_fn(move |req: Request<Incoming>| {
        let server = server.clone();
        async move {
            let start = Instant::now();
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let resp = match &server.gate {
                Some(gate) => {
                    let authorization = req
                        .headers()
                        .get(hyper::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    if gate.allows(authorization).await {
                        server.handle(req).await
                    } else {
                        // Every endpoint, `/v2/` first: `docker login` probes it for the
                        // challenge.
                        error(Code::Unauthorized, "authentication required")
                    }
                }
                None => server.handle(req).await,
            };
            if !server.opts.access_log {
                return Ok::<_, Infallible>(resp);
            }
            let line = format!("{peer} {method} {path} {}", resp.status().as_u16());
            let (parts, body) = resp.into_parts();
            let body = reply::LoggedBody::new(body, line, start);
            Ok(Response::from_parts(
                parts,
                http_body_util::BodyExt::boxed(body),
            ))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(stream), service);
    let _ = watcher.watch(conn).await;
}

/// Serve `store` until SIGTERM or SIGINT. `ready` is told the address once the socket
/// listens (port 0 picks a free one).
pub fn serve(store: Store, opts: ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RemoteError::Io {
            context: "start the server's runtime".into(),
            source: e,
        })?;
    rt.block_on(run(store, opts, ready))
}

async fn run(store: Store, opts: ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    opts.check()?;
    let gate = match opts.htpasswd.clone() {
        Some(users) => Some(Arc::new(auth::Gate::new(users)?)),
        None => None,
    };
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| RemoteError::Io {
            context: format!("listen on {}", opts.listen),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| RemoteError::Io {
        context: "read the listening address".into(),
        source: e,
    })?;
    let signal_err = |e| RemoteError::Io {
        context: "watch for SIGTERM".into(),
        source: e,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(signal_err)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(signal_err)?;
    let writable = if opts.read_write {
        Some(write::Writable::new(store.staging()?, opts.body_timeout))
    } else {
        None
    };
    let server = Arc::new(Server {
        store,
        opts: opts.clone(),
        view: Mutex::new(None),
        writable,
        gate,
    });
    let acceptor = opts.tls.as_ref().map(tls::Tls::acceptor);
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    ready(addr);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                // Over the limit: the connection is closed at once, holding nothing.
                let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
                let _ = stream.set_nodelay(true);
                let (server, acceptor, watcher) = (server.clone(), acceptor.clone(), graceful.watcher());
                tokio::spawn(async move {
                    one_connection(server, acceptor, peer, stream, watcher).await;
                    drop(permit);
                });
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(listener);
    // Requests in flight finish; idle connections close. A client stuck mid-download for
    // longer than this is cut off.
    tokio::select! {
        _ = graceful.shutdown() => {},
        _ = tokio::time::sleep(Duration::from_secs(10)) => {},
    }
    Ok(())
}
