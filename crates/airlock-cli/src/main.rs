//! `airlock`: move container images across an air gap, no engine needed.
//!
//! This crate holds only the command line: argument parsing, output formatting and the
//! hints added to errors. All format and store logic lives in `airlock-core`.

mod commands;
mod endpoints;
mod hints;
mod output;
mod progress;
mod registry;
mod sink;
mod snapshots;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load images from an archive (any dialect docker, podman, containerd, skopeo or crane
    /// writes; plain, gzip, zstd, xz or bzip2) into the store, verifying every digest.
    #[command(display_order = 1)]
    Load {
        /// Archive file or OCI layout directory; `-` or nothing reads standard input.
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
        /// Load into the Docker Engine (`docker-daemon`) instead of the store; the archive
        /// is verified, then sent in the form every Docker version loads.
        #[arg(long, value_name = "DEST")]
        into: Option<String>,
    },
    /// Write what this store holds (its blob digests), for the sending side's
    /// `save --incremental-from`.
    #[command(display_order = 20)]
    Inventory {
        /// Output file [default: standard output].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check an archive without loading it: read it through, verify every digest and diffID,
    /// and list the images it holds. Nothing enters the store.
    #[command(display_order = 3)]
    Verify {
        /// Archive file or OCI layout directory; `-` or nothing reads standard input.
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Copy images between transports: store:NAME (or NAME), docker-archive:PATH[:NAME],
    /// oci-archive:PATH[:NAME], oci:DIR[:NAME], docker-daemon:NAME, docker://HOST/REPO[:TAG]
    /// (a destination docker://HOST[/PREFIX] without a tag renames every image onto it).
    #[command(display_order = 15)]
    Copy {
        /// Where the images come from.
        source: String,
        /// Where they go.
        destination: String,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save images from the store into one archive that docker, podman, containerd and
    /// skopeo all load.
    #[command(display_order = 2)]
    Save {
        /// Output file; `-` or nothing writes standard output (never a terminal).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Archive layout: `docker` (OCI layout plus manifest.json: loads everywhere) or `oci`.
        #[arg(long, value_enum, default_value_t = Format::Docker)]
        format: Format,
        /// Compress the whole archive (uses every core).
        #[arg(long, value_enum, default_value_t = Compress::None)]
        compress: Compress,
        /// Compression level (gzip 1-9, default 6; zstd 1-19, default 3).
        #[arg(long, value_name = "N")]
        level: Option<i32>,
        /// Select images whose name matches this glob (`k8s*`, `*/pause:*`); repeatable.
        #[arg(long = "match", value_name = "PATTERN")]
        matches: Vec<String>,
        /// Save every image in the store.
        #[arg(long)]
        all: bool,
        /// Write volumes of at most SIZE (4G, 3900M, ...) as FILE.000, FILE.001, ... for
        /// removable media; `load -i FILE.000` joins them.
        #[arg(long, value_name = "SIZE", requires = "output")]
        split: Option<String>,
        /// Leave out the layers the receiving store already has, as listed by `airlock
        /// inventory` run there; the archive says it is incremental, and only airlock loads it.
        #[arg(long, value_name = "INVENTORY")]
        incremental_from: Option<PathBuf>,
        /// Images by name, image ID or short ID; `docker-daemon:NAME` takes them from the
        /// Docker Engine instead of the store.
        images: Vec<String>,
    },
    /// Write a filesystem snapshot as one tar, like `docker export`: an image's layers
    /// flattened (whiteouts applied), a work container, or any directory (`--dir`).
    #[command(display_order = 9)]
    Export {
        /// Output file; `-` or nothing writes standard output (never a terminal).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Compress the tar (uses every core).
        #[arg(long, value_enum, default_value_t = Compress::None)]
        compress: Compress,
        /// Compression level.
        #[arg(long, value_name = "N")]
        level: Option<i32>,
        /// Export this directory (a chroot, an unpacked rootfs) instead.
        #[arg(long, value_name = "PATH", conflicts_with = "source")]
        dir: Option<PathBuf>,
        /// A work container, an image (name or ID), or `docker-daemon:CONTAINER`.
        #[arg(required_unless_present = "dir")]
        source: Option<String>,
    },
    /// Make a single-layer image from a filesystem tar or directory, like `docker import`.
    #[command(display_order = 10)]
    Import {
        /// A Dockerfile instruction to apply to the config (CMD, ENTRYPOINT, ENV, EXPOSE,
        /// HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
        #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
        changes: Vec<String>,
        /// History comment [default: "Imported from <source>"].
        #[arg(short, long)]
        message: Option<String>,
        /// Platform recorded in the config, os/arch[/variant] [default: this host's].
        #[arg(long)]
        platform: Option<String>,
        /// Import even though the input looks like an image archive.
        #[arg(long)]
        force: bool,
        /// Tar file (plain, gzip, zstd, xz, bzip2), `-` for standard input, or a directory.
        source: String,
        /// Name for the new image.
        name: Option<String>,
    },
    /// Unpack an image into a work container (a directory you change; no process runs).
    #[command(display_order = 11)]
    Create {
        /// The image.
        image: String,
        /// Container name [default: <image>-working-container].
        #[arg(long)]
        name: Option<String>,
    },
    /// List work containers.
    #[command(display_order = 12)]
    Containers,
    /// Remove work containers.
    #[command(display_order = 13)]
    Rm {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Commit a work container's changes as one new layer on its image.
    #[command(display_order = 14)]
    Commit {
        /// The container.
        container: String,
        /// Name for the new image.
        name: Option<String>,
        /// A Dockerfile instruction to apply to the config; repeatable.
        #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
        changes: Vec<String>,
        /// History comment.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Pull an image from a registry into the store.
    #[command(display_order = 16)]
    Pull {
        /// HOST[:PORT]/REPOSITORY[:TAG|@DIGEST].
        reference: String,
        /// Keep only this platform of a multi-platform image, os/arch[/variant].
        #[arg(long, conflicts_with = "all_platforms")]
        platform: Option<String>,
        /// Keep every platform (the index is stored whole).
        #[arg(long)]
        all_platforms: bool,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Push images to a registry: one (`push IMAGE [DEST]`) or the whole store
    /// (`push --all --registry HOST[:PORT] [--prefix PATH]`).
    #[command(display_order = 17)]
    Push {
        /// The image (name or ID).
        #[arg(required_unless_present = "all")]
        image: Option<String>,
        /// Where to: HOST[:PORT]/REPOSITORY[:TAG] [default: the image's own name].
        destination: Option<String>,
        /// Push every image of the store, renamed onto --registry.
        #[arg(long, requires = "registry", conflicts_with = "image")]
        all: bool,
        /// The registry that receives the images of --all.
        #[arg(long, value_name = "HOST[:PORT]")]
        registry: Option<String>,
        /// A path put before each repository (`docker.io/library/redis` -> HOST/PREFIX/library/redis).
        #[arg(long, value_name = "PATH")]
        prefix: Option<String>,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Store registry credentials where `docker login` keeps them (~/.docker/config.json).
    #[command(display_order = 18)]
    Login {
        /// The registry.
        host: String,
        /// User name.
        #[arg(short, long)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the stored credentials of a registry.
    #[command(display_order = 19)]
    Logout {
        /// The registry.
        host: String,
    },
    /// List images in the store.
    #[command(display_order = 4)]
    Images {
        /// Only names matching this glob.
        pattern: Option<String>,
        /// `table` (default) or `json`.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Only image IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show details of images as JSON.
    #[command(display_order = 5)]
    Inspect {
        /// Images by name, image ID or manifest digest.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    #[command(display_order = 6)]
    Tag {
        /// Existing image (name or ID).
        source: String,
        /// New name.
        target: String,
    },
    /// Remove image names, or images by ID.
    #[command(display_order = 7)]
    Rmi {
        /// Names or IDs.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Delete blobs no image references, and staging left by interrupted runs.
    #[command(display_order = 8)]
    Gc,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Docker,
    Oci,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Compress {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum ListFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<airlock_core::Error>()
                    .is_some_and(|e| e.is_broken_pipe())
                    || c.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                // The reader went away (`| head`): not an error.
                return ExitCode::SUCCESS;
            }
            hints::report(&e);
            ExitCode::FAILURE
        }
    }
}
