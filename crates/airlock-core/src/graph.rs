//! The content graph: an image (or any OCI artifact) is a root — an index or a manifest —
//! and the blobs it reaches. One walk from a root to its children, one query resolver for
//! every list of images (the store's, an archive's, a registry pull's), so `inspect`,
//! `save`, `push` and `copy` all understand the same names.
//!
//! A node can be any OCI manifest: an image, an artifact whose config is not an image
//! config (`artifactType`, an empty config), or a manifest with a `subject` (a signature,
//! an SBOM): [`children`] follows whatever descriptors a document names.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{Descriptor, Document, Manifest};

/// The descriptors a document points at: an index's manifests; a manifest's config and
/// layers (and its `subject` is not a child: it points the other way).
pub fn children(doc: &Document) -> Vec<Descriptor> {
    match doc {
        Document::Index(idx) => idx.manifests.clone(),
        Document::Manifest(m) => std::iter::once(m.config.clone())
            .chain(m.layers.iter().cloned())
            .collect(),
    }
}

/// The artifact type of a root whose manifests are `manifests`: `None` when any of them is
/// a container image (an index of images with attestations beside them is an image), else
/// the first manifest's type.
pub fn artifact_type_of<'a>(mut manifests: impl Iterator<Item = &'a Manifest>) -> Option<String> {
    let mut first = None;
    for m in manifests.by_ref() {
        match m.artifact_type() {
            None => return None,
            Some(t) => {
                first.get_or_insert(t);
            }
        }
    }
    first
}

/// The digests a query may name inside a root: each manifest, and each image's config (an
/// artifact's config is left out: most artifacts share the empty `{}` one).
pub fn member_digests<'a>(
    manifests: impl Iterator<Item = (&'a Descriptor, &'a Manifest)>,
) -> Vec<Digest> {
    let mut v = Vec::new();
    for (d, m) in manifests {
        v.push(d.digest.clone());
        if m.artifact_type().is_none() {
            v.push(m.config.digest.clone());
        }
    }
    v
}

/// What a query can be matched against, whatever holds the images.
pub trait Candidate {
    /// Names pointing at it.
    fn names(&self) -> &[Reference];
    /// The root (index or manifest) digest.
    fn root_digest(&self) -> &Digest;
    /// Docker's image ID.
    fn image_id(&self) -> Digest;
    /// Digests of its platform manifests and their configs.
    fn member_digests(&self) -> Vec<Digest>;
    /// The manifest it refers to: its `subject`, else the digest in a cosign-style tag
    /// (`sha256-<hex>.sig`: cosign's signatures carry no `subject`).
    fn subject_digest(&self) -> Option<Digest> {
        None
    }
}

/// For each of `images`, the position of the image among them it refers to (its
/// `subject` is that image's root or one of its manifests), if any.
pub fn subjects_among<T: Candidate>(images: &[T]) -> Vec<Option<usize>> {
    images
        .iter()
        .map(|img| {
            let s = img.subject_digest()?;
            images
                .iter()
                .position(|o| o.root_digest() == &s || o.member_digests().contains(&s))
        })
        .collect()
}

/// A referrer's name worth keeping beside its subject: the tags cosign writes
/// (`sha256-<hex>.sig`, `.att`, `.sbom`) and the OCI referrers fallback tag
/// (`sha256-<hex>`) are the only names tools look referrers up by.
pub fn is_referrer_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest.split('.').next().unwrap_or("");
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The subject a root refers to: `subject` when its manifest has one, else the digest a
/// cosign-style tag among `names` spells.
pub fn subject_from(subject: Option<&Descriptor>, names: &[Reference]) -> Option<Digest> {
    if let Some(s) = subject {
        return Some(s.digest.clone());
    }
    names.iter().filter_map(|n| n.tag()).find_map(|t| {
        let hex = t.strip_prefix("sha256-")?.split('.').next()?;
        let suffixed = t.len() > "sha256-".len() + 64;
        suffixed.then(|| Digest::from_hex(hex)).flatten()
    })
}

/// The referrers of the roots at `chosen` among `images`: every root whose `subject` is
/// one of theirs (the root or a platform manifest), and theirs in turn (a signature of an
/// SBOM), so a signature travels with its image. Returns their positions, not `chosen`'s.
pub fn referrers<T: Candidate>(images: &[T], chosen: &[usize]) -> Vec<usize> {
    let mut targets: Vec<Digest> = Vec::new();
    for &i in chosen {
        targets.push(images[i].root_digest().clone());
        targets.extend(images[i].member_digests());
    }
    let mut out: Vec<usize> = Vec::new();
    loop {
        let before = out.len();
        for (i, img) in images.iter().enumerate() {
            if chosen.contains(&i) || out.contains(&i) {
                continue;
            }
            if img.subject_digest().is_some_and(|s| targets.contains(&s)) {
                out.push(i);
                targets.push(img.root_digest().clone());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Find the one image `query` names, the way docker resolves it: a name (`redis:alpine`),
/// `name@sha256:...` (its root or platform manifest digest), a full digest (image ID,
/// root, platform manifest or config digest), or a short image ID (4+ hex characters,
/// unique). Returns its index and, when a name matched, that name.
pub fn find<T: Candidate>(images: &[T], query: &str) -> Result<(usize, Option<Reference>)> {
    let not_found = || Error::ImageNotFound {
        reference: query.to_string(),
    };
    let full = query
        .parse::<Digest>()
        .ok()
        .or_else(|| Digest::from_hex(query));
    if let Some(d) = full {
        return images
            .iter()
            .position(|i| {
                i.image_id() == d || i.root_digest() == &d || i.member_digests().contains(&d)
            })
            .map(|i| (i, None))
            .ok_or_else(not_found);
    }
    if let Ok(r) = Reference::parse(query) {
        if let Some(d) = r.digest() {
            let hit = |i: &T| i.root_digest() == d || i.member_digests().contains(d);
            // Prefer the image that also carries the repository; any with the digest will do.
            let same_repo = images
                .iter()
                .position(|i| hit(i) && i.names().iter().any(|n| n.repository() == r.repository()));
            return same_repo
                .or_else(|| images.iter().position(hit))
                .map(|i| (i, None))
                .ok_or_else(not_found);
        }
        if let Some(i) = images.iter().position(|i| i.names().contains(&r)) {
            // A name that also reads as the short ID of another image (an archive naming
            // its image `3f4a9b2c`) would take that ID over: ambiguous, not a name match.
            let looks_like_id = query.len() >= 4 && query.bytes().all(|b| b.is_ascii_hexdigit());
            let other = images.iter().enumerate().any(|(n, o)| {
                n != i
                    && (o.image_id().hex().starts_with(query)
                        || o.root_digest().hex().starts_with(query))
            });
            if looks_like_id && other {
                return Err(Error::AmbiguousId {
                    prefix: query.to_string(),
                });
            }
            return Ok((i, Some(r)));
        }
    }
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if hex.len() >= 4 && hex.len() < 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.image_id().hex().starts_with(hex) || i.root_digest().hex().starts_with(hex)
            })
            .map(|(n, _)| n)
            .collect();
        return match hits.as_slice() {
            [one] => Ok((*one, None)),
            [] => Err(not_found()),
            _ => Err(Error::AmbiguousId {
                prefix: query.to_string(),
            }),
        };
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{media_type, Index, Manifest};

    /// An image as a query sees it, without any store or archive behind it.
    struct Fake {
        names: Vec<Reference>,
        root: Digest,
        id: Digest,
        members: Vec<Digest>,
    }

    impl Candidate for Fake {
        fn names(&self) -> &[Reference] {
            &self.names
        }
        fn root_digest(&self) -> &Digest {
            &self.root
        }
        fn image_id(&self) -> Digest {
            self.id.clone()
        }
        fn member_digests(&self) -> Vec<Digest> {
            self.members.clone()
        }
    }

    fn fake(names: &[&str], seed: &str) -> Fake {
        let root = Digest::of(format!("root {seed}").as_bytes());
        let id = Digest::of(format!("config {seed}").as_bytes());
        Fake {
            names: names.iter().map(|n| Reference::parse(n).unwrap()).collect(),
            members: vec![root.clone(), id.clone()],
            root,
            id,
        }
    }

    #[test]
    fn a_name_cannot_take_over_another_images_id() {
        let victim = fake(&["victim:1"], "v");
        let short = victim.id.hex()[..8].to_string();
        let images = [victim, fake(&[&short], "attacker")];
        // The short ID is ambiguous now, not the attacker's name.
        assert!(matches!(
            find(&images, &short),
            Err(Error::AmbiguousId { .. })
        ));
        // The full ID still finds the victim; a 64-hex name cannot exist.
        assert_eq!(find(&images, &images[0].id.to_string()).unwrap().0, 0);
        assert!(Reference::parse(images[0].id.hex()).is_err());
    }

    #[test]
    fn finds_by_name_digest_repo_at_digest_and_short_id() {
        let images = [fake(&["redis:alpine"], "a"), fake(&["app:1", "app:2"], "b")];
        let (i, named) = find(&images, "redis:alpine").unwrap();
        assert_eq!(i, 0);
        assert_eq!(named.unwrap().to_string(), "docker.io/library/redis:alpine");
        let (i, named) = find(&images, "docker.io/library/app:2").unwrap();
        assert_eq!((i, named.unwrap().tag()), (1, Some("2")));
        let root = images[1].root.to_string();
        assert_eq!(find(&images, &root).unwrap(), (1, None));
        assert_eq!(find(&images, &format!("app@{root}")).unwrap(), (1, None));
        // A digest in another repository still finds the image (docker's `inspect` does).
        assert_eq!(
            find(&images, &format!("other/repo@{root}")).unwrap(),
            (1, None)
        );
        let id = images[0].id.clone();
        assert_eq!(find(&images, &id.to_string()).unwrap().0, 0);
        assert_eq!(find(&images, id.hex()).unwrap().0, 0);
        assert_eq!(find(&images, &id.hex()[..8]).unwrap().0, 0);
    }

    #[test]
    fn says_what_is_missing_or_ambiguous() {
        let images = [fake(&["a:1"], "x"), fake(&["b:1"], "y")];
        assert!(matches!(
            find(&images, "c:1"),
            Err(Error::ImageNotFound { .. })
        ));
        assert!(matches!(
            find(&images, &Digest::of(b"nothing").to_string()),
            Err(Error::ImageNotFound { .. })
        ));
        // Two images whose IDs share a prefix: only a longer one decides.
        let mut twins = [fake(&[], "p"), fake(&[], "q")];
        let shared = "abcd".to_string();
        for (n, t) in twins.iter_mut().enumerate() {
            let hex = format!("{shared}{n}{}", &t.id.hex()[5..]);
            t.id = Digest::from_hex(&hex).unwrap();
        }
        assert!(matches!(
            find(&twins, "abcd"),
            Err(Error::AmbiguousId { .. })
        ));
        assert_eq!(find(&twins, "abcd1").unwrap().0, 1);
    }

    #[test]
    fn children_of_an_index_and_of_a_manifest() {
        let d = |s: &str, mt: &str| Descriptor::new(mt, Digest::of(s.as_bytes()), 1);
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: d("c", media_type::OCI_CONFIG),
            layers: vec![
                d("l1", media_type::OCI_LAYER),
                d("l2", media_type::OCI_LAYER),
            ],
            annotations: None,
            artifact_type: None,
            subject: None,
        };
        let kids: Vec<Digest> = children(&Document::Manifest(Box::new(m)))
            .into_iter()
            .map(|x| x.digest)
            .collect();
        assert_eq!(
            kids,
            ["c", "l1", "l2"].map(|s| Digest::of(s.as_bytes())).to_vec()
        );
        let mut idx = Index::empty();
        idx.manifests = vec![
            d("m1", media_type::OCI_MANIFEST),
            d("m2", media_type::OCI_MANIFEST),
        ];
        assert_eq!(children(&Document::Index(idx)).len(), 2);
    }
}
