//! The far side's inventory describes its layers (issue 14, 1): each layer's diffID, the
//! image and position it belongs to, and a content fingerprint by which a new release of a
//! layer is found to overlap its previous release and nothing unrelated; it stays small.

use std::collections::HashSet;

use base64::Engine as _;

use crate::util::{noise, scratch, write_docker_archive, Airlock};

/// A layer tar of these files, in this order.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *content).unwrap();
    }
    b.into_inner().unwrap()
}

fn inventory(store: &Airlock, path: &std::path::Path) -> serde_json::Value {
    store.ok(&["inventory", "-o", path.to_str().unwrap()]);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn chunks_of(layer: &serde_json::Value) -> Vec<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(layer["chunks"].as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn inventory_fingerprints_find_the_previous_release_of_a_layer() {
    let dir = scratch();
    let d = dir.path();
    let lib = noise(6 << 20, 1);
    let mut lib2 = lib.clone();
    lib2[3 << 20..(3 << 20) + 200].copy_from_slice(&noise(200, 2)); // a patch release
    let app = noise(1 << 20, 3);
    let v1 = layer(&[("usr/lib/libx.so", &lib), ("app/main", &app)]);
    let v2 = layer(&[("usr/lib/libx.so", &lib2), ("app/main", &app)]);
    let other = layer(&[("opt/other", &noise(4 << 20, 4))]);
    let far = Airlock::new(&d.join("far"));
    for (name, l) in [
        ("localhost/fp/app:1", &v1),
        ("localhost/fp/other:1", &other),
    ] {
        let a = d.join("in.tar");
        write_docker_archive(&a, name, std::slice::from_ref(l));
        far.ok(&["load", "-q", "-i", a.to_str().unwrap()]);
    }
    let inv = inventory(&far, &d.join("far.json"));
    let layers = inv["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{inv:#}");
    let app1 = layers
        .iter()
        .find(|l| l["image"] == "localhost/fp/app:1")
        .unwrap();
    let inspect = far.inspect("localhost/fp/app:1");
    assert_eq!(
        app1["diffId"], inspect["RootFS"]["Layers"][0],
        "{inspect:#}"
    );
    assert_eq!(app1["position"], 0);

    // The next release, seen on the near side.
    let near = Airlock::new(&d.join("near"));
    let a = d.join("v2.tar");
    write_docker_archive(&a, "localhost/fp/app:2", std::slice::from_ref(&v2));
    near.ok(&["load", "-q", "-i", a.to_str().unwrap()]);
    let mine = inventory(&near, &d.join("near.json"));
    let new = chunks_of(&mine["layers"][0]);
    let share = |l: &serde_json::Value| {
        let old: HashSet<u64> = chunks_of(l).into_iter().collect();
        new.iter().filter(|c| old.contains(c)).count()
    };
    let with_v1 = share(app1);
    let other1 = layers
        .iter()
        .find(|l| l["image"] == "localhost/fp/other:1")
        .unwrap();
    assert!(
        with_v1 * 10 >= new.len() * 9,
        "{with_v1} of {} chunks shared with the previous release",
        new.len()
    );
    assert_eq!(
        share(other1),
        0,
        "nothing in common with an unrelated layer"
    );

    // Small: bytes of fingerprint per GiB of layers (uncompressed here).
    let print_bytes: usize = layers
        .iter()
        .map(|l| l["chunks"].as_str().unwrap().len())
        .sum();
    let layer_bytes = (v1.len() + other.len()) as f64;
    let per_gib = print_bytes as f64 / layer_bytes * (1u64 << 30) as f64;
    assert!(per_gib < 256.0 * 1024.0, "{per_gib} bytes per GiB");
}
