//! Unpacked layers and root filesystem views, as containerd's overlay snapshotter keeps them for
//! BuildKit.
//!
//! Each layer is unpacked once per diffID into `<store>/snapshots-v1/<hex>/`, in overlayfs
//! whiteout form (a deletion is a 0/0 character device, an opaque directory carries
//! `trusted.overlay.opaque=y`), so a stack of them can be an overlay's lower dirs. Unpacking goes
//! to a temp directory beside the final one and is published by a rename: a directory named by a
//! diffID is always complete. Within one build, a per-diffID lock makes concurrent steps wait for
//! one unpack instead of racing; across processes the rename decides the winner and the loser
//! discards its copy.
//!
//! A [`RootfsView`] presents a layer stack as one read-only tree: the layer directory itself for a
//! single layer, otherwise a [`Snapshot`] (an overlay mount, or a merged copy where overlayfs is
//! unavailable). Nothing writes into a view.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild_layers::digest::DiffId;
use rbuild_layers::tar::extract::{ExtractOptions, Extractor, WhiteoutMode};

use crate::cache::LayerRecord;
use crate::snapshot::{Snapshot, SnapshotError, SnapshotMode, SnapshotOptions};
use crate::store::{remove_dir_if_present, Store, SNAPSHOT_DIR};

/// Why a layer could not be unpacked or viewed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotsError {
    /// The layer blob could not be read.
    #[error("read layer {digest}: {source}")]
    Blob {
        /// The blob.
        digest: String,
        /// The cause.
        #[source]
        source: rbuild_layers::store::StoreError,
    },
    /// Extracting the layer failed.
    #[error("unpack layer {diff_id} into {path}: {source}")]
    Extract {
        /// The layer.
        diff_id: DiffId,
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rbuild_layers::tar::extract::ExtractError,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The merged view could not be prepared.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The unpacked-layer cache of one store, shared by the steps of a build.
pub struct Snapshots {
    store: Store,
    locks: Mutex<BTreeMap<DiffId, Arc<Mutex<()>>>>,
    mode: SnapshotMode,
}

impl Snapshots {
    /// The snapshot cache of `store`.
    pub fn new(store: &Store, mode: SnapshotMode) -> Self {
        Snapshots {
            store: store.clone(),
            locks: Mutex::new(BTreeMap::new()),
            mode,
        }
    }

    /// The directory holding `layer` unpacked, unpacking it first if needed.
    pub fn unpacked(&self, layer: &LayerRecord) -> Result<PathBuf, SnapshotsError> {
        let path = self.store.snapshot_path(&layer.diff_id);
        if path.is_dir() {
            return Ok(path);
        }
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(layer.diff_id.clone()).or_default().clone()
        };
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if path.is_dir() {
            return Ok(path);
        }
        let parent = self.store.root().join(SNAPSHOT_DIR);
        let io_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotsError::Io { op, path, source }
        };
        fs::create_dir_all(&parent).map_err(io_err("create dir", &parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{}-", layer.diff_id.0.hex()))
            .tempdir_in(&parent)
            .map_err(io_err("create temp dir in", &parent))?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", tmp.path()))?;
        }
        let blob = self
            .store
            .blobs()
            .open_verified(&layer.digest)
            .map_err(|source| SnapshotsError::Blob {
                digest: layer.digest.to_string(),
                source,
            })?;
        let extract = |e| SnapshotsError::Extract {
            diff_id: layer.diff_id.clone(),
            path: tmp.path().to_path_buf(),
            source: e,
        };
        let opts = ExtractOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..ExtractOptions::default()
        };
        let mut x = Extractor::open(tmp.path(), opts).map_err(extract)?;
        x.apply_layer(io::BufReader::with_capacity(1 << 20, blob))
            .map_err(extract)?;
        drop(x);
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &path) {
            Ok(()) => Ok(path),
            Err(_) if path.is_dir() => {
                // Another process published the same layer first; its copy is as good.
                let _ = remove_dir_if_present(&tmp_path);
                Ok(path)
            }
            Err(source) => {
                let _ = remove_dir_if_present(&tmp_path);
                Err(SnapshotsError::Io {
                    op: "rename into",
                    path,
                    source,
                })
            }
        }
    }

    /// Every layer of a stack unpacked, bottom first.
    pub fn unpack_all(&self, layers: &[LayerRecord]) -> Result<Vec<PathBuf>, SnapshotsError> {
        layers.iter().map(|l| self.unpacked(l)).collect()
    }

    /// A read-only view of a layer stack; `None` for no layers.
    pub fn view(&self, layers: &[LayerRecord]) -> Result<Option<RootfsView>, SnapshotsError> {
        let lowers = self.unpack_all(layers)?;
        match lowers.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(RootfsView {
                path: one.clone(),
                _snapshot: None,
                _temp: None,
            })),
            _ => {
                let parent = self.store.root().join(SNAPSHOT_DIR).join(".work");
                fs::create_dir_all(&parent).map_err(|source| SnapshotsError::Io {
                    op: "create dir",
                    path: parent.clone(),
                    source,
                })?;
                let snapshot = Snapshot::prepare(
                    &lowers,
                    &SnapshotOptions {
                        parent,
                        mode: self.mode,
                    },
                )?;
                Ok(Some(RootfsView {
                    path: snapshot.merged().to_path_buf(),
                    _snapshot: Some(snapshot),
                    _temp: None,
                }))
            }
        }
    }
}

/// A root filesystem presented read-only; released when dropped.
pub struct RootfsView {
    path: PathBuf,
    _snapshot: Option<Snapshot>,
    _temp: Option<tempfile::TempDir>,
}

impl RootfsView {
    /// An empty tree in a temporary directory (the view of a state without layers).
    pub fn empty(dir: tempfile::TempDir) -> Self {
        RootfsView {
            path: dir.path().to_path_buf(),
            _snapshot: None,
            _temp: Some(dir),
        }
    }

    /// The tree's root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
