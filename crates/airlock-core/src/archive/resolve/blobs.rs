//! What an OCI descriptor's blob must be: where OCI readers look for it, of the size the
//! descriptor gives, and (for an artifact) present unless everyone knows its bytes.

use super::{dialect_of, BlobLookup, Dialect};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::spec::{Descriptor, Manifest};

/// Every blob an artifact names must be here, except foreign ones (with urls) and the empty
/// config `{}`, which writers may leave out because everyone knows its bytes: it is made.
pub(super) fn check_artifact_blobs(lookup: &BlobLookup, m: &Manifest, label: &str) -> Result<()> {
    for d in std::iter::once(&m.config).chain(&m.layers) {
        if lookup.has(&d.digest)
            || d.urls.is_some()
            || lookup.generated.borrow().contains_key(&d.digest)
        {
            continue;
        }
        if d.digest == Digest::of(EMPTY_JSON) {
            lookup
                .generated
                .borrow_mut()
                .insert(d.digest.clone(), EMPTY_JSON.to_vec());
            continue;
        }
        return Err(Error::MissingBlob {
            referenced_by: format!("manifest {label}"),
            missing: d.digest.to_string(),
        });
    }
    Ok(())
}

/// A descriptor's blob must be where OCI readers look for it and of the size it gives.
/// podman and skopeo open `blobs/<algorithm>/<hex>` and nothing else, while containerd takes
/// a blob found anywhere in the tar: a blob elsewhere is read two ways, so it is refused.
/// A blob whose digest matches but whose size does not was described wrongly when written
/// (containerd and registries refuse it later).
pub(super) fn check_descriptor(
    lookup: &BlobLookup,
    d: &Descriptor,
    referenced_by: &str,
) -> Result<()> {
    let canonical = if dialect_of(lookup.contents) == Dialect::Dir {
        d.digest.hex().to_string()
    } else {
        format!("blobs/sha256/{}", d.digest.hex())
    };
    let found = match lookup.file(&canonical) {
        Some(f) => f.size,
        None => {
            let elsewhere = lookup
                .contents
                .files
                .iter()
                .find(|(_, f)| f.digest == d.digest)
                .map(|(path, _)| path);
            return match elsewhere {
                Some(path) if !lookup.generated.borrow().contains_key(&d.digest) => {
                    Err(Error::BadMetadata {
                        path_in_archive: referenced_by.to_string(),
                        what: "metadata",
                        detail: format!(
                            "it names {}, which the archive holds as '{path}' instead of '{canonical}', where podman and skopeo look for it",
                            d.digest
                        ),
                    })
                }
                _ => Ok(()),
            };
        }
    };
    if found != d.size {
        return Err(Error::BadMetadata {
            path_in_archive: referenced_by.to_string(),
            what: "metadata",
            detail: format!(
                "it gives {} a size of {} bytes, but that blob (its digest matches) is {found} bytes",
                d.digest, d.size
            ),
        });
    }
    Ok(())
}

/// The bytes of the OCI empty descriptor.
pub(super) const EMPTY_JSON: &[u8] = b"{}";
