//! Archives built so that two readers see different images (issue 10, A), with the real
//! Docker Engine as the oracle for what a Go reader sees: airlock refuses them, naming the
//! entry, rather than verify one image while docker loads another.

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
