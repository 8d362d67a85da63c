//! `docker-daemon:` on an engine that is not on the local socket: `DOCKER_HOST=tcp://` (the
//! engine of this machine behind a socat relay), TLS with client certificates (a socat TLS
//! relay, certificates made by openssl, the docker CLI as the oracle that the relay is
//! right), `ssh://` (a real sshd on 127.0.0.1 running `docker system dial-stdio`), and
//! docker contexts made by the docker CLI itself.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{layer_with_file, require_tool, scratch, sh, write_docker_archive, Airlock};

const LOCAL_SOCKET: &str = "/var/run/docker.sock";

/// A background process (relay, sshd) killed when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(cmd: &mut Command, port: u16, what: &str) -> Daemon {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let d = Daemon(child);
    wait_for_port(port, what);
    d
}

/// socat from 127.0.0.1:PORT to the engine's socket, plain TCP.
fn tcp_relay() -> (Daemon, u16) {
    require_tool("socat");
    let port = free_port();
    let d = spawn(
        Command::new("socat").args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
            &format!("UNIX-CONNECT:{LOCAL_SOCKET}"),
        ]),
        port,
        "the socat TCP relay",
    );
    (d, port)
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl; the
/// client side laid out as DOCKER_CERT_PATH wants it (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> PathBuf {
    require_tool("openssl");
    let run = |args: &[&str]| {
        sh(Command::new("openssl").current_dir(dir).args(args));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=airlock test CA",
    ]);
    for (who, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{who}.ext")), ext).unwrap();
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{who}-key.pem"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN=airlock test {who}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{who}.pem"),
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
    let certs = dir.join("client-certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("client.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ] {
        std::fs::copy(dir.join(from), certs.join(to)).unwrap();
    }
    certs
}

/// socat speaking TLS on 127.0.0.1:PORT, insisting on a client certificate from the CA.
fn tls_relay(dir: &Path) -> (Daemon, u16) {
    require_tool("socat");
    let port = free_port();
    let d = spawn(
        Command::new("socat").current_dir(dir).args([
            &format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert=server.pem,key=server-key.pem,cafile=ca.pem,verify=1"
            ),
            &format!("UNIX-CONNECT:{LOCAL_SOCKET}"),
        ]),
        port,
        "the socat TLS relay",
    );
    (d, port)
}

/// A small image of this run, in an archive; removed from the engine at the end.
struct TestImage {
    name: String,
    id: String,
    archive: PathBuf,
}

impl TestImage {
    fn new(dir: &Path, tag: &str) -> TestImage {
        let name = format!("localhost/airlock-test/remote-{tag}:{}", std::process::id());
        let archive = dir.join(format!("{tag}.tar"));
        let body = format!("reached over {tag} by run {}\n", std::process::id());
        write_docker_archive(
            &archive,
            &name,
            &[layer_with_file("hello.txt", body.as_bytes())],
        );
        let a = Airlock::new(&dir.join(format!("probe-{tag}")));
        a.ok(&["load", "-i", archive.to_str().unwrap()]);
        let id = a.inspect(&name)["Id"].as_str().unwrap().to_string();
        TestImage { name, id, archive }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = local_docker().args(["rmi", "-f", &self.name]).output();
    }
}

/// The docker CLI on the local socket, whatever the test's environment says.
fn local_docker() -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", format!("unix://{LOCAL_SOCKET}"));
    c.env_remove("DOCKER_CONTEXT");
    c
}

fn engine_id(name: &str) -> String {
    sh(local_docker().args(["image", "inspect", "-f", "{{.Id}}", name]))
        .trim()
        .to_string()
}

/// The oracle for a relay or an sshd: the docker CLI itself reaches the engine with `env`.
fn docker_cli_reaches(env: &[(&str, &str)], over: &str) {
    let v = sh(Command::new("docker").envs(env.iter().copied()).args([
        "version",
        "-f",
        "{{.Server.Version}}",
    ]));
    assert!(!v.trim().is_empty(), "docker version over {over}: {v}");
}

/// airlock with only the given engine settings (none inherited from the caller).
fn airlock(store: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut c = Airlock::new(store).cmd();
    for v in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_TLS",
        "DOCKER_CERT_PATH",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied()).args(args).output().unwrap()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: std::process::Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with exit 1: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.trim().lines().collect();
    assert!(
        lines[0].starts_with("airlock: error: ")
            && lines.len() <= 2
            && lines[1..].iter().all(|l| l.starts_with("hint: ")),
        "{what}: one sentence and at most a hint, got {err}"
    );
    err
}

/// Load the image into the engine at `env`, check the local engine has it under its ID,
/// remove it locally, save it back out through `env`, and check the archive's image.
fn round_trip(dir: &Path, img: &TestImage, env: &[(&str, &str)], what: &str) {
    let _ = local_docker().args(["rmi", "-f", &img.name]).output();
    let store = dir.join(format!("store-{}", what.replace(' ', "-")));
    let out = ok(
        airlock(
            &store,
            env,
            &[
                "load",
                "--into",
                "docker-daemon",
                "-i",
                img.archive.to_str().unwrap(),
            ],
        ),
        &format!("load --into docker-daemon over {what}"),
    );
    assert!(out.contains(&img.name), "{what}: load says {out}");
    assert_eq!(
        engine_id(&img.name),
        img.id,
        "{what}: the engine's image ID"
    );
    let back = dir.join(format!("back-{}.tar", what.replace(' ', "-")));
    ok(
        airlock(
            &store,
            env,
            &[
                "save",
                &format!("docker-daemon:{}", img.name),
                "-o",
                back.to_str().unwrap(),
            ],
        ),
        &format!("save docker-daemon: over {what}"),
    );
    let check = Airlock::new(&dir.join(format!("check-{}", what.replace(' ', "-"))));
    check.ok(&["load", "-i", back.to_str().unwrap()]);
    assert_eq!(
        check.inspect(&img.name)["Id"],
        img.id,
        "{what}: the saved image"
    );
}

#[test]
fn docker_host_tcp_reaches_the_engine_through_a_relay() {
    require_tool("docker");
    let dir = scratch();
    let img = TestImage::new(dir.path(), "tcp");
    let (_relay, port) = tcp_relay();
    let host = format!("tcp://127.0.0.1:{port}");
    round_trip(dir.path(), &img, &[("DOCKER_HOST", &host)], "tcp");

    // Nothing listening: named, one sentence, exit 1.
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let err = fails(
        airlock(
            &dir.path().join("s"),
            &[("DOCKER_HOST", &dead)],
            &["save", "docker-daemon:x", "-o", "/dev/null"],
        ),
        "a dead tcp engine",
    );
    assert!(
        err.contains(&format!("no Docker Engine answers at {dead}")),
        "{err}"
    );
    let err = fails(
        airlock(
            &dir.path().join("s"),
            &[("DOCKER_HOST", "npipe:////./pipe/docker_engine")],
            &["save", "docker-daemon:x", "-o", "/dev/null"],
        ),
        "a named pipe host",
    );
    assert!(
        err.contains("npipe:////./pipe/docker_engine") && err.contains("ssh://"),
        "{err}"
    );
}

#[test]
fn docker_tls_verify_and_cert_path_as_the_docker_cli_reads_them() {
    require_tool("docker");
    let dir = scratch();
    let certs = certificates(dir.path());
    let (_relay, port) = tls_relay(dir.path());
    let host = format!("tcp://127.0.0.1:{port}");
    let certs_s = certs.to_str().unwrap();
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs_s),
    ];
    // The oracle: the docker CLI reaches the engine through this relay with these files.
    docker_cli_reaches(&env, "TLS");

    let img = TestImage::new(dir.path(), "tls");
    round_trip(dir.path(), &img, &env, "tls");

    let save = ["save", "docker-daemon:x", "-o", "/dev/null"];
    let store = dir.path().join("s");
    // Plain HTTP to a TLS engine.
    let err = fails(
        airlock(&store, &[("DOCKER_HOST", &host)], &save),
        "plain to TLS",
    );
    assert!(err.contains("DOCKER_TLS_VERIFY"), "{err}");
    // Another CA: the engine's certificate is refused, and where the files came from is said.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other_certs = certificates(&other);
    let other_s = other_certs.to_str().unwrap();
    let err = fails(
        airlock(
            &store,
            &[
                ("DOCKER_HOST", &host),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", other_s),
            ],
            &save,
        ),
        "an unknown CA",
    );
    assert!(
        err.contains("certificate") && err.contains(&format!("DOCKER_CERT_PATH={other_s}")),
        "{err}"
    );
    // No client certificate: the relay hangs up in the handshake.
    let no_client = dir.path().join("ca-only");
    std::fs::create_dir_all(&no_client).unwrap();
    std::fs::copy(certs.join("ca.pem"), no_client.join("ca.pem")).unwrap();
    let err = fails(
        airlock(
            &store,
            &[
                ("DOCKER_HOST", &host),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", no_client.to_str().unwrap()),
            ],
            &save,
        ),
        "no client certificate",
    );
    assert!(
        err.contains("no TLS connection to the Docker Engine"),
        "{err}"
    );
}

/// sshd on 127.0.0.1 with its own host key, taking one throw-away client key; the ssh
/// client is pointed at them by a config file, through an `ssh` earlier on PATH that adds
/// `-F` (ssh reads ~/.ssh from the password database, not $HOME).
struct Sshd {
    _daemon: Daemon,
    port: u16,
    path: String,
    user: String,
}

fn sshd(dir: &Path) -> Sshd {
    for t in ["ssh", "ssh-keygen"] {
        require_tool(t);
    }
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect(
            "sshd is not installed (Debian openssh-server); run .ci/run — this test never skips",
        );
    let keygen = |path: &Path| {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path));
    };
    keygen(&dir.join("host_key"));
    keygen(&dir.join("id"));
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    // Privilege separation wants this directory; the package's service would make it.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\nPidFile {d}/sshd.pid\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        ),
    )
    .unwrap();
    let daemon = spawn(
        Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config")),
        port,
        "sshd",
    );
    std::fs::write(
        dir.join("ssh_config"),
        format!(
            "Host *\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n\
             StrictHostKeyChecking accept-new\n  BatchMode yes\n  LogLevel ERROR\n"
        ),
    )
    .unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real_ssh = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|p| p.join("ssh"))
        .find(|p| p.is_file())
        .unwrap();
    let wrapper = bin.join("ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -F {d}/ssh_config \"$@\"\n",
            real_ssh.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let user = sh(Command::new("id").arg("-un")).trim().to_string();
    Sshd {
        _daemon: daemon,
        port,
        path,
        user,
    }
}

#[test]
fn ssh_hosts_run_docker_dial_stdio_like_the_docker_cli() {
    require_tool("docker");
    let dir = scratch();
    let ssh = sshd(dir.path());
    let host = format!("ssh://{}@127.0.0.1:{}", ssh.user, ssh.port);
    let env = [("DOCKER_HOST", host.as_str()), ("PATH", ssh.path.as_str())];
    // The oracle: the docker CLI's own ssh connection works through this sshd.
    docker_cli_reaches(&env, "ssh");

    let img = TestImage::new(dir.path(), "ssh");
    round_trip(dir.path(), &img, &env, "ssh");

    // A key the server does not take: ssh's own complaint, in one sentence.
    let stranger = format!("ssh://nobody-{}@127.0.0.1:{}", std::process::id(), ssh.port);
    let err = fails(
        airlock(
            &dir.path().join("s"),
            &[("DOCKER_HOST", &stranger), ("PATH", &ssh.path)],
            &["save", "docker-daemon:x", "-o", "/dev/null"],
        ),
        "an ssh login refused",
    );
    assert!(
        err.contains(&stranger) && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn docker_contexts_choose_the_engine_as_in_the_docker_cli() {
    require_tool("docker");
    let dir = scratch();
    let config = dir.path().join("docker-config");
    let cfg = config.to_str().unwrap();
    let (_relay, port) = tcp_relay();
    let certs = certificates(dir.path());
    let (_tls, tls_port) = tls_relay(dir.path());
    let dead = free_port();
    let context = |name: &str, docker: String| {
        sh(Command::new("docker")
            .env("DOCKER_CONFIG", cfg)
            .args(["context", "create", name, "--docker", &docker]));
    };
    context("relay", format!("host=tcp://127.0.0.1:{port}"));
    context("dead", format!("host=tcp://127.0.0.1:{dead}"));
    let c = |f: &str| certs.join(f).display().to_string();
    context(
        "secure",
        format!(
            "host=tcp://127.0.0.1:{tls_port},ca={},cert={},key={}",
            c("ca.pem"),
            c("cert.pem"),
            c("key.pem")
        ),
    );
    let img = TestImage::new(dir.path(), "context");
    sh(local_docker().args(["load", "-i", img.archive.to_str().unwrap()]));
    let store = dir.path().join("s");
    let out = dir.path().join("out.tar");
    let source = format!("docker-daemon:{}", img.name);
    let save = |env: &[(&str, &str)], flags: &[&str]| {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["save", source.as_str(), "-o", out.to_str().unwrap()]);
        let mut env = env.to_vec();
        env.push(("DOCKER_CONFIG", cfg));
        airlock(&store, &env, &args)
    };
    let bogus = "unix:///nonexistent/docker.sock";
    // --context wins over DOCKER_HOST.
    ok(
        save(&[("DOCKER_HOST", bogus)], &["--context", "relay"]),
        "--context relay",
    );
    // DOCKER_CONTEXT picks the context...
    ok(
        save(&[("DOCKER_CONTEXT", "relay")], &[]),
        "DOCKER_CONTEXT=relay",
    );
    let err = fails(
        save(&[("DOCKER_CONTEXT", "dead")], &[]),
        "DOCKER_CONTEXT=dead",
    );
    assert!(err.contains(&format!("tcp://127.0.0.1:{dead}")), "{err}");
    // ...but DOCKER_HOST wins over it, as in the docker CLI.
    let err = fails(
        save(&[("DOCKER_CONTEXT", "relay"), ("DOCKER_HOST", bogus)], &[]),
        "DOCKER_HOST over DOCKER_CONTEXT",
    );
    assert!(err.contains(bogus), "{err}");
    // The current context (`docker context use`), with its TLS files.
    sh(Command::new("docker")
        .env("DOCKER_CONFIG", cfg)
        .args(["context", "use", "secure"]));
    ok(save(&[], &[]), "the current context, over TLS");
    let check = Airlock::new(&dir.path().join("check"));
    check.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(check.inspect(&img.name)["Id"], img.id);
    // `default` is DOCKER_HOST, else the local socket.
    ok(save(&[], &["--context", "default"]), "--context default");
    let err = fails(save(&[], &["--context", "nope"]), "an unknown context");
    assert!(
        err.contains("there is no docker context nope") && err.contains("docker context ls"),
        "{err}"
    );
}
