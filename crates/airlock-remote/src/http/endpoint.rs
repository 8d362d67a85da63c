//! Where an engine listens and how a connection to it is made: a unix socket, TCP (plain or
//! TLS), or `docker system dial-stdio` run over ssh, the three ways the docker CLI reaches
//! an engine. Every kind gives the same [`Stream`], so the HTTP code above does not care.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ssh::SshPipe;
use super::tls::{self, TlsSession, TlsSettings};
use crate::{RemoteError, Result};

/// Where an engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// A TCP address (`tcp://host:port`), with TLS when `tls` is set.
    Tcp {
        /// `host:port`.
        address: String,
        /// How TLS is spoken, if it is.
        tls: Option<TlsSettings>,
    },
    /// An engine on another machine, reached by running `docker system dial-stdio` there
    /// over ssh (`ssh://[user@]host[:port]`), as the docker CLI does.
    Ssh {
        /// The login name, if the URL gives one (else ssh's own choice).
        user: Option<String>,
        /// The host name or address.
        host: String,
        /// The port, if not ssh's default.
        port: Option<u16>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { address, .. } => write!(f, "tcp://{address}"),
            Endpoint::Ssh { user, host, port } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{host}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl Endpoint {
    /// Open a connection, with `timeout` (`None`: none) on every read and write.
    pub(crate) fn connect(&self, timeout: Option<Duration>) -> Result<Stream> {
        let unreachable = |source: io::Error| RemoteError::NoEngine {
            socket: self.to_string(),
            source,
        };
        match self {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).map_err(unreachable)?;
                s.set_read_timeout(timeout)
                    .and_then(|()| s.set_write_timeout(timeout))
                    .map_err(unreachable)?;
                Ok(Stream::Unix(s))
            }
            Endpoint::Tcp { address, tls } => {
                let s = tcp_connect(address, timeout).map_err(unreachable)?;
                match tls {
                    None => Ok(Stream::Tcp(s)),
                    Some(settings) => {
                        let session = tls::handshake(s, address, settings).map_err(|reason| {
                            RemoteError::EngineTls {
                                host: self.to_string(),
                                reason,
                                origin: settings.origin.clone(),
                            }
                        })?;
                        Ok(Stream::Tls(Arc::new(TlsConn {
                            session: Mutex::new(session),
                            origin: settings.origin.clone(),
                        })))
                    }
                }
            }
            Endpoint::Ssh { user, host, port } => {
                let pipe =
                    SshPipe::spawn(user.as_deref(), host, *port, timeout).map_err(|source| {
                        RemoteError::NoSsh {
                            host: self.to_string(),
                            source,
                        }
                    })?;
                Ok(Stream::Ssh(Arc::new(pipe)))
            }
        }
    }
}

/// Connect to the first address `address` resolves to that answers.
fn tcp_connect(address: &str, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} resolves to no address"),
    );
    for a in address.to_socket_addrs()? {
        let attempt = match timeout {
            Some(t) => TcpStream::connect_timeout(&a, t),
            None => TcpStream::connect(a),
        };
        match attempt {
            Ok(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                // Requests are written whole before an answer is awaited; no need to wait
                // for more bytes to fill a packet.
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One connection to an engine. The TLS session and the ssh pipe are shared between the
/// clones a request makes (one writes the body, one reads the answer; never both at once).
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Arc<TlsConn>),
    Ssh(Arc<SshPipe>),
}

/// A TLS session, and where its certificates came from (for messages about them).
pub(crate) struct TlsConn {
    session: Mutex<TlsSession>,
    origin: String,
}

fn locked(s: &TlsConn) -> std::sync::MutexGuard<'_, TlsSession> {
    s.session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(s.clone()),
            Stream::Ssh(p) => Stream::Ssh(p.clone()),
        })
    }

    /// Tell the engine nothing more is coming (a cut-off request body), keeping the read
    /// side open for its answer.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Tls(s) => tls::shutdown_write(&mut locked(s)),
            Stream::Ssh(p) => {
                p.close_stdin();
                Ok(())
            }
        }
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Tls(s) => locked(s).sock.set_read_timeout(t),
            Stream::Ssh(p) => {
                p.set_read_timeout(t);
                Ok(())
            }
        }
    }

    /// Where the TLS files came from, on a TLS connection.
    pub(crate) fn tls_origin(&self) -> Option<&str> {
        match self {
            Stream::Tls(s) => Some(&s.origin),
            _ => None,
        }
    }

    /// What the transport itself said about a connection that ended before any answer
    /// (ssh's error output), if it said anything.
    pub(crate) fn diagnostics(&self) -> Option<String> {
        match self {
            Stream::Ssh(p) => p.diagnostics(),
            _ => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => tls::read(&mut locked(s), buf),
            Stream::Ssh(p) => p.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => locked(s).write(buf),
            Stream::Ssh(p) => p.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => locked(s).flush(),
            Stream::Ssh(p) => p.flush(),
        }
    }
}
