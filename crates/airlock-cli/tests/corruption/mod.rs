//! Damaged, truncated and mistaken inputs. Every one must fail with exit code 1, print one
//! sentence naming the problem (with the path in the archive and both digests when the
//! error knows them) and a hint, and leave the store byte-for-byte as it was.

mod helpers;

use std::fs::{self};

use crate::util::{fixtures, scratch, sha256, Airlock};

use helpers::*;

// ------------------------------------------------------------------ the rewriting itself

/// Control: an unmodified rewrite of each fixture the tests mutate still loads, so every
/// failure below comes from the one change a test makes, not from the rewriting.
#[test]
fn unmodified_rewrites_still_load() {
    let dir = scratch();
    for name in [
        "skopeo-docker-archive.tar",
        "podman-docker-archive.tar",
        "skopeo-oci-archive.tar",
    ] {
        let out = dir.path().join(name);
        rewrite_tar(&fixtures().join(name), &out, |_| true);
        let airlock = Airlock::new(&dir.path().join(format!("store-{name}")));
        let loaded = airlock.ok(&["load", "-i", out.to_str().unwrap()]);
        assert!(
            loaded.contains("Loaded image: localhost/airlock-test/app:1"),
            "{name}: {loaded}"
        );
    }
    let tiny = dir.path().join("tiny.tar");
    tiny_archive(&tiny);
    let airlock = Airlock::new(&dir.path().join("store-tiny"));
    let loaded = airlock.ok(&["load", "-i", tiny.to_str().unwrap()]);
    assert!(
        loaded.contains("Loaded image: localhost/airlock-test/tiny:1"),
        "{loaded}"
    );
}

// ------------------------------------------------------------------ 1. save/export mix-up

const SNAPSHOT: &str =
    "this is a filesystem snapshot (a flat tar like `docker export` writes, first entry 'bin/'), not an image archive";

fn assert_snapshot(f: &Failure) {
    assert_eq!(f.sentence, SNAPSHOT);
    assert!(
        f.hint.contains("airlock import"),
        "the hint should point to `airlock import`: {}",
        f.hint
    );
}

#[test]
fn export_tar_given_to_load_is_a_filesystem_snapshot() {
    let s = Loaded::with_fixture("podman-docker-archive.tar");
    assert_snapshot(&s.load_fails(&fixtures().join("export-rootfs.tar")));
}

#[test]
fn export_tar_through_a_pipe_fails_before_the_end_of_input() {
    let s = Loaded::with_fixture("podman-docker-archive.tar");
    let export = fs::read(fixtures().join("export-rootfs.tar")).unwrap();
    // 2 MiB of a 10 MiB export, and the pipe stays open: airlock must judge from the first
    // headers instead of reading to the end.
    assert!(export.len() > 4 << 20);
    let f = s.load_from_open_pipe_fails(export[..2 << 20].to_vec());
    assert_snapshot(&f);
}

#[test]
fn gzipped_export_tar_is_a_filesystem_snapshot() {
    let s = Loaded::with_fixture("podman-docker-archive.tar");
    let gz = s.path("export-rootfs.tar.gz");
    fs::write(
        &gz,
        gzip(&fs::read(fixtures().join("export-rootfs.tar")).unwrap()),
    )
    .unwrap();
    assert_snapshot(&s.load_fails(&gz));
}

// ------------------------------------------------------------------ 2. not a tar

#[test]
fn inputs_that_are_not_tars_say_what_they_look_like() {
    let s = Loaded::with_fixture("podman-docker-archive.tar");
    // Deterministic noise (xorshift), first byte chosen to match no compression magic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    noise[0] = 0xa5;
    let noise_head: Vec<String> = noise[..8].iter().map(|b| format!("{b:02x}")).collect();
    let podman = fs::read(fixtures().join("podman-docker-archive.tar")).unwrap();
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("empty.tar", Vec::new(), "an empty file".into()),
        (
            "page.tar",
            b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body><h1>Not Found</h1></body></html>\n".to_vec(),
            "an HTML page (a download that returned an error page?)".into(),
        ),
        (
            "manifest.tar",
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_vec(),
            "JSON text (a single manifest or config, not an archive)".into(),
        ),
        (
            "noise.tar",
            noise,
            format!("binary data starting {}", noise_head.join(" ")),
        ),
        (
            "cut-100.tar",
            podman[..100].to_vec(),
            "100 bytes, too short for a tar (truncated?)".into(),
        ),
    ];
    for (name, bytes, looks_like) in cases {
        let p = s.path(name);
        fs::write(&p, bytes).unwrap();
        let f = s.load_fails(&p);
        assert_eq!(
            f.sentence,
            format!("the input is not a tar archive: it looks like {looks_like}"),
            "{name}"
        );
        assert!(f.hint.contains("docker save"), "{name}: {}", f.hint);
    }
}

// ------------------------------------------------------------------ 3. docker-archive layer

#[test]
fn flipped_byte_in_a_docker_archive_layer_is_a_diff_id_mismatch() {
    let s = Loaded::with_fixture("podman-multi.tar");
    let src = fixtures().join("skopeo-docker-archive.tar");
    let members = read_members(&src);
    let big = largest(&members, |p| p.ends_with(".tar") && !p.contains('/'));
    let name = big.path.clone();
    let index = docker_manifest(&members)[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .position(|l| l == name.as_str())
        .unwrap();
    let mut damaged = big.data.clone();
    flip_middle(&mut damaged);
    let actual = sha256(&damaged);
    let out = s.path("layer-flip.tar");
    rewrite_tar(&src, &out, |m| {
        if m.path == name {
            m.data = damaged.clone();
        }
        true
    });
    let f = s.load_fails(&out);
    assert_eq!(
        f.sentence,
        format!(
            "layer {index} ({name}) has diffID {actual} but the image config lists sha256:{}",
            hex_of(&name)
        )
    );
    assert!(f.hint.contains(HINT_DAMAGED), "{}", f.hint);
}

#[test]
fn a_docker_archive_config_edited_after_it_was_named_loads_as_docker_loads_it() {
    // go-containerregistry keeps such an archive (a bazel-built config edited by hand):
    // docker takes the image ID from the content, and so does airlock, saying so. (An OCI
    // blob's name is a content address and is checked: see the OCI config flip below.)
    let dir = scratch();
    let src = fixtures().join("skopeo-docker-archive.tar");
    let members = read_members(&src);
    let config = docker_manifest(&members)[0]["Config"]
        .as_str()
        .unwrap()
        .to_string();
    let mut actual = String::new();
    let out = dir.path().join("config-edited.tar");
    rewrite_tar(&src, &out, |m| {
        if m.path == config {
            let mut v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
            v["author"] = serde_json::json!("edited after it was named");
            m.data = serde_json::to_vec(&v).unwrap();
            actual = sha256(&m.data);
        }
        true
    });
    let a = Airlock::new(&dir.path().join("store"));
    let loaded = a.run(&["load", "-i", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&loaded.stderr);
    assert!(loaded.status.success(), "{stderr}");
    assert!(!stderr.contains("damaged"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: manifest.json's config {config} is named for sha256:{}",
            hex_of(&config)
        )) && stderr.contains(&format!("the image ID is {actual}")),
        "{stderr}"
    );
    let listed = a.ok(&["images", "-q"]);
    assert_eq!(listed.trim(), &actual[7..19]);
    assert_eq!(a.inspect(&actual)["Author"], "edited after it was named");
}

// ------------------------------------------------------------------ 4. OCI archive blobs

/// Flip a byte in the middle of one blob of skopeo's OCI archive and expect the digest
/// mismatch that names it.
fn oci_blob_flip(s: &Loaded, blob: &str, label: &str) {
    let src = fixtures().join("skopeo-oci-archive.tar");
    let mut actual = None;
    let out = s.path(&format!("oci-{label}-flip.tar"));
    rewrite_tar(&src, &out, |m| {
        if m.path == blob {
            flip_middle(&mut m.data);
            actual = Some(sha256(&m.data));
        }
        true
    });
    let actual = actual.unwrap_or_else(|| panic!("{blob} not in the archive"));
    let f = s.load_fails(&out);
    assert_eq!(
        f.sentence,
        format!(
            "blob {blob}: expected sha256:{}, got {actual}",
            hex_of(blob)
        ),
        "{label}"
    );
    assert!(f.hint.contains(HINT_DAMAGED), "{label}: {}", f.hint);
}

/// The OCI archive's image manifest, config and layers, by blob path.
fn oci_parts() -> (String, String, Vec<(String, String)>) {
    let members = read_members(&fixtures().join("skopeo-oci-archive.tar"));
    let data = |p: &str| &members.iter().find(|m| m.path == p).unwrap().data;
    let index: serde_json::Value = serde_json::from_slice(data("index.json")).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest_path = format!("blobs/sha256/{}", &digest[7..]);
    let manifest: serde_json::Value = serde_json::from_slice(data(&manifest_path)).unwrap();
    let config_path = format!(
        "blobs/sha256/{}",
        &manifest["config"]["digest"].as_str().unwrap()[7..]
    );
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                format!("blobs/sha256/{}", &l["digest"].as_str().unwrap()[7..]),
                l["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (manifest_path, config_path, layers)
}

#[test]
fn flipped_byte_in_an_oci_archive_gzip_layer_is_a_digest_mismatch() {
    // The store holds the same image from a docker-archive: uncompressed layers, so none
    // of the OCI archive's gzip blobs.
    let s = Loaded::with_fixture("podman-multi.tar");
    let (_, _, layers) = oci_parts();
    let members = read_members(&fixtures().join("skopeo-oci-archive.tar"));
    let big = largest(&members, |p| layers.iter().any(|(l, _)| l == p));
    let media_type = &layers.iter().find(|(l, _)| *l == big.path).unwrap().1;
    assert!(media_type.ends_with("gzip"), "{media_type}");
    assert_eq!(&big.data[..2], b"\x1f\x8b");
    oci_blob_flip(&s, &big.path, "gzip-layer");
}

#[test]
fn flipped_byte_in_an_oci_archive_manifest_is_a_digest_mismatch() {
    let s = Loaded::with_fixture("podman-multi.tar");
    let (manifest, _, _) = oci_parts();
    oci_blob_flip(&s, &manifest, "manifest");
}

#[test]
fn flipped_byte_in_an_oci_archive_config_is_a_digest_mismatch() {
    // Every fixture carries this config, and a blob the store already holds is skipped
    // (rightly: the stored copy is verified), so this store holds an unrelated image.
    let dir = scratch();
    let tiny = dir.path().join("tiny.tar");
    tiny_archive(&tiny);
    let s = Loaded::with_archive(&tiny);
    let (_, config, _) = oci_parts();
    oci_blob_flip(&s, &config, "config");
}

// ------------------------------------------------------------------ 5. truncated archive

#[test]
fn archive_cut_inside_the_big_layer_is_truncated() {
    let s = Loaded::with_fixture("skopeo-docker-archive.tar");
    let src = fixtures().join("podman-docker-archive.tar");
    let members = read_members(&src);
    let big = largest(&members, |p| p.ends_with(".tar") && !p.contains('/'))
        .path
        .clone();
    let (start, size) = member_span(&src, &big);
    let kept = size / 2 + 7; // not on a block boundary
    let out = s.path("cut-in-layer.tar");
    truncate_copy(&src, &out, start + kept);
    let f = s.load_fails(&out);
    assert_eq!(
        f.sentence,
        format!(
            "the archive is truncated: the stream ended inside {big} after {kept} of {size} bytes"
        )
    );
    assert!(f.hint.contains(HINT_DAMAGED), "{}", f.hint);
}

#[test]
fn archive_cut_between_files_before_manifest_json_is_truncated() {
    let s = Loaded::with_fixture("skopeo-docker-archive.tar");
    let src = fixtures().join("podman-docker-archive.tar");
    // The cut falls on the header of manifest.json: every earlier file is whole.
    let (data_start, _) = member_span(&src, "manifest.json");
    let out = s.path("cut-before-manifest.tar");
    truncate_copy(&src, &out, data_start - 512);
    let f = s.load_fails(&out);
    assert!(
        f.sentence
            .starts_with("the archive is truncated: the stream ended after ")
            && f.sentence.contains("without the end-of-archive marker"),
        "{}",
        f.sentence
    );
    assert!(f.hint.contains(HINT_DAMAGED), "{}", f.hint);
}

// ------------------------------------------------------------------ 6. missing blob

#[test]
fn manifest_naming_a_missing_layer_file() {
    let s = Loaded::with_fixture("podman-multi.tar");
    let src = fixtures().join("skopeo-docker-archive.tar");
    let members = read_members(&src);
    let layer = docker_manifest(&members)[0]["Layers"][1]
        .as_str()
        .unwrap()
        .to_string();
    let out = s.path("missing-layer.tar");
    rewrite_tar(&src, &out, |m| m.path != layer);
    let f = s.load_fails(&out);
    assert_eq!(
        f.sentence,
        format!("manifest.json names {layer}, which is not in the archive")
    );
    assert!(f.hint.contains(HINT_INCOMPLETE), "{}", f.hint);
}

#[test]
fn manifest_naming_a_missing_config_file() {
    let s = Loaded::with_fixture("podman-multi.tar");
    let src = fixtures().join("skopeo-docker-archive.tar");
    let members = read_members(&src);
    let config = docker_manifest(&members)[0]["Config"]
        .as_str()
        .unwrap()
        .to_string();
    let out = s.path("missing-config.tar");
    rewrite_tar(&src, &out, |m| m.path != config);
    let f = s.load_fails(&out);
    assert_eq!(
        f.sentence,
        format!("manifest.json entry 0 names {config}, which is not in the archive")
    );
    assert!(f.hint.contains(HINT_INCOMPLETE), "{}", f.hint);
}

// ------------------------------------------------------------------ 7. diffIDs

#[test]
fn config_listing_other_diff_ids_is_a_diff_id_mismatch() {
    let s = Loaded::with_fixture("podman-multi.tar");
    let src = fixtures().join("skopeo-docker-archive.tar");
    let members = read_members(&src);
    let manifest = docker_manifest(&members);
    let old_config = manifest[0]["Config"].as_str().unwrap().to_string();
    let layer1 = manifest[0]["Layers"][1].as_str().unwrap().to_string();
    let bogus = sha256(b"not the layer");
    // A consistent config (its name is its digest), listing a diffID no layer has.
    let mut config: serde_json::Value =
        serde_json::from_slice(&members.iter().find(|m| m.path == old_config).unwrap().data)
            .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][1],
        format!("sha256:{}", hex_of(&layer1))
    );
    config["rootfs"]["diff_ids"][1] = bogus.clone().into();
    let config = serde_json::to_vec(&config).unwrap();
    let new_config = format!("{}.json", &sha256(&config)[7..]);
    let mut manifest = manifest;
    manifest[0]["Config"] = new_config.clone().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let out = s.path("diffid.tar");
    rewrite_tar(&src, &out, |m| {
        if m.path == old_config {
            m.path = new_config.clone();
            m.data = config.clone();
        } else if m.path == "manifest.json" {
            m.data = manifest.clone();
        }
        true
    });
    let f = s.load_fails(&out);
    assert_eq!(
        f.sentence,
        format!(
            "layer 1 ({layer1}) has diffID sha256:{} but the image config lists {bogus}",
            hex_of(&layer1)
        )
    );
    assert!(f.hint.contains(HINT_DAMAGED), "{}", f.hint);
}

// ------------------------------------------------------------------ 8. truncated gzip

/// The largest layer of the docker-archive fixtures (random data: it fills the middle of
/// every compressed copy, so cutting or damaging the middle lands in it).
fn big_docker_layer() -> String {
    let members = read_members(&fixtures().join("skopeo-docker-archive.tar"));
    largest(&members, |p| p.ends_with(".tar") && !p.contains('/'))
        .path
        .clone()
}

const CODECS: [(&str, &str); 4] = [
    ("gz", "gzip"),
    ("zst", "zstd"),
    ("xz", "xz"),
    ("bz2", "bzip2"),
];

#[test]
fn truncated_compressed_archive() {
    let s = Loaded::with_fixture("podman-docker-archive.tar");
    let big = big_docker_layer();
    for (ext, _) in CODECS {
        let src = fixtures().join(format!("skopeo-docker-archive.tar.{ext}"));
        let len = fs::metadata(&src).unwrap().len();
        let out = s.path(&format!("cut.tar.{ext}"));
        truncate_copy(&src, &out, len / 2);
        let f = s.load_fails(&out);
        assert_eq!(
            f.sentence,
            format!("the archive is truncated: the stream ended inside {big}"),
            "{ext}"
        );
        assert!(f.hint.contains(HINT_DAMAGED), "{ext}: {}", f.hint);
    }
}

#[test]
fn flipped_byte_in_a_compressed_archive() {
    let s = Loaded::with_fixture("podman-docker-archive.tar");
    for (ext, codec) in CODECS {
        let mut bytes =
            fs::read(fixtures().join(format!("skopeo-docker-archive.tar.{ext}"))).unwrap();
        flip_middle(&mut bytes);
        let out = s.path(&format!("flip.tar.{ext}"));
        fs::write(&out, bytes).unwrap();
        let f = s.load_fails(&out);
        assert!(
            f.sentence
                .starts_with(&format!("{codec} stream is damaged: read ")),
            "{ext}: {}",
            f.sentence
        );
        assert!(f.hint.contains(HINT_DAMAGED), "{ext}: {}", f.hint);
    }
}
