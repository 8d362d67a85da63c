//! Fetching the small documents of a registry image up front: manifests (checked against
//! the digest asked for and the one the registry states) and configs (against the digest
//! their manifest names). Layers are left for the copy engine.

use std::collections::BTreeMap;
use std::io::Read;

use airlock_core::spec::{self, ConfigView, Descriptor};
use airlock_core::store::Store;
use airlock_core::transport::PlatformManifest;
use airlock_core::Digest;

use super::{Registry, MANIFEST_ACCEPT};
use crate::{RemoteError, Result};

/// GET a manifest; its digest must match the one asked for and the one the registry states.
pub(super) fn fetch_manifest(
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
    r.into_reader()
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| RemoteError::Io {
            context: format!("read manifest {path}:{reference}"),
            source: e,
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

/// A platform manifest with its config fetched (and checked against its digest); its
/// layers are left for the copy engine.
pub(super) fn platform(
    reg: &Registry,
    path: &str,
    scope: &str,
    desc: &Descriptor,
    manifest: spec::Manifest,
    small: &mut BTreeMap<Digest, Vec<u8>>,
    store: Option<&Store>,
) -> Result<PlatformManifest> {
    let cfg = &manifest.config.digest;
    // A config the store holds was verified when it arrived: not fetched again.
    let bytes = match store.filter(|s| s.has_blob(cfg)) {
        Some(s) => s.read_blob(cfg)?,
        None => {
            let r = reg.call("GET", &format!("/v2/{path}/blobs/{cfg}"), scope, &[], None)?;
            let mut bytes = Vec::new();
            r.into_reader()
                .take(64 << 20)
                .read_to_end(&mut bytes)
                .map_err(|e| RemoteError::Io {
                    context: format!("read config {cfg}"),
                    source: e,
                })?;
            bytes
        }
    };
    let actual = Digest::of(&bytes);
    if &actual != cfg {
        return Err(RemoteError::Core(airlock_core::Error::DigestMismatch {
            what: "config",
            path_in_archive: format!("{}/{path} config", reg.host()),
            expected: cfg.clone(),
            actual,
        }));
    }
    if manifest.artifact_type().is_some() {
        // An artifact: its config is whatever its type says; there are no diffIDs.
        small.insert(cfg.clone(), bytes);
        return Ok(PlatformManifest {
            descriptor: desc.clone(),
            manifest,
            diff_ids: Vec::new(),
        });
    }
    let config: ConfigView = spec::parse_config(&bytes, &cfg.to_string())?;
    small.insert(cfg.clone(), bytes);
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RemoteError::Core(airlock_core::Error::LayerCountMismatch {
            image: format!("{}/{path}@{}", reg.host(), desc.digest),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        }));
    }
    Ok(PlatformManifest {
        descriptor: desc.clone(),
        manifest,
        diff_ids: config.rootfs.diff_ids,
    })
}
