//! Filesystem snapshots into the store: `import` makes a tar or a directory into a
//! single-layer image with the config `docker import` builds.

use std::io::Read;
use std::path::PathBuf;

use crate::archive::sniff;
use crate::compression::{self, Compression};
use crate::error::{Error, Result};
use crate::layer::dirtar::{write_dir_tar, DirTarOptions};
use crate::reference::Reference;
use crate::spec::{media_type, Descriptor, Manifest, Platform};
use crate::store::{NewImage, StagedBlob, Staging, Store, TagChange};

/// How to build an imported image.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Dockerfile instructions (`-c`), applied in order.
    pub changes: Vec<String>,
    /// The history comment; default `Imported from <source>`.
    pub message: Option<String>,
    /// Platform recorded in the config; default the host's.
    pub platform: Option<Platform>,
    /// Import even when the input looks like an image archive.
    pub force: bool,
    /// How the source is named in the default message (`-` for stdin).
    pub source_label: String,
}

/// What an import made.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The new image's ID (its config digest).
    pub id: crate::Digest,
    /// What happened to the name, if one was given.
    pub changes: Vec<TagChange>,
}

/// Where the filesystem comes from.
pub enum ImportSource {
    /// A tar stream, plain or gzip/zstd/xz/bzip2 compressed.
    Tar(Box<dyn Read + Send>),
    /// A directory (a chroot, an unpacked rootfs).
    Dir(PathBuf),
}

/// Make a single-layer image from a filesystem tar or directory, with the config `docker
/// import` builds, and record it under `name`.
pub fn import(
    store: &Store,
    source: ImportSource,
    name: Option<Reference>,
    opts: &ImportOptions,
) -> Result<Imported> {
    let staging = store.staging()?;
    let layer = match source {
        ImportSource::Tar(input) => stage_tar(&staging, input, opts.force)?,
        ImportSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(Error::Usage(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            staging.write_with(|w| {
                write_dir_tar(&dir, w, &DirTarOptions::default())?;
                Ok(())
            })?
        }
    };
    let diff_id = layer.digest.clone();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let message = opts
        .message
        .clone()
        .unwrap_or_else(|| format!("Imported from {}", opts.source_label));
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut container_config = serde_json::Map::new();
    crate::changes::apply_changes(&mut container_config, &opts.changes)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let mut config = serde_json::Map::new();
    config.insert("architecture".into(), platform.architecture.clone().into());
    config.insert("os".into(), platform.os.clone().into());
    if let Some(v) = &platform.variant {
        config.insert("variant".into(), v.clone().into());
    }
    config.insert("created".into(), now.clone().into());
    config.insert("comment".into(), message.clone().into());
    config.insert("config".into(), serde_json::Value::Object(container_config));
    config.insert(
        "rootfs".into(),
        serde_json::json!({"type": "layers", "diff_ids": [diff_id.to_string()]}),
    );
    config.insert(
        "history".into(),
        serde_json::json!([{"created": now, "comment": message}]),
    );
    let config_bytes = serde_json::to_vec(&serde_json::Value::Object(config))
        .map_err(|e| Error::Usage(e.to_string()))?;
    let config_blob = staging.write_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: Descriptor::new(
            media_type::OCI_CONFIG,
            config_blob.digest.clone(),
            config_blob.size,
        ),
        layers: vec![Descriptor::new(
            media_type::OCI_LAYER,
            layer.digest.clone(),
            layer.size,
        )],
        annotations: None,
        artifact_type: None,
        subject: None,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
    let manifest_blob = staging.write_bytes(&manifest_bytes)?;
    let new = NewImage {
        root: Descriptor::new(
            media_type::OCI_MANIFEST,
            manifest_blob.digest,
            manifest_blob.size,
        ),
        names: name.into_iter().collect(),
        generated: true,
        id: config_blob.digest.clone(),
    };
    let changes = store.commit(&staging, &[new])?;
    Ok(Imported {
        id: config_blob.digest,
        changes,
    })
}

/// Stage a filesystem tar as an uncompressed layer, refusing image archives up front.
fn stage_tar(staging: &Staging, input: Box<dyn Read + Send>, force: bool) -> Result<StagedBlob> {
    let (codec, decoded) =
        compression::auto_decoder(input).map_err(|e| Error::stream("read the input", e))?;
    let mut ahead = compression::ReadAhead::new(decoded, 1 << 20, 4);
    let (head, mut rest) =
        compression::peek(&mut ahead, 64 * 1024).map_err(|e| Error::stream("read the input", e))?;
    if !sniff::is_tar_header(&head) {
        return Err(Error::NotATar {
            looks_like: sniff::describe_non_tar(&head, head.len()),
        });
    }
    if !force {
        let names = sniff::first_entry_names(&head, 16);
        let archive_markers = names
            .iter()
            .map(|n| crate::layer::normalize_path(n))
            .any(|n| {
                matches!(
                    n.as_str(),
                    "manifest.json" | "oci-layout" | "index.json" | "repositories"
                ) || n.starts_with("blobs/sha256/")
            });
        let all_archive_names = !names.is_empty()
            && names.iter().all(|n| {
                let p = crate::layer::normalize_path(n);
                sniff::classify(&p, n.ends_with('/')) != sniff::EntryKind::Foreign
            });
        if archive_markers || all_archive_names {
            let dialect = if names
                .iter()
                .any(|n| n.contains("oci-layout") || n.contains("blobs/"))
            {
                "OCI layout"
            } else {
                "docker save format"
            };
            return Err(Error::ImageArchiveNotSnapshot {
                dialect: dialect.to_string(),
            });
        }
    }
    staging
        .write_blob(&mut rest, None, "the input")
        .map_err(|e| match e {
            Error::Stream { context, source } if codec != Compression::None => Error::Decompress {
                codec: codec.name(),
                detail: format!("{context}: {source}"),
            },
            other => other,
        })
}

/// Parse `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        }),
        _ => Err(Error::Usage(format!(
            "platform '{s}' is not os/arch[/variant] (for example linux/arm64/v8)"
        ))),
    }
}
