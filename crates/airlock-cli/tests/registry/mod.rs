//! Registries: push, pull, copy and login against the real CNCF distribution registry
//! (`docker-registry`), started on loopback by each test, with skopeo and podman as oracles.
//!
//! What a real registry cannot do (issue bearer tokens, lie about a digest, stall an upload,
//! show the headers of each request) comes from a small HTTP proxy (`harness.rs`) that sits in
//! front of the real registry and forwards what it does not change. Requests are counted in
//! the registry's own access log (one Apache-style line per request on its stdout) or in the
//! proxy's record of what passed through it.

mod credhelpers;
mod harness;
mod helpers;
mod protocol;
mod referrers;
mod shipment;
mod streaming;
mod sync;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::util::{expected, require_tool, sha256, Podman};

use harness::*;
use helpers::*;

const APP: &str = "localhost/airlock-test/app:1";
const APP2: &str = "localhost/airlock-test/app2:1";

// ------------------------------------------------------------------ 1. push, skopeo reads

/// What airlock pushes is what skopeo reads back: the manifest digest airlock reports, its
/// bytes, the config (whose digest is the image ID) and every layer.
#[test]
fn pushed_image_reads_back_in_skopeo_with_the_same_digests() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    for (fixture, repo) in [
        ("skopeo-docker-archive.tar", "t1/from-docker-archive"),
        ("skopeo-oci-archive.tar", "t1/from-oci-archive"),
    ] {
        let cli = sb.store(fixture);
        cli.ok(&["load", "-q", "-i", &fx(fixture)]);
        let local = cli.inspect(APP);
        let manifest_digest = local["ManifestDigest"].as_str().unwrap();
        let id = local["Id"].as_str().unwrap();
        let dest = format!("{}/{repo}:1", reg.host());
        let out = cli.ok(&["push", APP, &dest]);
        assert!(
            out.contains(&format!("Pushed {dest} ({manifest_digest})")),
            "{fixture}: {out}"
        );

        let remote = skopeo_inspect(&dest, &[]);
        assert_eq!(
            remote["Digest"], manifest_digest,
            "{fixture}: manifest digest"
        );
        assert_eq!(
            remote["Layers"].as_array().unwrap(),
            &layer_digests(&local),
            "{fixture}: layers"
        );
        let raw = skopeo_raw(&dest, &[]);
        assert_eq!(sha256(&raw), manifest_digest, "{fixture}: manifest bytes");
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(manifest["config"]["digest"], id, "{fixture}: config digest");
        let config = skopeo_raw(&dest, &["--config"]);
        assert_eq!(
            sha256(&config),
            id,
            "{fixture}: config bytes are the image ID"
        );
        if fixture.contains("oci") {
            // An image that came with a manifest goes up with that very manifest.
            assert_eq!(
                manifest_digest,
                expected()[fixture][0]["manifest_digest"],
                "{fixture}: the original manifest"
            );
        }
    }
}

// ------------------------------------------------------------------ 2. pull what skopeo pushed

#[test]
fn pulls_what_skopeo_pushed_with_the_digests_the_tools_report() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    for (fixture, tag, repo) in [
        ("skopeo-oci-dir", "app", "t2/skopeo"),
        ("umoci-layout", "app2", "t2/umoci"),
    ] {
        let want = expected()[fixture]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["names"][0] == tag)
            .unwrap_or_else(|| panic!("{fixture}: no {tag} in expected.json"));
        let dest = format!("{}/{repo}:1", reg.host());
        skopeo(&[
            "copy",
            "-q",
            "--insecure-policy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("oci:{}:{tag}", fx(fixture)),
            &format!("docker://{dest}"),
        ]);

        let cli = sb.store(fixture);
        let out = cli.ok(&["pull", &dest]);
        assert!(out.contains("Pulled"), "{fixture}: {out}");
        let got = cli.inspect(&dest);
        assert_eq!(got["ManifestDigest"], want["manifest_digest"], "{fixture}");
        assert_eq!(got["Id"], want["config_digest"], "{fixture}");
        assert_eq!(got["RootFS"]["Layers"], want["diff_ids"], "{fixture}");
        assert_eq!(
            serde_json::json!(layer_digests(&got)),
            want["layer_digests"],
            "{fixture}"
        );

        // Again: the store has every blob, so none is fetched.
        let mark = reg.access_log().len();
        cli.ok(&["pull", "-q", &dest]);
        let fetched: Vec<Logged> = reg.access_log()[mark..]
            .iter()
            .filter(|l| l.path().contains("/blobs/"))
            .cloned()
            .collect();
        assert!(
            fetched.is_empty(),
            "{fixture}: second pull fetched {fetched:?}"
        );
    }
}

// ------------------------------------------------------------------ 3. archive -> registry -> podman run

#[test]
fn archive_goes_to_a_registry_prefix_and_podman_runs_it() {
    require_tool("runc");
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let host = reg.host();
    let cli = sb.store("store");

    // Straight from the archive, renamed below the prefix.
    let out = cli.ok(&[
        "copy",
        &format!("docker-archive:{}", fx("podman-multi.tar")),
        &format!("docker://{host}/airgap"),
    ]);
    for name in ["airlock-test/app:1", "airlock-test/app2:1"] {
        assert!(
            out.contains(&format!("Pushed {host}/airgap/{name} ")),
            "copy output lacks {name}: {out}"
        );
    }
    // app2 shares its base layer with app: mounted across repositories, not sent again.
    let app2_line = out.lines().find(|l| l.contains("/app2:1")).unwrap();
    assert!(app2_line.contains("1 mounted"), "{app2_line}");
    let catalog: serde_json::Value =
        serde_json::from_slice(&http(reg.port, "GET", "/v2/_catalog").body).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["airgap/airlock-test/app", "airgap/airlock-test/app2"])
    );

    // The same through the store: load, then push --all with a prefix.
    cli.ok(&["load", "-q", "-i", &fx("podman-multi.tar")]);
    let out = cli.ok(&["push", "--all", "--registry", &host, "--prefix", "airgap2"]);
    for image in [APP, APP2] {
        let path = image.strip_prefix("localhost/").unwrap();
        assert!(
            out.contains(&format!("Pushed {host}/airgap2/{path} ")),
            "{out}"
        );
        let local = cli.inspect(image);
        for prefix in ["airgap", "airgap2"] {
            let remote = skopeo_inspect(&format!("{host}/{prefix}/{path}"), &[]);
            assert_eq!(remote["Digest"], local["ManifestDigest"], "{prefix}/{path}");
        }
    }

    // podman pulls it from the registry and runs it.
    let podman = Podman::new();
    for (path, says) in [
        ("airlock-test/app:1", "hello from airlock layer 2"),
        ("airlock-test/app2:1", "hello from app2"),
    ] {
        let remote = format!("{host}/airgap/{path}");
        podman.ok(&["pull", "-q", "--tls-verify=false", &remote]);
        let ran = podman.run_image(&remote);
        assert_eq!(ran.trim(), says, "{remote}");
    }
}

// ------------------------------------------------------------------ 4. second push: no bodies

#[test]
fn second_push_sends_no_blob_bodies() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    let blobs = layer_digests(&cli.inspect(APP)).len() + 1;
    let dest = format!("{}/t4/app:1", reg.host());
    let out = cli.ok(&["push", APP, &dest]);
    assert!(out.contains(&format!("{blobs} blobs sent")), "{out}");
    let first = reg.access_log();
    assert!(
        first.iter().filter(|l| l.sends_blob()).count() >= 2 * blobs,
        "the first push should upload every blob: {first:?}"
    );

    let out = cli.ok(&["push", APP, &dest]);
    assert!(
        out.contains(&format!("0 blobs sent (0 bytes), {blobs} already there")),
        "{out}"
    );
    let second = &reg.access_log()[first.len()..];
    let uploads: Vec<&Logged> = second.iter().filter(|l| l.sends_blob()).collect();
    assert!(uploads.is_empty(), "second push uploaded: {uploads:?}");
    let heads = second
        .iter()
        .filter(|l| l.method == "HEAD" && l.path().contains("/blobs/") && l.status == 200)
        .count();
    assert_eq!(heads, blobs, "one HEAD per blob: {second:?}");
    let manifests: Vec<&Logged> = second
        .iter()
        .filter(|l| l.method == "PUT" && l.path() == "/v2/t4/app/manifests/1")
        .collect();
    assert_eq!(manifests.len(), 1, "{second:?}");
    assert_eq!(second.len(), blobs + 1, "nothing else: {second:?}");
}

// ------------------------------------------------------------------ 5. htpasswd, login, logout

#[test]
fn basic_auth_login_push_logout_and_no_password_in_output() {
    const USER: &str = "airlock";
    const PASSWORD: &str = "Right-Pa55word-7781";
    const WRONG: &str = "Wr0ng-Pa55word-4432";
    let reg = RegistryServer::with_htpasswd(USER, PASSWORD);
    let host = reg.host();
    let sb = Sandbox::new();
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    let dest = format!("{host}/t5/app:1");
    let secrets = [
        PASSWORD.to_string(),
        WRONG.to_string(),
        base64(format!("{USER}:{PASSWORD}").as_bytes()),
        base64(format!("{USER}:{WRONG}").as_bytes()),
    ];
    let no_secret = |what: &str, text: &str| {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} shows a secret ({s}):\n{text}"
            );
        }
    };

    // No login yet.
    let err = cli.fails(&["push", APP, &dest]);
    assert!(
        err.to_lowercase().contains("authenticat") && err.contains("airlock login"),
        "push without login: {err}"
    );

    // Wrong password: refused, nothing stored, never echoed.
    let out = cli.login(&host, USER, WRONG);
    let text = all_output(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "login with a wrong password:\n{text}"
    );
    assert!(text.contains("airlock: error:"), "{text}");
    no_secret("login with a wrong password", &text);
    assert!(docker_config(&sb)["auths"].get(&host).is_none());

    // Right password.
    let out = cli.login(&host, USER, PASSWORD);
    let text = all_output(&out);
    assert!(out.status.success(), "login:\n{text}");
    assert!(text.contains("Login Succeeded"), "{text}");
    no_secret("login", &text);
    let mode = fs::metadata(sb.docker_config()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(
        docker_config(&sb)["auths"][&host]["auth"],
        base64(format!("{USER}:{PASSWORD}").as_bytes())
    );

    let pushed = cli.run(&["push", APP, &dest]);
    assert!(pushed.status.success(), "{}", all_output(&pushed));
    no_secret("push", &all_output(&pushed));
    let remote = skopeo_inspect(&dest, &["--creds", &format!("{USER}:{PASSWORD}")]);
    assert_eq!(remote["Digest"], cli.inspect(APP)["ManifestDigest"]);
    let puller = sb.store("pulled");
    puller.ok(&["pull", "-q", &dest]);
    assert_eq!(puller.inspect(&dest)["Id"], cli.inspect(APP)["Id"]);

    // Logout forgets it; pushing is refused again.
    let out = cli.ok(&["logout", &host]);
    assert!(out.contains("Removed"), "{out}");
    assert!(docker_config(&sb)["auths"].get(&host).is_none());
    let err = cli.fails(&["push", APP, &dest]);
    assert!(err.contains("airlock login"), "{err}");

    // A wrong password stored in config.json: refused, and neither it nor its base64 shows.
    fs::write(
        sb.docker_config(),
        serde_json::to_vec(&serde_json::json!({
            "auths": {&host: {"auth": base64(format!("{USER}:{WRONG}").as_bytes())}}
        }))
        .unwrap(),
    )
    .unwrap();
    let other = sb.store("other");
    for (who, args) in [
        (&cli, vec!["push", APP, dest.as_str()]),
        (&other, vec!["pull", dest.as_str()]),
    ] {
        let err = who.fails(&args);
        assert!(
            err.to_lowercase().contains("authenticat"),
            "{args:?}: {err}"
        );
        no_secret("a command with a wrong stored password", &err);
    }
}

// ------------------------------------------------------------------ 6. bearer tokens

/// A token service in front of the real registry, the way Docker Hub or Harbor answer.
#[test]
fn bearer_token_flow_with_stored_credentials() {
    const USER: &str = "tokuser";
    const PASSWORD: &str = "tok-Pa55";
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let token = unique("token");
    let scopes: Arc<Mutex<Vec<Headers>>> = Arc::default(); // token request queries
    let realm_port = Arc::new(AtomicUsize::new(0));
    let proxy = {
        let (token, scopes, realm_port) = (token.clone(), scopes.clone(), realm_port.clone());
        let basic = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
        Proxy::start(reg.port, move |req, forward| {
            if req.path() == "/token" {
                scopes.lock().unwrap().push(query(&req.uri));
                if req.header("Authorization") != Some(basic.as_str()) {
                    return Reply::Send(Response::new(401, &[], b"{\"details\":\"bad login\"}"));
                }
                let body = serde_json::json!({"token": token}).to_string();
                return Reply::Send(Response::new(
                    200,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ));
            }
            if req.header("Authorization") != Some(format!("Bearer {token}").as_str()) {
                let challenge = format!(
                    "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"airlock-test\"",
                    realm_port.load(Ordering::SeqCst)
                );
                return Reply::Send(Response::new(
                    401,
                    &[
                        ("WWW-Authenticate", challenge.as_str()),
                        ("Content-Type", "application/json"),
                    ],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ));
            }
            Reply::Send(forward(req))
        })
    };
    realm_port.store(proxy.port as usize, Ordering::SeqCst);
    let host = proxy.host();
    let dest = format!("{host}/tok/app:1");
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);

    let err = cli.fails(&["push", APP, &dest]);
    assert!(err.contains("airlock login"), "push before login: {err}");
    assert!(!reg.has_blob("tok/app", cli.inspect(APP)["Id"].as_str().unwrap()));

    let out = cli.login(&host, USER, PASSWORD);
    assert!(out.status.success(), "login: {}", all_output(&out));

    let scope_of = |from: usize| -> Vec<String> {
        scopes.lock().unwrap()[from..]
            .iter()
            .flat_map(|q| {
                q.iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    };
    let mark = scopes.lock().unwrap().len();
    let out = cli.ok(&["push", APP, &dest]);
    assert!(out.contains("Pushed"), "{out}");
    assert!(
        scope_of(mark).contains(&"repository:tok/app:pull,push".to_string()),
        "push token scopes: {:?}",
        scope_of(mark)
    );
    for q in &scopes.lock().unwrap()[mark..] {
        assert!(
            q.contains(&("service".to_string(), "airlock-test".to_string())),
            "{q:?}"
        );
    }
    // The registry behind the proxy has it.
    let remote = skopeo_inspect(&format!("{}/tok/app:1", reg.host()), &[]);
    assert_eq!(remote["Digest"], cli.inspect(APP)["ManifestDigest"]);

    let mark = scopes.lock().unwrap().len();
    let puller = sb.store("pulled");
    puller.ok(&["pull", "-q", &dest]);
    assert_eq!(puller.inspect(&dest)["Id"], cli.inspect(APP)["Id"]);
    assert_eq!(
        scope_of(mark),
        vec!["repository:tok/app:pull".to_string()],
        "pull token scopes"
    );
    let leaked: Vec<Seen> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.path() != "/token")
        .filter(|s| {
            s.header("Authorization")
                .is_some_and(|a| a.starts_with("Basic"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the password went to the registry: {leaked:?}"
    );
}

// ------------------------------------------------------------------ 10. multi-platform

/// An OCI layout holding one two-platform image (amd64 and arm64) under the tag `multi`.
fn two_platform_layout(dir: &Path) -> (String, String, String) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = sha256(bytes);
        fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = crate::util::layer_with_file("arch.txt", arch.as_bytes());
        let (ld, ls) = put(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux", "config": {"Cmd": ["cat", "/arch.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [ld]},
        }))
        .unwrap();
        let (cd, cs) = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
        }))
        .unwrap();
        let (md, ms) = put(&manifest);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests,
    }))
    .unwrap();
    let (idx, idx_size) = put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx, "size": idx_size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"}}],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (
        idx,
        manifests[0]["digest"].as_str().unwrap().to_string(),
        manifests[1]["digest"].as_str().unwrap().to_string(),
    )
}

#[test]
fn multi_platform_pull_picks_one_or_keeps_the_whole_index() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let layout = sb.path().join("multi-layout");
    let (index_digest, amd64, arm64) = two_platform_layout(&layout);
    let remote = format!("{}/multi/img:1", reg.host());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{remote}"),
    ]);

    // Default: the host's platform, under its index (the digest the registry names), which
    // the store records as sparse: one of the two manifests it lists.
    let one = sb.store("host");
    one.ok(&["pull", &remote]);
    let got = one.inspect(&remote);
    assert_eq!(got["ManifestDigest"], amd64.as_str());
    assert_eq!(got["IndexDigest"], index_digest.as_str());
    assert_eq!(got["Platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(got["Complete"], false);
    assert_eq!(got["ManifestsListed"], 2);
    // A registry takes an index only whole: the push tags the platform it has, and says so.
    let single = format!("{}/multi/single:1", reg.host());
    let out = one.ok(&["push", &remote, &single]);
    assert!(
        out.contains(&format!(
            "the one platform the store has of index {index_digest}"
        )),
        "{out}"
    );
    assert_eq!(sha256(&skopeo_raw(&single, &[])), amd64);

    let arm = sb.store("arm");
    arm.ok(&["pull", "--platform", "linux/arm64", &remote]);
    assert_eq!(arm.inspect(&remote)["ManifestDigest"], arm64.as_str());
    let err = arm.fails(&["pull", "--platform", "linux/s390x", &remote]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );

    // --all-platforms keeps the index, complete, and it goes back up byte for byte.
    let all = sb.store("all");
    all.ok(&["pull", "--all-platforms", &remote]);
    let got = all.inspect(&remote);
    assert_eq!(got["IndexDigest"], index_digest.as_str());
    assert_eq!(got["Id"], index_digest.as_str());
    assert_eq!(got["Platforms"].as_array().unwrap().len(), 2);
    let again = format!("{}/multi/copy:1", reg.host());
    all.ok(&["push", &remote, &again]);
    assert_eq!(sha256(&skopeo_raw(&again, &[])), index_digest);
}
