//! Tars built and read back in memory, for unit tests (layers, archives).
//!
//! Names are written into the header byte for byte instead of through `tar::Builder`'s
//! path setters, because those drop a leading `./` and real layers (`tar -C dir .`) carry
//! one; tests need both spellings.

use std::collections::BTreeMap;
use std::io::Read;

use tar::{EntryType, Header};

use crate::digest::Digest;

/// A tar stream under construction, one entry per call, in call order.
pub(crate) struct TarBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub(crate) fn new() -> Self {
        TarBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn entry(&mut self, ty: EntryType, name: &str, link: &str, mode: u32, data: &[u8]) {
        let mut h = Header::new_gnu();
        // The old header fields hold 100 bytes; test names are short.
        assert!(name.len() <= 100 && link.len() <= 100, "test name too long");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
    }

    /// A directory (the trailing `/` is added).
    pub(crate) fn dir(self, path: &str) -> Self {
        self.dir_mode(path, 0o755)
    }

    pub(crate) fn dir_mode(mut self, path: &str, mode: u32) -> Self {
        self.entry(EntryType::Directory, &format!("{path}/"), "", mode, b"");
        self
    }

    pub(crate) fn file(mut self, path: &str, data: &[u8]) -> Self {
        self.entry(EntryType::Regular, path, "", 0o644, data);
        self
    }

    /// A hardlink: `path` is another name for the earlier entry `target`.
    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.entry(EntryType::Link, path, target, 0o644, b"");
        self
    }

    /// A symlink at `path` to `target`.
    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entry(EntryType::Symlink, path, target, 0o777, b"");
        self
    }

    /// The whiteout that deletes `path` from the layers below (`dir/.wh.name`).
    pub(crate) fn whiteout(self, path: &str) -> Self {
        let name = match path.rsplit_once('/') {
            Some((parent, name)) => format!("{parent}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.file(&name, b"")
    }

    /// The marker that hides every lower child of `dir`.
    pub(crate) fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    /// The finished tar, with its end-of-archive marker.
    pub(crate) fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// A tar of regular files, `(path, bytes)` in order: the shape of an image archive.
pub(crate) fn tar_of_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for (path, data) in files {
        t = t.file(path, data);
    }
    t.bytes()
}

/// One entry read back from a tar.
#[derive(Clone, Debug)]
pub(crate) struct TarEntry {
    /// The name as stored, trailing `/` of directories removed.
    pub path: String,
    pub kind: EntryType,
    pub mode: u32,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Every entry of a tar, in order.
pub(crate) fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            TarEntry {
                path: path.trim_end_matches('/').to_string(),
                kind,
                mode,
                link,
                data,
            }
        })
        .collect()
}

/// Entries by path (last one wins, as when unpacking).
pub(crate) fn by_path(entries: &[TarEntry]) -> BTreeMap<String, TarEntry> {
    entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect()
}

/// `sha256:<hex>` of some bytes, as a string for JSON documents.
pub(crate) fn sha(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}
