//! Pushing: blobs first (skipped when the registry has them, mounted when another
//! repository of the same registry has them, sent in chunks when large, several at once),
//! then manifests, children before the index, byte for byte.
//!
//! An interrupted push resumes for free: finished blobs answer the HEAD and are not sent
//! again.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use airlock_core::spec::Descriptor;
use airlock_core::transport::{ImageSource, SourceImage};
use airlock_core::{Digest, Reference};

use super::client::encode;
use super::{manifest_content_type, Registry};
use crate::{RemoteError, Result};

const PARALLEL_BLOBS: usize = 3;
/// Blobs above this go up in chunks of this size (PATCH with Content-Range).
const CHUNK: u64 = 32 << 20;

/// What one push did.
#[derive(Debug, Default, Clone)]
pub struct PushReport {
    /// Blobs whose bytes were sent.
    pub sent: usize,
    /// Bytes of blob data sent.
    pub bytes_sent: u64,
    /// Blobs the registry already had in this repository.
    pub existing: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
}

/// Blobs known to be in repositories of one registry, for cross-repository mounts.
#[derive(Default)]
pub struct MountHints {
    known: Mutex<BTreeMap<Digest, String>>,
}

impl MountHints {
    fn note(&self, d: &Digest, repo: &str) {
        if let Ok(mut k) = self.known.lock() {
            k.entry(d.clone()).or_insert_with(|| repo.to_string());
        }
    }
    fn from(&self, d: &Digest, not: &str) -> Option<String> {
        self.known
            .lock()
            .ok()?
            .get(d)
            .filter(|r| r.as_str() != not)
            .cloned()
    }
}

/// Push one image from `source` to `dest` (tag, or digest-only when it has none).
pub fn push(
    reg: &Registry,
    source: &dyn ImageSource,
    image: &SourceImage,
    dest: &Reference,
    hints: &MountHints,
) -> Result<PushReport> {
    let path = dest.path();
    let scope = format!("repository:{path}:pull,push");
    // Every config and layer once.
    let mut blobs: Vec<Descriptor> = Vec::new();
    for p in &image.platforms {
        for d in std::iter::once(&p.manifest.config).chain(&p.manifest.layers) {
            if !blobs.iter().any(|b| b.digest == d.digest) && source.has_blob(&d.digest) {
                blobs.push(d.clone());
            }
        }
    }
    let report = Mutex::new(PushReport::default());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<RemoteError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_BLOBS.min(blobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= blobs.len() || failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                match push_blob(reg, source, &blobs[i], path, &scope, hints) {
                    Ok(outcome) => {
                        hints.note(&blobs[i].digest, path);
                        if let Ok(mut r) = report.lock() {
                            match outcome {
                                Outcome::Existing => r.existing += 1,
                                Outcome::Mounted => r.mounted += 1,
                                Outcome::Sent => {
                                    r.sent += 1;
                                    r.bytes_sent += blobs[i].size;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    // Manifests: the platform manifests by digest, then the root by tag.
    for p in &image.platforms {
        if p.descriptor.digest != image.root.digest {
            put_manifest(
                reg,
                source,
                &p.descriptor,
                path,
                &scope,
                &p.descriptor.digest.to_string(),
            )?;
        }
    }
    let root_ref = dest
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| image.root.digest.to_string());
    put_manifest(reg, source, &image.root, path, &scope, &root_ref)?;
    Ok(report.into_inner().unwrap_or_default())
}

fn put_manifest(
    reg: &Registry,
    source: &dyn ImageSource,
    desc: &Descriptor,
    path: &str,
    scope: &str,
    reference: &str,
) -> Result<()> {
    let bytes = source.read_blob(&desc.digest)?;
    let content_type = manifest_content_type(&bytes, &desc.media_type);
    let body = || -> Result<(Box<dyn Read + Send>, u64)> {
        Ok((
            Box::new(std::io::Cursor::new(bytes.clone())),
            bytes.len() as u64,
        ))
    };
    let r = reg.call(
        "PUT",
        &format!("/v2/{path}/manifests/{reference}"),
        scope,
        &[("Content-Type", content_type)],
        Some(&body),
    )?;
    // The registry names the manifest by the digest of what it stored: it must be ours.
    if let Some(stated) = r
        .header("Docker-Content-Digest")
        .and_then(|d| d.parse::<Digest>().ok())
    {
        if stated != desc.digest {
            return Err(RemoteError::Core(airlock_core::Error::DigestMismatch {
                what: "pushed manifest",
                path_in_archive: format!("{}/{path}:{reference}", reg.host()),
                expected: desc.digest.clone(),
                actual: stated,
            }));
        }
    }
    Ok(())
}

enum Outcome {
    Existing,
    Mounted,
    Sent,
}

fn push_blob(
    reg: &Registry,
    source: &dyn ImageSource,
    blob: &Descriptor,
    path: &str,
    scope: &str,
    hints: &MountHints,
) -> Result<Outcome> {
    let head = reg.call_allow(
        "HEAD",
        &format!("/v2/{path}/blobs/{}", blob.digest),
        scope,
        &[],
        None,
        &[404],
    )?;
    if head.is_ok() {
        return Ok(Outcome::Existing);
    }
    let mut start = format!("/v2/{path}/blobs/uploads/");
    let mut scope = scope.to_string();
    if let Some(from) = hints.from(&blob.digest, path) {
        start.push_str(&format!(
            "?mount={}&from={}",
            encode(&blob.digest.to_string()),
            encode(&from)
        ));
        scope = format!("{scope} repository:{from}:pull");
    }
    let r = reg.call(
        "POST",
        &start,
        &scope,
        &[("Content-Length", "0".into())],
        None,
    )?;
    if r.status() == 201 {
        return Ok(Outcome::Mounted);
    }
    let mut location = upload_location(&r)?;
    drop(r);
    let digest_param = format!("digest={}", encode(&blob.digest.to_string()));
    if blob.size <= CHUNK {
        let body = || -> Result<(Box<dyn Read + Send + '_>, u64)> {
            Ok((source.open_blob(&blob.digest)?, blob.size))
        };
        reg.call(
            "PUT",
            &with_query(&location, &digest_param),
            &scope,
            &[("Content-Type", "application/octet-stream".into())],
            Some(&body),
        )?;
        return Ok(Outcome::Sent);
    }
    let mut offset = 0u64;
    while offset < blob.size {
        let len = CHUNK.min(blob.size - offset);
        let body = || -> Result<(Box<dyn Read + Send + '_>, u64)> {
            Ok((open_at(source, &blob.digest, offset, len)?, len))
        };
        let r = reg.call(
            "PATCH",
            &location,
            &scope,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Range", format!("{}-{}", offset, offset + len - 1)),
            ],
            Some(&body),
        )?;
        location = upload_location(&r)?;
        offset += len;
    }
    let empty = || -> Result<(Box<dyn Read + Send>, u64)> { Ok((Box::new(std::io::empty()), 0)) };
    reg.call(
        "PUT",
        &with_query(&location, &digest_param),
        &scope,
        &[],
        Some(&empty),
    )?;
    Ok(Outcome::Sent)
}

/// `len` bytes of a blob from `offset`: seek in its file when the source keeps one.
fn open_at<'a>(
    source: &'a dyn ImageSource,
    digest: &Digest,
    offset: u64,
    len: u64,
) -> Result<Box<dyn Read + Send + 'a>> {
    if let Some(p) = source.blob_file(digest) {
        let mut f = std::fs::File::open(&p).map_err(|e| RemoteError::Io {
            context: format!("open {}", p.display()),
            source: e,
        })?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| RemoteError::Io {
                context: format!("seek in {}", p.display()),
                source: e,
            })?;
        return Ok(Box::new(f.take(len)));
    }
    let mut r = source.open_blob(digest)?;
    std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink()).map_err(|e| {
        RemoteError::Io {
            context: format!("read blob {digest}"),
            source: e,
        }
    })?;
    Ok(Box::new(r.take(len)))
}

fn upload_location(r: &ureq::Response) -> Result<String> {
    r.header("Location").map(str::to_string).ok_or_else(|| {
        RemoteError::Protocol("the registry started an upload without a Location".into())
    })
}

fn with_query(location: &str, param: &str) -> String {
    if location.contains('?') {
        format!("{location}&{param}")
    } else {
        format!("{location}?{param}")
    }
}
