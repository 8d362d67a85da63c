//! A shipment across the gap (issue 13, "done when"): a registry of several repositories and
//! tags, some signed, one multi-platform; a shipment file with every kind of tag selector
//! resolves to exactly the digests the registry names; `sync --output` makes the archive a
//! far-side store loads to hold exactly those images under their renamed names; shipped
//! again against the far side's inventory, the archive holds no blob; a new tag ships only
//! its new layers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::util::{layer_with_file, require_tool, tar_listing, write_docker_archive};

use super::*;
use std::path::PathBuf;

const MIRROR: &str = "registry.internal/mirror";

/// Two string fields of every object of a JSON array, as a map.
fn pairs(list: &Value, key: &str, value: &str) -> BTreeMap<String, String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i[key].as_str().unwrap().to_string(),
                i[value].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What a store's inventory says it holds: name -> digest.
fn held(cli: &Cli, sb: &Sandbox, label: &str) -> (PathBuf, BTreeMap<String, String>) {
    let path = sb.path().join(format!("{label}-inventory.json"));
    cli.ok(&["inventory", "-o", path.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    (path, pairs(&doc["images"], "name", "digest"))
}

/// The blob digests an archive holds.
fn blobs_in(archive: &Path) -> BTreeSet<String> {
    tar_listing(archive)
        .keys()
        .filter_map(|p| p.strip_prefix("blobs/sha256/"))
        .map(|h| format!("sha256:{h}"))
        .collect()
}

#[test]
fn a_shipment_crosses_once_then_only_what_the_far_side_lacks() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let host = reg.host();
    let build = sb.store("build");
    // Every tag its own image on one shared base layer.
    let base = layer_with_file("base.txt", &crate::util::noise(64 << 10, 7));
    let push_tag = |tag: &str| {
        let archive = sb.path().join(format!("app-{tag}.tar"));
        let app = layer_with_file("app.txt", format!("app {tag}\n").as_bytes());
        write_docker_archive(&archive, &format!("build/app:{tag}"), &[base.clone(), app]);
        build.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        build.ok(&[
            "push",
            &format!("build/app:{tag}"),
            &format!("{host}/team/app:{tag}"),
        ]);
    };
    for tag in [
        "1.4.1", "1.4.2", "1.5.0", "1.5.3", "2.0.0", "v2.1", "v2.10", "3.0.0", "nightly",
    ] {
        push_tag(tag);
    }
    let (key, _) = crate::trust::key_pair(sb.path(), "signer", "ec");
    let signed = format!("{host}/team/app:1.4.2");
    build.ok(&["pull", &signed]);
    build.ok(&["sign", &signed, "--key", key.to_str().unwrap()]);
    build.ok(&["push", &signed]);
    let layout = sb.path().join("multi-layout");
    let (index, _, _) = super::two_platform_layout(&layout);
    let multi = format!("{host}/multi/img:1");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{multi}"),
    ]);

    let dir = sb.path().join("shipment");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shipment.yaml");
    write_shipment(
        &file,
        &format!(
            "  - source: {host}/team/app\n    tags: [\"1.4.2\", \"1.5.*\", \"/^v2\\\\.[0-9]+$/\", \">=1.4 <1.4.2\"]\n    latest: 1\n    referrers: keep\n  - source: {multi}\n    platforms: [all]\nrename: \"{MIRROR}/{{repo}}\"\n"
        ),
    );
    let f = file.to_str().unwrap();

    // Every selector, resolved to what the registry names.
    let near = sb.store("near");
    let plan = dry_run_plan(&near, f);
    let tags = ["1.4.1", "1.4.2", "1.5.0", "1.5.3", "3.0.0", "v2.1", "v2.10"];
    let mut want: BTreeMap<String, String> = tags
        .iter()
        .map(|t| {
            let r = format!("{host}/team/app:{t}");
            let d = sha256(&skopeo_raw(&r, &[]));
            (r, d)
        })
        .collect();
    want.insert(multi.clone(), index.clone());
    assert_eq!(pairs(&plan, "reference", "digest"), want, "{plan:#}");
    let multi_row = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["reference"] == multi.as_str());
    let multi_row = multi_row.unwrap();
    assert_eq!(
        multi_row["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(
        multi_row["target"],
        format!("{MIRROR}/multi/img:1").as_str()
    );
    assert!(multi_row["size"].as_u64().unwrap() > 0);

    // First crossing: the far side holds nothing.
    let far = sb.store("far");
    let (empty, _) = held(&far, &sb, "far-empty");
    let first = sb.path().join("first.tar");
    let fa = first.to_str().unwrap();
    near.ok(&[
        "sync",
        "-f",
        f,
        "--incremental-from",
        empty.to_str().unwrap(),
        "-o",
        fa,
    ]);
    let made: Value = serde_json::from_str(&near.ok(&["review", "--json", fa])).unwrap();
    assert_eq!(made["origin"]["shipment"]["file"], f);
    assert_eq!(
        made["origin"]["shipment"]["digest"],
        sha256(&fs::read(&file).unwrap()).as_str()
    );
    far.ok(&["load", "-i", fa]);
    let (inventory, names) = held(&far, &sb, "far-1");
    let mut expected: BTreeMap<String, String> = want
        .iter()
        .map(|(r, d)| (r.replace(&host, MIRROR), d.clone()))
        .collect();
    // The signature crossed with its image (a referrer by digest, no name of its own).
    let signature = build.inspect(&signed)["Referrers"].clone();
    assert_eq!(signature.as_array().map(Vec::len), Some(1), "{signature}");
    let renamed = signed.replace(&host, MIRROR);
    assert_eq!(far.inspect(&renamed)["Referrers"], signature);
    assert_eq!(names, expected, "the far side holds exactly the shipment");
    assert_eq!(
        far.inspect(&format!("{MIRROR}/multi/img:1"))["Complete"],
        true
    );

    // Second crossing, the far side's inventory given: nothing it holds crosses again.
    let second = sb.path().join("second.tar");
    let sa = second.to_str().unwrap();
    let out = near.run(&[
        "sync",
        "-f",
        f,
        "--incremental-from",
        inventory.to_str().unwrap(),
        "-o",
        sa,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Shipping 0 image names"), "{err}");
    assert_eq!(blobs_in(&second), BTreeSet::new(), "no blob crosses twice");
    let made: Value = serde_json::from_str(&near.ok(&["review", "--json", sa])).unwrap();
    assert_eq!(
        made["origin"]["inventory"],
        sha256(&fs::read(&inventory).unwrap()).as_str()
    );
    let out = far.ok(&["load", "-i", sa]);
    assert!(out.contains("carries no image"), "{out}");
    assert_eq!(
        held(&far, &sb, "far-2").1,
        expected,
        "an empty shipment changes nothing"
    );

    // A new tag: only its own layer (with its manifest and config) crosses.
    push_tag("1.5.4");
    let new_ref = format!("{host}/team/app:1.5.4");
    let manifest: Value = serde_json::from_slice(&skopeo_raw(&new_ref, &[])).unwrap();
    let third = sb.path().join("third.tar");
    let ta = third.to_str().unwrap();
    near.ok(&[
        "sync",
        "-f",
        f,
        "--incremental-from",
        inventory.to_str().unwrap(),
        "-o",
        ta,
    ]);
    let want_blobs: BTreeSet<String> = [
        sha256(&skopeo_raw(&new_ref, &[])),
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        manifest["layers"][1]["digest"]
            .as_str()
            .unwrap()
            .to_string(),
    ]
    .into();
    assert_eq!(blobs_in(&third), want_blobs, "only the new tag's own blobs");
    far.ok(&["load", "-i", ta]);
    expected.insert(
        format!("{MIRROR}/team/app:1.5.4"),
        sha256(&skopeo_raw(&new_ref, &[])),
    );
    assert_eq!(held(&far, &sb, "far-3").1, expected);
    let fsck = far.ok(&["fsck"]);
    assert!(!fsck.contains("missing"), "{fsck}");
}

/// Images the Docker Engine tags into the engine by this test, removed when dropped.
struct EngineTags(Vec<String>);

impl Drop for EngineTags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "-f", t])
                .output();
        }
    }
}

/// The other kinds of entry: engine images by glob, an archive and an OCI layout on disk;
/// shipped split into volumes and signed, renamed, and loaded on the far side.
#[test]
fn engine_images_archives_and_layouts_ship_split_signed_and_renamed() {
    require_tool("docker");
    let sb = Sandbox::new();
    let d = sb.path();
    let engine_names = ["localhost/ship13/engine-a:1", "localhost/ship13/engine-b:2"];
    let _cleanup = EngineTags(engine_names.iter().map(|s| s.to_string()).collect());
    for (i, name) in engine_names.iter().enumerate() {
        let a = d.join(format!("engine-{i}.tar"));
        let content = format!("engine {i}\n");
        write_docker_archive(&a, name, &[layer_with_file("e", content.as_bytes())]);
        let out = std::process::Command::new("docker")
            .args(["load", "-q", "-i", a.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let tool = d.join("tool.tar");
    write_docker_archive(
        &tool,
        "localhost/ship13/tool:3",
        &[layer_with_file("t", &crate::util::noise(3 << 20, 5))],
    );
    let layout = d.join("layout");
    let (index, _, _) = super::two_platform_layout(&layout);
    let file = d.join("ship.yaml");
    write_shipment(
        &file,
        &format!("  - docker-daemon: \"localhost/ship13/engine-*\"\n  - archive: tool.tar\n  - archive: layout\nrename: \"{MIRROR}/{{repo}}\"\n"),
    );
    let f = file.to_str().unwrap();
    let near = sb.store("near");
    let plan = dry_run_plan(&near, f);
    let refs: Vec<&str> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "docker-daemon:localhost/ship13/engine-a:1",
            "docker-daemon:localhost/ship13/engine-b:2",
            &format!("archive:{}", tool.display()),
            &format!("archive:{}", layout.display()),
        ],
        "{plan:#}"
    );

    let (key, public) = crate::trust::key_pair(d, "shipper", "ec");
    let out_base = d.join("stick/ship.tar");
    fs::create_dir_all(out_base.parent().unwrap()).unwrap();
    near.ok(&[
        "sync",
        "-f",
        f,
        "-o",
        out_base.to_str().unwrap(),
        "--split",
        "1M",
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    let first = d.join("stick/ship.tar.000");
    assert!(d.join("stick/ship.tar.003").exists(), "several volumes");
    let far = sb.store("far");
    let review = far.ok(&[
        "review",
        first.to_str().unwrap(),
        "--trusted-key",
        public.to_str().unwrap(),
    ]);
    assert!(review.contains("Manifest signature: verified"), "{review}");
    assert!(review.contains("Made from shipment"), "{review}");
    far.ok(&["load", "-i", out_base.to_str().unwrap()]);
    let names: BTreeSet<String> = held(&far, &sb, "far").1.into_keys().collect();
    let want: BTreeSet<String> = [
        format!("{MIRROR}/ship13/engine-a:1"),
        format!("{MIRROR}/ship13/engine-b:2"),
        format!("{MIRROR}/ship13/tool:3"),
        format!("{MIRROR}/library/multi:latest"),
    ]
    .into();
    assert_eq!(names, want);
    assert_eq!(
        far.inspect(&format!("{MIRROR}/library/multi:latest"))["IndexDigest"],
        index.as_str()
    );
}
