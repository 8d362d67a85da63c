//! A destination that keeps nothing: what `verify` copies into. Every blob still passes
//! through the copy engine's verifying reader, so the whole archive is checked while no
//! disk beyond its small JSON documents (held in memory) is needed.

use super::{ImageDestination, SourceImage};
use crate::blob_reader::BlobReader;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::TagChange;

/// Reads every blob to its end and throws it away.
#[derive(Default)]
pub struct DiscardDestination {
    /// The store whose layers rebuild the layers an archive ships as deltas (read only:
    /// `verify` on the far side checks a delta archive against the store it is for).
    pub references: Option<crate::store::Store>,
}

fn drain(data: &mut BlobReader<'_>) -> Result<Digest> {
    std::io::copy(data, &mut std::io::sink()).map_err(|e| data.to_error(e))?;
    data.verified_digest().ok_or_else(|| Error::Truncated {
        detail: format!("{} was not read to its end", data.label()),
    })
}

impl ImageDestination for DiscardDestination {
    fn describe(&self) -> String {
        "nowhere (verify)".into()
    }
    fn has_blob(&self, _digest: &Digest) -> bool {
        false
    }
    fn delta_references(&self) -> Option<&crate::store::Store> {
        self.references.as_ref()
    }
    fn put_unnamed_blob(
        &self,
        _hint: &str,
        _size: u64,
        data: &mut BlobReader<'_>,
    ) -> Result<Digest> {
        drain(data)
    }
    fn finish(self: Box<Self>, _images: &[SourceImage]) -> Result<Vec<TagChange>> {
        Ok(Vec::new())
    }
}
