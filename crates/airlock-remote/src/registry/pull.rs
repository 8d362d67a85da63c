//! Pulling: manifest (or index) by tag or digest, then config and layers, in parallel,
//! each verified while it streams into the store's staging area.

use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use airlock_core::archive::reader::stage_layer;
use airlock_core::spec::{self, ConfigView, Descriptor, Document, Platform};
use airlock_core::store::{Staging, Store};
use airlock_core::transport::staged::StagedSource;
use airlock_core::transport::{PlatformManifest, SourceImage};
use airlock_core::{Digest, Reference};

use super::{Registry, MANIFEST_ACCEPT};
use crate::{RemoteError, Result};

/// Which platforms of a multi-platform image to keep.
#[derive(Clone, Debug)]
pub enum PlatformChoice {
    /// The one matching this host.
    Host,
    /// One given platform.
    One(Platform),
    /// Every platform: the index itself is kept.
    All,
}

const PARALLEL_BLOBS: usize = 3;

/// Pull `reference` into `staging`; blobs the store already has are not fetched again.
pub fn pull<'a>(
    reg: &Registry,
    reference: &Reference,
    choice: &PlatformChoice,
    staging: &'a Staging,
    store: &'a Store,
) -> Result<StagedSource<'a>> {
    pull_verified(reg, reference, choice, staging, store).map_err(|e| match e {
        // Bytes that do not hash to their name came from the registry (or the path to it),
        // not from a damaged archive: say so.
        RemoteError::Core(
            c @ (airlock_core::Error::DigestMismatch { .. }
            | airlock_core::Error::DiffIdMismatch { .. }),
        ) => RemoteError::Corrupt {
            host: reg.host().to_string(),
            detail: c.to_string(),
        },
        other => other,
    })
}

fn pull_verified<'a>(
    reg: &Registry,
    reference: &Reference,
    choice: &PlatformChoice,
    staging: &'a Staging,
    store: &'a Store,
) -> Result<StagedSource<'a>> {
    let path = reference.path();
    let scope = format!("repository:{path}:pull");
    let wanted = reference
        .digest()
        .map(|d| d.to_string())
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".into());
    let (root_bytes, root_digest, root_type) =
        fetch_manifest(reg, path, &scope, &wanted, reference.digest())?;
    staging.write_bytes(&root_bytes)?;
    let root_desc = Descriptor::new(&root_type, root_digest.clone(), root_bytes.len() as u64);
    let name = if reference.tag().is_some() {
        vec![reference.clone()]
    } else {
        Vec::new()
    };
    let image = match spec::parse_document(&root_bytes, &root_digest.to_string())? {
        Document::Manifest(m) => {
            let p = fetch_platform(reg, path, &scope, &root_desc, *m, staging, store)?;
            SourceImage {
                names: name,
                root: root_desc,
                generated: false,
                id: p.manifest.config.digest.clone(),
                platforms: vec![p],
            }
        }
        Document::Index(index) => {
            let host = Platform::host();
            let picked: Vec<&Descriptor> = match choice {
                PlatformChoice::All => index.manifests.iter().collect(),
                PlatformChoice::Host | PlatformChoice::One(_) => {
                    let want = match choice {
                        PlatformChoice::One(p) => p.clone(),
                        _ => host,
                    };
                    let hit = index.manifests.iter().find(|d| {
                        d.platform.as_ref().is_some_and(|p| {
                            p.os == want.os
                                && p.architecture == want.architecture
                                && (want.variant.is_none() || p.variant == want.variant)
                        })
                    });
                    match hit {
                        Some(d) => vec![d],
                        None => {
                            let have: Vec<String> = index
                                .manifests
                                .iter()
                                .filter_map(|d| d.platform.as_ref().map(|p| p.display()))
                                .collect();
                            return Err(RemoteError::Core(airlock_core::Error::Usage(format!(
                                "{reference} has no {} image; it has: {}",
                                want.display(),
                                have.join(", ")
                            ))));
                        }
                    }
                }
            };
            let mut platforms = Vec::new();
            for child in &picked {
                let (bytes, digest, _) = fetch_manifest(
                    reg,
                    path,
                    &scope,
                    &child.digest.to_string(),
                    Some(&child.digest),
                )?;
                staging.write_bytes(&bytes)?;
                if let Document::Manifest(m) = spec::parse_document(&bytes, &digest.to_string())? {
                    platforms.push(fetch_platform(
                        reg, path, &scope, child, *m, staging, store,
                    )?);
                }
            }
            // Only a complete index is kept as the image; one platform is stored as itself,
            // never as a sparse index passed off as whole.
            if matches!(choice, PlatformChoice::All) && platforms.len() == index.manifests.len() {
                SourceImage {
                    names: name,
                    root: root_desc,
                    generated: false,
                    id: root_digest,
                    platforms,
                }
            } else {
                let p = platforms.remove(0);
                SourceImage {
                    names: name,
                    root: Descriptor::new(
                        &p.descriptor.media_type,
                        p.descriptor.digest.clone(),
                        p.descriptor.size,
                    ),
                    generated: false,
                    id: p.manifest.config.digest.clone(),
                    platforms: vec![p],
                }
            }
        }
    };
    Ok(StagedSource::new(staging, Some(store), vec![image]))
}

/// GET a manifest; its digest must match the one asked for and the one the registry states.
fn fetch_manifest(
    reg: &Registry,
    path: &str,
    scope: &str,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<(Vec<u8>, Digest, String)> {
    let r = reg.call(
        "GET",
        &format!("/v2/{path}/manifests/{reference}"),
        scope,
        &[("Accept", MANIFEST_ACCEPT.to_string())],
        None,
    )?;
    let stated = r
        .header("Docker-Content-Digest")
        .and_then(|d| d.parse::<Digest>().ok());
    let content_type = r.header("Content-Type").unwrap_or("").to_string();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader().take(16 << 20), &mut bytes).map_err(|e| {
        RemoteError::Io {
            context: format!("read manifest {path}:{reference}"),
            source: e,
        }
    })?;
    let actual = Digest::of(&bytes);
    for promised in expected.into_iter().chain(stated.as_ref()) {
        if promised != &actual {
            return Err(RemoteError::Core(airlock_core::Error::DigestMismatch {
                what: "manifest",
                path_in_archive: if reference.starts_with("sha256:") {
                    format!("{}/{path}@{reference}", reg.host())
                } else {
                    format!("{}/{path}:{reference}", reg.host())
                },
                expected: promised.clone(),
                actual,
            }));
        }
    }
    let media = super::manifest_content_type(&bytes, &content_type);
    Ok((bytes, actual, media))
}

/// Fetch a platform manifest's config and layers (layers in parallel), verifying diffIDs.
fn fetch_platform(
    reg: &Registry,
    path: &str,
    scope: &str,
    desc: &Descriptor,
    manifest: spec::Manifest,
    staging: &Staging,
    store: &Store,
) -> Result<PlatformManifest> {
    let config_bytes = if store.has_blob(&manifest.config.digest) {
        store.read_blob(&manifest.config.digest)?
    } else {
        let r = reg.call(
            "GET",
            &format!("/v2/{path}/blobs/{}", manifest.config.digest),
            scope,
            &[],
            None,
        )?;
        let mut reader = reg.body(r);
        let staged = staging.write_blob(
            &mut reader,
            Some(&manifest.config.digest),
            &format!("config {}", manifest.config.digest),
        )?;
        std::fs::read(staging.path_of(&staged.digest).expect("just staged")).map_err(|e| {
            RemoteError::Io {
                context: "read the staged config".into(),
                source: e,
            }
        })?
    };
    let config: ConfigView = spec::parse_json(
        &config_bytes,
        &manifest.config.digest.to_string(),
        "image config",
    )?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RemoteError::Core(airlock_core::Error::LayerCountMismatch {
            image: format!("{}/{path}@{}", reg.host(), desc.digest),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        }));
    }
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<RemoteError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_BLOBS.min(manifest.layers.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= manifest.layers.len() || failure.lock().map(|f| f.is_some()).unwrap_or(true)
                {
                    return;
                }
                if let Err(e) = fetch_layer(
                    reg,
                    path,
                    scope,
                    &manifest.layers[i],
                    &config.rootfs.diff_ids[i],
                    i,
                    staging,
                    store,
                ) {
                    if let Ok(mut f) = failure.lock() {
                        f.get_or_insert(e);
                    }
                    return;
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(PlatformManifest {
        descriptor: desc.clone(),
        manifest,
        diff_ids: config.rootfs.diff_ids.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn fetch_layer(
    reg: &Registry,
    path: &str,
    scope: &str,
    layer: &Descriptor,
    diff_id: &Digest,
    index: usize,
    staging: &Staging,
    store: &Store,
) -> Result<()> {
    if store.has_blob(&layer.digest) || staging.path_of(&layer.digest).is_some() {
        return Ok(()); // already here, verified when it arrived
    }
    if layer.urls.is_some() {
        return Ok(()); // a foreign layer: not distributed by this registry
    }
    let r = reg.call(
        "GET",
        &format!("/v2/{path}/blobs/{}", layer.digest),
        scope,
        &[],
        None,
    )?;
    let mut reader = reg.body(r);
    let label = format!("{}/{path} layer {}", reg.host(), layer.digest);
    let (_, actual_diff) = stage_layer(&mut reader, &label, &layer.digest, staging)?;
    if &actual_diff != diff_id {
        return Err(RemoteError::Core(airlock_core::Error::DiffIdMismatch {
            index,
            path_in_archive: label,
            expected: diff_id.clone(),
            actual: actual_diff,
        }));
    }
    Ok(())
}
