//! Local archives for `ADD`: recognising a tar archive by its content and unpacking it safely.
//!
//! Follows BuildKit's `isArchivePath` + `chrootarchive.Untar` (the file op's
//! `AttemptUnpackDockerCompatibility`): a source is an archive when, after undoing gzip, bzip2, xz
//! or zstd compression (recognised by magic bytes, never by file name), its first 512 bytes are a
//! tar header with a valid checksum. Anything else (an empty file, a lone `.gz` of a text file) is
//! copied as a plain file.
//!
//! Unpacking goes through [`rbuild_layers::tar::extract`] with
//! [`rbuild_layers::tar::extract::SymlinkPolicy::InRoot`]: the archive is
//! extracted as if chrooted into its destination directory (Docker's semantics), so a symlink in
//! the archive can redirect a later entry only inside that directory; entry names that are
//! absolute or contain `..` are refused by the reader with an error naming the entry. The
//! extraction never writes outside the scratch directory it is given.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rbuild_layers::tar::extract::{
    ExtractError, ExtractOptions, Extractor, Resolve, SymlinkPolicy, WhiteoutMode,
};
use rbuild_layers::tar::read::{for_each_entry, ReadError};

/// Size of a tar header block.
const BLOCK: usize = 512;

/// How an archive's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveCompression {
    /// A plain tar.
    Plain,
    /// gzip (`1f 8b`).
    Gzip,
    /// bzip2 (`BZh`).
    Bzip2,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl ArchiveCompression {
    /// The compression a stream's first bytes announce (plain when none matches).
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            ArchiveCompression::Gzip
        } else if head.starts_with(b"BZh") {
            ArchiveCompression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            ArchiveCompression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ArchiveCompression::Zstd
        } else {
            ArchiveCompression::Plain
        }
    }
}

/// Why an archive could not be inspected or unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Reading the archive file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The archive's entries could not be read (corrupt data or an unsafe entry name).
    #[error("archive {path}: {source}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// The reader's complaint (names the entry).
        #[source]
        source: ReadError,
    },
    /// Unpacking failed (an entry escaping the destination, a file system error).
    #[error("unpack {path}: {source}")]
    Extract {
        /// The archive.
        path: PathBuf,
        /// The extractor's complaint (names the entry).
        #[source]
        source: ExtractError,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { op, path, source }
}

/// Open `path` and undo its compression, whatever it is.
pub fn open_decompressed(path: &Path) -> Result<Box<dyn Read>, ArchiveError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut buf = BufReader::with_capacity(64 * 1024, file);
    let head = buf.fill_buf().map_err(io_err("read", path))?.to_vec();
    let reader: Box<dyn Read> = match ArchiveCompression::detect(&head) {
        ArchiveCompression::Plain => Box::new(buf),
        ArchiveCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        ArchiveCompression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buf)),
        ArchiveCompression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buf)),
        ArchiveCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf).map_err(io_err("start zstd", path))?,
        ),
    };
    Ok(reader)
}

/// True when the file at `path` is a (possibly compressed) tar archive: its first header block
/// has a valid checksum, as Go's `tar.Reader.Next` requires. Unreadable or corrupt compressed
/// data means "not an archive", as in BuildKit.
pub fn is_archive(path: &Path) -> Result<bool, ArchiveError> {
    let mut reader = open_decompressed(path)?;
    let mut block = [0u8; BLOCK];
    let mut filled = 0;
    while filled < BLOCK {
        match reader.read(&mut block[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(false),
        }
    }
    Ok(header_checksum_ok(&block))
}

/// Does this 512-byte block hold a tar header whose checksum field matches its bytes? An
/// all-zero block (end of archive) does not count.
fn header_checksum_ok(block: &[u8; BLOCK]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(want) = i64::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    want == unsigned || want == signed
}

/// Unpack the archive at `path` into the directory `into` (created if missing) with chroot
/// semantics, returning the set of entry paths the archive itself named (normalized, relative).
/// Owners are restored only when `same_owner` (it needs CAP_CHOWN).
pub fn unpack(
    path: &Path,
    into: &Path,
    same_owner: bool,
) -> Result<BTreeSet<String>, ArchiveError> {
    let mut named = BTreeSet::new();
    let reader = open_decompressed(path)?;
    for_each_entry(reader, |entry, _data| -> Result<(), ReadError> {
        named.insert(entry.path.clone());
        Ok(())
    })
    .map_err(|source| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let opts = ExtractOptions {
        same_owner,
        resolve: Resolve::Kernel,
        symlinks: SymlinkPolicy::InRoot,
        whiteouts: WhiteoutMode::Apply,
    };
    let extract_err = |source| ArchiveError::Extract {
        path: path.to_path_buf(),
        source,
    };
    let mut x = Extractor::open(into, opts).map_err(extract_err)?;
    let reader = open_decompressed(path)?;
    x.apply_layer(reader).map_err(extract_err)?;
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_pick_the_compression() {
        let cases: &[(&[u8], ArchiveCompression)] = &[
            (&[0x1f, 0x8b, 8], ArchiveCompression::Gzip),
            (b"BZh91AY", ArchiveCompression::Bzip2),
            (
                &[0xfd, b'7', b'z', b'X', b'Z', 0, 0],
                ArchiveCompression::Xz,
            ),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0], ArchiveCompression::Zstd),
            (b"hello", ArchiveCompression::Plain),
            (b"", ArchiveCompression::Plain),
        ];
        for (head, want) in cases {
            assert_eq!(ArchiveCompression::detect(head), *want, "{head:?}");
        }
    }

    #[test]
    fn checksum_recognises_a_tar_header_only() {
        let mut h = tar::Header::new_ustar();
        h.set_path("a.txt").expect("valid path");
        h.set_size(0);
        h.set_cksum();
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(h.as_bytes());
        assert!(header_checksum_ok(&block));
        block[0] = b'b';
        assert!(!header_checksum_ok(&block));
        assert!(!header_checksum_ok(&[0u8; BLOCK]));
        assert!(!header_checksum_ok(&[b'x'; BLOCK]));
    }

    #[test]
    fn plain_and_gzip_text_files_are_not_archives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "hello world\n".repeat(100)).expect("write");
        assert!(!is_archive(&text).expect("readable"));
        let gz = dir.path().join("t.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, b"just text").expect("compress");
        std::fs::write(&gz, enc.finish().expect("finish")).expect("write");
        assert!(!is_archive(&gz).expect("readable"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").expect("write");
        assert!(!is_archive(&empty).expect("readable"));
    }
}
