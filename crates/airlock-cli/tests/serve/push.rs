//! `serve --read-write`: pushes from skopeo, docker and airlock; uploads that lie; a kill -9
//! in the middle of concurrent pushes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{raw, raw_with_body, skopeo_raw, Served};
use crate::artifacts::gallery::{Gallery, APP, SPDX};
use crate::util::{layer_with_file, noise, scratch, sha256, write_docker_archive, Airlock};

fn skopeo_push(source: &str, dest: &str) -> std::process::Output {
    Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            source,
        ])
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap()
}

/// A docker-archive of `example/app:1`: a layer of `big` random bytes (from `seed`) and
/// one small file.
fn app_archive(dir: &Path, big: usize, seed: u64, small: (&str, &[u8])) -> std::path::PathBuf {
    let archive = dir.join("app.tar");
    write_docker_archive(
        &archive,
        "example/app:1",
        &[
            layer_with_file("big.bin", &noise(big, seed)),
            layer_with_file(small.0, small.1),
        ],
    );
    archive
}

/// The store's visible state: its index and the names of its blobs (not `tmp/`, where the
/// server's staging area lives).
fn visible(store: &Path) -> (Vec<u8>, Vec<String>) {
    let index = std::fs::read(store.join("index.json")).unwrap();
    let mut blobs: Vec<String> = std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (index, blobs)
}

#[test]
fn skopeo_docker_and_airlock_push_and_what_they_pushed_pulls_back_byte_for_byte() {
    let dir = scratch();
    let archive = app_archive(dir.path(), 3 << 20, 7, ("a.txt", b"a\n"));
    let server = Airlock::new(&dir.path().join("served"));
    let served = Served::start(&server, &["--read-write"]);
    let host = served.host();

    // skopeo: chunked uploads (POST, PATCH, PUT).
    let out = skopeo_push(
        &format!("docker-archive:{}", archive.display()),
        &format!("{host}/team/app:1"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed = skopeo_raw(&format!("{host}/team/app:1"));
    // Stored under the name it was pushed by (Docker Hub's form for `team/app`).
    assert_eq!(
        server.inspect("team/app:1")["ManifestDigest"],
        sha256(&pushed).as_str()
    );
    assert!(server.ok(&["fsck"]).contains("consistent"));

    // A second push of the same image to another name: every blob mounted or present.
    let out = skopeo_push(
        &format!("docker://{host}/team/app:1"),
        &format!("{host}/team/again:1"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !served.log().contains("PATCH /v2/team/again/"),
        "{}",
        served.log()
    );

    // airlock push, with the referrers: the server indexes them (OCI-Subject), so no
    // fallback tag is written, and the referrers API lists the SBOM.
    let g = Gallery::new();
    let layout = dir.path().join("layout");
    g.write(&layout);
    let near = Airlock::new(&dir.path().join("near"));
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    near.ok(&["push", APP, &format!("{host}/team/gallery:1")]);
    let log = served.log();
    assert!(
        !log.contains(&format!(
            "PUT /v2/team/gallery/manifests/sha256-{} ",
            &g.app_manifest[7..]
        )),
        "{log}"
    );
    let (status, _, body) = raw(
        served.port,
        "GET",
        &format!(
            "/v2/team/gallery/referrers/{}?artifactType={SPDX}",
            g.app_manifest
        ),
        &[],
    );
    assert_eq!(status, 200);
    let index: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["manifests"][0]["digest"], g.sbom.as_str(), "{index}");
    // ...and a pull from the server brings them back.
    let far = Airlock::new(&dir.path().join("far"));
    far.ok(&["pull", &format!("{host}/team/gallery:1")]);
    let referrers = far.inspect(&format!("{host}/team/gallery:1"))["Referrers"].to_string();
    assert!(
        referrers.contains(&g.sbom) && referrers.contains(&g.signature),
        "{referrers}"
    );

    // docker push (gzip layers of its own) and docker pull of it back.
    let tag = format!("{host}/docker/app:1");
    let load = Command::new("docker")
        .args(["load", "-q", "-i", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(load.status.success());
    assert!(Command::new("docker")
        .args(["tag", "example/app:1", &tag])
        .status()
        .unwrap()
        .success());
    let push = Command::new("docker")
        .args(["push", &tag])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["rmi", "-f", &tag, "example/app:1"])
        .output();
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let said = String::from_utf8_lossy(&push.stdout).into_owned();
    let digest = server.inspect("docker/app:1")["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(said.contains(&digest), "{said}");
    let pull = Command::new("docker")
        .args(["pull", &tag])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    assert!(server.ok(&["fsck"]).contains("consistent"));
}

#[test]
fn uploads_and_manifests_that_lie_are_refused_and_nothing_becomes_visible() {
    let dir = scratch();
    let server = Airlock::new(&dir.path().join("served"));
    server.ok(&["images"]); // an empty store
    let served = Served::start(&server, &["--read-write"]);
    let before = visible(&server.store);
    let blob = b"some layer bytes".to_vec();
    let truth = sha256(&blob);
    let lie = format!("sha256:{}", "b".repeat(64));
    let send = |method: &str, path: &str, body: &[u8], headers: &[&str]| {
        let mut all: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        all.push(format!("Content-Length: {}", body.len()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (status, _, answer) = raw_with_body(served.port, method, path, &all, body);
        (status, String::from_utf8_lossy(&answer).into_owned())
    };

    // A monolithic upload whose bytes are not the digest it names.
    let (status, body) = send(
        "POST",
        &format!("/v2/t/a/blobs/uploads/?digest={lie}"),
        &blob,
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("DIGEST_INVALID") && body.contains(&truth),
        "{body}"
    );
    let (status, _, _) = raw(served.port, "HEAD", &format!("/v2/t/a/blobs/{lie}"), &[]);
    assert_eq!(status, 404);
    let (status, _, _) = raw(served.port, "HEAD", &format!("/v2/t/a/blobs/{truth}"), &[]);
    assert_eq!(
        status, 404,
        "a refused upload is visible under its true digest"
    );

    // A chunked one, the same.
    let (status, head, _) = raw(
        served.port,
        "POST",
        "/v2/t/a/blobs/uploads/",
        &["Content-Length: 0"],
    );
    assert_eq!(status, 202, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap()
        .trim()
        .to_string();
    let (status, _) = send("PATCH", &location, &blob, &[]);
    assert_eq!(status, 202);
    // A chunk that does not start where the last ended: 416.
    let (status, _) = send("PATCH", &location, b"x", &["Content-Range: 5-5"]);
    assert_eq!(status, 416);
    let (status, body) = send("PUT", &format!("{location}?digest={lie}"), b"", &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    // The session is gone after it failed.
    let (status, body) = send("PUT", &format!("{location}?digest={truth}"), b"", &[]);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");

    // A manifest naming a blob nobody pushed; one lying about its own digest; one lying
    // about a blob's size; one that is not a manifest.
    let (status, _) = send(
        "POST",
        &format!("/v2/t/a/blobs/uploads/?digest={truth}"),
        &blob,
        &[],
    );
    assert_eq!(status, 201);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = sha256(config);
    let (status, _) = send(
        "POST",
        &format!("/v2/t/a/blobs/uploads/?digest={config_digest}"),
        config,
        &[],
    );
    assert_eq!(status, 201);
    let manifest = |layer: &str, size: usize| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
        }))
        .unwrap()
    };
    let ct = "Content-Type: application/vnd.oci.image.manifest.v1+json";
    let (status, body) = send("PUT", "/v2/t/a/manifests/1", &manifest(&lie, 5), &[ct]);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("MANIFEST_BLOB_UNKNOWN") && body.contains(&lie),
        "{body}"
    );
    let good = manifest(&truth, blob.len());
    let (status, body) = send("PUT", &format!("/v2/t/a/manifests/{lie}"), &good, &[ct]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    let (status, body) = send("PUT", "/v2/t/a/manifests/1", &manifest(&truth, 3), &[ct]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MANIFEST_INVALID"), "{body}");
    let (status, body) = send(
        "PUT",
        "/v2/t/a/manifests/1",
        b"{\"not\": \"a manifest\"}",
        &[ct],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("MANIFEST_INVALID"), "{body}");
    assert_eq!(
        visible(&server.store),
        before,
        "a refused push changed the store"
    );

    // The honest manifest goes in, with its tag, at once.
    let (status, body) = send("PUT", "/v2/t/a/manifests/1", &good, &[ct]);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server.inspect("t/a:1")["ManifestDigest"],
        sha256(&good).as_str()
    );
    assert!(server.ok(&["fsck"]).contains("consistent"));
}

#[test]
fn a_kill_9_in_the_middle_of_concurrent_pushes_leaves_the_store_consistent() {
    let dir = scratch();
    let mut archives = Vec::new();
    for i in 0..4u64 {
        let a = dir.path().join(format!("img{i}.tar"));
        write_docker_archive(
            &a,
            &format!("example/img{i}:1"),
            &[
                layer_with_file("big.bin", &noise(24 << 20, 100 + i)),
                layer_with_file("n", &[i as u8]),
            ],
        );
        archives.push(a);
    }
    let server = Airlock::new(&dir.path().join("served"));
    for round in 0..3 {
        let mut served = Served::start(&server, &["--read-write"]);
        let host = served.host();
        let pushes: Vec<_> = archives
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Command::new("skopeo")
                    .args(["copy", "-q", "--dest-tls-verify=false"])
                    .arg(format!("docker-archive:{}", a.display()))
                    .arg(format!("docker://{host}/kill/img{i}:1"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        if round < 2 {
            // Part-way: round 0 once uploads are streaming, before any manifest; round 1
            // once the first image is committed, with the others still in flight.
            let moment = if round == 0 {
                "PATCH /v2/kill/"
            } else {
                "/manifests/1 201"
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !served.log().contains(moment) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {moment:?}: {}",
                    served.log()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let committed_before = served.log().matches("/manifests/1 201").count();
            served.kill_9();
            assert!(
                committed_before < 4,
                "round {round}: every push had finished already"
            );
            for mut p in pushes {
                let _ = p.wait();
            }
            let fsck = server.ok(&["fsck"]);
            assert!(fsck.contains("consistent"), "round {round}: {fsck}");
            // An image is there whole or not at all.
            for i in 0..4 {
                let (found, _) = server.run_text(&["inspect", &format!("kill/img{i}:1")]);
                if found {
                    let got = server.inspect(&format!("kill/img{i}:1"));
                    assert_eq!(got["Complete"], true, "round {round}: {got}");
                    assert_eq!(got["Layers"].as_array().unwrap().len(), 2);
                }
            }
        } else {
            for mut p in pushes {
                assert!(
                    p.wait().unwrap().success(),
                    "a push after the restarts failed"
                );
            }
            for i in 0..4 {
                let name = format!("kill/img{i}:1");
                server.ok(&["inspect", &name]);
            }
            assert!(server.ok(&["fsck"]).contains("consistent"));
        }
    }
}

/// Progress on the server's side of a push: with `--progress plain` a line per blob it
/// stored, named by digest, and a summary when it stops.
#[test]
fn serve_reports_each_pushed_blob_with_progress_plain() {
    let dir = scratch();
    let archive = app_archive(dir.path(), 2 << 20, 11, ("b.txt", b"b\n"));
    let server = Airlock::new(&dir.path().join("served"));
    let mut served = Served::start(&server, &["--read-write", "--progress", "plain"]);
    let host = served.host();
    let out = skopeo_push(
        &format!("docker-archive:{}", archive.display()),
        &format!("{host}/team/app:1"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Value =
        serde_json::from_slice(&skopeo_raw(&format!("{host}/team/app:1"))).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for l in manifest["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    assert!(served.stop().success());
    let log = served.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("Receiving "))
        .collect();
    for b in &blobs {
        let short = &b[..7 + 12];
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("Receiving {short} ")) && l.ends_with(" done")),
            "no line for {b}:\n{log}"
        );
    }
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("Receiving done: 3 blobs")),
        "{log}"
    );
    // Uploads that never completed are not reported done.
    assert_eq!(lines.len(), blobs.len() + 1, "{log}");
}
