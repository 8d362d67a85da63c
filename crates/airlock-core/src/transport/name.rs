//! Transport names, spelled as skopeo spells them: `store:NAME` (or a bare `NAME`),
//! `docker-archive:PATH[:NAME]`, `oci-archive:PATH[:NAME]`, `oci:DIR[:NAME]`,
//! `docker-daemon:NAME`, `docker://HOST/REPO[:TAG]`. One parser for every command.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where images come from or go to.
#[derive(Clone, Debug, PartialEq)]
pub enum TransportName {
    /// The embedded store, optionally one name (or ID, or digest) in it.
    Store(Option<String>),
    /// A docker-archive tar (what `docker save` writes; airlock writes the hybrid form).
    DockerArchive(PathBuf, Option<String>),
    /// An OCI archive tar.
    OciArchive(PathBuf, Option<String>),
    /// An OCI layout directory.
    OciDir(PathBuf, Option<String>),
    /// containers/image's `dir:` layout (one image, no name).
    Dir(PathBuf),
    /// The Docker Engine, optionally one image (or a glob) in it.
    DockerDaemon(Option<String>),
    /// A registry: what follows `docker://`.
    Registry(String),
    /// containerd (its socket and namespace are options of the request), optionally one
    /// image in it.
    Containerd(Option<String>),
}

impl TransportName {
    /// Parse a transport-prefixed name; a name without a known prefix is the store's.
    pub fn parse(s: &str) -> Result<TransportName> {
        let path_and_ref = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
                _ => (PathBuf::from(rest.trim_end_matches(':')), None),
            }
        };
        let opt = |r: &str| (!r.is_empty()).then(|| r.to_string());
        Ok(if let Some(r) = s.strip_prefix("store:") {
            TransportName::Store(opt(r))
        } else if let Some(r) = s.strip_prefix("docker-archive:") {
            let (p, n) = path_and_ref(r);
            TransportName::DockerArchive(p, n)
        } else if let Some(r) = s.strip_prefix("oci-archive:") {
            let (p, n) = path_and_ref(r);
            TransportName::OciArchive(p, n)
        } else if let Some(r) = s.strip_prefix("oci:") {
            let (p, n) = path_and_ref(r);
            TransportName::OciDir(p, n)
        } else if let Some(r) = s.strip_prefix("dir:") {
            TransportName::Dir(PathBuf::from(r))
        } else if let Some(r) = s.strip_prefix("docker-daemon:") {
            TransportName::DockerDaemon(opt(r))
        } else if let Some(r) = s.strip_prefix("containerd:") {
            TransportName::Containerd(opt(r))
        } else if let Some(r) = s.strip_prefix("docker://") {
            TransportName::Registry(r.to_string())
        } else if s.contains("://")
            || s.split_once(':').is_some_and(|(p, rest)| {
                !p.contains('/') && (rest.starts_with('/') || rest.starts_with('.'))
            })
        {
            return Err(Error::Usage(format!(
                "{s}: unknown transport; use store:, docker-archive:, oci-archive:, oci:, dir:, docker-daemon:, containerd: or docker://"
            )));
        } else {
            TransportName::Store(opt(s))
        })
    }

    /// The image name the transport carries (`docker-archive:x.tar:app:1` -> `app:1`).
    pub fn image(&self) -> Option<&str> {
        match self {
            TransportName::Store(n)
            | TransportName::DockerArchive(_, n)
            | TransportName::OciArchive(_, n)
            | TransportName::OciDir(_, n)
            | TransportName::DockerDaemon(n)
            | TransportName::Containerd(n) => n.as_deref(),
            TransportName::Registry(r) => Some(r),
            TransportName::Dir(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_style_names() {
        let p = |s| TransportName::parse(s).unwrap();
        assert_eq!(
            p("redis:alpine"),
            TransportName::Store(Some("redis:alpine".into()))
        );
        assert_eq!(p("store:redis"), TransportName::Store(Some("redis".into())));
        assert_eq!(
            p("docker-archive:/tmp/x.tar:app:1"),
            TransportName::DockerArchive("/tmp/x.tar".into(), Some("app:1".into()))
        );
        assert_eq!(
            p("oci:/tmp/d"),
            TransportName::OciDir("/tmp/d".into(), None)
        );
        assert_eq!(
            p("docker-daemon:busybox:1"),
            TransportName::DockerDaemon(Some("busybox:1".into()))
        );
        assert_eq!(p("docker-daemon:"), TransportName::DockerDaemon(None));
        assert_eq!(p("containerd:"), TransportName::Containerd(None));
        assert_eq!(
            p("docker://x.io/y:1"),
            TransportName::Registry("x.io/y:1".into())
        );
        assert!(TransportName::parse("dir-thing:/x").is_err());
        assert_eq!(p("dir:/tmp/d"), TransportName::Dir("/tmp/d".into()));
        assert_eq!(p("my-app:1"), TransportName::Store(Some("my-app:1".into())));
    }
}
