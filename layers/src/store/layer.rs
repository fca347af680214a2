//! [`LayerWriter`]: entries or a directory in, a layer blob in the store out, in ONE streaming pass.
//!
//! The pipeline is `TarWriter → DiffIdTee (sha256 of the tar = diffID) → Encoder (gzip/zstd/none)
//! → BlobWriter (sha256 of the blob = digest, temp file, atomic publish)`, the same shape as
//! ocidir-rs's `LayerWriter`: no temp tar, no second read. The tar is deterministic (see
//! [`crate::tar::write`]) and so is the compression (see [`crate::compress`]), so the same input and
//! options give the same [`LayerInfo`] on any machine and any core count.

use std::io::{self, Read, Write};
use std::path::Path;

use super::{BlobStore, BlobWriter, StoreError};
use crate::compress::{CompressError, CompressOptions, Compression, Encoder};
use crate::digest::{DiffId, Digest, Hasher};
use crate::tar::entry::Entry;
use crate::tar::write::{TarError, TarOptions, TarWriter};

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// Building the tar stream failed.
    #[error("write layer tar: {0}")]
    Tar(#[from] TarError),
    /// Compressing failed.
    #[error("compress layer: {0}")]
    Compress(#[from] CompressError),
    /// Storing the blob failed.
    #[error("store layer: {0}")]
    Store(#[from] StoreError),
}

/// How to write a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerOptions {
    /// Blob compression.
    pub compression: Compression,
    /// Level and threads of the compressor.
    pub compress: CompressOptions,
    /// Tar options (mtime clamping).
    pub tar: TarOptions,
}

/// A written layer: what a manifest and an image config need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// Size of the blob in bytes.
    pub size: u64,
    /// OCI media type of the blob.
    pub media_type: String,
    /// How the blob is compressed.
    pub compression: Compression,
}

/// Hashes the uncompressed tar on its way to the compressor.
struct DiffIdTee<W: Write> {
    hasher: Hasher,
    inner: W,
}

impl<W: Write> Write for DiffIdTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer being written into a [`BlobStore`]; dropping it before [`finish`](Self::finish)
/// leaves no blob behind.
pub struct LayerWriter {
    tar: TarWriter<DiffIdTee<Encoder<BlobWriter>>>,
    compression: Compression,
}

impl LayerWriter {
    /// Start a layer in `store`.
    pub fn new(store: &BlobStore, opts: LayerOptions) -> Result<Self, LayerError> {
        let blob = store.writer()?;
        let encoder = Encoder::new(blob, opts.compression, opts.compress)?;
        let tee = DiffIdTee {
            hasher: Hasher::new(),
            inner: encoder,
        };
        Ok(LayerWriter {
            tar: TarWriter::new(tee, opts.tar),
            compression: opts.compression,
        })
    }

    /// Append one entry (entries must come in [`crate::tar::compare_paths`] order).
    pub fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<(), LayerError> {
        Ok(self.tar.append(entry, data)?)
    }

    /// Append everything under `dir`, as [`crate::tar::write::write_tree`] does.
    pub fn append_tree(&mut self, dir: &Path) -> Result<(), LayerError> {
        Ok(self.tar.append_tree(dir)?)
    }

    /// End the tar, finish compression, publish the blob and describe it.
    pub fn finish(self) -> Result<LayerInfo, LayerError> {
        let tee = self.tar.finish()?;
        let (diff_id, _) = tee.hasher.finish();
        let blob = tee.inner.finish()?;
        let (digest, size) = blob.complete()?;
        Ok(LayerInfo {
            digest,
            diff_id: DiffId(diff_id),
            size,
            media_type: self.compression.oci_media_type().to_string(),
            compression: self.compression,
        })
    }

    /// Write the tree under `dir` as one layer.
    pub fn from_dir(
        store: &BlobStore,
        dir: &Path,
        opts: LayerOptions,
    ) -> Result<LayerInfo, LayerError> {
        let mut w = Self::new(store, opts)?;
        w.append_tree(dir)?;
        w.finish()
    }

    /// Write an explicit list of entries (in any order: they are sorted first) as one layer; each
    /// file's content comes from its reader.
    pub fn from_entries<'a>(
        store: &BlobStore,
        entries: Vec<(Entry, Box<dyn Read + 'a>)>,
        opts: LayerOptions,
    ) -> Result<LayerInfo, LayerError> {
        let mut entries = entries;
        entries.sort_by(|a, b| crate::tar::compare_paths(&a.0.path, &b.0.path));
        let mut w = Self::new(store, opts)?;
        for (entry, mut data) in entries {
            w.append(&entry, &mut data)?;
        }
        w.finish()
    }
}
