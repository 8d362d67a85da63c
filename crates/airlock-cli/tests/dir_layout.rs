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
