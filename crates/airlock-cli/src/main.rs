//! `airlock`: move container images across an air gap, no engine needed.
//!
//! This crate holds only the command line: argument parsing (one module per command under
//! [`cmd`]), output formatting, the progress line and the hints added to errors. Every move
//! of images is one call of `airlock_remote::transports::copy`; all format, store and
//! transport logic lives in the libraries.

mod cmd;
mod context;
mod examples;
mod hints;
mod listing;
mod options;
mod output;
mod progress;
mod sink;
mod template;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use cmd::{
    copy, docs, fsck, load, registry, review, save, serve, sign, snapshots, store, sync, verify,
};

/// Move container images and filesystem snapshots across an air gap, without any engine.
#[derive(Parser, Debug)]
#[command(name = "airlock", version, about, max_term_width = 100)]
struct Cli {
    /// Image store directory [default: $AIRLOCK_STORE, else $XDG_DATA_HOME/airlock, else
    /// ~/.local/share/airlock]
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,

    /// Talk to registries without TLS verification, or over plain HTTP (loopback registries
    /// always may use plain HTTP).
    #[arg(long, global = true)]
    insecure: bool,

    /// `--tls-verify=false` is the same as `--insecure` (skopeo's spelling).
    #[arg(long, global = true, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,

    /// Registry credentials file, as podman's and skopeo's `--authfile` (the same as
    /// $REGISTRY_AUTH_FILE): read first, and where `login` and `logout` write.
    #[arg(long, global = true, value_name = "FILE")]
    authfile: Option<PathBuf>,

    /// Docker context whose engine `docker-daemon:` means, as the docker CLI's `--context`
    /// (wins over $DOCKER_HOST and $DOCKER_CONTEXT; `default` is $DOCKER_HOST or the local
    /// socket).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,

    /// How copies show progress on standard error: `auto` (bars when it is a terminal,
    /// else nothing), `tty` (bars: one per blob in flight and a total with rate and time
    /// left), `plain` (a line per finished blob and a summary, for CI logs) or `none`.
    /// `--quiet` means none; `NO_COLOR` turns the bars' colours off.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = progress::Choice::Auto)]
    progress: progress::Choice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(display_order = 1, after_help = examples::LOAD)]
    Load(load::LoadArgs),
    #[command(display_order = 2, after_help = examples::SAVE)]
    Save(save::SaveArgs),
    #[command(display_order = 3, after_help = examples::VERIFY)]
    Verify(verify::VerifyArgs),
    #[command(display_order = 4, after_help = examples::REVIEW)]
    Review(review::ReviewArgs),
    #[command(display_order = 4, after_help = examples::SIGN)]
    Sign(sign::SignArgs),
    #[command(display_order = 4, after_help = examples::IMAGES)]
    Images(store::ImagesArgs),
    #[command(display_order = 5, after_help = examples::ARTIFACTS)]
    Artifacts(store::ArtifactsArgs),
    #[command(display_order = 5, after_help = examples::INSPECT)]
    Inspect(store::InspectArgs),
    #[command(display_order = 6, after_help = examples::TAG)]
    Tag(store::TagArgs),
    #[command(display_order = 7, after_help = examples::RMI)]
    Rmi(store::RmiArgs),
    /// Delete blobs no image references, and staging left by interrupted runs.
    #[command(display_order = 8, after_help = examples::GC)]
    Gc,
    #[command(display_order = 8, after_help = examples::FSCK)]
    Fsck(fsck::FsckArgs),
    #[command(display_order = 9, after_help = examples::EXPORT)]
    Export(snapshots::ExportArgs),
    #[command(display_order = 10, after_help = examples::IMPORT)]
    Import(snapshots::ImportArgs),
    #[command(display_order = 11, after_help = examples::CREATE)]
    Create(snapshots::CreateArgs),
    #[command(display_order = 12, after_help = examples::CONTAINERS)]
    Containers(snapshots::ContainersArgs),
    #[command(display_order = 13, after_help = examples::RM)]
    Rm(snapshots::RmArgs),
    #[command(display_order = 14, after_help = examples::COMMIT)]
    Commit(snapshots::CommitArgs),
    #[command(display_order = 15, after_help = examples::COPY)]
    Copy(copy::CopyArgs),
    #[command(display_order = 16, after_help = examples::PULL)]
    Pull(registry::PullArgs),
    #[command(display_order = 17, after_help = examples::PUSH)]
    Push(registry::PushArgs),
    #[command(display_order = 18, after_help = examples::LOGIN)]
    Login(registry::LoginArgs),
    #[command(display_order = 19, after_help = examples::LOGOUT)]
    Logout(registry::LogoutArgs),
    #[command(display_order = 20, after_help = examples::INVENTORY)]
    Inventory(store::InventoryArgs),
    #[command(display_order = 21, after_help = examples::SERVE)]
    Serve(serve::ServeArgs),
    #[command(display_order = 22, after_help = examples::SYNC)]
    Sync(sync::SyncArgs),
    #[command(display_order = 30, after_help = examples::COMPLETIONS)]
    Completions(docs::CompletionsArgs),
    #[command(display_order = 31, after_help = examples::MAN)]
    Man(docs::ManArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // No store, no network: documentation only.
    let command = match cli.command {
        Command::Completions(a) => return docs::completions(Cli::command(), a),
        Command::Man(a) => return docs::man(Cli::command(), a),
        other => other,
    };
    if let Some(f) = &cli.authfile {
        // Read wherever credentials are looked up (the remote crate's `auth`), as skopeo
        // reads its flag: set before any thread starts.
        std::env::set_var("REGISTRY_AUTH_FILE", f);
    }
    if let Some(name) = &cli.context {
        // The engine is found from the environment (the remote crate's `engine::host`);
        // the flag ranks above DOCKER_HOST there, as in the docker CLI, except that the
        // `default` context is DOCKER_HOST itself.
        if name != "default" {
            std::env::remove_var("DOCKER_HOST");
        }
        std::env::set_var("DOCKER_CONTEXT", name);
    }
    let mut ctx = context::Context::new(cli.store, cli.insecure || !cli.tls_verify)?;
    ctx.progress = cli.progress;
    match command {
        Command::Load(a) => load::run(&ctx, a),
        Command::Save(a) => save::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Review(a) => review::run(&ctx, a),
        Command::Sign(a) => sign::run(&ctx, a),
        Command::Images(a) => store::images(&ctx, a),
        Command::Artifacts(a) => store::artifacts(&ctx, a),
        Command::Inspect(a) => store::inspect(&ctx, a),
        Command::Tag(a) => store::tag(&ctx, a),
        Command::Rmi(a) => store::rmi(&ctx, a),
        Command::Gc => store::gc(&ctx),
        Command::Fsck(a) => fsck::run(&ctx, a),
        Command::Inventory(a) => store::inventory(&ctx, a),
        Command::Export(a) => snapshots::run_export(&ctx, a),
        Command::Import(a) => snapshots::run_import(&ctx, a),
        Command::Create(a) => snapshots::run_create(&ctx, a),
        Command::Containers(a) => snapshots::containers(&ctx, a),
        Command::Rm(a) => snapshots::run_rm(&ctx, a),
        Command::Commit(a) => snapshots::run_commit(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Pull(a) => registry::pull(&ctx, a),
        Command::Push(a) => registry::push(&ctx, a),
        Command::Login(a) => registry::login(&ctx, a),
        Command::Logout(a) => registry::logout(a),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Sync(a) => sync::run(&ctx, a),
        Command::Completions(_) | Command::Man(_) => unreachable!("answered above"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that write an archive or a filesystem to standard output: when its reader
    // goes away, what it got is incomplete, and that is an error. For listings (`images |
    // head`) it is not.
    let writes_a_stream = matches!(
        cli.command,
        Command::Save(_) | Command::Export(_) | Command::Copy(_) | Command::Inventory(_)
    );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<airlock_core::Error>()
                    .is_some_and(|e| e.is_broken_pipe())
                    || c.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe && !writes_a_stream {
                // The reader went away (`| head`): not an error.
                return ExitCode::SUCCESS;
            }
            if broken_pipe {
                eprintln!("airlock: error: the program reading standard output stopped before the output was complete; nothing was changed, run the command again into a reader that takes it all (or use -o FILE)");
                return ExitCode::FAILURE;
            }
            hints::report(&e);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's help ends with examples, and every example parses: its flags and
    /// arguments are real.
    #[test]
    fn every_subcommand_has_examples_that_parse() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.starts_with("Examples:"),
                "{} has no examples",
                sub.get_name()
            );
            let mut n = 0;
            for line in help.lines().skip(1) {
                let line = line.split(" # ").next().unwrap_or("").trim();
                // The airlock part of a pipeline, without redirections.
                let part = line
                    .split(" | ")
                    .find(|p| p.trim_start().starts_with("airlock "))
                    .unwrap_or("");
                let part = part.split(" > ").next().unwrap_or("");
                if part.is_empty() {
                    continue;
                }
                let words: Vec<String> = part
                    .split_whitespace()
                    .map(|w| w.trim_matches('\'').to_string())
                    .collect();
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{}: `{part}` does not parse: {e}", sub.get_name());
                }
                n += 1;
            }
            assert!(n > 0, "{}: no example runs airlock", sub.get_name());
        }
    }
}
