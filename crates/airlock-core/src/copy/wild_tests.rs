//! Archives as other tools really write them, built in memory: Go's `null` lists, jib's
//! lower-case `manifest.json` keys, an OCI layout with a README beside it, and the line
//! between such a layout and a root filesystem.

use std::io::Cursor;
use std::path::Path;

use serde_json::{json, Value};

use crate::copy::stream::{copy_archive, ArchiveInput, StreamReport};
use crate::copy::CopyOptions;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::media_type;
use crate::store::Store;
use crate::testtar::{tar_of_files, TarBuilder};
use crate::transport::discard::DiscardDestination;
use crate::transport::SourceImage;

fn read(input: ArchiveInput) -> Result<StreamReport> {
    let all = |images: Vec<SourceImage>| Ok(images);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    copy_archive(
        input,
        Box::new(DiscardDestination::default()),
        &all,
        Some(&store),
        &CopyOptions::default(),
    )
}

fn read_tar(files: &[(String, Vec<u8>)]) -> Result<StreamReport> {
    read(ArchiveInput::Stream(Box::new(Cursor::new(tar_of_files(
        files,
    )))))
}

fn sha(b: &[u8]) -> String {
    Digest::of(b).to_string()
}

fn json_file(path: &str, v: &Value) -> (String, Vec<u8>) {
    (path.to_string(), serde_json::to_vec(v).unwrap())
}

/// A one-layer image: (config, layer).
fn image() -> (Vec<u8>, Vec<u8>) {
    let layer = TarBuilder::new().file("hello", b"hello").bytes();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]},
    }))
    .unwrap();
    (config, layer)
}

/// The files of an OCI layout holding the image under `name`.
fn oci_layout_files(name: &str) -> Vec<(String, Vec<u8>)> {
    oci_layout_annotated(json!({"org.opencontainers.image.ref.name": name}))
}

/// The files of an OCI layout whose index descriptor carries `annotations`.
fn oci_layout_annotated(annotations: Value) -> Vec<(String, Vec<u8>)> {
    let (config, layer) = image();
    oci_layout_of(&config, &layer, annotations)
}

/// The files of an OCI layout of one image made of `config` and `layer` (the layer last).
fn oci_layout_of(config: &[u8], layer: &[u8], annotations: Value) -> Vec<(String, Vec<u8>)> {
    let d = |mt: &str, b: &[u8]| json!({"mediaType": mt, "digest": sha(b), "size": b.len()});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": d(media_type::OCI_CONFIG, config),
        "layers": [d(media_type::OCI_LAYER, layer)],
    }))
    .unwrap();
    let mut root = d(media_type::OCI_MANIFEST, &manifest);
    root["annotations"] = annotations;
    let blob = |b: &[u8]| (format!("blobs/sha256/{}", Digest::of(b).hex()), b.to_vec());
    vec![
        json_file("oci-layout", &json!({"imageLayoutVersion": "1.0.0"})),
        json_file(
            "index.json",
            &json!({"schemaVersion": 2, "manifests": [root]}),
        ),
        blob(&manifest),
        blob(config),
        blob(layer),
    ]
}

#[test]
fn go_null_lists_and_jib_keys_read_as_docker_reads_them() {
    let (config, layer) = image();
    let cfg = format!("{}.json", Digest::of(&config).hex());
    let lp = format!("{}.tar", Digest::of(&layer).hex());
    // jib: lower-case keys; Go: `null` for an empty list.
    let files = vec![
        (cfg.clone(), config.clone()),
        (lp.clone(), layer.clone()),
        json_file(
            "manifest.json",
            &json!([{"config": cfg, "repoTags": ["jib/app:1"], "layers": [lp]}]),
        ),
        json_file(
            "index.json",
            &json!({"schemaVersion": 2, "manifests": null}),
        ),
    ];
    let report = read_tar(&files).unwrap();
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].names[0].to_string(), "docker.io/jib/app:1");
    assert_eq!(report.images[0].id(), Digest::of(&config));

    // A zero-layer image (BuildKit writes `"Layers": null`) and no tags at all.
    let empty = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    let ecfg = format!("{}.json", Digest::of(&empty).hex());
    let files = vec![
        (ecfg.clone(), empty.clone()),
        json_file(
            "manifest.json",
            &json!([{"Config": ecfg, "RepoTags": null, "Layers": null}]),
        ),
    ];
    let report = read_tar(&files).unwrap();
    assert!(report.images[0].names.is_empty());
    assert!(report.images[0].platforms[0].manifest.layers.is_empty());

    // BuildKit's config of such an image says `"diff_ids": null`.
    let null_ids = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": null},
    }))
    .unwrap();
    let ncfg = format!("{}.json", Digest::of(&null_ids).hex());
    let files = vec![
        (ncfg.clone(), null_ids),
        json_file("manifest.json", &json!([{"Config": ncfg, "Layers": []}])),
    ];
    assert_eq!(read_tar(&files).unwrap().images.len(), 1);

    // A manifest.json that is `null` lists no image: said so, not as a parse error.
    match read_tar(&[json_file("manifest.json", &Value::Null)]) {
        Err(Error::NoImage { detail }) => assert!(detail.contains("lists no image"), "{detail}"),
        other => panic!("{:?}", other.map(|r| r.images.len())),
    }
}

#[test]
fn an_oci_layout_with_other_files_beside_it_reads() {
    // A README and a file whose name sorts before `blobs/`, both first in the tar.
    let mut files = vec![
        ("README.md".to_string(), b"# test data\n".to_vec()),
        ("0b1f-notes.txt".to_string(), b"notes".to_vec()),
    ];
    files.extend(oci_layout_files("app:1"));
    let report = read_tar(&files).unwrap();
    assert_eq!(report.images.len(), 1);

    // The same as a directory.
    let dir = tempfile::tempdir().unwrap();
    for (path, data) in &files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let report = read(ArchiveInput::Dir(dir.path().to_path_buf())).unwrap();
    assert_eq!(report.images.len(), 1);
}

#[test]
fn a_root_filesystem_is_still_refused_by_name() {
    // On its first path when that is a root filesystem's (the stream is not read on).
    let mut files = vec![("etc/passwd".to_string(), b"root:x:0:0\n".to_vec())];
    files.extend(oci_layout_files("app:1"));
    match read_tar(&files) {
        Err(Error::FilesystemSnapshot { first_entry }) => assert_eq!(first_entry, "etc/passwd"),
        other => panic!("{:?}", other.map(|r| r.images.len())),
    }
    // Names that are neither: judged at the end, and not called a root filesystem.
    let files = vec![("app/main.py".to_string(), b"print(1)\n".to_vec())];
    match read_tar(&files) {
        Err(Error::NoImage { detail }) => assert!(
            detail.contains("no manifest.json, index.json or blobs/")
                && detail.contains("'app/main.py'"),
            "{detail}"
        ),
        other => panic!("{:?}", other.map(|r| r.images.len())),
    }
    // A registry's storage tree is told apart.
    let files = vec![(
        "docker/registry/v2/repositories/x/_layers/link".to_string(),
        b"sha256:0".to_vec(),
    )];
    match read_tar(&files) {
        Err(Error::NoImage { detail }) => {
            assert!(detail.contains("registry's storage"), "{detail}")
        }
        other => panic!("{:?}", other.map(|r| r.images.len())),
    }
    // A directory holding a root filesystem.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
    std::fs::write(dir.path().join("usr/bin/sh"), b"#!").unwrap();
    assert!(matches!(
        read(ArchiveInput::Dir(Path::new(dir.path()).to_path_buf())),
        Err(Error::FilesystemSnapshot { .. })
    ));
}

#[test]
fn names_come_from_every_annotation_writers_use() {
    let name_of = |annotations: Value| -> (Vec<String>, Vec<String>) {
        let report = read_tar(&oci_layout_annotated(annotations)).unwrap();
        let names = report.images[0]
            .names
            .iter()
            .map(|n| n.to_string())
            .collect();
        (names, report.notes)
    };
    // containerd's full name wins over a bare tag.
    let (names, _) = name_of(json!({
        "io.containerd.image.name": "registry.example/team/app:1.4",
        "org.opencontainers.image.ref.name": "1.4",
    }));
    assert_eq!(names, ["registry.example/team/app:1.4"]);
    // A tag-only ref.name takes its repository from base.name.
    let (names, _) = name_of(json!({
        "org.opencontainers.image.ref.name": "1.4",
        "org.opencontainers.image.base.name": "registry.example/team/app",
    }));
    assert_eq!(names, ["registry.example/team/app:1.4"]);
    // An invalid name is kept untagged, and the user is told.
    let (names, notes) = name_of(json!({"org.opencontainers.image.ref.name": "Team/App:1"}));
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("Team/App:1") && notes[0].contains("untagged"),
        "{notes:?}"
    );
}

#[test]
fn a_config_without_rootfs_is_checked_by_digest_and_said() {
    // oras writes image manifests whose config is only `{"architecture":..,"os":..}`.
    let layer = TarBuilder::new().file("hello", b"hello").bytes();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux"})).unwrap();
    let mut files = oci_layout_of(&config, &layer, json!({}));
    let report = read_tar(&files).unwrap();
    assert_eq!(report.images.len(), 1);
    assert!(report.images[0].platforms[0].diff_ids.is_empty());
    assert!(
        report.notes.iter().any(|n| n.contains("has no rootfs")),
        "{:?}",
        report.notes
    );
    // Its layers are still required.
    files.pop();
    assert!(matches!(read_tar(&files), Err(Error::MissingBlob { .. })));
}

#[test]
fn a_descriptor_with_the_wrong_size_is_refused_as_written_so() {
    // oc-mirror keeps a layout whose index gives a manifest two bytes more than it has;
    // containerd and registries refuse such a descriptor, so a copy of it would fail later.
    let mut files = oci_layout_files("app:1");
    let index: Value = serde_json::from_slice(&files[1].1).unwrap();
    let mut index = index;
    let size = index["manifests"][0]["size"].as_u64().unwrap();
    index["manifests"][0]["size"] = json!(size + 2);
    files[1] = json_file("index.json", &index);
    match read_tar(&files) {
        Err(Error::BadMetadata {
            path_in_archive,
            detail,
            ..
        }) => {
            assert_eq!(path_in_archive, "index.json");
            assert!(
                detail.contains(&format!("a size of {} bytes", size + 2))
                    && detail.contains("digest matches"),
                "{detail}"
            );
        }
        other => panic!("{:?}", other.map(|r| r.images.len())),
    }
}
