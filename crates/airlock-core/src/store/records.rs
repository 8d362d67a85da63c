//! Images as the store sees them: `index.json` descriptors grouped by root, with names.

use std::collections::BTreeMap;

use super::{group_by_root, NewImage, Store, ANNOTATION_GENERATED};
use crate::digest::Digest;
use crate::error::Result;
use crate::reference::Reference;
use crate::spec::{
    self, ConfigView, Descriptor, Document, Index, Manifest, Platform, ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
};

/// One image in the store: a manifest (or an index of manifests) and its names.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    /// Descriptor of the root manifest or index (no annotations).
    pub root: Descriptor,
    /// Every name pointing at it.
    pub names: Vec<Reference>,
    /// True when airlock generated the manifest (so there is no registry digest).
    pub generated: bool,
    /// The platform images present in the store (one for a plain manifest).
    pub platforms: Vec<PlatformImage>,
    /// How many manifests the root lists (1 for a manifest): more than `platforms.len()`
    /// for a sparse index, which is never passed off as complete.
    pub listed: usize,
}

/// One single-platform image: manifest and config.
#[derive(Clone, Debug)]
pub struct PlatformImage {
    /// Descriptor of the manifest.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The parsed config.
    pub config: ConfigView,
}

impl PlatformImage {
    /// True for a container image; false for an artifact (its config is no image config).
    pub fn is_image(&self) -> bool {
        self.manifest.artifact_type().is_none()
    }

    /// The platform, from the config.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.config.architecture.clone(),
            os: self.config.os.clone(),
            variant: self.config.variant.clone(),
            os_version: None,
        }
    }
}

impl ImageRecord {
    /// The platform image to use on this host: the image matching the host, else the first
    /// image, else (an artifact) the first manifest.
    pub fn primary(&self) -> &PlatformImage {
        let host = Platform::host();
        let images = || self.platforms.iter().filter(|p| p.is_image());
        images()
            .find(|p| host.matches(&p.platform()))
            .or_else(|| images().next())
            .unwrap_or(&self.platforms[0])
    }

    /// Docker's image ID: the config digest for a single-platform image, the index digest
    /// for a multi-platform one, the manifest digest for an artifact (artifacts share
    /// configs).
    pub fn id(&self) -> Digest {
        if spec::media_type::is_index(&self.root.media_type) || !self.platforms[0].is_image() {
            self.root.digest.clone()
        } else {
            self.platforms[0].manifest.config.digest.clone()
        }
    }

    /// The artifact type when this root holds no container image (a signature, an SBOM, a
    /// chart); `None` for an image, even one that carries attestations.
    pub fn artifact_type(&self) -> Option<String> {
        crate::graph::artifact_type_of(self.platforms.iter().map(|p| &p.manifest))
    }

    /// Fail, naming the artifact, unless this is a container image (`action`: "export").
    pub fn require_image(&self, action: &'static str) -> Result<()> {
        match self.artifact_type() {
            None => Ok(()),
            Some(artifact_type) => Err(crate::Error::NotAnImage {
                reference: self
                    .names
                    .first()
                    .map(|n| n.familiar())
                    .unwrap_or_else(|| self.root.digest.to_string()),
                artifact_type,
                action,
            }),
        }
    }

    /// True when every manifest the root lists is in the store.
    pub fn complete(&self) -> bool {
        self.platforms.len() == self.listed
    }

    /// The manifest this root refers to, when it is a referrer.
    pub fn subject(&self) -> Option<&Descriptor> {
        self.platforms
            .iter()
            .find(|p| p.descriptor.digest == self.root.digest)
            .and_then(|p| p.manifest.subject.as_ref())
    }

    /// `repo@digest` for each repository, when the manifest came from a registry.
    pub fn repo_digests(&self) -> Vec<String> {
        if self.generated {
            return Vec::new();
        }
        let mut v: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("{}@{}", n.familiar_repository(), self.root.digest))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl crate::graph::Candidate for ImageRecord {
    fn names(&self) -> &[Reference] {
        &self.names
    }
    fn root_digest(&self) -> &Digest {
        &self.root.digest
    }
    fn image_id(&self) -> Digest {
        self.id()
    }
    fn member_digests(&self) -> Vec<Digest> {
        crate::graph::member_digests(self.platforms.iter().map(|p| (&p.descriptor, &p.manifest)))
    }
    fn subject_digest(&self) -> Option<Digest> {
        crate::graph::subject_from(self.subject(), &self.names)
    }
}

/// What happened to one name on commit or tag.
#[derive(Clone, Debug)]
pub struct TagChange {
    /// The name (None for an untagged image).
    pub name: Option<Reference>,
    /// The image it now points at.
    pub image_id: Digest,
    /// The image it pointed at before, if it moved.
    pub moved_from: Option<Digest>,
}

/// The name recorded on a store descriptor.
pub(crate) fn descriptor_name(d: &Descriptor) -> Option<Reference> {
    d.annotation(ANNOTATION_IMAGE_NAME)
        .or_else(|| d.annotation(ANNOTATION_REF_NAME))
        .and_then(|n| Reference::parse(n).ok())
}

pub(crate) fn load_records(store: &Store, index: &Index) -> Result<Vec<ImageRecord>> {
    let mut out = Vec::new();
    for (digest, descs) in group_by_root(index) {
        let first = descs[0];
        let root = Descriptor::new(&first.media_type, digest.clone(), first.size);
        let names: Vec<Reference> = descs.iter().filter_map(|d| descriptor_name(d)).collect();
        let generated = descs
            .iter()
            .any(|d| d.annotation(ANNOTATION_GENERATED).is_some());
        let bytes = store.read_blob(&digest)?;
        let mut listed = 1;
        let platforms = match spec::parse_document(&bytes, &digest.to_string())? {
            Document::Manifest(m) => vec![platform_image(store, root.clone(), *m)?],
            Document::Index(idx) => {
                listed = idx.manifests.len();
                let mut v = Vec::new();
                for child in idx.manifests.iter().filter(|c| store.has_blob(&c.digest)) {
                    let b = store.read_blob(&child.digest)?;
                    if let Document::Manifest(m) =
                        spec::parse_document(&b, &child.digest.to_string())?
                    {
                        v.push(platform_image(store, child.clone(), *m)?);
                    }
                }
                v
            }
        };
        if platforms.is_empty() {
            continue;
        }
        out.push(ImageRecord {
            root,
            names,
            generated,
            platforms,
            listed,
        });
    }
    out.sort_by_key(|r| {
        r.names
            .first()
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("~{}", r.root.digest))
    });
    Ok(out)
}

fn platform_image(
    store: &Store,
    descriptor: Descriptor,
    manifest: Manifest,
) -> Result<PlatformImage> {
    // An artifact's config is whatever its type says (often `{}`, sometimes not JSON).
    let config = if manifest.artifact_type().is_some() {
        ConfigView::default()
    } else {
        let bytes = store.read_blob(&manifest.config.digest)?;
        spec::parse_json(&bytes, &manifest.config.digest.to_string(), "image config")?
    };
    Ok(PlatformImage {
        descriptor,
        manifest,
        config,
    })
}

pub(crate) fn resolve(mut images: Vec<ImageRecord>, query: &str) -> Result<ImageRecord> {
    let (i, _) = crate::graph::find(&images, query)?;
    Ok(images.swap_remove(i))
}

fn named_descriptor(root: &Descriptor, name: Option<&Reference>, generated: bool) -> Descriptor {
    let mut d = root.clone();
    let mut ann = BTreeMap::new();
    if let Some(n) = name {
        ann.insert(ANNOTATION_IMAGE_NAME.to_string(), n.to_string());
        ann.insert(ANNOTATION_REF_NAME.to_string(), n.to_string());
    }
    if generated {
        ann.insert(ANNOTATION_GENERATED.to_string(), "true".to_string());
    }
    d.annotations = (!ann.is_empty()).then_some(ann);
    d
}

/// Rewrite `index` so each new image carries its names; names that pointed elsewhere move,
/// and an image left with no name stays as an untagged (dangling) entry, as in docker.
pub(crate) fn apply_new_images(
    index: &mut Index,
    before: &[ImageRecord],
    images: &[NewImage],
) -> Vec<TagChange> {
    let id_of = |root: &Digest| {
        before
            .iter()
            .find(|r| &r.root.digest == root)
            .map(|r| r.id())
    };
    let mut changes = Vec::new();
    for img in images {
        if img.names.is_empty() {
            if !index.manifests.iter().any(|d| d.digest == img.root.digest) {
                index
                    .manifests
                    .push(named_descriptor(&img.root, None, img.generated));
            }
            changes.push(TagChange {
                name: None,
                image_id: img.id.clone(),
                moved_from: None,
            });
            continue;
        }
        for name in &img.names {
            let existing = index
                .manifests
                .iter()
                .position(|d| descriptor_name(d).as_ref() == Some(name));
            let mut moved_from = None;
            if let Some(pos) = existing {
                let old = index.manifests[pos].digest.clone();
                if old == img.root.digest {
                    changes.push(TagChange {
                        name: Some(name.clone()),
                        image_id: img.id.clone(),
                        moved_from: None,
                    });
                    continue;
                }
                let old_desc = index.manifests.remove(pos);
                moved_from = id_of(&old).or(Some(old.clone()));
                let still_named = index.manifests.iter().any(|d| d.digest == old);
                // The same image under another manifest (same config) is not worth keeping
                // as a dangling entry; a different image is, as docker does.
                if !still_named && moved_from.as_ref() != Some(&img.id) {
                    let generated = old_desc.annotation(ANNOTATION_GENERATED).is_some();
                    let bare = Descriptor::new(&old_desc.media_type, old.clone(), old_desc.size);
                    index
                        .manifests
                        .push(named_descriptor(&bare, None, generated));
                }
            }
            // A name replaces the untagged entry of the same image.
            index
                .manifests
                .retain(|d| !(d.digest == img.root.digest && descriptor_name(d).is_none()));
            index
                .manifests
                .push(named_descriptor(&img.root, Some(name), img.generated));
            changes.push(TagChange {
                name: Some(name.clone()),
                image_id: img.id.clone(),
                moved_from,
            });
        }
    }
    changes
}
