//! kill -9 at every rename, fsync and unlink of each store-changing command, injected by
//! strace (`-e inject=SYSCALL:signal=SIGKILL:when=N`: deterministic, no hooks in the code).
//! After each kill the store must pass `fsck` (every name resolves to whole images whose
//! blobs match their digests), `gc` must leave no staging, and the command must succeed when
//! run again.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{
    airlock_bin, layer_with_file, noise, require_tool, scratch, write_docker_archive,
};

/// The syscalls a kill is injected at: everything that makes a change durable or visible.
const KILL_POINTS: &[&str] = &[
    "rename",
    "renameat",
    "renameat2",
    "fsync",
    "fdatasync",
    "unlink",
    "unlinkat",
];

/// One command to kill: a prepared directory (store and inputs) and the arguments, where
/// `{w}` stands for the directory the run gets.
struct Scenario {
    name: &'static str,
    template: PathBuf,
    args: Vec<String>,
    /// True when a killed run had already done its work (its last steps are syncs), so
    /// running it again would rightly fail ("already exists", "no such image").
    done: fn(&Path) -> bool,
    /// Checked after every kill, beyond fsck and gc: what the command's own output must be.
    after_kill: fn(&Path),
    /// Checked after the command was run again to its end.
    after_rerun: fn(&Path),
}

fn run_airlock(work: &Path, args: &[String]) -> std::process::Output {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{w}", work.to_str().unwrap()))
        .collect();
    Command::new(airlock_bin())
        .arg("--store")
        .arg(work.join("store"))
        .args(&args)
        .env_remove("AIRLOCK_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(work: &Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = run_airlock(work, &args);
    assert!(
        out.status.success(),
        "airlock {args:?} in {}: {}{}",
        work.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copy a template directory (store, inputs) for one run.
fn fresh_copy(template: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Run the scenario once per kill point; returns how many kills landed.
fn kill_everywhere(s: &Scenario) -> usize {
    require_tool("strace");
    let runs = scratch();
    let work = runs.path().join("w");
    let mut kills = 0;
    for syscall in KILL_POINTS {
        for n in 1.. {
            fresh_copy(&s.template, &work);
            let args: Vec<String> = s
                .args
                .iter()
                .map(|a| a.replace("{w}", work.to_str().unwrap()))
                .collect();
            let status = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null"])
                .arg("-e")
                .arg(format!("trace={syscall}"))
                .arg("-e")
                .arg(format!("inject={syscall}:signal=SIGKILL:when={n}"))
                .arg(airlock_bin())
                .arg("--store")
                .arg(work.join("store"))
                .args(&args)
                .env_remove("AIRLOCK_STORE")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run strace");
            let killed = status.signal() == Some(9) || status.code() == Some(128 + 9);
            if !killed {
                assert!(
                    status.success(),
                    "{}: airlock {:?} failed without a kill ({status})",
                    s.name,
                    s.args
                );
                break;
            }
            kills += 1;
            let at = format!("{} killed at {syscall} #{n}", s.name);
            check_consistent(&work, &at);
            (s.after_kill)(&work);
            if (s.done)(&work) {
                continue;
            }
            let again = run_airlock(&work, &s.args);
            assert!(
                again.status.success(),
                "{at}: the command failed when run again: {}",
                String::from_utf8_lossy(&again.stderr)
            );
            check_consistent(&work, &format!("{at}, then run again"));
            (s.after_rerun)(&work);
        }
    }
    println!("{}: {kills} kill points", s.name);
    kills
}

/// fsck passes, gc removes every staging area and leftover, fsck still passes.
fn check_consistent(work: &Path, at: &str) {
    if !work.join("store").exists() {
        return; // killed before the store existed: nothing to be inconsistent
    }
    let fsck = run_airlock(work, &["fsck".to_string()]);
    assert!(
        fsck.status.success(),
        "{at}: fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    ok(work, &["gc"]);
    let tmp = work.join("store/tmp");
    let staging: Vec<_> = fs::read_dir(&tmp).map(|d| d.count()).into_iter().collect();
    assert_eq!(
        staging,
        vec![0],
        "{at}: gc left staging in {}",
        tmp.display()
    );
    if let Ok(entries) = fs::read_dir(work.join("store/containers")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "{at}: gc left containers/{name}");
        }
    }
    ok(work, &["fsck"]);
}

fn app_archive(dir: &Path, name: &str, tag: &str, seed: u64) -> PathBuf {
    let p = dir.join(name);
    write_docker_archive(
        &p,
        tag,
        &[
            layer_with_file("base.bin", &noise(40_000, seed)),
            layer_with_file("top.bin", &noise(30_000, seed + 1)),
        ],
    );
    p
}

/// A template with `app.tar` (app:1) and, with `loaded`, a store that already holds it.
fn template(loaded: bool) -> tempfile::TempDir {
    let t = scratch();
    app_archive(t.path(), "app.tar", "app:1", 10);
    app_archive(t.path(), "other.tar", "other:1", 20);
    if loaded {
        ok(
            t.path(),
            &[
                "load",
                "-q",
                "-i",
                &t.path().join("app.tar").to_string_lossy(),
            ],
        );
    }
    t
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn nothing(_: &Path) {}

fn never(_: &Path) -> bool {
    false
}

/// True when the store resolves `name`.
fn resolves(work: &Path, name: &str) -> bool {
    run_airlock(work, &args(&["inspect", name]))
        .status
        .success()
}

fn listed_container(work: &Path, name: &str) -> bool {
    ok(work, &["containers"])
        .lines()
        .any(|l| l.starts_with(name))
}

fn has_image(work: &Path, name: &str) -> bool {
    ok(work, &["images"]).lines().any(|l| l.starts_with(name))
}

#[test]
fn kill_during_first_use_of_a_store() {
    let t = template(false);
    let s = Scenario {
        name: "load into a new store",
        template: t.path().to_path_buf(),
        done: never,
        args: args(&["load", "-q", "-i", "{w}/app.tar"]),
        after_kill: nothing,
        after_rerun: |w| assert!(has_image(w, "app ")),
    };
    assert!(kill_everywhere(&s) >= 5);
}

#[test]
fn kill_during_load_and_tag_moves() {
    let t = template(true);
    // A second app:1: the load moves the tag.
    app_archive(t.path(), "app2.tar", "app:1", 30);
    let s = Scenario {
        name: "load",
        template: t.path().to_path_buf(),
        done: never,
        args: args(&["load", "-q", "-i", "{w}/app2.tar"]),
        after_kill: |w| assert!(has_image(w, "app "), "app:1 names one image or the other"),
        after_rerun: nothing,
    };
    assert!(kill_everywhere(&s) >= 5);
}

#[test]
fn kill_during_save_and_split_save() {
    for (name, extra) in [("save", None), ("save --split", Some("30k"))] {
        let mut a = args(&["save", "app:1", "-o", "{w}/out/app.tar"]);
        if let Some(size) = extra {
            a.extend(args(&["--split", size]));
        }
        let t = template(true);
        fs::create_dir(t.path().join("out")).unwrap();
        let s = Scenario {
            name,
            template: t.path().to_path_buf(),
            args: a,
            done: never,
            after_kill: |w| {
                // The archive is whole where it has its name, or absent.
                let out = w.join("out/app.tar");
                let first = w.join("out/app.tar.000");
                for p in [out, first] {
                    if p.exists() {
                        ok(w, &["verify", "-q", "-i", p.to_str().unwrap()]);
                    }
                }
            },
            after_rerun: |w| {
                let hidden: Vec<String> = fs::read_dir(w.join("out"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with('.'))
                    .collect();
                assert_eq!(hidden, Vec::<String>::new(), "temporary outputs stayed");
            },
        };
        assert!(kill_everywhere(&s) >= 2, "{name}");
    }
}

#[test]
fn kill_during_import_tag_rmi_and_gc() {
    let scenarios = [
        ("import", args(&["import", "{w}/rootfs.tar", "imp:1"])),
        ("tag", args(&["tag", "app:1", "app:2"])),
        ("rmi", args(&["rmi", "app:1"])),
        ("gc", args(&["gc"])),
    ];
    for (name, a) in scenarios {
        let t = template(true);
        fs::write(
            t.path().join("rootfs.tar"),
            layer_with_file("etc/hostname", b"airlock\n"),
        )
        .unwrap();
        if name == "gc" {
            // Something to delete: an untagged image's blobs.
            ok(
                t.path(),
                &[
                    "load",
                    "-q",
                    "-i",
                    &t.path().join("other.tar").to_string_lossy(),
                ],
            );
            ok(t.path(), &["rmi", "other:1"]);
        }
        let s = Scenario {
            name,
            template: t.path().to_path_buf(),
            args: a,
            done: if name == "rmi" {
                |w| !resolves(w, "app:1")
            } else {
                never
            },
            after_kill: nothing,
            after_rerun: nothing,
        };
        let kills = kill_everywhere(&s);
        assert!(kills >= 1, "{name}: no kill point");
    }
}

#[test]
fn kill_during_create_commit_and_rm_of_work_containers() {
    let t = template(true);
    ok(t.path(), &["create", "app:1", "--name", "work"]);
    fs::write(
        t.path().join("store/containers/work/rootfs/added.txt"),
        b"new\n",
    )
    .unwrap();
    let scenarios = [
        ("create", args(&["create", "app:1", "--name", "second"])),
        ("commit", args(&["commit", "work", "app:2"])),
        ("rm", args(&["rm", "work"])),
    ];
    for (name, a) in scenarios {
        let s = Scenario {
            name,
            template: t.path().to_path_buf(),
            args: a,
            done: match name {
                "create" => |w| listed_container(w, "second"),
                "rm" => |w| !listed_container(w, "work"),
                _ => never,
            },
            after_kill: |w| {
                // A listed container is whole: its files all there.
                for c in ["work", "second"] {
                    if listed_container(w, c) {
                        let root = w.join("store/containers").join(c).join("rootfs");
                        assert_eq!(fs::read(root.join("base.bin")).unwrap().len(), 40_000);
                        assert_eq!(fs::read(root.join("top.bin")).unwrap().len(), 30_000);
                    }
                }
            },
            after_rerun: nothing,
        };
        assert!(kill_everywhere(&s) >= 1, "{name}: no kill point");
    }
}
