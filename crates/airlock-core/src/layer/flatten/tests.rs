//! Flattening layers built in memory: whiteouts, opaque directories and hardlinks whose
//! first name is gone. Every result is also checked for the properties any unpacker relies
//! on (see [`assert_well_formed`]), so a test fails on a dangling link even where it does not
//! look for one.

use std::collections::BTreeMap;
use std::io::Cursor;

use tar::EntryType;

use super::*;
use crate::testtar::{by_path, read_tar, TarBuilder, TarEntry};

/// Flatten `layers` (bottom first) and read the result back.
fn run(layers: &[Vec<u8>]) -> (Vec<TarEntry>, FlattenReport) {
    let mut out = Vec::new();
    let mut open =
        |i: usize| -> Result<Box<dyn Read + Send>> { Ok(Box::new(Cursor::new(layers[i].clone()))) };
    let report = flatten(layers.len(), &mut open, &mut out).unwrap();
    let entries = read_tar(&out);
    assert_well_formed(&entries);
    (entries, report)
}

/// What a correct flattened tar always is: no whiteout files, each path once, parents
/// before children, and every hardlink naming an earlier regular file (a link to a missing
/// name makes `tar -x` and `docker import` fail).
fn assert_well_formed(entries: &[TarEntry]) {
    let mut seen: BTreeMap<&str, EntryType> = BTreeMap::new();
    for e in entries {
        let name = e.path.rsplit('/').next().unwrap();
        assert!(
            !name.starts_with(WHITEOUT_PREFIX),
            "whiteout left in: {e:?}"
        );
        if let Some((parent, _)) = e.path.rsplit_once('/') {
            assert_eq!(
                seen.get(parent),
                Some(&EntryType::Directory),
                "{} comes before its directory",
                e.path
            );
        }
        if e.kind == EntryType::Link {
            let target = e.link.as_deref().unwrap();
            assert!(
                matches!(
                    seen.get(target),
                    Some(EntryType::Regular | EntryType::Symlink)
                ),
                "hardlink {} -> {target} names no earlier file or symlink",
                e.path
            );
        }
        assert!(
            seen.insert(&e.path, e.kind).is_none(),
            "{} written twice",
            e.path
        );
    }
}

/// The bytes a path holds once unpacked, following a hardlink to its data.
fn content(entries: &[TarEntry], path: &str) -> Vec<u8> {
    let all = by_path(entries);
    let e = &all[path];
    match e.kind {
        EntryType::Regular => e.data.clone(),
        EntryType::Link => all[e.link.as_deref().unwrap()].data.clone(),
        other => panic!("{path} is a {other:?}, not a file"),
    }
}

fn paths(entries: &[TarEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn hardlink_whose_target_is_whited_out_becomes_a_regular_file() {
    // Both spellings real layers use: `a` and `./a` (from `tar -C dir .`).
    for p in ["", "./"] {
        let lower = TarBuilder::new()
            .file(&format!("{p}a"), b"alpha")
            .hardlink(&format!("{p}b"), &format!("{p}a"))
            .bytes();
        let upper = TarBuilder::new().whiteout(&format!("{p}a")).bytes();
        let (out, report) = run(&[lower, upper]);
        assert_eq!(paths(&out), ["b"], "prefix {p:?}");
        let b = &out[0];
        assert_eq!(b.kind, EntryType::Regular, "prefix {p:?}");
        assert_eq!(b.data, b"alpha", "prefix {p:?}");
        assert_eq!(report.entries, 1);
    }
}

#[test]
fn orphaned_hardlink_group_links_the_other_names_to_the_survivor() {
    let lower = TarBuilder::new()
        .file("a", b"alpha")
        .hardlink("b", "a")
        .hardlink("c", "a")
        .bytes();
    let upper = TarBuilder::new().whiteout("a").bytes();
    let (out, _) = run(&[lower, upper]);
    assert_eq!(paths(&out), ["b", "c"]);
    // One copy of the data, still shared: b carries it and c links to b.
    assert_eq!(out[0].kind, EntryType::Regular);
    assert_eq!(out[1].kind, EntryType::Link);
    assert_eq!(out[1].link.as_deref(), Some("b"));
    assert_eq!(content(&out, "c"), b"alpha");
}

#[test]
fn hardlink_whose_target_was_replaced_keeps_the_old_content() {
    // In the lower layer's filesystem b is the same inode as the old a; replacing a above
    // does not change b, so b must not become a link to the new a.
    let lower = TarBuilder::new()
        .file("a", b"old")
        .hardlink("b", "a")
        .bytes();
    let upper = TarBuilder::new().file("a", b"new").bytes();
    let (out, _) = run(&[lower, upper]);
    let all = by_path(&out);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(content(&out, "a"), b"new");
    assert_eq!(content(&out, "b"), b"old");
    assert_eq!(all["b"].kind, EntryType::Regular);
}

#[test]
fn hardlink_into_a_whited_out_directory_survives_with_its_data() {
    let lower = TarBuilder::new()
        .dir("d")
        .file("d/a", b"alpha")
        .dir("keep")
        .hardlink("keep/b", "d/a")
        .bytes();
    let upper = TarBuilder::new().whiteout("d").bytes();
    let (out, _) = run(&[lower, upper]);
    assert_eq!(paths(&out), ["keep", "keep/b"]);
    assert_eq!(out[1].kind, EntryType::Regular);
    assert_eq!(out[1].data, b"alpha");
}

#[test]
fn hardlink_intact_when_nothing_above_touches_it() {
    // The control for the tests above: an untouched group stays a link, not two copies.
    let lower = TarBuilder::new()
        .file("a", b"alpha")
        .hardlink("b", "a")
        .bytes();
    let upper = TarBuilder::new().file("other", b"x").bytes();
    let (out, _) = run(&[lower, upper]);
    let all = by_path(&out);
    assert_eq!(all["a"].kind, EntryType::Regular);
    assert_eq!(all["b"].kind, EntryType::Link);
    assert_eq!(all["b"].link.as_deref(), Some("a"));
}

#[test]
fn cross_layer_hardlinks_to_a_deleted_file_are_dropped_and_counted() {
    // A layer tar can only hardlink to an earlier entry of itself; links that name a file of
    // a lower layer have no data to fall back on once that file is deleted. They must vanish
    // (a second name must not link to the first, which is not written) and be counted.
    let l0 = TarBuilder::new().file("a", b"alpha").bytes();
    let l1 = TarBuilder::new()
        .hardlink("b", "a")
        .hardlink("c", "a")
        .file("kept", b"k")
        .bytes();
    let l2 = TarBuilder::new().whiteout("a").bytes();
    let (out, report) = run(&[l0, l1, l2]);
    assert_eq!(paths(&out), ["kept"]);
    assert_eq!(report.dropped_links, 2);
    assert_eq!(report.entries, 1);
}

#[test]
fn opaque_directory_keeps_only_its_own_layer_children() {
    // The marker may stand before or after its siblings in the layer's tar; either way it
    // hides the lower layers only.
    for marker_first in [true, false] {
        let lower = TarBuilder::new()
            .dir("d")
            .file("d/x", b"x")
            .file("d/y", b"y")
            .dir("d/sub")
            .file("d/sub/deep", b"deep")
            .dir("e")
            .file("e/w", b"w")
            .bytes();
        let mut upper = TarBuilder::new().dir_mode("d", 0o700);
        if marker_first {
            upper = upper.opaque("d").file("d/z", b"z");
        } else {
            upper = upper.file("d/z", b"z").opaque("d");
        }
        let (out, _) = run(&[lower, upper.bytes()]);
        let all = by_path(&out);
        let under_d: Vec<&str> = all
            .keys()
            .filter(|k| k.starts_with("d/"))
            .map(String::as_str)
            .collect();
        assert_eq!(under_d, ["d/z"], "marker first: {marker_first}");
        assert_eq!(content(&out, "d/z"), b"z");
        // The directory itself is the upper layer's.
        assert_eq!(all["d"].kind, EntryType::Directory);
        assert_eq!(all["d"].mode & 0o777, 0o700);
        // A sibling directory is not affected.
        assert_eq!(content(&out, "e/w"), b"w");
    }
}

#[test]
fn whiteout_of_a_directory_removes_everything_below_it() {
    let lower = TarBuilder::new()
        .dir("d")
        .file("d/x", b"x")
        .dir("d/sub")
        .file("d/sub/y", b"y")
        // Names that share the prefix "d" but are not below d/.
        .file("d.keep", b"k")
        .dir("dx")
        .file("dx/f", b"f")
        .bytes();
    let upper = TarBuilder::new().whiteout("d").bytes();
    let (out, _) = run(&[lower, upper]);
    let mut got = paths(&out);
    got.sort();
    assert_eq!(got, ["d.keep", "dx", "dx/f"]);
}

#[test]
fn whiteout_of_a_directory_recreated_in_the_same_layer_keeps_the_new_children() {
    let lower = TarBuilder::new().dir("d").file("d/old", b"old").bytes();
    let upper = TarBuilder::new()
        .dir("d")
        .file("d/new", b"new")
        .whiteout("d")
        .bytes();
    let (out, _) = run(&[lower, upper]);
    let mut got = paths(&out);
    got.sort();
    assert_eq!(got, ["d", "d/new"]);
}

// ------------------------------------------------------------------ found by fuzzing

#[test]
fn an_entry_below_a_lower_file_or_symlink_makes_it_a_directory_written_once() {
    let lower = TarBuilder::new()
        .file("lib", b"a file")
        .symlink("bin", "usr/bin")
        .bytes();
    let upper = TarBuilder::new()
        .file("lib/y", b"y")
        .file("bin/x", b"x")
        .bytes();
    let (out, _) = run(&[lower, upper]);
    let all = by_path(&out);
    assert_eq!(all["lib"].kind, EntryType::Directory);
    assert_eq!(all["bin"].kind, EntryType::Directory);
    assert_eq!(content(&out, "lib/y"), b"y");
    // Below this layer's own file, every Go reader fails: so does flatten.
    let same = TarBuilder::new().file("f", b"f").file("f/x", b"x").bytes();
    let mut sink = Vec::new();
    let mut open =
        |_: usize| -> Result<Box<dyn Read + Send>> { Ok(Box::new(Cursor::new(same.clone()))) };
    assert!(matches!(
        flatten(1, &mut open, &mut sink),
        Err(Error::BadTar { .. })
    ));
}

#[test]
fn hardlink_made_before_its_target_was_rewritten_keeps_the_first_content() {
    // The link shares the first `t`; the rewrite makes a new file; `t` is deleted above.
    let lower = TarBuilder::new()
        .file("t", b"first")
        .hardlink("l", "t")
        .file("t", b"second")
        .bytes();
    let upper = TarBuilder::new().whiteout("t").bytes();
    let (out, _) = run(&[lower.clone(), upper]);
    assert_eq!(paths(&out), ["l"]);
    assert_eq!(content(&out, "l"), b"first");
    // Not deleted: both survive, each with its own content.
    let (out, _) = run(&[lower]);
    assert_eq!(content(&out, "l"), b"first");
    assert_eq!(content(&out, "t"), b"second");
}

#[test]
fn the_directory_a_whiteout_stands_in_stays_when_nothing_is_left_in_it() {
    let lower = TarBuilder::new().file("a/b/f", b"f").bytes();
    let upper = TarBuilder::new()
        .whiteout("a/b/f")
        .file("c/d/.wh..wh..opq", b"")
        .bytes();
    let (out, _) = run(&[lower, upper]);
    assert_eq!(
        paths(&out),
        ["a/", "a/b/", "c/", "c/d/"].map(|p| p.trim_end_matches('/'))
    );
}
