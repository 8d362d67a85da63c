//! The Docker Engine as a source and destination of images, and of container filesystems.
//!
//! Images leave the engine as the tar `docker save` writes (`GET /images/get`): a stream
//! the copy engine reads once, like any archive, handing each blob to the destination as it
//! goes by (nothing staged unless the destination is the store). Images enter it as the
//! hybrid archive `airlock save` writes (`POST /images/load`), produced while it is sent, so
//! an OCI-only or containerd archive loads even into a Docker that cannot read those.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use airlock_core::archive::writer::{ArchiveFormat, ArchiveWriter};
use airlock_core::compression::Compression;
use airlock_core::copy::BlobReader;
use airlock_core::spec::Descriptor;
use airlock_core::store::TagChange;
use airlock_core::transport::{ImageDestination, SourceImage};
use airlock_core::Digest;

use crate::http::{self, error_message, io_err, percent_encode};
pub use crate::http::{Endpoint, TlsSettings};
use crate::{RemoteError, Result};

pub mod host;

const TIMEOUT_VAR: &str = "AIRLOCK_ENGINE_TIMEOUT";

/// A Docker Engine (or podman's Docker-compatible service), on a unix socket, on TCP
/// (plain or TLS), or on another machine through ssh.
#[derive(Clone, Debug)]
pub struct Engine {
    endpoint: Endpoint,
    timeout: Option<Duration>,
}

impl Engine {
    /// The engine the docker CLI would talk to ([`host::from_environment`]: `DOCKER_HOST`,
    /// else the current docker context, else `/var/run/docker.sock`), with the timeout
    /// `AIRLOCK_ENGINE_TIMEOUT` sets (seconds; 0 for none), else the default.
    pub fn from_env() -> Result<Engine> {
        let engine = Engine::reached_at(host::from_environment()?);
        let timeout = match std::env::var(TIMEOUT_VAR) {
            Ok(v) if !v.trim().is_empty() => parse_timeout(&v)?,
            Err(std::env::VarError::NotUnicode(v)) => {
                return Err(RemoteError::BadEngineTimeout(
                    v.to_string_lossy().into_owned(),
                ))
            }
            _ => engine.timeout,
        };
        Ok(engine.with_timeout(timeout))
    }

    /// The engine on a given socket, with the default timeout (10 minutes).
    pub fn at(socket: impl Into<PathBuf>) -> Engine {
        Engine::reached_at(Endpoint::Unix(socket.into()))
    }

    /// The engine at `endpoint`, with the default timeout (10 minutes).
    pub fn reached_at(endpoint: Endpoint) -> Engine {
        Engine {
            endpoint,
            timeout: Some(http::DEFAULT_TIMEOUT),
        }
    }

    /// How long the engine may go without sending or taking a byte before a request fails
    /// with [`RemoteError::EngineTimeout`] (`None`: forever).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Engine {
        self.timeout = timeout;
        self
    }

    /// The timeout (see [`Engine::with_timeout`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Where the engine is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn check(&self, what: &str, r: http::Response) -> Result<http::Response> {
        if r.status < 400 {
            return Ok(r);
        }
        let status = r.status;
        let message = error_message(&r.text().unwrap_or_default());
        Err(RemoteError::Engine {
            status,
            message,
            what: what.to_string(),
        })
    }

    /// Check that the engine answers.
    pub fn ping(&self) -> Result<()> {
        let r = http::request(&self.endpoint, self.timeout, "GET", "/_ping")?;
        self.check("ping", r).map(|_| ())
    }

    /// The images as one `docker save` tar stream.
    pub fn save_images(&self, names: &[String]) -> Result<Box<dyn Read + Send>> {
        let query: Vec<String> = names
            .iter()
            .map(|n| format!("names={}", percent_encode(n)))
            .collect();
        let path = format!("/images/get?{}", query.join("&"));
        let r = http::request(&self.endpoint, self.timeout, "GET", &path)?;
        Ok(self.check(&format!("save {}", names.join(" ")), r)?.body)
    }

    /// A container's filesystem as one flat tar (`docker export`).
    pub fn export_container(&self, container: &str) -> Result<Box<dyn Read + Send>> {
        let path = format!("/containers/{}/export", percent_encode(container));
        let r = http::request(&self.endpoint, self.timeout, "GET", &path)?;
        Ok(self
            .check(&format!("export container {container}"), r)?
            .body)
    }

    /// Load images into the engine: `produce` writes an image archive, which is streamed to
    /// the engine as it is written. Returns the engine's "Loaded image" lines.
    pub fn load_images(
        &self,
        produce: impl FnOnce(Box<dyn Write + Send>) -> Result<()>,
    ) -> Result<Vec<String>> {
        let r = http::request_with_body(
            &self.endpoint,
            self.timeout,
            "POST",
            "/images/load?quiet=1",
            "application/x-tar",
            produce,
        )?;
        let r = self.check("load", r)?;
        let text = r.text()?;
        // The answer is a stream of JSON messages; an error can arrive with HTTP 200.
        let mut loaded = Vec::new();
        for v in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            let v = v.map_err(|e| RemoteError::Protocol(format!("load answer: {e}")))?;
            if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                return Err(RemoteError::Engine {
                    status: 200,
                    message: err.to_string(),
                    what: "load".into(),
                });
            }
            if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
                for line in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    loaded.push(line.to_string());
                }
            }
        }
        Ok(loaded)
    }
}

/// `AIRLOCK_ENGINE_TIMEOUT`'s value: whole seconds, 0 for no timeout.
fn parse_timeout(v: &str) -> Result<Option<Duration>> {
    let seconds: u64 = v
        .trim()
        .parse()
        .map_err(|_| RemoteError::BadEngineTimeout(v.to_string()))?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
}

/// One image the engine has, as `GET /images/json` lists it.
#[derive(Clone, Debug)]
pub struct EngineImage {
    /// Its ID (config digest).
    pub id: String,
    /// Its `repo:tag` names (none for an untagged image).
    pub repo_tags: Vec<String>,
}

impl Engine {
    /// Every image the engine has.
    pub fn list_images(&self) -> Result<Vec<EngineImage>> {
        let r = http::request(&self.endpoint, self.timeout, "GET", "/images/json")?;
        let text = self.check("list images", r)?.text()?;
        let v: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| RemoteError::Protocol(format!("image list: {e}")))?;
        Ok(v.iter()
            .map(|i| EngineImage {
                id: i["Id"].as_str().unwrap_or_default().to_string(),
                repo_tags: i["RepoTags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .filter(|t| *t != "<none>:<none>")
                    .map(str::to_string)
                    .collect(),
            })
            .collect())
    }

    /// Run `copy` with a destination that streams a hybrid archive (the form every Docker
    /// loads) into `POST /images/load` as it is written; returns what `copy` returned and
    /// the engine's "Loaded image" lines. An OCI-only or containerd archive thus loads even
    /// into a Docker that cannot read those.
    pub fn load_with<T>(
        &self,
        copy: impl FnOnce(Box<dyn ImageDestination + '_>) -> airlock_core::Result<T>,
    ) -> Result<(T, Vec<String>)> {
        let mut out = None;
        let lines = self.load_images(|body| {
            let writer =
                ArchiveWriter::new(body, ArchiveFormat::Docker, Compression::None, None, 1)?;
            let engine_dest = EngineDestination { writer };
            out = Some(copy(Box::new(engine_dest)).map_err(|e| match e {
                // The engine hung up mid-stream: its answer says why, read by the caller.
                airlock_core::Error::Stream { source, .. } => {
                    io_err("send the archive to the engine", source)
                }
                other => RemoteError::Core(other),
            })?);
            Ok(())
        })?;
        let out = out.ok_or_else(|| RemoteError::Protocol("the load did not run".into()))?;
        Ok((out, lines))
    }
}

/// The archive writer, named for messages as the engine it feeds.
struct EngineDestination {
    writer: ArchiveWriter,
}

impl ImageDestination for EngineDestination {
    fn describe(&self) -> String {
        "the Docker Engine".into()
    }
    fn begin(&mut self, images: &[SourceImage]) -> airlock_core::Result<()> {
        self.writer.begin(images)
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.writer.has_blob(digest)
    }
    fn uncompressed_copies(&self) -> Vec<(Descriptor, Digest)> {
        self.writer.uncompressed_copies()
    }
    fn put_blob(&self, blob: &Descriptor, data: &mut BlobReader<'_>) -> airlock_core::Result<()> {
        self.writer.put_blob(blob, data)
    }
    fn put_unnamed_blob(
        &self,
        hint: &str,
        size: u64,
        data: &mut BlobReader<'_>,
    ) -> airlock_core::Result<Digest> {
        self.writer.put_unnamed_blob(hint, size, data)
    }
    fn finish(self: Box<Self>, images: &[SourceImage]) -> airlock_core::Result<Vec<TagChange>> {
        Box::new(self.writer).finish(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_references() {
        assert_eq!(
            percent_encode("localhost:5000/a/b:1"),
            "localhost%3A5000%2Fa%2Fb%3A1"
        );
    }

    #[test]
    fn engine_timeouts_are_whole_seconds() {
        assert_eq!(parse_timeout("90").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse_timeout(" 1 ").unwrap(), Some(Duration::from_secs(1)));
        assert_eq!(parse_timeout("0").unwrap(), None);
        let e = parse_timeout("10m").unwrap_err();
        assert_eq!(
            e.to_string(),
            "AIRLOCK_ENGINE_TIMEOUT=10m is not a number of seconds"
        );
        assert_eq!(Engine::at("/x").timeout(), Some(Duration::from_secs(600)));
    }
}
