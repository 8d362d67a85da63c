//! Any bytes as an archive stream (tar, or compressed tar): the reader, the strict header
//! checks and the resolver must refuse or accept, never panic, hang or run out of memory.
#![no_main]

use std::io::Cursor;

use airlock_core::copy::stream::{copy_archive, ArchiveInput};
use airlock_core::copy::CopyOptions;
use airlock_core::transport::discard::DiscardDestination;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let all = |images| Ok(images);
    let _ = copy_archive(
        ArchiveInput::Stream(Box::new(Cursor::new(data.to_vec()))),
        Box::new(DiscardDestination),
        &all,
        None,
        &CopyOptions::default(),
    );
});
