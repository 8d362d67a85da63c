//! The one error type of the core library.
//!
//! Every variant carries what a user needs to act: the path inside the archive, the digest
//! that was expected and the one that was found. The CLI turns these into one sentence and
//! a hint; the library never prints.

use std::path::PathBuf;

use crate::digest::Digest;

/// Result alias used throughout the core library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a named file.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "write", ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// An operating-system error while reading or writing a stream (stdin, stdout, a pipe).
    #[error("{context}: {source}")]
    Stream {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// Bytes did not hash to the digest that names them.
    #[error("{what} {path_in_archive}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which digest: "blob", "config", "layer diffID".
        what: &'static str,
        /// Where the bytes came from (path in the archive, or blob name).
        path_in_archive: String,
        /// The digest the metadata promised.
        expected: Digest,
        /// The digest the bytes actually have.
        actual: Digest,
    },

    /// A size recorded in a descriptor does not match the bytes.
    #[error("{path_in_archive}: descriptor says {expected} bytes, found {actual}")]
    SizeMismatch {
        /// Where the bytes came from.
        path_in_archive: String,
        /// Size in the descriptor.
        expected: u64,
        /// Size of the bytes.
        actual: u64,
    },

    /// Metadata names a file or blob the archive does not contain.
    #[error("{referenced_by} names {missing}, which is not in the archive")]
    MissingBlob {
        /// The metadata file that holds the reference.
        referenced_by: String,
        /// The path or digest that is missing.
        missing: String,
    },

    /// An incremental archive leaves out a layer this store does not have.
    #[error(
        "this incremental archive leaves out {missing} (the far side was said to have it), and this store does not have it"
    )]
    IncrementalBaseMissing {
        /// The blob needed.
        missing: String,
    },

    /// A delta archive ships a layer against one this store does not have.
    #[error(
        "this archive ships layer {layer} as a delta against layer {reference} of {image}, which this store does not have; load the archive that brought {image} first, or ask for one made without --incremental-from"
    )]
    DeltaReferenceMissing {
        /// The layer the delta rebuilds.
        layer: Digest,
        /// The layer it needs.
        reference: Digest,
        /// The image that layer came with.
        image: String,
    },

    /// A delta does not rebuild its layer (damaged in transit, or the wrong reference).
    #[error("the delta of layer {layer} does not rebuild it: {detail}; nothing was loaded, ask for the archive again")]
    DeltaBroken {
        /// The layer.
        layer: Digest,
        /// What did not match.
        detail: String,
    },

    /// A delta archive read by something other than a load into a store.
    #[error("this archive ships {count} layer(s) as deltas, which only a store holding the layers they are deltas against can rebuild, so it cannot go to {to}; load it into that store with `airlock load` (docker, podman and skopeo cannot load it either)")]
    DeltaNeedsStore {
        /// How many layers are deltas.
        count: usize,
        /// What it was being copied to.
        to: String,
    },

    /// The input is a flat filesystem tar (`docker export`), not an image archive.
    #[error(
        "this is a filesystem snapshot (a flat tar like `docker export` writes, first entry '{first_entry}'), not an image archive"
    )]
    FilesystemSnapshot {
        /// The first entry that gave it away.
        first_entry: String,
    },

    /// The input is an image archive, given where a filesystem snapshot was expected.
    #[error("this is an image archive ({dialect}), not a filesystem snapshot")]
    ImageArchiveNotSnapshot {
        /// The dialect recognised.
        dialect: String,
    },

    /// The input is not a tar at all.
    #[error("the input is not a tar archive: it looks like {looks_like}")]
    NotATar {
        /// A short description of what the bytes look like ("empty", "HTML", "JSON", ...).
        looks_like: String,
    },

    /// The stream ended in the middle of the archive.
    #[error("the archive is truncated: {detail}")]
    Truncated {
        /// Where it ended.
        detail: String,
    },

    /// The tar structure itself is damaged.
    #[error("the archive is damaged: {detail}")]
    BadTar {
        /// What the tar reader said.
        detail: String,
    },

    /// An archive other loaders would read differently (a parser differential).
    #[error("entry '{entry}' of the archive is refused: {detail}")]
    AmbiguousArchive {
        /// The entry's name as written.
        entry: String,
        /// What makes it ambiguous.
        detail: String,
    },

    /// An entry of an input directory that is not read: a link out of it, a device.
    #[error("'{entry}' in the input directory is refused: {detail}")]
    OutsideInput {
        /// The entry, relative to the directory.
        entry: String,
        /// Why.
        detail: String,
    },

    /// A metadata file could not be parsed.
    #[error("{path_in_archive} is not valid {what}: {detail}")]
    BadMetadata {
        /// The file.
        path_in_archive: String,
        /// What it should have been ("manifest.json", "image config", ...).
        what: &'static str,
        /// Parser message.
        detail: String,
    },

    /// A layer's diffID does not match the config's `rootfs.diff_ids`.
    #[error(
        "layer {index} ({path_in_archive}) has diffID {actual} but the image config lists {expected}"
    )]
    DiffIdMismatch {
        /// Layer position, from 0 at the bottom.
        index: usize,
        /// The layer file in the archive.
        path_in_archive: String,
        /// diffID in the config.
        expected: Digest,
        /// diffID of the uncompressed layer bytes.
        actual: Digest,
    },

    /// The number of layers in a manifest does not match the config.
    #[error("{image}: the manifest lists {layers} layers but the config lists {diff_ids} diffIDs")]
    LayerCountMismatch {
        /// The image.
        image: String,
        /// Layers in the manifest.
        layers: usize,
        /// diffIDs in the config.
        diff_ids: usize,
    },

    /// The archive holds no image we can read.
    #[error("the archive holds no image: {detail}")]
    NoImage {
        /// Why.
        detail: String,
    },

    /// Images the signature policy requires to be signed are not.
    #[error("the signature policy is not met: {detail}")]
    NotSigned {
        /// Each image refused and why.
        detail: String,
    },

    /// An archive's transfer manifest is missing, unsigned, signed by no trusted key, or
    /// does not list what the archive holds.
    #[error("the transfer manifest of {archive} cannot be trusted: {detail}")]
    TransferNotTrusted {
        /// The archive.
        archive: String,
        /// What is wrong.
        detail: String,
    },

    /// An OCI artifact was asked for where only a container image will do.
    #[error("{reference} is an OCI artifact ({artifact_type}), not a container image: it has no filesystem to {action}")]
    NotAnImage {
        /// What was asked for.
        reference: String,
        /// Its artifact type.
        artifact_type: String,
        /// What was to be done ("export", "unpack").
        action: &'static str,
    },

    /// A reference string could not be parsed.
    #[error("invalid image reference '{reference}': {detail}")]
    BadReference {
        /// What was given.
        reference: String,
        /// What is wrong.
        detail: String,
    },

    /// A reference names no image in the store.
    #[error("no image '{reference}' in the store")]
    ImageNotFound {
        /// What was asked for.
        reference: String,
    },

    /// A `--match` glob matches no image name.
    #[error("no image name matches '{pattern}'")]
    NothingMatches {
        /// The glob given.
        pattern: String,
    },

    /// A short ID matches more than one image.
    #[error("'{prefix}' matches more than one image")]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
    },

    /// The store directory is not an airlock/OCI store.
    #[error("{} is not an image store: {detail}", path.display())]
    BadStore {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A compression stream is damaged.
    #[error("{codec} stream is damaged: {detail}")]
    Decompress {
        /// gzip, zstd, xz, bzip2.
        codec: &'static str,
        /// Decoder message.
        detail: String,
    },

    /// A remote transport (registry, engine) failed while the copy engine read from or
    /// wrote to it; the message, and the typed error behind it, are the transport's own.
    #[error("{source}")]
    Transport {
        /// The transport's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A blob in the store no longer matches its digest (disk damage, or a hand edit).
    #[error("the store's blob {digest} is damaged: its content hashes to {actual}")]
    DamagedBlob {
        /// The digest the blob is stored under.
        digest: Digest,
        /// What its content hashes to now.
        actual: Digest,
    },

    /// An option combination or value that cannot work.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wrap an I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Carry this error through an `io::Read` or `io::Write` (see [`Error::from_carried`]).
    pub fn carried(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }

    /// The error an I/O error carries (see [`Error::carried`]), or the I/O error back.
    pub fn from_carried(e: std::io::Error) -> std::result::Result<Self, std::io::Error> {
        if e.get_ref().is_some_and(|i| i.is::<Error>()) {
            let inner = e.into_inner().expect("checked above");
            return Ok(*inner.downcast::<Error>().expect("checked above"));
        }
        Err(e)
    }

    /// Wrap an I/O error on a stream (or unwrap the error it carries).
    pub fn stream(context: impl Into<String>, source: std::io::Error) -> Self {
        let source = match Error::from_carried(source) {
            Ok(e) => return e,
            Err(e) => e,
        };
        Error::Stream {
            context: context.into(),
            source,
        }
    }

    /// A read error of a named stream; running out of bytes is a truncated input.
    pub fn reading(label: &str, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Truncated {
                detail: format!("the stream ended inside {label}"),
            }
        } else {
            Error::stream(format!("read {label}"), e)
        }
    }

    /// True when the failure is a broken pipe on output (the reader went away: not an error
    /// worth reporting, the way `head` users expect).
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Io { source, .. } | Error::Stream { source, .. } => {
                source.kind() == std::io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}
