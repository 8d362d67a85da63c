//! Caps on what the tar reader would read whole: GNU long-name (`L`, `K`) and PAX (`x`, `g`)
//! records. The tar crate reads such a record's data into memory, however large its header
//! says it is (a 1 MB gzip of zeros can claim gigabytes). [`RecordCap`] follows the tar
//! stream's blocks underneath the reader and refuses a record over 1 MiB, as Go's
//! archive/tar does, before the reader allocates anything for it.

use std::io::{self, Read};

use crate::error::Error;

/// Largest long-name or PAX record read (Go's limit).
pub const MAX_RECORD: u64 = 1 << 20;

const BLOCK: usize = 512;

/// A tar stream passed through unchanged, its headers watched.
pub struct RecordCap<R> {
    /// The stream underneath.
    pub inner: R,
    header: [u8; BLOCK],
    filled: usize,
    /// Data and padding of the current entry still to pass.
    skip: u64,
    /// A PAX record's data being collected (for its `size`), and how much is left of it.
    pax: Option<(Vec<u8>, u64)>,
    /// The size a PAX record set for the next entry.
    next_size: Option<u64>,
    /// Past the end marker, or past something the reader refuses anyway (sparse files,
    /// unreadable sizes): nothing more to watch.
    done: bool,
}

impl<R: Read> RecordCap<R> {
    /// Watch `inner`, which starts at a tar header.
    pub fn new(inner: R) -> Self {
        RecordCap {
            inner,
            header: [0; BLOCK],
            filled: 0,
            skip: 0,
            pax: None,
            next_size: None,
            done: false,
        }
    }

    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.done {
            if self.skip > 0 {
                let k = (self.skip.min(bytes.len() as u64)) as usize;
                if let Some((data, left)) = &mut self.pax {
                    let take = (*left).min(k as u64) as usize;
                    data.extend_from_slice(&bytes[..take]);
                    *left -= take as u64;
                }
                self.skip -= k as u64;
                bytes = &bytes[k..];
                if self.skip == 0 {
                    if let Some((data, _)) = self.pax.take() {
                        if let Some(size) = pax_size(&data) {
                            self.next_size = Some(size);
                        }
                    }
                }
                continue;
            }
            let k = (BLOCK - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + k].copy_from_slice(&bytes[..k]);
            self.filled += k;
            bytes = &bytes[k..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> io::Result<()> {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            self.done = true; // the end marker: the reader stops here
            return Ok(());
        }
        let kind = h[156];
        let Some(mut size) = header_size(&h[124..136]) else {
            self.done = true; // the reader refuses it
            return Ok(());
        };
        let record = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if record && size > MAX_RECORD {
            let name = String::from_utf8_lossy(h[..100].split(|b| *b == 0).next().unwrap_or(&[]))
                .into_owned();
            return Err(Error::AmbiguousArchive {
                entry: name,
                detail: format!(
                    "it is a long-name or PAX record of {size} bytes; Go's archive/tar (docker, podman, skopeo, containerd) refuses those over 1 MiB"
                ),
            }
            .carried());
        }
        if kind == b'S' {
            self.done = true; // sparse: extension blocks follow; refused by the strict checks
            return Ok(());
        }
        if !record {
            if let Some(s) = self.next_size.take() {
                size = s;
            }
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if kind == b'x' && size > 0 {
            self.pax = Some((Vec::with_capacity(size as usize), size));
        }
        Ok(())
    }
}

impl<R: Read> Read for RecordCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

/// A header's size field: octal, or base-256 when its high bit is set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[1..4].iter().any(|b| *b != 0) {
            return None; // more than 64 bits
        }
        return Some(
            field[4..]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        );
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The `size` a PAX record sets, if any (records are `LEN key=value\n`).
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            found = std::str::from_utf8(v).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap_or(());
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn a_huge_long_name_record_is_refused_before_it_is_read() {
        let mut tar = header("././@LongLink", b'L', 3 << 30);
        tar.extend(vec![b'a'; 4096]); // a little of the 3 GiB the header claims
        let mut r = RecordCap::new(&tar[..]);
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        match Error::from_carried(err) {
            Ok(Error::AmbiguousArchive { detail, .. }) => assert!(detail.contains("1 MiB")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ordinary_archives_and_pax_sizes_pass_through() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(120) + "file";
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut pax = tar::Builder::new(Vec::new());
        pax.append_pax_extensions([("size", &b"3"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0); // the PAX size (3) wins
        h.set_path("p").unwrap();
        h.set_cksum();
        pax.append(&h, &b"abc"[..]).unwrap();
        let pax_bytes = pax.into_inner().unwrap();
        let mut all = b.into_inner().unwrap();
        all.truncate(all.len() - 1024);
        all.extend(&pax_bytes);
        let mut r = RecordCap::new(&all[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, all);
        assert!(r.done, "the end marker was found where it is");
        assert_eq!(pax_size(b"11 size=42\n"), Some(42));
        assert_eq!(header_size(b"00000000012\0"), Some(10));
    }
}
