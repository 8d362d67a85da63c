//! `airlock sync -f shipment.yaml`: what a shipment file names, resolved, planned against
//! the store, and pulled.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use airlock_remote::sync;

use crate::context::Context;
use crate::hints::UsageError;
use crate::output::{out, print_table};

/// Resolve a shipment file (registries with tag selectors, image lists, Kubernetes YAML,
/// engine images) to digests, show what the store holds already and what is new, and pull
/// the new ones. A failed image does not stop the others; failures are listed at the end
/// (exit 1).
///
/// Example: airlock sync -f shipment.yaml --dry-run
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
}

/// Run `airlock sync`.
pub fn run(ctx: &Context, args: SyncArgs) -> Result<()> {
    if args.format != "table" && args.format != "json" {
        bail!(UsageError(format!(
            "--format {}: use table or json",
            args.format
        )));
    }
    let (_, entries) = airlock_core::shipment::read(&args.file)?;
    let store = ctx.store()?;
    let req = crate::cmd::request::build(ctx, Vec::new(), None, None, None)?;
    let plan = sync::plan(&store, &entries, &req.registry);
    if args.format == "json" {
        out(&serde_json::to_string_pretty(&plan)?)?;
    } else {
        let rows: Vec<[String; 3]> = plan
            .iter()
            .map(|p| {
                let status = match (&p.error, p.in_store) {
                    (Some(e), _) => format!("error: {e}"),
                    (None, true) => "in store".into(),
                    (None, false) => "new".into(),
                };
                [
                    p.reference.clone(),
                    p.digest.clone().unwrap_or_else(|| "-".into()),
                    status,
                ]
            })
            .collect();
        print_table(["IMAGE", "DIGEST", "STATUS"], &rows)?;
    }
    let mut failed: Vec<String> = plan
        .iter()
        .filter_map(|p| {
            p.error
                .as_ref()
                .map(|e| format!("{} (line {}): {e}", p.reference, p.line))
        })
        .collect();
    if !args.dry_run {
        for (reference, error) in sync::pull_new(&store, &plan, &req) {
            match error {
                None => eprintln!("Pulled {reference}"),
                Some(e) => failed.push(format!("{reference}: {e}")),
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} images could not be {}:\n  {}",
            failed.len(),
            plan.len(),
            if args.dry_run { "resolved" } else { "synced" },
            failed.join("\n  ")
        );
    }
    Ok(())
}
