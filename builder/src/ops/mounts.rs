//! `RUN --mount`: turning a step's typed mounts into host paths the executor binds in.
//!
//! Each [`crate::graph::RunMount`] becomes at most one [`PreparedMount`] (a host path bound at
//! the target), plus environment variables where BuildKit sets them. Follows BuildKit's
//! `dockerfile2llb/convert_runmount.go` and the solver's mount manager:
//!
//! - `type=bind`: a path of the build context or of another step's / image's root filesystem
//!   (resolved inside it, never escaping it), read-only unless `rw`; with `rw` the container
//!   writes to a private copy that is thrown away after the step;
//! - `type=cache`: a persistent directory under `<store>/cache-mounts-v1/`, one per cache id
//!   (the id defaults to the target), created on first use with `mode`/`uid`/`gid` (0755, 0:0
//!   by default) and seeded from `from`/`source` when given. `sharing=shared` takes a shared
//!   lock on the directory, `locked` an exclusive one (writers wait), `private` an exclusive
//!   lock on the first instance that is free, creating a new instance when all are busy;
//! - `type=tmpfs`: a fresh tmpfs (`size=` honoured), unmounted after the step;
//! - `type=secret`: the secret's bytes in a file on a private tmpfs (never on disk), with the
//!   mount's `mode` (0400 by default), uid and gid; `env=` also exposes it as a variable; a
//!   missing secret is an error with `required` and skips the mount otherwise;
//! - `type=ssh`: the forwarded agent socket at the target, with `SSH_AUTH_SOCK` pointing at
//!   the first one; a missing agent is an error with `required`.
//!
//! Cache directories are laid out as:
//!
//! ```text
//! <store>/cache-mounts-v1/
//! └── <sha256 of the cache id>/
//!     ├── 0.lock   flock(2) of instance 0 (shared or exclusive, per sharing mode)
//!     ├── 0/       instance 0: what the container sees
//!     ├── 1.lock   further instances, made by `sharing=private` when 0 is busy
//!     └── 1/
//! ```
//!
//! Everything a step prepares (tmpfs mounts, copies, locks) is owned by [`PreparedMounts`] and
//! released when it is dropped. Secret values never appear in errors, keys or logs.
//!
//! Known deviations from BuildKit: a bind from the main context sees the context directory
//! itself (files excluded by `.dockerignore` are visible); the ssh socket is the host's agent
//! socket, so `uid`/`gid`/`mode` of an ssh mount are not applied and only the `default` id is
//! available; a cache seeded with `from` is keyed by its id alone.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::exec::sandbox::rootfs::{secure_join, RootfsError};
use crate::exec::sys::{LinuxSyscall, MountArgs, SysError, Syscall};
use crate::exec::{Cancellation, PreparedMount};
use crate::graph::{CacheSharing, FsInput, MountKind, MountPerms, RunMount};

/// The store subdirectory holding cache mounts.
pub const CACHE_MOUNTS_DIR: &str = "cache-mounts-v1";

/// Default mode of a newly created cache directory.
const CACHE_DEFAULT_MODE: u32 = 0o755;

/// Default mode of a secret file.
const SECRET_DEFAULT_MODE: u32 = 0o400;

/// A mount could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// A bind mount reads the build context but the build has none.
    #[error("mount {target}: bind mount from the build context, but there is no context")]
    NoContext {
        /// The mount target.
        target: String,
    },
    /// The solver did not materialize the filesystem a mount reads.
    #[error("mount {target}: the source filesystem ({from}) was not provided")]
    MissingSource {
        /// The mount target.
        target: String,
        /// Which input it reads.
        from: String,
    },
    /// The mount's `source` path does not exist in its filesystem.
    #[error("mount {target}: source {source_path} not found")]
    SourceNotFound {
        /// The mount target.
        target: String,
        /// The `source=` path.
        source_path: String,
    },
    /// A required secret was not provided.
    #[error("secret {id} not found (required by mount {target})")]
    SecretMissing {
        /// The secret id.
        id: String,
        /// The mount target (or `env=` name).
        target: String,
    },
    /// A required ssh agent was not provided.
    #[error("no ssh agent {id} forwarded (required by mount {target}); use --ssh {id}")]
    SshMissing {
        /// The agent id.
        id: String,
        /// The mount target.
        target: String,
    },
    /// A mount target is not an absolute path.
    #[error("mount target {target} must be an absolute path")]
    RelativeTarget {
        /// The target as written.
        target: String,
    },
    /// A path could not be resolved inside a root.
    #[error("mount {target}: {source}")]
    Resolve {
        /// The mount target.
        target: String,
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
    /// Copying a tree for a read-write bind or a cache seed failed.
    #[error("mount {target}: {source}")]
    Copy {
        /// The mount target.
        target: String,
        /// The cause.
        #[source]
        source: crate::snapshot::copy::CopyError,
    },
    /// Mounting a tmpfs failed.
    #[error("mount {target}: {source}")]
    Tmpfs {
        /// The mount target.
        target: String,
        /// The failing call.
        #[source]
        source: SysError,
    },
    /// The build was cancelled while waiting for a cache lock.
    #[error("cancelled while waiting for cache mount {id}")]
    Cancelled {
        /// The cache id.
        id: String,
    },
}

type Result<T> = std::result::Result<T, MountError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> MountError + 'a {
    move |source| MountError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where mount sources come from (the solver's side of the contract).
#[derive(Clone, Copy)]
pub struct MountSources<'a> {
    /// Index into the op's mounts → materialized root of its `from` input.
    pub mount_sources: &'a BTreeMap<usize, PathBuf>,
    /// The main build context, for binds without `from`.
    pub context_dir: Option<&'a Path>,
    /// The store root; cache mounts live under `<store_root>/cache-mounts-v1/`.
    pub store_root: &'a Path,
    /// Secret id → bytes.
    pub secrets: &'a BTreeMap<String, Vec<u8>>,
    /// The forwarded ssh agent socket (`--ssh default`).
    pub ssh_agent: Option<&'a Path>,
    /// Checked while waiting for cache locks.
    pub cancel: &'a Cancellation,
}

/// A file or directory the executor must not leave in the root filesystem after the run: a
/// stub for a secret file or an ssh socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenTarget {
    /// The container path.
    pub path: String,
    /// True for a directory stub, false for a file stub.
    pub is_dir: bool,
}

/// The mounts of one step, ready for the executor; dropping it releases everything.
pub struct PreparedMounts {
    /// Mounts in op order (skipped optional secrets and env-only secrets leave no entry).
    pub mounts: Vec<PreparedMount>,
    /// Variables to add to the environment (`env=` secrets, `SSH_AUTH_SOCK`).
    pub env: Vec<(String, String)>,
    /// Targets whose stubs must not stay in the layer (secrets, ssh sockets).
    pub hidden: Vec<HiddenTarget>,
    // Field order is drop order: unmount and unlock before the scratch directory goes.
    guards: Vec<Guard>,
    scratch: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for PreparedMounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMounts")
            .field("mounts", &self.mounts)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

impl PreparedMounts {
    /// Release everything now (drop does the same, silently).
    pub fn release(mut self) -> Result<()> {
        let mut first = None;
        while let Some(g) = self.guards.pop() {
            if let Err(e) = g.release() {
                first.get_or_insert(e);
            }
        }
        if let Some(scratch) = self.scratch.take() {
            let path = scratch.path().to_path_buf();
            if let Err(e) = scratch.close() {
                first.get_or_insert(MountError::Io {
                    op: "remove",
                    path,
                    source: e,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn scratch_dir(&mut self, parent: &Path) -> Result<PathBuf> {
        if self.scratch.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("rbuild-mounts-")
                .tempdir_in(parent)
                .map_err(io_err("create temp dir in", parent))?;
            self.scratch = Some(dir);
        }
        Ok(self
            .scratch
            .as_ref()
            .expect("created above")
            .path()
            .to_path_buf())
    }
}

impl Drop for PreparedMounts {
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            let _ = g.release();
        }
    }
}

/// Something to undo when the step is over.
enum Guard {
    /// A tmpfs mounted at this host path.
    Tmpfs(PathBuf),
    /// A held flock on a cache instance (released when the file closes).
    Lock(fs::File),
}

impl Guard {
    fn release(self) -> Result<()> {
        match self {
            Guard::Tmpfs(path) => unmount(&path),
            Guard::Lock(file) => {
                drop(file);
                Ok(())
            }
        }
    }
}

fn unmount(path: &Path) -> Result<()> {
    let sys = LinuxSyscall;
    match sys.umount(path, 0) {
        Err(e) if e.errno() == Some(libc::EBUSY) => sys.umount(path, libc::MNT_DETACH),
        other => other,
    }
    .map_err(|source| MountError::Tmpfs {
        target: path.display().to_string(),
        source,
    })
}

fn mount_tmpfs(at: &Path, size: Option<u64>, mode: Option<u32>, target: &str) -> Result<()> {
    let mut data = Vec::new();
    if let Some(size) = size {
        data.push(format!("size={size}"));
    }
    if let Some(mode) = mode {
        data.push(format!("mode={mode:o}"));
    }
    LinuxSyscall
        .mount(&MountArgs {
            source: Some(PathBuf::from("tmpfs")),
            target: at.to_path_buf(),
            fstype: Some("tmpfs".into()),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: (!data.is_empty()).then(|| data.join(",")),
        })
        .map_err(|source| MountError::Tmpfs {
            target: target.to_string(),
            source,
        })
}

/// The directory name of a cache id: hex sha256, so any id is a safe single path component.
pub fn cache_key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The root of a mount's `from` input (or the context for binds without `from`).
fn input_root<'a>(
    index: usize,
    mount: &RunMount,
    from: &FsInput,
    sources: &MountSources<'a>,
) -> Result<PathBuf> {
    if let Some(p) = sources.mount_sources.get(&index) {
        return Ok(p.clone());
    }
    match from {
        FsInput::Context(name) if name.is_main() => sources
            .context_dir
            .map(Path::to_path_buf)
            .ok_or_else(|| MountError::NoContext {
                target: mount.target.clone(),
            }),
        FsInput::Context(name) => Err(MountError::MissingSource {
            target: mount.target.clone(),
            from: name.to_string(),
        }),
        FsInput::Step(id) => Err(MountError::MissingSource {
            target: mount.target.clone(),
            from: format!("step {}", id.0),
        }),
        FsInput::Image(r) => Err(MountError::MissingSource {
            target: mount.target.clone(),
            from: r.to_string(),
        }),
    }
}

/// `source` resolved inside `root`; it must exist.
fn resolve_source(root: &Path, source: &str, target: &str) -> Result<PathBuf> {
    let path = secure_join(root, source).map_err(|e| MountError::Resolve {
        target: target.to_string(),
        source: e,
    })?;
    if fs::symlink_metadata(&path).is_err() {
        return Err(MountError::SourceNotFound {
            target: target.to_string(),
            source_path: source.to_string(),
        });
    }
    Ok(path)
}

/// Copy a file or directory to `dest` (which must not exist), keeping metadata.
fn copy_any(from: &Path, dest: &Path, target: &str) -> Result<()> {
    let md = fs::metadata(from).map_err(io_err("stat", from))?;
    if md.is_dir() {
        fs::create_dir(dest).map_err(io_err("mkdir", dest))?;
        crate::snapshot::copy::copy_tree(from, dest).map_err(|source| MountError::Copy {
            target: target.to_string(),
            source,
        })
    } else {
        fs::copy(from, dest).map_err(io_err("copy to", dest))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(md.permissions().mode()))
            .map_err(io_err("chmod", dest))
    }
}

/// Prepare every mount of a step, in order.
pub fn prepare_mounts(
    mounts: &[RunMount],
    sources: &MountSources<'_>,
    scratch_parent: &Path,
) -> Result<PreparedMounts> {
    let mut out = PreparedMounts {
        mounts: Vec::new(),
        env: Vec::new(),
        hidden: Vec::new(),
        guards: Vec::new(),
        scratch: None,
    };
    let mut secrets_dir: Option<PathBuf> = None;
    let mut ssh_set = false;
    for (i, mount) in mounts.iter().enumerate() {
        let target = mount.target.as_str();
        let env_only =
            matches!(&mount.kind, MountKind::Secret { env: Some(_), .. }) && target.is_empty();
        if !env_only && !target.starts_with('/') {
            return Err(MountError::RelativeTarget {
                target: target.to_string(),
            });
        }
        match &mount.kind {
            MountKind::Bind {
                from,
                source,
                readwrite,
            } => {
                let root = input_root(i, mount, from, sources)?;
                let path = resolve_source(&root, source, target)?;
                let path = if *readwrite {
                    let dest = out.scratch_dir(scratch_parent)?.join(format!("bind-{i}"));
                    copy_any(&path, &dest, target)?;
                    dest
                } else {
                    path
                };
                out.mounts.push(PreparedMount {
                    source: path,
                    target: target.to_string(),
                    readonly: !*readwrite,
                });
            }
            MountKind::Cache {
                id,
                from,
                source,
                sharing,
                readonly,
                perms,
            } => {
                let seed = match from {
                    Some(from) => {
                        let root = input_root(i, mount, from, sources)?;
                        Some(resolve_source(&root, source, target)?)
                    }
                    None => None,
                };
                let (dir, lock) =
                    open_cache(sources, id, *sharing, *perms, seed.as_deref(), target)?;
                out.guards.push(Guard::Lock(lock));
                out.mounts.push(PreparedMount {
                    source: dir,
                    target: target.to_string(),
                    readonly: *readonly,
                });
            }
            MountKind::Tmpfs { size } => {
                let at = out.scratch_dir(scratch_parent)?.join(format!("tmpfs-{i}"));
                fs::create_dir(&at).map_err(io_err("mkdir", &at))?;
                mount_tmpfs(&at, *size, None, target)?;
                out.guards.push(Guard::Tmpfs(at.clone()));
                out.mounts.push(PreparedMount {
                    source: at,
                    target: target.to_string(),
                    readonly: false,
                });
            }
            MountKind::Secret {
                id,
                required,
                env,
                perms,
            } => {
                let Some(bytes) = sources.secrets.get(id) else {
                    if *required {
                        return Err(MountError::SecretMissing {
                            id: id.clone(),
                            target: if target.is_empty() {
                                env.clone().unwrap_or_default()
                            } else {
                                target.to_string()
                            },
                        });
                    }
                    continue;
                };
                if let Some(name) = env {
                    out.env
                        .push((name.clone(), String::from_utf8_lossy(bytes).into_owned()));
                }
                if target.is_empty() {
                    continue;
                }
                let dir = match &secrets_dir {
                    Some(d) => d.clone(),
                    None => {
                        let d = out.scratch_dir(scratch_parent)?.join("secrets");
                        fs::create_dir(&d).map_err(io_err("mkdir", &d))?;
                        mount_tmpfs(&d, None, Some(0o700), target)?;
                        out.guards.push(Guard::Tmpfs(d.clone()));
                        secrets_dir = Some(d.clone());
                        d
                    }
                };
                let file = dir.join(format!("secret-{i}"));
                write_secret(&file, bytes, perms)?;
                out.hidden.push(HiddenTarget {
                    path: target.to_string(),
                    is_dir: false,
                });
                out.mounts.push(PreparedMount {
                    source: file,
                    target: target.to_string(),
                    readonly: true,
                });
            }
            MountKind::Ssh { id, required, .. } => {
                let agent = sources.ssh_agent.filter(|_| id == "default");
                let Some(agent) = agent else {
                    if *required {
                        return Err(MountError::SshMissing {
                            id: id.clone(),
                            target: target.to_string(),
                        });
                    }
                    continue;
                };
                if !ssh_set {
                    out.env.push(("SSH_AUTH_SOCK".into(), target.to_string()));
                    ssh_set = true;
                }
                out.hidden.push(HiddenTarget {
                    path: target.to_string(),
                    is_dir: false,
                });
                out.mounts.push(PreparedMount {
                    source: agent.to_path_buf(),
                    target: target.to_string(),
                    readonly: false,
                });
            }
        }
    }
    Ok(out)
}

fn write_secret(file: &Path, bytes: &[u8], perms: &MountPerms) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(io_err("create", file))?;
    f.write_all(bytes).map_err(io_err("write", file))?;
    drop(f);
    std::os::unix::fs::chown(
        file,
        Some(perms.uid.unwrap_or(0)),
        Some(perms.gid.unwrap_or(0)),
    )
    .map_err(io_err("chown", file))?;
    fs::set_permissions(
        file,
        fs::Permissions::from_mode(perms.mode.unwrap_or(SECRET_DEFAULT_MODE) & 0o7777),
    )
    .map_err(io_err("chmod", file))
}

/// Lock and, if needed, create a cache instance; returns its directory and the held lock.
fn open_cache(
    sources: &MountSources<'_>,
    id: &str,
    sharing: CacheSharing,
    perms: MountPerms,
    seed: Option<&Path>,
    target: &str,
) -> Result<(PathBuf, fs::File)> {
    let base = sources
        .store_root
        .join(CACHE_MOUNTS_DIR)
        .join(cache_key(id));
    fs::create_dir_all(&base).map_err(io_err("mkdir", &base))?;
    let mut n = 0usize;
    let lock = loop {
        let lock_path = base.join(format!("{n}.lock"));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let acquired = match sharing {
            CacheSharing::Shared => flock_wait(&file, libc::LOCK_SH, sources.cancel, id)?,
            CacheSharing::Locked => flock_wait(&file, libc::LOCK_EX, sources.cancel, id)?,
            CacheSharing::Private => {
                try_flock(&file, libc::LOCK_EX).map_err(io_err("lock", &lock_path))?
            }
        };
        if acquired {
            break file;
        }
        n += 1;
    };
    let dir = base.join(n.to_string());
    if !dir.exists() {
        create_cache_dir(&base, &dir, perms, seed, target)?;
    }
    Ok((dir, lock))
}

/// Create a cache instance atomically: build it under a temporary name, then rename.
fn create_cache_dir(
    base: &Path,
    dir: &Path,
    perms: MountPerms,
    seed: Option<&Path>,
    target: &str,
) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("new-")
        .tempdir_in(base)
        .map_err(io_err("create temp dir in", base))?;
    let staged = tmp.path().join("d");
    match seed {
        Some(seed) => copy_any(seed, &staged, target)?,
        None => fs::create_dir(&staged).map_err(io_err("mkdir", &staged))?,
    }
    std::os::unix::fs::lchown(
        &staged,
        Some(perms.uid.unwrap_or(0)),
        Some(perms.gid.unwrap_or(0)),
    )
    .map_err(io_err("chown", &staged))?;
    let mode = match (perms.mode, seed) {
        (Some(m), _) => Some(m),
        (None, None) => Some(CACHE_DEFAULT_MODE),
        (None, Some(_)) => None,
    };
    if let Some(mode) = mode {
        fs::set_permissions(&staged, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io_err("chmod", &staged))?;
    }
    match fs::rename(&staged, dir) {
        Ok(()) => Ok(()),
        // A concurrent shared user created it first; theirs wins.
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(MountError::Io {
            op: "rename to",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

fn try_flock(file: &fs::File, op: libc::c_int) -> std::io::Result<bool> {
    // SAFETY: flock on an open descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Wait for a lock, polling so a cancelled build stops waiting.
fn flock_wait(file: &fs::File, op: libc::c_int, cancel: &Cancellation, id: &str) -> Result<bool> {
    let mut delay = std::time::Duration::from_millis(1);
    loop {
        match try_flock(file, op) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(source) => {
                return Err(MountError::Io {
                    op: "lock cache",
                    path: PathBuf::from(id),
                    source,
                })
            }
        }
        if cancel.is_cancelled() {
            return Err(MountError::Cancelled { id: id.to_string() });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ContextName;
    use std::os::unix::fs::MetadataExt;

    struct Env {
        _dir: tempfile::TempDir,
        store: PathBuf,
        context: PathBuf,
        scratch: PathBuf,
        secrets: BTreeMap<String, Vec<u8>>,
        sources: BTreeMap<usize, PathBuf>,
        cancel: Cancellation,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let context = dir.path().join("ctx");
        let scratch = dir.path().join("scratch");
        for d in [&store, &context, &scratch] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::create_dir_all(context.join("sub")).expect("mkdir");
        fs::write(context.join("sub/f"), b"ctx").expect("write");
        let mut secrets = BTreeMap::new();
        secrets.insert("tok".to_string(), b"s3cret".to_vec());
        Env {
            _dir: dir,
            store,
            context,
            scratch,
            secrets,
            sources: BTreeMap::new(),
            cancel: Cancellation::new(),
        }
    }

    impl Env {
        fn sources(&self) -> MountSources<'_> {
            MountSources {
                mount_sources: &self.sources,
                context_dir: Some(&self.context),
                store_root: &self.store,
                secrets: &self.secrets,
                ssh_agent: None,
                cancel: &self.cancel,
            }
        }
    }

    fn bind(target: &str, source: &str, rw: bool) -> RunMount {
        RunMount {
            target: target.into(),
            kind: MountKind::Bind {
                from: FsInput::Context(ContextName::main()),
                source: source.into(),
                readwrite: rw,
            },
        }
    }

    fn cache(target: &str, id: &str, sharing: CacheSharing, perms: MountPerms) -> RunMount {
        RunMount {
            target: target.into(),
            kind: MountKind::Cache {
                id: id.into(),
                from: None,
                source: "/".into(),
                sharing,
                readonly: false,
                perms,
            },
        }
    }

    fn secret(target: &str, id: &str, required: bool, env: Option<&str>) -> RunMount {
        RunMount {
            target: target.into(),
            kind: MountKind::Secret {
                id: id.into(),
                required,
                env: env.map(String::from),
                perms: MountPerms {
                    mode: Some(0o400),
                    uid: Some(1000),
                    gid: None,
                },
            },
        }
    }

    #[test]
    fn bind_mounts_ro_and_rw_copy() {
        let e = env();
        let p = prepare_mounts(
            &[bind("/ro", "/sub", false), bind("/rw", "sub", true)],
            &e.sources(),
            &e.scratch,
        )
        .expect("prepared");
        assert_eq!(p.mounts[0].source, e.context.join("sub"));
        assert!(p.mounts[0].readonly);
        assert!(!p.mounts[1].readonly);
        assert_ne!(p.mounts[1].source, e.context.join("sub"), "rw gets a copy");
        fs::write(p.mounts[1].source.join("f"), b"changed").expect("write copy");
        assert_eq!(fs::read(e.context.join("sub/f")).expect("read"), b"ctx");
        p.release().expect("released");
        assert_eq!(
            fs::read_dir(&e.scratch).expect("read").count(),
            0,
            "copy removed"
        );
    }

    #[test]
    fn errors_table() {
        let e = env();
        let cases: Vec<(&str, RunMount, &str)> = vec![
            (
                "missing bind source",
                bind("/x", "/nope", false),
                "source /nope not found",
            ),
            (
                "relative target",
                bind("x", "/", false),
                "must be an absolute path",
            ),
            (
                "required secret",
                secret("/run/secrets/a", "a", true, None),
                "secret a not found",
            ),
            (
                "bind escaping the context stays inside",
                bind("/x", "../../../../etc/passwd", false),
                "source ../../../../etc/passwd not found",
            ),
            (
                "from a step that was not provided",
                RunMount {
                    target: "/x".into(),
                    kind: MountKind::Bind {
                        from: FsInput::Step(crate::graph::StepId(4)),
                        source: "/".into(),
                        readwrite: false,
                    },
                },
                "was not provided",
            ),
        ];
        for (name, m, want) in cases {
            let err = prepare_mounts(&[m], &e.sources(), &e.scratch).expect_err(name);
            assert!(err.to_string().contains(want), "{name}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{name}");
        }
    }

    #[test]
    fn optional_secret_is_skipped_and_env_secret_sets_variable() {
        let e = env();
        let p = prepare_mounts(
            &[
                secret("/run/secrets/none", "none", false, None),
                secret("", "tok", false, Some("TOKEN")),
            ],
            &e.sources(),
            &e.scratch,
        )
        .expect("prepared");
        assert!(p.mounts.is_empty());
        assert_eq!(p.env, vec![("TOKEN".to_string(), "s3cret".to_string())]);
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "debug never shows values"
        );
    }

    #[test]
    fn secret_file_on_tmpfs_with_perms() {
        let e = env();
        let p = prepare_mounts(
            &[secret("/run/secrets/tok", "tok", true, None)],
            &e.sources(),
            &e.scratch,
        )
        .expect("prepared");
        let m = &p.mounts[0];
        assert!(m.readonly);
        assert_eq!(fs::read(&m.source).expect("read"), b"s3cret");
        let md = fs::metadata(&m.source).expect("stat");
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o400, 1000, 0));
        let dir = m.source.parent().expect("dir").to_path_buf();
        let mounted = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(mounted.contains(dir.to_str().expect("utf-8")), "on a tmpfs");
        assert_eq!(
            p.hidden,
            vec![HiddenTarget {
                path: "/run/secrets/tok".into(),
                is_dir: false
            }]
        );
        drop(p);
        let mounted = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounted.contains(dir.to_str().expect("utf-8")), "unmounted");
        assert!(!dir.exists());
    }

    #[test]
    fn from_sources_feed_binds_and_seed_caches_once() {
        let mut e = env();
        let stage = e._dir.path().join("stage");
        fs::create_dir_all(stage.join("seed/sub")).expect("mkdir");
        fs::write(stage.join("seed/sub/f"), b"seeded").expect("write");
        e.sources.insert(0, stage.clone());
        e.sources.insert(1, stage.clone());
        let from = FsInput::Step(crate::graph::StepId(7));
        let mounts = [
            RunMount {
                target: "/b".into(),
                kind: MountKind::Bind {
                    from: from.clone(),
                    source: "/seed".into(),
                    readwrite: false,
                },
            },
            RunMount {
                target: "/c".into(),
                kind: MountKind::Cache {
                    id: "seeded".into(),
                    from: Some(from),
                    source: "seed".into(),
                    sharing: CacheSharing::Locked,
                    readonly: false,
                    perms: MountPerms::default(),
                },
            },
        ];
        let p = prepare_mounts(&mounts, &e.sources(), &e.scratch).expect("prepared");
        assert_eq!(p.mounts[0].source, stage.join("seed"));
        let cache = p.mounts[1].source.clone();
        assert_eq!(fs::read(cache.join("sub/f")).expect("seed"), b"seeded");
        fs::write(cache.join("sub/f"), b"changed by a run").expect("write");
        drop(p);
        let p = prepare_mounts(&mounts, &e.sources(), &e.scratch).expect("again");
        assert_eq!(
            fs::read(p.mounts[1].source.join("sub/f")).expect("kept"),
            b"changed by a run",
            "an existing cache is never re-seeded"
        );
    }

    #[test]
    fn cache_created_with_perms_and_shared_or_private() {
        let e = env();
        let perms = MountPerms {
            mode: Some(0o700),
            uid: Some(1000),
            gid: Some(50),
        };
        let a = prepare_mounts(
            &[cache("/c", "id1", CacheSharing::Shared, perms)],
            &e.sources(),
            &e.scratch,
        )
        .expect("first");
        let dir = a.mounts[0].source.clone();
        let md = fs::metadata(&dir).expect("stat");
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o700, 1000, 50));
        assert!(dir.starts_with(e.store.join(CACHE_MOUNTS_DIR).join(cache_key("id1"))));
        // A second shared user gets the same directory at once.
        let b = prepare_mounts(
            &[cache(
                "/c",
                "id1",
                CacheSharing::Shared,
                MountPerms::default(),
            )],
            &e.sources(),
            &e.scratch,
        )
        .expect("shared");
        assert_eq!(b.mounts[0].source, dir);
        drop((a, b));
        // Private: while one holds instance 0, the next gets a fresh instance 1.
        let p1 = prepare_mounts(
            &[cache(
                "/c",
                "id2",
                CacheSharing::Private,
                MountPerms::default(),
            )],
            &e.sources(),
            &e.scratch,
        )
        .expect("private 1");
        let p2 = prepare_mounts(
            &[cache(
                "/c",
                "id2",
                CacheSharing::Private,
                MountPerms::default(),
            )],
            &e.sources(),
            &e.scratch,
        )
        .expect("private 2");
        assert_ne!(p1.mounts[0].source, p2.mounts[0].source);
        let md = fs::metadata(&p2.mounts[0].source).expect("stat");
        assert_eq!((md.mode() & 0o7777, md.uid()), (0o755, 0));
        drop(p2);
        // Locked: a waiter gives up when cancelled.
        let held = prepare_mounts(
            &[cache(
                "/c",
                "id3",
                CacheSharing::Locked,
                MountPerms::default(),
            )],
            &e.sources(),
            &e.scratch,
        )
        .expect("locked");
        e.cancel.cancel();
        let err = prepare_mounts(
            &[cache(
                "/c",
                "id3",
                CacheSharing::Locked,
                MountPerms::default(),
            )],
            &e.sources(),
            &e.scratch,
        )
        .expect_err("waits, then cancelled");
        assert!(matches!(err, MountError::Cancelled { .. }), "{err}");
        drop((held, p1));
    }
}
