//! Turning shared command-line options into the library's copy request.

use anyhow::Result;

use airlock_core::archive::file::ArchiveOptions;
use airlock_core::archive::writer::ArchiveFormat;
use airlock_core::transport::{inventory, volumes};
use airlock_remote::registry::pull::PlatformChoice;
use airlock_remote::transports::{CopyRequest, Selection};

use crate::context::Context;
use crate::options::{ArchiveArgs, Format, PlatformArgs, SelectArgs};

/// A copy request for `ctx`, with whichever option groups the command has.
pub fn build(
    ctx: &Context,
    queries: Vec<String>,
    select: Option<&SelectArgs>,
    archive: Option<(&ArchiveArgs, Format)>,
    platform: Option<&PlatformArgs>,
) -> Result<CopyRequest> {
    let mut req = CopyRequest {
        registry: ctx.registry.clone(),
        ..CopyRequest::default()
    };
    req.selection = Selection {
        queries,
        patterns: select.map(|s| s.matches.clone()).unwrap_or_default(),
        all: select.is_some_and(|s| s.all),
        without_referrers: select.is_some_and(|s| s.referrers.no_referrers),
        referrer_types: select
            .map(|s| s.referrers.referrer_types.clone())
            .unwrap_or_default(),
        ..Selection::default()
    };
    if let Some((a, format)) = archive {
        req.archive = ArchiveOptions {
            format: match format {
                Format::Docker => ArchiveFormat::Docker,
                Format::Oci => ArchiveFormat::Oci,
            },
            compression: a.compress.codec(),
            level: a.level,
            incremental: a
                .incremental_from
                .as_deref()
                .map(inventory::read)
                .transpose()?,
            transfer: Default::default(),
            deltas_from: match (&a.incremental_from, a.no_deltas) {
                (Some(_), false) => Some(ctx.store()?),
                _ => None,
            },
        };
        req.split = a.split.as_deref().map(volumes::parse_size).transpose()?;
    }
    if let Some(p) = platform {
        req.platform = match (&p.platform, p.all_platforms) {
            (_, true) => PlatformChoice::All,
            (Some(s), _) => PlatformChoice::One(airlock_core::import::parse_platform(s)?),
            (None, false) => PlatformChoice::Host,
        };
    }
    Ok(req)
}
