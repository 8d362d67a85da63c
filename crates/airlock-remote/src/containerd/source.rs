//! containerd as a copy source (`save containerd:NAME`, `copy containerd:NAME DST`): the
//! image's manifests and configs are read now, its layers when the copy engine reads them,
//! all from containerd's content store byte for byte (the digests it holds are kept). A
//! platform of an index whose content containerd does not have (it pulled one platform) is
//! left out, and the index stays the root, as the store keeps it.

use std::collections::BTreeMap;
use std::io::Read;

use airlock_core::spec::{self, Descriptor, Document, Platform};
use airlock_core::transport::{ImageSource, PlatformManifest, SourceImage};
use airlock_core::{Digest, Reference};
use tonic::Status;

use super::api;
use super::client::Client;
use crate::{RemoteError, Result};

/// Manifests, indexes and configs are read whole up to this size.
const SMALL: usize = 16 << 20;

/// Images read from containerd.
pub struct ContainerdSource {
    client: Client,
    images: Vec<SourceImage>,
    small: BTreeMap<Digest, Vec<u8>>,
}

impl ContainerdSource {
    /// The images `names` name in containerd, with the host's platform of an index (every
    /// platform containerd holds with `all_platforms`).
    pub fn open(client: Client, names: &[String], all_platforms: bool) -> Result<Self> {
        let mut source = ContainerdSource {
            client,
            images: Vec::new(),
            small: BTreeMap::new(),
        };
        for name in names {
            let reference = Reference::parse(name)?;
            let full = reference.to_string();
            let got: std::result::Result<api::ImageResponse, Box<Status>> = source.client.unary(
                "/containerd.services.images.v1.Images/Get",
                api::GetImageRequest { name: full.clone() },
                None,
            );
            let image = match got {
                Ok(r) => r.image,
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(source.client.refused(&format!("look up {full}"), &s)),
            };
            let Some(target) = image.and_then(|i| i.target) else {
                return Err(RemoteError::Core(airlock_core::Error::Usage(format!(
                    "containerd (namespace {}) has no image {full}; `ctr -n {} images ls` lists what it has",
                    source.client.namespace(),
                    source.client.namespace()
                ))));
            };
            let digest: Digest = target.digest.parse().map_err(|_| {
                RemoteError::Protocol(format!(
                    "containerd named {full}'s target {:?}, which is no digest",
                    target.digest
                ))
            })?;
            let root = Descriptor::new(&target.media_type, digest.clone(), target.size as u64);
            let img = source.image(reference, root, all_platforms)?;
            source.images.push(img);
        }
        Ok(source)
    }

    fn small(&mut self, digest: &Digest) -> Result<Vec<u8>> {
        if let Some(b) = self.small.get(digest) {
            return Ok(b.clone());
        }
        let bytes = self.client.read_small(&digest.to_string(), SMALL)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RemoteError::Core(airlock_core::Error::DigestMismatch {
                what: "blob",
                path_in_archive: format!("{digest} in containerd"),
                expected: digest.clone(),
                actual,
            }));
        }
        self.small.insert(digest.clone(), bytes.clone());
        Ok(bytes)
    }

    fn image(&mut self, name: Reference, root: Descriptor, all: bool) -> Result<SourceImage> {
        let bytes = self.small(&root.digest)?;
        let mut platforms = Vec::new();
        match spec::parse_document(&bytes, &root.digest.to_string())? {
            Document::Manifest(m) => platforms.push(self.platform(&root, *m)?),
            Document::Index(index) => {
                let host = Platform::host();
                for child in &index.manifests {
                    let wanted = all || child.platform.as_ref().is_none_or(|p| host.matches(p));
                    if !wanted || self.client.info(&child.digest.to_string())?.is_none() {
                        continue;
                    }
                    let bytes = self.small(&child.digest)?;
                    if let Document::Manifest(m) =
                        spec::parse_document(&bytes, &child.digest.to_string())?
                    {
                        platforms.push(self.platform(child, *m)?);
                    }
                }
                if platforms.is_empty() {
                    return Err(RemoteError::Core(airlock_core::Error::Usage(format!(
                        "containerd holds none of {name}'s platforms for {} (it keeps only what it pulled); --all-platforms takes any it has",
                        host.display()
                    ))));
                }
            }
        }
        Ok(SourceImage {
            names: vec![name],
            root,
            generated: false,
            platforms,
        })
    }

    fn platform(
        &mut self,
        desc: &Descriptor,
        manifest: spec::Manifest,
    ) -> Result<PlatformManifest> {
        let bytes = self.small(&manifest.config.digest)?;
        if manifest.artifact_type().is_some() {
            return Ok(PlatformManifest {
                descriptor: desc.clone(),
                manifest,
                diff_ids: Vec::new(),
            });
        }
        let config = spec::parse_config(&bytes, &manifest.config.digest.to_string())?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RemoteError::Core(airlock_core::Error::LayerCountMismatch {
                image: format!("{}@{} in containerd", desc.digest, manifest.config.digest),
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
}

impl ImageSource for ContainerdSource {
    fn images(&self) -> &[SourceImage] {
        &self.images
    }

    fn open_blob(&self, digest: &Digest) -> airlock_core::Result<Box<dyn Read + Send + '_>> {
        if let Some(b) = self.small.get(digest) {
            return Ok(Box::new(std::io::Cursor::new(b.clone())));
        }
        Ok(Box::new(self.client.read_stream(&digest.to_string())))
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.small.contains_key(digest)
            || matches!(self.client.info(&digest.to_string()), Ok(Some(_)))
    }

    fn diff_ids_verified(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "containerd at {} (namespace {})",
            self.client.address(),
            self.client.namespace()
        )
    }
}
