//! Applying layers to a directory: the layer stack of an image, bottom first, becomes a root file
//! system. Follows Docker's `archive.UnpackLayer` / containerd's `archive.Apply`:
//! - whiteouts (`.wh.NAME`) delete `NAME` with everything below it; an opaque marker
//!   (`.wh..wh..opq`) deletes everything in its directory that this layer did not itself write,
//!   wherever in the layer the marker appears; other `.wh..wh.` names are skipped;
//! - an existing directory is kept when the entry is a directory (metadata updated), anything else
//!   in the way is removed first (a directory recursively), never followed;
//! - owner, mode (after chown, which clears setuid), xattrs and mtime are set on every entry;
//!   directory mtimes are set once the whole layer is written, as children change them;
//! - hard links are re-created with `linkat` to the earlier path.
//!
//! Untrusted input never writes outside the target. Names that are absolute or contain `..` are
//! rejected by the reader. Every parent directory is then opened under the root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (a userspace `O_NOFOLLOW` walk with the same
//! rules where `openat2` is missing), so a symlink planted by an earlier entry or layer may be
//! followed only while it stays inside the root; one that is absolute or climbs above the root
//! makes the entry an [`ExtractError::Escape`] naming it. The final component is always operated on
//! with `*at` calls that do not follow it (`O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`).
//!
//! Deviation: Docker unpacks inside a chroot, where an absolute symlink such as `lib -> /usr/lib`
//! used as a parent resolves inside the root; by default ([`SymlinkPolicy::Beneath`]) it is an
//! escape error here, because an escape attempt in an image layer must be reported, not quietly
//! confined (layers produced by diffing never contain such paths: a diff walk does not traverse
//! symlinks). [`SymlinkPolicy::InRoot`] gives Docker's chroot semantics with
//! `openat2(RESOLVE_IN_ROOT)` (for `ADD archive.tar`-style extraction): still confined, but
//! redirected instead of refused.
//!
//! Overlayfs' own xattrs (`trusted.overlay.*`, `user.overlay.*`) found in a layer are never set.
//! With [`WhiteoutMode::Overlay`] whiteouts are recorded in overlayfs form instead of applied.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::tar::entry::{Entry, EntryKind};
use crate::tar::read::{for_each_entry, ReadError};
use crate::whiteout::{classify, Whiteout};

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// The mechanism resolving parent directories under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolve {
    /// `openat2`, falling back to [`Resolve::Walk`] when the kernel lacks it.
    #[default]
    Kernel,
    /// Always the userspace component-by-component `O_NOFOLLOW` walk (same rules).
    Walk,
}

/// What a symlink met while resolving an entry's parent directories may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkPolicy {
    /// Follow it only while it stays inside the root; an absolute target or a `..` above the root
    /// makes the entry an [`ExtractError::Escape`] (`RESOLVE_BENEATH`). For image layers.
    #[default]
    Beneath,
    /// Chroot semantics, as Docker's `chrootarchive` (and `ADD archive.tar`): an absolute target
    /// starts again at the root and `..` stops at it (`RESOLVE_IN_ROOT`). Never writes outside the
    /// root either, but redirects instead of failing.
    InRoot,
}

/// Options of [`Extractor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Set numeric owners from the layer (needs root or CAP_CHOWN); otherwise leave ours.
    pub same_owner: bool,
    /// How parent paths are resolved.
    pub resolve: Resolve,
    /// What symlinks in parent paths may do.
    pub symlinks: SymlinkPolicy,
    /// What whiteouts do.
    pub whiteouts: WhiteoutMode,
}

/// What whiteout entries turn into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete what they name (unpacking a whole stack into one directory).
    #[default]
    Apply,
    /// Record them the overlayfs way, for a directory used as an overlay `lowerdir` above the
    /// previous layers (containerd's overlay snapshotter): `.wh.NAME` becomes a character device
    /// 0/0 named `NAME`, an opaque marker sets `trusted.overlay.opaque=y` on its directory.
    Overlay,
}

impl Default for ExtractOptions {
    /// Owners restored, kernel resolution, whiteouts applied.
    fn default() -> Self {
        ExtractOptions {
            same_owner: true,
            resolve: Resolve::Kernel,
            symlinks: SymlinkPolicy::Beneath,
            whiteouts: WhiteoutMode::Apply,
        }
    }
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The layer stream is unreadable or names an unsafe path.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The target root could not be opened or created.
    #[error("opening extraction root {path}: {source}")]
    Root {
        /// The root directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The entry would be written outside the root (through a symlink leaving it).
    #[error("entry `{path}` escapes the extraction root: {detail}")]
    Escape {
        /// The entry.
        path: String,
        /// Which path resolved outside and why.
        detail: String,
    },
    /// A parent of the entry exists but is not a directory.
    #[error("entry `{path}`: parent `{parent}` is not a directory")]
    NotADirectory {
        /// The entry.
        path: String,
        /// The offending parent.
        parent: String,
    },
    /// A hard link's target does not exist (or is a directory).
    #[error("entry `{path}`: hard link target `{target}` is missing or not linkable: {source}")]
    HardLink {
        /// The entry.
        path: String,
        /// The target named by the entry.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The entry's owner cannot be set (`-1` is reserved).
    #[error("entry `{path}`: invalid owner {uid}:{gid}")]
    BadOwner {
        /// The entry.
        path: String,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
    },
    /// A file system operation on the entry failed.
    #[error("entry `{path}`: {op}: {source}")]
    Io {
        /// The entry (or directory) concerned.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = ExtractError> = std::result::Result<T, E>;

/// Applies layers, one after the other, to one root directory.
#[derive(Debug)]
pub struct Extractor {
    root: OwnedFd,
    opts: ExtractOptions,
    /// Set once `openat2` reported ENOSYS: use the walk from then on.
    no_openat2: bool,
}

/// What one applied layer contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerSummary {
    /// Entries written (files, directories, links, devices).
    pub written: u64,
    /// Whiteouts applied (deletions and opaque markers).
    pub whiteouts: u64,
}

/// Unpack `layers` (bottom first; plain, gzip or zstd) into `root`, creating it if missing.
pub fn unpack<R: Read>(
    root: &Path,
    layers: impl IntoIterator<Item = R>,
    opts: ExtractOptions,
) -> Result<()> {
    let mut x = Extractor::open(root, opts)?;
    for layer in layers {
        x.apply_layer(layer)?;
    }
    Ok(())
}

/// Per-layer state: what this layer wrote (for opaque markers) and directory times to set last.
#[derive(Default)]
struct LayerState {
    /// Paths this layer wrote, with all their ancestors (an opaque marker keeps these).
    written: BTreeSet<String>,
    /// Directory mtimes to set at the end; a later entry for the same directory wins.
    dir_times: BTreeMap<String, i64>,
    summary: LayerSummary,
}

impl Extractor {
    /// An extractor writing into `root` (created, with parents, if missing).
    pub fn open(root: &Path, opts: ExtractOptions) -> Result<Self> {
        let err = |source: io::Error| ExtractError::Root {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(err)?;
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        Ok(Extractor {
            root: fd,
            opts,
            no_openat2: opts.resolve == Resolve::Walk,
        })
    }

    /// Apply one layer stream (compression detected from its magic bytes).
    pub fn apply_layer<R: Read>(&mut self, layer: R) -> Result<LayerSummary> {
        let mut state = LayerState::default();
        for_each_entry(layer, |entry: &Entry, data: &mut dyn Read| {
            self.apply_entry(&mut state, entry, data)
        })?;
        // Setting a time does not touch the parent, so any order works. A directory deleted or
        // replaced by a non-directory later in the layer is skipped.
        for (path, mtime) in &state.dir_times {
            let (Some(parent), Some(name)) = self.parent_of_entry(path, path, false)? else {
                continue;
            };
            match lstat_type(parent.as_fd(), &name) {
                Ok(Some(FileType::Directory)) => set_times(parent.as_fd(), &name, *mtime)
                    .map_err(|e| io_err(path, "set directory mtime", e))?,
                Ok(_) => {}
                Err(e) => return Err(io_err(path, "lstat", e)),
            }
        }
        Ok(state.summary)
    }

    fn apply_entry(
        &mut self,
        state: &mut LayerState,
        entry: &Entry,
        data: &mut dyn Read,
    ) -> Result<()> {
        match classify(&entry.path) {
            Some(Whiteout::Meta) => return Ok(()),
            Some(Whiteout::Remove { target }) if self.opts.whiteouts == WhiteoutMode::Overlay => {
                state.summary.whiteouts += 1;
                let (parent, name) = self.parent_of_entry(&target, &entry.path, true)?;
                let (Some(parent), Some(name)) = (parent, name) else {
                    return Ok(());
                };
                remove_all(parent.as_fd(), &name)
                    .map_err(|e| io_err(&entry.path, "replace with whiteout", e))?;
                rustix::fs::mknodat(
                    parent.as_fd(),
                    name.as_c_str(),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| io_err(&entry.path, "create overlay whiteout", e.into()))?;
                state.written.insert(target);
                return Ok(());
            }
            Some(Whiteout::Opaque { dir }) if self.opts.whiteouts == WhiteoutMode::Overlay => {
                state.summary.whiteouts += 1;
                let fd = self.ensure_dir(&dir, &entry.path)?;
                let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
                rustix::fs::setxattr(
                    via.as_str(),
                    "trusted.overlay.opaque",
                    b"y",
                    XattrFlags::empty(),
                )
                .map_err(|e| io_err(&entry.path, "mark directory opaque", e.into()))?;
                return Ok(());
            }
            Some(Whiteout::Remove { target }) => {
                state.summary.whiteouts += 1;
                let (parent, name) = self.parent_of_entry(&target, &entry.path, false)?;
                if let Some((parent, name)) = parent.zip(name) {
                    remove_all(parent.as_fd(), &name)
                        .map_err(|e| io_err(&entry.path, "apply whiteout", e))?;
                }
                return Ok(());
            }
            Some(Whiteout::Opaque { dir }) => {
                state.summary.whiteouts += 1;
                return self.apply_opaque(state, &dir, &entry.path);
            }
            None => {}
        }
        if entry.uid == u32::MAX || entry.gid == u32::MAX {
            return Err(ExtractError::BadOwner {
                path: entry.path.clone(),
                uid: entry.uid,
                gid: entry.gid,
            });
        }
        let (parent, name) = self.parent_of_entry(&entry.path, &entry.path, true)?;
        let (Some(parent), Some(name)) = (parent, name) else {
            return Ok(());
        };
        let p = parent.as_fd();
        let existing = lstat_type(p, &name).map_err(|e| io_err(&entry.path, "lstat", e))?;
        match &entry.kind {
            EntryKind::Dir => {
                match existing {
                    Some(FileType::Directory) => {}
                    Some(_) => {
                        remove_all(p, &name)
                            .map_err(|e| io_err(&entry.path, "remove existing", e))?;
                        mkdir(p, &name, &entry.path)?;
                    }
                    None => mkdir(p, &name, &entry.path)?,
                }
                self.set_metadata(p, &name, entry, None)?;
                state.dir_times.insert(entry.path.clone(), entry.mtime);
            }
            EntryKind::HardLink { target } => {
                if target == &entry.path {
                    return Ok(());
                }
                let (tparent, tname) = self.parent_of_entry(target, &entry.path, false)?;
                let link_err = |source: io::Error| ExtractError::HardLink {
                    path: entry.path.clone(),
                    target: target.clone(),
                    source,
                };
                let (Some(tparent), Some(tname)) = (tparent, tname) else {
                    return Err(link_err(io::ErrorKind::NotFound.into()));
                };
                match lstat_type(tparent.as_fd(), &tname).map_err(link_err)? {
                    None => return Err(link_err(io::ErrorKind::NotFound.into())),
                    Some(FileType::Directory) => {
                        return Err(link_err(io::ErrorKind::IsADirectory.into()))
                    }
                    Some(_) => {}
                }
                if existing.is_some() {
                    remove_all(p, &name).map_err(|e| io_err(&entry.path, "remove existing", e))?;
                }
                rustix::fs::linkat(
                    tparent.as_fd(),
                    tname.as_c_str(),
                    p,
                    name.as_c_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| link_err(e.into()))?;
            }
            kind => {
                if existing.is_some() {
                    remove_all(p, &name).map_err(|e| io_err(&entry.path, "remove existing", e))?;
                }
                let file = match kind {
                    EntryKind::File { size } => {
                        let fd = rustix::fs::openat(
                            p,
                            name.as_c_str(),
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o600),
                        )
                        .map_err(|e| io_err(&entry.path, "create file", e.into()))?;
                        let mut f = std::fs::File::from(fd);
                        let copied = io::copy(&mut data.take(*size), &mut f)
                            .map_err(|e| io_err(&entry.path, "write file content", e))?;
                        if copied != *size {
                            return Err(io_err(
                                &entry.path,
                                "write file content",
                                io::ErrorKind::UnexpectedEof.into(),
                            ));
                        }
                        Some(f)
                    }
                    EntryKind::Symlink { target } => {
                        rustix::fs::symlinkat(target.as_str(), p, name.as_c_str())
                            .map_err(|e| io_err(&entry.path, "create symlink", e.into()))?;
                        None
                    }
                    EntryKind::CharDevice { major, minor } => {
                        mknod(
                            p,
                            &name,
                            entry,
                            FileType::CharacterDevice,
                            rustix::fs::makedev(*major, *minor),
                        )?;
                        None
                    }
                    EntryKind::BlockDevice { major, minor } => {
                        mknod(
                            p,
                            &name,
                            entry,
                            FileType::BlockDevice,
                            rustix::fs::makedev(*major, *minor),
                        )?;
                        None
                    }
                    EntryKind::Fifo => {
                        mknod(p, &name, entry, FileType::Fifo, 0)?;
                        None
                    }
                    EntryKind::Dir | EntryKind::HardLink { .. } => None,
                };
                self.set_metadata(p, &name, entry, file.as_ref())?;
                set_times(p, &name, entry.mtime)
                    .map_err(|e| io_err(&entry.path, "set mtime", e))?;
            }
        }
        state.summary.written += 1;
        let mut path = entry.path.as_str();
        while state.written.insert(path.to_string()) {
            match path.rsplit_once('/') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
        Ok(())
    }

    /// Delete every child of `dir` that this layer has not written.
    fn apply_opaque(&mut self, state: &mut LayerState, dir: &str, marker: &str) -> Result<()> {
        let fd = if dir.is_empty() {
            rustix::fs::openat(
                &self.root,
                c".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(marker, "open opaque directory", e.into()))?
        } else {
            let (parent, name) = self.parent_of_entry(dir, marker, false)?;
            let (Some(parent), Some(name)) = (parent, name) else {
                return Ok(());
            };
            match lstat_type(parent.as_fd(), &name).map_err(|e| io_err(marker, "lstat", e))? {
                Some(FileType::Directory) => {}
                _ => return Ok(()),
            }
            rustix::fs::openat(
                parent.as_fd(),
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(marker, "open opaque directory", e.into()))?
        };
        for child in list_dir(fd.as_fd()).map_err(|e| io_err(marker, "list opaque directory", e))? {
            let keep = match child.to_str() {
                Ok(name) => {
                    let path = if dir.is_empty() {
                        name.to_string()
                    } else {
                        format!("{dir}/{name}")
                    };
                    state.written.contains(&path)
                }
                Err(_) => false,
            };
            if !keep {
                remove_all(fd.as_fd(), &child)
                    .map_err(|e| io_err(marker, "clear opaque directory", e))?;
            }
        }
        Ok(())
    }

    /// Chown, chmod and xattrs (mtime is set by the caller, at the right moment).
    fn set_metadata(
        &self,
        p: BorrowedFd<'_>,
        name: &CStr,
        entry: &Entry,
        file: Option<&std::fs::File>,
    ) -> Result<()> {
        let is_symlink = matches!(entry.kind, EntryKind::Symlink { .. });
        if self.opts.same_owner {
            let (uid, gid) = (
                Some(Uid::from_raw(entry.uid)),
                Some(Gid::from_raw(entry.gid)),
            );
            match file {
                Some(f) => rustix::fs::fchown(f, uid, gid),
                None => rustix::fs::chownat(p, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
            }
            .map_err(|e| io_err(&entry.path, "chown", e.into()))?;
        }
        if !is_symlink {
            let mode = Mode::from_raw_mode(entry.mode);
            match file {
                Some(f) => rustix::fs::fchmod(f, mode),
                // `name` was created by us a moment ago and is not a symlink.
                None => rustix::fs::chmodat(p, name, mode, AtFlags::empty()),
            }
            .map_err(|e| io_err(&entry.path, "chmod", e.into()))?;
        }
        for (key, value) in &entry.xattrs {
            if crate::whiteout::is_overlay_xattr(key) {
                // A layer must not smuggle overlayfs metadata (an opaque flag would hide lower
                // layers when this directory is used as an overlay lowerdir).
                continue;
            }
            let res = match file {
                Some(f) => rustix::fs::fsetxattr(f, key.as_str(), value, XattrFlags::empty()),
                None => {
                    // The parent descriptor's /proc link plus a final component that lsetxattr does
                    // not follow: no path string outside our control is resolved.
                    let via = format!("/proc/self/fd/{}/{}", p.as_raw_fd(), name.to_string_lossy());
                    rustix::fs::lsetxattr(via.as_str(), key.as_str(), value, XattrFlags::empty())
                }
            };
            match res {
                Ok(()) => {}
                // As Docker: no xattr support on the target file system is not fatal, nor is a
                // refused `trusted.*`/symlink xattr (unprivileged, or user.* on a symlink).
                Err(Errno::OPNOTSUPP) => {}
                Err(Errno::PERM) if is_symlink || key.starts_with("trusted.") => {}
                Err(e) => return Err(io_err(&entry.path, "set xattr", e.into())),
            }
        }
        Ok(())
    }

    /// The parent directory (created if missing when `create`) and final name of `path`, resolved
    /// safely; errors name `entry`. `None`s when the parent does not exist and `create` is false.
    fn parent_of_entry(
        &mut self,
        path: &str,
        entry: &str,
        create: bool,
    ) -> Result<(Option<OwnedFd>, Option<CString>)> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let name = CString::new(name).map_err(|_| {
            io_err(
                entry,
                "name contains nul",
                io::ErrorKind::InvalidInput.into(),
            )
        })?;
        let fd = if create {
            Some(self.ensure_dir(parent, entry)?)
        } else {
            self.open_dir(parent, entry)?
        };
        Ok((fd, Some(name)))
    }

    /// Open directory `rel` under the root, creating missing components (0755, root-owned).
    fn ensure_dir(&mut self, rel: &str, entry: &str) -> Result<OwnedFd> {
        if let Some(fd) = self.open_dir(rel, entry)? {
            return Ok(fd);
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent_fd = self.ensure_dir(parent, entry)?;
        match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err(entry, "create parent directory", e.into())),
        }
        self.open_dir(rel, entry)?
            .ok_or_else(|| ExtractError::NotADirectory {
                path: entry.to_string(),
                parent: rel.to_string(),
            })
    }

    /// Open directory `rel` under the root; `Ok(None)` when a component does not exist.
    fn open_dir(&mut self, rel: &str, entry: &str) -> Result<Option<OwnedFd>> {
        let path = if rel.is_empty() { "." } else { rel };
        if !self.no_openat2 {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match rustix::fs::openat2(
                &self.root,
                path,
                flags,
                Mode::empty(),
                match self.opts.symlinks {
                    SymlinkPolicy::Beneath => ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                    SymlinkPolicy::InRoot => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                },
            ) {
                Ok(fd) => return Ok(Some(fd)),
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::XDEV) => {
                    return Err(ExtractError::Escape {
                        path: entry.to_string(),
                        detail: format!(
                            "`{rel}` resolves through a symlink pointing outside the root"
                        ),
                    })
                }
                Err(Errno::LOOP) => {
                    return Err(ExtractError::Escape {
                        path: entry.to_string(),
                        detail: format!("`{rel}` has too many levels of symlinks"),
                    })
                }
                Err(Errno::NOTDIR) => {
                    return Err(ExtractError::NotADirectory {
                        path: entry.to_string(),
                        parent: rel.to_string(),
                    })
                }
                Err(Errno::NOSYS) => self.no_openat2 = true,
                Err(e) => return Err(io_err(entry, "open parent directory", e.into())),
            }
        }
        walk(self.root.as_fd(), rel, entry, self.opts.symlinks)
    }
}

/// The userspace resolver: `O_NOFOLLOW` one component at a time, symlinks expanded by hand; an
/// absolute target or a `..` above the root is an escape ([`SymlinkPolicy::Beneath`]) or is
/// clamped to the root ([`SymlinkPolicy::InRoot`]).
fn walk(
    root: BorrowedFd<'_>,
    rel: &str,
    entry: &str,
    policy: SymlinkPolicy,
) -> Result<Option<OwnedFd>> {
    let escape = |detail: String| ExtractError::Escape {
        path: entry.to_string(),
        detail,
    };
    let dup = || {
        rustix::fs::openat(
            root,
            c".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(entry, "open root", e.into()))
    };
    let mut stack: Vec<OwnedFd> = vec![dup()?];
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(String::from)
        .collect();
    let mut links = 0;
    while let Some(component) = todo.pop() {
        if component == ".." {
            match (stack.len(), policy) {
                (1, SymlinkPolicy::Beneath) => {
                    return Err(escape(format!("`{rel}` climbs above the root")))
                }
                (1, SymlinkPolicy::InRoot) => {}
                _ => {
                    stack.pop();
                }
            }
            continue;
        }
        let cur = stack.last().expect("stack always holds the root");
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(cur, component.as_str(), flags, Mode::empty()) {
            Ok(fd) => stack.push(fd),
            Err(Errno::NOENT) => return Ok(None),
            // O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR (or ELOOP): look at the link.
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                let target = match rustix::fs::readlinkat(cur, component.as_str(), Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::INVAL) => {
                        return Err(ExtractError::NotADirectory {
                            path: entry.to_string(),
                            parent: rel.to_string(),
                        })
                    }
                    Err(e) => return Err(io_err(entry, "read symlink", e.into())),
                };
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(escape(format!("`{rel}` has too many levels of symlinks")));
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    if policy == SymlinkPolicy::Beneath {
                        return Err(escape(format!(
                            "`{rel}` resolves through absolute symlink `{component}` -> `{target}`"
                        )));
                    }
                    stack.truncate(1);
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                        .map(String::from),
                );
            }
            Err(e) => return Err(io_err(entry, "open parent directory", e.into())),
        }
    }
    Ok(stack.pop())
}

fn mkdir(p: BorrowedFd<'_>, name: &CStr, entry: &str) -> Result<()> {
    rustix::fs::mkdirat(p, name, Mode::from_raw_mode(0o700))
        .map_err(|e| io_err(entry, "create directory", e.into()))
}

fn mknod(p: BorrowedFd<'_>, name: &CStr, entry: &Entry, ft: FileType, dev: u64) -> Result<()> {
    rustix::fs::mknodat(p, name, ft, Mode::from_raw_mode(0o600), dev)
        .map_err(|e| io_err(&entry.path, "create special file", e.into()))
}

fn set_times(p: BorrowedFd<'_>, name: &CStr, mtime: i64) -> io::Result<()> {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    Ok(rustix::fs::utimensat(
        p,
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// The type of `name` in `p` without following it; `None` when absent.
fn lstat_type(p: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(p, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The names in an open directory, without `.` and `..`.
fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let mut out = Vec::new();
    for item in rustix::fs::Dir::read_from(fd)? {
        let item = item?;
        let name = item.file_name();
        if name != c"." && name != c".." {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// Remove `name` in `p`, recursively if it is a directory; never follows symlinks; absent is fine.
fn remove_all(p: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match lstat_type(p, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let dir = rustix::fs::openat(
                p,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            for child in list_dir(dir.as_fd())? {
                remove_all(dir.as_fd(), &child)?;
            }
            Ok(rustix::fs::unlinkat(p, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => match rustix::fs::unlinkat(p, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

fn io_err(path: &str, op: &'static str, source: io::Error) -> ExtractError {
    ExtractError::Io {
        path: path.to_string(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::write::{TarOptions, TarWriter};
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn layer(entries: &[(Entry, &[u8])]) -> Vec<u8> {
        let mut tw = TarWriter::new(Vec::new(), TarOptions::keep_mtimes());
        for (e, data) in entries {
            tw.append(e, &mut &data[..]).unwrap();
        }
        tw.finish().unwrap()
    }

    fn with_meta(mut e: Entry, mode: u32, uid: u32, mtime: i64) -> Entry {
        e.mode = mode;
        e.uid = uid;
        e.gid = uid;
        e.mtime = mtime;
        e
    }

    #[test]
    fn applies_stack_with_whiteouts_and_opaque() {
        let l1 = layer(&[
            (Entry::dir("a"), b""),
            (Entry::file("a/gone", 1), b"g"),
            (Entry::file("a/keep", 1), b"k"),
            (Entry::dir("o"), b""),
            (Entry::file("o/old", 1), b"o"),
            (Entry::file("x", 1), b"x"),
        ]);
        // Our writer puts the marker first in its directory; foreign layers may not, so this one
        // is two archives glued together (the first without its end-of-archive blocks).
        let mut l2 = layer(&[
            (crate::whiteout::whiteout_entry("a/gone"), b""),
            (Entry::dir("o"), b""),
            (Entry::file("o/-sub/new", 1), b"s"), // parent created implicitly, before the marker
            (Entry::file("o/.new", 1), b"n"),
        ]);
        l2.truncate(l2.len() - 1024);
        l2.extend(layer(&[
            (crate::whiteout::opaque_entry("o"), b""),
            (Entry::file("o/z", 1), b"z"),
            (Entry::dir("x"), b""),
        ]));
        for resolve in [Resolve::Kernel, Resolve::Walk] {
            let dir = tempfile::tempdir().unwrap();
            let opts = ExtractOptions {
                resolve,
                ..Default::default()
            };
            unpack(dir.path(), [&l1[..], &l2[..]], opts).unwrap();
            let r = dir.path();
            assert!(r.join("a/keep").exists());
            assert!(!r.join("a/gone").exists());
            assert!(
                !r.join("o/old").exists(),
                "opaque marker clears lower content"
            );
            assert!(
                r.join("o/.new").exists(),
                "entries of the same layer before the marker stay"
            );
            assert!(r.join("o/z").exists());
            assert!(r.join("x").is_dir(), "file replaced by dir");
        }
    }

    #[test]
    fn metadata_and_dir_mtime_after_children() {
        let l = layer(&[
            (with_meta(Entry::dir("d"), 0o750, 7, 1000), b""),
            (with_meta(Entry::file("d/f", 2), 0o4755, 8, 2000), b"hi"),
            (Entry::hardlink("d/h", "d/f"), b""),
            (Entry::symlink("d/s", "f"), b""),
        ]);
        let dir = tempfile::tempdir().unwrap();
        unpack(dir.path(), [&l[..]], ExtractOptions::default()).unwrap();
        let d = fs::metadata(dir.path().join("d")).unwrap();
        assert_eq!(
            (d.permissions().mode() & 0o7777, d.uid(), d.mtime()),
            (0o750, 7, 1000)
        );
        let f = fs::metadata(dir.path().join("d/f")).unwrap();
        assert_eq!(
            (f.permissions().mode() & 0o7777, f.uid(), f.mtime()),
            (0o4755, 8, 2000)
        );
        assert_eq!(f.nlink(), 2);
        assert_eq!(
            fs::read_link(dir.path().join("d/s")).unwrap(),
            Path::new("f")
        );
    }

    #[test]
    fn symlink_escapes_are_errors_in_both_resolvers() {
        let cases: &[(&str, &str)] = &[("/", "abs"), ("../../..", "climb"), ("./../..", "climb2")];
        for resolve in [Resolve::Kernel, Resolve::Walk] {
            for (target, name) in cases {
                let l = layer(&[
                    (Entry::symlink(*name, *target), b""),
                    (Entry::file(format!("{name}/pwn"), 1), b"p"),
                ]);
                let dir = tempfile::tempdir().unwrap();
                let root = dir.path().join("root");
                let err = unpack(
                    &root,
                    [&l[..]],
                    ExtractOptions {
                        resolve,
                        ..Default::default()
                    },
                )
                .unwrap_err();
                assert!(
                    matches!(err, ExtractError::Escape { ref path, .. } if path == &format!("{name}/pwn")),
                    "{err}"
                );
                assert!(!dir.path().join("pwn").exists());
            }
        }
    }

    #[test]
    fn symlink_inside_root_is_followed() {
        for resolve in [Resolve::Kernel, Resolve::Walk] {
            let l1 = layer(&[
                (Entry::symlink("lib", "usr/lib"), b""),
                (Entry::dir("usr"), b""),
                (Entry::dir("usr/lib"), b""),
            ]);
            let l2 = layer(&[(Entry::file("lib/x", 1), b"x")]);
            let dir = tempfile::tempdir().unwrap();
            unpack(
                dir.path(),
                [&l1[..], &l2[..]],
                ExtractOptions {
                    resolve,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(fs::read(dir.path().join("usr/lib/x")).unwrap(), b"x");
        }
    }
}
