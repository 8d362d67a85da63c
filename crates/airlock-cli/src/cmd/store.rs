//! The store's own commands: `images`, `artifacts`, `inspect`, `tag`, `rmi`, `gc`, `inventory`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use airlock_core::transport::inventory;
use airlock_core::Reference;

use crate::context::Context;
use crate::options::ListFormat;
use crate::output::{self, report_moves};

/// List images in the store.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only names matching this glob.
    pub pattern: Option<String>,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// List OCI artifacts in the store (signatures, SBOMs, charts, attestations) and the
/// images they refer to.
#[derive(Args, Debug)]
pub struct ArtifactsArgs {
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Show details of images or artifacts as JSON.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Images by name, image ID, manifest digest or `repo@sha256:...`.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Give an image another name.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// Existing image (name or ID).
    pub source: String,
    /// New name.
    pub target: String,
}

/// Remove image names, or images by ID.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Names or IDs.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Write what this store holds (its blob digests), for the sending side's
/// `save --incremental-from`.
#[derive(Args, Debug)]
pub struct InventoryArgs {
    /// Output file [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Run `airlock images`.
pub fn images(ctx: &Context, args: ImagesArgs) -> Result<()> {
    output::images(
        &ctx.store()?,
        args.pattern.as_deref(),
        args.format,
        args.quiet,
    )
}

/// Run `airlock artifacts`.
pub fn artifacts(ctx: &Context, args: ArtifactsArgs) -> Result<()> {
    output::artifacts(&ctx.store()?, args.format)
}

/// Run `airlock inspect`.
pub fn inspect(ctx: &Context, args: InspectArgs) -> Result<()> {
    output::inspect(&ctx.store()?, &args.images)
}

/// Run `airlock tag`.
pub fn tag(ctx: &Context, args: TagArgs) -> Result<()> {
    let store = ctx.store()?;
    let target = Reference::parse(&args.target)?;
    let change = store.tag(&args.source, &target)?;
    report_moves(std::slice::from_ref(&change));
    Ok(())
}

/// Run `airlock rmi`.
pub fn rmi(ctx: &Context, args: RmiArgs) -> Result<()> {
    let store = ctx.store()?;
    for q in &args.images {
        for line in store.remove(q)? {
            println!("{line}");
        }
    }
    Ok(())
}

/// Run `airlock gc`.
pub fn gc(ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    use airlock_core::container;
    let (blobs, bytes) = store.gc(&|| container::image_roots(&store), &|| {
        container::remove_leftovers(&store).map(|_| ())
    })?;
    println!(
        "Deleted {blobs} unreferenced blobs, freed {}",
        output::human_size(bytes)
    );
    Ok(())
}

/// Run `airlock inventory`.
pub fn inventory(ctx: &Context, args: InventoryArgs) -> Result<()> {
    let bytes = inventory::of_store(&ctx.store()?)?;
    match args.output {
        Some(p) => airlock_core::store::write_atomic(
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            &p,
            &bytes,
        )?,
        None => println!("{}", String::from_utf8_lossy(&bytes)),
    }
    Ok(())
}
