//! Runs the signature test data other projects keep through airlock's verification code,
//! and prints a verdict per file: containers/image's `signature/fixtures` (cosign `dir:`
//! images by key, Fulcio + Rekor and a site's PKI; GPG simple signing), checked against the
//! keys and roots the upstream tests use.
//!
//! `cargo run --release -p airlock-core --example signature_fixtures -- THIRDPARTY_DIR`
//! where THIRDPARTY_DIR holds `containers/image/signature/fixtures` and, for the Fulcio and
//! Rekor keys, zarf's `src/pkg/signing/embedded_trusted_root.json` (sigstore's public good
//! instance). Upstream stores some fixtures as symbolic links; a copy that made them text
//! files (`../image.manifest.json`) is followed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airlock_core::trust::keyless::{self, Keyless, KeylessIdentity, TrustedRoot};
use airlock_core::trust::{gpg, pki, PublicKey};
use airlock_core::Digest;
use base64::Engine;

/// A file's bytes, following a symbolic link that was copied as a text file.
fn read(p: &Path) -> Option<Vec<u8>> {
    let b = std::fs::read(p).ok()?;
    if b.len() < 200 && b.starts_with(b"../") {
        let target = String::from_utf8_lossy(&b).trim().to_string();
        return read(&p.parent()?.join(target));
    }
    Some(b)
}

/// What a signed payload names: (manifest digest, type).
fn names(payload: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let c = &v["critical"];
    (
        c["image"]["docker-manifest-digest"]
            .as_str()
            .unwrap_or("")
            .into(),
        c["type"].as_str().unwrap_or("").into(),
    )
}

fn main() {
    let base = PathBuf::from(std::env::args().nth(1).expect("THIRDPARTY_DIR"));
    let f = base.join("containers/image/signature/fixtures");
    let text = |n: &str| String::from_utf8(read(&f.join(n)).expect(n)).unwrap();
    let cosign = [
        PublicKey::from_pem(&text("cosign.pub"), "cosign.pub").unwrap(),
        PublicKey::from_pem(&text("cosign2.pub"), "cosign2.pub").unwrap(),
    ];
    let rings: Vec<gpg::Keyring> = [
        "public-key.gpg",
        "public-key-with-subkey.gpg",
        "public-key-with-revoked-subkey.gpg",
    ]
    .iter()
    .map(|n| gpg::Keyring::from_bytes(&read(&f.join(n)).unwrap(), n).unwrap())
    .collect();
    let root = base.join("zarf-dev/zarf/src/pkg/signing/embedded_trusted_root.json");
    let fulcio = Keyless {
        root: TrustedRoot::from_file(&root).unwrap(),
        identity: KeylessIdentity {
            issuer: "https://github.com/login/oauth".into(),
            subject: "mitr@redhat.com".into(),
        },
    };
    let site = pki::Pki::from_pem(
        &read(&f.join("pki_root_crts.pem")).unwrap(),
        read(&f.join("pki_intermediate_crts.pem")).as_deref(),
        Some("qiwan@redhat.com".into()),
        None,
        "pki_root_crts.pem",
    )
    .unwrap();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&f)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let want = read(&d.join("manifest.json")).map(|m| Digest::of(&m).to_string());
        for n in 1..10 {
            let Some(bytes) = read(&d.join(format!("signature-{n}"))) else {
                break;
            };
            let (payload, signer) = match bytes.strip_prefix(b"\x00sigstore-json\n") {
                Some(json) => {
                    let doc: serde_json::Value = serde_json::from_slice(json).unwrap();
                    let std = base64::engine::general_purpose::STANDARD;
                    let payload = std.decode(doc["payload"].as_str().unwrap()).unwrap();
                    let ann: BTreeMap<String, String> =
                        serde_json::from_value(doc["annotations"].clone()).unwrap_or_default();
                    let sig = ann
                        .get("dev.cosignproject.cosign/signature")
                        .cloned()
                        .unwrap_or_default();
                    let joined: String = sig.split_ascii_whitespace().collect();
                    let raw = std.decode(joined).unwrap_or_default();
                    let signer = match cosign.iter().find(|k| k.verifies(&payload, &raw)) {
                        Some(k) => Ok(k.label.clone()),
                        None if ann.contains_key(keyless::CERTIFICATE_ANNOTATION) => {
                            keyless::check(&payload, &sig, &ann, &fulcio)
                                .or_else(|_| pki::check(&payload, &sig, &ann, &site))
                        }
                        None => Err("signed by none of the keys".to_string()),
                    };
                    (payload, signer)
                }
                None => match gpg::verify(&bytes, &rings) {
                    Ok(g) => (g.payload, Ok(g.signer)),
                    Err(e) => (Vec::new(), Err(e)),
                },
            };
            let (digest, kind) = names(&payload);
            let verdict = match (signer, want.as_deref()) {
                (Err(e), _) => format!("refused: {e}"),
                (Ok(_), None) => "refused: no manifest.json to check it against".into(),
                (Ok(s), Some(w)) if w == digest => format!("valid ({kind}), signed by {s}"),
                (Ok(_), Some(w)) => format!("refused: it signs {digest}, not {w}"),
            };
            let name = d.file_name().unwrap().to_string_lossy();
            println!("{name}/signature-{n}: {verdict}");
        }
    }
    // Loose GPG signatures of image.manifest.json, each a case of the upstream tests.
    let manifest = Digest::of(&read(&f.join("image.manifest.json")).unwrap()).to_string();
    for n in [
        "image.signature",
        "subkey.signature",
        "expired.signature",
        "subkey-revoked.signature",
        "unknown-key.signature",
        "corrupt.signature",
        "unsigned-literal.signature",
        "unsigned-encrypted.signature",
        "invalid-blob.signature",
    ] {
        let verdict = match gpg::verify(&read(&f.join(n)).unwrap(), &rings) {
            Err(e) => format!("refused: {e}"),
            Ok(g) => match names(&g.payload) {
                (d, _) if d == manifest => format!("valid, signed by {}", g.signer),
                (d, _) if d.is_empty() => {
                    "refused: its payload is no simple-signing payload".into()
                }
                (d, _) => format!("refused: it signs {d}, not {manifest}"),
            },
        };
        println!("{n}: {verdict}");
    }
}
