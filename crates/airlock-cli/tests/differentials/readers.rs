//! The oracle: what docker, podman, skopeo and containerd each make of one archive.
//!
//! Each reader is asked the same question, "which images does this archive hold?", and
//! answers with the image IDs (config digests) it loaded or with its refusal. A test then
//! checks airlock refuses what they read differently and agrees with what they read alike.

use std::path::Path;
use std::process::{Command, Output};

use crate::containerd::Ctr;
use crate::util::{require_tool, sha256, Podman};

/// What one reader made of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// It loaded these images (config digests, sorted).
    Loaded(Vec<String>),
    /// It refused the archive, saying this.
    Refused(String),
}

impl Seen {
    pub(super) fn is_refused(&self) -> bool {
        matches!(self, Seen::Refused(_))
    }
}

/// The four real loaders, each with its own state (podman a private store, containerd a
/// namespace of its own), so tests can run side by side.
pub(super) struct Readers {
    podman: Podman,
    ctr: Ctr,
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Readers {
    pub(super) fn new(what: &str) -> Readers {
        for tool in ["docker", "podman", "skopeo", "ctr"] {
            require_tool(tool);
        }
        Readers {
            podman: Podman::new(),
            ctr: Ctr::new_named(what),
        }
    }

    /// `docker load`, then the ID of every image it names; the images are removed again.
    pub(super) fn docker(&self, archive: &Path) -> Seen {
        let out = Command::new("docker")
            .args(["load", "-i"])
            .arg(archive)
            .output()
            .unwrap();
        if !out.status.success() {
            return Seen::Refused(text(&out));
        }
        let mut ids = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(id) = line.strip_prefix("Loaded image ID: ") {
                ids.push(id.trim().to_string());
            } else if let Some(name) = line.strip_prefix("Loaded image: ") {
                let inspect = Command::new("docker")
                    .args(["image", "inspect", "-f", "{{.Id}}", name.trim()])
                    .output()
                    .unwrap();
                ids.push(String::from_utf8_lossy(&inspect.stdout).trim().to_string());
                let _ = Command::new("docker")
                    .args(["rmi", "-f", name.trim()])
                    .output();
            }
        }
        for id in &ids {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
        ids.sort();
        Seen::Loaded(ids)
    }

    /// `podman load` into its private store, then every image ID there; the store is emptied.
    pub(super) fn podman(&self, archive: &Path) -> Seen {
        let out = self
            .podman
            .cmd()
            .args(["load", "-i"])
            .arg(archive)
            .output()
            .unwrap();
        if !out.status.success() {
            return Seen::Refused(text(&out));
        }
        let listed = self
            .podman
            .ok(&["images", "--no-trunc", "--format", "{{.ID}}"]);
        let mut ids: Vec<String> = listed
            .lines()
            .map(|l| format!("sha256:{}", l.trim().trim_start_matches("sha256:")))
            .collect();
        ids.sort();
        ids.dedup();
        let _ = self.podman.cmd().args(["rmi", "-af"]).output();
        Seen::Loaded(ids)
    }

    /// `skopeo inspect --config` of `transport:archive` (skopeo loads nothing, so what it
    /// reads is the one image the archive names).
    pub(super) fn skopeo(&self, transport: &str, archive: &Path) -> Seen {
        let out = Command::new("skopeo")
            .args(["inspect", "--config", "--raw"])
            .arg(format!("{transport}:{}", archive.display()))
            .output()
            .unwrap();
        if !out.status.success() {
            return Seen::Refused(text(&out));
        }
        Seen::Loaded(vec![sha256(&out.stdout)])
    }

    /// `ctr images import --all-platforms`, then the config of every image it made; they
    /// are removed again.
    pub(super) fn containerd(&self, archive: &Path) -> Seen {
        let path = archive.to_str().unwrap();
        let out = self
            .ctr
            .output(&["images", "import", "--all-platforms", path]);
        if !out.status.success() {
            return Seen::Refused(text(&out));
        }
        let mut ids = Vec::new();
        for (name, digest) in self.ctr.images() {
            let doc: serde_json::Value =
                serde_json::from_str(&self.ctr.run(&["content", "get", &digest])).unwrap();
            let manifest = match doc["manifests"].as_array() {
                Some(children) => serde_json::from_str(&self.ctr.run(&[
                    "content",
                    "get",
                    children[0]["digest"].as_str().unwrap(),
                ]))
                .unwrap(),
                None => doc,
            };
            ids.push(manifest["config"]["digest"].as_str().unwrap().to_string());
            self.ctr.run(&["images", "rm", &name]);
        }
        ids.sort();
        Seen::Loaded(ids)
    }

    /// Every reader's answer, named; skopeo reads through `skopeo_transport`.
    pub(super) fn all(&self, archive: &Path, skopeo_transport: &str) -> Vec<(&'static str, Seen)> {
        vec![
            ("docker", self.docker(archive)),
            ("podman", self.podman(archive)),
            ("skopeo", self.skopeo(skopeo_transport, archive)),
            ("containerd", self.containerd(archive)),
        ]
    }
}

/// Assert every reader loaded exactly `ids`.
pub(super) fn all_loaded(seen: &[(&str, Seen)], ids: &[&str]) {
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    for (reader, s) in seen {
        assert_eq!(s, &Seen::Loaded(want.clone()), "{reader}");
    }
}

/// Assert every reader refused.
pub(super) fn all_refused(seen: &[(&str, Seen)]) {
    for (reader, s) in seen {
        assert!(s.is_refused(), "{reader} read it: {s:?}");
    }
}

/// airlock's answer: `verify` and `load` both refuse, with a message holding every one of
/// `says`, and the store is byte-identical afterwards.
pub(super) fn airlock_refuses(store: &Path, archive: &Path, says: &[&str]) {
    let a = crate::util::Airlock::new(store);
    a.ok(&["images"]);
    let before = crate::util::tree_hash(&a.store);
    for cmd in ["verify", "load"] {
        let err = a.fails(&[cmd, "-i", archive.to_str().unwrap()]);
        for s in says {
            assert!(err.contains(s), "{cmd}: {s:?} not in: {err}");
        }
    }
    assert_eq!(crate::util::tree_hash(&a.store), before, "store changed");
}

/// airlock's answer when it reads the archive: the IDs `load` stored, sorted (after
/// `verify` passed too).
pub(super) fn airlock_loads(store: &Path, archive: &Path) -> Vec<String> {
    let a = crate::util::Airlock::new(store);
    a.ok(&["verify", "-i", archive.to_str().unwrap()]);
    a.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let listed: serde_json::Value =
        serde_json::from_str(&a.ok(&["images", "--format", "json"])).unwrap();
    let mut ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A tar written header by header, so a test can make the headers real tools disagree on.
#[derive(Default)]
pub(super) struct RawTar(Vec<u8>);

impl RawTar {
    /// An entry with this header (its size and checksum set here) and data.
    pub(super) fn entry(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A ustar header whose name field holds `name` as given (uncleaned).
    pub(super) fn header(name: &str, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h
    }

    /// A regular file.
    pub(super) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(Self::header(name, tar::EntryType::Regular), data)
    }

    /// A PAX extended header with these records, for the next entry.
    pub(super) fn pax(&mut self, records: &[(&str, &str)]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut len = rest.len() + 1;
            while len.to_string().len() + rest.len() != len {
                len = len.to_string().len() + rest.len();
            }
            body.extend_from_slice(format!("{len}{rest}").as_bytes());
        }
        self.entry(
            Self::header("PaxHeaders/entry", tar::EntryType::XHeader),
            &body,
        )
    }

    /// The end-of-archive marker, then the file.
    pub(super) fn write(&mut self, path: &Path) {
        self.0.extend_from_slice(&[0u8; 1024]);
        std::fs::write(path, &self.0).unwrap();
    }
}
