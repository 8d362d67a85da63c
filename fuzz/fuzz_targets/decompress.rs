//! Any bytes through the compression detector and decoders (gzip, zstd, xz, bzip2): an
//! error or the data, never a panic; and what gzip and zstd encode decodes back.
#![no_main]

use std::io::{Read, Write};

use airlock_core::compression::{self, Compression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, mut r)) = compression::auto_decoder(std::io::Cursor::new(data.to_vec())) {
        let mut sink = Vec::new();
        let _ = r.by_ref().take(64 << 20).read_to_end(&mut sink);
    }
    for codec in [Compression::Gzip, Compression::Zstd] {
        let out = SharedBuf::default();
        let mut enc = compression::encoder(codec, Some(1), 1, out.clone()).expect("an encoder");
        enc.write_all(data).unwrap();
        enc.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        let (found, mut r) = compression::auto_decoder(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(found, codec);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
});

#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
