//! Artifacts and referrers through the real distribution registry (2.x: no referrers API).
//! A pushed image takes its signature (under cosign's tag) and its SBOM (by digest, listed
//! in the OCI fallback tag `sha256-<hex>` that oras and regctl read); an artifact pushes and
//! pulls byte for byte; `--no-referrers` leaves them behind. A pull finds them again (the
//! referrers API, else the fallback tag, and cosign's tags) and brings them along.

use std::process::Command;

use serde_json::Value;

use crate::artifacts::gallery::{Gallery, APP, CHART, COSIGN, SPDX};
use crate::util::sha256;

use super::*;

#[test]
fn pushing_an_image_takes_its_signature_and_sbom_and_readers_find_them() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let g = Gallery::new();
    g.write(&sb.path().join("layout"));
    let cli = sb.store("store");
    cli.ok(&[
        "load",
        "-q",
        "-i",
        sb.path().join("layout").to_str().unwrap(),
    ]);

    let host = reg.host();
    cli.ok(&["push", APP, &format!("{host}/team/app:1")]);
    let app_hex = &g.app_manifest[7..];
    // cosign finds the signature by its tag in the image's repository.
    let sig = skopeo_raw(&format!("{host}/team/app:sha256-{app_hex}.sig"), &[]);
    assert_eq!(sha256(&sig), g.signature);
    // The SBOM went by digest; the fallback tag lists it with its artifact type.
    let sbom = skopeo_raw(&format!("{host}/team/app@{}", g.sbom), &[]);
    assert_eq!(sha256(&sbom), g.sbom);
    let index: Value = serde_json::from_slice(&skopeo_raw(
        &format!("{host}/team/app:sha256-{app_hex}"),
        &[],
    ))
    .unwrap();
    let listed: Vec<&Value> = index["manifests"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], g.sbom.as_str());
    assert_eq!(listed[0]["artifactType"], SPDX);
    // The image itself is untouched.
    assert_eq!(
        sha256(&skopeo_raw(&format!("{host}/team/app:1"), &[])),
        g.app_manifest
    );

    // A second push of the same image adds nothing to the fallback index.
    cli.ok(&["push", APP, &format!("{host}/team/app:1")]);
    let again: Value = serde_json::from_slice(&skopeo_raw(
        &format!("{host}/team/app:sha256-{app_hex}"),
        &[],
    ))
    .unwrap();
    assert_eq!(again["manifests"].as_array().unwrap().len(), 1);

    // An artifact pushes and pulls byte for byte.
    cli.ok(&["push", CHART, &format!("{host}/charts/demo:0.1.0")]);
    assert_eq!(
        sha256(&skopeo_raw(&format!("{host}/charts/demo:0.1.0"), &[])),
        g.chart
    );
    let far = sb.store("far");
    far.ok(&["pull", &format!("{host}/charts/demo:0.1.0")]);
    assert_eq!(
        far.inspect(&format!("{host}/charts/demo:0.1.0"))["ManifestDigest"],
        g.chart.as_str()
    );
    let listed = far.ok(&["artifacts"]);
    assert!(
        listed.contains("application/vnd.cncf.helm.config.v1+json"),
        "{listed}"
    );

    // --no-referrers: the image alone.
    cli.ok(&[
        "push",
        "--no-referrers",
        APP,
        &format!("{host}/team/bare:1"),
    ]);
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{host}/team/bare:sha256-{app_hex}.sig"),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the signature went along: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn pulling_an_image_brings_its_signature_and_sbom_which_travel_across_and_push_back() {
    // The registry holds the image, its cosign signature under cosign's tag and its SBOM
    // listed in the fallback tag (distribution 2.x has no referrers API); skopeo checks
    // that in the test above.
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let g = Gallery::new();
    g.write(&sb.path().join("layout"));
    let near = sb.store("near");
    near.ok(&[
        "load",
        "-q",
        "-i",
        sb.path().join("layout").to_str().unwrap(),
    ]);
    let host = reg.host();
    near.ok(&["push", APP, &format!("{host}/team/app:1")]);
    let app_hex = &g.app_manifest[7..];

    let has_both = |cli: &Cli, repo: &str| {
        let sig = cli.inspect(&format!("{host}/{repo}:sha256-{app_hex}.sig"));
        assert_eq!(
            sig["ManifestDigest"],
            g.signature.as_str(),
            "{repo}: signature"
        );
        let sbom = cli.inspect(&g.sbom);
        assert_eq!(sbom["ManifestDigest"], g.sbom.as_str(), "{repo}: SBOM");
    };

    // Pulled: the image, its signature (named by its tag) and its SBOM (by its subject).
    let pulled = sb.store("pulled");
    let out = pulled.ok(&["pull", &format!("{host}/team/app:1")]);
    assert!(out.contains(&format!("with {SPDX} {}", g.sbom)), "{out}");
    assert!(
        out.contains(&format!("with {COSIGN} {}", g.signature)),
        "{out}"
    );
    has_both(&pulled, "team/app");

    // They travel in the archive and load on the far side ...
    let archive = sb.path().join("across.tar");
    pulled.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        &format!("{host}/team/app:1"),
    ]);
    let far = sb.store("far");
    far.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    has_both(&far, "team/app");

    // ... and push puts them back, where a second pull finds them again.
    far.ok(&[
        "push",
        &format!("{host}/team/app:1"),
        &format!("{host}/mirror/app:1"),
    ]);
    let again = sb.store("again");
    again.ok(&["pull", &format!("{host}/mirror/app:1")]);
    has_both(&again, "mirror/app");

    // --referrer-type keeps only that type, --no-referrers none.
    let sboms = sb.store("sboms");
    let out = sboms.ok(&[
        "pull",
        "--referrer-type",
        SPDX,
        &format!("{host}/team/app:1"),
    ]);
    assert!(
        out.contains(&g.sbom) && !out.contains(&g.signature),
        "{out}"
    );
    let bare = sb.store("bare");
    let out = bare.ok(&["pull", "--no-referrers", &format!("{host}/team/app:1")]);
    assert!(
        !out.contains(&g.sbom) && !out.contains(&g.signature),
        "{out}"
    );
    let err = bare.fails(&["inspect", &g.sbom]);
    assert!(err.contains("no image"), "{err}");
}

#[test]
fn push_and_pull_with_a_key_require_a_signature_and_find_it_through_the_registry() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let host = reg.host();
    let (key, public) = crate::trust::key_pair(sb.path(), "signer", "ec");
    let public = public.to_str().unwrap();
    let mut l = crate::trust::Layout::default();
    let app = l.image("registry.example/team/app:1", b"signed\n");
    l.signature(sb.path(), "registry.example/team/app", &app, &app, &key);
    l.image("registry.example/team/unsigned:1", b"unsigned\n");
    let layout = l.write(&sb.path().join("layout"));
    let near = sb.store("near");
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);

    // push --key: the unsigned image is refused and nothing of it reaches the registry.
    let err = near.fails(&[
        "push",
        "--key",
        public,
        "registry.example/team/unsigned:1",
        &format!("{host}/team/unsigned:1"),
    ]);
    assert!(err.contains("signature policy is not met"), "{err}");
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{host}/team/unsigned:1"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the unsigned image was pushed");

    // The signed one goes with its signature; a pull with the key finds and checks it.
    let out = near.ok(&[
        "push",
        "--key",
        public,
        "registry.example/team/app:1",
        &format!("{host}/team/app:1"),
    ]);
    assert!(out.contains("Signature verified"), "{out}");
    let far = sb.store("far");
    let out = far.ok(&["pull", "--key", public, &format!("{host}/team/app:1")]);
    assert!(
        out.contains(&format!("Signature verified: {host}/team/app:1")),
        "{out}"
    );
    assert_eq!(
        far.inspect(&format!("{host}/team/app:1"))["ManifestDigest"],
        app.as_str()
    );
    // Without its signature (--no-referrers) the pull is refused and stores nothing.
    let bare = sb.store("bare");
    let err = bare.fails(&[
        "pull",
        "--no-referrers",
        "--key",
        public,
        &format!("{host}/team/app:1"),
    ]);
    assert!(err.contains("no signature found"), "{err}");
    assert!(bare
        .fails(&["inspect", &format!("{host}/team/app:1")])
        .contains("no image"));
}

#[test]
fn a_signature_made_on_an_index_covers_a_one_platform_pull_across_the_gap() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let (key, public) = crate::trust::key_pair(sb.path(), "signer", "ec");
    let public = public.to_str().unwrap();
    let layout = sb.path().join("multi-layout");
    let (index_digest, amd64, _) = super::two_platform_layout(&layout);
    let remote = format!("{}/multi/signed:1", reg.host());
    let status = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{remote}"))
        .status()
        .unwrap();
    assert!(status.success());
    // Signed as cosign signs a multi-arch image: once, on the index.
    let near = sb.store("near");
    near.ok(&["pull", "--all-platforms", &remote]);
    near.ok(&["sign", &remote, "--key", key.to_str().unwrap()]);
    near.ok(&["push", &remote]);

    // A one-platform pull keeps the index as its root, so the signature still links.
    let far = sb.store("far");
    let out = far.ok(&["pull", "--key", public, &remote]);
    assert!(
        out.contains(&format!("Signature verified: {remote}")),
        "{out}"
    );
    let got = far.inspect(&remote);
    assert_eq!(got["IndexDigest"], index_digest.as_str());
    assert_eq!(got["ManifestDigest"], amd64.as_str());
    assert_eq!(got["Complete"], false);
    // ...and across an archive to a store that checks it again.
    let archive = sb.path().join("one-platform.tar");
    far.ok(&["save", "-o", archive.to_str().unwrap(), &remote]);
    let beyond = sb.store("beyond");
    let out = beyond.ok(&["load", "-i", archive.to_str().unwrap(), "--key", public]);
    assert!(
        out.contains(&format!("Signature verified: {remote}")),
        "{out}"
    );
    assert_eq!(beyond.inspect(&remote)["ManifestDigest"], amd64.as_str());
    // The control: the signature is what makes it pass.
    let bare = sb.store("bare");
    let err = bare.fails(&["pull", "--no-referrers", "--key", public, &remote]);
    assert!(err.contains("no signature found"), "{err}");
}

/// A proxy that holds the fallback tag of `subject_hex` to the conditional-write rules the
/// distribution registry does not enforce: it answers 412 to the first `refuse` writes of
/// the tag, as a registry does when another client changed it after it was read.
fn refusing_writes(upstream: u16, subject_hex: &str, refuse: usize) -> Proxy {
    let tag = format!("/manifests/sha256-{subject_hex}");
    let refused = Arc::new(AtomicUsize::new(0));
    Proxy::start(upstream, move |req, forward| {
        if req.method == "PUT"
            && req.path().ends_with(&tag)
            && refused.fetch_add(1, Ordering::SeqCst) < refuse
        {
            return Reply::Send(Response::new(412, &[], b"{\"errors\":[]}"));
        }
        Reply::Send(forward(req))
    })
}

#[test]
fn the_fallback_index_is_written_only_over_what_was_read_and_read_again_when_it_changed() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let g = Gallery::new();
    g.write(&sb.path().join("layout"));
    let cli = sb.store("store");
    let layout = sb.path().join("layout");
    cli.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let app_hex = g.app_manifest[7..].to_string();
    let fallback = format!("/v2/team/app/manifests/sha256-{app_hex}");
    let writes = |proxy: &Proxy| -> Vec<Seen> {
        let seen = proxy.seen();
        seen.into_iter()
            .filter(|s| s.method == "PUT" && s.path() == fallback)
            .collect()
    };

    // The index is new: its write says so (If-None-Match: *). Another client got there
    // first (412): airlock reads again and writes again.
    let proxy = refusing_writes(reg.port, &app_hex, 1);
    cli.ok(&["push", APP, &format!("{}/team/app:1", proxy.host())]);
    let first = writes(&proxy);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|s| s.header("If-None-Match") == Some("*")));
    let reads = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path() == fallback)
        .count();
    assert_eq!(reads, 2, "the index is read again after the refused write");
    let host = reg.host();
    let raw = skopeo_raw(&format!("{host}/team/app:sha256-{app_hex}"), &[]);
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["manifests"][0]["digest"], g.sbom.as_str());

    // A second referrer of the same image: the write is conditional on the index read,
    // by the ETag the registry gave it (distribution's is the quoted digest).
    let (key, _) = crate::trust::key_pair(sb.path(), "signer", "ec");
    cli.ok(&["sign", APP, "--key", key.to_str().unwrap()]);
    let proxy = refusing_writes(reg.port, &app_hex, 0);
    cli.ok(&["push", APP, &format!("{}/team/app:1", proxy.host())]);
    let second = writes(&proxy);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(
        second[0].header("If-Match"),
        Some(format!("\"{}\"", sha256(&raw)).as_str()),
        "{second:?}"
    );
    let index: Value = serde_json::from_slice(&skopeo_raw(
        &format!("{host}/team/app:sha256-{app_hex}"),
        &[],
    ))
    .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    assert_eq!(
        index["manifests"][0]["digest"],
        g.sbom.as_str(),
        "the SBOM stays"
    );

    // A registry that keeps refusing: a clear error, after a few tries, not a lost write.
    cli.ok(&[
        "sign",
        APP,
        "--key",
        crate::trust::key_pair(sb.path(), "other", "ec")
            .0
            .to_str()
            .unwrap(),
    ]);
    let proxy = refusing_writes(reg.port, &app_hex, usize::MAX);
    let err = cli.fails(&["push", APP, &format!("{}/team/app:1", proxy.host())]);
    assert!(
        err.contains("kept changing") && err.contains("push again"),
        "{err}"
    );
    assert_eq!(writes(&proxy).len(), 4);
}
