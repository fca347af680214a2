//! The kernel calls the sandbox and the snapshotter make, behind a trait.
//!
//! As in youki's `syscall` module, every namespace, mount, identity and capability call goes
//! through [`Syscall`]. [`LinuxSyscall`] performs the real call; [`RecordingSyscall`] records
//! each call as a [`Call`] value (and can be told to fail one), so the order of a sandbox set-up
//! or an overlay mount can be unit-tested without root. Paths are taken as given: resolving them
//! safely inside a root filesystem is the caller's job (see `sandbox::rootfs`). Nothing here
//! prints, and nothing here panics on a failing call: every failure is a [`SysError`] naming the
//! call and its argument.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A failed system call: which call, on what, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{call} {arg}: {source}")]
pub struct SysError {
    /// The call's name, e.g. `mount`.
    pub call: &'static str,
    /// Its main argument (a path, a name, a flag set), for the message.
    pub arg: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// Wrap `source` as the failure of `call` on `arg`.
    pub fn new(call: &'static str, arg: impl Into<String>, source: io::Error) -> Self {
        Self {
            call,
            arg: arg.into(),
            source,
        }
    }

    /// The raw OS error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result of a system call.
pub type SysResult<T> = Result<T, SysError>;

/// Arguments of one `mount(2)` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    /// Source (device, directory, or `None`).
    pub source: Option<PathBuf>,
    /// Mount point.
    pub target: PathBuf,
    /// File system type (`proc`, `tmpfs`, …) or `None` for binds and propagation changes.
    pub fstype: Option<String>,
    /// `MS_*` flags.
    pub flags: libc::c_ulong,
    /// File-system-specific data string.
    pub data: Option<String>,
}

/// The three capability sets written by `capset(2)`, as bit masks over capability numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
}

/// What kind of object a path names (without following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (regular file, device, socket, fifo).
    File,
}

/// A file descriptor handed out by [`Syscall::fsopen`] or [`Syscall::fsmount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fd(pub i32);

/// One recorded call, as [`RecordingSyscall`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `unshare(flags)`.
    Unshare(i32),
    /// `mount(…)`.
    Mount(MountArgs),
    /// `umount2(target, flags)`.
    Umount(PathBuf, i32),
    /// `pivot_root(new_root, put_old)`.
    PivotRoot(PathBuf, PathBuf),
    /// `chdir(path)`.
    Chdir(PathBuf),
    /// `sethostname(name)`.
    Sethostname(String),
    /// `setgroups(gids)`.
    Setgroups(Vec<u32>),
    /// `setresgid(gid)` then `setresuid(uid)`.
    SetIds {
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// `prctl(PR_CAPBSET_DROP, cap)`.
    CapBoundDrop(u8),
    /// `capset(…)`.
    Capset(CapSets),
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
    AmbientClear,
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    NoNewPrivs,
    /// Bring the loopback interface up.
    LoopbackUp,
    /// `mkdir(path, mode)`.
    Mkdir(PathBuf, u32),
    /// Create an empty regular file.
    CreateFile(PathBuf, u32),
    /// `symlink(target, link)`.
    Symlink(PathBuf, PathBuf),
    /// `fsopen(fstype)`.
    Fsopen(String),
    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    FsconfigString(String, String),
    /// `fsconfig(FSCONFIG_SET_FLAG, key)`.
    FsconfigFlag(String),
    /// `fsconfig(FSCONFIG_CMD_CREATE)`.
    FsconfigCreate,
    /// `fsmount(fd)`.
    Fsmount,
    /// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`.
    MoveMount(PathBuf),
    /// `close(fd)`.
    Close(i32),
    /// `umask(mask)`.
    Umask(u32),
    /// `execve(path, argv, env)`.
    Execve(PathBuf, Vec<String>),
}

/// The kernel interface used by the sandbox and the snapshotter.
pub trait Syscall: Send + Sync {
    /// Move the calling process into new namespaces (`CLONE_NEW*` flags).
    fn unshare(&self, flags: i32) -> SysResult<()>;
    /// Mount a file system, bind, or change propagation.
    fn mount(&self, args: &MountArgs) -> SysResult<()>;
    /// Unmount `target` with `umount2` flags.
    fn umount(&self, target: &Path, flags: i32) -> SysResult<()>;
    /// Make `new_root` the root mount, moving the old root to `put_old`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    /// Change the working directory.
    fn chdir(&self, path: &Path) -> SysResult<()>;
    /// Set the UTS host name.
    fn sethostname(&self, name: &str) -> SysResult<()>;
    /// Set the supplementary groups.
    fn set_groups(&self, gids: &[u32]) -> SysResult<()>;
    /// Set real, effective and saved group then user ids.
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult<()>;
    /// Drop one capability from the bounding set.
    fn cap_bound_drop(&self, cap: u8) -> SysResult<()>;
    /// Set the effective, permitted and inheritable capability sets.
    fn cap_set(&self, sets: CapSets) -> SysResult<()>;
    /// Clear the ambient capability set.
    fn ambient_clear(&self) -> SysResult<()>;
    /// Set `no_new_privs`.
    fn no_new_privs(&self) -> SysResult<()>;
    /// Bring up `lo` in the current network namespace.
    fn loopback_up(&self) -> SysResult<()>;
    /// Create one directory.
    fn mkdir(&self, path: &Path, mode: u32) -> SysResult<()>;
    /// Create an empty regular file (fails if it exists).
    fn create_file(&self, path: &Path, mode: u32) -> SysResult<()>;
    /// Create a symbolic link at `link` pointing to `target`.
    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()>;
    /// The kind of object at `path`, or `None` if nothing is there.
    fn stat_kind(&self, path: &Path) -> Option<FileKind>;
    /// Open a file system context (new mount API).
    fn fsopen(&self, fstype: &str) -> SysResult<Fd>;
    /// Set a string parameter on a file system context.
    fn fsconfig_string(&self, fd: Fd, key: &str, value: &str) -> SysResult<()>;
    /// Set a flag parameter on a file system context.
    fn fsconfig_flag(&self, fd: Fd, key: &str) -> SysResult<()>;
    /// Create the superblock of a configured context.
    fn fsconfig_create(&self, fd: Fd) -> SysResult<()>;
    /// Turn a created context into a detached mount.
    fn fsmount(&self, fd: Fd) -> SysResult<Fd>;
    /// Attach a detached mount at `target`.
    fn move_mount(&self, fd: Fd, target: &Path) -> SysResult<()>;
    /// Close a descriptor returned by this trait.
    fn close(&self, fd: Fd);
    /// Set the file mode creation mask.
    fn umask(&self, mask: u32);
    /// Replace the process image; only returns on failure.
    fn execve(&self, path: &Path, argv: &[String], env: &[String]) -> SysError;
}

fn cstr(call: &'static str, s: &OsStr) -> SysResult<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        SysError::new(
            call,
            s.to_string_lossy(),
            io::Error::new(io::ErrorKind::InvalidInput, "nul byte"),
        )
    })
}

fn cpath(call: &'static str, p: &Path) -> SysResult<CString> {
    cstr(call, p.as_os_str())
}

fn check(
    call: &'static str,
    arg: impl FnOnce() -> String,
    rc: libc::c_long,
) -> SysResult<libc::c_long> {
    if rc < 0 {
        Err(SysError::new(call, arg(), io::Error::last_os_error()))
    } else {
        Ok(rc)
    }
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The real Linux implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn unshare(&self, flags: i32) -> SysResult<()> {
        // SAFETY: unshare takes a plain integer.
        let rc = unsafe { libc::unshare(flags) };
        check("unshare", || format!("{flags:#x}"), rc.into()).map(drop)
    }

    fn mount(&self, a: &MountArgs) -> SysResult<()> {
        let src = a.source.as_deref().map(|s| cpath("mount", s)).transpose()?;
        let target = cpath("mount", &a.target)?;
        let fstype = a
            .fstype
            .as_deref()
            .map(|s| cstr("mount", OsStr::new(s)))
            .transpose()?;
        let data = a
            .data
            .as_deref()
            .map(|s| cstr("mount", OsStr::new(s)))
            .transpose()?;
        // SAFETY: every pointer is a valid NUL-terminated string or null.
        let rc = unsafe {
            libc::mount(
                src.as_ref().map_or(c"none".as_ptr(), |s| s.as_ptr()),
                target.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                a.flags,
                data.as_ref()
                    .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
            )
        };
        check("mount", || a.target.display().to_string(), rc.into()).map(drop)
    }

    fn umount(&self, target: &Path, flags: i32) -> SysResult<()> {
        let t = cpath("umount2", target)?;
        // SAFETY: valid C string.
        let rc = unsafe { libc::umount2(t.as_ptr(), flags) };
        check("umount2", || target.display().to_string(), rc.into()).map(drop)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        let n = cpath("pivot_root", new_root)?;
        let o = cpath("pivot_root", put_old)?;
        // SAFETY: valid C strings.
        let rc = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) };
        check("pivot_root", || new_root.display().to_string(), rc).map(drop)
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        let p = cpath("chdir", path)?;
        // SAFETY: valid C string.
        let rc = unsafe { libc::chdir(p.as_ptr()) };
        check("chdir", || path.display().to_string(), rc.into()).map(drop)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        // SAFETY: pointer and length describe `name`.
        let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
        check("sethostname", || name.to_string(), rc.into()).map(drop)
    }

    fn set_groups(&self, gids: &[u32]) -> SysResult<()> {
        // SAFETY: pointer and length describe `gids`.
        let rc = unsafe { libc::setgroups(gids.len(), gids.as_ptr()) };
        check("setgroups", || format!("{gids:?}"), rc.into()).map(drop)
    }

    fn set_ids(&self, uid: u32, gid: u32) -> SysResult<()> {
        // SAFETY: plain integers.
        let rc = unsafe { libc::setresgid(gid, gid, gid) };
        check("setresgid", || gid.to_string(), rc.into())?;
        // SAFETY: plain integers.
        let rc = unsafe { libc::setresuid(uid, uid, uid) };
        check("setresuid", || uid.to_string(), rc.into()).map(drop)
    }

    fn cap_bound_drop(&self, cap: u8) -> SysResult<()> {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        check("prctl(PR_CAPBSET_DROP)", || cap.to_string(), rc.into()).map(drop)
    }

    fn cap_set(&self, s: CapSets) -> SysResult<()> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let lo = |v: u64| (v & 0xffff_ffff) as u32;
        let hi = |v: u64| (v >> 32) as u32;
        let data = [
            CapData {
                effective: lo(s.effective),
                permitted: lo(s.permitted),
                inheritable: lo(s.inheritable),
            },
            CapData {
                effective: hi(s.effective),
                permitted: hi(s.permitted),
                inheritable: hi(s.inheritable),
            },
        ];
        // SAFETY: header and a two-element data array, as capset v3 expects.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        };
        check("capset", || format!("{:#x}", s.effective), rc).map(drop)
    }

    fn ambient_clear(&self) -> SysResult<()> {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        check("prctl(PR_CAP_AMBIENT)", || "clear".into(), rc.into()).map(drop)
    }

    fn no_new_privs(&self) -> SysResult<()> {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        check("prctl(PR_SET_NO_NEW_PRIVS)", || "1".into(), rc.into()).map(drop)
    }

    fn loopback_up(&self) -> SysResult<()> {
        // SAFETY: socket with constant arguments; the fd is closed below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check("socket", || "AF_INET".into(), sock.into())?;
        // SAFETY: ifreq is plain old data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS.
        let result = unsafe {
            let rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
            if rc < 0 {
                rc
            } else {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                libc::ioctl(sock, libc::SIOCSIFFLAGS, &req)
            }
        };
        let out = check("ioctl(SIOCSIFFLAGS)", || "lo".into(), result.into()).map(drop);
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(sock) };
        out
    }

    fn mkdir(&self, path: &Path, mode: u32) -> SysResult<()> {
        let p = cpath("mkdir", path)?;
        // SAFETY: valid C string.
        let rc = unsafe { libc::mkdir(p.as_ptr(), mode) };
        check("mkdir", || path.display().to_string(), rc.into()).map(drop)
    }

    fn create_file(&self, path: &Path, mode: u32) -> SysResult<()> {
        let p = cpath("open", path)?;
        // SAFETY: valid C string; the fd is closed right away.
        let fd = unsafe {
            libc::open(
                p.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                mode,
            )
        };
        check("open", || path.display().to_string(), fd.into())?;
        // SAFETY: closing the fd opened above.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()> {
        std::os::unix::fs::symlink(target, link)
            .map_err(|e| SysError::new("symlink", link.display().to_string(), e))
    }

    fn stat_kind(&self, path: &Path) -> Option<FileKind> {
        let md = std::fs::symlink_metadata(path).ok()?;
        let ft = md.file_type();
        Some(if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::File
        })
    }

    fn fsopen(&self, fstype: &str) -> SysResult<Fd> {
        let t = cstr("fsopen", OsStr::new(fstype))?;
        // SAFETY: valid C string, constant flags.
        let rc = unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), libc::FSOPEN_CLOEXEC) };
        check("fsopen", || fstype.to_string(), rc).map(|fd| Fd(fd as i32))
    }

    fn fsconfig_string(&self, fd: Fd, key: &str, value: &str) -> SysResult<()> {
        let k = cstr("fsconfig", OsStr::new(key))?;
        let v = cstr("fsconfig", OsStr::new(value))?;
        // SAFETY: valid fd number and C strings.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fd.0,
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        check("fsconfig", || format!("{key}={value}"), rc).map(drop)
    }

    fn fsconfig_flag(&self, fd: Fd, key: &str) -> SysResult<()> {
        let k = cstr("fsconfig", OsStr::new(key))?;
        // SAFETY: valid fd number and C string.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fd.0,
                FSCONFIG_SET_FLAG,
                k.as_ptr(),
                std::ptr::null::<u8>(),
                0,
            )
        };
        check("fsconfig", || key.to_string(), rc).map(drop)
    }

    fn fsconfig_create(&self, fd: Fd) -> SysResult<()> {
        // SAFETY: valid fd number, null key and value as the command requires.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fd.0,
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0,
            )
        };
        check("fsconfig", || "create".into(), rc).map(drop)
    }

    fn fsmount(&self, fd: Fd) -> SysResult<Fd> {
        // SAFETY: valid fd number, constant flags.
        let rc = unsafe { libc::syscall(libc::SYS_fsmount, fd.0, libc::FSMOUNT_CLOEXEC, 0) };
        check("fsmount", || fd.0.to_string(), rc).map(|m| Fd(m as i32))
    }

    fn move_mount(&self, fd: Fd, target: &Path) -> SysResult<()> {
        let t = cpath("move_mount", target)?;
        // SAFETY: valid fd, empty path string and target C string.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd.0,
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        check("move_mount", || target.display().to_string(), rc).map(drop)
    }

    fn close(&self, fd: Fd) {
        // SAFETY: the descriptor came from this trait and is closed once.
        unsafe { libc::close(fd.0) };
    }

    fn umask(&self, mask: u32) {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask) };
    }

    fn execve(&self, path: &Path, argv: &[String], env: &[String]) -> SysError {
        let to_c = |v: &[String]| -> SysResult<Vec<CString>> {
            v.iter().map(|s| cstr("execve", OsStr::new(s))).collect()
        };
        let (p, a, e) = match (cpath("execve", path), to_c(argv), to_c(env)) {
            (Ok(p), Ok(a), Ok(e)) => (p, a, e),
            (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => return err,
        };
        let mut aptr: Vec<*const libc::c_char> = a.iter().map(|s| s.as_ptr()).collect();
        aptr.push(std::ptr::null());
        let mut eptr: Vec<*const libc::c_char> = e.iter().map(|s| s.as_ptr()).collect();
        eptr.push(std::ptr::null());
        // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
        unsafe { libc::execve(p.as_ptr(), aptr.as_ptr(), eptr.as_ptr()) };
        SysError::new(
            "execve",
            path.display().to_string(),
            io::Error::last_os_error(),
        )
    }
}

/// A [`Syscall`] that performs nothing and records every call, for unit tests.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: Mutex<Vec<Call>>,
    failures: Mutex<BTreeMap<String, i32>>,
    failures_once: Mutex<BTreeMap<String, i32>>,
    kinds: Mutex<BTreeMap<PathBuf, FileKind>>,
    next_fd: Mutex<i32>,
}

impl RecordingSyscall {
    /// A recorder where every call succeeds and every path is missing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make every later call named `call` (e.g. `"fsopen"`, `"fsconfig:lowerdir+"`) fail with `errno`.
    pub fn fail(&self, call: &str, errno: i32) {
        self.failures
            .lock()
            .expect("recorder lock is never poisoned")
            .insert(call.to_string(), errno);
    }

    /// Make only the next call named `call` fail with `errno`; later ones succeed again.
    pub fn fail_once(&self, call: &str, errno: i32) {
        self.failures_once
            .lock()
            .expect("recorder lock is never poisoned")
            .insert(call.to_string(), errno);
    }

    /// Pretend that `path` exists with the given kind.
    pub fn set_kind(&self, path: impl Into<PathBuf>, kind: FileKind) {
        self.kinds
            .lock()
            .expect("recorder lock is never poisoned")
            .insert(path.into(), kind);
    }

    /// The calls recorded so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .expect("recorder lock is never poisoned")
            .clone()
    }

    fn record(&self, name: &'static str, key: &str, call: Call) -> SysResult<()> {
        self.calls
            .lock()
            .expect("recorder lock is never poisoned")
            .push(call);
        let once = {
            let mut once = self
                .failures_once
                .lock()
                .expect("recorder lock is never poisoned");
            once.remove(key).or_else(|| once.remove(name))
        };
        if let Some(errno) = once {
            return Err(SysError::new(
                name,
                key,
                io::Error::from_raw_os_error(errno),
            ));
        }
        let failures = self
            .failures
            .lock()
            .expect("recorder lock is never poisoned");
        match failures.get(key).or_else(|| failures.get(name)) {
            Some(errno) => Err(SysError::new(
                name,
                key,
                io::Error::from_raw_os_error(*errno),
            )),
            None => Ok(()),
        }
    }

    fn fd(&self) -> Fd {
        let mut n = self
            .next_fd
            .lock()
            .expect("recorder lock is never poisoned");
        *n += 1;
        Fd(100 + *n)
    }
}

impl Syscall for RecordingSyscall {
    fn unshare(&self, flags: i32) -> SysResult<()> {
        self.record("unshare", "unshare", Call::Unshare(flags))
    }
    fn mount(&self, args: &MountArgs) -> SysResult<()> {
        self.record("mount", "mount", Call::Mount(args.clone()))
    }
    fn umount(&self, target: &Path, flags: i32) -> SysResult<()> {
        self.record(
            "umount2",
            "umount2",
            Call::Umount(target.to_path_buf(), flags),
        )
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        self.record(
            "pivot_root",
            "pivot_root",
            Call::PivotRoot(new_root.into(), put_old.into()),
        )
    }
    fn chdir(&self, path: &Path) -> SysResult<()> {
        self.record("chdir", "chdir", Call::Chdir(path.into()))
    }
    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.record("sethostname", "sethostname", Call::Sethostname(name.into()))
    }
    fn set_groups(&self, gids: &[u32]) -> SysResult<()> {
        self.record("setgroups", "setgroups", Call::Setgroups(gids.to_vec()))
    }
    fn set_ids(&self, uid: u32, gid: u32) -> SysResult<()> {
        self.record("setresuid", "setresuid", Call::SetIds { uid, gid })
    }
    fn cap_bound_drop(&self, cap: u8) -> SysResult<()> {
        self.record("capbset_drop", "capbset_drop", Call::CapBoundDrop(cap))
    }
    fn cap_set(&self, sets: CapSets) -> SysResult<()> {
        self.record("capset", "capset", Call::Capset(sets))
    }
    fn ambient_clear(&self) -> SysResult<()> {
        self.record("ambient_clear", "ambient_clear", Call::AmbientClear)
    }
    fn no_new_privs(&self) -> SysResult<()> {
        self.record("no_new_privs", "no_new_privs", Call::NoNewPrivs)
    }
    fn loopback_up(&self) -> SysResult<()> {
        self.record("loopback_up", "loopback_up", Call::LoopbackUp)
    }
    fn mkdir(&self, path: &Path, mode: u32) -> SysResult<()> {
        self.record("mkdir", "mkdir", Call::Mkdir(path.into(), mode))
    }
    fn create_file(&self, path: &Path, mode: u32) -> SysResult<()> {
        self.record(
            "create_file",
            "create_file",
            Call::CreateFile(path.into(), mode),
        )
    }
    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()> {
        self.record(
            "symlink",
            "symlink",
            Call::Symlink(target.into(), link.into()),
        )
    }
    fn stat_kind(&self, path: &Path) -> Option<FileKind> {
        self.kinds
            .lock()
            .expect("recorder lock is never poisoned")
            .get(path)
            .copied()
    }
    fn fsopen(&self, fstype: &str) -> SysResult<Fd> {
        self.record("fsopen", "fsopen", Call::Fsopen(fstype.into()))
            .map(|()| self.fd())
    }
    fn fsconfig_string(&self, _fd: Fd, key: &str, value: &str) -> SysResult<()> {
        let k = format!("fsconfig:{key}");
        self.record(
            "fsconfig",
            &k,
            Call::FsconfigString(key.into(), value.into()),
        )
    }
    fn fsconfig_flag(&self, _fd: Fd, key: &str) -> SysResult<()> {
        let k = format!("fsconfig:{key}");
        self.record("fsconfig", &k, Call::FsconfigFlag(key.into()))
    }
    fn fsconfig_create(&self, _fd: Fd) -> SysResult<()> {
        self.record("fsconfig", "fsconfig:create", Call::FsconfigCreate)
    }
    fn fsmount(&self, _fd: Fd) -> SysResult<Fd> {
        self.record("fsmount", "fsmount", Call::Fsmount)
            .map(|()| self.fd())
    }
    fn move_mount(&self, _fd: Fd, target: &Path) -> SysResult<()> {
        self.record("move_mount", "move_mount", Call::MoveMount(target.into()))
    }
    fn close(&self, fd: Fd) {
        self.calls
            .lock()
            .expect("recorder lock is never poisoned")
            .push(Call::Close(fd.0));
    }
    fn umask(&self, mask: u32) {
        self.calls
            .lock()
            .expect("recorder lock is never poisoned")
            .push(Call::Umask(mask));
    }
    fn execve(&self, path: &Path, argv: &[String], _env: &[String]) -> SysError {
        let _ = self.record("execve", "execve", Call::Execve(path.into(), argv.to_vec()));
        SysError::new(
            "execve",
            path.display().to_string(),
            io::Error::other("recorded, not executed"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_keeps_order_and_injects_failures() {
        let sys = RecordingSyscall::new();
        sys.fail("fsconfig:lowerdir+", libc::EINVAL);
        sys.unshare(libc::CLONE_NEWNS).expect("recorded");
        let fd = sys.fsopen("overlay").expect("recorded");
        let err = sys
            .fsconfig_string(fd, "lowerdir+", "/a")
            .expect_err("injected");
        assert_eq!(err.errno(), Some(libc::EINVAL));
        sys.fsconfig_string(fd, "upperdir", "/u")
            .expect("other keys succeed");
        assert_eq!(
            sys.calls(),
            vec![
                Call::Unshare(libc::CLONE_NEWNS),
                Call::Fsopen("overlay".into()),
                Call::FsconfigString("lowerdir+".into(), "/a".into()),
                Call::FsconfigString("upperdir".into(), "/u".into()),
            ]
        );
    }

    #[test]
    fn sys_error_message_names_call_and_argument() {
        let e = SysError::new(
            "mount",
            "/x/proc",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert!(e.to_string().starts_with("mount /x/proc: "), "{e}");
    }

    #[test]
    fn real_stat_kind_distinguishes_kinds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("f", &l).expect("symlink");
        let sys = LinuxSyscall;
        for (p, want) in [
            (dir.path().to_path_buf(), Some(FileKind::Dir)),
            (f, Some(FileKind::File)),
            (l, Some(FileKind::Symlink)),
            (dir.path().join("missing"), None),
        ] {
            assert_eq!(sys.stat_kind(&p), want, "{}", p.display());
        }
    }
}
