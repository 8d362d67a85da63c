//! `airlock sync -f shipment.yaml`: what a shipment file names, resolved, planned against
//! the store and the far side's inventory, pulled, and (with `--output`) written as the
//! archive of what the far side lacks.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use airlock_core::transfer::{ShipmentOrigin, TransferOptions};
use airlock_core::transport::inventory;
use airlock_core::transport::name::TransportName;
use airlock_core::Digest;
use airlock_remote::sync::{self, run, PlanOptions, PlannedImage};
use airlock_remote::transports;

use crate::context::Context;
use crate::hints::UsageError;
use crate::options::{ArchiveArgs, Format};
use crate::output::{human_size as human, out, print_table};
use crate::progress::Meter;

/// Resolve a shipment file (registries with tag selectors, image lists, Kubernetes YAML,
/// engine images, archives) to digests, show what the store and the far side hold already,
/// pull what is new, and with --output write the archive of what the far side lacks. A
/// failed image does not stop the others; failures are listed at the end (exit 1).
///
/// Example: airlock sync -f shipment.yaml --incremental-from far-inventory.json -o ship.tar
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The shipment file (README, "Shipments", has its schema).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Print the plan and pull nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `table` (default) or `json` for the plan.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: String,
    /// Pull this many images at once.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub jobs: usize,
    /// Write the shipment as an archive: every image it names, less those the far side
    /// holds already (--incremental-from), and without the layers it holds.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive layout: `docker` (loads everywhere) or `oci`.
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub archive_format: Format,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Sign the archive's transfer manifest and checksums with this private key (as `save
    /// --sign-key`).
    #[arg(long, value_name = "KEY", requires = "output")]
    pub sign_key: Option<PathBuf>,
}

/// Run `airlock sync`.
pub fn run(ctx: &Context, args: SyncArgs) -> Result<()> {
    if args.format != "table" && args.format != "json" {
        bail!(UsageError(format!(
            "--format {}: use table or json",
            args.format
        )));
    }
    if args.output.is_none() && (args.archive.split.is_some() || args.archive.level.is_some()) {
        bail!(UsageError(
            "--split and --level shape the archive: give -o FILE too".into()
        ));
    }
    let text = std::fs::read(&args.file).map_err(|e| {
        UsageError(format!(
            "cannot read the shipment {}: {e}",
            args.file.display()
        ))
    })?;
    let (shipment, entries) = airlock_core::shipment::read(&args.file)?;
    let far_side = args
        .archive
        .incremental_from
        .as_deref()
        .map(inventory::read)
        .transpose()?;
    let store = ctx.store()?;
    let mut req = crate::cmd::request::build(
        ctx,
        Vec::new(),
        None,
        Some((&args.archive, args.archive_format)),
        None,
    )?;
    let plan = sync::plan(
        &store,
        &entries,
        &PlanOptions {
            registry: &req.registry,
            far_side: far_side.as_ref(),
            rename: shipment.rename.as_deref(),
        },
    );
    print_plan(&plan, &args.format)?;
    let mut failed: Vec<String> = plan
        .iter()
        .filter_map(|p| {
            p.error
                .as_ref()
                .map(|e| format!("{} (line {}): {e}", p.reference, p.line))
        })
        .collect();
    if args.dry_run {
        return finish(failed, plan.len(), "resolved");
    }
    // The pulls share one record: their blobs in flight side by side, one total.
    let meter = Meter::start("Pulling", &req.progress, ctx.progress, false);
    let synced = run::pull_new(&store, &plan, &req, args.jobs, &|s| {
        for n in &s.notes {
            meter.say(n.to_string());
        }
        match &s.error {
            None if s.pulled => meter.say(format!("Pulled {}", s.reference)),
            None => {}
            Some(e) => meter.say(format!("Failed {}: {e}", s.reference)),
        }
    });
    meter.finish();
    failed.extend(
        synced
            .iter()
            .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.reference))),
    );
    if let Some(path) = &args.output {
        let names = run::to_ship(
            &store,
            &synced,
            far_side.as_ref(),
            shipment.rename.as_deref(),
        )?;
        let held = plan.iter().filter(|p| p.far_side).count();
        eprintln!(
            "Shipping {} image names; {held} the far side holds already stay behind",
            names.len()
        );
        req.selection.queries = names;
        req.selection.may_be_empty = true;
        req.selection.rename_rule = shipment.rename.clone();
        let signer = crate::cmd::save::signer_from(args.sign_key.as_deref())?;
        req.archive.transfer = TransferOptions {
            signer: signer.clone().map(|s| s as _),
            checks: None,
            shipment: Some(ShipmentOrigin {
                file: args.file.display().to_string(),
                digest: Digest::of(&text),
            }),
        };
        let dest = match args.archive_format {
            Format::Docker => TransportName::DockerArchive(path.clone(), None),
            Format::Oci => TransportName::OciArchive(path.clone(), None),
        };
        req.progress = transports::Progress::new();
        let meter = Meter::start("Saving", &req.progress, ctx.progress, false);
        let outcome = transports::copy(&store, &TransportName::Store(None), Some(&dest), &req)?;
        meter.finish();
        if let Some(files) = &outcome.written_transfer {
            for line in crate::cmd::save::shipped_lines(&files.parse()?) {
                eprintln!("{line}");
            }
        }
        crate::cmd::save::report_files(
            &outcome.files,
            args.archive.split.is_some() || signer.is_some(),
        );
        eprintln!("Wrote the shipment to {}", path.display());
    }
    finish(failed, plan.len(), "synced")
}

fn finish(failed: Vec<String>, total: usize, what: &str) -> Result<()> {
    if !failed.is_empty() {
        bail!(
            "{} of {total} images could not be {what}:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

fn print_plan(plan: &[PlannedImage], format: &str) -> Result<()> {
    if format == "json" {
        return out(&serde_json::to_string_pretty(plan)?);
    }
    let rows: Vec<[String; 5]> = plan
        .iter()
        .map(|p| {
            let status = match (&p.error, p.far_side, p.in_store) {
                (Some(e), _, _) => format!("error: {e}"),
                (None, true, _) => "far side has it".into(),
                (None, false, true) => "in store".into(),
                (None, false, false) => "new".into(),
            };
            let size = match (p.size, p.new_bytes) {
                (Some(s), Some(n)) => format!("{} ({} new)", human(s), human(n)),
                (Some(s), None) => human(s),
                _ => "-".into(),
            };
            [
                p.reference.clone(),
                p.digest.clone().unwrap_or_else(|| "-".into()),
                if p.platforms.is_empty() {
                    "-".into()
                } else {
                    p.platforms.join(",")
                },
                size,
                status,
            ]
        })
        .collect();
    print_table(["IMAGE", "DIGEST", "PLATFORMS", "SIZE", "STATUS"], &rows)
}
