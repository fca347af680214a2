//! The content store: blobs addressed by sha256 under a root directory that is itself an OCI image
//! layout, so the OCI layout writer and `skopeo`/`umoci` can use it directly:
//!
//! ```text
//! <root>/
//! ├── oci-layout            {"imageLayoutVersion":"1.0.0"}
//! ├── index.json            written empty by `ensure` when absent; owned by the layout code
//! ├── .rbuild-lock          flock: blob writers (shared) vs gc (exclusive) — see `lock`
//! ├── .rbuild-index-lock    flock: index.json updates
//! └── blobs/sha256/
//!     ├── <64 hex>          immutable, complete blobs (mode 0644)
//!     └── .tmp-XXXXXX       blobs being written; never read; removed by gc after an hour
//! ```
//!
//! Invariants: a file named by a digest is complete (published by rename after fsync); reads can
//! verify the digest and a corrupt blob is reported as [`StoreError::DigestMismatch`], never used
//! silently; writing an existing blob is a cheap no-op. Concurrency rules are in [`lock`].

pub mod gc;
pub mod layer;
pub mod lock;
pub mod writer;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use gc::{GcReport, TEMP_MAX_AGE};
pub use layer::{LayerError, LayerInfo, LayerOptions, LayerWriter};
pub use lock::{LockMode, LockTarget, StoreLock};
pub use writer::BlobWriter;

use crate::digest::{Digest, Hasher};

/// Content of the `oci-layout` file.
pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// Content of the `index.json` that `ensure` writes when there is none.
pub const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The store has no blob with this digest.
    #[error("blob {digest} not found in {root}")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
        /// The store root.
        root: PathBuf,
    },
    /// A blob's bytes do not hash to its name (or to what the caller expected).
    #[error("blob {path} is corrupt: expected {expected}, found {found}")]
    DigestMismatch {
        /// The blob file.
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
        /// The digest of its bytes.
        found: Digest,
    },
    /// A blob has another size than expected.
    #[error("blob {digest} has {found} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The expected size.
        expected: u64,
        /// The actual size.
        found: u64,
    },
    /// The directory is not an OCI image layout we can use.
    #[error("{path} is not an oci image layout: {reason}")]
    NotALayout {
        /// The root given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A handle on a blob store rooted at an OCI image layout directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    blobs: PathBuf,
}

impl BlobStore {
    /// Open the store at `root`, creating the directory, `blobs/sha256`, `oci-layout` and an empty
    /// `index.json` when absent.
    pub fn ensure(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| StoreError::io("create dir", &blobs, e))?;
        writer::write_new_file(&root.join("oci-layout"), OCI_LAYOUT.as_bytes())?;
        writer::write_new_file(&root.join("index.json"), EMPTY_INDEX.as_bytes())?;
        Self::open(root)
    }

    /// Open an existing store; fails unless `oci-layout` declares version 1.0.0 and `blobs/sha256`
    /// exists.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        let layout_path = root.join("oci-layout");
        let not_layout = |reason: String| StoreError::NotALayout {
            path: root.clone(),
            reason,
        };
        let text = match fs::read(&layout_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(not_layout("no oci-layout file".into()))
            }
            Err(e) => return Err(StoreError::io("read", &layout_path, e)),
        };
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| not_layout(format!("oci-layout is not json: {e}")))?;
        match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => {}
            other => {
                return Err(not_layout(format!(
                    "unsupported imageLayoutVersion {other:?}"
                )))
            }
        }
        let blobs = root.join("blobs").join("sha256");
        if !blobs.is_dir() {
            return Err(not_layout("no blobs/sha256 directory".into()));
        }
        Ok(BlobStore { root, blobs })
    }

    /// The store root (the OCI layout directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `blobs/sha256` directory.
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// True when a blob with `digest` is present (not verified).
    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(digest)),
            Err(e) => Err(StoreError::io("stat", &path, e)),
        }
    }

    /// Open a blob for reading without verification (use for random access or when the caller
    /// verifies by other means).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(digest)),
            Err(e) => Err(StoreError::io("open", &path, e)),
        }
    }

    /// Open a blob through a reader that hashes what it reads and fails at end of stream (with an
    /// `InvalidData` I/O error wrapping [`StoreError::DigestMismatch`]) if the bytes are corrupt.
    pub fn open_verified(&self, digest: &Digest) -> Result<VerifiedReader<File>, StoreError> {
        let file = self.open_blob(digest)?;
        Ok(VerifiedReader::new(
            file,
            digest.clone(),
            self.blob_path(digest),
        ))
    }

    /// Read a whole blob, verified.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        let path = self.blob_path(digest);
        self.open_verified(digest)?
            .read_to_end(&mut out)
            .map_err(|e| unwrap_verify_error(e, "read", &path))?;
        Ok(out)
    }

    /// Hash a blob and compare with its name; returns its size.
    pub fn verify(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        let mut reader = self.open_verified(digest)?;
        io::copy(&mut reader, &mut io::sink()).map_err(|e| unwrap_verify_error(e, "read", &path))
    }

    /// Start writing a new blob.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(&self.root, &self.blobs)
    }

    /// Store `bytes` as a blob; returns its digest and size.
    pub fn put(&self, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        let digest = Digest::of(bytes);
        if self.has(&digest) {
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.writer()?;
        w.write_all(bytes)
            .map_err(|e| StoreError::io("write", &self.blobs, e))?;
        w.complete()
    }

    /// Every blob digest present, sorted (temp files and foreign names excluded).
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for item in
            fs::read_dir(&self.blobs).map_err(|e| StoreError::io("read dir", &self.blobs, e))?
        {
            let item = item.map_err(|e| StoreError::io("read dir", &self.blobs, e))?;
            if let Some(name) = item.file_name().to_str() {
                if let Ok(d) = format!("sha256:{name}").parse::<Digest>() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delete every blob not in `keep`, and temp files older than [`TEMP_MAX_AGE`]; see [`gc`].
    pub fn gc(&self, keep: &BTreeSet<Digest>) -> Result<GcReport, StoreError> {
        gc::collect(self, keep, SystemTime::now())
    }

    /// Take one of the store's locks; see [`lock`] for modes and order.
    pub fn lock(&self, target: LockTarget, mode: LockMode) -> Result<StoreLock, StoreError> {
        StoreLock::acquire(&self.root, target, mode)
    }

    fn not_found(&self, digest: &Digest) -> StoreError {
        StoreError::NotFound {
            digest: digest.clone(),
            root: self.root.clone(),
        }
    }
}

/// Turn an I/O error from a [`VerifiedReader`] back into the [`StoreError`] it carries.
fn unwrap_verify_error(e: io::Error, op: &'static str, path: &Path) -> StoreError {
    if e.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(store) = inner.downcast::<StoreError>() {
                return *store;
            }
        }
        // Unreachable in practice: checked `is` above.
        return StoreError::io(op, path, io::Error::other("corrupt blob"));
    }
    StoreError::io(op, path, e)
}

/// A reader that hashes everything it yields and, at end of stream, fails if the digest differs
/// from the expected one.
pub struct VerifiedReader<R: Read> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    path: PathBuf,
    checked: bool,
}

impl<R: Read> VerifiedReader<R> {
    /// Verify `inner` against `expected`; `path` names the source in errors.
    pub fn new(inner: R, expected: Digest, path: PathBuf) -> Self {
        VerifiedReader {
            inner,
            hasher: Hasher::new(),
            expected,
            path,
            checked: false,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.hasher.len()
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !buf.is_empty() && !self.checked {
            self.checked = true;
            let (found, _) = self.hasher.clone().finish();
            if found != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    StoreError::DigestMismatch {
                        path: self.path.clone(),
                        expected: self.expected.clone(),
                        found,
                    },
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_layout_and_open_checks_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        assert!(matches!(
            BlobStore::open(&root),
            Err(StoreError::NotALayout { .. })
        ));
        let store = BlobStore::ensure(&root).expect("ensure");
        assert_eq!(
            fs::read_to_string(root.join("oci-layout")).expect("layout"),
            OCI_LAYOUT
        );
        assert_eq!(
            fs::read_to_string(root.join("index.json")).expect("index"),
            EMPTY_INDEX
        );
        // A second ensure keeps an existing index.json.
        fs::write(
            root.join("index.json"),
            "{\"schemaVersion\":2,\"manifests\":[{}]}",
        )
        .expect("write");
        BlobStore::ensure(&root).expect("ensure again");
        assert!(fs::read_to_string(root.join("index.json"))
            .expect("index")
            .contains("[{}]"));
        BlobStore::open(store.root()).expect("open");
    }

    #[test]
    fn put_read_verify_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::ensure(dir.path()).expect("ensure");
        let (d, n) = store.put(b"hello").expect("put");
        assert_eq!((d.clone(), n), (Digest::of(b"hello"), 5));
        assert!(store.has(&d));
        assert_eq!(store.read(&d).expect("read"), b"hello");
        assert_eq!(store.verify(&d).expect("verify"), 5);
        assert_eq!(store.size(&d).expect("size"), 5);
        assert_eq!(store.list().expect("list"), vec![d.clone()]);
        let missing = Digest::of(b"nope");
        assert!(matches!(
            store.open_blob(&missing),
            Err(StoreError::NotFound { .. })
        ));
        assert!(!store.has(&missing));
    }

    #[test]
    fn complete_verified_rejects_wrong_digest_and_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::ensure(dir.path()).expect("ensure");
        let cases: &[(&[u8], u64, bool)] =
            &[(b"other", 5, false), (b"abc", 4, false), (b"abc", 3, true)];
        for (bytes, size, ok) in cases {
            let mut w = store.writer().expect("writer");
            w.write_all(bytes).expect("write");
            let res = w.complete_verified(&Digest::of(b"abc"), *size);
            assert_eq!(res.is_ok(), *ok, "{:?}", res);
        }
        assert_eq!(store.list().expect("list"), vec![Digest::of(b"abc")]);
    }

    #[test]
    fn gc_keeps_referenced_and_removes_old_temps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::ensure(dir.path()).expect("ensure");
        let (keep, _) = store.put(b"keep").expect("put");
        let (drop_me, _) = store.put(b"drop!").expect("put");
        let fresh_temp = store.blobs_dir().join(".tmp-fresh");
        let old_temp = store.blobs_dir().join(".tmp-old");
        fs::write(&fresh_temp, b"x").expect("temp");
        fs::write(&old_temp, b"xy").expect("temp");
        let old = SystemTime::now() - TEMP_MAX_AGE - std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&old_temp)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        let report = store.gc(&BTreeSet::from([keep.clone()])).expect("gc");
        assert_eq!(report.blobs_removed, 1);
        assert_eq!(report.bytes_freed, 5);
        assert_eq!(report.temps_removed, 1);
        assert_eq!(report.temp_bytes_freed, 2);
        assert_eq!(report.blobs_kept, 1);
        assert_eq!(report.removed, vec![drop_me]);
        assert!(store.has(&keep));
        assert!(fresh_temp.exists());
        assert!(!old_temp.exists());
    }
}
