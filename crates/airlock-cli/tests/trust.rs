//! Signatures checked offline (issue 11, 3): cosign simple-signing signatures made here with
//! openssl (as cosign makes them: ECDSA and RSA over the payload's SHA-256, Ed25519 over the
//! payload) gate `verify` and `load`; one unsigned image and nothing loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::util::{require_tool, scratch, sha256, tree_hash, Airlock};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

fn openssl(args: &[&str]) {
    require_tool("openssl");
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key pair made by openssl: (private key, public key PEM file).
pub(crate) fn key_pair(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let k = key.to_str().unwrap();
    match kind {
        "ec" => openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            k,
        ]),
        "rsa" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            k,
        ]),
        "ed25519" => openssl(&["genpkey", "-algorithm", "ed25519", "-out", k]),
        other => panic!("{other}"),
    }
    let public = dir.join(format!("{name}.pub"));
    openssl(&[
        "pkey",
        "-in",
        k,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (key, public)
}

/// openssl's signature over `payload`, the way cosign signs with that kind of key.
pub(crate) fn sign(dir: &Path, key: &Path, payload: &[u8]) -> String {
    let input = dir.join("payload.json");
    let output = dir.join("payload.sig");
    std::fs::write(&input, payload).unwrap();
    let (k, i, o) = (
        key.to_str().unwrap(),
        input.to_str().unwrap(),
        output.to_str().unwrap(),
    );
    let pem = std::fs::read_to_string(key).unwrap();
    if pem.contains("BEGIN PRIVATE KEY") && is_ed25519(key) {
        openssl(&[
            "pkeyutl", "-sign", "-inkey", k, "-rawin", "-in", i, "-out", o,
        ]);
    } else {
        openssl(&["dgst", "-sha256", "-sign", k, "-out", o, i]);
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(&output).unwrap())
}

fn is_ed25519(key: &Path) -> bool {
    let out = Command::new("openssl")
        .args(["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("ED25519")
}

pub(crate) fn desc(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

/// An OCI layout being built: blobs and named roots.
#[derive(Default)]
pub(crate) struct Layout {
    blobs: Vec<Vec<u8>>,
    roots: Vec<Value>,
}

impl Layout {
    /// Add a one-layer image named `name`; returns its manifest digest.
    pub(crate) fn image(&mut self, name: &str, content: &[u8]) -> String {
        let [layer, config, manifest] =
            crate::artifacts::gallery::one_layer_image("amd64", content);
        let digest = sha256(&manifest);
        self.root(&manifest, name);
        self.blobs.extend([layer, config, manifest]);
        digest
    }

    /// Add cosign's signature manifest for `signed` (a manifest digest of `repo`), tagged as
    /// cosign tags it, over a payload that names `names_digest`.
    pub(crate) fn signature(
        &mut self,
        dir: &Path,
        repo: &str,
        signed: &str,
        names_digest: &str,
        key: &Path,
    ) {
        let payload = serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": repo},
                "image": {"docker-manifest-digest": names_digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        }))
        .unwrap();
        let sig = sign(dir, key, &payload);
        let config = serde_json::to_vec(&json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&payload)]},
        }))
        .unwrap();
        let mut layer = desc(SIMPLE_SIGNING, &payload);
        layer["annotations"] = json!({"dev.cosignproject.cosign/signature": sig});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &config),
            "layers": [layer],
        }))
        .unwrap();
        self.root(&manifest, &format!("{repo}:sha256-{}.sig", &signed[7..]));
        self.blobs.extend([payload, config, manifest]);
    }

    /// Add an unnamed root (a referrer found by its `subject`) and the blobs it needs.
    pub(crate) fn referrer(&mut self, manifest: &[u8], blobs: Vec<Vec<u8>>) {
        self.roots.push(desc(OCI_MANIFEST, manifest));
        self.blobs.push(manifest.to_vec());
        self.blobs.extend(blobs);
    }

    fn root(&mut self, manifest: &[u8], name: &str) {
        let mut d = desc(OCI_MANIFEST, manifest);
        d["annotations"] = json!({
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap(),
        });
        self.roots.push(d);
    }

    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({"schemaVersion": 2, "manifests": self.roots});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        for b in &self.blobs {
            std::fs::write(dir.join("blobs/sha256").join(&sha256(b)[7..]), b).unwrap();
        }
        dir.to_path_buf()
    }
}

const APP: &str = "registry.example/team/app";

#[test]
fn a_cosign_signature_by_each_kind_of_key_is_verified_offline_and_the_image_loads() {
    let dir = scratch();
    for kind in ["ec", "rsa", "ed25519"] {
        let (key, public) = key_pair(dir.path(), kind, kind);
        let mut l = Layout::default();
        let app = l.image(&format!("{APP}:1"), kind.as_bytes());
        l.signature(dir.path(), APP, &app, &app, &key);
        let layout = l.write(&dir.path().join(format!("layout-{kind}")));
        let a = Airlock::new(&dir.path().join(format!("store-{kind}")));
        let args = [
            "-i",
            layout.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
        ];
        let out = a.ok(&[&["verify"][..], &args].concat());
        assert!(
            out.contains(&format!(
                "Signature verified: {APP}:1, signed by {}",
                public.display()
            )),
            "{kind}: {out}"
        );
        let out = a.ok(&[&["load"][..], &args].concat());
        assert!(out.contains("Signature verified"), "{out}");
        assert_eq!(
            a.inspect(&format!("{APP}:1"))["ManifestDigest"],
            app.as_str()
        );
    }
}

#[test]
fn signatures_that_do_not_count_are_refused_with_the_reason_and_nothing_loads() {
    let dir = scratch();
    let (key, public) = key_pair(dir.path(), "signer", "ec");
    let (other_key, _) = key_pair(dir.path(), "other", "ec");
    let check = |l: &Layout, name: &str, says: &str| {
        let layout = l.write(&dir.path().join(name));
        let a = Airlock::new(&dir.path().join(format!("store-{name}")));
        a.ok(&["images"]);
        let before = tree_hash(&a.store);
        for cmd in ["verify", "load"] {
            let err = a.fails(&[
                cmd,
                "-i",
                layout.to_str().unwrap(),
                "--key",
                public.to_str().unwrap(),
            ]);
            assert!(
                err.contains("signature policy is not met") && err.contains(says),
                "{name} {cmd}: {err}"
            );
        }
        assert_eq!(tree_hash(&a.store), before, "{name}: the store changed");
    };

    // Signed by a key that was not given.
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"app\n");
    l.signature(dir.path(), APP, &app, &app, &other_key);
    check(&l, "wrong-key", "not signed by any of the keys given");

    // A valid signature over a payload that names another manifest (a signature moved
    // from one image to another).
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"app\n");
    let other = sha256(b"another manifest");
    l.signature(dir.path(), APP, &app, &other, &key);
    check(&l, "moved", &format!("it signs {other}, not {app}"));

    // No signature at all; and one unsigned image beside a signed one: nothing loads, and
    // the unsigned one is named.
    let mut l = Layout::default();
    l.image(&format!("{APP}:1"), b"app\n");
    check(&l, "unsigned", &format!("{APP}:1 (no signature found)"));
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"app\n");
    l.signature(dir.path(), APP, &app, &app, &key);
    l.image(&format!("{APP}:2"), b"unsigned\n");
    check(&l, "mixed", &format!("{APP}:2 (no signature found)"));
}

#[test]
fn a_signature_crosses_with_its_image_and_is_checked_on_the_far_side() {
    let dir = scratch();
    let (key, public) = key_pair(dir.path(), "signer", "ec");
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"app\n");
    l.signature(dir.path(), APP, &app, &app, &key);
    let layout = l.write(&dir.path().join("layout"));
    let near = Airlock::new(&dir.path().join("near"));
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    // save of the image takes its signature along (a referrer by its cosign tag).
    for format in ["docker", "oci"] {
        let archive = dir.path().join(format!("across-{format}.tar"));
        near.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            &format!("{APP}:1"),
        ]);
        let far = Airlock::new(&dir.path().join(format!("far-{format}")));
        let out = far.ok(&[
            "load",
            "-i",
            archive.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
        ]);
        assert!(
            out.contains(&format!("Signature verified: {APP}:1")),
            "{format}: {out}"
        );
        // Without its signature the same image is refused.
        let bare = dir.path().join(format!("bare-{format}.tar"));
        near.ok(&[
            "save",
            "--no-referrers",
            "--format",
            format,
            "-o",
            bare.to_str().unwrap(),
            &format!("{APP}:1"),
        ]);
        let err = far.fails(&[
            "verify",
            "-i",
            bare.to_str().unwrap(),
            "--key",
            public.to_str().unwrap(),
        ]);
        assert!(err.contains("no signature found"), "{err}");
    }
    // A key file that is no key is a usage error naming it.
    let junk = dir.path().join("junk.pub");
    std::fs::write(&junk, "not a key").unwrap();
    let err = near.fails(&[
        "verify",
        "-i",
        layout.to_str().unwrap(),
        "--key",
        junk.to_str().unwrap(),
    ]);
    assert!(err.contains("junk.pub is not a public key"), "{err}");
}

#[test]
fn airlock_sign_makes_a_cosign_signature_that_openssl_and_the_far_side_accept() {
    let dir = scratch();
    let d = dir.path();
    let (key, public) = key_pair(d, "site", "ec");
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"built here\n");
    let layout = l.write(&d.join("layout"));
    let near = Airlock::new(&d.join("near"));
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let before = near.fails(&[
        "verify",
        "-i",
        layout.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ]);
    assert!(before.contains("no signature found"), "{before}");
    let out = near.ok(&[
        "sign",
        &format!("{APP}:1"),
        "--key",
        key.to_str().unwrap(),
        "--legacy-tag",
    ]);
    assert!(out.contains(&format!("({app})")), "{out}");
    assert!(
        out.contains(&format!("Tagged {APP}:sha256-{}.sig", &app[7..])),
        "{out}"
    );
    // The stored payload names the image, and openssl checks its signature as cosign would.
    let store = d.join("near");
    let blob = |digest: &str| std::fs::read(store.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let sig_root = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["io.containerd.image.name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".sig"))
        })
        .unwrap_or_else(|| panic!("no .sig in {index}"));
    let manifest: Value =
        serde_json::from_slice(&blob(sig_root["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["subject"]["digest"], app.as_str());
    let layer = &manifest["layers"][0];
    let payload_bytes = blob(layer["digest"].as_str().unwrap());
    let payload: Value = serde_json::from_slice(&payload_bytes).unwrap();
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        app.as_str()
    );
    assert_eq!(payload["critical"]["identity"]["docker-reference"], APP);
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    std::fs::write(d.join("payload"), &payload_bytes).unwrap();
    std::fs::write(d.join("payload.der"), raw).unwrap();
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        public.to_str().unwrap(),
        "-signature",
        d.join("payload.der").to_str().unwrap(),
        d.join("payload").to_str().unwrap(),
    ]);
    // The signature travels with a save, and the far side's key accepts the image.
    let archive = d.join("signed.tar");
    near.ok(&["save", "-o", archive.to_str().unwrap(), &format!("{APP}:1")]);
    let far = Airlock::new(&d.join("far"));
    let out = far.ok(&[
        "load",
        "-i",
        archive.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&format!("Signature verified: {APP}:1, signed by")),
        "{out}"
    );
    // An SSH key cannot make an image signature, and says so.
    require_tool("ssh-keygen");
    let ssh = d.join("ssh");
    crate::util::sh(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&ssh),
    );
    let err = near.fails(&["sign", &format!("{APP}:1"), "--key", ssh.to_str().unwrap()]);
    assert!(err.contains("is an SSH key"), "{err}");
}
