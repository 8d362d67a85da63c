//! Section 4: OCI artifacts and referrers (an SBOM with a `subject`, a cosign signature
//! under its `sha256-<hex>.sig` tag, a Helm chart, a BuildKit attestation) in and out of
//! airlock, and what docker, podman, containerd and skopeo make of an archive that holds
//! them beside an image.

use std::path::Path;
use std::process::Command;

use crate::artifacts::gallery::{Gallery, APP};
use crate::containerd::Ctr;
use crate::util::{sha256, Airlock, Podman};

use super::*;

pub(super) const S_ARTIFACTS: &str = "4. Artifacts and referrers";

fn ok_or_panic(what: &str, out: &std::process::Output) -> String {
    assert!(out.status.success(), "{what}: {}", stderr_of(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(super) fn artifacts(m: &mut Matrix, dir: &Path) {
    let g = Gallery::new();
    let layout = dir.join("artifacts-layout");
    g.write(&layout);
    let a = Airlock::new(&dir.join("artifacts-store"));
    let loaded = m.check(S_ARTIFACTS, "airlock load ← an OCI layout of images and artifacts", "result", || {
        a.ok(&["load", "-q", "-i", s(&layout)]);
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&a.ok(&["artifacts", "--format", "json"])).unwrap();
        for d in [&g.sbom, &g.signature, &g.chart, &g.attestation] {
            assert!(list.iter().any(|x| x["Digest"] == d.as_str()), "{d} not listed");
        }
        format!("{} artifacts listed by `airlock artifacts`, each under its own digest; `airlock images` shows only images", list.len())
    });
    if !loaded {
        return;
    }
    let saved = dir.join("artifacts-app.tar");
    let oci = dir.join("artifacts-app-oci.tar");
    a.ok(&["save", "-o", s(&saved), APP]);
    a.ok(&["save", "--format", "oci", "-o", s(&oci), APP]);
    let tag = format!("airlock-interop-artifacts-{}:1", std::process::id());
    m.check(S_ARTIFACTS, "docker load ← `airlock save IMAGE` (image + signature + SBOM)", "result", || {
        a.ok(&["tag", APP, &tag]);
        let tagged = dir.join("artifacts-tagged.tar");
        a.ok(&["save", "-o", s(&tagged), &tag]);
        ok_or_panic("docker load", &docker_output(&["load", "-i", s(&tagged)]));
        let id = ok_or_panic("docker inspect", &docker_output(&["image", "inspect", "-f", "{{.Id}}", &tag]));
        let _ = docker_output(&["rmi", "-f", &tag]);
        assert_eq!(id.trim(), g.app_config);
        format!("loads; Id {} = airlock's; the artifacts are not in manifest.json, so docker ignores them", &g.app_config[..19])
    });
    m.check(
        S_ARTIFACTS,
        "podman load ← `airlock save IMAGE`",
        "result",
        || {
            let p = Podman::new();
            p.ok(&["load", "-i", s(&saved)]);
            let id = p.ok(&["image", "inspect", "-f", "{{.Id}}", APP]);
            assert_eq!(format!("sha256:{}", id.trim()), g.app_config);
            "loads; Id = airlock's".to_string()
        },
    );
    m.check(S_ARTIFACTS, "containerd `ctr images import` ← `airlock save IMAGE`", "result", || {
        let ctr = Ctr::new_named("interop-artifacts");
        ctr.run(&["images", "import", "--all-platforms", s(&saved)]);
        let listed = ctr.images();
        assert_eq!(listed, vec![(APP.to_string(), g.app_manifest.clone())]);
        "imports and unpacks the image; the signature is not named there, so it is not unpacked as one".to_string()
    });
    m.check(
        S_ARTIFACTS,
        "containerd `ctr images import --no-unpack` ← `airlock save --format oci IMAGE`",
        "result",
        || {
            let ctr = Ctr::new_named("interop-artifacts-oci");
            ctr.run(&[
                "images",
                "import",
                "--no-unpack",
                "--all-platforms",
                s(&oci),
            ]);
            let listed = ctr.images();
            assert!(
                listed
                    .iter()
                    .any(|(n, d)| *n == g.signature_tag && *d == g.signature),
                "{listed:?}"
            );
            format!(
                "lists the image and the signature under cosign's tag ({} names)",
                listed.len()
            )
        },
    );
    m.check(
        S_ARTIFACTS,
        "skopeo inspect --raw ← `airlock save --format oci IMAGE`, the signature's tag",
        "result",
        || {
            let out = Command::new("skopeo")
                .args([
                    "inspect",
                    "--raw",
                    &format!("oci-archive:{}:{}", oci.display(), g.signature_tag),
                ])
                .output()
                .unwrap();
            assert_eq!(sha256(ok_or_panic("skopeo", &out).as_bytes()), g.signature);
            "the signature's manifest, byte for byte".to_string()
        },
    );
    m.check(S_ARTIFACTS, "airlock load ← `airlock save --all` (both formats)", "result", || {
        let mut n = 0;
        for (f, format) in [("artifacts-all.tar", "docker"), ("artifacts-all-oci.tar", "oci")] {
            let p = dir.join(f);
            a.ok(&["save", "--all", "--format", format, "-o", s(&p)]);
            let back = Airlock::new(&dir.join(format!("{f}.store")));
            back.ok(&["load", "-q", "-i", s(&p)]);
            for q in ["images", "artifacts"] {
                assert_eq!(back.ok(&[q, "--format", "json"]), a.ok(&[q, "--format", "json"]), "{format}: {q}");
            }
            n += 1;
        }
        format!("the same names on the same digests in {n} formats, the three roots of one manifest included")
    });
}
