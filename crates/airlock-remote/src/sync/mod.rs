//! `airlock sync`: a shipment file's entries resolved to references, digests, platforms and
//! sizes, planned against the store (what it holds already) and the far side's inventory
//! (what it holds already, under the name it would get); then the new ones pulled through
//! the one copy path, several at once, past failures ([`run`]), and what the far side lacks
//! chosen for the archive ([`run::to_ship`]).

use std::collections::{BTreeMap, BTreeSet};

use airlock_core::shipment::{self, Planned, Referrers, Source, TagSelector};
use airlock_core::spec::Platform;
use airlock_core::store::Store;
use airlock_core::transport::inventory::Inventory;
use airlock_core::transport::{ImageSource, SourceImage};
use airlock_core::{Digest, Reference};

use crate::registry::discover::ReferrerChoice;
use crate::registry::pull::{pull, PlatformChoice};
use crate::registry::{tags, Registry, RegistryOptions};
use crate::Engine;

pub mod run;

/// One image of the plan.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedImage {
    /// Where it comes from: `HOST/REPO:TAG`, `docker-daemon:NAME` or `archive:PATH`.
    pub reference: String,
    /// The name it gets on the far side (the shipment's `rename:` applied).
    pub target: String,
    /// What the reference names now (registry sources).
    pub digest: Option<String>,
    /// The platforms that will cross (`linux/amd64`; none for a single-platform image
    /// whose config says nothing).
    pub platforms: Vec<String>,
    /// Bytes of its blobs (manifests, configs, layers) for those platforms.
    pub size: Option<u64>,
    /// Of those, the bytes the far side's inventory does not list (with
    /// `--incremental-from`).
    pub new_bytes: Option<u64>,
    /// True when the store holds this digest under this name, with those platforms.
    pub in_store: bool,
    /// True when the far side's inventory holds it under its target name, with every blob:
    /// it is left out of the archive.
    pub far_side: bool,
    /// Why it cannot be shipped, when it cannot.
    pub error: Option<String>,
    /// The line of the shipment file its entry starts on.
    pub line: usize,
    #[serde(skip)]
    choice: Option<PlatformChoice>,
    #[serde(skip)]
    referrers: Referrers,
}

/// What a plan is made against.
pub struct PlanOptions<'a> {
    /// Registry TLS and credentials.
    pub registry: &'a RegistryOptions,
    /// The far side's inventory (`--incremental-from`).
    pub far_side: Option<&'a Inventory>,
    /// The shipment's `rename:` rule.
    pub rename: Option<&'a str>,
}

/// How an entry's `platforms:` reads as a choice.
fn choice_of(platforms: &[String]) -> Result<PlatformChoice, String> {
    if platforms.iter().any(|p| p == "all") {
        return Ok(PlatformChoice::All);
    }
    let parsed = platforms
        .iter()
        .map(|p| airlock_core::import::parse_platform(p).map_err(|e| e.to_string()))
        .collect::<Result<Vec<Platform>, String>>()?;
    Ok(match parsed.len() {
        0 => PlatformChoice::Host,
        1 => PlatformChoice::One(parsed[0].clone()),
        _ => PlatformChoice::Several(parsed),
    })
}

/// Resolve every entry. An entry or reference that fails is kept in the plan with its
/// error; the others go on.
pub fn plan(store: &Store, entries: &[Planned], opts: &PlanOptions<'_>) -> Vec<PlannedImage> {
    let held = store.images().unwrap_or_default();
    let mut out: Vec<PlannedImage> = Vec::new();
    for e in entries {
        let choice = choice_of(&e.platforms);
        let item = |reference: String| PlannedImage {
            target: reference.clone(),
            reference,
            digest: None,
            platforms: Vec::new(),
            size: None,
            new_bytes: None,
            in_store: false,
            far_side: false,
            error: choice.as_ref().err().cloned(),
            line: e.line,
            choice: choice.as_ref().ok().cloned(),
            referrers: e.referrers.clone(),
        };
        let refs: Result<Vec<String>, String> = match &e.source {
            Source::Registry {
                repository,
                tags,
                latest,
            } => registry_refs(repository, tags, *latest, opts.registry),
            Source::List(p) => shipment::read_list(p).map_err(|x| x.to_string()),
            Source::Kubernetes(p) => shipment::kubernetes_images(p).map_err(|x| x.to_string()),
            Source::DockerDaemon(glob) => daemon_refs(glob),
            Source::Archive(p) => Ok(vec![format!("archive:{}", p.display())]),
        };
        let refs = match refs {
            Ok(r) => r,
            Err(why) => {
                let mut failed = item(describe(&e.source));
                failed.error = Some(why);
                out.push(failed);
                continue;
            }
        };
        for r in refs {
            if out.iter().any(|o| o.reference == r) {
                continue;
            }
            let mut p = item(r.clone());
            if p.error.is_none() && !r.starts_with("docker-daemon:") && !r.starts_with("archive:") {
                if let Err(why) = resolve(&mut p, opts, &held) {
                    p.error = Some(why);
                }
            }
            out.push(p);
        }
    }
    out
}

/// Fill in a registry item: what the tag names, its platforms and size, whether the store
/// and the far side hold it.
fn resolve(
    p: &mut PlannedImage,
    opts: &PlanOptions<'_>,
    held: &[airlock_core::store::ImageRecord],
) -> Result<(), String> {
    let r = Reference::parse(&p.reference).map_err(|e| e.to_string())?;
    p.reference = r.to_string();
    p.target = match opts.rename {
        Some(rule) => shipment::rename(rule, &r).map_err(|e| e.to_string())?,
        None => r.clone(),
    }
    .to_string();
    let reg = Registry::new(r.domain(), opts.registry).map_err(|e| e.to_string())?;
    let choice = p.choice.clone().unwrap_or(PlatformChoice::Host);
    let none = ReferrerChoice {
        drop: true,
        types: Vec::new(),
    };
    let source = pull(&reg, &r, &choice, None, &none).map_err(|e| e.to_string())?;
    let image = &source.images()[0];
    p.digest = Some(image.root.digest.to_string());
    p.platforms = image
        .platforms
        .iter()
        .filter_map(|pl| pl.descriptor.platform.as_ref().map(|x| x.display()))
        .collect();
    let blobs = blobs_of(image);
    p.size = Some(blobs.values().sum());
    p.in_store = held.iter().any(|h| {
        h.root.digest == image.root.digest
            && h.names.iter().any(|n| n.to_string() == p.reference)
            && image.platforms.iter().all(|want| {
                h.platforms
                    .iter()
                    .any(|have| have.descriptor.digest == want.descriptor.digest)
            })
    });
    if let Some(inv) = opts.far_side {
        p.new_bytes = Some(
            blobs
                .iter()
                .filter(|(d, _)| !inv.blobs.contains(d))
                .map(|(_, s)| s)
                .sum(),
        );
        p.far_side = far_side_holds(inv, &p.target, &image.root.digest, blobs.keys());
    }
    Ok(())
}

/// Every blob of one image (its root, platform manifests, configs, layers) and its size.
pub(crate) fn blobs_of(image: &SourceImage) -> BTreeMap<Digest, u64> {
    let mut out = BTreeMap::from([(image.root.digest.clone(), image.root.size)]);
    for p in &image.platforms {
        out.insert(p.descriptor.digest.clone(), p.descriptor.size);
        out.insert(p.manifest.config.digest.clone(), p.manifest.config.size);
        for l in &p.manifest.layers {
            out.insert(l.digest.clone(), l.size);
        }
    }
    out
}

/// True when the far side names `target` as `root` and holds every one of `blobs`.
pub(crate) fn far_side_holds<'a>(
    inv: &Inventory,
    target: &str,
    root: &Digest,
    mut blobs: impl Iterator<Item = &'a Digest>,
) -> bool {
    inv.images.get(target) == Some(root) && blobs.all(|b| inv.blobs.contains(b))
}

fn describe(s: &Source) -> String {
    match s {
        Source::Registry { repository, .. } => repository.clone(),
        Source::List(p) => format!("list {}", p.display()),
        Source::Kubernetes(p) => format!("kubernetes {}", p.display()),
        Source::DockerDaemon(g) => format!("docker-daemon {g}"),
        Source::Archive(p) => format!("archive {}", p.display()),
    }
}

fn registry_refs(
    repository: &str,
    selectors: &[TagSelector],
    latest: Option<usize>,
    opts: &RegistryOptions,
) -> Result<Vec<String>, String> {
    let r = Reference::parse(repository).map_err(|e| e.to_string())?;
    if shipment::names_one_image(repository) || (selectors.is_empty() && latest.is_none()) {
        return Ok(vec![r.to_string()]);
    }
    let exact: Vec<String> = selectors
        .iter()
        .filter_map(|s| match s {
            TagSelector::Exact(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let mut chosen = if exact.len() == selectors.len() && latest.is_none() {
        exact // exact tags need no listing
    } else {
        let reg = Registry::new(r.domain(), opts).map_err(|e| e.to_string())?;
        let all = tags::list_tags(&reg, r.path()).map_err(|e| e.to_string())?;
        let mut picked = shipment::select_tags(&all, selectors, latest);
        picked.extend(exact);
        picked
    };
    chosen.sort();
    chosen.dedup();
    if chosen.is_empty() {
        return Err(format!("no tag of {} matches", r.repository()));
    }
    Ok(chosen
        .iter()
        .map(|t| format!("{}:{t}", r.repository()))
        .collect())
}

fn daemon_refs(glob: &str) -> Result<Vec<String>, String> {
    let engine = Engine::from_env().map_err(|e| e.to_string())?;
    let mut out = BTreeSet::new();
    for img in engine.list_images().map_err(|e| e.to_string())? {
        for tag in img.repo_tags {
            let full = Reference::parse(&tag)
                .map(|r| r.to_string())
                .unwrap_or_default();
            if airlock_core::reference::glob_match(glob, &tag)
                || airlock_core::reference::glob_match(glob, &full)
            {
                out.insert(format!("docker-daemon:{tag}"));
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no Docker Engine image matches {glob:?}"));
    }
    Ok(out.into_iter().collect())
}
