//! Telling what an input is before trusting it: not a tar at all, a flat filesystem tar
//! (`docker export`), or an image archive, judged from the first bytes and entry names.

use crate::digest::is_sha256_hex;

/// What an entry name says about the archive it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A file every image-archive dialect may hold (metadata or blob).
    ImageArchive,
    /// A directory that image archives hold (`blobs/`, `<v1id>/`).
    ArchiveDir,
    /// Anything else: a root filesystem path.
    Foreign,
}

/// Classify one normalised entry path (no leading `./`, no trailing `/`).
pub fn classify(path: &str, is_dir: bool) -> EntryKind {
    if path.is_empty() {
        return EntryKind::ArchiveDir;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["oci-layout"]
        | ["index.json"]
        | ["manifest.json"]
        | ["repositories"]
        | ["airlock-incremental.json"]
        // containers/image's `dir:` layout: blobs named by hex, per-instance manifests.
        | ["version"] => EntryKind::ImageArchive,
        // Its signatures (`signature-1`, ...): GPG simple signing or sigstore JSON.
        [one] if !is_dir && is_dir_signature(one) => EntryKind::ImageArchive,
        [one] if one.starts_with("signature-") => EntryKind::ArchiveDir,
        [one] if !is_dir && (is_hex_id(one) || dir_instance_manifest(one).is_some()) => {
            EntryKind::ImageArchive
        }
        ["blobs"] => EntryKind::ArchiveDir,
        ["blobs", _alg] if is_dir => EntryKind::ArchiveDir,
        ["blobs", _alg, _hex] => EntryKind::ImageArchive,
        // An incremental archive's sub-layer deltas (`crate::delta`).
        ["deltas"] if is_dir => EntryKind::ArchiveDir,
        ["deltas", _file] if !is_dir => EntryKind::ImageArchive,
        [one] if is_hex_id(one) && is_dir => EntryKind::ArchiveDir,
        [one] => {
            let stem = one
                .strip_suffix(".json")
                .or_else(|| one.strip_suffix(".tar.gz"))
                .or_else(|| one.strip_suffix(".tar.zst"))
                .or_else(|| one.strip_suffix(".tar"))
                .or_else(|| one.strip_prefix("sha256:"))
                .unwrap_or("");
            if is_hex_id(stem) {
                EntryKind::ImageArchive
            } else {
                EntryKind::Foreign
            }
        }
        [id, "VERSION" | "json" | "layer.tar"] if is_hex_id(id) => EntryKind::ImageArchive,
        _ => EntryKind::Foreign,
    }
}

/// containers/image's name for the N-th signature in a `dir:` layout: `signature-N`.
pub fn is_dir_signature(name: &str) -> bool {
    name.strip_prefix("signature-")
        .is_some_and(|n| !n.is_empty() && n.len() < 6 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Top-level names of a root filesystem (what `docker export` and rootfs tars start with).
const ROOTFS_TOP: &[&str] = &[
    "bin",
    "boot",
    "dev",
    "etc",
    "home",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "var",
    ".dockerenv",
    ".dockerinit",
];

/// True when a normalised path sits in a root filesystem's top-level directories.
pub fn is_rootfs_path(path: &str) -> bool {
    let top = path.split('/').next().unwrap_or("");
    ROOTFS_TOP.contains(&top)
}

/// The digest hex of a `dir:` layout's per-instance manifest (`<hex>.manifest.json`).
pub fn dir_instance_manifest(name: &str) -> Option<&str> {
    name.strip_suffix(".manifest.json").filter(|h| is_hex_id(h))
}

/// True when `version` holds what containers/image writes into a `dir:` layout.
pub fn is_dir_layout_version(bytes: &[u8]) -> bool {
    bytes.starts_with(b"Directory Transport Version:")
}

fn is_hex_id(s: &str) -> bool {
    is_sha256_hex(s)
}

/// Describe bytes that are not a tar, for the error message.
pub fn describe_non_tar(prefix: &[u8], total_len: usize) -> String {
    if total_len == 0 {
        return "an empty file".to_string();
    }
    let text = String::from_utf8_lossy(&prefix[..prefix.len().min(512)]);
    let trimmed = text.trim_start();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return "an HTML page (a download that returned an error page?)".to_string();
    }
    if lower.starts_with("<?xml") || lower.starts_with('<') {
        return "XML or HTML text".to_string();
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return "JSON text (a single manifest or config, not an archive)".to_string();
    }
    if prefix.starts_with(b"PK\x03\x04") {
        return "a ZIP file".to_string();
    }
    if prefix.starts_with(b"\x7fELF") {
        return "an executable (ELF) file".to_string();
    }
    if prefix.starts_with(b"%PDF") {
        return "a PDF document".to_string();
    }
    if total_len < 512 {
        return format!("{total_len} bytes, too short for a tar (truncated?)");
    }
    if prefix
        .iter()
        .take(512)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return "plain text".to_string();
    }
    let head: Vec<String> = prefix.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("binary data starting {}", head.join(" "))
}

/// True when a 512-byte block has a valid tar header checksum.
pub fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let Some(stored) = stored else { return false };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                b as u32
            }
        })
        .sum();
    sum == stored
}

/// Names of the first entries of a tar, read from its first bytes without consuming the
/// stream (GNU long names are followed; PAX path records are not needed to spot an image
/// archive, whose names are all short).
pub fn first_entry_names(head: &[u8], max: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut off = 0usize;
    let mut long_name: Option<String> = None;
    while off + 512 <= head.len() && names.len() < max {
        let block = &head[off..off + 512];
        if block.iter().all(|&b| b == 0) || !is_tar_header(block) {
            break;
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &block[r];
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let size = u64::from_str_radix(field(124..136).trim(), 8).unwrap_or(0) as usize;
        let typeflag = block[156];
        let data_blocks = size.div_ceil(512) * 512;
        if typeflag == b'L' {
            let start = off + 512;
            let end = (start + size).min(head.len());
            long_name = Some(
                String::from_utf8_lossy(&head[start..end])
                    .trim_end_matches('\0')
                    .to_string(),
            );
        } else if typeflag != b'x' && typeflag != b'g' {
            let name = long_name.take().unwrap_or_else(|| {
                let prefix = field(345..500);
                let name = field(0..100);
                if &block[257..262] == b"ustar" && !prefix.is_empty() {
                    format!("{prefix}/{name}")
                } else {
                    name
                }
            });
            names.push(name);
        }
        off += 512 + data_blocks;
    }
    names
}

/// Normalise an archive path as Go's `path.Clean` reads it (every loader but airlock is
/// Go): no leading `./` or `/`, no trailing `/`, no empty or `.` parts, and `x/..` removed.
/// A `..` that would leave the archive stays at the front (the strict reader refuses it).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn recognises_every_dialect_name() {
        for p in [
            "manifest.json".to_string(),
            "index.json".to_string(),
            "oci-layout".to_string(),
            "repositories".to_string(),
            format!("blobs/sha256/{HEX}"),
            format!("{HEX}.json"),
            format!("{HEX}.tar"),
            format!("{HEX}.tar.gz"),
            format!("sha256:{HEX}"),
            format!("{HEX}/layer.tar"),
            format!("{HEX}/VERSION"),
            format!("{HEX}/json"),
        ] {
            assert_eq!(classify(&p, false), EntryKind::ImageArchive, "{p}");
        }
        assert_eq!(classify(HEX, true), EntryKind::ArchiveDir);
        assert_eq!(classify("blobs/sha256", true), EntryKind::ArchiveDir);
    }

    #[test]
    fn rootfs_paths_are_foreign() {
        for p in ["bin", "etc/passwd", ".dockerenv", "usr/bin/sh", "data.json"] {
            assert_eq!(classify(p, p == "bin"), EntryKind::Foreign, "{p}");
        }
    }

    #[test]
    fn describes_non_tars() {
        assert_eq!(describe_non_tar(b"", 0), "an empty file");
        assert!(describe_non_tar(b"<!DOCTYPE html><html>", 21).contains("HTML"));
        assert!(describe_non_tar(b"{\"a\":1}", 7).contains("JSON"));
    }
}
