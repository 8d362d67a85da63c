//! `airlock copy SRC DST` and the transport names, spelled as skopeo spells them:
//! `store:NAME`, `docker-archive:PATH[:NAME]`, `oci-archive:PATH[:NAME]`, `oci:DIR[:NAME]`,
//! `docker-daemon:NAME`. A bare name means the store.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use airlock_core::archive::writer::{ArchiveFormat, ArchiveWriter};
use airlock_core::archive::ArchiveSource;
use airlock_core::compression::Compression;
use airlock_core::store::{Staging, Store, TagChange};
use airlock_core::transport::ocidir::OciDirDestination;
use airlock_core::transport::store::{StoreDestination, StoreSource};
use airlock_core::transport::{copy_images, select, ImageSource, SourceImage};
use airlock_core::Reference;
use airlock_remote::engine::{copy_into_engine, engine_source};
use airlock_remote::Engine;

use crate::commands::report_moves;
use crate::hints::UsageError;
use crate::registry::{push_images, NetOptions, RegistryTarget};
use crate::sink;

/// Where images come from or go to.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    /// The embedded store, optionally one name in it.
    Store(Option<String>),
    /// A docker-archive tar (what `docker save` writes; we write the hybrid form).
    DockerArchive(PathBuf, Option<String>),
    /// An OCI archive tar.
    OciArchive(PathBuf, Option<String>),
    /// An OCI layout directory.
    OciDir(PathBuf, Option<String>),
    /// The Docker Engine.
    DockerDaemon(Option<String>),
    /// A registry (`docker://`).
    Registry(String),
}

impl Endpoint {
    /// Parse a transport-prefixed name.
    pub fn parse(s: &str) -> Result<Endpoint> {
        let path_and_ref = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
                _ => (PathBuf::from(rest.trim_end_matches(':')), None),
            }
        };
        let opt = |r: &str| (!r.is_empty()).then(|| r.to_string());
        Ok(if let Some(r) = s.strip_prefix("store:") {
            Endpoint::Store(opt(r))
        } else if let Some(r) = s.strip_prefix("docker-archive:") {
            let (p, n) = path_and_ref(r);
            Endpoint::DockerArchive(p, n)
        } else if let Some(r) = s.strip_prefix("oci-archive:") {
            let (p, n) = path_and_ref(r);
            Endpoint::OciArchive(p, n)
        } else if let Some(r) = s.strip_prefix("oci:") {
            let (p, n) = path_and_ref(r);
            Endpoint::OciDir(p, n)
        } else if let Some(r) = s.strip_prefix("docker-daemon:") {
            Endpoint::DockerDaemon(opt(r))
        } else if let Some(r) = s.strip_prefix("docker://") {
            Endpoint::Registry(r.to_string())
        } else if s.contains("://")
            || s.split_once(':').is_some_and(|(p, rest)| {
                !p.contains('/') && (rest.starts_with('/') || rest.starts_with('.'))
            })
        {
            bail!(UsageError(format!(
                "{s}: unknown transport; use store:, docker-archive:, oci-archive:, oci: or docker-daemon:"
            )))
        } else {
            Endpoint::Store(opt(s))
        })
    }
}

/// Open a source: streaming ones are read (and verified) into `staging` now.
pub fn open_source<'a>(
    endpoint: &Endpoint,
    store: &'a Store,
    staging: &'a Staging,
    net: &NetOptions,
) -> Result<(Box<dyn ImageSource + 'a>, Vec<SourceImage>)> {
    let (source, wanted): (Box<dyn ImageSource + 'a>, Option<String>) = match endpoint {
        Endpoint::Store(name) => {
            if name.is_none() {
                bail!(UsageError(
                    "name the image: store:NAME (or just NAME)".into()
                ));
            }
            (Box::new(StoreSource::new(store)?), name.clone())
        }
        Endpoint::DockerArchive(p, n) | Endpoint::OciArchive(p, n) => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            (
                Box::new(ArchiveSource::read_stream(
                    Box::new(f),
                    staging,
                    Some(store),
                )?),
                n.clone(),
            )
        }
        Endpoint::OciDir(p, n) => (
            Box::new(ArchiveSource::read_dir(p, staging, Some(store))?),
            n.clone(),
        ),
        Endpoint::Registry(r) => {
            let reference = Reference::parse(r)?;
            let reg = net.registry_for(reference.domain())?;
            let choice = airlock_remote::registry::pull::PlatformChoice::Host;
            (
                Box::new(airlock_remote::registry::pull::pull(
                    &reg, &reference, &choice, staging, store,
                )?),
                None,
            )
        }
        Endpoint::DockerDaemon(name) => {
            let Some(name) = name else {
                bail!(UsageError("name the image: docker-daemon:NAME".into()));
            };
            let engine = Engine::from_env()?;
            (
                Box::new(engine_source(
                    &engine,
                    std::slice::from_ref(name),
                    staging,
                    Some(store),
                )?),
                Some(name.clone()),
            )
        }
    };
    let images = match wanted {
        Some(n) => select(source.images(), &[n], &[], false)?,
        None => source.images().to_vec(),
    };
    Ok((source, images))
}

/// Give the images the destination's name, if it has one (only for a single image).
fn rename(images: &mut [SourceImage], name: &Option<String>) -> Result<()> {
    if let Some(n) = name {
        if images.len() != 1 {
            bail!(UsageError(format!(
                "the source holds {} images; a destination name fits only one",
                images.len()
            )));
        }
        images[0].names = vec![Reference::parse(n)?];
    }
    Ok(())
}

/// Copy `images` from `source` to `dest`; returns lines to print.
pub fn copy_to(
    dest: &Endpoint,
    store: &Store,
    staging: &Staging,
    source: &dyn ImageSource,
    mut images: Vec<SourceImage>,
    net: &NetOptions,
) -> Result<Vec<String>> {
    let archive =
        |path: &Path, format: ArchiveFormat, images: &[SourceImage]| -> Result<Vec<String>> {
            sink::write_output(Some(path.to_path_buf()), "an archive", |out| {
                let writer = ArchiveWriter::new(out, format, Compression::None, None, 1)?;
                copy_images(source, images, Box::new(writer))?;
                Ok(())
            })?;
            Ok(images
                .iter()
                .flat_map(|i| i.names.iter().map(|n| format!("Wrote {}", n.familiar())))
                .collect())
        };
    match dest {
        Endpoint::Store(name) => {
            rename(&mut images, name)?;
            let changes = copy_images(
                source,
                &images,
                Box::new(StoreDestination::new(store, staging)),
            )?;
            Ok(loaded_lines(&changes))
        }
        Endpoint::DockerArchive(p, n) => {
            rename(&mut images, n)?;
            archive(p, ArchiveFormat::Docker, &images)
        }
        Endpoint::OciArchive(p, n) => {
            rename(&mut images, n)?;
            archive(p, ArchiveFormat::Oci, &images)
        }
        Endpoint::OciDir(p, n) => {
            let mut dest = OciDirDestination::new(p);
            if let Some(name) = n {
                if images.len() != 1 {
                    bail!(UsageError(format!(
                        "the source holds {} images; a destination name fits only one",
                        images.len()
                    )));
                }
                // skopeo's oci:DIR:NAME: NAME is the layout's ref.name, kept as written.
                dest = dest.with_ref_name(name);
            }
            let changes = copy_images(source, &images, Box::new(dest))?;
            Ok(n.iter()
                .map(|n| format!("Wrote {n} to {}", p.display()))
                .chain(
                    n.is_none()
                        .then(|| loaded_lines(&changes))
                        .into_iter()
                        .flatten(),
                )
                .collect())
        }
        Endpoint::DockerDaemon(n) => {
            rename(&mut images, n)?;
            let engine = Engine::from_env()?;
            Ok(copy_into_engine(&engine, source, &images)?)
        }
        Endpoint::Registry(r) => {
            let target = RegistryTarget::parse(r)?;
            push_images(source, &images, &target, net)
        }
    }
}

/// "Loaded image" lines, and a note for each name that moved.
pub fn loaded_lines(changes: &[TagChange]) -> Vec<String> {
    report_moves(changes);
    changes
        .iter()
        .map(|c| match &c.name {
            Some(n) => format!("Loaded image: {}", n.familiar()),
            None => format!("Loaded image ID: {}", c.image_id),
        })
        .collect()
}

/// `airlock copy SRC DST`.
pub fn copy(store_dir: &Path, src: &str, dst: &str, quiet: bool, net: &NetOptions) -> Result<()> {
    let src = Endpoint::parse(src)?;
    let dst = Endpoint::parse(dst)?;
    let store = Store::open(store_dir)?;
    let staging = store.staging()?;
    let (source, images) = open_source(&src, &store, &staging, net)?;
    let lines = copy_to(&dst, &store, &staging, source.as_ref(), images, net)?;
    if !quiet {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_style_names() {
        assert_eq!(
            Endpoint::parse("redis:alpine").unwrap(),
            Endpoint::Store(Some("redis:alpine".into()))
        );
        assert_eq!(
            Endpoint::parse("store:redis").unwrap(),
            Endpoint::Store(Some("redis".into()))
        );
        assert_eq!(
            Endpoint::parse("docker-archive:/tmp/x.tar:app:1").unwrap(),
            Endpoint::DockerArchive("/tmp/x.tar".into(), Some("app:1".into()))
        );
        assert_eq!(
            Endpoint::parse("oci:/tmp/d").unwrap(),
            Endpoint::OciDir("/tmp/d".into(), None)
        );
        assert_eq!(
            Endpoint::parse("docker-daemon:busybox:1").unwrap(),
            Endpoint::DockerDaemon(Some("busybox:1".into()))
        );
        assert_eq!(
            Endpoint::parse("docker://x.io/y:1").unwrap(),
            Endpoint::Registry("x.io/y:1".into())
        );
        assert!(Endpoint::parse("dir-thing:/x").is_err());
        assert_eq!(
            Endpoint::parse("my-app:1").unwrap(),
            Endpoint::Store(Some("my-app:1".into()))
        );
    }
}
