//! [`BlobWriter`]: hash while writing, publish atomically.
//!
//! Bytes go through a sha256 [`Hasher`] into a temp file `blobs/sha256/.tmp-*` in the same
//! directory as the final blob. Only when the digest is known (and, for
//! [`BlobWriter::complete_verified`], checked) is the file fsynced and renamed to
//! `blobs/sha256/<hex>`, then the directory fsynced. A writer dropped before completion — or a
//! process killed mid-write — leaves at most a temp file, never a partial blob under a digest name;
//! gc removes stale temp files. Completing a blob that already exists drops the temp file.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::lock::{LockMode, LockTarget, StoreLock};
use super::StoreError;
use crate::digest::{Digest, Hasher};

/// Prefix of temp files in `blobs/sha256/`; never a valid digest name.
pub const TEMP_PREFIX: &str = ".tmp-";
const BUFFER: usize = 256 * 1024;

/// A blob being written; see the module docs.
pub struct BlobWriter {
    file: BufWriter<NamedTempFile>,
    hasher: Hasher,
    dir: PathBuf,
    _lock: StoreLock,
}

impl BlobWriter {
    /// Start a blob in `dir` (a store's `blobs/sha256`), holding the store's shared lock.
    pub(crate) fn new(root: &Path, dir: &Path) -> Result<Self, StoreError> {
        let lock = StoreLock::acquire(root, LockTarget::Blobs, LockMode::Shared)?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| StoreError::io("create temp blob", dir, e))?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(BUFFER, temp),
            hasher: Hasher::new(),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Publish the blob under its digest and return the digest and size.
    pub fn complete(self) -> Result<(Digest, u64), StoreError> {
        let (digest, size) = self.hasher.clone().finish();
        self.publish(&digest)?;
        Ok((digest, size))
    }

    /// Publish the blob only if it has the `expected` digest and size; otherwise discard it and
    /// report the mismatch.
    pub fn complete_verified(
        self,
        expected: &Digest,
        expected_size: u64,
    ) -> Result<(Digest, u64), StoreError> {
        let (digest, size) = self.hasher.clone().finish();
        if size != expected_size {
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: expected_size,
                found: size,
            });
        }
        if &digest != expected {
            return Err(StoreError::DigestMismatch {
                path: self.dir.join(expected.hex()),
                expected: expected.clone(),
                found: digest,
            });
        }
        self.publish(&digest)?;
        Ok((digest, size))
    }

    fn publish(self, digest: &Digest) -> Result<(), StoreError> {
        let target = self.dir.join(digest.hex());
        let temp = self.file.into_inner().map_err(|e| {
            let (error, file) = e.into_parts();
            StoreError::io("write temp blob", file.get_ref().path(), error)
        })?;
        if target.exists() {
            // Content addressed: an existing blob with this name has these bytes (gc and
            // verify catch corruption); dropping the temp file is all there is to do.
            return Ok(());
        }
        let temp_path = temp.path().to_path_buf();
        temp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io("fsync temp blob", &temp_path, e))?;
        temp.as_file()
            .set_permissions(Permissions::from_mode(0o644))
            .map_err(|e| StoreError::io("chmod temp blob", &temp_path, e))?;
        temp.persist(&target)
            .map_err(|e| StoreError::io("rename blob into place", &target, e.error))?;
        sync_dir(&self.dir)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// fsync a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Write `bytes` to `path` atomically (temp file in the same directory, fsync, rename) unless a
/// file already exists there; returns whether it wrote.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    if path.exists() {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| StoreError::io("create temp file", dir, e))?;
    temp.write_all(bytes)
        .map_err(|e| StoreError::io("write temp file", temp.path(), e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| StoreError::io("fsync temp file", temp.path(), e))?;
    let temp_path = temp.path().to_path_buf();
    temp.as_file()
        .set_permissions(Permissions::from_mode(0o644))
        .map_err(|e| StoreError::io("chmod temp file", &temp_path, e))?;
    match temp.persist_noclobber(path) {
        Ok(_) => {
            sync_dir(dir)?;
            Ok(true)
        }
        // Another process created it first: theirs wins.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::io("rename into place", path, e.error)),
    }
}

/// Remove a file, treating "already gone" as success.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("remove", path, e)),
    }
}
