//! Pulling: a registry image as a source of the copy engine. The manifest (or index),
//! platform manifests and configs are fetched up front (small, kept in memory, each checked
//! against its digest); layers are fetched only when the copy engine opens them, straight
//! into whatever the destination is, so `copy docker://... docker-archive:x.tar` writes
//! each byte once. The engine checks every layer's digest and diffID on the way.

use std::collections::BTreeMap;
use std::io::Read;

use airlock_core::spec::{self, Descriptor, Document, Platform};
use airlock_core::store::Store;
use airlock_core::transport::{ImageSource, SourceImage};
use airlock_core::{Digest, Reference};

use super::discover::{referrers_of, ReferrerChoice};
use super::fetch::{fetch_manifest, platform};
use super::Registry;
use crate::{RemoteError, Result};

/// Which platforms of a multi-platform image to keep.
#[derive(Clone, Debug)]
pub enum PlatformChoice {
    /// The one matching this host.
    Host,
    /// One given platform.
    One(Platform),
    /// These platforms (a shipment's `platforms: [linux/amd64, linux/arm64]`); the index
    /// stays the root, sparse.
    Several(Vec<Platform>),
    /// Every platform: the index itself is kept.
    All,
}

/// One image of a registry, ready to be copied.
pub struct RegistrySource<'r> {
    reg: &'r Registry,
    path: String,
    scope: String,
    images: Vec<SourceImage>,
    /// Manifests and configs, fetched and verified up front.
    small: BTreeMap<Digest, Vec<u8>>,
    /// Layers with `urls`: not distributed by the registry.
    foreign: std::collections::BTreeSet<Digest>,
    label: String,
    /// The digest of what the reference named (an index even when one platform is kept).
    requested: Digest,
}

/// Resolve `reference` on `reg`: its manifests and configs are fetched now, layers when the
/// copy engine reads them. The referrers `referrers` keeps (signatures, SBOMs) of the image
/// and of each platform kept come along as images of their own.
pub fn pull<'r>(
    reg: &'r Registry,
    reference: &Reference,
    choice: &PlatformChoice,
    store: Option<&Store>,
    referrers: &ReferrerChoice,
) -> Result<RegistrySource<'r>> {
    let mut source =
        resolve(reg, reference, choice, store).map_err(|e| blame_registry(reg.host(), e))?;
    let image = &source.images[0];
    // What a signer signed may be the index even when one platform is kept.
    let mut subjects = vec![source.requested.clone(), image.root.digest.clone()];
    subjects.extend(image.platforms.iter().map(|p| p.descriptor.digest.clone()));
    subjects.sort();
    subjects.dedup();
    let found = referrers_of(
        reg,
        reference,
        &subjects,
        referrers,
        &mut source.small,
        store,
    )
    .map_err(|e| blame_registry(reg.host(), e))?;
    source.images.extend(found);
    Ok(source)
}

/// Bytes that do not hash to their name came from the registry (or the path to it), not
/// from a damaged archive: say so.
pub fn blame_registry(host: &str, e: RemoteError) -> RemoteError {
    match e {
        RemoteError::Core(
            c @ (airlock_core::Error::DigestMismatch { .. }
            | airlock_core::Error::DiffIdMismatch { .. }
            | airlock_core::Error::SizeMismatch { .. }),
        ) => RemoteError::Corrupt {
            host: host.to_string(),
            detail: c.to_string(),
        },
        other => other,
    }
}

fn resolve<'r>(
    reg: &'r Registry,
    reference: &Reference,
    choice: &PlatformChoice,
    store: Option<&Store>,
) -> Result<RegistrySource<'r>> {
    let path = reference.path().to_string();
    let scope = format!("repository:{path}:pull");
    let mut small = BTreeMap::new();
    let wanted = reference
        .digest()
        .map(|d| d.to_string())
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let (root_bytes, root_digest, root_type) =
        fetch_manifest(reg, &path, &scope, &wanted, reference.digest())?;
    let root_desc = Descriptor::new(&root_type, root_digest.clone(), root_bytes.len() as u64);
    let name = if reference.tag().is_some() {
        vec![reference.clone()]
    } else {
        Vec::new()
    };
    let document = spec::parse_document(&root_bytes, &root_digest.to_string())?;
    small.insert(root_digest.clone(), root_bytes);
    let fetch = |desc: &Descriptor, m: spec::Manifest, small: &mut BTreeMap<Digest, Vec<u8>>| {
        platform(reg, &path, &scope, desc, m, small, store)
    };
    let image = match document {
        Document::Manifest(m) => {
            let p = fetch(&root_desc, *m, &mut small)?;
            SourceImage {
                names: name,
                root: root_desc,
                generated: false,
                platforms: vec![p],
            }
        }
        Document::Index(index) => {
            let picked = pick_platforms(&index.manifests, choice, reference)?;
            let mut platforms = Vec::new();
            for child in &picked {
                let (bytes, digest, _) = fetch_manifest(
                    reg,
                    &path,
                    &scope,
                    &child.digest.to_string(),
                    Some(&child.digest),
                )?;
                let doc = spec::parse_document(&bytes, &digest.to_string())?;
                small.insert(digest, bytes);
                if let Document::Manifest(m) = doc {
                    platforms.push(fetch(child, *m, &mut small)?);
                }
            }
            // The index stays the root even when only some platforms are fetched (as
            // containerd and docker's containerd store keep it): its digest is what the
            // registry names, what `docker pull` prints and what cosign signs. The store
            // records it as sparse, and targets that need every manifest are told.
            SourceImage {
                names: name,
                root: root_desc,
                generated: false,
                platforms,
            }
        }
    };
    let foreign = image
        .platforms
        .iter()
        .flat_map(|p| &p.manifest.layers)
        .filter(|l| l.urls.is_some())
        .map(|l| l.digest.clone())
        .collect();
    Ok(RegistrySource {
        reg,
        foreign,
        label: format!("{}/{path}", reg.host()),
        path,
        scope,
        images: vec![image],
        small,
        requested: root_digest,
    })
}

/// The descriptors of an index to keep.
fn pick_platforms<'d>(
    manifests: &'d [Descriptor],
    choice: &PlatformChoice,
    reference: &Reference,
) -> Result<Vec<&'d Descriptor>> {
    let wanted = match choice {
        PlatformChoice::All => return Ok(manifests.iter().collect()),
        PlatformChoice::One(p) => vec![p.clone()],
        PlatformChoice::Several(ps) => ps.clone(),
        PlatformChoice::Host => vec![Platform::host()],
    };
    let mut out: Vec<&Descriptor> = Vec::new();
    for want in &wanted {
        let Some(d) = manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        else {
            let have: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.display()))
                .collect();
            return Err(RemoteError::Core(airlock_core::Error::Usage(format!(
                "{reference} has no {} image; it has: {}",
                want.display(),
                have.join(", ")
            ))));
        };
        if !out.iter().any(|o| o.digest == d.digest) {
            out.push(d);
        }
    }
    Ok(out)
}

impl ImageSource for RegistrySource<'_> {
    fn images(&self) -> &[SourceImage] {
        &self.images
    }
    fn open_blob(&self, digest: &Digest) -> airlock_core::Result<Box<dyn Read + Send + '_>> {
        if let Some(b) = self.small.get(digest) {
            return Ok(Box::new(std::io::Cursor::new(b.clone())));
        }
        let r = self
            .reg
            .call(
                "GET",
                &format!("/v2/{}/blobs/{digest}", self.path),
                &self.scope,
                &[],
                None,
            )
            .map_err(|e| airlock_core::Error::Transport {
                source: Box::new(e),
            })?;
        Ok(self.reg.body(r))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        !self.foreign.contains(digest)
    }
    fn diff_ids_verified(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        format!("registry {}", self.label)
    }
}
