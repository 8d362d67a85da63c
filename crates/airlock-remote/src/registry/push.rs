//! Pushing: a registry as a destination of the copy engine. Blobs first (skipped when the
//! registry has them — HEAD —, mounted when another repository of the same push has them,
//! sent in chunks when large, several at once: the engine's pool), then manifests,
//! children before the index, byte for byte, in `finish`.
//!
//! An interrupted push resumes for free: finished blobs answer the HEAD and are not sent
//! again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use airlock_core::copy::BlobReader;
use airlock_core::spec::Descriptor;
use airlock_core::store::TagChange;
use airlock_core::transport::{ImageDestination, SourceImage};
use airlock_core::{Digest, Reference};

use super::client::encode;
use super::target::RegistryTarget;
use super::{manifest_content_type, Registry};
use crate::{RemoteError, Result};

/// Blobs above this go up in chunks of this size (PATCH with Content-Range); each chunk is
/// held in memory so a retry can send it again (the source is read once).
const CHUNK: u64 = 32 << 20;
/// Blobs in flight at once.
const PARALLEL_BLOBS: usize = 3;

/// What happened to one blob in one repository.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Existing,
    Mounted,
    Sent,
}

/// One image pushed under one name.
#[derive(Clone, Debug)]
struct Push {
    image: usize,
    dest: Reference,
}

/// What one pushed name got, for the line `push` prints.
#[derive(Debug, Default, Clone)]
pub struct PushReport {
    /// Where it went.
    pub dest: String,
    /// The root manifest's digest.
    pub digest: String,
    /// Blobs whose bytes were sent.
    pub sent: usize,
    /// Bytes of blob data sent.
    pub bytes_sent: u64,
    /// Blobs the registry already had in this repository.
    pub existing: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// The index this image came from, when only one of its platforms went up.
    pub from_index: Option<String>,
}

impl std::fmt::Display for PushReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pushed {} ({}): {} blobs sent ({} bytes), {} already there, {} mounted",
            self.dest, self.digest, self.sent, self.bytes_sent, self.existing, self.mounted
        )?;
        if let Some(index) = &self.from_index {
            write!(
                f,
                " (the one platform the store has of index {index}; signatures made on the index do not cover this digest)"
            )?;
        }
        Ok(())
    }
}

/// A registry as a copy destination.
pub struct RegistryDestination<'r> {
    reg: &'r Registry,
    target: RegistryTarget,
    pushes: Vec<Push>,
    /// Blob -> the repositories that need it, in push order.
    repos_of: BTreeMap<Digest, Vec<String>>,
    manifests: BTreeSet<Digest>,
    pending_manifests: Mutex<BTreeMap<Digest, Vec<u8>>>,
    outcomes: Mutex<BTreeMap<(String, Digest), Outcome>>,
    sizes: BTreeMap<Digest, u64>,
    report: Arc<Mutex<Vec<PushReport>>>,
}

fn usage(msg: String) -> airlock_core::Error {
    airlock_core::Error::Usage(msg)
}

fn core(e: RemoteError) -> airlock_core::Error {
    match e {
        RemoteError::Core(c) => c,
        other => airlock_core::Error::Transport {
            source: Box::new(other),
        },
    }
}

fn scope_of(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

impl<'r> RegistryDestination<'r> {
    /// Push to `target` on `reg`.
    pub fn new(reg: &'r Registry, target: RegistryTarget) -> Self {
        RegistryDestination {
            reg,
            target,
            pushes: Vec::new(),
            repos_of: BTreeMap::new(),
            manifests: BTreeSet::new(),
            pending_manifests: Mutex::default(),
            outcomes: Mutex::default(),
            sizes: BTreeMap::new(),
            report: Arc::default(),
        }
    }

    /// What each pushed name got, filled in by `finish`.
    pub fn report(&self) -> Arc<Mutex<Vec<PushReport>>> {
        self.report.clone()
    }

    fn note(&self, repo: &str, d: &Digest, o: Outcome) {
        if let Ok(mut m) = self.outcomes.lock() {
            m.entry((repo.to_string(), d.clone())).or_insert(o);
        }
    }

    fn outcome(&self, repo: &str, d: &Digest) -> Option<Outcome> {
        self.outcomes
            .lock()
            .ok()?
            .get(&(repo.to_string(), d.clone()))
            .copied()
    }

    /// A repository of this push that holds `d` already, other than `not`.
    fn holder(&self, d: &Digest, not: &str) -> Option<String> {
        let m = self.outcomes.lock().ok()?;
        self.repos_of
            .get(d)?
            .iter()
            .find(|r| r.as_str() != not && m.contains_key(&((*r).clone(), d.clone())))
            .cloned()
    }

    fn exists(&self, repo: &str, d: &Digest) -> Result<bool> {
        let head = self.reg.call_allow(
            "HEAD",
            &format!("/v2/{repo}/blobs/{d}"),
            &scope_of(repo),
            &[],
            None,
            &[404],
        )?;
        Ok(head.is_ok())
    }

    /// Mount `d` into `repo` from `from`; true when the registry did.
    fn mount(&self, repo: &str, d: &Digest, from: &str) -> Result<bool> {
        let r = self.reg.call(
            "POST",
            &format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from={}",
                encode(&d.to_string()),
                encode(from)
            ),
            &format!("{} repository:{from}:pull", scope_of(repo)),
            &[("Content-Length", "0".into())],
            None,
        )?;
        Ok(r.status() == 201)
    }

    /// Stream a blob into `repo`: one PUT when small, PATCHes of CHUNK bytes when large.
    fn upload(&self, repo: &str, blob: &Descriptor, data: &mut BlobReader<'_>) -> Result<()> {
        let scope = scope_of(repo);
        let r = self.reg.call(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &scope,
            &[("Content-Length", "0".into())],
            None,
        )?;
        let mut location = upload_location(&r)?;
        drop(r);
        let digest_param = format!("digest={}", encode(&blob.digest.to_string()));
        // Fill `buf` (fewer bytes only at the end); one buffer per blob, reused for every
        // chunk, so memory stays at one chunk per blob in flight.
        let fill = |data: &mut BlobReader<'_>, buf: &mut [u8]| -> Result<usize> {
            let mut filled = 0;
            while filled < buf.len() {
                match data.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(RemoteError::Core(data.to_error(e))),
                }
            }
            Ok(filled)
        };
        if blob.size <= CHUNK {
            let mut buf = vec![0u8; blob.size as usize];
            let n = fill(data, &mut buf)?;
            buf.truncate(n);
            // The end-of-blob check of the verifying reader runs on this read.
            let mut extra = Vec::new();
            data.read_to_end(&mut extra)
                .map_err(|e| RemoteError::Core(data.to_error(e)))?;
            buf.extend(extra);
            let body = || -> Result<(Box<dyn Read + Send + '_>, u64)> {
                Ok((Box::new(&buf[..]), buf.len() as u64))
            };
            self.reg.call(
                "PUT",
                &with_query(&location, &digest_param),
                &scope,
                &[("Content-Type", "application/octet-stream".into())],
                Some(&body),
            )?;
            return Ok(());
        }
        let mut chunk = vec![0u8; CHUNK as usize];
        let mut offset = 0u64;
        while offset < blob.size {
            let want = CHUNK.min(blob.size - offset) as usize;
            let n = fill(data, &mut chunk[..want])?;
            if n == 0 {
                break;
            }
            let buf = &chunk[..n];
            let len = buf.len() as u64;
            let body = || -> Result<(Box<dyn Read + Send + '_>, u64)> { Ok((Box::new(buf), len)) };
            let r = self.reg.call(
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
        // The verifying reader must reach its end (and agree) before the upload is sealed.
        let mut rest = Vec::new();
        data.read_to_end(&mut rest)
            .map_err(|e| RemoteError::Core(data.to_error(e)))?;
        if !rest.is_empty() {
            return Err(RemoteError::Core(airlock_core::Error::SizeMismatch {
                path_in_archive: blob.digest.to_string(),
                expected: blob.size,
                actual: blob.size + rest.len() as u64,
            }));
        }
        let empty =
            || -> Result<(Box<dyn Read + Send>, u64)> { Ok((Box::new(std::io::empty()), 0)) };
        self.reg.call(
            "PUT",
            &with_query(&location, &digest_param),
            &scope,
            &[],
            Some(&empty),
        )?;
        Ok(())
    }

    fn put_manifest(
        &self,
        bytes: &[u8],
        desc: &Descriptor,
        repo: &str,
        reference: &str,
    ) -> Result<bool> {
        let content_type = manifest_content_type(bytes, &desc.media_type);
        let body = || -> Result<(Box<dyn Read + Send + '_>, u64)> {
            Ok((Box::new(bytes), bytes.len() as u64))
        };
        let r = self.reg.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &scope_of(repo),
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
                    path_in_archive: format!("{}/{repo}:{reference}", self.reg.host()),
                    expected: desc.digest.clone(),
                    actual: stated,
                }));
            }
        }
        // A registry with the referrers API says it indexed the manifest's subject.
        Ok(r.header("OCI-Subject").is_some())
    }
}

impl ImageDestination for RegistryDestination<'_> {
    fn describe(&self) -> String {
        format!("registry {}", self.reg.host())
    }

    fn parallelism(&self) -> usize {
        PARALLEL_BLOBS
    }

    fn needs_plan(&self) -> bool {
        true
    }

    fn begin(&mut self, images: &[SourceImage]) -> airlock_core::Result<()> {
        // Referrers (signatures, SBOMs) go to each repository their subject goes to.
        let subjects = airlock_core::graph::subjects_among(images);
        let mains = subjects.iter().filter(|s| s.is_none()).count();
        if matches!(self.target, RegistryTarget::Exact(_)) && mains != 1 {
            return Err(usage(format!(
                "{mains} images but one destination name; give docker://HOST[/PREFIX] to push them all"
            )));
        }
        let mut dests: Vec<Vec<Reference>> = vec![Vec::new(); images.len()];
        for (i, img) in images
            .iter()
            .enumerate()
            .filter(|(i, _)| subjects[*i].is_none())
        {
            dests[i] = match (&self.target, img.names.is_empty()) {
                (RegistryTarget::Exact(r), _) => vec![r.clone()],
                (RegistryTarget::Prefix { .. }, true) => {
                    return Err(usage(format!(
                        "image {} has no name to push it under",
                        img.id().short()
                    )))
                }
                (RegistryTarget::Prefix { .. }, false) => img
                    .names
                    .iter()
                    .map(|n| self.target.map(n))
                    .collect::<Result<_>>()
                    .map_err(core)?,
            };
        }
        // A chain (a signature of an SBOM of an image) resolves in as many rounds as links.
        for _ in 0..images.len() {
            for i in 0..images.len() {
                let Some(s) = subjects[i] else { continue };
                if !dests[i].is_empty() || dests[s].is_empty() {
                    continue;
                }
                dests[i] = referrer_dests(&images[i], &dests[s])?;
            }
        }
        for (i, img) in images.iter().enumerate() {
            for dest in dests[i].clone() {
                let repo = dest.path().to_string();
                for p in &img.platforms {
                    self.manifests.insert(p.descriptor.digest.clone());
                    for d in std::iter::once(&p.manifest.config).chain(&p.manifest.layers) {
                        let repos = self.repos_of.entry(d.digest.clone()).or_default();
                        if !repos.contains(&repo) {
                            repos.push(repo.clone());
                        }
                        self.sizes.insert(d.digest.clone(), d.size);
                    }
                }
                self.manifests.insert(img.root.digest.clone());
                self.pushes.push(Push { image: i, dest });
            }
        }
        Ok(())
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        if self.manifests.contains(digest) {
            return false; // kept for `finish`, which puts manifests after every blob
        }
        let Some(repos) = self.repos_of.get(digest) else {
            return false;
        };
        // Errors here only mean "not known to be there": the upload reports them.
        let mut all = true;
        for repo in repos {
            if self.outcome(repo, digest).is_some() {
                continue;
            }
            if self.exists(repo, digest).unwrap_or(false) {
                self.note(repo, digest, Outcome::Existing);
            } else if let Some(from) = self.holder(digest, repo) {
                if self.mount(repo, digest, &from).unwrap_or(false) {
                    self.note(repo, digest, Outcome::Mounted);
                } else {
                    all = false;
                }
            } else {
                all = false;
            }
        }
        all
    }

    fn put_blob(&self, blob: &Descriptor, data: &mut BlobReader<'_>) -> airlock_core::Result<()> {
        if self.manifests.contains(&blob.digest) {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes).map_err(|e| data.to_error(e))?;
            if let Ok(mut p) = self.pending_manifests.lock() {
                p.insert(blob.digest.clone(), bytes);
            }
            return Ok(());
        }
        let repos = self.repos_of.get(&blob.digest).cloned().unwrap_or_default();
        let missing: Vec<&String> = repos
            .iter()
            .filter(|r| self.outcome(r, &blob.digest).is_none())
            .collect();
        let Some(first) = missing.first() else {
            return std::io::copy(data, &mut std::io::sink())
                .map(|_| ())
                .map_err(|e| data.to_error(e));
        };
        let mut sized = blob.clone();
        if let Some(s) = self.sizes.get(&blob.digest) {
            sized.size = *s;
        }
        self.upload(first, &sized, data).map_err(core)?;
        self.note(first, &blob.digest, Outcome::Sent);
        for repo in &missing[1..] {
            let mounted = self.mount(repo, &blob.digest, first).map_err(core)?;
            if !mounted {
                return Err(core(RemoteError::Protocol(format!(
                    "registry {} refused to mount {} from {first} into {repo}",
                    self.reg.host(),
                    blob.digest
                ))));
            }
            self.note(repo, &blob.digest, Outcome::Mounted);
        }
        Ok(())
    }

    fn put_unnamed_blob(
        &self,
        hint: &str,
        _size: u64,
        _data: &mut BlobReader<'_>,
    ) -> airlock_core::Result<Digest> {
        Err(usage(format!(
            "{hint}: a registry takes blobs by digest; stage the archive first"
        )))
    }

    fn finish(self: Box<Self>, images: &[SourceImage]) -> airlock_core::Result<Vec<TagChange>> {
        let pending = self
            .pending_manifests
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let manifest = |d: &Digest| {
            pending
                .get(d)
                .cloned()
                .ok_or_else(|| airlock_core::Error::MissingBlob {
                    referenced_by: "the push".into(),
                    missing: d.to_string(),
                })
        };
        let mut changes = Vec::new();
        let mut reports = Vec::new();
        // (repository, subject) -> referrers the registry did not index itself.
        let mut fallback: BTreeMap<(String, Digest), Vec<Descriptor>> = BTreeMap::new();
        for push in &self.pushes {
            let img = &images[push.image];
            let repo = push.dest.path().to_string();
            // Manifests: the platform manifests by digest, then the root by tag.
            for p in &img.platforms {
                if p.descriptor.digest != img.root.digest {
                    let bytes = manifest(&p.descriptor.digest)?;
                    self.put_manifest(
                        &bytes,
                        &p.descriptor,
                        &repo,
                        &p.descriptor.digest.to_string(),
                    )
                    .map_err(core)?;
                }
            }
            let (top, from_index) = pushed_root(img, &manifest(&img.root.digest)?)?;
            let root_ref = push
                .dest
                .tag()
                .map(str::to_string)
                .unwrap_or_else(|| top.digest.to_string());
            let indexed = self
                .put_manifest(&manifest(&top.digest)?, &top, &repo, &root_ref)
                .map_err(core)?;
            if let (Some(subject), false) = (img.subject(), indexed) {
                let root = img
                    .platforms
                    .iter()
                    .find(|p| p.descriptor.digest == img.root.digest);
                if let Some(p) = root {
                    let d = super::referrers::referrer_descriptor(&img.root, &p.manifest);
                    fallback
                        .entry((repo.clone(), subject.digest.clone()))
                        .or_default()
                        .push(d);
                }
            }
            let mut r = PushReport {
                dest: push.dest.to_string(),
                digest: top.digest.to_string(),
                from_index,
                ..PushReport::default()
            };
            let blobs: BTreeSet<&Digest> = img
                .platforms
                .iter()
                .flat_map(|p| std::iter::once(&p.manifest.config).chain(&p.manifest.layers))
                .map(|d| &d.digest)
                .collect();
            for d in blobs {
                match self.outcome(&repo, d) {
                    Some(Outcome::Existing) => r.existing += 1,
                    Some(Outcome::Mounted) => r.mounted += 1,
                    Some(Outcome::Sent) => {
                        r.sent += 1;
                        r.bytes_sent += self.sizes.get(d).copied().unwrap_or(0);
                    }
                    None => {}
                }
            }
            reports.push(r);
            changes.push(TagChange {
                name: Some(push.dest.clone()),
                image_id: img.id(),
                moved_from: None,
            });
        }
        for ((repo, subject), referrers) in &fallback {
            super::referrers::add_to_fallback_index(self.reg, repo, subject, referrers)
                .map_err(core)?;
        }
        if let Ok(mut rep) = self.report.lock() {
            *rep = reports;
        }
        Ok(changes)
    }
}

/// The manifest a push tags: the root, or for a sparse index (a one-platform pull keeps
/// its index, as containerd does) the one platform the store has, since a registry takes
/// an index only with every manifest it lists.
fn pushed_root(
    img: &SourceImage,
    root_bytes: &[u8],
) -> airlock_core::Result<(Descriptor, Option<String>)> {
    let listed = match airlock_core::spec::parse_document(root_bytes, &img.root.digest.to_string())?
    {
        airlock_core::spec::Document::Index(index) => index.manifests.len(),
        airlock_core::spec::Document::Manifest(_) => return Ok((img.root.clone(), None)),
    };
    if listed <= img.platforms.len() {
        return Ok((img.root.clone(), None));
    }
    match img.platforms.as_slice() {
        [only] => Ok((only.descriptor.clone(), Some(img.root.digest.to_string()))),
        _ => Err(usage(format!(
            "{} keeps {} of the {listed} platforms its index lists, and a registry takes an index only with all of them; pull it again with --all-platforms, or with --platform for one",
            img.root.digest, img.platforms.len()
        ))),
    }
}

/// Where a referrer goes: into each repository of its subject, under its cosign-style tag
/// when it has one, else by digest.
fn referrer_dests(
    img: &SourceImage,
    subject_dests: &[Reference],
) -> airlock_core::Result<Vec<Reference>> {
    let mut repos: Vec<String> = subject_dests.iter().map(|d| d.repository()).collect();
    repos.dedup();
    let tags: Vec<&str> = img
        .names
        .iter()
        .filter_map(|n| n.tag())
        .filter(|t| airlock_core::graph::is_referrer_tag(t))
        .collect();
    let mut out = Vec::new();
    for repo in repos {
        if tags.is_empty() {
            out.push(Reference::parse(&format!("{repo}@{}", img.root.digest))?);
        }
        for t in &tags {
            out.push(Reference::parse(&format!("{repo}:{t}"))?);
        }
    }
    Ok(out)
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
