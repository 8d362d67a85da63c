//! `airlock load`: an archive of any dialect into the store (or the Docker Engine).

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use airlock_core::transport::name::TransportName;
use airlock_remote::transports;

use crate::context::Context;
use crate::hints::UsageError;
use crate::output::{loaded_lines, print_lines};
use crate::progress::Meter;

/// Load images from an archive (any dialect docker, podman, containerd, skopeo or crane
/// writes; plain, gzip, zstd, xz or bzip2) into the store, verifying every digest.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Archive file or OCI layout directory; `-` or nothing reads standard input.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Load into the Docker Engine (`docker-daemon`) or containerd (`containerd`, through
    /// its API: only the blobs it lacks are sent, digests kept, images unpacked) instead of
    /// the store.
    ///
    /// Example: airlock load -i images.tar --into containerd --namespace k8s.io
    #[arg(long, value_name = "DEST")]
    pub into: Option<String>,
    #[command(flatten)]
    pub containerd: crate::options::ContainerdArgs,
    #[command(flatten)]
    pub trust: crate::options::TrustArgs,
}

/// The transport an `-i` argument names: a layout directory, an archive file (or its split
/// volumes), or standard input. `verb` is for the refusal to read a terminal.
pub fn input_name(input: Option<&Path>, verb: &str) -> Result<TransportName> {
    Ok(match input {
        Some(p) if p.as_os_str() != "-" && p.is_dir() => TransportName::OciDir(p.into(), None),
        Some(p) if p.as_os_str() != "-" => TransportName::DockerArchive(p.into(), None),
        _ => {
            if io::stdin().is_terminal() {
                bail!(UsageError(format!(
                    "{verb} reads an archive from standard input, but that is a terminal: give -i FILE or pipe an archive in"
                )));
            }
            TransportName::DockerArchive("-".into(), None)
        }
    })
}

/// Run `airlock load`.
pub fn run(ctx: &Context, args: LoadArgs) -> Result<()> {
    let dest = match args.into.as_deref() {
        None => TransportName::Store(None),
        Some("docker-daemon") | Some("docker-daemon:") => TransportName::DockerDaemon(None),
        Some("containerd") | Some("containerd:") => TransportName::Containerd(None),
        Some(other) => bail!(UsageError(format!(
            "--into {other}: load goes into the store (default), `--into docker-daemon` or `--into containerd`; for other destinations use `airlock copy`"
        ))),
    };
    let src = input_name(args.input.as_deref(), "load")?;
    let store = ctx.store()?;
    let mut req = crate::cmd::request::build(ctx, Vec::new(), None, None, None)?;
    req.containerd = args.containerd.options();
    let policy = args.trust.policy()?;
    req.gate = policy.as_ref().map(|p| p.gate());
    let meter = Meter::start("Loading", &req.progress, ctx.progress, args.quiet);
    let outcome = transports::copy(&store, &src, Some(&dest), &req)?;
    meter.finish();
    crate::output::print_notes(&outcome.notes);
    if outcome.images.is_empty() {
        print_lines(
            &["The archive carries no image: it is a shipment whose every image the receiving store held already".to_string()],
            args.quiet,
        );
    }
    let lines = match dest {
        TransportName::DockerDaemon(_) => outcome.engine_lines,
        TransportName::Containerd(_) => crate::output::containerd_lines(&outcome, &req.containerd),
        _ => loaded_lines(&outcome.changes),
    };
    print_lines(&lines, args.quiet);
    if let Some(p) = policy {
        print_lines(&crate::output::verdict_lines(&p.verdicts()), args.quiet);
    }
    Ok(())
}
