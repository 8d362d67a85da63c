//! Keyless (Fulcio) cosign signatures checked offline against a trusted root (issue 11, 3).
//! A whole sigstore is made here with openssl: a Fulcio-like CA (P-384 root and
//! intermediate), a ten-minute-style P-256 signing certificate with the e-mail and OIDC
//! issuer extensions Fulcio writes, and a Rekor-like log key that signs the entry
//! timestamp. Nothing is asked of a network.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};

use crate::trust::{desc, Layout};
use crate::util::{require_tool, scratch, sh, sha256, Airlock};

const APP: &str = "registry.example/team/app";
const ISSUER: &str = "https://issuer.example";
const SIGNER: &str = "builder@site.example";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    require_tool("openssl");
    sh(Command::new("openssl").args(args).current_dir(dir))
}

/// A CA tree in `dir`: root and intermediate (P-384), a leaf (P-256) issued to `SIGNER`.
struct Sigstore {
    dir: PathBuf,
}

impl Sigstore {
    fn new(dir: &Path, name: &str) -> Sigstore {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.as_path();
        std::fs::write(
            d.join("ca.ext"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        std::fs::write(
            d.join("leaf.ext"),
            format!(
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectAltName=critical,email:{SIGNER}\n1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:{ISSUER}\n"
            ),
        )
        .unwrap();
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "root.key",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "root.key",
                "-subj",
                &format!("/O={name}/CN=root"),
                "-days",
                "30",
                "-extensions",
                "v3_ca",
                "-out",
                "root.pem",
            ],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "inter.key",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "inter.key",
                "-subj",
                &format!("/O={name}/CN=intermediate"),
                "-out",
                "inter.csr",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "inter.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-days",
                "20",
                "-extfile",
                "ca.ext",
                "-out",
                "inter.pem",
            ],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "leaf.key",
            ],
        );
        openssl(
            d,
            &[
                "req", "-new", "-key", "leaf.key", "-subj", "/", "-out", "leaf.csr",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "inter.pem",
                "-CAkey",
                "inter.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "leaf.ext",
                "-out",
                "leaf.pem",
            ],
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "rekor.key",
            ],
        );
        openssl(
            d,
            &[
                "ec",
                "-in",
                "rekor.key",
                "-pubout",
                "-outform",
                "DER",
                "-out",
                "rekor.der",
            ],
        );
        Sigstore { dir }
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    /// DER of a PEM certificate.
    fn der(&self, pem: &str) -> Vec<u8> {
        let out = format!("{pem}.der");
        openssl(
            &self.dir,
            &["x509", "-in", pem, "-outform", "DER", "-out", &out],
        );
        self.read(&out)
    }

    /// openssl's ECDSA signature (DER) over `message` with `key`.
    fn sign(&self, key: &str, message: &[u8]) -> Vec<u8> {
        std::fs::write(self.dir.join("message"), message).unwrap();
        openssl(
            &self.dir,
            &[
                "dgst",
                "-sha256",
                "-sign",
                key,
                "-out",
                "message.sig",
                "message",
            ],
        );
        self.read("message.sig")
    }

    /// sigstore's trusted_root.json naming this CA and log.
    fn trusted_root(&self) -> PathBuf {
        let root = json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": "https://rekor.example", "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": b64(&self.read("rekor.der")), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
                       "logId": {"keyId": b64(&sha2_of(&self.read("rekor.der")))}}],
            "certificateAuthorities": [{"certChain": {"certificates": [
                {"rawBytes": b64(&self.der("inter.pem"))}, {"rawBytes": b64(&self.der("root.pem"))}]}}],
        });
        let path = self.dir.join("trusted_root.json");
        std::fs::write(&path, root.to_string()).unwrap();
        path
    }

    /// The annotations of a keyless signature of `payload`, logged at `when`.
    fn annotations(&self, payload: &[u8], when: i64) -> Value {
        let signature = b64(&self.sign("leaf.key", payload));
        let cert = String::from_utf8(self.read("leaf.pem")).unwrap();
        let chain = format!(
            "{}{}",
            String::from_utf8(self.read("inter.pem")).unwrap(),
            String::from_utf8(self.read("root.pem")).unwrap()
        );
        let entry = json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": &sha256(payload)[7..]}},
            "signature": {"content": signature, "publicKey": {"content": b64(cert.as_bytes())}}}});
        let body = b64(entry.to_string().as_bytes());
        let log_id = hex::encode(sha2_of(&self.read("rekor.der")));
        // Canonical JSON: keys sorted, no spaces.
        let canonical = format!(
            "{{\"body\":\"{body}\",\"integratedTime\":{when},\"logID\":\"{log_id}\",\"logIndex\":7}}"
        );
        let set = b64(&self.sign("rekor.key", canonical.as_bytes()));
        let bundle = json!({"SignedEntryTimestamp": set, "Payload": {
            "body": body, "integratedTime": when, "logIndex": 7, "logID": log_id}});
        json!({
            "dev.cosignproject.cosign/signature": signature,
            "dev.sigstore.cosign/certificate": cert,
            "dev.sigstore.cosign/chain": chain,
            "dev.sigstore.cosign/bundle": bundle.to_string(),
        })
    }
}

fn sha2_of(bytes: &[u8]) -> Vec<u8> {
    hex::decode(&sha256(bytes)[7..]).unwrap()
}

/// A layout with APP:1 and a keyless cosign signature of it (a referrer).
fn signed_layout(dir: &Path, name: &str, store: &Sigstore, when: i64) -> PathBuf {
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"keyless\n");
    let payload = serde_json::to_vec(&json!({"critical": {
        "identity": {"docker-reference": APP},
        "image": {"docker-manifest-digest": app},
        "type": "cosign container image signature"}, "optional": null}))
    .unwrap();
    let mut layer = desc("application/vnd.dev.cosign.simplesigning.v1+json", &payload);
    layer["annotations"] = store.annotations(&payload, when);
    let empty = b"{}".to_vec();
    let [_, _, manifest] = crate::artifacts::gallery::one_layer_image("amd64", b"keyless\n");
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": desc("application/vnd.oci.empty.v1+json", &empty),
        "layers": [layer],
        "subject": desc("application/vnd.oci.image.manifest.v1+json", &manifest),
    }))
    .unwrap();
    l.referrer(&sig, vec![payload, empty]);
    l.write(&dir.join(name))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn verify(dir: &Path, layout: &Path, root: &Path, identity: &str, issuer: &str) -> (bool, String) {
    Airlock::new(&dir.join("store")).run_text(&[
        "verify",
        "-i",
        layout.to_str().unwrap(),
        "--trusted-root",
        root.to_str().unwrap(),
        "--certificate-identity",
        identity,
        "--certificate-oidc-issuer",
        issuer,
    ])
}

#[test]
fn a_keyless_signature_verifies_offline_against_the_trusted_root_and_identity() {
    let dir = scratch();
    let d = dir.path();
    let sigstore = Sigstore::new(d, "site-sigstore");
    let root = sigstore.trusted_root();
    let good = signed_layout(d, "good", &sigstore, now());
    let (ok, text) = verify(d, &good, &root, SIGNER, ISSUER);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("signed by {SIGNER} ({ISSUER}")),
        "{text}"
    );

    let (ok, text) = verify(d, &good, &root, "someone@else.example", ISSUER);
    assert!(
        !ok && text.contains(&format!("issued to {SIGNER}, not someone@else.example")),
        "{text}"
    );
    let (ok, text) = verify(d, &good, &root, SIGNER, "https://other.example");
    assert!(
        !ok && text.contains(&format!(
            "vouched for by {ISSUER}, not https://other.example"
        )),
        "{text}"
    );
    // Another sigstore's root trusts neither this CA nor this log.
    let other = Sigstore::new(d, "other-sigstore").trusted_root();
    let (ok, text) = verify(d, &good, &other, SIGNER, ISSUER);
    assert!(!ok && text.contains("does not trust"), "{text}");
    // Logged (by a valid entry timestamp) ten days on, when the certificate had expired.
    let late = signed_layout(d, "late", &sigstore, now() + 10 * 86400);
    let (ok, text) = verify(d, &late, &root, SIGNER, ISSUER);
    assert!(
        !ok && text.contains("was not valid when Rekor logged the signature"),
        "{text}"
    );
    // Without a trusted root, the key check says what is missing.
    let (_, public) = crate::trust::key_pair(d, "unrelated", "ec");
    let err = Airlock::new(&d.join("store")).fails(&[
        "verify",
        "-i",
        good.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
    ]);
    assert!(
        err.contains("is a keyless (Fulcio) signature: give --trusted-root"),
        "{err}"
    );
}

#[test]
fn a_policy_with_fulcio_and_rekor_keys_accepts_the_keyless_signature() {
    let dir = scratch();
    let d = dir.path();
    let sigstore = Sigstore::new(d, "site-sigstore");
    let s = &sigstore.dir;
    openssl(
        s,
        &["ec", "-in", "rekor.key", "-pubout", "-out", "rekor.pub"],
    );
    let bundle = format!(
        "{}{}",
        String::from_utf8(sigstore.read("inter.pem")).unwrap(),
        String::from_utf8(sigstore.read("root.pem")).unwrap()
    );
    std::fs::write(s.join("fulcio.pem"), bundle).unwrap();
    let layout = signed_layout(d, "good", &sigstore, now());
    let policy = |email: &str| {
        let p = d.join(format!("policy-{email}.json"));
        let doc = json!({"default": [{"type": "reject"}], "transports": {"docker": {APP: [{
            "type": "sigstoreSigned",
            "fulcio": {"caPath": s.join("fulcio.pem"), "oidcIssuer": ISSUER, "subjectEmail": email},
            "rekorPublicKeyPath": s.join("rekor.pub"),
            "signedIdentity": {"type": "matchRepository"},
        }]}}});
        std::fs::write(&p, doc.to_string()).unwrap();
        p
    };
    let store = Airlock::new(&d.join("store"));
    let src = format!("oci:{}", layout.display());
    let good = policy(SIGNER);
    let out = store.ok(&[
        "copy",
        "--policy",
        good.to_str().unwrap(),
        &src,
        &format!("store:{APP}:1"),
    ]);
    assert!(
        out.contains(&format!("Signature verified: {APP}:1, signed by {SIGNER}")),
        "{out}"
    );
    let bad = policy("mallory@site.example");
    let err = store.fails(&[
        "copy",
        "--policy",
        bad.to_str().unwrap(),
        &src,
        &format!("store:{APP}:2"),
    ]);
    assert!(
        err.contains(&format!("issued to {SIGNER}, not mallory@site.example")),
        "{err}"
    );
}

#[test]
fn a_policy_with_the_sites_own_ca_accepts_a_certificate_it_issued() {
    let dir = scratch();
    let d = dir.path();
    let sigstore = Sigstore::new(d, "site-pki");
    let s = &sigstore.dir;
    let layout = signed_layout(d, "signed", &sigstore, now());
    let policy = |email: &str, roots: &Path| {
        let p = d.join(format!("pki-{email}.json"));
        let doc = json!({"default": [{"type": "reject"}], "transports": {"docker": {APP: [{
            "type": "sigstoreSigned",
            "pki": {"caRootsPath": roots, "caIntermediatesPath": s.join("inter.pem"), "subjectEmail": email},
            "signedIdentity": {"type": "matchRepository"},
        }]}}});
        std::fs::write(&p, doc.to_string()).unwrap();
        p
    };
    let store = Airlock::new(&d.join("store"));
    let src = format!("oci:{}", layout.display());
    let good = policy(SIGNER, &s.join("root.pem"));
    let out = store.ok(&[
        "copy",
        "--policy",
        good.to_str().unwrap(),
        &src,
        &format!("store:{APP}:1"),
    ]);
    assert!(
        out.contains(&format!("signed by {SIGNER} (certificate of")),
        "{out}"
    );
    let other = Sigstore::new(d, "other-pki");
    let foreign = policy(SIGNER, &other.dir.join("root.pem"));
    let err = store.fails(&[
        "copy",
        "--policy",
        foreign.to_str().unwrap(),
        &src,
        &format!("store:{APP}:2"),
    ]);
    assert!(
        err.contains("a root") && err.contains("does not trust"),
        "{err}"
    );
}

/// A layout with APP:1 and a keyless sigstore bundle (v0.3, message signature) of it: the
/// signing certificate in the verification material, Rekor's entry and promise beside it.
fn bundled_layout(dir: &Path, name: &str, store: &Sigstore, when: i64) -> PathBuf {
    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"bundled keyless\n");
    let [_, _, manifest] =
        crate::artifacts::gallery::one_layer_image("amd64", b"bundled keyless\n");
    assert_eq!(sha256(&manifest), app);
    let signature = b64(&store.sign("leaf.key", &manifest));
    let cert = String::from_utf8(store.read("leaf.pem")).unwrap();
    let entry = json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": &app[7..]}},
        "signature": {"content": signature, "publicKey": {"content": b64(cert.as_bytes())}}}});
    let body = b64(entry.to_string().as_bytes());
    let log_id = sha2_of(&store.read("rekor.der"));
    let canonical = format!(
        "{{\"body\":\"{body}\",\"integratedTime\":{when},\"logID\":\"{}\",\"logIndex\":9}}",
        hex::encode(&log_id)
    );
    let set = b64(&store.sign("rekor.key", canonical.as_bytes()));
    let bundle = serde_json::to_vec(&json!({
        "mediaType": BUNDLE,
        "verificationMaterial": {
            "certificate": {"rawBytes": b64(&store.der("leaf.pem"))},
            "tlogEntries": [{
                "logIndex": "9", "logId": {"keyId": b64(&log_id)},
                "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                "integratedTime": when.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": set},
                "canonicalizedBody": body,
            }],
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&sha2_of(&manifest))},
            "signature": signature,
        },
    }))
    .unwrap();
    let empty = b"{}".to_vec();
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": BUNDLE,
        "config": desc("application/vnd.oci.empty.v1+json", &empty),
        "layers": [desc(BUNDLE, &bundle)],
        "subject": desc("application/vnd.oci.image.manifest.v1+json", &manifest),
    }))
    .unwrap();
    l.referrer(&referrer, vec![bundle, empty]);
    l.write(&dir.join(name))
}

#[test]
fn a_keyless_sigstore_bundle_verifies_offline_by_its_own_tlog_entry() {
    let dir = scratch();
    let d = dir.path();
    let sigstore = Sigstore::new(d, "bundle-sigstore");
    let root = sigstore.trusted_root();
    let good = bundled_layout(d, "bundled", &sigstore, now());
    let (ok, text) = verify(d, &good, &root, SIGNER, ISSUER);
    assert!(
        ok && text.contains(&format!("signed by {SIGNER} ({ISSUER}")),
        "{text}"
    );
    // The identity still counts.
    let (ok, text) = verify(d, &good, &root, "someone@else.example", ISSUER);
    assert!(!ok && text.contains("not someone@else.example"), "{text}");
    // Another sigstore's root trusts neither the CA nor the log that promised the entry.
    let other = Sigstore::new(d, "other-sigstore").trusted_root();
    let (ok, text) = verify(d, &good, &other, SIGNER, ISSUER);
    assert!(!ok && text.contains("does not trust"), "{text}");
    // Logged after the ten-minute certificate had expired (a day on): refused.
    let late = bundled_layout(d, "late", &sigstore, now() + 3 * 86_400);
    let (ok, text) = verify(d, &late, &root, SIGNER, ISSUER);
    assert!(!ok, "{text}");
}
