//! The delta of one uncompressed layer against another, in bounded memory.
//!
//! A new release's tar holds its files in the same order as the old one, so the bytes at
//! offset *p* of the new layer are found near some offset *q* of the old one. The target is
//! cut into segments of about [`SEGMENT`] bytes (at chunk boundaries); each becomes one zstd
//! frame compressed with a window of at most [`REGION`] bytes of the reference as its prefix
//! (what `zstd --patch-from` does for a whole file), the window placed where the segment's
//! content-defined chunks ([`crate::fingerprint`]) say it sits in the reference. Making or
//! applying a delta so holds one segment, its frame and the decoder's window in memory,
//! and maps one region of the reference file: the same for a 10 MB layer as for a 2 GB one.
//!
//! The patch file:
//! ```text
//! "ALPATCH1"  u64 segments
//! { u64 region_start  u64 region_len  u64 plain_len  u64 frame_len  frame } ...
//! ```
//! little-endian.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};

use crate::fingerprint::Span;

const MAGIC: &[u8; 8] = b"ALPATCH1";
/// Target bytes per frame (a segment ends at the first chunk boundary past this).
pub const SEGMENT: u64 = 16 << 20;
/// Reference bytes one segment is compressed against.
pub const REGION: u64 = 64 << 20;
/// A segment is at most this long (a segment and its last chunk).
const MAX_SEGMENT: u64 = SEGMENT + crate::fingerprint::MAX_CHUNK as u64;
/// zstd level of deltas. Measured on the numpy/pandas bump (docs/benchmarks.md): level 9
/// in segments with long-distance matching gives 3.7 MB (the whole save, preflate split
/// included, takes 10 s), where
/// `zstd --patch-from` of the whole tar gives 6.1 MB at -9 and 3.8 MB at -19 in 52 s.
pub const LEVEL: i32 = 9;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A region of a file mapped into memory.
struct Mapped {
    map: Option<memmap2::Mmap>,
}

impl Mapped {
    /// Map `len` bytes of `file` from `offset`. The caller owns the file and does not change
    /// it while it is mapped (a private temporary file, decompressed from the reference).
    #[allow(unsafe_code)]
    fn region(file: &File, offset: u64, len: u64) -> io::Result<Mapped> {
        if len == 0 {
            return Ok(Mapped { map: None });
        }
        let len = usize::try_from(len).map_err(|_| invalid("a region is too large"))?;
        // SAFETY: the file is private to this process (created under the store's temporary
        // directory and never written once its plaintext is complete), so nothing truncates
        // or changes it under the mapping.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)?
        };
        Ok(Mapped { map: Some(map) })
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// One segment of the target and the region of the reference it is compressed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    start: u64,
    len: u64,
    region_start: u64,
    region_len: u64,
}

/// Cut the target into segments and place each one's region in the reference.
fn plan(reference: &[Span], reference_len: u64, target: &[Span]) -> Vec<Segment> {
    let mut first_at: HashMap<u64, u64> = HashMap::with_capacity(reference.len());
    for s in reference {
        first_at.entry(s.hash).or_insert(s.offset);
    }
    let target_len = target.last().map(|s| s.offset + s.len as u64).unwrap_or(0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < target.len() {
        let start = target[i].offset;
        let mut shifts = Vec::new();
        let mut end = start;
        while i < target.len() && end - start < SEGMENT {
            let s = target[i];
            if let Some(&q) = first_at.get(&s.hash) {
                // Where this segment's start sits in the reference, going by this chunk.
                shifts.push(q as i64 - (s.offset - start) as i64);
            }
            end = s.offset + s.len as u64;
            i += 1;
        }
        let len = end - start;
        let region_len = reference_len.min(REGION);
        let aligned = if shifts.is_empty() {
            // Nothing in common: the same share of the way through.
            (start as u128 * reference_len as u128 / target_len.max(1) as u128) as i64
        } else {
            shifts.sort_unstable();
            shifts[shifts.len() / 2]
        };
        let slack = region_len.saturating_sub(len) as i64 / 2;
        let region_start = (aligned - slack).clamp(0, (reference_len - region_len) as i64) as u64;
        out.push(Segment {
            start,
            len,
            region_start,
            region_len,
        });
    }
    out
}

/// The window log that reaches from the end of a segment back to its region's start.
fn window_log(region: u64, segment: u64) -> u32 {
    let span = (region + segment).max(1 << 20);
    (64 - (span - 1).leading_zeros()).clamp(20, 31)
}

fn put(out: &mut dyn Write, v: u64) -> io::Result<()> {
    out.write_all(&v.to_le_bytes())
}

fn get(input: &mut dyn Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    input
        .read_exact(&mut b)
        .map_err(|_| invalid("the patch ends too soon"))?;
    Ok(u64::from_le_bytes(b))
}

/// Write the delta of `target` (its chunks `target_spans`) against `reference` (a file of
/// `reference_len` bytes, its chunks `reference_spans`) to `out`.
pub fn make(
    reference: &File,
    reference_len: u64,
    reference_spans: &[Span],
    target: &mut dyn Read,
    target_spans: &[Span],
    out: &mut dyn Write,
) -> io::Result<()> {
    let segments = plan(reference_spans, reference_len, target_spans);
    out.write_all(MAGIC)?;
    put(out, segments.len() as u64)?;
    let mut plain = Vec::new();
    for seg in &segments {
        plain.resize(seg.len as usize, 0);
        target.read_exact(&mut plain)?;
        let region = Mapped::region(reference, seg.region_start, seg.region_len)?;
        let mut enc =
            zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), LEVEL, region.bytes())?;
        enc.window_log(window_log(seg.region_len, seg.len))?;
        enc.long_distance_matching(true)?;
        enc.set_pledged_src_size(Some(seg.len))?;
        enc.include_checksum(true)?;
        enc.write_all(&plain)?;
        let frame = enc.finish()?;
        for v in [
            seg.region_start,
            seg.region_len,
            seg.len,
            frame.len() as u64,
        ] {
            put(out, v)?;
        }
        out.write_all(&frame)?;
    }
    if target.read(&mut [0u8; 1])? != 0 {
        return Err(io::Error::other("the layer grew while its delta was made"));
    }
    Ok(())
}

/// The uncompressed layer, rebuilt from `patch` and `reference` (a file of
/// `reference_len` bytes) segment by segment as it is read.
pub struct Apply<'a, P> {
    reference: &'a File,
    reference_len: u64,
    patch: P,
    left: Option<u64>,
    out: super::Piece,
}

impl<'a, P: Read> Apply<'a, P> {
    /// Apply `patch` to `reference`.
    pub fn new(reference: &'a File, reference_len: u64, patch: P) -> Self {
        Apply {
            reference,
            reference_len,
            patch,
            left: None,
            out: super::Piece::default(),
        }
    }

    fn next_segment(&mut self) -> io::Result<bool> {
        let left = match self.left {
            Some(n) => n,
            None => {
                let mut magic = [0u8; 8];
                self.patch
                    .read_exact(&mut magic)
                    .map_err(|_| invalid("the patch ends too soon"))?;
                if &magic != MAGIC {
                    return Err(invalid("the patch is not one airlock wrote"));
                }
                get(&mut self.patch)?
            }
        };
        if left == 0 {
            self.left = Some(0);
            return Ok(false);
        }
        self.left = Some(left - 1);
        let (start, len) = (get(&mut self.patch)?, get(&mut self.patch)?);
        let (plain_len, frame_len) = (get(&mut self.patch)?, get(&mut self.patch)?);
        let fits = len <= REGION
            && start
                .checked_add(len)
                .is_some_and(|e| e <= self.reference_len)
            && plain_len <= MAX_SEGMENT
            && frame_len <= MAX_SEGMENT * 2;
        if !fits {
            return Err(invalid(
                "the patch is damaged (a segment does not fit its reference)",
            ));
        }
        let mut frame = vec![0u8; frame_len as usize];
        self.patch
            .read_exact(&mut frame)
            .map_err(|_| invalid("the patch ends too soon"))?;
        let region = Mapped::region(self.reference, start, len)?;
        let mut dec = zstd::stream::read::Decoder::with_ref_prefix(&frame[..], region.bytes())?;
        dec.window_log_max(31)?;
        let out = self.out.refill();
        (&mut dec).take(plain_len + 1).read_to_end(out)?;
        if out.len() as u64 != plain_len {
            return Err(invalid(
                "the patch is damaged (a segment decodes to the wrong size)",
            ));
        }
        Ok(true)
    }
}

impl<P: Read> Read for Apply<'_, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out.is_spent() {
            if !self.next_segment()? {
                return Ok(0);
            }
        }
        Ok(self.out.read_into(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::spans;

    fn noise(len: usize, mut x: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.extend_from_slice(&(x >> 13).to_le_bytes());
        }
        v.truncate(len);
        v
    }

    fn delta_of(old: &[u8], new: &[u8]) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(old).unwrap();
        let (rs, ts) = (spans(&mut &old[..]).unwrap(), spans(&mut &new[..]).unwrap());
        let mut delta = Vec::new();
        make(
            f.as_file(),
            old.len() as u64,
            &rs,
            &mut &new[..],
            &ts,
            &mut delta,
        )
        .unwrap();
        (f, delta)
    }

    #[test]
    fn a_small_change_makes_a_small_delta_that_applies() {
        let old = noise(2 << 20, 7);
        let mut new = old.clone();
        new[100_000..100_010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"appended");
        let (f, delta) = delta_of(&old, &new);
        assert!(delta.len() < 2000, "{} bytes", delta.len());
        let mut back = Vec::new();
        Apply::new(f.as_file(), old.len() as u64, &delta[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == new);
        // Against another reference the frame checksum fails.
        let mut g = tempfile::NamedTempFile::new().unwrap();
        let mut wrong = old.clone();
        wrong[100] ^= 1;
        g.write_all(&wrong).unwrap();
        let mut out = Vec::new();
        let r = Apply::new(g.as_file(), old.len() as u64, &delta[..]).read_to_end(&mut out);
        assert!(r.is_err() || out != new);
        // A cut patch is an error, not a short layer.
        let r = Apply::new(f.as_file(), old.len() as u64, &delta[..delta.len() - 5])
            .read_to_end(&mut Vec::new());
        assert!(r.is_err());
    }

    #[test]
    fn each_segment_looks_where_its_chunks_are_in_a_reference_larger_than_a_region() {
        // 200 MiB would be slow to compress in a unit test: plan alone, on spans.
        let span = |offset: u64, hash: u64| Span {
            hash,
            offset,
            len: 64 << 10,
        };
        let chunk = 64u64 << 10;
        let reference: Vec<Span> = (0..3200).map(|i| span(i * chunk, i)).collect();
        let reference_len = 3200 * chunk; // 200 MiB
                                          // The target drops the first 1000 chunks: its content sits 1000 chunks in.
        let target: Vec<Span> = (0..2200).map(|i| span(i * chunk, i + 1000)).collect();
        let segs = plan(&reference, reference_len, &target);
        assert_eq!(segs.len(), 9, "{segs:?}");
        for s in &segs {
            assert!(s.len >= SEGMENT && s.len <= MAX_SEGMENT || s == segs.last().unwrap());
            assert_eq!(s.region_len, REGION);
            // The region holds the segment's own content.
            let content = s.start + 1000 * chunk;
            assert!(s.region_start <= content, "{s:?}");
            assert!(content + s.len <= s.region_start + s.region_len, "{s:?}");
        }
        // Nothing shared: the same share of the way through.
        let other: Vec<Span> = (0..2200).map(|i| span(i * chunk, 10_000 + i)).collect();
        let segs = plan(&reference, reference_len, &other);
        assert_eq!(segs[0].region_start, 0);
        assert!(segs.last().unwrap().region_start + REGION == reference_len);
        assert_eq!(window_log(REGION, MAX_SEGMENT), 27);
    }
}
