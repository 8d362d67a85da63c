//! Resources stay bounded whatever the input holds.

use std::process::Command;

use crate::util::{airlock_bin, layer_with_file, scratch, write_docker_archive};

#[test]
fn thousands_of_blobs_load_with_few_file_descriptors() {
    let dir = scratch();
    let layers: Vec<Vec<u8>> = (0..1500)
        .map(|i| layer_with_file(&format!("f{i}"), format!("{i}").as_bytes()))
        .collect();
    let archive = dir.path().join("many.tar");
    write_docker_archive(&archive, "many:1", &layers);
    // 128 descriptors: one per staged blob (what the fsync queue once held) would run out.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec {} --store {} load -q -i {}",
            airlock_bin().display(),
            dir.path().join("store").display(),
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = Command::new(airlock_bin())
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["inspect", "many:1"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&images.stdout).unwrap();
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1500);
}
