//! Detached signatures over files: the transfer manifest and the volume checksums `save`
//! signs on the near side, and `verify --trusted-key` checks on the far side.
//!
//! Two kinds of key, so a site can use what it already has:
//! - an OpenSSH key: the signature is an armored SSHSIG in the namespace
//!   [`TRANSFER_NAMESPACE`], which `ssh-keygen -Y verify` checks;
//! - a PEM key (ECDSA P-256, RSA, Ed25519, as `openssl genpkey` writes): the signature is
//!   the base64 of the raw signature, the form `cosign sign-blob` prints and
//!   `cosign verify-blob --key` (or `openssl dgst -verify`) checks.
//!
//! The same PEM keys make image signatures ([`SigningKey::sign_raw`]), which cosign checks.

use std::path::Path;

use base64::Engine;
use p256::pkcs8::DecodePrivateKey;

use super::keys::PublicKey;
use crate::error::{Error, Result};

/// The SSHSIG namespace of airlock's transfer signatures (`ssh-keygen -Y verify -n`).
pub const TRANSFER_NAMESPACE: &str = "airlock-transfer";

/// A private key that signs.
#[derive(Debug)]
pub struct SigningKey {
    kind: SigningKind,
    /// Where it came from, for messages.
    pub label: String,
}

#[derive(Debug)]
enum SigningKind {
    Ssh(Box<ssh_key::PrivateKey>),
    EcdsaP256(p256::ecdsa::SigningKey),
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Rsa(Box<rsa::RsaPrivateKey>),
}

fn unusable(label: &str, why: &str) -> Error {
    Error::Usage(format!(
        "{label} is not a signing key airlock can use ({why}): give an unencrypted OpenSSH private key (`ssh-keygen -t ed25519 -N ''`) or a PEM private key (`openssl genpkey -algorithm ed25519`, or EC with `-pkeyopt ec_paramgen_curve:P-256`)"
    ))
}

impl SigningKey {
    /// Read a private key file.
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        SigningKey::from_text(&text, &path.display().to_string())
    }

    /// Parse an OpenSSH or PEM private key, named `label` in messages.
    pub fn from_text(text: &str, label: &str) -> Result<SigningKey> {
        let kind = if text.contains("BEGIN OPENSSH PRIVATE KEY") {
            let key = ssh_key::PrivateKey::from_openssh(text)
                .map_err(|e| unusable(label, &format!("it does not parse: {e}")))?;
            if key.is_encrypted() {
                return Err(unusable(label, "it is encrypted with a passphrase"));
            }
            SigningKind::Ssh(Box::new(key))
        } else if text.contains("ENCRYPTED") {
            return Err(unusable(label, "it is encrypted"));
        } else if let Ok(k) = p256::SecretKey::from_pkcs8_pem(text) {
            SigningKind::EcdsaP256(k.into())
        } else if let Ok(k) = p256::SecretKey::from_sec1_pem(text) {
            SigningKind::EcdsaP256(k.into())
        } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            SigningKind::Ed25519(Box::new(k))
        } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
            SigningKind::Rsa(Box::new(k))
        } else if let Ok(k) =
            <rsa::RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_pem(text)
        {
            SigningKind::Rsa(Box::new(k))
        } else {
            return Err(unusable(label, "not an OpenSSH or PEM private key"));
        };
        Ok(SigningKey {
            kind,
            label: label.to_string(),
        })
    }

    /// The raw signature over `message` as cosign makes it: ECDSA (ASN.1 DER) and RSA
    /// (PKCS #1 v1.5) over its SHA-256, Ed25519 over the message. SSH keys make SSHSIG
    /// only, which no image signature format uses.
    pub fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::{SignatureEncoding, Signer};
        Ok(match &self.kind {
            SigningKind::EcdsaP256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            SigningKind::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            SigningKind::Rsa(k) => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone())
                .sign(message)
                .to_vec(),
            SigningKind::Ssh(_) => {
                return Err(Error::Usage(format!(
                    "{} is an SSH key: image signatures need a PEM key (cosign's format has no SSH signatures)",
                    self.label
                )))
            }
        })
    }

    /// Whether it is an OpenSSH key.
    pub fn is_ssh(&self) -> bool {
        matches!(self.kind, SigningKind::Ssh(_))
    }
}

impl crate::transfer::Signer for SigningKey {
    fn sign_detached(&self, message: &[u8]) -> Result<String> {
        match &self.kind {
            SigningKind::Ssh(k) => k
                .sign(TRANSFER_NAMESPACE, ssh_key::HashAlg::Sha512, message)
                .and_then(|sig| sig.to_pem(ssh_key::LineEnding::LF))
                .map_err(|e| Error::Usage(format!("cannot sign with {}: {e}", self.label))),
            _ => Ok(format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(self.sign_raw(message)?)
            )),
        }
    }
}

/// A public key detached signatures are checked against.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    kind: TrustedKind,
    /// Where it came from, for messages.
    pub label: String,
}

#[derive(Clone, Debug)]
enum TrustedKind {
    Ssh(Box<ssh_key::PublicKey>),
    Pem(Box<PublicKey>),
}

impl TrustedKey {
    /// Read a public key file: a PEM `PUBLIC KEY` or an OpenSSH `.pub` line.
    pub fn from_file(path: &Path) -> Result<TrustedKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let label = path.display().to_string();
        let kind = if text.contains("-----BEGIN") {
            TrustedKind::Pem(Box::new(PublicKey::from_pem(&text, &label)?))
        } else {
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            let key = ssh_key::PublicKey::from_openssh(line).map_err(|_| {
                Error::Usage(format!(
                    "{label} is neither a PEM public key nor an OpenSSH public key (`ssh-ed25519 AAAA...`): give the public half of the key the archive was signed with"
                ))
            })?;
            TrustedKind::Ssh(Box::new(key))
        };
        Ok(TrustedKey { kind, label })
    }

    /// The key for messages: its file and algorithm (and an SSH key's fingerprint).
    pub fn describe(&self) -> String {
        match &self.kind {
            TrustedKind::Ssh(k) => format!(
                "{} ({} {})",
                self.label,
                k.algorithm(),
                k.fingerprint(ssh_key::HashAlg::Sha256)
            ),
            TrustedKind::Pem(k) => format!("{} ({})", self.label, k.algorithm()),
        }
    }

    /// The first of `keys` whose signature over `message` `signature` is (described), or
    /// why none is.
    pub fn verify_any(
        keys: &[TrustedKey],
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<String, String> {
        let mut why = Vec::new();
        for key in keys {
            match key.verify_detached(message, signature) {
                Ok(()) => return Ok(key.describe()),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    /// Whether `signature` (a signature file's bytes) is this key's over `message`, or why
    /// not.
    pub fn verify_detached(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), String> {
        match &self.kind {
            TrustedKind::Ssh(k) => {
                let sig = ssh_key::SshSig::from_pem(signature)
                    .map_err(|_| "the signature is not an SSH signature (SSHSIG)".to_string())?;
                k.verify(TRANSFER_NAMESPACE, message, &sig)
                    .map_err(|_| format!("it is not signed by {}", self.describe()))
            }
            TrustedKind::Pem(k) => {
                let text = String::from_utf8_lossy(signature);
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| "the signature is not base64".to_string())?;
                if k.verifies(message, &raw) {
                    Ok(())
                } else {
                    Err(format!("it is not signed by {}", self.describe()))
                }
            }
        }
    }
}
