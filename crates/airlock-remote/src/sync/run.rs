//! Carrying out a plan: the new images pulled into the store, several at once, each through
//! the one copy path on its own (one failing does not stop the others); then the names the
//! far side lacks, chosen for the archive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use airlock_core::shipment::{self, Referrers};
use airlock_core::store::{ImageRecord, Store};
use airlock_core::transport::inventory::Inventory;
use airlock_core::transport::name::TransportName;
use airlock_core::Reference;

use super::{far_side_holds, PlannedImage};
use crate::registry::pull::PlatformChoice;
use crate::transports::{self, CopyRequest, Selection};

/// What syncing one image of the plan did.
#[derive(Debug, Clone)]
pub struct Synced {
    /// The plan's reference.
    pub reference: String,
    /// The store names it is held under now (an archive entry may bring several).
    pub names: Vec<String>,
    /// False when the store held it already.
    pub pulled: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What the copy had to say (a pull resumed, a name it could not take).
    pub notes: Vec<String>,
}

/// Bring every image of `plan` the store lacks into it, `jobs` at a time, calling
/// `finished` as each ends. Images the far side holds already are not fetched at all.
pub fn pull_new(
    store: &Store,
    plan: &[PlannedImage],
    base: &CopyRequest,
    jobs: usize,
    finished: &(dyn Fn(&Synced) + Sync),
) -> Vec<Synced> {
    let todo: Vec<&PlannedImage> = plan
        .iter()
        .filter(|p| p.error.is_none() && !p.far_side)
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Synced>>> = Mutex::new(vec![None; todo.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 16).min(todo.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = todo.get(i) else { break };
                let done = sync_one(store, p, base);
                finished(&done);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(done);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn sync_one(store: &Store, p: &PlannedImage, base: &CopyRequest) -> Synced {
    let mut out = Synced {
        reference: p.reference.clone(),
        names: vec![p.reference.clone()],
        pulled: false,
        error: None,
        notes: Vec::new(),
    };
    if p.in_store {
        return out;
    }
    let mut req = base.clone();
    req.platform = p.choice.clone().unwrap_or(PlatformChoice::Host);
    req.selection = Selection::default();
    match &p.referrers {
        Referrers::Mode(m) if m == "drop" => req.selection.without_referrers = true,
        Referrers::Types(t) => req.selection.referrer_types = t.clone(),
        _ => {}
    }
    let src = if let Some(name) = p.reference.strip_prefix("docker-daemon:") {
        TransportName::DockerDaemon(Some(name.to_string()))
    } else if let Some(path) = p.reference.strip_prefix("archive:") {
        let path = std::path::PathBuf::from(path);
        if path.is_dir() {
            TransportName::OciDir(path, None)
        } else {
            TransportName::DockerArchive(path, None)
        }
    } else {
        TransportName::Registry(p.reference.clone())
    };
    match transports::copy(store, &src, Some(&TransportName::Store(None)), &req) {
        Ok(outcome) => {
            out.pulled = true;
            out.notes = outcome.notes.clone();
            if !matches!(src, TransportName::Registry(_)) {
                // What the engine or archive held is named by what it says.
                out.names = outcome
                    .images
                    .iter()
                    .filter(|i| i.artifact_type().is_none())
                    .flat_map(|i| match i.names.is_empty() {
                        true => vec![i.root.digest.to_string()],
                        false => i.names.iter().map(|n| n.to_string()).collect(),
                    })
                    .collect();
            }
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// The store names to write into the archive: every image synced, less those the far side
/// holds already under the name they would get, with every blob.
pub fn to_ship(
    store: &Store,
    synced: &[Synced],
    far_side: Option<&Inventory>,
    rename: Option<&str>,
) -> airlock_core::Result<Vec<String>> {
    let mut out = Vec::new();
    for s in synced.iter().filter(|s| s.error.is_none()) {
        for name in &s.names {
            if let Some(inv) = far_side {
                let record = store.resolve(name)?;
                let target = match (rename, Reference::parse(name)) {
                    (Some(rule), Ok(r)) => shipment::rename(rule, &r)?.to_string(),
                    (_, Ok(r)) => r.to_string(),
                    (_, Err(_)) => name.clone(),
                };
                if far_side_holds(
                    inv,
                    &target,
                    &record.root.digest,
                    record_blobs(&record).iter(),
                ) {
                    continue;
                }
            }
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    Ok(out)
}

fn record_blobs(r: &ImageRecord) -> Vec<airlock_core::Digest> {
    let mut out = vec![r.root.digest.clone()];
    for p in &r.platforms {
        out.push(p.descriptor.digest.clone());
        out.push(p.manifest.config.digest.clone());
        out.extend(p.manifest.layers.iter().map(|l| l.digest.clone()));
    }
    out
}
