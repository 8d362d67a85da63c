//! `airlock sync -f shipment.yaml` against the real distribution registry: tag selectors,
//! a list file and Kubernetes YAML resolved to digests, planned against the store, pulled,
//! and a failure listed at the end without stopping the rest; and a sync killed mid-pull,
//! resumed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::util::{layer_with_file, write_docker_archive};

use super::*;

#[test]
fn a_shipment_file_is_planned_pulled_and_planned_again_as_held() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let host = reg.host();
    let near = sb.store("near");
    for (name, content) in [
        ("example/app:1", &b"app\n"[..]),
        ("example/tool:1", b"tool\n"),
    ] {
        let archive = sb
            .path()
            .join(format!("{}.tar", name.replace([':', '/'], "-")));
        write_docker_archive(&archive, name, &[layer_with_file("f", content)]);
        near.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    }
    for tag in ["1.4.1", "1.4.2", "1.5.0", "2.0.0", "nightly"] {
        near.ok(&["push", "example/app:1", &format!("{host}/team/app:{tag}")]);
    }
    near.ok(&["push", "example/tool:1", &format!("{host}/other/tool:1")]);

    let dir = sb.path().join("shipment");
    fs::create_dir_all(dir.join("deploy")).unwrap();
    fs::write(
        dir.join("images.txt"),
        format!("# tools\n{host}/other/tool:1\n{host}/other/tool:missing\n"),
    )
    .unwrap();
    fs::write(
        dir.join("deploy/app.yaml"),
        format!("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/team/app:1.5.0\n"),
    )
    .unwrap();
    let file = dir.join("shipment.yaml");
    write_shipment(
        &file,
        &format!("  - source: {host}/team/app\n    tags: [\"1.4.*\"]\n    latest: 1\n  - list: images.txt\n  - kubernetes: deploy/\n"),
    );
    let far = sb.store("far");
    let f = file.to_str().unwrap();

    // The plan: 1.4.* and the newest release by semver, the list, the Deployment's image;
    // the missing tag is listed as a failure, the rest still planned.
    let out = far.run(&["sync", "-f", f, "--dry-run", "--format", "json"]);
    assert!(
        !out.status.success(),
        "a missing tag must make the exit code non-zero"
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refs: Vec<&str> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    let want = [
        format!("{host}/team/app:1.4.1"),
        format!("{host}/team/app:1.4.2"),
        format!("{host}/team/app:2.0.0"),
        format!("{host}/other/tool:1"),
        format!("{host}/other/tool:missing"),
        format!("{host}/team/app:1.5.0"),
    ];
    assert_eq!(
        refs,
        want.iter().map(String::as_str).collect::<Vec<_>>(),
        "{plan}"
    );
    let app_digest = sha256(&skopeo_raw(&format!("{host}/team/app:1.4.1"), &[]));
    assert_eq!(plan[0]["digest"], app_digest.as_str());
    assert_eq!(plan[0]["inStore"], false);
    assert!(plan[4]["error"].as_str().is_some(), "{plan}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("other/tool:missing"));

    // The sync pulls every one it can and names the one it could not.
    let out = far.run(&["sync", "-f", f]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains("1 of 6 images could not be synced") && err.contains("tool:missing"),
        "{err}"
    );
    for r in want.iter().filter(|r| !r.ends_with("missing")) {
        far.ok(&["inspect", r]);
    }
    // Planned again: what it pulled is held now.
    let out = far.run(&["sync", "-f", f, "--dry-run"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(table.matches("in store").count(), 5, "{table}");
    assert!(!table.contains(" new"), "{table}");

    // A mistake in the file is one sentence naming its line, and nothing is asked of anyone.
    write_shipment(
        &file,
        &format!("  - source: {host}/team/app\n    tags: [\">=x\"]\n"),
    );
    let err = far.fails(&["sync", "-f", f, "--dry-run"]);
    assert!(
        err.contains("line 4") && err.contains("semver range"),
        "{err}"
    );
}

/// A sync killed while it pulls (the registry holds two layers back) leaves the layer it
/// had finished staged; the rerun fetches only the other two, and the store ends whole.
#[test]
fn a_sync_killed_mid_pull_fetches_only_the_unfinished_blobs_again() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let archive = sb.path().join("big3.tar");
    let image = "localhost/big/three:1";
    big_image(&archive, image, &[24 << 20, 24 << 20, 24 << 20], 13);
    let build = sb.store("build");
    build.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let layers = layer_digests(&build.inspect(image));
    let hold = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let held = Arc::new(AtomicUsize::new(0));
    let proxy = {
        let (hold, held) = (hold.clone(), held.clone());
        let later: Vec<String> = layers[1..].to_vec();
        Proxy::start(reg.port, move |req, forward| {
            let later_layer = req.method == "GET"
                && later
                    .iter()
                    .any(|l| req.path().ends_with(&format!("/blobs/{l}")));
            if later_layer && hold.load(Ordering::SeqCst) {
                held.fetch_add(1, Ordering::SeqCst);
                return Reply::Hang;
            }
            Reply::Send(forward(req))
        })
    };
    let remote = format!("{}/t13/big:1", proxy.host());
    build.ok(&["push", image, &format!("{}/t13/big:1", reg.host())]);
    let file = sb.path().join("shipment.yaml");
    write_shipment(&file, &format!("  - source: {remote}\n"));
    let f = file.to_str().unwrap();
    let far = sb.store("far");
    let far_root = sb.path().join("far");
    let staged_first = || {
        fs::read_dir(far_root.join("tmp"))
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with("resume-pull-")
                        && e.path().join(&layers[0][7..]).exists()
                })
            })
            .unwrap_or(false)
    };
    let mut child = far
        .cmd()
        .args(["sync", "-f", f, "--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the first layer staged and a later one held",
        Duration::from_secs(60),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("airlock sync ended early ({status})");
            }
            staged_first() && held.load(Ordering::SeqCst) >= 1
        },
    );
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
    hold.store(false, Ordering::SeqCst);
    let mark = proxy.seen().len();

    let out = far.run(&["sync", "-f", f]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Resumed the pull of"), "{err}");
    let again = &proxy.seen()[mark..];
    let fetched = |l: &str| {
        again
            .iter()
            .filter(|s| s.method == "GET" && s.path().ends_with(&format!("/blobs/{l}")))
            .count()
    };
    assert_eq!(
        fetched(&layers[0]),
        0,
        "the finished layer is not fetched again"
    );
    assert_eq!(fetched(&layers[1]), 1);
    assert_eq!(fetched(&layers[2]), 1);
    assert_eq!(layer_digests(&far.inspect(&remote)), layers);
    let fsck = far.ok(&["fsck"]);
    assert!(!fsck.to_lowercase().contains("missing"), "{fsck}");
    let left: Vec<String> = fs::read_dir(far_root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("resume-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
