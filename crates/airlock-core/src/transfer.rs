//! The transfer manifest: the bill of materials `save` writes into every archive it makes,
//! first in the tar stream so `airlock review` reads it without reading the rest. It lists
//! every image and artifact with its names, digests, platforms and sizes, the signatures
//! and SBOMs that travel with it and (when `save` was given keys) whether they verified.
//! A detached signature over its exact bytes may follow it (`save --sign-key`). It holds no
//! time: two saves of the same images are the same bytes, signature included (Ed25519,
//! RFC 6979 ECDSA and PKCS #1 v1.5 are deterministic).
//!
//! This module only describes; signing and checking signatures is [`crate::trust`]'s, which
//! implements the two traits here so the archive writer needs no cryptography.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::graph;
use crate::transport::SourceImage;

/// The transfer manifest's name in an archive, and its suffix beside one.
pub const TRANSFER_FILE: &str = "airlock-transfer.json";
/// The detached signature over [`TRANSFER_FILE`]'s bytes.
pub const TRANSFER_SIGNATURE_FILE: &str = "airlock-transfer.json.sig";
/// What the manifest's `mediaType` says.
pub const MEDIA_TYPE: &str = "application/vnd.airlock.transfer.v1+json";

/// Makes detached signatures (an SSH key's SSHSIG, a PEM key's base64 signature).
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The text of a signature file over `message`.
    fn sign_detached(&self, message: &[u8]) -> Result<String>;
}

/// What was found out about the signatures of images before they were written.
pub trait SignatureChecks: Send + Sync + std::fmt::Debug {
    /// The verdict on the image whose root is `root`, if it was checked.
    fn status_of(&self, root: &Digest) -> Option<SignatureStatus>;
}

/// What an archive writer adds about the shipment.
#[derive(Clone, Debug, Default)]
pub struct TransferOptions {
    /// Sign the transfer manifest (and the volume checksums) with this.
    pub signer: Option<Arc<dyn Signer>>,
    /// Record these verdicts in the manifest.
    pub checks: Option<Arc<dyn SignatureChecks>>,
    /// Which shipment file the archive was made from.
    pub shipment: Option<ShipmentOrigin>,
}

/// The shipment file an archive was made from (`sync --output`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ShipmentOrigin {
    /// Its path as given.
    pub file: String,
    /// The digest of its bytes.
    pub digest: Digest,
}

/// What an archive was made from, besides the images: recorded so the far side can tell
/// which shipment and which of its inventories it answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// The shipment file (`sync --output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<ShipmentOrigin>,
    /// The digest of the far side's inventory it leaves out what that lists
    /// (`--incremental-from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Digest>,
    /// How many layers it ships as deltas against layers the far side holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deltas: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The bill of materials of one archive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransferManifest {
    /// [`MEDIA_TYPE`].
    pub media_type: String,
    /// Which program wrote it.
    pub tool: String,
    /// The container images, each with what travels with it.
    pub images: Vec<TransferImage>,
    /// Artifacts whose subject is not among the images (or that have none).
    #[serde(default)]
    pub artifacts: Vec<TransferArtifact>,
    /// How many distinct blobs the archive holds.
    pub blobs: usize,
    /// Their total size in bytes.
    pub size: u64,
    /// The shipment file and inventory it was made from, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// One container image in a transfer manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransferImage {
    /// Its names (none for an untagged image).
    pub names: Vec<String>,
    /// The root manifest or index digest.
    pub digest: Digest,
    /// Docker's image ID.
    pub image_id: Digest,
    /// The root's media type.
    pub media_type: String,
    /// Its platform manifests.
    pub platforms: Vec<TransferPlatform>,
    /// Bytes of every blob it needs.
    pub size: u64,
    /// Signatures, attestations, SBOMs and other artifacts that refer to it.
    #[serde(default)]
    pub referrers: Vec<TransferReferrer>,
    /// Whether its signature was checked before it was written, and what that gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureStatus>,
    /// Bytes the archive carries for it, when that is less than `size` (an incremental
    /// archive leaves out layers the far side has and ships others as deltas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped: Option<u64>,
}

/// One platform manifest of an image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransferPlatform {
    /// `os/architecture[/variant]`, when the index says (a lone manifest does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The manifest digest.
    pub digest: Digest,
    /// How many layers.
    pub layers: usize,
    /// Bytes of its config and layers.
    pub size: u64,
}

/// Something that refers to an image: a signature, an attestation, an SBOM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransferReferrer {
    /// `signature`, `attestation`, `sbom` or `artifact`.
    pub kind: String,
    /// Its root digest.
    pub digest: Digest,
    /// Its artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// An artifact that refers to no image in the archive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransferArtifact {
    /// Its names.
    pub names: Vec<String>,
    /// Its root digest.
    pub digest: Digest,
    /// Its artifact type.
    pub artifact_type: String,
    /// What it refers to, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// A signature check's outcome for one image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignatureStatus {
    /// The key a valid signature was made with, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// Why other signatures did not count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The transfer manifest as found in an archive: its exact bytes and its signature's.
#[derive(Clone, Debug)]
pub struct TransferFiles {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The signature file's bytes, when it was signed.
    pub signature: Option<Vec<u8>>,
}

impl TransferFiles {
    /// The manifest, parsed.
    pub fn parse(&self) -> Result<TransferManifest> {
        let m: TransferManifest =
            crate::spec::parse_json(&self.manifest, TRANSFER_FILE, "transfer manifest")?;
        if m.media_type != MEDIA_TYPE {
            return Err(Error::Usage(format!(
                "{TRANSFER_FILE} is a '{}', not an airlock transfer manifest ({MEDIA_TYPE})",
                m.media_type
            )));
        }
        Ok(m)
    }
}

/// What kind of referrer an artifact is, by its artifact type or its cosign tag.
pub fn referrer_kind(artifact_type: Option<&str>, names: &[crate::Reference]) -> &'static str {
    let tag_suffix = names
        .iter()
        .filter_map(|n| n.tag())
        .find_map(|t| t.rsplit_once('.').map(|(_, s)| s.to_string()));
    let t = artifact_type.unwrap_or("").to_ascii_lowercase();
    match tag_suffix.as_deref() {
        Some("sig") => return "signature",
        Some("att") => return "attestation",
        Some("sbom") => return "sbom",
        _ => {}
    }
    if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") || t.contains("syft") {
        "sbom"
    } else if t.contains("signature") || t.contains("simplesigning") || t.contains("notary") {
        "signature"
    } else if t.contains("sigstore.bundle") {
        // A bundle is a signature or an attestation; cosign's default image signature is
        // the former, and an attestation says in-toto in its artifact type's payload.
        "signature"
    } else if t.contains("in-toto") || t.contains("dsse") || t.contains("attestation") {
        "attestation"
    } else {
        "artifact"
    }
}

impl TransferManifest {
    /// The manifest of an archive holding `images`, with `checks`' verdicts.
    pub fn of(images: &[SourceImage], checks: Option<&dyn SignatureChecks>) -> TransferManifest {
        let blobs = distinct_blobs(images);
        // Which image a manifest digest belongs to, so a referrer finds its image.
        let mut owner: BTreeMap<Digest, usize> = BTreeMap::new();
        let mut out: Vec<TransferImage> = Vec::new();
        let mut positions = Vec::new();
        for img in images.iter().filter(|i| i.artifact_type().is_none()) {
            let n = out.len();
            owner.insert(img.root.digest.clone(), n);
            for p in &img.platforms {
                owner.insert(p.descriptor.digest.clone(), n);
            }
            positions.push(img);
            out.push(TransferImage {
                names: img.names.iter().map(|r| r.to_string()).collect(),
                digest: img.root.digest.clone(),
                image_id: img.id(),
                media_type: img.root.media_type.clone(),
                platforms: img
                    .image_platforms()
                    .map(|p| TransferPlatform {
                        platform: p.descriptor.platform.as_ref().map(|pl| {
                            let mut s = format!("{}/{}", pl.os, pl.architecture);
                            if let Some(v) = &pl.variant {
                                s.push('/');
                                s.push_str(v);
                            }
                            s
                        }),
                        digest: p.descriptor.digest.clone(),
                        layers: p.manifest.layers.len(),
                        size: p.manifest.config.size
                            + p.manifest.layers.iter().map(|l| l.size).sum::<u64>(),
                    })
                    .collect(),
                size: distinct_blobs(std::slice::from_ref(img))
                    .iter()
                    .map(|b| b.size)
                    .sum(),
                referrers: Vec::new(),
                signature: checks.and_then(|c| c.status_of(&img.root.digest)),
                shipped: None,
            });
        }
        let mut artifacts = Vec::new();
        // A referrer of a referrer (a signature on an SBOM) belongs to the same image.
        let mut pending: Vec<&SourceImage> = images
            .iter()
            .filter(|i| i.artifact_type().is_some())
            .collect();
        loop {
            let before = pending.len();
            pending.retain(|a| {
                let subject = graph::subject_from(a.subject(), &a.names);
                let Some(&n) = subject.as_ref().and_then(|s| owner.get(s)) else {
                    return true;
                };
                let ty = a.artifact_type();
                out[n].referrers.push(TransferReferrer {
                    kind: referrer_kind(ty.as_deref(), &a.names).to_string(),
                    digest: a.root.digest.clone(),
                    artifact_type: ty,
                });
                owner.insert(a.root.digest.clone(), n);
                false
            });
            if pending.len() == before {
                break;
            }
        }
        for a in pending {
            artifacts.push(TransferArtifact {
                names: a.names.iter().map(|r| r.to_string()).collect(),
                digest: a.root.digest.clone(),
                artifact_type: a.artifact_type().unwrap_or_default(),
                subject: graph::subject_from(a.subject(), &a.names),
            });
        }
        TransferManifest {
            media_type: MEDIA_TYPE.to_string(),
            tool: format!("airlock {}", env!("CARGO_PKG_VERSION")),
            images: out,
            artifacts,
            blobs: blobs.len(),
            size: blobs.iter().map(|b| b.size).sum(),
            origin: None,
        }
    }

    /// Its bytes as written into an archive (indented: people read it).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Usage(format!("cannot encode the transfer manifest: {e}")))?;
        v.push(b'\n');
        Ok(v)
    }

    /// Where it disagrees with the `images` an archive was found to hold: an image or
    /// artifact missing, added, or named differently. Empty when they agree.
    pub fn differences(&self, images: &[SourceImage]) -> Vec<String> {
        let found = TransferManifest::of(images, None);
        let listed = |m: &TransferManifest| -> BTreeMap<Digest, Vec<String>> {
            m.images
                .iter()
                .map(|i| (i.digest.clone(), i.names.clone()))
                .chain(
                    m.artifacts
                        .iter()
                        .map(|a| (a.digest.clone(), a.names.clone())),
                )
                .chain(
                    m.images
                        .iter()
                        .flat_map(|i| &i.referrers)
                        .map(|r| (r.digest.clone(), Vec::new())),
                )
                .collect()
        };
        let (want, have) = (listed(self), listed(&found));
        let mut diffs = Vec::new();
        for (d, names) in &want {
            match have.get(d) {
                None => diffs.push(format!(
                    "{} is listed but not in the archive",
                    show(d, names)
                )),
                Some(n) if n != names => diffs.push(format!(
                    "{d} is listed as [{}] but named [{}] in the archive",
                    names.join(", "),
                    n.join(", ")
                )),
                _ => {}
            }
        }
        for (d, names) in &have {
            if !want.contains_key(d) {
                diffs.push(format!(
                    "{} is in the archive but not listed",
                    show(d, names)
                ));
            }
        }
        diffs
    }
}

fn show(d: &Digest, names: &[String]) -> String {
    if names.is_empty() {
        d.to_string()
    } else {
        format!("{} ({d})", names.join(", "))
    }
}

impl TransferManifest {
    /// Record for each image the bytes the archive carries for it, where `cost` says what
    /// a blob costs (0 when left out, its delta's size when it ships as one).
    pub fn set_shipped(
        &mut self,
        images: &[SourceImage],
        cost: &dyn Fn(&crate::spec::Descriptor) -> u64,
    ) {
        for t in &mut self.images {
            let Some(img) = images.iter().find(|i| i.root.digest == t.digest) else {
                continue;
            };
            let shipped: u64 = distinct_blobs(std::slice::from_ref(img))
                .iter()
                .map(cost)
                .sum();
            t.shipped = (shipped < t.size).then_some(shipped);
        }
    }
}

/// Every blob `images` need, each once (as the copy engine counts them).
fn distinct_blobs(images: &[SourceImage]) -> Vec<crate::spec::Descriptor> {
    let mut seen = std::collections::BTreeSet::new();
    images
        .iter()
        .flat_map(|i| i.blobs())
        .filter(|b| seen.insert(b.digest.clone()))
        .collect()
}

/// The most a transfer manifest or its signature may be.
const MAX_TRANSFER_FILE: u64 = 16 << 20;

/// The transfer manifest at the front of an archive stream (plain or compressed), read
/// without reading further than the first blob: `save` writes it first. `None` when it is
/// not there (another tool's archive, or one written metadata-last).
pub fn read_front(input: impl std::io::Read + Send) -> Result<Option<TransferFiles>> {
    use std::io::Read;
    let (_, plain) = crate::compression::auto_decoder(input)
        .map_err(|e| Error::stream("read the archive", e))?;
    let mut tar = tar::Archive::new(plain);
    let mut manifest = None;
    let mut signature = None;
    let entries = tar
        .entries()
        .map_err(|e| Error::stream("read the archive", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::stream("read the archive", e))?;
        let path = entry.path_bytes();
        let path = String::from_utf8_lossy(&path)
            .trim_start_matches("./")
            .to_string();
        let slot = match path.as_str() {
            TRANSFER_FILE => &mut manifest,
            TRANSFER_SIGNATURE_FILE => &mut signature,
            p if p.starts_with("blobs/") => break,
            _ => continue,
        };
        let mut bytes = Vec::new();
        entry
            .take(MAX_TRANSFER_FILE)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::stream(format!("read {path} in the archive"), e))?;
        *slot = Some(bytes);
        if manifest.is_some() && signature.is_some() {
            break;
        }
    }
    Ok(manifest.map(|manifest| TransferFiles {
        manifest,
        signature,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{media_type, Descriptor, Manifest};
    use crate::transport::PlatformManifest;

    /// A one-manifest root: an image (no artifact type) or an artifact referring to `subject`.
    fn root(seed: &str, artifact: Option<&str>, subject: Option<&Digest>) -> SourceImage {
        let d = |s: &str| Descriptor::new(media_type::OCI_LAYER, Digest::of(s.as_bytes()), 10);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor::new(
                media_type::OCI_CONFIG,
                Digest::of(format!("c{seed}").as_bytes()),
                5,
            ),
            layers: vec![d(seed)],
            annotations: None,
            artifact_type: artifact.map(str::to_string),
            subject: subject.map(|s| Descriptor::new(media_type::OCI_MANIFEST, s.clone(), 1)),
        };
        let desc = Descriptor::new(
            media_type::OCI_MANIFEST,
            Digest::of(format!("m{seed}").as_bytes()),
            100,
        );
        SourceImage {
            names: Vec::new(),
            root: desc.clone(),
            generated: false,
            platforms: vec![PlatformManifest {
                descriptor: desc,
                manifest,
                diff_ids: Vec::new(),
            }],
        }
    }

    #[test]
    fn referrers_of_referrers_belong_to_the_image_and_orphans_are_artifacts() {
        let mut app = root("app", None, None);
        app.names = vec![crate::Reference::parse("registry.example/app:1").unwrap()];
        let sbom = root(
            "sbom",
            Some("application/spdx+json"),
            Some(&app.root.digest),
        );
        let sbom_sig = root(
            "sig",
            Some(media_type::COSIGN_SIMPLE_SIGNING),
            Some(&sbom.root.digest),
        );
        let chart = root(
            "chart",
            Some("application/vnd.cncf.helm.config.v1+json"),
            None,
        );
        // Listed before their subjects: the walk must not depend on order.
        let images = vec![sbom_sig.clone(), chart.clone(), sbom.clone(), app.clone()];
        let m = TransferManifest::of(&images, None);
        assert_eq!(m.images.len(), 1);
        let kinds: Vec<(&str, &Digest)> = m.images[0]
            .referrers
            .iter()
            .map(|r| (r.kind.as_str(), &r.digest))
            .collect();
        assert!(kinds.contains(&("sbom", &sbom.root.digest)), "{kinds:?}");
        assert!(
            kinds.contains(&("signature", &sbom_sig.root.digest)),
            "{kinds:?}"
        );
        assert_eq!(m.artifacts.len(), 1);
        assert_eq!(m.artifacts[0].digest, chart.root.digest);
        assert_eq!(m.blobs, 4 * 3);
        // It round-trips, and agrees with what it was made of.
        let files = TransferFiles {
            manifest: m.to_bytes().unwrap(),
            signature: None,
        };
        assert_eq!(files.parse().unwrap(), m);
        assert!(m.differences(&images).is_empty());
        // One image less, or renamed: both said.
        let fewer = vec![sbom_sig, chart, sbom];
        let diffs = m.differences(&fewer);
        assert!(
            diffs
                .iter()
                .any(|d| d.contains("is listed but not in the archive")),
            "{diffs:?}"
        );
        let mut renamed = images.clone();
        renamed[3].names = vec![crate::Reference::parse("registry.example/app:2").unwrap()];
        let diffs = m.differences(&renamed);
        assert!(
            diffs.iter().any(|d| d.contains("registry.example/app:2")),
            "{diffs:?}"
        );
    }
}
