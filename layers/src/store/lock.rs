//! Advisory locks that let several processes share one store without losing data.
//!
//! Two lock files live in the store root, taken with `flock(2)` (released when the guard drops or
//! the process dies, so a crash never leaves a stale lock):
//!
//! | file                 | mode        | held by                                                    |
//! |----------------------|-------------|------------------------------------------------------------|
//! | `.rbuild-lock`       | `Shared`    | every [`BlobWriter`](super::BlobWriter), from creation to `complete` or drop |
//! | `.rbuild-lock`       | `Shared`    | a build, from its first blob write until its index/manifest references them ([`BlobStore::lock`](super::BlobStore::lock)) |
//! | `.rbuild-lock`       | `Exclusive` | [`BlobStore::gc`](super::BlobStore::gc) for its whole sweep |
//! | `.rbuild-index-lock` | `Exclusive` | whoever rewrites `index.json` (read-modify-write)          |
//!
//! Blob writers never need to exclude each other: each writes its own temp file and publishes it
//! with an atomic rename, and two writers of the same digest publish identical bytes. Readers take
//! no lock: a blob, once visible under its digest name, is complete and immutable; only gc removes
//! it, and gc only removes what the caller's keep-set says is unreferenced.
//!
//! A blob is unreferenced between `complete` and the moment an index names it; a gc in that window
//! would collect it. Whoever writes blobs and references them later (a build) therefore keeps a
//! `Shared` blob lock for the whole span; nested shared locks in one process are compatible.
//!
//! Order (deadlock freedom): take `.rbuild-lock` before `.rbuild-index-lock`, never the reverse;
//! high-level code acquires, low-level code only relies on it. A thread that holds a `BlobWriter`
//! must not call `gc` (its own shared lock would block the exclusive one forever); flock locks
//! belong to open files, so this holds within one process as well as across processes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::StoreError;

/// File name of the blob lock in the store root.
pub const BLOB_LOCK_FILE: &str = ".rbuild-lock";
/// File name of the index lock in the store root.
pub const INDEX_LOCK_FILE: &str = ".rbuild-index-lock";

/// Which lock file to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockTarget {
    /// `.rbuild-lock`: blob publication (shared) versus gc (exclusive).
    Blobs,
    /// `.rbuild-index-lock`: `index.json` updates.
    Index,
}

impl LockTarget {
    fn file_name(self) -> &'static str {
        match self {
            LockTarget::Blobs => BLOB_LOCK_FILE,
            LockTarget::Index => INDEX_LOCK_FILE,
        }
    }
}

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once; excludes `Exclusive`.
    Shared,
    /// A single holder; excludes everything else.
    Exclusive,
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
    mode: LockMode,
}

impl StoreLock {
    /// Block until `target` under `root` is held in `mode`.
    pub fn acquire(root: &Path, target: LockTarget, mode: LockMode) -> Result<Self, StoreError> {
        let (file, path) = open_lock_file(root, target)?;
        let op = match mode {
            LockMode::Shared => FlockOperation::LockShared,
            LockMode::Exclusive => FlockOperation::LockExclusive,
        };
        flock(&file, op).map_err(|e| StoreError::io("lock", &path, e.into()))?;
        Ok(StoreLock { file, path, mode })
    }

    /// Take the lock if nobody conflicting holds it; `Ok(None)` when it would block.
    pub fn try_acquire(
        root: &Path,
        target: LockTarget,
        mode: LockMode,
    ) -> Result<Option<Self>, StoreError> {
        let (file, path) = open_lock_file(root, target)?;
        let op = match mode {
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        match flock(&file, op) {
            Ok(()) => Ok(Some(StoreLock { file, path, mode })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::io("lock", &path, e.into())),
        }
    }

    /// The mode this lock is held in.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first just makes it prompt.
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

fn open_lock_file(root: &Path, target: LockTarget) -> Result<(File, PathBuf), StoreError> {
    let path = root.join(target.file_name());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", &path, e))?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_compatibility_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (LockMode::Shared, LockMode::Shared, true),
            (LockMode::Shared, LockMode::Exclusive, false),
            (LockMode::Exclusive, LockMode::Shared, false),
            (LockMode::Exclusive, LockMode::Exclusive, false),
        ];
        for (held, wanted, compatible) in cases {
            let _first = StoreLock::acquire(dir.path(), LockTarget::Blobs, held).expect("first");
            let second =
                StoreLock::try_acquire(dir.path(), LockTarget::Blobs, wanted).expect("second");
            assert_eq!(second.is_some(), compatible, "{held:?} then {wanted:?}");
            // Different lock files never conflict.
            assert!(
                StoreLock::try_acquire(dir.path(), LockTarget::Index, wanted)
                    .expect("index")
                    .is_some()
            );
        }
    }
}
