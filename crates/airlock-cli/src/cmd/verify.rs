//! `airlock verify`: read an archive through as `load` would, keep nothing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use airlock_core::compression::Compression;
use airlock_remote::transports;

use crate::cmd::load::input_name;
use crate::context::Context;
use crate::output::human_size;
use crate::progress::Meter;

/// Check an archive without loading it: read it through, verify every digest and diffID,
/// and list the images it holds. Nothing enters the store, and no disk is needed beyond
/// its small JSON documents.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Archive file or OCI layout directory; `-` or nothing reads standard input.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub trust: crate::options::TrustArgs,
}

/// Run `airlock verify`.
pub fn run(ctx: &Context, args: VerifyArgs) -> Result<()> {
    let src = input_name(args.input.as_deref(), "verify")?;
    let label = match args.input.as_deref() {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "standard input".to_string(),
    };
    let store = ctx.store()?;
    let mut req = crate::cmd::request::build(ctx, Vec::new(), None, None, None)?;
    let policy = args.trust.policy()?;
    req.gate = policy.clone().map(|p| p as _);
    let meter = Meter::start("Verifying", &req.progress, args.quiet);
    let outcome = transports::copy(&store, &src, None, &req)?;
    drop(meter);
    crate::output::print_notes(&outcome.notes);
    if args.quiet {
        return Ok(());
    }
    let (dialect, compression) = outcome
        .archive
        .map(|(d, c)| (d.name(), c))
        .unwrap_or(("archive", Compression::None));
    let compression = match compression {
        Compression::None => String::new(),
        c => format!(", {}-compressed", c.name()),
    };
    println!(
        "{label}: {dialect}{compression}, {} image(s), every digest and diffID verified",
        outcome.images.len()
    );
    for img in &outcome.images {
        let names: Vec<String> = img.names.iter().map(|n| n.familiar()).collect();
        let layers: usize = img.platforms.iter().map(|p| p.manifest.layers.len()).sum();
        let size: u64 = airlock_core::copy::blobs_of(std::slice::from_ref(img))
            .iter()
            .map(|b| b.size)
            .sum();
        // A docker-archive carries no manifest: the one airlock made has no registry meaning.
        let manifest = if img.generated {
            "no registry manifest".to_string()
        } else {
            format!("manifest {}", img.root.digest)
        };
        println!(
            "  {}  id {}  {manifest}  {} layer(s)  {}",
            if names.is_empty() {
                "<none>".to_string()
            } else {
                names.join(", ")
            },
            img.id().short(),
            layers,
            human_size(size)
        );
    }
    if let Some(p) = policy {
        crate::output::print_lines(&crate::output::verdict_lines(&p.verdicts()), false);
    }
    Ok(())
}
