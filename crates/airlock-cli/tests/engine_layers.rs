//! `docker load` of archives whose images keep compressed layers: gzip layers are pointed at
//! as they are, zstd layers through an uncompressed copy (Docker 20.10 reads no zstd).

use crate::util::{docker, fixtures, require_tool, scratch, Airlock, DockerTags as Tags};

#[test]
fn docker_loads_saved_images_with_gzip_and_zstd_layers_and_runs_them() {
    require_tool("docker");
    let pid = std::process::id();
    let mut tags = Tags(Vec::new());
    for (fixture, layer_type) in [
        ("podman-oci-archive.tar", "gzip"),
        ("skopeo-oci-zstd-archive.tar", "zstd"),
    ] {
        let dir = scratch();
        let airlock = Airlock::new(&dir.path().join("store"));
        airlock.ok(&[
            "load",
            "-q",
            "-i",
            fixtures().join(fixture).to_str().unwrap(),
        ]);
        let name = format!("localhost/airlock-layers-{pid}/{layer_type}:1");
        airlock.ok(&["tag", "localhost/airlock-test/app:1", &name]);
        let img = airlock.inspect(&name);
        assert!(
            img["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["MediaType"].as_str().unwrap().ends_with(layer_type)),
            "{fixture}: expected {layer_type} layers: {img}"
        );
        let saved = dir.path().join("saved.tar");
        airlock.ok(&["save", "-o", saved.to_str().unwrap(), &name]);
        tags.0.push(name.clone());
        docker(&["load", "-i", saved.to_str().unwrap()]);
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &name]);
        assert_eq!(
            id.trim(),
            img["Id"].as_str().unwrap(),
            "{fixture}: image ID in docker"
        );
        assert_eq!(
            docker(&["run", "--rm", &name]),
            "hello from airlock layer 2\n",
            "{fixture}"
        );
    }
}
