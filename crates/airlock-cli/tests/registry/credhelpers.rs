//! Credentials the way docker and podman find them (issue 15, 1): a real credential helper
//! (`docker-credential-pass`, over `pass` and a throw-away GPG key) named by `credsStore`
//! or `credHelpers`, podman's `--authfile`; no secret is ever printed or written to the
//! config.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::harness::RegistryServer;
use super::helpers::{all_output, base64, docker_config, fx, Cli, Sandbox};
use super::APP;
use crate::util::{require_tool, sh};

const USER: &str = "helper-user";
const PASSWORD: &str = "Helper-Pa55word-90210";

/// A GPG home with one key and a password store initialised for it, under `dir`.
struct PassStore {
    gnupg: std::path::PathBuf,
    store: std::path::PathBuf,
}

impl PassStore {
    fn new(dir: &Path) -> PassStore {
        for tool in ["gpg", "pass", "docker-credential-pass"] {
            require_tool(tool);
        }
        let gnupg = dir.join("g");
        fs::create_dir_all(&gnupg).unwrap();
        fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let store = dir.join("pass");
        let ps = PassStore { gnupg, store };
        sh(ps.env(&mut Command::new("gpg")).args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "airlock test <test@example.org>",
            "default",
            "default",
            "never",
        ]));
        let keys = sh(ps
            .env(&mut Command::new("gpg"))
            .args(["--list-keys", "--with-colons"]));
        let fpr = keys
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("the key's fingerprint");
        sh(ps.env(&mut Command::new("pass")).args(["init", &fpr]));
        ps
    }

    fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("GNUPGHOME", &self.gnupg)
            .env("PASSWORD_STORE_DIR", &self.store)
    }

    /// What `docker-credential-pass list` says it holds (server -> user).
    fn list(&self) -> serde_json::Value {
        let out = sh(self
            .env(&mut Command::new("docker-credential-pass"))
            .arg("list"));
        serde_json::from_str(&out).unwrap()
    }

    /// Every file of the password store, read (to show no secret sits there in clear).
    fn files(&self) -> String {
        let mut text = String::new();
        for e in walk(&self.store) {
            text.push_str(&String::from_utf8_lossy(&fs::read(e).unwrap()));
        }
        text
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// airlock with the pass store's environment, `args`, optionally `stdin` on a pipe.
fn run(cli: &Cli, pass: &PassStore, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = cli.cmd();
    pass.env(&mut c)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let input = stdin.unwrap_or("").to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn no_secret(what: &str, text: &str) {
    for s in [
        PASSWORD.to_string(),
        base64(format!("{USER}:{PASSWORD}").as_bytes()),
    ] {
        assert!(!text.contains(&s), "{what} shows the secret:\n{text}");
    }
}

#[test]
fn a_credential_helper_named_by_credsstore_or_credhelpers_holds_the_login() {
    let reg = RegistryServer::with_htpasswd(USER, PASSWORD);
    let host = reg.host();
    let sb = Sandbox::new();
    let pass = PassStore::new(sb.path());
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    fs::write(sb.docker_config(), r#"{"credsStore": "pass"}"#).unwrap();

    let out = run(
        &cli,
        &pass,
        &["login", "-u", USER, "--password-stdin", &host],
        Some(PASSWORD),
    );
    let text = all_output(&out);
    assert!(out.status.success(), "login: {text}");
    assert!(text.contains("docker-credential-pass"), "{text}");
    no_secret("login", &text);
    // The config records the login with no secret; the helper holds it, encrypted.
    let config = docker_config(&sb);
    assert_eq!(config["auths"][&host], serde_json::json!({}), "{config}");
    no_secret(
        "config.json",
        &fs::read_to_string(sb.docker_config()).unwrap(),
    );
    assert_eq!(pass.list()[&host], USER, "{}", pass.list());
    no_secret("the password store's files", &pass.files());

    let dest = format!("{host}/helper/app:1");
    let out = run(&cli, &pass, &["push", APP, &dest], None);
    assert!(out.status.success(), "push: {}", all_output(&out));
    no_secret("push", &all_output(&out));

    // Per registry (credHelpers) the same; a pull in another store reads it there.
    fs::write(
        sb.docker_config(),
        serde_json::to_vec(&serde_json::json!({"credHelpers": {&host: "pass"}})).unwrap(),
    )
    .unwrap();
    let other = sb.store("other");
    let out = run(&other, &pass, &["pull", "-q", &dest], None);
    assert!(out.status.success(), "pull: {}", all_output(&out));
    assert_eq!(other.inspect(&dest)["Id"], cli.inspect(APP)["Id"]);

    // Logout erases it from the helper.
    let out = run(&cli, &pass, &["logout", &host], None);
    assert!(
        out.status.success() && all_output(&out).contains("Removed"),
        "{}",
        all_output(&out)
    );
    assert!(pass.list().get(&host).is_none(), "{}", pass.list());
    let out = run(&sb.store("third"), &pass, &["pull", "-q", &dest], None);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("airlock login"),
        "{}",
        all_output(&out)
    );

    // A helper that is not installed: one sentence naming it.
    fs::write(sb.docker_config(), r#"{"credsStore": "no-such-helper"}"#).unwrap();
    let out = run(&cli, &pass, &["push", APP, &dest], None);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("docker-credential-no-such-helper"), "{text}");
}

#[test]
fn authfile_is_where_login_writes_and_pull_reads_as_in_podman() {
    let reg = RegistryServer::with_htpasswd(USER, PASSWORD);
    let host = reg.host();
    let sb = Sandbox::new();
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    let authfile = sb.path().join("auth.json");
    let af = authfile.to_str().unwrap();
    let mut c = cli.cmd();
    c.args([
        "login",
        "--authfile",
        af,
        "-u",
        USER,
        "--password-stdin",
        &host,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(
        !sb.docker_config().exists(),
        "the docker config is left alone"
    );
    // podman reads the file airlock wrote: it is theirs as much as ours.
    require_tool("skopeo");
    let dest = format!("{host}/authfile/app:1");
    cli.ok(&["push", "--authfile", af, APP, &dest]);
    sh(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--authfile",
        af,
        &format!("docker://{dest}"),
    ]));
    // Without it the registry refuses; with REGISTRY_AUTH_FILE, as podman, it pulls.
    let out = sb
        .store("plain")
        .cmd()
        .args(["pull", "-q", &dest])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mut c = sb.store("env").cmd();
    let out = c
        .env("REGISTRY_AUTH_FILE", &authfile)
        .args(["pull", "-q", &dest])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
}

/// An `identitytoken` (what `docker login` keeps for an OAuth2 registry) is a refresh
/// token: the token service gets the refresh-token grant, by POST, and the registry the
/// access token it answers. The token service is the test proxy in front of the real
/// registry (distribution has none of its own).
#[test]
fn an_identity_token_is_used_as_a_refresh_token() {
    use super::harness::{Proxy, Reply, Response};
    use super::helpers::query;
    use std::sync::{Arc, Mutex};
    const REFRESH: &str = "refresh-7c1f0b9a";
    const ACCESS: &str = "access-52d3e8";
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", &fx("podman-docker-archive.tar")]);
    cli.ok(&["push", APP, &format!("{}/oauth/app:1", reg.host())]);
    // Each token request: its method and form.
    type Grant = (String, Vec<(String, String)>);
    let grants: Arc<Mutex<Vec<Grant>>> = Arc::default();
    let port = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let proxy = {
        let (grants, port) = (grants.clone(), port.clone());
        Proxy::start(reg.port, move |req, forward| {
            if req.path() == "/token" {
                let form = query(&format!("?{}", String::from_utf8_lossy(req.body())));
                grants
                    .lock()
                    .unwrap()
                    .push((req.method.clone(), form.clone()));
                let ok = req.method == "POST"
                    && form.contains(&("grant_type".into(), "refresh_token".into()))
                    && form.contains(&("refresh_token".into(), REFRESH.into()));
                if !ok {
                    return Reply::Send(Response::new(401, &[], b"{}"));
                }
                let body = serde_json::json!({"access_token": ACCESS}).to_string();
                return Reply::Send(Response::new(
                    200,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ));
            }
            if req.header("Authorization") != Some(format!("Bearer {ACCESS}").as_str()) {
                let challenge = format!(
                    "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"airlock-test\"",
                    port.load(std::sync::atomic::Ordering::SeqCst)
                );
                return Reply::Send(Response::new(
                    401,
                    &[("WWW-Authenticate", challenge.as_str())],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ));
            }
            Reply::Send(forward(req))
        })
    };
    port.store(proxy.port as usize, std::sync::atomic::Ordering::SeqCst);
    let host = proxy.host();
    fs::write(
        sb.docker_config(),
        serde_json::to_vec(&serde_json::json!({"auths": {&host: {"identitytoken": REFRESH}}}))
            .unwrap(),
    )
    .unwrap();
    let dest = format!("{host}/oauth/app:1");
    let puller = sb.store("pulled");
    let out = puller.cmd().args(["pull", &dest]).output().unwrap();
    let text = all_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(REFRESH) && !text.contains(ACCESS), "{text}");
    assert_eq!(puller.inspect(&dest)["Id"], cli.inspect(APP)["Id"]);
    let grants = grants.lock().unwrap();
    let (method, form) = grants.first().expect("a token request");
    assert_eq!(method, "POST");
    for want in [
        ("service", "airlock-test"),
        ("scope", "repository:oauth/app:pull"),
        ("client_id", "airlock"),
    ] {
        assert!(
            form.contains(&(want.0.to_string(), want.1.to_string())),
            "{form:?}"
        );
    }
}
