//! Work containers, buildah-style: an image unpacked into a directory that you change by
//! hand (or with a chroot), then commit as one new layer. No process is ever run.
//!
//! ```text
//! STORE/containers/<name>/rootfs/          the filesystem
//! STORE/containers/<name>/container.json   image, ownership that could not be applied
//! STORE/containers/<name>/base.json        what rootfs held right after unpacking
//! ```
//!
//! `commit` compares rootfs with base.json: new and changed paths go into the layer,
//! deleted ones become whiteouts, and a directory that was removed and made again (a new
//! inode) becomes an opaque directory with all its current children.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::dirtar::{write_entries, DirTarOptions};
use crate::layer::unpack::{unpack_layer, UnpackOptions};
use crate::layer::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::reference::Reference;
use crate::snapshot::open_layer;
use crate::spec::{self, media_type, Descriptor, Manifest};
use crate::store::{sync_dir, write_atomic, NewImage, Store, TagChange};

/// A work container's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Its name.
    pub name: String,
    /// The image it was made from (manifest digest).
    pub image_manifest: crate::Digest,
    /// That image's ID.
    pub image_id: crate::Digest,
    /// The name the image was asked for by.
    pub image_ref: String,
    /// When it was made.
    pub created: String,
    /// Owners from the image that could not be applied on disk (not root): path -> (uid, gid).
    pub ownership: BTreeMap<String, (u64, u64)>,
    /// Extended attributes from the image that could not be set on disk: path -> (name, value).
    #[serde(default)]
    pub xattrs: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

/// What a path looked like when the container was made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct BaseEntry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i128,
    ino: u64,
    link: Option<String>,
}

/// The containers directory of a store.
pub fn containers_dir(store: &Store) -> PathBuf {
    store.root().join("containers")
}

fn container_dir(store: &Store, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || name.starts_with('.')
    {
        return Err(Error::Usage(format!(
            "container name '{name}' may hold only letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(containers_dir(store).join(name))
}

/// Read a container's record.
pub fn info(store: &Store, name: &str) -> Result<ContainerInfo> {
    let p = container_dir(store, name)?.join("container.json");
    let bytes = fs::read(&p).map_err(|_| {
        Error::Usage(format!(
            "no work container '{name}'; `airlock containers` lists them"
        ))
    })?;
    spec::parse_json(&bytes, "container.json", "container record")
}

/// The root filesystem directory of a container.
pub fn rootfs(store: &Store, name: &str) -> Result<PathBuf> {
    info(store, name)?;
    Ok(container_dir(store, name)?.join("rootfs"))
}

/// All containers, by name.
pub fn list(store: &Store) -> Result<Vec<ContainerInfo>> {
    let dir = containers_dir(store);
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Ok(i) = info(store, &name) {
            out.push(i);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Unpack `image` into a new container. Returns its record and rootfs path.
pub fn create(
    store: &Store,
    image_query: &str,
    name: Option<&str>,
) -> Result<(ContainerInfo, PathBuf, Vec<String>)> {
    let image = store.resolve(image_query)?;
    image.require_image("unpack into a work container")?;
    let base_name = image
        .names
        .first()
        .map(|n| n.path().rsplit('/').next().unwrap_or("image").to_string())
        .unwrap_or_else(|| image.id().short().to_string());
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let mut n = format!("{base_name}-working-container");
            let mut i = 1;
            while containers_dir(store).join(&n).exists() {
                i += 1;
                n = format!("{base_name}-working-container-{i}");
            }
            n
        }
    };
    let dir = container_dir(store, &name)?;
    if dir.exists() {
        return Err(Error::Usage(format!(
            "a work container named '{name}' already exists"
        )));
    }
    let parent = containers_dir(store);
    fs::create_dir_all(&parent).map_err(|e| Error::io("create", &parent, e))?;
    // Held before the temporary directory exists: `gc` (holding the lock exclusively) then
    // knows every `.creating-*` it sees was left by a killed create.
    let _lock = store.read_lock()?;
    // Build under a temporary name: a half-unpacked container never shows up.
    let tmp = tempfile::Builder::new()
        .prefix(CREATING)
        .tempdir_in(&parent)
        .map_err(|e| Error::io("create", &parent, e))?;
    let root = tmp.path().join("rootfs");
    fs::create_dir(&root).map_err(|e| Error::io("create", &root, e))?;
    let mut ownership = BTreeMap::new();
    let mut xattrs: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut notes = Vec::new();
    for layer in &image.primary().manifest.layers {
        let mut reader = open_layer(store, &layer.digest)?;
        let report = unpack_layer(
            &mut reader,
            &root,
            &UnpackOptions {
                apply_ownership: true,
            },
        )?;
        for (p, o) in report.unapplied_ownership {
            ownership.insert(p, o);
        }
        for (p, x) in report.unapplied_xattrs {
            xattrs.insert(p, x);
        }
        for d in report.skipped_devices {
            notes.push(format!(
                "device or fifo {d} was not created (needs root); it stays in the image layers"
            ));
        }
    }
    if !xattrs.is_empty() {
        notes.push(format!(
            "{} paths keep extended attributes that cannot be set here; they are recorded and restored on commit and export",
            xattrs.len()
        ));
    }
    if !ownership.is_empty() {
        notes.push(format!(
            "{} paths keep owners this user cannot set; they are recorded and restored on commit and export",
            ownership.len()
        ));
    }
    let info = ContainerInfo {
        name: name.clone(),
        image_manifest: image.primary().descriptor.digest.clone(),
        image_id: image.id(),
        image_ref: image_query.to_string(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ownership,
        xattrs,
    };
    let base = scan(&root)?;
    write_json(tmp.path(), "base.json", &base)?;
    write_json(tmp.path(), "container.json", &info)?;
    let kept = tmp.keep();
    if let Err(e) = fs::rename(&kept, &dir) {
        discard(&kept);
        return Err(Error::io("rename", &dir, e));
    }
    sync_dir(&parent)?;
    Ok((info, dir.join("rootfs"), notes))
}

fn write_json<T: Serialize>(dir: &Path, name: &str, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec(v).map_err(|e| Error::Usage(e.to_string()))?;
    write_atomic(dir, &dir.join(name), &bytes)
}

/// The images work containers were made from, which `gc` must keep.
pub fn image_roots(store: &Store) -> Result<Vec<crate::Digest>> {
    Ok(list(store)?.into_iter().map(|c| c.image_manifest).collect())
}

/// Remove a container and its files. The directory is first renamed aside, so a kill
/// leaves either the whole container or none of it (plus a hidden leftover `gc` removes);
/// never a listed container with half its files.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let dir = container_dir(store, name)?;
    // A directory without a readable record (left by an older airlock) is removed too:
    // `create --name` would otherwise refuse the name forever.
    if let Err(e) = info(store, name) {
        if !dir.is_dir() {
            return Err(e);
        }
    }
    let _lock = store.read_lock()?;
    let parent = containers_dir(store);
    let aside = parent.join(format!("{REMOVING}{}-{name}", std::process::id()));
    fs::rename(&dir, &aside).map_err(|e| Error::io("move aside", &dir, e))?;
    sync_dir(&parent)?;
    discard(&aside);
    if aside.exists() {
        return Err(Error::io(
            "remove",
            &aside,
            std::io::Error::other("some files could not be deleted; `airlock gc` retries"),
        ));
    }
    Ok(())
}

const CREATING: &str = ".creating-";
const REMOVING: &str = ".removing-";

/// Delete a directory tree that is no container (any more), read-only parts included.
fn discard(dir: &Path) {
    // Read-only directories from the image would stop remove_dir_all.
    make_writable(dir);
    let _ = fs::remove_dir_all(dir);
}

/// Delete what killed `create`s and `rm`s left (hidden `.creating-*` and `.removing-*`
/// directories). Called by `gc` while it holds the store's gc lock exclusively, so no
/// create or rm is running. Returns how many were removed.
pub fn remove_leftovers(store: &Store) -> Result<usize> {
    let Ok(entries) = fs::read_dir(containers_dir(store)) else {
        return Ok(0);
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(CREATING) || name.starts_with(REMOVING) {
            discard(&e.path());
            removed += 1;
        }
    }
    Ok(removed)
}

fn make_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(
            dir,
            fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o700),
        );
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// Every path under `root` with what `commit` compares.
fn scan(root: &Path) -> Result<BTreeMap<String, BaseEntry>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
            let e = e.map_err(|e| Error::io("read", &dir, e))?;
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else {
                'o'
            };
            let link = ft.is_symlink().then(|| {
                fs::read_link(&p)
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            out.insert(
                rel,
                BaseEntry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if kind == 'd' { 0 } else { m.size() },
                    mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                    ino: m.ino(),
                    link,
                },
            );
        }
    }
    Ok(out)
}

/// The changes since `create`: paths to write and whiteouts (`dir/.wh.name`, opaque markers).
fn diff(
    base: &BTreeMap<String, BaseEntry>,
    now: &BTreeMap<String, BaseEntry>,
) -> (Vec<String>, Vec<String>) {
    let mut replaced_dirs: BTreeSet<String> = BTreeSet::new();
    for (p, n) in now {
        if n.kind == 'd' && base.get(p).is_some_and(|b| b.kind == 'd' && b.ino != n.ino) {
            replaced_dirs.insert(p.clone());
        }
    }
    let under_replaced = |p: &str| {
        replaced_dirs.iter().any(|d| {
            p.len() > d.len() && p.starts_with(d.as_str()) && p.as_bytes()[d.len()] == b'/'
        })
    };
    let mut write = Vec::new();
    for (p, n) in now {
        let changed = match base.get(p) {
            None => true,
            Some(b) => b != n,
        };
        if changed || under_replaced(p) {
            write.push(p.clone());
        }
    }
    let mut whiteouts = Vec::new();
    for d in &replaced_dirs {
        whiteouts.push(format!("{d}/{OPAQUE_MARKER}"));
    }
    let mut deleted: Vec<&String> = base.keys().filter(|p| !now.contains_key(*p)).collect();
    deleted.sort();
    let mut gone_dirs: Vec<&str> = Vec::new();
    for p in deleted {
        // Only the top of a deleted tree needs a whiteout; inside a replaced dir the opaque
        // marker already hides it.
        if gone_dirs
            .iter()
            .any(|d| p.starts_with(d) && p.as_bytes().get(d.len()) == Some(&b'/'))
            || under_replaced(p)
        {
            continue;
        }
        gone_dirs.push(p);
        let (parent, name) = match p.rsplit_once('/') {
            Some((a, b)) => (format!("{a}/"), b),
            None => (String::new(), p.as_str()),
        };
        whiteouts.push(format!("{parent}{WHITEOUT_PREFIX}{name}"));
    }
    (write, whiteouts)
}

/// Owners to record in tar entries: what could not be applied at create time, and (as a
/// non-root user) this user's own files shown as root's, as a rootless engine would.
fn ownership_overrides(
    info: &ContainerInfo,
    now: &BTreeMap<String, BaseEntry>,
) -> BTreeMap<String, (u64, u64)> {
    let me = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let mut map = BTreeMap::new();
    if me != 0 {
        for (p, e) in now {
            if e.uid == me {
                map.insert(p.clone(), (0, 0));
            }
        }
    }
    for (p, o) in &info.ownership {
        map.insert(p.clone(), *o);
    }
    map
}

/// Tar entries (empty regular files) for whiteout markers, without an end-of-archive
/// marker so the layer's other entries can follow.
fn whiteout_entries(paths: &[String]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for p in paths {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, p, std::io::empty())
            .map_err(|e| Error::stream("write a whiteout", e))?;
    }
    let mut bytes = b
        .into_inner()
        .map_err(|e| Error::stream("write a whiteout", e))?;
    // into_inner() appended the two zero blocks that end an archive: drop them.
    bytes.truncate(bytes.len() - 1024);
    Ok(bytes)
}

/// Write the container's filesystem as one tar.
pub fn export(store: &Store, name: &str, out: &mut dyn Write) -> Result<u64> {
    let info = info(store, name)?;
    let root = container_dir(store, name)?.join("rootfs");
    let now = scan(&root)?;
    let opts = DirTarOptions {
        ownership_overrides: ownership_overrides(&info, &now),
        exclude: BTreeSet::new(),
        xattr_overrides: info.xattrs.clone(),
    };
    let paths: Vec<String> = now.keys().cloned().collect();
    write_entries(&root, &paths, out, &opts)
}

/// Commit a container's changes as one new layer on top of its image, with `changes`
/// (Dockerfile instructions) and `message` applied to the config.
pub fn commit(
    store: &Store,
    name: &str,
    target: Option<Reference>,
    changes: &[String],
    message: Option<&str>,
) -> Result<(crate::Digest, Vec<TagChange>)> {
    let info = info(store, name)?;
    let dir = container_dir(store, name)?;
    let root = dir.join("rootfs");
    let base: BTreeMap<String, BaseEntry> = spec::parse_json(
        &fs::read(dir.join("base.json"))
            .map_err(|e| Error::io("read", dir.join("base.json"), e))?,
        "base.json",
        "container base listing",
    )?;
    let now = scan(&root)?;
    let (write, whiteouts) = diff(&base, &now);
    let opts = DirTarOptions {
        ownership_overrides: ownership_overrides(&info, &now),
        exclude: BTreeSet::new(),
        xattr_overrides: info.xattrs.clone(),
    };
    let staging = store.staging()?;
    let layer = staging.write_with(|w| {
        // Whiteouts first, as the image-spec prefers, then the new and changed entries.
        w.write_all(&whiteout_entries(&whiteouts)?)
            .map_err(|e| Error::stream("write the layer", e))?;
        write_entries(&root, &write, w, &opts)?;
        Ok(())
    })?;
    let _lock = store.read_lock()?;
    let manifest_bytes = store.read_blob(&info.image_manifest)?;
    let mut manifest: Manifest =
        spec::parse_json(&manifest_bytes, "image manifest", "image manifest")?;
    let config_bytes = store.read_blob(&manifest.config.digest)?;
    let mut config: serde_json::Map<String, serde_json::Value> =
        spec::parse_json(&config_bytes, "image config", "image config")?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut inner = config
        .remove("config")
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    crate::changes::apply_changes(&mut inner, changes).map_err(|e| Error::Usage(e.to_string()))?;
    config.insert("config".into(), inner.into());
    config.insert("created".into(), created.clone().into());
    if let Some(rootfs) = config.get_mut("rootfs").and_then(|r| r.as_object_mut()) {
        let ids = rootfs
            .entry("diff_ids")
            .or_insert_with(|| serde_json::json!([]));
        if let Some(a) = ids.as_array_mut() {
            a.push(layer.digest.to_string().into());
        }
    }
    let mut entry =
        serde_json::json!({"created": created, "created_by": format!("airlock commit {name}")});
    if let Some(m) = message {
        entry["comment"] = m.into();
    }
    match config.get_mut("history").and_then(|h| h.as_array_mut()) {
        Some(h) => h.push(entry),
        None => {
            config.insert("history".into(), serde_json::json!([entry]));
        }
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::Usage(e.to_string()))?;
    let config_blob = staging.write_bytes(&config_bytes)?;
    manifest.config = Descriptor::new(
        &manifest.config.media_type,
        config_blob.digest.clone(),
        config_blob.size,
    );
    let layer_type = spec::uncompressed_layer_type(
        manifest
            .media_type
            .as_deref()
            .unwrap_or(media_type::OCI_MANIFEST),
    );
    manifest.layers.push(Descriptor::new(
        layer_type,
        layer.digest.clone(),
        layer.size,
    ));
    let mt = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
    let manifest_blob = staging
        .write_bytes(&serde_json::to_vec(&manifest).map_err(|e| Error::Usage(e.to_string()))?)?;
    let new = NewImage {
        root: Descriptor::new(&mt, manifest_blob.digest, manifest_blob.size),
        names: target.into_iter().collect(),
        generated: true,
        id: config_blob.digest.clone(),
    };
    drop(_lock);
    let tag_changes = store.commit(&staging, &[new])?;
    Ok((config_blob.digest, tag_changes))
}
