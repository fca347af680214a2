//! Walking a build context: every entry below the context root that `.dockerignore` keeps, with
//! its `lstat` data, sorted by path bytes.
//!
//! This follows BuildKit's context transfer (fsutil's `Walk`): symlinks are reported, never
//! followed; a directory excluded by the ignore rules is skipped entirely unless a `!` rule could
//! re-include something below it ([`ContextFilter::may_reinclude_below`]), in which case it is
//! entered and kept only when some entry below it is kept (fsutil includes the parents of
//! included files). Paths are relative to the root, `/`-separated, without a leading `./`.
//! Directories are read in parallel (rayon); the output order never depends on scheduling.
//! Deviation: names that are not UTF-8 are rejected with an error naming the directory, rather
//! than transferred as raw bytes.

use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::ContextError;

/// Decides which context paths are part of the build (the `.dockerignore` rules).
pub trait ContextFilter: Sync {
    /// Is `rel` (relative, `/`-separated) excluded from the context?
    fn is_excluded(&self, rel: &str) -> Result<bool, ContextError>;
    /// Could an entry below the excluded directory `rel_dir` be re-included?
    fn may_reinclude_below(&self, rel_dir: &str) -> bool;
    /// The rule that excludes `rel`, described for a message ("rule `*.key` (line 3 of
    /// /ctx/.dockerignore)"), or `None` when no rule does; filters without rules name none.
    fn excluding_rule(&self, _rel: &str) -> Option<String> {
        None
    }
}

/// A filter that keeps everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFilter;

impl ContextFilter for NoFilter {
    fn is_excluded(&self, _rel: &str) -> Result<bool, ContextError> {
        Ok(false)
    }

    fn may_reinclude_below(&self, _rel_dir: &str) -> bool {
        false
    }
}

impl ContextFilter for rbuild_dockerfile::ignore::IgnoreRules {
    fn is_excluded(&self, rel: &str) -> Result<bool, ContextError> {
        rbuild_dockerfile::ignore::IgnoreRules::is_excluded(self, rel).map_err(|e| {
            ContextError::Filter {
                path: rel.to_string(),
                message: e.to_string(),
            }
        })
    }

    fn may_reinclude_below(&self, rel_dir: &str) -> bool {
        rbuild_dockerfile::ignore::IgnoreRules::may_reinclude_below(self, rel_dir)
    }

    fn excluding_rule(&self, rel: &str) -> Option<String> {
        // A rule that cannot be matched excludes nothing here: the walk already failed on it.
        rbuild_dockerfile::ignore::IgnoreRules::excluding_rule(self, rel)
            .ok()
            .flatten()
            .map(ToString::to_string)
    }
}

/// The type of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

impl EntryKind {
    fn of(md: &Metadata) -> Self {
        let ft = md.file_type();
        if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            debug_assert!(
                ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device()
            );
            EntryKind::Other
        }
    }

    /// A one-byte tag used in digests.
    pub fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
            EntryKind::Other => b'o',
        }
    }
}

/// The `lstat` fields the stat cache compares (never part of any key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatInfo {
    /// Inode number.
    pub ino: u64,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl StatInfo {
    /// The fields of `md`.
    pub fn of(md: &Metadata) -> Self {
        StatInfo {
            ino: md.ino(),
            mode: md.mode(),
            size: md.size(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            ctime_ns: md
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.ctime_nsec()),
        }
    }
}

/// One walked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Path relative to the context root.
    pub path: String,
    /// Entry type.
    pub kind: EntryKind,
    /// Its `lstat` data.
    pub stat: StatInfo,
}

/// Walk `root` with `filter`; entries sorted by path bytes; the root itself is not listed.
pub fn walk(root: &Path, filter: &dyn ContextFilter) -> Result<Vec<WalkEntry>, ContextError> {
    let md = fs::metadata(root).map_err(|source| ContextError::Io {
        op: "stat",
        path: root.to_path_buf(),
        source,
    })?;
    if !md.is_dir() {
        return Err(ContextError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut out = walk_dir(root, "", filter)?;
    // Per-directory order is by name; a global byte order puts `a.txt` before `a/b`.
    out.par_sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(out)
}

struct Child {
    rel: String,
    kind: EntryKind,
    stat: StatInfo,
    excluded: bool,
}

fn walk_dir(
    root: &Path,
    rel: &str,
    filter: &dyn ContextFilter,
) -> Result<Vec<WalkEntry>, ContextError> {
    let abs: PathBuf = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { op, path, source }
    };
    let mut children = Vec::new();
    for entry in fs::read_dir(&abs).map_err(io("read directory", &abs))? {
        let entry = entry.map_err(io("read directory", &abs))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(ContextError::NonUtf8Name {
                dir: abs.clone(),
                name: name.to_string_lossy().into_owned(),
            });
        };
        // DirEntry::metadata does not follow symlinks (fstatat with AT_SYMLINK_NOFOLLOW). An
        // entry removed between readdir and stat is simply not part of the context.
        let md = match entry.metadata() {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("stat", &entry.path())(e)),
        };
        let child_rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let excluded = filter.is_excluded(&child_rel)?;
        children.push(Child {
            rel: child_rel,
            kind: EntryKind::of(&md),
            stat: StatInfo::of(&md),
            excluded,
        });
    }
    // Only subdirectories become parallel tasks; files cost one stat each and stay inline.
    let subdirs: Vec<usize> = (0..children.len())
        .filter(|&i| {
            let c = &children[i];
            c.kind == EntryKind::Dir && (!c.excluded || filter.may_reinclude_below(&c.rel))
        })
        .collect();
    let mut below: Vec<Vec<WalkEntry>> = subdirs
        .par_iter()
        .map(|&i| walk_dir(root, &children[i].rel, filter))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(children.len() + below.iter().map(Vec::len).sum::<usize>());
    let mut next_subdir = subdirs.iter().zip(below.iter_mut()).peekable();
    for (i, c) in children.into_iter().enumerate() {
        let sub = match next_subdir.peek() {
            Some((&j, _)) if j == i => next_subdir.next().map(|(_, b)| std::mem::take(b)),
            _ => None,
        }
        .unwrap_or_default();
        // An excluded directory is kept only as the parent of something re-included.
        if !c.excluded || !sub.is_empty() {
            out.push(WalkEntry {
                path: c.rel,
                kind: c.kind,
                stat: c.stat,
            });
        }
        out.extend(sub);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_dockerfile::ignore::IgnoreRules;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in [
            "a.txt",
            "a/b",
            "a/c/d",
            "build/out.o",
            "build/keep/x",
            "logs/1.log",
            "z",
        ] {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            fs::write(&p, f).expect("write");
        }
        std::os::unix::fs::symlink("a.txt", dir.path().join("link")).expect("symlink");
        std::os::unix::fs::symlink("/etc", dir.path().join("a/etc")).expect("symlink");
        dir
    }

    #[test]
    fn walk_table() {
        let dir = tree();
        let cases: Vec<(&str, &str, Vec<&str>)> = vec![
            (
                "everything, byte-sorted",
                "",
                vec![
                    "a",
                    "a.txt",
                    "a/b",
                    "a/c",
                    "a/c/d",
                    "a/etc",
                    "build",
                    "build/keep",
                    "build/keep/x",
                    "build/out.o",
                    "link",
                    "logs",
                    "logs/1.log",
                    "z",
                ],
            ),
            (
                "excluded dir skipped",
                "build\nlogs",
                vec!["a", "a.txt", "a/b", "a/c", "a/c/d", "a/etc", "link", "z"],
            ),
            (
                "re-include below an excluded dir keeps its parents",
                "build\n!build/keep/x\n*.txt",
                vec![
                    "a",
                    "a/b",
                    "a/c",
                    "a/c/d",
                    "a/etc",
                    "build",
                    "build/keep",
                    "build/keep/x",
                    "link",
                    "logs",
                    "logs/1.log",
                    "z",
                ],
            ),
            (
                "glob",
                "**/*.log\na/c",
                vec![
                    "a",
                    "a.txt",
                    "a/b",
                    "a/etc",
                    "build",
                    "build/keep",
                    "build/keep/x",
                    "build/out.o",
                    "link",
                    "logs",
                    "z",
                ],
            ),
        ];
        for (name, ignore, want) in cases {
            let rules =
                IgnoreRules::from_file_text(Path::new(".dockerignore"), ignore).expect("rules");
            let got = walk(dir.path(), &rules).expect(name);
            let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, want, "{name}");
        }
    }

    #[test]
    fn kinds_and_symlinks_not_followed() {
        let dir = tree();
        let got = walk(dir.path(), &NoFilter).expect("walk");
        let kind = |p: &str| got.iter().find(|e| e.path == p).map(|e| e.kind);
        assert_eq!(kind("a"), Some(EntryKind::Dir));
        assert_eq!(kind("a.txt"), Some(EntryKind::File));
        assert_eq!(kind("a/etc"), Some(EntryKind::Symlink));
        assert_eq!(
            kind("a/etc/passwd"),
            None,
            "symlinked directories are not entered"
        );
        let size = got.iter().find(|e| e.path == "a/c/d").map(|e| e.stat.size);
        assert_eq!(size, Some(5));
    }

    #[test]
    fn root_must_be_a_directory() {
        let dir = tree();
        let err = walk(&dir.path().join("z"), &NoFilter).expect_err("a file");
        assert!(matches!(err, ContextError::NotADirectory { .. }), "{err}");
        let err = walk(&dir.path().join("missing"), &NoFilter).expect_err("missing");
        assert!(matches!(err, ContextError::Io { op: "stat", .. }), "{err}");
    }
}
