//! Archives split into volumes for removable media (FAT32 sticks take at most 4 GiB per
//! file): `save --split SIZE -o X` writes `X.000`, `X.001`, ...; `load`/`verify -i X.000` (or
//! `-i X` when only the volumes exist) joins them back. Volumes are plain byte slices of one
//! archive, so `cat X.* > X` joins them too.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::durable;

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

/// Parse `4G`, `3900M`, `512K` or a byte count.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => {
            let unit = t[i..]
                .trim_end_matches(['B', 'b', 'i'])
                .to_ascii_uppercase();
            let m = match unit.as_str() {
                "K" => 1u64 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => {
                    return Err(usage(format!(
                        "--split {s}: use a size like 4G, 3900M or 512K"
                    )))
                }
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| usage(format!("--split {s}: use a size like 4G, 3900M or 512K")))?;
    if n == 0 {
        return Err(usage("--split needs a size above zero".into()));
    }
    Ok(n * mult)
}

/// The volumes (`X.000`, `X.001`, ...) of any archive named `base` in `dir`.
fn old_volumes(base: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(stem) = base.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&stem)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect())
}

/// `X.SHA256SUMS`: the checksums of the volumes of `X`.
pub fn sums_path(base: &Path) -> PathBuf {
    beside(base, ".SHA256SUMS")
}

pub(crate) fn volume_path(base: &Path, i: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{i:03}"));
    PathBuf::from(s)
}

/// A writer shared with the code that finishes it afterwards (an archive writer owns its
/// output; the volumes must still be renamed once it is done).
#[derive(Clone)]
pub struct SharedSplitWriter(pub std::sync::Arc<std::sync::Mutex<SplitWriter>>);

impl Write for SharedSplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .flush()
    }
}

impl SharedSplitWriter {
    /// Volumes of `size` bytes named after `base`.
    pub fn new(base: &Path, size: u64) -> Self {
        SharedSplitWriter(std::sync::Arc::new(std::sync::Mutex::new(
            SplitWriter::new(base, size),
        )))
    }

    /// The name the volumes are named after.
    pub fn base(&self) -> PathBuf {
        self.0.lock().map(|w| w.base.clone()).unwrap_or_default()
    }

    /// Give the volumes their names (see [`SplitWriter::finish`]); the archive writer
    /// must be done with its copy. `side` makes the files published beside them from the
    /// checksums' text.
    pub fn finish(self, side: SideFiles<'_>) -> Result<Vec<PathBuf>> {
        let inner = std::sync::Arc::try_unwrap(self.0)
            .map_err(|_| Error::Usage("the archive writer still holds its output".into()))?
            .into_inner()
            .map_err(|_| Error::Usage("the archive writer failed while writing".into()))?;
        inner.finish(side)
    }
}

/// Makes the files published beside an archive (its transfer manifest, signatures) from the
/// text of its `SHA256SUMS`: (path, bytes) pairs.
pub type SideFiles<'a> = &'a dyn Fn(&str) -> Result<Vec<(PathBuf, Vec<u8>)>>;

/// Publish `bytes` as `path` atomically (a temporary file beside it, fsynced, renamed).
pub fn publish_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp =
        durable::output_temp(dir, "side-").map_err(|e| Error::io("create a file in", dir, e))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| Error::io("write", tmp.path(), e))?;
    durable::publish(tmp, path).map_err(|e| Error::io("write", path, e))
}

/// `X` with `suffix` appended to its file name.
pub fn beside(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes one stream as volumes of `size` bytes, under temporary names until [`finish`].
///
/// [`finish`]: SplitWriter::finish
pub struct SplitWriter {
    base: PathBuf,
    dir: PathBuf,
    size: u64,
    parts: Vec<tempfile::NamedTempFile>,
    /// The SHA-256 of each volume, as it is written.
    sums: Vec<crate::digest::Hasher>,
    in_current: u64,
}

impl SplitWriter {
    /// Volumes of `size` bytes named after `base`.
    pub fn new(base: &Path, size: u64) -> Self {
        let dir = base
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        SplitWriter {
            base: base.to_path_buf(),
            dir,
            size,
            parts: Vec::new(),
            sums: Vec::new(),
            in_current: 0,
        }
    }

    /// fsync every volume and give them their names, so that a kill at any point leaves
    /// either the whole new archive or no first volume (`X.000`) at all: never a set that
    /// looks whole but is not. Volumes of an older archive of the same name go first (they
    /// would be joined by mistake); then the new ones are renamed last to first. Returns
    /// the paths.
    pub fn finish(self, side: SideFiles<'_>) -> Result<Vec<PathBuf>> {
        for part in &self.parts {
            part.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io("chmod", part.path(), e))?;
            part.as_file()
                .sync_all()
                .map_err(|e| Error::io("sync", part.path(), e))?;
        }
        // Every `X.NNN`, not only an unbroken run from `X.000`: a save killed while it
        // removed them leaves a gap, and a later, shorter archive must not be joined with
        // what lies beyond it.
        let stale = old_volumes(&self.base, &self.dir)?;
        for p in &stale {
            std::fs::remove_file(p).map_err(|e| Error::io("remove", p, e))?;
        }
        if !stale.is_empty() {
            durable::sync_parent(&self.base).map_err(|e| Error::io("sync", &self.dir, e))?;
        }
        let names: Vec<PathBuf> = (0..self.parts.len())
            .map(|i| volume_path(&self.base, i))
            .collect();
        // `X.SHA256SUMS`, which `sha256sum -c` checks with nothing but coreutils: written
        // before the volumes get their names, so whole volumes never lack it.
        let mut sums = String::new();
        for (hasher, name) in self.sums.into_iter().zip(&names) {
            let file = name.file_name().unwrap_or_default().to_string_lossy();
            sums.push_str(&format!("{}  {file}\n", hasher.finish().hex()));
        }
        for (path, bytes) in side(&sums)? {
            publish_bytes(&path, &bytes)?;
        }
        publish_bytes(&sums_path(&self.base), sums.as_bytes())?;
        for (part, dest) in self.parts.into_iter().zip(&names).rev() {
            part.persist(dest)
                .map_err(|e| Error::io("rename a volume to", dest, e.error))?;
        }
        durable::sync_parent(&self.base).map_err(|e| Error::io("sync", &self.dir, e))?;
        Ok(names)
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.parts.is_empty() || self.in_current == self.size {
            let part = durable::output_temp(&self.dir, "volume-")?;
            self.parts.push(part);
            self.sums.push(crate::digest::Hasher::new());
            self.in_current = 0;
        }
        let room = (self.size - self.in_current) as usize;
        let n = buf.len().min(room);
        let part = self.parts.last_mut().expect("a volume is open");
        let n = part.as_file_mut().write(&buf[..n])?;
        self.sums
            .last_mut()
            .expect("a hasher per volume")
            .update(&buf[..n]);
        self.in_current += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.parts.last_mut() {
            Some(p) => p.as_file_mut().flush(),
            None => Ok(()),
        }
    }
}

/// Open an input that may be split: `X` itself, or `X.000`, `X.001`, ... joined (given
/// either `X` when only volumes exist, or `X.000`). Returns the reader and total size.
pub fn open_input(path: &Path) -> Result<(Box<dyn Read + Send>, u64)> {
    let first_volume = path.to_string_lossy().ends_with(".000");
    if path.exists() && !first_volume {
        let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        return Ok((Box::new(f), len));
    }
    let base = if first_volume {
        let s = path.to_string_lossy();
        PathBuf::from(&s[..s.len() - 4])
    } else {
        path.to_path_buf()
    };
    let mut files = Vec::new();
    let mut total = 0;
    while volume_path(&base, files.len()).exists() {
        let p = volume_path(&base, files.len());
        let f = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
        total += f.metadata().map(|m| m.len()).unwrap_or(0);
        files.push(f);
    }
    if files.is_empty() {
        // Let the ordinary open produce the usual "No such file" error.
        let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        return Ok((Box::new(f), 0));
    }
    let joined = files
        .into_iter()
        .map(|f| Box::new(f) as Box<dyn Read + Send>)
        .reduce(|a, b| Box::new(a.chain(b)))
        .expect("at least one volume");
    Ok((joined, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("3900M").unwrap(), 3900 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("0").is_err());
        assert!(parse_size("4X").is_err());
    }

    #[test]
    fn split_and_join_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("a.tar");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = SplitWriter::new(&base, 4096);
        w.write_all(&data).unwrap();
        let names = w.finish(&|_| Ok(Vec::new())).unwrap();
        assert_eq!(names.len(), 3);
        assert_eq!(std::fs::metadata(&names[0]).unwrap().len(), 4096);
        for p in [base.clone(), volume_path(&base, 0)] {
            let (mut r, total) = open_input(&p).unwrap();
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
            assert_eq!(total, data.len() as u64);
        }
    }

    #[test]
    fn stale_volumes_beyond_a_gap_are_removed_too() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("x.tar");
        // What a save killed while removing an older, longer set leaves: no X.000.
        for i in [1, 2] {
            std::fs::write(volume_path(&base, i), b"stale").unwrap();
        }
        std::fs::write(dir.path().join("x.tar.notes"), b"not a volume").unwrap();
        let mut w = SplitWriter::new(&base, 1 << 20);
        w.write_all(b"new archive").unwrap();
        let names = w.finish(&|_| Ok(Vec::new())).unwrap();
        assert_eq!(names, vec![volume_path(&base, 0)]);
        assert!(!volume_path(&base, 1).exists() && !volume_path(&base, 2).exists());
        assert!(dir.path().join("x.tar.notes").exists());
    }
}
