//! Content fingerprints of layers (issue 14, 1): the uncompressed tar cut into
//! content-defined chunks (FastCDC: a gear hash, normalised chunking, 16/64/256 KiB
//! minimum/average/maximum), each chunk named by the first 8 bytes of its SHA-256.
//!
//! Chunk boundaries depend only on the bytes around them, so an edit moves the boundaries
//! near it and no others: two releases of a layer share every chunk their files share. The
//! far side's inventory carries these lists, and the near side picks, for a new layer, the
//! layer over there it overlaps most. At 8 bytes per 64 KiB chunk a list costs about
//! 128 KiB per GiB of layers.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// Chunks are never shorter than this (except the last).
pub const MIN_CHUNK: usize = 16 << 10;
/// The size chunks tend to.
pub const AVG_CHUNK: usize = 64 << 10;
/// Chunks are never longer than this.
pub const MAX_CHUNK: usize = 256 << 10;

/// Harder to match below the average size (18 bits must be 0), easier above (14 bits):
/// FastCDC's normalised chunking, level 2, so chunk sizes bunch around the average (16
/// bits, 64 KiB). The bits are spread over the high part of the hash, which depends on the
/// last 48 or more bytes.
const MASK_SMALL: u64 = spread(18);
const MASK_LARGE: u64 = spread(14);

const fn spread(bits: u32) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < bits {
        m |= 1 << (63 - (i * 44) / bits);
        i += 1;
    }
    m
}

/// The gear table: 256 fixed pseudo-random words (splitmix64 from a fixed seed), the same
/// on every machine and in every release, since inventories made by one are read by another.
const GEAR: [u64; 256] = gear_table();

const fn gear_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut x: u64 = 0x6169_726c_6f63_6b21; // "airlock!"
    let mut i = 0;
    while i < 256 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

/// Where the first chunk of `data` ends (all of it when shorter than the minimum or no
/// boundary is found before the maximum).
fn cut(data: &[u8]) -> usize {
    let n = data.len();
    if n <= MIN_CHUNK {
        return n;
    }
    let end = n.min(MAX_CHUNK);
    let normal = AVG_CHUNK.min(end);
    let mut h: u64 = 0;
    let mut i = MIN_CHUNK;
    while i < normal {
        h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
        if h & MASK_SMALL == 0 {
            return i + 1;
        }
        i += 1;
    }
    while i < end {
        h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
        if h & MASK_LARGE == 0 {
            return i + 1;
        }
        i += 1;
    }
    end
}

/// The chunk fingerprints of everything `input` yields, read with bounded memory.
pub fn chunks(input: &mut dyn Read) -> io::Result<Vec<u64>> {
    Ok(spans(input)?.into_iter().map(|s| s.hash).collect())
}

/// One content-defined chunk: its fingerprint and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first 8 bytes of its SHA-256.
    pub hash: u64,
    /// Its offset in the input.
    pub offset: u64,
    /// Its length.
    pub len: u32,
}

/// The chunks of everything `input` yields, with their offsets.
pub fn spans(input: &mut dyn Read) -> io::Result<Vec<Span>> {
    let mut buf = vec![0u8; MAX_CHUNK * 4];
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut eof = false;
    loop {
        // Keep at least one maximum chunk in the buffer until the input ends.
        while !eof && end - start < MAX_CHUNK {
            if end == buf.len() {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            match input.read(&mut buf[end..]) {
                Ok(0) => eof = true,
                Ok(n) => end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if start == end {
            return Ok(out);
        }
        let n = cut(&buf[start..end]);
        let h = Sha256::digest(&buf[start..start + n]);
        out.push(Span {
            hash: u64::from_be_bytes(h[..8].try_into().expect("8 bytes")),
            offset,
            len: n as u32,
        });
        offset += n as u64;
        start += n;
    }
}

/// How many of `new`'s chunks `old` holds too (counted with repeats in `new`).
pub fn overlap(new: &[u64], old: &[u64]) -> usize {
    let have: std::collections::HashSet<u64> = old.iter().copied().collect();
    new.iter().filter(|c| have.contains(c)).count()
}

/// A fingerprint list as the inventory writes it: the words big-endian, base64.
pub fn encode(chunks: &[u64]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.to_be_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Read [`encode`]'s form back.
pub fn decode(text: &str) -> Option<Vec<u64>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    if bytes.len() % 8 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_are_content_defined_bounded_and_survive_an_insertion() {
        let data = noise(8 << 20, 3);
        let a = chunks(&mut &data[..]).unwrap();
        // Sizes: about the average, never outside the bounds.
        let avg = data.len() / a.len();
        assert!((32 << 10..=128 << 10).contains(&avg), "average chunk {avg}");
        // The same bytes give the same list, read in any pieces.
        let mut slow = io::BufReader::with_capacity(1000, &data[..]);
        assert_eq!(chunks(&mut slow).unwrap(), a);
        // 100 bytes inserted near the front change the chunks around them only.
        let mut edited = data[..1 << 20].to_vec();
        edited.extend_from_slice(&noise(100, 9));
        edited.extend_from_slice(&data[1 << 20..]);
        let b = chunks(&mut &edited[..]).unwrap();
        let shared = overlap(&b, &a);
        assert!(shared + 3 >= a.len(), "{shared} of {} shared", a.len());
        assert!(shared < b.len(), "the edited chunk differs");
        // And an unrelated input shares nothing.
        assert_eq!(
            overlap(&chunks(&mut &noise(1 << 20, 77)[..]).unwrap(), &a),
            0
        );
        assert_eq!(decode(&encode(&a)).unwrap(), a);
        assert!(decode("abc").is_none());
        assert!(chunks(&mut &b""[..]).unwrap().is_empty());
    }
}
