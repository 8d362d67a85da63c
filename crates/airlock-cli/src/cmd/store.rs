//! The store's own commands: `images`, `artifacts`, `inspect`, `tag`, `rmi`, `gc`, `inventory`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use airlock_core::transport::inventory;
use airlock_core::Reference;

use crate::context::Context;
use crate::listing::Layout;
use crate::output::{self, report_moves};

/// List images in the store.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only names matching this glob.
    pub pattern: Option<String>,
    /// `table` (default), `json` (one document), or a Go template as `docker images
    /// --format` takes it, over the fields ID, Repository, Tag, Digest, CreatedSince,
    /// CreatedAt, Size, VirtualSize, SharedSize, UniqueSize, Containers (`table ...` adds
    /// a header and aligns columns).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests (a DIGEST column in the default table).
    #[arg(long)]
    pub digests: bool,
    /// Do not shorten image IDs.
    #[arg(long)]
    pub no_trunc: bool,
}

/// List OCI artifacts in the store (signatures, SBOMs, charts, attestations) and the
/// images they refer to.
#[derive(Args, Debug)]
pub struct ArtifactsArgs {
    /// `table` (default), `json`, or a Go template as docker's `--format` takes it, over
    /// the fields Name, ArtifactType, RefersTo, Digest, Size (in bytes).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Show details of images or artifacts as JSON.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Images by name, image ID, manifest digest or `repo@sha256:...`.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// A Go template run over each image's document, as `docker inspect -f` takes it
    /// (`{{.Id}}`, `{{json .Config}}`, `{{index .Config.Labels "k"}}`, ...).
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
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
    let how = output::ImagesLayout {
        layout: Layout::of(args.format.as_deref(), "images")?,
        quiet: args.quiet,
        digests: args.digests,
        no_trunc: args.no_trunc,
    };
    output::images(&ctx.store()?, args.pattern.as_deref(), how)
}

/// Run `airlock artifacts`.
pub fn artifacts(ctx: &Context, args: ArtifactsArgs) -> Result<()> {
    output::artifacts(
        &ctx.store()?,
        Layout::of(args.format.as_deref(), "artifacts")?,
    )
}

/// Run `airlock inspect`.
pub fn inspect(ctx: &Context, args: InspectArgs) -> Result<()> {
    let format = match args.format.as_deref() {
        None | Some("json") => None,
        Some(text) => match Layout::of(Some(text), "inspect")? {
            Layout::Template(f) => Some(f),
            _ => None,
        },
    };
    output::inspect(&ctx.store()?, &args.images, format)
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
