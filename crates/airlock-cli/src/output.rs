//! What commands print: `images` and `inspect` (the store as a table or JSON), the lines
//! for loaded images and moved names, sizes. A leaf module: only [`crate::options`] below it.

use anyhow::Result;
use serde_json::{json, Value};

use airlock_core::reference::glob_match;
use airlock_core::store::{ImageRecord, Store, TagChange};
use airlock_core::Digest;

use crate::listing::{self, Layout};

/// Say on standard error when a name moved to another image (the old one stays, untagged).
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

/// "Loaded image" lines, and a note for each name that moved.
pub fn loaded_lines(changes: &[TagChange]) -> Vec<String> {
    report_moves(changes);
    changes
        .iter()
        .map(|c| match &c.name {
            Some(n) => format!("Loaded image: {}", n.familiar()),
            None => format!("Loaded image ID: {}", c.image_id),
        })
        .collect()
}

/// Say on standard error what the library did with what it could not take as it was.
pub fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {n}");
    }
}

/// Print lines unless `quiet`.
pub fn print_lines(lines: &[String], quiet: bool) {
    if !quiet {
        for l in lines {
            println!("{l}");
        }
    }
}

/// One line on standard output; a reader that went away (`| head`) is an error the caller
/// returns (main treats a broken pipe as success), not a panic.
pub(crate) fn out(line: &str) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Bytes as docker shows them (decimal units).
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2}GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1}MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1}kB", b / 1e3)
    } else {
        format!("{bytes}B")
    }
}

/// Stored size of an image: manifests, configs and layers as kept in the store.
fn image_size(store: &Store, img: &ImageRecord) -> u64 {
    let p = img.primary();
    std::iter::once(&p.manifest.config)
        .chain(&p.manifest.layers)
        .map(|d| store.blob_size(&d.digest).unwrap_or(d.size))
        .sum()
}

/// One row per (image, name), untagged images once with `<none>`.
fn rows(images: &[ImageRecord], pattern: Option<&str>) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for (i, img) in images.iter().enumerate() {
        if img.names.is_empty() {
            if pattern.is_none() {
                out.push(("<none>".into(), "<none>".into(), i));
            }
            continue;
        }
        for n in &img.names {
            let familiar = n.familiar();
            if pattern.is_some_and(|p| {
                !glob_match(p, &familiar)
                    && !glob_match(p, &n.to_string())
                    && !glob_match(p, &n.familiar_repository())
            }) {
                continue;
            }
            out.push((
                n.familiar_repository(),
                n.tag().unwrap_or("<none>").to_string(),
                i,
            ));
        }
    }
    out
}

/// How `images` was asked to list.
pub struct ImagesLayout {
    /// `--format`.
    pub layout: Layout,
    /// `-q`: only IDs.
    pub quiet: bool,
    /// `--digests`: a DIGEST column in the default table.
    pub digests: bool,
    /// `--no-trunc`: whole image IDs.
    pub no_trunc: bool,
}

/// `airlock images`: container images only (artifacts are listed by `airlock artifacts`).
pub fn images(store: &Store, pattern: Option<&str>, how: ImagesLayout) -> Result<()> {
    let images: Vec<ImageRecord> = store
        .images()?
        .into_iter()
        .filter(|i| i.artifact_type().is_none())
        .collect();
    let rows = rows(&images, pattern);
    if how.quiet && matches!(how.layout, Layout::Default) {
        let mut seen = std::collections::BTreeSet::new();
        for (_, _, i) in &rows {
            let id = images[*i].id();
            if seen.insert(id.clone()) {
                out(&if how.no_trunc {
                    id.to_string()
                } else {
                    id.short().to_string()
                })?;
            }
        }
        return Ok(());
    }
    if matches!(how.layout, Layout::Json) {
        let v: Vec<Value> = rows
            .iter()
            .map(|(repo, tag, i)| {
                let img = &images[*i];
                json!({
                    "Repository": repo,
                    "Tag": tag,
                    "Id": img.id().to_string(),
                    "Digest": img.root.digest.to_string(),
                    "Created": img.primary().config.created,
                    "Size": image_size(store, img),
                    "Platforms": img.platforms.iter().filter(|p| p.is_image()).map(|p| p.platform().display()).collect::<Vec<_>>(),
                })
            })
            .collect();
        out(&serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let records: Vec<Value> = rows
        .iter()
        .map(|(repo, tag, i)| image_record(store, &images[*i], repo, tag, how.no_trunc))
        .collect();
    let format = match how.layout {
        Layout::Template(f) => f,
        _ => crate::template::Format::parse(if how.digests {
            listing::IMAGE_TABLE_DIGESTS
        } else {
            listing::IMAGE_TABLE
        })
        .expect("the default format parses"),
    };
    listing::print(&format, &records, &listing::IMAGE_FIELDS, "images")
}

/// One `images` row as the docker CLI's image record.
fn image_record(store: &Store, img: &ImageRecord, repo: &str, tag: &str, no_trunc: bool) -> Value {
    let created = img.primary().config.created.as_deref();
    let bytes = image_size(store, img);
    let size = listing::docker_size(bytes);
    // Only a name that came with a registry manifest has a digest docker would show.
    let digest = img
        .repo_digests()
        .into_iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(String::from))
        .unwrap_or_else(|| "<none>".into());
    let id = img.id();
    listing::IMAGE_FIELDS.record(vec![
        "N/A".into(),
        listing::docker_time(created).into(),
        listing::docker_since(created).into(),
        digest.into(),
        if no_trunc {
            id.to_string()
        } else {
            id.short().to_string()
        }
        .into(),
        repo.into(),
        "N/A".into(),
        size.into(),
        tag.into(),
        "N/A".into(),
        listing::docker_size4(bytes).into(),
    ])
}

pub(crate) fn print_table<const N: usize>(header: [&str; N], table: &[[String; N]]) -> Result<()> {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in table {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(table) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out(line.join("   ").trim_end())?;
    }
    Ok(())
}

/// What an artifact refers to, by name when the store holds its subject.
fn subject_label(images: &[ImageRecord], subject: &Digest) -> String {
    images
        .iter()
        .find(|i| {
            &i.root.digest == subject || i.platforms.iter().any(|p| &p.descriptor.digest == subject)
        })
        .and_then(|i| i.names.first().map(|n| n.familiar()))
        .unwrap_or_else(|| subject.short().to_string())
}

/// `airlock artifacts`: every OCI artifact in the store (signatures, SBOMs, charts,
/// attestations inside an image's index) and what each refers to.
pub fn artifacts(store: &Store, layout: Layout) -> Result<()> {
    let images = store.images()?;
    // (name, type, refers to, digest, size)
    let mut rows: Vec<[String; 5]> = Vec::new();
    for img in &images {
        let names: Vec<String> = if img.names.is_empty() {
            vec!["<none>".into()]
        } else {
            img.names.iter().map(|n| n.familiar()).collect()
        };
        let size = |p: &airlock_core::store::PlatformImage| -> u64 {
            std::iter::once(&p.manifest.config)
                .chain(&p.manifest.layers)
                .map(|d| d.size)
                .sum()
        };
        if let Some(kind) = img.artifact_type() {
            let refers = airlock_core::graph::subject_from(img.subject(), &img.names)
                .map(|s| subject_label(&images, &s))
                .unwrap_or_else(|| "-".into());
            for n in &names {
                rows.push([
                    n.clone(),
                    kind.clone(),
                    refers.clone(),
                    img.root.digest.to_string(),
                    size(&img.platforms[0]).to_string(),
                ]);
            }
            continue;
        }
        // Attestations BuildKit puts inside an image's index, beside the platforms.
        for p in img.platforms.iter().filter(|p| !p.is_image()) {
            let refers = p
                .descriptor
                .annotation("vnd.docker.reference.digest")
                .and_then(|d| d.parse::<Digest>().ok())
                .or_else(|| p.manifest.subject.as_ref().map(|s| s.digest.clone()))
                .map(|d| format!("{} ({})", names[0], d.short()))
                .unwrap_or_else(|| names[0].clone());
            rows.push([
                format!("{} (in index)", names[0]),
                p.manifest.artifact_type().unwrap_or_default(),
                refers,
                p.descriptor.digest.to_string(),
                size(p).to_string(),
            ]);
        }
    }
    let records = || -> Vec<Value> {
        rows.iter()
            .map(|[name, kind, refers, digest, size]| {
                listing::ARTIFACT_FIELDS.record(vec![
                    name.clone().into(),
                    kind.clone().into(),
                    refers.clone().into(),
                    digest.clone().into(),
                    size.parse::<u64>().unwrap_or(0).into(),
                ])
            })
            .collect()
    };
    match &layout {
        Layout::Json => return out(&serde_json::to_string_pretty(&records())?),
        Layout::Template(f) => {
            return listing::print(f, &records(), &listing::ARTIFACT_FIELDS, "artifacts")
        }
        Layout::Default => {}
    }
    let table: Vec<[String; 5]> = rows
        .into_iter()
        .map(|[name, kind, refers, digest, size]| {
            let short = digest.strip_prefix("sha256:").unwrap_or(&digest)[..12].to_string();
            [
                name,
                kind,
                refers,
                short,
                human_size(size.parse().unwrap_or(0)),
            ]
        })
        .collect();
    print_table(
        ["NAME", "ARTIFACT TYPE", "REFERS TO", "DIGEST", "SIZE"],
        &table,
    )?;
    Ok(())
}

/// `inspect` of an artifact: what it is, what it refers to, its blobs.
fn inspect_artifact(img: &ImageRecord, kind: String, referrers: Vec<String>) -> Value {
    let p = &img.platforms[0];
    json!({
        "Id": img.id().to_string(),
        "RepoTags": img.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
        "ArtifactType": kind,
        "ManifestDigest": img.root.digest.to_string(),
        "ManifestMediaType": p.manifest.media_type.clone().unwrap_or_else(|| p.descriptor.media_type.clone()),
        "Subject": airlock_core::graph::subject_from(img.subject(), &img.names).map(|s| s.to_string()),
        "Annotations": p.manifest.annotations,
        "Config": {"Digest": p.manifest.config.digest.to_string(), "MediaType": p.manifest.config.media_type, "Size": p.manifest.config.size},
        "Blobs": p.manifest.layers.iter().map(|l| json!({
            "Digest": l.digest.to_string(), "Size": l.size, "MediaType": l.media_type,
            "Title": l.annotation("org.opencontainers.image.title"),
        })).collect::<Vec<_>>(),
        "Referrers": referrers,
    })
}

/// An image's comment as docker shows it: the config's, else its last history entry's.
fn comment(config: &Value) -> Value {
    config
        .get("comment")
        .filter(|c| c.as_str().is_some_and(|c| !c.is_empty()))
        .or_else(|| config.get("history")?.as_array()?.last()?.get("comment"))
        .cloned()
        .unwrap_or_else(|| json!(""))
}

/// `airlock inspect`.
pub fn inspect(
    store: &Store,
    queries: &[String],
    format: Option<crate::template::Format>,
) -> Result<()> {
    let mut out = Vec::new();
    let all = store.images()?;
    for q in queries {
        let img = store.resolve(q)?;
        let at = all.iter().position(|i| i.root.digest == img.root.digest);
        let referrers: Vec<String> =
            airlock_core::graph::referrers(&all, &at.into_iter().collect::<Vec<_>>())
                .into_iter()
                .map(|i| all[i].root.digest.to_string())
                .collect();
        if let Some(kind) = img.artifact_type() {
            out.push(inspect_artifact(&img, kind, referrers));
            continue;
        }
        let p = img.primary();
        let config: Value = serde_json::from_slice(&store.read_blob(&p.manifest.config.digest)?)?;
        // Docker's own fields first, as its inspect has them (a string field the config
        // lacks is empty there, not null).
        let text = |k: &str| config.get(k).cloned().unwrap_or_else(|| json!(""));
        let mut doc = json!({
            "Id": img.id().to_string(),
            "RepoTags": img.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
            "RepoDigests": img.repo_digests(),
            "Parent": "",
            "Comment": comment(&config),
            "Created": config.get("created"),
            "DockerVersion": text("docker_version"),
            "Author": text("author"),
            "Config": listing::docker_container_config(config.get("config")),
            "Architecture": text("architecture"),
            "Os": text("os"),
            "History": config.get("history"),
            "RootFS": {
                "Type": "layers",
                "Layers": p.config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            },
            "Size": image_size(store, &img),
            "ManifestDigest": p.descriptor.digest.to_string(),
            "ManifestMediaType": p.manifest.media_type.clone().unwrap_or_else(|| p.descriptor.media_type.clone()),
            "IndexDigest": (img.root.digest != p.descriptor.digest).then(|| img.root.digest.to_string()),
            "Platforms": img.platforms.iter().filter(|p| p.is_image()).map(|p| p.platform().display()).collect::<Vec<_>>(),
            // A sparse index (a one-platform save) lists more manifests than the store has.
            "ManifestsListed": img.listed,
            "ManifestsPresent": img.platforms.len(),
            "Complete": img.complete(),
            "Attestations": img.platforms.iter().filter(|p| !p.is_image()).map(|p| p.descriptor.digest.to_string()).collect::<Vec<_>>(),
            "Referrers": referrers,
            "Layers": p.manifest.layers.iter().map(|l| json!({
                "Digest": l.digest.to_string(), "Size": l.size, "MediaType": l.media_type,
            })).collect::<Vec<_>>(),
        });
        if let (Some(v), Value::Object(m)) = (config.get("variant"), &mut doc) {
            // Where docker has it: after Architecture, and only when there is one.
            let fields = std::mem::take(m);
            for (k, x) in fields {
                let after = k == "Architecture";
                m.insert(k, x);
                if after {
                    m.insert("Variant".into(), v.clone());
                }
            }
        }
        out.push(doc);
    }
    if let Some(f) = format {
        return listing::print_free(&f, &out, "inspect");
    }
    self::out(&serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// One line per image checked against a signature policy.
pub fn verdict_lines(verdicts: &[(String, airlock_core::trust::Verdict)]) -> Vec<String> {
    verdicts
        .iter()
        .map(|(name, v)| match &v.signed_by {
            Some(rule) if v.unsigned_ok => format!("Accepted unsigned: {name} ({rule})"),
            Some(key) => format!("Signature verified: {name}, signed by {key}"),
            None => format!("Not signed: {name} ({})", v.problems.join("; ")),
        })
        .collect()
}

/// What a load into containerd did: each image named, then the blobs and layers.
pub fn containerd_lines(
    outcome: &airlock_remote::transports::CopyOutcome,
    opts: &airlock_remote::transports::ContainerdOptions,
) -> Vec<String> {
    let Some(r) = &outcome.containerd else {
        return Vec::new();
    };
    let mut lines: Vec<String> = r
        .named
        .iter()
        .map(|n| format!("Loaded {n} into containerd (namespace {})", opts.namespace))
        .collect();
    lines.push(format!(
        "{} blobs sent ({} bytes), {} already there; {} layers unpacked ({})",
        r.sent,
        r.bytes_sent,
        r.existing,
        r.unpacked,
        if opts.unpack {
            opts.snapshotter.as_str()
        } else {
            "--no-unpack"
        }
    ));
    lines
}
