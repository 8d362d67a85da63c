//! `airlock sign`: a cosign signature for an image in the store, made with a site's key.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use airlock_core::trust::{sign, SigningKey};

use crate::context::Context;

/// Sign an image in the store as cosign does (a simple-signing payload naming its digest),
/// with a PEM private key (ECDSA P-256, RSA or Ed25519). The signature is stored as a
/// referrer of the image, so `save`, `push` and `copy` take it along and the far side's
/// `--key PUB` accepts the image.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The image: a name, an image ID or `repo@sha256:...`.
    pub image: String,
    /// The private key (PEM, unencrypted: `openssl genpkey ...`).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Also tag the signature `REPO:sha256-<hex>.sig`, where cosign and older registries
    /// look for it (adding to the signatures already under that tag).
    #[arg(long)]
    pub legacy_tag: bool,
}

/// Run `airlock sign`.
pub fn run(ctx: &Context, args: SignArgs) -> Result<()> {
    let key = SigningKey::from_file(&args.key)?;
    let store = ctx.store()?;
    let signed = sign::sign_image(&store, &args.image, &key, args.legacy_tag)?;
    let name = signed
        .name
        .map(|n| n.familiar())
        .unwrap_or_else(|| args.image.clone());
    println!(
        "Signed {name} ({}) with {}: signature {}",
        signed.image, key.label, signed.signature
    );
    for c in signed.changes.iter().filter_map(|c| c.name.as_ref()) {
        println!("Tagged {}", c.familiar());
    }
    Ok(())
}
