//! `airlock save`: images from the store, or straight from the Docker Engine, into one
//! archive that docker, podman, containerd and skopeo all load.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use std::sync::Arc;

use airlock_core::archive::file::TRANSFER_SUFFIX;
use airlock_core::transfer::TransferOptions;
use airlock_core::transport::name::TransportName;
use airlock_core::transport::volumes;
use airlock_core::trust::SigningKey;
use airlock_remote::transports;

use crate::context::Context;
use crate::hints::UsageError;
use crate::options::{ArchiveArgs, Format, SelectArgs};
use crate::progress::Meter;

/// Save images from the store (or `docker-daemon:` images from the Docker Engine, or
/// `containerd:` images from containerd) into one archive that docker, podman, containerd
/// and skopeo all load.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Output file; `-` or nothing writes standard output (never a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive layout: `docker` (OCI layout plus manifest.json: loads everywhere) or `oci`.
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub trust: crate::options::TrustArgs,
    #[command(flatten)]
    pub containerd: crate::options::ContainerdWhere,
    /// Sign the transfer manifest (and the volumes' checksums) with this private key: an
    /// OpenSSH key (checked with `ssh-keygen -Y verify -n airlock-transfer`) or a PEM key
    /// (a cosign-style signature). Writes `FILE.transfer.json`, `FILE.SHA256SUMS` and their
    /// `.sig` beside the archive.
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Images by name, image ID, short ID or `repo@sha256:...`; `docker-daemon:NAME` takes
    /// them from the Docker Engine instead (`docker-daemon:` with --match: every engine
    /// image whose name matches), `containerd:NAME` from containerd (--address, --namespace).
    pub images: Vec<String>,
}

/// Run `airlock save`.
pub fn run(ctx: &Context, args: SaveArgs) -> Result<()> {
    if args.images.is_empty() && args.select.matches.is_empty() && !args.select.all {
        bail!(UsageError(
            "save needs images: name them, or use --match PATTERN or --all".into()
        ));
    }
    if args.archive.split.is_some() && args.output.is_none() {
        bail!(UsageError(
            "--split needs -o FILE to name the volumes".into()
        ));
    }
    // `docker-daemon:NAME` arguments come from the engine, `containerd:NAME` from
    // containerd, everything else from the store.
    let from = |prefix: &str| args.images.iter().filter(|q| q.starts_with(prefix)).count();
    let (engine, containerd) = (from("docker-daemon:"), from("containerd:"));
    let (src, queries) = if engine == 0 && containerd == 0 {
        (TransportName::Store(None), args.images.clone())
    } else {
        if engine.max(containerd) != args.images.len() {
            bail!(UsageError(
                "save takes images all from one place: the store, docker-daemon: or containerd:, not a mix"
                    .into()
            ));
        }
        let prefix = if engine > 0 {
            "docker-daemon:"
        } else {
            "containerd:"
        };
        let names = args
            .images
            .iter()
            .filter_map(|q| q.strip_prefix(prefix))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        let src = if engine > 0 {
            TransportName::DockerDaemon(None)
        } else {
            TransportName::Containerd(None)
        };
        (src, names)
    };
    let path = match args.output.filter(|p| p.as_os_str() != "-") {
        Some(p) => p,
        None => {
            if io::stdout().is_terminal() {
                bail!(UsageError(
                    "refusing to write an archive to a terminal: give -o FILE or redirect standard output".into()
                ));
            }
            PathBuf::from("-")
        }
    };
    let dest = match args.format {
        Format::Docker => TransportName::DockerArchive(path.clone(), None),
        Format::Oci => TransportName::OciArchive(path.clone(), None),
    };
    if args.sign_key.is_some() && path.as_os_str() == "-" {
        bail!(UsageError(
            "--sign-key needs -o FILE: the signatures are written beside the archive".into()
        ));
    }
    let signer = signer_from(args.sign_key.as_deref())?;
    let store = ctx.store()?;
    let mut req = crate::cmd::request::build(
        ctx,
        queries,
        Some(&args.select),
        Some((&args.archive, args.format)),
        None,
    )?;
    req.containerd = args.containerd.options();
    let policy = args.trust.policy()?;
    req.gate = policy.as_ref().map(|p| p.gate());
    req.archive.transfer = TransferOptions {
        signer: signer.clone().map(|s| s as _),
        checks: policy.as_ref().map(|p| p.checks()),
        shipment: None,
    };
    let meter = Meter::start("Saving", &req.progress, ctx.progress, false);
    let outcome = transports::copy(&store, &src, Some(&dest), &req)?;
    meter.finish();
    if let Some(p) = policy {
        // Standard output may be the archive.
        for line in crate::output::verdict_lines(&p.verdicts()) {
            eprintln!("{line}");
        }
    }
    if let Some(files) = &outcome.written_transfer {
        for line in shipped_lines(&files.parse()?) {
            eprintln!("{line}");
        }
    }
    report_files(
        &outcome.files,
        args.archive.split.is_some() || signer.is_some(),
    );
    if let Some(s) = &signer {
        eprintln!(
            "Signed the transfer manifest and checksums with {}",
            s.label
        );
    }
    Ok(())
}

/// For an incremental archive, per image: its bytes as layers, and the bytes shipped.
pub(crate) fn shipped_lines(manifest: &airlock_core::transfer::TransferManifest) -> Vec<String> {
    use crate::output::human_size;
    let mut lines: Vec<String> = manifest
        .images
        .iter()
        .filter_map(|img| {
            let shipped = img.shipped?;
            let name = img.names.first().cloned().unwrap_or(img.digest.to_string());
            Some(format!(
                "{name}: {} as layers, {} shipped ({:.1}%)",
                human_size(img.size),
                human_size(shipped),
                shipped as f64 * 100.0 / img.size.max(1) as f64
            ))
        })
        .collect();
    if let Some(n) = manifest
        .origin
        .as_ref()
        .map(|o| o.deltas)
        .filter(|n| *n > 0)
    {
        lines.push(format!(
            "{n} layer(s) ship as deltas against layers the far side holds: only `airlock load` into that store rebuilds them"
        ));
    }
    lines
}

/// The key `--sign-key` names, read (`save`, `sync -o`).
pub(crate) fn signer_from(path: Option<&std::path::Path>) -> Result<Option<Arc<SigningKey>>> {
    Ok(path.map(SigningKey::from_file).transpose()?.map(Arc::new))
}

/// Name the files a save wrote when there is more than the one asked for (volumes, their
/// checksums, the transfer manifest beside them).
pub(crate) fn report_files(files: &[PathBuf], beside: bool) {
    let Some(first) = files.first().filter(|_| beside) else {
        return;
    };
    let base = match first.extension().and_then(|e| e.to_str()) {
        Some("000") => first.with_extension(""),
        _ => first.clone(),
    };
    for p in files {
        eprintln!("Wrote {}", p.display());
    }
    for suffix in [".SHA256SUMS", TRANSFER_SUFFIX] {
        let side = volumes::beside(&base, suffix);
        if side.exists() {
            eprintln!("Wrote {}", side.display());
        }
    }
}
