//! GPG "simple signing": the signatures Red Hat signs release images with and `skopeo copy
//! --sign-by` makes. Each is an OpenPGP signed message whose content is a JSON payload
//! naming the signed manifest's digest (`critical.image.docker-manifest-digest`) and the
//! image's name (`critical.identity.docker-reference`), of type `atomic container
//! signature`. They are checked against the keyrings given, with rpgp (the `pgp` crate):
//! a primary key or a signing subkey that is neither revoked nor expired, and a signature
//! that has not expired.

use std::time::{Duration, SystemTime};

use pgp::composed::{Deserializable, Message, SignedPublicKey};
use pgp::types::{KeyDetails, Timestamp};

use crate::error::{Error, Result};

/// What `critical.type` says in a simple-signing payload.
pub const PAYLOAD_TYPE: &str = "atomic container signature";

/// The OpenPGP public keys (a keyring file: `gpg --export`, binary or armored).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    /// Where it came from, for messages.
    pub label: String,
}

/// True when `bytes` look like an OpenPGP key file rather than a PEM one.
pub fn looks_like_keyring(bytes: &[u8]) -> bool {
    let armored = bytes.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----");
    // A binary key starts with a public-key packet (tag 6), old or new format.
    armored || matches!(bytes.first(), Some(0x98 | 0x99 | 0x9a | 0xc6))
}

impl Keyring {
    /// Parse a keyring file's bytes, named `label` in messages.
    pub fn from_bytes(bytes: &[u8], label: &str) -> Result<Keyring> {
        let bad = |e: pgp::errors::Error| {
            Error::Usage(format!(
                "{label} is not an OpenPGP keyring airlock can read ({e}): give what `gpg --export KEYID` writes"
            ))
        };
        let keys: Vec<SignedPublicKey> = if bytes.starts_with(b"-----") {
            let (keys, _) = SignedPublicKey::from_armor_many(bytes).map_err(bad)?;
            keys.collect::<std::result::Result<_, _>>().map_err(bad)?
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(bad)?
                .collect::<std::result::Result<_, _>>()
                .map_err(bad)?
        };
        if keys.is_empty() {
            return Err(Error::Usage(format!("{label} holds no OpenPGP public key")));
        }
        Ok(Keyring {
            keys,
            label: label.to_string(),
        })
    }

    /// The primary keys' fingerprints (upper-case hex, as gpg prints them).
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint(&k.fingerprint()))
            .collect()
    }
}

fn fingerprint(f: &pgp::types::Fingerprint) -> String {
    hex::encode_upper(f.as_bytes())
}

/// A valid GPG signature's content and signer.
#[derive(Clone, Debug)]
pub struct GpgSigned {
    /// The signed payload.
    pub payload: Vec<u8>,
    /// The primary key's fingerprint, and the keyring it is in.
    pub signer: String,
}

/// When something made at `created` with a lifetime `valid_for` ends (never for none or 0).
fn ends(created: Timestamp, valid_for: Option<pgp::types::Duration>) -> Option<SystemTime> {
    valid_for
        .map(Duration::from)
        .filter(|d| !d.is_zero())
        .map(|d| SystemTime::from(created) + d)
}

/// The content of the signed message `signature` if one of `rings` made it, or why not.
pub fn verify(signature: &[u8], rings: &[Keyring]) -> std::result::Result<GpgSigned, String> {
    let message =
        Message::from_bytes(signature).map_err(|_| "it is not an OpenPGP message".to_string())?;
    let mut message = message
        .decompress()
        .map_err(|e| format!("it cannot be decompressed: {e}"))?;
    if !message.is_signed() && !message.is_one_pass_signed() {
        return Err("it is an OpenPGP message, but not a signed one".into());
    }
    let payload = message
        .as_data_vec()
        .map_err(|e| format!("its content cannot be read: {e}"))?;
    let now = SystemTime::now();
    let mut problems = Vec::new();
    for ring in rings {
        for key in &ring.keys {
            let primary = fingerprint(&key.fingerprint());
            // The newest self-signature says when the key expires.
            let key_ends = key
                .details
                .users
                .iter()
                .flat_map(|u| &u.signatures)
                .max_by_key(|s| s.created().map(|t| t.as_secs()))
                .and_then(|s| ends(key.primary_key.created_at(), s.key_expiration_time()));
            let primary_revoked = !key.details.revocation_signatures.is_empty();
            let mut candidates: Vec<(&dyn pgp::types::VerifyingKey, Option<&str>)> =
                vec![(&key.primary_key, None)];
            for sub in &key.public_subkeys {
                let revoked = sub
                    .signatures
                    .iter()
                    .any(|s| s.typ() == Some(pgp::packet::SignatureType::SubkeyRevocation));
                candidates.push((sub, revoked.then_some("its signing subkey is revoked")));
            }
            for (candidate, subkey_problem) in candidates {
                let Ok(sig) = message.verify(candidate) else {
                    continue;
                };
                let created = sig.created();
                let sig_ends = created.and_then(|c| ends(c, sig.signature_expiration_time()));
                let why = if primary_revoked {
                    Some(format!("key {primary} is revoked"))
                } else if let Some(p) = subkey_problem {
                    Some(format!("key {primary}: {p}"))
                } else if key_ends.is_some_and(|e| e < now) {
                    Some(format!("key {primary} has expired"))
                } else if sig_ends.is_some_and(|e| e < now) {
                    Some("the signature has expired".to_string())
                } else {
                    None
                };
                match why {
                    Some(w) => problems.push(w),
                    None => {
                        return Ok(GpgSigned {
                            payload,
                            signer: format!("GPG key {primary} ({})", ring.label),
                        })
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        problems.push("it is not signed by any key in the keyrings given".into());
    }
    Err(problems.join("; "))
}
