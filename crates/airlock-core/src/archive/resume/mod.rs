//! Resuming a load of split volumes where it stopped (a power cut, a bad or missing volume,
//! a kill), without reading the volumes before that point again.
//!
//! The load stages into a kept staging area (`STORE/tmp/resume-<key>`, the key taken from
//! the volumes' `X.SHA256SUMS`) and writes a journal there as it reads:
//! - a log with one line per tar entry done (a metadata file's bytes; a blob's digest,
//!   size, compression and diffID; a link), from which the reader's state is rebuilt;
//! - at every crossing into the next volume, a checkpoint: where the tar entry the
//!   crossing falls in begins, and (when that is before the crossing) a spill file with
//!   that entry's bytes up to the crossing. The blobs the log lists by then are fsynced
//!   first, so a checkpoint never names a blob that a power cut could lose.
//!
//! Only the entry that spans a crossing is spilled (its bytes are written twice); every
//! other byte is written once. A rerun replays the spill, then reads on from the first
//! volume after the checkpoint: the volumes before it need not even be there. Only plain
//! (uncompressed) volumes resume: a compressed stream cannot be entered mid-way.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::reader::{ArchiveContents, EntryLog};
use crate::compression::Compression;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Staging;

mod log;
use crate::transport::volumes::{self, volume_path};
use log::{logged, replay};

const JOURNAL_DIR: &str = "journal";
const LOG_FILE: &str = "entries.log";
const CHECKPOINT_FILE: &str = "checkpoint.json";
const VOLUMES_FILE: &str = "volumes.json";
/// Header bytes (tar, pax, GNU long names) of one entry kept in memory; past this a
/// crossing inside them is not a resume point.
const HEADER_CAP: usize = 1 << 20;

/// Where a rerun starts.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Checkpoint {
    /// Absolute offset (in the joined volumes) of the tar entry to start at.
    start: u64,
    /// The spill file holding bytes `start..start + spill_len`, if any.
    spill: Option<String>,
    spill_len: u64,
    /// Bytes of the entry log that describe what came before `start`.
    log_len: u64,
    /// The volume the checkpoint was made on entering (for the user).
    volume: usize,
}

/// What the state of one tar entry is, for the journal.
enum Region {
    /// Between entries: its header bytes are being read (kept in memory).
    Header,
    /// In an entry's data, which ends (padded) at `end`; `spill` when it spans a crossing.
    Data {
        end: u64,
        spill: Option<(File, PathBuf)>,
    },
}

struct State {
    dir: PathBuf,
    staging_dir: PathBuf,
    log: File,
    log_len: u64,
    /// Blobs logged since the last checkpoint (to fsync before the next).
    unsynced: Vec<Digest>,
    /// Offsets where each volume starts, as far as their sizes are known (and the end of
    /// the last, once it is).
    bounds: Vec<u64>,
    /// How many volumes there are.
    count: usize,
    /// Where a rerun's replay of the spill ends (0 on a first run): crossings up to here
    /// were made by the interrupted run.
    replayed_to: u64,
    region_start: u64,
    region: Region,
    header: Vec<u8>,
    /// This entry's headers outgrew [`HEADER_CAP`]: no checkpoint inside it.
    unresumable: bool,
    /// The spill the last checkpoint names (kept until the next one).
    checkpoint_spill: Option<PathBuf>,
}

/// The journal of one resumable load, shared by the volume reader and the archive reader.
#[derive(Clone)]
pub struct Journal(Arc<Mutex<State>>);

/// A load of split volumes set up to resume: the reader to read from (volumes from the
/// checkpoint on, after the spill), the journal, and what the interrupted run had read.
pub struct Resumable {
    /// The joined stream, from `start` (a [`VolumeReader`]; the caller may wrap it to count).
    pub reader: Box<dyn Read + Send>,
    /// Shared with the reader.
    pub journal: Journal,
    /// The archive reader's state at `start`, rebuilt from the log.
    pub contents: ArchiveContents,
    /// Whether an image-archive file was among what came before.
    pub seen_archive_entry: bool,
    /// Where the stream given starts, in the joined volumes.
    pub start: u64,
    /// The volume the rerun starts in (`None` for a first run).
    pub resumed_at: Option<PathBuf>,
    /// The end of the joined volumes (`end - start` bytes are left to read).
    pub end: u64,
}

/// Set up a resumable load of the volumes of `base` (`X` of `X.000`, ...), staging into
/// `staging` (from [`crate::store::Store::resumable_staging`] with [`key_of`]). `None` when they do not
/// resume: no checksums file, or a compressed stream.
pub fn open(base: &Path, staging: &Staging) -> Result<Option<Resumable>> {
    let dir = staging.dir().join(JOURNAL_DIR);
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let count = volume_count(base)?;
    // The sizes of the volumes read so far (later ones are learned as they are opened).
    let sizes = read_json::<Vec<u64>>(&dir.join(VOLUMES_FILE))?.unwrap_or_default();
    let mut bounds = vec![0];
    for s in &sizes {
        bounds.push(bounds.last().copied().unwrap_or(0) + s);
    }
    let checkpoint = read_json::<Checkpoint>(&dir.join(CHECKPOINT_FILE))?;
    if checkpoint.is_none() && !plain(&volume_path(base, 0))? {
        return Ok(None);
    }
    let log_path = dir.join(LOG_FILE);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&log_path)
        .map_err(|e| Error::io("open", &log_path, e))?;
    let (start, log_len, prefix, contents, seen) = match &checkpoint {
        None => {
            log.set_len(0)
                .map_err(|e| Error::io("truncate", &log_path, e))?;
            (0, 0, None, ArchiveContents::default(), false)
        }
        Some(c) => {
            let mut text = vec![0u8; c.log_len as usize];
            log.read_exact(&mut text)
                .map_err(|e| Error::io("read", &log_path, e))?;
            // Lines after the checkpoint describe entries the rerun reads again.
            log.set_len(c.log_len)
                .map_err(|e| Error::io("truncate", &log_path, e))?;
            let (contents, seen) = replay(&text)?;
            let prefix = match &c.spill {
                Some(name) => {
                    let p = dir.join(name);
                    Some((
                        File::open(&p).map_err(|e| Error::io("open", &p, e))?,
                        c.spill_len,
                    ))
                }
                None => None,
            };
            (c.start, c.log_len, prefix, contents, seen)
        }
    };
    log.seek(SeekFrom::End(0))
        .map_err(|e| Error::io("seek", &log_path, e))?;
    let journal = Journal(Arc::new(Mutex::new(State {
        dir: dir.clone(),
        staging_dir: staging.dir().to_path_buf(),
        log,
        log_len,
        unsynced: Vec::new(),
        bounds,
        count,
        replayed_to: checkpoint.as_ref().map_or(0, |c| c.start + c.spill_len),
        region_start: start,
        region: Region::Header,
        header: Vec::new(),
        unresumable: false,
        checkpoint_spill: checkpoint
            .as_ref()
            .and_then(|c| c.spill.as_ref())
            .map(|name| dir.join(name)),
    })));
    let reader = VolumeReader {
        base: base.to_path_buf(),
        pos: start,
        current: None,
        prefix,
        journal: journal.clone(),
        first_open: true,
    };
    let resumed_at = checkpoint.map(|c| volume_path(base, c.volume));
    // What is left, as far as the volumes present tell.
    let end = start
        + (0..count)
            .filter_map(|i| {
                fs::metadata(volume_path(base, i))
                    .ok()
                    .map(|m| (i, m.len()))
            })
            .filter(|(i, _)| *i >= resumed_volume(&journal, start))
            .map(|(_, l)| l)
            .sum::<u64>();
    Ok(Some(Resumable {
        reader: Box::new(reader),
        journal,
        contents,
        seen_archive_entry: seen,
        start,
        resumed_at,
        end,
    }))
}

/// True when an interrupted load left a checkpoint in `staging` to resume from.
pub fn has_checkpoint(staging: &Staging) -> bool {
    staging
        .dir()
        .join(JOURNAL_DIR)
        .join(CHECKPOINT_FILE)
        .exists()
}

/// The volumes' base name when `path` names split volumes (`X.000`, or `X` when only its
/// volumes and their checksums exist).
pub fn split_base(path: &Path) -> Option<PathBuf> {
    let s = path.to_string_lossy();
    if let Some(b) = s.strip_suffix(".000") {
        return Some(PathBuf::from(b));
    }
    // (The first volumes may be gone when a load resumes: the checksums file stays.)
    let volumes_here = volume_path(path, 0).exists() || volumes::sums_path(path).exists();
    (!path.exists() && volumes_here).then(|| path.to_path_buf())
}

/// The name a resumable load of the volumes of `base` stages under: their checksums
/// file's digest (`None` without one: such volumes load in one go).
pub fn key_of(base: &Path) -> Option<String> {
    let sums = fs::read(volumes::sums_path(base)).ok()?;
    Some(Digest::of(&sums).hex()[..24].to_string())
}

/// How many volumes the checksums file lists.
fn volume_count(base: &Path) -> Result<usize> {
    let sums_path = volumes::sums_path(base);
    let sums = fs::read_to_string(&sums_path).map_err(|e| Error::io("read", &sums_path, e))?;
    Ok(sums.lines().filter(|l| !l.trim().is_empty()).count())
}

fn plain(first: &Path) -> Result<bool> {
    let mut head = [0u8; crate::compression::MAGIC_LEN];
    let mut f = File::open(first).map_err(|e| Error::io("open", first, e))?;
    let n = f.read(&mut head).map_err(|e| Error::io("read", first, e))?;
    Ok(Compression::detect(&head[..n]) == Compression::None)
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<Option<T>> {
    match fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Usage(format!("{} is damaged ({e}): remove it", p.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", p, e)),
    }
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec(v).map_err(|e| Error::Usage(e.to_string()))?;
    let dir = p.parent().unwrap_or(Path::new("."));
    crate::store::write_atomic(dir, p, &bytes)
}

impl Journal {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EntryLog for Journal {
    /// An entry whose data spans the next crossing is spilled.
    fn entry(&self, data_start: u64, size: u64) -> Result<()> {
        let mut s = self.lock();
        let end = data_start + size.div_ceil(512) * 512;
        // The next crossing is the end of the volume being read (whose size is known), unless
        // that is the last volume.
        // (A rerun's crossings start after the spill it replays, which this must not
        // overwrite.)
        // A crossing exactly at the data's start counts: the entry's header is before it
        // and must be replayed after it, like any entry that spans one.
        let next = s
            .bounds
            .iter()
            .position(|b| *b >= data_start && *b > s.region_start && *b > s.replayed_to);
        let spans = next.is_some_and(|i| i < s.count && end > s.bounds[i]);
        let spill = if spans && !s.unresumable {
            let p = s
                .dir
                .join(format!("spill-{}-to-{}", s.region_start, next.unwrap_or(0)));
            let mut f = File::create(&p).map_err(|e| Error::io("create", &p, e))?;
            f.write_all(&s.header)
                .map_err(|e| Error::io("write", &p, e))?;
            Some((f, p))
        } else {
            None
        };
        s.header.clear();
        s.region = Region::Data { end, spill };
        Ok(())
    }

    /// Log what the archive reader learned of the entry.
    fn done(&self, path: &str, contents: &ArchiveContents, archive: bool) -> Result<()> {
        let mut s = self.lock();
        let line = logged(path, contents, archive);
        if let Some(b) = &line.blob {
            s.unsynced.push(b.digest.clone());
        }
        let mut bytes = serde_json::to_vec(&line).map_err(|e| Error::Usage(e.to_string()))?;
        bytes.push(b'\n');
        let log_path = s.dir.join(LOG_FILE);
        s.log
            .write_all(&bytes)
            .map_err(|e| Error::io("write", &log_path, e))?;
        s.log_len += bytes.len() as u64;
        s.end_region();
        Ok(())
    }

    fn skipped(&self) {
        self.lock().end_region();
    }
}

impl Journal {
    /// Bytes at `pos..` went by.
    fn saw(&self, pos: u64, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        let s = &mut *s;
        match &mut s.region {
            Region::Header => {
                let skip = s.region_start.saturating_sub(pos).min(bytes.len() as u64) as usize;
                if s.header.len() + bytes.len() - skip > HEADER_CAP {
                    s.unresumable = true;
                    s.header.clear();
                } else if !s.unresumable {
                    s.header.extend_from_slice(&bytes[skip..]);
                }
            }
            Region::Data {
                spill: Some((f, _)),
                ..
            } => f.write_all(bytes)?,
            Region::Data { spill: None, .. } => {}
        }
        Ok(())
    }

    /// The reader is about to enter volume `volume`, which starts at `at`.
    fn checkpoint(&self, volume: usize, at: u64) -> Result<()> {
        let mut s = self.lock();
        if s.unresumable {
            return Ok(());
        }
        let start = s.region_start;
        let spill = match &mut s.region {
            _ if start >= at => None,
            Region::Header => {
                let p = s.dir.join(format!("spill-{start}-to-{volume}-header"));
                let mut f = File::create(&p).map_err(|e| Error::io("create", &p, e))?;
                f.write_all(&s.header)
                    .and_then(|_| f.sync_data())
                    .map_err(|e| Error::io("write", &p, e))?;
                Some(p)
            }
            Region::Data {
                spill: Some((f, p)),
                ..
            } => {
                f.sync_data().map_err(|e| Error::io("sync", &*p, e))?;
                Some(p.clone())
            }
            // An entry that does not span this crossing has ended before it.
            Region::Data { spill: None, .. } => return Ok(()),
        };
        for d in std::mem::take(&mut s.unsynced) {
            if let Ok(f) = File::open(s.staging_dir.join(d.hex())) {
                f.sync_all()
                    .map_err(|e| Error::io("sync", s.staging_dir.join(d.hex()), e))?;
            }
        }
        let log_path = s.dir.join(LOG_FILE);
        s.log
            .sync_data()
            .map_err(|e| Error::io("sync", &log_path, e))?;
        let c = Checkpoint {
            start,
            spill: spill
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            spill_len: at.saturating_sub(start),
            log_len: s.log_len,
            volume,
        };
        write_json(&s.dir.join(CHECKPOINT_FILE), &c)?;
        let old = std::mem::replace(&mut s.checkpoint_spill, spill.clone());
        if let Some(o) = old.filter(|o| Some(o) != spill.as_ref()) {
            let _ = fs::remove_file(s.dir.join(o));
        }
        Ok(())
    }
}

impl State {
    fn end_region(&mut self) {
        if let Region::Data { end, spill } = std::mem::replace(&mut self.region, Region::Header) {
            self.region_start = end;
            if let Some((_, p)) = spill {
                if self.checkpoint_spill.as_deref() != Some(p.as_path()) {
                    let _ = fs::remove_file(p);
                }
            }
        }
        self.header.clear();
        self.unresumable = false;
    }
}

/// The volume holding offset `at`, as far as the sizes known tell.
fn resumed_volume(journal: &Journal, at: u64) -> usize {
    let s = journal.lock();
    s.bounds.iter().rposition(|b| *b <= at).unwrap_or(0)
}

/// The volumes read in order from an offset, each crossing into the next checkpointed
/// first; a missing volume is an error that says the load resumes there.
pub struct VolumeReader {
    base: PathBuf,
    pos: u64,
    current: Option<(usize, File, u64)>,
    prefix: Option<(File, u64)>,
    journal: Journal,
    first_open: bool,
}

impl VolumeReader {
    /// Open the volume that starts at or holds `self.pos`, checkpointing a crossing.
    fn open_next(&mut self) -> io::Result<Option<()>> {
        let (i, start, count) = {
            let s = self.journal.lock();
            let i = s.bounds.iter().rposition(|b| *b <= self.pos).unwrap_or(0);
            (i, s.bounds[i], s.count)
        };
        if i >= count {
            return Ok(None);
        }
        if !self.first_open && self.pos == start {
            self.journal
                .checkpoint(i, self.pos)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        self.first_open = false;
        let p = volume_path(&self.base, i);
        let mut f = File::open(&p).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "volume {} cannot be opened ({e}): put it beside the others and run the same command again; it goes on from there",
                    p.display()
                ),
            )
        })?;
        let len = f.metadata()?.len();
        {
            let mut s = self.journal.lock();
            if s.bounds.len() == i + 1 {
                s.bounds.push(start + len);
                let sizes: Vec<u64> = s.bounds.windows(2).map(|w| w[1] - w[0]).collect();
                write_json(&s.dir.join(VOLUMES_FILE), &sizes)
                    .map_err(|e| io::Error::other(e.to_string()))?;
            } else if s.bounds[i + 1] - start != len {
                return Err(io::Error::other(format!(
                    "volume {} is not the size it was when the load began: it is another archive's",
                    p.display()
                )));
            }
        }
        f.seek(SeekFrom::Start(self.pos - start))?;
        self.current = Some((i, f, start + len));
        Ok(Some(()))
    }
}

impl Read for VolumeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some((f, left)) = &mut self.prefix {
            if *left > 0 {
                let want = buf.len().min(*left as usize);
                let n = f.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::other(
                        "the resume spill file is shorter than its checkpoint says",
                    ));
                }
                *left -= n as u64;
                self.journal.saw(self.pos, &buf[..n])?;
                self.pos += n as u64;
                return Ok(n);
            }
            self.prefix = None;
        }
        if self.current.as_ref().is_none_or(|c| self.pos >= c.2) {
            self.current = None;
            if self.open_next()?.is_none() {
                return Ok(0);
            }
        }
        let (i, f, end) = self.current.as_mut().expect("a volume is open");
        let want = buf.len().min((*end - self.pos) as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "volume {} is shorter than when the load began",
                    volume_path(&self.base, *i).display()
                ),
            ));
        }
        self.journal.saw(self.pos, &buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}
