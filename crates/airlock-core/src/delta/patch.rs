//! The delta of one uncompressed layer against another: a zstd frame compressed with the
//! reference as its prefix (what `zstd --patch-from` does), with a window that reaches back
//! over the whole reference, since a new release's tar holds its files in the same order
//! and a match for offset *p* of the new layer sits near offset *p* of the old one.
//!
//! The reference is mapped from a file, not read into memory: the page cache holds it. The
//! decoder keeps up to one window of output (at most the layer's uncompressed size).

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;

/// The largest window zstd decoders accept by default (`--long=31` on the command line).
const MAX_WINDOW_LOG: u32 = 31;
/// zstd level of deltas: the measured sweet spot (level 19 makes a delta a quarter the
/// size in seventy times the time).
pub const LEVEL: i32 = 9;

/// A reference file mapped into memory.
pub struct Mapped {
    map: Option<memmap2::Mmap>,
}

impl Mapped {
    /// Map `path`. The caller owns the file and does not change it while it is mapped
    /// (a temporary file of the staging area, decompressed from the reference blob).
    #[allow(unsafe_code)]
    pub fn open(path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mapped { map: None });
        }
        // SAFETY: the file is private to this process (created under the store's
        // temporary directory and never written again once mapped), so no one
        // truncates or changes it under the mapping.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped { map: Some(map) })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// The window log that reaches from the end of a `target`-byte layer back to the start of
/// a `reference`-byte one.
fn window_log(reference: u64, target: u64) -> u32 {
    let span = (reference + target).max(1 << 20);
    (64 - (span - 1).leading_zeros()).clamp(20, MAX_WINDOW_LOG)
}

/// Write the delta of `target` (a file of `target_len` bytes) against `reference` to `out`.
pub fn make(
    reference: &[u8],
    target: &mut dyn Read,
    target_len: u64,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut enc = zstd::stream::write::Encoder::with_ref_prefix(out, LEVEL, reference)?;
    enc.window_log(window_log(reference.len() as u64, target_len))?;
    enc.long_distance_matching(true)?;
    enc.set_pledged_src_size(Some(target_len))?;
    enc.include_checksum(true)?;
    let copied = io::copy(target, &mut enc)?;
    if copied != target_len {
        return Err(io::Error::other(
            "the layer changed while its delta was made",
        ));
    }
    enc.finish()?;
    Ok(())
}

/// The uncompressed layer, rebuilt from `patch` and `reference` as it is read.
pub fn apply<'a, R: BufRead + 'a>(reference: &'a [u8], patch: R) -> io::Result<impl Read + 'a> {
    let mut dec = zstd::stream::read::Decoder::with_ref_prefix(patch, reference)?;
    dec.window_log_max(MAX_WINDOW_LOG)?;
    Ok(dec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_change_makes_a_small_delta_that_applies() {
        let mut old = Vec::new();
        let mut x = 7u64;
        for _ in 0..(1 << 18) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            old.extend_from_slice(&x.to_le_bytes());
        }
        let mut new = old.clone();
        new[100_000..100_010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"appended");
        let mut delta = Vec::new();
        make(&old, &mut &new[..], new.len() as u64, &mut delta).unwrap();
        assert!(delta.len() < 1000, "{} bytes", delta.len());
        let mut back = Vec::new();
        apply(&old, &delta[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == new);
        // Against another reference the checksum fails.
        let mut wrong = old.clone();
        wrong[5] ^= 1;
        let mut out = Vec::new();
        let r = apply(&wrong, &delta[..]).unwrap().read_to_end(&mut out);
        assert!(r.is_err() || out != new);
        assert_eq!(window_log(1 << 30, 1 << 30), 31);
        assert_eq!(window_log(10, 10), 20);
    }
}
