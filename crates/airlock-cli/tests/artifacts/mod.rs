//! OCI artifacts and referrers (signatures, SBOMs, charts, attestations) as first-class
//! content: they load beside images, are listed and inspected, travel with the image they
//! refer to, and an archive holding them still loads in docker, podman and containerd.

pub(crate) mod gallery;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::util::{require_tool, scratch, sha256, tree_hash, Airlock, Podman};
use gallery::*;

fn json_of(out: &str) -> Vec<Value> {
    serde_json::from_str(out).unwrap()
}

/// (name, digest) of everything in a store: images by root digest, artifacts by theirs.
fn names_on_digests(a: &Airlock) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for i in json_of(&a.ok(&["images", "--format", "json"])) {
        let name = format!(
            "{}:{}",
            i["Repository"].as_str().unwrap(),
            i["Tag"].as_str().unwrap()
        );
        out.insert((name, i["Digest"].as_str().unwrap().to_string()));
    }
    for i in json_of(&a.ok(&["artifacts", "--format", "json"])) {
        out.insert((
            i["Name"].as_str().unwrap().to_string(),
            i["Digest"].as_str().unwrap().to_string(),
        ));
    }
    out
}

fn artifact<'a>(list: &'a [Value], digest: &str) -> &'a Value {
    list.iter()
        .find(|a| a["Digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} not in artifacts: {list:?}"))
}

/// A store with the gallery loaded; returns the gallery and the layout's path too.
fn loaded() -> (tempfile::TempDir, Gallery, Airlock) {
    let dir = scratch();
    let g = Gallery::new();
    g.write(&dir.path().join("layout"));
    let a = Airlock::new(&dir.path().join("store"));
    let out = a.ok(&["load", "-i", dir.path().join("layout").to_str().unwrap()]);
    for name in [APP, MULTI, CHART] {
        assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    }
    (dir, g, a)
}

#[test]
fn artifacts_load_beside_images_and_are_listed_and_inspected_as_what_they_are() {
    let (dir, g, a) = loaded();
    // `images` shows the images, not the signature, the SBOM or the chart.
    let images = a.ok(&["images"]);
    assert!(
        images.contains("registry.example/team/app")
            && images.contains("registry.example/team/multi"),
        "{images}"
    );
    assert!(
        !images.contains("charts/demo") && !images.contains(".sig"),
        "{images}"
    );

    let list = json_of(&a.ok(&["artifacts", "--format", "json"]));
    let sbom = artifact(&list, &g.sbom);
    assert_eq!(sbom["ArtifactType"], SPDX);
    assert_eq!(sbom["RefersTo"], "registry.example/team/app:1");
    let sig = artifact(&list, &g.signature);
    assert_eq!(sig["ArtifactType"], COSIGN);
    assert_eq!(
        sig["RefersTo"], "registry.example/team/app:1",
        "cosign's tag names the subject"
    );
    assert_eq!(artifact(&list, &g.chart)["ArtifactType"], HELM);
    let att = artifact(&list, &g.attestation);
    assert_eq!(att["ArtifactType"], "application/vnd.in-toto+json");
    assert!(att["Name"].as_str().unwrap().contains("multi"), "{att}");

    // inspect says what an artifact is and what it refers to; an image lists its referrers.
    let chart = a.inspect(CHART);
    assert_eq!(chart["ArtifactType"], HELM);
    assert_eq!(chart["ManifestDigest"], g.chart.as_str());
    let sbom = a.inspect(&g.sbom);
    assert_eq!(sbom["Subject"], g.app_manifest.as_str());
    assert_eq!(sbom["Blobs"][0]["MediaType"], SPDX);
    let app = a.inspect(APP);
    assert_eq!(app["Id"], g.app_config.as_str());
    let referrers: Vec<&str> = app["Referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        referrers.contains(&g.sbom.as_str()) && referrers.contains(&g.signature.as_str()),
        "{referrers:?}"
    );
    let multi = a.inspect(MULTI);
    assert_eq!(multi["Platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(multi["Attestations"], serde_json::json!([g.attestation]));
    assert_eq!(multi["Complete"], true);

    // Byte for byte: each artifact's manifest and blobs are in the store under their
    // digests, and the empty config the SBOM's writer left out was made, not invented.
    for d in [&g.sbom, &g.signature, &g.chart, &g.attestation] {
        let bytes = std::fs::read(a.store.join("blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(&sha256(&bytes), d);
    }
    let empty = a.store.join("blobs/sha256").join(&sha256(b"{}")[7..]);
    assert_eq!(std::fs::read(empty).unwrap(), b"{}");

    // An artifact has no filesystem: export says so, and the store is untouched.
    let before = tree_hash(&a.store);
    let out = dir.path().join("chart-rootfs.tar");
    let err = a.fails(&["export", CHART, "-o", out.to_str().unwrap()]);
    assert!(
        err.contains("is an OCI artifact") && err.contains(HELM) && err.contains("no filesystem"),
        "{err}"
    );
    assert!(!err.contains("damaged"), "{err}");
    let err = a.fails(&["create", &g.signature_tag]);
    assert!(err.contains("is an OCI artifact"), "{err}");
    assert_eq!(tree_hash(&a.store), before);
    assert!(!out.exists());
}

/// The digests listed in an archive's index.json, and its manifest.json entries.
fn archive_lists(tar: &std::path::Path) -> (Vec<String>, Vec<Value>) {
    let read = |name: &str| {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(tar)
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} in {}", tar.display());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let index = read("index.json");
    let digests = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    (digests, read("manifest.json").as_array().unwrap().clone())
}

#[test]
fn an_image_is_saved_with_its_referrers_and_every_name_keeps_its_root_through_a_round_trip() {
    let (dir, g, a) = loaded();
    let one = dir.path().join("app.tar");
    a.ok(&["save", "-o", one.to_str().unwrap(), APP]);
    let (roots, entries) = archive_lists(&one);
    let want: BTreeSet<&str> = [
        g.app_manifest.as_str(),
        g.sbom.as_str(),
        g.signature.as_str(),
    ]
    .into();
    assert_eq!(
        roots.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        want
    );
    // docker and podman read manifest.json: only the image is there.
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["RepoTags"],
        serde_json::json!(["registry.example/team/app:1"])
    );

    let bare = dir.path().join("bare.tar");
    a.ok(&["save", "--no-referrers", "-o", bare.to_str().unwrap(), APP]);
    assert_eq!(archive_lists(&bare).0, vec![g.app_manifest.clone()]);

    // Loaded elsewhere, the signature and the SBOM are there and still refer to the image.
    let far = Airlock::new(&dir.path().join("far"));
    far.ok(&["load", "-i", one.to_str().unwrap()]);
    let list = json_of(&far.ok(&["artifacts", "--format", "json"]));
    assert_eq!(
        artifact(&list, &g.sbom)["RefersTo"],
        "registry.example/team/app:1"
    );
    assert_eq!(
        artifact(&list, &g.signature)["Name"],
        g.signature_tag.as_str()
    );

    // save --all and load: the same names on the same digests, the three roots of one
    // manifest included (a manifest, an OCI index and a Docker list stay three).
    let all = dir.path().join("all.tar");
    a.ok(&["save", "--all", "-o", all.to_str().unwrap()]);
    let back = Airlock::new(&dir.path().join("back"));
    back.ok(&["load", "-i", all.to_str().unwrap()]);
    let before = names_on_digests(&a);
    assert_eq!(names_on_digests(&back), before);
    for (name, digest) in SAME.iter().zip(&g.same) {
        assert!(
            before.contains(&(name.to_string(), digest.clone())),
            "{name} {before:?}"
        );
    }
    // The same for the OCI format and a layout directory.
    let oci = dir.path().join("all-oci.tar");
    a.ok(&[
        "save",
        "--all",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
    ]);
    let back2 = Airlock::new(&dir.path().join("back2"));
    back2.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(names_on_digests(&back2), before);
}

#[test]
fn an_archive_with_signatures_and_sboms_still_loads_in_docker_podman_and_containerd() {
    require_tool("docker");
    let (dir, g, a) = loaded();
    let saved = dir.path().join("app.tar");
    a.ok(&["save", "-o", saved.to_str().unwrap(), APP]);

    let tag = format!("airlock-artifacts-{}:1", std::process::id());
    a.ok(&["tag", APP, &format!("docker.io/library/{tag}")]);
    let tagged = dir.path().join("tagged.tar");
    a.ok(&["save", "-o", tagged.to_str().unwrap(), &tag]);
    let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
    let out = docker(&["load", "-i", tagged.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), g.app_config);

    let podman = Podman::new();
    let out = podman.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains("registry.example/team/app:1"), "{out}");
    let pid = podman.ok(&["image", "inspect", "-f", "{{.Id}}", APP]);
    assert_eq!(format!("sha256:{}", pid.trim()), g.app_config);

    // containerd keys on index.json: it imports the image and keeps the referrers' content.
    let ctr = crate::containerd::Ctr::new();
    ctr.run(&[
        "images",
        "import",
        "--all-platforms",
        saved.to_str().unwrap(),
    ]);
    let listed = ctr.images();
    assert!(
        listed.iter().any(|(n, d)| n == APP && *d == g.app_manifest),
        "{listed:?}"
    );
    // It does not try to unpack the signature as an image (it cannot: that import would
    // fail), so only the image is named there.
    assert_eq!(listed.len(), 1, "{listed:?}");

    // The OCI format names every root the way OCI readers look them up: containerd (not
    // unpacking) and skopeo find the signature under cosign's tag, byte for byte.
    let oci = dir.path().join("app-oci.tar");
    a.ok(&["save", "--format", "oci", "-o", oci.to_str().unwrap(), APP]);
    let ctr2 = crate::containerd::Ctr::new_named("artifacts-oci");
    ctr2.run(&[
        "images",
        "import",
        "--no-unpack",
        "--all-platforms",
        oci.to_str().unwrap(),
    ]);
    let listed = ctr2.images();
    assert!(
        listed
            .iter()
            .any(|(n, d)| *n == g.signature_tag && *d == g.signature),
        "{listed:?}"
    );
    require_tool("skopeo");
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}:{}", oci.display(), g.signature_tag),
        ])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(sha256(&raw.stdout), g.signature);
}
