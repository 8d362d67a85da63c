//! `airlock save`: images from the store, or straight from the Docker Engine, into one
//! archive that docker, podman, containerd and skopeo all load.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use airlock_core::transport::name::TransportName;
use airlock_remote::transports;

use crate::context::Context;
use crate::hints::UsageError;
use crate::options::{ArchiveArgs, Format, SelectArgs};
use crate::progress::Meter;

/// Save images from the store (or `docker-daemon:` images from the Docker Engine) into one
/// archive that docker, podman, containerd and skopeo all load.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Output file; `-` or nothing writes standard output (never a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive layout: `docker` (OCI layout plus manifest.json: loads everywhere) or `oci`.
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Images by name, image ID, short ID or `repo@sha256:...`; `docker-daemon:NAME` takes
    /// them from the Docker Engine instead (`docker-daemon:` with --match: every engine
    /// image whose name matches).
    pub images: Vec<String>,
}

/// Run `airlock save`.
pub fn run(ctx: &Context, args: SaveArgs) -> Result<()> {
    if args.images.is_empty() && args.select.matches.is_empty() && !args.select.all {
        bail!(UsageError(
            "save needs images: name them, or use --match PATTERN or --all".into()
        ));
    }
    if args.archive.split.is_some() && args.output.is_none() {
        bail!(UsageError(
            "--split needs -o FILE to name the volumes".into()
        ));
    }
    // `docker-daemon:NAME` arguments come from the engine, everything else from the store.
    let from_engine: Vec<&String> = args
        .images
        .iter()
        .filter(|q| q.starts_with("docker-daemon:"))
        .collect();
    let (src, queries) = if from_engine.is_empty() {
        (TransportName::Store(None), args.images.clone())
    } else {
        if from_engine.len() != args.images.len() {
            bail!(UsageError(
                "save takes images either all from the store or all from docker-daemon:, not both"
                    .into()
            ));
        }
        let names = from_engine
            .iter()
            .filter_map(|q| q.strip_prefix("docker-daemon:"))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        (TransportName::DockerDaemon(None), names)
    };
    let path = match args.output.filter(|p| p.as_os_str() != "-") {
        Some(p) => p,
        None => {
            if io::stdout().is_terminal() {
                bail!(UsageError(
                    "refusing to write an archive to a terminal: give -o FILE or redirect standard output".into()
                ));
            }
            PathBuf::from("-")
        }
    };
    let dest = match args.format {
        Format::Docker => TransportName::DockerArchive(path, None),
        Format::Oci => TransportName::OciArchive(path, None),
    };
    let store = ctx.store()?;
    let req = crate::cmd::request::build(
        ctx,
        queries,
        Some(&args.select),
        Some((&args.archive, args.format)),
        None,
    )?;
    let meter = Meter::start("Saving", &req.progress, false);
    let outcome = transports::copy(&store, &src, Some(&dest), &req)?;
    drop(meter);
    if args.archive.split.is_some() {
        for p in &outcome.files {
            eprintln!("Wrote {}", p.display());
        }
    }
    Ok(())
}
