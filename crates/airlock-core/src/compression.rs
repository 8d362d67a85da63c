//! Compression: detection by magic bytes, streaming decoders, and encoders that use every
//! core.
//!
//! The gzip encoder cuts the input into fixed blocks and compresses each as its own gzip
//! member on a worker thread (the pigz idea without the shared dictionary), so the output is
//! the same whatever the thread count and every gzip reader accepts it. zstd uses the
//! library's own workers, always at least one so output never depends on the core count.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A compression format of a whole stream or of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd, possibly several frames.
    Zstd,
    /// xz.
    Xz,
    /// bzip2.
    Bzip2,
}

impl Compression {
    /// Judge from the first bytes of a stream.
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if prefix.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// The name users type and see.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// How many bytes [`Compression::detect`] wants to see.
pub const MAGIC_LEN: usize = 6;

/// A reader that yields peeked bytes again, then the rest of the stream.
pub type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Read up to `n` bytes without losing them: returns the bytes and a reader that yields
/// them again followed by the rest.
pub fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut prefix = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match reader.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    prefix.truncate(got);
    Ok((prefix.clone(), io::Cursor::new(prefix).chain(reader)))
}

/// A decoder for `compression` over `reader`.
pub fn decoder<'a, R: Read + Send + 'a>(
    compression: Compression,
    reader: R,
) -> Box<dyn Read + Send + 'a> {
    match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(256 * 1024, reader),
        )),
        Compression::Zstd => match zstd::stream::read::Decoder::new(reader) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(
            io::BufReader::with_capacity(256 * 1024, reader),
        )),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(
            io::BufReader::with_capacity(256 * 1024, reader),
        )),
    }
}

struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("decoder failed")))
    }
}

/// Detect the compression of a stream by its magic bytes and return a decoding reader.
pub fn auto_decoder<'a, R: Read + Send + 'a>(
    reader: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let (prefix, rest) = peek(reader, MAGIC_LEN)?;
    let c = Compression::detect(&prefix);
    Ok((c, decoder(c, rest)))
}

/// A writer that must be told when the stream ends, so it can write trailers.
pub trait FinishWrite: Write + Send {
    /// Write any trailer and flush.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W>(W);

impl<W: Write + Send> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> FinishWrite for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> FinishWrite for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let mut w = zstd::stream::write::Encoder::finish(*self)?;
        w.flush()
    }
}

/// An encoder for `compression` at `level` (None = the format's default) using `threads`
/// workers.
pub fn encoder<W: Write + Send + 'static>(
    compression: Compression,
    level: Option<i32>,
    threads: usize,
    writer: W,
) -> io::Result<Box<dyn FinishWrite>> {
    let threads = threads.max(1);
    match compression {
        Compression::None => Ok(Box::new(Plain(writer))),
        Compression::Gzip => {
            let level = level.unwrap_or(6).clamp(1, 9) as u32;
            Ok(Box::new(ParallelGzipWriter::new(writer, level, threads)))
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(writer, level.unwrap_or(3))?;
            enc.multithread(threads as u32)?;
            // Bounded memory: the default job size at level 3 is large enough that two
            // workers plus their input and output buffers exceed 100 MiB.
            enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
            Ok(Box::new(enc))
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "writing {} is not supported; use gzip or zstd",
                other.name()
            ),
        )),
    }
}

/// Number of worker threads to use for compression: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

const GZIP_BLOCK: usize = 1 << 20;
const ZSTD_JOB_SIZE: u32 = 2 << 20;

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// pigz-style parallel gzip: each 1 MiB block becomes one gzip member.
pub struct ParallelGzipWriter<W: Write> {
    inner: W,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_out: u64,
    ready: BTreeMap<u64, Vec<u8>>,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzipWriter<W> {
    /// Start `threads` workers compressing at `level`.
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, data))) = job else { return };
                    let out = gzip_member(&data, level);
                    if done_tx.send((seq, out)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        ParallelGzipWriter {
            inner,
            block: Vec::with_capacity(GZIP_BLOCK),
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            next_seq: 0,
            next_out: 0,
            ready: BTreeMap::new(),
            max_in_flight: (threads as u64) * 2,
        }
    }

    fn dispatch(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK));
        let jobs = self.jobs.as_ref().expect("dispatch after finish");
        jobs.send((self.next_seq, data))
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.next_seq += 1;
        while self.next_seq - self.next_out > self.max_in_flight {
            self.collect_one()?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, out) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.ready.insert(seq, out?);
        while let Some(bytes) = self.ready.remove(&self.next_out) {
            self.inner.write_all(&bytes)?;
            self.next_out += 1;
        }
        Ok(())
    }
}

fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    // A fixed header (no name, mtime 0) keeps output reproducible.
    let mut enc = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(data)?;
    enc.finish()
}

impl<W: Write> Write for ParallelGzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == GZIP_BLOCK {
            self.dispatch()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send> FinishWrite for ParallelGzipWriter<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        // An empty stream still gets one (empty) member so it is valid gzip.
        if self.block.is_empty() && self.next_seq == 0 {
            self.inner.write_all(&gzip_member(&[], 6)?)?;
        }
        self.dispatch()?;
        while self.next_out < self.next_seq {
            self.collect_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.inner.flush()
    }
}

const READ_AHEAD_MIN_BATCH: usize = 64 * 1024;

/// Reads a stream on a helper thread, one buffer ahead, so decompression or disk reads
/// overlap with the hashing and writing done by the caller.
pub struct ReadAhead {
    rx: Receiver<io::Result<(Vec<u8>, usize)>>,
    /// Used chunks go back to the reading thread.
    back: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
    done: bool,
}

/// A reader over chunks arriving on a channel: an empty chunk or a dropped sender is the
/// end of the stream, an error is passed on once.
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    /// Read what arrives on `rx`.
    pub fn new(rx: Receiver<io::Result<Vec<u8>>>) -> Self {
        ChunkReader {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl ReadAhead {
    /// Start reading `reader` on a thread, keeping at most `depth` buffers of `chunk` bytes.
    ///
    /// Buffers are reused and keep their full length (a chunk says how much of it is
    /// filled): a fresh zeroed megabyte per chunk cost page faults and a memset, a quarter of
    /// the CPU of `save docker-daemon:` (measured with perf).
    pub fn new(mut reader: Box<dyn Read + Send>, chunk: usize, depth: usize) -> Self {
        let (tx, rx) = mpsc::sync_channel(depth);
        let (back, free) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || loop {
            let mut buf = free.try_recv().unwrap_or_else(|_| vec![0u8; chunk]);
            let mut filled = 0;
            let result = loop {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        // Hand over early on a slow pipe so a bad input is judged on its
                        // first bytes, but batch small reads to keep the channel cheap.
                        if filled >= buf.len().min(READ_AHEAD_MIN_BATCH) {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match result {
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Ok(()) => {
                    let end = filled == 0;
                    if tx.send(Ok((buf, filled))).is_err() || end {
                        return;
                    }
                }
            }
        });
        ReadAhead {
            rx,
            back,
            current: Vec::new(),
            len: 0,
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok((_, 0))) => self.done = true,
                Ok(Ok((buf, len))) => {
                    let used = std::mem::replace(&mut self.current, buf);
                    if !used.is_empty() {
                        let _ = self.back.send(used);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) if buf.is_empty() => self.done = true,
                Ok(Ok(buf)) => {
                    self.current = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7919) % 251) as u8).collect()
    }

    #[test]
    fn parallel_gzip_round_trips_and_is_deterministic() {
        let data = sample(3 * GZIP_BLOCK + 12345);
        let run = |threads| {
            let out = Arc::new(Mutex::new(Vec::new()));
            struct Shared(Arc<Mutex<Vec<u8>>>);
            impl Write for Shared {
                fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                    self.0.lock().unwrap().extend_from_slice(b);
                    Ok(b.len())
                }
                fn flush(&mut self) -> io::Result<()> {
                    Ok(())
                }
            }
            let mut w = encoder(Compression::Gzip, None, threads, Shared(out.clone())).unwrap();
            w.write_all(&data).unwrap();
            w.finish().unwrap();
            let v = out.lock().unwrap().clone();
            v
        };
        let one = run(1);
        assert_eq!(one, run(3), "output must not depend on thread count");
        let mut back = Vec::new();
        decoder(Compression::Gzip, &one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn detects_every_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"\xfd7zXZ\0"), Compression::Xz);
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
    }

    #[test]
    fn read_ahead_yields_everything_in_order() {
        let data = sample(1_000_003);
        let mut r = ReadAhead::new(Box::new(io::Cursor::new(data.clone())), 4096, 2);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
