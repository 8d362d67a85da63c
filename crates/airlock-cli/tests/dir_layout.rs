//! containers/image's `dir:` layout, read and written, with skopeo as the oracle.

use std::process::Command;

use crate::util::{
    layer_with_file, noise, require_tool, scratch, sh, sha256, write_docker_archive, Airlock,
};

#[test]
fn dir_layouts_skopeo_writes_load_and_the_ones_airlock_writes_skopeo_reads() {
    require_tool("skopeo");
    let work = scratch();
    let archive = work.path().join("img.tar");
    let layers = vec![
        layer_with_file("a.bin", &noise(300_000, 3)),
        layer_with_file("b.txt", b"hello from dir:\n"),
    ];
    write_docker_archive(&archive, "dirtest/app:1", &layers);
    let cli = Airlock::new(&work.path().join("store"));
    cli.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let id = cli.inspect("dirtest/app:1")["Id"]
        .as_str()
        .unwrap()
        .to_string();

    // skopeo writes a dir: layout; airlock reads it with `load -i DIR` and `copy dir:`.
    let written = work.path().join("by-skopeo");
    sh(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("docker-archive:{}", archive.display()),
        &format!("dir:{}", written.display()),
    ]));
    let other = Airlock::new(&work.path().join("other"));
    let out = other.ok(&["verify", "-i", written.to_str().unwrap()]);
    assert!(out.contains("dir: layout"), "{out}");
    let out = other.ok(&["load", "-i", written.to_str().unwrap()]);
    assert!(out.contains("Loaded image ID:"), "{out}");
    let out = other.ok(&[
        "copy",
        &format!("dir:{}", written.display()),
        "store:dirtest/copied:1",
    ]);
    assert!(out.contains("Loaded image: dirtest/copied:1"), "{out}");
    let copied = other.inspect("dirtest/copied:1");
    assert_eq!(copied["Id"], id);
    // The manifest skopeo wrote is kept byte for byte.
    let manifest = std::fs::read(written.join("manifest.json")).unwrap();
    assert_eq!(copied["ManifestDigest"], sha256(&manifest));

    // airlock writes a dir: layout; skopeo reads it and copies it on, digests unchanged.
    let mine = work.path().join("by-airlock");
    cli.ok(&["copy", "dirtest/app:1", &format!("dir:{}", mine.display())]);
    let raw =
        sh(Command::new("skopeo").args(["inspect", "--raw", &format!("dir:{}", mine.display())]));
    assert_eq!(
        sha256(raw.trim_end().as_bytes()),
        cli.inspect("dirtest/app:1")["ManifestDigest"]
    );
    let inspected: serde_json::Value = serde_json::from_str(&sh(
        Command::new("skopeo").args(["inspect", &format!("dir:{}", mine.display())])
    ))
    .unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    let layout = work.path().join("oci");
    sh(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("dir:{}", mine.display()),
        &format!("oci:{}:x", layout.display()),
    ]));
    // A dir: layout holds one image.
    cli.ok(&["tag", "dirtest/app:1", "dirtest/other:1"]);
    let second = work.path().join("second.tar");
    write_docker_archive(&second, "dirtest/two:1", &[layer_with_file("c", b"c")]);
    cli.ok(&["load", "-q", "-i", second.to_str().unwrap()]);
    let err = cli.fails(&[
        "copy",
        "--match",
        "dirtest/*",
        "store:",
        &format!("dir:{}", work.path().join("two").display()),
    ]);
    assert!(err.contains("one image"), "{err}");
}

#[test]
fn a_schema_1_dir_layout_loads_with_the_config_skopeo_and_docker_make_of_it() {
    // Older registries served Docker's schema 1 manifests; skopeo keeps them as they are in
    // a dir: layout. Converting one takes the config from the top history entry, with an
    // empty layer for each `throwaway` entry: skopeo's conversion is the oracle.
    require_tool("skopeo");
    let work = scratch();
    let dir = work.path().join("schema1");
    std::fs::create_dir_all(&dir).unwrap();
    let base = layer_with_file("etc/base", b"base\n");
    let top = layer_with_file("app/run", b"run <me> & see\n");
    for l in [&base, &top] {
        std::fs::write(dir.join(&sha256(l)[7..]), l).unwrap();
    }
    let empty_gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&[0u8; 1024]).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(dir.join(&sha256(&empty_gz)[7..]), &empty_gz).unwrap();
    let v1 = |id: &str, parent: &str, created: &str, cmd: &str, throwaway: bool| {
        let mut j = serde_json::json!({
            "id": id, "created": created, "docker_version": "1.12.6", "architecture": "amd64", "os": "linux",
            "container_config": {"Cmd": ["/bin/sh", "-c", cmd]},
            "config": {"Cmd": ["/app/run"], "Env": ["PATH=/bin"]},
        });
        if !parent.is_empty() {
            j["parent"] = parent.into();
        }
        if throwaway {
            j["throwaway"] = true.into();
        }
        j.to_string()
    };
    let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    let manifest = serde_json::json!({
        "schemaVersion": 1, "name": "legacy/app", "tag": "1", "architecture": "amd64",
        // Top first, as schema 1 lists them.
        "fsLayers": [{"blobSum": sha256(&empty_gz)}, {"blobSum": sha256(&top)}, {"blobSum": sha256(&base)}],
        "history": [
            {"v1Compatibility": v1(&c, &b, "2017-05-01T10:00:02Z", "#(nop)  CMD [\"/app/run\"]", true)},
            {"v1Compatibility": v1(&b, &a, "2017-05-01T10:00:01.25+02:00", "#(nop) COPY run <me> /app/", false)},
            {"v1Compatibility": v1(&a, "", "2017-05-01T10:00:00Z", "#(nop) ADD file:base in /", false)},
        ],
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();

    let cli = Airlock::new(&work.path().join("store"));
    let out = cli.ok(&["load", "-i", dir.to_str().unwrap()]);
    let id = out
        .trim()
        .strip_prefix("Loaded image ID: ")
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let got = cli.inspect(&id);
    // The throwaway entry is history, not a layer.
    assert_eq!(
        got["RootFS"]["Layers"],
        serde_json::json!([sha256(&base), sha256(&top)])
    );
    assert_eq!(got["History"].as_array().unwrap().len(), 3);

    let converted = work.path().join("converted.tar");
    sh(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--insecure-policy",
        &format!("dir:{}", dir.display()),
        &format!("docker-archive:{}:legacy/app:1", converted.display()),
    ]));
    let listed = sh(Command::new("tar")
        .arg("-xOf")
        .arg(&converted)
        .arg("manifest.json"));
    let entries: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let config = entries[0]["Config"].as_str().unwrap();
    assert_eq!(
        format!("sha256:{}", config.trim_end_matches(".json")),
        id,
        "skopeo made another config"
    );
}
