//! Every archive dialect the real tools write loads, with the digests and configs those
//! tools report.

use crate::util::{expected, fixtures, scratch, tree_hash, Airlock};

/// Load one fixture into a fresh store and compare every image with expected.json.
fn check_fixture(name: &str) {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    let input = fixtures().join(name);
    let out = airlock.ok(&["load", "-i", input.to_str().unwrap()]);
    let images = expected()[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} missing from expected.json"));
    assert!(!images.is_empty());
    for img in images {
        let tag = img["names"][0].as_str().unwrap();
        assert!(
            out.contains("Loaded image: "),
            "{name}: no 'Loaded image' line in {out}"
        );
        let got = airlock.inspect(tag);
        assert_eq!(
            got["Id"], img["config_digest"],
            "{name} {tag}: image ID (config digest)"
        );
        assert_eq!(
            got["RootFS"]["Layers"], img["diff_ids"],
            "{name} {tag}: diffIDs"
        );
        if let Some(md) = img["manifest_digest"].as_str() {
            // OCI archives keep the original manifest: its digest survives the trip.
            assert_eq!(
                got["ManifestDigest"].as_str(),
                Some(md),
                "{name} {tag}: manifest digest"
            );
            let layers: Vec<&str> = got["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["Digest"].as_str().unwrap())
                .collect();
            let want: Vec<&str> = img["layer_digests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            assert_eq!(layers, want, "{name} {tag}: layer blob digests");
        }
    }
    // Loading the same archive again is a no-op that succeeds.
    let before = tree_hash(&airlock.store);
    airlock.ok(&["load", "-q", "-i", input.to_str().unwrap()]);
    assert_eq!(
        before,
        tree_hash(&airlock.store),
        "{name}: second load changed the store"
    );
}

#[test]
fn skopeo_docker_archive() {
    check_fixture("skopeo-docker-archive.tar");
}

#[test]
fn skopeo_docker_archive_gzip() {
    check_fixture("skopeo-docker-archive.tar.gz");
}

#[test]
fn skopeo_docker_archive_zstd() {
    check_fixture("skopeo-docker-archive.tar.zst");
}

#[test]
fn skopeo_docker_archive_xz() {
    check_fixture("skopeo-docker-archive.tar.xz");
}

#[test]
fn skopeo_docker_archive_bzip2() {
    check_fixture("skopeo-docker-archive.tar.bz2");
}

#[test]
fn skopeo_oci_archive() {
    check_fixture("skopeo-oci-archive.tar");
}

#[test]
fn skopeo_oci_dir() {
    check_fixture("skopeo-oci-dir");
}

#[test]
fn skopeo_oci_zstd_layers_dir() {
    check_fixture("skopeo-oci-zstd-dir");
}

#[test]
fn skopeo_oci_zstd_layers_archive() {
    check_fixture("skopeo-oci-zstd-archive.tar");
}

#[test]
fn podman_docker_archive() {
    check_fixture("podman-docker-archive.tar");
}

#[test]
fn podman_multi_image_archive_shares_the_base() {
    check_fixture("podman-multi.tar");
}

#[test]
fn podman_oci_archive() {
    check_fixture("podman-oci-archive.tar");
}

#[test]
fn podman_oci_dir() {
    check_fixture("podman-oci-dir");
}

#[test]
fn umoci_layout_with_three_images() {
    check_fixture("umoci-layout");
}

#[test]
fn archive_from_stdin() {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    let input = std::fs::File::open(fixtures().join("podman-docker-archive.tar")).unwrap();
    let out = airlock.cmd().arg("load").stdin(input).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Loaded image: localhost/airlock-test/app:1"
    );
}
