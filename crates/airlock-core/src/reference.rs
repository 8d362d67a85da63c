//! Image references, normalised the way docker does it.
//!
//! `redis:alpine`, `library/redis:alpine` and `docker.io/library/redis:alpine` are one name;
//! the store keeps the fully qualified form and shows the familiar one.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The registry docker assumes when a name has no domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";

/// A fully qualified image reference: domain, repository path, and a tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise a reference. A name with neither tag nor digest gets `latest`.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |detail: &str| Error::BadReference {
            reference: input.to_string(),
            detail: detail.to_string(),
        };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| bad("the part after '@' is not a sha256 digest"))?,
                ),
            ),
            None => (input, None),
        };
        let last_slash = name_and_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("the tag may hold only letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')"));
            }
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Docker refuses it too: a name that is an image ID would take that ID over.
            return Err(bad(
                "a repository name may not be 64 hexadecimal characters (that is an image ID)",
            ));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(bad(
                "the repository name must be lower case letters, digits and separators ('.', '_', '-', '/')",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path
        };
        // `library/<64 hex>` is shown (and typed back) as the bare hex: an image ID.
        let shown = path.strip_prefix(OFFICIAL_PREFIX).unwrap_or(&path);
        if domain == DEFAULT_DOMAIN
            && shown.len() == 64
            && shown.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad(
                "a repository name may not be 64 hexadecimal characters (that is an image ID)",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, fully qualified, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as docker shows it (`redis`, `user/app`, `quay.io/x/y`). A Docker Hub
    /// path whose first part looks like a host (`docker.io/ex.docker.x/y`) keeps its
    /// `docker.io/`: shortened, it would name another registry.
    pub fn familiar_repository(&self) -> String {
        let first = self.path.split('/').next().unwrap_or("");
        let looks_like_host = self.path.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if self.domain == DEFAULT_DOMAIN && !looks_like_host {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The whole reference as docker shows it (`redis:alpine`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Shell-style glob match (`*` any run, `?` one character) used by `--match` and `images
/// PATTERN`. Matching is on whole strings.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(norm("redis:alpine"), "docker.io/library/redis:alpine");
        assert_eq!(norm("redis"), "docker.io/library/redis:latest");
        assert_eq!(norm("library/redis"), "docker.io/library/redis:latest");
        assert_eq!(norm("user/app:1"), "docker.io/user/app:1");
        assert_eq!(norm("index.docker.io/x/y"), "docker.io/x/y:latest");
        assert_eq!(norm("localhost/app:1"), "localhost/app:1");
        assert_eq!(norm("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(norm("quay.io/x/y:v1.2"), "quay.io/x/y:v1.2");
        let d = Digest::of(b"x");
        assert_eq!(
            norm(&format!("redis@{d}")),
            format!("docker.io/library/redis@{d}")
        );
    }

    #[test]
    fn familiar_names() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/redis:alpine"), "redis:alpine");
        assert_eq!(f("docker.io/user/app:1"), "user/app:1");
        assert_eq!(f("localhost/airlock/app:1"), "localhost/airlock/app:1");
        // Shortened, these would name the registry ex.docker.x (or localhost).
        assert_eq!(
            f("docker.io/ex.docker.x/y"),
            "docker.io/ex.docker.x/y:latest"
        );
        assert_eq!(f("docker.io/localhost/y:1"), "docker.io/localhost/y:1");
        assert_eq!(f("docker.io/my.app:1"), "my.app:1");
        for s in ["docker.io/ex.docker.x/y", "docker.io/localhost/y", "redis"] {
            let r = Reference::parse(s).unwrap();
            assert_eq!(Reference::parse(&r.familiar()).unwrap(), r, "{s}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse("Redis").is_err());
        assert!(Reference::parse("redis:").is_err());
        assert!(Reference::parse("redis@sha256:zz").is_err());
        assert!(Reference::parse("a//b").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("k8s*", "k8s.gcr.io/pause:3.9"));
        assert!(glob_match("*pause*", "registry.k8s.io/pause:3.9"));
        assert!(!glob_match("redis", "redis:alpine"));
        assert!(glob_match("redis:?lpine", "redis:alpine"));
        assert!(glob_match("*", ""));
    }
}
