//! Names as a registry mirror is asked for them, `--prefix`, and the referrers API.

use std::process::Command;

use serde_json::Value;

use super::{busybox_store, raw, Served};
use crate::artifacts::gallery::{Gallery, APP, SPDX};
use crate::containerd::Ctr;
use crate::util::{scratch, sha256, Airlock};

fn skopeo_digest(args: &[&str], image: &str) -> Result<String, String> {
    let out = Command::new("skopeo")
        .args(args)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(sha256(&out.stdout))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn images_are_found_by_the_names_mirrors_ask_for() {
    let dir = scratch();
    let pause = "registry.k8s.io/pause:3.9";
    let store = busybox_store(dir.path(), pause, "pause");
    store.ok(&["tag", pause, "docker.io/library/redis:alpine"]);
    let digest = store.inspect(pause)["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let served = Served::start(&store, &[]);
    let host = served.host();

    // The full name, and Docker Hub's short form (what docker's registry-mirrors asks for).
    assert_eq!(
        skopeo_digest(&[], &format!("{host}/{pause}")),
        Ok(digest.clone())
    );
    let (status, head, _) = raw(
        served.port,
        "GET",
        "/v2/library/redis/manifests/alpine",
        &[],
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains(&digest), "{head}");

    // containerd's hosts.toml mirror: ctr asks for /v2/pause/...?ns=registry.k8s.io.
    let hosts = dir.path().join("certs.d/registry.k8s.io");
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"https://registry.k8s.io\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    let ctr = Ctr::new_named("-mirror");
    let hosts_dir = dir.path().join("certs.d");
    ctr.run(&[
        "images",
        "pull",
        "--hosts-dir",
        hosts_dir.to_str().unwrap(),
        pause,
    ]);
    assert!(ctr.images().iter().any(|(n, d)| n == pause && d == &digest));
    assert!(
        served.log().contains("/v2/pause/manifests/3.9"),
        "{}",
        served.log()
    );

    // A podman/skopeo registries.conf mirror asks for /v2/pause/... with no hint.
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"registry.k8s.io\"\nlocation = \"registry.k8s.io\"\n[[registry.mirror]]\nlocation = \"{host}\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    let conf_arg = format!("--registries-conf={}", conf.display());
    assert_eq!(skopeo_digest(&[&conf_arg], pause), Ok(digest.clone()));

    // Two registries' `pause`: a bare `pause` is ambiguous, and the answer says so.
    store.ok(&["tag", pause, "ghcr.io/pause:3.9"]);
    let (status, _, body) = raw(served.port, "GET", "/v2/pause/manifests/3.9", &[]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("NAME_UNKNOWN")
            && body.contains("ghcr.io/pause")
            && body.contains("registry.k8s.io/pause"),
        "{body}"
    );
    // ...while containerd's hint still picks one.
    let (status, _, _) = raw(
        served.port,
        "GET",
        "/v2/pause/manifests/3.9?ns=registry.k8s.io",
        &[],
    );
    assert_eq!(status, 200);
    drop(served);

    // --prefix: every name under it, and only there.
    let served = Served::start(&store, &["--prefix", "mirror/k8s"]);
    let host = served.host();
    assert_eq!(
        skopeo_digest(&[], &format!("{host}/mirror/k8s/{pause}")),
        Ok(digest.clone())
    );
    assert!(skopeo_digest(&[], &format!("{host}/{pause}")).is_err());
    let (_, _, body) = raw(served.port, "GET", "/v2/_catalog", &[]);
    let catalog: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!([
            "mirror/k8s/docker.io/library/redis",
            "mirror/k8s/ghcr.io/pause",
            "mirror/k8s/registry.k8s.io/pause"
        ])
    );
    // Paging, as the spec gives it.
    let (_, head, body) = raw(served.port, "GET", "/v2/_catalog?n=2", &[]);
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["repositories"].as_array().unwrap().len(), 2);
    assert!(
        head.contains("rel=\"next\"") && head.contains("last=mirror/k8s/ghcr.io/pause"),
        "{head}"
    );
    let (_, _, body) = raw(
        served.port,
        "GET",
        "/v2/_catalog?n=2&last=mirror/k8s/ghcr.io/pause",
        &[],
    );
    let rest: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        rest["repositories"],
        serde_json::json!(["mirror/k8s/registry.k8s.io/pause"])
    );
}

#[test]
fn the_referrers_api_lists_what_names_an_image_and_airlock_pull_finds_them_there() {
    let dir = scratch();
    let g = Gallery::new();
    let layout = dir.path().join("layout");
    g.write(&layout);
    let store = Airlock::new(&dir.path().join("store"));
    store.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let served = Served::start(&store, &[]);
    let path = format!("/v2/registry.example/team/app/referrers/{}", g.app_manifest);

    let (status, head, body) = raw(served.port, "GET", &path, &[]);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("application/vnd.oci.image.index.v1+json"),
        "{head}"
    );
    let index: Value = serde_json::from_slice(&body).unwrap();
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], g.sbom.as_str());
    assert_eq!(listed[0]["artifactType"], SPDX);

    // Filtered by artifact type, and the filter is declared.
    let (_, head, body) = raw(
        served.port,
        "GET",
        &format!("{path}?artifactType={SPDX}"),
        &[],
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("oci-filters-applied: artifacttype"),
        "{head}"
    );
    let index: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let (_, _, body) = raw(
        served.port,
        "GET",
        &format!("{path}?artifactType=application%2Fvnd.example"),
        &[],
    );
    let index: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));
    // A subject with no referrers: an empty index, not an error.
    let none = format!(
        "/v2/registry.example/team/app/referrers/sha256:{}",
        "0".repeat(64)
    );
    let (status, _, body) = raw(served.port, "GET", &none, &[]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["manifests"],
        serde_json::json!([])
    );

    // airlock's pull asks the API (no fallback tag needed) and brings the SBOM, and the
    // cosign signature by its tag.
    let far = Airlock::new(&dir.path().join("far"));
    far.ok(&["pull", &format!("{}/{APP}", served.host())]);
    let log = served.log();
    assert!(log.contains(&format!("GET {path} 200")), "{log}");
    // (the fallback tag is `sha256-<hex>` alone; `sha256-<hex>.sig` is cosign's own)
    assert!(
        !log.contains(&format!("manifests/sha256-{} ", &g.app_manifest[7..])),
        "{log}"
    );
    let artifacts = far.ok(&["artifacts"]);
    assert!(
        artifacts.contains(&g.sbom[7..19]) || artifacts.contains(SPDX),
        "{artifacts}"
    );
    let referrers = far.inspect(&format!("{}/{APP}", served.host()))["Referrers"].to_string();
    assert!(
        referrers.contains(&g.sbom) && referrers.contains(&g.signature),
        "{referrers}"
    );
}
