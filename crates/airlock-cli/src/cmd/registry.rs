//! `pull`, `push`, `login`, `logout`: registries, through the same copy as everything else.

use std::io::{self, IsTerminal, Read};

use anyhow::{bail, Result};
use clap::Args;

use airlock_core::transport::name::TransportName;
use airlock_core::Reference;
use airlock_remote::registry::auth::{self, Credentials};
use airlock_remote::registry::{Registry, RegistryOptions};
use airlock_remote::transports;

use crate::context::Context;
use crate::hints::UsageError;
use crate::options::{PlatformArgs, ReferrerArgs, SelectArgs};
use crate::output::{print_lines, report_moves};
use crate::progress::Meter;

/// Pull an image from a registry into the store.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// HOST[:PORT]/REPOSITORY[:TAG|@DIGEST].
    pub reference: String,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub referrers: ReferrerArgs,
    #[command(flatten)]
    pub trust: crate::options::TrustArgs,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Push images to a registry: one (`push IMAGE [DEST]`) or the whole store
/// (`push --all --registry HOST[:PORT] [--prefix PATH]`).
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The image (name or ID).
    #[arg(required_unless_present = "all")]
    pub image: Option<String>,
    /// Where to: HOST[:PORT]/REPOSITORY[:TAG] [default: the image's own name].
    pub destination: Option<String>,
    /// Push every image of the store, renamed onto --registry.
    #[arg(long, requires = "registry", conflicts_with = "image")]
    pub all: bool,
    /// The registry that receives the images of --all.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
    /// A path put before each repository (`docker.io/library/redis` -> HOST/PREFIX/library/redis).
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// The signatures, SBOMs and attestations the store holds for the image are pushed to
    /// its repository too, unless these say otherwise.
    #[command(flatten)]
    pub referrers: ReferrerArgs,
    #[command(flatten)]
    pub trust: crate::options::TrustArgs,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Store registry credentials where `docker login` keeps them (~/.docker/config.json).
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry.
    pub host: String,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Forget the stored credentials of a registry.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry.
    pub host: String,
}

/// Run `airlock pull`.
pub fn pull(ctx: &Context, args: PullArgs) -> Result<()> {
    let r = Reference::parse(&args.reference)?;
    let store = ctx.store()?;
    let select = SelectArgs {
        referrers: args.referrers,
        ..SelectArgs::default()
    };
    let mut req =
        crate::cmd::request::build(ctx, Vec::new(), Some(&select), None, Some(&args.platform))?;
    let policy = args.trust.policy()?;
    req.gate = policy.as_ref().map(|p| p.gate());
    let meter = Meter::start("Pulling", &req.progress, ctx.progress, args.quiet);
    let src = TransportName::Registry(args.reference.clone());
    let outcome = transports::copy(&store, &src, Some(&TransportName::Store(None)), &req)?;
    meter.finish();
    report_moves(&outcome.changes);
    // The image first, then what came with it (signatures, SBOMs).
    let lines: Vec<String> = outcome
        .images
        .iter()
        .enumerate()
        .map(|(i, img)| match (i, img.artifact_type()) {
            (0, _) | (_, None) => format!("Pulled {} ({})", r.familiar(), img.root.digest),
            (_, Some(kind)) => format!("  with {kind} {}", img.root.digest),
        })
        .collect();
    print_lines(&lines, args.quiet);
    if let Some(p) = policy {
        print_lines(&crate::output::verdict_lines(&p.verdicts()), args.quiet);
    }
    Ok(())
}

/// Run `airlock push`.
pub fn push(ctx: &Context, args: PushArgs) -> Result<()> {
    let store = ctx.store()?;
    let (src, dst, all) = if args.all {
        let host = args.registry.expect("clap requires --registry with --all");
        let prefix = args.prefix.unwrap_or_default();
        let prefix = prefix.trim_matches('/');
        let dst = if prefix.is_empty() {
            host
        } else {
            format!("{host}/{prefix}")
        };
        (TransportName::Store(None), dst, true)
    } else {
        let q = args.image.expect("clap requires an image");
        let dest = match args.destination {
            Some(d) => d.strip_prefix("docker://").unwrap_or(&d).to_string(),
            None => {
                let named = Reference::parse(&q)
                    .ok()
                    .filter(|r| store.resolve(&q).is_ok_and(|img| img.names.contains(r)));
                match named {
                    Some(r) => r.to_string(),
                    None => bail!(UsageError(format!(
                        "say where to push {q}: airlock push {q} HOST/REPOSITORY:TAG"
                    ))),
                }
            }
        };
        (TransportName::Store(Some(q)), dest, false)
    };
    let select = SelectArgs {
        matches: Vec::new(),
        all,
        referrers: args.referrers,
    };
    let mut req = crate::cmd::request::build(ctx, Vec::new(), Some(&select), None, None)?;
    let policy = args.trust.policy()?;
    req.gate = policy.as_ref().map(|p| p.gate());
    // `push IMAGE HOST/REPO` is exactly that name, with or without a tag.
    req.exact_destination = !all;
    let meter = Meter::start("Pushing", &req.progress, ctx.progress, args.quiet);
    let outcome = transports::copy(&store, &src, Some(&TransportName::Registry(dst)), &req)?;
    meter.finish();
    let lines: Vec<String> = outcome.pushed.iter().map(|p| p.to_string()).collect();
    print_lines(&lines, args.quiet);
    if let Some(p) = policy {
        print_lines(&crate::output::verdict_lines(&p.verdicts()), args.quiet);
    }
    Ok(())
}

/// Run `airlock login`.
pub fn login(ctx: &Context, args: LoginArgs) -> Result<()> {
    let LoginArgs {
        host,
        username,
        password_stdin,
    } = args;
    let net = &ctx.registry;
    let host = host.as_str();
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
    let stored = auth::store(host, &creds)?;
    eprintln!("Credentials stored in {stored}");
    println!("Login Succeeded");
    Ok(())
}
/// Run `airlock logout`.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let host = args.host.as_str();
    if auth::remove(host)? {
        println!("Removed login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(())
}
