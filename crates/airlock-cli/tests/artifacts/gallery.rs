//! A layout directory holding what registries hold beside images, built from the media
//! types and conventions the writers document: an image, an SPDX SBOM that names it as its
//! `subject` (OCI 1.1, the empty `{}` config left out as many writers do), a cosign
//! signature under cosign's `sha256-<hex>.sig` tag (no `subject`), a Helm chart, a BuildKit
//! index with an in-toto attestation manifest (`unknown/unknown`), and one manifest reached
//! three ways (itself, an OCI index, a Docker manifest list: go-containerregistry's
//! `test_index` shape).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::util::{layer_with_file, sha256};

pub const APP: &str = "registry.example/team/app:1";
pub const MULTI: &str = "registry.example/team/multi:1";
pub const CHART: &str = "registry.example/charts/demo:0.1.0";
pub const SAME: [&str; 3] = [
    "registry.example/team/same:manifest",
    "registry.example/team/same:index",
    "registry.example/team/same:list",
];
pub const SPDX: &str = "application/spdx+json";
pub const COSIGN: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const HELM: &str = "application/vnd.cncf.helm.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The layout and the digests a test checks.
pub struct Gallery {
    blobs: BTreeMap<String, Vec<u8>>,
    index: Vec<Value>,
    pub app_manifest: String,
    pub app_config: String,
    pub sbom: String,
    pub signature: String,
    pub signature_tag: String,
    pub chart: String,
    pub multi_index: String,
    pub attestation: String,
    /// Digests of the three roots of `SAME`, in order.
    pub same: [String; 3],
}

fn desc(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

/// The layer, config and manifest of a one-layer OCI image holding `hello.txt`.
pub fn one_layer_image(arch: &str, content: &[u8]) -> [Vec<u8>; 3] {
    let layer = layer_with_file("hello.txt", content);
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    [layer, config, manifest]
}

fn with(mut d: Value, key: &str, v: Value) -> Value {
    d[key] = v;
    d
}

impl Gallery {
    fn blob(&mut self, bytes: Vec<u8>) -> String {
        let d = sha256(&bytes);
        self.blobs.insert(d.clone(), bytes);
        d
    }

    fn root(&mut self, descriptor: Value, name: Option<&str>) {
        let d = match name {
            Some(n) => with(
                descriptor,
                "annotations",
                json!({"io.containerd.image.name": n, "org.opencontainers.image.ref.name": n.rsplit(':').next().unwrap()}),
            ),
            None => descriptor,
        };
        self.index.push(d);
    }

    /// An image manifest over one gzip-free layer; returns (manifest bytes, config digest).
    fn image(&mut self, arch: &str, content: &[u8]) -> (Vec<u8>, String) {
        let [layer, config, manifest] = one_layer_image(arch, content);
        let config_digest = self.blob(config);
        self.blob(layer);
        self.blob(manifest.clone());
        (manifest, config_digest)
    }

    pub fn new() -> Gallery {
        let mut g = Gallery {
            blobs: BTreeMap::new(),
            index: Vec::new(),
            app_manifest: String::new(),
            app_config: String::new(),
            sbom: String::new(),
            signature: String::new(),
            signature_tag: String::new(),
            chart: String::new(),
            multi_index: String::new(),
            attestation: String::new(),
            same: Default::default(),
        };
        let (app, app_config) = g.image("amd64", b"app\n");
        let app_desc = desc(OCI_MANIFEST, &app);
        g.app_manifest = sha256(&app);
        g.app_config = app_config;
        g.root(app_desc.clone(), Some(APP));

        // SBOM: OCI 1.1 artifact, empty config not written (its bytes are `{}`).
        let spdx = br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#.to_vec();
        let sbom = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SPDX,
            "config": desc("application/vnd.oci.empty.v1+json", b"{}"),
            "layers": [desc(SPDX, &spdx)],
            "subject": app_desc,
        }))
        .unwrap();
        g.blob(spdx);
        g.sbom = g.blob(sbom.clone());
        g.root(
            with(desc(OCI_MANIFEST, &sbom), "artifactType", json!(SPDX)),
            None,
        );

        // cosign: an image config, but the "layer" is a JSON payload; found by its tag.
        let payload = serde_json::to_vec(
            &json!({"critical": {"image": {"docker-manifest-digest": g.app_manifest}}}),
        )
        .unwrap();
        let sig_config = serde_json::to_vec(&json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&payload)]},
        }))
        .unwrap();
        let signature = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &sig_config),
            "layers": [with(desc(COSIGN, &payload), "annotations", json!({"dev.cosignproject.cosign/signature": "MEUCIQ=="}))],
        }))
        .unwrap();
        g.blob(payload);
        g.blob(sig_config);
        g.signature = g.blob(signature.clone());
        g.signature_tag = format!(
            "registry.example/team/app:sha256-{}.sig",
            &g.app_manifest[7..]
        );
        let tag = g.signature_tag.clone();
        g.root(desc(OCI_MANIFEST, &signature), Some(&tag));

        // A Helm chart: its own config type; the content is no filesystem.
        let chart_config = br#"{"name":"demo","version":"0.1.0","apiVersion":"v2"}"#.to_vec();
        let chart_content = b"\x1f\x8b not really a chart".to_vec();
        let chart = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(HELM, &chart_config),
            "layers": [desc("application/vnd.cncf.helm.chart.content.v1.tar+gzip", &chart_content)],
        }))
        .unwrap();
        g.blob(chart_config);
        g.blob(chart_content);
        g.chart = g.blob(chart.clone());
        g.root(desc(OCI_MANIFEST, &chart), Some(CHART));

        // BuildKit: an index with the image and an attestation manifest beside it.
        let (amd, _) = g.image("amd64", b"multi\n");
        let statement = br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document"}"#.to_vec();
        let att_config = serde_json::to_vec(&json!({
            "architecture": "unknown", "os": "unknown", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&statement)]},
        }))
        .unwrap();
        let attestation = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &att_config),
            "layers": [with(desc("application/vnd.in-toto+json", &statement), "annotations", json!({"in-toto.io/predicate-type": "https://spdx.dev/Document"}))],
        }))
        .unwrap();
        g.blob(statement);
        g.blob(att_config);
        g.attestation = g.blob(attestation.clone());
        let multi = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                with(desc(OCI_MANIFEST, &amd), "platform", json!({"architecture": "amd64", "os": "linux"})),
                with(with(desc(OCI_MANIFEST, &attestation), "platform", json!({"architecture": "unknown", "os": "unknown"})),
                    "annotations", json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": sha256(&amd)})),
            ],
        }))
        .unwrap();
        g.multi_index = g.blob(multi.clone());
        g.root(desc(OCI_INDEX, &multi), Some(MULTI));

        // One manifest, three roots.
        let (same, _) = g.image("amd64", b"same\n");
        let child = with(
            desc(OCI_MANIFEST, &same),
            "platform",
            json!({"architecture": "amd64", "os": "linux"}),
        );
        let oci_index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.clone()]}),
        )
        .unwrap();
        let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
        let list = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": list_type, "manifests": [child]}),
        )
        .unwrap();
        g.same = [
            sha256(&same),
            g.blob(oci_index.clone()),
            g.blob(list.clone()),
        ];
        g.root(desc(OCI_MANIFEST, &same), Some(SAME[0]));
        g.root(desc(OCI_INDEX, &oci_index), Some(SAME[1]));
        g.root(desc(list_type, &list), Some(SAME[2]));
        g
    }

    /// Write it as an OCI layout directory.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index});
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
        for (d, bytes) in &self.blobs {
            std::fs::write(dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        }
    }
}
