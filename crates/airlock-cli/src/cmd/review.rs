//! `airlock review`: the transfer manifest of an archive, for the people who approve a
//! transfer, before anything is loaded.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use airlock_core::transfer::{self, TransferFiles, TransferImage, TransferManifest};
use airlock_core::transport::volumes;
use airlock_core::trust::TrustedKey;
use airlock_remote::transports;

use crate::context::Context;
use crate::hints::UsageError;
use crate::listing::{self, Layout};
use crate::output::{human_size, out, print_table};

/// Show what an archive carries, from the transfer manifest `save` writes first in it:
/// every image with its digests, platforms, size, signatures and SBOMs. Reads only the
/// front of the archive; an archive another tool wrote is read through instead.
#[derive(Args, Debug)]
pub struct ReviewArgs {
    /// The archive (a file, or the first volume or name of a split one).
    pub archive: PathBuf,
    /// Print the transfer manifest as JSON, exactly as it is in the archive.
    #[arg(long)]
    pub json: bool,
    /// Check the manifest's signature against this public key (OpenSSH `.pub` or PEM);
    /// `verify --trusted-key` also checks every blob against it.
    #[arg(long = "trusted-key", value_name = "PUB")]
    pub trusted_keys: Vec<PathBuf>,
    /// A Go template as docker's `--format` takes it, run over each image the manifest
    /// lists, with the fields Repository, Tag, Names, Digest, Platforms, Size, Shipped,
    /// Signatures, Signed (the key its signature was verified with at save), SBOMs.
    #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
    pub format: Option<String>,
}

/// Run `airlock review`.
pub fn run(ctx: &Context, args: ReviewArgs) -> Result<()> {
    let label = args.archive.display().to_string();
    let layout = Layout::of(args.format.as_deref(), "review")?;
    if args.archive.is_dir() {
        bail!(UsageError(format!(
            "{label} is a directory: review reads an archive file; `airlock verify -i {label}` lists a layout"
        )));
    }
    let (reader, _) = volumes::open_input(&args.archive)?;
    let (files, from_content) = match transfer::read_front(reader)? {
        Some(files) => (files, false),
        None => {
            // Another tool's archive (or one written metadata-last): read it through.
            let store = ctx.store()?;
            let req = crate::cmd::request::build(ctx, Vec::new(), None, None, None)?;
            let src = crate::cmd::load::input_name(Some(&args.archive), "review")?;
            let outcome = transports::copy(&store, &src, None, &req)?;
            match outcome.transfer {
                Some(files) => (files, false),
                None => {
                    let manifest = TransferManifest::of(&outcome.images, None).to_bytes()?;
                    let files = TransferFiles {
                        manifest,
                        signature: None,
                    };
                    (files, true)
                }
            }
        }
    };
    let manifest = files.parse()?;
    let signed = check_signature(&label, &files, &args.trusted_keys)?;
    if args.json || matches!(layout, Layout::Json) {
        out(String::from_utf8_lossy(&files.manifest).trim_end())?;
        return Ok(());
    }
    if let Layout::Template(f) = layout {
        let records: Vec<serde_json::Value> = manifest.images.iter().flat_map(records).collect();
        return listing::print(&f, &records, &listing::REVIEWED_FIELDS, "review");
    }
    if from_content {
        out(&format!(
            "{label} carries no transfer manifest (airlock save did not write it); this is what it holds, every digest verified:"
        ))?;
    } else {
        out(&format!(
            "{label}: transfer manifest written by {}",
            manifest.tool
        ))?;
        out(&format!("Manifest signature: {signed}"))?;
    }
    if let Some(o) = &manifest.origin {
        if let Some(s) = &o.shipment {
            out(&format!("Made from shipment {} ({})", s.file, s.digest))?;
        }
        if let Some(inv) = &o.inventory {
            out(&format!(
                "Incremental: leaves out what inventory {inv} lists; only airlock loads it, into that store"
            ))?;
        }
        if o.deltas > 0 {
            out(&format!(
                "Deltas: {} layer(s) are shipped as the difference from a layer that store holds; docker, podman, skopeo and containerd cannot load this archive",
                o.deltas
            ))?;
        }
    }
    out(&format!(
        "{} image(s), {} other artifact(s), {} blobs, {}",
        manifest.images.len(),
        manifest.artifacts.len(),
        manifest.blobs,
        human_size(manifest.size)
    ))?;
    out("")?;
    if manifest.images.iter().any(|i| i.shipped.is_some()) {
        let rows: Vec<[String; 7]> = manifest
            .images
            .iter()
            .map(|i| {
                let [a, b, c, d, e, f] = row(i);
                let shipped = human_size(i.shipped.unwrap_or(i.size));
                [a, b, c, d, shipped, e, f]
            })
            .collect();
        print_table(
            [
                "IMAGE",
                "DIGEST",
                "PLATFORMS",
                "SIZE",
                "SHIPPED",
                "SIGNATURES",
                "SBOMS",
            ],
            &rows,
        )?;
    } else {
        let rows: Vec<[String; 6]> = manifest.images.iter().map(row).collect();
        print_table(
            [
                "IMAGE",
                "DIGEST",
                "PLATFORMS",
                "SIZE",
                "SIGNATURES",
                "SBOMS",
            ],
            &rows,
        )?;
    }
    for img in &manifest.images {
        if let Some(s) = &img.signature {
            let name = img.names.first().cloned().unwrap_or(img.digest.to_string());
            match &s.signed_by {
                Some(key) => out(&format!(
                    "Signature verified at save: {name}, signed by {key}"
                ))?,
                None => out(&format!(
                    "Not signed at save: {name} ({})",
                    s.problems.join("; ")
                ))?,
            }
        }
    }
    if !manifest.artifacts.is_empty() {
        out("")?;
        let rows: Vec<[String; 3]> = manifest
            .artifacts
            .iter()
            .map(|a| {
                [
                    a.names.join(", "),
                    a.digest.to_string(),
                    a.artifact_type.clone(),
                ]
            })
            .collect();
        print_table(["ARTIFACT", "DIGEST", "TYPE"], &rows)?;
    }
    Ok(())
}

/// An image's `--format` records, one per name.
fn records(img: &TransferImage) -> Vec<serde_json::Value> {
    let count = |kind: &str| img.referrers.iter().filter(|r| r.kind == kind).count();
    let platforms: Vec<serde_json::Value> = img
        .platforms
        .iter()
        .filter_map(|p| p.platform.clone().map(Into::into))
        .collect();
    let signed = img
        .signature
        .as_ref()
        .and_then(|s| s.signed_by.clone())
        .unwrap_or_default();
    let mut names: Vec<Option<airlock_core::Reference>> = img
        .names
        .iter()
        .map(|n| airlock_core::Reference::parse(n).ok())
        .collect();
    if names.is_empty() {
        names.push(None);
    }
    names
        .iter()
        .map(|name| {
            let (repo, tag) = listing::repository_and_tag(name.as_ref());
            listing::REVIEWED_FIELDS.record(vec![
                repo.into(),
                tag.into(),
                img.names.clone().into(),
                img.digest.to_string().into(),
                platforms.clone().into(),
                listing::docker_size(img.size).into(),
                listing::docker_size(img.shipped.unwrap_or(img.size)).into(),
                count("signature").into(),
                signed.clone().into(),
                count("sbom").into(),
            ])
        })
        .collect()
}

/// One image's row.
fn row(img: &TransferImage) -> [String; 6] {
    let count = |kind: &str| img.referrers.iter().filter(|r| r.kind == kind).count();
    let platforms: Vec<String> = img
        .platforms
        .iter()
        .map(|p| p.platform.clone().unwrap_or_else(|| "-".into()))
        .collect();
    let signatures = match (&img.signature, count("signature")) {
        (Some(s), n) if s.signed_by.is_some() => format!("{n}, verified"),
        (Some(_), n) => format!("{n}, NOT VERIFIED"),
        (None, 0) => "none".into(),
        (None, n) => format!("{n}, not checked"),
    };
    let attestations = count("attestation");
    let signatures = if attestations > 0 {
        format!("{signatures} (+{attestations} attestation(s))")
    } else {
        signatures
    };
    [
        if img.names.is_empty() {
            "<none>".into()
        } else {
            img.names.join(", ")
        },
        img.digest.to_string(),
        platforms.join(","),
        human_size(img.size),
        signatures,
        count("sbom").to_string(),
    ]
}

/// What the manifest's signature came to against `keys`: verified by one of them, an
/// error naming why none verifies, or that it was not checked.
fn check_signature(label: &str, files: &TransferFiles, keys: &[PathBuf]) -> Result<String> {
    let Some(sig) = &files.signature else {
        if keys.is_empty() {
            return Ok("none (the archive was saved without --sign-key)".into());
        }
        return Err(airlock_core::Error::TransferNotTrusted {
            archive: label.to_string(),
            detail: "it is not signed (save it with --sign-key)".into(),
        }
        .into());
    };
    if keys.is_empty() {
        return Ok("present, not checked (give --trusted-key PUB)".into());
    }
    let keys = keys
        .iter()
        .map(|k| TrustedKey::from_file(k))
        .collect::<airlock_core::Result<Vec<_>>>()?;
    match TrustedKey::verify_any(&keys, &files.manifest, sig) {
        Ok(by) => Ok(format!("verified, signed by {by}")),
        Err(detail) => Err(airlock_core::Error::TransferNotTrusted {
            archive: label.to_string(),
            detail,
        }
        .into()),
    }
}
