//! Option types several commands share (a leaf module: it imports nothing of the crate).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use airlock_core::compression::Compression;
use airlock_core::trust;

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
    /// inventory` run there, and ship new layers as deltas against the most similar layer
    /// it has where that is smaller; the archive says it is incremental, and only airlock
    /// loads it, into that store.
    #[arg(long, value_name = "INVENTORY")]
    pub incremental_from: Option<PathBuf>,
    /// With --incremental-from: ship new layers whole, never as deltas.
    #[arg(long, requires = "incremental_from")]
    pub no_deltas: bool,
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

/// Which signatures images must carry: shared by `load`, `verify`, `save`, `copy`, `pull`
/// and `push`.
#[derive(Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Require every image to carry a signature by this key: a PEM public key (ECDSA
    /// P-256, RSA or Ed25519) for cosign signatures, or an OpenPGP keyring (`gpg --export`)
    /// for GPG simple signing; repeat to accept any of several. Checked offline, before
    /// anything is loaded: one unsigned image and nothing is.
    #[arg(long = "key", value_name = "PUB")]
    pub keys: Vec<std::path::PathBuf>,
    /// Require what this containers-policy.json says (the format of
    /// /etc/containers/policy.json): each image judged by its names under
    /// `transports.docker`, else `default`.
    #[arg(long, value_name = "FILE", conflicts_with = "keys")]
    pub policy: Option<std::path::PathBuf>,
    /// Accept keyless (Fulcio) signatures whose certificate chains to a Fulcio CA of this
    /// sigstore `trusted_root.json` and whose Rekor entry a log of it signed; checked
    /// offline. Needs --certificate-identity and --certificate-oidc-issuer.
    #[arg(long, value_name = "FILE", requires_all = ["certificate_identity", "certificate_oidc_issuer"], conflicts_with = "policy")]
    pub trusted_root: Option<std::path::PathBuf>,
    /// The e-mail address or URI a keyless signature's certificate must be issued to.
    #[arg(long, value_name = "SUBJECT", requires = "trusted_root")]
    pub certificate_identity: Option<String>,
    /// The OIDC issuer that must have vouched for it (`https://github.com/login/oauth`).
    #[arg(long, value_name = "URL", requires = "trusted_root")]
    pub certificate_oidc_issuer: Option<String>,
}

/// The signature check a command was asked for.
#[derive(Debug, Clone)]
pub enum SignatureGate {
    /// `--key`: any valid signature by one of the keys.
    Keys(Arc<trust::KeyPolicy>),
    /// `--policy`: containers-policy.json.
    Policy(Arc<trust::policy::PolicyGate>),
}

impl SignatureGate {
    /// As the copy engine's gate.
    pub fn gate(&self) -> Arc<dyn airlock_core::copy::Gate> {
        match self {
            SignatureGate::Keys(k) => k.clone(),
            SignatureGate::Policy(p) => p.clone(),
        }
    }

    /// As the verdicts a transfer manifest records.
    pub fn checks(&self) -> Arc<dyn airlock_core::transfer::SignatureChecks> {
        match self {
            SignatureGate::Keys(k) => k.clone(),
            SignatureGate::Policy(p) => p.clone(),
        }
    }

    /// The verdicts of the last check, image by image.
    pub fn verdicts(&self) -> Vec<(String, trust::Verdict)> {
        match self {
            SignatureGate::Keys(k) => k.verdicts(),
            SignatureGate::Policy(p) => p.verdicts(),
        }
    }
}

impl TrustArgs {
    /// The signature check these options ask for, if any.
    pub fn policy(&self) -> anyhow::Result<Option<SignatureGate>> {
        if let Some(path) = &self.policy {
            let policy = trust::policy::Policy::from_file(path)?;
            return Ok(Some(SignatureGate::Policy(Arc::new(
                trust::policy::PolicyGate::new(policy),
            ))));
        }
        if self.keys.is_empty() && self.trusted_root.is_none() {
            return Ok(None);
        }
        let mut keys = trust::TrustedKeys::from_files(&self.keys)?;
        if let (Some(root), Some(subject), Some(issuer)) = (
            &self.trusted_root,
            &self.certificate_identity,
            &self.certificate_oidc_issuer,
        ) {
            keys.keyless.push(trust::keyless::Keyless {
                root: trust::keyless::TrustedRoot::from_file(root)?,
                identity: trust::keyless::KeylessIdentity {
                    issuer: issuer.clone(),
                    subject: subject.clone(),
                },
            });
        }
        Ok(Some(SignatureGate::Keys(Arc::new(trust::KeyPolicy::new(
            keys,
        )))))
    }
}

/// Which containerd, and which namespace of it.
#[derive(Args, Debug, Clone)]
pub struct ContainerdWhere {
    /// containerd's socket [default: $CONTAINERD_ADDRESS, else /run/containerd/containerd.sock]
    #[arg(long = "address", value_name = "SOCKET")]
    pub address: Option<String>,
    /// containerd namespace (`k8s.io` is what Kubernetes sees).
    #[arg(long, value_name = "NS", default_value = "default")]
    pub namespace: String,
}

impl ContainerdWhere {
    /// The options of the copy request (unpacking as `load` does by default).
    pub fn options(&self) -> airlock_remote::transports::ContainerdOptions {
        airlock_remote::transports::ContainerdOptions {
            address: self.address.clone(),
            namespace: self.namespace.clone(),
            ..Default::default()
        }
    }
}

/// Where `containerd:` is and how images are unpacked there, for `load --into containerd`
/// and `copy ... containerd:`.
#[derive(Args, Debug, Clone)]
pub struct ContainerdArgs {
    #[command(flatten)]
    pub place: ContainerdWhere,
    /// Snapshotter to unpack images for (`native` works where overlayfs does not).
    #[arg(long, value_name = "NAME", default_value = "overlayfs")]
    pub snapshotter: String,
    /// Do not unpack the images (containerd then unpacks on first use).
    #[arg(long)]
    pub no_unpack: bool,
}

impl ContainerdArgs {
    /// The options of the copy request.
    pub fn options(&self) -> airlock_remote::transports::ContainerdOptions {
        airlock_remote::transports::ContainerdOptions {
            snapshotter: self.snapshotter.clone(),
            unpack: !self.no_unpack,
            ..self.place.options()
        }
    }
}
