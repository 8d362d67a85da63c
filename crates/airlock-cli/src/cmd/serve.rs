//! `airlock serve`: the store as a registry for the machines on the far side.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

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
/// Example: airlock serve --listen 0.0.0.0:5000
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
    let store = ctx.store()?;
    let root = store.root().display().to_string();
    let opts = ServeOptions {
        listen,
        prefix: args.prefix,
        access_log: args.access_log,
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        read_write: args.read_write,
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
    };
    let mode = if args.read_write {
        "read-write"
    } else {
        "read-only"
    };
    serve::serve(store, opts, |addr| {
        println!("Serving {root} at http://{addr}/v2/ ({mode}); Ctrl-C or SIGTERM stops");
    })?;
    Ok(())
}
