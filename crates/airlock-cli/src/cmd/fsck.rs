//! `airlock fsck`: check the store, and with `--repair` make it consistent again.

use anyhow::{bail, Result};
use clap::Args;

use airlock_core::container;
use airlock_core::store::FsckReport;

use crate::context::Context;
use crate::hints::UsageError;
use crate::output;

/// Check every blob's digest and every reference in the store.
#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Delete damaged blobs, drop the names of images that cannot be used whole, and delete
    /// what nothing references any more. Loading an archive that holds the images again
    /// restores them instead (a load replaces damaged blobs).
    #[arg(long)]
    pub repair: bool,
}

/// Run `airlock fsck`.
pub fn run(ctx: &Context, args: FsckArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut report_dropped = false;
    let report = if args.repair {
        let (before, after) = store.repair(&|| container::image_roots(&store), &|| {
            container::remove_leftovers(&store).map(|_| ())
        })?;
        print_findings(&before);
        for (root, names) in &before.broken_roots {
            println!("Dropped {}", describe(root, names));
            report_dropped = true;
        }
        after
    } else {
        store.fsck()?
    };
    println!(
        "Checked {} blobs ({}) and {} images",
        report.blobs_checked,
        output::human_size(report.bytes_checked),
        report.roots_checked
    );
    print_findings(&report);
    if !args.repair && report.unreferenced > 0 {
        println!(
            "{} blobs no image references (`airlock gc` deletes them)",
            report.unreferenced
        );
    }
    if !report.is_clean() {
        bail!(UsageError(format!(
            "the store is damaged: {} damaged blobs, {} missing, {} images cannot be used whole; load an archive that holds them again (it replaces damaged blobs), or run `airlock fsck --repair` to drop them",
            report.damaged.len(),
            report.missing.len(),
            report.broken_roots.len()
        )));
    }
    match (args.repair, report_dropped) {
        (true, true) => {
            println!("The store is consistent; load the dropped images again from an archive")
        }
        _ => println!("The store is consistent"),
    }
    Ok(())
}

fn print_findings(r: &FsckReport) {
    for (digest, actual) in &r.damaged {
        println!("Damaged: {digest} (its content hashes to {actual})");
    }
    for (by, missing) in &r.missing {
        println!("Missing: {missing} (named by {by})");
    }
    for (digest, why) in &r.unreadable {
        println!("Unreadable: {digest}: {why}");
    }
    for stray in &r.strays {
        println!("Not a blob: blobs/sha256/{stray} (left as it is)");
    }
    if !r.damaged.is_empty() || !r.missing.is_empty() {
        for (root, names) in &r.broken_roots {
            println!("Cannot be used whole: {}", describe(root, names));
        }
    }
}

fn describe(root: &airlock_core::Digest, names: &[String]) -> String {
    if names.is_empty() {
        format!("{root} (untagged)")
    } else {
        format!("{} ({root})", names.join(", "))
    }
}
