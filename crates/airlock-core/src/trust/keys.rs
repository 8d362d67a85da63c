//! Public keys that signatures are checked against: the PEM `PUBLIC KEY` files `cosign
//! generate-key-pair` and `openssl pkey -pubout` write, for ECDSA P-256, RSA and Ed25519.
//! The cryptography is RustCrypto's; nothing here is hand-written.

use std::path::Path;

use p256::pkcs8::DecodePublicKey;

use crate::error::{Error, Result};

/// A key signatures may be made with.
#[derive(Clone, Debug)]
pub struct PublicKey {
    kind: KeyKind,
    /// Where it came from (a file name), for messages.
    pub label: String,
}

#[derive(Clone, Debug)]
enum KeyKind {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Rsa(Box<rsa::RsaPublicKey>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Read a PEM public key file.
    pub fn from_file(path: &Path) -> Result<PublicKey> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        PublicKey::from_pem(&text, &path.display().to_string())
    }

    /// Parse a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), named `label` in messages.
    pub fn from_pem(text: &str, label: &str) -> Result<PublicKey> {
        let kind = if let Ok(k) = p256::PublicKey::from_public_key_pem(text) {
            KeyKind::EcdsaP256(p256::ecdsa::VerifyingKey::from(k))
        } else if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            KeyKind::Ed25519(k)
        } else if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(text) {
            KeyKind::Rsa(Box::new(k))
        } else {
            return Err(Error::Usage(format!(
                "{label} is not a public key airlock can use: give a PEM `PUBLIC KEY` file (ECDSA P-256, RSA or Ed25519), as `cosign generate-key-pair` or `openssl pkey -pubout` writes"
            )));
        };
        Ok(PublicKey {
            kind,
            label: label.to_string(),
        })
    }

    /// A DER SubjectPublicKeyInfo (a certificate's key), named `label` in messages.
    pub fn from_spki_der(der: &[u8], label: &str) -> Result<PublicKey> {
        let kind = if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            KeyKind::EcdsaP256(p256::ecdsa::VerifyingKey::from(k))
        } else if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            KeyKind::Ed25519(k)
        } else if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
            KeyKind::Rsa(Box::new(k))
        } else {
            return Err(Error::Usage(format!(
                "{label} has a key airlock cannot use (not ECDSA P-256, RSA or Ed25519)"
            )));
        };
        Ok(PublicKey {
            kind,
            label: label.to_string(),
        })
    }

    /// The algorithm, for messages.
    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            KeyKind::EcdsaP256(_) => "ECDSA P-256",
            KeyKind::Rsa(_) => "RSA",
            KeyKind::Ed25519(_) => "Ed25519",
        }
    }

    /// Whether `signature` is this key's over `message`: ECDSA (ASN.1 DER) and RSA
    /// (PKCS #1 v1.5) over its SHA-256, Ed25519 over the message itself, as cosign signs.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        match &self.kind {
            KeyKind::EcdsaP256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            KeyKind::Rsa(k) => {
                let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new((**k).clone());
                rsa::pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|s| vk.verify(message, &s).is_ok())
            }
            KeyKind::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok()),
        }
    }

    /// Whether `signature` is this key's over a message whose SHA-256 is `digest` (a
    /// sigstore message signature gives only the digest). Ed25519 signs messages, not
    /// digests, so it never verifies one.
    pub fn verifies_prehash(&self, digest: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        match &self.kind {
            KeyKind::EcdsaP256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            KeyKind::Rsa(k) => {
                let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new((**k).clone());
                rsa::pkcs1v15::Signature::try_from(signature)
                    .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
            }
            KeyKind::Ed25519(_) => false,
        }
    }
}
