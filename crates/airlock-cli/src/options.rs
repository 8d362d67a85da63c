//! Option types several commands share (a leaf module: it imports nothing of the crate).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use airlock_core::compression::Compression;

/// Archive layout.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Format {
    /// OCI layout plus manifest.json: loads everywhere.
    Docker,
    /// A pure OCI archive.
    Oci,
}

/// Compression of a whole archive or tar.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Compress {
    /// None.
    None,
    /// gzip, on every core.
    Gzip,
    /// zstd, on every core.
    Zstd,
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

/// How `images` prints.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ListFormat {
    /// A table.
    Table,
    /// JSON.
    Json,
}

/// How an archive is written: shared by `save` and `copy`.
#[derive(Args, Debug, Clone)]
pub struct ArchiveArgs {
    /// Compress the whole archive (uses every core).
    #[arg(long, value_enum, default_value_t = Compress::None)]
    pub compress: Compress,
    /// Compression level (gzip 1-9, default 6; zstd 1-19, default 3).
    #[arg(long, value_name = "N")]
    pub level: Option<i32>,
    /// Write volumes of at most SIZE (4G, 3900M, ...) as FILE.000, FILE.001, ... for
    /// removable media; `load -i FILE.000` joins them.
    #[arg(long, value_name = "SIZE")]
    pub split: Option<String>,
    /// Leave out the layers the receiving store already has, as listed by `airlock
    /// inventory` run there; the archive says it is incremental, and only airlock loads it.
    #[arg(long, value_name = "INVENTORY")]
    pub incremental_from: Option<PathBuf>,
}

/// Which images: shared by `save`, `copy` and `push`.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectArgs {
    /// Select images whose name matches this glob (`k8s*`, `*/pause:*`); repeatable.
    #[arg(long = "match", value_name = "PATTERN")]
    pub matches: Vec<String>,
    /// Every image of the source.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub referrers: ReferrerArgs,
}

/// Which referrers (signatures, SBOMs, attestations) go with the chosen images: shared by
/// `save`, `copy`, `pull` and `push`.
#[derive(Args, Debug, Clone, Default)]
pub struct ReferrerArgs {
    /// Leave behind the signatures, SBOMs and attestations that refer to the chosen
    /// images (by default they go with them).
    #[arg(long)]
    pub no_referrers: bool,
    /// Keep only referrers of this artifact type (repeat for more), e.g.
    /// `application/spdx+json` or `application/vnd.dev.cosign.simplesigning.v1+json`.
    #[arg(
        long = "referrer-type",
        value_name = "TYPE",
        conflicts_with = "no_referrers"
    )]
    pub referrer_types: Vec<String>,
}

/// Which platforms of a registry image: shared by `pull` and `copy`.
#[derive(Args, Debug, Clone, Default)]
pub struct PlatformArgs {
    /// Keep only this platform of a multi-platform image, os/arch[/variant].
    #[arg(long, conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Keep every platform (the index is kept whole).
    #[arg(long)]
    pub all_platforms: bool,
}

/// Which signatures images must carry: shared by `load`, `verify`, `copy`, `pull` and `push`.
#[derive(Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Require every image to carry a cosign signature by this public key (PEM: ECDSA
    /// P-256, RSA or Ed25519); repeat to accept any of several keys. Checked offline,
    /// before anything is loaded: one unsigned image and nothing is.
    #[arg(long = "key", value_name = "PUB")]
    pub keys: Vec<std::path::PathBuf>,
}

impl TrustArgs {
    /// The signature policy these options ask for, if any.
    pub fn policy(&self) -> anyhow::Result<Option<std::sync::Arc<airlock_core::trust::KeyPolicy>>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let keys = self
            .keys
            .iter()
            .map(|k| airlock_core::trust::PublicKey::from_file(k))
            .collect::<airlock_core::Result<Vec<_>>>()?;
        Ok(Some(std::sync::Arc::new(
            airlock_core::trust::KeyPolicy::new(keys),
        )))
    }
}
