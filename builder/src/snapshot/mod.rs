//! Snapshots: the writable root filesystem a RUN step executes in, over its parent's layers.
//!
//! [`Snapshot::prepare`] takes the unpacked parent layers (directories in overlay whiteout form,
//! bottom first; unpacking is the caller's job, through `rbuild_layers`) and gives a `merged`
//! directory to run in:
//!
//! - **overlay** (the default, as containerd's overlay snapshotter under BuildKit): the layers
//!   are the lower dirs, a fresh upper dir collects every change, so the step's layer is the
//!   upper dir read by `rbuild_layers::whiteout::overlay_changes` ([`Snapshot::upper`]);
//! - **copy** (when overlayfs cannot be mounted, or when asked for): the layers are merged into
//!   `base/` and `base/` is copied (reflinked where possible) into `merged/`; the step's layer is
//!   then the two-tree diff `rbuild_layers::diff::tree_changes(base, merged)`
//!   ([`Snapshot::base`]).
//!
//! A snapshot owns one scratch directory:
//!
//! ```text
//! <parent>/rbuild-snapshot-XXXXXX/
//! ├── empty/    an empty lower dir, when there are no parent layers (overlay only)
//! ├── upper/    overlay upper dir (overlay only)
//! ├── work/     overlay work dir (overlay only)
//! ├── base/     merged parent layers (copy only)
//! └── merged/   the root filesystem the step runs in
//! ```
//!
//! Dropping the snapshot unmounts the overlay (lazily if it is busy) and removes the scratch
//! directory; [`Snapshot::release`] does the same and reports failures. An error while preparing
//! leaves nothing behind either.

pub mod copy;
pub mod overlay;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::exec::sys::{LinuxSyscall, Syscall};
pub use overlay::{MountMethod, OverlayError};

/// Preparing or releasing a snapshot failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The scratch directory or one of its parts could not be created.
    #[error("create snapshot directory {path}: {source}")]
    Scratch {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The overlay could not be mounted and copying was not allowed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// Building the copied snapshot failed.
    #[error("copy snapshot: {0}")]
    Copy(#[from] copy::CopyError),
    /// The overlay could not be unmounted.
    #[error("unmount snapshot {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The failing call.
        #[source]
        source: crate::exec::sys::SysError,
    },
    /// The scratch directory could not be removed.
    #[error("remove snapshot directory {path}: {source}")]
    Remove {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How snapshots are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Overlay, falling back to a copy where overlayfs cannot be mounted.
    #[default]
    Auto,
    /// Overlay only: fail if it cannot be mounted.
    Overlay,
    /// Always copy.
    Copy,
}

/// What kind of snapshot was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// An overlay mount, mounted with this method.
    Overlay(MountMethod),
    /// A copied tree.
    Copy,
}

/// Options for [`Snapshot::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Directory the scratch directory is created in (same file system as the layers is best).
    pub parent: PathBuf,
    /// Overlay, copy, or overlay with a copy fallback.
    pub mode: SnapshotMode,
}

/// A prepared root filesystem for one step; unmounted and removed on drop.
pub struct Snapshot {
    sys: Arc<dyn Syscall>,
    scratch: Option<tempfile::TempDir>,
    merged: PathBuf,
    kind: SnapshotKind,
    mounted: bool,
    fallback: Option<String>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("merged", &self.merged)
            .field("kind", &self.kind)
            .field("mounted", &self.mounted)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

fn mkdir(path: PathBuf) -> Result<PathBuf, SnapshotError> {
    std::fs::create_dir(&path).map_err(|source| SnapshotError::Scratch {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

impl Snapshot {
    /// Prepare a snapshot over `lowers` (unpacked layers, bottom first) with the real kernel.
    pub fn prepare(lowers: &[PathBuf], options: &SnapshotOptions) -> Result<Self, SnapshotError> {
        Self::prepare_with(Arc::new(LinuxSyscall), lowers, options)
    }

    /// As [`Snapshot::prepare`], through the given syscall implementation.
    pub fn prepare_with(
        sys: Arc<dyn Syscall>,
        lowers: &[PathBuf],
        options: &SnapshotOptions,
    ) -> Result<Self, SnapshotError> {
        let scratch = tempfile::Builder::new()
            .prefix("rbuild-snapshot-")
            .tempdir_in(&options.parent)
            .map_err(|source| SnapshotError::Scratch {
                path: options.parent.clone(),
                source,
            })?;
        let root = scratch.path().to_path_buf();
        let merged = mkdir(root.join("merged"))?;
        let mut snap = Snapshot {
            sys,
            scratch: Some(scratch),
            merged,
            kind: SnapshotKind::Copy,
            mounted: false,
            fallback: None,
        };
        if options.mode != SnapshotMode::Copy {
            match snap.mount_overlay(&root, lowers) {
                Ok(method) => {
                    snap.kind = SnapshotKind::Overlay(method);
                    snap.mounted = true;
                    return Ok(snap);
                }
                Err(e) if options.mode == SnapshotMode::Overlay => return Err(e),
                Err(e) => {
                    snap.fallback = Some(e.to_string());
                    for dir in ["upper", "work", "empty"] {
                        let _ = std::fs::remove_dir_all(root.join(dir));
                    }
                }
            }
        }
        let base = mkdir(root.join("base"))?;
        copy::merge_layers(lowers, &base)?;
        copy::copy_tree(&base, &snap.merged)?;
        Ok(snap)
    }

    fn mount_overlay(&self, root: &Path, lowers: &[PathBuf]) -> Result<MountMethod, SnapshotError> {
        let upper = mkdir(root.join("upper"))?;
        let work = mkdir(root.join("work"))?;
        let empty;
        let lowers = if lowers.is_empty() {
            empty = vec![mkdir(root.join("empty"))?];
            &empty[..]
        } else {
            lowers
        };
        let dirs = overlay::OverlayDirs {
            lowers,
            upper: &upper,
            work: &work,
            target: &self.merged,
        };
        Ok(overlay::mount(self.sys.as_ref(), &dirs)?)
    }

    /// The root filesystem to run the step in.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// The overlay upper directory, holding exactly the step's changes (overlay only).
    pub fn upper(&self) -> Option<PathBuf> {
        match self.kind {
            SnapshotKind::Overlay(_) => self.scratch.as_ref().map(|s| s.path().join("upper")),
            SnapshotKind::Copy => None,
        }
    }

    /// The merged parent layers to diff `merged` against (copy only).
    pub fn base(&self) -> Option<PathBuf> {
        match self.kind {
            SnapshotKind::Copy => self.scratch.as_ref().map(|s| s.path().join("base")),
            SnapshotKind::Overlay(_) => None,
        }
    }

    /// Overlay or copy.
    pub fn kind(&self) -> SnapshotKind {
        self.kind
    }

    /// Why the overlay was not used, when `Auto` fell back to a copy.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Unmount and remove everything now, reporting failures (drop does it silently).
    pub fn release(mut self) -> Result<(), SnapshotError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), SnapshotError> {
        if self.mounted {
            overlay::unmount(self.sys.as_ref(), &self.merged).map_err(|source| {
                SnapshotError::Unmount {
                    path: self.merged.clone(),
                    source,
                }
            })?;
            self.mounted = false;
        }
        if let Some(scratch) = self.scratch.take() {
            let path = scratch.path().to_path_buf();
            scratch
                .close()
                .map_err(|source| SnapshotError::Remove { path, source })?;
        }
        Ok(())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.teardown().is_err() && self.mounted {
            // Never remove the directory through a still-mounted overlay; if even a lazy detach
            // fails, the scratch directory is left in place rather than walked through the mount.
            if self.sys.umount(&self.merged, libc::MNT_DETACH).is_ok() {
                self.mounted = false;
                if let Some(scratch) = self.scratch.take() {
                    let _ = scratch.close();
                }
            } else if let Some(scratch) = self.scratch.take() {
                let _ = scratch.keep();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};

    fn opts(parent: &Path, mode: SnapshotMode) -> SnapshotOptions {
        SnapshotOptions {
            parent: parent.to_path_buf(),
            mode,
        }
    }

    #[test]
    fn modes_table() {
        let t = tempfile::tempdir().expect("tempdir");
        let layer = t.path().join("layer");
        std::fs::create_dir(&layer).expect("mkdir");
        std::fs::write(layer.join("f"), b"x").expect("write");
        let lowers = vec![layer];
        for (name, mode, fail_fsopen, want_copy) in [
            ("auto mounts overlay", SnapshotMode::Auto, false, false),
            ("auto falls back", SnapshotMode::Auto, true, true),
            ("copy always copies", SnapshotMode::Copy, false, true),
        ] {
            let sys = Arc::new(RecordingSyscall::new());
            if fail_fsopen {
                sys.fail("fsopen", libc::ENODEV);
            }
            let snap =
                Snapshot::prepare_with(sys.clone(), &lowers, &opts(t.path(), mode)).expect(name);
            assert_eq!(snap.kind() == SnapshotKind::Copy, want_copy, "{name}");
            assert_eq!(snap.base().is_some(), want_copy, "{name}");
            assert_eq!(snap.upper().is_some(), !want_copy, "{name}");
            if want_copy {
                assert_eq!(
                    std::fs::read(snap.merged().join("f")).expect("copied"),
                    b"x",
                    "{name}"
                );
            }
            assert_eq!(snap.fallback_reason().is_some(), fail_fsopen, "{name}");
            let scratch = snap.merged().parent().expect("scratch").to_path_buf();
            drop(snap);
            assert!(!scratch.exists(), "{name}: scratch removed");
            let unmounted = sys.calls().iter().any(|c| matches!(c, Call::Umount(..)));
            assert_eq!(unmounted, !want_copy, "{name}");
        }
    }

    #[test]
    fn overlay_only_mode_fails_without_overlay() {
        let t = tempfile::tempdir().expect("tempdir");
        let sys = Arc::new(RecordingSyscall::new());
        sys.fail("fsopen", libc::ENODEV);
        let err = Snapshot::prepare_with(sys, &[], &opts(t.path(), SnapshotMode::Overlay))
            .expect_err("no overlay");
        assert!(
            matches!(err, SnapshotError::Overlay(OverlayError::Unavailable(_))),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(t.path()).expect("read").count(),
            0,
            "nothing left behind"
        );
    }
}
