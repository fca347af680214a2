//! RUN: execute one step's command in a snapshot of its parent and capture the changes.
//!
//! [`run_step`] follows BuildKit's exec op with the Dockerfile front-end's conventions:
//!
//! 1. a [`Snapshot`] is prepared over the parent's unpacked layers (overlayfs, or a copied tree
//!    where overlayfs cannot be mounted);
//! 2. the command line is built: exec form as written; shell form as `SHELL… script`; a
//!    heredoc script starting with `#!` (BuildKit's `RUN <<EOF` with a shebang) is written to a
//!    0755 file bound read-only into the container and run as `SHELL… /path`, so the kernel
//!    honours its interpreter line (several heredocs on one line arrive as one shell script,
//!    already reassembled by the front-end);
//! 3. the environment is the op's (image ENV and ARGs in scope), then the proxy variables,
//!    then mount-provided ones (`env=` secrets, `SSH_AUTH_SOCK`); `PATH` defaults to BuildKit's
//!    `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` and `HOME` to the user's
//!    home from `/etc/passwd` (or `/`), as runc does;
//! 4. `USER` is resolved against the snapshot's `/etc/passwd` and `/etc/group`
//!    ([`crate::ops::users`]); a missing working directory is created 0755 and owned by that
//!    user (BuildKit's `MkdirAllAndChown`), and stays in the layer;
//! 5. mounts are prepared ([`crate::ops::mounts`]); stubs for secret files, ssh sockets and the
//!    heredoc script are created by us and removed after the run (parents' times restored), so
//!    they never reach the layer, while directories created for other mount targets stay, as
//!    the executor leaves them;
//! 6. whatever the executor, a program the host cannot execute (built for another platform,
//!    no emulator registered) fails the step before it starts, with both platforms named
//!    ([`crate::exec::foreign::guarded`]);
//! 7. output streams to the sink and, in full, to the step's log file; a non-zero exit becomes
//!    [`RunError::Exit`] with the command, the code and the last lines of output;
//! 8. after success the changes are read: overlay → the upper directory (directories that were
//!    only copied up, e.g. `/etc` for the sandbox's `/etc/hosts` stub, are dropped first when
//!    their metadata still equals the lower one's, as BuildKit's overlay differ skips them),
//!    copy → the two-tree diff of base and merged trees.
//!
//! The [`RunOutput`] keeps the snapshot alive because its [`Changes`] read file contents from
//! it; dropping the output (or [`RunOutput::release`]) unmounts and removes everything. On
//! failure or cancellation nothing is left: no mount, no temp directory.
//!
//! Scratch space lives in the store, so overlay upper dirs share the layers' file system:
//!
//! ```text
//! <store>/run-v1/
//! ├── rbuild-snapshot-XXXXXX/   one step's snapshot (see `crate::snapshot`)
//! ├── rbuild-mounts-XXXXXX/     read-write bind copies, tmpfs and secret mount points
//! └── rbuild-heredoc-XXXXXX/    a `#!` heredoc script
//! ```
//!
//! Known deviations: BuildKit binds the heredoc script under `/dev/pipes/`; the sandbox owns
//! `/dev`, so it is bound at [`HEREDOC_DIR`] instead. As in BuildKit, output a command prints
//! is not scrubbed of secret values; secrets reach neither the layer nor the cache key, and
//! rbuild itself never writes them to the log.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_layers::diff::{tree_changes, Changes, DiffError};
use rbuild_layers::whiteout::overlay_changes;

use crate::events::LogStream;
use crate::exec::sandbox::rootfs::{
    clean_path, is_below, secure_join, RootfsError, StubKind, StubRole, Stubs,
};
use crate::exec::{Cancellation, ExecError, Executor, OutputSink, PreparedMount, RunRequest};
use crate::graph::{Command, IdSpec, RunOp, UserSpec};
use crate::ops::mounts::{prepare_mounts, MountError, MountSources};
use crate::ops::users::{resolve_user, ResolvedUser, UserError};
use crate::snapshot::copy::{set_times, times_of, xattr_names};
use crate::snapshot::{Snapshot, SnapshotError, SnapshotKind, SnapshotMode, SnapshotOptions};

/// BuildKit's default `PATH` for Linux containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a `#!` heredoc script is bound in the container.
pub const HEREDOC_DIR: &str = "/run/rbuild-pipes";

/// The store subdirectory holding per-step scratch directories (snapshots, mount copies).
pub const RUN_SCRATCH_DIR: &str = "run-v1";

/// How many trailing output lines a failure carries.
pub const TAIL_LINES: usize = 10;

/// Longest partial line kept for the failure tail.
const MAX_LINE: usize = 4096;

/// Everything one RUN step needs (the solver's side of the contract).
pub struct RunInputs<'a> {
    /// The step.
    pub op: &'a RunOp,
    /// Unpacked parent layers, bottom first (may be empty).
    pub lowers: &'a [PathBuf],
    /// Index into `op.mounts` → materialized source root for bind/cache `from`.
    pub mount_sources: &'a BTreeMap<usize, PathBuf>,
    /// The main build context, for bind mounts from the context.
    pub context_dir: Option<&'a Path>,
    /// The store root (cache mounts and scratch directories live under it).
    pub store_root: &'a Path,
    /// Secret id → bytes (never logged, cached or layered).
    pub secrets: &'a BTreeMap<String, Vec<u8>>,
    /// The forwarded ssh agent socket.
    pub ssh_agent: Option<&'a Path>,
    /// The executor that runs the command.
    pub executor: &'a dyn Executor,
    /// Where output streams.
    pub sink: &'a dyn OutputSink,
    /// Cancellation flag.
    pub cancel: &'a Cancellation,
    /// The container's host name.
    pub hostname: &'a str,
    /// The step's full log file, if wanted.
    pub log_path: Option<&'a Path>,
}

/// Options of [`run_step_with`] that the solver normally leaves at their defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Overlay (with copy fallback), overlay only, or copy.
    pub snapshot_mode: SnapshotMode,
}

/// A successful step: its changes, readable while the output lives.
pub struct RunOutput {
    /// The layer's entries (possibly empty); file contents are read from the snapshot.
    pub changes: Changes,
    snapshot: Option<Snapshot>,
    kind: SnapshotKind,
}

impl std::fmt::Debug for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOutput")
            .field("changes", &self.changes.len())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl RunOutput {
    /// How the step's root filesystem was made.
    pub fn snapshot_kind(&self) -> SnapshotKind {
        self.kind
    }

    /// Unmount and remove the snapshot now, reporting failures (drop does it silently).
    pub fn release(mut self) -> Result<(), RunError> {
        match self.snapshot.take() {
            Some(s) => Ok(s.release()?),
            None => Ok(()),
        }
    }
}

/// A RUN step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The command exited with a non-zero code.
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    Exit {
        /// The command line, space-joined as BuildKit prints it.
        command: String,
        /// The exit code.
        code: i32,
        /// The last lines of output.
        tail: Vec<String>,
    },
    /// The command was killed by a signal.
    #[error("process \"{command}\" did not complete successfully: killed by signal {signal}")]
    Signalled {
        /// The command line.
        command: String,
        /// The signal number.
        signal: i32,
        /// The last lines of output.
        tail: Vec<String>,
    },
    /// The container could not be set up or the command could not start.
    #[error("cannot run \"{command}\": {reason}")]
    Setup {
        /// The command line.
        command: String,
        /// What failed.
        reason: String,
        /// The last lines of output.
        tail: Vec<String>,
    },
    /// The step was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// An exec-form command with no words.
    #[error("empty command")]
    EmptyCommand,
    /// `USER` could not be resolved.
    #[error(transparent)]
    User(#[from] UserError),
    /// A mount could not be prepared.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The snapshot could not be prepared or released.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The changes could not be read.
    #[error("read changes: {0}")]
    Changes(#[from] DiffError),
    /// A path inside the root filesystem could not be prepared.
    #[error("prepare {path}: {source}")]
    Rootfs {
        /// The container path.
        path: String,
        /// The cause.
        #[source]
        source: RootfsError,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The command's exit code, when it ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            RunError::Exit { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The last lines of the command's output, when it ran.
    pub fn output_tail(&self) -> &[String] {
        match self {
            RunError::Exit { tail, .. }
            | RunError::Signalled { tail, .. }
            | RunError::Setup { tail, .. } => tail,
            _ => &[],
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Run one RUN step with the default options (overlay snapshot, copy fallback).
pub fn run_step(inputs: &RunInputs<'_>) -> Result<RunOutput, RunError> {
    run_step_with(inputs, &RunOptions::default())
}

/// Run one RUN step.
pub fn run_step_with(inputs: &RunInputs<'_>, options: &RunOptions) -> Result<RunOutput, RunError> {
    if inputs.cancel.is_cancelled() {
        return Err(RunError::Cancelled);
    }
    let op = inputs.op;
    let scratch_parent = inputs.store_root.join(RUN_SCRATCH_DIR);
    fs::create_dir_all(&scratch_parent).map_err(io_err("mkdir", &scratch_parent))?;
    let snapshot = Snapshot::prepare(
        inputs.lowers,
        &SnapshotOptions {
            parent: scratch_parent.clone(),
            mode: options.snapshot_mode,
        },
    )?;
    let rootfs = snapshot.merged().to_path_buf();

    let user = match &op.user {
        Some(spec) => resolve_user(Some(&rootfs), spec)?,
        None => ResolvedUser::root(),
    };
    let sources = MountSources {
        mount_sources: inputs.mount_sources,
        context_dir: inputs.context_dir,
        store_root: inputs.store_root,
        secrets: inputs.secrets,
        ssh_agent: inputs.ssh_agent,
        cancel: inputs.cancel,
    };
    let mut prepared = match prepare_mounts(&op.mounts, &sources, &scratch_parent) {
        Ok(p) => p,
        Err(MountError::Cancelled { .. }) => return Err(RunError::Cancelled),
        Err(e) => return Err(e.into()),
    };

    // The heredoc script, if any, lives in its own temp dir for the step's duration.
    let mut script_dir: Option<tempfile::TempDir> = None;
    let argv = match &op.command {
        Command::Exec(v) => v.clone(),
        Command::Shell { shell, script } => shell.iter().cloned().chain([script.clone()]).collect(),
        Command::HeredocScript { shell, content } => {
            let dir = tempfile::Builder::new()
                .prefix("rbuild-heredoc-")
                .tempdir_in(&scratch_parent)
                .map_err(io_err("create temp dir in", &scratch_parent))?;
            let file = dir.path().join("script");
            fs::write(&file, content.as_bytes()).map_err(io_err("write", &file))?;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &file))?;
            let target = format!("{HEREDOC_DIR}/script");
            prepared.mounts.push(PreparedMount {
                source: file,
                target: target.clone(),
                readonly: true,
            });
            prepared.hidden.push(crate::ops::mounts::HiddenTarget {
                path: target.clone(),
                is_dir: false,
            });
            script_dir = Some(dir);
            shell.iter().cloned().chain([target]).collect()
        }
    };
    if argv.is_empty() {
        return Err(RunError::EmptyCommand);
    }
    let command = argv.join(" ");

    let env = build_env(op, &prepared.env, &rootfs, &user);
    let cwd = clean_path(&op.workdir);
    let targets: Vec<String> = prepared
        .mounts
        .iter()
        .map(|m| clean_path(&m.target))
        .collect();

    // Stubs we own: hidden mount targets (removed after the run) and the working directory
    // (kept, owned by the user).
    let mut hidden_stubs = Stubs::new(&rootfs);
    for (i, t) in targets.iter().enumerate() {
        let is_hidden = prepared.hidden.iter().any(|h| clean_path(&h.path) == *t);
        let nested = targets[..i].iter().any(|o| is_below(t, o));
        if is_hidden && !nested {
            hidden_stubs
                .ensure(t, StubKind::File, StubRole::Sandbox)
                .map_err(|source| RunError::Rootfs {
                    path: t.clone(),
                    source,
                })?;
        }
    }
    let cwd_in_mount = targets.iter().any(|t| *t == cwd || is_below(&cwd, t));
    if !cwd_in_mount {
        make_workdir(&rootfs, &cwd, &user)?;
    }

    let output = StepOutput::new(inputs.sink, inputs.log_path)?;
    let request = RunRequest {
        rootfs: &rootfs,
        argv: &argv,
        env: &env,
        uid: user.uid,
        gid: user.gid,
        additional_gids: &user.additional_gids,
        cwd: &cwd,
        network: op.network,
        security: op.security,
        mounts: &prepared.mounts,
        hostname: inputs.hostname,
    };
    // Checked once for every executor: a program the host cannot execute fails with the
    // platforms named, before anything starts.
    let result = crate::exec::foreign::guarded(&request, || {
        inputs.executor.run(&request, &output, inputs.cancel)
    });
    hidden_stubs.clean();
    drop(script_dir);
    let tail = output.finish();
    match result {
        Ok(()) => {}
        Err(ExecError::ExitCode { code, .. }) => {
            return Err(RunError::Exit {
                command,
                code,
                tail,
            })
        }
        Err(ExecError::Signalled { signal, .. }) => {
            return Err(RunError::Signalled {
                command,
                signal,
                tail,
            })
        }
        Err(ExecError::Setup { reason, .. }) => {
            return Err(RunError::Setup {
                command,
                reason,
                tail,
            })
        }
        Err(_) => return Err(RunError::Cancelled),
    }
    prepared.release()?;

    let changes = match (snapshot.upper(), snapshot.base()) {
        (Some(upper), _) => {
            prune_copied_up_dirs(&upper, inputs.lowers)?;
            overlay_changes(&upper)?
        }
        (None, Some(base)) => tree_changes(&base, &rootfs)?,
        (None, None) => Changes::default(),
    };
    Ok(RunOutput {
        changes,
        kind: snapshot.kind(),
        snapshot: Some(snapshot),
    })
}

/// The step's environment: op env, proxies, mount variables; then PATH and HOME defaults.
fn build_env(
    op: &RunOp,
    extra: &[(String, String)],
    rootfs: &Path,
    user: &ResolvedUser,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    for (k, v) in op.env.iter().chain(&op.proxy_env).chain(extra) {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        let home = user.home.clone().or_else(|| {
            let by_uid = UserSpec {
                user: IdSpec::Id(user.uid),
                group: None,
            };
            resolve_user(Some(rootfs), &by_uid)
                .ok()
                .and_then(|u| u.home)
        });
        let home = home.filter(|h| !h.is_empty()).unwrap_or_else(|| "/".into());
        env.push(("HOME".into(), home));
    }
    env
}

/// Create the working directory's missing components, 0755 and owned by the user.
fn make_workdir(rootfs: &Path, cwd: &str, user: &ResolvedUser) -> Result<(), RunError> {
    let mut stubs = Stubs::new(rootfs);
    let rootfs_err = |source| RunError::Rootfs {
        path: cwd.to_string(),
        source,
    };
    stubs
        .ensure(cwd, StubKind::Dir, StubRole::Workdir)
        .map_err(rootfs_err)?;
    for created in stubs.created() {
        let host = secure_join(rootfs, &created.path).map_err(rootfs_err)?;
        std::os::unix::fs::lchown(&host, Some(user.uid), Some(user.gid))
            .map_err(io_err("chown", &host))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &host))?;
    }
    Ok(())
}

/// Output of one step: forwarded to the sink, kept in full in the log file, and the recent
/// part kept for a failure's tail.
struct StepOutput<'a> {
    sink: &'a dyn OutputSink,
    log: Mutex<Option<fs::File>>,
    tail: Mutex<Tail>,
}

/// The last complete lines of output; each stream has its own partial line, so lines of
/// stdout and stderr never splice into each other.
#[derive(Default)]
struct Tail {
    lines: std::collections::VecDeque<String>,
    partial: BTreeMap<u8, Vec<u8>>,
}

impl Tail {
    fn push_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.lines
            .push_back(String::from_utf8_lossy(line).into_owned());
        while self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
    }

    fn add(&mut self, stream: u8, bytes: &[u8]) {
        let mut buf = self.partial.remove(&stream).unwrap_or_default();
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            self.push_line(&buf[start..start + pos]);
            start += pos + 1;
        }
        let mut rest = buf.split_off(start);
        // A runaway line without newline is cut, keeping its end.
        if rest.len() > MAX_LINE {
            rest.drain(..rest.len() - MAX_LINE);
        }
        self.partial.insert(stream, rest);
    }

    fn finish(mut self) -> Vec<String> {
        for (_, rest) in std::mem::take(&mut self.partial) {
            if !rest.is_empty() {
                self.push_line(&rest);
            }
        }
        self.lines.into_iter().collect()
    }
}

impl<'a> StepOutput<'a> {
    fn new(sink: &'a dyn OutputSink, log_path: Option<&Path>) -> Result<Self, RunError> {
        let log = match log_path {
            Some(p) => {
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
                }
                Some(fs::File::create(p).map_err(io_err("create", p))?)
            }
            None => None,
        };
        Ok(StepOutput {
            sink,
            log: Mutex::new(log),
            tail: Mutex::new(Tail::default()),
        })
    }

    /// The last [`TAIL_LINES`] lines of output.
    fn finish(&self) -> Vec<String> {
        if let Ok(mut log) = self.log.lock() {
            if let Some(f) = log.as_mut() {
                let _ = f.flush();
            }
        }
        self.tail
            .lock()
            .map(|mut t| std::mem::take(&mut *t).finish())
            .unwrap_or_default()
    }
}

impl OutputSink for StepOutput<'_> {
    fn write(&self, stream: LogStream, bytes: &[u8]) {
        self.sink.write(stream, bytes);
        if let Ok(mut log) = self.log.lock() {
            if let Some(f) = log.as_mut() {
                // A log write failure must not fail the step; the sink still has the output.
                let _ = f.write_all(bytes);
            }
        }
        if let Ok(mut tail) = self.tail.lock() {
            let id = match stream {
                LogStream::Stdout => 1,
                LogStream::Stderr => 2,
                LogStream::Builder => 0,
            };
            tail.add(id, bytes);
        }
    }
}

/// Remove directories of an overlay upper dir that were only copied up: empty, not opaque,
/// and with the same mode, owner, times and attributes as the directory they shadow in the
/// lower layers (bottom-up, so a parent emptied this way goes too). This is what BuildKit's
/// overlay differ skips (`sameDirent`); parents of real changes stay.
pub fn prune_copied_up_dirs(upper: &Path, lowers: &[PathBuf]) -> Result<(), RunError> {
    prune_dir(upper, Path::new(""), lowers)?;
    Ok(())
}

/// Returns true when `upper/rel` was removed.
fn prune_dir(upper: &Path, rel: &Path, lowers: &[PathBuf]) -> Result<bool, RunError> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("read directory", &dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    let mut remaining = names.len();
    // Removing a child moves this directory's times; they are put back so the layer shows
    // the directory as the command left it.
    let times = fs::symlink_metadata(&dir).map_err(io_err("stat", &dir))?;
    for name in names {
        let child_rel = rel.join(&name);
        let child = upper.join(&child_rel);
        let Ok(md) = fs::symlink_metadata(&child) else {
            continue;
        };
        if md.is_dir() && prune_dir(upper, &child_rel, lowers)? {
            remaining -= 1;
            restore_times(&dir, &times)?;
        }
    }
    if rel.as_os_str().is_empty() || remaining > 0 {
        return Ok(false);
    }
    if get_xattr(&dir, "trusted.overlay.opaque").is_some_and(|v| v == b"y") {
        return Ok(false);
    }
    let Some(lower) = lower_dir(rel, lowers) else {
        return Ok(false);
    };
    let (Ok(a), Ok(b)) = (fs::symlink_metadata(&dir), fs::symlink_metadata(&lower)) else {
        return Ok(false);
    };
    let same = a.mode() == b.mode()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && user_xattrs(&dir) == user_xattrs(&lower);
    if same {
        fs::remove_dir(&dir).map_err(io_err("remove", &dir))?;
    }
    Ok(same)
}

/// Put back a directory's access and modification times (nanosecond precision).
fn restore_times(path: &Path, md: &fs::Metadata) -> Result<(), RunError> {
    let c = cpath(path).ok_or_else(|| RunError::Io {
        op: "encode",
        path: path.to_path_buf(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    set_times(&c, times_of(md)).map_err(io_err("restore times of", path))
}

/// The directory `rel` shadows in the lower layers (topmost first), if it is one.
fn lower_dir(rel: &Path, lowers: &[PathBuf]) -> Option<PathBuf> {
    for lower in lowers.iter().rev() {
        let p = lower.join(rel);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => return Some(p),
            // A whiteout or a non-directory hides everything below.
            Ok(_) => return None,
            Err(_) => {}
        }
    }
    None
}

fn cpath(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c = cpath(path)?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

/// Name → value of every attribute but overlayfs' own, sorted.
fn user_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    for name in xattr_names(path) {
        let text = String::from_utf8_lossy(&name);
        if rbuild_layers::whiteout::is_overlay_xattr(&text) {
            continue;
        }
        let value = get_xattr(path, &text);
        out.insert(name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{NetworkMode, SecurityMode};

    fn op(env: &[(&str, &str)], proxy: &[(&str, &str)]) -> RunOp {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        RunOp {
            command: Command::Exec(vec!["true".into()]),
            env: pairs(env),
            proxy_env: pairs(proxy),
            user: None,
            workdir: "/".into(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: vec![],
        }
    }

    #[test]
    fn env_table() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("etc")).expect("mkdir");
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("write");
        let root_user = ResolvedUser::root();
        let app = ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
            home: Some("/home/app".into()),
        };
        let stranger = ResolvedUser {
            uid: 4242,
            ..ResolvedUser::root()
        };
        let s = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        type Case<'a> = (
            &'static str,
            RunOp,
            Vec<(String, String)>,
            &'a ResolvedUser,
            Vec<(String, String)>,
        );
        let cases: Vec<Case> = vec![
            (
                "defaults added",
                op(&[("A", "1")], &[]),
                vec![],
                &root_user,
                s(&[("A", "1"), ("PATH", DEFAULT_PATH), ("HOME", "/root")]),
            ),
            (
                "proxies and mount vars after, later wins",
                op(&[("PATH", "/bin"), ("A", "1")], &[("HTTP_PROXY", "p")]),
                s(&[("A", "2"), ("TOKEN", "t")]),
                &app,
                s(&[
                    ("PATH", "/bin"),
                    ("A", "2"),
                    ("HTTP_PROXY", "p"),
                    ("TOKEN", "t"),
                    ("HOME", "/home/app"),
                ]),
            ),
            (
                "unknown uid gets /",
                op(&[("HOME", "/h")], &[]),
                vec![],
                &stranger,
                s(&[("HOME", "/h"), ("PATH", DEFAULT_PATH)]),
            ),
            (
                "unknown uid without HOME",
                op(&[], &[]),
                vec![],
                &stranger,
                s(&[("PATH", DEFAULT_PATH), ("HOME", "/")]),
            ),
        ];
        for (name, op, extra, user, want) in cases {
            assert_eq!(build_env(&op, &extra, root.path(), user), want, "{name}");
        }
    }

    #[test]
    fn tail_keeps_last_complete_lines_per_stream() {
        type Case = (&'static str, Vec<(u8, &'static [u8])>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            ("empty", vec![], vec![]),
            ("no newline", vec![(1, b"partial")], vec!["partial"]),
            (
                "streams never splice",
                vec![(1, b"out "), (2, b"err\n"), (1, b"line\r\n")],
                vec!["err", "out line"],
            ),
            (
                "only the last ten",
                vec![(1, b"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n")],
                vec!["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"],
            ),
        ];
        for (name, writes, want) in cases {
            let mut t = Tail::default();
            for (stream, bytes) in writes {
                t.add(stream, bytes);
            }
            assert_eq!(t.finish(), want, "{name}");
        }
    }

    /// What an executor was asked to run.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        ids: (u32, u32, Vec<u32>),
        cwd: String,
        mounts: Vec<(String, bool)>,
        script: Option<String>,
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Seen>>);

    impl Executor for Recorder {
        fn run(
            &self,
            r: &RunRequest<'_>,
            output: &dyn OutputSink,
            _cancel: &Cancellation,
        ) -> Result<(), ExecError> {
            let script = r
                .mounts
                .iter()
                .find(|m| m.target.starts_with(HEREDOC_DIR))
                .and_then(|m| fs::read_to_string(&m.source).ok());
            self.0.lock().expect("not poisoned").push(Seen {
                argv: r.argv.to_vec(),
                env: r.env.to_vec(),
                ids: (r.uid, r.gid, r.additional_gids.to_vec()),
                cwd: r.cwd.to_string(),
                mounts: r
                    .mounts
                    .iter()
                    .map(|m| (m.target.clone(), m.readonly))
                    .collect(),
                script,
            });
            output.write(LogStream::Stdout, b"ran\n");
            if r.argv.last().is_some_and(|a| a == "fail") {
                return Err(ExecError::ExitCode {
                    argv: r.argv.to_vec(),
                    code: 7,
                });
            }
            Ok(())
        }
    }

    struct Null;
    impl OutputSink for Null {
        fn write(&self, _: LogStream, _: &[u8]) {}
    }

    #[test]
    fn request_table() {
        let t = tempfile::tempdir().expect("tempdir");
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("etc")).expect("mkdir");
        fs::write(
            lower.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("write");
        fs::write(lower.join("etc/group"), "staff:x:50:app\n").expect("write");
        let store = t.path().join("store");
        let sh = |s: &str| Command::Shell {
            shell: vec!["/bin/sh".into(), "-c".into()],
            script: s.into(),
        };
        let path = ("PATH".to_string(), DEFAULT_PATH.to_string());
        let home = |h: &str| ("HOME".to_string(), h.to_string());
        let base = op(&[], &[]);
        let cases: Vec<(&str, RunOp, Seen)> = vec![
            (
                "shell form wraps the script",
                RunOp {
                    command: sh("echo hi"),
                    ..base.clone()
                },
                Seen {
                    argv: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
                    env: vec![path.clone(), home("/root")],
                    ids: (0, 0, vec![]),
                    cwd: "/".into(),
                    mounts: vec![],
                    script: None,
                },
            ),
            (
                "exec form as is, user by name, cwd cleaned",
                RunOp {
                    command: Command::Exec(vec!["/bin/true".into(), "x y".into()]),
                    user: UserSpec::parse("app"),
                    workdir: "/srv/./app/".into(),
                    ..base.clone()
                },
                Seen {
                    argv: vec!["/bin/true".into(), "x y".into()],
                    env: vec![path.clone(), home("/home/app")],
                    ids: (1000, 1000, vec![50]),
                    cwd: "/srv/app".into(),
                    mounts: vec![],
                    script: None,
                },
            ),
            (
                "heredoc script is bound read-only and run by the shell",
                RunOp {
                    command: Command::HeredocScript {
                        shell: vec!["/bin/sh".into(), "-c".into()],
                        content: "#!/bin/sh\necho hi\n".into(),
                    },
                    ..base.clone()
                },
                Seen {
                    argv: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        format!("{HEREDOC_DIR}/script"),
                    ],
                    env: vec![path.clone(), home("/root")],
                    ids: (0, 0, vec![]),
                    cwd: "/".into(),
                    mounts: vec![(format!("{HEREDOC_DIR}/script"), true)],
                    script: Some("#!/bin/sh\necho hi\n".into()),
                },
            ),
        ];
        let (sources, secrets) = (BTreeMap::new(), BTreeMap::new());
        // One copy-snapshot run of `op` on `lower`, seen by the recording executor.
        let run = |op: &RunOp, rec: &Recorder| {
            let cancel = Cancellation::new();
            let inputs = RunInputs {
                op,
                lowers: std::slice::from_ref(&lower),
                mount_sources: &sources,
                context_dir: None,
                store_root: &store,
                secrets: &secrets,
                ssh_agent: None,
                executor: rec,
                sink: &Null,
                cancel: &cancel,
                hostname: "h",
                log_path: None,
            };
            let opts = RunOptions {
                snapshot_mode: SnapshotMode::Copy,
            };
            run_step_with(&inputs, &opts)
        };
        for (name, op, want) in cases {
            let rec = Recorder::default();
            let out = run(&op, &rec).expect(name);
            let seen = rec.0.lock().expect("not poisoned").clone();
            assert_eq!(seen, vec![want], "{name}");
            drop(out);
            assert_eq!(
                fs::read_dir(store.join(RUN_SCRATCH_DIR))
                    .expect("scratch")
                    .count(),
                0,
                "{name}: nothing left"
            );
        }
        // A failing command: exit code, command and tail.
        let op = RunOp {
            command: sh("fail"),
            ..base
        };
        let rec = Recorder::default();
        let err = run(&op, &rec).expect_err("fails");
        assert_eq!(
            err.to_string(),
            "process \"/bin/sh -c fail\" did not complete successfully: exit code: 7"
        );
        assert_eq!(err.exit_code(), Some(7));
        assert_eq!(err.output_tail(), ["ran".to_string()]);
    }

    #[test]
    fn prune_drops_only_unchanged_empty_copy_ups() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        for d in ["etc", "var/lib", "usr/sub"] {
            fs::create_dir_all(lower.join(d)).expect("mkdir");
            fs::create_dir_all(upper.join(d)).expect("mkdir");
        }
        fs::create_dir_all(upper.join("new")).expect("mkdir");
        fs::write(upper.join("usr/file"), b"x").expect("write");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for d in ["etc", "var/lib", "var", "usr/sub", "usr"] {
            for root in [&lower, &upper] {
                fs::File::open(root.join(d))
                    .expect("open")
                    .set_modified(old)
                    .expect("mtime");
            }
        }
        // A real change of a directory's mode keeps it.
        fs::create_dir_all(lower.join("tmp")).expect("mkdir");
        fs::create_dir_all(upper.join("tmp")).expect("mkdir");
        fs::set_permissions(upper.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
        prune_copied_up_dirs(&upper, &[lower]).expect("prune");
        let mut left: Vec<String> = walkdir(&upper);
        left.sort();
        assert_eq!(left, ["new", "tmp", "usr", "usr/file"]);
        let usr = fs::metadata(upper.join("usr")).expect("stat");
        assert_eq!(
            usr.modified().expect("mtime"),
            old,
            "kept parent keeps its times"
        );
    }

    fn walkdir(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read") {
                let p = e.expect("entry").path();
                out.push(p.strip_prefix(root).expect("under").display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out
    }
}
