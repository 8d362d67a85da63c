//! # airlock-core
//!
//! The blocking core of airlock, a tool that moves container images and filesystem
//! snapshots across an air gap without any container engine.
//!
//! - [`store`]: the embedded image store, an OCI image layout with atomic, locked updates.
//! - [`archive`]: every image-archive dialect docker, podman, containerd, skopeo and crane
//!   write (read in one streaming pass, every digest checked), and the hybrid archive that
//!   all of them load (written metadata first).
//! - [`transport`]: the source/destination abstraction and the one copy path every command
//!   uses.
//! - [`trust`]: signatures checked offline against the keys given, before anything loads.
//! - [`transfer`]: the bill of materials every archive carries, and its signature.
//! - [`compression`], [`digest`], [`reference`], [`spec`]: the building blocks.
//!
//! Nothing here prints, parses command lines or starts an async runtime; errors are one
//! typed enum, [`Error`], carrying the paths and digests a user needs.

#![deny(missing_docs)]

pub mod archive;
pub mod blob_reader;
pub mod changes;
pub mod compression;
pub mod container;
pub mod copy;
pub mod delta;
pub mod digest;
pub mod error;
pub mod fingerprint;
pub mod graph;
pub mod import;
pub mod layer;
pub mod progress;
pub mod reference;
pub mod shipment;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod transfer;
pub mod transport;
pub mod trust;

#[cfg(test)]
pub(crate) mod testtar;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
