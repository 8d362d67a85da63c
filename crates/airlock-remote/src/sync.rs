//! `airlock sync`: a shipment file's entries resolved to references and digests, planned
//! against the store (what it holds already, what is new), and the new ones pulled through
//! the one copy path, one image at a time, past failures.

use std::collections::BTreeSet;

use airlock_core::shipment::{self, Planned, Referrers, Source, TagSelector};
use airlock_core::store::Store;
use airlock_core::transport::name::TransportName;
use airlock_core::{Digest, Reference};

use crate::registry::pull::PlatformChoice;
use crate::registry::{tags, Registry, RegistryOptions};
use crate::transports::{self, CopyRequest, Selection};
use crate::Engine;

/// One image of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedImage {
    /// Where it comes from (`HOST/REPO:TAG`, or `docker-daemon:NAME`).
    pub reference: String,
    /// What the tag names now (registry sources).
    pub digest: Option<String>,
    /// True when the store holds that digest already.
    pub in_store: bool,
    /// Platforms asked for (empty: the host's).
    pub platforms: Vec<String>,
    /// Why it cannot be shipped, when it cannot.
    pub error: Option<String>,
    /// The line of the shipment file its entry starts on.
    pub line: usize,
    #[serde(skip)]
    referrers: Option<Referrers>,
}

/// Resolve every entry. An entry or reference that fails is kept in the plan with its
/// error; the others go on.
pub fn plan(store: &Store, entries: &[Planned], opts: &RegistryOptions) -> Vec<PlannedImage> {
    let held: BTreeSet<Digest> = store
        .images()
        .map(|imgs| imgs.into_iter().map(|i| i.root.digest).collect())
        .unwrap_or_default();
    let mut out: Vec<PlannedImage> = Vec::new();
    for e in entries {
        let item = |reference: String| PlannedImage {
            reference,
            digest: None,
            in_store: false,
            platforms: e.platforms.clone(),
            error: None,
            line: e.line,
            referrers: Some(e.referrers.clone()),
        };
        let refs: Result<Vec<String>, String> = match &e.source {
            Source::Registry {
                repository,
                tags,
                latest,
            } => registry_refs(repository, tags, *latest, opts),
            Source::List(p) => shipment::read_list(p).map_err(|x| x.to_string()),
            Source::Kubernetes(p) => shipment::kubernetes_images(p).map_err(|x| x.to_string()),
            Source::DockerDaemon(glob) => daemon_refs(glob),
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
            if !r.starts_with("docker-daemon:") {
                match resolve(&r, opts) {
                    Ok(d) => {
                        p.in_store = held.contains(&d);
                        p.digest = Some(d.to_string());
                    }
                    Err(why) => p.error = Some(why),
                }
            }
            out.push(p);
        }
    }
    out
}

fn describe(s: &Source) -> String {
    match s {
        Source::Registry { repository, .. } => repository.clone(),
        Source::List(p) => format!("list {}", p.display()),
        Source::Kubernetes(p) => format!("kubernetes {}", p.display()),
        Source::DockerDaemon(g) => format!("docker-daemon {g}"),
    }
}

fn registry_refs(
    repository: &str,
    selectors: &[TagSelector],
    latest: Option<usize>,
    opts: &RegistryOptions,
) -> Result<Vec<String>, String> {
    if shipment::names_one_image(repository) || (selectors.is_empty() && latest.is_none()) {
        let r = Reference::parse(repository).map_err(|e| e.to_string())?;
        return Ok(vec![r.to_string()]);
    }
    let r = Reference::parse(repository).map_err(|e| e.to_string())?;
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
    let mut out = Vec::new();
    for img in engine.list_images().map_err(|e| e.to_string())? {
        for tag in img.repo_tags {
            if airlock_core::reference::glob_match(glob, &tag) {
                out.push(format!("docker-daemon:{tag}"));
            }
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(format!("no Docker Engine image matches {glob:?}"));
    }
    Ok(out)
}

fn resolve(reference: &str, opts: &RegistryOptions) -> Result<Digest, String> {
    let r = Reference::parse(reference).map_err(|e| e.to_string())?;
    if let Some(d) = r.digest() {
        return Ok(d.clone());
    }
    let reg = Registry::new(r.domain(), opts).map_err(|e| e.to_string())?;
    tags::digest_of(&reg, r.path(), r.tag().unwrap_or("latest")).map_err(|e| e.to_string())
}

/// Pull every new image of `plan` into the store, each through the copy path on its own
/// (one failing does not stop the others). Returns, per image pulled or failed, its
/// reference and the error.
pub fn pull_new(
    store: &Store,
    plan: &[PlannedImage],
    base: &CopyRequest,
) -> Vec<(String, Option<String>)> {
    let mut done = Vec::new();
    for p in plan.iter().filter(|p| !p.in_store && p.error.is_none()) {
        let mut req = base.clone();
        req.platform = match p.platforms.as_slice() {
            [] => PlatformChoice::Host,
            [one] if one == "all" => PlatformChoice::All,
            [one] => match airlock_core::import::parse_platform(one) {
                Ok(pl) => PlatformChoice::One(pl),
                Err(e) => {
                    done.push((p.reference.clone(), Some(e.to_string())));
                    continue;
                }
            },
            _ => PlatformChoice::All,
        };
        req.selection = Selection::default();
        match &p.referrers {
            Some(Referrers::Mode(m)) if m == "drop" => req.selection.without_referrers = true,
            Some(Referrers::Types(t)) => req.selection.referrer_types = t.clone(),
            _ => {}
        }
        let src = match p.reference.strip_prefix("docker-daemon:") {
            Some(name) => TransportName::DockerDaemon(Some(name.to_string())),
            None => TransportName::Registry(p.reference.clone()),
        };
        let result = transports::copy(store, &src, Some(&TransportName::Store(None)), &req);
        done.push((p.reference.clone(), result.err().map(|e| e.to_string())));
    }
    done
}
