//! airlock's integration tests: one binary, modules by feature, real tools as oracles.

mod util;

mod artifacts;
mod bundles;
mod cli;
mod containerd;
mod containerd_api;
mod corruption;
mod deltas;
mod dialects;
mod differentials;
mod dir_layout;
mod engine_layers;
mod fingerprints;
mod format;
mod gpg;
mod interop;
mod keyless;
mod layering;
mod offline_docs;
mod podman_service;
mod policy;
mod progress;
mod registry;
mod reliability;
mod remote_engines;
mod resume;
mod roundtrip;
mod serve;
mod snapshots;
mod streaming;

mod synthetic;
mod transfer;
mod trust;
