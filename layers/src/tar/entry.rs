//! The entry model of a layer: one [`Entry`] per file system object, independent of where its bytes
//! come from (a directory on disk, a tar stream, a synthesized list). The tar writer consumes it, the
//! tar reader produces it, and diffing compares it.
//!
//! Invariants: `path` is relative, `/`-separated, has no leading `/`, no trailing `/`, no `.` or `..`
//! components and no empty components (see [`validate_path`]). `mode` holds only the permission bits
//! including setuid/setgid/sticky (`0o7777`); the file type lives in [`EntryKind`]. A hard link's
//! `target` is the path of the first entry with the same inode, as in the tar format (Docker and
//! BuildKit emit hard links the same way).

use std::collections::BTreeMap;

/// The permission bits an [`Entry::mode`] may hold (rwx for all, plus setuid, setgid and sticky).
pub const MODE_MASK: u32 = 0o7777;

/// One entry of a layer, independent of where its bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated path with no leading `/` and no trailing `/`.
    pub path: String,
    /// What kind of object this is, with the kind-specific data.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time in seconds since the Unix epoch.
    pub mtime: i64,
    /// Extended attributes by full name (`user.x`, `security.capability`), sorted.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// The type of an [`Entry`] and the data only that type has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of `size` bytes.
    File {
        /// Length of the content in bytes.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link pointing at `target` (stored verbatim, never resolved).
    Symlink {
        /// The link text.
        target: String,
    },
    /// A hard link to the entry at `target` (a layer-relative path emitted earlier in the stream).
    HardLink {
        /// Path of the first entry with the same inode.
        target: String,
    },
    /// A character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

impl EntryKind {
    /// The kind of a character or block device, with the major and minor numbers of its
    /// `st_rdev`; `None` for any other file type.
    pub fn device(md: &std::fs::Metadata) -> Option<EntryKind> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = md.file_type();
        let (major, minor) = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
        if ft.is_char_device() {
            Some(EntryKind::CharDevice { major, minor })
        } else if ft.is_block_device() {
            Some(EntryKind::BlockDevice { major, minor })
        } else {
            None
        }
    }

    /// A short lowercase name of the kind, for messages (`file`, `dir`, `symlink`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File { .. } => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::HardLink { .. } => "hardlink",
            EntryKind::CharDevice { .. } => "char device",
            EntryKind::BlockDevice { .. } => "block device",
            EntryKind::Fifo => "fifo",
        }
    }
}

impl Entry {
    /// A regular file with default metadata (mode 0644, root-owned, mtime 0, no xattrs).
    pub fn file(path: impl Into<String>, size: u64) -> Self {
        Self::with_kind(path, EntryKind::File { size }, 0o644)
    }

    /// A directory with default metadata (mode 0755, root-owned, mtime 0, no xattrs).
    pub fn dir(path: impl Into<String>) -> Self {
        Self::with_kind(path, EntryKind::Dir, 0o755)
    }

    /// A symlink with default metadata (mode 0777, root-owned, mtime 0, no xattrs).
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::with_kind(
            path,
            EntryKind::Symlink {
                target: target.into(),
            },
            0o777,
        )
    }

    /// A hard link to `target` with default metadata (mode 0644, root-owned, mtime 0, no xattrs).
    pub fn hardlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::with_kind(
            path,
            EntryKind::HardLink {
                target: target.into(),
            },
            0o644,
        )
    }

    /// An entry of any kind with the given mode and otherwise default metadata.
    pub fn with_kind(path: impl Into<String>, kind: EntryKind, mode: u32) -> Self {
        Entry {
            path: path.into(),
            kind,
            mode: mode & MODE_MASK,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }

    /// True for regular files.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. })
    }

    /// The content length: the file size for regular files, 0 for everything else.
    pub fn size(&self) -> u64 {
        match self.kind {
            EntryKind::File { size } => size,
            _ => 0,
        }
    }

    /// The parent directory's path, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<&str> {
        self.path.rsplit_once('/').map(|(p, _)| p)
    }

    /// The last path component.
    pub fn file_name(&self) -> &str {
        self.path
            .rsplit_once('/')
            .map_or(self.path.as_str(), |(_, n)| n)
    }
}

/// Why a string is not a valid [`Entry::path`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("empty entry path")]
    Empty,
    /// The path starts with `/`.
    #[error("entry path `{0}` is absolute")]
    Absolute(String),
    /// The path has an empty, `.` or `..` component, or a trailing `/`.
    #[error("entry path `{0}` has an empty, `.` or `..` component")]
    BadComponent(String),
    /// The path contains a NUL byte.
    #[error("entry path `{0}` contains a nul byte")]
    Nul(String),
}

/// Check that `path` follows the [`Entry::path`] invariants.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_string()));
    }
    if path.contains('\0') {
        return Err(PathError::Nul(path.to_string()));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(PathError::BadComponent(path.to_string()));
    }
    Ok(())
}

/// Turn a path as found in a tar header or given by a caller (`./a/b/`, `/a//b`) into the
/// [`Entry::path`] form (`a/b`); `None` when nothing remains (the root) or a `..` component appears.
pub fn normalize_path(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// Order two entry paths in layer order: a depth-first walk in which a directory comes right
/// before its contents and each directory's children are in bytewise name order (see
/// [`compare_names`]), so `a/z` comes before `a-b` and `a.txt`. This is containerd's `comparePath`
/// (bytewise with `/` below every other byte) plus one rule from its tar `ChangeWriter`: the opaque
/// marker `.wh..wh..opq` is emitted right after its directory's header, so it sorts before every
/// sibling, even `-x` or `+x`.
pub fn compare_paths(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => match compare_names(x, y) {
                std::cmp::Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// Order two names within one directory: the opaque marker `.wh..wh..opq` first, then bytewise.
pub fn compare_names(a: &str, b: &str) -> std::cmp::Ordering {
    use crate::whiteout::OPAQUE_MARKER;
    match (a == OPAQUE_MARKER, b == OPAQUE_MARKER) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.as_bytes().cmp(b.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_kind_from_metadata() {
        let md = |p: &str| std::fs::symlink_metadata(p).expect("stat");
        let cases = [
            (
                "/dev/null",
                Some(EntryKind::CharDevice { major: 1, minor: 3 }),
            ),
            ("/", None),
            (env!("CARGO_MANIFEST_PATH"), None),
        ];
        for (path, want) in cases {
            assert_eq!(EntryKind::device(&md(path)), want, "{path}");
        }
    }

    macro_rules! path_case {
        ($name:ident, $input:expr, ok) => {
            #[test]
            fn $name() {
                assert_eq!(validate_path($input), Ok(()));
            }
        };
        ($name:ident, $input:expr, $err:pat) => {
            #[test]
            fn $name() {
                assert!(
                    matches!(validate_path($input), Err($err)),
                    "{:?}",
                    validate_path($input)
                );
            }
        };
    }

    path_case!(plain_name_is_valid, "a", ok);
    path_case!(nested_is_valid, "a/b/c", ok);
    path_case!(dots_inside_names_are_valid, "a/.b/c..", ok);
    path_case!(empty_is_rejected, "", PathError::Empty);
    path_case!(leading_slash_is_rejected, "/a", PathError::Absolute(_));
    path_case!(trailing_slash_is_rejected, "a/", PathError::BadComponent(_));
    path_case!(double_slash_is_rejected, "a//b", PathError::BadComponent(_));
    path_case!(dot_is_rejected, "a/./b", PathError::BadComponent(_));
    path_case!(dotdot_is_rejected, "a/../b", PathError::BadComponent(_));
    path_case!(nul_is_rejected, "a\0b", PathError::Nul(_));

    #[test]
    fn normalize_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("./a/b/", Some("a/b")),
            ("/a//b", Some("a/b")),
            ("a", Some("a")),
            ("./", None),
            ("/", None),
            ("a/../b", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn compare_paths_puts_children_right_after_their_parent() {
        let cases: &[&[&str]] = &[
            &["A", "a", "a/0", "a/z", "a/z/y", "a-b", "a.txt", "b"],
            // The opaque marker comes right after its directory, before `+`, `-` and `.` names.
            &[
                "d",
                "d/.wh..wh..opq",
                "d/+b",
                "d/-a",
                "d/.a",
                "d/.wh.x",
                "d/a",
                "d/a/.wh..wh..opq",
                "d/a/!",
                "d-",
            ],
            &[".wh..wh..opq", "+", "-", ".a", "a"],
        ];
        for want in cases {
            let mut got = want.to_vec();
            got.reverse();
            got.sort_by(|x, y| compare_paths(x, y));
            assert_eq!(&got, want);
            for (i, x) in want.iter().enumerate() {
                for (j, y) in want.iter().enumerate() {
                    assert_eq!(compare_paths(x, y), i.cmp(&j), "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn compare_names_table() {
        use std::cmp::Ordering::*;
        let cases = [
            (".wh..wh..opq", "-a", Less),
            ("+b", ".wh..wh..opq", Greater),
            (".wh..wh..opq", ".wh..wh..opq", Equal),
            (".wh..wh..opq", ".wh..wh..opq2", Less),
            ("a", "b", Less),
            ("é", "z", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_names(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn parent_and_name() {
        let e = Entry::file("a/b/c", 3);
        assert_eq!(e.parent(), Some("a/b"));
        assert_eq!(e.file_name(), "c");
        assert_eq!(Entry::dir("top").parent(), None);
        assert_eq!(e.size(), 3);
        assert_eq!(Entry::dir("x").size(), 0);
    }
}
