//! The cross-tool interop matrix: images written by docker, podman, skopeo and umoci load into
//! airlock with the IDs those tools report; what airlock saves loads into docker, podman,
//! skopeo and umoci with the same IDs, runs, and has the same root filesystem; and the Docker
//! Engine transport (`--into docker-daemon`, `docker-daemon:`).
//!
//! Every check is one cell that catches its own failure, so one broken cell hides no other.
//! The run writes its report to `target/interop.md` (under `$CARGO_TARGET_DIR` when that is
//! set), so `cargo test` leaves the worktree clean, then fails listing every failed cell
//! (cells of known airlock bugs, listed in KNOWN_BUGS, are reported but do not fail the run
//! until fixed). Publishing the report is a separate, explicit step:
//! `bench/update-interop-doc.sh` copies it to docs/interop.md.
//! Docker is global state: the cells run sequentially in one test, on images named with a
//! per-run prefix that a guard removes at the end, even on failure.

mod artifacts;
mod engine;
mod helpers;
mod readers;
mod report;
mod writers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::util::{airlock_bin, expected, fixtures, repo_root, require_tool, scratch, Airlock};

use artifacts::*;
use engine::*;
use helpers::*;
use readers::*;
use report::*;
use writers::*;

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
    (
        S_ARTIFACTS,
        "path",
        "A layout holding an image, an SPDX SBOM with a `subject`, a cosign signature under its \
         `sha256-<hex>.sig` tag, a Helm chart and a BuildKit index with an in-toto attestation \
         (tests/artifacts/gallery.rs): `airlock save IMAGE` takes the image with its referrers; \
         what each reader makes of the archive.",
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

/// Where the run writes its report: the cargo target directory, which git ignores. Cargo
/// does not pass its target dir to tests, so this follows `CARGO_TARGET_DIR` from the
/// environment (a relative one taken from the repository root, as cargo run there would),
/// else `<repo>/target`. `bench/update-interop-doc.sh` resolves it the same way.
fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| repo_root().join(d))
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("interop.md")
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

    // ----------------------------------------------------------------- 4. artifacts
    artifacts(&mut m, dir.path());

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
         (crates/airlock-cli/tests/interop/) on {date}, in {:.0} s, and copied here by \
         `bench/update-interop-doc.sh`; do not edit by hand.\n\n\
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
    let path = report_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, report).unwrap();
    eprintln!(
        "interop: {passed}/{} cells pass in {:.1}s; wrote {} \
         (bench/update-interop-doc.sh copies it to docs/interop.md)",
        m.cells.len(),
        t0.elapsed().as_secs_f64(),
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} interop cell(s) failed (see {}):\n{}",
        failures.len(),
        path.display(),
        failures.join("\n")
    );
}
