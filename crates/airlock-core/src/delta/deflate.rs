//! A gzip layer as its plaintext plus the corrections that rebuild its exact bytes.
//!
//! Registries, manifests and signatures name the compressed bytes, so a delta of the
//! uncompressed tar is only useful if the far side can compress the result back into the
//! very same stream. preflate-rs does that for DEFLATE: it predicts what the compressor did
//! from the plaintext and records only where the prediction was wrong. It works in pieces
//! (a few MiB of compressed input at a time, keeping a 32 KiB dictionary between them), so
//! memory does not grow with the layer.
//!
//! The corrections file, read front to back as the layer is rebuilt:
//! ```text
//! "ALDFIX1\n"  u32 len  gzip header bytes
//! { u32 plain_len  u32 corrections_len  corrections } ...   one per piece
//! u32 0xFFFFFFFF  u32 len  bytes after the DEFLATE stream (the gzip trailer)
//! ```
//! All integers little-endian.

use std::io::{self, Read, Write};

use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};

const MAGIC: &[u8; 8] = b"ALDFIX1\n";
const END: u32 = u32::MAX;
/// Compressed bytes handed to preflate at a time.
const PIECE: usize = 4 << 20;
/// Most plaintext one piece may expand to (a piece of a zip bomb stops here).
const PIECE_PLAIN_LIMIT: usize = 32 << 20;
/// Bytes after the DEFLATE stream kept verbatim: the 8-byte trailer, and padding some
/// tools add. More than this is a second gzip member or junk: not split.
const MAX_TAIL: usize = 64 << 10;
/// A gzip header longer than this (a huge FEXTRA or file name) is not split.
const MAX_HEADER: usize = 64 << 10;
/// preflate-rs counts plaintext positions in 32 bits.
pub const MAX_PLAIN: u64 = (i32::MAX as u64) - (64 << 20);

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Why a layer cannot be split (then it ships whole).
#[derive(Debug)]
pub enum SplitError {
    /// Not a gzip stream preflate can predict: the reason.
    Unsupported(String),
    /// Reading or writing failed.
    Io(io::Error),
}

impl From<io::Error> for SplitError {
    fn from(e: io::Error) -> Self {
        SplitError::Io(e)
    }
}

/// What splitting a layer found.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Bytes of plaintext written.
    pub plain: u64,
    /// Bytes of corrections written.
    pub corrections: u64,
}

/// The gzip header at the front of `head`, or why it is not one this splits.
fn gzip_header_len(head: &[u8]) -> Result<Option<usize>, SplitError> {
    if head.len() < 10 {
        return Ok(None);
    }
    if head[0] != 0x1f || head[1] != 0x8b || head[2] != 8 {
        return Err(SplitError::Unsupported("not a gzip stream".into()));
    }
    let flags = head[3];
    let mut at = 10;
    if flags & 4 != 0 {
        let Some(len) = head.get(at..at + 2) else {
            return Ok(None);
        };
        at += 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            match head.get(at..).and_then(|r| r.iter().position(|&b| b == 0)) {
                Some(n) => at += n + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    Ok((head.len() >= at).then_some(at))
}

/// Fill `buf` from `input` until it holds `want` bytes or the input ends; true at its end.
fn fill(input: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 64 << 10];
    while buf.len() < want {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(false)
}

fn put_u32(out: &mut dyn Write, v: usize) -> io::Result<()> {
    let v = u32::try_from(v).map_err(|_| invalid("a piece is larger than 4 GiB"))?;
    out.write_all(&v.to_le_bytes())
}

/// Split the gzip stream `compressed` into its plaintext (to `plain`) and the corrections
/// that rebuild it byte for byte (to `fix`). Each piece is rebuilt and compared as it goes,
/// so a split that succeeds is known to rebuild.
pub fn split_gzip(
    compressed: &mut dyn Read,
    plain: &mut dyn Write,
    fix: &mut dyn Write,
) -> Result<Split, SplitError> {
    let mut buf = Vec::with_capacity(PIECE);
    let mut at_end = fill(compressed, &mut buf, 64)?;
    let header_len = loop {
        match gzip_header_len(&buf)? {
            Some(n) => break n,
            None if at_end || buf.len() > MAX_HEADER => {
                return Err(SplitError::Unsupported(
                    "its gzip header is cut short".into(),
                ))
            }
            None => {
                let want = buf.len() * 2;
                at_end = fill(compressed, &mut buf, want)?
            }
        }
    };
    let mut written = MAGIC.len() as u64;
    fix.write_all(MAGIC)?;
    put_u32(fix, header_len)?;
    fix.write_all(&buf[..header_len])?;
    written += 4 + header_len as u64;
    buf.drain(..header_len);

    let config = PreflateConfig {
        plain_text_limit: PIECE_PLAIN_LIMIT,
        ..PreflateConfig::default()
    };
    let mut stream = PreflateStreamProcessor::new(&config);
    let mut want = PIECE;
    let mut plain_total = 0u64;
    while !stream.is_done() {
        if !at_end && buf.len() < want {
            at_end = fill(compressed, &mut buf, want)?;
        }
        match stream.decompress(&buf) {
            Ok(piece) => {
                let text = stream.plain_text().text();
                plain_total += text.len() as u64;
                if plain_total > MAX_PLAIN {
                    return Err(SplitError::Unsupported(
                        "its plaintext is larger than 2 GiB".into(),
                    ));
                }
                plain.write_all(text)?;
                put_u32(fix, text.len())?;
                put_u32(fix, piece.corrections.len())?;
                fix.write_all(&piece.corrections)?;
                written += 8 + piece.corrections.len() as u64;
                buf.drain(..piece.compressed_size);
                stream.shrink_to_dictionary();
                want = PIECE;
            }
            Err(e) if e.exit_code() == ExitCode::ShortRead && !at_end => want = buf.len() * 2,
            Err(e) => {
                return Err(SplitError::Unsupported(format!(
                    "preflate cannot predict its DEFLATE stream ({:?}: {})",
                    e.exit_code(),
                    e.message()
                )))
            }
        }
    }
    // What follows the DEFLATE stream: the trailer (CRC-32 and length), kept as it is.
    if !at_end {
        at_end = fill(compressed, &mut buf, MAX_TAIL + 1)?;
    }
    if !at_end || buf.len() > MAX_TAIL {
        return Err(SplitError::Unsupported(
            "more follows its gzip stream than a trailer".into(),
        ));
    }
    put_u32(fix, END as usize)?;
    put_u32(fix, buf.len())?;
    fix.write_all(&buf)?;
    written += 8 + buf.len() as u64;
    Ok(Split {
        plain: plain_total,
        corrections: written,
    })
}

/// The exact gzip stream, rebuilt from its plaintext and corrections as it is read.
pub struct Recompress<P, F> {
    plain: P,
    fix: F,
    recreate: RecreateStreamProcessor,
    out: super::Piece,
    started: bool,
    done: bool,
}

impl<P: Read, F: Read> Recompress<P, F> {
    /// Rebuild from `plain` (the layer's tar) and `fix` (its corrections file).
    pub fn new(plain: P, fix: F) -> Self {
        Recompress {
            plain,
            fix,
            recreate: RecreateStreamProcessor::new(),
            out: super::Piece::default(),
            started: false,
            done: false,
        }
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.fix
            .read_exact(&mut b)
            .map_err(|_| invalid("the corrections end too soon"))?;
        Ok(u32::from_le_bytes(b))
    }

    fn bytes(&mut self, len: u32, limit: usize) -> io::Result<Vec<u8>> {
        let len = len as usize;
        if len > limit {
            return Err(invalid(
                "the corrections are damaged (a piece is too large)",
            ));
        }
        let mut v = vec![0u8; len];
        self.fix
            .read_exact(&mut v)
            .map_err(|_| invalid("the corrections end too soon"))?;
        Ok(v)
    }

    /// Rebuild the next piece into `out`.
    fn next_piece(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            let mut magic = [0u8; 8];
            self.fix
                .read_exact(&mut magic)
                .map_err(|_| invalid("the corrections end too soon"))?;
            if &magic != MAGIC {
                return Err(invalid("the corrections file is not one airlock wrote"));
            }
            let len = self.u32()?;
            *self.out.refill() = self.bytes(len, MAX_HEADER)?;
            return Ok(());
        }
        let plain_len = self.u32()?;
        if plain_len == END {
            let len = self.u32()?;
            *self.out.refill() = self.bytes(len, MAX_TAIL)?;
            self.done = true;
            let mut extra = [0u8; 1];
            if self.plain.read(&mut extra)? != 0 {
                return Err(invalid(
                    "the delta gives more plaintext than the corrections account for",
                ));
            }
            if self.fix.read(&mut extra)? != 0 {
                return Err(invalid("the corrections go on past their end"));
            }
            return Ok(());
        }
        let corr_len = self.u32()?;
        let corrections = self.bytes(corr_len, PIECE_PLAIN_LIMIT * 2)?;
        if plain_len as usize > PIECE_PLAIN_LIMIT * 2 {
            return Err(invalid(
                "the corrections are damaged (a piece is too large)",
            ));
        }
        let mut text = vec![0u8; plain_len as usize];
        self.plain
            .read_exact(&mut text)
            .map_err(|_| invalid("the delta gives less plaintext than the layer had"))?;
        let (bytes, _) = self
            .recreate
            .recompress(&mut io::Cursor::new(&text), &corrections)
            .map_err(|e| {
                invalid(format!(
                    "the corrections do not rebuild the layer ({:?}: {})",
                    e.exit_code(),
                    e.message()
                ))
            })?;
        *self.out.refill() = bytes;
        Ok(())
    }
}

impl<P: Read, F: Read> Read for Recompress<P, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out.is_spent() {
            if self.done {
                return Ok(0);
            }
            self.next_piece()?;
        }
        Ok(self.out.read_into(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};

    fn sample(len: usize) -> Vec<u8> {
        // Text-like and repetitive enough to compress, varied enough to need many blocks.
        let mut out = Vec::with_capacity(len);
        let mut x = 1u64;
        while out.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let word = (x >> 58) as usize;
            out.extend_from_slice(format!("line {word} of {} ", x >> 40).as_bytes());
            if word.is_multiple_of(7) {
                out.push(b'\n');
            }
        }
        out
    }

    fn gzip(data: &[u8], level: u32) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn rebuilds_flate2_output_at_several_levels() {
        let data = sample(3 << 20);
        for level in [1, 6, 9] {
            let gz = gzip(&data, level);
            let (mut plain, mut fix) = (Vec::new(), Vec::new());
            let split = split_gzip(&mut &gz[..], &mut plain, &mut fix).unwrap();
            assert_eq!(plain, data, "level {level}: the plaintext is the data");
            assert_eq!(split.corrections, fix.len() as u64);
            let mut rebuilt = Vec::new();
            Recompress::new(&plain[..], &fix[..])
                .read_to_end(&mut rebuilt)
                .unwrap();
            assert!(rebuilt == gz, "level {level}: rebuilt bytes differ");
        }
    }

    #[test]
    fn refuses_damage_and_other_streams() {
        let data = sample(1 << 20);
        let gz = gzip(&data, 6);
        let (mut plain, mut fix) = (Vec::new(), Vec::new());
        split_gzip(&mut &gz[..], &mut plain, &mut fix).unwrap();
        // One byte of plaintext changed: the rebuilt stream differs (the digest check
        // catches it) or the corrections no longer fit.
        plain[1000] ^= 1;
        let mut rebuilt = Vec::new();
        let r = Recompress::new(&plain[..], &fix[..]).read_to_end(&mut rebuilt);
        assert!(r.is_err() || rebuilt != gz);
        plain[1000] ^= 1;
        // Truncated corrections: an error, not a short stream.
        let r = Recompress::new(&plain[..], &fix[..fix.len() - 3]).read_to_end(&mut Vec::new());
        assert!(r.is_err());
        // Too much plaintext.
        let mut more = plain.clone();
        more.push(b'x');
        let e = Recompress::new(&more[..], &fix[..])
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("more plaintext"), "{e}");
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        assert!(matches!(
            split_gzip(&mut &zst[..], &mut Vec::new(), &mut Vec::new()),
            Err(SplitError::Unsupported(_))
        ));
        let mut two = gz.clone();
        two.extend_from_slice(&gz);
        assert!(matches!(
            split_gzip(&mut &two[..], &mut Vec::new(), &mut Vec::new()),
            Err(SplitError::Unsupported(_))
        ));
    }
}
