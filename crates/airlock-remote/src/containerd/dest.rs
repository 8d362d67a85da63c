//! containerd as a copy destination (`load --into containerd`, `copy NAME containerd:`):
//! blobs go into its content store unless it has them (its `Info` answers), manifests and
//! indexes byte for byte (registry digests survive), then the images are named and unpacked
//! for the snapshotter so a pod starts without a registry.
//!
//! Everything is written under a lease, so containerd's garbage collector cannot take a
//! layer before the manifest that needs it is labelled; the `containerd.io/gc.ref.*`
//! labels then tie each image to its content and snapshots, and the lease goes. An image is
//! named only once all of it is in place: a failure leaves no half image under its name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use airlock_core::blob_reader::BlobReader;
use airlock_core::spec::{Descriptor, Platform};
use airlock_core::store::TagChange;
use airlock_core::transport::{ImageDestination, SourceImage};
use airlock_core::Digest;

use super::api;
use super::client::Client;
use crate::RemoteError;

/// What a load into containerd did, for the line the CLI prints.
#[derive(Debug, Default, Clone)]
pub struct ContainerdReport {
    /// Blobs sent.
    pub sent: usize,
    /// Bytes of blob data sent.
    pub bytes_sent: u64,
    /// Blobs containerd already had.
    pub existing: usize,
    /// Layers unpacked into snapshots (already unpacked ones are not counted).
    pub unpacked: usize,
    /// Image names created or moved.
    pub named: Vec<String>,
}

/// containerd as a destination.
pub struct ContainerdDestination {
    client: Client,
    lease: String,
    snapshotter: String,
    unpack: bool,
    sent: AtomicUsize,
    existing: AtomicUsize,
    bytes: AtomicU64,
    report: Arc<Mutex<ContainerdReport>>,
}

fn core(e: RemoteError) -> airlock_core::Error {
    airlock_core::Error::Usage(e.to_string())
}

impl ContainerdDestination {
    /// A destination writing through `client` and unpacking for `snapshotter` (none when
    /// `unpack` is false).
    pub fn new(client: Client, snapshotter: &str, unpack: bool) -> crate::Result<Self> {
        let lease = format!("airlock-load-{}-{}", std::process::id(), nanos());
        client.create_lease(&lease)?;
        Ok(ContainerdDestination {
            client,
            lease,
            snapshotter: snapshotter.to_string(),
            unpack,
            sent: AtomicUsize::new(0),
            existing: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            report: Arc::default(),
        })
    }

    /// Where the report is written when the copy finishes.
    pub fn report(&self) -> Arc<Mutex<ContainerdReport>> {
        self.report.clone()
    }

    /// Labels that make containerd's garbage collector keep what `img` needs.
    fn label_references(&self, img: &SourceImage) -> crate::Result<()> {
        let is_index = img
            .platforms
            .iter()
            .all(|p| p.descriptor.digest != img.root.digest);
        if is_index {
            let mut labels = HashMap::new();
            for (i, p) in img.platforms.iter().enumerate() {
                labels.insert(
                    format!("containerd.io/gc.ref.content.m.{i}"),
                    p.descriptor.digest.to_string(),
                );
            }
            self.client.label(&img.root.digest.to_string(), labels)?;
        }
        for p in &img.platforms {
            let mut labels = HashMap::new();
            labels.insert(
                "containerd.io/gc.ref.content.config".to_string(),
                p.manifest.config.digest.to_string(),
            );
            for (i, l) in p.manifest.layers.iter().enumerate() {
                if l.urls.is_none() {
                    labels.insert(
                        format!("containerd.io/gc.ref.content.l.{i}"),
                        l.digest.to_string(),
                    );
                }
            }
            self.client
                .label(&p.descriptor.digest.to_string(), labels)?;
        }
        Ok(())
    }

    /// Unpack the platform of `img` this host runs, as containerd's own client does: one
    /// snapshot per layer, named by its chain ID, each applied by containerd's diff service.
    fn unpack_image(&self, img: &SourceImage) -> crate::Result<usize> {
        let host = Platform::host();
        let Some(p) = img.platforms.iter().find(|p| {
            p.manifest.artifact_type().is_none()
                && p.descriptor
                    .platform
                    .as_ref()
                    .is_none_or(|pl| host.matches(pl))
        }) else {
            return Ok(0);
        };
        let mut unpacked = 0;
        let mut parent = String::new();
        for (i, layer) in p.manifest.layers.iter().enumerate() {
            let Some(chain) = airlock_core::digest::chain_id(&p.diff_ids[..=i]) else {
                break;
            };
            let chain = chain.to_string();
            if !self.snapshot_exists(&chain)? {
                self.apply_layer(layer, &p.diff_ids[i], &chain, &parent)?;
                unpacked += 1;
            }
            let mut labels = HashMap::new();
            labels.insert(
                "containerd.io/uncompressed".to_string(),
                p.diff_ids[i].to_string(),
            );
            self.client.label(&layer.digest.to_string(), labels)?;
            parent = chain;
        }
        if !parent.is_empty() {
            let mut labels = HashMap::new();
            labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", self.snapshotter),
                parent,
            );
            self.client
                .label(&p.manifest.config.digest.to_string(), labels)?;
        }
        Ok(unpacked)
    }

    fn snapshot_exists(&self, key: &str) -> crate::Result<bool> {
        let r: Result<api::Empty, Box<tonic::Status>> = self.client.unary(
            "/containerd.services.snapshots.v1.Snapshots/Stat",
            api::StatSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_string(),
            },
            None,
        );
        match r {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(self.snapshotter_error(&s)),
        }
    }

    fn snapshotter_error(&self, s: &tonic::Status) -> RemoteError {
        let mut e = self
            .client
            .refused(&format!("use the {} snapshotter", self.snapshotter), s);
        if let RemoteError::Containerd { message, .. } = &mut e {
            if message.contains("not loaded")
                || message.contains("not found")
                || message.contains("not implemented")
            {
                message.push_str("; choose another with --snapshotter (native works everywhere)");
            }
        }
        e
    }

    fn apply_layer(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        chain: &str,
        parent: &str,
    ) -> crate::Result<()> {
        let key = format!("extract-{}-{chain}", nanos());
        let lease = Some(self.lease.as_str());
        let prepared: api::PrepareSnapshotResponse = self
            .client
            .unary(
                "/containerd.services.snapshots.v1.Snapshots/Prepare",
                api::PrepareSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: key.clone(),
                    parent: parent.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            )
            .map_err(|s| self.snapshotter_error(&s))?;
        let remove = || {
            let _: Result<api::Empty, Box<tonic::Status>> = self.client.unary(
                "/containerd.services.snapshots.v1.Snapshots/Remove",
                api::RemoveSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: key.clone(),
                },
                lease,
            );
        };
        let applied: Result<api::ApplyResponse, Box<tonic::Status>> = self.client.unary(
            "/containerd.services.diff.v1.Diff/Apply",
            api::ApplyRequest {
                diff: Some(api::Descriptor {
                    media_type: layer.media_type.clone(),
                    digest: layer.digest.to_string(),
                    size: layer.size as i64,
                    annotations: HashMap::new(),
                }),
                mounts: prepared.mounts,
            },
            lease,
        );
        let applied = match applied {
            Ok(a) => a,
            Err(s) => {
                remove();
                return Err(self
                    .client
                    .refused(&format!("unpack layer {}", layer.digest), &s));
            }
        };
        // containerd reports the digest of what it unpacked: the layer's diffID, or not it.
        let got = applied.applied.map(|d| d.digest).unwrap_or_default();
        if got != diff_id.to_string() {
            remove();
            return Err(RemoteError::Containerd {
                address: self.client.address().to_string(),
                doing: format!("unpack layer {}", layer.digest),
                message: format!("it unpacked content {got}, not the config's diffID {diff_id}"),
            });
        }
        let committed: Result<api::Empty, Box<tonic::Status>> = self.client.unary(
            "/containerd.services.snapshots.v1.Snapshots/Commit",
            api::CommitSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                name: chain.to_string(),
                key: key.clone(),
                labels: HashMap::new(),
            },
            lease,
        );
        match committed {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                remove(); // unpacked meanwhile by someone else
                Ok(())
            }
            Err(s) => {
                remove();
                Err(self
                    .client
                    .refused(&format!("commit the snapshot of {}", layer.digest), &s))
            }
        }
    }

    /// Point `name` at `img`'s root, creating or moving it.
    fn name_image(&self, name: &str, img: &SourceImage) -> crate::Result<()> {
        let target = api::Descriptor {
            media_type: img.root.media_type.clone(),
            digest: img.root.digest.to_string(),
            size: img.root.size as i64,
            annotations: HashMap::new(),
        };
        let image = api::Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(target),
        };
        let created: Result<api::ImageResponse, Box<tonic::Status>> = self.client.unary(
            "/containerd.services.images.v1.Images/Create",
            api::CreateImageRequest {
                image: Some(image.clone()),
            },
            None,
        );
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                let updated: Result<api::ImageResponse, Box<tonic::Status>> = self.client.unary(
                    "/containerd.services.images.v1.Images/Update",
                    api::UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(api::FieldMask {
                            paths: vec!["target".into()],
                        }),
                    },
                    None,
                );
                updated
                    .map(|_| ())
                    .map_err(|s| self.client.refused(&format!("move {name}"), &s))
            }
            Err(s) => Err(self.client.refused(&format!("create image {name}"), &s)),
        }
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Drop for ContainerdDestination {
    fn drop(&mut self) {
        // What was written stays only if an image or label holds it.
        let _ = self.client.delete_lease(&self.lease);
    }
}

impl ImageDestination for ContainerdDestination {
    fn describe(&self) -> String {
        format!(
            "containerd at {} (namespace {})",
            self.client.address(),
            self.client.namespace()
        )
    }

    fn parallelism(&self) -> usize {
        3
    }

    fn needs_plan(&self) -> bool {
        true // blobs go by digest, so a streaming archive is staged first
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        // A failed lookup counts as absent: the write then says what is wrong.
        let there = matches!(self.client.info(&digest.to_string()), Ok(Some(_)));
        if there {
            self.existing.fetch_add(1, Ordering::Relaxed);
        }
        there
    }

    fn put_blob(&self, blob: &Descriptor, data: &mut BlobReader<'_>) -> airlock_core::Result<()> {
        self.client
            .write(&blob.digest.to_string(), blob.size, data, &self.lease)
            .map_err(core)?;
        // containerd checked the digest at its commit; the reader checked it too.
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(blob.size, Ordering::Relaxed);
        Ok(())
    }

    fn put_unnamed_blob(
        &self,
        path_hint: &str,
        _size: u64,
        _data: &mut BlobReader<'_>,
    ) -> airlock_core::Result<Digest> {
        Err(airlock_core::Error::Usage(format!(
            "{path_hint}: containerd takes blobs by digest; the archive must be staged first"
        )))
    }

    fn finish(self: Box<Self>, images: &[SourceImage]) -> airlock_core::Result<Vec<TagChange>> {
        let mut unpacked = 0;
        for img in images {
            self.label_references(img).map_err(core)?;
            if self.unpack && img.artifact_type().is_none() {
                unpacked += self.unpack_image(img).map_err(core)?;
            }
        }
        let mut changes = Vec::new();
        let mut named = Vec::new();
        for img in images {
            for name in &img.names {
                // Fully qualified, as `ctr images import` names them
                // (`docker.io/library/redis:alpine`).
                let full = name.to_string();
                self.name_image(&full, img).map_err(core)?;
                named.push(full);
                changes.push(TagChange {
                    name: Some(name.clone()),
                    image_id: img.id(),
                    moved_from: None,
                });
            }
        }
        if let Ok(mut r) = self.report.lock() {
            *r = ContainerdReport {
                sent: self.sent.load(Ordering::Relaxed),
                bytes_sent: self.bytes.load(Ordering::Relaxed),
                existing: self.existing.load(Ordering::Relaxed),
                unpacked,
                named,
            };
        }
        Ok(changes)
    }
}
