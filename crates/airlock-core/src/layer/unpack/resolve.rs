//! Root-confined path resolution for [`super::unpack_layer`]: entry names are split into
//! normal components (`..` refused) and parent directories are walked one component at a
//! time, a symlink this layer made being resolved inside the root, chroot style. A lower
//! layer's file or symlink standing where this layer has a directory is replaced by the
//! directory, the way overlayfs (docker, podman, containerd) shows such an image.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use super::{bad, is_not_found, Unpacker};
use crate::error::{Error, Result};

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Split an entry name into normal components, refusing `..` (the simple, safe rule).
pub(super) fn components(raw: &[u8], name: &str) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(bad(name, "a `..` component could escape the root")),
            _ => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

impl Unpacker<'_> {
    /// Resolve directory components inside the root, chroot style, and return the real
    /// path relative to root (every prefix a real directory). Missing directories are
    /// created (0755, like docker) when `create`; otherwise a missing or non-directory
    /// component gives `None`.
    pub(super) fn resolve_dir(
        &mut self,
        comps: &[OsString],
        create: bool,
        name: &str,
    ) -> Result<Option<PathBuf>> {
        let mut resolved = PathBuf::new();
        let mut pending: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                // `resolved` holds only real directories, so popping is the physical
                // parent; at the root it stays at the root.
                resolved.pop();
                continue;
            }
            let next = resolved.join(&c);
            let full = self.root.join(&next);
            match fs::symlink_metadata(&full) {
                Ok(md) if md.is_dir() => resolved = next,
                // A lower layer's file or symlink where this layer has a directory: the
                // directory hides it, as overlayfs shows it (the layer is unpacked into an
                // empty directory there, so nothing of the lower one is followed).
                Ok(_) if create && !self.created.contains(&next) => {
                    fs::remove_file(&full).map_err(|e| Error::io("replace", &full, e))?;
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(|e| Error::io("create directory", &full, e))?;
                    self.created.insert(next.clone());
                    resolved = next;
                }
                Ok(md) if md.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(bad(name, "too many levels of symbolic links"));
                    }
                    let target =
                        fs::read_link(&full).map_err(|e| Error::io("readlink", &full, e))?;
                    let mut expanded = Vec::new();
                    for tc in target.components() {
                        match tc {
                            Component::RootDir => resolved = PathBuf::new(),
                            Component::ParentDir => expanded.push(OsString::from("..")),
                            Component::Normal(n) => expanded.push(n.to_os_string()),
                            Component::CurDir | Component::Prefix(_) => {}
                        }
                    }
                    for tc in expanded.into_iter().rev() {
                        pending.push_front(tc);
                    }
                }
                Ok(_) if create => {
                    return Err(bad(
                        name,
                        format!("parent '{}' is not a directory", next.display()),
                    ))
                }
                Ok(_) => return Ok(None),
                Err(e) if is_not_found(&e) && create => {
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(|e| Error::io("create directory", &full, e))?;
                    // Made by this layer: its own whiteouts do not hide it.
                    self.created.insert(next.clone());
                    resolved = next;
                }
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(Error::io("inspect", &full, e)),
            }
        }
        Ok(Some(resolved))
    }

    /// True when every component of `rel` is a real directory (no symlink anywhere).
    pub(super) fn is_real_dir(&self, rel: &Path) -> bool {
        let mut p = self.root.to_path_buf();
        rel.components().all(|c| {
            p.push(c);
            fs::symlink_metadata(&p).is_ok_and(|md| md.is_dir())
        })
    }
}
