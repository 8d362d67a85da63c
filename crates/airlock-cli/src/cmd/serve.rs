//! `airlock serve`: the store as a registry for the machines on the far side.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use airlock_remote::serve::auth::Htpasswd;
use airlock_remote::serve::tls::{self, Tls};
use airlock_remote::serve::{self, ServeOptions};

use crate::context::Context;
use crate::hints::UsageError;

/// Serve the store as an OCI registry (distribution API v1.1), straight from its files:
/// docker, podman, skopeo, containerd and airlock pull from it; with `--read-write` they
/// push to it too.
///
/// Images are served under their full names (`HOST:PORT/registry.k8s.io/pause:3.9`,
/// `HOST:PORT/docker.io/library/redis:alpine`, or `library/redis` for Docker Hub) and, for
/// a registry mirror (containerd `hosts.toml`, docker `registry-mirrors`, podman
/// `registries.conf`), by the path the mirrored registry would use.
///
/// Over HTTPS with `--tls-cert/--tls-key`, or with a CA of its own (`--tls-generate DIR`,
/// which prints how to make docker, podman, containerd and the system trust it); behind
/// HTTP basic auth with `--htpasswd FILE` (bcrypt entries, as `htpasswd -B` writes them).
///
/// Example: airlock serve --listen 0.0.0.0:5000 --tls-generate /etc/airlock-tls --tls-name
/// registry.internal --htpasswd /etc/airlock-htpasswd
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one, printed at start).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5000")]
    pub listen: String,
    /// Serve every repository under this path (`HOST:PORT/PREFIX/registry.k8s.io/pause`).
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// Print one line per request on standard error.
    #[arg(long)]
    pub access_log: bool,
    /// Connections served at once; more are closed as they arrive.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, or nothing on an idle
    /// connection, before it is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub header_timeout: u64,
    /// Accept pushes (`docker push`, `skopeo copy`, `airlock push`): each blob is checked
    /// against its digest before it is kept, each manifest is committed with its tag at once.
    #[arg(long)]
    pub read_write: bool,
    /// Seconds an upload may send nothing before it is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub body_timeout: u64,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a CA of its own kept in DIR (made the first time, reused after:
    /// clients trust DIR/ca.crt once) and a server certificate it issues at every start for
    /// 127.0.0.1, ::1, localhost and each --tls-name.
    #[arg(long, value_name = "DIR")]
    pub tls_generate: Option<PathBuf>,
    /// A host name or address clients reach the server by, put in the certificate
    /// --tls-generate issues (repeatable).
    #[arg(long, value_name = "NAME")]
    pub tls_name: Vec<String>,
    /// Ask every request for the user and password of an entry of this htpasswd file
    /// (bcrypt only: `htpasswd -B`). Needs TLS unless --listen is a loopback address.
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
}

/// Run `airlock serve` until SIGTERM or Ctrl-C.
pub fn run(ctx: &Context, args: ServeArgs) -> Result<()> {
    let listen: SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => bail!(UsageError(format!(
            "--listen {} is not an address and port (e.g. 127.0.0.1:5000 or 0.0.0.0:5000)",
            args.listen
        ))),
    };
    if let Some(p) = &args.prefix {
        if !serve::is_repository_name(p) {
            bail!(UsageError(format!(
                "--prefix {p} is not a repository path (lower-case letters, digits, . _ - and /)"
            )));
        }
    }
    if args.max_connections == 0 {
        bail!(UsageError("--max-connections must be at least 1".into()));
    }
    let (tls, generated) = tls_of(&args, listen)?;
    let htpasswd = match &args.htpasswd {
        Some(path) => Some(Htpasswd::load(path)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let auth = if htpasswd.is_some() {
        ", basic auth"
    } else {
        ""
    };
    let opts = ServeOptions {
        listen,
        prefix: args.prefix,
        access_log: args.access_log,
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        read_write: args.read_write,
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        tls,
        htpasswd,
        progress: airlock_core::progress::Progress::new(),
    };
    // Before the store is opened (or made): a refused start changes nothing.
    opts.check()?;
    let store = ctx.store()?;
    let root = store.root().display().to_string();
    let mode = if args.read_write {
        "read-write"
    } else {
        "read-only"
    };
    // Pushes show as any copy does: a bar per upload in flight on a terminal, a line per
    // blob stored with --progress plain (the server's total is unknown: no time left).
    let meter = crate::progress::Meter::start("Receiving", &opts.progress, ctx.progress, false);
    serve::serve(store, opts, |addr| {
        // Not println!: a reader that went away (`| head -1`) must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Serving {root} at {scheme}://{addr}/v2/ ({mode}{auth}); Ctrl-C or SIGTERM stops"
        );
        if let Some(g) = &generated {
            let _ = out.write_all(trust_instructions(g, &args.tls_name, addr).as_bytes());
        }
        let _ = out.flush();
    })?;
    meter.finish();
    Ok(())
}

/// The TLS the flags ask for, and what `--tls-generate` made.
fn tls_of(args: &ServeArgs, listen: SocketAddr) -> Result<(Option<Tls>, Option<tls::Generated>)> {
    match (&args.tls_cert, &args.tls_key, &args.tls_generate) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => bail!(UsageError(
            "--tls-generate makes its own certificate: give it or --tls-cert and --tls-key, not both".into()
        )),
        (Some(_), None, None) => bail!(UsageError(
            "--tls-cert needs --tls-key, the certificate's private key".into()
        )),
        (None, Some(_), None) => bail!(UsageError(
            "--tls-key needs --tls-cert, the certificate it is the key of".into()
        )),
        (Some(cert), Some(key), None) => {
            if !args.tls_name.is_empty() {
                bail!(UsageError(
                    "--tls-name names what --tls-generate puts in its certificate; a --tls-cert certificate holds its names already".into()
                ));
            }
            Ok((Some(Tls::from_files(cert, key)?), None))
        }
        (None, None, Some(dir)) => {
            let mut names = args.tls_name.clone();
            if let Some(bad) = names.iter().find(|n| !tls::is_cert_name(n)) {
                bail!(UsageError(format!(
                    "--tls-name {bad} is not a host name or IP address (give the name without a port or scheme)"
                )));
            }
            // Listening on one address of this machine: clients reach it by that address.
            if !listen.ip().is_unspecified() {
                names.push(listen.ip().to_string());
            }
            let g = tls::generate(dir, &names)?;
            Ok((Some(g.tls.clone()), Some(g)))
        }
        (None, None, None) => {
            if !args.tls_name.is_empty() {
                bail!(UsageError(
                    "--tls-name names what --tls-generate puts in its certificate: give --tls-generate DIR too".into()
                ));
            }
            Ok((None, None))
        }
    }
}

/// How each kind of client is made to trust the CA `--tls-generate` keeps, for the address
/// clients use: the first --tls-name, else the one the server listens on.
fn trust_instructions(g: &tls::Generated, names: &[String], addr: SocketAddr) -> String {
    let host = match names.first() {
        Some(n) if n.contains(':') => format!("[{n}]"),
        Some(n) => n.clone(),
        None if addr.ip().is_unspecified() => "127.0.0.1".into(),
        None => match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        },
    };
    let hp = format!("{host}:{}", addr.port());
    let ca = absolute(&g.ca_cert);
    let dir = ca.parent().unwrap_or(Path::new(".")).display().to_string();
    let ca = ca.display();
    let made = if g.new_ca { "made now" } else { "reused" };
    let file = host.replace([':', '[', ']'], "_");
    format!(
        "TLS: a certificate for {names} issued by the CA {ca} ({made}). Clients trust that CA so:
  docker:          mkdir -p /etc/docker/certs.d/{hp} && cp {ca} /etc/docker/certs.d/{hp}/ca.crt
  podman, skopeo:  mkdir -p /etc/containers/certs.d/{hp} && cp {ca} /etc/containers/certs.d/{hp}/ca.crt (or --cert-dir {dir})
  containerd:      mkdir -p /etc/containerd/certs.d/{hp} && cp {ca} /etc/containerd/certs.d/{hp}/ca.crt, then /etc/containerd/certs.d/{hp}/hosts.toml: [host.\"https://{hp}\"] ca = \"/etc/containerd/certs.d/{hp}/ca.crt\" (containerd reads it where its config_path points; ctr with --hosts-dir /etc/containerd/certs.d)
  the system (curl, airlock): cp {ca} /usr/local/share/ca-certificates/airlock-{file}.crt && update-ca-certificates
Keep {dir}/private to yourself: its ca.key makes certificates those clients accept for any name.
",
        names = g.names.join(", "),
    )
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
