//! Image archives: reading every dialect in the wild, writing the one that loads everywhere.
//!
//! Reading is one pass ([`reader`], each blob handed to a destination as it streams by)
//! followed by resolution ([`resolve`], every config and diffID checked); the copy engine's
//! [`crate::copy::stream`] runs both. Writing is [`writer::ArchiveWriter`], an
//! [`crate::transport::ImageDestination`].

pub mod file;
pub mod guard;
pub mod reader;
pub mod resolve;
pub mod resume;
pub mod sniff;
pub mod strict;
pub mod tarball;
pub mod writer;

pub use resolve::Dialect;
