//! The container's root filesystem: resolving paths inside it, mount-point stubs, pivot_root.
//!
//! Paths named by the request (mount targets, the working directory, `/etc/hosts`) are resolved
//! with [`secure_join`]: symlinks are followed *inside* the root, `..` never climbs above it, as
//! runc's `securejoin` does, so an image cannot make the sandbox mount over a host path.
//!
//! Mount points that do not exist are created as stubs and recorded in [`Stubs`]. This follows
//! BuildKit's `MountStubsCleaner` (executor/stubs.go): after the run, stubs the sandbox made for
//! its own mounts (`/proc`, `/dev`, `/sys`, `/etc/hosts`, `/etc/resolv.conf` and parents created
//! for them) are removed again when they are still empty, and the parent directory's timestamps
//! are put back, so they never show up in the layer. Directories created for a `RUN --mount`
//! target and a missing working directory are kept, as BuildKit keeps them.
//!
//! [`pivot`] enters the root the way runc does: `pivot_root(".", ".")` then a lazy unmount of
//! the old root stacked on top.

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec::sys::{MountArgs, SysResult, Syscall};

/// Most symlinks followed while resolving one path (as Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// A path could not be resolved or a stub could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// More than 40 symlinks met while resolving the path.
    #[error("too many levels of symbolic links resolving {path} in {root}")]
    SymlinkLoop {
        /// The root.
        root: PathBuf,
        /// The path being resolved.
        path: String,
    },
    /// An I/O operation on a path inside the root failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The host path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A component on the way to a mount point exists and is not a directory.
    #[error("cannot create mount point {path}: {blocker} is not a directory")]
    NotADirectory {
        /// The container path of the mount point.
        path: String,
        /// The host path that blocks it.
        blocker: PathBuf,
    },
}

type Result<T> = std::result::Result<T, RootfsError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Resolve `path` (a container path) to a host path under `root`, following symlinks inside the
/// root and clamping `..` at the root. Missing components are kept literally.
pub fn secure_join(root: &Path, path: &str) -> Result<PathBuf> {
    // Pending components, processed front to back; a symlink's target is pushed in front.
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0usize;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&name);
        let target = match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                fs::read_link(&candidate).map_err(io_err("readlink", &candidate))?
            }
            _ => {
                resolved.push(name);
                continue;
            }
        };
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(RootfsError::SymlinkLoop {
                root: root.to_path_buf(),
                path: path.to_string(),
            });
        }
        let text = target.to_string_lossy();
        if target.is_absolute() {
            resolved.clear();
        }
        pending.extend(components(&text).into_iter().rev());
    }
    Ok(resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Split a path into normal components and `..`, dropping `.`, empty parts and the root.
fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

/// Lexically clean a container path: absolute, without `.`, `..` or empty components.
pub fn clean_path(path: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in components(path) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    format!("/{}", out.join("/"))
}

/// The latest mount before `i` whose (clean) target strictly contains target `i`: a mount
/// point nested in an earlier mount lives in that mount's source, not in the root.
pub fn enclosing_mount(targets: &[String], i: usize) -> Option<usize> {
    let t = targets.get(i)?;
    (0..i).rev().find(|&j| is_below(t, &targets[j]))
}

/// True when the clean path `path` lies strictly below the clean path `dir`.
pub fn is_below(path: &str, dir: &str) -> bool {
    path != dir
        && (dir == "/"
            || path
                .strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// Why a stub was created, which decides whether it survives the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StubRole {
    /// A mount point of the sandbox itself: removed after the run if still empty.
    Sandbox,
    /// A `RUN --mount` target or a parent of one: kept, as BuildKit keeps it.
    MountTarget,
    /// The working directory or a parent of it: kept.
    Workdir,
}

/// The kind of a created stub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StubKind {
    /// A directory.
    Dir,
    /// An empty regular file.
    File,
}

/// One path the sandbox created in the root filesystem, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedPath {
    /// Absolute path inside the container (after symlink resolution).
    pub path: String,
    /// Directory or file.
    pub kind: StubKind,
    /// Why it was created.
    pub role: StubRole,
    /// True when it is still in the root filesystem after clean-up.
    pub kept: bool,
}

#[derive(Debug, Clone)]
struct Stub {
    host: PathBuf,
    created: CreatedPath,
    /// (atime, mtime) of the parent before this stub was created, as (sec, nsec) pairs.
    parent_times: Option<[(i64, i64); 2]>,
}

/// The stubs created in one root filesystem, in creation order.
#[derive(Debug, Clone)]
pub struct Stubs {
    root: PathBuf,
    stubs: Vec<Stub>,
}

impl Stubs {
    /// No stubs yet, for the root filesystem at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            stubs: Vec::new(),
        }
    }

    /// Make sure the container path `path` exists as `kind`, creating missing parents as
    /// directories, and return its host path. Existing objects are left as they are.
    pub fn ensure(&mut self, path: &str, kind: StubKind, role: StubRole) -> Result<PathBuf> {
        let host = secure_join(&self.root, path)?;
        let rel = host
            .strip_prefix(&self.root)
            .expect("secure_join stays under the root")
            .to_path_buf();
        let mut cur = self.root.clone();
        let parts: Vec<_> = rel.components().collect();
        for (i, part) in parts.iter().enumerate() {
            let parent = cur.clone();
            cur.push(part);
            let last = i + 1 == parts.len();
            match fs::symlink_metadata(&cur) {
                Ok(md) if !last && !md.is_dir() => {
                    return Err(RootfsError::NotADirectory {
                        path: path.to_string(),
                        blocker: cur,
                    });
                }
                Ok(_) => continue,
                Err(_) => {}
            }
            let parent_times = fs::symlink_metadata(&parent)
                .ok()
                .map(|md| crate::snapshot::copy::times_of(&md));
            let this_kind = if last { kind } else { StubKind::Dir };
            match this_kind {
                StubKind::Dir => fs::create_dir(&cur).map_err(io_err("mkdir", &cur))?,
                StubKind::File => {
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&cur)
                        .map_err(io_err("create", &cur))?;
                }
            }
            let container = format!(
                "/{}",
                cur.strip_prefix(&self.root).expect("under root").display()
            );
            self.stubs.push(Stub {
                host: cur.clone(),
                created: CreatedPath {
                    path: container,
                    kind: this_kind,
                    role,
                    kept: true,
                },
                parent_times,
            });
        }
        Ok(host)
    }

    /// The stubs created so far.
    pub fn created(&self) -> Vec<CreatedPath> {
        self.stubs.iter().map(|s| s.created.clone()).collect()
    }

    /// Remove the sandbox's own stubs that are still empty (newest first), restore their
    /// parents' timestamps, and report every created path with its fate.
    pub fn clean(mut self) -> Vec<CreatedPath> {
        for stub in self.stubs.iter_mut().rev() {
            if stub.created.role != StubRole::Sandbox {
                continue;
            }
            let removed = match (stub.created.kind, fs::symlink_metadata(&stub.host)) {
                (StubKind::Dir, Ok(md)) if md.is_dir() => fs::remove_dir(&stub.host).is_ok(),
                (StubKind::File, Ok(md)) if md.is_file() && md.len() == 0 => {
                    fs::remove_file(&stub.host).is_ok()
                }
                (_, Err(_)) => true,
                _ => false,
            };
            if !removed {
                continue;
            }
            stub.created.kept = false;
            if let (Some(times), Some(parent)) = (stub.parent_times, stub.host.parent()) {
                restore_times(parent, times);
            }
        }
        self.stubs.into_iter().map(|s| s.created).collect()
    }
}

/// Put back a directory's atime and mtime; best effort (the directory may be gone).
fn restore_times(path: &Path, times: [(i64, i64); 2]) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // Best effort: a directory removed meanwhile has no times to put back.
    let _ = crate::snapshot::copy::set_times(&c, times);
}

/// Bind the root onto itself (pivot_root needs a mount point), as the first step in the new
/// mount namespace after propagation was made private.
pub fn bind_root(sys: &dyn Syscall, root: &Path) -> SysResult<()> {
    sys.mount(&MountArgs {
        source: Some(root.to_path_buf()),
        target: root.to_path_buf(),
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
    })
}

/// Make `root` the process's root: `pivot_root(".", ".")`, then detach the old root that now
/// sits on top, as runc does, so no host path stays reachable.
pub fn pivot(sys: &dyn Syscall, root: &Path) -> SysResult<()> {
    sys.chdir(root)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    // The old root must not propagate the detach back to the host.
    sys.mount(&MountArgs {
        source: None,
        target: PathBuf::from("."),
        fstype: None,
        flags: libc::MS_SLAVE | libc::MS_REC,
        data: None,
    })?;
    sys.umount(Path::new("."), libc::MNT_DETACH)?;
    sys.chdir(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let r = d.path();
        fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
        fs::create_dir_all(r.join("etc")).expect("mkdir");
        symlink("usr/lib", r.join("lib")).expect("symlink");
        symlink("/usr", r.join("abs")).expect("symlink");
        symlink("../../../../etc", r.join("usr/escape")).expect("symlink");
        symlink("loop2", r.join("loop1")).expect("symlink");
        symlink("loop1", r.join("loop2")).expect("symlink");
        symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            r.join("etc/resolv.conf"),
        )
        .expect("symlink");
        d
    }

    #[test]
    fn secure_join_table() {
        let d = tree();
        let r = d.path();
        let cases: &[(&str, &str)] = &[
            ("/", ""),
            ("/proc", "proc"),
            ("/lib/x", "usr/lib/x"),
            ("/abs/bin", "usr/bin"),
            ("/../../etc", "etc"),
            ("/usr/escape/passwd", "etc/passwd"),
            ("relative/./a/../b", "relative/b"),
            ("/etc/resolv.conf", "run/systemd/resolve/stub-resolv.conf"),
        ];
        for (input, want) in cases {
            let got = secure_join(r, input).expect("resolves");
            assert_eq!(got, r.join(want), "{input}");
        }
        assert!(matches!(
            secure_join(r, "/loop1/x"),
            Err(RootfsError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn nested_mount_targets() {
        let t = |v: &[&str]| v.iter().map(|s| clean_path(s)).collect::<Vec<_>>();
        let targets = t(&[
            "/cache",
            "/cache/sub/",
            "/cachex",
            "/a/../cache/sub/x",
            "/other",
        ]);
        assert_eq!(targets[3], "/cache/sub/x");
        let got: Vec<_> = (0..targets.len())
            .map(|i| enclosing_mount(&targets, i))
            .collect();
        assert_eq!(got, [None, Some(0), None, Some(1), None]);
        assert!(
            is_below("/proc/x", "/proc")
                && !is_below("/proc", "/proc")
                && !is_below("/procx", "/proc")
        );
    }

    #[test]
    fn stubs_are_removed_when_empty_and_kept_for_mount_targets() {
        let d = tree();
        let r = d.path();
        let mut stubs = Stubs::new(r);
        stubs
            .ensure("/proc", StubKind::Dir, StubRole::Sandbox)
            .expect("proc");
        stubs
            .ensure("/etc/hosts", StubKind::File, StubRole::Sandbox)
            .expect("hosts");
        stubs
            .ensure("/cache/a/b", StubKind::Dir, StubRole::MountTarget)
            .expect("target");
        stubs
            .ensure("/work", StubKind::Dir, StubRole::Workdir)
            .expect("cwd");
        // /etc exists: nothing created for it; ensure on an existing path creates nothing.
        stubs
            .ensure("/usr/lib", StubKind::Dir, StubRole::Sandbox)
            .expect("exists");
        // The command wrote into a created dir: it stays.
        stubs
            .ensure("/sys", StubKind::Dir, StubRole::Sandbox)
            .expect("sys");
        fs::write(r.join("sys/written"), b"x").expect("write");
        let report = stubs.clean();
        let summary: Vec<(&str, bool)> = report.iter().map(|c| (c.path.as_str(), c.kept)).collect();
        assert_eq!(
            summary,
            vec![
                ("/proc", false),
                ("/etc/hosts", false),
                ("/cache", true),
                ("/cache/a", true),
                ("/cache/a/b", true),
                ("/work", true),
                ("/sys", true),
            ]
        );
        assert!(!r.join("proc").exists());
        assert!(!r.join("etc/hosts").exists());
        assert!(r.join("cache/a/b").is_dir());
    }

    #[test]
    fn stub_clean_restores_parent_mtime() {
        let d = tree();
        let etc = d.path().join("etc");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(&etc)
            .expect("open")
            .set_modified(old)
            .expect("set mtime");
        let mut stubs = Stubs::new(d.path());
        stubs
            .ensure("/etc/hosts", StubKind::File, StubRole::Sandbox)
            .expect("hosts");
        stubs.clean();
        let md = fs::metadata(&etc).expect("stat");
        assert_eq!(md.modified().expect("mtime"), old);
    }

    #[test]
    fn stub_through_a_file_is_refused() {
        let d = tree();
        fs::write(d.path().join("file"), b"x").expect("write");
        let mut stubs = Stubs::new(d.path());
        let err = stubs
            .ensure("/file/x", StubKind::Dir, StubRole::MountTarget)
            .expect_err("blocked");
        assert!(matches!(err, RootfsError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn pivot_sequence_matches_runc() {
        let sys = RecordingSyscall::new();
        pivot(&sys, Path::new("/r")).expect("recorded");
        let calls = sys.calls();
        assert_eq!(calls[0], Call::Chdir("/r".into()));
        assert_eq!(calls[1], Call::PivotRoot(".".into(), ".".into()));
        assert!(matches!(&calls[2], Call::Mount(m) if m.flags == libc::MS_SLAVE | libc::MS_REC));
        assert_eq!(calls[3], Call::Umount(".".into(), libc::MNT_DETACH));
        assert_eq!(calls[4], Call::Chdir("/".into()));
    }
}
