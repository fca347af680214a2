//! Layer compression: [`Compression`] names the algorithm and its media types, [`Encoder`] is the
//! one streaming compressor every layer goes through, with a single [`Encoder::finish`] contract.
//!
//! Output bytes depend only on the input and the level, never on the number of threads or cores:
//! - gzip is block-parallel in the manner of pigz and written as ONE gzip member: the input is cut
//!   into [`GZIP_BLOCK_SIZE`] blocks, each raw-deflated independently with the previous 32 KiB as
//!   preset dictionary and ended with a sync flush (the last one with the final bit); the CRC32 of
//!   the blocks is combined in order. With one thread the same blocks are deflated inline, so the
//!   bytes are identical. Memory stays flat: at most `2 × threads` blocks are in flight. The gzip
//!   header is Go's `compress/gzip` one (no name, mtime 0, XFL 2/4 for best/fast, OS 255);
//! - zstd runs zstd's own multithreaded mode with at least one worker: from one worker upwards its
//!   output does not depend on the worker count.
//!
//! The bytes are not those of Go's `compress/gzip` or klauspost's zstd, which BuildKit uses; no
//! implementation in another language can match them, and the diffIDs (uncompressed) do match.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Size of one independently deflated gzip block.
pub const GZIP_BLOCK_SIZE: usize = 128 * 1024;
/// Deflate's window: how much of the previous block each block sees as dictionary.
const DICT_SIZE: usize = 32 * 1024;
/// Gzip level used when none is given (zlib's default).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Zstd level used when none is given (zstd's default, as BuildKit's).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI media type of a gzip layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of a zstd layer.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 media type of an uncompressed layer.
pub const DOCKER_MEDIA_TYPE_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker schema 2 media type of a gzip layer.
pub const DOCKER_MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Compression {
    /// A plain tar.
    None,
    /// Gzip (one member, block-parallel deflate).
    #[default]
    Gzip,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_LAYER,
            Compression::Gzip => MEDIA_TYPE_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    /// The Docker schema 2 layer media type; Docker has none for zstd, so the OCI one is used there
    /// (as BuildKit does).
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::None => DOCKER_MEDIA_TYPE_LAYER,
            Compression::Gzip => DOCKER_MEDIA_TYPE_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    /// The compression a layer media type (OCI or Docker, incl. non-distributable) declares.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            MEDIA_TYPE_LAYER
            | DOCKER_MEDIA_TYPE_LAYER
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Some(Compression::None),
            MEDIA_TYPE_LAYER_GZIP
            | DOCKER_MEDIA_TYPE_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            MEDIA_TYPE_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// Guess the compression from a blob's first bytes (gzip and zstd magic numbers).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The lowercase name (`none`, `gzip`, `zstd`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compression name we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression `{0}` (expected none, uncompressed, gzip or zstd)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" | "uncompressed" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(UnknownCompression(other.to_string())),
        }
    }
}

/// Tuning of an [`Encoder`]; none of it but `level` changes the output bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressOptions {
    /// Compression level; `None` = the algorithm's default (gzip 6, zstd 3).
    pub level: Option<i32>,
    /// Worker threads (at least 1 is used).
    pub threads: usize,
}

impl Default for CompressOptions {
    /// Default level, one thread per available core.
    fn default() -> Self {
        CompressOptions {
            level: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl CompressOptions {
    /// The given thread count with the default level.
    pub fn with_threads(threads: usize) -> Self {
        CompressOptions {
            level: None,
            threads,
        }
    }
}

/// Why compressing or decompressing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The level is outside the algorithm's range.
    #[error("{compression} level {level} is out of range ({min}..={max})")]
    Level {
        /// The algorithm.
        compression: Compression,
        /// The requested level.
        level: i32,
        /// Lowest accepted level.
        min: i32,
        /// Highest accepted level.
        max: i32,
    },
    /// An I/O or codec operation failed.
    #[error("{compression} {op}: {source}")]
    Io {
        /// The algorithm.
        compression: Compression,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A gzip worker thread died without answering (a bug).
    #[error("gzip worker thread exited unexpectedly; this is a bug")]
    WorkerLost,
}

/// A streaming compressor of any [`Compression`]; call [`Encoder::finish`] to complete the stream.
pub enum Encoder<W: Write> {
    /// Pass-through.
    None(W),
    /// Block-parallel single-member gzip.
    Gzip(Box<GzipEncoder<W>>),
    /// Zstandard (multithreaded, output independent of the worker count).
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// An encoder of `compression` writing into `out`.
    pub fn new(
        out: W,
        compression: Compression,
        opts: CompressOptions,
    ) -> Result<Self, CompressError> {
        let threads = opts.threads.max(1);
        match compression {
            Compression::None => Ok(Encoder::None(out)),
            Compression::Gzip => {
                let level = opts.level.unwrap_or(DEFAULT_GZIP_LEVEL as i32);
                if !(0..=9).contains(&level) {
                    return Err(CompressError::Level {
                        compression,
                        level,
                        min: 0,
                        max: 9,
                    });
                }
                Ok(Encoder::Gzip(Box::new(GzipEncoder::new(
                    out,
                    level as u32,
                    threads,
                ))))
            }
            Compression::Zstd => {
                let level = opts.level.unwrap_or(DEFAULT_ZSTD_LEVEL);
                let range = zstd::compression_level_range();
                if !range.contains(&level) {
                    let (min, max) = (*range.start(), *range.end());
                    return Err(CompressError::Level {
                        compression,
                        level,
                        min,
                        max,
                    });
                }
                let zerr = |op| {
                    move |source| CompressError::Io {
                        compression,
                        op,
                        source,
                    }
                };
                let mut enc =
                    zstd::stream::write::Encoder::new(out, level).map_err(zerr("init"))?;
                // Workers ≥ 1 selects zstd's multithreaded format, whose bytes do not depend on
                // how many workers there are.
                let workers = u32::try_from(threads).unwrap_or(u32::MAX);
                enc.multithread(workers).map_err(zerr("set workers"))?;
                Ok(Encoder::Zstd(enc))
            }
        }
    }

    /// Which algorithm this is.
    pub fn compression(&self) -> Compression {
        match self {
            Encoder::None(_) => Compression::None,
            Encoder::Gzip(_) => Compression::Gzip,
            Encoder::Zstd(_) => Compression::Zstd,
        }
    }

    /// Complete the stream (trailers, final frames), flush, and return the destination.
    pub fn finish(self) -> Result<W, CompressError> {
        let compression = self.compression();
        let err = |source| CompressError::Io {
            compression,
            op: "finish",
            source,
        };
        match self {
            Encoder::None(mut w) => {
                w.flush().map_err(err)?;
                Ok(w)
            }
            Encoder::Gzip(g) => (*g).finish(),
            Encoder::Zstd(z) => {
                let mut w = z.finish().map_err(err)?;
                w.flush().map_err(err)?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Gzip(g) => g.write_all(buf),
            Encoder::Zstd(z) => z.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            // Flushing gzip mid-stream would change the bytes; data is flushed by finish().
            Encoder::Gzip(_) => Ok(()),
            Encoder::None(w) => w.flush(),
            Encoder::Zstd(_) => Ok(()),
        }
    }
}

/// A decompressing reader for `compression` (gzip accepts multiple members).
pub fn decoder<'a, R: Read + 'a>(
    r: R,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, CompressError> {
    Ok(match compression {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(
                zstd::stream::read::Decoder::new(r).map_err(|source| CompressError::Io {
                    compression,
                    op: "init decoder",
                    source,
                })?,
            )
        }
    })
}

/// One block handed to a deflate worker.
struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    level: u32,
    reply: SyncSender<io::Result<Deflated>>,
}

/// A deflated block, its input CRC, and the input buffer for reuse.
struct Deflated {
    bytes: Vec<u8>,
    crc: Crc,
    input: Vec<u8>,
}

/// The deflate workers of one [`GzipEncoder`]; dropping it stops and joins them.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let mut pool = Pool {
            jobs: Some(tx),
            workers: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("rbuild-gzip-{i}"))
                .spawn(move || worker(&rx))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            // A worker that panicked already reported through its dropped reply channel.
            let _ = w.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result =
            deflate_block(job.level, &job.dict, &job.data, job.last).map(|(bytes, crc)| Deflated {
                bytes,
                crc,
                input: job.data,
            });
        // The encoder may have been dropped mid-stream; nobody is waiting then.
        let _ = job.reply.send(result);
    }
}

/// Raw-deflate one block with `dict` as preset dictionary, ending in a sync flush (or the final
/// block when `last`); returns the bytes and the CRC32 of `data`.
///
/// Every block gets a FRESH compressor: zlib-rs's `reset` clears the hash heads but not the window
/// and `prev` arrays, and their stale contents steer match selection, so a reused compressor
/// would make the bytes depend on which blocks it saw before (i.e. on the thread count). A new one
/// is zero-initialised, which costs a few percent of deflating 128 KiB.
fn deflate_block(level: u32, dict: &[u8], data: &[u8], last: bool) -> io::Result<(Vec<u8>, Crc)> {
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    let c = &mut compress;
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut pos = 0usize;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(&data[pos..], &mut out, flush)
            .map_err(io::Error::other)?;
        pos += (c.total_in() - before) as usize;
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output was not filled up.
            Status::Ok | Status::BufError
                if !last && pos == data.len() && out.len() < out.capacity() =>
            {
                break
            }
            Status::Ok | Status::BufError => {}
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    Ok((out, crc))
}

/// Block-parallel, single-member gzip whose bytes do not depend on the thread count.
pub struct GzipEncoder<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    cur: Vec<u8>,
    dict: Vec<u8>,
    header_written: bool,
    crc: Crc,
    pool: Option<Pool>,
    pending: VecDeque<Receiver<io::Result<Deflated>>>,
    spare: Vec<Vec<u8>>,
}

impl<W: Write> GzipEncoder<W> {
    /// A gzip encoder at `level` (0..=9) using `threads` deflate workers (1 = inline).
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        GzipEncoder {
            out,
            level: level.min(9),
            threads: threads.max(1),
            cur: Vec::with_capacity(GZIP_BLOCK_SIZE),
            dict: Vec::new(),
            header_written: false,
            crc: Crc::new(),
            pool: None,
            pending: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    fn header(&self) -> [u8; 10] {
        // Go's compress/gzip: XFL 2 for best compression, 4 for best speed; OS unknown.
        let xfl = match self.level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let header = self.header();
            self.out.write_all(&header)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Hand the current block to deflate (inline or to the pool).
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        self.write_header()?;
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK_SIZE));
        let data = std::mem::replace(&mut self.cur, next);
        let dict = std::mem::take(&mut self.dict);
        let mut new_dict = Vec::with_capacity(DICT_SIZE);
        new_dict.extend_from_slice(&data[data.len().saturating_sub(DICT_SIZE)..]);
        self.dict = new_dict;
        // One thread, or a last block with nothing in flight (small layers): deflate inline, which
        // gives the same bytes and spares spawning a pool.
        if self.threads == 1 || (last && self.pending.is_empty()) {
            let (bytes, crc) = deflate_block(self.level, &dict, &data, last)?;
            self.out.write_all(&bytes)?;
            self.crc.combine(&crc);
            let mut data = data;
            data.clear();
            self.spare.push(data);
            return Ok(());
        }
        while self.pending.len() >= 2 * self.threads {
            self.drain_one()?;
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::new(self.threads)?);
        }
        let pool = self.pool.as_ref().ok_or_else(lost)?;
        let (reply, rx) = mpsc::sync_channel(1);
        let job = Job {
            data,
            dict,
            last,
            level: self.level,
            reply,
        };
        pool.jobs
            .as_ref()
            .ok_or_else(lost)?
            .send(job)
            .map_err(|_| lost())?;
        self.pending.push_back(rx);
        Ok(())
    }

    /// Write out the oldest block in flight, waiting for it.
    fn drain_one(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let done = rx.recv().map_err(|_| lost())??;
        self.out.write_all(&done.bytes)?;
        self.crc.combine(&done.crc);
        let mut input = done.input;
        input.clear();
        if self.spare.len() < 2 * self.threads {
            self.spare.push(input);
        }
        Ok(())
    }

    /// Deflate the last block, write the CRC32 and length trailer, flush, and return the destination.
    pub fn finish(mut self) -> Result<W, CompressError> {
        let err = |op| {
            move |source| CompressError::Io {
                compression: Compression::Gzip,
                op,
                source,
            }
        };
        self.dispatch(true).map_err(err("deflate"))?;
        while !self.pending.is_empty() {
            self.drain_one().map_err(err("deflate"))?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer).map_err(err("write trailer"))?;
        self.out.flush().map_err(err("flush"))?;
        self.pool = None;
        let GzipEncoder { out, .. } = self;
        Ok(out)
    }
}

fn lost() -> io::Error {
    io::Error::other(CompressError::WorkerLost)
}

impl<W: Write> Write for GzipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full block is dispatched only once more input arrives, so the last block is known
        // to be last at finish() without an empty trailing block.
        if self.cur.len() == GZIP_BLOCK_SIZE {
            self.dispatch(false)?;
        }
        let n = buf.len().min(GZIP_BLOCK_SIZE - self.cur.len());
        self.cur.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a counter mixed with text.
        let mut out = Vec::with_capacity(len);
        let mut i: u32 = 0;
        while out.len() < len {
            out.extend_from_slice(
                format!("line {i} of {} ", i.wrapping_mul(2654435761) % 1000).as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn compress(data: &[u8], compression: Compression, threads: usize) -> Vec<u8> {
        let mut enc = Encoder::new(
            Vec::new(),
            compression,
            CompressOptions::with_threads(threads),
        )
        .expect("encoder");
        for chunk in data.chunks(7_001) {
            enc.write_all(chunk).expect("write");
        }
        enc.finish().expect("finish")
    }

    fn decompress(data: &[u8], compression: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(data, compression)
            .expect("decoder")
            .read_to_end(&mut out)
            .expect("decode");
        out
    }

    #[test]
    fn round_trip_and_thread_independence() {
        let sizes = [
            0,
            1,
            GZIP_BLOCK_SIZE - 1,
            GZIP_BLOCK_SIZE,
            GZIP_BLOCK_SIZE + 1,
            5 * GZIP_BLOCK_SIZE + 17,
        ];
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            for size in sizes {
                let data = sample(size);
                let one = compress(&data, compression, 1);
                let many = compress(&data, compression, 3);
                assert_eq!(one, many, "{compression} {size}: bytes depend on threads");
                assert_eq!(decompress(&one, compression), data, "{compression} {size}");
            }
        }
    }

    /// Text, low-entropy binary and random 4 KiB chunks: the mix on which a reused zlib-rs
    /// compressor gave history-dependent bytes.
    fn mixed(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let kind = next() % 6;
            for _ in 0..4096 {
                let r = next();
                out.push(match kind {
                    0..=2 => b"the layer image build config "[(r % 29) as usize],
                    3 | 4 => (r % 16) as u8 * ((r >> 8) % 3) as u8,
                    _ => r as u8,
                });
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn block_bytes_do_not_depend_on_compressor_history() {
        let data = mixed(40 * GZIP_BLOCK_SIZE + 123);
        let one = compress(&data, Compression::Gzip, 1);
        for threads in [2, 4] {
            assert_eq!(
                compress(&data, Compression::Gzip, threads),
                one,
                "{threads} threads"
            );
        }
        assert_eq!(decompress(&one, Compression::Gzip), data);
    }

    #[test]
    fn gzip_is_one_member_readable_by_single_member_decoder() {
        let data = sample(3 * GZIP_BLOCK_SIZE + 5);
        let gz = compress(&data, Compression::Gzip, 2);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .expect("decode");
        assert_eq!(out, data);
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn media_types_round_trip() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.oci_media_type()), Some(c));
            assert_eq!(Compression::from_media_type(c.docker_media_type()), Some(c));
            assert_eq!(c.as_str().parse::<Compression>(), Ok(c));
        }
        assert!("brotli".parse::<Compression>().is_err());
    }

    #[test]
    fn detect_by_magic() {
        let cases: &[(&[u8], Compression)] = &[
            (&[0x1f, 0x8b, 8], Compression::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0], Compression::Zstd),
            (b"abc", Compression::None),
        ];
        for (head, want) in cases {
            assert_eq!(Compression::detect(head), *want);
        }
    }

    #[test]
    fn bad_level_is_rejected() {
        let opts = CompressOptions {
            level: Some(12),
            threads: 1,
        };
        assert!(matches!(
            Encoder::new(Vec::new(), Compression::Gzip, opts),
            Err(CompressError::Level { .. })
        ));
    }
}
