//! Round trips: archives airlock saves load into podman and skopeo with the same image IDs,
//! manifest digests and root filesystems as the originals, and containers run from them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    expected, fixtures, require_tool, scratch, sh, sha256, tar_listing, Airlock, Podman,
};

const APP: &str = "localhost/airlock-test/app:1";
const APP2: &str = "localhost/airlock-test/app2:1";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch dir with a store that holds `fixture`, loaded by airlock.
fn loaded(fixture: &str) -> (tempfile::TempDir, Airlock) {
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&["load", "-q", "-i", s(&fixtures().join(fixture))]);
    (dir, airlock)
}

/// `airlock save -o DIR/NAME ARGS...`; returns the output path.
fn save(airlock: &Airlock, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut all = vec!["save", "-o", s(&out)];
    all.extend_from_slice(args);
    airlock.ok(&all);
    out
}

/// Config digest of `image` in expected.json's entry for `fixture`.
fn want_id(fixture: &str, image: &str) -> String {
    let imgs = expected()[fixture].as_array().unwrap();
    let img = imgs.iter().find(|i| i["names"][0] == image).unwrap();
    img["config_digest"].as_str().unwrap().to_string()
}

/// skopeo's stdout as raw bytes (config and manifest bytes must not be re-encoded).
fn skopeo(args: &[&str]) -> Vec<u8> {
    require_tool("skopeo");
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").args(args);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// sha256 of the config (`--config`) or manifest bytes skopeo reads from `transport_ref`.
fn skopeo_digest(config: bool, transport_ref: &str) -> String {
    let flag = if config { "--config" } else { "--raw" };
    sha256(&skopeo(&["inspect", flag, "--raw", transport_ref]))
}

/// The image ID podman reports, as `sha256:<hex>`.
fn podman_id(podman: &Podman, image: &str) -> String {
    let id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", image]);
    format!("sha256:{}", id.trim())
}

/// One member of a tar file.
fn tar_member(archive: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{} has no member {name}", archive.display());
}

/// RepoTags of every manifest.json entry, in order.
fn repo_tags(archive: &Path) -> Vec<Vec<String>> {
    let mj: serde_json::Value =
        serde_json::from_slice(&tar_member(archive, "manifest.json")).unwrap();
    let entries = mj.as_array().unwrap();
    entries
        .iter()
        .map(|e| serde_json::from_value(e["RepoTags"].clone()).unwrap())
        .collect()
}

/// `podman create` + `podman export` of `image`; returns the listing of the flat rootfs.
fn export(podman: &Podman, image: &str, out: &Path) -> BTreeMap<String, String> {
    let cid = podman.ok(&["create", image, "/bin/sh"]).trim().to_string();
    podman.ok(&["export", "-o", s(out), &cid]);
    podman.ok(&["rm", &cid]);
    tar_listing(out)
}

/// The ROADMAP case: two images sharing a base go through airlock and come out as a plain
/// (docker format) archive that podman and skopeo read with the original image IDs.
#[test]
fn multi_image_docker_archive_loads_in_podman_and_skopeo() {
    let (dir, airlock) = loaded("podman-multi.tar");
    let x = save(&airlock, dir.path(), "x.tar", &[APP, APP2]);
    assert_eq!(
        repo_tags(&x),
        vec![vec![APP.to_string()], vec![APP2.to_string()]]
    );

    let podman = Podman::new();
    let out = podman.ok(&["load", "-i", s(&x)]);
    for (i, image) in [APP, APP2].into_iter().enumerate() {
        assert!(
            out.contains(&format!("Loaded image: {image}")),
            "podman load output: {out}"
        );
        let id = airlock.inspect(image)["Id"].as_str().unwrap().to_string();
        assert_eq!(
            id,
            want_id("podman-multi.tar", image),
            "{image}: airlock's Id"
        );
        assert_eq!(podman_id(&podman, image), id, "{image}: podman's image ID");
        for r in [
            format!("docker-archive:{}:@{i}", s(&x)),
            format!("docker-archive:{}:{image}", s(&x)),
        ] {
            assert_eq!(skopeo_digest(true, &r), id, "{r}: config bytes");
        }
    }
    let names = podman.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, vec![APP2, APP], "podman images");

    // skopeo rewrites the config when it converts to OCI: what it makes of airlock's archive
    // must be byte-identical to what it makes of podman's original.
    let mut copies = Vec::new();
    for (name, src) in [
        ("oci-a", x.clone()),
        ("oci-p", fixtures().join("podman-multi.tar")),
    ] {
        let oci = format!("oci:{}:app", s(&dir.path().join(name)));
        skopeo(&[
            "copy",
            "-q",
            &format!("docker-archive:{}:{APP}", s(&src)),
            &oci,
        ]);
        let cfg = skopeo(&["inspect", "--config", "--raw", &oci]);
        copies.push((skopeo(&["inspect", "--raw", &oci]), cfg));
    }
    assert!(
        copies[0] == copies[1],
        "skopeo copy to oci: manifest or config differ"
    );
}

/// The flattened root filesystem of the app image (whiteouts, opaque dirs, hardlinks,
/// symlinks, long/UTF-8 names, setuid, xattr) is identical, byte for byte, whether podman
/// loaded the original archive or airlock's save of it, from a docker archive source and
/// from a zstd OCI source (whose layers airlock must decompress for manifest.json).
#[test]
fn rootfs_identical_after_round_trip() {
    let dir = scratch();
    let original = Podman::new();
    original.ok(&[
        "load",
        "-i",
        s(&fixtures().join("podman-docker-archive.tar")),
    ]);
    let want = export(&original, APP, &dir.path().join("a.tar"));
    assert_eq!(
        want,
        tar_listing(&fixtures().join("export-rootfs.tar")),
        "fixture export"
    );
    // The fixture's tricky entries really are in the listing being compared.
    assert!(want["data/hello.txt"].starts_with("Regular"));
    assert!(want["data/hl-second.txt"].starts_with("Regular"));
    assert!(want["data/suid-tool"].contains("mode=4755"));
    assert!(want["data/xattr.txt"].contains("SCHILY.xattr.user.test=airlock"));
    assert!(want.contains_key("data/old/new.txt") && want.contains_key("data/long-link"));
    for gone in [
        "data/doomed.txt",
        "data/hl-first.txt",
        "data/old/a.txt",
        "data/old/sub",
    ] {
        assert!(!want.contains_key(gone), "{gone} should be whited out");
    }
    assert!(
        !want.keys().any(|k| k.contains(".wh.")),
        "whiteout markers in the export"
    );

    for fixture in ["podman-docker-archive.tar", "skopeo-oci-zstd-archive.tar"] {
        let (d, airlock) = loaded(fixture);
        let x = save(&airlock, d.path(), "x.tar", &[APP]);
        let podman = Podman::new();
        podman.ok(&["load", "-i", s(&x)]);
        assert_eq!(
            podman_id(&podman, APP),
            want_id(fixture, APP),
            "{fixture}: image ID"
        );
        let got = export(&podman, APP, &d.path().join("b.tar"));
        let diff: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, _)| k)
            .chain(got.keys().filter(|k| !want.contains_key(*k)))
            .collect();
        assert!(diff.is_empty(), "{fixture}: rootfs differs at {diff:?}");
    }
}

/// `--format oci`: a pure OCI archive (no manifest.json) that skopeo and podman read, and the
/// original manifest of an image that came from an OCI archive keeps its digest.
#[test]
fn oci_format_preserves_manifest_digest() {
    let fixture = "skopeo-oci-archive.tar";
    let (dir, airlock) = loaded(fixture);
    let x = save(&airlock, dir.path(), "x.tar", &["--format", "oci", APP]);
    let names: Vec<String> = tar_listing(&x).into_keys().collect();
    assert!(names.contains(&"oci-layout".to_string()) && names.contains(&"index.json".to_string()));
    assert!(
        !names
            .iter()
            .any(|n| n == "manifest.json" || n == "repositories"),
        "{names:?}"
    );

    let want_m = expected()[fixture][0]["manifest_digest"].as_str().unwrap();
    let want_c = want_id(fixture, APP);
    for r in [
        format!("oci-archive:{}", s(&x)),
        format!("oci-archive:{}:{APP}", s(&x)),
    ] {
        assert_eq!(skopeo_digest(false, &r), want_m, "{r}: manifest");
        assert_eq!(skopeo_digest(true, &r), want_c, "{r}: config");
    }
    let podman = Podman::new();
    podman.ok(&["load", "-i", s(&x)]);
    assert_eq!(podman_id(&podman, APP), want_c, "podman's image ID");

    // The hybrid (docker format) save carries the same OCI manifest beside manifest.json.
    let h = save(&airlock, dir.path(), "h.tar", &[APP]);
    let r = format!("oci-archive:{}", s(&h));
    assert_eq!(skopeo_digest(false, &r), want_m, "hybrid");

    // Several images in one OCI archive: skopeo picks each by its full name.
    let (d2, multi) = loaded("podman-multi.tar");
    let x2 = save(&multi, d2.path(), "x2.tar", &["--format", "oci", APP, APP2]);
    for image in [APP, APP2] {
        let r = format!("oci-archive:{}:{image}", s(&x2));
        assert_eq!(skopeo_digest(true, &r), want_id("podman-multi.tar", image));
    }
}

/// `--compress gzip|zstd`: the output is the plain archive compressed; decompressed it loads
/// in podman, and airlock loads the compressed file directly with the same image IDs.
#[test]
fn compressed_saves_load_everywhere() {
    require_tool("gzip");
    require_tool("zstd");
    let (dir, airlock) = loaded("podman-multi.tar");
    let plain = std::fs::read(save(&airlock, dir.path(), "x.tar", &[APP, APP2])).unwrap();
    for (codec, tool) in [("gzip", "gzip"), ("zstd", "zstd")] {
        let z = save(
            &airlock,
            dir.path(),
            &format!("x.{codec}"),
            &["--compress", codec, APP, APP2],
        );
        let magic = std::fs::read(&z).unwrap()[..4].to_vec();
        match codec {
            "gzip" => assert_eq!(magic[..2], [0x1f, 0x8b], "gzip magic"),
            _ => assert_eq!(magic, [0x28, 0xb5, 0x2f, 0xfd], "zstd magic"),
        }
        let out = dir.path().join(format!("{codec}.tar"));
        let f = std::fs::File::create(&out).unwrap();
        sh(Command::new(tool).arg("-dc").arg(&z).stdout(f));
        assert!(
            std::fs::read(&out).unwrap() == plain,
            "{codec}: decompressed != plain save"
        );

        let podman = Podman::new();
        podman.ok(&["load", "-i", s(&out)]);
        let fresh = Airlock::new(&dir.path().join(format!("store-{codec}")));
        let msg = fresh.ok(&["load", "-i", s(&z)]);
        for image in [APP, APP2] {
            let id = want_id("podman-multi.tar", image);
            assert_eq!(podman_id(&podman, image), id, "{codec} {image}: podman");
            assert_eq!(
                fresh.inspect(image)["Id"].as_str(),
                Some(id.as_str()),
                "{codec} {image}"
            );
            assert!(msg.contains(&format!("Loaded image: {image}")), "{msg}");
        }
    }
}

/// Saving the same images twice, or from another store holding them, gives the same bytes.
#[test]
fn saves_are_deterministic() {
    let (dir, airlock) = loaded("podman-multi.tar");
    let (dir2, other) = loaded("podman-multi.tar");
    for codec in ["none", "gzip", "zstd"] {
        let args = ["--compress", codec, APP, APP2];
        let a = std::fs::read(save(&airlock, dir.path(), "a", &args)).unwrap();
        let b = std::fs::read(save(&airlock, dir.path(), "b", &args)).unwrap();
        let c = std::fs::read(save(&other, dir2.path(), "c", &args)).unwrap();
        assert!(a == b, "{codec}: two saves from one store differ");
        assert!(a == c, "{codec}: saves from two stores differ");
    }
}

/// A container runs from images that went podman -> airlock -> podman.
#[test]
fn container_runs_from_round_tripped_image() {
    require_tool("runc");
    let (dir, airlock) = loaded("podman-multi.tar");
    let x = save(&airlock, dir.path(), "x.tar", &[APP, APP2]);
    let podman = Podman::new();
    podman.ok(&["load", "-i", s(&x)]);
    let run =
        "--runtime runc run --rm --network none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096";
    for (image, want) in [
        (APP, "hello from airlock layer 2\n"),
        (APP2, "hello from app2\n"),
    ] {
        let out = podman.ok(&[run.split(' ').collect(), vec![image]].concat());
        assert_eq!(out, want, "{image}: output of its CMD");
    }
}

/// Which images `save` takes: none is a usage error; --match and --all select by name.
#[test]
fn save_selection() {
    let (dir, airlock) = loaded("podman-multi.tar");
    let err = airlock.fails(&["save", "-o", s(&dir.path().join("none.tar"))]);
    assert!(err.contains("--all") && err.contains("--match"), "{err}");
    assert!(
        !dir.path().join("none.tar").exists(),
        "a failed save left its output"
    );

    for (name, args) in [
        ("m.tar", ["--match", "localhost/airlock-test/*"].as_slice()),
        ("a.tar", &["--all"]),
    ] {
        let x = save(&airlock, dir.path(), name, args);
        let mut got = repo_tags(&x);
        got.sort();
        assert_eq!(
            got,
            vec![vec![APP2.to_string()], vec![APP.to_string()]],
            "{args:?}"
        );
        let index: serde_json::Value =
            serde_json::from_slice(&tar_member(&x, "index.json")).unwrap();
        assert_eq!(
            index["manifests"].as_array().unwrap().len(),
            2,
            "{args:?}: index.json"
        );
    }

    // --match selects names: of app's two names only the matching one is saved; a pattern
    // that matches nothing is an error.
    let other = "localhost/other/app:1";
    airlock.ok(&["tag", APP, other]);
    let m2 = save(&airlock, dir.path(), "m2.tar", &["--match", "*/other/*"]);
    assert_eq!(repo_tags(&m2), vec![vec![other.to_string()]]);
    let n = dir.path().join("n.tar");
    let err = airlock.fails(&["save", "--match", "nomatch*", "-o", s(&n)]);
    assert!(err.contains("no image name matches 'nomatch*'"), "{err}");
    assert!(!n.exists(), "a failed save left its output");
    // The archive is meant to be handed on: not private like a temp file.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&m2).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
}
