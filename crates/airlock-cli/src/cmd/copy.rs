//! `airlock copy SRC DST`: between any two transports, with every option `save`, `load` and
//! `pull` take where it applies.

use anyhow::Result;
use clap::Args;

use airlock_core::transport::name::TransportName;
use airlock_remote::transports;

use crate::context::Context;
use crate::options::{ArchiveArgs, Format, PlatformArgs, SelectArgs};
use crate::output::{loaded_lines, print_lines};
use crate::progress::Meter;

/// Copy images between transports: store:NAME (or NAME), docker-archive:PATH[:NAME],
/// oci-archive:PATH[:NAME], oci:DIR[:NAME], dir:DIR, docker-daemon:NAME, containerd:
/// (destination), docker://HOST/REPO[:TAG]
/// (a destination docker://HOST[/PREFIX] without a tag renames every image onto it).
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Where the images come from.
    pub source: String,
    /// Where they go.
    pub destination: String,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub trust: crate::options::TrustArgs,
    #[command(flatten)]
    pub containerd: crate::options::ContainerdArgs,
}

/// Run `airlock copy`.
pub fn run(ctx: &Context, args: CopyArgs) -> Result<()> {
    let src = TransportName::parse(&args.source)?;
    let dst = TransportName::parse(&args.destination)?;
    let format = match dst {
        TransportName::OciArchive(..) => Format::Oci,
        _ => Format::Docker,
    };
    let store = ctx.store()?;
    let mut req = crate::cmd::request::build(
        ctx,
        Vec::new(),
        Some(&args.select),
        Some((&args.archive, format)),
        Some(&args.platform),
    )?;
    req.containerd = args.containerd.options();
    let policy = args.trust.policy()?;
    req.gate = policy.as_ref().map(|p| p.gate());
    let meter = Meter::start("Copying", &req.progress, ctx.progress, args.quiet);
    let outcome = transports::copy(&store, &src, Some(&dst), &req)?;
    meter.finish();
    crate::output::print_notes(&outcome.notes);
    let lines: Vec<String> = match &dst {
        TransportName::Store(_) => loaded_lines(&outcome.changes),
        TransportName::DockerDaemon(_) => outcome.engine_lines.clone(),
        TransportName::Containerd(_) => crate::output::containerd_lines(&outcome, &req.containerd),
        TransportName::Registry(_) => outcome.pushed.iter().map(|p| p.to_string()).collect(),
        TransportName::OciDir(p, Some(n)) => vec![format!("Wrote {n} to {}", p.display())],
        TransportName::OciDir(..) => loaded_lines(&outcome.changes),
        TransportName::Dir(p) => vec![format!("Wrote {}", p.display())],
        TransportName::DockerArchive(..) | TransportName::OciArchive(..) => outcome
            .images
            .iter()
            .flat_map(|i| i.names.iter().map(|n| format!("Wrote {}", n.familiar())))
            .chain(
                outcome
                    .files
                    .iter()
                    .filter(|_| args.archive.split.is_some())
                    .map(|p| format!("Wrote {}", p.display())),
            )
            .collect(),
    };
    print_lines(&lines, args.quiet);
    if let Some(p) = policy {
        print_lines(&crate::output::verdict_lines(&p.verdicts()), args.quiet);
    }
    Ok(())
}
