//! Hybrid archives (`manifest.json` beside an OCI layout): each `index.json` root resolved
//! on its own, then matched to the `manifest.json` entries docker reads.

use super::{
    check_named_digest, from_docker_entry, from_oci_descriptor, merge_same_root,
    names_from_annotations, BlobLookup,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{self, Descriptor, DockerArchiveEntry, Document, Index};
use crate::transport::SourceImage;

/// One root of `index.json`, resolved on its own, or why it could not be.
pub(super) struct IndexRoot {
    descriptor: Descriptor,
    /// The configs of the images it holds, read without checking anything else (so a
    /// root that fails can still be matched to the manifest.json entry that covers it).
    configs: Vec<Digest>,
    image: Result<SourceImage>,
    /// A manifest.json entry matched it.
    used: bool,
}

/// Every root of a hybrid archive's `index.json`, each with its own names: a name keeps its
/// root (a manifest, an index and a manifest list over the same config stay three roots).
pub(super) fn index_roots(lookup: &BlobLookup, index: &Index) -> Result<Vec<IndexRoot>> {
    let mut out: Vec<IndexRoot> = Vec::new();
    for desc in &index.manifests {
        if !lookup.has(&desc.digest) {
            continue;
        }
        let names = names_from_annotations(lookup, desc);
        if let Some(r) = out.iter_mut().find(|r| r.descriptor.digest == desc.digest) {
            if let Ok(img) = &mut r.image {
                for n in names {
                    if !img.names.contains(&n) {
                        img.names.push(n);
                    }
                }
            }
            continue;
        }
        out.push(IndexRoot {
            descriptor: desc.clone(),
            configs: configs_of(lookup, desc),
            image: from_oci_descriptor(lookup, desc, names).and_then(|i| {
                i.ok_or_else(|| Error::NoImage {
                    detail: format!("none of the manifests of {} is in the archive", desc.digest),
                })
            }),
            used: false,
        });
    }
    Ok(out)
}

/// The config digests a root's image manifests name, read shallowly.
fn configs_of(lookup: &BlobLookup, desc: &Descriptor) -> Vec<Digest> {
    let config = |d: &Digest| match lookup.read(d, "").map(|b| spec::parse_document(&b, "")) {
        Ok(Ok(Document::Manifest(m))) => Some(m.config.digest),
        _ => None,
    };
    match lookup
        .read(&desc.digest, "")
        .map(|b| spec::parse_document(&b, ""))
    {
        Ok(Ok(Document::Manifest(m))) => vec![m.config.digest],
        Ok(Ok(Document::Index(idx))) => idx
            .manifests
            .iter()
            .filter_map(|c| config(&c.digest))
            .collect(),
        _ => Vec::new(),
    }
}

/// Match each manifest.json entry to the `index.json` root that holds its config and
/// carries its names; an entry no verified root covers gets a manifest made from
/// manifest.json (Docker <= 24 wrote none; Docker 25.0.0's disagreed with its config). The
/// roots no entry names (artifacts, signatures, roots docker does not list) come after.
pub(super) fn match_entries(
    lookup: &BlobLookup,
    entries: &[DockerArchiveEntry],
    mut roots: Vec<IndexRoot>,
) -> Result<Vec<SourceImage>> {
    let mut images: Vec<SourceImage> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let label = format!("manifest.json entry {i}");
        let (config_digest, config_bytes) = lookup.read_path(&entry.config, &label)?;
        check_named_digest(lookup, &entry.config, &config_digest);
        let mut names: Vec<Reference> = Vec::new();
        for tag in &entry.repo_tags {
            names.push(Reference::parse(tag)?);
        }
        let holds = |r: &IndexRoot| {
            r.image.as_ref().is_ok_and(|img| {
                img.image_platforms()
                    .any(|p| p.manifest.config.digest == config_digest)
            })
        };
        let named = |r: &IndexRoot| {
            r.image
                .as_ref()
                .is_ok_and(|img| img.names.iter().any(|n| names.contains(n)))
        };
        let pick = roots
            .iter()
            .position(|r| holds(r) && named(r))
            .or_else(|| {
                roots.iter().position(|r| {
                    holds(r) && !r.used && r.image.as_ref().is_ok_and(|i| i.names.is_empty())
                })
            })
            .or_else(|| roots.iter().position(|r| holds(r) && !r.used))
            .or_else(|| roots.iter().position(holds));
        match pick {
            Some(at) => {
                let root = &mut roots[at];
                root.used = true;
                let Ok(img) = &mut root.image else {
                    unreachable!("a picked root resolved")
                };
                for n in names {
                    if !img.names.contains(&n) {
                        img.names.push(n);
                    }
                }
                let digest = img.root.digest.clone();
                match images.iter_mut().find(|o| o.root.digest == digest) {
                    Some(o) => o.names = img.names.clone(),
                    None => images.push(img.clone()),
                }
            }
            None => {
                let img =
                    from_docker_entry(lookup, &label, entry, names, config_digest, &config_bytes)?;
                // A root that failed on its own but holds this config is covered by the entry.
                for r in roots.iter_mut().filter(|r| r.configs.contains(&img.id())) {
                    r.used = true;
                }
                images.push(img);
            }
        }
    }
    for r in roots {
        match r.image {
            Ok(img) if !images.iter().any(|o| o.root.digest == img.root.digest) => images.push(img),
            Ok(_) => {}
            Err(_) if r.used => {}
            Err(e) => return Err(e),
        }
    }
    Ok(merge_same_root(images))
}
