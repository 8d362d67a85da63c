//! `--policy`: containers-policy.json, the file podman and skopeo read (issue 11, 3). The
//! same policy file is given to the real skopeo and to airlock, and both must reach the same
//! verdict on the same signed `dir:` layout; and an archive holding one image the policy
//! refuses loads nothing and names it.

use std::path::Path;

use serde_json::json;

use crate::gpg::{store_and_dir, Gpg};
use crate::trust::{key_pair, Layout};
use crate::util::{scratch, tree_hash, Airlock};

const APP: &str = "registry.example/team/app";

/// A policy requiring a GPG signature by `ring` naming `identity`, for skopeo's `dir:` and
/// airlock's `docker` scope alike; everything else rejected.
fn gpg_policy(path: &Path, ring: &Path, identity: &str) {
    let signed = json!([{
        "type": "signedBy",
        "keyType": "GPGKeys",
        "keyPath": ring,
        "signedIdentity": {"type": "exactReference", "dockerReference": identity},
    }]);
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {
            "dir": {"": signed},
            "docker": {"registry.example/team": signed},
        },
    });
    std::fs::write(path, serde_json::to_vec_pretty(&policy).unwrap()).unwrap();
}

/// skopeo's verdict: whether `skopeo --policy` copies the layout.
fn skopeo_accepts(gpg: &Gpg, policy: &Path, layout: &Path, out: &Path) -> bool {
    crate::util::require_tool("skopeo");
    gpg.cmd("skopeo")
        .arg("--policy")
        .arg(policy)
        .arg("copy")
        .arg(format!("dir:{}", layout.display()))
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap()
        .status
        .success()
}

/// airlock's verdict on the same layout taken in as `APP:1`.
fn airlock_accepts(store: &Airlock, policy: &Path, layout: &Path) -> (bool, String) {
    store.run_text(&[
        "copy",
        "--policy",
        policy.to_str().unwrap(),
        &format!("dir:{}", layout.display()),
        &format!("store:{APP}:1"),
    ])
}

#[test]
fn skopeo_and_airlock_agree_on_one_policy_file() {
    let dir = scratch();
    let d = dir.path();
    let gpg = Gpg::new(d);
    let fpr = gpg.key("signer@site", "never", None);
    gpg.key("other@site", "never", None);
    let ring = gpg.export("signer@site", &d.join("signer.gpg"));
    let other_ring = gpg.export("other@site", &d.join("other.gpg"));
    let (_, layout) = store_and_dir(d);
    let reference = format!("{APP}:1");
    gpg.skopeo_sign(
        &layout.join("manifest.json"),
        &reference,
        &fpr,
        &layout.join("signature-1"),
    );
    let cases = [
        (
            "the signer's key and identity",
            ring.clone(),
            reference.clone(),
            true,
        ),
        ("another keyring", other_ring, reference.clone(), false),
        ("another identity", ring.clone(), format!("{APP}:2"), false),
    ];
    for (n, (what, keyring, identity, accepted)) in cases.into_iter().enumerate() {
        let policy = d.join(format!("policy-{n}.json"));
        gpg_policy(&policy, &keyring, &identity);
        let skopeo = skopeo_accepts(&gpg, &policy, &layout, &d.join(format!("skopeo-{n}")));
        let store = Airlock::new(&d.join(format!("store-{n}")));
        let (ours, text) = airlock_accepts(&store, &policy, &layout);
        assert_eq!(skopeo, accepted, "{what}: skopeo");
        assert_eq!(ours, accepted, "{what}: airlock: {text}");
        if accepted {
            assert!(text.contains(&format!("signed by GPG key {fpr}")), "{text}");
        } else {
            assert!(text.contains("requires a GPG signature"), "{what}: {text}");
            assert!(
                !store.ok(&["images"]).contains(APP),
                "{what}: nothing loaded"
            );
        }
    }
}

#[test]
fn an_archive_with_one_image_the_policy_refuses_loads_nothing_and_names_it() {
    let dir = scratch();
    let d = dir.path();
    let (key, public) = key_pair(d, "site", "ec");
    let mut l = Layout::default();
    l.image(&format!("{APP}:1"), b"signed\n");
    l.image(&format!("{APP}:2"), b"not signed\n");
    l.image("docker.io/library/tools:1", b"anything goes\n");
    let layout = l.write(&d.join("layout"));
    let near = Airlock::new(&d.join("near"));
    near.ok(&["load", "-q", "-i", layout.to_str().unwrap()]);
    near.ok(&["sign", &format!("{APP}:1"), "--key", key.to_str().unwrap()]);
    let archive = d.join("ship.tar");
    near.ok(&["save", "-o", archive.to_str().unwrap(), "--all"]);
    // cosign signs the repository only, so the identity rule is matchRepository.
    let policy = d.join("policy.json");
    let doc = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "registry.example": [{
                "type": "sigstoreSigned",
                "keyPath": public,
                "signedIdentity": {"type": "matchRepository"},
            }],
            "docker.io/library": [{"type": "insecureAcceptAnything"}],
        }},
    });
    std::fs::write(&policy, doc.to_string()).unwrap();
    let far = Airlock::new(&d.join("far"));
    far.ok(&["images"]);
    let before = tree_hash(&d.join("far"));
    let p = policy.to_str().unwrap();
    let err = far.fails(&["load", "-i", archive.to_str().unwrap(), "--policy", p]);
    assert!(
        err.contains(&format!(
            "{APP}:2 (transports.docker \"registry.example\" requires a sigstore signature"
        )),
        "{err}"
    );
    assert!(!err.contains(&format!("{APP}:1 (")), "{err}");
    assert_eq!(
        tree_hash(&d.join("far")),
        before,
        "nothing entered the store"
    );
    // Without the unsigned image, it loads, and says how each image was accepted.
    let fine = d.join("fine.tar");
    near.ok(&["rmi", &format!("{APP}:2")]);
    near.ok(&["save", "-o", fine.to_str().unwrap(), "--all"]);
    let out = far.ok(&["load", "-i", fine.to_str().unwrap(), "--policy", p]);
    assert!(
        out.contains(&format!("Signature verified: {APP}:1, signed by")),
        "{out}"
    );
    assert!(out.contains("Accepted unsigned: tools:1"), "{out}");
}

#[test]
fn a_policy_airlock_cannot_apply_is_refused_before_anything_is_read() {
    let dir = scratch();
    let d = dir.path();
    let far = Airlock::new(&d.join("far"));
    let cases = [
        (json!({"default": []}), "no \"default\" requirements"),
        (
            json!({"default": [{"type": "sigstoreSigned", "pki": {}}]}),
            "give exactly one of caRootsPath and caRootsData",
        ),
        (
            json!({"default": [{"type": "sigstoreSigned", "fulcio": {}, "rekorPublicKeyPath": "/x"}]}),
            "give exactly one of caPath and caData",
        ),
        (
            json!({"default": [{"type": "signedBaseLayer"}]}),
            "\"signedBaseLayer\" is not one airlock checks",
        ),
        (
            json!({"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}),
            "exactly one of keyPath, keyPaths and keyData",
        ),
        (
            json!({"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"x": [{"type": "bogus"}]}}}),
            "in \"docker:x\"",
        ),
    ];
    for (n, (doc, expected)) in cases.into_iter().enumerate() {
        let policy = d.join(format!("bad-{n}.json"));
        std::fs::write(&policy, doc.to_string()).unwrap();
        let err = far.fails(&[
            "verify",
            "-i",
            "/nonexistent.tar",
            "--policy",
            policy.to_str().unwrap(),
        ]);
        assert!(
            err.contains("is not a policy airlock can apply") && err.contains(expected),
            "{doc}: {err}"
        );
    }
}
