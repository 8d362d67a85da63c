//! What a request asks for: the distribution-spec endpoint, with its repository name and
//! reference checked against the spec's grammar before anything looks at the store.
//!
//! The path is taken raw, undecoded: a `%` is not in the name grammar, so `%2e%2e` is
//! refused as an invalid name rather than decoded into `..`.

use airlock_core::Digest;

/// One endpoint of the distribution API.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`.
    Manifest { name: String, reference: Target },
    /// `/v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/blobs/uploads/` (start) or `/v2/<name>/blobs/uploads/<id>`.
    Upload { name: String, id: Option<String> },
    /// `/v2/<name>/referrers/<digest>`.
    Referrers { name: String, digest: Digest },
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Target {
    /// A tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
    Tag(String),
    /// A digest.
    Digest(Digest),
}

/// Why a path is not a request this registry answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not under `/v2/`, or no endpoint of the API.
    NotFound,
    /// The repository name breaks the grammar (the name is given, cut to 100 characters).
    Name(String),
    /// The digest is malformed or of an algorithm not served.
    Digest(String),
    /// The tag breaks the grammar.
    Tag(String),
}

/// Parse the path of a request.
pub fn parse(path: &str) -> Result<Route, Refused> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Err(Refused::NotFound);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or(Refused::NotFound)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags {
            name: name_of(name)?,
        });
    }
    for uploads in ["/blobs/uploads/", "/blobs/uploads"] {
        if let Some(name) = rest.strip_suffix(uploads) {
            return Ok(Route::Upload {
                name: name_of(name)?,
                id: None,
            });
        }
    }
    // The name may hold slashes; the last segment is the reference, so split at the last
    // endpoint marker (a reference never holds a slash).
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        if !id.is_empty() && !id.contains('/') && id.bytes().all(is_id_byte) {
            return Ok(Route::Upload {
                name: name_of(name)?,
                id: Some(id.to_string()),
            });
        }
        return Err(Refused::NotFound);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        let name = name_of(name)?;
        return Ok(Route::Blob {
            name,
            digest: digest_of(digest)?,
        });
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let name = name_of(name)?;
        let reference = if reference.contains(':') {
            Target::Digest(digest_of(reference)?)
        } else if is_tag(reference) {
            Target::Tag(reference.to_string())
        } else {
            return Err(Refused::Tag(cut(reference)));
        };
        return Ok(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        let name = name_of(name)?;
        return Ok(Route::Referrers {
            name,
            digest: digest_of(digest)?,
        });
    }
    Err(Refused::NotFound)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn cut(s: &str) -> String {
    s.chars().take(100).collect()
}

fn digest_of(s: &str) -> Result<Digest, Refused> {
    // Only sha256 is stored; anything else (sha512, a short hex, upper case) is refused
    // here, before it could become a path.
    match s.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            s.parse().map_err(|_| Refused::Digest(cut(s)))
        }
        _ => Err(Refused::Digest(cut(s))),
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn name_of(s: &str) -> Result<String, Refused> {
    if is_name(s) {
        Ok(s.to_string())
    } else {
        Err(Refused::Name(cut(s)))
    }
}

/// The spec's repository name: path components of `[a-z0-9]+` joined by `.`, `_`, `__` or
/// runs of `-`, separated by `/`, 255 characters at most. No `..`, no empty component, no
/// leading slash, no percent-encoding.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('/').all(is_component)
}

fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__', or one or more '-', between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn endpoints_are_told_apart_with_slashes_in_names() {
        assert_eq!(parse("/v2/"), Ok(Route::Base));
        assert_eq!(parse("/v2"), Ok(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(
            parse("/v2/registry.k8s.io/pause/manifests/3.9"),
            Ok(Route::Manifest {
                name: "registry.k8s.io/pause".into(),
                reference: Target::Tag("3.9".into())
            })
        );
        assert!(matches!(
            parse(&format!("/v2/a/b/blobs/{D}")),
            Ok(Route::Blob { name, .. }) if name == "a/b"
        ));
        assert_eq!(
            parse("/v2/a/blobs/uploads/"),
            Ok(Route::Upload {
                name: "a".into(),
                id: None
            })
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/1f-2e"),
            Ok(Route::Upload {
                name: "a".into(),
                id: Some("1f-2e".into())
            })
        );
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{D}")),
            Ok(Route::Referrers { .. })
        ));
        assert_eq!(
            parse("/v2/a/tags/list"),
            Ok(Route::Tags { name: "a".into() })
        );
        assert_eq!(parse("/v1/a"), Err(Refused::NotFound));
        assert_eq!(parse("/v2/a/elsewhere"), Err(Refused::NotFound));
    }

    #[test]
    fn hostile_names_digests_and_tags_are_refused() {
        for bad in [
            "/v2/../etc/manifests/x",
            "/v2/a/../b/manifests/x",
            "/v2/%2e%2e/manifests/x",
            "/v2//abs/manifests/x",
            "/v2/UPPER/manifests/x",
            "/v2/a-/manifests/x",
            "/v2/a..b/manifests/x",
            "/v2/a___b/manifests/x",
            "/v2/a/b//c/tags/list",
        ] {
            assert!(matches!(parse(bad), Err(Refused::Name(_))), "{bad}");
        }
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "team/app", "0/1"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in [
            "/v2/a/blobs/sha256:abc",
            "/v2/a/blobs/sha512:0123",
            "/v2/a/blobs/sha256:../../etc/passwd",
            "/v2/a/manifests/sha256:ABCDEF",
        ] {
            assert!(matches!(parse(bad), Err(Refused::Digest(_))), "{bad}");
        }
        assert!(matches!(
            parse("/v2/a/manifests/.hidden"),
            Err(Refused::Tag(_))
        ));
        assert!(matches!(
            parse(&format!("/v2/a/manifests/{}", "t".repeat(129))),
            Err(Refused::Tag(_))
        ));
    }
}
