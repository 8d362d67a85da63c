//! `airlock verify`: read an archive through as `load` would, keep nothing.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use airlock_core::compression::Compression;
use airlock_core::transport::volumes;
use airlock_core::trust::{self, TrustedKey};
use airlock_remote::transports;

use crate::cmd::load::input_name;
use crate::context::Context;
use crate::listing::{self, Layout};
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
    /// Require the archive's transfer manifest to be signed by this public key (an OpenSSH
    /// `.pub` or a PEM public key; repeat for several) and to list exactly what the archive
    /// holds; the `SHA256SUMS` beside it, if there, must be signed too and match every file.
    #[arg(long = "trusted-key", value_name = "PUB")]
    pub trusted_keys: Vec<PathBuf>,
    /// `table` (the default lines), `json`, or a Go template as docker's `--format` takes
    /// it, run over each image read, with the fields Repository, Tag, Names, ID, Digest,
    /// Platforms, Layers, Size, Archive, Dialect.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Run `airlock verify`.
pub fn run(ctx: &Context, args: VerifyArgs) -> Result<()> {
    let src = input_name(args.input.as_deref(), "verify")?;
    let label = match args.input.as_deref() {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "standard input".to_string(),
    };
    let layout = Layout::of(args.format.as_deref(), "verify")?;
    let store = ctx.store()?;
    let mut req = crate::cmd::request::build(ctx, Vec::new(), None, None, None)?;
    let policy = args.trust.policy()?;
    req.gate = policy.as_ref().map(|p| p.gate());
    let trusted = args
        .trusted_keys
        .iter()
        .map(|k| TrustedKey::from_file(k))
        .collect::<airlock_core::Result<Vec<_>>>()?;
    // The checksums first: they are quick, and a volume that fails them need not be read.
    let sums_by = match (args.input.as_deref(), trusted.is_empty()) {
        (Some(p), false) if p.as_os_str() != "-" => check_sums(p, &trusted)?,
        _ => None,
    };
    let meter = Meter::start("Verifying", &req.progress, ctx.progress, args.quiet);
    let outcome = transports::copy(&store, &src, None, &req)?;
    meter.finish();
    let transfer_by = if trusted.is_empty() {
        None
    } else {
        Some(trust::check_transfer(
            &label,
            outcome.transfer.as_ref(),
            &outcome.images,
            &trusted,
        )?)
    };
    crate::output::print_notes(&outcome.notes);
    if args.quiet {
        return Ok(());
    }
    let (dialect, compression) = outcome
        .archive
        .map(|(d, c)| (d.name(), c))
        .unwrap_or(("archive", Compression::None));
    if !matches!(layout, Layout::Default) {
        return print_records(layout, &outcome.images, &label, dialect, compression);
    }
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
    if let Some(by) = transfer_by {
        println!("Transfer manifest signed by {by}: it lists exactly what the archive holds");
    }
    if let Some((sums, by)) = sums_by {
        println!(
            "{} signed by {by}: every file it names matches",
            sums.display()
        );
    }
    Ok(())
}

/// `--format`: a record per image read (one per name, as `images` lists them).
fn print_records(
    layout: Layout,
    images: &[airlock_core::transport::SourceImage],
    label: &str,
    dialect: &str,
    compression: Compression,
) -> Result<()> {
    let dialect = match compression {
        Compression::None => dialect.to_string(),
        c => format!("{dialect}+{}", c.name()),
    };
    let mut records = Vec::new();
    for img in images {
        let names: Vec<serde_json::Value> = img.names.iter().map(|n| n.familiar().into()).collect();
        let layers: usize = img.platforms.iter().map(|p| p.manifest.layers.len()).sum();
        let size: u64 = airlock_core::copy::blobs_of(std::slice::from_ref(img))
            .iter()
            .map(|b| b.size)
            .sum();
        let platforms: Vec<serde_json::Value> = img
            .platforms
            .iter()
            .filter(|p| p.manifest.artifact_type().is_none())
            .filter_map(|p| p.descriptor.platform.as_ref())
            .map(|p| p.display().into())
            .collect();
        let digest = if img.generated {
            "<none>".to_string()
        } else {
            img.root.digest.to_string()
        };
        let mut each: Vec<Option<&airlock_core::Reference>> = img.names.iter().map(Some).collect();
        if each.is_empty() {
            each.push(None);
        }
        for name in each {
            let (repo, tag) = listing::repository_and_tag(name);
            records.push(listing::VERIFIED_FIELDS.record(vec![
                repo.into(),
                tag.into(),
                names.clone().into(),
                img.id().short().into(),
                digest.clone().into(),
                platforms.clone().into(),
                layers.into(),
                listing::docker_size(size).into(),
                label.into(),
                dialect.clone().into(),
            ]));
        }
    }
    match layout {
        Layout::Template(f) => listing::print(&f, &records, &listing::VERIFIED_FIELDS, "verify"),
        _ => crate::output::out(&serde_json::to_string_pretty(&records)?),
    }
}

/// Check the `SHA256SUMS` beside `input` (its signature by one of `keys`, and every file it
/// names), when there is one. Returns it and the key that signed it.
fn check_sums(input: &Path, keys: &[TrustedKey]) -> Result<Option<(PathBuf, String)>> {
    let base = match input.to_string_lossy().strip_suffix(".000") {
        Some(b) => PathBuf::from(b),
        None => input.to_path_buf(),
    };
    let sums = volumes::sums_path(&base);
    let Ok(text) = std::fs::read(&sums) else {
        return Ok(None);
    };
    let sig_path = volumes::beside(&sums, ".sig");
    let refuse = |detail: String| {
        anyhow::Error::from(airlock_core::Error::TransferNotTrusted {
            archive: base.display().to_string(),
            detail,
        })
    };
    let sig = std::fs::read(&sig_path).map_err(|_| {
        refuse(format!(
            "{} is not signed ({} is missing)",
            sums.display(),
            sig_path.display()
        ))
    })?;
    let by = TrustedKey::verify_any(keys, &text, &sig)
        .map_err(|why| refuse(format!("{}: {why}", sums.display())))?;
    let dir = base.parent().filter(|d| !d.as_os_str().is_empty());
    for line in String::from_utf8_lossy(&text).lines() {
        let Some((hex, name)) = line.split_once("  ") else {
            return Err(refuse(format!(
                "{} has a line that is not `HEX  FILE`",
                sums.display()
            )));
        };
        let file = dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
        let f = std::fs::File::open(&file).map_err(|e| {
            refuse(format!(
                "{} names {}, which cannot be read: {e}",
                sums.display(),
                file.display()
            ))
        })?;
        let (digest, _) = airlock_core::digest::hash_reader(f)
            .map_err(|e| airlock_core::Error::io("read", &file, e))?;
        if digest.hex() != hex {
            return Err(refuse(format!(
                "{} has SHA-256 {}, not the {hex} {} gives",
                file.display(),
                digest.hex(),
                sums.display()
            )));
        }
    }
    Ok(Some((sums, by)))
}
