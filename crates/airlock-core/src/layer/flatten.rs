//! Flattening an image's layers into one filesystem tar, tar to tar, without unpacking.
//!
//! Two streaming passes over the layers. The first reads only headers and works out the
//! final tree: for each path, which layer's entry wins once whiteouts (regular and opaque)
//! are applied. The second streams the layers again, bottom first, and copies exactly the
//! winning entries. Because nothing touches the disk, it runs as any user and keeps owners,
//! modes, mtimes, xattrs and device entries as the layers recorded them.
//!
//! Two orderings need care. Directories are emitted before their children even when the
//! directory's winning entry sits in a higher layer (its header is kept from the first
//! pass). A hardlink whose first name was deleted or replaced above would dangle, so the
//! first surviving name of the group is written as a regular file with the original data,
//! and the other names link to it. A link to a file of a lower layer (which layer tars do not
//! normally hold) has no data to fall back on: when that file is gone, the link is dropped
//! and counted in the report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};

use super::{normalize_path, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::error::{Error, Result};

#[cfg(test)]
mod tests;

/// What a flatten wrote.
#[derive(Debug, Default, Clone)]
pub struct FlattenReport {
    /// Entries written.
    pub entries: u64,
    /// Hardlinks dropped because their target's data is not in their own layer (it lived in
    /// a lower layer and was deleted or replaced above), so no name of theirs can hold it.
    pub dropped_links: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Dir,
    File,
    /// A hardlink: its target, and the position in the same layer of the entry it links
    /// to (the target's latest entry before it; None when the target is a lower layer's).
    HardLink(String, Option<usize>),
    Other,
}

/// The winning entry for one path.
#[derive(Clone)]
struct Node {
    layer: usize,
    ord: usize,
    kind: Kind,
    /// Header and xattrs of directories, so they can be written ahead of their children.
    dir_meta: Option<Box<Meta>>,
    /// A directory no entry declares but one implies (a child, a whiteout in it): it
    /// exists once unpacked, so it is written even when nothing below it survives.
    implied: bool,
}

#[derive(Clone)]
struct Meta {
    header: tar::Header,
    pax: Vec<(String, Vec<u8>)>,
}

/// An orphaned hardlink group: its data entry was deleted or replaced (above, or later in
/// the same layer). Keyed by (layer, position of the data entry).
struct Orphan {
    /// The surviving name that becomes a regular file.
    primary: String,
}

/// Flatten `layer_count` layers, bottom first; `open_layer(i)` returns layer `i` as an
/// uncompressed tar stream and is called twice per layer.
pub fn flatten(
    layer_count: usize,
    open_layer: &mut dyn FnMut(usize) -> Result<Box<dyn Read + Send>>,
    out: &mut dyn Write,
) -> Result<FlattenReport> {
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for layer in 0..layer_count {
        let reader = open_layer(layer)?;
        read_layer_headers(layer, reader, &mut tree)?;
    }
    // Winners by (layer, ord), and orphaned hardlink groups by (layer, target).
    let mut winners: HashMap<(usize, usize), String> = HashMap::new();
    for (path, node) in tree.iter().filter(|(_, n)| !n.implied) {
        winners.insert((node.layer, node.ord), path.clone());
    }
    let mut orphans: BTreeMap<(usize, usize), Orphan> = BTreeMap::new();
    let mut report = FlattenReport::default();
    for (path, node) in &tree {
        if let Kind::HardLink(target, Some(data)) = &node.kind {
            if !link_is_valid(&tree, node, target, Some(*data)) {
                orphans
                    .entry((node.layer, *data))
                    .or_insert_with(|| Orphan {
                        primary: path.clone(),
                    });
            }
        }
    }

    let mut builder = tar::Builder::new(out);
    let mut emitted_dirs: BTreeSet<String> = BTreeSet::new();
    // Orphan groups whose data entry has been written under the primary name. A tar puts a
    // link's data before the link, so by the time a link is reached its group is here or
    // never will be.
    let mut orphans_written: BTreeSet<(usize, usize)> = BTreeSet::new();
    for layer in 0..layer_count {
        let reader = open_layer(layer)?;
        let mut archive = tar::Archive::new(reader);
        for (ord, entry) in archive.entries().map_err(bad_tar(layer))?.enumerate() {
            let mut entry = entry.map_err(bad_tar(layer))?;
            let winner = winners.get(&(layer, ord)).cloned();
            // The data entry of an orphaned hardlink group: write it under the surviving name.
            if let Some(orphan) = orphans.get(&(layer, ord)) {
                let t = entry.header().entry_type();
                if winner.is_none() && !t.is_dir() && !t.is_hard_link() {
                    // A file, or a symlink or device a link was made to.
                    let primary = orphan.primary.clone();
                    ensure_parents(&mut builder, &tree, &mut emitted_dirs, &primary)?;
                    let meta = meta_of(&mut entry)?;
                    let link = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned());
                    write_entry(
                        &mut builder,
                        meta,
                        &primary,
                        Some(&mut entry),
                        link.as_deref(),
                    )?;
                    orphans_written.insert((layer, ord));
                    report.entries += 1;
                    continue;
                }
            }
            let Some(path) = winner else { continue };
            let node = &tree[&path];
            match &node.kind {
                Kind::Dir => {
                    if emitted_dirs.contains(&path) {
                        continue;
                    }
                    ensure_parents(&mut builder, &tree, &mut emitted_dirs, &path)?;
                    let meta = node
                        .dir_meta
                        .as_deref()
                        .cloned()
                        .expect("dirs keep their header");
                    write_entry(&mut builder, meta, &format!("{path}/"), None, None)?;
                    emitted_dirs.insert(path);
                }
                Kind::HardLink(target, data) => {
                    let key = data.map(|d| (layer, d));
                    let link_to = match key.and_then(|k| orphans.get(&k).map(|o| (k, o))) {
                        // No data for the group (it was no regular file): linking to the
                        // primary name would dangle, as the primary was never written.
                        Some((k, _)) if !orphans_written.contains(&k) => {
                            report.dropped_links += 1;
                            continue;
                        }
                        Some((_, o)) if o.primary == path => continue, // written with the data
                        Some((_, o)) => o.primary.clone(),
                        None if link_is_valid(&tree, node, target, *data) => target.clone(),
                        None => {
                            report.dropped_links += 1;
                            continue;
                        }
                    };
                    ensure_parents(&mut builder, &tree, &mut emitted_dirs, &path)?;
                    let meta = meta_of(&mut entry)?;
                    write_entry(&mut builder, meta, &path, None, Some(&link_to))?;
                }
                Kind::File | Kind::Other => {
                    ensure_parents(&mut builder, &tree, &mut emitted_dirs, &path)?;
                    let meta = meta_of(&mut entry)?;
                    let link = entry
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned());
                    write_entry(&mut builder, meta, &path, Some(&mut entry), link.as_deref())?;
                }
            }
            report.entries += 1;
        }
    }
    // Implied directories nothing below survived in: they exist all the same.
    for (path, _) in tree.iter().filter(|(_, n)| n.implied) {
        if !emitted_dirs.contains(path) {
            ensure_parents(&mut builder, &tree, &mut emitted_dirs, path)?;
            write_entry(
                &mut builder,
                implicit_dir(),
                &format!("{path}/"),
                None,
                None,
            )?;
            emitted_dirs.insert(path.clone());
            report.entries += 1;
        }
    }
    builder
        .finish()
        .map_err(|e| Error::stream("write the flattened tar", e))?;
    Ok(report)
}

fn bad_tar(layer: usize) -> impl Fn(io::Error) -> Error {
    move |e| match Error::from_carried(e) {
        Ok(carried) => carried,
        Err(e) => Error::BadTar {
            detail: format!("layer {layer}: {e}"),
        },
    }
}

fn entry_path<R: Read>(entry: &tar::Entry<R>) -> String {
    normalize_path(&String::from_utf8_lossy(&entry.path_bytes()))
}

/// Pass one: apply a layer's whiteouts to the tree of the layers below, then add its entries.
fn read_layer_headers(
    layer: usize,
    reader: Box<dyn Read + Send>,
    tree: &mut BTreeMap<String, Node>,
) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut whiteouts: Vec<String> = Vec::new();
    let mut opaque: Vec<String> = Vec::new();
    // Each path's latest entry in this layer so far: its position, and for a hardlink what
    // it links to.
    type LinkTo = Option<(String, Option<usize>)>;
    let mut latest: HashMap<String, (usize, LinkTo)> = HashMap::new();
    // This layer's entries in order; `None` for the directory a whiteout stands in, which
    // the layer has (docker creates it) even when nothing else names it.
    let mut added: Vec<(String, Option<Node>)> = Vec::new();
    // Paths this layer has made files, links or devices so far.
    let mut non_dirs: BTreeSet<String> = BTreeSet::new();
    for (ord, entry) in archive.entries().map_err(bad_tar(layer))?.enumerate() {
        let mut entry = entry.map_err(bad_tar(layer))?;
        let path = entry_path(&entry);
        if path.is_empty() {
            continue;
        }
        if path.split('/').any(|c| c == "..") {
            return Err(Error::BadTar {
                detail: format!("layer {layer}: entry '{path}' climbs out of the root with '..'"),
            });
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == OPAQUE_MARKER || name.starts_with(WHITEOUT_PREFIX) {
            // Below a symlink this layer made, unpackers follow it or not depending on
            // the order of entries: too ambiguous to flatten (unpack refuses it too).
            let mut dir = parent.as_str();
            while !dir.is_empty() {
                if non_dirs.contains(dir) {
                    return Err(Error::BadTar {
                        detail: format!(
                            "layer {layer}: whiteout '{path}' lies below '{dir}', which the same layer made a non-directory"
                        ),
                    });
                }
                dir = dir.rsplit_once('/').map_or("", |(p, _)| p);
            }
        }
        if name == OPAQUE_MARKER {
            added.push((parent.clone(), None));
            opaque.push(parent);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if !hidden.is_empty() {
                whiteouts.push(join(&parent, hidden));
                added.push((parent.clone(), None));
            }
            continue;
        }
        let t = entry.header().entry_type();
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| normalize_path(&String::from_utf8_lossy(&b)))
                .unwrap_or_default();
            // A link to a link is a link to what that one links to.
            match latest.get(&target) {
                Some((_, Some((t, d)))) => Kind::HardLink(t.clone(), *d),
                Some((d, None)) => Kind::HardLink(target, Some(*d)),
                None => Kind::HardLink(target, None),
            }
        } else if t.is_file() || t == tar::EntryType::Continuous {
            Kind::File
        } else {
            Kind::Other
        };
        let dir_meta = if kind == Kind::Dir {
            Some(Box::new(meta_of(&mut entry)?))
        } else {
            None
        };
        let link = match &kind {
            Kind::HardLink(t, d) => Some((t.clone(), *d)),
            _ => None,
        };
        latest.insert(path.clone(), (ord, link));
        if kind == Kind::Dir {
            non_dirs.remove(&path);
        } else {
            non_dirs.insert(path.clone());
        }
        added.push((
            path,
            Some(Node {
                layer,
                ord,
                kind,
                dir_meta,
                implied: false,
            }),
        ));
    }
    // Read to the end: past the tar trailer, so a stored blob is proven whole (see
    // `snapshot::open_layer`) before anything is written.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(bad_tar(layer))?;
    // Whiteouts hide lower layers only, wherever they stand in this layer's tar.
    for dir in &opaque {
        remove_children(tree, dir);
    }
    for path in &whiteouts {
        tree.remove(path);
        remove_children(tree, path);
    }
    for (path, node) in added {
        let Some(node) = node else {
            imply_dirs(tree, layer, &path, &path)?;
            continue;
        };
        if let Some((parent, _)) = path.rsplit_once('/') {
            imply_dirs(tree, layer, parent, &path)?;
        }
        if node.kind != Kind::Dir {
            // A non-directory replaces a directory (named or implied) and all below it.
            remove_children(tree, &path);
        }
        tree.insert(path, node);
    }
    Ok(())
}

/// Make `dir` and its ancestors directories of the tree, for `entry` of `layer` that lies
/// in it. A missing one becomes an implied directory. A lower layer's non-directory there
/// is replaced by one, as overlayfs shows it (docker export agrees); one of this layer's
/// own is refused, as every Go reader fails there ("not a directory").
fn imply_dirs(
    tree: &mut BTreeMap<String, Node>,
    layer: usize,
    dir: &str,
    entry: &str,
) -> Result<()> {
    let mut prefix = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        match tree.get(&prefix) {
            Some(n) if n.kind == Kind::Dir => continue,
            Some(n) if n.layer == layer => {
                return Err(Error::BadTar {
                    detail: format!(
                        "layer {layer}: entry '{entry}' lies below '{prefix}', which the same layer makes a non-directory"
                    ),
                });
            }
            _ => {}
        }
        tree.insert(
            prefix.clone(),
            Node {
                layer,
                ord: usize::MAX,
                kind: Kind::Dir,
                dir_meta: Some(Box::new(implicit_dir())),
                implied: true,
            },
        );
    }
    Ok(())
}

/// True when the target a hardlink was made against is still what the tree holds at its
/// name: the very entry (same layer), or a lower layer's file, symlink or device.
fn link_is_valid(
    tree: &BTreeMap<String, Node>,
    link: &Node,
    target: &str,
    data: Option<usize>,
) -> bool {
    tree.get(target).is_some_and(|t| {
        matches!(t.kind, Kind::File | Kind::Other)
            && match data {
                Some(d) => t.layer == link.layer && t.ord == d,
                None => t.layer < link.layer,
            }
    })
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn remove_children(tree: &mut BTreeMap<String, Node>, dir: &str) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<String> = tree
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

fn meta_of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta> {
    let mut pax = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|e| Error::BadTar {
        detail: e.to_string(),
    })? {
        for ext in exts {
            let ext = ext.map_err(|e| Error::BadTar {
                detail: e.to_string(),
            })?;
            let key = ext.key().unwrap_or("").to_string();
            // Path, link and size are re-encoded by the writer; xattrs and the like are kept.
            if key.starts_with("SCHILY.") || key.starts_with("LIBARCHIVE.") {
                pax.push((key, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        header: entry.header().clone(),
        pax,
    })
}

/// Write parent directories of `path` that have not been written yet, top down.
fn ensure_parents<W: Write>(
    builder: &mut tar::Builder<W>,
    tree: &BTreeMap<String, Node>,
    emitted: &mut BTreeSet<String>,
    path: &str,
) -> Result<()> {
    let mut ancestors: Vec<&str> = Vec::new();
    let mut p = path;
    while let Some((parent, _)) = p.rsplit_once('/') {
        ancestors.push(parent);
        p = parent;
    }
    for dir in ancestors.into_iter().rev() {
        if emitted.contains(dir) {
            continue;
        }
        let meta = match tree.get(dir).and_then(|n| n.dir_meta.as_deref()) {
            Some(m) => m.clone(),
            None => implicit_dir(),
        };
        write_entry(builder, meta, &format!("{dir}/"), None, None)?;
        emitted.insert(dir.to_string());
    }
    Ok(())
}

/// A directory no layer declared but a path needs (layers may omit parents).
fn implicit_dir() -> Meta {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    Meta {
        header: h,
        pax: Vec::new(),
    }
}

fn write_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    meta: Meta,
    path: &str,
    data: Option<&mut dyn Read>,
    link: Option<&str>,
) -> Result<()> {
    let err = |e: io::Error| Error::stream(format!("write {path} to the flattened tar"), e);
    let Meta { mut header, pax } = meta;
    if !pax.is_empty() {
        builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(err)?;
    }
    match (link, data) {
        (Some(target), _) if !header.entry_type().is_file() => {
            header.set_size(0);
            builder.append_link(&mut header, path, target).map_err(err)
        }
        (Some(target), None) => {
            // A hardlink to the surviving name of its group.
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            builder.append_link(&mut header, path, target).map_err(err)
        }
        (_, Some(data))
            if header.entry_type().is_file() || header.entry_type() == tar::EntryType::Link =>
        {
            // Orphaned link data arrives from the original file entry: a regular file now.
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, data).map_err(err)
        }
        _ => {
            header.set_size(0);
            builder
                .append_data(&mut header, path, io::empty())
                .map_err(err)
        }
    }
}
