//! Artifacts and referrers through the real distribution registry (2.x: no referrers API).
//! A pushed image takes its signature (under cosign's tag) and its SBOM (by digest, listed
//! in the OCI fallback tag `sha256-<hex>` that oras and regctl read); an artifact pushes and
//! pulls byte for byte; `--no-referrers` leaves them behind.

use std::process::Command;

use serde_json::Value;

use crate::artifacts::gallery::{Gallery, APP, CHART, SPDX};
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
