//! What refers to a pulled image: signatures, SBOMs and attestations, found the three ways
//! registries keep them, so they travel with the image the way `save` and `push` carry them.
//!
//! 1. The OCI 1.1 referrers API (`GET /v2/<repo>/referrers/<digest>`, paged by `Link`).
//! 2. When the registry has no such API (it answers 404, as distribution 2.x does), the
//!    fallback tag `sha256-<hex>`: an index of the referrers that pushing clients keep.
//! 3. cosign's legacy tags `sha256-<hex>.sig`, `.att` and `.sbom`, which carry no `subject`:
//!    the tag is the only link, so the referrer keeps it as its name.
//!
//! Referrers of referrers (a signature on an SBOM) are followed too, each manifest once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;

use airlock_core::spec::{self, media_type, Descriptor, Document};
use airlock_core::store::Store;
use airlock_core::transport::SourceImage;
use airlock_core::{Digest, Reference};

use super::fetch::{fetch_manifest, platform};
use super::referrers::fallback_tag;
use super::Registry;
use crate::{RemoteError, Result};

/// Which referrers a pull brings along.
#[derive(Clone, Debug, Default)]
pub struct ReferrerChoice {
    /// Leave them all behind.
    pub drop: bool,
    /// Keep only these artifact types (every type when empty).
    pub types: Vec<String>,
}

impl ReferrerChoice {
    fn keeps(&self, artifact_type: &str) -> bool {
        !self.drop && (self.types.is_empty() || self.types.iter().any(|t| t == artifact_type))
    }
}

/// cosign's legacy tag suffixes: signatures, attestations, SBOMs.
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];
/// How deep referrers of referrers are followed.
const MAX_DEPTH: usize = 4;
/// More referrers than this for one pull is a registry to be asked differently.
const MAX_REFERRERS: usize = 1000;
/// Pages of one referrers answer followed.
const MAX_PAGES: usize = 100;

/// Where one referrer was found.
struct Found {
    descriptor: Descriptor,
    /// The cosign tag it was found under, if it was.
    tag: Option<String>,
}

/// The referrers of `subjects` in `repo` (of `reference`'s registry), recursively, each as
/// an image of its own; their manifests and configs go into `small`.
pub(super) fn referrers_of(
    reg: &Registry,
    reference: &Reference,
    subjects: &[Digest],
    choice: &ReferrerChoice,
    small: &mut BTreeMap<Digest, Vec<u8>>,
    store: Option<&Store>,
) -> Result<Vec<SourceImage>> {
    if choice.drop {
        return Ok(Vec::new());
    }
    let path = reference.path().to_string();
    let scope = format!("repository:{path}:pull");
    let mut seen: BTreeSet<Digest> = subjects.iter().cloned().collect();
    let mut queue: VecDeque<(Digest, usize)> = subjects.iter().map(|d| (d.clone(), 0)).collect();
    let mut out = Vec::new();
    while let Some((subject, depth)) = queue.pop_front() {
        for found in find(reg, &path, &scope, &subject)? {
            if !seen.insert(found.descriptor.digest.clone()) {
                continue;
            }
            let d = &found.descriptor;
            let (bytes, digest, media) =
                fetch_manifest(reg, &path, &scope, &d.digest.to_string(), Some(&d.digest))?;
            let Document::Manifest(m) = spec::parse_document(&bytes, &digest.to_string())? else {
                // An index as a referrer (rare): not an artifact airlock carries yet.
                continue;
            };
            let kind = d
                .artifact_type
                .clone()
                .or_else(|| m.artifact_type())
                .unwrap_or_default();
            if !choice.keeps(&kind) {
                continue;
            }
            small.insert(digest.clone(), bytes.clone());
            let root = Descriptor::new(&media, digest.clone(), bytes.len() as u64);
            let p = platform(reg, &path, &scope, &root, *m, small, store)?;
            let names = match &found.tag {
                Some(t) => vec![reference.with_tag(t)],
                None => Vec::new(),
            };
            out.push(SourceImage {
                names,
                root,
                generated: false,
                platforms: vec![p],
            });
            if out.len() > MAX_REFERRERS {
                return Err(RemoteError::Protocol(format!(
                    "{}/{path} lists more than {MAX_REFERRERS} referrers for this image; pull with --no-referrers, or keep only some with --referrer-type",
                    reg.host()
                )));
            }
            if depth + 1 < MAX_DEPTH {
                queue.push_back((digest, depth + 1));
            }
        }
    }
    Ok(out)
}

/// Every referrer of `subject` the registry holds, by the API or its fallback tag, and by
/// cosign's tags.
fn find(reg: &Registry, path: &str, scope: &str, subject: &Digest) -> Result<Vec<Found>> {
    let mut found: Vec<Found> = match referrers_api(reg, path, scope, subject)? {
        Some(listed) => listed,
        None => match index_at(reg, path, scope, &fallback_tag(subject))? {
            Some(idx) => idx.manifests,
            None => Vec::new(),
        },
    }
    .into_iter()
    .map(|descriptor| Found {
        descriptor,
        tag: None,
    })
    .collect();
    for suffix in COSIGN_SUFFIXES {
        let tag = format!("{}.{suffix}", fallback_tag(subject));
        if let Some(d) = head_manifest(reg, path, scope, &tag)? {
            found.push(Found {
                descriptor: d,
                tag: Some(tag),
            });
        }
    }
    Ok(found)
}

/// The referrers API's answer, every page of it; `None` when the registry has no such API.
fn referrers_api(
    reg: &Registry,
    path: &str,
    scope: &str,
    subject: &Digest,
) -> Result<Option<Vec<Descriptor>>> {
    let accept = [("Accept", media_type::OCI_INDEX.to_string())];
    let mut url = format!("/v2/{path}/referrers/{subject}");
    let mut listed = Vec::new();
    for _ in 0..MAX_PAGES {
        let r = match reg.call_allow("GET", &url, scope, &accept, None, &[400, 404, 405, 501])? {
            Ok(r) => r,
            // No API here (the fallback tag is then what clients maintain).
            Err(_) => return Ok(None),
        };
        let is_index = r.content_type().contains("json");
        let next = r.header("Link").and_then(next_link);
        let bytes = read_small(reg, r, &url)?;
        if !is_index {
            return Ok(None);
        }
        match spec::parse_document(&bytes, &url)? {
            Document::Index(idx) => listed.extend(idx.manifests),
            Document::Manifest(_) => return Ok(None),
        }
        match next {
            Some(n) => url = n,
            None => return Ok(Some(listed)),
        }
    }
    Ok(Some(listed))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// The index tagged `tag`, if there is one (and it is an index).
fn index_at(reg: &Registry, path: &str, scope: &str, tag: &str) -> Result<Option<spec::Index>> {
    let accept = [("Accept", media_type::OCI_INDEX.to_string())];
    let url = format!("/v2/{path}/manifests/{tag}");
    match reg.call_allow("GET", &url, scope, &accept, None, &[404])? {
        Ok(r) => match spec::parse_document(&read_small(reg, r, &url)?, tag)? {
            Document::Index(idx) => Ok(Some(idx)),
            Document::Manifest(_) => Ok(None),
        },
        Err(_) => Ok(None),
    }
}

/// The descriptor of the manifest tagged `tag`, if there is one (a HEAD: most images have
/// no cosign tags, and the manifest is fetched by digest afterwards).
fn head_manifest(reg: &Registry, path: &str, scope: &str, tag: &str) -> Result<Option<Descriptor>> {
    let accept = [("Accept", super::MANIFEST_ACCEPT.to_string())];
    let url = format!("/v2/{path}/manifests/{tag}");
    let r = match reg.call_allow("HEAD", &url, scope, &accept, None, &[404])? {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    let digest = r
        .header("Docker-Content-Digest")
        .and_then(|d| d.parse::<Digest>().ok());
    let size = r
        .header("Content-Length")
        .and_then(|s| s.parse::<u64>().ok());
    let media = r.content_type().to_string();
    match (digest, size) {
        (Some(d), Some(size)) => Ok(Some(Descriptor::new(&media, d, size))),
        // A registry that does not say: fetch it to learn its digest.
        _ => {
            let (bytes, d, media) = fetch_manifest(reg, path, scope, tag, None)?;
            Ok(Some(Descriptor::new(&media, d, bytes.len() as u64)))
        }
    }
}

/// A small JSON answer, read whole up to 4 MiB.
fn read_small(reg: &Registry, r: ureq::Response, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.into_reader()
        .take(4 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| RemoteError::Io {
            context: format!("read {}{what}", reg.host()),
            source: e,
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_link_marked_next() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:x?n=2&last=y>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:x?n=2&last=y")
        );
        assert_eq!(
            next_link(r#"<https://r.example/p>; rel="prev", <https://r.example/n>; rel="next""#)
                .as_deref(),
            Some("https://r.example/n")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn a_choice_keeps_what_it_names() {
        let all = ReferrerChoice::default();
        assert!(all.keeps("application/spdx+json"));
        let some = ReferrerChoice {
            drop: false,
            types: vec!["application/spdx+json".into()],
        };
        assert!(some.keeps("application/spdx+json"));
        assert!(!some.keeps("application/vnd.dev.cosign.simplesigning.v1+json"));
        let none = ReferrerChoice {
            drop: true,
            types: Vec::new(),
        };
        assert!(!none.keeps("application/spdx+json"));
    }
}
