//! A small tar writer for archives we generate: deterministic headers (uid 0, mtime 0),
//! and a hard check that every entry's data is exactly as long as its header says.

use std::io::{Read, Write};

use crate::digest::CopyError;
use crate::error::{Error, Result};

const BLOCK: usize = 512;

/// Writes tar entries to `W`.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    /// Start a tar stream.
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    fn header(
        &mut self,
        path: &str,
        size: u64,
        kind: tar::EntryType,
        link: Option<&str>,
        context: &str,
    ) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)
            .map_err(|e| Error::stream(format!("tar header for {path}"), e))?;
        if let Some(target) = link {
            h.set_link_name(target)
                .map_err(|e| Error::stream(format!("tar header for {path}"), e))?;
        }
        h.set_size(size);
        h.set_mode(if link.is_some() { 0o777 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(kind);
        h.set_cksum();
        self.out
            .write_all(h.as_bytes())
            .map_err(|e| Error::stream(context.to_string(), e))
    }

    fn pad(&mut self, size: u64, context: &str) -> Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            let zeros = [0u8; BLOCK];
            self.out
                .write_all(&zeros[..BLOCK - rem])
                .map_err(|e| Error::stream(context.to_string(), e))?;
        }
        Ok(())
    }

    /// Add a file held in memory.
    pub fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let ctx = format!("write {path} to the archive");
        self.header(
            path,
            bytes.len() as u64,
            tar::EntryType::Regular,
            None,
            &ctx,
        )?;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::stream(ctx.clone(), e))?;
        self.pad(bytes.len() as u64, &ctx)
    }

    /// Add a file streamed from `reader`, which must yield exactly `size` bytes (the copy
    /// engine's reader checks their digest and fails its last read if it is wrong).
    pub fn append_stream(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<()> {
        let ctx = format!("write {path} to the archive");
        self.header(path, size, tar::EntryType::Regular, None, &ctx)?;
        let mut limited = reader.take(size);
        let written =
            crate::store::copy_plain(&mut limited, &mut self.out).map_err(|e| match e {
                CopyError::Read(e) => Error::stream(format!("read {path}"), e),
                CopyError::Write(e) => Error::stream(ctx.clone(), e),
            })?;
        // One more read: the end-of-blob check of a verifying reader happens here.
        let mut extra = [0u8; 1];
        let longer = match reader.read(&mut extra) {
            Ok(n) => n > 0,
            Err(e) => return Err(Error::stream(format!("read {path}"), e)),
        };
        if written < size || longer {
            return Err(Error::SizeMismatch {
                path_in_archive: path.to_string(),
                expected: size,
                actual: if longer { size + 1 } else { written },
            });
        }
        self.pad(size, &ctx)
    }

    /// Add a symbolic link (Docker 25 links its legacy layer paths to blobs the same way).
    pub fn append_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let ctx = format!("write {path} to the archive");
        self.header(path, 0, tar::EntryType::Symlink, Some(target), &ctx)
    }

    /// Write the end-of-archive marker and return the writer.
    pub fn finish(mut self) -> Result<W> {
        self.out
            .write_all(&[0u8; BLOCK * 2])
            .map_err(|e| Error::stream("finish the archive", e))?;
        Ok(self.out)
    }
}
