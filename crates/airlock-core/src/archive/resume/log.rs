//! The entry log of a resumable load: one line per tar entry done, from which a rerun
//! rebuilds the archive reader's state.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::archive::reader::ArchiveContents;
use crate::compression::Compression;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::StagedBlob;

/// One line of the entry log.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Logged {
    pub(super) path: String,
    /// Whether an image-archive file had been seen once this entry was done.
    archive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) blob: Option<LoggedBlob>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct LoggedBlob {
    pub(super) digest: Digest,
    size: u64,
    /// A small JSON blob's bytes (a config, a manifest), which `resolve` reads again: kept
    /// here so that a rerun needs neither the staging area nor the store to hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    small: Option<String>,
    unnamed: bool,
    compression: Option<String>,
    diff_id: Option<std::result::Result<Digest, String>>,
}

/// Rebuild the archive reader's state from the log's lines.
pub(super) fn replay(text: &[u8]) -> Result<(ArchiveContents, bool)> {
    let mut c = ArchiveContents::default();
    let mut seen = false;
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let e: Logged = serde_json::from_slice(line)
            .map_err(|x| Error::Usage(format!("the resume log is damaged ({x}): remove it")))?;
        seen = e.archive;
        if let Some(m) = e.metadata {
            let bytes = b64
                .decode(m)
                .map_err(|x| Error::Usage(format!("the resume log is damaged ({x})")))?;
            c.metadata.insert(e.path, bytes);
        } else if let Some(l) = e.link {
            c.links.insert(e.path, l);
        } else if let Some(b) = e.blob {
            if let Some(text) = &b.small {
                let bytes = b64
                    .decode(text)
                    .map_err(|x| Error::Usage(format!("the resume log is damaged ({x})")))?;
                if Digest::of(&bytes) != b.digest {
                    return Err(Error::Usage(format!(
                        "the resume log's copy of {} does not match its digest: remove the resume state and run again",
                        b.digest
                    )));
                }
                c.small.insert(b.digest.clone(), bytes);
            }
            if let Some(name) = b.compression {
                c.compression
                    .insert(b.digest.clone(), compression_named(&name));
            }
            if let Some(d) = b.diff_id {
                c.diff_ids.insert(b.digest.clone(), d);
            }
            if b.unnamed {
                c.unnamed.insert(b.digest.clone(), e.path.clone());
            }
            c.delivered.insert(b.digest.clone());
            if e.path.starts_with(crate::delta::DIR) {
                // A layer rebuilt from its delta: the manifests name it by digest.
                c.links.insert(
                    crate::archive::reader::blob_path_of(&b.digest),
                    e.path.clone(),
                );
            }
            c.files.insert(
                e.path,
                StagedBlob {
                    digest: b.digest,
                    size: b.size,
                },
            );
        }
    }
    Ok((c, seen))
}

fn compression_named(name: &str) -> Compression {
    [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Xz,
        Compression::Bzip2,
    ]
    .into_iter()
    .find(|c| c.name() == name)
    .unwrap_or(Compression::None)
}

pub(super) fn logged(path: &str, c: &ArchiveContents, archive: bool) -> Logged {
    let mut line = Logged {
        path: path.to_string(),
        archive,
        metadata: None,
        link: None,
        blob: None,
    };
    if let Some(m) = c.metadata.get(path) {
        line.metadata = Some(base64::engine::general_purpose::STANDARD.encode(m));
    } else if let Some(l) = c.links.get(path) {
        line.link = Some(l.clone());
    } else if let Some(f) = c.files.get(path) {
        line.blob = Some(LoggedBlob {
            digest: f.digest.clone(),
            size: f.size,
            small: c
                .small
                .get(&f.digest)
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            unnamed: c.unnamed.get(&f.digest).map(String::as_str) == Some(path),
            compression: c.compression.get(&f.digest).map(|x| x.name().to_string()),
            diff_id: c.diff_ids.get(&f.digest).cloned(),
        });
    }
    line
}
