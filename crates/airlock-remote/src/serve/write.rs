//! `serve --read-write`: blob uploads (monolithic, chunked, cross-repository mounts) and
//! manifest pushes, through the store's own staging and commit.
//!
//! An upload is hashed as it arrives and becomes a blob only when its bytes match the digest
//! the client names at the end; until then nothing of it is visible. A manifest is checked
//! (its digest, that every blob it names is here with the size it says) and committed with
//! its tag in one store commit, so a kill -9 at any point leaves the store as it was or with
//! the whole image. Blobs wait in the server's staging area until a manifest names them (a
//! registry holds unreferenced blobs the same way until its garbage collection).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_core::spec::{self, Descriptor, Document};
use airlock_core::store::{NewImage, PartialBlob, Staging};
use airlock_core::{Digest, Reference};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};

use super::reply::{self, builder, error, Code, ReplyBody};
use super::route::Target;
use super::{Query, Server};

/// Upload sessions open at once; more get 429 until some finish.
const MAX_SESSIONS: usize = 1024;
/// An upload session nobody touched for this long is dropped when room is needed (a
/// client that starts uploads and walks away cannot hold every slot).
const ABANDONED: Duration = Duration::from_secs(600);

/// One upload in progress: the blob (locked while a request appends to it) and when a
/// request last came for it.
type Session = (
    Arc<tokio::sync::Mutex<Option<PartialBlob>>>,
    std::time::Instant,
);
/// Manifests larger than this are refused (distribution's limit is 4 MiB too).
const MAX_MANIFEST: usize = 4 << 20;

/// What `--read-write` adds to a server.
pub(super) struct Writable {
    staging: Staging,
    sessions: Mutex<HashMap<String, Session>>,
    /// Manifests pushed by digest that no tag or index names yet: served by digest, kept
    /// for the index or tag that will name them.
    pending: Mutex<HashMap<Digest, String>>,
    body_timeout: Duration,
}

impl Writable {
    pub(super) fn new(staging: Staging, body_timeout: Duration) -> Writable {
        Writable {
            staging,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            body_timeout,
        }
    }

    /// The path of a verified blob waiting in staging.
    pub(super) fn staged(&self, digest: &Digest) -> Option<std::path::PathBuf> {
        self.staging.path_of(digest)
    }

    /// The media type of a manifest pushed by digest and not yet committed.
    pub(super) fn pending_manifest(&self, digest: &Digest) -> Option<String> {
        self.pending.lock().ok()?.get(digest).cloned()
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    hex::encode(b)
}

/// Why reading a request body stopped.
enum BodyError {
    Slow,
    Broken(String),
    Store(String),
}

impl BodyError {
    fn reply(self) -> Response<ReplyBody> {
        match self {
            BodyError::Slow => error(
                Code::BlobUploadInvalid,
                "the client sent nothing for too long; the upload was dropped",
            ),
            BodyError::Broken(e) => error(
                Code::BlobUploadInvalid,
                format!("the request body ended early or broke: {e}; the upload was dropped"),
            ),
            BodyError::Store(e) => error(
                Code::BlobUploadInvalid,
                format!("cannot store the upload: {e}"),
            ),
        }
    }
}

impl Server {
    fn writable(&self) -> Option<&Writable> {
        self.writable.as_ref()
    }

    /// The store repository a push to `name` goes to: the name as a reference
    /// (`team/app` is Docker Hub's `docker.io/team/app`, `registry.k8s.io/pause` itself), so
    /// what was pushed pulls back by the same name, and by its mirror name.
    fn push_repository(&self, name: &str) -> Option<String> {
        let name = match self.opts.prefix.as_deref() {
            Some(p) => name.strip_prefix(p)?.strip_prefix('/')?,
            None => name,
        };
        Reference::parse(name).ok().map(|r| r.repository())
    }

    /// Stream a request body into `blob`, a frame at a time, each frame within the body
    /// timeout.
    ///
    /// The bytes count in the progress record as one upload in flight, `what`.
    async fn receive(
        &self,
        body: Incoming,
        blob: &mut PartialBlob,
        timeout: Duration,
        what: String,
    ) -> Result<(), BodyError> {
        let size = hyper::body::Body::size_hint(&body).exact();
        let counted = self.opts.progress.start(what, size);
        let mut body = body;
        loop {
            let frame = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => return Err(BodyError::Slow),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                tokio::task::block_in_place(|| blob.append(&data))
                    .map_err(|e| BodyError::Store(e.to_string()))?;
                counted.add(data.len() as u64);
            }
        }
    }

    pub(super) async fn upload(
        &self,
        method: &Method,
        name: &str,
        id: Option<&str>,
        query: &Query,
        body: Incoming,
        content_range: Option<&str>,
    ) -> Response<ReplyBody> {
        let Some(w) = self.writable() else {
            return read_only();
        };
        if self.push_repository(name).is_none() {
            return error(
                Code::NameInvalid,
                format!("{name} is not a repository this server takes pushes for"),
            );
        }
        let location = |id: &str| format!("/v2/{name}/blobs/uploads/{id}");
        match (method, id) {
            (&Method::POST, None) => {
                if let (Some(mount), true) = (query.get("mount"), query.get("from").is_some()) {
                    if let Ok(d) = mount.parse::<Digest>() {
                        if self.store.has_blob(&d) || w.staged(&d).is_some() {
                            return created(name, &d);
                        }
                    }
                }
                let id = random_id();
                let blob = match w.staging.begin_blob() {
                    Ok(b) => b,
                    Err(e) => {
                        return error(
                            Code::BlobUploadInvalid,
                            format!("cannot start an upload: {e}"),
                        )
                    }
                };
                if let Some(digest) = query.get("digest") {
                    // Monolithic: the whole blob in this request.
                    let Ok(digest) = digest.parse::<Digest>() else {
                        return error(Code::DigestInvalid, format!("{digest:?} is not a digest"));
                    };
                    let mut blob = blob;
                    let what = digest.to_string();
                    if let Err(e) = self.receive(body, &mut blob, w.body_timeout, what).await {
                        return e.reply();
                    }
                    return self.complete(w, name, blob, &digest);
                }
                {
                    let Ok(mut sessions) = w.sessions.lock() else {
                        return busy();
                    };
                    if sessions.len() >= MAX_SESSIONS {
                        // Drop the abandoned ones (not one a request is appending to).
                        sessions.retain(|_, (blob, touched)| {
                            touched.elapsed() < ABANDONED || blob.try_lock().is_err()
                        });
                    }
                    if sessions.len() >= MAX_SESSIONS {
                        return busy();
                    }
                    sessions.insert(
                        id.clone(),
                        (
                            Arc::new(tokio::sync::Mutex::new(Some(blob))),
                            std::time::Instant::now(),
                        ),
                    );
                }
                reply::finish(
                    builder(StatusCode::ACCEPTED)
                        .header("Location", location(&id))
                        .header("Docker-Upload-UUID", &id)
                        .header("Range", "0-0")
                        .header("Content-Length", 0),
                    reply::empty(),
                )
            }
            (_, Some(id)) => {
                let session = w.sessions.lock().ok().and_then(|mut s| {
                    s.get_mut(id).map(|(blob, touched)| {
                        *touched = std::time::Instant::now();
                        blob.clone()
                    })
                });
                let Some(session) = session else {
                    return error(
                        Code::BlobUploadUnknown,
                        format!("no upload {id} in progress"),
                    );
                };
                let mut guard = session.lock().await;
                let Some(blob) = guard.as_mut() else {
                    return error(Code::BlobUploadUnknown, format!("upload {id} has ended"));
                };
                let progress = |len: u64| {
                    reply::finish(
                        builder(if *method == Method::GET {
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::ACCEPTED
                        })
                        .header("Location", location(id))
                        .header("Docker-Upload-UUID", id)
                        .header("Range", format!("0-{}", len.saturating_sub(1)))
                        .header("Content-Length", 0),
                        reply::empty(),
                    )
                };
                match *method {
                    Method::GET => progress(blob.len()),
                    Method::DELETE => {
                        guard.take();
                        self.forget(w, id);
                        reply::finish(builder(StatusCode::NO_CONTENT), reply::empty())
                    }
                    Method::PATCH | Method::PUT => {
                        if let Some(start) = content_range.and_then(range_start) {
                            if start != blob.len() {
                                return reply::finish(
                                    builder(StatusCode::RANGE_NOT_SATISFIABLE)
                                        .header("Location", location(id))
                                        .header(
                                            "Range",
                                            format!("0-{}", blob.len().saturating_sub(1)),
                                        ),
                                    reply::empty(),
                                );
                            }
                        }
                        let what = format!("upload {}", &id[..id.len().min(12)]);
                        if let Err(e) = self.receive(body, blob, w.body_timeout, what).await {
                            guard.take();
                            self.forget(w, id);
                            return e.reply();
                        }
                        if *method == Method::PATCH {
                            return progress(blob.len());
                        }
                        let Some(digest) =
                            query.get("digest").and_then(|d| d.parse::<Digest>().ok())
                        else {
                            return error(
                                Code::DigestInvalid,
                                "the upload's last PUT must give ?digest=sha256:...",
                            );
                        };
                        let blob = guard.take().expect("checked above");
                        self.forget(w, id);
                        self.complete(w, name, blob, &digest)
                    }
                    _ => error(
                        Code::Unsupported,
                        format!("{method} is not an upload method"),
                    ),
                }
            }
            _ => error(Code::Unsupported, format!("{method} starts no upload")),
        }
    }

    fn forget(&self, w: &Writable, id: &str) {
        if let Ok(mut s) = w.sessions.lock() {
            s.remove(id);
        }
    }

    fn complete(
        &self,
        w: &Writable,
        name: &str,
        blob: PartialBlob,
        digest: &Digest,
    ) -> Response<ReplyBody> {
        let label = format!("the upload to {name}");
        let size = blob.len();
        match tokio::task::block_in_place(|| blob.finish(&w.staging, digest, &label)) {
            Ok(_) => {
                // Its bytes were counted as they arrived, over one request or several.
                self.opts
                    .progress
                    .delivered_within(digest.to_string(), size);
                created(name, digest)
            }
            Err(airlock_core::Error::DigestMismatch { actual, .. }) => error(
                Code::DigestInvalid,
                format!("the upload's bytes hash to {actual}, not {digest}; nothing was kept"),
            ),
            Err(e) => error(
                Code::BlobUploadInvalid,
                format!("cannot store the upload: {e}"),
            ),
        }
    }

    pub(super) async fn put_manifest(
        &self,
        name: &str,
        reference: &Target,
        content_type: Option<&str>,
        body: Incoming,
    ) -> Response<ReplyBody> {
        let Some(w) = self.writable() else {
            return read_only();
        };
        let Some(repo) = self.push_repository(name) else {
            return error(
                Code::NameInvalid,
                format!("{name} is not a repository this server takes pushes for"),
            );
        };
        let bytes = match tokio::time::timeout(
            w.body_timeout * 4,
            http_body_util::Limited::new(body, MAX_MANIFEST).collect(),
        )
        .await
        {
            Ok(Ok(b)) => b.to_bytes().to_vec(),
            Ok(Err(_)) => {
                return error(
                    Code::ManifestInvalid,
                    format!("the manifest is cut off or over {MAX_MANIFEST} bytes"),
                )
            }
            Err(_) => {
                return error(
                    Code::ManifestInvalid,
                    "the client sent the manifest too slowly",
                )
            }
        };
        let digest = Digest::of(&bytes);
        if let Target::Digest(d) = reference {
            if *d != digest {
                return error(
                    Code::DigestInvalid,
                    format!("the manifest's bytes hash to {digest}, not {d}"),
                );
            }
        }
        let doc = match spec::parse_document(&bytes, &digest.to_string()) {
            Ok(d) => d,
            Err(e) => return error(Code::ManifestInvalid, e.to_string()),
        };
        let declared = match &doc {
            Document::Manifest(m) => m.media_type.clone(),
            Document::Index(i) => i.media_type.clone(),
        };
        let media_type = declared
            .or_else(|| content_type.map(str::to_string))
            .unwrap_or_else(|| spec::media_type::OCI_MANIFEST.to_string());
        // Every blob it names must be here, with the size it says.
        for d in airlock_core::graph::children(&doc) {
            if d.urls.is_some() {
                continue; // a foreign layer lives elsewhere by design
            }
            let size = self.store.blob_size(&d.digest).or_else(|| {
                w.staged(&d.digest)
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
            });
            match size {
                None => {
                    return error(
                        Code::ManifestBlobUnknown,
                        format!("the manifest names {}, which was not pushed", d.digest),
                    )
                }
                Some(s) if s != d.size => {
                    return error(
                        Code::ManifestInvalid,
                        format!(
                            "the manifest says {} is {} bytes; it is {s}",
                            d.digest, d.size
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        let subject = match &doc {
            Document::Manifest(m) => m.subject.as_ref().map(|s| s.digest.clone()),
            Document::Index(_) => None,
        };
        let tag = match reference {
            Target::Tag(t) => Some(t.clone()),
            Target::Digest(_) => None,
        };
        let root = Descriptor::new(&media_type, digest.clone(), bytes.len() as u64);
        if let Err(e) = tokio::task::block_in_place(|| w.staging.write_bytes(&bytes)) {
            return error(
                Code::ManifestInvalid,
                format!("cannot stage the manifest: {e}"),
            );
        }
        // A manifest pushed by digest with no subject is an index's child (or waits for a
        // tag): it stays staged until something names it. A tag or a subject commits.
        if tag.is_none() && subject.is_none() {
            if let Ok(mut p) = w.pending.lock() {
                p.insert(digest.clone(), media_type);
            }
            return manifest_created(name, &digest, None);
        }
        let names = match &tag {
            Some(t) => match Reference::parse(&format!("{repo}:{t}")) {
                Ok(r) => vec![r],
                Err(e) => return error(Code::TagInvalid, e.to_string()),
            },
            None => Vec::new(),
        };
        let id = match &doc {
            Document::Manifest(m) => m.config.digest.clone(),
            Document::Index(_) => digest.clone(),
        };
        let image = NewImage {
            root,
            names,
            generated: false,
            id,
        };
        let store = &self.store;
        match tokio::task::block_in_place(|| store.commit(&w.staging, &[image])) {
            Ok(_) => {
                if let Ok(mut p) = w.pending.lock() {
                    p.remove(&digest);
                    if let Document::Index(i) = &doc {
                        for m in &i.manifests {
                            p.remove(&m.digest);
                        }
                    }
                }
                manifest_created(name, &digest, subject.as_ref())
            }
            Err(e) => error(
                Code::ManifestInvalid,
                format!("cannot commit the manifest: {e}"),
            ),
        }
    }
}

fn range_start(content_range: &str) -> Option<u64> {
    // `Content-Range: <start>-<end>` (distribution's form, no unit), or with `bytes `.
    let r = content_range.trim().trim_start_matches("bytes ").trim();
    r.split_once('-')?.0.trim().parse().ok()
}

fn created(name: &str, digest: &Digest) -> Response<ReplyBody> {
    reply::finish(
        builder(StatusCode::CREATED)
            .header("Location", format!("/v2/{name}/blobs/{digest}"))
            .header("Docker-Content-Digest", digest.to_string())
            .header("Content-Length", 0),
        reply::empty(),
    )
}

fn manifest_created(name: &str, digest: &Digest, subject: Option<&Digest>) -> Response<ReplyBody> {
    let mut b = builder(StatusCode::CREATED)
        .header("Location", format!("/v2/{name}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest.to_string())
        .header("Content-Length", 0);
    if let Some(s) = subject {
        // The referrers API lists it now: the client need not keep a fallback tag.
        b = b.header("OCI-Subject", s.to_string());
    }
    reply::finish(b, reply::empty())
}

fn busy() -> Response<ReplyBody> {
    error(
        Code::TooManyRequests,
        "too many uploads in progress; try again shortly",
    )
}

pub(super) fn read_only() -> Response<ReplyBody> {
    error(
        Code::Unsupported,
        "this registry is read-only; start airlock serve with --read-write to accept pushes",
    )
}
