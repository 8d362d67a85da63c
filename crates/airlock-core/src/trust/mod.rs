//! Trust across the gap: signatures checked offline, before anything is loaded.
//!
//! A [`KeyPolicy`] is a [`crate::copy::Gate`]: the copy engine asks it about the chosen
//! images after they are verified and before the destination makes any of them visible, so
//! an archive with one unsigned image loads nothing. Only the keys given count; nothing
//! here asks a network.

pub mod bundle;
pub mod cosign;
pub mod detached;
pub mod gpg;
pub mod keyless;
pub mod keys;
pub mod pki;
pub mod policy;
pub mod sign;

use std::sync::Mutex;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::transport::SourceImage;

pub use cosign::Verdict;
pub use detached::{SigningKey, TrustedKey};
pub use keys::PublicKey;

/// The keys signatures are checked against: PEM keys for cosign signatures, OpenPGP
/// keyrings for GPG ones.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    /// cosign keys.
    pub pem: Vec<PublicKey>,
    /// GPG keyrings.
    pub gpg: Vec<gpg::Keyring>,
    /// Trusted roots and identities for keyless signatures.
    pub keyless: Vec<keyless::Keyless>,
    /// A site's own CAs for certificate-carrying cosign signatures.
    pub pki: Vec<pki::Pki>,
}

impl TrustedKeys {
    /// Read key files, each a PEM public key or an OpenPGP keyring (told apart by content).
    pub fn from_files(paths: &[std::path::PathBuf]) -> Result<TrustedKeys> {
        let mut keys = TrustedKeys::default();
        for p in paths {
            let bytes = std::fs::read(p).map_err(|e| Error::io("read", p, e))?;
            let label = p.display().to_string();
            if gpg::looks_like_keyring(&bytes) {
                keys.gpg.push(gpg::Keyring::from_bytes(&bytes, &label)?);
            } else {
                let text = String::from_utf8_lossy(&bytes);
                keys.pem.push(PublicKey::from_pem(&text, &label)?);
            }
        }
        Ok(keys)
    }
}

/// Every container image must carry a signature by one of these keys.
#[derive(Debug)]
pub struct KeyPolicy {
    keys: TrustedKeys,
    /// Each image checked (its names or digest) and its verdict, for the caller to print.
    verdicts: VerdictLog,
}

/// The verdicts of a gate's last check, kept for the caller to print and for the transfer
/// manifest to record.
#[derive(Debug, Default)]
pub(crate) struct VerdictLog(Mutex<Vec<(String, Verdict)>>);

impl VerdictLog {
    /// Keep `verdicts`; refuse (naming each image and why) unless all were accepted.
    pub(crate) fn record(&self, verdicts: Vec<(String, Verdict)>) -> Result<()> {
        let refused: Vec<String> = verdicts
            .iter()
            .filter(|(_, v)| v.signed_by.is_none())
            .map(|(name, v)| format!("{name} ({})", v.problems.join("; ")))
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = verdicts;
        if refused.is_empty() {
            Ok(())
        } else {
            Err(Error::NotSigned {
                detail: refused.join(", "),
            })
        }
    }

    /// The verdicts kept.
    pub(crate) fn all(&self) -> Vec<(String, Verdict)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The verdict on the image whose root is `root`, as a transfer manifest records it.
    pub(crate) fn status_of(&self, root: &Digest) -> Option<crate::transfer::SignatureStatus> {
        let verdicts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        verdicts
            .iter()
            .find(|(_, v)| &v.image == root)
            .map(|(_, v)| crate::transfer::SignatureStatus {
                signed_by: v.signed_by.clone(),
                problems: v.problems.clone(),
            })
    }
}

impl KeyPolicy {
    /// A policy requiring a signature by any of `keys`.
    pub fn new(keys: TrustedKeys) -> KeyPolicy {
        KeyPolicy {
            keys,
            verdicts: VerdictLog::default(),
        }
    }

    /// The verdicts of the last check, image by image.
    pub fn verdicts(&self) -> Vec<(String, Verdict)> {
        self.verdicts.all()
    }
}

/// How an image is named in verdicts: its names, else its root digest.
fn label(img: &SourceImage) -> String {
    if img.names.is_empty() {
        img.root.digest.to_string()
    } else {
        let names: Vec<String> = img.names.iter().map(|n| n.familiar()).collect();
        names.join(", ")
    }
}

impl crate::transfer::SignatureChecks for KeyPolicy {
    fn status_of(&self, root: &Digest) -> Option<crate::transfer::SignatureStatus> {
        self.verdicts.status_of(root)
    }
}

impl crate::copy::Gate for KeyPolicy {
    fn check(
        &self,
        images: &[SourceImage],
        read: &dyn Fn(&Digest) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let mut verdicts = Vec::new();
        for img in images.iter().filter(|i| i.artifact_type().is_none()) {
            verdicts.push((
                label(img),
                cosign::verify_image(img, images, &self.keys, read),
            ));
        }
        self.verdicts.record(verdicts)
    }
}

/// Check the transfer manifest `files` of `archive` against `keys`, and that it lists
/// exactly the `images` the archive was read to hold. Returns the key it is signed with.
pub fn check_transfer(
    archive: &str,
    files: Option<&crate::transfer::TransferFiles>,
    images: &[SourceImage],
    keys: &[TrustedKey],
) -> Result<String> {
    let refuse = |detail: String| Error::TransferNotTrusted {
        archive: archive.to_string(),
        detail,
    };
    let files = files.ok_or_else(|| {
        refuse("it has none (it was not written by airlock save, or not by this version)".into())
    })?;
    let signature = files
        .signature
        .as_deref()
        .ok_or_else(|| refuse("it is not signed (save it with --sign-key)".into()))?;
    let signed_by = TrustedKey::verify_any(keys, &files.manifest, signature).map_err(refuse)?;
    let manifest = files.parse()?;
    let diffs = manifest.differences(images);
    if !diffs.is_empty() {
        return Err(refuse(format!(
            "it does not list what the archive holds: {}",
            diffs.join("; ")
        )));
    }
    Ok(signed_by)
}
