//! Sigstore bundles (v0.3, cosign v3's default) as referrers, both forms (issue 11, 3): a
//! DSSE envelope over an in-toto statement, and a message signature over the manifest.
//! The signatures are made here with openssl, as cosign makes them with that key.

use std::path::Path;

use base64::Engine;
use serde_json::{json, Value};

use crate::trust::{desc, key_pair, sign, Layout};
use crate::util::{scratch, sha256, Airlock};

const APP: &str = "registry.example/team/app";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A bundle referrer of `subject` (a manifest digest of `size` bytes) holding `bundle`.
fn add_bundle(l: &mut Layout, subject: &str, size: usize, bundle: &Value) {
    let bytes = serde_json::to_vec(bundle).unwrap();
    let empty = b"{}".to_vec();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": BUNDLE,
        "config": desc("application/vnd.oci.empty.v1+json", &empty),
        "layers": [desc(BUNDLE, &bytes)],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": size},
    }))
    .unwrap();
    l.referrer(&manifest, vec![bytes, empty]);
}

/// A DSSE bundle whose statement names `named` (a manifest digest), signed by `key`.
fn dsse_bundle(dir: &Path, key: &Path, named: &str) -> Value {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": APP, "digest": {"sha256": &named[7..]}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .unwrap();
    let kind = "application/vnd.in-toto+json";
    let mut pae = format!("DSSEv1 {} {kind} {} ", kind.len(), statement.len()).into_bytes();
    pae.extend_from_slice(&statement);
    json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": "site"}},
        "dsseEnvelope": {
            "payload": b64(&statement),
            "payloadType": kind,
            "signatures": [{"sig": sign(dir, key, &pae), "keyid": ""}],
        },
    })
}

/// A message-signature bundle over `manifest`, by `key`.
fn message_bundle(dir: &Path, key: &Path, manifest: &[u8]) -> Value {
    let digest = hex::decode(&sha256(manifest)[7..]).unwrap();
    json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": "site"}},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&digest)},
            "signature": sign(dir, key, manifest),
        },
    })
}

/// A layout with APP:1 and, if given, one bundle referrer of it.
fn layout_with(bundle: Option<&Value>) -> Layout {
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), CONTENT);
    if let Some(b) = bundle {
        add_bundle(&mut l, &app, manifest().len(), b);
    }
    l
}

const CONTENT: &[u8] = b"bundled\n";

/// The manifest `Layout::image` writes for APP:1.
fn manifest() -> Vec<u8> {
    let [_, _, manifest] = crate::artifacts::gallery::one_layer_image("amd64", CONTENT);
    manifest
}

fn verdict(dir: &Path, l: &Layout, name: &str, public: &Path) -> (bool, String) {
    let layout = l.write(&dir.join(name));
    Airlock::new(&dir.join(format!("store-{name}"))).run_text(&[
        "verify",
        "-i",
        layout.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ])
}

#[test]
fn both_forms_of_a_sigstore_bundle_verify_and_broken_ones_say_why() {
    let dir = scratch();
    let d = dir.path();
    let (key, public) = key_pair(d, "site", "ec");
    let (_, other) = key_pair(d, "other", "ec");
    let app = sha256(&manifest());
    let signed = format!(
        "Signature verified: {APP}:1, signed by {}",
        public.display()
    );
    for (name, bundle) in [
        ("dsse", dsse_bundle(d, &key, &app)),
        ("message", message_bundle(d, &key, &manifest())),
    ] {
        let (ok, text) = verdict(d, &layout_with(Some(&bundle)), name, &public);
        assert!(ok && text.contains(&signed), "{name}: {text}");
    }
    // Without one, the image is unsigned.
    let (ok, text) = verdict(d, &layout_with(None), "none", &public);
    assert!(!ok && text.contains("no signature found"), "{text}");
    // Signed by another key; a statement naming another digest; a message digest of
    // something else.
    let elsewhere = format!("sha256:{}", "ab".repeat(32));
    let broken = [
        (
            "wrong-key",
            dsse_bundle(d, &key, &app),
            &other,
            "it is not signed by any of the keys given".to_string(),
        ),
        (
            "wrong-subject",
            dsse_bundle(d, &key, &elsewhere),
            &public,
            format!("its statement names {elsewhere}, not {app}"),
        ),
        (
            "wrong-message",
            message_bundle(d, &key, b"another manifest"),
            &public,
            format!("not {app}"),
        ),
    ];
    for (name, bundle, k, why) in broken {
        let (ok, text) = verdict(d, &layout_with(Some(&bundle)), name, k);
        assert!(!ok && text.contains(&why), "{name}: {text}");
    }
}
