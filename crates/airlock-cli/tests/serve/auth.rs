//! `serve --htpasswd`: basic auth against entries the real `htpasswd -B` wrote. Every
//! endpoint asks for them (skopeo, curl, airlock login/pull/push as the clients); a bcrypt
//! check is paid once per credentials, not per request; hashes other than bcrypt, and
//! passwords in the clear off loopback, are refused at start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::{curl, digest_of, skopeo, text, NAME};
use super::{busybox_store, Served};
use crate::util::{require_tool, scratch, sh, Airlock};

/// An htpasswd file made by the real tool: `(user, password, bcrypt cost)` entries.
pub(super) fn htpasswd_file(dir: &Path, users: &[(&str, &str, u32)]) -> PathBuf {
    require_tool("htpasswd");
    let file = dir.join("htpasswd");
    for (i, (user, password, cost)) in users.iter().enumerate() {
        let cost = cost.to_string();
        let mut args = vec!["-B", "-C", &cost, "-b"];
        if i == 0 {
            args.push("-c");
        }
        sh(Command::new("htpasswd")
            .args(&args)
            .arg(&file)
            .args([user, password]));
    }
    file
}

/// `airlock serve ARGS` must refuse to start: its stderr. A server that starts instead is
/// killed after a while, and the test fails saying so (rather than hang).
pub(super) fn refused(store: &Airlock, args: &[String]) -> String {
    refused_on(store, "127.0.0.1:0", args)
}

fn refused_on(store: &Airlock, listen: &str, args: &[String]) -> String {
    let mut child = store
        .cmd()
        .args(["serve", "--listen", listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "serve {args:?}: {err}");
    assert!(err.starts_with("airlock: error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one sentence: {err}");
    err
}

/// A client's own docker config and HOME, so no test reads or writes the real ~/.docker.
pub(super) struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    pub(super) fn new() -> Client {
        let dir = scratch();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Client { dir }
    }

    fn cmd(&self, store: &Airlock, env: &[(&str, &str)]) -> Command {
        let mut c = store.cmd();
        c.env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("HOME", self.dir.path().join("home"))
            .envs(env.iter().copied());
        c
    }

    /// Whether airlock succeeded, and all it printed.
    pub(super) fn run(
        &self,
        store: &Airlock,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String) {
        let o = self.cmd(store, env).args(args).output().unwrap();
        (o.status.success(), text(&o))
    }

    /// `airlock login -u USER --password-stdin HOST`.
    pub(super) fn login(
        &self,
        store: &Airlock,
        host: &str,
        user: &str,
        password: &str,
        env: &[(&str, &str)],
    ) -> (bool, String) {
        let mut child = self
            .cmd(store, env)
            .args(["login", "-u", user, "--password-stdin", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        (o.status.success(), text(&o))
    }
}

/// The status, headers and body curl got.
fn fetch(args: &[&str]) -> (u16, String, String) {
    let o = curl(&[&["-i", "-w", "\n%{http_code}"], args].concat());
    let all = String::from_utf8_lossy(&o.stdout).into_owned();
    let (rest, status) = all.rsplit_once('\n').unwrap();
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        status.parse().unwrap_or_else(|_| panic!("{}", text(&o))),
        head.to_string(),
        body.to_string(),
    )
}

#[test]
fn htpasswd_entries_the_real_tool_made_guard_every_endpoint_and_bcrypt_runs_once() {
    const USER: &str = "alice";
    const PASSWORD: &str = "Auth-Pa55word-2718";
    // htpasswd's own default cost (5) for one user; cost 12 (a quarter second or so) for
    // the other, to see that it is paid once, not per request.
    let dir = scratch();
    let store = busybox_store(dir.path(), NAME, "hello");
    let users = htpasswd_file(
        dir.path(),
        &[(USER, PASSWORD, 5), ("slow", "Slow-Pa55-12", 12)],
    );
    assert!(std::fs::read_to_string(&users)
        .unwrap()
        .contains("alice:$2y$05$"));
    let tls = dir.path().join("tls");
    let served = Served::start(
        &store,
        &[
            "--tls-generate",
            tls.to_str().unwrap(),
            "--htpasswd",
            users.to_str().unwrap(),
            "--read-write",
        ],
    );
    let host = served.host();
    let base = format!("https://{host}");
    let ca = tls.join("ca.crt");
    let ca = ca.to_str().unwrap();
    let layer = store.inspect(NAME)["Layers"][0]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let repo = "registry.example/team/hello";

    // No credentials, a wrong password, an unknown user: every endpoint, the unknown ones
    // too, answers 401 with the challenge `docker login` looks for.
    let creds = format!("{USER}:{PASSWORD}");
    for who in [
        None,
        Some(format!("{USER}:wrong")),
        Some(format!("mallory:{PASSWORD}")),
    ] {
        for (method, path) in [
            ("GET", "/v2/".to_string()),
            ("GET", "/v2/_catalog".into()),
            ("GET", format!("/v2/{repo}/tags/list")),
            ("HEAD", format!("/v2/{repo}/manifests/1")),
            ("GET", format!("/v2/{repo}/blobs/{layer}")),
            ("POST", format!("/v2/{repo}/blobs/uploads/")),
            ("GET", "/v2/no/such/thing".into()),
        ] {
            let url = format!("{base}{path}");
            let mut args = vec!["--cacert", ca, "-X", method, &url];
            if method == "HEAD" {
                args = vec!["--cacert", ca, "-I", &url];
            }
            if let Some(c) = &who {
                args.extend(["-u", c]);
            }
            let (status, head, body) = fetch(&args);
            assert_eq!(status, 401, "{who:?} {method} {path}: {head}");
            assert!(
                head.to_lowercase()
                    .contains("www-authenticate: basic realm=\"airlock\""),
                "{head}"
            );
            if method != "HEAD" {
                assert!(body.contains("UNAUTHORIZED"), "{body}");
            }
        }
    }
    let (status, _, body) = fetch(&["--cacert", ca, "-u", &creds, &format!("{base}/v2/")]);
    assert_eq!((status, body.as_str()), (200, "{}"));

    // skopeo: pulls with the credentials; without them, or with a wrong password, 401.
    let remote = format!("docker://{host}/{NAME}");
    let tls_s = tls.to_str().unwrap();
    let layout = dir.path().join("pulled");
    let o = skopeo(&[
        "copy",
        "-q",
        "--src-cert-dir",
        tls_s,
        "--src-creds",
        &creds,
        &remote,
        &format!("oci:{}:hello", layout.display()),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for extra in [vec![], vec!["--creds", "alice:wrong"]] {
        let mut args = vec!["inspect", "--raw", "--cert-dir", tls_s];
        args.extend(extra.iter().copied());
        args.push(&remote);
        let o = skopeo(&args);
        assert!(!o.status.success());
        assert!(
            text(&o).to_lowercase().contains("unauthorized"),
            "{extra:?}: {}",
            text(&o)
        );
    }

    // bcrypt once: twenty requests on one connection with the cost-12 user, the first
    // pays for the check, the other nineteen together take less than it did.
    let mark = served.log().lines().count();
    let url = format!("{base}/v2/_catalog");
    let mut args = vec!["--cacert", ca, "-u", "slow:Slow-Pa55-12", "-o", "/dev/null"];
    for _ in 0..20 {
        args.push(&url);
    }
    let o = curl(&args);
    assert!(o.status.success(), "{}", text(&o));
    // Each line is written once its body has gone: wait for the last.
    let catalog_ms = |log: &str| -> Vec<u64> {
        log.lines()
            .skip(mark)
            .filter(|l| l.contains("GET /v2/_catalog 200"))
            .map(|l| {
                let ms = l.rsplit(' ').next().unwrap();
                ms.trim_end_matches("ms").parse().unwrap()
            })
            .collect()
    };
    let start = Instant::now();
    while catalog_ms(&served.log()).len() < 20 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = served.log();
    let ms = catalog_ms(&log);
    assert_eq!(ms.len(), 20, "{log}");
    assert!(
        ms[0] >= 20,
        "a cost-12 bcrypt check takes longer than {}ms",
        ms[0]
    );
    assert!(
        ms[1..].iter().sum::<u64>() < ms[0],
        "the check was paid again: {ms:?}"
    );
}

#[test]
fn airlock_logs_in_pulls_and_pushes_over_plain_http_on_loopback() {
    const USER: &str = "ci";
    const PASSWORD: &str = "Loop-Pa55word-1618";
    let dir = scratch();
    let store = busybox_store(dir.path(), NAME, "hello");
    let digest = digest_of(&store);
    let users = htpasswd_file(dir.path(), &[(USER, PASSWORD, 5)]);
    // No TLS: allowed, because nothing leaves this machine.
    let served = Served::start(
        &store,
        &["--htpasswd", users.to_str().unwrap(), "--read-write"],
    );
    assert_eq!(served.scheme, "http");
    let host = served.host();
    let image = format!("{host}/{NAME}");
    let client = Client::new();
    let far = Airlock::new(&dir.path().join("far"));

    let (ok, said) = client.run(&far, &["pull", &image], &[]);
    assert!(!ok && said.contains("airlock login"), "{said}");
    let (ok, said) = client.login(&far, &host, USER, "wrong", &[]);
    assert!(!ok && said.contains("airlock: error:"), "{said}");
    assert!(!said.contains("wrong"), "the password shows: {said}");
    let (ok, said) = client.login(&far, &host, USER, PASSWORD, &[]);
    assert!(ok && said.contains("Login Succeeded"), "{said}");
    assert!(!said.contains(PASSWORD));
    let (ok, said) = client.run(&far, &["pull", &image], &[]);
    assert!(ok, "{said}");
    assert_eq!(far.inspect(&image)["ManifestDigest"], digest.as_str());

    // A push back under another name, with the same login.
    let again = format!("{host}/team/again:1");
    let (ok, said) = client.run(&far, &["push", &image, &again], &[]);
    assert!(ok, "{said}");
    assert_eq!(
        store.inspect("team/again:1")["ManifestDigest"],
        digest.as_str()
    );
    let (ok, said) = client.run(&far, &["logout", &host], &[]);
    assert!(ok, "{said}");
    let (ok, said) = client.run(&far, &["push", &image, &again], &[]);
    assert!(!ok && said.contains("airlock login"), "{said}");
}

#[test]
fn other_hashes_and_passwords_in_the_clear_off_loopback_are_refused_at_start() {
    require_tool("htpasswd");
    let dir = scratch();
    let store = Airlock::new(&dir.path().join("store"));
    store.ok(&["images"]);
    let good = htpasswd_file(dir.path(), &[("alice", "pw-alice", 5)]);
    let good_line = std::fs::read_to_string(&good).unwrap();
    for (flag, says) in [
        ("-m", "MD5 ($apr1$"),
        ("-s", "SHA-1 ({SHA}"),
        ("-d", "DES crypt"),
        ("-2", "SHA-crypt"),
        ("-5", "SHA-crypt"),
        ("-p", "plain text"),
    ] {
        let entry = sh(Command::new("htpasswd").args(["-n", "-b", flag, "bob", "pw-bob"]));
        let file = dir.path().join(format!("htpasswd{flag}"));
        std::fs::write(&file, format!("{good_line}{}\n", entry.trim())).unwrap();
        let err = refused(&store, &["--htpasswd".into(), file.display().to_string()]);
        let line = format!("{} line 2 (user bob)", file.display());
        assert!(
            err.contains(&line) && err.contains(says) && err.contains("htpasswd -B"),
            "{flag}: {err}"
        );
    }
    let missing = dir.path().join("nope");
    let err = refused(
        &store,
        &["--htpasswd".into(), missing.display().to_string()],
    );
    assert!(
        err.contains(&format!("cannot read {}", missing.display())),
        "{err}"
    );

    // Off loopback without TLS, the passwords would cross the network in the clear.
    let err = refused_on(
        &store,
        "0.0.0.0:0",
        &["--htpasswd".into(), good.display().to_string()],
    );
    assert!(err.contains("in the clear on 0.0.0.0:0"), "{err}");
}
