//! Registry credentials, kept where and how `docker login` keeps them:
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), `auths.HOST.auth` =
//! base64 of `user:password`. airlock never prints them.

use std::fs;
use std::path::PathBuf;

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

fn read_config() -> Result<serde_json::Map<String, serde_json::Value>> {
    let Some(path) = config_path() else {
        return Ok(Default::default());
    };
    match fs::read(&path) {
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
    }
    keys
}

/// Credentials stored for `host`, if any.
pub fn lookup(host: &str) -> Result<Option<Credentials>> {
    let config = read_config()?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for key in keys_for(host) {
        let Some(entry) = auths.get(&key) else {
            continue;
        };
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

/// Store credentials for `host` (what `docker login` writes), file mode 0600.
pub fn store(host: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = config_path().ok_or_else(|| {
        RemoteError::Protocol(
            "cannot tell where the docker config goes: set HOME or DOCKER_CONFIG".into(),
        )
    })?;
    let mut config = read_config()?;
    let auths = config
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            RemoteError::Protocol(format!("{}: 'auths' is not an object", path.display()))
        })?;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    auths.insert(host.to_string(), serde_json::json!({ "auth": encoded }));
    write_config(&path, &config)?;
    Ok(path)
}

/// Forget credentials for `host`. Returns whether there were any.
pub fn remove(host: &str) -> Result<bool> {
    let Some(path) = config_path() else {
        return Ok(false);
    };
    let mut config = read_config()?;
    let mut removed = false;
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
