//! Layer tars as filesystems: flattening an image into one tree, unpacking a layer onto a
//! directory safely, and writing a directory as a tar.
//!
//! Paths are normalised the same way everywhere (`./x`, `/x` and `x` are one path) and the
//! whiteout rules of the OCI image-spec apply: `.wh.NAME` deletes `NAME` from lower layers,
//! `.wh..wh..opq` hides every lower child of its directory.

pub mod dirtar;
pub mod flatten;
pub mod unpack;

/// Prefix of a whiteout entry's file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// File name of an opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Normalise a path inside a layer: no leading `./` or `/`, no trailing `/`, no `.`
/// components. `..` components are kept so callers can refuse them.
pub fn normalize_path(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}
