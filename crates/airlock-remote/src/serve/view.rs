//! What the store holds, as a registry sees it: repositories and their tags, every manifest
//! by digest, and the referrers of each subject (from the `subject` fields the store's
//! manifests carry). Built from the store's records and rebuilt when `index.json` changes
//! (every commit replaces it by a rename), so a `load` or a push is visible at once and a
//! request never sees half of a commit.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use airlock_core::spec::Descriptor;
use airlock_core::store::Store;
use airlock_core::Digest;

/// Identifies one version of `index.json`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    /// The stamp of the index at `root`.
    pub fn of(root: &Path) -> std::io::Result<Stamp> {
        let m = std::fs::metadata(root.join("index.json"))?;
        Ok(Stamp {
            inode: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })
    }
}

/// The registry's picture of the store.
#[derive(Default, Debug)]
pub struct View {
    /// Repository (`docker.io/library/redis`) -> tag -> the root it names.
    pub tags: BTreeMap<String, BTreeMap<String, Descriptor>>,
    /// Every manifest and index the store holds, by digest, with its media type.
    pub manifests: HashMap<Digest, String>,
    /// Subject digest -> the manifests that name it as their subject.
    pub referrers: HashMap<Digest, Vec<Descriptor>>,
}

impl View {
    /// Read the store's records into a view.
    pub fn load(store: &Store) -> airlock_core::Result<View> {
        let mut view = View::default();
        for img in store.images()? {
            view.manifests
                .insert(img.root.digest.clone(), img.root.media_type.clone());
            for p in &img.platforms {
                view.manifests
                    .insert(p.descriptor.digest.clone(), p.descriptor.media_type.clone());
            }
            for name in &img.names {
                if let Some(tag) = name.tag() {
                    view.tags
                        .entry(name.repository())
                        .or_default()
                        .insert(tag.to_string(), img.root.clone());
                }
            }
            if let Some(subject) = img.subject() {
                let root = img
                    .platforms
                    .iter()
                    .find(|p| p.descriptor.digest == img.root.digest);
                if let Some(p) = root {
                    let d = crate::registry::referrers::referrer_descriptor(&img.root, &p.manifest);
                    let list = view.referrers.entry(subject.digest.clone()).or_default();
                    if !list.iter().any(|x| x.digest == d.digest) {
                        list.push(d);
                    }
                }
            }
        }
        for list in view.referrers.values_mut() {
            list.sort_by_key(|d| d.digest.to_string());
        }
        Ok(view)
    }

    /// The stored repository a client's `name` means, if any. `ns` is containerd's mirror
    /// hint (`?ns=registry.k8s.io`); `prefix` the `--prefix` every name must start with.
    ///
    /// In order: `ns/name` when containerd says which registry it mirrors; the name as a
    /// full reference (`registry.k8s.io/pause`, or `library/redis` for Docker Hub, which is
    /// what docker's `registry-mirrors` asks for); else the one stored repository whose path
    /// is `name` on any registry (a CRI-O or podman mirror of `registry.k8s.io` asks for
    /// `pause`).
    pub fn repository_for(&self, name: &str, ns: Option<&str>, prefix: Option<&str>) -> Lookup {
        let name = match prefix {
            Some(p) => match name.strip_prefix(p).and_then(|r| r.strip_prefix('/')) {
                Some(rest) => rest,
                None => return Lookup::Unknown,
            },
            None => name,
        };
        if let Some(ns) = ns.filter(|n| !n.is_empty()) {
            if let Some(repo) = self.full(&format!("{ns}/{name}")) {
                return Lookup::Found(repo);
            }
        }
        if let Some(repo) = self.full(name) {
            return Lookup::Found(repo);
        }
        let by_path: Vec<&String> = self
            .tags
            .keys()
            .filter(|k| k.split_once('/').is_some_and(|(_, path)| path == name))
            .collect();
        match by_path.as_slice() {
            [one] => Lookup::Found((*one).clone()),
            [] => Lookup::Unknown,
            many => Lookup::Ambiguous(many.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn full(&self, name: &str) -> Option<String> {
        let r = airlock_core::Reference::parse(name).ok()?;
        let repo = r.repository();
        self.tags.contains_key(&repo).then_some(repo)
    }

    /// The name a stored repository is listed under (`_catalog`).
    pub fn served_name(repo: &str, prefix: Option<&str>) -> String {
        match prefix {
            Some(p) => format!("{p}/{repo}"),
            None => repo.to_string(),
        }
    }
}

/// What a client's repository name resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// This stored repository.
    Found(String),
    /// Nothing stored by that name.
    Unknown,
    /// Several registries' repositories share that path; the client must say which.
    Ambiguous(Vec<String>),
}
