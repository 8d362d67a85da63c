//! `export`, `import` and the work-container commands.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use airlock_core::compression;
use airlock_core::container;
use airlock_core::import::{import as import_into, parse_platform, ImportOptions, ImportSource};
use airlock_core::layer::dirtar::{write_dir_tar, DirTarOptions};
use airlock_core::store::Store;
use airlock_core::Reference;

use clap::Args;

use crate::context::Context;
use crate::hints::UsageError;
use crate::listing::{self, Layout};
use crate::options::Compress;
use crate::output::report_moves;
use crate::sink;

/// Write a filesystem snapshot as one tar, like `docker export`: an image's layers
/// flattened (whiteouts applied), a work container, or any directory (`--dir`).
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output file; `-` or nothing writes standard output (never a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Compress the tar (uses every core).
    #[arg(long, value_enum, default_value_t = Compress::None)]
    pub compress: Compress,
    /// Compression level.
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,
    /// Export this directory (a chroot, an unpacked rootfs) instead.
    #[arg(long, value_name = "PATH", conflicts_with = "source")]
    pub dir: Option<PathBuf>,
    /// A work container, an image (name or ID), or `docker-daemon:CONTAINER`.
    #[arg(required_unless_present = "dir")]
    pub source: Option<String>,
}

/// Make a single-layer image from a filesystem tar or directory, like `docker import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A Dockerfile instruction to apply to the config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// History comment [default: "Imported from <source>"].
    #[arg(short, long)]
    pub message: Option<String>,
    /// Platform recorded in the config, os/arch[/variant] [default: this host's].
    #[arg(long)]
    pub platform: Option<String>,
    /// Import even though the input looks like an image archive.
    #[arg(long)]
    pub force: bool,
    /// Tar file (plain, gzip, zstd, xz, bzip2), `-` for standard input, or a directory.
    pub source: String,
    /// Name for the new image.
    pub name: Option<String>,
}

/// Unpack an image into a work container (a directory you change; no process runs).
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The image.
    pub image: String,
    /// Container name [default: <image>-working-container].
    #[arg(long)]
    pub name: Option<String>,
}

/// List work containers.
#[derive(Args, Debug)]
pub struct ContainersArgs {
    /// `table` (default), `json`, or a Go template as `docker ps --format` takes it, over
    /// the fields Names, Image, ImageID, CreatedAt, RunningFor, Path.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Remove work containers.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Container names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Commit a work container's changes as one new layer on its image.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// The container.
    pub container: String,
    /// Name for the new image.
    pub name: Option<String>,
    /// A Dockerfile instruction to apply to the config; repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// History comment.
    #[arg(short, long)]
    pub message: Option<String>,
}

/// Run `airlock export`.
pub fn run_export(ctx: &Context, a: ExportArgs) -> Result<()> {
    export(
        &ctx.store_dir,
        a.output,
        a.compress,
        a.level,
        a.dir,
        a.source,
    )
}

/// Run `airlock import`.
pub fn run_import(ctx: &Context, a: ImportArgs) -> Result<()> {
    import(
        &ctx.store_dir,
        a.changes,
        a.message,
        a.platform,
        a.force,
        &a.source,
        a.name,
    )
}

/// Run `airlock create`.
pub fn run_create(ctx: &Context, a: CreateArgs) -> Result<()> {
    create(&ctx.store_dir, &a.image, a.name.as_deref())
}

/// Run `airlock rm`.
pub fn run_rm(ctx: &Context, a: RmArgs) -> Result<()> {
    rm(&ctx.store_dir, &a.names)
}

/// Run `airlock commit`.
pub fn run_commit(ctx: &Context, a: CommitArgs) -> Result<()> {
    commit(
        &ctx.store_dir,
        &a.container,
        a.name,
        &a.changes,
        a.message.as_deref(),
    )
}

fn export(
    store_dir: &Path,
    output: Option<PathBuf>,
    compress: Compress,
    level: Option<i32>,
    dir: Option<PathBuf>,
    source: Option<String>,
) -> Result<()> {
    let store = Store::open(store_dir)?;
    enum What {
        Dir(PathBuf),
        Container(String),
        Engine(String),
        Image(Box<airlock_core::store::ImageRecord>),
    }
    let what = match (dir, source) {
        (Some(d), _) => {
            if !d.is_dir() {
                bail!(UsageError(format!("{} is not a directory", d.display())));
            }
            What::Dir(d)
        }
        (None, Some(s)) if s.starts_with("docker-daemon:") => {
            match airlock_core::transport::name::TransportName::parse(&s)? {
                airlock_core::transport::name::TransportName::DockerDaemon(Some(c)) => {
                    What::Engine(c)
                }
                _ => bail!(UsageError(
                    "name the container: docker-daemon:CONTAINER".into()
                )),
            }
        }
        (None, Some(s)) if container::info(&store, &s).is_ok() => What::Container(s),
        (None, Some(s)) => What::Image(Box::new(store.resolve(&s)?)),
        (None, None) => bail!(UsageError(
            "export needs an image, a container or --dir".into()
        )),
    };
    sink::write_output(output, "a filesystem tar", |out| {
        let mut enc =
            compression::encoder(compress.codec(), level, compression::default_threads(), out)?;
        match &what {
            What::Dir(d) => {
                write_dir_tar(d, &mut enc, &DirTarOptions::default())?;
            }
            What::Container(name) => {
                container::export(&store, name, &mut enc)?;
            }
            What::Engine(id) => {
                let engine = airlock_remote::Engine::from_env()?;
                let mut tar = engine.export_container(id)?;
                std::io::copy(&mut tar, &mut enc).context("copy the engine's export")?;
            }
            What::Image(image) => {
                airlock_core::snapshot::export_image(&store, image, &mut enc)?;
            }
        }
        enc.finish()?;
        Ok(())
    })
}

fn import(
    store_dir: &Path,
    changes: Vec<String>,
    message: Option<String>,
    platform: Option<String>,
    force: bool,
    source: &str,
    name: Option<String>,
) -> Result<()> {
    let name = name.map(|n| Reference::parse(&n)).transpose()?;
    let platform = platform.map(|p| parse_platform(&p)).transpose()?;
    let store = Store::open(store_dir)?;
    let input = if source == "-" {
        if io::stdin().is_terminal() {
            bail!(UsageError(
                "import reads a tar from standard input, but that is a terminal: give a FILE or pipe a tar in".into()
            ));
        }
        ImportSource::Tar(Box::new(io::stdin()))
    } else if Path::new(source).is_dir() {
        ImportSource::Dir(PathBuf::from(source))
    } else {
        ImportSource::Tar(Box::new(
            File::open(source).with_context(|| format!("cannot open {source}"))?,
        ))
    };
    let opts = ImportOptions {
        changes,
        message,
        platform,
        force,
        source_label: source.to_string(),
    };
    let imported = import_into(&store, input, name, &opts)?;
    report_moves(&imported.changes);
    println!("{}", imported.id);
    Ok(())
}

fn create(store_dir: &Path, image: &str, name: Option<&str>) -> Result<()> {
    let store = Store::open(store_dir)?;
    let (_info, rootfs, notes) = container::create(&store, image, name)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    println!("{}", rootfs.display());
    Ok(())
}

/// Run `airlock containers`.
pub fn containers(ctx: &Context, args: ContainersArgs) -> Result<()> {
    let store = Store::open(&ctx.store_dir)?;
    let layout = Layout::of(args.format.as_deref(), "containers")?;
    let list = container::list(&store)?;
    let path = |name: &str| {
        container::containers_dir(&store)
            .join(name)
            .join("rootfs")
            .display()
            .to_string()
    };
    match layout {
        Layout::Default => {
            println!("{:<32} {:<14} {:<22} PATH", "NAME", "IMAGE ID", "CREATED");
            for c in &list {
                println!(
                    "{:<32} {:<14} {:<22} {}",
                    c.name,
                    c.image_id.short(),
                    c.created,
                    path(&c.name)
                );
            }
            Ok(())
        }
        Layout::Json | Layout::Template(_) => {
            let records: Vec<serde_json::Value> = list
                .iter()
                .map(|c| {
                    listing::CONTAINER_FIELDS.record(vec![
                        c.name.clone().into(),
                        c.image_ref.clone().into(),
                        c.image_id.short().into(),
                        listing::docker_time(Some(&c.created)).into(),
                        listing::docker_since(Some(&c.created)).into(),
                        path(&c.name).into(),
                    ])
                })
                .collect();
            match layout {
                Layout::Template(f) => {
                    listing::print(&f, &records, &listing::CONTAINER_FIELDS, "containers")
                }
                _ => crate::output::out(&serde_json::to_string_pretty(&records)?),
            }
        }
    }
}

fn rm(store_dir: &Path, names: &[String]) -> Result<()> {
    let store = Store::open(store_dir)?;
    for n in names {
        container::remove(&store, n)?;
        println!("{n}");
    }
    Ok(())
}

fn commit(
    store_dir: &Path,
    name: &str,
    target: Option<String>,
    changes: &[String],
    message: Option<&str>,
) -> Result<()> {
    let store = Store::open(store_dir)?;
    let target = target.map(|t| Reference::parse(&t)).transpose()?;
    let (id, changes) = container::commit(&store, name, target, changes, message)?;
    report_moves(&changes);
    println!("{id}");
    Ok(())
}
