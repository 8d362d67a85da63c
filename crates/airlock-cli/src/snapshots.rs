//! `export`, `import` and the work-container commands.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use airlock_core::compression;
use airlock_core::container;
use airlock_core::import::{import as import_into, parse_platform, ImportOptions, ImportSource};
use airlock_core::layer::dirtar::{write_dir_tar, DirTarOptions};
use airlock_core::store::Store;
use airlock_core::Reference;

use crate::commands::report_moves;
use crate::hints::UsageError;
use crate::{sink, Compress};

pub fn export(
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
            What::Engine(s["docker-daemon:".len()..].to_string())
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

pub fn import(
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

pub fn create(store_dir: &Path, image: &str, name: Option<&str>) -> Result<()> {
    let store = Store::open(store_dir)?;
    let (_info, rootfs, notes) = container::create(&store, image, name)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    println!("{}", rootfs.display());
    Ok(())
}

pub fn containers(store_dir: &Path) -> Result<()> {
    let store = Store::open(store_dir)?;
    println!("{:<32} {:<14} {:<22} PATH", "NAME", "IMAGE ID", "CREATED");
    for c in container::list(&store)? {
        println!(
            "{:<32} {:<14} {:<22} {}",
            c.name,
            c.image_id.short(),
            c.created,
            container::containers_dir(&store)
                .join(&c.name)
                .join("rootfs")
                .display()
        );
    }
    Ok(())
}

pub fn rm(store_dir: &Path, names: &[String]) -> Result<()> {
    let store = Store::open(store_dir)?;
    for n in names {
        container::remove(&store, n)?;
        println!("{n}");
    }
    Ok(())
}

pub fn commit(
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
