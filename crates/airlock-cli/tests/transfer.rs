//! The bill of materials of a shipment (issue 11, 4): `save` writes a transfer manifest
//! into every archive, `--sign-key` signs it and the volumes' checksums, the real
//! `ssh-keygen -Y verify`, `openssl` and `sha256sum -c` accept what it wrote, `review` shows
//! it, and `verify --trusted-key` refuses an archive that is not what was signed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::trust::{key_pair, Layout};
use crate::util::{require_tool, scratch, sh, Airlock};

const APP: &str = "registry.example/team/app";

/// An OpenSSH Ed25519 key made by ssh-keygen, unencrypted: (private, public).
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require_tool("ssh-keygen");
    let key = dir.join(name);
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{name}@near"))
        .arg("-f")
        .arg(&key));
    (key.clone(), key.with_extension("pub"))
}

/// `ssh-keygen -Y verify` of `file` against `sig` by `public` in airlock's namespace.
fn ssh_keygen_verifies(dir: &Path, public: &Path, file: &Path, sig: &Path) -> bool {
    let allowed = dir.join("allowed_signers");
    let line = format!("signer@near {}", std::fs::read_to_string(public).unwrap());
    std::fs::write(&allowed, line).unwrap();
    let out = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-n",
            "airlock-transfer",
            "-I",
            "signer@near",
            "-f",
        ])
        .arg(&allowed)
        .arg("-s")
        .arg(sig)
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    out.status.success()
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// A store holding APP:1 with its cosign signature (by `cosign_key`) and APP:2 unsigned.
fn near_store(dir: &Path, cosign_key: &Path) -> Airlock {
    let mut l = Layout::default();
    let app = l.image(&format!("{APP}:1"), b"app one\n");
    l.signature(dir, APP, &app, &app, cosign_key);
    l.image(&format!("{APP}:2"), b"app two\n");
    let layout = l.write(&dir.join("layout"));
    let near = Airlock::new(&dir.join("near"));
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    near
}

#[test]
fn a_shipment_signed_with_an_ssh_key_is_checked_by_ssh_keygen_sha256sum_and_verify() {
    let dir = scratch();
    let d = dir.path();
    let (cosign_key, _) = key_pair(d, "cosign", "ec");
    let near = near_store(d, &cosign_key);
    let (key, public) = ssh_key(d, "signer");
    let archive = d.join("ship.tar");
    let a = archive.to_str().unwrap();
    near.ok(&[
        "save",
        "-o",
        a,
        "--sign-key",
        key.to_str().unwrap(),
        &format!("{APP}:1"),
        &format!("{APP}:2"),
    ]);
    // The manifest in the archive is the one beside it, byte for byte.
    let inside = sh(Command::new("tar").args(["-xOf", a, "airlock-transfer.json"]));
    let manifest_path = beside(&archive, ".transfer.json");
    assert_eq!(inside, std::fs::read_to_string(&manifest_path).unwrap());
    let manifest: serde_json::Value = serde_json::from_str(&inside).unwrap();
    let names: Vec<&str> = manifest["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["names"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{APP}:1"), format!("{APP}:2")]);
    assert_eq!(
        manifest["images"][0]["referrers"][0]["kind"], "signature",
        "{inside}"
    );
    // The real tools accept what was written: ssh-keygen both signatures, coreutils the sums.
    assert!(ssh_keygen_verifies(
        d,
        &public,
        &manifest_path,
        &beside(&archive, ".transfer.json.sig")
    ));
    let sums = beside(&archive, ".SHA256SUMS");
    assert!(ssh_keygen_verifies(
        d,
        &public,
        &sums,
        &beside(&archive, ".SHA256SUMS.sig")
    ));
    assert!(!ssh_keygen_verifies(
        d,
        &public,
        &sums,
        &beside(&archive, ".transfer.json.sig")
    ));
    sh(Command::new("sha256sum")
        .arg("-c")
        .arg(&sums)
        .current_dir(d));

    // The far side: the right key passes, another key is refused by name.
    let far = Airlock::new(&d.join("far"));
    let out = far.ok(&["verify", "-i", a, "--trusted-key", public.to_str().unwrap()]);
    assert!(out.contains("Transfer manifest signed by"), "{out}");
    assert!(out.contains("SHA256SUMS signed by"), "{out}");
    let (_, other) = ssh_key(d, "other");
    let err = far.fails(&["verify", "-i", a, "--trusted-key", other.to_str().unwrap()]);
    assert!(
        err.contains("is not signed by") && err.contains("other.pub"),
        "{err}"
    );

    // review shows every image and its signature status; --json is the manifest itself.
    let out = far.ok(&["review", a, "--trusted-key", public.to_str().unwrap()]);
    assert!(
        out.contains("Manifest signature: verified, signed by"),
        "{out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_string()
    };
    assert!(
        line(&format!("{APP}:1 ")).contains("1, not checked"),
        "{out}"
    );
    assert!(line(&format!("{APP}:2 ")).contains("none"), "{out}");
    assert_eq!(far.ok(&["review", "--json", a]), inside);
    // Nothing was loaded by any of it.
    assert!(!far.ok(&["images"]).contains(APP));

    // An archive that is not the one signed: the checksums no longer match.
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.extend_from_slice(&[0u8; 1024]);
    std::fs::write(&archive, &bytes).unwrap();
    let err = far.fails(&["verify", "-i", a, "--trusted-key", public.to_str().unwrap()]);
    assert!(err.contains("has SHA-256"), "{err}");
}

#[test]
fn a_renamed_image_no_longer_matches_the_signed_manifest() {
    let dir = scratch();
    let d = dir.path();
    let (cosign_key, _) = key_pair(d, "cosign", "ec");
    let near = near_store(d, &cosign_key);
    let (key, public) = ssh_key(d, "signer");
    let archive = d.join("ship.tar");
    near.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
        &format!("{APP}:2"),
    ]);
    // Unpack it and rename the image in every document a loader reads its name from: the
    // signed manifest still verifies, but it lists another name.
    let unpacked = d.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked));
    for doc in ["index.json", "manifest.json", "repositories"] {
        let p = unpacked.join(doc);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("app:2", "app:9").replace("\"2\"", "\"9\"")).unwrap();
    }
    let far = Airlock::new(&d.join("far"));
    let u = unpacked.to_str().unwrap();
    far.ok(&["verify", "-i", u]);
    let err = far.fails(&["verify", "-i", u, "--trusted-key", public.to_str().unwrap()]);
    assert!(
        err.contains("does not list what the archive holds") && err.contains("app:9"),
        "{err}"
    );
    // A manifest whose bytes were changed fails its signature.
    let m = unpacked.join("airlock-transfer.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("app:2", "app:9")).unwrap();
    let err = far.fails(&["verify", "-i", u, "--trusted-key", public.to_str().unwrap()]);
    assert!(err.contains("is not signed by"), "{err}");
}

#[test]
fn a_pem_key_signs_a_split_shipment_that_openssl_and_sha256sum_accept() {
    let dir = scratch();
    let d = dir.path();
    let (cosign_key, cosign_pub) = key_pair(d, "cosign", "ec");
    let near = near_store(d, &cosign_key);
    let (key, public) = key_pair(d, "shipper", "ec");
    let base = d.join("split.tar");
    // --key checks the images' signatures as they are saved; the verdict goes in the manifest.
    let out = near.run(&[
        "save",
        "-o",
        base.to_str().unwrap(),
        "--split",
        "4k",
        "--key",
        cosign_pub.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
        &format!("{APP}:1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Signature verified: {APP}:1")),
        "{stderr}"
    );
    let sums = beside(&base, ".SHA256SUMS");
    let listed = sh(Command::new("sha256sum")
        .arg("-c")
        .arg(&sums)
        .current_dir(d));
    assert!(listed.matches(": OK").count() >= 2, "{listed}");
    // openssl checks the cosign-style signature: base64 of the DER ECDSA signature.
    for (file, sig) in [
        (".SHA256SUMS", ".SHA256SUMS.sig"),
        (".transfer.json", ".transfer.json.sig"),
    ] {
        use base64::Engine;
        let text = std::fs::read_to_string(beside(&base, sig)).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .unwrap();
        let der = d.join("sig.der");
        std::fs::write(&der, raw).unwrap();
        let out = sh(Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public)
            .arg("-signature")
            .arg(&der)
            .arg(beside(&base, file)));
        assert!(out.contains("Verified OK"), "{file}: {out}");
    }
    let far = Airlock::new(&d.join("far"));
    let first = beside(&base, ".000");
    let out = far.ok(&[
        "verify",
        "-i",
        first.to_str().unwrap(),
        "--trusted-key",
        public.to_str().unwrap(),
    ]);
    assert!(out.contains("every file it names matches"), "{out}");
    let out = far.ok(&["review", first.to_str().unwrap()]);
    assert!(out.contains("1, verified"), "{out}");
    assert!(
        out.contains(&format!("Signature verified at save: {APP}:1")),
        "{out}"
    );
    // A volume lost on the way is named.
    std::fs::remove_file(beside(&base, ".001")).unwrap();
    let err = far.fails(&[
        "verify",
        "-i",
        first.to_str().unwrap(),
        "--trusted-key",
        public.to_str().unwrap(),
    ]);
    assert!(err.contains("split.tar.001"), "{err}");
}

#[test]
fn keys_airlock_cannot_sign_with_are_refused_before_anything_is_written() {
    let dir = scratch();
    let d = dir.path();
    let (cosign_key, _) = key_pair(d, "cosign", "ec");
    let near = near_store(d, &cosign_key);
    require_tool("ssh-keygen");
    let locked = d.join("locked");
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&locked));
    let archive = d.join("never.tar");
    let err = near.fails(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--sign-key",
        locked.to_str().unwrap(),
        &format!("{APP}:2"),
    ]);
    assert!(err.contains("encrypted with a passphrase"), "{err}");
    let err = near.fails(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--sign-key",
        locked.with_extension("pub").to_str().unwrap(),
        &format!("{APP}:2"),
    ]);
    assert!(err.contains("not a signing key airlock can use"), "{err}");
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("never"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
