//! Archives built to be read two ways (issue 10, A): each is refused naming the entry, or
//! read the one way Go's archive/tar (every other loader) reads it.

use std::io::Cursor;

use serde_json::{json, Value};

use crate::copy::stream::{copy_archive, ArchiveInput, StreamReport};
use crate::copy::CopyOptions;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::media_type;
use crate::store::Store;
use crate::testtar::TarBuilder;
use crate::transport::discard::DiscardDestination;
use crate::transport::SourceImage;

fn read_bytes(tar: Vec<u8>) -> Result<StreamReport> {
    let all = |images: Vec<SourceImage>| Ok(images);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    copy_archive(
        ArchiveInput::Stream(Box::new(Cursor::new(tar))),
        Box::new(DiscardDestination::default()),
        &all,
        Some(&store),
        &CopyOptions::default(),
    )
}

/// The files of a one-image OCI layout.
fn layout() -> Vec<(String, Vec<u8>)> {
    let layer = TarBuilder::new().file("hello", b"hello").bytes();
    let sha = |b: &[u8]| Digest::of(b).to_string();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}}))
    .unwrap();
    let d = |mt: &str, b: &[u8]| json!({"mediaType": mt, "digest": sha(b), "size": b.len()});
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": d(media_type::OCI_CONFIG, &config), "layers": [d(media_type::OCI_LAYER, &layer)]}))
    .unwrap();
    let mut root = d(media_type::OCI_MANIFEST, &manifest);
    root["annotations"] = json!({"org.opencontainers.image.ref.name": "example.com/app:1"});
    let blob = |b: &[u8]| (format!("blobs/sha256/{}", Digest::of(b).hex()), b.to_vec());
    vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            "index.json".into(),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [root]})).unwrap(),
        ),
        blob(&manifest),
        blob(&config),
        blob(&layer),
    ]
}

/// A tar of `files`, with `extra(builder)` called first to add the hostile entry.
fn tar_with(
    files: &[(String, Vec<u8>)],
    extra: impl FnOnce(&mut tar::Builder<Vec<u8>>),
) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    extra(&mut b);
    for (p, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar whose names are written as given (the tar crate refuses `..` and `/` names).
fn raw_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        let name = p.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn refused(tar: Vec<u8>, entry: &str, says: &str) {
    match read_bytes(tar) {
        Err(Error::AmbiguousArchive { entry: e, detail }) => {
            assert_eq!(e, entry, "{detail}");
            assert!(detail.contains(says), "{detail}");
        }
        other => panic!("not refused: {:?}", other.map(|r| r.images.len())),
    }
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o755);
    h
}

#[test]
fn a_header_only_entry_with_data_is_refused() {
    // Go reads no data after a directory or link header: the bytes the tar crate would skip
    // as its data are entries to docker. Here they hide a whole second layout.
    for kind in [
        tar::EntryType::Directory,
        tar::EntryType::Symlink,
        tar::EntryType::Link,
    ] {
        let hidden = tar_with(&layout(), |_| {});
        let tar = tar_with(&layout(), |b| {
            let mut h = header(kind, 1024);
            if kind != tar::EntryType::Directory {
                h.set_link_name("elsewhere").unwrap();
            }
            b.append_data(&mut h, "docs", &hidden[..1024]).unwrap();
        });
        refused(tar, "docs", "claims 1024 bytes of data");
    }
}

#[test]
fn old_headers_sparse_files_and_unknown_types_are_refused() {
    let tar = tar_with(&layout(), |b| {
        let mut h = tar::Header::new_old();
        h.set_size(2);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "README", &b"hi"[..]).unwrap();
    });
    refused(tar, "README", "old-style (v7)");
    let tar = tar_with(&layout(), |b| {
        b.append_pax_extensions([("GNU.sparse.name", &b"manifest.json"[..])])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 2);
        b.append_data(&mut h, "README", &b"hi"[..]).unwrap();
    });
    refused(tar, "README", "GNU.sparse.name");
    let tar = tar_with(&layout(), |b| {
        let mut h = header(tar::EntryType::new(b'Z'), 2);
        b.append_data(&mut h, "odd", &b"hi"[..]).unwrap();
    });
    refused(tar, "odd", "entry type");
}

#[test]
fn contiguous_files_are_refused() {
    // Type `7`: Go's reader takes it as a regular file (podman, skopeo), docker's
    // extraction refuses it ("unhandled tar header type 55"): read two ways.
    let files = layout();
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in &files {
        let mut h = header(tar::EntryType::Continuous, data.len() as u64);
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    refused(b.into_inner().unwrap(), "oci-layout", "contiguous");
}

#[test]
fn names_are_cleaned_as_go_cleans_them_and_ambiguous_ones_refused() {
    // `x/../index.json` is `index.json` to every Go reader.
    let mut files = layout();
    files[1].0 = "x/../index.json".into();
    files[2].0 = format!("blobs/./sha256//{}", files[2].0.rsplit('/').next().unwrap());
    let report = read_bytes(raw_tar(&files)).unwrap();
    assert_eq!(report.images[0].names[0].to_string(), "example.com/app:1");
    // `/index.json`: docker reads it, podman and skopeo skip it.
    let mut files = layout();
    files[1].0 = "/index.json".into();
    refused(raw_tar(&files), "/index.json", "absolute");
    // A name that leaves the archive.
    let mut files = layout();
    files.push(("../evil".into(), b"x".to_vec()));
    refused(raw_tar(&files), "../evil", "leaves the archive");
}

#[test]
fn a_second_copy_of_an_entry_is_refused() {
    // podman and skopeo take the first index.json, docker the last.
    let mut files = layout();
    let other: Value = json!({"schemaVersion": 2, "manifests": []});
    files.push(("index.json".into(), serde_json::to_vec(&other).unwrap()));
    refused(tar_with(&files, |_| {}), "index.json", "twice");
}

#[test]
fn nothing_after_the_end_of_the_archive_is_read_on() {
    // `cat ok.tar /dev/zero | airlock verify` must end: the zeros after the archive are not
    // the archive's.
    use std::io::Read;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    struct Counted<R>(R, Arc<AtomicU64>);
    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }
    let tar = tar_with(&layout(), |_| {});
    let len = tar.len() as u64;
    let read = Arc::new(AtomicU64::new(0));
    let endless = Cursor::new(tar).chain(std::io::repeat(0).take(4 << 30));
    let all = |images: Vec<SourceImage>| Ok(images);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let report = copy_archive(
        ArchiveInput::Stream(Box::new(Counted(endless, read.clone()))),
        Box::new(DiscardDestination::default()),
        &all,
        Some(&store),
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(report.images.len(), 1);
    let read = read.load(Ordering::Relaxed);
    assert!(
        read < len + (4 << 20),
        "read {read} bytes of a {len}-byte archive"
    );
}

#[test]
fn a_layout_directory_is_read_only_within_itself() {
    use std::os::unix::fs::symlink;
    let write = |dir: &std::path::Path| {
        for (p, data) in layout() {
            let path = dir.join(&p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
    };
    let read_dir = |dir: &std::path::Path| {
        let all = |images: Vec<SourceImage>| Ok(images);
        let s = tempfile::tempdir().unwrap();
        let store = Store::open(s.path().join("store")).unwrap();
        copy_archive(
            ArchiveInput::Dir(dir.to_path_buf()),
            Box::new(DiscardDestination::default()),
            &all,
            Some(&store),
            &CopyOptions::default(),
        )
    };
    // A link inside the layout is followed.
    let ok = tempfile::tempdir().unwrap();
    write(ok.path());
    std::fs::rename(
        ok.path().join("index.json"),
        ok.path().join("real-index.json"),
    )
    .unwrap();
    symlink("real-index.json", ok.path().join("index.json")).unwrap();
    assert_eq!(read_dir(ok.path()).unwrap().images.len(), 1);
    // One that leaves it is refused, and what it points at is not read.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret"),
        b"{\"schemaVersion\":2,\"manifests\":[]}",
    )
    .unwrap();
    let bad = tempfile::tempdir().unwrap();
    write(bad.path());
    std::fs::remove_file(bad.path().join("index.json")).unwrap();
    symlink(outside.path().join("secret"), bad.path().join("index.json")).unwrap();
    match read_dir(bad.path()) {
        Err(Error::OutsideInput { entry, detail }) => {
            assert_eq!(entry, "index.json");
            assert!(detail.contains("outside the directory"), "{detail}");
        }
        other => panic!("{:?}", other.map(|r| r.images.len())),
    }
    // A FIFO where a blob should be is refused, not waited on.
    let fifo = tempfile::tempdir().unwrap();
    write(fifo.path());
    let blob = std::fs::read_dir(fifo.path().join("blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&blob).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&blob)
        .status()
        .unwrap();
    assert!(made.success());
    assert!(matches!(
        read_dir(fifo.path()),
        Err(Error::OutsideInput { .. })
    ));
}

#[test]
fn a_long_name_record_claiming_gigabytes_is_refused_before_it_is_read() {
    // 3 GiB claimed, a few KiB present: the tar crate would allocate and read it whole.
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_size(3 << 30);
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend(vec![b'x'; 8192]);
    match read_bytes(tar) {
        Err(Error::AmbiguousArchive { entry, detail }) => {
            assert!(entry.ends_with("@LongLink"), "{entry}");
            assert!(detail.contains("1 MiB"), "{detail}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("read"),
    }
}
