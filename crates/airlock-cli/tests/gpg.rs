//! GPG simple signing and the signatures of containers/image's `dir:` layout (issue 11, 3):
//! keys made by the real gpg, signatures by the real `skopeo standalone-sign`, and skopeo's
//! `standalone-verify` as the oracle for what is valid. airlock reads `signature-N` files,
//! keeps them as referrers through the store and an archive, and writes them back.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::trust::{key_pair, Layout};
use crate::util::{require_tool, scratch, sh, Airlock};

const APP: &str = "registry.example/team/app";

/// A GNUPGHOME of its own, with keys made by gpg.
pub(crate) struct Gpg {
    home: PathBuf,
}

impl Gpg {
    pub(crate) fn new(dir: &Path) -> Gpg {
        require_tool("gpg");
        let home = dir.join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Gpg { home }
    }

    pub(crate) fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GNUPGHOME", &self.home);
        c
    }

    /// Make a signing key for `email` (valid for `expire`, at gpg's `now`); returns its
    /// fingerprint.
    pub(crate) fn key(&self, email: &str, expire: &str, faked_time: Option<&str>) -> String {
        let mut c = self.cmd("gpg");
        c.args(["--batch", "--passphrase", ""]);
        if let Some(t) = faked_time {
            c.args(["--faked-system-time", t]);
        }
        sh(c.args(["--quick-gen-key", email, "ed25519", "sign", expire]));
        let out = sh(self
            .cmd("gpg")
            .args(["--with-colons", "--list-keys", email]));
        out.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("a fingerprint")
    }

    /// `gpg --export` of `email` into a keyring file.
    pub(crate) fn export(&self, email: &str, path: &Path) -> PathBuf {
        let out = self.cmd("gpg").args(["--export", email]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty());
        std::fs::write(path, out.stdout).unwrap();
        path.to_path_buf()
    }

    /// skopeo's simple-signing signature of `manifest` as `reference` by `fingerprint`.
    pub(crate) fn skopeo_sign(
        &self,
        manifest: &Path,
        reference: &str,
        fingerprint: &str,
        out: &Path,
    ) {
        require_tool("skopeo");
        sh(self
            .cmd("skopeo")
            .arg("standalone-sign")
            .arg(manifest)
            .args([reference, fingerprint, "-o"])
            .arg(out));
    }

    /// Whether skopeo's `standalone-verify` accepts `signature` of `manifest`.
    fn skopeo_verifies(&self, manifest: &Path, reference: &str, fpr: &str, sig: &Path) -> bool {
        self.cmd("skopeo")
            .arg("standalone-verify")
            .arg(manifest)
            .args([reference, fpr])
            .arg(sig)
            .output()
            .unwrap()
            .status
            .success()
    }
}

/// A store with APP:1 and APP:2 (unsigned), and APP:1 written as a `dir:` layout.
pub(crate) fn store_and_dir(d: &Path) -> (Airlock, PathBuf) {
    let mut l = Layout::default();
    l.image(&format!("{APP}:1"), b"one\n");
    l.image(&format!("{APP}:2"), b"two\n");
    let layout = l.write(&d.join("layout"));
    let near = Airlock::new(&d.join("near"));
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    let dir = d.join("dir");
    near.ok(&[
        "copy",
        &format!("{APP}:1"),
        &format!("dir:{}", dir.display()),
    ]);
    (near, dir)
}

fn verify_with(store: &Airlock, input: &Path, key: &Path) -> std::process::Output {
    store.run(&[
        "verify",
        "-i",
        input.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
}

#[test]
fn a_gpg_signature_skopeo_made_is_verified_carried_across_and_written_back() {
    let dir = scratch();
    let d = dir.path();
    let gpg = Gpg::new(d);
    let fpr = gpg.key("signer@site", "never", None);
    let ring = gpg.export("signer@site", &d.join("signer.gpg"));
    let (near, layout) = store_and_dir(d);
    let manifest = layout.join("manifest.json");
    let reference = format!("{APP}:1");
    gpg.skopeo_sign(&manifest, &reference, &fpr, &layout.join("signature-1"));
    assert!(gpg.skopeo_verifies(&manifest, &reference, &fpr, &layout.join("signature-1")));

    let out = verify_with(&near, &layout, &ring);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("signed by GPG key {fpr}")),
        "{stdout}"
    );

    // Across: the signature is a referrer in the store, goes into the archive, and the far
    // side checks it before loading.
    let carried = Airlock::new(&d.join("carried"));
    carried.ok(&[
        "copy",
        &format!("dir:{}", layout.display()),
        &format!("store:{reference}"),
    ]);
    let archive = d.join("across.tar");
    carried.ok(&["save", "-o", archive.to_str().unwrap(), &reference]);
    let far = Airlock::new(&d.join("far"));
    let ring_arg = ring.to_str().unwrap();
    let out = far.ok(&["load", "-i", archive.to_str().unwrap(), "--key", ring_arg]);
    assert!(out.contains(&format!("signed by GPG key {fpr}")), "{out}");
    // And back out as a dir: layout whose signature skopeo accepts, byte for byte the same.
    let back = d.join("back");
    far.ok(&["copy", &reference, &format!("dir:{}", back.display())]);
    assert_eq!(
        std::fs::read(back.join("signature-1")).unwrap(),
        std::fs::read(layout.join("signature-1")).unwrap()
    );
    assert!(gpg.skopeo_verifies(
        &back.join("manifest.json"),
        &reference,
        &fpr,
        &back.join("signature-1")
    ));
}

/// `sha256:<hex>` of a file.
fn sh_digest(path: &Path) -> String {
    crate::util::sha256(&std::fs::read(path).unwrap())
}

#[test]
fn gpg_signatures_that_do_not_count_are_refused_as_skopeo_refuses_them() {
    let dir = scratch();
    let d = dir.path();
    let gpg = Gpg::new(d);
    let fpr = gpg.key("signer@site", "never", None);
    let other = gpg.key("other@site", "never", None);
    let ring = gpg.export("signer@site", &d.join("signer.gpg"));
    let (near, layout) = store_and_dir(d);
    let reference = format!("{APP}:1");
    // Signed by a key not in the keyring.
    gpg.skopeo_sign(
        &layout.join("manifest.json"),
        &reference,
        &other,
        &layout.join("signature-1"),
    );
    let err = String::from_utf8_lossy(&verify_with(&near, &layout, &ring).stderr).into_owned();
    assert!(
        err.contains("not signed by any key in the keyrings given"),
        "{err}"
    );
    assert!(!gpg.skopeo_verifies(
        &layout.join("manifest.json"),
        &reference,
        &fpr,
        &layout.join("signature-1")
    ));
    // A signature of another image's manifest, beside this one.
    let two = d.join("two");
    near.ok(&[
        "copy",
        &format!("{APP}:2"),
        &format!("dir:{}", two.display()),
    ]);
    gpg.skopeo_sign(
        &two.join("manifest.json"),
        &reference,
        &fpr,
        &layout.join("signature-1"),
    );
    let err = String::from_utf8_lossy(&verify_with(&near, &layout, &ring).stderr).into_owned();
    assert!(
        err.contains(&format!(
            "it signs {}",
            sh_digest(&two.join("manifest.json"))
        )),
        "{err}"
    );
    assert!(!gpg.skopeo_verifies(
        &layout.join("manifest.json"),
        &reference,
        &fpr,
        &layout.join("signature-1")
    ));
    // A key that expired: made and used in 2020 (gpg's faked time), valid for a day.
    let old = gpg.key("old@site", "1d", Some("20200101T000000"));
    let old_ring = gpg.export("old@site", &d.join("old.gpg"));
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": sh_digest(&layout.join("manifest.json"))},
            "type": "atomic container signature",
        },
        "optional": {},
    });
    std::fs::write(d.join("payload.json"), payload.to_string()).unwrap();
    let _ = std::fs::remove_file(layout.join("signature-1"));
    sh(gpg
        .cmd("gpg")
        .args([
            "--batch",
            "--faked-system-time",
            "20200101T010000",
            "-u",
            &old,
            "-o",
        ])
        .arg(layout.join("signature-1"))
        .arg("--sign")
        .arg(d.join("payload.json")));
    let err = String::from_utf8_lossy(&verify_with(&near, &layout, &old_ring).stderr).into_owned();
    assert!(err.contains(&format!("key {old} has expired")), "{err}");
    // Nothing was loaded by any refusal: a load with the key stops before the store.
    let out = near.run(&[
        "load",
        "-i",
        layout.to_str().unwrap(),
        "--key",
        ring.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_cosign_signature_travels_through_a_dir_layout_in_sigstore_json() {
    let dir = scratch();
    let d = dir.path();
    let (key, public) = key_pair(d, "site", "ec");
    let (near, _) = store_and_dir(d);
    near.ok(&["sign", &format!("{APP}:1"), "--key", key.to_str().unwrap()]);
    let signed = d.join("signed");
    near.ok(&[
        "copy",
        &format!("{APP}:1"),
        &format!("dir:{}", signed.display()),
    ]);
    let file = std::fs::read(signed.join("signature-1")).unwrap();
    assert!(file.starts_with(b"\x00sigstore-json\n"), "{file:?}");
    let doc: serde_json::Value = serde_json::from_slice(&file[15..]).unwrap();
    assert_eq!(
        doc["mimeType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(doc["annotations"]["dev.cosignproject.cosign/signature"].is_string());
    // Only the image's own blobs are files; the signature's manifest is not among them.
    let files = std::fs::read_dir(&signed).unwrap().count();
    assert_eq!(
        files,
        2 + 3,
        "manifest.json, version, signature-1 and two blobs"
    );
    let out = verify_with(&near, &signed, &public);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A dir: layout whose signature-1 is no signature at all is refused by name.
    std::fs::write(signed.join("signature-1"), b"\x00sigstore-json\n{not json").unwrap();
    let err = near.fails(&["verify", "-i", signed.to_str().unwrap()]);
    assert!(err.contains("signature-1"), "{err}");
}
