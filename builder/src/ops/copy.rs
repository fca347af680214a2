//! COPY and ADD planning: which entries a COPY/ADD step puts in its layer, and where each entry's
//! bytes come from. [`plan_copy`] decides everything without writing to any rootfs;
//! [`CopyPlan::write_layer`] streams the entries into a layer blob.
//!
//! The semantics are BuildKit's (`dockerfile2llb.dispatchCopy` → file op `docopy` → fsutil
//! `copy.Copy`), with `CopyDirContentsOnly`, `FollowSymlinks`, `AllowWildcard`,
//! `AllowEmptyWildcard` and `CreateDestPath` set as the Dockerfile front-end sets them:
//!
//! - sources are cleaned against `/` of their root; wildcards (Go `filepath.Match` on each path
//!   component below the first component that has one) are matched in lexical walk order; a
//!   wildcard that matches nothing copies nothing (BuildKit's `AllowEmptyWildcard`), but a missing
//!   non-wildcard parent of the wildcard is `lstat …: no such file or directory`, and a missing
//!   plain source is `"/x": not found` (with the `.dockerignore` rule that hid it, if one did);
//! - a source named directly (or matched by a wildcard) is followed if it is a symlink; symlinks
//!   found inside a copied directory are copied as symlinks; hard links between files of one
//!   source are kept as hard links;
//! - copying a directory copies its contents; a file goes to `dest/<name>` when `dest` is an
//!   existing directory (or ends with `/`), else it becomes `dest`; a directory's contents are
//!   copied into `dest`, which then takes the source directory's mtime (fsutil's
//!   `restoreFileTimestamp`) but keeps its mode and owner; more than one source argument needs a
//!   `dest` ending in `/` (the classic builder's rule, kept as the task asks; several wildcard
//!   matches onto a file `dest` overwrite each other, last one wins, as in BuildKit);
//! - `dest` is relative to WORKDIR; missing directories on the way are created 0755, owned by the
//!   `--chown` owner (root otherwise), with the current time as mtime (clamped later by the tar
//!   writer to SOURCE_DATE_EPOCH); `dest` is resolved through symlinks of the parent rootfs with
//!   chroot semantics (never leaving it); with `--link` there is no parent, so only entries of
//!   this step are consulted (unless `--chmod` is also given: BuildKit then copies onto the
//!   parent as without `--link`);
//! - extended attributes are copied (but not ACLs, SELinux labels or overlayfs' own);
//! - files from the build context are owned by 0:0, files from another stage or image keep their
//!   owner, `--chown` overrides both; `--chmod` (octal or symbolic) applies to every copied file
//!   and directory but not to symlinks; context files keep their mtime;
//! - `--exclude` patterns (patternmatcher syntax) are matched against paths relative to each
//!   copied directory and against wildcard matches relative to the wildcard's directory;
//! - `--parents` copies the path below the `/./` pivot (or the whole path), creating the parents
//!   with their source metadata;
//! - ADD unpacks local tar archives (see [`super::add`] and [`super::archive`]), fetches
//!   `http(s)://` URLs as 0600 files named after the URL path, and heredocs become 0644 files.
//!
//! The layer also carries every existing ancestor directory of a written path with its metadata
//! from the parent rootfs (as an overlay/containerd diff would), with the current time as mtime
//! when a new name appeared in it.
//!
//! Deviations: a source that climbs out of the build context (`../x`) or a context symlink that
//! points outside it (absolute or through `..`) is an error here, where BuildKit would silently
//! resolve it inside the context; sockets are skipped; `.wh.*` entries of an ADD archive act as whiteouts (BuildKit extracts
//! them as plain files).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rbuild_dockerfile::ignore::{filepath_match, go_clean, IgnoreRules};
use rbuild_layers::digest::{Digest, Hasher};
use rbuild_layers::store::{BlobStore, LayerError, LayerInfo, LayerOptions, LayerWriter};
use rbuild_layers::tar::entry::{compare_paths, validate_path, Entry, EntryKind};

use super::archive::ArchiveError;
use super::chmod::{ChmodError, ModeSpec};
use super::fetch::{now_secs, FetchError, Fetcher};
use super::users::{resolve_chown, UserError};
use crate::graph::{CopyKind, CopyOp, CopySource, FsInput};

/// Symlinks followed while resolving one path before giving up (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// Where COPY sources are read from.
#[derive(Debug, Clone, Copy)]
pub enum SourceRoot<'a> {
    /// The build context directory, with its .dockerignore rules (files excluded are invisible).
    Context {
        /// The context directory.
        dir: &'a Path,
        /// The ignore rules, if the context has any.
        ignore: Option<&'a IgnoreRules>,
    },
    /// A materialized root filesystem (another stage's or an image's), read-only.
    Tree(&'a Path),
    /// No filesystem (stdin Dockerfile without context): only heredoc and URL sources work.
    Empty,
}

/// Everything [`plan_copy`] needs.
pub struct CopyRequest<'a> {
    /// The COPY/ADD step.
    pub op: &'a CopyOp,
    /// Where path sources are read from.
    pub source: SourceRoot<'a>,
    /// The parent's materialized rootfs (read-only), to resolve dest symlinks, existing dirs and
    /// --chown names; None for scratch. With --link, dest is still resolved lexically only.
    pub dest_root: Option<&'a Path>,
    /// Fetches ADD http(s) URLs; the solver passes [`super::fetch::HttpFetcher`].
    pub fetcher: &'a dyn Fetcher,
}

/// Where a planned entry's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// No content (directories, links, devices).
    None,
    /// A file on the host (a context file, a file of a materialized tree, a scratch file).
    HostFile(PathBuf),
    /// Bytes in memory (heredocs).
    Bytes(Vec<u8>),
}

/// One entry of a COPY/ADD layer with the source of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    /// The tar entry (path relative to the rootfs, final metadata).
    pub entry: Entry,
    /// Where a regular file's bytes come from.
    pub content: Content,
}

/// Scratch files and directories a plan's [`Content::HostFile`]s may point into; deleted when
/// the plan is dropped.
#[derive(Debug)]
pub(super) enum Scratch {
    /// An unpacked archive.
    Dir(#[allow(dead_code)] tempfile::TempDir),
    /// A downloaded URL.
    File(#[allow(dead_code)] tempfile::TempPath),
}

/// The layer a COPY/ADD produces: entries in canonical order
/// ([`rbuild_layers::tar::entry::compare_paths`]), each with where its bytes come from.
#[derive(Debug)]
pub struct CopyPlan {
    /// The entries, sorted.
    pub entries: Vec<PlannedEntry>,
    /// Unpacked archives and downloads the entries point into, held for their `Drop`.
    _scratch: Vec<Scratch>,
}

/// Why a COPY/ADD cannot be planned or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// A source path does not exist (or is hidden by `.dockerignore`).
    #[error("{}", not_found_message(.path, .excluded_by.as_deref()))]
    NotFound {
        /// The source as cleaned (`/dir/file`).
        path: String,
        /// The `.dockerignore` rule that excluded it, described, if one did.
        excluded_by: Option<String>,
    },
    /// The directory part of a wildcard source does not exist.
    #[error("lstat {path}: no such file or directory")]
    WildcardParentMissing {
        /// The wildcard's parent directory (`/dir`).
        path: String,
        /// The source as written.
        source_path: String,
    },
    /// A source climbs out of the build context.
    #[error("forbidden path outside the build context: {path}")]
    OutsideContext {
        /// The source as written.
        path: String,
    },
    /// A symlink met while resolving a source points outside the build context.
    #[error("source {path}: symlink /{link} -> {target} points outside the build context")]
    SymlinkEscape {
        /// The source as written.
        path: String,
        /// The symlink (relative to the context).
        link: String,
        /// Its target.
        target: String,
    },
    /// Resolving a path met too many symlinks.
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The path being resolved.
        path: String,
    },
    /// More than one source with a destination that is not a directory.
    #[error("when using {instruction} with more than one source file, the destination must be a directory and end with a /")]
    MultipleSourcesNeedDir {
        /// `COPY` or `ADD`.
        instruction: &'static str,
        /// The destination as written.
        dest: String,
    },
    /// A path source was given but the build has no context.
    #[error("source {path}: the build has no context (only heredoc and URL sources can be used)")]
    NoContext {
        /// The source as written.
        path: String,
    },
    /// A destination path component exists and is not a directory.
    #[error("cannot copy to /{path}: /{parent} is not a directory")]
    NotADirectory {
        /// The path being created.
        path: String,
        /// The component that is not a directory.
        parent: String,
    },
    /// A non-directory would replace an existing directory.
    #[error("cannot replace directory /{path} with a non-directory")]
    ReplaceDirectory {
        /// The destination path.
        path: String,
    },
    /// A directory would be copied onto an existing non-directory.
    #[error("cannot copy a directory to non-directory /{path}")]
    DirOntoFile {
        /// The destination path.
        path: String,
    },
    /// `--chown` names a user or group the destination does not know.
    #[error("--chown={spec}: {source}")]
    Chown {
        /// The spec as written.
        spec: String,
        /// The lookup failure.
        #[source]
        source: UserError,
    },
    /// `--chmod` is invalid.
    #[error(transparent)]
    Chmod(#[from] ChmodError),
    /// A wildcard, `--exclude` or `--parents` pattern is malformed.
    #[error("bad pattern `{pattern}`: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// `--checksum` was given where BuildKit refuses it (COPY, several sources, a local path).
    #[error("{reason}")]
    Checksum {
        /// BuildKit's message.
        reason: &'static str,
    },
    /// A downloaded file does not have the digest `--checksum` asked for.
    #[error("checksum of {url} does not match: expected {expected}, got {found}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The digest given with `--checksum`.
        expected: Digest,
        /// The digest of what was downloaded.
        found: Digest,
    },
    /// Git sources are not implemented.
    #[error("ADD of git repository {url} is not supported yet")]
    GitUnsupported {
        /// The repository URL.
        url: String,
    },
    /// Fetching a URL failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A local archive could not be unpacked.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A file name is not UTF-8.
    #[error("{path}: file name is not valid utf-8")]
    NonUtf8 {
        /// The directory or file.
        path: PathBuf,
    },
    /// A destination path is not a valid layer path.
    #[error("invalid destination path /{path}")]
    BadPath {
        /// The path.
        path: String,
    },
    /// A source file changed size between planning and writing.
    #[error("{path} changed while being copied: expected {expected} bytes, found {found}")]
    Changed {
        /// The host file.
        path: PathBuf,
        /// The size when planned.
        expected: u64,
        /// The size now.
        found: u64,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The extended attributes of a file could not be read.
    #[error("read xattrs of {path}: {source}")]
    Xattr {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rbuild_layers::tar::xattr::XattrError,
    },
    /// Writing the layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// The same words as a missing source found while keying the step
/// ([`crate::context::ContextError::NotFound`]), so both paths read alike.
fn not_found_message(path: &str, rule: Option<&str>) -> String {
    crate::context::not_found_message(path, rule)
}

pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Io { op, path, source }
}

type Result<T, E = CopyError> = std::result::Result<T, E>;

/// What a path is, as far as path resolution cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Missing,
    Dir,
    Symlink(String),
    Other,
}

fn node_of(md: &Metadata, host: &Path) -> Result<Node> {
    let ft = md.file_type();
    Ok(if ft.is_dir() {
        Node::Dir
    } else if ft.is_symlink() {
        let target = fs::read_link(host).map_err(io_err("readlink", host))?;
        Node::Symlink(
            target
                .into_os_string()
                .into_string()
                .map_err(|_| CopyError::NonUtf8 {
                    path: host.to_path_buf(),
                })?,
        )
    } else {
        Node::Other
    })
}

fn lstat_opt(host: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(host) {
        Ok(md) => Ok(Some(md)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err("lstat", host)(e)),
    }
}

/// The extended attributes a copied entry carries (fsutil's `copyXAttrs`), leaving out ACLs and
/// host security labels (as the tar writer does) and overlayfs' own attributes.
pub(super) fn xattrs_of(host: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut all = rbuild_layers::tar::xattr::read_all(host).map_err(|source| CopyError::Xattr {
        path: host.to_path_buf(),
        source,
    })?;
    all.retain(|name, _| {
        !name.starts_with("system.")
            && name != "security.selinux"
            && !rbuild_layers::whiteout::is_overlay_xattr(name)
    });
    Ok(all)
}

/// How symlinks met during resolution may behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    /// Chroot semantics: absolute targets restart at the root, `..` stops at it.
    InRoot,
    /// Absolute targets and `..` above the root are errors.
    Beneath,
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

pub(super) fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

fn base_of(p: &str) -> &str {
    p.rsplit_once('/').map_or(p, |(_, b)| b)
}

/// Clean an absolute or relative path into root-relative components (`..` stops at the root).
pub(super) fn clean_rel(p: &str) -> String {
    go_clean(&format!("/{p}"))
        .trim_start_matches('/')
        .to_string()
}

/// Resolve `path` (root-relative, cleaned) through symlinks as `lookup` reports them.
fn resolve(
    path: &str,
    follow_last: bool,
    policy: Policy,
    what: &str,
    lookup: &mut dyn FnMut(&str) -> Result<Node>,
) -> Result<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_none() && policy == Policy::Beneath {
                return Err(CopyError::OutsideContext {
                    path: what.to_string(),
                });
            }
            continue;
        }
        let candidate = if stack.is_empty() {
            c.clone()
        } else {
            format!("{}/{}", stack.join("/"), c)
        };
        let is_last = todo.is_empty();
        match lookup(&candidate)? {
            Node::Symlink(target) if !is_last || follow_last => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(CopyError::SymlinkLoop {
                        path: what.to_string(),
                    });
                }
                if policy == Policy::Beneath {
                    // The target must stay inside the root, lexically, from the link's directory.
                    let mut depth = stack.len() as isize;
                    let escapes = target.starts_with('/')
                        || target.split('/').any(|t| {
                            match t {
                                ".." => depth -= 1,
                                "" | "." => {}
                                _ => depth += 1,
                            }
                            depth < 0
                        });
                    if escapes {
                        return Err(CopyError::SymlinkEscape {
                            path: what.to_string(),
                            link: candidate,
                            target,
                        });
                    }
                }
                if target.starts_with('/') {
                    stack.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|t| !t.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            _ => stack.push(c),
        }
    }
    Ok(stack.join("/"))
}

/// Whether a source entry is part of the source filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Visible,
    /// Excluded by `.dockerignore`, but a `!` rule may re-include something below it.
    Lazy,
    Hidden,
}

/// The source side: a context (with ignore rules), a tree, or nothing.
pub(super) struct SourceView<'a> {
    root: Option<&'a Path>,
    ignore: Option<&'a IgnoreRules>,
    is_context: bool,
}

impl<'a> SourceView<'a> {
    fn new(source: SourceRoot<'a>) -> Self {
        match source {
            SourceRoot::Context { dir, ignore } => SourceView {
                root: Some(dir),
                ignore,
                is_context: true,
            },
            SourceRoot::Tree(dir) => SourceView {
                root: Some(dir),
                ignore: None,
                is_context: false,
            },
            SourceRoot::Empty => SourceView {
                root: None,
                ignore: None,
                is_context: false,
            },
        }
    }

    pub(super) fn host(&self, rel: &str) -> PathBuf {
        let root = self
            .root
            .expect("path sources are refused before any lookup when the source has no root");
        if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        }
    }

    fn policy(&self) -> Policy {
        if self.is_context {
            Policy::Beneath
        } else {
            Policy::InRoot
        }
    }

    fn visibility(&self, rel: &str, is_dir: bool) -> Result<Visibility> {
        let Some(rules) = self.ignore else {
            return Ok(Visibility::Visible);
        };
        if rel.is_empty() {
            return Ok(Visibility::Visible);
        }
        let excluded = rules.is_excluded(rel).map_err(|e| CopyError::BadPattern {
            pattern: rel.to_string(),
            reason: e.to_string(),
        })?;
        Ok(if !excluded {
            Visibility::Visible
        } else if is_dir && rules.may_reinclude_below(rel) {
            Visibility::Lazy
        } else {
            Visibility::Hidden
        })
    }

    fn excluding_rule(&self, rel: &str) -> Option<String> {
        let rules = self.ignore?;
        let rule = rules.excluding_rule(rel).ok()??;
        Some(rule.to_string())
    }

    /// lstat `rel`, hiding what `.dockerignore` excludes.
    fn lstat(&self, rel: &str) -> Result<Option<Metadata>> {
        if self.root.is_none() {
            return Ok(None);
        }
        let Some(md) = lstat_opt(&self.host(rel))? else {
            return Ok(None);
        };
        match self.visibility(rel, md.is_dir())? {
            Visibility::Hidden => Ok(None),
            _ => Ok(Some(md)),
        }
    }

    fn node(&self, rel: &str) -> Result<Node> {
        if rel.is_empty() {
            return Ok(if self.root.is_some() {
                Node::Dir
            } else {
                Node::Missing
            });
        }
        match self.lstat(rel)? {
            None => Ok(Node::Missing),
            Some(md) => node_of(&md, &self.host(rel)),
        }
    }

    /// Sorted child names of directory `rel`.
    fn children(&self, rel: &str) -> Result<Vec<String>> {
        let host = self.host(rel);
        let mut names = Vec::new();
        for entry in fs::read_dir(&host).map_err(io_err("read directory", &host))? {
            let entry = entry.map_err(io_err("read directory", &host))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| CopyError::NonUtf8 { path: entry.path() })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }
}

/// The destination side: the parent rootfs (if any) overlaid with what this step plans.
pub(super) struct DestView<'a> {
    root: Option<&'a Path>,
    planned: BTreeMap<String, PlannedEntry>,
}

impl DestView<'_> {
    fn root_node(&self, rel: &str) -> Result<Node> {
        let Some(root) = self.root else {
            return Ok(if rel.is_empty() {
                Node::Dir
            } else {
                Node::Missing
            });
        };
        if rel.is_empty() {
            return Ok(Node::Dir);
        }
        let host = root.join(rel);
        match lstat_opt(&host)? {
            None => Ok(Node::Missing),
            Some(md) => node_of(&md, &host),
        }
    }

    pub(super) fn node(&self, rel: &str) -> Result<Node> {
        if rel.is_empty() {
            return Ok(Node::Dir);
        }
        if let Some(p) = self.planned.get(rel) {
            return Ok(match &p.entry.kind {
                EntryKind::Dir => Node::Dir,
                EntryKind::Symlink { target } => Node::Symlink(target.clone()),
                _ => Node::Other,
            });
        }
        let mut p = rel;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if let Some(pe) = self.planned.get(parent) {
                if !pe.entry.is_dir() {
                    return Ok(Node::Missing);
                }
            }
            p = parent;
        }
        self.root_node(rel)
    }

    /// Record an entry; a non-directory replacing a planned directory drops what was planned
    /// below it.
    pub(super) fn put(&mut self, entry: Entry, content: Content) -> Result<()> {
        validate_path(&entry.path).map_err(|_| CopyError::BadPath {
            path: entry.path.clone(),
        })?;
        if !entry.is_dir() {
            let prefix = format!("{}/", entry.path);
            let below: Vec<String> = self
                .planned
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .collect();
            for k in below {
                self.planned.remove(&k);
            }
        }
        self.planned
            .insert(entry.path.clone(), PlannedEntry { entry, content });
        Ok(())
    }
}

/// One `--parents`/include pattern match state of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inclusion {
    /// The path or one of its parents matches: everything below is included.
    Full,
    /// The path may be a parent of a match.
    Partial,
    /// Nothing at or below the path can match.
    No,
}

fn include_state(pattern: &[String], path: &[&str]) -> Result<Inclusion> {
    fn go(pattern: &[String], path: &[&str]) -> Result<(bool, bool), CopyError> {
        let Some(first) = pattern.first() else {
            return Ok((true, false));
        };
        if first == "**" {
            let (full, _) = go(&pattern[1..], path)?;
            if full {
                return Ok((true, false));
            }
            if path.is_empty() {
                return Ok((false, true));
            }
            let (full2, _) = go(pattern, &path[1..])?;
            return Ok((full2, true));
        }
        let Some(name) = path.first() else {
            return Ok((false, true));
        };
        let ok = filepath_match(first, name).map_err(|e| CopyError::BadPattern {
            pattern: pattern.join("/"),
            reason: e.to_string(),
        })?;
        if !ok {
            return Ok((false, false));
        }
        go(&pattern[1..], &path[1..])
    }
    let (full, partial) = go(pattern, path)?;
    Ok(if full {
        Inclusion::Full
    } else if partial {
        Inclusion::Partial
    } else {
        Inclusion::No
    })
}

/// fsutil's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
fn has_wildcard(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Hard links seen while copying one source: (dev, inode) → first destination path.
pub(super) type LinkMap = BTreeMap<(u64, u64), String>;

/// The entry kind of the non-directory host file `host` that is copied to `target`: a regular
/// file, or a hard link to the first target seen with the same inode (which `links` remembers),
/// a symlink, a device or a FIFO; `None` for a socket, which is never copied.
pub(super) fn host_file_kind(
    md: &Metadata,
    host: &Path,
    target: &str,
    links: &mut LinkMap,
) -> Result<Option<EntryKind>> {
    let ft = md.file_type();
    Ok(Some(if ft.is_file() {
        let key = (md.dev(), md.ino());
        match links.get(&key) {
            Some(first) if md.nlink() > 1 => EntryKind::HardLink {
                target: first.clone(),
            },
            _ => {
                if md.nlink() > 1 {
                    links.insert(key, target.to_string());
                }
                EntryKind::File { size: md.len() }
            }
        }
    } else if ft.is_symlink() {
        match node_of(md, host)? {
            Node::Symlink(t) => EntryKind::Symlink { target: t },
            _ => EntryKind::Fifo,
        }
    } else if let Some(device) = EntryKind::device(md) {
        device
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Ok(None);
    }))
}

/// The state of one COPY/ADD being planned.
pub(super) struct Planner<'a> {
    pub(super) op: &'a CopyOp,
    pub(super) src: SourceView<'a>,
    pub(super) dest: DestView<'a>,
    pub(super) owner: Option<(u32, u32)>,
    pub(super) chmod: Option<ModeSpec>,
    excludes: Option<IgnoreRules>,
    pub(super) now: i64,
    pub(super) scratch: Vec<Scratch>,
    pub(super) fetcher: &'a dyn Fetcher,
}

/// Plan the layer of a COPY/ADD step.
pub fn plan_copy(req: &CopyRequest) -> Result<CopyPlan> {
    let op = req.op;
    let instruction = match op.kind {
        CopyKind::Copy => "COPY",
        CopyKind::Add { .. } => "ADD",
    };
    // BuildKit appends `/` to `.`, empty and `…/` destinations; fsutil then also treats a last
    // component `.` as the directory itself (`filepath.Split`).
    let dir_like =
        op.dest.is_empty() || op.dest == "." || op.dest.ends_with('/') || op.dest.ends_with("/.");
    if op.sources.len() > 1 && !dir_like {
        return Err(CopyError::MultipleSourcesNeedDir {
            instruction,
            dest: op.dest.clone(),
        });
    }
    if op.checksum.is_some() {
        // dockerfile2llb's checks, in its order.
        if instruction == "COPY" {
            return Err(CopyError::Checksum {
                reason: "checksum can't be specified for COPY",
            });
        }
        if op.sources.len() != 1 {
            return Err(CopyError::Checksum {
                reason: "checksum can't be specified for multiple sources",
            });
        }
        if !matches!(op.sources[0], CopySource::Url(_) | CopySource::Git { .. }) {
            return Err(CopyError::Checksum {
                reason: "checksum requires HTTP(S) or Git sources",
            });
        }
    }
    let owner = match &op.chown {
        Some(spec) => {
            Some(
                resolve_chown(req.dest_root, spec).map_err(|source| CopyError::Chown {
                    spec: spec.to_string(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let chmod = op.chmod.as_ref().map(ModeSpec::parse).transpose()?;
    let excludes = if op.exclude.is_empty() {
        None
    } else {
        Some(
            IgnoreRules::new(&op.exclude).map_err(|e| CopyError::BadPattern {
                pattern: op.exclude.join(","),
                reason: e.to_string(),
            })?,
        )
    };
    let dest_abs = if op.dest.starts_with('/') {
        op.dest.clone()
    } else {
        format!("{}/{}", op.workdir, op.dest)
    };
    let dest_abs = clean_rel(&dest_abs);
    let mut planner = Planner {
        op,
        src: SourceView::new(req.source),
        dest: DestView {
            // BuildKit only turns `--link` into a merge on scratch when there is no `--chmod`;
            // with one, the copy happens on the parent like a plain COPY.
            root: if op.link && op.chmod.is_none() {
                None
            } else {
                req.dest_root
            },
            planned: BTreeMap::new(),
        },
        owner,
        chmod,
        excludes,
        now: now_secs(),
        scratch: Vec::new(),
        fetcher: req.fetcher,
    };
    for source in &op.sources {
        match source {
            CopySource::Path(p) => planner.copy_path(p, &dest_abs, dir_like)?,
            CopySource::Heredoc { name, content } => {
                let now = planner.now;
                planner.copy_virtual(
                    name,
                    0o644,
                    now,
                    content.len() as u64,
                    Content::Bytes(content.as_bytes().to_vec()),
                    &dest_abs,
                    dir_like,
                )?
            }
            CopySource::Url(url) => planner.add_url(url, &dest_abs, dir_like)?,
            CopySource::Git { url, .. } => {
                return Err(CopyError::GitUnsupported { url: url.clone() })
            }
        }
    }
    planner.finish()
}

impl<'a> Planner<'a> {
    /// Resolve a source path (root-relative, cleaned) in the source filesystem.
    fn resolve_src(&self, rel: &str, what: &str) -> Result<String> {
        let src = &self.src;
        resolve(rel, true, src.policy(), what, &mut |p| src.node(p))
    }

    /// Resolve a destination path (root-relative, cleaned) through the destination's symlinks.
    pub(super) fn resolve_dest(&self, rel: &str) -> Result<String> {
        let dest = &self.dest;
        resolve(rel, true, Policy::InRoot, rel, &mut |p| dest.node(p))
    }

    /// The owner of a copied entry whose source owner is `(uid, gid)`.
    fn owner_of(&self, md: &Metadata) -> (u32, u32) {
        match self.owner {
            Some(o) => o,
            None if self.src.is_context => (0, 0),
            None => (md.uid(), md.gid()),
        }
    }

    fn mode_of(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.chmod {
            Some(spec) => spec.apply(mode & 0o7777, is_dir),
            None => mode & 0o7777,
        }
    }

    /// fsutil's `MkdirAll(path, 0755, chown, now)` on a resolved destination path.
    pub(super) fn mkdir_all(&mut self, rel: &str) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let mut prefix = String::new();
        for c in rel.split('/') {
            prefix = join(&prefix, c);
            match self.dest.node(&prefix)? {
                Node::Dir => {}
                Node::Missing => {
                    let (uid, gid) = self.owner.unwrap_or((0, 0));
                    let mut e = Entry::dir(prefix.clone());
                    e.uid = uid;
                    e.gid = gid;
                    e.mtime = self.now;
                    self.dest.put(e, Content::None)?;
                }
                Node::Symlink(_) | Node::Other => {
                    return Err(CopyError::NotADirectory {
                        path: rel.to_string(),
                        parent: prefix,
                    })
                }
            }
        }
        Ok(())
    }

    /// `copy.Copy`'s first step: make sure the destination (or its parent) exists.
    pub(super) fn ensure_dest_path(&mut self, dest_abs: &str, dir_like: bool) -> Result<()> {
        let p = if dir_like {
            dest_abs
        } else {
            parent_of(dest_abs)
        };
        let resolved = self.resolve_dest(p)?;
        self.mkdir_all(&resolved)
    }

    fn copy_path(&mut self, p: &str, dest_abs: &str, dir_like: bool) -> Result<()> {
        if self.src.root.is_none() {
            // An empty stage or image has no files at all; a missing context is a usage error.
            return Err(match self.op.from {
                FsInput::Context(_) => CopyError::NoContext {
                    path: p.to_string(),
                },
                _ => CopyError::NotFound {
                    path: format!("/{}", clean_rel(p)),
                    excluded_by: None,
                },
            });
        }
        if self.op.parents {
            return self.copy_parents(p, dest_abs, dir_like);
        }
        let rel = self.clean_source(p)?;
        if !has_wildcard(&rel) {
            return self.copy_match(&rel, p, dest_abs, dir_like);
        }
        let comps: Vec<&str> = rel.split('/').collect();
        let split = comps
            .iter()
            .position(|c| has_wildcard(c))
            .expect("has_wildcard found a component with a wildcard");
        let base = comps[..split].join("/");
        let pattern = comps[split..].join("/");
        let base_resolved = self.resolve_src(&base, p)?;
        let matches = match self.src.node(&base_resolved)? {
            Node::Missing => {
                return Err(CopyError::WildcardParentMissing {
                    path: format!("/{base}"),
                    source_path: p.to_string(),
                })
            }
            Node::Dir => {
                let mut out = Vec::new();
                self.wildcard_walk(&base_resolved, "", &pattern, comps.len() - split, &mut out)?;
                out
            }
            _ => Vec::new(),
        };
        for m in matches {
            self.copy_match(&m, p, dest_abs, dir_like)?;
        }
        Ok(())
    }

    /// Go's `filepath.Walk` + `filepath.Match` below `dir`, depth-limited to the pattern's.
    fn wildcard_walk(
        &self,
        dir: &str,
        rel: &str,
        pattern: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<()> {
        for name in self.src.children(dir)? {
            let child = join(dir, &name);
            let r = join(rel, &name);
            let Some(md) = lstat_opt(&self.src.host(&child))? else {
                continue;
            };
            if self.src.visibility(&child, md.is_dir())? == Visibility::Hidden {
                continue;
            }
            if let Some(ex) = &self.excludes {
                let excluded = ex.is_excluded(&r).map_err(|e| CopyError::BadPattern {
                    pattern: r.clone(),
                    reason: e.to_string(),
                })?;
                if excluded {
                    continue;
                }
            }
            let matched = filepath_match(pattern, &r).map_err(|e| CopyError::BadPattern {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })?;
            if matched {
                out.push(child);
            } else if md.is_dir() && r.split('/').count() < depth {
                self.wildcard_walk(&child, &r, pattern, depth, out)?;
            }
        }
        Ok(())
    }

    /// Clean a source as written; in a context, climbing above the root is refused.
    fn clean_source(&self, p: &str) -> Result<String> {
        if self.src.is_context {
            let mut depth = 0usize;
            for c in p.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        depth = depth
                            .checked_sub(1)
                            .ok_or_else(|| CopyError::OutsideContext {
                                path: p.to_string(),
                            })?
                    }
                    _ => depth += 1,
                }
            }
        }
        Ok(clean_rel(p))
    }

    fn not_found(&self, rel: &str, followed: &str) -> CopyError {
        let excluded_by = self
            .src
            .excluding_rule(rel)
            .or_else(|| self.src.excluding_rule(followed));
        CopyError::NotFound {
            path: format!("/{rel}"),
            excluded_by,
        }
    }

    /// Copy one (matched) source path to the destination, fsutil's `copy.Copy` for one source.
    fn copy_match(
        &mut self,
        rel: &str,
        written: &str,
        dest_abs: &str,
        dir_like: bool,
    ) -> Result<()> {
        let followed = self.resolve_src(rel, written)?;
        let Some(md) = self.src.lstat(&followed)? else {
            return Err(self.not_found(rel, &followed));
        };
        if md.is_file() && self.unpacks_local() {
            let host = self.src.host(&followed);
            if super::archive::is_archive(&host)? {
                return self.add_archive(&host, dest_abs);
            }
        }
        self.ensure_dest_path(dest_abs, dir_like)?;
        let dest_res = self.resolve_dest(dest_abs)?;
        let dnode = self.dest.node(&dest_res)?;
        let mut target = dest_res;
        if !md.is_dir() && dnode == Node::Dir {
            target = join(&target, base_of(rel));
        }
        if md.is_dir() {
            match dnode {
                Node::Missing => self.mkdir_all(&target)?,
                Node::Dir => {}
                _ => return Err(CopyError::DirOntoFile { path: target }),
            }
            let mut links = LinkMap::new();
            self.copy_dir(&followed, "", &target, &mut links, None)?;
            self.restore_top_mtime(&target, md.mtime())?;
        } else {
            let parent = parent_of(&target).to_string();
            self.mkdir_all(&parent)?;
            let mut links = LinkMap::new();
            self.copy_entry(&followed, &md, &target, &mut links)?;
        }
        Ok(())
    }

    /// `COPY --parents`: the part after the `/./` pivot (or the whole path) is kept below dest.
    fn copy_parents(&mut self, p: &str, dest_abs: &str, dir_like: bool) -> Result<()> {
        let (pivot, pattern) = match p.find("/./") {
            Some(i) => (&p[..i], &p[i + 3..]),
            None => ("/", p),
        };
        let pivot_rel = self.clean_source(pivot)?;
        let pattern_rel = self.clean_source(pattern)?;
        if pattern_rel.is_empty() {
            return self.copy_match(&pivot_rel, p, dest_abs, dir_like);
        }
        let pivot_followed = self.resolve_src(&pivot_rel, p)?;
        if self.src.node(&pivot_followed)? != Node::Dir {
            return Err(self.not_found(&pivot_rel, &pivot_followed));
        }
        if !has_wildcard(&pattern_rel) {
            let full = join(&pivot_rel, &pattern_rel);
            let followed = self.resolve_src(&full, p)?;
            if self.src.lstat(&followed)?.is_none() {
                return Err(self.not_found(&full, &followed));
            }
        }
        self.ensure_dest_path(dest_abs, dir_like)?;
        let dest_res = self.resolve_dest(dest_abs)?;
        match self.dest.node(&dest_res)? {
            Node::Missing => self.mkdir_all(&dest_res)?,
            Node::Dir => {}
            _ => return Err(CopyError::DirOntoFile { path: dest_res }),
        }
        let pattern: Vec<String> = pattern_rel.split('/').map(String::from).collect();
        let mut links = LinkMap::new();
        self.copy_dir(&pivot_followed, "", &dest_res, &mut links, Some(&pattern))?;
        if let Some(md) = self.src.lstat(&pivot_followed)? {
            self.restore_top_mtime(&dest_res, md.mtime())?;
        }
        Ok(())
    }

    /// fsutil's `restoreFileTimestamp`: after a directory's contents are copied into `target`
    /// (created or existing), `target` gets the source directory's mtime; its mode and owner
    /// stay those it had (or was created with).
    fn restore_top_mtime(&mut self, target: &str, mtime: i64) -> Result<()> {
        if target.is_empty() {
            return Ok(());
        }
        if let Some(pe) = self.dest.planned.get_mut(target) {
            pe.entry.mtime = mtime;
            return Ok(());
        }
        let Some(root) = self.dest.root else {
            return Ok(());
        };
        let host = root.join(target);
        if let Some(md) = lstat_opt(&host)? {
            let mut e = Entry::dir(target.to_string());
            e.mode = md.mode() & 0o7777;
            e.uid = md.uid();
            e.gid = md.gid();
            e.mtime = mtime;
            e.xattrs = xattrs_of(&host)?;
            self.dest.put(e, Content::None)?;
        }
        Ok(())
    }

    /// fsutil's `copyDirectory` below the top level: returns whether anything was written.
    fn copy_dir(
        &mut self,
        src_dir: &str,
        comps: &str,
        dst_dir: &str,
        links: &mut LinkMap,
        include: Option<&[String]>,
    ) -> Result<bool> {
        let mut emitted = false;
        for name in self.src.children(src_dir)? {
            let s = join(src_dir, &name);
            let c = join(comps, &name);
            let d = join(dst_dir, &name);
            let host = self.src.host(&s);
            let Some(md) = lstat_opt(&host)? else {
                continue;
            };
            let is_dir = md.is_dir();
            let mut lazy = match self.src.visibility(&s, is_dir)? {
                Visibility::Hidden => continue,
                Visibility::Lazy => true,
                Visibility::Visible => false,
            };
            if let Some(ex) = &self.excludes {
                let excluded = ex.is_excluded(&c).map_err(|e| CopyError::BadPattern {
                    pattern: c.clone(),
                    reason: e.to_string(),
                })?;
                if excluded {
                    if is_dir && ex.may_reinclude_below(&c) {
                        lazy = true;
                    } else {
                        continue;
                    }
                }
            }
            let mut child_include = None;
            if let Some(pattern) = include {
                let parts: Vec<&str> = c.split('/').collect();
                match include_state(pattern, &parts)? {
                    Inclusion::Full => {}
                    Inclusion::Partial if is_dir => {
                        lazy = true;
                        child_include = Some(pattern);
                    }
                    Inclusion::Partial | Inclusion::No => continue,
                }
            }
            if !is_dir {
                self.copy_entry(&s, &md, &d, links)?;
                emitted = true;
                continue;
            }
            let mut d = d;
            let existing = match self.dest.node(&d)? {
                Node::Symlink(_) => {
                    // fsutil stats (follows) an existing destination directory.
                    d = self.resolve_dest(&d)?;
                    self.dest.node(&d)?
                }
                n => n,
            };
            match existing {
                Node::Dir | Node::Missing => {}
                _ => return Err(CopyError::DirOntoFile { path: d }),
            }
            let created = existing == Node::Missing;
            if lazy {
                if self.copy_dir(&s, &c, &d, links, child_include)? {
                    if created {
                        self.put_dir_from(&md, &host, &d)?;
                    }
                    emitted = true;
                }
            } else {
                // A nested directory that is copied (not just a parent of something included)
                // takes the source's metadata even when it exists (`overwriteTargetMetadata`).
                self.put_dir_from(&md, &host, &d)?;
                self.copy_dir(&s, &c, &d, links, child_include)?;
                emitted = true;
            }
        }
        Ok(emitted)
    }

    fn put_dir_from(&mut self, md: &Metadata, host: &Path, d: &str) -> Result<()> {
        let (uid, gid) = self.owner_of(md);
        let mut e = Entry::dir(d.to_string());
        e.xattrs = xattrs_of(host)?;
        e.mode = self.mode_of(md.mode(), true);
        e.uid = uid;
        e.gid = gid;
        e.mtime = md.mtime();
        self.dest.put(e, Content::None)
    }

    /// Copy one non-directory source entry to `target`.
    fn copy_entry(
        &mut self,
        s: &str,
        md: &Metadata,
        target: &str,
        links: &mut LinkMap,
    ) -> Result<()> {
        if self.dest.node(target)? == Node::Dir {
            return Err(CopyError::ReplaceDirectory {
                path: target.to_string(),
            });
        }
        let host = self.src.host(s);
        let Some(kind) = host_file_kind(md, &host, target, links)? else {
            // Sockets are not copied.
            return Ok(());
        };
        let is_symlink = matches!(kind, EntryKind::Symlink { .. });
        let xattrs = xattrs_of(&host)?;
        let (uid, gid) = self.owner_of(md);
        let mode = if is_symlink {
            0o777
        } else {
            self.mode_of(md.mode(), false)
        };
        let content = match kind {
            EntryKind::File { .. } | EntryKind::HardLink { .. } => Content::HostFile(host),
            _ => Content::None,
        };
        let entry = Entry {
            path: target.to_string(),
            kind,
            mode,
            uid,
            gid,
            mtime: md.mtime(),
            xattrs,
        };
        self.dest.put(entry, content)
    }

    /// Copy a file that exists only in memory or scratch (heredoc, URL) as fsutil copies a
    /// single file: into `dest/<name>` when dest is a directory, else as `dest`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_virtual(
        &mut self,
        name: &str,
        mode: u32,
        mtime: i64,
        size: u64,
        content: Content,
        dest_abs: &str,
        dir_like: bool,
    ) -> Result<()> {
        self.ensure_dest_path(dest_abs, dir_like)?;
        let dest_res = self.resolve_dest(dest_abs)?;
        let target = if self.dest.node(&dest_res)? == Node::Dir {
            join(&dest_res, name)
        } else {
            dest_res
        };
        let parent = parent_of(&target).to_string();
        self.mkdir_all(&parent)?;
        if self.dest.node(&target)? == Node::Dir {
            return Err(CopyError::ReplaceDirectory { path: target });
        }
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        let entry = Entry {
            path: target,
            kind: EntryKind::File { size },
            mode: self.mode_of(mode, false),
            uid,
            gid,
            mtime,
            xattrs: BTreeMap::new(),
        };
        self.dest.put(entry, content)
    }

    /// Add the existing ancestors of every planned path, fix hard links, sort.
    fn finish(self) -> Result<CopyPlan> {
        let Planner {
            dest, scratch, now, ..
        } = self;
        let mut touched = BTreeSet::new();
        for path in dest.planned.keys() {
            if dest.root_node(path)? == Node::Missing {
                touched.insert(parent_of(path).to_string());
            }
        }
        let mut ancestors: BTreeMap<String, PlannedEntry> = BTreeMap::new();
        for path in dest.planned.keys() {
            let mut p = parent_of(path);
            while !p.is_empty() {
                if !dest.planned.contains_key(p) && !ancestors.contains_key(p) {
                    let mut e = Entry::dir(p.to_string());
                    e.mtime = now;
                    if let Some(root) = dest.root {
                        let host = root.join(p);
                        if let Some(md) = lstat_opt(&host)? {
                            e.mode = md.mode() & 0o7777;
                            e.uid = md.uid();
                            e.gid = md.gid();
                            e.mtime = if touched.contains(p) { now } else { md.mtime() };
                            e.xattrs = xattrs_of(&host)?;
                        }
                    }
                    ancestors.insert(
                        p.to_string(),
                        PlannedEntry {
                            entry: e,
                            content: Content::None,
                        },
                    );
                }
                p = parent_of(p);
            }
        }
        let mut all = dest.planned;
        all.extend(ancestors);
        let mut entries: Vec<PlannedEntry> = all.into_values().collect();
        entries.sort_by(|a, b| compare_paths(&a.entry.path, &b.entry.path));
        // A hard link must point at a regular file written earlier in this layer; if the first
        // copy was replaced later in the step, the link becomes a copy.
        let mut files = BTreeSet::new();
        for pe in &mut entries {
            if let EntryKind::HardLink { target } = &pe.entry.kind {
                if !files.contains(target) {
                    if let Content::HostFile(host) = &pe.content {
                        let size = fs::metadata(host).map_err(io_err("stat", host))?.len();
                        pe.entry.kind = EntryKind::File { size };
                    }
                }
            }
            if pe.entry.is_file() {
                files.insert(pe.entry.path.clone());
            }
        }
        Ok(CopyPlan {
            entries,
            _scratch: scratch,
        })
    }
}

/// Open a planned source file for reading without following a symlink that replaced it since
/// it was planned (its parents were checked then).
fn open_nofollow(host: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(host)
        .map_err(io_err("open", host))
}

impl CopyPlan {
    /// True when the step writes nothing (e.g. a wildcard that matched no file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stream the entries into a layer blob in `store`.
    pub fn write_layer(&self, store: &BlobStore, opts: LayerOptions) -> Result<LayerInfo> {
        let mut w = LayerWriter::new(store, opts)?;
        for pe in &self.entries {
            match (&pe.content, &pe.entry.kind) {
                (Content::HostFile(host), EntryKind::File { size }) => {
                    let file = open_nofollow(host)?;
                    let found = file.metadata().map_err(io_err("stat", host))?.len();
                    if found != *size {
                        return Err(CopyError::Changed {
                            path: host.clone(),
                            expected: *size,
                            found,
                        });
                    }
                    w.append(&pe.entry, &mut io::BufReader::new(file))?;
                }
                (Content::Bytes(bytes), _) => w.append(&pe.entry, &mut bytes.as_slice())?,
                _ => w.append(&pe.entry, &mut io::empty())?,
            }
        }
        Ok(w.finish()?)
    }

    /// A digest of what the layer will hold, for cache keys: every entry's path, kind, link
    /// target, mode, owner and content bytes, in order; never mtimes.
    pub fn content_digest(&self) -> Result<Digest> {
        let mut h = Hasher::new();
        h.update(b"rbuild-copy-plan-v1\0");
        for pe in &self.entries {
            let e = &pe.entry;
            let kind = match &e.kind {
                EntryKind::File { size } => format!("file:{size}"),
                EntryKind::Dir => "dir".to_string(),
                EntryKind::Symlink { target } => format!("symlink:{target}"),
                EntryKind::HardLink { target } => format!("hardlink:{target}"),
                EntryKind::CharDevice { major, minor } => format!("char:{major}:{minor}"),
                EntryKind::BlockDevice { major, minor } => format!("block:{major}:{minor}"),
                EntryKind::Fifo => "fifo".to_string(),
            };
            h.update(format!("{}\0{kind}\0{:o}\0{}:{}\0", e.path, e.mode, e.uid, e.gid).as_bytes());
            if let EntryKind::File { .. } = e.kind {
                match &pe.content {
                    Content::HostFile(host) => {
                        let mut f = open_nofollow(host)?;
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = f.read(&mut buf).map_err(io_err("read", host))?;
                            if n == 0 {
                                break;
                            }
                            h.update(&buf[..n]);
                        }
                    }
                    Content::Bytes(b) => h.update(b),
                    Content::None => {}
                }
            }
            h.update(b"\0");
        }
        Ok(h.finish().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_detection_honours_escapes() {
        let cases = [
            ("a/b", false),
            ("*.txt", true),
            ("a/file?", true),
            ("[ab]", true),
            ("a\\*b", false),
            ("a\\\\*", true),
        ];
        for (s, want) in cases {
            assert_eq!(has_wildcard(s), want, "{s}");
        }
    }

    #[test]
    fn clean_rel_stays_under_root() {
        let cases = [
            ("/a/b/", "a/b"),
            ("a/./b", "a/b"),
            ("../x", "x"),
            ("/", ""),
            ("a/../../b", "b"),
        ];
        for (p, want) in cases {
            assert_eq!(clean_rel(p), want, "{p}");
        }
    }

    #[test]
    fn include_states() {
        let pat = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        let cases: &[(&str, &str, Inclusion)] = &[
            ("a/b.txt", "a", Inclusion::Partial),
            ("a/b.txt", "a/b.txt", Inclusion::Full),
            ("a/b.txt", "a/c.txt", Inclusion::No),
            ("a/*.txt", "a/x.txt", Inclusion::Full),
            ("a/*.txt", "b", Inclusion::No),
            ("a", "a/deep/file", Inclusion::Full),
            ("**/x", "a/b/x", Inclusion::Full),
            ("**/x", "a/b", Inclusion::Partial),
        ];
        for (p, path, want) in cases {
            let parts: Vec<&str> = path.split('/').collect();
            assert_eq!(
                include_state(&pat(p), &parts).expect("valid"),
                *want,
                "{p} {path}"
            );
        }
    }

    #[test]
    fn resolve_follows_links_in_root() {
        let links: BTreeMap<&str, &str> = [
            ("lib", "usr/lib"),
            ("abs", "/etc"),
            ("up", "../../x"),
            ("loop", "loop"),
        ]
        .into_iter()
        .collect();
        let mut lookup = |p: &str| -> Result<Node> {
            Ok(match links.get(p) {
                Some(t) => Node::Symlink(t.to_string()),
                None => Node::Missing,
            })
        };
        let r = |p: &str, policy, lookup: &mut dyn FnMut(&str) -> Result<Node>| {
            resolve(p, true, policy, p, lookup)
        };
        assert_eq!(
            r("lib/x", Policy::InRoot, &mut lookup).expect("ok"),
            "usr/lib/x"
        );
        assert_eq!(
            r("abs/passwd", Policy::InRoot, &mut lookup).expect("ok"),
            "etc/passwd"
        );
        assert_eq!(r("up", Policy::InRoot, &mut lookup).expect("ok"), "x");
        assert!(matches!(
            r("abs/passwd", Policy::Beneath, &mut lookup),
            Err(CopyError::SymlinkEscape { .. })
        ));
        assert!(matches!(
            r("up", Policy::Beneath, &mut lookup),
            Err(CopyError::SymlinkEscape { .. })
        ));
        assert!(matches!(
            r("loop", Policy::InRoot, &mut lookup),
            Err(CopyError::SymlinkLoop { .. })
        ));
        assert_eq!(
            resolve("lib", false, Policy::InRoot, "lib", &mut lookup).expect("ok"),
            "lib"
        );
    }
}
