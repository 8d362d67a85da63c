//! "Copy A to B" for a library user: every transport name opened here, and every command
//! (`load`, `save`, `copy`, `push`, `pull`, `verify`, `load --into`) a call of [`copy`].
//!
//! Sources with random access (the store, a registry) go through the copy engine's planned
//! schedule; archives, layout directories and the Docker Engine's stream through its
//! streaming one. Either way each byte is read once and written once: the only staging is
//! the store's own (all or nothing; kept for a rerun when it pulls or loads split volumes,
//! see `resumed`) and, when a registry is the destination of a stream, the staging a
//! registry needs to know every image first.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use airlock_core::archive::file::{ArchiveFileDestination, ArchiveOptions, ArchiveTarget};
use airlock_core::archive::Dialect;
use airlock_core::compression::Compression;
use airlock_core::copy::stream::{copy_archive, ArchiveInput};
use airlock_core::copy::{copy_images, CopyOptions};
use airlock_core::reference::glob_match;
use airlock_core::store::{Store, TagChange};
use airlock_core::transport::dir::DirDestination;
use airlock_core::transport::discard::DiscardDestination;
use airlock_core::transport::name::TransportName;
use airlock_core::transport::ocidir::OciDirDestination;
use airlock_core::transport::store::{StoreDestination, StoreSource};
use airlock_core::transport::{select, volumes, ImageDestination, ImageSource, SourceImage};
use airlock_core::{Error, Reference};

use crate::registry::discover::ReferrerChoice;
use crate::registry::pull::{blame_registry, pull, PlatformChoice};
use crate::registry::push::{PushReport, RegistryDestination};
use crate::registry::{Registry, RegistryOptions, RegistryTarget};
use crate::{Engine, RemoteError, Result};

/// Which images of the source to copy.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Names, image IDs, short IDs, manifest digests, `repo@sha256:...`.
    pub queries: Vec<String>,
    /// Globs over names (`k8s*`, `*/pause:*`).
    pub patterns: Vec<String>,
    /// Every image.
    pub all: bool,
    /// Leave out the referrers (signatures, SBOMs, attestations with a `subject`) the
    /// source holds for the chosen images; by default they travel with them.
    pub without_referrers: bool,
    /// Keep only referrers of these artifact types (all when empty).
    pub referrer_types: Vec<String>,
    /// Choosing nothing is an answer, not a mistake: a shipment whose every image the far
    /// side holds makes an archive of no images (that still records what it answers).
    pub may_be_empty: bool,
    /// Give every chosen name its far-side form under this rule (a shipment's `rename:`,
    /// `registry.internal/mirror/{repo}`).
    pub rename_rule: Option<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.queries.is_empty() && self.patterns.is_empty() && !self.all
    }
}

/// What the caller can draw: bytes read of the total, the blobs in flight and each one as
/// it finishes. The copy engine's record, filled the same way by every transport: a
/// planned source where each blob is read, a stream where its bytes come in (its blobs
/// shown as they go by).
pub use airlock_core::copy::Progress;

/// Everything a copy can be asked to do; each option applies where it makes sense.
#[derive(Clone, Debug)]
pub struct CopyRequest {
    /// Which images.
    pub selection: Selection,
    /// How an archive destination is written (format, compression, incremental).
    pub archive: ArchiveOptions,
    /// Split an archive destination into volumes of at most this many bytes.
    pub split: Option<u64>,
    /// Which platforms of a registry image.
    pub platform: PlatformChoice,
    /// Registry TLS and credentials.
    pub registry: RegistryOptions,
    /// Progress counters.
    pub progress: Progress,
    /// A `docker://` destination is one exact reference even without a tag (`push IMAGE
    /// HOST/REPO`), not a host and prefix to rename onto.
    pub exact_destination: bool,
    /// What the chosen images must pass (a signature policy) before any becomes visible.
    pub gate: Option<Arc<dyn airlock_core::copy::Gate>>,
    /// Where a `containerd:` destination is, and how images are unpacked there.
    pub containerd: ContainerdOptions,
}

/// A containerd destination's socket, namespace and snapshotter.
#[derive(Clone, Debug)]
pub struct ContainerdOptions {
    /// The socket (`--address`; else `CONTAINERD_ADDRESS`, else containerd's default).
    pub address: Option<String>,
    /// The namespace (`k8s.io` is what Kubernetes sees).
    pub namespace: String,
    /// The snapshotter images are unpacked for.
    pub snapshotter: String,
    /// Unpack images (so a container starts without another step).
    pub unpack: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            address: None,
            namespace: "default".into(),
            snapshotter: "overlayfs".into(),
            unpack: true,
        }
    }
}

impl Default for CopyRequest {
    fn default() -> Self {
        CopyRequest {
            selection: Selection::default(),
            archive: ArchiveOptions::default(),
            split: None,
            platform: PlatformChoice::Host,
            registry: RegistryOptions::default(),
            progress: Progress::default(),
            exact_destination: false,
            gate: None,
            containerd: ContainerdOptions::default(),
        }
    }
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyOutcome {
    /// The images copied, with the names they got.
    pub images: Vec<SourceImage>,
    /// What happened to each name (store and layout destinations).
    pub changes: Vec<TagChange>,
    /// The Docker Engine's "Loaded image" lines.
    pub engine_lines: Vec<String>,
    /// What each pushed name got.
    pub pushed: Vec<PushReport>,
    /// Files written (an archive, or its volumes).
    pub files: Vec<PathBuf>,
    /// The dialect and compression of an archive source.
    pub archive: Option<(Dialect, Compression)>,
    /// What was done with what could not be taken as it was (an invalid name), for the user.
    pub notes: Vec<String>,
    /// The transfer manifest an archive source carries, and its signature.
    pub transfer: Option<airlock_core::transfer::TransferFiles>,
    /// What a load into containerd did.
    pub containerd: Option<crate::containerd::ContainerdReport>,
    /// The transfer manifest an archive destination wrote (what `save` reports from).
    pub written_transfer: Option<airlock_core::transfer::TransferFiles>,
}

mod resumed;

fn usage(msg: String) -> RemoteError {
    RemoteError::Core(Error::Usage(msg))
}

/// A source, opened.
enum Opened<'a> {
    Planned(Box<dyn ImageSource + 'a>, Vec<SourceImage>),
    Stream(ArchiveInput, Option<String>),
}

fn copy_between(
    store: &Store,
    src: &TransportName,
    dst: Option<&TransportName>,
    req: &CopyRequest,
) -> Result<CopyOutcome> {
    let staged = resumed::staging_for(store, src, dst, req)?;
    let result = copy_staged(store, src, dst, req, &staged);
    resumed::settle(staged, &result)?;
    result
}

fn copy_staged(
    store: &Store,
    src: &TransportName,
    dst: Option<&TransportName>,
    req: &CopyRequest,
    staged: &resumed::Staged,
) -> Result<CopyOutcome> {
    let staging = &staged.staging;
    let src_registry = match src {
        TransportName::Registry(r) => {
            Some(Registry::new(Reference::parse(r)?.domain(), &req.registry)?)
        }
        _ => None,
    };
    let opened = match (staged.take_journal(), src) {
        (
            Some(mut r),
            TransportName::DockerArchive(_, name) | TransportName::OciArchive(_, name),
        ) => {
            req.progress.add_total(r.end - r.start);
            r.reader = Box::new(Counted {
                inner: r.reader,
                progress: req.progress.clone(),
            });
            Opened::Stream(ArchiveInput::Resumable(Box::new(r)), name.clone())
        }
        _ => open_source(store, src, src_registry.as_ref(), req)?,
    };
    let rename = dst.and_then(|d| match d {
        TransportName::Registry(_) | TransportName::OciDir(..) => None,
        other => other.image().map(str::to_string),
    });
    let opts = CopyOptions {
        progress: Some(req.progress.clone()),
        gate: req.gate.clone(),
    };
    let mut outcome = CopyOutcome::default();
    let run = |dest: Box<dyn ImageDestination + '_>| -> airlock_core::Result<Ran> {
        run_copy(
            opened,
            dest,
            store,
            &req.selection,
            rename.as_deref(),
            &opts,
        )
    };
    let ran = match dst {
        None => run(Box::new(DiscardDestination {
            references: Some(store.clone()),
        }))?,
        Some(TransportName::Store(_)) => run(Box::new(StoreDestination::new(store, staging)))?,
        Some(TransportName::DockerArchive(p, _)) | Some(TransportName::OciArchive(p, _)) => {
            let mut archive = req.archive.clone();
            if matches!(dst, Some(TransportName::OciArchive(..))) {
                archive.format = airlock_core::archive::writer::ArchiveFormat::Oci;
            }
            let target = match req.split {
                Some(size) => ArchiveTarget::Split(p.clone(), size),
                None if p.as_os_str() == "-" => ArchiveTarget::Stdout,
                None => ArchiveTarget::File(p.clone()),
            };
            let dest = ArchiveFileDestination::create(&target, &archive)?;
            let files = dest.written_files();
            let written = dest.transfer_written();
            let ran = run(Box::new(dest))?;
            outcome.files = files.lock().map(|f| f.clone()).unwrap_or_default();
            outcome.written_transfer = written.lock().ok().and_then(|mut w| w.take());
            ran
        }
        Some(TransportName::OciDir(p, name)) => {
            let mut dest = OciDirDestination::new(p);
            if let Some(n) = name {
                // skopeo's oci:DIR:NAME: NAME is the layout's ref.name, kept as written.
                dest = dest.with_ref_name(n);
            }
            run(Box::new(dest))?
        }
        Some(TransportName::Dir(p)) => run(Box::new(DirDestination::new(p)))?,
        Some(TransportName::DockerDaemon(_)) => {
            let engine = Engine::from_env()?;
            let (ran, lines) = engine.load_with(run)?;
            outcome.engine_lines = lines;
            ran
        }
        Some(TransportName::Containerd(_)) => {
            let o = &req.containerd;
            let client = crate::containerd::Client::connect(
                &crate::containerd::address(o.address.as_deref()),
                &o.namespace,
            )?;
            let dest =
                crate::containerd::ContainerdDestination::new(client, &o.snapshotter, o.unpack)?;
            let report = dest.report();
            let ran = run(Box::new(dest))?;
            outcome.containerd = report.lock().ok().map(|r| r.clone());
            ran
        }
        Some(TransportName::Registry(r)) => {
            let target = if req.exact_destination {
                RegistryTarget::Exact(Reference::parse(r)?)
            } else {
                RegistryTarget::parse(r)?
            };
            let reg = Registry::new(&target.host(), &req.registry)?;
            let dest = RegistryDestination::new(&reg, target);
            let report = dest.report();
            let ran = run(Box::new(dest))?;
            outcome.pushed = report.lock().map(|r| r.clone()).unwrap_or_default();
            ran
        }
    };
    outcome.images = ran.images;
    outcome.changes = ran.changes;
    outcome.archive = ran.archive;
    outcome.notes = ran.notes;
    outcome.notes.extend(staged.note.clone());
    outcome.transfer = ran.transfer;
    Ok(outcome)
}

/// Copy images from `src` to `dst`. `dst` of `None` reads the source through and keeps
/// nothing: `verify`. Bytes from a registry that do not match their digest are blamed on
/// it by name.
pub fn copy(
    store: &Store,
    src: &TransportName,
    dst: Option<&TransportName>,
    req: &CopyRequest,
) -> Result<CopyOutcome> {
    let host = match src {
        TransportName::Registry(r) => Reference::parse(r).ok().map(|r| r.domain().to_string()),
        _ => None,
    };
    copy_between(store, src, dst, req).map_err(|e| match (&host, e) {
        (Some(h), RemoteError::Core(c)) if c.to_string().contains(" from registry ") => {
            blame_registry(h, RemoteError::Core(c))
        }
        (_, e) => e,
    })
}

struct Ran {
    images: Vec<SourceImage>,
    changes: Vec<TagChange>,
    archive: Option<(Dialect, Compression)>,
    notes: Vec<String>,
    transfer: Option<airlock_core::transfer::TransferFiles>,
}

fn open_source<'a>(
    store: &'a Store,
    src: &TransportName,
    registry: Option<&'a Registry>,
    req: &CopyRequest,
) -> Result<Opened<'a>> {
    let progress = &req.progress;
    Ok(match src {
        TransportName::Store(name) => {
            let source = StoreSource::new(store)?;
            let mut sel = req.selection.clone();
            sel.queries.extend(name.iter().cloned());
            if sel.is_empty() && !sel.may_be_empty {
                return Err(usage(
                    "name the images: store:NAME (or just NAME), --match PATTERN or --all".into(),
                ));
            }
            let images = select_images(source.images(), &sel)?;
            set_total(progress, &images);
            Opened::Planned(Box::new(source), images)
        }
        TransportName::DockerArchive(p, name) | TransportName::OciArchive(p, name) => {
            let (reader, total) = if p.as_os_str() == "-" {
                (Box::new(std::io::stdin()) as Box<dyn Read + Send>, 0)
            } else {
                volumes::open_input(p)?
            };
            progress.add_total(total);
            let counted = Counted {
                inner: reader,
                progress: progress.clone(),
            };
            Opened::Stream(ArchiveInput::Stream(Box::new(counted)), name.clone())
        }
        TransportName::OciDir(p, name) => {
            Opened::Stream(ArchiveInput::Dir(p.clone()), name.clone())
        }
        TransportName::Dir(p) => Opened::Stream(ArchiveInput::Dir(p.clone()), None),
        TransportName::Containerd(name) => {
            let o = &req.containerd;
            let client = crate::containerd::Client::connect(
                &crate::containerd::address(o.address.as_deref()),
                &o.namespace,
            )?;
            let mut names: Vec<String> = name.iter().cloned().collect();
            names.extend(req.selection.queries.iter().cloned());
            if names.is_empty() {
                return Err(usage("name the image: containerd:NAME".into()));
            }
            let all = matches!(req.platform, PlatformChoice::All);
            let source = crate::containerd::ContainerdSource::open(client, &names, all)?;
            let images = source.images().to_vec();
            set_total(progress, &images);
            Opened::Planned(Box::new(source), images)
        }
        TransportName::DockerDaemon(name) => {
            let engine = Engine::from_env()?;
            let mut names: Vec<String> = name.iter().cloned().collect();
            names.extend(req.selection.queries.iter().cloned());
            if !req.selection.patterns.is_empty() || req.selection.all {
                for img in engine.list_images()? {
                    for tag in img.repo_tags {
                        let full = Reference::parse(&tag)
                            .map(|r| r.to_string())
                            .unwrap_or_default();
                        let hit = req.selection.all
                            || req
                                .selection
                                .patterns
                                .iter()
                                .any(|p| glob_match(p, &tag) || glob_match(p, &full));
                        if hit && !names.contains(&tag) {
                            names.push(tag);
                        }
                    }
                }
                if names.is_empty() {
                    return Err(RemoteError::Core(Error::NothingMatches {
                        pattern: req.selection.patterns.join(" "),
                    }));
                }
            }
            if names.is_empty() {
                return Err(usage("name the image: docker-daemon:NAME".into()));
            }
            let stream = engine.save_images(&names)?;
            let counted = Counted {
                inner: stream,
                progress: progress.clone(),
            };
            // Everything the engine sends was asked for by name.
            Opened::Stream(ArchiveInput::Stream(Box::new(counted)), None)
        }
        TransportName::Registry(r) => {
            let reference = Reference::parse(r)?;
            let reg = registry.expect("a registry client for a registry source");
            let referrers = ReferrerChoice {
                drop: req.selection.without_referrers,
                types: req.selection.referrer_types.clone(),
            };
            let source = pull(reg, &reference, &req.platform, Some(store), &referrers)?;
            let images = source.images().to_vec();
            set_total(progress, &images);
            Opened::Planned(Box::new(source), images)
        }
    })
}

fn set_total(progress: &Progress, images: &[SourceImage]) {
    let total: u64 = airlock_core::copy::blobs_of(images)
        .iter()
        .map(|b| b.size)
        .sum();
    progress.add_total(total);
}

/// The images `sel` picks (all of them when it names none); never none at all, so no
/// destination is left with an empty archive or an empty push.
fn select_images(
    images: &[SourceImage],
    sel: &Selection,
) -> airlock_core::Result<Vec<SourceImage>> {
    let mut picked = if sel.is_empty() && sel.may_be_empty {
        Vec::new()
    } else if sel.is_empty() {
        images.to_vec()
    } else {
        select(images, &sel.queries, &sel.patterns, sel.all)?
    };
    if !sel.without_referrers {
        // A signature or SBOM goes where its image goes, and theirs in turn.
        let chosen: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| picked.iter().any(|p| p.root.digest == i.root.digest))
            .map(|(n, _)| n)
            .collect();
        for n in airlock_core::graph::referrers(images, &chosen) {
            let kind = images[n].artifact_type().unwrap_or_default();
            if sel.referrer_types.is_empty() || sel.referrer_types.contains(&kind) {
                picked.push(images[n].clone());
            }
        }
    }
    // A source that holds nothing got past its reader only as a shipment that says so.
    if picked.is_empty() && !sel.may_be_empty && !images.is_empty() {
        return Err(Error::Usage("the source has no images to copy".into()));
    }
    if let Some(rule) = &sel.rename_rule {
        for img in &mut picked {
            for n in &mut img.names {
                *n = airlock_core::shipment::rename(rule, n)?;
            }
        }
    }
    Ok(picked)
}

/// Give the image the destination's name, if it has one (only for a single image; its
/// referrers, which travel with it, keep theirs).
fn rename(images: &mut [SourceImage], name: Option<&str>) -> airlock_core::Result<()> {
    if let Some(n) = name {
        let subjects = airlock_core::graph::subjects_among(images);
        let mains: Vec<usize> = (0..images.len())
            .filter(|&i| subjects[i].is_none())
            .collect();
        if mains.len() != 1 {
            return Err(Error::Usage(format!(
                "the source holds {} images; a destination name fits only one",
                mains.len()
            )));
        }
        images[mains[0]].names = vec![Reference::parse(n)?];
    }
    Ok(())
}

fn run_copy(
    opened: Opened<'_>,
    dest: Box<dyn ImageDestination + '_>,
    store: &Store,
    selection: &Selection,
    rename_to: Option<&str>,
    opts: &CopyOptions,
) -> airlock_core::Result<Ran> {
    // (Planned sources count progress in the copy engine, where blobs are read.)
    match opened {
        Opened::Planned(source, mut images) => {
            rename(&mut images, rename_to)?;
            let changes = copy_images(source.as_ref(), &images, dest, opts)?;
            Ok(Ran {
                images,
                changes,
                archive: None,
                notes: Vec::new(),
                transfer: None,
            })
        }
        Opened::Stream(input, name) => {
            let mut sel = selection.clone();
            sel.queries.extend(name);
            let choose = |all: Vec<SourceImage>| {
                let mut images = select_images(&all, &sel)?;
                rename(&mut images, rename_to)?;
                Ok(images)
            };
            // Stream bytes are counted as they come in (`Counted`); the engine shows the
            // blobs among them without counting them again.
            let report = copy_archive(input, dest, &choose, Some(store), opts)?;
            Ok(Ran {
                images: report.images,
                changes: report.changes,
                archive: Some((report.dialect, report.compression)),
                notes: report.notes,
                transfer: report.transfer,
            })
        }
    }
}

/// Counts the bytes read from a stream.
struct Counted {
    inner: Box<dyn Read + Send>,
    progress: Progress,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_done(n as u64);
        Ok(n)
    }
}
