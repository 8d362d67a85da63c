//! Tag selectors of a shipment entry: exact, glob, `/regex/`, semver range, newest N.

/// How one tag selector matches.
#[derive(Debug)]
pub enum TagSelector {
    /// This tag.
    Exact(String),
    /// A glob (`1.5.*`).
    Glob(String),
    /// `/regex/`.
    Regex(regex::Regex),
    /// A semver range (`>=1.4 <2`).
    Range(semver::VersionReq),
}

impl TagSelector {
    /// Read a selector as the shipment file writes it.
    pub fn parse(s: &str) -> std::result::Result<TagSelector, String> {
        if let Some(re) = s.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            return regex::Regex::new(re)
                .map(TagSelector::Regex)
                .map_err(|e| format!("{s:?} is not a regular expression: {e}"));
        }
        if s.starts_with(['<', '>', '=', '^', '~']) {
            // `>=1.4 <2` as people write it; the semver crate wants commas.
            let joined = s.split_whitespace().collect::<Vec<_>>().join(", ");
            return semver::VersionReq::parse(&joined)
                .map(TagSelector::Range)
                .map_err(|e| format!("{s:?} is not a semver range: {e}"));
        }
        if s.contains(['*', '?']) {
            return Ok(TagSelector::Glob(s.to_string()));
        }
        if !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Ok(TagSelector::Exact(s.to_string()));
        }
        Err(format!("{s:?} is no tag, glob, /regex/ or semver range"))
    }

    /// True when `tag` is selected.
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TagSelector::Exact(t) => t == tag,
            TagSelector::Glob(g) => crate::reference::glob_match(g, tag),
            TagSelector::Regex(r) => r.is_match(tag),
            TagSelector::Range(req) => version_of(tag).is_some_and(|v| req.matches(&v)),
        }
    }
}

/// A tag read as a version: an optional `v`, then one to three numbers (missing ones are
/// 0), then an optional pre-release (`1.5`, `v2.0.1`, `1.6.0-rc.1`).
pub fn version_of(tag: &str) -> Option<semver::Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        full[i] = p.parse().ok()?;
    }
    let mut v = semver::Version::new(full[0], full[1], full[2]);
    if let Some(p) = pre {
        v.pre = semver::Prerelease::new(p).ok()?;
    }
    Some(v)
}

/// The tags of `all` an entry selects: those its selectors match, and its newest `latest`
/// releases by semver (pre-releases are never "latest"). Sorted, without repeats.
pub fn select_tags(
    all: &[String],
    selectors: &[TagSelector],
    latest: Option<usize>,
) -> Vec<String> {
    let mut out: Vec<String> = all
        .iter()
        .filter(|t| selectors.iter().any(|s| s.matches(t)))
        .cloned()
        .collect();
    if let Some(n) = latest {
        let mut releases: Vec<(semver::Version, &String)> = all
            .iter()
            .filter_map(|t| version_of(t).filter(|v| v.pre.is_empty()).map(|v| (v, t)))
            .collect();
        releases.sort_by(|a, b| b.0.cmp(&a.0));
        out.extend(releases.into_iter().take(n).map(|(_, t)| t.clone()));
    }
    out.sort();
    out.dedup();
    out
}
