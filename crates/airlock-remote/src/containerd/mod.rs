//! containerd through its gRPC API: the content, images, leases, snapshots and diff
//! services, on its unix socket. `load --into containerd` and `copy NAME containerd:` use
//! [`ContainerdDestination`], `save containerd:NAME` [`ContainerdSource`]; what Kubernetes
//! sees is the `k8s.io` namespace.

mod api;
mod client;
mod dest;
mod source;

pub use client::Client;
pub use dest::{ContainerdDestination, ContainerdReport};
pub use source::ContainerdSource;

/// containerd's default socket.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

/// The socket to use: the one given, else `CONTAINERD_ADDRESS`, else the default.
pub fn address(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| {
            std::env::var("CONTAINERD_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())
}
