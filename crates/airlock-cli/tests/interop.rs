//! The cross-tool interop matrix: images written by docker, podman, skopeo and umoci load into
//! airlock with the IDs those tools report; what airlock saves loads into docker, podman,
//! skopeo and umoci with the same IDs, runs, and has the same root filesystem; and the Docker
//! Engine transport (`--into docker-daemon`, `docker-daemon:`).
//!
//! Every check is one cell that catches its own failure, so one broken cell hides no other.
//! The run writes docs/interop.md, then fails listing every failed cell (cells of known
//! airlock bugs, listed in KNOWN_BUGS, are reported but do not fail the run until fixed).
//! Docker is global state: the cells run sequentially in one test, on images named with a
//! per-run prefix that a guard removes at the end, even on failure.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::util::{
    airlock_bin, expected, fixtures, repo_root, require_tool, scratch, sh, sha256, tar_listing,
    Airlock, Podman,
};

type Listing = BTreeMap<String, String>;

const S_SETUP: &str = "Setup";
const S_WRITERS: &str = "1. Writers → airlock";
const S_READERS: &str = "2. airlock → readers";
const S_ENGINE: &str = "3. Docker Engine transport";

/// Sections in report order, with the heading of their first column and a note.
const SECTIONS: &[(&str, &str, &str)] = &[
    (
        S_SETUP,
        "step",
        "Test images and fixtures every row below depends on.",
    ),
    (
        S_WRITERS,
        "writer → airlock",
        "`airlock load` of what the tool wrote into a fresh store; `Id` and `RootFS.Layers` from \
         `airlock inspect` against what the writer reports (`docker inspect`, or \
         `skopeo inspect --config` of the archive as recorded in the fixtures' expected.json); \
         rootfs = `airlock export` of the image against the writer's export \
         (`docker export` of a `docker create`d container, `podman export` for the fixtures).",
    ),
    (
        S_READERS,
        "airlock → reader",
        "From an airlock store holding the engine-made images (loaded from `docker save`): \
         `Id` = config digest the reader reports against airlock's; runs = the image's CMD \
         prints what it should; rootfs = the reader's view of the filesystem against \
         `airlock export` of the original; back to airlock = airlock reads the image back from \
         the reader (`docker-daemon:`, `podman save`, skopeo's `oci:` dir): same Id, same \
         `airlock export`.",
    ),
    (
        S_ENGINE,
        "path",
        "airlock talking to the Docker Engine API directly.",
    ),
];

const ROW_UMOCI_SHORT_REF: &str = "umoci ← `airlock copy NAME oci:DIR:app` (skopeo-style ref)";

/// Cells that fail because of a known airlock bug: (row, column, the bug). They are reported
/// ❌ without failing the run; once the bug is fixed the cell passes and the run fails until
/// its entry is removed here (re-enabling it).
const KNOWN_BUGS: &[(&str, &str, &str)] = &[];

/// What the engine-made images print when run.
const BASE_OUT: &str = "interop-ok\n";
const APP_OUT: &str = "hello\nnew\nnew.txt\nvi-gone\n";
/// The fixtures' app image.
const FIXTURE_APP: &str = "localhost/airlock-test/app:1";
const FIXTURE_APP_OUT: &str = "hello from airlock layer 2\n";

/// Files the Docker Engine's container init layer puts into every container (mount targets,
/// `/.dockerenv`): they are never the image's, so a `docker export` comparison drops them.
const DOCKER_INIT_FILES: &[&str] = &[
    ".dockerenv",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/mtab",
    "dev/console",
];
/// Directories docker creates for its mounts: dropped only when one side lacks them.
const DOCKER_MOUNT_DIRS: &[&str] = &["dev", "dev/pts", "dev/shm", "proc", "sys", "etc"];
/// Paths some comparison actually dropped, for the report.
static IGNORED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Set when this engine's storage loses `user.*` xattrs on disk (measured by a control):
/// then `docker export` comparisons do not compare xattrs.
static DOCKER_DROPS_XATTRS: AtomicBool = AtomicBool::new(false);

const PODMAN_RUN: &[&str] = &[
    "--runtime",
    "runc",
    "run",
    "--rm",
    "--network",
    "none",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

// ------------------------------------------------------------------------------ the matrix

struct Cell {
    section: &'static str,
    row: String,
    col: &'static str,
    ok: bool,
    known_bug: Option<&'static str>,
    detail: String,
}

#[derive(Default)]
struct Matrix {
    cells: Vec<Cell>,
}

impl Matrix {
    /// Run one cell: `f` returns a value for later cells and the detail to report, or panics
    /// with the failure.
    fn run<T>(
        &mut self,
        section: &'static str,
        row: &str,
        col: &'static str,
        f: impl FnOnce() -> (T, String),
    ) -> Option<T> {
        let t0 = Instant::now();
        let (value, ok, detail) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok((v, d)) => (Some(v), true, d),
            Err(p) => (None, false, panic_text(p.as_ref())),
        };
        eprintln!(
            "interop: {} {row} | {col} ({:.1}s): {}",
            if ok { "ok  " } else { "FAIL" },
            t0.elapsed().as_secs_f64(),
            one_line(&detail, 300)
        );
        self.push(section, row, col, ok, detail);
        value
    }

    fn check(
        &mut self,
        section: &'static str,
        row: &str,
        col: &'static str,
        f: impl FnOnce() -> String,
    ) -> bool {
        self.run(section, row, col, || ((), f())).is_some()
    }

    /// `check` when `ready`; otherwise a failed cell saying it could not run.
    fn then(
        &mut self,
        ready: bool,
        section: &'static str,
        row: &str,
        col: &'static str,
        f: impl FnOnce() -> String,
    ) -> bool {
        if ready {
            self.check(section, row, col, f)
        } else {
            let why = "not run: an earlier step of this row failed".to_string();
            self.push(section, row, col, false, why);
            false
        }
    }

    fn push(&mut self, section: &'static str, row: &str, col: &'static str, ok: bool, d: String) {
        let known_bug = KNOWN_BUGS
            .iter()
            .find(|(r, c, _)| *r == row && *c == col)
            .map(|(_, _, why)| *why);
        self.cells.push(Cell {
            section,
            row: row.to_string(),
            col,
            ok,
            known_bug,
            detail: d,
        });
    }

    /// Failures that fail the run: broken cells, and known bugs that no longer fail.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.cells {
            match (c.ok, c.known_bug) {
                (false, None) => out.push(format!(
                    "{} | {}: {}",
                    c.row,
                    c.col,
                    one_line(&c.detail, 600)
                )),
                (true, Some(_)) => out.push(format!(
                    "{} | {}: passes now; remove it from KNOWN_BUGS in interop.rs",
                    c.row, c.col
                )),
                _ => {}
            }
        }
        out
    }

    fn render(&self, header: &str) -> String {
        let mut md = header.to_string();
        for (section, first, note) in SECTIONS {
            let cells: Vec<&Cell> = self
                .cells
                .iter()
                .filter(|c| c.section == *section)
                .collect();
            if cells.is_empty() {
                continue;
            }
            let mut cols: Vec<&str> = Vec::new();
            let mut rows: Vec<&str> = Vec::new();
            for c in &cells {
                if !cols.contains(&c.col) {
                    cols.push(c.col);
                }
                if !rows.contains(&c.row.as_str()) {
                    rows.push(&c.row);
                }
            }
            md.push_str(&format!("\n## {section}\n\n{note}\n\n| {first} |"));
            for c in &cols {
                md.push_str(&format!(" {c} |"));
            }
            md.push_str(&format!("\n|---|{}\n", "---|".repeat(cols.len())));
            for r in rows {
                md.push_str(&format!("| {} |", cell_text(r, 200)));
                for col in &cols {
                    let text = match cells.iter().find(|c| c.row == r && c.col == *col) {
                        None => "—".to_string(),
                        Some(c) if c.ok => format!("✅ {}", cell_text(&c.detail, 160)),
                        Some(c) => match c.known_bug {
                            Some(_) => format!("❌ known bug: {}", cell_text(&c.detail, 160)),
                            None => format!("❌ {}", cell_text(&c.detail, 160)),
                        },
                    };
                    md.push_str(&format!(" {text} |"));
                }
                md.push('\n');
            }
        }
        let bad: Vec<&Cell> = self.cells.iter().filter(|c| !c.ok).collect();
        if !bad.is_empty() {
            md.push_str("\n## Failures in full\n");
            for c in bad {
                md.push_str(&format!("\n### {} — {}\n\n", c.row, c.col));
                if let Some(bug) = c.known_bug {
                    md.push_str(&format!("Known airlock bug: {bug}.\n\n"));
                }
                let mut d = c.detail.clone();
                if d.len() > 3000 {
                    let mut cut = 3000;
                    while !d.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    d.truncate(cut);
                    d.push('…');
                }
                md.push_str(&format!("```text\n{}\n```\n", d.replace("```", "'''")));
            }
        }
        md
    }
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panicked".to_string()
    }
}

/// `s` on one line, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

/// `s` fit for a markdown table cell.
fn cell_text(s: &str, max: usize) -> String {
    one_line(s, max).replace('|', "\\|")
}

// ------------------------------------------------------------------------------ helpers

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn stderr_of(out: &Output) -> String {
    one_line(&String::from_utf8_lossy(&out.stderr), 300)
}

fn docker(args: &[&str]) -> String {
    sh(Command::new("docker").args(args))
}

fn docker_output(args: &[&str]) -> Output {
    output(Command::new("docker").args(args))
}

fn docker_id(name: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string()
}

fn docker_layers(name: &str) -> Vec<String> {
    let j = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        name,
    ]);
    serde_json::from_str(&j).unwrap()
}

fn docker_has(reference: &str) -> bool {
    docker_output(&["image", "inspect", reference])
        .status
        .success()
}

/// `sha256:0123456789ab` for details.
fn short(id: &str) -> &str {
    &id[..id.len().min(19)]
}

fn airlock_id(a: &Airlock, name: &str) -> String {
    a.inspect(name)["Id"].as_str().unwrap().to_string()
}

fn airlock_layers(a: &Airlock, name: &str) -> Vec<String> {
    serde_json::from_value(a.inspect(name)["RootFS"]["Layers"].clone()).unwrap()
}

fn airlock_export(a: &Airlock, image: &str, out: &Path) -> Listing {
    a.ok(&["export", "-o", s(out), image]);
    tar_listing(out)
}

/// skopeo's stdout (config and manifest bytes must not be re-encoded).
fn skopeo(args: &[&str]) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").args(args);
    let out = output(&mut c);
    assert!(out.status.success(), "{c:?} failed: {}", stderr_of(&out));
    out.stdout
}

fn skopeo_config(transport_ref: &str) -> (String, serde_json::Value) {
    let raw = skopeo(&["inspect", "--config", "--raw", transport_ref]);
    (sha256(&raw), serde_json::from_slice(&raw).unwrap())
}

/// Config digest of the image `index.json` names `ref_name` in an OCI layout directory.
fn layout_config_digest(dir: &Path, ref_name: &str) -> String {
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

fn is_root() -> bool {
    sh(Command::new("id").arg("-u")).trim() == "0"
}

/// Compare root filesystem listings (type, mode, owner, link, content digest, xattrs of every
/// entry; mtimes are not compared). With `docker_side`, `got` is a `docker export`: the
/// container init layer's files are dropped, and docker's mount dirs where one side lacks them.
fn same_rootfs(what: &str, want: &Listing, got: &Listing, docker_side: bool) -> String {
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
fn xattr_control(eng: &EngineGuard, dir: &Path) -> String {
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
struct EngineGuard {
    prefix: String,
    names: RefCell<BTreeSet<String>>,
    containers: RefCell<BTreeSet<String>>,
    /// IDs only this run created (engine-built images), safe to remove by ID.
    own_ids: RefCell<BTreeSet<String>>,
}

impl EngineGuard {
    fn new() -> Self {
        EngineGuard {
            prefix: format!("localhost/airlock-interop-{}", std::process::id()),
            names: RefCell::default(),
            containers: RefCell::default(),
            own_ids: RefCell::default(),
        }
    }

    /// A unique image name under this run's prefix, removed at the end.
    fn name(&self, n: &str) -> String {
        let full = format!("{}/{n}", self.prefix);
        self.names.borrow_mut().insert(full.clone());
        full
    }

    /// `docker create IMAGE [CMD...]`; the container is removed at the end.
    fn create(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["create", image];
        args.extend_from_slice(cmd);
        let id = docker(&args).trim().to_string();
        self.containers.borrow_mut().insert(id.clone());
        id
    }

    fn rm(&self, container: &str) {
        let _ = docker_output(&["rm", "-f", container]);
        self.containers.borrow_mut().remove(container);
    }

    /// `docker export` of a fresh container of `image`.
    fn export(&self, image: &str, out: &Path) -> Listing {
        let cid = self.create(image, &[]);
        docker(&["export", "-o", s(out), &cid]);
        self.rm(&cid);
        tar_listing(out)
    }

    /// Remove these names from the engine (their image goes with its last name).
    fn rmi(&self, names: &[&str]) {
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
struct EngineImages {
    base: String,
    app: String,
    app2: String,
    base_id: String,
    app_id: String,
    base_layers: Vec<String>,
    app_layers: Vec<String>,
}

/// A busybox rootfs with hardlinks, a symlink, a setuid file and a directory the app layer
/// replaces; `docker import` it, then `docker build` an app on it that adds a file, deletes
/// one (whiteout) and replaces a directory's contents.
fn build_engine_images(eng: &EngineGuard, dir: &Path) -> (EngineImages, String) {
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
fn assert_loaded(tool: &str, out: &str, names: &[&str]) {
    for n in names {
        assert!(
            out.contains(&format!("Loaded image: {n}")),
            "{tool}: no 'Loaded image: {n}' in: {}",
            one_line(out, 400)
        );
    }
}

// ------------------------------------------------------------------------------ the test

#[test]
fn interop_matrix() {
    let t0 = Instant::now();
    for t in [
        "docker", "podman", "skopeo", "umoci", "runc", "zstd", "gzip", "tar",
    ] {
        require_tool(t);
    }
    let server = docker_output(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        server.status.success(),
        "the Docker Engine is not reachable ({}); the interop matrix needs it and never skips",
        stderr_of(&server)
    );
    let dir = scratch();
    let eng = EngineGuard::new();
    let mut m = Matrix::default();

    // ----------------------------------------------------------------- setup
    let fx = m.run(
        S_SETUP,
        "fixtures (tests/fixtures/make-fixtures.sh)",
        "result",
        || {
            let f = fixtures();
            let n = expected().as_object().unwrap().len();
            (
                f.to_path_buf(),
                format!("{n} archives written by skopeo, podman and umoci"),
            )
        },
    );
    let imgs = m.run(
        S_SETUP,
        "engine images (`docker import` + `DOCKER_BUILDKIT=0 docker build`)",
        "result",
        || build_engine_images(&eng, dir.path()),
    );

    m.check(S_SETUP, "engine xattr control", "result", || {
        xattr_control(&eng, dir.path())
    });

    // Reference root filesystems of the engine images: `docker export` of a created container.
    let docker_ref: Option<BTreeMap<String, Listing>> = imgs.as_ref().and_then(|i| {
        m.run(
            S_SETUP,
            "reference rootfs (`docker create` + `docker export`)",
            "result",
            || {
                let mut r = BTreeMap::new();
                for (k, image) in [("base", &i.base), ("app", &i.app)] {
                    r.insert(
                        k.to_string(),
                        eng.export(image, &dir.path().join(format!("ref-{k}.tar"))),
                    );
                }
                let d = format!("base {} entries, app {}", r["base"].len(), r["app"].len());
                (r, d)
            },
        )
    });

    // ----------------------------------------------------------------- 1. writers -> airlock
    let mut origin: Option<(Airlock, BTreeMap<String, Listing>)> = None;
    if let (Some(i), Some(refs)) = (&imgs, &docker_ref) {
        writers_docker(&mut m, dir.path(), i, refs);
        origin = m.run(
            S_SETUP,
            "origin store (`airlock load` of the `docker save`s) + `airlock export`",
            "result",
            || {
                let a = Airlock::new(&dir.path().join("origin"));
                for (f, names) in [
                    ("save-multi.tar", vec![i.base.as_str(), i.app.as_str()]),
                    ("save-tags.tar", vec![i.app.as_str(), i.app2.as_str()]),
                ] {
                    let out = a.ok(&["load", "-i", s(&dir.path().join(f))]);
                    assert_loaded("airlock load", &out, &names);
                }
                let mut l = BTreeMap::new();
                for (k, image) in [("base", &i.base), ("app", &i.app)] {
                    let p = dir.path().join(format!("orig-{k}.tar"));
                    l.insert(k.to_string(), airlock_export(&a, image, &p));
                }
                let d = format!(
                    "3 names, 2 images; exports of {} and {} entries",
                    l["base"].len(),
                    l["app"].len()
                );
                ((a, l), d)
            },
        );
    }
    if let Some(fx) = &fx {
        writers_fixtures(&mut m, dir.path(), fx);
    }

    // ----------------------------------------------------------------- 3. engine transport
    if let Some(fx) = &fx {
        engine_oci_only(&mut m, &eng, dir.path(), fx);
    }
    if let (Some(i), Some((_, orig))) = (&imgs, &origin) {
        engine_daemon(&mut m, &eng, dir.path(), i, orig);
    }

    // ----------------------------------------------------------------- 2. airlock -> readers
    if let (Some(i), Some((origin, orig))) = (&imgs, &origin) {
        // The engine must not hold the images any more, or docker load would only tag them.
        eng.rmi(&[&i.app2, &i.app, &i.base]);
        let gone = m.check(
            S_SETUP,
            "engine images removed before the readers load",
            "result",
            || {
                for id in [&i.app_id, &i.base_id] {
                    assert!(!docker_has(id), "{id} is still in the engine");
                }
                "neither image ID is left in the engine".to_string()
            },
        );
        if gone {
            readers_docker(&mut m, &eng, dir.path(), i, origin, orig);
        }
        readers_podman(&mut m, dir.path(), i, origin, orig);
        readers_skopeo(&mut m, dir.path(), i, origin, orig);
        readers_umoci(&mut m, dir.path(), i, origin, orig);
    }

    // ----------------------------------------------------------------- report
    drop(eng);
    let failures = m.failures();
    let known: Vec<&Cell> = m.cells.iter().filter(|c| c.known_bug.is_some()).collect();
    let version = |cmd: &[&str]| -> String {
        let out = Command::new(cmd[0]).args(&cmd[1..]).output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            _ => format!("{} (version unknown)", cmd[0]),
        }
    };
    let date = version(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]);
    let passed = m.cells.iter().filter(|c| c.ok).count();
    let ignored = IGNORED.lock().unwrap().clone();
    let mut header = format!(
        "# Interop matrix\n\n\
         Generated by `cargo test --release --test tests interop` \
         (crates/airlock-cli/tests/interop.rs) on {date}, in {:.0} s; do not edit by hand.\n\n\
         Tools: Docker Engine {} (server), {}, {}, {}, {}; {}.\n\n\
         **{passed} of {} cells pass.**",
        t0.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&server.stdout).trim(),
        version(&["podman", "--version"]),
        version(&["skopeo", "--version"]),
        version(&["umoci", "--version"]),
        version(&["runc", "--version"]),
        version(&[s(&airlock_bin()), "--version"]),
        m.cells.len(),
    );
    if !known.is_empty() {
        header.push_str(&format!(
            " Known airlock bugs (❌, the run does not fail on them until they are fixed): {}.",
            known
                .iter()
                .map(|c| c.known_bug.unwrap())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let paths = |it: &mut dyn Iterator<Item = &str>| -> String {
        let v: Vec<String> = it.map(|f| format!("`/{f}`")).collect();
        if v.is_empty() {
            "nothing".to_string()
        } else {
            v.join(", ")
        }
    };
    header.push_str(&format!(
        "\n\nRoot filesystems are compared entry by entry: type, mode, uid/gid, link target, \
         content sha256 and xattrs (mtimes are not); hardlinks as groups (which member a tar \
         writes as the link differs between docker and airlock). A `docker export` carries \
         what the engine's container init layer adds, so those comparisons drop {} always, \
         and {} when only one side has them. Dropped in this run: {}.{}\n",
        paths(&mut DOCKER_INIT_FILES.iter().copied()),
        paths(&mut DOCKER_MOUNT_DIRS.iter().copied()),
        paths(&mut ignored.iter().map(String::as_str)),
        if DOCKER_DROPS_XATTRS.load(Ordering::Relaxed) {
            " This engine's storage loses `user.*` xattrs on disk (see the setup control), so \
             `docker export` comparisons skip xattrs; all other comparisons include them."
        } else {
            ""
        },
    ));
    let report = m.render(&header);
    let path = repo_root().join("docs/interop.md");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, report).unwrap();
    eprintln!(
        "interop: {passed}/{} cells pass in {:.1}s; wrote {}",
        m.cells.len(),
        t0.elapsed().as_secs_f64(),
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} interop cell(s) failed (see docs/interop.md):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------------------ 1. writers

/// `docker save` of one image, of two images, of two tags of one image.
fn writers_docker(m: &mut Matrix, dir: &Path, i: &EngineImages, refs: &BTreeMap<String, Listing>) {
    let rows: [(&str, &str, Vec<&str>); 3] = [
        (
            "`docker save` (1 image)",
            "save-one.tar",
            vec![i.app.as_str()],
        ),
        (
            "`docker save` (2 images)",
            "save-multi.tar",
            vec![i.base.as_str(), i.app.as_str()],
        ),
        (
            "`docker save` (2 tags, 1 ID)",
            "save-tags.tar",
            vec![i.app.as_str(), i.app2.as_str()],
        ),
    ];
    for (row, file, names) in rows {
        let archive = dir.join(file);
        let a = Airlock::new(&dir.join(format!("store-{file}")));
        let want = |n: &str| {
            if n == i.base {
                ("base", &i.base_id, &i.base_layers)
            } else {
                ("app", &i.app_id, &i.app_layers)
            }
        };
        let loaded = m.check(S_WRITERS, row, "airlock load", || {
            let mut args = vec!["save", "-o", s(&archive)];
            args.extend(names.iter().copied());
            docker(&args);
            let out = a.ok(&["load", "-i", s(&archive)]);
            assert_loaded("airlock load", &out, &names);
            format!("{} name(s) loaded", names.len())
        });
        m.then(loaded, S_WRITERS, row, "Id", || {
            let mut ids = BTreeSet::new();
            for n in &names {
                let got = airlock_id(&a, n);
                assert_eq!(&got, want(n).1, "{n}: airlock Id vs docker inspect .Id");
                ids.insert(got);
            }
            if row.contains("tags") {
                let tags = a.inspect(names[0])["RepoTags"].clone();
                for n in &names {
                    assert!(
                        tags.as_array().unwrap().iter().any(|t| t == n),
                        "RepoTags {tags} lacks {n}"
                    );
                }
                return format!("both tags → {} = docker", short(&i.app_id));
            }
            let ids: Vec<&str> = ids.iter().map(|i| short(i)).collect();
            format!("{} = docker inspect", ids.join(", "))
        });
        m.then(loaded, S_WRITERS, row, "RootFS.Layers", || {
            for n in &names {
                assert_eq!(&airlock_layers(&a, n), want(n).2, "{n}: RootFS.Layers");
            }
            "= docker inspect .RootFS.Layers".to_string()
        });
        m.then(loaded, S_WRITERS, row, "rootfs", || {
            let mut d = Vec::new();
            let kinds: BTreeSet<&str> = names.iter().map(|n| want(n).0).collect();
            for k in kinds {
                let image = if k == "base" { &i.base } else { &i.app };
                let got = airlock_export(&a, image, &dir.join(format!("x-{file}-{k}.tar")));
                // `got` is airlock's; the docker side is the reference.
                d.push(format!("{k}: {}", same_rootfs(k, &got, &refs[k], true)));
            }
            format!("airlock export = docker export; {}", d.join("; "))
        });
    }
}

/// One row per dialect podman, skopeo and umoci write (archives made by make-fixtures.sh).
fn writers_fixtures(m: &mut Matrix, dir: &Path, fx: &Path) {
    let rows = [
        (
            "`podman save --format docker-archive`",
            "podman-docker-archive.tar",
        ),
        ("`podman save -m` (2 images)", "podman-multi.tar"),
        (
            "`podman save --format oci-archive`",
            "podman-oci-archive.tar",
        ),
        ("`podman save --format oci-dir`", "podman-oci-dir"),
        ("skopeo `docker-archive:`", "skopeo-docker-archive.tar"),
        ("skopeo `oci-archive:`", "skopeo-oci-archive.tar"),
        ("skopeo `oci:` dir", "skopeo-oci-dir"),
        ("umoci layout (3 images)", "umoci-layout"),
    ];
    let want_rootfs = tar_listing(&fx.join("export-rootfs.tar"));
    for (row, name) in rows {
        let a = Airlock::new(&dir.join(format!("store-{name}")));
        let images = expected()[name].as_array().cloned().unwrap_or_default();
        let tags: Vec<String> = images
            .iter()
            .map(|img| img["names"][0].as_str().unwrap().to_string())
            .collect();
        let loaded = m.check(S_WRITERS, row, "airlock load", || {
            assert!(!images.is_empty(), "{name} missing from expected.json");
            a.ok(&["load", "-i", s(&fx.join(name))]);
            format!("{} image(s) loaded", images.len())
        });
        m.then(loaded, S_WRITERS, row, "Id", || {
            for (img, tag) in images.iter().zip(&tags) {
                assert_eq!(
                    airlock_id(&a, tag),
                    img["config_digest"].as_str().unwrap(),
                    "{tag}: airlock Id vs skopeo inspect --config"
                );
            }
            let ids: Vec<&str> = images
                .iter()
                .map(|img| short(img["config_digest"].as_str().unwrap()))
                .collect();
            format!("{} = skopeo inspect --config", ids.join(", "))
        });
        m.then(loaded, S_WRITERS, row, "RootFS.Layers", || {
            let mut n = 0;
            for (img, tag) in images.iter().zip(&tags) {
                let want: Vec<String> = serde_json::from_value(img["diff_ids"].clone()).unwrap();
                assert_eq!(airlock_layers(&a, tag), want, "{tag}: RootFS.Layers");
                n += want.len();
            }
            format!("{n} diffIDs = the config's")
        });
        m.then(loaded, S_WRITERS, row, "rootfs", || {
            let app = tags
                .iter()
                .find(|t| *t == FIXTURE_APP || *t == "app")
                .unwrap_or_else(|| panic!("{name}: no app image in {tags:?}"));
            let got = airlock_export(&a, app, &dir.join(format!("x-{name}.tar")));
            format!(
                "app: airlock export = podman export, {}",
                same_rootfs(name, &want_rootfs, &got, false)
            )
        });
    }
}

// ------------------------------------------------------------------------------ 2. readers

/// `airlock save` (plain, gzip, zstd) then `docker load`, run, export, and back to airlock.
fn readers_docker(
    m: &mut Matrix,
    eng: &EngineGuard,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let names = [i.base.as_str(), i.app.as_str(), i.app2.as_str()];
    let plain = dir.join("airlock-save.tar");
    for (row, codec) in [
        ("`docker load` ← `airlock save`", "none"),
        ("`docker load` ← `airlock save --compress gzip`", "gzip"),
        ("`docker load` ← `airlock save --compress zstd`", "zstd"),
    ] {
        let x = if codec == "none" {
            plain.clone()
        } else {
            dir.join(format!("airlock-save.tar.{codec}"))
        };
        let loaded = m.check(S_READERS, row, "load / read", || {
            let mut args = vec!["save", "--compress", codec, "-o", s(&x)];
            args.extend(names);
            origin.ok(&args);
            let out = docker_output(&["load", "-i", s(&x)]);
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout);
                assert_loaded("docker load", &text, &names);
                return format!("`docker load -i` read it: {} names", names.len());
            }
            // Docker 20.10 reads no zstd archive at all: airlock's must fail exactly like
            // the zstd CLI's compression of the plain save, and load once decompressed.
            assert_eq!(codec, "zstd", "docker load failed: {}", stderr_of(&out));
            let control = dir.join("control.tar.zst");
            sh(Command::new("zstd")
                .args(["-q", "-f", "-o"])
                .arg(&control)
                .arg(&plain));
            let c = docker_output(&["load", "-i", s(&control)]);
            assert!(
                !c.status.success(),
                "docker loads zstd(1)'s archive but not airlock's: {}",
                stderr_of(&out)
            );
            assert_eq!(
                stderr_of(&out),
                stderr_of(&c),
                "docker fails differently on airlock's zstd archive than on zstd(1)'s"
            );
            let piped = output(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("zstd -dc '{}' | docker load", s(&x))),
            );
            assert!(
                piped.status.success(),
                "zstd -dc | docker load: {}",
                stderr_of(&piped)
            );
            assert_loaded(
                "docker load",
                &String::from_utf8_lossy(&piped.stdout),
                &names,
            );
            format!(
                "docker {} reads no zstd (`{}`, same for zstd(1)'s archive); \
                 `zstd -dc X | docker load` loads it",
                docker(&["version", "--format", "{{.Server.Version}}"]).trim(),
                stderr_of(&out)
            )
        });
        docker_checks(m, eng, dir, row, loaded, i, orig, codec);
        eng.rmi(&[&i.app2, &i.app, &i.base]);
    }
}

/// Id, layers, run, export and back-to-airlock of the images loaded into the engine.
#[allow(clippy::too_many_arguments)]
fn docker_checks(
    m: &mut Matrix,
    eng: &EngineGuard,
    dir: &Path,
    row: &str,
    loaded: bool,
    i: &EngineImages,
    orig: &BTreeMap<String, Listing>,
    tag: &str,
) {
    m.then(loaded, S_READERS, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            assert_eq!(&docker_id(n), want, "{n}: docker's Id vs airlock's");
        }
        format!("{}, {} = airlock's", short(&i.base_id), short(&i.app_id))
    });
    m.then(loaded, S_READERS, row, "RootFS.Layers", || {
        assert_eq!(docker_layers(&i.base), i.base_layers, "base");
        assert_eq!(docker_layers(&i.app), i.app_layers, "app");
        "= airlock inspect".to_string()
    });
    m.then(loaded, S_READERS, row, "runs", || {
        assert_eq!(
            docker(&["run", "--rm", &i.base]),
            BASE_OUT,
            "docker run base"
        );
        assert_eq!(docker(&["run", "--rm", &i.app2]), APP_OUT, "docker run app");
        "`docker run --rm` base and app print their CMD's output".to_string()
    });
    m.then(loaded, S_READERS, row, "rootfs", || {
        let mut d = Vec::new();
        for (k, image) in [("base", &i.base), ("app", &i.app)] {
            let got = eng.export(image, &dir.join(format!("dx-{tag}-{k}.tar")));
            d.push(format!("{k}: {}", same_rootfs(k, &orig[k], &got, true)));
        }
        format!("docker export = airlock export; {}", d.join("; "))
    });
    m.then(loaded, S_READERS, row, "back to airlock", || {
        let back = Airlock::new(&dir.join(format!("back-docker-{tag}")));
        back.ok(&[
            "copy",
            &format!("docker-daemon:{}", i.app),
            &format!("store:{}", i.app),
        ]);
        assert_eq!(
            airlock_id(&back, &i.app),
            i.app_id,
            "Id after docker → airlock"
        );
        let got = airlock_export(&back, &i.app, &dir.join(format!("bx-{tag}.tar")));
        format!(
            "`airlock copy docker-daemon:…`: same Id, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });
}

/// `airlock save` then `podman load` (podman 4.3 reads no compressed archive).
fn readers_podman(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let row = "`podman load` ← `airlock save`";
    let names = [i.base.as_str(), i.app.as_str(), i.app2.as_str()];
    let podman = Podman::new();
    let x = dir.join("airlock-save-podman.tar");
    let loaded = m.check(S_READERS, row, "load / read", || {
        let mut args = vec!["save", "-o", s(&x)];
        args.extend(names);
        origin.ok(&args);
        let out = podman.ok(&["load", "-i", s(&x)]);
        assert_loaded("podman load", &out, &names);
        format!("{} names", names.len())
    });
    m.then(loaded, S_READERS, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            let id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", n]);
            assert_eq!(&format!("sha256:{}", id.trim()), want, "{n}: podman's Id");
        }
        format!("{}, {} = airlock's", short(&i.base_id), short(&i.app_id))
    });
    m.then(loaded, S_READERS, row, "RootFS.Layers", || {
        for (n, want) in [(&i.base, &i.base_layers), (&i.app, &i.app_layers)] {
            let j = podman.ok(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", n]);
            let got: Vec<String> = serde_json::from_str(&j).unwrap();
            assert_eq!(&got, want, "{n}: podman's RootFS.Layers");
        }
        "= airlock inspect".to_string()
    });
    m.then(loaded, S_READERS, row, "runs", || {
        for (image, want) in [(&i.base, BASE_OUT), (&i.app2, APP_OUT)] {
            let mut args = PODMAN_RUN.to_vec();
            args.push(image);
            assert_eq!(podman.ok(&args), want, "podman run {image}");
        }
        "`podman --runtime runc run` base and app print their CMD's output".to_string()
    });
    m.then(loaded, S_READERS, row, "rootfs", || {
        let mut d = Vec::new();
        for (k, image) in [("base", &i.base), ("app", &i.app)] {
            let cid = podman.ok(&["create", image, "/bin/sh"]).trim().to_string();
            let p = dir.join(format!("px-{k}.tar"));
            podman.ok(&["export", "-o", s(&p), &cid]);
            podman.ok(&["rm", &cid]);
            d.push(format!(
                "{k}: {}",
                same_rootfs(k, &orig[k], &tar_listing(&p), false)
            ));
        }
        format!("podman export = airlock export; {}", d.join("; "))
    });
    m.then(loaded, S_READERS, row, "back to airlock", || {
        let y = dir.join("podman-resave.tar");
        podman.ok(&["save", "--format", "docker-archive", "-o", s(&y), &i.app]);
        let back = Airlock::new(&dir.join("back-podman"));
        back.ok(&["load", "-i", s(&y)]);
        assert_eq!(airlock_id(&back, &i.app), i.app_id, "Id after podman save");
        let got = airlock_export(&back, &i.app, &dir.join("bx-podman.tar"));
        format!(
            "`podman save` → airlock: same Id, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });
}

/// `skopeo inspect` and `skopeo copy docker-archive:X oci:D` of airlock's save.
fn readers_skopeo(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let row = "skopeo ← `airlock save`";
    let names = [i.base.as_str(), i.app.as_str(), i.app2.as_str()];
    let x = dir.join("airlock-save-skopeo.tar");
    let oci = dir.join("skopeo-oci");
    let loaded = m.check(S_READERS, row, "load / read", || {
        let mut args = vec!["save", "-o", s(&x)];
        args.extend(names);
        origin.ok(&args);
        for n in names {
            skopeo(&["inspect", &format!("docker-archive:{}:{n}", s(&x))]);
        }
        skopeo(&[
            "copy",
            "-q",
            &format!("docker-archive:{}:{}", s(&x), i.app),
            &format!("oci:{}:app", s(&oci)),
        ]);
        "`skopeo inspect` of each name; `skopeo copy docker-archive:X:NAME oci:D:app`".to_string()
    });
    m.then(loaded, S_READERS, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            let (got, _) = skopeo_config(&format!("docker-archive:{}:{n}", s(&x)));
            assert_eq!(&got, want, "{n}: config digest skopeo reads");
        }
        // skopeo converts the config to OCI when it writes oci: (new digest): what it makes
        // of airlock's archive must be byte-identical to what it makes of `docker save`'s.
        let reference = dir.join("skopeo-oci-of-docker-save");
        skopeo(&[
            "copy",
            "-q",
            &format!("docker-archive:{}:{}", s(&dir.join("save-one.tar")), i.app),
            &format!("oci:{}:app", s(&reference)),
        ]);
        let (ours, theirs) = (format!("oci:{}:app", s(&oci)), format!("oci:{}:app", s(&reference)));
        for flag in ["--raw", "--config"] {
            let mut a = vec!["inspect", flag];
            if flag == "--config" {
                a.push("--raw");
            }
            assert!(
                skopeo(&[a.as_slice(), &[ours.as_str()]].concat())
                    == skopeo(&[a.as_slice(), &[theirs.as_str()]].concat()),
                "skopeo's oci: copy of airlock's save differs ({flag}) from its copy of `docker save`'s"
            );
        }
        format!(
            "{}, {} = airlock's; skopeo's `oci:` copy = its copy of `docker save`'s",
            short(&i.base_id),
            short(&i.app_id)
        )
    });
    m.then(loaded, S_READERS, row, "RootFS.Layers", || {
        for (n, want) in [(&i.base, &i.base_layers), (&i.app, &i.app_layers)] {
            let (_, cfg) = skopeo_config(&format!("docker-archive:{}:{n}", s(&x)));
            let got: Vec<String> =
                serde_json::from_value(cfg["rootfs"]["diff_ids"].clone()).unwrap();
            assert_eq!(&got, want, "{n}: diff_ids skopeo reads");
        }
        "= airlock inspect".to_string()
    });
    m.then(loaded, S_READERS, row, "back to airlock", || {
        let back = Airlock::new(&dir.join("back-skopeo"));
        back.ok(&["load", "-i", s(&oci)]);
        let (want, _) = skopeo_config(&format!("oci:{}:app", s(&oci)));
        assert_eq!(airlock_id(&back, "app"), want, "Id of skopeo's oci: copy");
        let got = airlock_export(&back, "app", &dir.join("bx-skopeo.tar"));
        format!(
            "skopeo's `oci:` dir → airlock: Id = skopeo's, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });
}

/// `umoci unpack` of airlock's OCI output, the bundle run with runc.
fn readers_umoci(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let root = is_root();
    let unpack = |layout: &Path, r: &str, bundle: &Path| {
        let mut c = Command::new("umoci");
        c.arg("unpack");
        if !root {
            c.arg("--rootless");
        }
        c.arg("--image")
            .arg(format!("{}:{r}", s(layout)))
            .arg(bundle);
        let out = output(&mut c);
        assert!(
            out.status.success(),
            "umoci unpack --image {}:{r}: {}",
            s(layout),
            stderr_of(&out)
        );
    };
    let runc_root = dir.join("runc");
    let runs = |bundle: &Path, id: &str| -> String {
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = serde_json::Value::Bool(false);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let id = format!("airlock-interop-{}-{id}", std::process::id());
        let out = output(
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "--bundle", s(bundle), &id])
                .stdin(Stdio::null()),
        );
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "-f", &id])
            .output();
        assert!(out.status.success(), "runc run: {}", stderr_of(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            APP_OUT,
            "runc run output"
        );
        "`runc run` of umoci's bundle prints the CMD's output".to_string()
    };
    let rootfs = |bundle: &Path, tag: &str| -> String {
        let out = dir.join(format!("ux-{tag}.tar"));
        origin.ok(&["export", "--dir", s(&bundle.join("rootfs")), "-o", s(&out)]);
        format!(
            "unpacked rootfs = airlock export; {}",
            same_rootfs("app", &orig["app"], &tar_listing(&out), false)
        )
    };

    // --format oci, turned into a layout dir by skopeo.
    let row = "umoci ← `airlock save --format oci` → `skopeo copy` → `oci:D:app`";
    let (o, layout, bundle) = (dir.join("airlock-oci.tar"), dir.join("u1"), dir.join("b1"));
    let ok = m.check(S_READERS, row, "load / read", || {
        origin.ok(&["save", "--format", "oci", "-o", s(&o), &i.app]);
        skopeo(&[
            "copy",
            "-q",
            &format!("oci-archive:{}:{}", s(&o), i.app),
            &format!("oci:{}:app", s(&layout)),
        ]);
        unpack(&layout, "app", &bundle);
        "`umoci unpack --image D:app` of skopeo's copy of the OCI archive".to_string()
    });
    m.then(ok, S_READERS, row, "Id", || {
        let (got, _) = skopeo_config(&format!("oci-archive:{}:{}", s(&o), i.app));
        assert_eq!(got, i.app_id, "config digest in airlock's OCI archive");
        assert_eq!(
            layout_config_digest(&layout, "app"),
            i.app_id,
            "config in the layout"
        );
        format!("{} = airlock's (archive and layout)", short(&i.app_id))
    });
    // rootfs first: runc adds /dev, /proc, /sys mount points to the bundle.
    m.then(ok, S_READERS, row, "rootfs", || rootfs(&bundle, "u1"));
    m.then(ok, S_READERS, row, "runs", || runs(&bundle, "u1"));

    // airlock's own oci: transport, the full name as the ref.
    let row = "umoci ← `airlock copy NAME oci:DIR:NAME`";
    let (layout, bundle) = (dir.join("u2"), dir.join("b2"));
    let ok = m.check(S_READERS, row, "load / read", || {
        origin.ok(&["copy", &i.app, &format!("oci:{}:{}", s(&layout), i.app)]);
        unpack(&layout, &i.app, &bundle);
        "`umoci unpack --image DIR:NAME`".to_string()
    });
    m.then(ok, S_READERS, row, "Id", || {
        assert_eq!(
            layout_config_digest(&layout, &i.app),
            i.app_id,
            "config in the layout"
        );
        let (got, _) = skopeo_config(&format!("oci:{}:{}", s(&layout), i.app));
        assert_eq!(got, i.app_id, "config skopeo reads");
        format!("{} = airlock's (layout and skopeo)", short(&i.app_id))
    });
    m.then(ok, S_READERS, row, "rootfs", || rootfs(&bundle, "u2"));
    m.then(ok, S_READERS, row, "runs", || runs(&bundle, "u2"));

    // The skopeo spelling `oci:DIR:tag`: the tag must be the ref.name umoci and skopeo find.
    let (layout, bundle) = (dir.join("u3"), dir.join("b3"));
    m.check(S_READERS, ROW_UMOCI_SHORT_REF, "load / read", || {
        origin.ok(&["copy", &i.app, &format!("oci:{}:app", s(&layout))]);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let refs: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .collect();
        let mut c = Command::new("umoci");
        c.arg("unpack");
        if !root {
            c.arg("--rootless");
        }
        let out = output(
            c.arg("--image")
                .arg(format!("{}:app", s(&layout)))
                .arg(&bundle),
        );
        assert!(
            refs == ["app"] && out.status.success(),
            "`airlock copy IMAGE oci:DIR:app` wrote ref.name {refs:?} into index.json \
             (skopeo writes \"app\"); `umoci unpack --image DIR:app`: {}",
            if out.status.success() {
                "ok".to_string()
            } else {
                stderr_of(&out)
            }
        );
        assert_eq!(
            layout_config_digest(&layout, "app"),
            i.app_id,
            "config in the layout"
        );
        runs(&bundle, "u3");
        format!(
            "ref.name `app`; umoci unpacks it; {} runs",
            short(&i.app_id)
        )
    });
}

// ------------------------------------------------------------------------------ 3. engine

/// An OCI-only archive (skopeo's, from the fixtures): `docker load` 20.10 cannot read it,
/// `airlock load --into docker-daemon` can.
fn engine_oci_only(m: &mut Matrix, eng: &EngineGuard, dir: &Path, fx: &Path) {
    let fixture = "skopeo-oci-archive.tar";
    let want = expected()[fixture][0].clone();
    // skopeo renames it under this run's prefix (same manifest and config bytes), so the
    // run never touches another test's `localhost/airlock-test/...` names in the engine.
    let name = eng.name("skopeo-oci:1");
    let x = dir.join("skopeo-oci-renamed.tar");
    let row = "`docker load` ← skopeo OCI-only archive (fixture)";
    let made = m.check(S_ENGINE, row, "result", || {
        skopeo(&[
            "copy",
            "-q",
            &format!("oci-archive:{}", s(&fx.join(fixture))),
            &format!("oci-archive:{}:{name}", s(&x)),
        ]);
        let md = sha256(&skopeo(&[
            "inspect",
            "--raw",
            &format!("oci-archive:{}", s(&x)),
        ]));
        assert_eq!(
            Some(md.as_str()),
            want["manifest_digest"].as_str(),
            "skopeo's renamed copy has another manifest"
        );
        let out = docker_output(&["load", "-i", s(&x)]);
        assert!(
            !out.status.success(),
            "docker load read an OCI-only archive: is this engine newer than 20.10? {}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!("fails, as expected of docker 20.10: `{}`", stderr_of(&out))
    });
    let row = "`airlock load --into docker-daemon` ← same archive";
    let loaded = m.then(made, S_ENGINE, row, "result", || {
        let a = Airlock::new(&dir.join("store-into"));
        let out = a.ok(&["load", "--into", "docker-daemon", "-i", s(&x)]);
        assert_loaded("airlock load --into docker-daemon", &out, &[&name]);
        "loaded into the engine".to_string()
    });
    m.then(loaded, S_ENGINE, row, "Id", || {
        let id = docker_id(&name);
        assert_eq!(
            Some(id.as_str()),
            want["config_digest"].as_str(),
            "docker's Id"
        );
        format!("{} = skopeo inspect --config", short(&id))
    });
    m.then(loaded, S_ENGINE, row, "RootFS.Layers", || {
        let want: Vec<String> = serde_json::from_value(want["diff_ids"].clone()).unwrap();
        assert_eq!(docker_layers(&name), want, "docker's RootFS.Layers");
        format!("{} diffIDs = the config's", want.len())
    });
    m.then(loaded, S_ENGINE, row, "runs", || {
        assert_eq!(
            docker(&["run", "--rm", &name]),
            FIXTURE_APP_OUT,
            "docker run"
        );
        "`docker run --rm` prints the CMD's output".to_string()
    });
    m.then(loaded, S_ENGINE, row, "rootfs", || {
        let got = eng.export(&name, &dir.join("dx-into.tar"));
        let want = tar_listing(&fx.join("export-rootfs.tar"));
        format!(
            "docker export = podman export of the fixture; {}",
            same_rootfs("app", &want, &got, true)
        )
    });
    eng.rmi(&[&name]);
}

/// `airlock save docker-daemon:`, `airlock copy docker-daemon:`, `airlock export
/// docker-daemon:CONTAINER`, while the engine holds the engine-made images.
fn engine_daemon(
    m: &mut Matrix,
    eng: &EngineGuard,
    dir: &Path,
    i: &EngineImages,
    orig: &BTreeMap<String, Listing>,
) {
    let row = "`airlock save docker-daemon:NAME…` → `airlock load`";
    let a = Airlock::new(&dir.join("store-daemon-save"));
    let x = dir.join("daemon-save.tar");
    let ok = m.check(S_ENGINE, row, "result", || {
        a.ok(&[
            "save",
            "-o",
            s(&x),
            &format!("docker-daemon:{}", i.base),
            &format!("docker-daemon:{}", i.app),
            &format!("docker-daemon:{}", i.app2),
        ]);
        let out = a.ok(&["load", "-i", s(&x)]);
        assert_loaded("airlock load", &out, &[&i.base, &i.app, &i.app2]);
        "3 names saved from the engine, loaded".to_string()
    });
    m.then(ok, S_ENGINE, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            assert_eq!(&airlock_id(&a, n), want, "{n}: Id vs docker inspect");
        }
        format!(
            "{}, {} = docker inspect",
            short(&i.base_id),
            short(&i.app_id)
        )
    });
    m.then(ok, S_ENGINE, row, "RootFS.Layers", || {
        assert_eq!(airlock_layers(&a, &i.base), i.base_layers, "base");
        assert_eq!(airlock_layers(&a, &i.app), i.app_layers, "app");
        "= docker inspect".to_string()
    });
    m.then(ok, S_ENGINE, row, "rootfs", || {
        let got = airlock_export(&a, &i.app, &dir.join("x-daemon-save.tar"));
        format!(
            "app: airlock export = original's, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });

    let row = "`airlock copy docker-daemon:NAME store:OTHER`";
    let a = Airlock::new(&dir.join("store-daemon-copy"));
    let other = "localhost/interop/copied:1";
    let ok = m.check(S_ENGINE, row, "result", || {
        let out = a.ok(&[
            "copy",
            &format!("docker-daemon:{}", i.app),
            &format!("store:{other}"),
        ]);
        assert_loaded("airlock copy", &out, &[other]);
        format!("copied as {other}")
    });
    m.then(ok, S_ENGINE, row, "Id", || {
        assert_eq!(airlock_id(&a, other), i.app_id, "Id vs docker inspect");
        format!("{} = docker inspect", short(&i.app_id))
    });
    m.then(ok, S_ENGINE, row, "RootFS.Layers", || {
        assert_eq!(airlock_layers(&a, other), i.app_layers);
        "= docker inspect".to_string()
    });
    m.then(ok, S_ENGINE, row, "rootfs", || {
        let got = airlock_export(&a, other, &dir.join("x-daemon-copy.tar"));
        format!(
            "airlock export = original's, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });

    let row = "`airlock export docker-daemon:CONTAINER`";
    let a = Airlock::new(&dir.join("store-daemon-export"));
    m.check(S_ENGINE, row, "rootfs", || {
        let cid = eng.create(
            &i.app,
            &[
                "/bin/sh",
                "-c",
                "echo changed > /data/changed.txt && rm /added.txt",
            ],
        );
        docker(&["start", "-a", &cid]);
        let (d, x) = (dir.join("dx-ctr.tar"), dir.join("ax-ctr.tar"));
        docker(&["export", "-o", s(&d), &cid]);
        a.ok(&["export", "-o", s(&x), &format!("docker-daemon:{cid}")]);
        eng.rm(&cid);
        let (want, got) = (tar_listing(&d), tar_listing(&x));
        assert!(
            want.contains_key("data/changed.txt") && !want.contains_key("added.txt"),
            "docker export does not show the container's changes"
        );
        format!(
            "= `docker export` of the same (changed) container, {}",
            same_rootfs("container", &want, &got, false)
        )
    });
}
