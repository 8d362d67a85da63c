//! Dialects whose writers are not installable here (crane, containerd's `ctr export`,
//! Docker 25's hybrid archive and its 25.0.x quirks), built byte by byte from the format
//! facts those tools' public sources document.

use std::io::Write;

use serde_json::json;

use crate::util::{layer_with_file, scratch, sha256, Airlock};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn hex(d: &str) -> &str {
    &d[7..]
}

/// A tar built from (path, bytes) pairs, in order.
fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

struct Image {
    layers: Vec<Vec<u8>>,
    gz_layers: Vec<Vec<u8>>,
    config: Vec<u8>,
}

fn image(arch: &str, files: &[(&str, &[u8])]) -> Image {
    let layers: Vec<Vec<u8>> = files.iter().map(|(n, c)| layer_with_file(n, c)).collect();
    let gz_layers: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
    }))
    .unwrap();
    Image {
        layers,
        gz_layers,
        config,
    }
}

fn oci_manifest(img: &Image, gz: bool) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = (if gz { &img.gz_layers } else { &img.layers })
        .iter()
        .map(|l| {
            json!({
                "mediaType": if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" },
                "digest": sha256(l), "size": l.len(),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&img.config), "size": img.config.len()},
        "layers": layers,
    }))
    .unwrap()
}

fn load(entries: &[(String, Vec<u8>)]) -> (tempfile::TempDir, Airlock, String) {
    let dir = scratch();
    let path = dir.path().join("in.tar");
    std::fs::write(&path, tar_of(entries)).unwrap();
    let airlock = Airlock::new(&dir.path().join("store"));
    let out = airlock.ok(&["load", "-i", path.to_str().unwrap()]);
    (dir, airlock, out)
}

#[test]
fn crane_tarball_with_gzip_layers_and_sha256_named_config() {
    let img = image("amd64", &[("a.txt", b"one"), ("b.txt", b"two")]);
    let cfg_name = format!("sha256:{}", hex(&sha256(&img.config)));
    let layer_names: Vec<String> = img
        .gz_layers
        .iter()
        .map(|l| format!("{}.tar.gz", hex(&sha256(l))))
        .collect();
    let manifest = json!([{"Config": cfg_name, "RepoTags": ["registry.example/team/crane:1"], "Layers": layer_names}]);
    let mut entries = vec![(cfg_name.clone(), img.config.clone())];
    for (n, l) in layer_names.iter().zip(&img.gz_layers) {
        entries.push((n.clone(), l.clone()));
    }
    entries.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    let (_d, airlock, out) = load(&entries);
    assert_eq!(out.trim(), "Loaded image: registry.example/team/crane:1");
    let got = airlock.inspect("registry.example/team/crane:1");
    assert_eq!(got["Id"], sha256(&img.config).as_str());
    let diff: Vec<String> = img.layers.iter().map(|l| sha256(l)).collect();
    assert_eq!(got["RootFS"]["Layers"], json!(diff));
    // The compressed blobs are kept as they came.
    let blobs: Vec<&str> = got["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Digest"].as_str().unwrap())
        .collect();
    let want: Vec<String> = img.gz_layers.iter().map(|l| sha256(l)).collect();
    assert_eq!(blobs, want);
}

#[test]
fn containerd_export_with_a_sparse_index_keeps_the_platform_it_has() {
    let amd = image("amd64", &[("x", b"amd64 data")]);
    let arm = image("arm64", &[("x", b"arm64 data")]);
    let amd_m = oci_manifest(&amd, true);
    let arm_m = oci_manifest(&arm, true);
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&amd_m), "size": amd_m.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&arm_m), "size": arm_m.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(&nested), "size": nested.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1", "org.opencontainers.image.ref.name": "1"}}],
    });
    // containerd writes manifest.json without LayerSources and no `repositories`; the arm64
    // manifest and its blobs are absent (the sparse index).
    let manifest_json = json!([{
        "Config": format!("blobs/sha256/{}", hex(&sha256(&amd.config))),
        "RepoTags": ["multi:1"],
        "Layers": amd.gz_layers.iter().map(|l| format!("blobs/sha256/{}", hex(&sha256(l)))).collect::<Vec<_>>(),
    }]);
    let mut entries = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            format!("blobs/sha256/{}", hex(&sha256(&nested))),
            nested.clone(),
        ),
        (
            format!("blobs/sha256/{}", hex(&sha256(&amd_m))),
            amd_m.clone(),
        ),
        (
            format!("blobs/sha256/{}", hex(&sha256(&amd.config))),
            amd.config.clone(),
        ),
    ];
    for l in &amd.gz_layers {
        entries.push((format!("blobs/sha256/{}", hex(&sha256(l))), l.clone()));
    }
    entries.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    entries.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest_json).unwrap(),
    ));
    let (_d, airlock, out) = load(&entries);
    assert_eq!(out.trim(), "Loaded image: multi:1");
    let got = airlock.inspect("multi:1");
    // The index stays the image's root (its registry digest survives, `latest` resolves to
    // it as oras-go and zarf expect), and it is not passed off as complete: one of its two
    // platforms is here.
    assert_eq!(got["ManifestDigest"], sha256(&amd_m).as_str());
    assert_eq!(got["IndexDigest"], sha256(&nested).as_str());
    assert_eq!(got["Id"], sha256(&nested).as_str());
    assert_eq!(got["Platforms"], json!(["linux/amd64"]));
    assert_eq!(got["ManifestsListed"], 2);
    assert_eq!(got["ManifestsPresent"], 1);
    assert_eq!(got["Complete"], false);
    // What the index names but the archive lacks stays absent; what it has is whole.
    let store = &airlock.store;
    assert!(!store
        .join(format!("blobs/sha256/{}", hex(&sha256(&arm_m))))
        .exists());
    assert!(store
        .join(format!("blobs/sha256/{}", hex(&sha256(&amd_m))))
        .exists());
}

#[test]
fn docker_25_hybrid_with_layers_in_the_wrong_order_trusts_manifest_json() {
    let img = image("amd64", &[("first", b"1"), ("second", b"2")]);
    // Docker 25.0.0 wrote the OCI manifest's layers in the wrong order (fixed in 25.0.1);
    // manifest.json and the config's diff_ids order are right.
    let mut wrong = img.layers.clone();
    wrong.reverse();
    let bad = Image {
        layers: wrong,
        gz_layers: Vec::new(),
        config: img.config.clone(),
    };
    let m = oci_manifest(&bad, false);
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&m), "size": m.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/hybrid:25", "org.opencontainers.image.ref.name": "25"}}]});
    let layer_paths: Vec<String> = img
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", hex(&sha256(l))))
        .collect();
    let manifest_json = json!([{"Config": format!("blobs/sha256/{}", hex(&sha256(&img.config))), "RepoTags": ["hybrid:25"], "Layers": layer_paths}]);
    let repositories = json!({"hybrid": {"25": hex(&sha256(img.layers.last().unwrap()))}});
    let mut entries = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (format!("blobs/sha256/{}", hex(&sha256(&m))), m.clone()),
        (
            format!("blobs/sha256/{}", hex(&sha256(&img.config))),
            img.config.clone(),
        ),
    ];
    for l in &img.layers {
        entries.push((format!("blobs/sha256/{}", hex(&sha256(l))), l.clone()));
    }
    entries.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    entries.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest_json).unwrap(),
    ));
    entries.push((
        "repositories".into(),
        serde_json::to_vec(&repositories).unwrap(),
    ));
    let (dir, airlock, _) = load(&entries);
    let got = airlock.inspect("hybrid:25");
    let diff: Vec<String> = img.layers.iter().map(|l| sha256(l)).collect();
    assert_eq!(got["RootFS"]["Layers"], json!(diff));
    let order: Vec<&str> = got["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["Digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        diff.iter().map(String::as_str).collect::<Vec<_>>(),
        "layers in manifest.json order"
    );
    // And it exports with the right file on top.
    let out = dir.path().join("flat.tar");
    airlock.ok(&["export", "-o", out.to_str().unwrap(), "hybrid:25"]);
    let listing = crate::util::tar_listing(&out);
    assert!(listing.contains_key("first") && listing.contains_key("second"));
}

#[test]
fn zstd_layer_files_inside_a_docker_archive_load() {
    let img = image("amd64", &[("z", b"zstd layer")]);
    let zl = zstd::encode_all(&img.layers[0][..], 3).unwrap();
    let cfg = format!("{}.json", hex(&sha256(&img.config)));
    let lname = format!("{}/layer.tar", hex(&sha256(&img.layers[0])));
    let manifest = json!([{"Config": cfg, "RepoTags": ["zl:1"], "Layers": [lname]}]);
    let entries = vec![
        (cfg.clone(), img.config.clone()),
        (lname.clone(), zl.clone()),
        (
            "manifest.json".to_string(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
    ];
    let (_d, airlock, _) = load(&entries);
    let got = airlock.inspect("zl:1");
    assert_eq!(got["RootFS"]["Layers"][0], sha256(&img.layers[0]).as_str());
    assert_eq!(
        got["Layers"][0]["MediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn docker_before_1_10_archive_loads_with_the_id_docker_gives_it() {
    // `repositories` and v1 image directories, no manifest.json: Docker still loads these
    // (its legacy loader builds the config from the top v1 JSON). The real engine is the
    // oracle for the ID and the diffIDs.
    crate::util::require_tool("docker");
    let base_layer = layer_with_file("etc/base", b"base\n");
    let top_layer = layer_with_file("app/run", b"#!/bin/sh\necho hi\n");
    let v1 = |id: &str, parent: Option<&str>, created: &str, cmd: &str, layer: &[u8]| {
        let mut j = json!({
            "id": id, "created": created, "container": "c0ffee",
            "container_config": {"Hostname": "c0ffee", "Cmd": ["/bin/sh", "-c", cmd], "Env": ["PATH=/bin"], "Labels": null},
            "docker_version": "1.9.1", "author": "Ops <ops@example.com> & co",
            "config": {"Hostname": "c0ffee", "Cmd": ["/app/run"], "Env": ["PATH=/bin"]},
            "architecture": "amd64", "os": "linux", "Size": layer.len(),
        });
        if let Some(p) = parent {
            j["parent"] = json!(p);
        }
        serde_json::to_vec_pretty(&j).unwrap()
    };
    let base_id = "1".repeat(64);
    let top_id = "2".repeat(64);
    let entries = vec![
        (
            "repositories".to_string(),
            serde_json::to_vec(&json!({"legacy/app": {"v1": top_id}})).unwrap(),
        ),
        (format!("{base_id}/VERSION"), b"1.0".to_vec()),
        (
            format!("{base_id}/json"),
            v1(
                &base_id,
                None,
                "2015-11-03T10:00:00.5-07:00",
                "#(nop) ADD file:abc in /",
                &base_layer,
            ),
        ),
        (format!("{base_id}/layer.tar"), base_layer.clone()),
        (format!("{top_id}/VERSION"), b"1.0".to_vec()),
        (
            format!("{top_id}/json"),
            v1(
                &top_id,
                Some(&base_id),
                "2015-11-04T12:30:00.123456789Z",
                "#(nop) COPY run /app/",
                &top_layer,
            ),
        ),
        (format!("{top_id}/layer.tar"), top_layer.clone()),
    ];
    let (dir, airlock, out) = load(&entries);
    assert_eq!(out.trim(), "Loaded image: legacy/app:v1");
    let got = airlock.inspect("legacy/app:v1");
    assert_eq!(
        got["RootFS"]["Layers"],
        json!([sha256(&base_layer), sha256(&top_layer)])
    );

    let tar = dir.path().join("legacy.tar");
    std::fs::write(&tar, tar_of(&entries)).unwrap();
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap()
    };
    let loaded = docker(&["load", "-i", tar.to_str().unwrap()]);
    assert!(
        loaded.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let id = docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}} {{json .RootFS.Layers}}",
        "legacy/app:v1",
    ]);
    let _ = docker(&["rmi", "-f", "legacy/app:v1"]);
    let id = String::from_utf8_lossy(&id.stdout).to_string();
    let (docker_id, docker_layers) = id.trim().split_once(' ').unwrap();
    assert_eq!(
        got["Id"], docker_id,
        "the engine gives the image another ID"
    );
    assert_eq!(
        got["RootFS"]["Layers"],
        serde_json::from_str::<serde_json::Value>(docker_layers).unwrap()
    );
    // What airlock made of it saves and loads like any image.
    let saved = dir.path().join("saved.tar");
    airlock.ok(&["save", "-o", saved.to_str().unwrap(), "legacy/app:v1"]);
    let back = Airlock::new(&dir.path().join("back"));
    back.ok(&["load", "-q", "-i", saved.to_str().unwrap()]);
    assert_eq!(back.inspect("legacy/app:v1")["Id"], got["Id"]);
}
