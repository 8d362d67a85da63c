//! Where a push goes: one reference, or a host and path prefix every image is renamed onto
//! (`docker.io/library/redis:alpine` -> `HOST/PREFIX/library/redis:alpine`, the way Hauler
//! and Zarf rename).

use airlock_core::Reference;

use crate::{RemoteError, Result};

/// A registry destination.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistryTarget {
    /// Exactly this reference.
    Exact(Reference),
    /// `HOST[/PREFIX]`: each image keeps its repository path and tag below it.
    Prefix {
        /// The registry host.
        host: String,
        /// The path put before each repository (may be empty).
        prefix: String,
    },
}

fn usage(msg: String) -> RemoteError {
    RemoteError::Core(airlock_core::Error::Usage(msg))
}

impl RegistryTarget {
    /// Parse what follows `docker://`: a last component with a tag or digest is exact.
    pub fn parse(s: &str) -> Result<RegistryTarget> {
        let last = s.rsplit('/').next().unwrap_or("");
        if s.contains('/') && (last.contains(':') || last.contains('@')) {
            return Ok(RegistryTarget::Exact(Reference::parse(s)?));
        }
        let (host, prefix) = s.split_once('/').unwrap_or((s, ""));
        if host.is_empty() {
            return Err(usage(format!("docker://{s}: name a registry host")));
        }
        Ok(RegistryTarget::Prefix {
            host: host.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// Where one image name goes.
    pub fn map(&self, name: &Reference) -> Result<Reference> {
        match self {
            RegistryTarget::Exact(r) => Ok(r.clone()),
            RegistryTarget::Prefix { host, prefix } => {
                let mut s = format!("{host}/");
                if !prefix.is_empty() {
                    s.push_str(prefix);
                    s.push('/');
                }
                s.push_str(name.path());
                s.push(':');
                s.push_str(name.tag().unwrap_or("latest"));
                Ok(Reference::parse(&s)?)
            }
        }
    }

    /// The registry host.
    pub fn host(&self) -> String {
        match self {
            RegistryTarget::Exact(r) => r.domain().to_string(),
            RegistryTarget::Prefix { host, .. } => host.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_targets_rename_like_hauler() {
        let t = RegistryTarget::parse("127.0.0.1:5000/airgap").unwrap();
        let n = Reference::parse("redis:alpine").unwrap();
        assert_eq!(
            t.map(&n).unwrap().to_string(),
            "127.0.0.1:5000/airgap/library/redis:alpine"
        );
        let t = RegistryTarget::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            t.map(&n).unwrap().to_string(),
            "127.0.0.1:5000/library/redis:alpine"
        );
        assert_eq!(
            RegistryTarget::parse("127.0.0.1:5000/a/b:1").unwrap(),
            RegistryTarget::Exact(Reference::parse("127.0.0.1:5000/a/b:1").unwrap())
        );
    }
}
