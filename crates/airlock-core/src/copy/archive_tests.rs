//! Archives built in memory and read through the copy engine into a staging area, checking
//! what resolution
//! makes of them: which manifest is trusted, what a sparse index becomes, and the typed
//! errors for a missing or corrupt layer.

use std::io::{Cursor, Read};

use serde_json::{json, Value};

use crate::archive::Dialect;
use crate::copy::stream::{copy_archive, ArchiveInput};
use crate::copy::CopyOptions;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{self, media_type, Document};
use crate::store::{Staging, Store};
use crate::testtar::{sha, tar_of_files, TarBuilder};
use crate::transport::staged::{StagedSource, StagingDestination};
use crate::transport::{ImageSource, SourceImage};

/// What a read found: the images over the staged blobs, and the dialect.
struct ArchiveSource<'a> {
    inner: StagedSource<'a>,
    dialect: Dialect,
}

impl ArchiveSource<'_> {
    fn dialect(&self) -> Dialect {
        self.dialect
    }
    fn images(&self) -> &[SourceImage] {
        self.inner.images()
    }
    fn open_blob(&self, d: &Digest) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.open_blob(d)
    }
}

/// The only place these tests read an archive: the streaming copy into a staging area.
fn read_archive<'a>(
    archive: Vec<u8>,
    staging: &'a Staging,
    store: &'a Store,
) -> Result<ArchiveSource<'a>> {
    let dest = StagingDestination::new(staging, Some(store));
    let all = |images: Vec<SourceImage>| Ok(images);
    let report = copy_archive(
        ArchiveInput::Stream(Box::new(Cursor::new(archive))),
        Box::new(dest),
        &all,
        Some(store),
        &CopyOptions::default(),
    )?;
    Ok(ArchiveSource {
        inner: StagedSource::new(staging, Some(store), report.images),
        dialect: report.dialect,
    })
}

/// A store and a staging area in a temporary directory. Fields drop in order: the staging
/// area before the directory that holds it.
struct Env {
    staging: Staging,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let staging = store.staging().unwrap();
        Env {
            staging,
            store,
            _dir: dir,
        }
    }

    /// Read an archive holding `files` (path, bytes), in order.
    fn read(&self, files: &[(String, Vec<u8>)]) -> Result<ArchiveSource<'_>> {
        read_archive(tar_of_files(files), &self.staging, &self.store)
    }

    fn read_err(&self, files: &[(String, Vec<u8>)]) -> Error {
        match self.read(files) {
            Ok(src) => panic!("read succeeded with {} images", src.images().len()),
            Err(e) => e,
        }
    }
}

/// An image: uncompressed layers (one file each) and a config naming their diffIDs.
struct Image {
    layers: Vec<Vec<u8>>,
    config: Vec<u8>,
}

fn image(arch: &str, files: &[(&str, &[u8])]) -> Image {
    let layers: Vec<Vec<u8>> = files
        .iter()
        .map(|(name, data)| TarBuilder::new().file(name, data).bytes())
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    Image {
        config: config(arch, &diff_ids),
        layers,
    }
}

fn config(arch: &str, diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn descriptor(mt: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": mt, "digest": sha(bytes), "size": bytes.len()})
}

/// An OCI manifest for `config` listing `layers` in the order given.
fn oci_manifest(config: &[u8], layers: &[&Vec<u8>]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| descriptor(media_type::OCI_LAYER, l))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, config),
        "layers": layers,
    }))
    .unwrap()
}

fn oci_index(manifests: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests,
    }))
    .unwrap()
}

fn blob_path(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", Digest::of(bytes).hex())
}

/// A file of an OCI layout, named by its digest.
fn blob(bytes: &[u8]) -> (String, Vec<u8>) {
    (blob_path(bytes), bytes.to_vec())
}

fn meta(path: &str, doc: &Value) -> (String, Vec<u8>) {
    (path.to_string(), serde_json::to_vec(doc).unwrap())
}

fn oci_layout() -> (String, Vec<u8>) {
    meta("oci-layout", &json!({"imageLayoutVersion": "1.0.0"}))
}

fn layer_digests(img: &SourceImage) -> Vec<Digest> {
    img.platforms[0]
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .collect()
}

fn only_image<'s>(src: &'s ArchiveSource<'_>) -> &'s SourceImage {
    assert_eq!(src.images().len(), 1, "one image expected");
    &src.images()[0]
}

fn name(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// A Docker 25 hybrid archive: manifest.json in the right order, and an OCI manifest that
/// lists the layers reversed when `misordered` (what 25.0.0 wrote; 25.0.1 fixed it).
fn docker_25_hybrid(img: &Image, misordered: bool) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut order: Vec<&Vec<u8>> = img.layers.iter().collect();
    if misordered {
        order.reverse();
    }
    let m = oci_manifest(&img.config, &order);
    let mut desc = descriptor(media_type::OCI_MANIFEST, &m);
    desc["annotations"] = json!({
        spec::ANNOTATION_IMAGE_NAME: "docker.io/library/hybrid:25",
        spec::ANNOTATION_REF_NAME: "25",
    });
    let mut files = vec![oci_layout(), blob(&m), blob(&img.config)];
    files.extend(img.layers.iter().map(|l| blob(l)));
    files.push(meta(
        "index.json",
        &json!({"schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX, "manifests": [desc]}),
    ));
    let layer_paths: Vec<String> = img.layers.iter().map(|l| blob_path(l)).collect();
    files.push(meta(
        "manifest.json",
        &json!([{"Config": blob_path(&img.config), "RepoTags": ["hybrid:25"], "Layers": layer_paths}]),
    ));
    (files, m)
}

#[test]
fn docker_25_0_0_hybrid_with_misordered_oci_manifest_takes_manifest_json_order() {
    let img = image("amd64", &[("first", b"1"), ("second", b"2")]);
    let (files, wrong) = docker_25_hybrid(&img, true);
    let env = Env::new();
    let src = env.read(&files).unwrap();
    assert_eq!(src.dialect(), Dialect::Hybrid);
    let got = only_image(&src);
    let want: Vec<Digest> = img.layers.iter().map(|l| Digest::of(l)).collect();
    assert_eq!(layer_digests(got), want, "layers in manifest.json order");
    assert_eq!(got.platforms[0].diff_ids, want);
    // The misordered manifest is not passed on: a manifest is generated from manifest.json,
    // staged, and marked as generated (it has no registry digest).
    assert_ne!(got.root.digest, Digest::of(&wrong));
    assert!(got.generated);
    assert_eq!(got.id(), Digest::of(&img.config));
    assert_eq!(got.names, [name("hybrid:25")]);
    let mut staged = Vec::new();
    src.open_blob(&got.root.digest)
        .unwrap()
        .read_to_end(&mut staged)
        .unwrap();
    assert_eq!(Digest::of(&staged), got.root.digest);
    let Document::Manifest(m) = spec::parse_document(&staged, "generated").unwrap() else {
        panic!("the root is not a manifest");
    };
    let staged_layers: Vec<Digest> = m.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(staged_layers, want);
}

#[test]
fn docker_25_0_1_hybrid_keeps_the_original_oci_manifest() {
    // The control for the 25.0.0 test: when index.json agrees, its manifest (and with it
    // the registry digest) is kept rather than regenerated.
    let img = image("amd64", &[("first", b"1"), ("second", b"2")]);
    let (files, right) = docker_25_hybrid(&img, false);
    let env = Env::new();
    let src = env.read(&files).unwrap();
    assert_eq!(src.dialect(), Dialect::Hybrid);
    let got = only_image(&src);
    assert_eq!(got.root.digest, Digest::of(&right));
    assert!(!got.generated);
    assert_eq!(
        layer_digests(got),
        img.layers.iter().map(|l| Digest::of(l)).collect::<Vec<_>>()
    );
}

struct TwoPlatform {
    files: Vec<(String, Vec<u8>)>,
    amd: Image,
    amd_manifest: Vec<u8>,
    /// The two-platform index.
    nested: Vec<u8>,
}

/// An OCI-only archive whose index.json points at a two-platform index; `arm64` says how
/// much of the arm64 platform is in it: "none", "manifest" (manifest and config but not the
/// layer) or "all".
fn two_platform_oci(arm64: &str) -> TwoPlatform {
    let amd = image("amd64", &[("x", b"amd64 data")]);
    let arm = image("arm64", &[("x", b"arm64 data")]);
    let amd_m = oci_manifest(&amd.config, &amd.layers.iter().collect::<Vec<_>>());
    let arm_m = oci_manifest(&arm.config, &arm.layers.iter().collect::<Vec<_>>());
    let mut amd_d = descriptor(media_type::OCI_MANIFEST, &amd_m);
    amd_d["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut arm_d = descriptor(media_type::OCI_MANIFEST, &arm_m);
    arm_d["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let nested = oci_index(vec![amd_d, arm_d]);
    let mut top = descriptor(media_type::OCI_INDEX, &nested);
    top["annotations"] = json!({spec::ANNOTATION_IMAGE_NAME: "docker.io/library/multi:1"});
    let mut files = vec![oci_layout(), blob(&nested), blob(&amd_m), blob(&amd.config)];
    files.extend(amd.layers.iter().map(|l| blob(l)));
    match arm64 {
        "none" => {}
        "manifest" => files.extend([blob(&arm_m), blob(&arm.config)]),
        "all" => {
            files.extend([blob(&arm_m), blob(&arm.config)]);
            files.extend(arm.layers.iter().map(|l| blob(l)));
        }
        other => panic!("{other}"),
    }
    files.push(("index.json".into(), oci_index(vec![top])));
    TwoPlatform {
        files,
        amd,
        amd_manifest: amd_m,
        nested,
    }
}

#[test]
fn sparse_oci_index_stays_the_root_with_the_platform_it_has() {
    for missing in ["none", "manifest"] {
        let TwoPlatform {
            files,
            amd,
            amd_manifest,
            nested,
        } = two_platform_oci(missing);
        let env = Env::new();
        let src = env.read(&files).unwrap();
        assert_eq!(src.dialect(), Dialect::Oci);
        let got = only_image(&src);
        // The index is the root (its digest is the image's identity); only the platform
        // that is here is listed, so nothing claims the arm64 content the archive lacks.
        assert_eq!(got.root.digest, Digest::of(&nested), "arm64 has {missing}");
        assert_eq!(got.root.media_type, media_type::OCI_INDEX);
        assert_eq!(got.platforms.len(), 1);
        assert_eq!(
            got.platforms[0].descriptor.digest,
            Digest::of(&amd_manifest)
        );
        let platform = got.platforms[0].descriptor.platform.as_ref().unwrap();
        assert_eq!(platform.architecture, "amd64");
        assert_eq!(got.id(), Digest::of(&nested));
        assert_ne!(got.id(), Digest::of(&amd.config));
        assert_eq!(got.names, [name("multi:1")]);
    }
}

#[test]
fn complete_oci_index_stays_the_index() {
    // The control for the sparse case: with every blob present the index is the image.
    let all = two_platform_oci("all");
    let env = Env::new();
    let src = env.read(&all.files).unwrap();
    let got = only_image(&src);
    assert_eq!(got.root.digest, Digest::of(&all.nested));
    assert_eq!(got.id(), Digest::of(&all.nested));
    let mut archs: Vec<&str> = got
        .platforms
        .iter()
        .map(|p| {
            p.descriptor
                .platform
                .as_ref()
                .unwrap()
                .architecture
                .as_str()
        })
        .collect();
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"]);
}

/// A docker-archive as Docker <= 24 wrote it: `<hex>.json` config, `<id>/layer.tar` layers.
/// manifest.json lists `listed`; the archive holds the files of `present`.
fn docker_archive(
    config: &[u8],
    listed: &[String],
    present: &[(String, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let cfg = format!("{}.json", Digest::of(config).hex());
    let mut files = vec![(cfg.clone(), config.to_vec())];
    files.extend(present.iter().cloned());
    files.push(meta(
        "manifest.json",
        &json!([{"Config": cfg, "RepoTags": ["old:1"], "Layers": listed}]),
    ));
    files
}

/// A docker-archive holding every layer it lists.
fn full_docker_archive(config: &[u8], layers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let listed: Vec<String> = layers.iter().map(|(p, _)| p.clone()).collect();
    docker_archive(config, &listed, layers)
}

/// The legacy name of a layer file (the v1 ID is any hex; its digest is as good as any).
fn legacy_layer_path(layer: &[u8]) -> String {
    format!("{}/layer.tar", Digest::of(layer).hex())
}

#[test]
fn manifest_json_naming_an_absent_layer_file_is_a_missing_blob() {
    let img = image("amd64", &[("a", b"a"), ("b", b"b")]);
    let present = (legacy_layer_path(&img.layers[0]), img.layers[0].clone());
    let absent = legacy_layer_path(&img.layers[1]);
    // manifest.json lists both layers; the archive holds only the first.
    let files = docker_archive(
        &img.config,
        &[present.0.clone(), absent.clone()],
        &[present],
    );
    match Env::new().read_err(&files) {
        Error::MissingBlob {
            referenced_by,
            missing,
        } => {
            assert_eq!(referenced_by, "manifest.json");
            assert_eq!(missing, absent);
        }
        other => panic!("expected MissingBlob, got {other:?}"),
    }
}

#[test]
fn oci_manifest_naming_an_absent_layer_blob_is_a_missing_blob() {
    let img = image("amd64", &[("a", b"a"), ("b", b"b")]);
    let m = oci_manifest(&img.config, &img.layers.iter().collect::<Vec<_>>());
    let files = vec![
        oci_layout(),
        blob(&m),
        blob(&img.config),
        blob(&img.layers[0]),
        meta(
            "index.json",
            &json!({"schemaVersion": 2, "manifests": [descriptor(media_type::OCI_MANIFEST, &m)]}),
        ),
    ];
    match Env::new().read_err(&files) {
        Error::MissingBlob { missing, .. } => {
            assert_eq!(missing, Digest::of(&img.layers[1]).to_string());
        }
        other => panic!("expected MissingBlob, got {other:?}"),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn layer_file_not_matching_its_diff_id_is_a_diff_id_mismatch() {
    let img = image("amd64", &[("a", b"a"), ("b", b"b")]);
    let other = TarBuilder::new().file("b", b"tampered").bytes();
    // Plain, and gzip: the diffID is of the decompressed bytes, so "actual" is the same.
    for compress in [false, true] {
        let bad = if compress {
            gzip(&other)
        } else {
            other.clone()
        };
        let bad_path = legacy_layer_path(&bad);
        let files = full_docker_archive(
            &img.config,
            &[
                (legacy_layer_path(&img.layers[0]), img.layers[0].clone()),
                (bad_path.clone(), bad),
            ],
        );
        match Env::new().read_err(&files) {
            Error::DiffIdMismatch {
                index,
                path_in_archive,
                expected,
                actual,
            } => {
                assert_eq!(index, 1, "gzip: {compress}");
                assert_eq!(path_in_archive, bad_path);
                assert_eq!(expected, Digest::of(&img.layers[1]));
                assert_eq!(actual, Digest::of(&other), "gzip: {compress}");
            }
            other => panic!("expected DiffIdMismatch, got {other:?}"),
        }
    }
}

#[test]
fn oci_layer_blob_not_matching_its_diff_id_is_a_diff_id_mismatch() {
    // The blob matches the manifest's digest (so it stages fine) but not the config.
    let img = image("amd64", &[("a", b"a"), ("b", b"b")]);
    let other = TarBuilder::new().file("b", b"tampered").bytes();
    let m = oci_manifest(&img.config, &[&img.layers[0], &other]);
    let files = vec![
        oci_layout(),
        blob(&m),
        blob(&img.config),
        blob(&img.layers[0]),
        blob(&other),
        meta(
            "index.json",
            &json!({"schemaVersion": 2, "manifests": [descriptor(media_type::OCI_MANIFEST, &m)]}),
        ),
    ];
    match Env::new().read_err(&files) {
        Error::DiffIdMismatch {
            index,
            expected,
            actual,
            ..
        } => {
            assert_eq!(index, 1);
            assert_eq!(expected, Digest::of(&img.layers[1]));
            assert_eq!(actual, Digest::of(&other));
        }
        other => panic!("expected DiffIdMismatch, got {other:?}"),
    }
}

#[test]
fn intact_docker_archive_reads() {
    // The control for the error tests: the same archive with the right layers is accepted,
    // so the errors above come from what was broken, not from how the archive was built.
    let img = image("amd64", &[("a", b"a"), ("b", b"b")]);
    let layers: Vec<(String, Vec<u8>)> = img
        .layers
        .iter()
        .map(|l| (legacy_layer_path(l), l.clone()))
        .collect();
    let env = Env::new();
    let src = env
        .read(&full_docker_archive(&img.config, &layers))
        .unwrap();
    assert_eq!(src.dialect(), Dialect::DockerArchive);
    let got = only_image(&src);
    assert_eq!(got.id(), Digest::of(&img.config));
    assert_eq!(got.names, [name("old:1")]);
    assert_eq!(
        layer_digests(got),
        img.layers.iter().map(|l| Digest::of(l)).collect::<Vec<_>>()
    );
}
