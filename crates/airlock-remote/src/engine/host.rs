//! Which engine a command talks to, found the way the docker CLI finds it: `DOCKER_HOST`
//! (with `DOCKER_TLS_VERIFY`, `DOCKER_TLS` and `DOCKER_CERT_PATH`), else the context
//! `DOCKER_CONTEXT` names, else the config's `currentContext`, else the local socket. The
//! CLI's `--context` is `DOCKER_CONTEXT` with `DOCKER_HOST` cleared, which is how it ranks
//! in the docker CLI too.
//!
//! A context is the docker CLI's `contexts/meta/<sha256 of its name>/meta.json` under the
//! docker config directory, its TLS files in `contexts/tls/<same>/docker/`.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::http::{Endpoint, TlsSettings};
use crate::{RemoteError, Result};

/// The engine's socket when nothing says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The docker CLI's name for "DOCKER_HOST, else the local socket".
const DEFAULT_CONTEXT: &str = "default";

/// The engine the environment and the docker config select.
pub fn from_environment() -> Result<Endpoint> {
    if let Some(host) = var("DOCKER_HOST") {
        return parse(&host, env_tls());
    }
    let context = match var("DOCKER_CONTEXT") {
        Some(name) => Some(name),
        None => current_context()?,
    };
    match context {
        Some(name) if name != DEFAULT_CONTEXT => context_endpoint(&name),
        _ => Ok(Endpoint::Unix(DEFAULT_SOCKET.into())),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A `DOCKER_HOST` value: `unix://PATH`, `tcp://HOST[:PORT]` or `ssh://[USER@]HOST[:PORT]`.
/// A TCP port defaults to 2375, or 2376 with TLS, as for dockerd.
pub fn parse(host: &str, tls: Option<TlsSettings>) -> Result<Endpoint> {
    let unsupported = || RemoteError::UnsupportedHost(host.to_string());
    let (scheme, rest) = host.split_once("://").ok_or_else(unsupported)?;
    match scheme {
        "unix" if !rest.is_empty() => Ok(Endpoint::Unix(PathBuf::from(rest))),
        "tcp" => {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(unsupported());
            }
            let has_port = match authority.rsplit_once(':') {
                Some((h, p)) => !p.is_empty() && !h.ends_with('[') && !authority.ends_with(']'),
                None => false,
            };
            let address = if has_port {
                authority.to_string()
            } else {
                let port = if tls.is_some() { 2376 } else { 2375 };
                format!("{authority}:{port}")
            };
            Ok(Endpoint::Tcp { address, tls })
        }
        "ssh" => {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(unsupported());
            }
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, authority),
            };
            let (name, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                    (h, Some(p.parse::<u16>().map_err(|_| unsupported())?))
                }
                _ => (hostport, None),
            };
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if name.is_empty() {
                return Err(unsupported());
            }
            Ok(Endpoint::Ssh {
                user,
                host: name.to_string(),
                port,
            })
        }
        _ => Err(unsupported()),
    }
}

/// TLS as the docker CLI reads it from the environment: `DOCKER_TLS_VERIFY` (verify the
/// engine) or `DOCKER_TLS` (TLS, unverified), with `ca.pem`, `cert.pem` and `key.pem` from
/// `DOCKER_CERT_PATH` (default: the docker config directory), each used if present.
fn env_tls() -> Option<TlsSettings> {
    let verify = var("DOCKER_TLS_VERIFY").is_some();
    if !verify && var("DOCKER_TLS").is_none() {
        return None;
    }
    let (dir, origin) = match var("DOCKER_CERT_PATH") {
        Some(d) => (PathBuf::from(&d), format!("DOCKER_CERT_PATH={d}")),
        None => {
            let d = config_dir().unwrap_or_default();
            let origin = format!("{} (DOCKER_CERT_PATH is not set)", d.display());
            (d, origin)
        }
    };
    Some(tls_files(&dir, verify, origin))
}

fn tls_files(dir: &Path, verify: bool, origin: String) -> TlsSettings {
    let present = |f: &str| Some(dir.join(f)).filter(|p| p.is_file());
    TlsSettings {
        ca: present("ca.pem"),
        client: present("cert.pem").zip(present("key.pem")),
        verify,
        origin,
    }
}

fn config_dir() -> Option<PathBuf> {
    crate::registry::auth::config_path().and_then(|p| p.parent().map(Path::to_path_buf))
}

/// `currentContext` in the docker config, if it names one.
fn current_context() -> Result<Option<String>> {
    let Some(path) = crate::registry::auth::config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RemoteError::Io {
                context: format!("read {}", path.display()),
                source: e,
            })
        }
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RemoteError::BadContext {
            name: "currentContext".into(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(config
        .get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string))
}

/// The docker endpoint of the context `name`.
pub fn context_endpoint(name: &str) -> Result<Endpoint> {
    if name == DEFAULT_CONTEXT {
        return match var("DOCKER_HOST") {
            Some(host) => parse(&host, env_tls()),
            None => Ok(Endpoint::Unix(DEFAULT_SOCKET.into())),
        };
    }
    let contexts = config_dir().unwrap_or_default().join("contexts");
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    let meta = contexts.join("meta").join(&id).join("meta.json");
    let bad = |reason: String| RemoteError::BadContext {
        name: name.to_string(),
        path: meta.display().to_string(),
        reason,
    };
    let text = match std::fs::read_to_string(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RemoteError::NoContext {
                name: name.to_string(),
                path: meta.display().to_string(),
            })
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let docker = &v["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("it has no docker endpoint (Endpoints.docker.Host)".into()))?;
    let skip_verify = docker["SkipTLSVerify"].as_bool().unwrap_or(false);
    let tls_dir = contexts.join("tls").join(&id).join("docker");
    let settings = tls_files(&tls_dir, !skip_verify, format!("context {name}"));
    let has_tls = settings.ca.is_some() || settings.client.is_some() || skip_verify;
    parse(host, has_tls.then_some(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_the_docker_cli_takes() {
        assert_eq!(
            parse("unix:///run/x.sock", None).unwrap(),
            Endpoint::Unix("/run/x.sock".into())
        );
        let tcp = |a: &str| Endpoint::Tcp {
            address: a.into(),
            tls: None,
        };
        assert_eq!(
            parse("tcp://10.0.0.1:2999", None).unwrap(),
            tcp("10.0.0.1:2999")
        );
        assert_eq!(parse("tcp://engine/", None).unwrap(), tcp("engine:2375"));
        assert_eq!(parse("tcp://[::1]", None).unwrap(), tcp("[::1]:2375"));
        assert_eq!(parse("tcp://[::1]:7", None).unwrap(), tcp("[::1]:7"));
        let tls = TlsSettings {
            ca: None,
            client: None,
            verify: true,
            origin: String::new(),
        };
        match parse("tcp://engine", Some(tls)).unwrap() {
            Endpoint::Tcp { address, .. } => assert_eq!(address, "engine:2376"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse("ssh://me@box:2222", None).unwrap(),
            Endpoint::Ssh {
                user: Some("me".into()),
                host: "box".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            parse("ssh://box", None).unwrap().to_string(),
            "ssh://box".to_string()
        );
        for bad in [
            "npipe:////./pipe/docker",
            "tcp://",
            "ssh://box/path",
            "box:2375",
            "ssh://b:x",
        ] {
            let e = parse(bad, None).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
