//! A repository's tags (`GET /v2/<name>/tags/list`), every page, and a tag's digest.

use std::io::Read;

use airlock_core::Digest;

use super::{Registry, MANIFEST_ACCEPT};
use crate::{RemoteError, Result};

/// At most this many tags are read from one repository.
const MAX_TAGS: usize = 100_000;

/// Every tag of `path` on `reg`, following the `Link` pages.
pub fn list_tags(reg: &Registry, path: &str) -> Result<Vec<String>> {
    let scope = format!("repository:{path}:pull");
    let mut next = format!("/v2/{path}/tags/list?n=1000");
    let mut out = Vec::new();
    loop {
        let r = reg.call("GET", &next, &scope, &[], None)?;
        let link = r.header("Link").map(str::to_string);
        let mut body = Vec::new();
        r.into_reader()
            .take(16 << 20)
            .read_to_end(&mut body)
            .map_err(|e| RemoteError::Io {
                context: format!("read the tags of {}/{path}", reg.host()),
                source: e,
            })?;
        let page: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            RemoteError::Protocol(format!(
                "{}/{path}: the tag list is not JSON: {e}",
                reg.host()
            ))
        })?;
        if let Some(tags) = page["tags"].as_array() {
            out.extend(tags.iter().filter_map(|t| t.as_str().map(str::to_string)));
        }
        // `Link: </v2/name/tags/list?n=1000&last=x>; rel="next"`
        match link.as_deref().and_then(|l| l.split(['<', '>']).nth(1)) {
            Some(n) if out.len() < MAX_TAGS => next = n.to_string(),
            _ => break,
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The digest `reference` (a tag or digest) of `path` names, by a `HEAD`.
pub fn digest_of(reg: &Registry, path: &str, reference: &str) -> Result<Digest> {
    let scope = format!("repository:{path}:pull");
    let r = reg.call(
        "HEAD",
        &format!("/v2/{path}/manifests/{reference}"),
        &scope,
        &[("Accept", MANIFEST_ACCEPT.to_string())],
        None,
    )?;
    r.header("Docker-Content-Digest")
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| {
            RemoteError::Protocol(format!(
                "{}/{path}:{reference}: the registry gave no Docker-Content-Digest",
                reg.host()
            ))
        })
}
