//! Writing a directory tree as a deterministic tar: what `export --dir`, `import DIR` and
//! `commit` produce.
//!
//! Headers are built by hand (GNU format, long names and link targets as GNU `L`/`K`
//! records) so the bytes depend only on the tree: entries sorted by path bytes, names
//! relative without `./`, directories with a trailing `/`, the root itself omitted, mode
//! (setuid/setgid/sticky included), uid, gid and mtime in whole seconds; no atime, ctime or
//! user/group names. Extended attributes are not written and sockets are skipped (tar
//! cannot hold them). File contents are streamed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::normalize_path;
use crate::error::{Error, Result};

const BLOCK: usize = 512;

/// What to write besides what the disk says.
#[derive(Debug, Clone, Default)]
pub struct DirTarOptions {
    /// Ownership to record instead of what the files on disk say: path -> (uid, gid).
    /// Paths are relative to the root (normalised like entry names).
    pub ownership_overrides: BTreeMap<String, (u64, u64)>,
    /// Relative paths to leave out (e.g. engine-injected files); a directory's whole
    /// subtree goes with it.
    pub exclude: BTreeSet<String>,
    /// Extended attributes to record besides those on disk (ones that could not be set
    /// when unpacking): path -> (name, value).
    pub xattr_overrides: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

/// Write the tree under `root` (not the root itself) as a tar; returns the entries written.
pub fn write_dir_tar(root: &Path, out: &mut dyn Write, opts: &DirTarOptions) -> Result<u64> {
    let md = fs::metadata(root).map_err(|e| Error::io("open", root, e))?;
    if !md.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let opts = Prepared::new(opts);
    let mut paths = Vec::new();
    walk(root, &[], &opts, &mut paths)?;
    write_sorted(root, paths, out, &opts, false)
}

/// Same as [`write_dir_tar`], for one entry list chosen by the caller (commit writes only
/// changed paths). Paths are normalised, deduplicated and sorted; a path with a `..`
/// component, or whose parent on disk is a symlink (reading through it could leave the
/// root), is refused with [`Error::Usage`].
pub fn write_entries(
    root: &Path,
    paths: &[String],
    out: &mut dyn Write,
    opts: &DirTarOptions,
) -> Result<u64> {
    let opts = Prepared::new(opts);
    let mut rels = Vec::with_capacity(paths.len());
    for p in paths {
        let n = normalize_path(p);
        if n.split('/').any(|c| c == "..") {
            return Err(Error::Usage(format!(
                "'{p}': paths with `..` cannot be archived"
            )));
        }
        if !n.is_empty() && !opts.is_excluded(n.as_bytes()) {
            rels.push(n.into_bytes());
        }
    }
    write_sorted(root, rels, out, &opts, true)
}

/// Options with keys normalised once.
struct Prepared {
    owners: BTreeMap<Vec<u8>, (u64, u64)>,
    exclude: BTreeSet<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<(String, Vec<u8>)>>,
}

impl Prepared {
    fn new(opts: &DirTarOptions) -> Self {
        Prepared {
            owners: opts
                .ownership_overrides
                .iter()
                .map(|(k, v)| (normalize_path(k).into_bytes(), *v))
                .collect(),
            exclude: opts
                .exclude
                .iter()
                .map(|k| normalize_path(k).into_bytes())
                .collect(),
            xattrs: opts
                .xattr_overrides
                .iter()
                .map(|(k, v)| (normalize_path(k).into_bytes(), v.clone()))
                .collect(),
        }
    }

    /// True when `rel` or one of its ancestors is excluded.
    fn is_excluded(&self, rel: &[u8]) -> bool {
        if self.exclude.is_empty() {
            return false;
        }
        rel.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| &rel[..i])
            .chain(std::iter::once(rel))
            .any(|p| self.exclude.contains(p))
    }
}

fn rel_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Collect the relative paths below `dir` without following symlinks.
fn walk(root: &Path, prefix: &[u8], opts: &Prepared, out: &mut Vec<Vec<u8>>) -> Result<()> {
    let dir = rel_path(root, prefix);
    for child in fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))? {
        let child = child.map_err(|e| Error::io("list", &dir, e))?;
        let mut rel = prefix.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(child.file_name().as_bytes());
        if opts.is_excluded(&rel) {
            continue;
        }
        let ft = child
            .file_type()
            .map_err(|e| Error::io("inspect", child.path(), e))?;
        out.push(rel.clone());
        if ft.is_dir() {
            walk(root, &rel, opts, out)?;
        }
    }
    Ok(())
}

/// Refuse a path whose parents are not all real directories.
fn check_parents(root: &Path, rel: &[u8]) -> Result<()> {
    let mut p = root.to_path_buf();
    let comps: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
    for c in &comps[..comps.len() - 1] {
        p.push(OsStr::from_bytes(c));
        let md = fs::symlink_metadata(&p).map_err(|e| Error::io("inspect", &p, e))?;
        if !md.is_dir() {
            return Err(Error::Usage(format!(
                "'{}': parent {} is not a directory (a symlink is not followed)",
                String::from_utf8_lossy(rel),
                p.display()
            )));
        }
    }
    Ok(())
}

fn write_sorted(
    root: &Path,
    mut rels: Vec<Vec<u8>>,
    out: &mut dyn Write,
    opts: &Prepared,
    check: bool,
) -> Result<u64> {
    rels.sort_unstable();
    rels.dedup();
    // (dev, inode) -> first name in sort order, for files with more than one name.
    let mut first_names: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut count = 0;
    for rel in &rels {
        if check {
            check_parents(root, rel)?;
        }
        let path = rel_path(root, rel);
        let md = fs::symlink_metadata(&path).map_err(|e| Error::io("inspect", &path, e))?;
        let ft = md.file_type();
        let mut h = Header::new_gnu();
        let (uid, gid) = opts
            .owners
            .get(rel.as_slice())
            .copied()
            .unwrap_or((u64::from(md.uid()), u64::from(md.gid())));
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
        h.set_size(0);
        let mut name = rel.clone();
        let mut link: Option<Vec<u8>> = None;
        let mut data = None;
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            name.push(b'/');
        } else if let Some(first) = (md.nlink() > 1)
            .then(|| first_names.get(&(md.dev(), md.ino())))
            .flatten()
        {
            h.set_entry_type(EntryType::Link);
            link = Some(first.clone());
        } else {
            if md.nlink() > 1 {
                first_names.insert((md.dev(), md.ino()), rel.clone());
            }
            if ft.is_file() {
                h.set_entry_type(EntryType::Regular);
                h.set_size(md.len());
                data = Some(md.len());
            } else if ft.is_symlink() {
                h.set_entry_type(EntryType::Symlink);
                let target = fs::read_link(&path).map_err(|e| Error::io("readlink", &path, e))?;
                link = Some(target.as_os_str().as_bytes().to_vec());
            } else if ft.is_char_device() || ft.is_block_device() {
                h.set_entry_type(if ft.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                let (major, minor) = split_rdev(md.rdev());
                if let Some(gnu) = h.as_gnu_mut() {
                    gnu.set_device_major(major);
                    gnu.set_device_minor(minor);
                }
            } else if ft.is_fifo() {
                h.set_entry_type(EntryType::Fifo);
            } else {
                continue; // sockets: tar has no type for them
            }
        }
        if !ft.is_symlink() {
            let mut xattrs: BTreeMap<String, Vec<u8>> = read_xattrs(&path);
            for (k, v) in opts.xattrs.get(rel.as_slice()).into_iter().flatten() {
                xattrs.insert(k.clone(), v.clone());
            }
            if !xattrs.is_empty() {
                pax_xattrs(out, &xattrs)?;
            }
        }
        set_name(out, &mut h, &name, link.as_deref())?;
        h.set_cksum();
        emit(out, h.as_bytes())?;
        if let Some(size) = data {
            copy_file(&path, size, out)?;
        }
        count += 1;
    }
    emit(out, &[0u8; 2 * BLOCK])?;
    Ok(count)
}

/// Extended attributes on disk, sorted by name (unreadable ones are left out).
fn read_xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(names) = xattr::list(path) {
        for name in names {
            let name = name.to_string_lossy().into_owned();
            if let Ok(Some(value)) = xattr::get(path, &name) {
                out.insert(name, value);
            }
        }
    }
    out
}

/// A PAX extended header carrying `SCHILY.xattr.NAME` records, as GNU tar and Go write them.
fn pax_xattrs(out: &mut dyn Write, xattrs: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let mut body = Vec::new();
    for (name, value) in xattrs {
        let key = format!("SCHILY.xattr.{name}");
        // "LEN KEY=VALUE\n", where LEN counts itself.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len = len.to_string().len() + rest;
        }
        body.extend_from_slice(format!("{len} {key}=").as_bytes());
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_path("PaxHeader")
        .map_err(|e| Error::Usage(e.to_string()))?;
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    emit(out, h.as_bytes())?;
    emit(out, &body)?;
    pad(out, body.len() as u64)
}

/// Linux `dev_t` encoding (glibc's `major()`/`minor()`).
fn split_rdev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Fill the name and link fields, emitting GNU long-name/long-link records first when a
/// value does not fit in 100 bytes.
fn set_name(out: &mut dyn Write, h: &mut Header, name: &[u8], link: Option<&[u8]>) -> Result<()> {
    if name.len() > 100 {
        long_record(out, EntryType::GNULongName, name)?;
    }
    let old = h.as_old_mut();
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        if link.len() > 100 {
            long_record(out, EntryType::GNULongLink, link)?;
        }
        let n = link.len().min(100);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    Ok(())
}

/// One `././@LongLink` record holding `value` NUL-terminated (what GNU tar writes).
fn long_record(out: &mut dyn Write, ty: EntryType, value: &[u8]) -> Result<()> {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(ty);
    h.set_cksum();
    emit(out, h.as_bytes())?;
    emit(out, value)?;
    emit(out, &[0])?;
    pad(out, value.len() as u64 + 1)
}

fn emit(out: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .map_err(|e| Error::stream("write the tar", e))
}

fn pad(out: &mut dyn Write, len: u64) -> Result<()> {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 {
        return Ok(());
    }
    emit(out, &[0u8; BLOCK][..BLOCK - rem])
}

/// Stream exactly `size` bytes of the file (the size its header announced) and pad.
fn copy_file(path: &Path, size: u64, out: &mut dyn Write) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let mut src = file.take(size);
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path, e)),
        };
        emit(out, &buf[..n])?;
        copied += n as u64;
    }
    if copied != size {
        let e = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while it was archived",
        );
        return Err(Error::io("read", path, e));
    }
    pad(out, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::unpack::{unpack_layer, UnpackOptions};
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tar_of(root: &Path, opts: &DirTarOptions) -> Vec<u8> {
        let mut out = Vec::new();
        write_dir_tar(root, &mut out, opts).unwrap();
        out
    }

    /// (name, type, uid, gid, link target) of every entry, read back with the tar crate.
    fn listing(bytes: &[u8]) -> Vec<(String, EntryType, u64, u64, Option<String>)> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap());
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                (
                    name,
                    h.entry_type(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    link,
                )
            })
            .collect()
    }

    fn long_name() -> String {
        format!("{}/{}", "d".repeat(90), "f".repeat(110))
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("etc/sub")).unwrap();
        fs::write(r.join("etc/passwd"), "root:x:0:0").unwrap();
        fs::write(r.join("etc/sub/big"), vec![7u8; 70_000]).unwrap();
        fs::write(r.join("suid"), "x").unwrap();
        fs::set_permissions(r.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(r.join("etc/sub"), fs::Permissions::from_mode(0o1777)).unwrap();
        symlink("/etc/passwd", r.join("abs-link")).unwrap();
        symlink(format!("../{}", "t".repeat(150)), r.join("long-link")).unwrap();
        fs::hard_link(r.join("etc/passwd"), r.join("z-hard")).unwrap();
        fs::write(r.join("héllo-日本.txt"), "utf8").unwrap();
        let long = r.join(long_name());
        fs::create_dir_all(long.parent().unwrap()).unwrap();
        fs::write(long, "long").unwrap();
        dir
    }

    /// Names, types, modes, link targets, contents and hardlink groups of a tree.
    fn describe(root: &Path) -> Vec<String> {
        let mut paths = Vec::new();
        walk(
            root,
            &[],
            &Prepared::new(&DirTarOptions::default()),
            &mut paths,
        )
        .unwrap();
        paths.sort();
        let mut inodes = HashMap::new();
        paths
            .iter()
            .map(|rel| {
                let p = rel_path(root, rel);
                let md = fs::symlink_metadata(&p).unwrap();
                let first = inodes
                    .entry(md.ino())
                    .or_insert_with(|| String::from_utf8_lossy(rel).into_owned())
                    .clone();
                let what = if md.is_dir() {
                    "dir".to_string()
                } else if md.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&p).unwrap().display())
                } else {
                    format!(
                        "{} bytes {:x}",
                        md.len(),
                        fs::read(&p).unwrap().iter().map(|b| *b as u64).sum::<u64>()
                    )
                };
                format!(
                    "{} {:o} {} first={}",
                    String::from_utf8_lossy(rel),
                    md.mode() & 0o7777,
                    what,
                    first
                )
            })
            .collect()
    }

    #[test]
    fn round_trip_through_unpack() {
        let src = sample_tree();
        let bytes = tar_of(src.path(), &DirTarOptions::default());
        let dst = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            apply_ownership: false,
        };
        unpack_layer(&mut bytes.as_slice(), dst.path(), &opts).unwrap();
        assert_eq!(describe(src.path()), describe(dst.path()));
        let before = fs::metadata(src.path().join("etc/sub/big")).unwrap();
        let after = fs::metadata(dst.path().join("etc/sub/big")).unwrap();
        assert_eq!(before.mtime(), after.mtime());
    }

    #[test]
    fn output_is_deterministic_sorted_and_well_formed() {
        let src = sample_tree();
        let a = tar_of(src.path(), &DirTarOptions::default());
        let b = tar_of(src.path(), &DirTarOptions::default());
        assert_eq!(a, b);
        let list = listing(&a);
        let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
        let long_dir = format!("{}/", "d".repeat(90));
        let long = long_name();
        assert_eq!(
            names,
            [
                "abs-link",
                long_dir.as_str(),
                long.as_str(),
                "etc/",
                "etc/passwd",
                "etc/sub/",
                "etc/sub/big",
                "héllo-日本.txt",
                "long-link",
                "suid",
                "z-hard",
            ]
        );
        let by_name = |n: &str| list.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(by_name("z-hard").1, EntryType::Link);
        assert_eq!(by_name("z-hard").4.as_deref(), Some("etc/passwd"));
        assert_eq!(by_name("etc/passwd").1, EntryType::Regular);
        let target = format!("../{}", "t".repeat(150));
        assert_eq!(by_name("long-link").4, Some(target));
        assert_eq!(by_name("abs-link").4.as_deref(), Some("/etc/passwd"));
        let mut ar = tar::Archive::new(a.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().username_bytes(), Some(&b""[..]));
            if e.path_bytes().as_ref() == b"suid" {
                assert_eq!(e.header().mode().unwrap(), 0o4755);
            }
        }
    }

    #[test]
    fn exclude_and_overrides() {
        let src = sample_tree();
        let opts = DirTarOptions {
            ownership_overrides: [("./suid".to_string(), (1000, 1001))].into(),
            exclude: ["etc/sub".to_string(), "/z-hard".to_string()].into(),
            ..Default::default()
        };
        let list = listing(&tar_of(src.path(), &opts));
        assert!(list
            .iter()
            .all(|e| !e.0.starts_with("etc/sub") && e.0 != "z-hard"));
        let suid = list.iter().find(|e| e.0 == "suid").unwrap();
        assert_eq!((suid.2, suid.3), (1000, 1001));
        assert!(list.iter().any(|e| e.0 == "etc/passwd"));
    }

    #[test]
    fn chosen_entries() {
        let src = sample_tree();
        let paths = ["z-hard", "./etc/passwd", "etc/passwd", "etc/sub/big"].map(String::from);
        let mut out = Vec::new();
        let n = write_entries(src.path(), &paths, &mut out, &DirTarOptions::default()).unwrap();
        assert_eq!(n, 3);
        let list = listing(&out);
        let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["etc/passwd", "etc/sub/big", "z-hard"]);
        assert_eq!(list[2].1, EntryType::Link);
        // `..` and reading through a symlinked parent are refused.
        let bad = ["../x".to_string()];
        let r = write_entries(src.path(), &bad, &mut Vec::new(), &DirTarOptions::default());
        assert!(matches!(r, Err(Error::Usage(_))));
        symlink("/etc", src.path().join("hostetc")).unwrap();
        let bad = ["hostetc/passwd".to_string()];
        let r = write_entries(src.path(), &bad, &mut Vec::new(), &DirTarOptions::default());
        assert!(matches!(r, Err(Error::Usage(_))));
    }

    #[test]
    fn devices_keep_their_numbers() {
        // /dev/null is char 1:3 everywhere; reading it needs no privilege.
        let mut out = Vec::new();
        write_entries(
            Path::new("/dev"),
            &["null".to_string()],
            &mut out,
            &DirTarOptions::default(),
        )
        .unwrap();
        let mut ar = tar::Archive::new(out.as_slice());
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), EntryType::Char);
        assert_eq!(e.header().device_major().unwrap(), Some(1));
        assert_eq!(e.header().device_minor().unwrap(), Some(3));
    }
}
