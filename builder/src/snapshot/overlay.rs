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
//!
//! Every mount first asks for `volatile` (Linux 5.10+): overlayfs then skips all syncs of the
//! upper file system, which makes the unmount cheap (no `sync_filesystem` of a disk other work
//! keeps dirty). That is safe because the upper directory is scratch: its contents are read into
//! a layer blob, which is written and synced on its own, and the snapshot removes the upper and
//! work directories (including the `work/work/incompat/volatile` marker a volatile mount leaves)
//! on release. A kernel that rejects the option with `EINVAL` gets the same mount once more
//! without it; that decision is kept per call, never in a process-wide static.

use std::path::{Path, PathBuf};

use crate::exec::sys::{Fd, MountArgs, SysError, Syscall};

/// The overlay options every snapshot uses, as (key, value).
pub const OPTIONS: [(&str, &str); 3] = [
    ("index", "off"),
    ("metacopy", "off"),
    ("redirect_dir", "off"),
];

/// The overlay flag that skips syncing the upper file system (Linux 5.10+).
pub const VOLATILE: &str = "volatile";

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

/// The classic `mount(2)` data string: lowers top first, as overlayfs stacks them, with
/// `volatile` appended when asked for.
pub fn classic_data(dirs: &OverlayDirs<'_>, volatile: bool) -> Result<String, OverlayError> {
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
    if volatile {
        data.push(',');
        data.push_str(VOLATILE);
    }
    if data.len() > PAGE_LIMIT {
        return Err(OverlayError::OptionsTooLong {
            target: dirs.target.to_path_buf(),
            len: data.len(),
        });
    }
    Ok(data)
}

/// Why the new API could not be used: the kernel lacks it (fall back), rejected `volatile`
/// (retry without it) or it failed for real.
enum NewApi {
    Unsupported,
    VolatileRejected,
    Failed(OverlayError),
}

/// Whether a failure of a mount that asked for `volatile` may be the kernel refusing the option.
fn is_volatile_rejected(volatile: bool, e: &SysError) -> bool {
    volatile && e.errno() == Some(libc::EINVAL)
}

fn is_unsupported(e: &SysError) -> bool {
    matches!(
        e.errno(),
        Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}

fn mount_new_api(sys: &dyn Syscall, dirs: &OverlayDirs<'_>, volatile: bool) -> Result<(), NewApi> {
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
    let result = configure(sys, fs, dirs, volatile);
    sys.close(fs);
    result
}

fn configure(
    sys: &dyn Syscall,
    fs: Fd,
    dirs: &OverlayDirs<'_>,
    volatile: bool,
) -> Result<(), NewApi> {
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
    if volatile {
        match sys.fsconfig_flag(fs, VOLATILE) {
            Ok(()) => {}
            Err(e) if is_volatile_rejected(volatile, &e) => return Err(NewApi::VolatileRejected),
            Err(e) => return Err(fail(e)),
        }
    }
    // Options are checked as a whole at create time, so a kernel may refuse `volatile` there.
    match sys.fsconfig_create(fs) {
        Ok(()) => {}
        Err(e) if is_volatile_rejected(volatile, &e) => return Err(NewApi::VolatileRejected),
        Err(e) => return Err(fail(e)),
    }
    let mnt = sys.fsmount(fs).map_err(fail)?;
    let moved = sys.move_mount(mnt, dirs.target).map_err(fail);
    sys.close(mnt);
    moved
}

/// Mount the overlay at `dirs.target`, with the new API where the kernel has it, and with
/// `volatile` unless the kernel rejects it (then once more without).
pub fn mount(sys: &dyn Syscall, dirs: &OverlayDirs<'_>) -> Result<MountMethod, OverlayError> {
    let mut volatile = true;
    loop {
        match mount_new_api(sys, dirs, volatile) {
            Ok(()) => return Ok(MountMethod::LowerdirAppend),
            Err(NewApi::Failed(e)) => return Err(e),
            Err(NewApi::VolatileRejected) if volatile => volatile = false,
            Err(NewApi::VolatileRejected) | Err(NewApi::Unsupported) => break,
        }
    }
    loop {
        match mount_classic(sys, dirs, volatile) {
            Err(OverlayError::Mount { source, .. }) if is_volatile_rejected(volatile, &source) => {
                volatile = false;
            }
            other => return other.map(|()| MountMethod::Classic),
        }
    }
}

fn mount_classic(
    sys: &dyn Syscall,
    dirs: &OverlayDirs<'_>,
    volatile: bool,
) -> Result<(), OverlayError> {
    let data = classic_data(dirs, volatile)?;
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
    })
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
            calls[..11],
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
                Call::FsconfigFlag("volatile".into()),
                Call::FsconfigCreate,
            ]
        );
        assert_eq!(calls[11], Call::Fsmount);
        assert_eq!(calls[12], Call::MoveMount("/s/merged".into()));
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
            Some("lowerdir=/l/1:/l/0,upperdir=/s/upper,workdir=/s/work,index=off,metacopy=off,redirect_dir=off,volatile")
        );
        assert!(
            calls.contains(&Call::Close(101)),
            "context closed before falling back"
        );
    }

    #[test]
    fn retries_without_volatile_when_rejected() {
        type Case = (&'static str, &'static str, bool);
        // (name, failing call, expect the classic path)
        let cases: [Case; 3] = [
            ("flag unknown to fsconfig", "fsconfig:volatile", false),
            ("refused at create", "fsconfig:create", false),
            ("refused by classic mount", "mount", true),
        ];
        for (name, call, classic) in cases {
            let lowers = vec![PathBuf::from("/l/0")];
            let sys = RecordingSyscall::new();
            if classic {
                sys.fail("fsopen", libc::ENOSYS);
            }
            sys.fail_once(call, libc::EINVAL);
            let method = mount(&sys, &dirs(&lowers)).expect(name);
            let calls = sys.calls();
            if classic {
                assert_eq!(method, MountMethod::Classic, "{name}");
                let data: Vec<_> = calls
                    .iter()
                    .filter_map(|c| match c {
                        Call::Mount(m) => m.data.clone(),
                        _ => None,
                    })
                    .collect();
                let base = "lowerdir=/l/0,upperdir=/s/upper,workdir=/s/work,index=off,metacopy=off,redirect_dir=off";
                assert_eq!(
                    data,
                    [format!("{base},volatile"), base.to_string()],
                    "{name}"
                );
            } else {
                assert_eq!(method, MountMethod::LowerdirAppend, "{name}");
                let opens = calls
                    .iter()
                    .filter(|c| matches!(c, Call::Fsopen(_)))
                    .count();
                assert_eq!(opens, 2, "{name}: one retry with a fresh context");
                let flags = calls
                    .iter()
                    .filter(|c| matches!(c, Call::FsconfigFlag(f) if f == "volatile"))
                    .count();
                assert_eq!(flags, 1, "{name}: volatile asked for once only");
                let creates = calls.iter().filter(|c| **c == Call::FsconfigCreate).count();
                let second_open = calls
                    .iter()
                    .rposition(|c| matches!(c, Call::Fsopen(_)))
                    .expect("two opens");
                assert!(
                    !calls[second_open..]
                        .iter()
                        .any(|c| matches!(c, Call::FsconfigFlag(_))),
                    "{name}: retry is without volatile: {calls:?}"
                );
                assert_eq!(
                    creates,
                    if call == "fsconfig:create" { 2 } else { 1 },
                    "{name}"
                );
                let closes = calls.iter().filter(|c| matches!(c, Call::Close(_))).count();
                assert_eq!(closes, 3, "{name}: both contexts and the mount closed");
            }
        }
    }

    #[test]
    fn rejected_volatile_is_not_retried_for_other_errors() {
        let lowers = vec![PathBuf::from("/l/0")];
        let sys = RecordingSyscall::new();
        sys.fail("fsconfig:create", libc::EIO);
        let err = mount(&sys, &dirs(&lowers)).expect_err("io error is final");
        assert!(matches!(err, OverlayError::Mount { .. }), "{err}");
        let opens = sys
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Fsopen(_)))
            .count();
        assert_eq!(opens, 1);
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
