//! Registry protocol details: digests checked on pull, chunked uploads, resumed pushes.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{expected, sha256, tree_hash};

use super::*;

// ------------------------------------------------------------------ 7. a lying registry

#[test]
fn a_registry_that_lies_about_a_digest_is_caught_and_the_store_is_untouched() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let want = &expected()["skopeo-oci-dir"][0];
    let true_manifest = want["manifest_digest"].as_str().unwrap().to_string();
    let layers: Vec<String> = want["layer_digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    skopeo(&[
        "copy",
        "-q",
        "--insecure-policy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:app", fx("skopeo-oci-dir")),
        &format!("docker://{}/t7/app:1", reg.host()),
    ]);
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-multi.tar")]);
    let before = tree_hash(&cli.airlock.store);
    let images = cli.ok(&["images"]);

    type Lie = fn(&Request, &mut Response, &[String], u16);
    let lies: [(&str, &str, Lie); 3] = [
        // The body changes, the Docker-Content-Digest header still names the original.
        ("manifest by tag", ":1", |req, resp, _, _| {
            if req.method == "GET" && req.path().contains("/manifests/") {
                resp.body.extend_from_slice(b"\n");
            }
        }),
        // Asked by digest, answers another document and no header.
        ("manifest by digest", "@", |req, resp, _, _| {
            if req.method == "GET" && req.path().contains("/manifests/") {
                resp.remove_header("Docker-Content-Digest");
                resp.body.extend_from_slice(b" ");
            }
        }),
        // A layer answered with another (valid) layer's bytes.
        ("layer blob", ":1", |req, resp, layers, upstream| {
            if req.method == "GET" && req.path().ends_with(&layers[layers.len() - 1]) {
                let other = http(
                    upstream,
                    "GET",
                    &req.path().replace(&layers[layers.len() - 1], &layers[1]),
                );
                resp.body = other.body;
            }
        }),
    ];
    for (what, how, lie) in lies {
        let served: Arc<Mutex<Vec<String>>> = Arc::default();
        let proxy = {
            let (served, layers, upstream) = (served.clone(), layers.clone(), reg.port);
            Proxy::start(reg.port, move |req, forward| {
                let mut resp = forward(req);
                if resp.status == 200 {
                    let before = resp.body.clone();
                    lie(req, &mut resp, &layers, upstream);
                    if resp.body != before {
                        served.lock().unwrap().push(sha256(&resp.body));
                    }
                }
                Reply::Send(resp)
            })
        };
        let reference = match how {
            "@" => format!("{}/t7/app@{true_manifest}", proxy.host()),
            _ => format!("{}/t7/app:1", proxy.host()),
        };
        let err = cli.fails(&["pull", &reference]);
        let lied = served.lock().unwrap().clone();
        assert_eq!(lied.len(), 1, "{what}: the proxy should have lied once");
        let expected_digest = if what == "layer blob" {
            layers[layers.len() - 1].clone()
        } else {
            true_manifest.clone()
        };
        assert!(
            err.contains(&format!("expected {expected_digest}, got {}", lied[0])),
            "{what}: the error should name both digests:\n{err}"
        );
        assert!(
            err.contains("served damaged content") && err.contains("nothing was stored"),
            "{what}: the error should blame the registry, not an archive:\n{err}"
        );
        assert_eq!(
            tree_hash(&cli.airlock.store),
            before,
            "{what}: store changed"
        );
        assert_eq!(cli.ok(&["images"]), images, "{what}");
    }
}

// ------------------------------------------------------------------ 8. chunked upload

#[test]
fn a_large_blob_goes_up_in_chunks() {
    const CHUNK: usize = 32 << 20;
    let reg = RegistryServer::start();
    let proxy = Proxy::transparent(reg.port);
    let sb = Sandbox::new();
    let archive = sb.path().join("big.tar");
    big_image(&archive, "localhost/big/one:1", &[40 << 20], 80);
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let local = cli.inspect("localhost/big/one:1");
    let layer = &local["Layers"][0];
    let (digest, size) = (
        layer["Digest"].as_str().unwrap(),
        layer["Size"].as_u64().unwrap() as usize,
    );
    assert!(size > CHUNK);

    let dest = format!("{}/t8/big:1", proxy.host());
    let out = cli.ok(&["push", "localhost/big/one:1", &dest]);
    assert!(out.contains("2 blobs sent"), "{out}");

    let seen = proxy.seen();
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    let ranges: Vec<(String, usize)> = patches
        .iter()
        .map(|s| {
            let range = s.header("Content-Range").unwrap_or("(none)");
            (range.to_string(), s.body_len)
        })
        .collect();
    let want_ranges = [
        (format!("0-{}", CHUNK - 1), CHUNK),
        (format!("{CHUNK}-{}", size - 1), size - CHUNK),
    ];
    assert_eq!(
        ranges, want_ranges,
        "PATCH requests (Content-Range, body length)"
    );
    let commits: Vec<(String, usize)> = seen
        .iter()
        .filter_map(|s| s.committed_digest().map(|d| (d, s.body_len)))
        .collect();
    assert!(
        commits.contains(&(digest.to_string(), 0)),
        "the chunked blob is committed by an empty PUT: {commits:?}"
    );

    let direct = format!("{}/t8/big:1", reg.host());
    let remote = skopeo_inspect(&direct, &[]);
    assert_eq!(remote["Digest"], local["ManifestDigest"]);
    assert_eq!(remote["Layers"], serde_json::json!([digest]));
    let blob = http(reg.port, "GET", &format!("/v2/t8/big/blobs/{digest}"));
    assert_eq!(blob.body.len(), size);
    assert_eq!(
        sha256(&blob.body),
        digest,
        "the registry holds the right bytes"
    );
}

// ------------------------------------------------------------------ 9. interrupted push resumes

/// The proxy lets the config and the first layer through and holds the commits of the other
/// two layers; airlock is SIGKILLed once the first layer is in the registry. Pushing again
/// sends only the two missing layers.
#[test]
fn an_interrupted_push_resumes_sending_only_missing_blobs() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let archive = sb.path().join("big3.tar");
    let image = "localhost/big/three:1";
    big_image(&archive, image, &[40 << 20, 40 << 20, 40 << 20], 90);
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let local = cli.inspect(image);
    let layers = layer_digests(&local);
    let config = local["Id"].as_str().unwrap().to_string();

    let hold = Arc::new(AtomicBool::new(true));
    let held = Arc::new(AtomicUsize::new(0));
    let proxy = {
        let (hold, held) = (hold.clone(), held.clone());
        let later: Vec<String> = layers[1..].to_vec();
        Proxy::start(reg.port, move |req, forward| {
            let commits_later = req.method == "PUT"
                && req.path().contains("/blobs/uploads/")
                && query(&req.uri)
                    .iter()
                    .any(|(k, v)| k == "digest" && later.contains(v));
            if commits_later && hold.load(Ordering::SeqCst) {
                held.fetch_add(1, Ordering::SeqCst);
                return Reply::Hang;
            }
            Reply::Send(forward(req))
        })
    };
    let dest = format!("{}/t9/big:1", proxy.host());
    let mut child = cli
        .cmd()
        .args(["push", image, &dest])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the first layer in the registry and the others held",
        Duration::from_secs(60),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("airlock push ended early ({status})");
            }
            reg.has_blob("t9/big", &layers[0]) && held.load(Ordering::SeqCst) == 2
        },
    );
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    hold.store(false, Ordering::SeqCst);

    assert!(reg.has_blob("t9/big", &config));
    assert!(reg.has_blob("t9/big", &layers[0]));
    assert!(!reg.has_blob("t9/big", &layers[1]));
    assert!(!reg.has_blob("t9/big", &layers[2]));
    assert_eq!(http(reg.port, "GET", "/v2/t9/big/manifests/1").status, 404);

    let mark = proxy.seen().len();
    let out = cli.ok(&["push", image, &dest]);
    assert!(
        out.contains("2 blobs sent") && out.contains("2 already there"),
        "{out}"
    );
    let again = &proxy.seen()[mark..];
    let committed: BTreeSet<String> = again.iter().filter_map(Seen::committed_digest).collect();
    assert_eq!(
        committed,
        layers[1..].iter().cloned().collect::<BTreeSet<_>>(),
        "only the missing layers are sent"
    );
    assert_eq!(again.iter().filter(|s| s.method == "POST").count(), 2);
    assert_eq!(again.iter().filter(|s| s.method == "PATCH").count(), 4);
    let remote = skopeo_inspect(&format!("{}/t9/big:1", reg.host()), &[]);
    assert_eq!(remote["Digest"], local["ManifestDigest"]);
    assert_eq!(remote["Layers"], serde_json::json!(layers));
}
