//! One reading of a tar: every header is checked before anything acts on it, and what
//! Go's archive/tar (docker, podman, skopeo, containerd all read archives with it) would read
//! differently from the tar crate is refused, naming the entry. `verify` promises that what
//! it checked is what the far side loads; an archive built to be read two ways breaks that.

use std::collections::BTreeSet;
use std::io::Read;

use tar::EntryType;

use crate::error::{Error, Result};

/// What an entry is, once it passed the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link.
    HardLink,
    /// Something no image archive holds that every reader ignores (a device, a FIFO, a
    /// PAX global header).
    Ignored,
}

/// Longest entry name or link target accepted: Go refuses GNU long names over 1 MiB.
const MAX_NAME: usize = 1 << 20;

/// The checks that need to remember earlier entries (duplicates).
#[derive(Default)]
pub struct Strict {
    seen: BTreeSet<String>,
}

fn ambiguous(entry: &str, detail: impl Into<String>) -> Error {
    Error::AmbiguousArchive {
        entry: entry.to_string(),
        detail: detail.into(),
    }
}

impl Strict {
    /// Check one entry; `path` is its normalised name. Returns what it is.
    pub fn check<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw_path: &str,
        path: &str,
    ) -> Result<Kind> {
        let header = entry.header();
        if header.as_ustar().is_none() && header.as_gnu().is_none() {
            // Old (v7) headers: readers differ on which long-name records apply to them.
            return Err(ambiguous(
                raw_path,
                "it has an old-style (v7) tar header, which tar readers interpret differently; make the archive again with a current tool",
            ));
        }
        let size = header
            .size()
            .map_err(|e| ambiguous(raw_path, format!("its size field is unreadable ({e})")))?;
        let kind = match header.entry_type() {
            EntryType::Regular => Kind::File,
            EntryType::Continuous => {
                return Err(ambiguous(
                    raw_path,
                    "it is a contiguous file (entry type '7'): docker refuses such an archive while podman and skopeo read the entry as a regular file",
                ))
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            EntryType::Char | EntryType::Block | EntryType::Fifo | EntryType::XGlobalHeader => {
                Kind::Ignored
            }
            EntryType::GNUSparse => {
                return Err(ambiguous(
                    raw_path,
                    "it is a GNU sparse file, which image loaders do not read alike",
                ))
            }
            other => {
                return Err(ambiguous(
                    raw_path,
                    format!(
                    "its entry type {:?} is one loaders treat differently (some as a regular file)",
                    other.as_byte() as char
                ),
                ))
            }
        };
        // Go reads no data after a header-only entry; the tar crate would skip `size` bytes,
        // hiding whatever entries sit there from one reader but not the other.
        let header_only =
            !matches!(kind, Kind::File) && header.entry_type() != EntryType::XGlobalHeader;
        if header_only && size != 0 {
            return Err(ambiguous(
                raw_path,
                format!("it is a {} header that claims {size} bytes of data; Go-based loaders read none there, so the entries after it would differ", kind_name(kind)),
            ));
        }
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| ambiguous(raw_path, format!("its PAX records are unreadable ({e})")))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| {
                    ambiguous(raw_path, format!("its PAX records are unreadable ({e})"))
                })?;
                let key = ext.key().unwrap_or("");
                if key.starts_with("GNU.sparse.") {
                    return Err(ambiguous(
                        raw_path,
                        format!(
                            "its PAX record {key} renames or reshapes it for some readers only"
                        ),
                    ));
                }
                if key == "size"
                    && ext
                        .value()
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .is_none()
                {
                    return Err(ambiguous(raw_path, "its PAX size record is not a number"));
                }
            }
        }
        if raw_path.len() > MAX_NAME {
            let start: String = raw_path.chars().take(64).collect();
            return Err(ambiguous(
                &format!("{start}..."),
                "its name is longer than 1 MiB",
            ));
        }
        let trimmed = raw_path.trim_start_matches("./");
        if trimmed.starts_with('/') {
            // docker takes `/manifest.json` as `manifest.json`; podman and skopeo skip it.
            return Err(ambiguous(
                raw_path,
                "its name is absolute, which loaders read differently",
            ));
        }
        if path.split('/').next() == Some("..") {
            return Err(ambiguous(raw_path, "its name leaves the archive (`..`)"));
        }
        if kind != Kind::Dir && kind != Kind::Ignored && !self.seen.insert(path.to_string()) {
            // podman and skopeo keep the first copy, docker the last.
            return Err(ambiguous(
                raw_path,
                "the archive holds it twice, and loaders disagree on which copy counts",
            ));
        }
        Ok(kind)
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Dir => "directory",
        Kind::Symlink => "symbolic link",
        Kind::HardLink => "hard link",
        _ => "device or FIFO",
    }
}
