//! The far side: a layer rebuilt from its delta, checked at every step before the store
//! sees it.

use std::io::{self, BufReader, Read};
use std::sync::{Arc, Mutex};

use super::{patch, plaintext_of, DeltaLayer};
use crate::blob_reader::{BlobReader, Expect};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::spec::Descriptor;
use crate::store::Store;
use crate::transport::ImageDestination;

/// Hashes what is read through it into a hasher the caller keeps.
struct Tally<R> {
    inner: R,
    hasher: Arc<Mutex<Hasher>>,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

fn take(h: &Arc<Mutex<Hasher>>) -> Digest {
    std::mem::take(&mut *h.lock().unwrap_or_else(|p| p.into_inner())).finish()
}

/// Rebuild the layer `delta` describes from the store's copy of its reference, its
/// corrections `fix` (read whole before: they are small) and its patch, streamed from
/// `patch_entry`, and hand it to `dest` as the blob it names. The patch's digest, the tar's
/// diffID and the blob's digest are all checked; any mismatch is an error and the blob is
/// not kept.
pub fn rebuild(
    store: &Store,
    delta: &DeltaLayer,
    fix: Option<&[u8]>,
    patch_entry: &mut dyn Read,
    dest: &dyn ImageDestination,
) -> Result<()> {
    let broken = |detail: String| Error::DeltaBroken {
        layer: delta.digest.clone(),
        detail,
    };
    if !store.has_blob(&delta.reference) {
        return Err(Error::DeltaReferenceMissing {
            layer: delta.digest.clone(),
            reference: delta.reference.clone(),
            image: delta.reference_image.clone(),
        });
    }
    if let (Some(want), Some(bytes)) = (&delta.corrections, fix) {
        if &Digest::of(bytes) != want {
            return Err(broken(
                "its corrections file is damaged (its digest differs)".into(),
            ));
        }
    }
    let dir = store.tmp_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let reference = plaintext_of(store, &delta.reference, &delta.reference_diff_id, &dir)?;
    let ref_file = std::fs::File::open(&reference).map_err(|e| Error::io("open", &reference, e))?;
    let ref_len = ref_file
        .metadata()
        .map_err(|e| Error::io("read", &reference, e))?
        .len();
    let patch_hash = Arc::new(Mutex::new(Hasher::new()));
    let plain_hash = Arc::new(Mutex::new(Hasher::new()));
    let patch_in = BufReader::new(Tally {
        inner: &mut *patch_entry,
        hasher: patch_hash.clone(),
    });
    let plain = Tally {
        inner: patch::Apply::new(&ref_file, ref_len, patch_in),
        hasher: plain_hash.clone(),
    };
    let bytes: Box<dyn Read + '_> = match fix {
        Some(f) => Box::new(super::deflate::Recompress::new(plain, f)),
        None => Box::new(plain),
    };
    let expect = Expect {
        digest: Some(delta.digest.clone()),
        size: Some(delta.size),
        diff_id: false,
    };
    let mut blob = BlobReader::new(bytes, delta.patch_path(), expect, None);
    let put = dest
        .put_blob(
            &Descriptor::new("", delta.digest.clone(), delta.size),
            &mut blob,
        )
        .and_then(|_| blob.finish().map(|_| ()));
    drop(blob);
    // Whatever else went wrong, a damaged patch or a tar that is not the layer's says more.
    // (What the decoder's buffer read is hashed already; the rest is hashed here.)
    let mut rest = Tally {
        inner: patch_entry,
        hasher: patch_hash.clone(),
    };
    io::copy(&mut rest, &mut io::sink()).map_err(|e| Error::stream("read the delta", e))?;
    if take(&patch_hash) != delta.patch {
        return Err(broken("its patch is damaged (its digest differs)".into()));
    }
    let tar = take(&plain_hash);
    if put.is_ok() && tar != delta.diff_id {
        return Err(broken(format!(
            "it rebuilds a tar whose digest is {tar}, not the layer's diffID {}",
            delta.diff_id
        )));
    }
    put.map_err(|e| match e {
        Error::DigestMismatch { actual, .. } => broken(format!(
            "the rebuilt blob's digest is {actual}; the corrections do not fit"
        )),
        Error::Stream { source, .. } | Error::Io { source, .. }
            if source.kind() == io::ErrorKind::InvalidData =>
        {
            broken(source.to_string())
        }
        other => other,
    })
}
