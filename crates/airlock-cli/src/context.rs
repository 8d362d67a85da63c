//! What every command gets: where the store is, how to talk to registries and how to show
//! progress (a leaf but for the `--progress` choice).

use std::path::PathBuf;

use anyhow::{bail, Result};

use airlock_remote::registry::RegistryOptions;

/// The global options, resolved.
pub struct Context {
    /// The store directory.
    pub store_dir: PathBuf,
    /// TLS and credentials for registries.
    pub registry: RegistryOptions,
    /// How copies show progress (`--progress`).
    pub progress: crate::progress::Choice,
}

impl Context {
    /// From `--store` and `--insecure` / `--tls-verify`.
    pub fn new(store: Option<PathBuf>, insecure: bool) -> Result<Context> {
        Ok(Context {
            store_dir: store_dir(store)?,
            registry: RegistryOptions {
                insecure,
                credentials: None,
            },
            progress: crate::progress::Choice::default(),
        })
    }

    /// Open the store.
    pub fn store(&self) -> Result<airlock_core::store::Store> {
        Ok(airlock_core::store::Store::open(&self.store_dir)?)
    }
}

fn store_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("AIRLOCK_STORE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p).join("airlock"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/airlock")),
        None => bail!("cannot tell where the store is: set --store, AIRLOCK_STORE or HOME"),
    }
}
