//! Mounting an overlayfs for one step, with the new mount API.
//!
//! Follows containerd's overlay snapshotter (which BuildKit uses): the unpacked parent layers
//! are the `lowerdir`s, a fresh `upperdir` collects the step's changes and `workdir` is the
//! kernel's scratch space. The options `index=off`, `metacopy=off` and `redirect_dir=off` keep
//! the upper directory a plain tree that a layer can be made from (a metacopy or redirect entry
//! cannot be expressed in a tar layer); `userxattr` is not set, since the builder is root and
//! whiteouts use `trusted.*` attributes.
//!
//! The mount uses `fsopen("overlay")` and one `fsconfig("lowerdir+", dir)` per layer (Linux
//! 6.8+), so the number of layers is not bounded by the one-page limit of `mount(2)`'s data
//! string. When the kernel lacks the new API or `lowerdir+`, it falls back to a classic `mount(2)`
//! with `lowerdir=top:…:bottom`, which fails cleanly with [`OverlayError::OptionsTooLong`] past a
//! page.

use std::path::{Path, PathBuf};

use crate::exec::sys::{Fd, MountArgs, SysError, Syscall};

/// The overlay options every snapshot uses, as (key, value).
pub const OPTIONS: [(&str, &str); 3] = [
    ("index", "off"),
    ("metacopy", "off"),
    ("redirect_dir", "off"),
];

/// Largest data string `mount(2)` accepts (one page, with its terminating NUL).
const PAGE_LIMIT: usize = 4095;

/// An overlay mount failed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The kernel has no overlay file system.
    #[error("overlayfs is not available: {0}")]
    Unavailable(#[source] SysError),
    /// A call of the mount sequence failed.
    #[error("mount overlay on {target}: {source}")]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The failing call.
        #[source]
        source: SysError,
    },
    /// Too many or too long lower paths for a classic mount data string.
    #[error(
        "overlay options for {target} are {len} bytes, over the {PAGE_LIMIT}-byte mount limit"
    )]
    OptionsTooLong {
        /// The mount point.
        target: PathBuf,
        /// Length of the data string.
        len: usize,
    },
    /// A path contains a character the classic option string cannot carry.
    #[error("overlay path {path} contains ':' or ',' and the kernel lacks lowerdir+")]
    UnsupportedPath {
        /// The path.
        path: PathBuf,
    },
}

/// How the overlay was mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMethod {
    /// New mount API with one `lowerdir+` per layer.
    LowerdirAppend,
    /// Classic `mount(2)` with a data string.
    Classic,
}

/// The directories of one overlay mount.
#[derive(Debug, Clone)]
pub struct OverlayDirs<'a> {
    /// Lower layers, bottom (base image) first.
    pub lowers: &'a [PathBuf],
    /// Upper directory (receives the changes).
    pub upper: &'a Path,
    /// Work directory (same file system as `upper`).
    pub work: &'a Path,
    /// Mount point.
    pub target: &'a Path,
}

/// The classic `mount(2)` data string: lowers top first, as overlayfs stacks them.
pub fn classic_data(dirs: &OverlayDirs<'_>) -> Result<String, OverlayError> {
    let check = |p: &Path| {
        let s = p.to_string_lossy();
        if s.contains(':') || s.contains(',') {
            Err(OverlayError::UnsupportedPath {
                path: p.to_path_buf(),
            })
        } else {
            Ok(s.into_owned())
        }
    };
    let lowers = dirs
        .lowers
        .iter()
        .rev()
        .map(|p| check(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        check(dirs.upper)?,
        check(dirs.work)?
    );
    for (k, v) in OPTIONS {
        data.push_str(&format!(",{k}={v}"));
    }
    if data.len() > PAGE_LIMIT {
        return Err(OverlayError::OptionsTooLong {
            target: dirs.target.to_path_buf(),
            len: data.len(),
        });
    }
    Ok(data)
}

/// Why the new API could not be used: the kernel lacks it (fall back) or it failed for real.
enum NewApi {
    Unsupported,
    Failed(OverlayError),
}

fn is_unsupported(e: &SysError) -> bool {
    matches!(
        e.errno(),
        Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}

fn mount_new_api(sys: &dyn Syscall, dirs: &OverlayDirs<'_>) -> Result<(), NewApi> {
    let fs = match sys.fsopen("overlay") {
        Ok(fd) => fd,
        Err(e) if e.errno() == Some(libc::ENODEV) => {
            return Err(NewApi::Failed(OverlayError::Unavailable(e)))
        }
        Err(e) if is_unsupported(&e) => return Err(NewApi::Unsupported),
        Err(e) => {
            return Err(NewApi::Failed(OverlayError::Mount {
                target: dirs.target.into(),
                source: e,
            }))
        }
    };
    let result = configure(sys, fs, dirs);
    sys.close(fs);
    result
}

fn configure(sys: &dyn Syscall, fs: Fd, dirs: &OverlayDirs<'_>) -> Result<(), NewApi> {
    let fail = |source: SysError| {
        NewApi::Failed(OverlayError::Mount {
            target: dirs.target.into(),
            source,
        })
    };
    // overlayfs stacks lowerdir+ in the order given, first = topmost.
    for (i, lower) in dirs.lowers.iter().rev().enumerate() {
        match sys.fsconfig_string(fs, "lowerdir+", &lower.to_string_lossy()) {
            Ok(()) => {}
            Err(e) if i == 0 && is_unsupported(&e) => return Err(NewApi::Unsupported),
            Err(e) => return Err(fail(e)),
        }
    }
    sys.fsconfig_string(fs, "upperdir", &dirs.upper.to_string_lossy())
        .map_err(fail)?;
    sys.fsconfig_string(fs, "workdir", &dirs.work.to_string_lossy())
        .map_err(fail)?;
    for (k, v) in OPTIONS {
        sys.fsconfig_string(fs, k, v).map_err(fail)?;
    }
    sys.fsconfig_create(fs).map_err(fail)?;
    let mnt = sys.fsmount(fs).map_err(fail)?;
    let moved = sys.move_mount(mnt, dirs.target).map_err(fail);
    sys.close(mnt);
    moved
}

/// Mount the overlay at `dirs.target`, with the new API where the kernel has it.
pub fn mount(sys: &dyn Syscall, dirs: &OverlayDirs<'_>) -> Result<MountMethod, OverlayError> {
    match mount_new_api(sys, dirs) {
        Ok(()) => return Ok(MountMethod::LowerdirAppend),
        Err(NewApi::Failed(e)) => return Err(e),
        Err(NewApi::Unsupported) => {}
    }
    let data = classic_data(dirs)?;
    sys.mount(&MountArgs {
        source: Some(PathBuf::from("overlay")),
        target: dirs.target.to_path_buf(),
        fstype: Some("overlay".into()),
        flags: 0,
        data: Some(data),
    })
    .map_err(|e| match e.errno() {
        Some(libc::ENODEV) => OverlayError::Unavailable(e),
        _ => OverlayError::Mount {
            target: dirs.target.into(),
            source: e,
        },
    })?;
    Ok(MountMethod::Classic)
}

/// Unmount the overlay; a busy mount is detached lazily so the directories can still go.
pub fn unmount(sys: &dyn Syscall, target: &Path) -> Result<(), SysError> {
    match sys.umount(target, 0) {
        Err(e) if e.errno() == Some(libc::EBUSY) => sys.umount(target, libc::MNT_DETACH),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};

    fn dirs(lowers: &[PathBuf]) -> OverlayDirs<'_> {
        OverlayDirs {
            lowers,
            upper: Path::new("/s/upper"),
            work: Path::new("/s/work"),
            target: Path::new("/s/merged"),
        }
    }

    #[test]
    fn new_api_appends_lowers_top_first() {
        let lowers = vec![
            PathBuf::from("/l/0"),
            PathBuf::from("/l/1"),
            PathBuf::from("/l/2"),
        ];
        let sys = RecordingSyscall::new();
        assert_eq!(
            mount(&sys, &dirs(&lowers)).expect("mounts"),
            MountMethod::LowerdirAppend
        );
        let calls = sys.calls();
        let s = |k: &str, v: &str| Call::FsconfigString(k.into(), v.into());
        assert_eq!(
            calls[..10],
            [
                Call::Fsopen("overlay".into()),
                s("lowerdir+", "/l/2"),
                s("lowerdir+", "/l/1"),
                s("lowerdir+", "/l/0"),
                s("upperdir", "/s/upper"),
                s("workdir", "/s/work"),
                s("index", "off"),
                s("metacopy", "off"),
                s("redirect_dir", "off"),
                Call::FsconfigCreate,
            ]
        );
        assert_eq!(calls[10], Call::Fsmount);
        assert_eq!(calls[11], Call::MoveMount("/s/merged".into()));
        assert_eq!(
            calls.iter().filter(|c| matches!(c, Call::Close(_))).count(),
            2,
            "both fds closed"
        );
        assert!(!calls
            .iter()
            .any(|c| matches!(c, Call::FsconfigFlag(f) if f == "userxattr")));
    }

    #[test]
    fn falls_back_to_classic_mount_without_lowerdir_append() {
        let lowers = vec![PathBuf::from("/l/0"), PathBuf::from("/l/1")];
        let sys = RecordingSyscall::new();
        sys.fail("fsconfig:lowerdir+", libc::EINVAL);
        assert_eq!(
            mount(&sys, &dirs(&lowers)).expect("mounts"),
            MountMethod::Classic
        );
        let calls = sys.calls();
        let Some(Call::Mount(m)) = calls.last() else {
            panic!("last call is mount: {calls:?}")
        };
        assert_eq!(
            m.data.as_deref(),
            Some("lowerdir=/l/1:/l/0,upperdir=/s/upper,workdir=/s/work,index=off,metacopy=off,redirect_dir=off")
        );
        assert!(
            calls.contains(&Call::Close(101)),
            "context closed before falling back"
        );
    }

    #[test]
    fn errors_table() {
        let many: Vec<PathBuf> = (0..300)
            .map(|i| PathBuf::from(format!("/var/lib/rbuild/layers/{i:04}")))
            .collect();
        let colon = vec![PathBuf::from("/l/a:b")];
        type Case = (
            &'static str,
            Vec<PathBuf>,
            &'static str,
            i32,
            fn(&OverlayError) -> bool,
        );
        let cases: Vec<Case> = vec![
            (
                "no overlay in kernel",
                vec!["/l".into()],
                "fsopen",
                libc::ENODEV,
                |e| matches!(e, OverlayError::Unavailable(_)),
            ),
            (
                "create fails",
                vec!["/l".into()],
                "fsconfig:create",
                libc::EIO,
                |e| matches!(e, OverlayError::Mount { .. }),
            ),
            ("classic too long", many, "fsopen", libc::ENOSYS, |e| {
                matches!(e, OverlayError::OptionsTooLong { .. })
            }),
            ("classic colon", colon, "fsopen", libc::ENOSYS, |e| {
                matches!(e, OverlayError::UnsupportedPath { .. })
            }),
        ];
        for (name, lowers, call, errno, want) in cases {
            let sys = RecordingSyscall::new();
            sys.fail(call, errno);
            let err = mount(&sys, &dirs(&lowers)).expect_err(name);
            assert!(want(&err), "{name}: {err}");
        }
    }

    #[test]
    fn unmount_detaches_when_busy() {
        let sys = RecordingSyscall::new();
        sys.fail("umount2", libc::EBUSY);
        let _ = unmount(&sys, Path::new("/m"));
        assert_eq!(
            sys.calls(),
            [
                Call::Umount("/m".into(), 0),
                Call::Umount("/m".into(), libc::MNT_DETACH)
            ]
        );
    }
}
