//! HTTPS for `airlock serve`: a certificate chain and key from PEM files, or a CA of the
//! server's own, made once and kept in a directory, that issues the server's certificate.
//!
//! The CA is kept so that clients trust it once: every start reuses it and issues a fresh
//! server certificate for the names asked for then, so adding a name never means trusting a
//! new CA. Its files are laid out so that the directory itself is a valid `--cert-dir` for
//! skopeo and podman (and a valid `certs.d/HOST:PORT` for docker): those read every `*.crt`
//! as a CA and take every `*.key` for half of a client certificate, refusing the directory
//! when the other half is missing, so the keys live in `private/`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

use crate::{RemoteError, Result};

/// How long a server certificate made here is valid: 825 days, the longest macOS and iOS
/// accept for a TLS server certificate, whoever issued it. It is made anew at every start.
const SERVER_DAYS: u64 = 825;
/// How long the CA made here is valid: long, because trusting it again is manual work on
/// every client.
const CA_DAYS: u64 = 3650;

/// A certificate chain and its key, ready to serve.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    cert: PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert).finish()
    }
}

fn refused(message: String) -> RemoteError {
    RemoteError::ServeRefused(message)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Load a PEM certificate chain (the server's certificate first) and its PEM private
    /// key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Tls> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| refused(format!("cannot read {}: {e}", path.display())))
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                refused(format!(
                    "{} is not a PEM certificate chain: {}",
                    cert.display(),
                    pem_error(e)
                ))
            })?;
        if chain.is_empty() {
            return Err(refused(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert.display()
            )));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => refused(format!(
                "{} holds no PEM private key (PKCS#8, RSA or EC)",
                key.display()
            )),
            e => refused(format!(
                "{} is not a PEM private key: {}",
                key.display(),
                pem_error(e)
            )),
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| refused(format!("TLS cannot be set up: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                refused(match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "{} is not the key of the certificate in {}",
                        key.display(),
                        cert.display()
                    ),
                    e => format!(
                        "{} and {} cannot serve TLS: {e} (keys: RSA, ECDSA P-256 or P-384, Ed25519)",
                        cert.display(),
                        key.display()
                    ),
                })
            })?;
        // HTTP/1.1 is all the server speaks; saying so keeps a client from choosing h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            cert: cert.to_path_buf(),
        })
    }

    /// The acceptor for incoming connections.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => e.to_string(),
        e => format!("{e:?}"),
    }
}

/// What [`generate`] made or found.
#[derive(Debug)]
pub struct Generated {
    /// The CA certificate clients are to trust (`DIR/ca.crt`).
    pub ca_cert: PathBuf,
    /// The CA was made now (else an existing one was reused).
    pub new_ca: bool,
    /// The names and addresses the server certificate holds.
    pub names: Vec<String>,
    /// The server certificate and key, ready to serve.
    pub tls: Tls,
}

/// True for a name a server certificate can hold: an IP address, or a DNS name of letters,
/// digits and hyphens in dot-separated labels (a `*.` wildcard first allowed).
pub fn is_cert_name(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = s.strip_prefix("*.").unwrap_or(s);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// Make (or reuse) a CA in `dir` and issue a server certificate for `names` (127.0.0.1,
/// ::1 and localhost are always in it), written as `dir/ca.crt`, `dir/server.crt`,
/// `dir/private/ca.key` and `dir/private/server.key` (keys mode 0600, `private/` 0700).
pub fn generate(dir: &Path, names: &[String]) -> Result<Generated> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        refused(format!("cannot {what} {}: {e}", path.display()))
    };
    let private = dir.join("private");
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&private)
        .map_err(|e| io("create", &private, e))?;
    let ca_cert = dir.join("ca.crt");
    let ca_key_path = private.join("ca.key");
    let mut all: Vec<String> = ["127.0.0.1", "::1", "localhost"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for n in names {
        if !is_cert_name(n) {
            return Err(refused(format!(
                "{n:?} is not a host name or IP address a certificate can hold"
            )));
        }
        if !all.contains(n) {
            all.push(n.clone());
        }
    }

    let (ca_key, new_ca) = match (ca_key_path.exists(), ca_cert.exists()) {
        (true, true) => {
            let pem =
                std::fs::read_to_string(&ca_key_path).map_err(|e| io("read", &ca_key_path, e))?;
            let key = KeyPair::from_pem(&pem).map_err(|e| {
                refused(format!(
                    "{} is not a key airlock can issue certificates with: {e}",
                    ca_key_path.display()
                ))
            })?;
            (key, false)
        }
        (false, false) => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
                .map_err(|e| refused(format!("cannot make a CA key: {e}")))?;
            let cert = ca_params(&key, CA_DAYS)
                .self_signed(&key)
                .map_err(|e| refused(format!("cannot make a CA certificate: {e}")))?;
            write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_file(&ca_cert, cert.pem().as_bytes(), 0o644)?;
            (key, true)
        }
        (has_key, _) => {
            let (there, missing) = if has_key {
                (&ca_key_path, &ca_cert)
            } else {
                (&ca_cert, &ca_key_path)
            };
            return Err(refused(format!(
                "{} is there but {} is not: remove {} to have a new CA made (every client then has to trust the new one)",
                there.display(),
                missing.display(),
                there.display()
            )));
        }
    };

    // The issuer is rebuilt from the key (the CA's name is derived from it), so no
    // certificate parser is needed to reuse the CA; the check below proves the rebuilt
    // issuer is the one in ca.crt.
    let issuer = Issuer::new(ca_params(&ca_key, CA_DAYS), &ca_key);
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| refused(format!("cannot make a server key: {e}")))?;
    let server = server_params(&all)?
        .signed_by(&server_key, &issuer)
        .map_err(|e| refused(format!("cannot issue the server certificate: {e}")))?;
    check_chain(&ca_cert, server.der())?;
    let server_cert = dir.join("server.crt");
    let server_key_path = private.join("server.key");
    write_file(
        &server_key_path,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&server_cert, server.pem().as_bytes(), 0o644)?;
    Ok(Generated {
        ca_cert,
        new_ca,
        names: all,
        tls: Tls::from_files(&server_cert, &server_key_path)?,
    })
}

fn now_plus(days: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(days * 86_400)
}

/// The CA's parameters, all of them derived from its key: the same key gives the same
/// issuer name and key identifier at every start.
fn ca_params(key: &KeyPair, days: u64) -> CertificateParams {
    let id = hex::encode(Sha256::digest(key.subject_public_key_info()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "airlock");
    // Unique per CA: two airlock CAs trusted on one client must not share a name.
    dn.push(
        DnType::CommonName,
        format!("airlock serve CA {}", &id[..16]),
    );
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = time::OffsetDateTime::now_utc() - std::time::Duration::from_secs(86_400);
    p.not_after = now_plus(days);
    p
}

fn server_params(names: &[String]) -> Result<CertificateParams> {
    let mut sans = Vec::new();
    for n in names {
        sans.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|_| refused(format!("{n:?} is not a name a certificate can hold")))?,
            ),
        });
    }
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.last().cloned().unwrap_or_default(),
    );
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    // An hour back: a client whose clock is a little behind still accepts it.
    p.not_before = time::OffsetDateTime::now_utc() - std::time::Duration::from_secs(3600);
    p.not_after = now_plus(SERVER_DAYS);
    Ok(p)
}

/// Verify the new server certificate against `ca.crt` the way a client will, before
/// anything is served with it: a `ca.crt` that is not the certificate of `ca.key` (replaced,
/// or expired) fails here, with what to do, rather than on every client.
fn check_chain(ca_cert: &Path, leaf: &CertificateDer<'_>) -> Result<()> {
    let pem = std::fs::read(ca_cert)
        .map_err(|e| refused(format!("cannot read {}: {e}", ca_cert.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem).flatten() {
        let _ = roots.add(c);
    }
    let stale = |why: String| {
        refused(format!(
            "{} does not verify the certificate its key issues ({why}): remove it and private/ca.key to have a new CA made (every client then has to trust the new one)",
            ca_cert.display()
        ))
    };
    if roots.is_empty() {
        return Err(stale("it holds no CA certificate".into()));
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| stale(e.to_string()))?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map_err(|e| stale(e.to_string()))?;
    Ok(())
}

/// Write `bytes` to `path` with `mode`, replacing it at once: a crash leaves the old file or
/// the new one, and a key is never readable by others, not even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let fail = |e: std::io::Error| refused(format!("cannot write {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_a_certificate_can_hold() {
        for ok in [
            "localhost",
            "reg.example",
            "a-b.c",
            "10.0.0.1",
            "::1",
            "*.example",
        ] {
            assert!(is_cert_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a_b",
            "reg.example:5000",
            "http://x",
            "a b",
        ] {
            assert!(!is_cert_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_ca_is_made_once_and_reused_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), &["reg.example".into()]).unwrap();
        assert!(first.new_ca);
        assert!(first.names.contains(&"reg.example".to_string()));
        let ca = std::fs::read(&first.ca_cert).unwrap();
        for key in ["private/ca.key", "private/server.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600, "{key}");
        }
        let second = generate(dir.path(), &["other.example".into()]).unwrap();
        assert!(!second.new_ca);
        assert_eq!(std::fs::read(&second.ca_cert).unwrap(), ca);

        // A ca.crt that is not the key's: refused with what to do.
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), &[]).unwrap();
        std::fs::copy(other.path().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
        let err = generate(dir.path(), &[]).unwrap_err().to_string();
        assert!(
            err.contains("does not verify") && err.contains("remove"),
            "{err}"
        );

        // Half a CA: refused.
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        let err = generate(dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains("is there but"), "{err}");
        assert!(generate(other.path(), &["bad name".into()]).is_err());
    }
}
