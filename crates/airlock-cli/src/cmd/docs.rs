//! `airlock completions SHELL` and `airlock man`: the documentation a machine with no
//! internet needs, made from the command-line definitions themselves so it never drifts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

/// Print a shell completion script for bash, zsh, fish, elvish or powershell.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print airlock's man page (roff), or write one page per subcommand into a directory.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write `airlock.1`, `airlock-load.1`, ... into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Run `airlock completions`.
pub fn completions(mut cmd: clap::Command, args: CompletionsArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "airlock", &mut out);
    out.flush()?;
    Ok(())
}

/// Run `airlock man`.
pub fn man(cmd: clap::Command, args: ManArgs) -> Result<()> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            eprintln!("Wrote the man pages into {}", dir.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}
