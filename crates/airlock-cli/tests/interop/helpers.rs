//! Helpers for the interop cells: the tools, rootfs comparison and the Docker Engine guard.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use crate::util::{require_tool, sh, sha256, tar_listing, Airlock};

use super::*;

// ------------------------------------------------------------------------------ helpers

pub(super) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub(super) fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub(super) fn stderr_of(out: &Output) -> String {
    one_line(&String::from_utf8_lossy(&out.stderr), 300)
}

pub(super) fn docker(args: &[&str]) -> String {
    sh(Command::new("docker").args(args))
}

pub(super) fn docker_output(args: &[&str]) -> Output {
    output(Command::new("docker").args(args))
}

pub(super) fn docker_id(name: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string()
}

pub(super) fn docker_layers(name: &str) -> Vec<String> {
    let j = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        name,
    ]);
    serde_json::from_str(&j).unwrap()
}

pub(super) fn docker_has(reference: &str) -> bool {
    docker_output(&["image", "inspect", reference])
        .status
        .success()
}

/// `sha256:0123456789ab` for details.
pub(super) fn short(id: &str) -> &str {
    &id[..id.len().min(19)]
}

pub(super) fn airlock_id(a: &Airlock, name: &str) -> String {
    a.inspect(name)["Id"].as_str().unwrap().to_string()
}

pub(super) fn airlock_layers(a: &Airlock, name: &str) -> Vec<String> {
    serde_json::from_value(a.inspect(name)["RootFS"]["Layers"].clone()).unwrap()
}

pub(super) fn airlock_export(a: &Airlock, image: &str, out: &Path) -> Listing {
    a.ok(&["export", "-o", s(out), image]);
    tar_listing(out)
}

/// skopeo's stdout (config and manifest bytes must not be re-encoded).
pub(super) fn skopeo(args: &[&str]) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").args(args);
    let out = output(&mut c);
    assert!(out.status.success(), "{c:?} failed: {}", stderr_of(&out));
    out.stdout
}

pub(super) fn skopeo_config(transport_ref: &str) -> (String, serde_json::Value) {
    let raw = skopeo(&["inspect", "--config", "--raw", transport_ref]);
    (sha256(&raw), serde_json::from_slice(&raw).unwrap())
}

/// Config digest of the image `index.json` names `ref_name` in an OCI layout directory.
pub(super) fn layout_config_digest(dir: &Path, ref_name: &str) -> String {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    let index = read(dir.join("index.json"));
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == ref_name)
        .unwrap_or_else(|| panic!("{}: no manifest named {ref_name}", dir.display()));
    let hex = desc["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let manifest = read(dir.join("blobs/sha256").join(hex));
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

pub(super) fn is_root() -> bool {
    sh(Command::new("id").arg("-u")).trim() == "0"
}

/// Compare root filesystem listings (type, mode, owner, link, content digest, xattrs of every
/// entry; mtimes are not compared). With `docker_side`, `got` is a `docker export`: the
/// container init layer's files are dropped, and docker's mount dirs where one side lacks them.
pub(super) fn same_rootfs(what: &str, want: &Listing, got: &Listing, docker_side: bool) -> String {
    let drop_xattrs = docker_side && DOCKER_DROPS_XATTRS.load(Ordering::Relaxed);
    let (want, got) = (normalize(want, drop_xattrs), normalize(got, drop_xattrs));
    let keys: BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    let (mut ignored, mut diffs) = (Vec::new(), Vec::new());
    for k in keys {
        let (w, g) = (want.get(k), got.get(k));
        if w == g {
            continue;
        }
        let k = k.as_str();
        if docker_side
            && (DOCKER_INIT_FILES.contains(&k)
                || (DOCKER_MOUNT_DIRS.contains(&k) && (w.is_none() || g.is_none())))
        {
            ignored.push(k.to_string());
            continue;
        }
        diffs.push(format!(
            "{k}: want [{}] got [{}]",
            w.map_or("absent", String::as_str),
            g.map_or("absent", String::as_str)
        ));
    }
    assert!(
        diffs.is_empty(),
        "{what}: rootfs differs in {} of {} entries: {}",
        diffs.len(),
        want.len(),
        diffs.iter().take(6).cloned().collect::<Vec<_>>().join("; ")
    );
    let n = want.keys().filter(|k| !ignored.contains(k)).count();
    let mut d = format!("{n} entries equal");
    if !ignored.is_empty() {
        d.push_str(&format!(" (minus {} docker-made paths)", ignored.len()));
        IGNORED.lock().unwrap().extend(ignored);
    }
    if drop_xattrs {
        d.push_str(", xattrs not compared");
    }
    d
}

/// A listing made comparable across writers: the members of a hardlink group all show the
/// group's content and members (which member a tar writes as the link is arbitrary: docker
/// export and airlock pick different ones); with `drop_xattrs`, xattrs are blanked.
fn normalize(l: &Listing, drop_xattrs: bool) -> Listing {
    let link_of = |desc: &str| -> Option<String> {
        let rest = desc.strip_prefix("Link ")?;
        let (_, after) = rest.split_once(" link=")?;
        let (target, _) = after.rsplit_once(" data=")?;
        Some(
            target
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string(),
        )
    };
    let root_of = |p: &str| -> String {
        let mut cur = p.to_string();
        for _ in 0..16 {
            match l.get(&cur).and_then(|d| link_of(d)) {
                Some(t) => cur = t,
                None => break,
            }
        }
        cur
    };
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, d) in l {
        if link_of(d).is_some() {
            let r = root_of(p);
            groups
                .entry(r.clone())
                .or_insert_with(|| vec![r])
                .push(p.clone());
        }
    }
    let mut out = Listing::new();
    for (p, d) in l {
        let mut desc = match link_of(d) {
            Some(_) => l.get(&root_of(p)).cloned().unwrap_or_else(|| d.clone()),
            None => d.clone(),
        };
        if let Some(members) = groups.get(&root_of(p)) {
            let mut members = members.clone();
            members.sort();
            desc = format!("{desc} hardlinks={members:?}");
        }
        if drop_xattrs {
            if let Some((head, _)) = desc.split_once(" xattrs=") {
                let tail = desc.split_once(" hardlinks=").map(|(_, h)| h.to_string());
                desc = match tail {
                    Some(h) => format!("{head} hardlinks={h}"),
                    None => head.to_string(),
                };
            }
        }
        out.insert(p.clone(), desc);
    }
    out
}

/// Does this engine keep a layer's `user.*` xattrs on disk? `docker import` a one-file tar
/// that carries one, and look for it in `docker export` (and in `docker save`'s layer).
pub(super) fn xattr_control(eng: &EngineGuard, dir: &Path) -> String {
    let tar = dir.join("xattr-control.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    b.append_pax_extensions([("SCHILY.xattr.user.test", b"airlock".as_slice())])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "x.txt", b"hi\n".as_slice()).unwrap();
    b.into_inner().unwrap();
    let name = eng.name("xattr-control:1");
    docker(&["import", s(&tar), &name]);
    let out = dir.join("xattr-control-export.tar");
    let cid = eng.create(&name, &["/x"]);
    docker(&["export", "-o", s(&out), &cid]);
    eng.rm(&cid);
    eng.rmi(&[&name]);
    let kept = tar_listing(&out)["x.txt"].contains("user.test=airlock");
    DOCKER_DROPS_XATTRS.store(!kept, Ordering::Relaxed);
    let driver = docker(&["info", "--format", "{{.Driver}}"]);
    if kept {
        format!("{} keeps a layer's user.* xattrs: compared", driver.trim())
    } else {
        format!(
            "this engine's storage ({}) drops user.* xattrs: `docker import` → `docker export` \
             of a 1-file tar loses them, so `docker export` comparisons skip xattrs",
            driver.trim()
        )
    }
}

/// Docker objects this run made; all removed when dropped, even after a failure.
pub(super) struct EngineGuard {
    prefix: String,
    names: RefCell<BTreeSet<String>>,
    containers: RefCell<BTreeSet<String>>,
    /// IDs only this run created (engine-built images), safe to remove by ID.
    own_ids: RefCell<BTreeSet<String>>,
}

impl EngineGuard {
    pub(super) fn new() -> Self {
        EngineGuard {
            prefix: format!("localhost/airlock-interop-{}", std::process::id()),
            names: RefCell::default(),
            containers: RefCell::default(),
            own_ids: RefCell::default(),
        }
    }

    /// A unique image name under this run's prefix, removed at the end.
    pub(super) fn name(&self, n: &str) -> String {
        let full = format!("{}/{n}", self.prefix);
        self.names.borrow_mut().insert(full.clone());
        full
    }

    /// `docker create IMAGE [CMD...]`; the container is removed at the end.
    pub(super) fn create(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["create", image];
        args.extend_from_slice(cmd);
        let id = docker(&args).trim().to_string();
        self.containers.borrow_mut().insert(id.clone());
        id
    }

    pub(super) fn rm(&self, container: &str) {
        let _ = docker_output(&["rm", "-f", container]);
        self.containers.borrow_mut().remove(container);
    }

    /// `docker export` of a fresh container of `image`.
    pub(super) fn export(&self, image: &str, out: &Path) -> Listing {
        let cid = self.create(image, &[]);
        docker(&["export", "-o", s(out), &cid]);
        self.rm(&cid);
        tar_listing(out)
    }

    /// Remove these names from the engine (their image goes with its last name).
    pub(super) fn rmi(&self, names: &[&str]) {
        for n in names {
            let _ = docker_output(&["rmi", "-f", n]);
        }
    }
}

impl Drop for EngineGuard {
    fn drop(&mut self) {
        for c in self.containers.borrow().iter() {
            let _ = docker_output(&["rm", "-f", c]);
        }
        // Children before parents: names of the later-built images sort after the base.
        let names: Vec<String> = self.names.borrow().iter().rev().cloned().collect();
        for n in &names {
            let _ = docker_output(&["rmi", "-f", n]);
        }
        for id in self.own_ids.borrow().iter() {
            if docker_has(id) {
                let _ = docker_output(&["rmi", "-f", id]);
            }
        }
    }
}

/// The images this run builds in the engine.
pub(super) struct EngineImages {
    pub(super) base: String,
    pub(super) app: String,
    pub(super) app2: String,
    pub(super) base_id: String,
    pub(super) app_id: String,
    pub(super) base_layers: Vec<String>,
    pub(super) app_layers: Vec<String>,
}

/// A busybox rootfs with hardlinks, a symlink, a setuid file and a directory the app layer
/// replaces; `docker import` it, then `docker build` an app on it that adds a file, deletes
/// one (whiteout) and replaces a directory's contents.
pub(super) fn build_engine_images(eng: &EngineGuard, dir: &Path) -> (EngineImages, String) {
    require_tool("busybox");
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "data/old/sub"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = sh(Command::new("sh").args(["-c", "command -v busybox"]));
    std::fs::copy(busybox.trim(), root.join("bin/busybox")).unwrap();
    let applets = sh(Command::new(busybox.trim()).arg("--list"));
    for a in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    let w = |p: &str, c: &str| std::fs::write(root.join(p), c).unwrap();
    w("etc/issue", "airlock interop\n");
    w("data/keep.txt", "keep\n");
    w("data/suid", "setuid\n");
    w("data/old/a.txt", "a\n");
    w("data/old/sub/b.txt", "b\n");
    std::fs::hard_link(root.join("data/keep.txt"), root.join("data/keep-hl.txt")).unwrap();
    std::os::unix::fs::symlink("keep.txt", root.join("data/sym")).unwrap();
    sh(Command::new("chmod")
        .arg("4755")
        .arg(root.join("data/suid")));
    sh(Command::new("chmod").arg("1777").arg(root.join("tmp")));
    let tar = dir.join("rootfs.tar");
    sh(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));

    let base = eng.name("base:1");
    let app = eng.name("app:1");
    let app2 = eng.name("app:2");
    let base_id = docker(&[
        "import",
        "-c",
        r#"CMD ["/bin/sh","-c","echo interop-ok"]"#,
        s(&tar),
        &base,
    ])
    .trim()
    .to_string();
    eng.own_ids.borrow_mut().insert(base_id.clone());
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN echo hello > /added.txt && rm /bin/vi && rm -rf /data/old && mkdir /data/old \
             && echo new > /data/old/new.txt\n\
             CMD [\"/bin/sh\",\"-c\",\"cat /added.txt /data/old/new.txt; ls /data/old; \
             test -e /bin/vi || echo vi-gone\"]\n"
        ),
    )
    .unwrap();
    let out = output(
        Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--force-rm", "-q", "-t", &app])
            .arg(&ctx),
    );
    assert!(out.status.success(), "docker build: {}", stderr_of(&out));
    let app_id = docker_id(&app);
    eng.own_ids.borrow_mut().insert(app_id.clone());
    docker(&["tag", &app, &app2]);
    assert_eq!(docker_id(&base), base_id, "docker import's ID");
    for (image, want) in [(&base, BASE_OUT), (&app, APP_OUT)] {
        assert_eq!(docker(&["run", "--rm", image]), want, "{image}: docker run");
    }
    let imgs = EngineImages {
        base_layers: docker_layers(&base),
        app_layers: docker_layers(&app),
        base,
        app,
        app2,
        base_id,
        app_id,
    };
    let d = format!(
        "base {} (1 layer, {} busybox applets), app {} (+1 layer with whiteouts) tagged twice; both run",
        short(&imgs.base_id),
        applets.lines().count(),
        short(&imgs.app_id)
    );
    (imgs, d)
}

/// Every `name` in `names` loaded: the tool printed `Loaded image: name`.
pub(super) fn assert_loaded(tool: &str, out: &str, names: &[&str]) {
    for n in names {
        assert!(
            out.contains(&format!("Loaded image: {n}")),
            "{tool}: no 'Loaded image: {n}' in: {}",
            one_line(out, 400)
        );
    }
}
