//! # airlock-remote
//!
//! The transports that talk to other programs over the network or a socket, turned into
//! the sources and destinations of `airlock-core` so that every command keeps using the one
//! copy path:
//!
//! - [`engine`]: the Docker Engine API on its unix socket (`DOCKER_HOST`), which podman's
//!   Docker-compatible socket also speaks: images out (`/images/get`, streamed through the
//!   same verifying archive reader as `load`), images in (`/images/load`, fed the hybrid
//!   archive the writer produces), and container filesystems (`/containers/{id}/export`).
//!
//! - [`registry`]: registries over the OCI Distribution API (pull, push, login), with basic
//!   and bearer-token auth and credentials kept the way `docker login` keeps them.
//!
//! Everything is blocking: one connection per call, streamed both ways, so memory stays
//! bounded whatever the image size.

#![deny(missing_docs)]

pub mod containerd;
pub mod engine;
pub(crate) mod http;
pub mod registry;
pub mod serve;
pub mod sync;
pub mod transports;

pub use engine::Engine;

/// Errors of the remote transports.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Nothing answers where the engine should be.
    #[error("no Docker Engine answers at {socket}: {source}")]
    NoEngine {
        /// Where the engine was looked for (`unix:///...`, `tcp://...`, `ssh://...`).
        socket: String,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// An engine host (`DOCKER_HOST`, a context's endpoint) is not one airlock can reach.
    #[error("the engine host {0} is not supported: give unix:///PATH, tcp://HOST[:PORT] or ssh://[USER@]HOST[:PORT]")]
    UnsupportedHost(String),
    /// TLS towards a TCP engine failed (its certificate, ours, or the files).
    #[error(
        "no TLS connection to the Docker Engine at {host}: {reason} (TLS files from {origin})"
    )]
    EngineTls {
        /// The engine, `tcp://...`.
        host: String,
        /// What went wrong.
        reason: String,
        /// Where the certificates came from (`DOCKER_CERT_PATH=...`, `context NAME`).
        origin: String,
    },
    /// `ssh` could not be started for an `ssh://` engine.
    #[error("cannot run ssh to reach the Docker Engine at {host}: {source}")]
    NoSsh {
        /// The engine, `ssh://...`.
        host: String,
        /// Why ssh did not start.
        source: std::io::Error,
    },
    /// The docker context asked for does not exist.
    #[error(
        "there is no docker context {name} (no {path}); `docker context ls` lists the contexts"
    )]
    NoContext {
        /// The context name.
        name: String,
        /// Where its description was looked for.
        path: String,
    },
    /// A docker context's description cannot be used.
    #[error("the docker context {name} cannot be used: {reason} ({path})")]
    BadContext {
        /// The context name.
        name: String,
        /// Its `meta.json` (or the config naming it).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine refused a request.
    #[error("the Docker Engine said: {message} (HTTP {status} on {what})")]
    Engine {
        /// HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
        /// What was asked.
        what: String,
    },
    /// The engine sent nothing, or took nothing, for longer than the engine timeout.
    #[error("the Docker Engine at {socket} did not respond for {seconds} s while {doing} (AIRLOCK_ENGINE_TIMEOUT sets the limit in seconds; 0 removes it)")]
    EngineTimeout {
        /// The socket path.
        socket: String,
        /// What was being done ("sending POST /images/load", "reading the answer to ...").
        doing: String,
        /// The timeout, in seconds.
        seconds: u64,
    },
    /// `AIRLOCK_ENGINE_TIMEOUT` is not a number of seconds.
    #[error("AIRLOCK_ENGINE_TIMEOUT={0} is not a number of seconds")]
    BadEngineTimeout(String),
    /// Producing or sending a request body failed part-way, and the engine, which got a
    /// cut-off body, refused the request: the local error is the cause, the engine's answer
    /// comes with it.
    #[error("{source}; the Docker Engine said: {message} (HTTP {status})")]
    BodyAborted {
        /// Why the body could not be produced or sent.
        source: Box<RemoteError>,
        /// The engine's HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
    /// A registry refused a request or could not be reached.
    #[error("registry {host}: {message} ({what})")]
    Registry {
        /// The registry host.
        host: String,
        /// HTTP status (0 when the connection failed).
        status: u16,
        /// What the registry (or the connection) said.
        message: String,
        /// What was asked.
        what: String,
    },
    /// A registry served content that does not match its digest.
    #[error("registry {host} served damaged content: {detail}")]
    Corrupt {
        /// The registry host.
        host: String,
        /// Which content, expected and actual digest.
        detail: String,
    },
    /// Nothing answers on containerd's socket, or it may not be opened.
    #[error("cannot reach containerd at {address}: {reason}")]
    NoContainerd {
        /// The socket path tried.
        address: String,
        /// Why (missing socket, permission denied, not containerd), with what to do.
        reason: String,
    },
    /// containerd refused a call.
    #[error("containerd at {address} refused to {doing}: {message}")]
    Containerd {
        /// The socket path.
        address: String,
        /// What airlock asked it to do.
        doing: String,
        /// containerd's message.
        message: String,
    },
    /// The engine's answer could not be understood.
    #[error("unexpected answer from the Docker Engine: {0}")]
    Protocol(String),
    /// Reading or writing the connection failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A core error (archive, digest, store) while streaming.
    #[error(transparent)]
    Core(#[from] airlock_core::Error),
    /// `airlock serve` cannot start as asked: a TLS or htpasswd file is unusable, or the
    /// options would send passwords in the clear. The message names the file or option.
    #[error("{0}")]
    ServeRefused(String),
}

/// Result alias for this crate.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
