//! Flatten (export) against unpack (create): layers made of a few colliding names, with
//! files, directories, links, whiteouts and opaque markers. The flattened tar must name no
//! path twice, put every parent before its children, and unpack to exactly the tree the
//! layers unpack to one by one.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::Path;

use airlock_core::layer::flatten::flatten;
use airlock_core::layer::unpack::{unpack_layer, UnpackOptions};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &["a", "a/b", "a/b/c", "lib", "lib/y", "x", "x/y", "a/x"];

#[derive(Arbitrary, Debug)]
enum Kind {
    File(u8),
    Dir,
    Symlink(u8),
    Hardlink(u8),
    Whiteout,
    Opaque,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    name: u8,
    kind: Kind,
}

fn name(i: u8) -> &'static str {
    NAMES[i as usize % NAMES.len()]
}

fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries.iter().take(10) {
        let path = name(e.name);
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        let (parent, base) = match path.rsplit_once('/') {
            Some((p, b)) => (format!("{p}/"), b),
            None => (String::new(), path),
        };
        let r = match &e.kind {
            Kind::File(c) => {
                let data = vec![*c; (*c % 5) as usize];
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..])
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), &[][..])
            }
            Kind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, name(*t))
            }
            Kind::Hardlink(t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, name(*t))
            }
            Kind::Whiteout => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                b.append_data(&mut h, format!("{parent}.wh.{base}"), &[][..])
            }
            Kind::Opaque => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/.wh..wh..opq"), &[][..])
            }
        };
        r.unwrap();
    }
    b.into_inner().unwrap()
}

/// path -> what a user sees there (type, content or link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                walk(base, &p, out);
                "dir".to_string()
            } else {
                format!("file {:?}", fs::read(&p).unwrap())
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fuzz_target!(|layers: Vec<Vec<Entry>>| {
    let layers: Vec<Vec<u8>> = layers.iter().take(4).map(|l| layer_tar(l)).collect();
    let mut out = Vec::new();
    let opened = |i: usize| -> airlock_core::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(Cursor::new(layers[i].clone())))
    };
    let mut opened = opened;
    let Ok(report) = flatten(layers.len(), &mut opened, &mut out) else {
        return;
    };
    // No path twice, parents first.
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    let mut ar = tar::Archive::new(Cursor::new(&out));
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let p = String::from_utf8_lossy(&e.path_bytes()).trim_end_matches('/').to_string();
        let is_dir = e.header().entry_type().is_dir();
        assert!(!seen.contains_key(&p), "{p} written twice");
        if let Some((parent, _)) = p.rsplit_once('/') {
            assert_eq!(seen.get(parent), Some(&true), "{p} before its parent directory");
        }
        seen.insert(p, is_dir);
    }
    // A link to a lower layer's file that is gone above is dropped, as documented (docker
    // fails to apply such a layer at all): no tree to compare.
    if report.dropped_links > 0 {
        return;
    }
    // The same tree as unpacking the layers in turn (when they unpack at all).
    let opts = UnpackOptions {
        apply_ownership: false,
    };
    let by_layers = tempfile::tempdir().unwrap();
    for l in &layers {
        if unpack_layer(&mut Cursor::new(l), by_layers.path(), &opts).is_err() {
            return;
        }
    }
    let flat = tempfile::tempdir().unwrap();
    unpack_layer(&mut Cursor::new(&out), flat.path(), &opts).expect("the flattened tar unpacks");
    assert_eq!(tree(flat.path()), tree(by_layers.path()));
});
