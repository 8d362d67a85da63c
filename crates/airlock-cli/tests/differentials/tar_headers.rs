//! Tar headers Go's archive/tar reads its own way (issue 10, A 2, 3, 5 and 9), asked of
//! docker, podman, skopeo and containerd: where they all read an archive one way that the
//! tar crate would read another, airlock refuses it; where they agree with the tar crate
//! once names are cleaned, airlock loads what they load; what they all refuse, so does
//! airlock.

use super::readers::{airlock_loads, airlock_refuses, all_loaded, all_refused, RawTar, Readers};
use super::{config_digest, docker_image_files};
use crate::util::scratch;

/// A one-image docker-archive built by `finish`, which gets the archive's other files
/// already written and the manifest.json bytes; returns the archive and its image ID.
fn archive_with(
    dir: &std::path::Path,
    what: &str,
    finish: impl FnOnce(&mut RawTar, &[u8]),
) -> (std::path::PathBuf, String) {
    let tag = format!("airlock-{what}-{}:1", std::process::id());
    let (files, entry) = docker_image_files(&tag, what.as_bytes());
    let mut t = RawTar::default();
    for (p, d) in &files {
        t.file(p, d);
    }
    finish(&mut t, &serde_json::to_vec(&[&entry]).unwrap());
    let path = dir.join(format!("{what}.tar"));
    t.write(&path);
    (path, config_digest(&entry))
}

#[test]
fn a_long_name_record_before_an_old_style_header_names_manifest_json_for_go_and_airlock_refuses() {
    let readers = Readers::new("-longname");
    let dir = scratch();
    let (archive, id) = archive_with(dir.path(), "longname", |t, manifest| {
        let mut long = RawTar::header("././@LongLink", tar::EntryType::GNULongName);
        long.set_mode(0o644);
        t.entry(long, b"manifest.json\0");
        // A v7 header: no ustar magic. The tar crate ignores the long name here.
        let mut old = tar::Header::new_old();
        old.set_mode(0o644);
        old.set_path("junk").unwrap();
        t.entry(old, manifest);
    });
    // Every Go reader takes the long name: the image is there.
    all_loaded(&readers.all(&archive, "docker-archive"), &[&id]);
    airlock_refuses(
        &dir.path().join("store"),
        &archive,
        &["entry 'manifest.json'", "old-style (v7)"],
    );
}

#[test]
fn a_sparse_file_renamed_by_pax_records_is_manifest_json_to_go_and_airlock_refuses() {
    let readers = Readers::new("-sparse");
    let dir = scratch();
    let (archive, id) = archive_with(dir.path(), "sparse", |t, manifest| {
        // GNU sparse format 1.0: a map (one region, the whole file) precedes the data, and
        // GNU.sparse.name gives the real name.
        let mut data = format!("1\n0\n{}\n", manifest.len()).into_bytes();
        data.resize(512, 0);
        data.extend_from_slice(manifest);
        let size = manifest.len().to_string();
        t.pax(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "manifest.json"),
            ("GNU.sparse.realsize", &size),
        ]);
        t.file("GNUSparseFile.0/other.json", &data);
    });
    all_loaded(&readers.all(&archive, "docker-archive"), &[&id]);
    airlock_refuses(
        &dir.path().join("store"),
        &archive,
        &["entry 'GNUSparseFile.0/other.json'", "GNU.sparse"],
    );
}

#[test]
fn an_unclean_name_is_cleaned_as_every_go_reader_cleans_it() {
    let readers = Readers::new("-unclean");
    let dir = scratch();
    let (archive, id) = archive_with(dir.path(), "unclean", |t, manifest| {
        t.file("x/../manifest.json", manifest);
    });
    all_loaded(&readers.all(&archive, "docker-archive"), &[&id]);
    assert_eq!(airlock_loads(&dir.path().join("store"), &archive), [id]);
}

#[test]
fn a_pax_size_that_is_not_a_number_is_refused_by_every_reader_and_airlock() {
    let readers = Readers::new("-paxsize");
    let dir = scratch();
    let (archive, _) = archive_with(dir.path(), "paxsize", |t, manifest| {
        t.pax(&[("size", "12x")]);
        t.file("manifest.json", manifest);
    });
    all_refused(&readers.all(&archive, "docker-archive"));
    airlock_refuses(
        &dir.path().join("store"),
        &archive,
        &["entry 'manifest.json'", "PAX size"],
    );
}
