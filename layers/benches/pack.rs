//! Pack benchmark (plain timing binary, `harness = false`): how fast a tree or one big file becomes a
//! layer blob in the store, for each compression, and how block-parallel gzip scales against
//! single-stream zlib-rs.
//!
//! Data (generated once, deterministic) lives under `--dir DIR` (default `/tmp/rbuild-bench`):
//! `tree/` = 10,000 files totalling ~100 MB, `big.bin` = one 500 MB file. Each 4 KiB chunk is text,
//! low-entropy binary or random bytes (roughly 3:2:1), so compression ratios look like a real
//! userland. MB/s are of uncompressed tar bytes (10^6 bytes per MB).
//!
//! Usage: `cargo bench -p rbuild-layers --bench pack [-- --quick] [--dir DIR]` (`--quick` = 1/10 of the
//! data).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rbuild_layers::compress::{
    CompressOptions, Compression, Encoder, GzipEncoder, DEFAULT_GZIP_LEVEL,
};
use rbuild_layers::store::{BlobStore, LayerInfo, LayerOptions, LayerWriter};
use rbuild_layers::tar::write::{write_tree, TarOptions};

const WORDS: &[&str] = &[
    "the",
    "layer",
    "image",
    "build",
    "config",
    "usr",
    "lib",
    "share",
    "function",
    "return",
    "error",
    "value",
    "string",
    "static",
    "const",
    "include",
    "define",
    "package",
    "version",
    "license",
    "copyright",
    "0x00",
];

/// Deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Fill `out` with `len` bytes of mixed content.
fn fill(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    out.clear();
    while out.len() < len {
        let chunk = 4096.min(len - out.len());
        let start = out.len();
        match rng.next() % 6 {
            0..=2 => {
                while out.len() < start + chunk {
                    let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                    out.extend_from_slice(w.as_bytes());
                    out.push(if rng.next() % 9 == 0 { b'\n' } else { b' ' });
                }
                out.truncate(start + chunk);
            }
            3 | 4 => {
                out.extend((0..chunk).map(|_| (rng.next() % 16) as u8 * (rng.next() % 3) as u8))
            }
            _ => out.extend((0..chunk).map(|_| rng.next() as u8)),
        }
    }
}

fn generate(root: &Path, files: usize, tree_bytes: usize, big_bytes: usize) -> io::Result<()> {
    let marker = root.join(format!("ready-{files}-{tree_bytes}-{big_bytes}"));
    if marker.exists() {
        return Ok(());
    }
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    let tree = root.join("tree");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::new();
    let per_file = tree_bytes / files;
    for i in 0..files {
        let dir = tree.join(format!("d{:02}/s{:02}", i % 50, (i / 50) % 20));
        fs::create_dir_all(&dir)?;
        // Sizes from tiny to 4× the mean, averaging the mean.
        let len = (rng.next() % (2 * per_file as u64)) as usize;
        fill(&mut rng, &mut buf, len);
        fs::write(dir.join(format!("file-{i:05}")), &buf)?;
    }
    let mut big = io::BufWriter::new(fs::File::create(root.join("big.bin"))?);
    let mut left = big_bytes;
    while left > 0 {
        let n = left.min(1 << 20);
        fill(&mut rng, &mut buf, n);
        big.write_all(&buf)?;
        left -= n;
    }
    big.flush()?;
    fs::create_dir_all(root.join("single"))?;
    let link = root.join("single/big.bin");
    if !link.exists() {
        fs::hard_link(root.join("big.bin"), link)?;
    }
    fs::write(marker, b"")
}

fn tar_size(dir: &Path) -> u64 {
    struct Count(u64);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    write_tree(dir, Count(0), TarOptions::default())
        .map(|c| c.0)
        .unwrap_or(0)
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Pack `dir` into a fresh store; returns (seconds, layer).
fn pack(
    store_dir: &Path,
    dir: &Path,
    compression: Compression,
    threads: usize,
) -> (f64, LayerInfo) {
    let _ = fs::remove_dir_all(store_dir);
    let store = BlobStore::ensure(store_dir).expect("store");
    let opts = LayerOptions {
        compression,
        compress: CompressOptions::with_threads(threads),
        tar: TarOptions::default(),
    };
    let start = Instant::now();
    let info = LayerWriter::from_dir(&store, dir, opts).expect("pack");
    (start.elapsed().as_secs_f64(), info)
}

/// Compression only: stream `file` through `enc` into a sink; returns seconds.
fn compress_only<E: Write>(file: &Path, mut enc: E, finish: impl FnOnce(E)) -> f64 {
    let mut f = fs::File::open(file).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        enc.write_all(&buf[..n]).expect("compress");
    }
    finish(enc);
    start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let root = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("/tmp/rbuild-bench"), PathBuf::from);
    let data = root.join(if quick { "data-quick" } else { "data" });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    generate(
        &data,
        10_000 / scale,
        100_000_000 / scale,
        500_000_000 / scale,
    )
    .expect("generate data");
    eprintln!(
        "data ready in {:.1}s under {}",
        t.elapsed().as_secs_f64(),
        data.display()
    );

    let store_dir = root.join("store");
    println!("cores: {cores}, gzip level {DEFAULT_GZIP_LEVEL}, zstd level 3");
    println!(
        "{:<28} {:>10} {:>9} {:>10} {:>8}",
        "case", "tar MB", "secs", "MB/s", "ratio"
    );
    for (name, dir) in [
        ("tree 10k files", data.join("tree")),
        ("single 500MB file", data.join("single")),
    ] {
        let size = tar_size(&dir);
        let cases = [
            ("none", Compression::None, 1),
            ("gzip 1 thread", Compression::Gzip, 1),
            ("gzip parallel", Compression::Gzip, cores),
            ("zstd 1 thread", Compression::Zstd, 1),
            ("zstd parallel", Compression::Zstd, cores),
        ];
        let mut digests: Vec<(Compression, LayerInfo)> = Vec::new();
        for (label, compression, threads) in cases {
            let (secs, info) = pack(&store_dir, &dir, compression, threads);
            let blob = info.size;
            // Thread count must never change the bytes.
            if let Some((_, first)) = digests.iter().find(|(c, _)| *c == compression) {
                assert_eq!(
                    first, &info,
                    "{name}: {label} differs from the 1-thread layer"
                );
            }
            digests.push((compression, info));
            println!(
                "{:<28} {:>10.1} {:>9.2} {:>10.1} {:>8.3}",
                format!("{name}: {label}"),
                size as f64 / 1e6,
                secs,
                mbps(size, secs),
                blob as f64 / size as f64
            );
        }
    }
    let _ = fs::remove_dir_all(&store_dir);

    // Compression alone on the big file: single-stream zlib-rs vs our block gzip.
    let big = data.join("big.bin");
    let size = fs::metadata(&big).expect("big").len();
    let level = flate2::Compression::new(DEFAULT_GZIP_LEVEL);
    let zlib = compress_only(
        &big,
        flate2::write::GzEncoder::new(io::sink(), level),
        |e| {
            e.finish().expect("finish");
        },
    );
    let one = compress_only(
        &big,
        GzipEncoder::new(io::sink(), DEFAULT_GZIP_LEVEL, 1),
        |e| {
            e.finish().expect("finish");
        },
    );
    let par = compress_only(
        &big,
        GzipEncoder::new(io::sink(), DEFAULT_GZIP_LEVEL, cores),
        |e| {
            e.finish().expect("finish");
        },
    );
    let zstd = compress_only(
        &big,
        Encoder::new(
            io::sink(),
            Compression::Zstd,
            CompressOptions::with_threads(cores),
        )
        .expect("zstd"),
        |e| {
            e.finish().expect("finish");
        },
    );
    println!();
    println!("compression only, {:.0} MB file:", size as f64 / 1e6);
    println!(
        "  zlib-rs GzEncoder (1 stream)   {:>8.1} MB/s",
        mbps(size, zlib)
    );
    println!(
        "  block gzip, 1 thread           {:>8.1} MB/s",
        mbps(size, one)
    );
    println!(
        "  block gzip, {cores} threads          {:>8.1} MB/s",
        mbps(size, par)
    );
    println!(
        "  zstd, {cores} workers                {:>8.1} MB/s",
        mbps(size, zstd)
    );
    println!(
        "  parallel gzip / single-stream zlib-rs: {:.2}x",
        zlib / par
    );
}
