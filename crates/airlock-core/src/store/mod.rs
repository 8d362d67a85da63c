//! The embedded image store: an OCI image layout directory that airlock owns.
//!
//! ```text
//! STORE/oci-layout          {"imageLayoutVersion": "1.0.0"}
//! STORE/index.json          one descriptor per (image, name); untagged images have no name
//! STORE/blobs/sha256/<hex>  content, named by digest, only ever complete and verified
//! STORE/tmp/                staging areas of operations in progress
//! STORE/lock, gc.lock       advisory locks
//! ```
//!
//! Because it is a plain OCI layout, skopeo (`oci:STORE`) and umoci read it as is.
//!
//! Safety under kill -9: a blob is written under `tmp/`, fsynced, and renamed into `blobs/`
//! only once its digest is proven; `index.json` is replaced by an atomic rename. A crash
//! leaves at worst a staging directory (removed by `gc`) or an unreferenced blob.
//!
//! Locking: `lock` is held exclusively by anything that rewrites `index.json`; `gc.lock` is
//! held shared by readers of blobs (save, export) and exclusively by `gc`, the only thing
//! that deletes blobs.

mod checked;
pub mod durable;
mod fsck;
mod records;
mod staging;

pub use checked::{BlobCheck, CheckedBlob, VerifiedAtEnd};
pub use fsck::FsckReport;
pub use records::{ImageRecord, PlatformImage, TagChange};
pub(crate) use staging::copy_plain;
pub use staging::{PartialBlob, StagedBlob, Staging};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{self, Descriptor, Document, Index};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Marks a manifest airlock generated (from a docker-archive); such an image has no
/// registry digest.
pub const ANNOTATION_GENERATED: &str = "dev.airlock.manifest.generated";

/// An image store rooted at a directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// A held advisory lock; released on drop.
pub struct StoreLock {
    _file: File,
}

/// What to record for one image when committing.
#[derive(Clone, Debug)]
pub struct NewImage {
    /// The manifest or index at the root of the image.
    pub root: Descriptor,
    /// Names to point at it (may be empty: an untagged image).
    pub names: Vec<Reference>,
    /// True when airlock generated the manifest.
    pub generated: bool,
    /// Docker's image ID for it (config digest, or index digest for a multi-platform one).
    pub id: Digest,
}

impl Store {
    /// Open the store at `root`, creating an empty one if the directory does not exist or is
    /// empty.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let store = Store { root };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<()> {
        let layout = self.root.join(LAYOUT_FILE);
        if !layout.exists() {
            if self.root.exists() {
                // Only what a store has is fine: a store whose creation was killed before
                // its `oci-layout` landed, or one another process is creating right now.
                let foreign = fs::read_dir(&self.root)
                    .map_err(|e| Error::io("read", &self.root, e))?
                    .filter_map(|e| e.ok())
                    .any(|e| {
                        !matches!(
                            e.file_name().to_str(),
                            Some("blobs" | "tmp" | "index.json" | "lock" | "gc.lock")
                        )
                    });
                if foreign {
                    return Err(Error::BadStore {
                        path: self.root.clone(),
                        detail: "the directory holds other files and has no oci-layout file".into(),
                    });
                }
            }
            for dir in [self.blob_dir(), self.tmp_dir()] {
                fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            }
            // A half-made store has at most an empty index (nothing is committed before
            // `oci-layout` exists); never replace one that holds images.
            if !self.root.join("index.json").exists() {
                write_atomic(
                    &self.tmp_dir(),
                    &self.root.join("index.json"),
                    &index_bytes(&Index::empty())?,
                )?;
            }
            write_atomic(&self.tmp_dir(), &layout, LAYOUT_CONTENT)?;
        }
        for dir in [self.blob_dir(), self.tmp_dir()] {
            if !dir.is_dir() {
                fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            }
        }
        for lock in ["lock", "gc.lock"] {
            let p = self.root.join(lock);
            if !p.exists() {
                File::create(&p).map_err(|e| Error::io("create", &p, e))?;
            }
        }
        Ok(())
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where a blob lives (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// True if the store holds the blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| Error::io("open blob", p, e))
    }

    /// Read a whole (small) blob, checking its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let bytes = fs::read(&p).map_err(|e| Error::io("read blob", &p, e))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::DamagedBlob {
                digest: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn lock_file(&self, name: &str, exclusive: bool) -> Result<StoreLock> {
        let p = self.root.join(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| Error::io("open lock", &p, e))?;
        let r = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        r.map_err(|e| Error::io("lock", &p, e))?;
        Ok(StoreLock { _file: file })
    }

    /// Lock out `gc` while blobs are being read.
    pub fn read_lock(&self) -> Result<StoreLock> {
        self.lock_file("gc.lock", false)
    }

    fn write_lock(&self) -> Result<StoreLock> {
        self.lock_file("lock", true)
    }

    /// The store's `index.json`.
    pub fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
        spec::parse_json(&bytes, "index.json", "image index")
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        write_atomic(
            &self.tmp_dir(),
            &self.root.join("index.json"),
            &index_bytes(index)?,
        )
    }

    /// A fresh staging area for blobs of an operation in progress.
    pub fn staging(&self) -> Result<Staging> {
        // The gc lock comes first, so gc cannot see the new area before its owner file.
        Staging::new(&self.tmp_dir(), self.read_lock()?)
    }

    /// The staging area of a resumable operation, `key` naming what it works on (a load of
    /// split volumes): made, or found as an interrupted run left it.
    pub fn resumable_staging(&self, key: &str) -> Result<Staging> {
        Staging::resumable(&self.tmp_dir(), &format!("resume-{key}"), self.read_lock()?)
    }

    /// All images in the store, sorted by first name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        records::load_records(self, &self.read_index()?)
    }

    /// Find one image by name, full or short image ID (config digest), or manifest digest.
    pub fn resolve(&self, query: &str) -> Result<ImageRecord> {
        records::resolve(self.images()?, query)
    }

    /// Move staged blobs into the store and record `images`, all at once: either every image
    /// and name becomes visible, or (on error) nothing changes.
    pub fn commit(&self, staging: &Staging, images: &[NewImage]) -> Result<Vec<TagChange>> {
        staging.wait_synced()?;
        let _lock = self.write_lock()?;
        // Every blob reachable from every root must be staged or already stored.
        let mut needed = BTreeSet::new();
        for img in images {
            self.reachable(
                &img.root.digest,
                &img.root.digest.to_string(),
                Some(staging),
                &mut needed,
            )?;
        }
        let mut moved_any = false;
        for d in &needed {
            // A staged copy was verified by this operation; it also replaces a stored one
            // (which may be damaged: loading a good archive repairs the store).
            let Some(from) = staging.path_of(d) else {
                if self.has_blob(d) {
                    continue;
                }
                return Err(Error::MissingBlob {
                    referenced_by: "the images being committed".into(),
                    missing: d.to_string(),
                });
            };
            let to = self.blob_path(d);
            fs::rename(&from, &to).map_err(|e| Error::io("move into store", &to, e))?;
            moved_any = true;
        }
        if moved_any {
            sync_dir(&self.blob_dir())?;
        }
        let mut index = self.read_index()?;
        let before = records::load_records(self, &index)?;
        let changes = records::apply_new_images(&mut index, &before, images);
        self.write_index(&index)?;
        Ok(changes)
    }

    /// Collect the digests reachable from `root` (itself included), reading documents from
    /// the store or, failing that, from `staging`.
    fn reachable(
        &self,
        root: &Digest,
        referenced_by: &str,
        staging: Option<&Staging>,
        out: &mut BTreeSet<Digest>,
    ) -> Result<()> {
        if !out.insert(root.clone()) {
            return Ok(());
        }
        let bytes = if self.has_blob(root) {
            self.read_blob(root)?
        } else if let Some(p) = staging.and_then(|s| s.path_of(root)) {
            fs::read(&p).map_err(|e| Error::io("read", &p, e))?
        } else {
            return Err(Error::MissingBlob {
                referenced_by: referenced_by.to_string(),
                missing: root.to_string(),
            });
        };
        let name = root.to_string();
        let doc = spec::parse_document(&bytes, &name)?;
        let is_index = matches!(doc, Document::Index(_));
        for d in crate::graph::children(&doc) {
            let present =
                self.has_blob(&d.digest) || staging.and_then(|s| s.path_of(&d.digest)).is_some();
            if is_index {
                // A sparse index (a platform save, a Docker 25 containerd export) keeps
                // only some of its manifests; the records say which.
                if present {
                    self.reachable(&d.digest, &name, staging, out)?;
                }
                continue;
            }
            // Foreign layers (with urls) may legitimately be absent.
            if !present && d.urls.is_none() {
                return Err(Error::MissingBlob {
                    referenced_by: name.clone(),
                    missing: d.digest.to_string(),
                });
            }
            if present {
                out.insert(d.digest.clone());
            }
        }
        Ok(())
    }

    /// Point `target` at the image `source` resolves to. Returns the change made.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<TagChange> {
        let _lock = self.write_lock()?;
        let img = self.resolve(source)?;
        let new = NewImage {
            root: img.root.clone(),
            names: vec![target.clone()],
            generated: img.generated,
            id: img.id(),
        };
        let mut index = self.read_index()?;
        let before = records::load_records(self, &index)?;
        let mut changes = records::apply_new_images(&mut index, &before, &[new]);
        self.write_index(&index)?;
        Ok(changes.remove(0))
    }

    /// Remove names or images. A name removes just that name (the image goes when its last
    /// name goes, as in docker); an ID removes the image and all its names.
    pub fn remove(&self, query: &str) -> Result<Vec<String>> {
        let _lock = self.write_lock()?;
        let mut index = self.read_index()?;
        let images = records::load_records(self, &index)?;
        let img = records::resolve(images, query)?;
        let by_name = Reference::parse(query)
            .ok()
            .filter(|r| img.names.contains(r));
        let mut said = Vec::new();
        match by_name {
            Some(name) if img.names.len() > 1 => {
                index
                    .manifests
                    .retain(|d| records::descriptor_name(d).as_ref() != Some(&name));
                said.push(format!("Untagged: {}", name.familiar()));
            }
            _ => {
                index.manifests.retain(|d| d.digest != img.root.digest);
                for n in &img.names {
                    said.push(format!("Untagged: {}", n.familiar()));
                }
                said.push(format!("Deleted: {}", img.id()));
            }
        }
        self.write_index(&index)?;
        Ok(said)
    }

    /// Delete blobs no image (and no root `also_keep` returns) references, and staging
    /// areas whose owner is gone. Both callbacks run with every reader locked out:
    /// `also_keep` names roots to keep (the images of work containers), `clean_up` removes
    /// what killed operations outside the store proper left. Returns the number of blobs
    /// and bytes freed.
    pub fn gc(
        &self,
        also_keep: &dyn Fn() -> Result<Vec<Digest>>,
        clean_up: &dyn Fn() -> Result<()>,
    ) -> Result<(usize, u64)> {
        // gc.lock before lock, the order every operation takes them in (a copy between
        // stores holds gc.lock as a reader, then lock to commit).
        let _g = self.lock_file("gc.lock", true)?;
        let _w = self.write_lock()?;
        clean_up()?;
        let also_keep = also_keep()?;
        let index = self.read_index()?;
        let mut keep = BTreeSet::new();
        for d in &index.manifests {
            self.reachable(&d.digest, "index.json", None, &mut keep)?;
        }
        // Images work containers were made from stay, even once untagged or removed: commit
        // builds on them.
        for d in also_keep.iter().filter(|d| self.has_blob(d)) {
            // An image `fsck --repair` broke under a container keeps what is left of it.
            match self.reachable(d, "a work container", None, &mut keep) {
                Ok(()) | Err(Error::MissingBlob { .. } | Error::DamagedBlob { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut freed = (0usize, 0u64);
        let dir = self.blob_dir();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("read", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only files are blobs; a stray directory is not ours to remove, nor a reason to
            // stop.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let keep_it = Digest::from_hex(&name).is_some_and(|d| keep.contains(&d));
            if !keep_it {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(|e| Error::io("remove", entry.path(), e))?;
                freed.0 += 1;
                freed.1 += size;
            }
        }
        staging::remove_abandoned(&self.tmp_dir())?;
        Ok(freed)
    }

    /// Every blob digest in the store, sorted: the inventory an incremental archive for this
    /// store is made against.
    pub fn blob_digests(&self) -> Result<Vec<Digest>> {
        let dir = self.blob_dir();
        let mut out: Vec<Digest> = fs::read_dir(&dir)
            .map_err(|e| Error::io("read", &dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Blob sizes, for `images` and `inspect`.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }
}

fn index_bytes(index: &Index) -> Result<Vec<u8>> {
    serde_json::to_vec(index).map_err(|e| Error::Usage(format!("cannot encode index.json: {e}")))
}

/// Write `bytes` to `dest` atomically: temp file in `tmp_dir`, fsync, rename, fsync the
/// directory.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir)
        .map_err(|e| Error::io("create temp file in", tmp_dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    // A temp file is private (0600); `index.json` and `oci-layout` are read by other tools
    // and users, like every other file of a layout.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| Error::io("chmod", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("sync", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| Error::io("replace", dest, e.error))?;
    // A bare file name's directory is ".", not "".
    durable::sync_parent(dest).map_err(|e| Error::io("sync the directory of", dest, e))
}

/// fsync a directory so renames into it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync", dir, e))
}

/// Group index descriptors by root digest, keeping order of first appearance.
pub(crate) fn group_by_root(index: &Index) -> BTreeMap<Digest, Vec<&Descriptor>> {
    let mut map: BTreeMap<Digest, Vec<&Descriptor>> = BTreeMap::new();
    for d in &index.manifests {
        map.entry(d.digest.clone()).or_default().push(d);
    }
    map
}
