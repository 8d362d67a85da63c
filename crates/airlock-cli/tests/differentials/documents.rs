//! JSON documents and OCI layouts Go readers take their own way (issue 10, A 7, 8 and 9),
//! asked of docker, podman, skopeo and containerd.

use std::path::{Path, PathBuf};

use super::readers::{
    airlock_loads, airlock_refuses, all_loaded, all_refused, RawTar, Readers, Seen,
};
use super::{config_digest, docker_image_files};
use crate::util::{scratch, sha256, Airlock};

/// A docker-archive of the given files and manifest.json text.
fn docker_archive(path: &Path, files: &[(String, Vec<u8>)], manifest: &[u8]) {
    let mut t = RawTar::default();
    for (p, d) in files {
        t.file(p, d);
    }
    t.file("manifest.json", manifest);
    t.write(path);
}

#[test]
fn keys_go_matches_ignoring_case_pick_the_last_copy_as_every_go_reader_does() {
    // `Config` then `config`: Go's encoding/json takes both for the field, the last winning;
    // a plain serde struct would take the exact key. airlock reads it as Go does.
    let readers = Readers::new("-keys");
    let dir = scratch();
    let tag = format!("airlock-keys-{}:1", std::process::id());
    let (mut files, first) = docker_image_files(&tag, b"first\n");
    let (second_files, second) = docker_image_files(&tag, b"second\n");
    files.extend(second_files);
    let manifest = format!(
        r#"[{{"Config":{},"RepoTags":["{tag}"],"Layers":{},"config":{},"layers":{}}}]"#,
        first["Config"], first["Layers"], second["Config"], second["Layers"]
    );
    let archive = dir.path().join("keys.tar");
    docker_archive(&archive, &files, manifest.as_bytes());
    let id = config_digest(&second);
    all_loaded(&readers.all(&archive, "docker-archive"), &[&id]);
    assert_eq!(airlock_loads(&dir.path().join("store"), &archive), [id]);
}

#[test]
fn an_invalid_repo_tag_is_refused_by_the_loaders_and_by_airlock() {
    let readers = Readers::new("-tags");
    let dir = scratch();
    let (files, mut entry) = docker_image_files("unused:1", b"tags\n");
    entry["RepoTags"] = serde_json::json!(["Bad Tag:1"]);
    let archive = dir.path().join("tags.tar");
    docker_archive(&archive, &files, &serde_json::to_vec(&[&entry]).unwrap());
    // skopeo reads the image (it loads nothing, so never parses the name); every loader
    // refuses the name.
    let seen = readers.all(&archive, "docker-archive");
    for (reader, s) in &seen {
        assert_eq!(s.is_refused(), *reader != "skopeo", "{reader}: {s:?}");
    }
    airlock_refuses(&dir.path().join("store"), &archive, &["'Bad Tag:1'"]);
}

#[test]
fn a_config_nested_past_go_s_limit_is_refused_by_every_reader_and_airlock() {
    let readers = Readers::new("-deep");
    let dir = scratch();
    let tag = format!("airlock-deep-{}:1", std::process::id());
    let (files, entry) = docker_image_files(&tag, b"deep\n");
    let config = &files[0].1;
    let mut deep = config[..config.len() - 1].to_vec();
    deep.extend_from_slice(b",\"x\":");
    deep.extend(std::iter::repeat_n(b'[', 10_000));
    deep.extend(std::iter::repeat_n(b']', 10_000));
    deep.push(b'}');
    let name = format!("{}.json", &sha256(&deep)[7..]);
    let mut entry = entry.clone();
    entry["Config"] = serde_json::json!(name);
    let files = vec![(name, deep), files[1].clone()];
    let archive = dir.path().join("deep.tar");
    docker_archive(&archive, &files, &serde_json::to_vec(&[&entry]).unwrap());
    all_refused(&readers.all(&archive, "docker-archive"));
    airlock_refuses(
        &dir.path().join("store"),
        &archive,
        &["levels deep", ".json"],
    );
}

/// The entries of a tar, in order.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            out.push((e.path().unwrap().to_string_lossy().into_owned(), data));
        }
    }
    out
}

/// An airlock-written archive (`format`: docker or oci) of a one-layer image, its entries
/// and the image ID.
fn saved(dir: &Path, what: &str, format: &str) -> (Vec<(String, Vec<u8>)>, String) {
    let tag = format!("airlock-{what}-{}:1", std::process::id());
    let (files, entry) = docker_image_files(&tag, what.as_bytes());
    let plain = dir.join("plain.tar");
    docker_archive(&plain, &files, &serde_json::to_vec(&[&entry]).unwrap());
    let a = Airlock::new(&dir.join("source"));
    a.ok(&["load", "-q", "-i", plain.to_str().unwrap()]);
    let out = dir.join("saved.tar");
    a.ok(&[
        "save",
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
        &tag,
    ]);
    (entries(&out), config_digest(&entry))
}

fn write_entries(path: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    let mut t = RawTar::default();
    for (p, d) in files {
        t.file(p, d);
    }
    t.write(path);
    path.to_path_buf()
}

fn blob_path(d: &str) -> String {
    format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))
}

#[test]
fn a_blob_outside_blobs_sha256_is_missing_to_podman_and_skopeo_found_by_containerd_and_refused() {
    let readers = Readers::new("-place");
    let dir = scratch();
    let (mut files, id) = saved(dir.path(), "place", "oci");
    let config = blob_path(&id);
    for (p, _) in files.iter_mut() {
        if *p == config {
            *p = format!("elsewhere/{}", id.trim_start_matches("sha256:"));
        }
    }
    let archive = write_entries(&dir.path().join("place.tar"), &files);
    assert!(readers.podman(&archive).is_refused());
    assert!(readers.skopeo("oci-archive", &archive).is_refused());
    assert_eq!(readers.containerd(&archive), Seen::Loaded(vec![id.clone()]));
    airlock_refuses(
        &dir.path().join("store"),
        &archive,
        &["'elsewhere/", "instead of 'blobs/sha256/"],
    );
}

#[test]
fn a_descriptor_size_that_is_not_its_blob_s_is_refused() {
    // The manifest gives the config 5 bytes more than it has: podman refuses ("blob size
    // mismatch"), skopeo and containerd read it; read two ways, so refused.
    let readers = Readers::new("-size");
    let dir = scratch();
    let (mut files, id) = saved(dir.path(), "size", "oci");
    let index: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(p, _)| p == "index.json").unwrap().1).unwrap();
    let manifest_path = blob_path(index["manifests"][0]["digest"].as_str().unwrap());
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(p, _)| *p == manifest_path).unwrap().1)
            .unwrap();
    let size = manifest["config"]["size"].as_u64().unwrap();
    manifest["config"]["size"] = serde_json::json!(size + 5);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let mut index = index.clone();
    index["manifests"][0]["digest"] = serde_json::json!(sha256(&bytes));
    index["manifests"][0]["size"] = serde_json::json!(bytes.len());
    files.retain(|(p, _)| *p != manifest_path && p != "index.json");
    files.push((blob_path(&sha256(&bytes)), bytes));
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    let archive = write_entries(&dir.path().join("size.tar"), &files);
    assert!(readers.podman(&archive).is_refused());
    assert_eq!(
        readers.skopeo("oci-archive", &archive),
        Seen::Loaded(vec![id.clone()])
    );
    assert_eq!(readers.containerd(&archive), Seen::Loaded(vec![id]));
    airlock_refuses(
        &dir.path().join("store"),
        &archive,
        &[
            &format!("a size of {} bytes", size + 5),
            &format!("is {size} bytes"),
        ],
    );
}

#[test]
fn an_image_only_index_json_names_in_a_hybrid_archive_is_verified_and_loaded_as_containerd_loads_it(
) {
    // docker reads manifest.json, containerd every index.json root: the second image is
    // containerd's alone, and airlock verifies and loads both.
    let readers = Readers::new("-hybrid");
    let dir = scratch();
    let (mut files, id) = saved(dir.path(), "hybrid", "docker");
    let find = |files: &[(String, Vec<u8>)], p: &str| {
        files.iter().find(|(q, _)| q == p).unwrap().1.clone()
    };
    let mut index: serde_json::Value = serde_json::from_slice(&find(&files, "index.json")).unwrap();
    let first = index["manifests"][0].clone();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&find(&files, &blob_path(first["digest"].as_str().unwrap())))
            .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&find(&files, &blob_path(&id))).unwrap();
    config["architecture"] = serde_json::json!("arm64");
    let config = serde_json::to_vec(&config).unwrap();
    let second_id = sha256(&config);
    manifest["config"]["digest"] = serde_json::json!(second_id);
    manifest["config"]["size"] = serde_json::json!(config.len());
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let name = format!("docker.io/library/airlock-hybrid-{}:2", std::process::id());
    let mut root = first.clone();
    root["digest"] = serde_json::json!(sha256(&manifest));
    root["size"] = serde_json::json!(manifest.len());
    root["annotations"] = serde_json::json!({
        "io.containerd.image.name": name, "org.opencontainers.image.ref.name": "2"});
    index["manifests"].as_array_mut().unwrap().push(root);
    files.retain(|(p, _)| p != "index.json");
    files.push((blob_path(&second_id), config));
    files.push((blob_path(&sha256(&manifest)), manifest));
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    let archive = write_entries(&dir.path().join("hybrid.tar"), &files);
    assert_eq!(readers.docker(&archive), Seen::Loaded(vec![id.clone()]));
    let mut both = vec![id, second_id];
    both.sort();
    assert_eq!(readers.containerd(&archive), Seen::Loaded(both.clone()));
    assert_eq!(airlock_loads(&dir.path().join("store"), &archive), both);
}
