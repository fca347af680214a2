//! The helper process: the single-threaded re-executed binary that builds the sandbox.
//!
//! A multi-threaded builder must never `fork` and then run arbitrary code, so the executor
//! re-executes a binary (by default `/proc/self/exe`) with the argument [`HELPER_ARG`]; that
//! binary calls [`super::run_helper_if_requested`] first thing in `main`, which lands here. The
//! request arrives as JSON on file descriptor 3 (a socket; the parent shuts its write side
//! down), and the [`HelperResponse`] goes back on the same socket.
//!
//! The helper then, as one fresh single-threaded process:
//! 1. creates missing mount points as stubs (`rootfs::Stubs`) and writes `hosts` and
//!    `resolv.conf` into a temporary directory;
//! 2. unshares PID, IPC, UTS (and NET for `--network=none`) and forks: the child is PID 1 of the
//!    new PID namespace and is killed by the kernel if the helper dies (`PR_SET_PDEATHSIG`);
//! 3. the child unshares the mount namespace, makes every mount private, binds the root onto
//!    itself, applies the mount plan, `pivot_root`s, sets the host name, switches user, drops
//!    capabilities and `exec`s the command (PID 1 of the namespace, as under BuildKit with runc);
//!    a set-up failure goes back to the helper on a close-on-exec pipe;
//! 4. the helper waits for SIGCHLD or for SIGTERM (the parent's cancellation, which kills PID 1
//!    and thereby the whole namespace), reaps, removes its stubs and temporary directory, and
//!    answers. Mounts die with the child's mount namespace; nothing needs unmounting.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::caps::{self, Identity};
use super::mounts::{self, BindMount, PlanInput};
use super::namespaces;
use super::rootfs::{self, CreatedPath, StubKind, StubRole, Stubs};
use crate::exec::sys::{FileKind, LinuxSyscall, MountArgs, Syscall};
use crate::graph::{NetworkMode, SecurityMode};

/// The argument that turns a binary into the sandbox helper.
pub const HELPER_ARG: &str = "--rbuild-sandbox-helper";

/// The file descriptor the request and response travel on.
pub const HELPER_FD: i32 = 3;

/// Default `PATH` when the request's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One mount of the request, as serialized to the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperMount {
    /// Host source.
    pub source: PathBuf,
    /// Container target.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
}

/// The request sent to the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperRequest {
    /// Host path of the root filesystem.
    pub rootfs: PathBuf,
    /// The command.
    pub argv: Vec<String>,
    /// Its environment, in order.
    pub env: Vec<(String, String)>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Working directory in the container.
    pub cwd: String,
    /// Network mode.
    pub network: NetworkMode,
    /// Security mode.
    pub security: SecurityMode,
    /// Mounts, in order.
    pub mounts: Vec<HelperMount>,
    /// Host name.
    pub hostname: String,
    /// Host file copied into the container as `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signalled(i32),
    /// The sandbox could not be set up; the text says what failed.
    SetupFailed(String),
    /// The parent cancelled the run.
    Cancelled,
}

/// The helper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperResponse {
    /// How the command ended.
    pub outcome: Outcome,
    /// Paths created in the root filesystem and whether they were kept.
    pub created: Vec<CreatedPath>,
}

/// Run the helper on the request socket and exit. Never returns.
pub fn helper_main() -> ! {
    // SAFETY: fd 3 was set up by the parent for this process alone.
    let mut sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(HELPER_FD) });
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(HELPER_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let mut buf = Vec::new();
    let response = match sock.read_to_end(&mut buf) {
        Err(e) => failed(format!("read request: {e}")),
        Ok(_) => match serde_json::from_slice::<HelperRequest>(&buf) {
            Err(e) => failed(format!("decode request: {e}")),
            Ok(req) => run(&LinuxSyscall, &req),
        },
    };
    let code = match serde_json::to_vec(&response).map(|bytes| sock.write_all(&bytes)) {
        Ok(Ok(())) => 0,
        _ => 1,
    };
    std::process::exit(code)
}

fn failed(reason: String) -> HelperResponse {
    HelperResponse {
        outcome: Outcome::SetupFailed(reason),
        created: Vec::new(),
    }
}

/// What PID 1 needs after the fork, fully resolved.
struct ChildPlan {
    root: PathBuf,
    steps: Vec<mounts::MountStep>,
    cwd: String,
    hostname: String,
    network: NetworkMode,
    security: SecurityMode,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    bounding: u64,
    argv: Vec<String>,
    env: Vec<String>,
}

/// Prepare the root, resolve every path and build PID 1's plan. Returns the plan with the
/// stubs created, so they can be cleaned even if a later step fails.
fn prepare(req: &HelperRequest, stubs: &mut Stubs, tmp: &Path) -> Result<ChildPlan, String> {
    let root = &req.rootfs;
    let err = |e: rootfs::RootfsError| e.to_string();
    let proc_dir = stubs
        .ensure("/proc", StubKind::Dir, StubRole::Sandbox)
        .map_err(err)?;
    let dev_dir = stubs
        .ensure("/dev", StubKind::Dir, StubRole::Sandbox)
        .map_err(err)?;
    let sys_dir = stubs
        .ensure("/sys", StubKind::Dir, StubRole::Sandbox)
        .map_err(err)?;
    let hosts_target = stubs
        .ensure("/etc/hosts", StubKind::File, StubRole::Sandbox)
        .map_err(err)?;
    let resolv_target = stubs
        .ensure("/etc/resolv.conf", StubKind::File, StubRole::Sandbox)
        .map_err(err)?;

    let hosts_src = tmp.join("hosts");
    std::fs::write(&hosts_src, mounts::hosts_file(&req.hostname))
        .map_err(|e| format!("write {}: {e}", hosts_src.display()))?;
    let host_resolv = std::fs::read_to_string(&req.resolv_conf).unwrap_or_default();
    let resolv_src = tmp.join("resolv.conf");
    std::fs::write(&resolv_src, mounts::resolv_conf(&host_resolv, req.network))
        .map_err(|e| format!("write {}: {e}", resolv_src.display()))?;

    let special = [&proc_dir, &dev_dir, &sys_dir];
    let mut binds: Vec<BindMount> = Vec::new();
    let targets: Vec<String> = req
        .mounts
        .iter()
        .map(|m| rootfs::clean_path(&m.target))
        .collect();
    // A path below an earlier mount belongs in that mount's source, where the container will
    // see it once the mount is in place; anything else is created in the root.
    let place = |stubs: &mut Stubs,
                 binds: &[BindMount],
                 clean: &str,
                 enclosing: Option<usize>,
                 kind: StubKind,
                 role: StubRole|
     -> Result<PathBuf, String> {
        match enclosing {
            None => stubs.ensure(clean, kind, role).map_err(err),
            Some(j) => {
                let outer = &binds[j];
                let mut inner = Stubs::new(&outer.source);
                let resolved = inner
                    .ensure(&clean[targets[j].len()..], kind, role)
                    .map_err(err)?;
                let below = resolved
                    .strip_prefix(&outer.source)
                    .expect("secure_join stays under its root");
                Ok(outer.target.join(below))
            }
        }
    };
    for (i, mount) in req.mounts.iter().enumerate() {
        if ["/proc", "/dev", "/sys"]
            .iter()
            .any(|s| targets[i] == *s || rootfs::is_below(&targets[i], s))
        {
            return Err(format!(
                "mount target {} lies on a sandbox file system",
                mount.target
            ));
        }
        let kind = match LinuxSyscall.stat_kind(&mount.source) {
            Some(FileKind::Dir) => StubKind::Dir,
            Some(_) => StubKind::File,
            None => {
                return Err(format!(
                    "mount source {} does not exist",
                    mount.source.display()
                ))
            }
        };
        let enclosing = rootfs::enclosing_mount(&targets, i);
        let target = place(
            stubs,
            &binds,
            &targets[i],
            enclosing,
            kind,
            StubRole::MountTarget,
        )?;
        if special.iter().any(|s| target.starts_with(s)) {
            return Err(format!(
                "mount target {} resolves onto a sandbox file system",
                mount.target
            ));
        }
        binds.push(BindMount {
            source: mount.source.clone(),
            target,
            readonly: mount.readonly,
        });
    }
    let cwd = rootfs::clean_path(&req.cwd);
    let cwd_enclosing = (0..targets.len())
        .rev()
        .find(|&j| rootfs::is_below(&cwd, &targets[j]));
    if cwd_enclosing.is_some() || !targets.contains(&cwd) {
        place(
            stubs,
            &binds,
            &cwd,
            cwd_enclosing,
            StubKind::Dir,
            StubRole::Workdir,
        )?;
    }

    let steps = mounts::plan(&PlanInput {
        root,
        proc_dir,
        dev_dir,
        sys_dir,
        hosts: (hosts_src, hosts_target),
        resolv: (resolv_src, resolv_target),
        binds,
        security: req.security,
    });
    Ok(ChildPlan {
        root: root.clone(),
        steps,
        cwd: req.cwd.clone(),
        hostname: req.hostname.clone(),
        network: req.network,
        security: req.security,
        uid: req.uid,
        gid: req.gid,
        groups: req.additional_gids.clone(),
        bounding: caps::current_bounding(),
        argv: req.argv.clone(),
        env: with_home(req),
    })
}

/// The environment as `K=V` strings, with `HOME` added when missing: the user's home from the
/// root's `/etc/passwd`, or `/`, as runc does.
fn with_home(req: &HelperRequest) -> Vec<String> {
    let mut env: Vec<String> = req.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !req.env.iter().any(|(k, _)| k == "HOME") {
        let passwd = rootfs::secure_join(&req.rootfs, "/etc/passwd")
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        env.push(format!("HOME={}", home_of(&passwd, req.uid)));
    }
    env
}

/// The home directory of `uid` in a passwd file, or `/` when it has no entry.
pub fn home_of(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[5])
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string()
}

/// Find the program: a name with a slash is used as is, else it is looked up in the
/// container's `PATH` (the request's, or Docker's default), as runc does.
pub fn resolve_program(
    argv0: &str,
    env: &[String],
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(argv0))
        .find(|p| exists(p))
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Everything PID 1 does before `exec`; returns only on failure.
fn child_setup(sys: &dyn Syscall, plan: &ChildPlan) -> String {
    let step = || -> Result<(), String> {
        let e = |what: &str| {
            let what = what.to_string();
            move |err: crate::exec::sys::SysError| format!("{what}: {err}")
        };
        namespaces::enter_child(sys, plan.network).map_err(e("enter namespaces"))?;
        sys.mount(&MountArgs {
            source: None,
            target: PathBuf::from("/"),
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        })
        .map_err(e("make mounts private"))?;
        rootfs::bind_root(sys, &plan.root).map_err(e("bind root"))?;
        mounts::apply(sys, &plan.steps).map_err(e("mount"))?;
        rootfs::pivot(sys, &plan.root).map_err(e("pivot_root"))?;
        sys.chdir(Path::new(&plan.cwd))
            .map_err(e("working directory"))?;
        sys.sethostname(&plan.hostname).map_err(e("hostname"))?;
        let id = Identity {
            uid: plan.uid,
            gid: plan.gid,
            groups: &plan.groups,
        };
        caps::apply(sys, id, plan.security, plan.bounding).map_err(e("identity"))?;
        // Docker's and runc's umask, whatever the builder's own is.
        sys.umask(0o022);
        Ok(())
    };
    if let Err(msg) = step() {
        return msg;
    }
    let Some(argv0) = plan.argv.first() else {
        return "empty command".to_string();
    };
    let Some(program) = resolve_program(argv0, &plan.env, is_executable_file) else {
        return format!("exec: {argv0:?}: executable file not found in $PATH");
    };
    sys.execve(&program, &plan.argv, &plan.env).to_string()
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in signals {
        // SAFETY: valid pointer and signal number.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    set
}

/// The helper's work after the request is decoded.
fn run(sys: &dyn Syscall, req: &HelperRequest) -> HelperResponse {
    let watched = signal_set(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
    // SAFETY: blocking signals in this single-threaded process; the set is valid.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &watched, std::ptr::null_mut()) };

    let tmp = match tempfile::Builder::new().prefix("rbuild-sandbox-").tempdir() {
        Ok(t) => t,
        Err(e) => return failed(format!("create temporary directory: {e}")),
    };
    let mut stubs = Stubs::new(&req.rootfs);
    let outcome = match prepare(req, &mut stubs, tmp.path()) {
        Err(msg) => Outcome::SetupFailed(msg),
        Ok(plan) => match namespaces::enter_helper(sys, req.network) {
            Err(e) => Outcome::SetupFailed(format!("enter namespaces: {e}")),
            Ok(()) => fork_and_wait(sys, &plan, &watched),
        },
    };
    let created = stubs.clean();
    drop(tmp);
    HelperResponse { outcome, created }
}

fn fork_and_wait(sys: &dyn Syscall, plan: &ChildPlan, watched: &libc::sigset_t) -> Outcome {
    let mut fds = [0i32; 2];
    // SAFETY: valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Outcome::SetupFailed(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the helper is single-threaded (a fresh exec that started no threads), so the
    // child may allocate and run ordinary code after the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::SetupFailed(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: closing our copy of the read end; PDEATHSIG ties PID 1 to the helper.
        unsafe {
            libc::close(fds[0]);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            let empty = signal_set(&[]);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        let msg = child_setup(sys, plan);
        // SAFETY: writing the failure to the pipe and leaving without running destructors or
        // atexit handlers that belong to the helper.
        unsafe {
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    // SAFETY: closing the write end we do not use.
    unsafe { libc::close(fds[1]) };
    // SAFETY: we own the read end.
    let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    let mut setup_error = String::new();
    let _ = pipe.read_to_string(&mut setup_error);

    let mut cancelled = false;
    let status = loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            break status;
        }
        if rc < 0 {
            return Outcome::SetupFailed(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: siginfo_t is plain data; sigwaitinfo fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: the watched signals are blocked, as sigwaitinfo requires.
        let sig = unsafe { libc::sigwaitinfo(watched, &mut info) };
        if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGHUP {
            cancelled = true;
            // Killing PID 1 makes the kernel kill every process of the namespace.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    };
    if cancelled {
        Outcome::Cancelled
    } else if !setup_error.is_empty() {
        Outcome::SetupFailed(setup_error)
    } else if libc::WIFEXITED(status) {
        Outcome::Exited(libc::WEXITSTATUS(status))
    } else {
        Outcome::Signalled(libc::WTERMSIG(status))
    }
}

/// Convert a request for the helper; `resolv_conf` names the host file to copy.
pub fn to_helper_request(r: &crate::exec::RunRequest<'_>, resolv_conf: &Path) -> HelperRequest {
    HelperRequest {
        rootfs: r.rootfs.to_path_buf(),
        argv: r.argv.to_vec(),
        env: r.env.to_vec(),
        uid: r.uid,
        gid: r.gid,
        additional_gids: r.additional_gids.to_vec(),
        cwd: r.cwd.to_string(),
        network: r.network,
        security: r.security,
        mounts: r
            .mounts
            .iter()
            .map(|m| HelperMount {
                source: m.source.clone(),
                target: m.target.clone(),
                readonly: m.readonly,
            })
            .collect(),
        hostname: r.hostname.to_string(),
        resolv_conf: resolv_conf.to_path_buf(),
    }
}

/// True when `arg` (the process's first argument) asks for the helper.
pub fn is_helper_arg(arg: &OsStr) -> bool {
    arg == OsStr::new(HELPER_ARG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};

    #[test]
    fn resolve_program_table() {
        let exists = |p: &Path| p == Path::new("/bin/sh") || p == Path::new("/opt/x/tool");
        let path_env = vec!["PATH=/opt/x:/bin".to_string()];
        let cases: &[(&str, &[String], Option<&str>)] = &[
            ("/bin/echo", &[], Some("/bin/echo")),
            ("./run", &[], Some("./run")),
            ("sh", &[], Some("/bin/sh")),
            ("tool", &path_env, Some("/opt/x/tool")),
            ("tool", &[], None),
        ];
        for (argv0, env, want) in cases {
            assert_eq!(
                resolve_program(argv0, env, exists),
                want.map(PathBuf::from),
                "{argv0}"
            );
        }
    }

    #[test]
    fn child_setup_order() {
        let sys = RecordingSyscall::new();
        let plan = ChildPlan {
            root: "/r".into(),
            steps: vec![mounts::MountStep::Mkdir("/r/dev/pts".into())],
            cwd: "/work".into(),
            hostname: "h".into(),
            network: NetworkMode::None,
            security: SecurityMode::Sandbox,
            uid: 0,
            gid: 0,
            groups: vec![],
            bounding: caps::all_mask(40),
            argv: vec!["/bin/true".into()],
            env: vec![],
        };
        let msg = child_setup(&sys, &plan);
        assert!(msg.contains("recorded"), "{msg}");
        let calls = sys.calls();
        let pos = |want: &dyn Fn(&Call) -> bool| calls.iter().position(want).expect("call present");
        let unshare = pos(&|c| *c == Call::Unshare(libc::CLONE_NEWNS));
        let private =
            pos(&|c| matches!(c, Call::Mount(m) if m.flags == libc::MS_REC | libc::MS_PRIVATE));
        let mkdir = pos(&|c| matches!(c, Call::Mkdir(..)));
        let pivot = pos(&|c| matches!(c, Call::PivotRoot(..)));
        let cwd = pos(&|c| *c == Call::Chdir("/work".into()));
        let host = pos(&|c| *c == Call::Sethostname("h".into()));
        let ids = pos(&|c| matches!(c, Call::SetIds { .. }));
        let exec = pos(&|c| matches!(c, Call::Execve(..)));
        let order = [unshare, private, mkdir, pivot, cwd, host, ids, exec];
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }

    fn request(root: &Path, mounts: Vec<HelperMount>, cwd: &str) -> HelperRequest {
        HelperRequest {
            rootfs: root.to_path_buf(),
            argv: vec!["true".into()],
            env: vec![],
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            cwd: cwd.into(),
            network: NetworkMode::None,
            security: SecurityMode::Sandbox,
            mounts,
            hostname: "h".into(),
            resolv_conf: "/nonexistent/resolv.conf".into(),
        }
    }

    #[test]
    fn prepare_table() {
        let src = tempfile::tempdir().expect("tempdir");
        let m = |target: &str| HelperMount {
            source: src.path().to_path_buf(),
            target: target.into(),
            readonly: false,
        };
        // (name, mounts, cwd, error fragment or None, paths kept in the root afterwards)
        type Case<'a> = (
            &'a str,
            Vec<HelperMount>,
            &'a str,
            Option<&'a str>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("plain", vec![], "/", None, vec![]),
            (
                "cwd created and kept",
                vec![],
                "/w/x",
                None,
                vec!["/w", "/w/x"],
            ),
            (
                "mount target kept",
                vec![m("/cache")],
                "/",
                None,
                vec!["/cache"],
            ),
            (
                "cwd is a mount target",
                vec![m("/cache")],
                "/cache",
                None,
                vec!["/cache"],
            ),
            (
                "under proc refused",
                vec![m("/proc/x")],
                "/",
                Some("sandbox file system"),
                vec![],
            ),
            (
                "dev itself refused",
                vec![m("/dev")],
                "/",
                Some("sandbox file system"),
                vec![],
            ),
        ];
        for (name, mounts, cwd, want_err, kept) in cases {
            let root = tempfile::tempdir().expect("tempdir");
            let tmp = tempfile::tempdir().expect("tempdir");
            let mut stubs = Stubs::new(root.path());
            let got = prepare(&request(root.path(), mounts, cwd), &mut stubs, tmp.path());
            match (got, want_err) {
                (Ok(_), None) => {}
                (Err(e), Some(frag)) => assert!(e.contains(frag), "{name}: {e}"),
                (Ok(_), Some(frag)) => panic!("{name}: expected an error with {frag:?}"),
                (Err(e), None) => panic!("{name}: {e}"),
            }
            let report = stubs.clean();
            let still: Vec<&str> = report
                .iter()
                .filter(|c| c.kept)
                .map(|c| c.path.as_str())
                .collect();
            assert_eq!(still, kept, "{name}");
            if want_err.is_none() {
                assert!(
                    tmp.path().join("hosts").is_file(),
                    "{name}: hosts generated"
                );
            }
        }
    }

    #[test]
    fn home_of_table() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nweird\nnobody:x:65534:65534::/nonexistent:/bin/false\nnohome:x:7:7:::\n";
        for (uid, want) in [(0, "/root"), (65534, "/nonexistent"), (7, "/"), (1000, "/")] {
            assert_eq!(home_of(passwd, uid), want, "uid {uid}");
        }
        assert_eq!(home_of("", 0), "/");
    }

    #[test]
    fn request_roundtrips_through_json() {
        let req = HelperRequest {
            rootfs: "/r".into(),
            argv: vec!["echo".into(), "hi".into()],
            env: vec![("A".into(), "1".into())],
            uid: 1,
            gid: 2,
            additional_gids: vec![3],
            cwd: "/".into(),
            network: NetworkMode::None,
            security: SecurityMode::Sandbox,
            mounts: vec![HelperMount {
                source: "/s".into(),
                target: "/t".into(),
                readonly: true,
            }],
            hostname: "h".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        };
        let bytes = serde_json::to_vec(&req).expect("serialize");
        assert_eq!(
            serde_json::from_slice::<HelperRequest>(&bytes).expect("deserialize"),
            req
        );
    }
}
