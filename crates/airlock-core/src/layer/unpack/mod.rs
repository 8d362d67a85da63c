//! Applying one layer tar onto a directory (a work container's root), the way
//! `docker` and `umoci unpack` do, without ever reading or writing outside that directory.
//!
//! The safety model: entry names with a `..` component are refused outright; absolute names
//! are taken relative to the root (as every layer reader does). Every parent component of an
//! entry is walked one at a time with `symlink_metadata`; a symlink met on the way is
//! resolved *inside* the root, chroot style (an absolute target restarts at the root, `..`
//! never climbs above it), so `etc -> /etc` followed by `etc/passwd` writes
//! `<root>/etc/passwd`. The final component is never followed: whatever is there is removed
//! first and the new entry created with `create_new`/`O_NOFOLLOW`, so replacing a symlink
//! replaces the link. Hardlink targets are resolved the same way and link the named inode
//! itself (a symlink is linked, not followed).
//!
//! This holds as long as nothing else changes the tree while a layer is applied (the root
//! must not belong to a running container): the walk and the writes are separate syscalls.

mod resolve;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

use super::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::error::{Error, Result};

use resolve::components;

/// How to apply a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Try to `lchown` every entry to the uid/gid the tar records. False when not running
    /// as root: the owners are then only reported.
    pub apply_ownership: bool,
}

/// What applying a layer did beyond writing files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Entries whose owner could not be applied: path -> (uid, gid). Only owners that
    /// differ from the process's effective ids are listed, so a later `commit` can write the
    /// right owner back through `DirTarOptions::ownership_overrides`. Keys are the real
    /// paths written, relative to the root (non-UTF-8 bytes replaced lossily).
    pub unapplied_ownership: BTreeMap<String, (u64, u64)>,
    /// Character/block devices and fifos that were not created (making them needs
    /// `mknod`, which needs root and unsafe code). Whatever was at the path is removed.
    pub skipped_devices: Vec<String>,
    /// Extended attributes that could not be set: path -> (name, value).
    pub unapplied_xattrs: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    /// Tar entries processed, whiteouts included (PAX global headers excluded).
    pub entries: u64,
}

/// Apply one uncompressed layer tar onto `root`.
///
/// Paths are normalised as [`super::normalize_path`] does (on bytes, so non-UTF-8 names
/// survive). Whiteouts delete lower content and are never written; an opaque marker hides
/// the children `root` had before this layer, whatever its place in the tar. Modes
/// (setuid/setgid/sticky included) and mtimes are applied; directories get theirs at the
/// end, after their children are written. Extended attributes (PAX `SCHILY.xattr.*`, e.g.
/// file capabilities) are skipped: writing `security.*`/`trusted.*` needs privileges and
/// unsafe code, and nothing is recorded for them. Symlink mtimes are not set. The entry
/// `./` (the root itself) is counted but not applied.
///
/// The stream is read to its end (past the tar trailer) so a hashing reader sees every byte.
pub fn unpack_layer(
    layer: &mut dyn Read,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport> {
    let md = fs::metadata(root).map_err(|e| Error::io("open", root, e))?;
    if !md.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut u = Unpacker {
        root,
        opts,
        ids: process_ids(root)?,
        report: UnpackReport::default(),
        created: BTreeSet::new(),
        dirs: BTreeMap::new(),
    };
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        u.apply(&mut entry)?;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| Error::stream("read the layer", e))?;
    u.finish_dirs()?;
    Ok(u.report)
}

/// The process's effective uid/gid as the kernel assigns them to new files in `root` (a
/// setgid root directory is accounted for), from an unnamed file that never appears.
fn process_ids(root: &Path) -> Result<(u64, u64)> {
    let probe = tempfile::tempfile_in(root).map_err(|e| Error::io("create a file in", root, e))?;
    let md = probe
        .metadata()
        .map_err(|e| Error::io("inspect a file in", root, e))?;
    use std::os::unix::fs::MetadataExt;
    Ok((u64::from(md.uid()), u64::from(md.gid())))
}

/// A numeric header field, where an empty one (all NULs or spaces) is 0 as Go's
/// archive/tar reads it; anything else unparsable is refused, as Go refuses it.
fn numeric<T: Into<u64>>(parsed: io::Result<T>, raw: &[u8], name: &str) -> Result<u64> {
    match parsed {
        Ok(v) => Ok(v.into()),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(bad(name, e)),
    }
}

/// Map a tar reader error: a short stream is a truncation, anything else damage.
fn tar_err(e: io::Error) -> Error {
    let e = match Error::from_carried(e) {
        Ok(carried) => return carried,
        Err(e) => e,
    };
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Truncated {
            detail: e.to_string(),
        }
    } else {
        Error::BadTar {
            detail: e.to_string(),
        }
    }
}

fn bad(name: &str, what: impl std::fmt::Display) -> Error {
    Error::BadTar {
        detail: format!("entry '{name}': {what}"),
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

struct Unpacker<'a> {
    root: &'a Path,
    opts: &'a UnpackOptions,
    /// Effective (uid, gid) of this process.
    ids: (u64, u64),
    report: UnpackReport,
    /// Real paths (relative to root) this layer wrote: opaque markers and whiteouts spare
    /// them and their ancestors.
    created: BTreeSet<PathBuf>,
    /// Directories whose mode and mtime are applied at the end: rel path -> (mode, mtime).
    dirs: BTreeMap<PathBuf, (u32, Option<u64>)>,
}

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            return Ok(());
        }
        self.report.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let comps = components(&raw, &name)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(());
        };
        if last.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parents, last.as_bytes(), &name);
        }
        let header = entry.header();
        let mode = numeric(header.mode(), &header.as_old().mode, &name)? as u32 & 0o7777;
        let uid = numeric(header.uid(), &header.as_old().uid, &name)?;
        let gid = numeric(header.gid(), &header.as_old().gid, &name)?;
        let mtime = entry_mtime(entry);
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let xattrs = entry_xattrs(entry);

        let parent = self.resolve_dir(parents, true, &name)?.unwrap_or_default();
        let rel = parent.join(last);
        let path = self.root.join(&rel);
        // Old (v7) tars mark directories only by the trailing slash.
        let is_dir =
            ty == EntryType::Directory || (ty == EntryType::Regular && raw.last() == Some(&b'/'));
        match ty {
            _ if is_dir => {
                match fs::symlink_metadata(&path) {
                    Ok(md) if md.is_dir() => {}
                    other => {
                        if other.is_ok() {
                            self.clear(&path, &rel)?;
                        }
                        DirBuilder::new()
                            .mode(0o755)
                            .create(&path)
                            .map_err(|e| Error::io("create directory", &path, e))?;
                    }
                }
                self.own(&path, &rel, uid, gid)?;
                self.set_xattrs(&path, &rel, &xattrs);
                self.dirs.insert(rel.clone(), (mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&path, &rel)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|e| Error::io("create", &path, e))?;
                copy_data(entry, &mut file, &path, &name)?;
                // chown first: it clears setuid/setgid, which the chmod then restores.
                self.own(&path, &rel, uid, gid)?;
                self.set_xattrs(&path, &rel, &xattrs);
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(|e| Error::io("chmod", &path, e))?;
                if let Some(t) = mtime {
                    file.set_times(FileTimes::new().set_modified(to_time(t)))
                        .map_err(|e| Error::io("set mtime of", &path, e))?;
                }
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| bad(&name, "symlink without a target"))?;
                self.clear(&path, &rel)?;
                symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| Error::io("create symlink", &path, e))?;
                self.own(&path, &rel, uid, gid)?;
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| bad(&name, "hardlink without a target"))?;
                let tname = String::from_utf8_lossy(&target).into_owned();
                let tcomps = components(&target, &tname)?;
                let Some((tlast, tparents)) = tcomps.split_last() else {
                    return Err(bad(&name, "hardlink to the root"));
                };
                let missing = || bad(&name, format!("hardlink target '{tname}' does not exist"));
                let tdir = self
                    .resolve_dir(tparents, false, &name)?
                    .ok_or_else(missing)?;
                let trel = tdir.join(tlast);
                let tpath = self.root.join(&trel);
                match fs::symlink_metadata(&tpath) {
                    Ok(md) if md.is_dir() => {
                        return Err(bad(
                            &name,
                            format!("hardlink target '{tname}' is a directory"),
                        ))
                    }
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => return Err(missing()),
                    Err(e) => return Err(Error::io("inspect", &tpath, e)),
                }
                if trel == rel {
                    return Err(bad(&name, "hardlink to itself"));
                }
                self.clear(&path, &rel)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
                fs::hard_link(&tpath, &path).map_err(|e| Error::io("hardlink", &path, e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.clear(&path, &rel)?;
                self.report
                    .skipped_devices
                    .push(rel.to_string_lossy().into_owned());
                return Ok(());
            }
            other => {
                return Err(bad(&name, format!("unsupported entry type {other:?}")));
            }
        }
        self.created.insert(rel);
        Ok(())
    }

    /// Apply a whiteout entry (`.wh.NAME` or the opaque marker) found in `parents`.
    fn whiteout(&mut self, parents: &[OsString], last: &[u8], name: &str) -> Result<()> {
        let is_opaque = last == OPAQUE_MARKER.as_bytes();
        let victim = &last[WHITEOUT_PREFIX.len()..];
        if !is_opaque && matches!(victim, b"" | b"." | b"..") {
            return Err(bad(name, "invalid whiteout"));
        }
        // Below a symlink this layer made, readers follow it or not depending on the order
        // of entries: refused (flatten refuses it too).
        let mut lexical = PathBuf::new();
        for c in parents {
            lexical.push(c);
            let is_link =
                fs::symlink_metadata(self.root.join(&lexical)).is_ok_and(|md| !md.is_dir());
            if is_link && self.created.contains(&lexical) {
                return Err(bad(
                    name,
                    format!(
                        "a whiteout below '{}', which the same layer made a non-directory",
                        lexical.display()
                    ),
                ));
            }
        }
        // The directory a whiteout stands in exists in the layer (docker creates it
        // before it looks at the name), even when there is nothing below it to hide.
        let Some(dir) = self.resolve_dir(parents, true, name)? else {
            return Ok(());
        };
        // ... and so belongs to this layer: another of its markers does not hide it.
        if !dir.as_os_str().is_empty() {
            self.created.insert(dir.clone());
        }
        if !is_opaque && victim.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.*` names are aufs bookkeeping (e.g. `.wh..wh.plnk`): ignore.
            return Ok(());
        }
        if is_opaque {
            return self.remove_lower(&dir);
        }
        let rel = dir.join(OsStr::from_bytes(victim));
        let path = self.root.join(&rel);
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(Error::io("inspect", &path, e)),
        };
        if self.created.contains(&rel) || self.has_created_below(&rel) {
            // Whiteouts never hide this layer's own entries, only what lies under them.
            if md.is_dir() {
                self.remove_lower(&rel)?;
            }
            return Ok(());
        }
        self.clear(&path, &rel)
    }

    /// Remove every child of `dir` (recursively) that this layer did not write.
    fn remove_lower(&mut self, dir: &Path) -> Result<()> {
        let full = self.root.join(dir);
        let mut children = Vec::new();
        for child in fs::read_dir(&full).map_err(|e| Error::io("list", &full, e))? {
            let child = child.map_err(|e| Error::io("list", &full, e))?;
            let is_dir = child
                .file_type()
                .map_err(|e| Error::io("inspect", child.path(), e))?
                .is_dir();
            children.push((dir.join(child.file_name()), is_dir));
        }
        for (rel, is_dir) in children {
            if self.created.contains(&rel) || self.has_created_below(&rel) {
                if is_dir {
                    self.remove_lower(&rel)?;
                }
            } else {
                self.clear(&self.root.join(&rel), &rel)?;
            }
        }
        Ok(())
    }

    fn has_created_below(&self, rel: &Path) -> bool {
        // Component-wise order keeps a path's descendants right after it.
        self.created
            .range::<Path, _>((Bound::Excluded(rel), Bound::Unbounded))
            .next()
            .is_some_and(|p| p.starts_with(rel))
    }

    /// Remove whatever is at `path` (never following a symlink) and forget what this layer
    /// recorded about it and below.
    fn clear(&mut self, path: &Path, rel: &Path) -> Result<()> {
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(Error::io("inspect", path, e)),
        };
        if md.is_dir() {
            fs::remove_dir_all(path).map_err(|e| Error::io("remove", path, e))?;
            self.forget_below(rel);
        } else {
            fs::remove_file(path).map_err(|e| Error::io("remove", path, e))?;
        }
        self.created.remove(rel);
        self.dirs.remove(rel);
        let key = rel.to_string_lossy();
        self.report.unapplied_ownership.remove(key.as_ref());
        Ok(())
    }

    /// Forget the records of everything strictly below `rel`, by range (descendants sort
    /// right after their ancestor) so replacing many files stays cheap.
    fn forget_below(&mut self, rel: &Path) {
        let after = (Bound::Excluded(rel), Bound::Unbounded);
        let below: Vec<PathBuf> = self
            .created
            .range::<Path, _>(after)
            .take_while(|p| p.starts_with(rel))
            .cloned()
            .collect();
        for p in below {
            self.created.remove(&p);
        }
        let below: Vec<PathBuf> = self
            .dirs
            .range::<Path, _>(after)
            .take_while(|(p, _)| p.starts_with(rel))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.dirs.remove(&p);
        }
        let prefix = format!("{}/", rel.to_string_lossy());
        let below: Vec<String> = self
            .report
            .unapplied_ownership
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.report.unapplied_ownership.remove(&k);
        }
    }

    /// Give `path` its recorded owner, or report the owner when that cannot be done.
    fn own(&mut self, path: &Path, rel: &Path, uid: u64, gid: u64) -> Result<()> {
        let key = rel.to_string_lossy().into_owned();
        if self.opts.apply_ownership {
            if let (Ok(u), Ok(g)) = (u32::try_from(uid), u32::try_from(gid)) {
                match lchown(path, Some(u), Some(g)) {
                    Ok(()) => {
                        self.report.unapplied_ownership.remove(&key);
                        return Ok(());
                    }
                    // EPERM: not root; EINVAL: id not mapped in this user namespace.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {}
                    Err(e) => return Err(Error::io("chown", path, e)),
                }
            }
        }
        if (uid, gid) == self.ids {
            self.report.unapplied_ownership.remove(&key);
        } else {
            self.report.unapplied_ownership.insert(key, (uid, gid));
        }
        Ok(())
    }

    /// Apply directory modes and mtimes last, deepest first, since writing children
    /// changes a directory's mtime and a read-only mode would block them.
    fn finish_dirs(&mut self) -> Result<()> {
        for (rel, (mode, mtime)) in std::mem::take(&mut self.dirs).into_iter().rev() {
            if !self.is_real_dir(&rel) {
                continue; // replaced later in the layer
            }
            let path = self.root.join(&rel);
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            dir.set_permissions(Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", &path, e))?;
            if let Some(t) = mtime {
                dir.set_times(FileTimes::new().set_modified(to_time(t)))
                    .map_err(|e| Error::io("set mtime of", &path, e))?;
            }
        }
        Ok(())
    }

    /// Apply extended attributes. Some cannot be set here (`security.*` without root, a
    /// filesystem without xattrs): they are recorded, like owners, not silently lost.
    fn set_xattrs(&mut self, path: &Path, rel: &Path, xattrs: &[(String, Vec<u8>)]) {
        for (name, value) in xattrs {
            if xattr::set(path, name, value).is_err() {
                self.report
                    .unapplied_xattrs
                    .entry(rel.to_string_lossy().into_owned())
                    .or_default()
                    .push((name.clone(), value.clone()));
            }
        }
    }
}

/// Extended attributes recorded as PAX `SCHILY.xattr.NAME` records.
fn entry_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    out
}

/// The entry's mtime in whole seconds: PAX `mtime` (which tar-rs does not fold into the
/// header) wins over the header field; times before 1970 are not applied.
fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<u64> {
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if ext.key_bytes() == b"mtime" {
                let v = String::from_utf8_lossy(ext.value_bytes()).into_owned();
                let secs = v.split('.').next().unwrap_or("");
                return secs.parse::<u64>().ok();
            }
        }
    }
    entry.header().mtime().ok()
}

fn to_time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Stream an entry's data into `file`, telling a short input from a failed write.
fn copy_data(entry: &mut dyn Read, file: &mut File, path: &Path, name: &str) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::stream(format!("read layer entry '{name}'"), e)),
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io("write", path, e))?;
    }
}
