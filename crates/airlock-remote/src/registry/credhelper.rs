//! docker's credential helpers: `docker-credential-NAME get|store|erase`, the program
//! `credHelpers` (per registry) or `credsStore` (for all) in the docker config names. The
//! protocol: the server URL (get, erase) or `{"ServerURL","Username","Secret"}` (store) on
//! standard input; `get` answers that JSON on standard output. A Username of `<token>`
//! means the Secret is an identity token (an OAuth2 refresh token).
//!
//! Secrets pass only through the helper's pipes: nothing the helper writes is echoed, only
//! its exit and the first line of its standard error (which carries no secret).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{RemoteError, Result};

/// What a helper holds for a server: a user name (`<token>` for an identity token) and
/// its secret. (Its own type: `auth` builds its credentials from it.)
pub struct Secret {
    /// The user name.
    pub username: String,
    /// The password, token or identity token.
    pub secret: String,
}

/// What a helper says when it holds nothing for a server (docker-credential-helpers'
/// `ErrCredentialsNotFound`).
const NOT_FOUND: &str = "credentials not found";

fn program(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

/// Run `docker-credential-HELPER verb` with `input`; its standard output, or `None` when
/// it says it holds nothing.
fn run(helper: &str, verb: &str, input: &[u8]) -> Result<Option<Vec<u8>>> {
    let prog = program(helper);
    let mut child = Command::new(&prog)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RemoteError::Protocol(format!(
                "the docker config names the credential helper '{helper}', but {prog} cannot be run ({e}): install it, or remove credsStore/credHelpers from the config"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(|e| RemoteError::Io {
        context: format!("run {prog}"),
        source: e,
    })?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let said = format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if said.to_lowercase().contains(NOT_FOUND) {
        return Ok(None);
    }
    let first = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    Err(RemoteError::Protocol(format!(
        "the credential helper {prog} {verb} failed ({}){}",
        out.status,
        if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        }
    )))
}

/// The credentials `helper` holds for `server`.
pub fn get(helper: &str, server: &str) -> Result<Option<Secret>> {
    let Some(out) = run(helper, "get", server.as_bytes())? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|_| {
        RemoteError::Protocol(format!(
            "{} get answered something that is not its JSON",
            program(helper)
        ))
    })?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let (username, secret) = (field("Username"), field("Secret"));
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Secret { username, secret }))
}

/// Hand `creds` for `server` to `helper` to keep.
pub fn store(helper: &str, server: &str, creds: &Secret) -> Result<()> {
    let doc = serde_json::json!({
        "ServerURL": server, "Username": creds.username, "Secret": creds.secret,
    });
    run(helper, "store", doc.to_string().as_bytes())?;
    Ok(())
}

/// Have `helper` forget `server`; whether it held anything.
pub fn erase(helper: &str, server: &str) -> Result<bool> {
    Ok(run(helper, "erase", server.as_bytes())?.is_some())
}
