//! containerd both ways, through the containerd the Docker Engine runs here: it imports what
//! `airlock save` writes (keying on `index.json`, as FORMATS.md says), and what `ctr export`
//! writes (the containerd dialect: original manifests, compressed blobs) loads in airlock.

use std::path::Path;
use std::process::Command;

use crate::util::{fixtures, require_tool, scratch, Airlock};

/// The containerd socket of the Docker Engine on this machine kind.
const SOCKET: &str = "/var/run/docker/containerd/containerd.sock";
const APP: &str = "localhost/airlock-test/app:1";
const APP2: &str = "localhost/airlock-test/app2:1";

/// `ctr` in a namespace of its own, removed when dropped.
pub(crate) struct Ctr {
    namespace: String,
}

impl Ctr {
    pub(crate) fn new() -> Ctr {
        Ctr::new_named("")
    }

    /// A namespace of its own for each caller in one test process.
    pub(crate) fn new_named(what: &str) -> Ctr {
        require_tool("ctr");
        assert!(
            Path::new(SOCKET).exists(),
            "containerd's socket {SOCKET} is missing: these tests need the Docker Engine's containerd and never skip"
        );
        Ctr {
            namespace: format!("airlock-test-{}{what}", std::process::id()),
        }
    }

    /// Run `ctr` in this namespace, whatever it answers.
    pub(crate) fn output(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .args(["--address", SOCKET, "-n", &self.namespace])
            .args(args)
            .output()
            .unwrap()
    }

    pub(crate) fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// name -> manifest digest, from `ctr images ls`.
    pub(crate) fn images(&self) -> Vec<(String, String)> {
        self.run(&["images", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() >= 3).then(|| (cols[0].to_string(), cols[2].to_string()))
            })
            .collect()
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let base = ["--address", SOCKET, "-n", &self.namespace];
        if let Ok(out) = Command::new("ctr")
            .args(base)
            .args(["images", "ls", "-q"])
            .output()
        {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("ctr")
                    .args(base)
                    .args(["images", "rm", name])
                    .output();
            }
        }
        let _ = Command::new("ctr")
            .args(["--address", SOCKET, "namespaces", "rm", &self.namespace])
            .output();
    }
}

#[test]
fn containerd_imports_airlock_archives_and_airlock_loads_ctr_exports() {
    let ctr = Ctr::new();
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    airlock.ok(&[
        "load",
        "-q",
        "-i",
        fixtures().join("podman-multi.tar").to_str().unwrap(),
    ]);
    let saved = dir.path().join("saved.tar");
    airlock.ok(&["save", "-o", saved.to_str().unwrap(), APP, APP2]);

    // containerd imports (and unpacks) the archive; the manifests are airlock's, unchanged.
    ctr.run(&["images", "import", saved.to_str().unwrap()]);
    let listed = ctr.images();
    for name in [APP, APP2] {
        let want = airlock.inspect(name)["ManifestDigest"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            listed.iter().any(|(n, d)| n == name && *d == want),
            "{name} with manifest {want} not in ctr images: {listed:?}"
        );
    }

    // What `ctr export` writes loads back with the same IDs and manifest digests.
    let exported = dir.path().join("ctr-export.tar");
    ctr.run(&["images", "export", exported.to_str().unwrap(), APP, APP2]);
    let back = Airlock::new(&dir.path().join("back"));
    let out = back.ok(&["load", "-i", exported.to_str().unwrap()]);
    for name in [APP, APP2] {
        assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
        let (a, b) = (airlock.inspect(name), back.inspect(name));
        assert_eq!(a["Id"], b["Id"], "{name}: image ID");
        assert_eq!(
            a["ManifestDigest"], b["ManifestDigest"],
            "{name}: manifest digest"
        );
        assert_eq!(a["RootFS"], b["RootFS"], "{name}: diffIDs");
    }
}
