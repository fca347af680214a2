//! Garbage collection of a store: delete every blob not in the caller's keep-set, and temp files
//! left by writers that died more than [`TEMP_MAX_AGE`] ago.
//!
//! Runs under the exclusive blob lock (see [`lock`](super::lock)), so no writer is publishing
//! while it sweeps. It never decides what is referenced: the caller (`rbuild prune`) walks its
//! indexes and passes the keep-set. Files in `blobs/sha256` that are neither digests nor temp files,
//! and other algorithm directories, are left alone.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, SystemTime};

use super::lock::{LockMode, LockTarget, StoreLock};
use super::writer::{remove_if_present, TEMP_PREFIX};
use super::{BlobStore, StoreError};
use crate::digest::Digest;

/// Temp files older than this are considered abandoned.
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// What a gc run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Bytes of the deleted blobs.
    pub bytes_freed: u64,
    /// Abandoned temp files deleted.
    pub temps_removed: u64,
    /// Bytes of the deleted temp files.
    pub temp_bytes_freed: u64,
    /// Blobs kept because the keep-set names them.
    pub blobs_kept: u64,
    /// The deleted digests, sorted.
    pub removed: Vec<Digest>,
}

/// Sweep `store`, keeping `keep`; `now` is the clock used for temp file ages.
pub(crate) fn collect(
    store: &BlobStore,
    keep: &BTreeSet<Digest>,
    now: SystemTime,
) -> Result<GcReport, StoreError> {
    let _lock = StoreLock::acquire(store.root(), LockTarget::Blobs, LockMode::Exclusive)?;
    let dir = store.blobs_dir();
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| StoreError::io("read dir", dir, e))? {
        let item = item.map_err(|e| StoreError::io("read dir", dir, e))?;
        if let Ok(name) = item.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    let mut report = GcReport::default();
    for name in names {
        let path = dir.join(&name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("lstat", &path, e)),
        };
        if name.starts_with(TEMP_PREFIX) {
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age > TEMP_MAX_AGE && remove_if_present(&path)? {
                report.temps_removed += 1;
                report.temp_bytes_freed += meta.len();
            }
            continue;
        }
        let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
            continue;
        };
        if keep.contains(&digest) {
            report.blobs_kept += 1;
        } else if remove_if_present(&path)? {
            report.blobs_removed += 1;
            report.bytes_freed += meta.len();
            report.removed.push(digest);
        }
    }
    Ok(report)
}
