//! `fsck`: prove every blob matches its name and every reference resolves; optionally
//! drop what cannot be trusted so the store is consistent again.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::{group_by_root, records, staging, Store};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::graph;
use crate::spec::{self, Document};

/// What `fsck` found.
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    /// Blobs whose content was hashed.
    pub blobs_checked: usize,
    /// Their total size.
    pub bytes_checked: u64,
    /// Roots `index.json` names.
    pub roots_checked: usize,
    /// Blobs whose content no longer matches their name: (name, what it hashes to).
    pub damaged: Vec<(Digest, Digest)>,
    /// Blobs a stored document names that the store lacks: (the document, the blob).
    pub missing: Vec<(Digest, Digest)>,
    /// Stored documents that are no manifest or index: (the blob, why).
    pub unreadable: Vec<(Digest, String)>,
    /// Roots that cannot be used whole (they reach damaged, missing or unreadable content),
    /// with the names pointing at them.
    pub broken_roots: BTreeMap<Digest, Vec<String>>,
    /// Blobs nothing references (what `gc` would free).
    pub unreferenced: usize,
    /// Entries of `blobs/sha256` that are not blobs (directories, other names).
    pub strays: Vec<String>,
}

impl FsckReport {
    /// True when every image the store lists can be used whole.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
            && self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.broken_roots.is_empty()
    }
}

impl Store {
    /// Check every blob's digest and every reference. Holds the gc lock shared: blobs stay
    /// while they are hashed.
    pub fn fsck(&self) -> Result<FsckReport> {
        let _lock = self.read_lock()?;
        self.check()
    }

    fn check(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let dir = self.blob_dir();
        let mut intact = BTreeSet::new();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for entry in names {
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = match Digest::from_hex(&name) {
                Some(d) if entry.file_type().is_ok_and(|t| t.is_file()) => d,
                _ => {
                    report.strays.push(name);
                    continue;
                }
            };
            let (_, check) = self.open_checked_blob(&digest)?;
            report.blobs_checked += 1;
            report.bytes_checked += entry.metadata().map(|m| m.len()).unwrap_or(0);
            match check.finish() {
                Ok(()) => {
                    intact.insert(digest);
                }
                Err(Error::DamagedBlob { digest, actual }) => report.damaged.push((digest, actual)),
                Err(e) => return Err(e),
            }
        }
        let index = self.read_index()?;
        let mut reached = BTreeSet::new();
        for (root, descs) in group_by_root(&index) {
            report.roots_checked += 1;
            let mut ok = true;
            self.walk(&root, &intact, &mut reached, &mut report, &mut ok);
            if !ok {
                let names = descs
                    .iter()
                    .filter_map(|d| records::descriptor_name(d))
                    .map(|n| n.familiar())
                    .collect();
                report.broken_roots.insert(root, names);
            }
        }
        report.unreferenced = intact.difference(&reached).count()
            + report
                .damaged
                .iter()
                .filter(|(d, _)| !reached.contains(d))
                .count();
        Ok(report)
    }

    /// Walk what `digest` references, as `commit` and `gc` do (an index may be sparse;
    /// a manifest's foreign layers may be absent), recording what is wrong.
    fn walk(
        &self,
        digest: &Digest,
        intact: &BTreeSet<Digest>,
        reached: &mut BTreeSet<Digest>,
        report: &mut FsckReport,
        ok: &mut bool,
    ) {
        reached.insert(digest.clone());
        if !intact.contains(digest) {
            // Damaged (already listed) or absent (listed by whoever named it).
            *ok = false;
            return;
        }
        let doc = match self
            .read_blob(digest)
            .and_then(|b| spec::parse_document(&b, &digest.to_string()))
        {
            Ok(doc) => doc,
            Err(e) => {
                if !report.unreadable.iter().any(|(d, _)| d == digest) {
                    report.unreadable.push((digest.clone(), e.to_string()));
                }
                *ok = false;
                return;
            }
        };
        let is_index = matches!(doc, Document::Index(_));
        for child in graph::children(&doc) {
            let present = self.has_blob(&child.digest);
            if !present {
                if !is_index && child.urls.is_none() {
                    let entry = (digest.clone(), child.digest.clone());
                    if !report.missing.contains(&entry) {
                        report.missing.push(entry);
                    }
                    *ok = false;
                }
                continue;
            }
            if is_index {
                self.walk(&child.digest, intact, reached, report, ok);
            } else {
                reached.insert(child.digest.clone());
                if !intact.contains(&child.digest) {
                    *ok = false;
                }
            }
        }
    }

    /// Make the store consistent: delete damaged blobs, drop the names of every root that
    /// cannot be used whole, and delete what nothing references any more (as `gc` does).
    /// Returns the report of the check that came before, and the one after.
    pub fn repair(
        &self,
        also_keep: &dyn Fn() -> Result<Vec<Digest>>,
        clean_up: &dyn Fn() -> Result<()>,
    ) -> Result<(FsckReport, FsckReport)> {
        let before = {
            let _g = self.lock_file("gc.lock", true)?;
            let _w = self.write_lock()?;
            let before = self.check()?;
            for (digest, _) in &before.damaged {
                let p = self.blob_path(digest);
                fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            }
            if !before.broken_roots.is_empty() {
                let mut index = self.read_index()?;
                index
                    .manifests
                    .retain(|d| !before.broken_roots.contains_key(&d.digest));
                self.write_index(&index)?;
            }
            staging::remove_abandoned(&self.tmp_dir())?;
            before
        };
        self.gc(also_keep, clean_up)?;
        Ok((before, self.fsck()?))
    }
}
