//! One function per command: open the store, build a source and a destination, copy.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use airlock_core::archive::writer::{ArchiveFormat, ArchiveWriter};
use airlock_core::archive::ArchiveSource;
use airlock_core::compression::{self, Compression};
use airlock_core::store::{Store, TagChange};
use airlock_core::transport::store::StoreSource;
use airlock_core::transport::{copy_images, select, ImageSource};
use airlock_core::Reference;

use crate::{
    endpoints, output, progress, registry, sink, snapshots, volumes, Cli, Command, Compress, Format,
};

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let store_dir = store_dir(cli.store)?;
    let net = registry::NetOptions {
        insecure: cli.insecure || !cli.tls_verify,
    };
    match cli.command {
        Command::Load { input, quiet, into } => load(&store_dir, input, quiet, into),
        Command::Verify { input, quiet } => verify(&store_dir, input, quiet),
        Command::Inventory { output } => inventory(&store_dir, output),
        Command::Copy {
            source,
            destination,
            quiet,
        } => endpoints::copy(&store_dir, &source, &destination, quiet, &net),
        Command::Pull {
            reference,
            platform,
            all_platforms,
            quiet,
        } => registry::pull(&store_dir, &reference, platform, all_platforms, quiet, &net),
        Command::Push {
            image,
            destination,
            all,
            registry: host,
            prefix,
            quiet,
        } => registry::push(
            &store_dir,
            image,
            destination,
            all,
            host,
            prefix,
            quiet,
            &net,
        ),
        Command::Login {
            host,
            username,
            password_stdin,
        } => registry::login(&host, username, password_stdin, &net),
        Command::Logout { host } => registry::logout(&host),
        Command::Save {
            output,
            format,
            compress,
            level,
            matches,
            all,
            split,
            incremental_from,
            images,
        } => save(
            &store_dir,
            SaveOptions {
                output,
                format,
                compress,
                level,
                split,
                incremental_from,
            },
            &matches,
            all,
            &images,
        ),
        Command::Export {
            output,
            compress,
            level,
            dir,
            source,
        } => snapshots::export(&store_dir, output, compress, level, dir, source),
        Command::Import {
            changes,
            message,
            platform,
            force,
            source,
            name,
        } => snapshots::import(&store_dir, changes, message, platform, force, &source, name),
        Command::Create { image, name } => snapshots::create(&store_dir, &image, name.as_deref()),
        Command::Containers => snapshots::containers(&store_dir),
        Command::Rm { names } => snapshots::rm(&store_dir, &names),
        Command::Commit {
            container,
            name,
            changes,
            message,
        } => snapshots::commit(&store_dir, &container, name, &changes, message.as_deref()),
        Command::Images {
            pattern,
            format,
            quiet,
        } => {
            let store = Store::open(&store_dir)?;
            output::images(&store, pattern.as_deref(), format, quiet)
        }
        Command::Inspect { images } => output::inspect(&Store::open(&store_dir)?, &images),
        Command::Tag { source, target } => {
            let store = Store::open(&store_dir)?;
            let target = Reference::parse(&target)?;
            let change = store.tag(&source, &target)?;
            report_moves(std::slice::from_ref(&change));
            Ok(())
        }
        Command::Rmi { images } => {
            let store = Store::open(&store_dir)?;
            for q in &images {
                for line in store.remove(q)? {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Gc => {
            let store = Store::open(&store_dir)?;
            let roots = airlock_core::container::image_roots(&store)?;
            let (blobs, bytes) = store.gc(&roots)?;
            println!(
                "Deleted {blobs} unreferenced blobs, freed {}",
                output::human_size(bytes)
            );
            Ok(())
        }
    }
}

fn store_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("AIRLOCK_STORE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p).join("airlock"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/airlock")),
        None => bail!("cannot tell where the store is: set --store, AIRLOCK_STORE or HOME"),
    }
}

fn load(store_dir: &Path, input: Option<PathBuf>, quiet: bool, into: Option<String>) -> Result<()> {
    let dest = match into.as_deref() {
        None => endpoints::Endpoint::Store(None),
        Some("docker-daemon") | Some("docker-daemon:") => endpoints::Endpoint::DockerDaemon(None),
        Some(other) => bail!(crate::hints::UsageError(format!(
            "--into {other}: load goes into the store (default) or `--into docker-daemon`; for other destinations use `airlock copy`"
        ))),
    };
    let store = Store::open(store_dir)?;
    let staging = store.staging()?;
    let source = match input.as_deref() {
        Some(p) if p.as_os_str() != "-" && p.is_dir() => {
            ArchiveSource::read_dir(p, &staging, Some(&store))?
        }
        Some(p) if p.as_os_str() != "-" => {
            let (f, total) = volumes::open_input(p)?;
            let meter = progress::Meter::start("Loading", total, quiet);
            ArchiveSource::read_stream(Box::new(meter.reader(f)), &staging, Some(&store))?
        }
        _ => {
            if io::stdin().is_terminal() {
                bail!(crate::hints::UsageError(
                    "load reads an archive from standard input, but that is a terminal: give -i FILE or pipe an archive in".into()
                ));
            }
            ArchiveSource::read_stream(Box::new(io::stdin()), &staging, Some(&store))?
        }
    };
    let images = source.images().to_vec();
    let lines = endpoints::copy_to(
        &dest,
        &store,
        &staging,
        &source,
        images,
        &Default::default(),
    )?;
    if !quiet {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// The inventory format: what a store holds.
const INVENTORY_KIND: &str = "airlock-inventory/v1";

fn inventory(store_dir: &Path, output: Option<PathBuf>) -> Result<()> {
    let store = Store::open(store_dir)?;
    let blobs: Vec<String> = store
        .blob_digests()?
        .iter()
        .map(|d| d.to_string())
        .collect();
    let doc = serde_json::json!({ "kind": INVENTORY_KIND, "blobs": blobs });
    let bytes = serde_json::to_vec_pretty(&doc)?;
    match output {
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

/// Read an inventory: the digests it lists, and its own digest (recorded in the archive).
fn read_inventory(
    path: &Path,
) -> Result<(
    std::collections::BTreeSet<airlock_core::Digest>,
    airlock_core::Digest,
)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        crate::hints::UsageError(format!(
            "{} is not an inventory written by `airlock inventory`: {e}",
            path.display()
        ))
    })?;
    if doc.get("kind").and_then(|k| k.as_str()) != Some(INVENTORY_KIND) {
        bail!(crate::hints::UsageError(format!(
            "{} is not an inventory written by `airlock inventory`",
            path.display()
        )));
    }
    let mut have = std::collections::BTreeSet::new();
    for b in doc["blobs"].as_array().into_iter().flatten() {
        let d = b.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            crate::hints::UsageError(format!("{}: '{b}' is not a digest", path.display()))
        })?;
        have.insert(d);
    }
    Ok((have, airlock_core::Digest::of(&bytes)))
}

/// A writer shared with the code that finishes it afterwards.
struct SharedWriter(std::sync::Arc<std::sync::Mutex<volumes::SplitWriter>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .flush()
    }
}

/// Read an archive of any dialect as `load` would, trusting nothing and committing nothing.
fn verify(store_dir: &Path, input: Option<PathBuf>, quiet: bool) -> Result<()> {
    // Staged under the store's tmp/ (same disk the user chose), never committed; blobs the
    // store already holds are checked again (no `store` passed), so the whole archive is.
    let store = Store::open(store_dir)?;
    let staging = store.staging()?;
    let (label, source) = match input.as_deref() {
        Some(p) if p.as_os_str() != "-" && p.is_dir() => (
            p.display().to_string(),
            ArchiveSource::read_dir(p, &staging, None)?,
        ),
        Some(p) if p.as_os_str() != "-" => {
            let (f, total) = volumes::open_input(p)?;
            let meter = progress::Meter::start("Verifying", total, quiet);
            let src = ArchiveSource::read_stream(Box::new(meter.reader(f)), &staging, None)?;
            (p.display().to_string(), src)
        }
        _ => {
            if io::stdin().is_terminal() {
                bail!(crate::hints::UsageError(
                    "verify reads an archive from standard input, but that is a terminal: give -i FILE or pipe an archive in".into()
                ));
            }
            (
                "standard input".to_string(),
                ArchiveSource::read_stream(Box::new(io::stdin()), &staging, None)?,
            )
        }
    };
    if quiet {
        return Ok(());
    }
    let images = source.images();
    let compression = match source.compression() {
        Compression::None => String::new(),
        c => format!(", {}-compressed", c.name()),
    };
    println!(
        "{label}: {}{compression}, {} image(s), every digest and diffID verified",
        source.dialect().name(),
        images.len()
    );
    for img in images {
        let names: Vec<String> = img.names.iter().map(|n| n.familiar()).collect();
        let layers: usize = img.platforms.iter().map(|p| p.manifest.layers.len()).sum();
        let size = progress::total_size(std::slice::from_ref(img));
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
            img.id.short(),
            layers,
            output::human_size(size)
        );
    }
    Ok(())
}

pub fn report_moves(changes: &[TagChange]) {
    for c in changes {
        if let (Some(name), Some(old)) = (&c.name, &c.moved_from) {
            if old != &c.image_id {
                eprintln!(
                    "Name {} moved from image {} to {}; the old image stays, untagged",
                    name.familiar(),
                    old,
                    c.image_id
                );
            }
        }
    }
}

/// Where and how `save` writes.
struct SaveOptions {
    output: Option<PathBuf>,
    format: Format,
    compress: Compress,
    level: Option<i32>,
    split: Option<String>,
    incremental_from: Option<PathBuf>,
}

fn save(
    store_dir: &Path,
    opts: SaveOptions,
    matches: &[String],
    all: bool,
    queries: &[String],
) -> Result<()> {
    let SaveOptions {
        output,
        format,
        compress,
        level,
        split,
        incremental_from,
    } = opts;
    let inventory = incremental_from
        .as_deref()
        .map(read_inventory)
        .transpose()?;
    let make_writer = |out: Box<dyn std::io::Write + Send>| -> Result<ArchiveWriter> {
        let archive_format = match format {
            Format::Docker => ArchiveFormat::Docker,
            Format::Oci => ArchiveFormat::Oci,
        };
        let w = ArchiveWriter::new(
            out,
            archive_format,
            compress.codec(),
            level,
            compression::default_threads(),
        )?;
        Ok(match &inventory {
            Some((have, digest)) => w.incremental(have.clone(), digest.clone()),
            None => w,
        })
    };
    if queries.is_empty() && matches.is_empty() && !all {
        bail!(crate::hints::UsageError(
            "save needs images: name them, or use --match PATTERN or --all".into()
        ));
    }
    let store = Store::open(store_dir)?;
    let staging = store.staging()?;
    // `docker-daemon:NAME` arguments come from the engine, everything else from the store.
    let from_engine: Vec<String> = queries
        .iter()
        .filter_map(|q| q.strip_prefix("docker-daemon:").map(str::to_string))
        .collect();
    let source: Box<dyn ImageSource + '_> = if from_engine.is_empty() {
        Box::new(StoreSource::new(&store)?)
    } else {
        if from_engine.len() != queries.len() || !matches.is_empty() || all {
            bail!(crate::hints::UsageError(
                "save takes images either all from the store or all from docker-daemon:, not both"
                    .into()
            ));
        }
        let engine = airlock_remote::Engine::from_env()?;
        Box::new(airlock_remote::engine::engine_source(
            &engine,
            &from_engine,
            &staging,
            Some(&store),
        )?)
    };
    let wanted: Vec<String> = queries
        .iter()
        .map(|q| q.strip_prefix("docker-daemon:").unwrap_or(q).to_string())
        .collect();
    let images = select(source.images(), &wanted, matches, all)?;
    if images.is_empty() {
        bail!(crate::hints::UsageError(
            "the store has no images to save".into()
        ));
    }
    let meter = progress::Meter::start("Saving", progress::total_size(&images), false);
    let metered = progress::MeteredSource {
        inner: source.as_ref(),
        meter: &meter,
    };
    if let (Some(size), Some(path)) = (split, output.as_ref()) {
        let volumes = volumes::SplitWriter::new(path, volumes::parse_size(&size)?);
        let shared = std::sync::Arc::new(std::sync::Mutex::new(volumes));
        let out = SharedWriter(shared.clone());
        let writer = make_writer(Box::new(std::io::BufWriter::with_capacity(1 << 20, out)))?;
        copy_images(&metered, &images, Box::new(writer))?;
        let volumes = std::sync::Arc::try_unwrap(shared)
            .map_err(|_| anyhow::anyhow!("the archive writer still holds its output"))?
            .into_inner()
            .map_err(|_| anyhow::anyhow!("the archive writer failed while writing"))?;
        for p in volumes.finish()? {
            eprintln!("Wrote {}", p.display());
        }
        return Ok(());
    }
    sink::write_output(output, "an archive", |out| {
        copy_images(&metered, &images, Box::new(make_writer(out)?))?;
        Ok(())
    })
}

impl Compress {
    /// The core's codec for this choice.
    pub fn codec(self) -> Compression {
        match self {
            Compress::None => Compression::None,
            Compress::Gzip => Compression::Gzip,
            Compress::Zstd => Compression::Zstd,
        }
    }
}
