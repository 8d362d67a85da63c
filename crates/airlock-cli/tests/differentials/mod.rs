//! Archives built so that two readers see different images (issue 10, A), with the real
//! Docker Engine as the oracle for what a Go reader sees: airlock refuses them, naming the
//! entry, rather than verify one image while docker loads another.

mod documents;
mod readers;
mod tar_headers;

use std::process::Command;

use crate::util::{
    layer_with_file, require_tool, scratch, tree_hash, write_docker_archive, Airlock,
};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

#[test]
fn an_image_hidden_behind_a_directory_header_is_what_docker_loads_and_airlock_refuses() {
    require_tool("docker");
    let dir = scratch();
    let inner = dir.path().join("inner.tar");
    let name = format!("airlock-hidden-{}:1", std::process::id());
    write_docker_archive(
        &inner,
        &name,
        &[layer_with_file("hidden", b"what docker sees\n")],
    );
    let mut hidden = std::fs::read(&inner).unwrap();
    hidden.truncate(hidden.len() - 1024); // its end-of-archive marker
                                          // A directory header that claims the hidden entries as its data, then them, then the end.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("docs/").unwrap();
    h.set_mode(0o755);
    h.set_size(hidden.len() as u64);
    h.set_cksum();
    let mut outer = h.as_bytes().to_vec();
    outer.extend_from_slice(&hidden);
    outer.extend_from_slice(&[0u8; 1024]);
    let path = dir.path().join("two-faced.tar");
    std::fs::write(&path, &outer).unwrap();

    // Go's reader reads no data after a directory header: docker finds the image.
    let loaded = docker(&["load", "-i", path.to_str().unwrap()]);
    let seen = docker(&["image", "inspect", "-f", "{{.Id}}", &name]);
    let _ = docker(&["rmi", "-f", &name]);
    assert!(
        loaded.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(seen.status.success(), "docker did not load {name}");

    // airlock (whose tar reader would skip them as the directory's data) refuses, naming
    // the entry, and its store is unchanged.
    let a = Airlock::new(&dir.path().join("store"));
    a.ok(&["images"]);
    let before = tree_hash(&a.store);
    for cmd in ["verify", "load"] {
        let err = a.fails(&[cmd, "-i", path.to_str().unwrap()]);
        assert!(
            err.contains("entry 'docs/'") && err.contains("claims"),
            "{cmd}: {err}"
        );
    }
    assert_eq!(tree_hash(&a.store), before);
}

/// (path, type, content or link) of the entries of a tar under the given top directories.
fn shape(tar_bytes: &[u8], tops: &[&str]) -> std::collections::BTreeSet<String> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = std::collections::BTreeSet::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let p = p.trim_start_matches("./").to_string();
        if !tops
            .iter()
            .any(|t| p == *t || p.starts_with(&format!("{t}/")))
        {
            continue;
        }
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let kind = e.header().entry_type();
        out.insert(format!(
            "{p} {kind:?} {link:?} {}",
            String::from_utf8_lossy(&data)
        ));
    }
    out
}

/// The same shape for a directory tree (a work container's rootfs).
fn dir_shape(root: &std::path::Path, tops: &[&str]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if !tops
                .iter()
                .any(|t| rel == *t || rel.starts_with(&format!("{t}/")))
            {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            let line = if md.file_type().is_symlink() {
                let l = std::fs::read_link(&p)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                format!("{rel} Symlink Some({l:?}) ")
            } else if md.is_dir() {
                stack.push(p.clone());
                format!("{rel} Directory None ")
            } else {
                let data = std::fs::read(&p).unwrap();
                format!("{rel} Regular None {}", String::from_utf8_lossy(&data))
            };
            out.insert(line);
        }
    }
    out
}

#[test]
fn an_entry_below_a_lower_layers_symlink_or_file_makes_it_a_directory_as_in_docker() {
    require_tool("docker");
    let dir = scratch();
    let name = format!("airlock-shadow-{}:1", std::process::id());
    let mut lower = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>,
               path: &str,
               kind: tar::EntryType,
               data: &[u8],
               link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, path, l).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    };
    add(&mut lower, "usr/", tar::EntryType::Directory, b"", None);
    add(&mut lower, "usr/lib/", tar::EntryType::Directory, b"", None);
    add(&mut lower, "usr/lib/a", tar::EntryType::Regular, b"a", None);
    add(
        &mut lower,
        "lib",
        tar::EntryType::Symlink,
        b"",
        Some("usr/lib"),
    );
    add(&mut lower, "f", tar::EntryType::Regular, b"f", None);
    let mut upper = tar::Builder::new(Vec::new());
    add(&mut upper, "lib/b", tar::EntryType::Regular, b"b", None);
    add(&mut upper, "f/x", tar::EntryType::Regular, b"x", None);
    let archive = dir.path().join("shadow.tar");
    write_docker_archive(
        &archive,
        &name,
        &[lower.into_inner().unwrap(), upper.into_inner().unwrap()],
    );
    let tops = ["usr", "lib", "f"];

    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let created = docker(&["create", &name, "/x"]);
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let exported = docker(&["export", &id]);
    let _ = docker(&["rm", &id]);
    let _ = docker(&["rmi", "-f", &name]);
    assert!(exported.status.success());
    let docker_sees = shape(&exported.stdout, &tops);
    assert!(
        docker_sees.contains("lib Directory None "),
        "{docker_sees:?}"
    );

    let a = Airlock::new(&dir.path().join("store"));
    a.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let out = dir.path().join("export.tar");
    a.ok(&["export", &name, "-o", out.to_str().unwrap()]);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(shape(&bytes, &tops), docker_sees, "airlock export");
    a.ok(&["create", &name, "--name", "w"]);
    let root = a.store.join("containers/w/rootfs");
    assert_eq!(dir_shape(&root, &tops), docker_sees, "airlock create");
}

#[test]
fn a_layer_at_a_path_of_its_own_choosing_loads_as_skopeo_reads_it() {
    require_tool("skopeo");
    let dir = scratch();
    let layer = layer_with_file("hello", b"hi\n");
    let diff_id = crate::util::sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "config.json", "RepoTags": ["paths:1"], "Layers": ["layers/layer0.tar"],
    }]))
    .unwrap();
    let archive = dir.path().join("paths.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for (p, data) in [
        ("config.json", &config),
        ("layers/layer0.tar", &layer),
        ("manifest.json", &manifest),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);

    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("docker-archive:{}", archive.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let skopeo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = Airlock::new(&dir.path().join("store"));
    a.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let img = a.inspect("paths:1");
    assert_eq!(
        img["Layers"][0]["Digest"].as_str(),
        skopeo["layers"][0]["digest"].as_str(),
        "{img}"
    );
    assert_eq!(
        img["Config"]["Digest"].as_str().or(img["Id"].as_str()),
        skopeo["config"]["digest"].as_str()
    );
}

/// The files of a one-image docker-archive (config, layer) and its manifest.json entry.
pub(super) fn docker_image_files(
    tag: &str,
    content: &[u8],
) -> (Vec<(String, Vec<u8>)>, serde_json::Value) {
    let layer = layer_with_file("f", content);
    let diff_id = crate::util::sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let cfg = format!("{}.json", &crate::util::sha256(&config)[7..]);
    let lay = format!("{}/layer.tar", &diff_id[7..]);
    let entry = serde_json::json!({"Config": cfg, "RepoTags": [tag], "Layers": [lay]});
    (vec![(cfg, config), (lay, layer)], entry)
}

/// The config digest a manifest.json entry names (`<hex>.json`).
pub(super) fn config_digest(entry: &serde_json::Value) -> String {
    format!(
        "sha256:{}",
        entry["Config"].as_str().unwrap().trim_end_matches(".json")
    )
}

/// The digest of the config skopeo reads from a docker-archive.
fn skopeo_config_digest(archive: &std::path::Path) -> String {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            "--raw",
            &format!("docker-archive:{}", archive.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::util::sha256(&out.stdout)
}

#[test]
fn two_manifest_json_entries_are_read_differently_by_docker_and_skopeo_and_airlock_refuses() {
    require_tool("docker");
    require_tool("skopeo");
    let dir = scratch();
    let tag = format!("airlock-dup-{}:1", std::process::id());
    let (mut files, first) = docker_image_files(&tag, b"first\n");
    let (second_files, second) = docker_image_files(&tag, b"second\n");
    files.extend(second_files);
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&[&first]).unwrap(),
    ));
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&[&second]).unwrap(),
    ));
    let archive = dir.path().join("dup.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for (p, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let config_of = config_digest;

    // skopeo takes the first manifest.json ...
    assert_eq!(skopeo_config_digest(&archive), config_of(&first), "skopeo");
    // ... docker the last: the same bytes are two images.
    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        config_of(&second),
        "docker"
    );

    // airlock refuses, naming the entry, and loads nothing.
    let a = Airlock::new(&dir.path().join("store"));
    a.ok(&["images"]);
    let before = tree_hash(&a.store);
    for cmd in ["verify", "load"] {
        let err = a.fails(&[cmd, "-i", archive.to_str().unwrap()]);
        assert!(
            err.contains("entry 'manifest.json'") && err.contains("twice"),
            "{err}"
        );
    }
    assert_eq!(tree_hash(&a.store), before);
}

#[test]
fn an_absolute_manifest_json_is_loaded_by_docker_not_by_skopeo_and_airlock_refuses() {
    require_tool("docker");
    require_tool("skopeo");
    let dir = scratch();
    let tag = format!("airlock-abs-{}:1", std::process::id());
    let (mut files, entry) = docker_image_files(&tag, b"absolute\n");
    files.push((
        "/manifest.json".into(),
        serde_json::to_vec(&[&entry]).unwrap(),
    ));
    let archive = dir.path().join("abs.tar");
    // Written as given: the tar crate would refuse to write an absolute name.
    let mut t = readers::RawTar::default();
    for (p, data) in &files {
        t.file(p, data);
    }
    t.write(&archive);

    let skopeo = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("docker-archive:{}", archive.display()),
        ])
        .output()
        .unwrap();
    assert!(
        !skopeo.status.success(),
        "skopeo found the absolute manifest.json"
    );
    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert!(
        loaded.status.success(),
        "docker: {}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let a = Airlock::new(&dir.path().join("store"));
    let err = a.fails(&["verify", "-i", archive.to_str().unwrap()]);
    assert!(
        err.contains("'/manifest.json'") && err.contains("absolute"),
        "{err}"
    );
}

#[test]
fn a_contiguous_file_entry_is_read_by_skopeo_refused_by_docker_and_by_airlock() {
    require_tool("docker");
    require_tool("skopeo");
    let dir = scratch();
    let tag = format!("airlock-contig-{}:1", std::process::id());
    let (mut files, entry) = docker_image_files(&tag, b"contiguous\n");
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&[&entry]).unwrap(),
    ));
    let archive = dir.path().join("contig.tar");
    let mut t = readers::RawTar::default();
    for (p, data) in &files {
        t.entry(readers::RawTar::header(p, tar::EntryType::Continuous), data); // type '7'
    }
    t.write(&archive);
    let config = config_digest(&entry);

    // skopeo reads the entries as regular files ...
    assert_eq!(skopeo_config_digest(&archive), config);
    // ... docker refuses the archive.
    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert!(
        !loaded.status.success(),
        "docker loaded a contiguous-file archive"
    );

    // airlock, which promises the far side loads what it verified, refuses.
    let a = Airlock::new(&dir.path().join("store"));
    let err = a.fails(&["verify", "-i", archive.to_str().unwrap()]);
    assert!(err.contains("contiguous"), "{err}");
}
