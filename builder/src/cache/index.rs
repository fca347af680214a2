//! The on-disk cache index: cache key → what the step produced (layer, config change, history
//! entry) plus the key manifest that explains the key.
//!
//! # Layout
//!
//! ```text
//! <store root>/
//!   cache-v1/
//!     records/<first 2 hex>/<64 hex of key>.json   one CacheRecord per key
//!     lineage/<64 hex of sha256(lineage)>          text: the key last recorded for a lineage
//! ```
//!
//! The `v1` is the on-disk format version: a format change gets a new directory, never an
//! in-place migration. Layer blobs live in the blob store, not here; a record only names them, and
//! [`CacheIndex::lookup`] checks that the blob still exists (a garbage-collected blob makes the
//! record stale, reported as [`Lookup::BlobMissing`], which callers treat as a miss).
//!
//! # Lock discipline
//!
//! There are no locks here, by design. Every file is written whole to a temporary file in the
//! same directory, synced, then renamed over its final name, so a reader sees either the old
//! file, the new one, or none — never a torn one. Records are content-addressed by their key and
//! a key fully determines its inputs, so two builders racing to write the same key write
//! equivalent records and either may win. Lineage pointers are last-writer-wins hints used only
//! to explain misses.
//!
//! Blobs are protected by the blob store's lock (`rbuild_layers::store::lock`), not by the index:
//! a build takes `.rbuild-lock` *shared* (`LockTarget::Blobs`, `LockMode::Shared`) before its
//! first [`CacheIndex::lookup`] and holds it until every layer it reuses is referenced by an
//! image, so `BlobStore::gc`, which holds the same lock *exclusive* for its sweep, cannot remove a
//! blob between a hit and its use. The index itself never takes a store lock (high-level code
//! acquires, low-level code relies on it); records whose blob was collected are simply stale.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rbuild_layers::digest::{DiffId, Digest};
use serde::{Deserialize, Serialize};

use super::key::CacheKey;
use super::manifest::KeyManifest;
use crate::graph::ConfigOp;

/// The index directory's name under the store root.
pub const INDEX_DIR: &str = "cache-v1";

/// The layer a step produced, as stored in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the stored (possibly compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// Size of the stored blob in bytes.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
}

/// The image history entry a step contributes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// `created_by`, e.g. `RUN /bin/sh -c make # buildkit`.
    pub created_by: String,
    /// `comment`, if any.
    pub comment: Option<String>,
    /// True when the step produced no layer.
    pub empty_layer: bool,
}

/// What the index stores under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The produced layer, if the step changed the filesystem.
    pub layer: Option<LayerRecord>,
    /// The image-config change, if the step made one.
    pub config: Option<ConfigOp>,
    /// The history entry.
    pub history: HistoryRecord,
    /// The labelled inputs of the key (its hash is the key).
    pub manifest: KeyManifest,
}

/// Answers whether a blob is still in the blob store.
pub trait BlobPresence {
    /// True when the blob exists.
    fn has_blob(&self, digest: &Digest) -> bool;
}

impl<F: Fn(&Digest) -> bool> BlobPresence for F {
    fn has_blob(&self, digest: &Digest) -> bool {
        self(digest)
    }
}

impl BlobPresence for rbuild_layers::store::BlobStore {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.has(digest)
    }
}

/// The result of looking a key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A usable record.
    Hit(Box<CacheRecord>),
    /// No record for this key.
    Miss,
    /// A record exists but its layer blob is gone (treat as a miss).
    BlobMissing {
        /// The stale record.
        record: Box<CacheRecord>,
        /// The missing blob.
        digest: Digest,
    },
    /// A record exists but cannot be used (treat as a miss; it will be overwritten).
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Errors of the cache index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation (`create`, `read`, `write`, `rename`, …).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A record was offered under a key its manifest does not hash to.
    #[error("cache record for {expected} has a manifest hashing to {found}")]
    KeyMismatch {
        /// The key the record was offered under.
        expected: CacheKey,
        /// The key its manifest hashes to.
        found: CacheKey,
    },
    /// A lineage pointer holds something that is not a key.
    #[error("lineage pointer {path} holds `{text}`, not a cache key")]
    BadLineage {
        /// The pointer file.
        path: PathBuf,
        /// Its content.
        text: String,
    },
}

type Result<T> = std::result::Result<T, CacheError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The cache index of one store root; see the module documentation for layout and locking.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
}

impl CacheIndex {
    /// Open the index under `store_root`, creating `cache-v1/` if needed.
    pub fn ensure(store_root: &Path) -> Result<Self> {
        let dir = store_root.join(INDEX_DIR);
        for sub in ["records", "lineage"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(CacheIndex { dir })
    }

    /// The index directory (`<store root>/cache-v1`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        let hex = key.hex();
        self.dir
            .join("records")
            .join(&hex[..2])
            .join(format!("{hex}.json"))
    }

    fn lineage_path(&self, lineage: &str) -> PathBuf {
        self.dir
            .join("lineage")
            .join(Digest::of(lineage.as_bytes()).hex())
    }

    /// Store `record` under `key`, atomically; the record's manifest must hash to `key`.
    pub fn put(&self, key: &CacheKey, record: &CacheRecord) -> Result<()> {
        let found = record.manifest.key();
        if &found != key {
            return Err(CacheError::KeyMismatch {
                expected: key.clone(),
                found,
            });
        }
        let path = self.record_path(key);
        let bytes =
            serde_json::to_vec_pretty(record).expect("cache records always serialize to JSON");
        write_atomic(&path, &bytes)
    }

    /// Look `key` up; a hit's layer blob must satisfy `blobs`.
    pub fn lookup(&self, key: &CacheKey, blobs: &dyn BlobPresence) -> Result<Lookup> {
        let path = self.record_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => {
                return Err(CacheError::Io {
                    op: "read",
                    path,
                    source: e,
                })
            }
        };
        let record: CacheRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Lookup::Corrupt {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        let found = record.manifest.key();
        if &found != key {
            return Ok(Lookup::Corrupt {
                path,
                reason: format!("manifest hashes to {found}"),
            });
        }
        if let Some(layer) = &record.layer {
            if !blobs.has_blob(&layer.digest) {
                let digest = layer.digest.clone();
                return Ok(Lookup::BlobMissing {
                    record: Box::new(record),
                    digest,
                });
            }
        }
        Ok(Lookup::Hit(Box::new(record)))
    }

    /// Remove the record of `key`, if any.
    pub fn remove(&self, key: &CacheKey) -> Result<()> {
        let path = self.record_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::Io {
                op: "remove",
                path,
                source: e,
            }),
        }
    }

    /// Remember `key` as the latest key of `lineage` (a stable name for "this instruction of
    /// this stage of this Dockerfile", chosen by the caller), for explaining the next miss.
    pub fn remember(&self, lineage: &str, key: &CacheKey) -> Result<()> {
        write_atomic(&self.lineage_path(lineage), key.to_string().as_bytes())
    }

    /// The key last remembered for `lineage`.
    pub fn previous_key(&self, lineage: &str) -> Result<Option<CacheKey>> {
        let path = self.lineage_path(lineage);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CacheError::Io {
                    op: "read",
                    path,
                    source: e,
                })
            }
        };
        match text.trim().parse() {
            Ok(k) => Ok(Some(k)),
            Err(_) => Err(CacheError::BadLineage { path, text }),
        }
    }

    /// The record last remembered for `lineage`, if it is still readable (for `rbuild why`).
    pub fn previous(&self, lineage: &str) -> Result<Option<CacheRecord>> {
        let Some(key) = self.previous_key(lineage)? else {
            return Ok(None);
        };
        match self.lookup(&key, &|_: &Digest| true)? {
            Lookup::Hit(r) => Ok(Some(*r)),
            Lookup::BlobMissing { record, .. } => Ok(Some(*record)),
            Lookup::Miss | Lookup::Corrupt { .. } => Ok(None),
        }
    }
}

/// Write `bytes` to `path` through a synced temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("index paths always have a parent directory");
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err("sync", path))?;
    tmp.persist(path).map_err(|e| CacheError::Io {
        op: "rename into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Records for the tests of the cache modules.
#[cfg(test)]
pub(crate) mod test_records {
    use super::*;
    use crate::cache::manifest::{FieldValue, KeyField};

    /// A key manifest with one field, `x` = `v`.
    pub(crate) fn manifest(v: &str) -> KeyManifest {
        KeyManifest {
            fields: vec![KeyField {
                label: "x".into(),
                value: FieldValue::text(v),
            }],
            ..KeyManifest::new()
        }
    }

    /// The record of `RUN v`, keyed by [`manifest`]`(v)`, with a layer made of `blob` (or
    /// none) and `config`.
    pub(crate) fn record(v: &str, blob: Option<&[u8]>, config: Option<ConfigOp>) -> CacheRecord {
        CacheRecord {
            layer: blob.map(|b| LayerRecord {
                digest: Digest::of(b),
                diff_id: DiffId(Digest::of(b"diff")),
                size: b.len() as u64,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }),
            config,
            history: HistoryRecord {
                created_by: format!("RUN {v}"),
                comment: None,
                empty_layer: blob.is_none(),
            },
            manifest: manifest(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_records::manifest;
    use super::*;

    fn record(v: &str, blob: Option<&[u8]>) -> CacheRecord {
        test_records::record(v, blob, Some(ConfigOp::User("app".into())))
    }

    #[test]
    fn put_then_lookup_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = CacheIndex::ensure(dir.path()).expect("index");
        let with_blob = record("a", Some(b"blob"));
        let no_layer = record("b", None);
        idx.put(&with_blob.manifest.key(), &with_blob).expect("put");
        idx.put(&no_layer.manifest.key(), &no_layer).expect("put");

        let all = |_: &Digest| true;
        let none = |_: &Digest| false;
        let cases: Vec<(&str, CacheKey, &dyn BlobPresence, Lookup)> = vec![
            (
                "hit",
                with_blob.manifest.key(),
                &all,
                Lookup::Hit(Box::new(with_blob.clone())),
            ),
            ("miss", manifest("zzz").key(), &all, Lookup::Miss),
            (
                "blob gone",
                with_blob.manifest.key(),
                &none,
                Lookup::BlobMissing {
                    record: Box::new(with_blob.clone()),
                    digest: Digest::of(b"blob"),
                },
            ),
            (
                "no layer needs no blob",
                no_layer.manifest.key(),
                &none,
                Lookup::Hit(Box::new(no_layer.clone())),
            ),
        ];
        for (name, key, blobs, want) in cases {
            assert_eq!(idx.lookup(&key, blobs).expect(name), want, "{name}");
        }
        assert!(dir
            .path()
            .join("cache-v1/records")
            .join(&with_blob.manifest.key().hex()[..2])
            .is_dir());
    }

    #[test]
    fn lookup_checks_the_real_blob_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = rbuild_layers::store::BlobStore::ensure(dir.path()).expect("store");
        let idx = CacheIndex::ensure(dir.path()).expect("index");
        let r = record("a", Some(b"layer bytes"));
        let key = r.manifest.key();
        idx.put(&key, &r).expect("put");
        assert!(matches!(
            idx.lookup(&key, &store).expect("lookup"),
            Lookup::BlobMissing { .. }
        ));
        let (digest, _) = store.put(b"layer bytes").expect("put blob");
        assert_eq!(digest, Digest::of(b"layer bytes"));
        assert!(matches!(
            idx.lookup(&key, &store).expect("lookup"),
            Lookup::Hit(_)
        ));
    }

    #[test]
    fn put_rejects_mismatched_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = CacheIndex::ensure(dir.path()).expect("index");
        let err = idx
            .put(&manifest("other").key(), &record("a", None))
            .expect_err("mismatch");
        assert!(matches!(err, CacheError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn corrupt_records_are_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = CacheIndex::ensure(dir.path()).expect("index");
        let r = record("a", None);
        let key = r.manifest.key();
        idx.put(&key, &r).expect("put");
        let path = idx.record_path(&key);
        fs::write(&path, b"{ not json").expect("overwrite");
        assert!(matches!(
            idx.lookup(&key, &|_: &Digest| true),
            Ok(Lookup::Corrupt { .. })
        ));
        // A record moved under the wrong key is detected too.
        let other = record("b", None);
        fs::write(&path, serde_json::to_vec(&other).expect("json")).expect("overwrite");
        assert!(matches!(
            idx.lookup(&key, &|_: &Digest| true),
            Ok(Lookup::Corrupt { .. })
        ));
        idx.remove(&key).expect("remove");
        assert_eq!(
            idx.lookup(&key, &|_: &Digest| true).expect("lookup"),
            Lookup::Miss
        );
        idx.remove(&key).expect("removing twice is fine");
    }

    #[test]
    fn lineage_remembers_the_last_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = CacheIndex::ensure(dir.path()).expect("index");
        assert_eq!(idx.previous("Dockerfile/build/3").expect("read"), None);
        let (a, b) = (record("a", None), record("b", None));
        idx.put(&a.manifest.key(), &a).expect("put");
        idx.put(&b.manifest.key(), &b).expect("put");
        idx.remember("Dockerfile/build/3", &a.manifest.key())
            .expect("remember");
        idx.remember("Dockerfile/build/3", &b.manifest.key())
            .expect("remember");
        assert_eq!(idx.previous("Dockerfile/build/3").expect("read"), Some(b));
        assert_eq!(idx.previous_key("other").expect("read"), None);
        // No temporary files are left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("cache-v1/lineage"))
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
