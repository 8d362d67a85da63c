//! The read side of the API: manifests, blobs, tags, the catalog and referrers, all served
//! from the store's own files with no copy.

use std::io::SeekFrom;

use airlock_core::spec::{media_type, Descriptor};
use airlock_core::Digest;
use http_body_util::BodyExt;
use hyper::{Method, Response, StatusCode};
use tokio::io::AsyncSeekExt;

use super::reply::{self, builder, error, Code, FileBody, ReplyBody};
use super::route::Target;
use super::view::{Lookup, View};
use super::{Query, Server};

/// Manifests are read whole; none the store accepts is near this.
const MAX_MANIFEST: u64 = 4 << 20;

impl Server {
    /// The stored repository `name` means, or the error to answer.
    pub(super) fn repository(
        &self,
        view: &View,
        name: &str,
        query: &Query,
    ) -> Result<String, (Code, String)> {
        match view.repository_for(name, query.get("ns"), self.opts.prefix.as_deref()) {
            Lookup::Found(r) => Ok(r),
            Lookup::Unknown => Err((
                Code::NameUnknown,
                format!("no repository {name} in this store"),
            )),
            Lookup::Ambiguous(many) => Err((
                Code::NameUnknown,
                format!(
                    "{name} is a repository of several registries here ({}); ask for the full name",
                    many.join(", ")
                ),
            )),
        }
    }

    pub(super) async fn manifest(
        &self,
        method: &Method,
        name: &str,
        reference: &Target,
        query: &Query,
    ) -> Response<ReplyBody> {
        let view = self.view().await;
        let (digest, declared) = match reference {
            Target::Tag(tag) => {
                let repo = match self.repository(&view, name, query) {
                    Ok(r) => r,
                    Err((code, message)) => return error(code, message),
                };
                match view.tags.get(&repo).and_then(|t| t.get(tag)) {
                    Some(d) => (d.digest.clone(), d.media_type.clone()),
                    None => {
                        return error(
                            Code::ManifestUnknown,
                            format!("{name} has no tag {tag} in this store"),
                        )
                    }
                }
            }
            Target::Digest(d) => match view
                .manifests
                .get(d)
                .cloned()
                .or_else(|| self.writable.as_ref().and_then(|w| w.pending_manifest(d)))
            {
                Some(mt) => (d.clone(), mt),
                None => {
                    return error(
                        Code::ManifestUnknown,
                        format!("no manifest {d} in this store"),
                    )
                }
            },
        };
        let bytes = match self.read_small(&digest).await {
            Some(b) => b,
            None => {
                return error(
                    Code::ManifestUnknown,
                    format!("manifest {digest} is listed but not in the store"),
                )
            }
        };
        let content_type = if declared.is_empty() {
            media_type_in(&bytes).unwrap_or_else(|| media_type::OCI_MANIFEST.to_string())
        } else {
            declared
        };
        let b = builder(StatusCode::OK)
            .header("Docker-Content-Digest", digest.to_string())
            .header("ETag", format!("\"{digest}\""));
        if method == Method::HEAD {
            return reply::finish(
                b.header("Content-Type", content_type)
                    .header("Content-Length", bytes.len()),
                reply::empty(),
            );
        }
        reply::json(b, &content_type, bytes)
    }

    async fn read_small(&self, digest: &Digest) -> Option<Vec<u8>> {
        let mut path = self.store.blob_path(digest);
        if !path.is_file() {
            path = self.writable.as_ref()?.staged(digest)?;
        }
        let meta = tokio::fs::metadata(&path).await.ok()?;
        if meta.len() > MAX_MANIFEST {
            return None;
        }
        let bytes = tokio::fs::read(&path).await.ok()?;
        // Stored blobs were verified on the way in; a damaged one is not passed on.
        (Digest::of(&bytes) == *digest).then_some(bytes)
    }

    pub(super) async fn blob(
        &self,
        method: &Method,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> Response<ReplyBody> {
        let path = self.store.blob_path(digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(_) => match self.staged_blob(digest).await {
                Some(f) => f,
                None => return error(Code::BlobUnknown, format!("no blob {digest} in this store")),
            },
        };
        let size = match file.metadata().await {
            Ok(m) => m.len(),
            Err(_) => return error(Code::BlobUnknown, format!("no blob {digest} in this store")),
        };
        let b = builder(StatusCode::OK)
            .header("Docker-Content-Digest", digest.to_string())
            .header("ETag", format!("\"{digest}\""))
            .header("Accept-Ranges", "bytes")
            .header("Content-Type", "application/octet-stream");
        let (b, start, len) = match reply::range(range_header, size) {
            Ok(None) => (b, 0, size),
            Ok(Some((start, end))) => (
                b.status(StatusCode::PARTIAL_CONTENT)
                    .header("Content-Range", format!("bytes {start}-{end}/{size}")),
                start,
                end - start + 1,
            ),
            Err(()) => {
                return reply::finish(
                    builder(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header("Content-Range", format!("bytes */{size}")),
                    reply::empty(),
                )
            }
        };
        let b = b.header("Content-Length", len);
        if method == Method::HEAD {
            return reply::finish(b, reply::empty());
        }
        let mut file = file;
        if start > 0 && file.seek(SeekFrom::Start(start)).await.is_err() {
            return error(Code::BlobUnknown, format!("blob {digest} cannot be read"));
        }
        reply::finish(b, FileBody::new(file, len).boxed())
    }

    pub(super) async fn tags(&self, name: &str, query: &Query) -> Response<ReplyBody> {
        let view = self.view().await;
        let repo = match self.repository(&view, name, query) {
            Ok(r) => r,
            Err((code, message)) => return error(code, message),
        };
        let all: Vec<&String> = view
            .tags
            .get(&repo)
            .map(|t| t.keys().collect())
            .unwrap_or_default();
        let (page, next) = page(&all, query);
        let mut b = builder(StatusCode::OK);
        if let Some(last) = next {
            b = b.header(
                "Link",
                format!(
                    "</v2/{name}/tags/list?n={}&last={last}>; rel=\"next\"",
                    page.len()
                ),
            );
        }
        let body = serde_json::json!({"name": name, "tags": page});
        reply::json(
            b,
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }

    pub(super) async fn catalog(&self, query: &Query) -> Response<ReplyBody> {
        let view = self.view().await;
        let prefix = self.opts.prefix.as_deref();
        let names: Vec<String> = view
            .tags
            .keys()
            .map(|r| View::served_name(r, prefix))
            .collect();
        let refs: Vec<&String> = names.iter().collect();
        let (page, next) = page(&refs, query);
        let mut b = builder(StatusCode::OK);
        if let Some(last) = next {
            b = b.header(
                "Link",
                format!("</v2/_catalog?n={}&last={last}>; rel=\"next\"", page.len()),
            );
        }
        let body = serde_json::json!({"repositories": page});
        reply::json(
            b,
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }

    pub(super) async fn referrers(&self, digest: &Digest, query: &Query) -> Response<ReplyBody> {
        let view = self.view().await;
        let wanted = query.get("artifactType");
        let listed: Vec<&Descriptor> = view
            .referrers
            .get(digest)
            .map(|l| {
                l.iter()
                    .filter(|d| wanted.is_none_or(|w| d.artifact_type.as_deref() == Some(w)))
                    .collect()
            })
            .unwrap_or_default();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": listed,
        });
        let mut b = builder(StatusCode::OK);
        if wanted.is_some() {
            b = b.header("OCI-Filters-Applied", "artifactType");
        }
        reply::json(
            b,
            media_type::OCI_INDEX,
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    }
}

/// The `mediaType` a manifest names itself by.
fn media_type_in(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("mediaType")?.as_str().map(str::to_string)
}

/// One page of a sorted list by `n` and `last`, and the last entry when more follow.
fn page<'a>(all: &[&'a String], query: &Query) -> (Vec<&'a String>, Option<String>) {
    let after = query.get("last");
    let rest: Vec<&String> = all
        .iter()
        .copied()
        .filter(|t| after.is_none_or(|l| t.as_str() > l))
        .collect();
    let n = query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    if rest.len() > n {
        let page: Vec<&String> = rest[..n].to_vec();
        let last = page.last().map(|s| s.to_string());
        (page, last)
    } else {
        (rest, None)
    }
}
