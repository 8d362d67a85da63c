//! Where a copy into the store stages: a fresh staging area, or one a rerun finds again.
//!
//! - A load of split volumes stages into the area named after their checksums, with a
//!   journal (`airlock_core::archive::resume`), so a rerun reads on from the volume where
//!   the last run stopped; a `verify` of them keeps its journal alike (it stages nothing).
//! - A pull from a registry stages into the area named after the reference and platform
//!   choice, so a rerun (a `sync` killed mid-way) fetches only the blobs the last run had
//!   not finished; what it finds there is hashed again first.
//!
//! Either area is removed once the copy is done, or when it failed before keeping anything
//! worth resuming from: a failed copy leaves the store as it was.

use std::cell::RefCell;

use airlock_core::archive::resume::{self, Resumable};
use airlock_core::store::{Staging, Store};
use airlock_core::transport::name::TransportName;
use airlock_core::Digest;

use super::CopyRequest;
use crate::{RemoteError, Result};

/// What resumes, if anything.
enum Kind {
    Fresh,
    Volumes,
    Pull,
}

/// A copy's staging area.
pub(super) struct Staged {
    pub(super) staging: Staging,
    kind: Kind,
    journal: RefCell<Option<Resumable>>,
    /// What the user is told about a resumed run.
    pub(super) note: Option<String>,
}

impl Staged {
    /// The resumable reader of split volumes, once.
    pub(super) fn take_journal(&self) -> Option<Resumable> {
        self.journal.borrow_mut().take()
    }
}

/// Choose the staging area for copying `src` to `dst`.
pub(super) fn staging_for(
    store: &Store,
    src: &TransportName,
    dst: Option<&TransportName>,
    req: &CopyRequest,
) -> Result<Staged> {
    let fresh = |staging| Staged {
        staging,
        kind: Kind::Fresh,
        journal: RefCell::new(None),
        note: None,
    };
    // A load (into the store) or a verify (no destination) of volumes resumes.
    let verify = dst.is_none();
    if !verify && !matches!(dst, Some(TransportName::Store(_))) {
        return Ok(fresh(store.staging()?));
    }
    match src {
        TransportName::DockerArchive(p, _) | TransportName::OciArchive(p, _) => {
            let Some((base, key)) =
                resume::split_base(p).and_then(|b| resume::key_of(&b).map(|k| (b, k)))
            else {
                return Ok(fresh(store.staging()?));
            };
            let (name, done) = match verify {
                true => (format!("verify-{key}"), "verified"),
                false => (key, "loaded"),
            };
            let staging = store.resumable_staging(&name)?;
            match resume::open(&base, &staging)? {
                Some(r) => {
                    let note = r.resumed_at.as_ref().map(|v| {
                        format!(
                            "Resumed at {}: what the volumes before it held was {done} by the interrupted run, and they were not read again",
                            v.display()
                        )
                    });
                    Ok(Staged {
                        staging,
                        kind: Kind::Volumes,
                        journal: RefCell::new(Some(r)),
                        note,
                    })
                }
                None => {
                    // Compressed volumes cannot be entered mid-way.
                    staging.discard()?;
                    Ok(fresh(store.staging()?))
                }
            }
        }
        TransportName::Registry(r) if !verify => {
            let key =
                Digest::of(format!("{r}\n{:?}", req.platform).as_bytes()).hex()[..24].to_string();
            let staging = store.resumable_staging(&format!("pull-{key}"))?;
            let kept = staging.prove_kept()?;
            let note = (kept > 0).then(|| {
                format!("Resumed the pull of {r}: {kept} blobs the interrupted run had fetched were not fetched again")
            });
            Ok(Staged {
                staging,
                kind: Kind::Pull,
                journal: RefCell::new(None),
                note,
            })
        }
        _ => Ok(fresh(store.staging()?)),
    }
}

/// After the copy: a kept area goes once it is done with, or when nothing in it would help
/// a rerun. A pull keeps what it fetched only when the connection failed it (a registry
/// that served damaged bytes, or a refusal, leaves nothing behind); a load of volumes keeps
/// its checkpoint whatever stopped it, since a bad volume is replaced and the load run again.
pub(super) fn settle<T>(staged: Staged, result: &Result<T>) -> Result<()> {
    let Staged { staging, kind, .. } = staged;
    let interrupted = matches!(
        result,
        Err(RemoteError::Io { .. }
            | RemoteError::BodyAborted { .. }
            | RemoteError::Core(
                airlock_core::Error::Stream { .. } | airlock_core::Error::Truncated { .. }
            ))
    );
    let keep = result.is_err()
        && match kind {
            Kind::Fresh => false,
            Kind::Volumes => resume::has_checkpoint(&staging),
            Kind::Pull => interrupted && staging.staged_count() > 0,
        };
    match kind {
        Kind::Fresh => drop(staging),
        _ if keep => drop(staging),
        _ => staging.discard()?,
    }
    Ok(())
}
