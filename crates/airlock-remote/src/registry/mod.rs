//! Registries over the OCI Distribution API: pull into the store, push from any source.
//!
//! Manifests, indexes and blobs travel byte for byte, so digests survive; every blob is
//! checked against its digest as it streams in, and every layer's diffID against the config.

pub mod auth;
pub mod client;
pub mod credhelper;
pub mod discover;
mod fetch;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod tags;
pub mod target;
pub mod token;

pub use client::{Registry, RegistryOptions};
pub use target::RegistryTarget;

use airlock_core::spec::media_type;

/// The Accept header for manifests: every kind airlock reads.
pub const MANIFEST_ACCEPT: &str = concat!(
    "application/vnd.oci.image.index.v1+json, ",
    "application/vnd.oci.image.manifest.v1+json, ",
    "application/vnd.docker.distribution.manifest.list.v2+json, ",
    "application/vnd.docker.distribution.manifest.v2+json"
);

/// The media type to send a manifest with: its own `mediaType`, else the descriptor's.
pub fn manifest_content_type(bytes: &[u8], descriptor_type: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .filter(|m| !m.is_empty())
        .or_else(|| (!descriptor_type.is_empty()).then(|| descriptor_type.to_string()))
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string())
}
