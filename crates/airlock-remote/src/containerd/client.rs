//! A blocking client of containerd's gRPC API over its unix socket. Each call names the
//! namespace (`containerd-namespace`) and, while an import runs, the lease that keeps its
//! content from containerd's garbage collector (`containerd-lease`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use tokio::net::UnixStream;
use tonic::codec::ProstCodec;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

use super::api;
use crate::{RemoteError, Result};

/// Bytes per write message: containerd's own client sends 1 MiB chunks.
const CHUNK: usize = 1 << 20;

/// A connection to one containerd, in one namespace.
pub struct Client {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    address: String,
    namespace: String,
}

impl Client {
    /// Connect to the socket at `address`, for `namespace`.
    pub fn connect(address: &str, namespace: &str) -> Result<Client> {
        let fail = |reason: String| RemoteError::NoContainerd {
            address: address.to_string(),
            reason,
        };
        let path = Path::new(address);
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(
                    "no such socket; is containerd running? (--address or CONTAINERD_ADDRESS names another)".into(),
                ))
            }
            Err(e) => return Err(fail(e.to_string())),
            Ok(_) => {}
        }
        if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
            return Err(fail(match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied; containerd's socket is root's: run as root (sudo)".into()
                }
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused; the socket is there but containerd is not running".into()
                }
                _ => e.to_string(),
            }));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let socket = address.to_string();
        let channel = rt
            .block_on(async move {
                // The URI is required by tonic and unused: the connector dials the socket.
                Endpoint::try_from("http://containerd.sock")
                    .map_err(|e| e.to_string())?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                UnixStream::connect(socket).await?,
                            ))
                        }
                    }))
                    .await
                    .map_err(|e| e.to_string())
            })
            .map_err(fail)?;
        Ok(Client {
            rt,
            channel,
            address: address.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// The socket path.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn request<T>(&self, message: T, lease: Option<&str>) -> Request<T> {
        let mut r = Request::new(message);
        if let Ok(ns) = self.namespace.parse() {
            r.metadata_mut().insert("containerd-namespace", ns);
        }
        if let Some(l) = lease.and_then(|l| l.parse().ok()) {
            r.metadata_mut().insert("containerd-lease", l);
        }
        r
    }

    /// The error for a refused call.
    pub fn refused(&self, doing: &str, status: &Status) -> RemoteError {
        RemoteError::Containerd {
            address: self.address.clone(),
            doing: doing.to_string(),
            message: status.message().to_string(),
        }
    }

    /// One unary call.
    pub fn unary<Req, Resp>(
        &self,
        path: &'static str,
        message: Req,
        lease: Option<&str>,
    ) -> std::result::Result<Resp, Box<Status>>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let request = self.request(message, lease);
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        self.rt
            .block_on(async move {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let codec = ProstCodec::<Req, Resp>::default();
                grpc.unary(request, PathAndQuery::from_static(path), codec)
                    .await
                    .map(|r| r.into_inner())
            })
            .map_err(Box::new)
    }

    /// The content store's record of `digest`, or `None` when it does not have it.
    pub fn info(&self, digest: &str) -> Result<Option<api::Info>> {
        let r: std::result::Result<api::InfoResponse, Box<Status>> = self.unary(
            "/containerd.services.content.v1.Content/Info",
            api::InfoRequest {
                digest: digest.to_string(),
            },
            None,
        );
        match r {
            Ok(r) => Ok(r.info),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(self.refused(&format!("look up {digest}"), &s)),
        }
    }

    /// Set `labels` on content already in the store (containerd's garbage collector follows
    /// `containerd.io/gc.ref.*` labels from an image to everything it needs).
    pub fn label(&self, digest: &str, labels: HashMap<String, String>) -> Result<()> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let r: std::result::Result<api::UpdateContentResponse, Box<Status>> = self.unary(
            "/containerd.services.content.v1.Content/Update",
            api::UpdateContentRequest {
                info: Some(api::Info {
                    digest: digest.to_string(),
                    size: 0,
                    labels,
                }),
                update_mask: Some(api::FieldMask { paths }),
            },
            None,
        );
        r.map(|_| ())
            .map_err(|s| self.refused(&format!("label {digest}"), &s))
    }

    /// Stream `data` (`size` bytes) into the content store as `digest`, which containerd
    /// checks at the commit. Reads run on this thread; the gRPC stream on the runtime, fed
    /// through a bounded channel (a few chunks in memory at most).
    pub fn write(&self, digest: &str, size: u64, data: &mut dyn Read, lease: &str) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<api::WriteContentRequest>(4);
        let request = self.request(tokio_stream::wrappers::ReceiverStream::new(rx), Some(lease));
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let path = "/containerd.services.content.v1.Content/Write";
        let call = self.rt.spawn(async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let codec =
                ProstCodec::<api::WriteContentRequest, api::WriteContentResponse>::default();
            let mut answers = grpc
                .streaming(request, PathAndQuery::from_static(path), codec)
                .await?
                .into_inner();
            // Every request is answered; read them all so containerd never blocks on a
            // full window, and keep the last (the commit's).
            let mut last = None;
            while let Some(a) = answers.message().await? {
                last = Some(a);
            }
            Ok::<_, Status>(last)
        });
        let reference = format!(
            "airlock-{}-{}",
            digest.trim_start_matches("sha256:"),
            std::process::id()
        );
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK];
        let mut read_error = None;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                match data.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            if read_error.is_some() || filled == 0 {
                break;
            }
            let msg = api::WriteContentRequest {
                action: api::WRITE,
                r#ref: reference.clone(),
                total: size as i64,
                expected: digest.to_string(),
                offset: offset as i64,
                data: buf[..filled].to_vec(),
                labels: HashMap::new(),
            };
            offset += filled as u64;
            if tx.blocking_send(msg).is_err() {
                break; // the call ended early: its status says why
            }
        }
        if let Some(e) = read_error {
            drop(tx);
            call.abort();
            return Err(RemoteError::Io {
                context: format!("read {digest} for containerd"),
                source: e,
            });
        }
        let _ = tx.blocking_send(api::WriteContentRequest {
            action: api::COMMIT,
            r#ref: reference,
            total: size as i64,
            expected: digest.to_string(),
            offset: offset as i64,
            data: Vec::new(),
            labels: HashMap::new(),
        });
        drop(tx);
        match self.rt.block_on(call) {
            Ok(Ok(_)) => Ok(()),
            // Another writer (or an earlier run) committed it first: it is there.
            Ok(Err(s)) if s.code() == Code::AlreadyExists => Ok(()),
            Ok(Err(s)) => Err(self.refused(&format!("store {digest}"), &s)),
            Err(e) => Err(RemoteError::Protocol(format!(
                "the write of {digest} stopped: {e}"
            ))),
        }
    }

    /// Stream a blob out of the content store (`Content/Read`): the messages arrive on the
    /// runtime and wait in a 4-message channel until the reader takes them, so memory stays
    /// at a few messages whatever the blob's size.
    pub fn read_stream(&self, digest: &str) -> impl Read + Send + 'static {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let request = self.request(
            api::ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            None,
        );
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        self.rt.spawn(async move {
            let run = async {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let codec =
                    ProstCodec::<api::ReadContentRequest, api::ReadContentResponse>::default();
                let path = "/containerd.services.content.v1.Content/Read";
                let mut parts = grpc
                    .server_streaming(request, PathAndQuery::from_static(path), codec)
                    .await?
                    .into_inner();
                while let Some(p) = parts.message().await? {
                    let tx = tx.clone();
                    // The channel is bounded: wait off the runtime's threads while the
                    // reader catches up.
                    if tokio::task::spawn_blocking(move || tx.send(Ok(p.data)))
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .is_none()
                    {
                        return Ok(()); // the reader went away
                    }
                }
                Ok::<_, Status>(())
            };
            if let Err(s) = run.await {
                let _ = tx.send(Err(format!("containerd: {}", s.message())));
            }
        });
        Streamed {
            parts: rx,
            current: Vec::new(),
            at: 0,
        }
    }

    /// Read a blob from the content store, whole (for manifests and configs: small).
    pub fn read_small(&self, digest: &str, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_stream(digest)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| RemoteError::Containerd {
                address: self.address.clone(),
                doing: format!("read {digest}"),
                message: e.to_string(),
            })?;
        if out.len() > limit {
            return Err(RemoteError::Containerd {
                address: self.address.clone(),
                doing: format!("read {digest}"),
                message: format!("it is more than {limit} bytes"),
            });
        }
        Ok(out)
    }

    /// Create a lease (content written under it is kept until it is deleted).
    pub fn create_lease(&self, id: &str) -> Result<()> {
        let mut labels = HashMap::new();
        // If airlock dies, the lease expires and containerd collects what it held.
        labels.insert("containerd.io/gc.expire".to_string(), expiry_in(3600));
        let r: std::result::Result<api::Empty, Box<Status>> = self.unary(
            "/containerd.services.leases.v1.Leases/Create",
            api::CreateLeaseRequest {
                id: id.to_string(),
                labels,
            },
            None,
        );
        r.map(|_| ())
            .map_err(|s| self.refused("create a lease", &s))
    }

    /// Delete a lease.
    pub fn delete_lease(&self, id: &str) -> Result<()> {
        let r: std::result::Result<api::Empty, Box<Status>> = self.unary(
            "/containerd.services.leases.v1.Leases/Delete",
            api::DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            },
            None,
        );
        r.map(|_| ())
            .map_err(|s| self.refused("delete its lease", &s))
    }
}

/// An RFC 3339 time `seconds` from now, in UTC.
fn expiry_in(seconds: u64) -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A blob arriving from `Content/Read`, a message at a time, through a small channel.
struct Streamed {
    parts: std::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for Streamed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.parts.recv() {
                Ok(Ok(next)) => {
                    self.current = next;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0), // the stream ended
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
