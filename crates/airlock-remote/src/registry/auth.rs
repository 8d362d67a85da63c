//! Registry credentials, found and kept where and how `docker login`, podman and skopeo
//! keep them: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`) and podman's
//! `auth.json`, each with `auths.HOST.auth` = base64 of `user:password` (or an
//! `identitytoken`), and `credHelpers` / `credsStore` naming a credential helper
//! ([`super::credhelper`]). airlock never prints them.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::{RemoteError, Result};

/// A user name and password (or token).
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in debug output.
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

/// Where the docker config lives.
pub fn config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The auth file podman and skopeo were pointed at (`--authfile` sets it).
fn explicit_auth_file() -> Option<PathBuf> {
    std::env::var_os("REGISTRY_AUTH_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The files credentials are looked up in, first first: the auth file podman and skopeo
/// were given (`REGISTRY_AUTH_FILE`, `--authfile`), theirs by default
/// (`$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`), then the
/// docker config. All have the same `auths`, `credHelpers` and `credsStore`.
pub fn auth_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = explicit_auth_file().into_iter().collect();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        files.push(PathBuf::from(h).join(".config/containers/auth.json"));
    }
    files.extend(config_path());
    files
}

fn read_file(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            RemoteError::Protocol(format!("{} is not valid JSON: {e}", path.display()))
        }),
        Err(_) => Ok(Default::default()),
    }
}

/// The keys docker uses for a host in `auths` (Docker Hub has a legacy URL key).
fn keys_for(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    if host == "docker.io" {
        keys.insert(0, "https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
    }
    keys
}

/// What a credential helper is asked about for `host` (docker's server address).
fn server_for(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

/// The credential helper a config names for `host`: its `credHelpers` entry, else its
/// `credsStore`.
fn helper_for(config: &serde_json::Map<String, serde_json::Value>, host: &str) -> Option<String> {
    let per_host = config.get("credHelpers").and_then(|h| h.as_object());
    keys_for(host)
        .iter()
        .find_map(|k| per_host.and_then(|h| h.get(k)).and_then(|v| v.as_str()))
        .or_else(|| config.get("credsStore").and_then(|v| v.as_str()))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// The `auths` entry of `config` for `host`, decoded.
fn from_auths(
    config: &serde_json::Map<String, serde_json::Value>,
    host: &str,
) -> Result<Option<Credentials>> {
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for key in keys_for(host) {
        let Some(entry) = auths.get(&key) else {
            continue;
        };
        // An identity token (what `docker login` keeps for an OAuth2 registry) is a
        // refresh token for the bearer flow.
        if let Some(token) = entry.get("identitytoken").and_then(|t| t.as_str()) {
            if !token.is_empty() {
                return Ok(Some(Credentials {
                    username: IDENTITY_TOKEN_USER.to_string(),
                    password: token.to_string(),
                }));
            }
        }
        if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| {
                    RemoteError::Protocol(format!(
                        "the stored login for {host} is not valid base64"
                    ))
                })?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            if let Some((u, p)) = raw.split_once(':') {
                return Ok(Some(Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                }));
            }
        }
    }
    Ok(None)
}

/// The user name docker's credential helpers give an identity token under.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// Credentials stored for `host`, if any: from each auth file in turn ([`auth_files`]),
/// its credential helper first, then its `auths`.
pub fn lookup(host: &str) -> Result<Option<Credentials>> {
    for path in auth_files() {
        let config = read_file(&path)?;
        if let Some(helper) = helper_for(&config, host) {
            if let Some(s) = super::credhelper::get(&helper, &server_for(host))? {
                return Ok(Some(Credentials {
                    username: s.username,
                    password: s.secret,
                }));
            }
        }
        if let Some(c) = from_auths(&config, host)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Where `store` put credentials.
#[derive(Debug, Clone)]
pub enum Stored {
    /// In this file's `auths`.
    File(PathBuf),
    /// With this credential helper (the file records the login without the secret).
    Helper(String, PathBuf),
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::File(p) => write!(f, "{}", p.display()),
            Stored::Helper(h, p) => write!(
                f,
                "the credential helper docker-credential-{h} (named in {})",
                p.display()
            ),
        }
    }
}

/// The file `login` and `logout` change: the one `--authfile` / `REGISTRY_AUTH_FILE`
/// names, else the docker config.
fn login_file() -> Result<PathBuf> {
    explicit_auth_file().or_else(config_path).ok_or_else(|| {
        RemoteError::Protocol(
            "cannot tell where the docker config goes: set HOME or DOCKER_CONFIG".into(),
        )
    })
}

/// Store credentials for `host` as `docker login` does: with the config's credential
/// helper when it names one (the config then records the login with no secret), else in
/// its `auths` (file mode 0600).
pub fn store(host: &str, creds: &Credentials) -> Result<Stored> {
    let path = login_file()?;
    let mut config = read_file(&path)?;
    let helper = helper_for(&config, host);
    let auths = config
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            RemoteError::Protocol(format!("{}: 'auths' is not an object", path.display()))
        })?;
    let entry = match &helper {
        Some(h) => {
            let secret = super::credhelper::Secret {
                username: creds.username.clone(),
                secret: creds.password.clone(),
            };
            super::credhelper::store(h, &server_for(host), &secret)?;
            serde_json::json!({})
        }
        None => serde_json::json!({ "auth": base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password)) }),
    };
    auths.insert(host.to_string(), entry);
    write_config(&path, &config)?;
    Ok(match helper {
        Some(h) => Stored::Helper(h, path),
        None => Stored::File(path),
    })
}

/// Forget credentials for `host`, in the config's credential helper too. Returns whether
/// there were any.
pub fn remove(host: &str) -> Result<bool> {
    let path = login_file()?;
    let mut config = read_file(&path)?;
    let mut removed = false;
    if let Some(h) = helper_for(&config, host) {
        removed |= super::credhelper::erase(&h, &server_for(host))?;
    }
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        for key in keys_for(host) {
            removed |= auths.remove(&key).is_some();
        }
    }
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}

fn write_config(
    path: &std::path::Path,
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| RemoteError::Io {
        context: format!("write {}", path.display()),
        source: e,
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile_in(dir).map_err(io)?;
    tmp.1
        .write_all(&serde_json::to_vec_pretty(config).unwrap_or_default())
        .map_err(io)?;
    tmp.1
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    tmp.1.sync_all().map_err(io)?;
    fs::rename(&tmp.0, path).map_err(io)
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(PathBuf, fs::File)> {
    for i in 0..100u32 {
        let p = dir.join(format!(".config.json.airlock-{}-{i}", std::process::id()));
        match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary name"))
}
