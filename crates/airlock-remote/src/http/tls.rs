//! TLS towards an engine on TCP, set up the way the docker CLI does with
//! `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` or a context's TLS files: the engine's
//! certificate checked against `ca.pem` (else the system's roots), and `cert.pem`/`key.pem`
//! presented when the engine asks for a client certificate.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

/// TLS towards a TCP engine, from `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` or a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA that signed the engine's certificate (else the system's roots).
    pub ca: Option<PathBuf>,
    /// The client certificate and its key, when the engine asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Check the engine's certificate (`DOCKER_TLS_VERIFY`; a context's `SkipTLSVerify`
    /// turns it off).
    pub verify: bool,
    /// Where the files came from, for messages ("DOCKER_CERT_PATH=/x", "context prod").
    pub origin: String,
}

/// A TLS session over its TCP connection.
pub(crate) type TlsSession = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Connect TLS over `sock` to `address` (`host:port`) and finish the handshake, so that a
/// certificate problem is reported as one, before any request is sent.
pub(crate) fn handshake(
    sock: TcpStream,
    address: &str,
    settings: &TlsSettings,
) -> Result<TlsSession, String> {
    let config = client_config(settings)?;
    let host = host_of(address);
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("'{host}' is not a host name TLS can check"))?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut session = rustls::StreamOwned::new(conn, sock);
    while session.conn.is_handshaking() {
        session
            .conn
            .complete_io(&mut session.sock)
            .map_err(|e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => tls.to_string(),
                None if e.kind() == io::ErrorKind::UnexpectedEof => {
                    "the engine closed the connection during the handshake (is it speaking TLS, and does it take this client certificate?)".to_string()
                }
                None => e.to_string(),
            })?;
    }
    Ok(session)
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

fn client_config(settings: &TlsSettings) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if !settings.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(accept_any(provider))
    } else {
        let mut roots = RootCertStore::empty();
        match &settings.ca {
            Some(ca) => {
                for cert in certificates(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                }
            }
            None => {
                // No ca.pem: the engine's certificate must chain to a CA the system trusts.
                let native = rustls_native_certs::load_native_certs()
                    .map_err(|e| format!("the system's CA certificates: {e}"))?;
                roots.add_parsable_certificates(native);
            }
        }
        builder.with_root_certificates(roots)
    };
    match &settings.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: not a PEM private key ({e})", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))
        }
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Read from the session. An engine that closes the TCP connection without TLS's
/// close_notify ends the stream like one that sent it: the HTTP framing (sizes, chunks)
/// and the digests above tell a cut-off answer from a whole one.
pub(crate) fn read(s: &mut TlsSession, buf: &mut [u8]) -> io::Result<usize> {
    match s.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// End the write side: close_notify, then the TCP write half.
pub(crate) fn shutdown_write(s: &mut TlsSession) -> io::Result<()> {
    s.conn.send_close_notify();
    while s.conn.wants_write() {
        s.conn.write_tls(&mut s.sock)?;
    }
    s.sock.flush()?;
    s.sock.shutdown(std::net::Shutdown::Write)
}

/// A verifier that takes any certificate: for `--insecure` registries and for contexts and
/// `DOCKER_TLS` without verification, where the user asked for exactly that.
pub(crate) fn accept_any(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAny(provider))
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host_of("127.0.0.1:2376"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2376"), "::1");
        assert_eq!(host_of("engine.example"), "engine.example");
    }
}
