//! Reading an image layout directory (an OCI layout, or an unpacked docker-archive) the way
//! a tar stream is read: every blob handed to the destination.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::sniff::{self, EntryKind};
use super::{ArchiveContents, Ingest};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::transport::ImageDestination;

/// Read an image layout directory (OCI layout, or an unpacked docker-archive), handing
/// every blob to `dest`, each shown (and counted) in `progress`.
pub fn read_directory(
    dir: &Path,
    dest: &dyn ImageDestination,
    progress: Option<&Progress>,
) -> Result<ArchiveContents> {
    let mut ingest = Ingest::new(dest);
    ingest.progress = progress.map(|p| (p.clone(), true));
    ingest.refuse_early = false;
    let root = fs::canonicalize(dir).map_err(|e| Error::io("open", dir, e))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d)
            .map_err(|e| Error::io("read", &d, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::io("read", &d, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            // A symbolic link is followed only while it stays inside the directory: a layout
            // must not make airlock read (or print the digest of) files from elsewhere.
            let real = inside(&root, &p, &rel)?;
            let meta = fs::metadata(&real).map_err(|e| Error::io("stat", &real, e))?;
            if meta.is_dir() {
                if sniff::classify(&rel, true) == EntryKind::ArchiveDir {
                    stack.push(p);
                } else {
                    ingest.wants(&rel, &rel, true)?;
                }
                continue;
            }
            if !ingest.wants(&rel, &rel, false)? {
                continue;
            }
            if !meta.is_file() {
                return Err(Error::OutsideInput {
                    entry: rel,
                    detail: "it is no regular file (a device or a FIFO)".into(),
                });
            }
            let f = open_no_follow(&real)?;
            // Never more than the size stat gave: a file that grows is not read on.
            ingest.file(rel, meta.len(), &mut f.take(meta.len()))?;
        }
    }
    ingest.judge()?;
    Ok(ingest.contents)
}

/// `path` if it is no symbolic link, else where it leads, when that is inside `root`.
fn inside(root: &Path, path: &Path, rel: &str) -> Result<std::path::PathBuf> {
    let link = fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?;
    if !link.file_type().is_symlink() {
        return Ok(path.to_path_buf());
    }
    let target = fs::canonicalize(path).map_err(|e| Error::io("follow the link", path, e))?;
    if !target.starts_with(root) {
        return Err(Error::OutsideInput {
            entry: rel.to_string(),
            detail: format!(
                "it is a symbolic link to {}, outside the directory being read",
                target.display()
            ),
        });
    }
    Ok(target)
}

/// Open a file without following a symbolic link put there since it was checked.
fn open_no_follow(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}
