//! Where an archive goes: a file, written under a temporary name and renamed only when
//! complete and on disk, or standard output (never a terminal).

use std::io::{self, BufWriter, IsTerminal, Write};

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use airlock_core::store::durable::{self, SyncingFile};

use crate::hints::UsageError;

/// Run `body` with a buffered writer to `output` (`None` or `-` = standard output). `what`
/// names the content in the refusal to write to a terminal.
pub fn write_output(
    output: Option<PathBuf>,
    what: &str,
    body: impl FnOnce(Box<dyn Write + Send>) -> Result<()>,
) -> Result<()> {
    match output.filter(|p| p.as_os_str() != "-") {
        // A device or pipe (`-o /dev/null`) is written as it is: renaming a temp file over
        // it would replace it with a regular file.
        Some(path) if std::fs::metadata(&path).is_ok_and(|m| !m.is_file() && !m.is_dir()) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            body(Box::new(BufWriter::with_capacity(1 << 20, f)))
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = durable::output_temp(dir, "")
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            // Writeback runs in the background so the final fsync has little left to do.
            let out = SyncingFile::new(tmp.as_file().try_clone()?)?;
            body(Box::new(BufWriter::with_capacity(1 << 20, out)))?;
            durable::publish(tmp, &path)
                .with_context(|| format!("cannot rename the output to {}", path.display()))?;
            Ok(())
        }
        None => {
            if io::stdout().is_terminal() {
                bail!(UsageError(format!(
                    "refusing to write {what} to a terminal: give -o FILE or redirect standard output"
                )));
            }
            body(Box::new(BufWriter::with_capacity(1 << 20, StdoutWriter)))
        }
    }
}

/// Standard output without its line buffering.
struct StdoutWriter;

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}
