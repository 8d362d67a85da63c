//! `serve` over TLS: a CA of its own (`--tls-generate`) that skopeo, curl, docker, ctr and
//! airlock trust once they are given it, and nothing trusts otherwise; certificates and keys
//! of every kind openssl writes (`--tls-cert/--tls-key`); files that cannot serve, named.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::auth::{htpasswd_file, Client};
use super::{busybox_store, Served};
use crate::containerd::Ctr;
use crate::util::{require_tool, scratch, sh, sha256, Airlock};

pub(super) const NAME: &str = "registry.example/team/hello:1";

/// curl, its output whatever the exit code.
pub(super) fn curl(args: &[&str]) -> Output {
    require_tool("curl");
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .unwrap()
}

pub(super) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(super) fn skopeo(args: &[&str]) -> Output {
    require_tool("skopeo");
    Command::new("skopeo").args(args).output().unwrap()
}

pub(super) fn digest_of(store: &Airlock) -> String {
    store.inspect(NAME)["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap().display().to_string()
}

#[test]
fn a_generated_ca_is_trusted_by_skopeo_and_curl_when_given_and_kept_across_restarts() {
    let dir = scratch();
    let store = busybox_store(dir.path(), NAME, "hello over tls");
    let digest = digest_of(&store);
    let tls = dir.path().join("tls");
    let tls_s = tls.to_str().unwrap();
    let ca = tls.join("ca.crt");
    let ca_s = ca.to_str().unwrap();
    let served = Served::start(&store, &["--tls-generate", tls_s]);
    assert_eq!(served.scheme, "https");
    let host = served.host();

    // How to trust it, for each client, with the address it is reached by.
    let said = served.stdout_with("Keep ");
    for want in [
        format!("https://{host}/v2/"),
        "(made now)".to_string(),
        format!("/etc/docker/certs.d/{host}/ca.crt"),
        format!("/etc/containers/certs.d/{host}/ca.crt"),
        format!("--cert-dir {}", canonical(&tls)),
        format!("certs.d/{host}/hosts.toml"),
        "update-ca-certificates".to_string(),
    ] {
        assert!(said.contains(&want), "no {want:?} in:\n{said}");
    }
    assert_eq!(mode(&tls.join("private")), 0o700);
    for key in ["private/ca.key", "private/server.key"] {
        assert_eq!(mode(&tls.join(key)), 0o600, "{key}");
    }
    sh(Command::new("openssl").args([
        "verify",
        "-CAfile",
        ca_s,
        tls.join("server.crt").to_str().unwrap(),
    ]));

    // skopeo, given the directory itself as --cert-dir: the manifest byte for byte, and a
    // copy that checks every digest.
    let remote = format!("docker://{host}/{NAME}");
    let o = skopeo(&["inspect", "--raw", "--cert-dir", tls_s, &remote]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha256(&o.stdout), digest);
    let layout = dir.path().join("copied");
    let o = skopeo(&[
        "copy",
        "-q",
        "--src-cert-dir",
        tls_s,
        &remote,
        &format!("oci:{}:hello", layout.display()),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // Without the CA, the certificate is refused.
    let o = skopeo(&["inspect", "--raw", &remote]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("certificate signed by unknown authority"),
        "{}",
        text(&o)
    );

    // curl: with --cacert, without, and plain HTTP on the TLS port (told what to do).
    let url = format!("https://{host}/v2/");
    let o = curl(&["--cacert", ca_s, &url]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(o.stdout, b"{}");
    let o = curl(&[&url]);
    assert_eq!(o.status.code(), Some(60), "{}", text(&o));
    let o = curl(&["-w", "\n%{http_code}", &format!("http://{host}/v2/")]);
    let said = text(&o);
    assert!(
        said.contains("speaks HTTPS only") && said.ends_with("\n400"),
        "{said}"
    );

    // A restart with another name: the same CA (clients trust it once), a new server
    // certificate holding the name, trusted as before.
    let ca_bytes = fs::read(&ca).unwrap();
    let leaf = fs::read(tls.join("server.crt")).unwrap();
    let mut served = served;
    assert!(served.stop().success());
    let served = Served::start(
        &store,
        &["--tls-generate", tls_s, "--tls-name", "registry.internal"],
    );
    assert!(served.stdout_with("Keep ").contains("(reused)"));
    assert_eq!(fs::read(&ca).unwrap(), ca_bytes);
    assert_ne!(fs::read(tls.join("server.crt")).unwrap(), leaf);
    let sans = sh(Command::new("openssl").args([
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        tls.join("server.crt").to_str().unwrap(),
    ]));
    for want in [
        "IP Address:127.0.0.1",
        "DNS:localhost",
        "DNS:registry.internal",
    ] {
        assert!(sans.contains(want), "{sans}");
    }
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        tls_s,
        &format!("docker://{}/{NAME}", served.host()),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// `openssl` in `dir`, insisting on success.
fn openssl(dir: &Path, args: &[&str]) {
    require_tool("openssl");
    sh(Command::new("openssl").current_dir(dir).args(args));
}

#[test]
fn certificates_and_keys_of_each_kind_openssl_writes_serve_https_and_unusable_files_are_named() {
    let dir = scratch();
    let d = dir.path();
    let store = busybox_store(d, NAME, "hello");
    let digest = digest_of(&store);
    // A CA of the test's own, in a directory of its own (a --cert-dir for skopeo).
    let trust = d.join("trust");
    fs::create_dir_all(&trust).unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "trust/ca.crt",
            "-subj",
            "/CN=airlock test CA",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let keys: [(&str, &[&str], &str); 4] = [
        (
            "ec-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            "BEGIN PRIVATE KEY",
        ),
        (
            "ec-sec1",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "2048"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            "BEGIN PRIVATE KEY",
        ),
    ];
    for (kind, genkey, pem) in keys {
        let key = format!("{kind}.key");
        // `-out` right after the command: genrsa wants its key size last.
        let mut args = vec![genkey[0], "-out", &key];
        args.extend(&genkey[1..]);
        openssl(d, &args);
        assert!(
            fs::read_to_string(d.join(&key)).unwrap().contains(pem),
            "{kind}"
        );
        let csr = format!("{kind}.csr");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                "/CN=127.0.0.1",
                "-out",
                &csr,
            ],
        );
        let crt = format!("{kind}.crt");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "trust/ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext",
                "-out",
                &crt,
            ],
        );
        // A chain, the server's certificate first.
        let chain = d.join(format!("{kind}.chain.pem"));
        let mut bytes = fs::read(d.join(&crt)).unwrap();
        bytes.extend(fs::read(trust.join("ca.crt")).unwrap());
        fs::write(&chain, bytes).unwrap();

        let served = Served::start(
            &store,
            &[
                "--tls-cert",
                chain.to_str().unwrap(),
                "--tls-key",
                d.join(&key).to_str().unwrap(),
            ],
        );
        let o = curl(&[
            "--cacert",
            trust.join("ca.crt").to_str().unwrap(),
            &format!("https://{}/v2/", served.host()),
        ]);
        assert!(o.status.success(), "{kind}: {}", text(&o));
        let o = skopeo(&[
            "inspect",
            "--raw",
            "--cert-dir",
            trust.to_str().unwrap(),
            &format!("docker://{}/{NAME}", served.host()),
        ]);
        assert!(o.status.success(), "{kind}: {}", text(&o));
        assert_eq!(sha256(&o.stdout), digest, "{kind}");
    }

    // What cannot serve: one sentence naming the file or the flag, exit 1.
    let p = |name: &str| d.join(name).display().to_string();
    let missing = p("missing.crt");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--tls-cert".into(),
                missing.clone(),
                "--tls-key".into(),
                p("ec-sec1.key"),
            ],
            format!("cannot read {missing}"),
        ),
        (
            vec![
                "--tls-cert".into(),
                p("ec-sec1.key"),
                "--tls-key".into(),
                p("ec-sec1.crt"),
            ],
            format!("{} holds no PEM certificate", p("ec-sec1.key")),
        ),
        (
            vec![
                "--tls-cert".into(),
                p("ec-sec1.crt"),
                "--tls-key".into(),
                p("ext"),
            ],
            format!("{} holds no PEM private key", p("ext")),
        ),
        (
            vec![
                "--tls-cert".into(),
                p("ec-sec1.crt"),
                "--tls-key".into(),
                p("rsa-pkcs1.key"),
            ],
            format!(
                "{} is not the key of the certificate in {}",
                p("rsa-pkcs1.key"),
                p("ec-sec1.crt")
            ),
        ),
        (
            vec!["--tls-cert".into(), p("ec-sec1.crt")],
            "--tls-cert needs --tls-key".into(),
        ),
        (
            vec![
                "--tls-generate".into(),
                p("gen"),
                "--tls-cert".into(),
                p("ec-sec1.crt"),
            ],
            "not both".into(),
        ),
        (
            vec![
                "--tls-generate".into(),
                p("gen"),
                "--tls-name".into(),
                "reg.example:5000".into(),
            ],
            "--tls-name reg.example:5000 is not a host name".into(),
        ),
        (
            vec!["--tls-name".into(), "reg.example".into()],
            "give --tls-generate DIR too".into(),
        ),
    ];
    for (args, says) in cases {
        let err = super::auth::refused(&store, &args);
        assert!(err.contains(&says), "{args:?}: {err}");
    }
}

/// A non-loopback IPv4 address of this machine: docker takes 127.0.0.0/8 for an insecure
/// registry and never checks a certificate there, and airlock speaks plain HTTP to
/// loopback, so only an address off loopback shows that they trust the CA they are given.
fn this_machines_address() -> String {
    let out = sh(Command::new("hostname").arg("-I"));
    out.split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .unwrap_or_else(|| panic!("this machine has no IPv4 address off loopback: {out:?}"))
        .to_string()
}

/// `/etc/docker/certs.d/HOST:PORT/ca.crt`, which the engine reads at every pull (no
/// restart), removed when dropped, the test passing or not (and `certs.d` with it when the
/// test made it).
struct DockerTrust {
    host_dir: PathBuf,
    made_certs_d: bool,
}

const CERTS_D: &str = "/etc/docker/certs.d";

impl DockerTrust {
    fn install(host: &str, ca: &Path) -> DockerTrust {
        let made_certs_d = !Path::new(CERTS_D).exists();
        let host_dir = Path::new(CERTS_D).join(host);
        let trust = DockerTrust {
            host_dir,
            made_certs_d,
        };
        fs::create_dir_all(&trust.host_dir).unwrap();
        fs::copy(ca, trust.host_dir.join("ca.crt")).unwrap();
        trust
    }
}

impl Drop for DockerTrust {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.host_dir);
        if self.made_certs_d {
            let _ = fs::remove_dir(CERTS_D);
        }
    }
}

fn docker(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    require_tool("docker");
    let mut child = Command::new("docker")
        .env("DOCKER_CONFIG", config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn off_loopback_docker_containerd_airlock_and_skopeo_trust_the_generated_ca_and_log_in() {
    const USER: &str = "fleet";
    const PASSWORD: &str = "Tls-Pa55word-3141";
    let ip = this_machines_address();
    let dir = scratch();
    let store = busybox_store(dir.path(), NAME, "hello from https");
    let digest = digest_of(&store);
    let users = htpasswd_file(dir.path(), &[(USER, PASSWORD, 5)]);
    let tls = dir.path().join("tls");
    let ca = tls.join("ca.crt");
    let served = Served::start_on(
        &store,
        &format!("{ip}:0"),
        &[
            "--tls-generate",
            tls.to_str().unwrap(),
            "--htpasswd",
            users.to_str().unwrap(),
        ],
        &[],
    );
    let host = served.host();
    assert!(host.starts_with(&format!("{ip}:")), "{host}");
    assert!(served
        .stdout_with("Keep ")
        .contains(&format!("/etc/docker/certs.d/{host}/ca.crt")));
    let image = format!("{host}/{NAME}");

    // skopeo: the CA and the credentials.
    let creds = format!("{USER}:{PASSWORD}");
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        tls.to_str().unwrap(),
        "--creds",
        &creds,
        &format!("docker://{image}"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha256(&o.stdout), digest);

    // airlock speaks HTTPS off loopback, against the system store, or SSL_CERT_FILE.
    let client = Client::new();
    let far = Airlock::new(&dir.path().join("far"));
    let (ok, said) = client.run(&far, &["pull", &image], &[]);
    assert!(!ok);
    assert!(
        said.contains("UnknownIssuer") && said.contains("SSL_CERT_FILE"),
        "{said}"
    );
    let trusted = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let (ok, said) = client.login(&far, &host, USER, "wrong", &trusted);
    assert!(!ok, "{said}");
    let (ok, said) = client.login(&far, &host, USER, PASSWORD, &trusted);
    assert!(ok && said.contains("Login Succeeded"), "{said}");
    let (ok, said) = client.run(&far, &["pull", &image], &trusted);
    assert!(ok, "{said}");
    assert_eq!(far.inspect(&image)["ManifestDigest"], digest.as_str());

    // containerd (ctr resolves for itself): a hosts.toml as the server said to write it.
    let ctr = Ctr::new_named("-serve-tls");
    let creds_arg = ["--user", creds.as_str()];
    let pull = |extra: &[&str]| {
        let mut args = vec!["images", "pull"];
        args.extend(extra);
        args.extend(creds_arg);
        args.push(&image);
        ctr.output(&args)
    };
    let o = pull(&[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("certificate signed by unknown authority"),
        "{}",
        text(&o)
    );
    let hosts = dir.path().join("certs.d");
    let host_dir = hosts.join(&host);
    fs::create_dir_all(&host_dir).unwrap();
    fs::copy(&ca, host_dir.join("ca.crt")).unwrap();
    fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "[host.\"https://{host}\"]\n  ca = \"{}\"\n",
            host_dir.join("ca.crt").display()
        ),
    )
    .unwrap();
    let o = pull(&["--hosts-dir", hosts.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        ctr.images()
            .iter()
            .any(|(n, d)| n == &image && d == &digest),
        "{:?}",
        ctr.images()
    );

    // docker: the engine refuses the certificate until certs.d holds the CA.
    let config = dir.path().join("docker-config");
    fs::create_dir_all(&config).unwrap();
    // The docker CLI stores a login with `pass` when it finds docker-credential-pass (the
    // credential-helper tests install it) and the config names no store: one entry keeps
    // this login in the file, where this test wants it.
    fs::write(
        config.join("config.json"),
        r#"{"auths": {"placeholder.invalid": {}}}"#,
    )
    .unwrap();
    let login = ["login", "-u", USER, "--password-stdin", host.as_str()];
    let o = docker(&config, &login, Some(PASSWORD));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("certificate signed by unknown authority"),
        "{}",
        text(&o)
    );
    let trust = DockerTrust::install(&host, &ca);
    let o = docker(&config, &login, Some("wrong"));
    assert!(!o.status.success(), "{}", text(&o));
    let o = docker(&config, &login, Some(PASSWORD));
    assert!(o.status.success(), "{}", text(&o));
    let o = docker(&config, &["pull", &image], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&digest), "{}", text(&o));
    let ran = docker(&config, &["run", "--rm", &image], None);
    let _ = docker(&config, &["rmi", "-f", &image], None);
    let _ = docker(&config, &["logout", &host], None);
    drop(trust);
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from https\n",
        "{}",
        text(&ran)
    );
    assert!(!Path::new("/etc/docker/certs.d").join(&host).exists());
}
