//! `pull`, `push`, `login`, `logout`, and the `docker://` transport of `copy`.

use std::io::{self, IsTerminal, Read};
use std::path::Path;

use anyhow::{bail, Result};

use airlock_core::store::Store;
use airlock_core::transport::store::{StoreDestination, StoreSource};
use airlock_core::transport::{copy_images, select, ImageSource, SourceImage};
use airlock_core::Reference;
use airlock_remote::registry::auth::{self, Credentials};
use airlock_remote::registry::pull::PlatformChoice;
use airlock_remote::registry::push::{push as push_image, MountHints, PushReport};
use airlock_remote::registry::{Registry, RegistryOptions};

use crate::hints::UsageError;

/// Network options shared by the registry commands.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// Skip TLS verification / allow plain HTTP.
    pub insecure: bool,
}

impl NetOptions {
    /// A registry client for `host` with these options.
    pub fn registry_for(&self, host: &str) -> Result<Registry> {
        self.registry(host)
    }

    fn registry(&self, host: &str) -> Result<Registry> {
        Ok(Registry::new(
            host,
            &RegistryOptions {
                insecure: self.insecure,
                credentials: None,
            },
        )?)
    }
}

/// A registry destination: one reference, or a host and path prefix to rename images onto.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistryTarget {
    /// Exactly this reference.
    Exact(Reference),
    /// `HOST[/PREFIX]`: each image keeps its repository path and tag below it.
    Prefix { host: String, prefix: String },
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
            bail!(UsageError(format!("docker://{s}: name a registry host")));
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

    fn host(&self) -> String {
        match self {
            RegistryTarget::Exact(r) => r.domain().to_string(),
            RegistryTarget::Prefix { host, .. } => host.clone(),
        }
    }
}

/// Push `images` from `source` to `target`; returns lines to print.
pub fn push_images(
    source: &dyn ImageSource,
    images: &[SourceImage],
    target: &RegistryTarget,
    net: &NetOptions,
) -> Result<Vec<String>> {
    let reg = net.registry(&target.host())?;
    let hints = MountHints::default();
    let meter =
        crate::progress::Meter::start("Pushing", crate::progress::total_size(images), false);
    let metered = crate::progress::MeteredSource {
        inner: source,
        meter: &meter,
    };
    let source: &dyn ImageSource = &metered;
    let mut lines = Vec::new();
    if matches!(target, RegistryTarget::Exact(_)) && images.len() != 1 {
        bail!(UsageError(format!(
            "{} images but one destination name; give docker://HOST[/PREFIX] to push them all",
            images.len()
        )));
    }
    for img in images {
        let names: Vec<Reference> = if img.names.is_empty() {
            match target {
                RegistryTarget::Exact(r) => vec![r.clone()],
                RegistryTarget::Prefix { .. } => bail!(UsageError(format!(
                    "image {} has no name to push it under",
                    img.id.short()
                ))),
            }
        } else {
            img.names.clone()
        };
        for name in names {
            let dest = target.map(&name)?;
            let report = push_image(&reg, source, img, &dest, &hints)?;
            lines.push(describe(&dest, img, &report));
        }
    }
    Ok(lines)
}

fn describe(dest: &Reference, img: &SourceImage, r: &PushReport) -> String {
    format!(
        "Pushed {} ({}): {} blobs sent ({} bytes), {} already there, {} mounted",
        dest, img.root.digest, r.sent, r.bytes_sent, r.existing, r.mounted
    )
}

pub fn pull(
    store_dir: &Path,
    reference: &str,
    platform: Option<String>,
    all: bool,
    quiet: bool,
    net: &NetOptions,
) -> Result<()> {
    let r = Reference::parse(reference)?;
    let choice = match (platform, all) {
        (_, true) => PlatformChoice::All,
        (Some(p), _) => PlatformChoice::One(airlock_core::import::parse_platform(&p)?),
        (None, false) => PlatformChoice::Host,
    };
    let store = Store::open(store_dir)?;
    let staging = store.staging()?;
    let meter = crate::progress::Meter::start("Pulling", 0, quiet);
    let reg = net.registry(r.domain())?.with_progress(meter.counter());
    let source = airlock_remote::registry::pull::pull(&reg, &r, &choice, &staging, &store)?;
    drop(meter);
    let images = source.images().to_vec();
    let changes = copy_images(
        &source,
        &images,
        Box::new(StoreDestination::new(&store, &staging)),
    )?;
    crate::commands::report_moves(&changes);
    if !quiet {
        for img in &images {
            println!("Pulled {} ({})", r.familiar(), img.root.digest);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn push(
    store_dir: &Path,
    image: Option<String>,
    destination: Option<String>,
    all: bool,
    host: Option<String>,
    prefix: Option<String>,
    quiet: bool,
    net: &NetOptions,
) -> Result<()> {
    let store = Store::open(store_dir)?;
    let source = StoreSource::new(&store)?;
    let (images, target) = if all {
        let host = host.expect("clap requires --registry with --all");
        let target = RegistryTarget::Prefix {
            host,
            prefix: prefix.unwrap_or_default().trim_matches('/').to_string(),
        };
        (select(source.images(), &[], &[], true)?, target)
    } else {
        let q = image.expect("clap requires an image");
        let mut images = select(source.images(), std::slice::from_ref(&q), &[], false)?;
        let dest = match destination {
            Some(d) => Reference::parse(d.strip_prefix("docker://").unwrap_or(&d))?,
            None => match Reference::parse(&q)
                .ok()
                .filter(|r| images[0].names.contains(r))
            {
                Some(r) => r,
                None => bail!(UsageError(format!(
                    "say where to push {q}: airlock push {q} HOST/REPOSITORY:TAG"
                ))),
            },
        };
        images[0].names = vec![dest.clone()];
        (images, RegistryTarget::Exact(dest))
    };
    for line in push_images(&source, &images, &target, net)? {
        if !quiet {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn login(
    host: &str,
    username: Option<String>,
    password_stdin: bool,
    net: &NetOptions,
) -> Result<()> {
    let Some(username) = username else {
        bail!(UsageError("give the user name with -u USER".into()));
    };
    if !password_stdin {
        bail!(UsageError(
            "give the password on standard input with --password-stdin (it never goes on the command line)".into()
        ));
    }
    if io::stdin().is_terminal() {
        bail!(UsageError(
            "--password-stdin reads a pipe: echo \"$PASSWORD\" | airlock login ...".into()
        ));
    }
    let mut password = String::new();
    io::stdin().read_to_string(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    let creds = Credentials { username, password };
    let reg = Registry::new(
        host,
        &RegistryOptions {
            insecure: net.insecure,
            credentials: Some(creds.clone()),
        },
    )?;
    match reg.ping() {
        Err(airlock_remote::RemoteError::Registry {
            status: 401 | 403, ..
        }) => {
            bail!(UsageError(format!(
                "{host} refused the user name or password; nothing was stored"
            )))
        }
        other => other?,
    }
    let path = auth::store(host, &creds)?;
    eprintln!("Credentials stored in {}", path.display());
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(host: &str) -> Result<()> {
    if auth::remove(host)? {
        println!("Removed login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(())
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
