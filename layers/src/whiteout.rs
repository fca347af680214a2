//! Whiteouts: how a layer says "this path was deleted" and "this directory replaces, not merges".
//! We follow the OCI image spec (and Docker/BuildKit): a deletion of `d/x` is an empty entry
//! `d/.wh.x`; an opaque directory `d` (everything below it in lower layers is hidden) carries the
//! marker entry `d/.wh..wh..opq`, written right after `d` itself, before all of its children
//! (as containerd's tar `ChangeWriter` does; [`crate::tar::compare_paths`] encodes this order).
//! Readers, ours included, honour the marker anywhere in the layer.
//! Other `.wh..wh.` names (aufs' `.wh..wh.plnk`, `.wh..wh.aufs`) are metadata and are ignored.
//!
//! Both directions live here:
//! - naming: [`classify`] reads an entry path as a whiteout, [`whiteout_entry`] and
//!   [`opaque_entry`] build the marker entries (mode 0, root-owned, mtime 0: deterministic,
//!   where containerd would stamp the wall clock);
//! - overlayfs: [`overlay_changes`] turns an overlay *upper* directory into a layer's change list:
//!   a character device 0/0 becomes `.wh.NAME`, a directory with `trusted.overlay.opaque=y` (or
//!   `user.overlay.opaque=y` for unprivileged mounts) gets the opaque marker, and overlay's own
//!   `trusted.overlay.*`/`user.overlay.*` attributes are never emitted. Upper directories made with
//!   `redirect_dir` or `metacopy` cannot be represented as a layer and are rejected by name.
//! - the reverse, OCI whiteouts written in overlay form so that an unpacked layer can serve as an
//!   overlay `lowerdir`, is [`crate::tar::extract::WhiteoutMode::Overlay`].

use std::path::{Path, PathBuf};

use crate::diff::{Change, Changes, DiffError, FsNode};
use crate::tar::entry::{Entry, EntryKind};

/// The name prefix marking a deleted sibling: `.wh.NAME` deletes `NAME`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name prefix of whiteout metadata files (never deletions).
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The marker making its directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a whiteout entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout {
    /// Delete the path (file or whole directory) `target`.
    Remove {
        /// The layer-relative path to delete.
        target: String,
    },
    /// Hide everything lower layers put below `dir` (empty string = the root).
    Opaque {
        /// The layer-relative directory made opaque.
        dir: String,
    },
    /// An aufs metadata file: not a deletion, not content; skipped.
    Meta,
}

/// Read `path` (an [`Entry::path`]) as a whiteout; `None` for ordinary entries.
pub fn classify(path: &str) -> Option<Whiteout> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if name == OPAQUE_MARKER {
        return Some(Whiteout::Opaque {
            dir: dir.to_string(),
        });
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Some(Whiteout::Meta);
    }
    let deleted = name.strip_prefix(WHITEOUT_PREFIX)?;
    if deleted.is_empty() || deleted == "." || deleted == ".." {
        return Some(Whiteout::Meta);
    }
    Some(Whiteout::Remove {
        target: join(dir, deleted),
    })
}

/// The entry deleting `path`: `dir/.wh.name`.
pub fn whiteout_entry(path: &str) -> Entry {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    marker(join(dir, &format!("{WHITEOUT_PREFIX}{name}")))
}

/// The marker entry making `dir` opaque (`""` for the root).
pub fn opaque_entry(dir: &str) -> Entry {
    marker(join(dir, OPAQUE_MARKER))
}

/// True for the extended attributes overlayfs keeps for itself (never part of a layer).
pub fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// Turn an overlayfs upper directory into the change list of its layer, in layer order (parents
/// before children, the opaque marker first in its directory). File contents are read from
/// `upper` when the layer is written.
pub fn overlay_changes(upper: &Path) -> Result<Changes, DiffError> {
    let mut out = Vec::new();
    walk_upper(upper, "", &mut out)?;
    Ok(Changes::from_nodes(out))
}

fn walk_upper(upper: &Path, rel: &str, out: &mut Vec<Pending>) -> Result<(), DiffError> {
    let dir = if rel.is_empty() {
        upper.to_path_buf()
    } else {
        upper.join(rel)
    };
    for name in crate::diff::sorted_names(&dir)? {
        let child_rel = join(rel, &name);
        let abs = upper.join(&child_rel);
        let node = FsNode::lstat(&abs, &child_rel)?;
        if node.socket {
            continue;
        }
        for (attr, what) in [
            ("trusted.overlay.redirect", "redirect_dir"),
            ("user.overlay.redirect", "redirect_dir"),
            ("trusted.overlay.metacopy", "metacopy"),
            ("user.overlay.metacopy", "metacopy"),
        ] {
            if node.raw_xattrs.contains_key(attr) {
                return Err(DiffError::OverlayFeature {
                    path: abs,
                    feature: what,
                });
            }
        }
        if let EntryKind::CharDevice { major: 0, minor: 0 } = node.entry.kind {
            out.push(Pending {
                node: FsNode::synthetic(whiteout_entry(&child_rel)),
                source: None,
            });
            continue;
        }
        let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|a| {
                node.raw_xattrs
                    .get(*a)
                    .is_some_and(|v| v.as_slice() == b"y")
            });
        let is_dir = node.entry.is_dir();
        let source = node.entry.is_file().then_some(abs);
        out.push(Pending { source, node });
        if is_dir {
            if opaque {
                out.push(Pending {
                    node: FsNode::synthetic(opaque_entry(&child_rel)),
                    source: None,
                });
            }
            walk_upper(upper, &child_rel, out)?;
        }
    }
    Ok(())
}

/// A node found on disk with the file its content comes from (crate-internal).
pub(crate) struct Pending {
    pub(crate) node: FsNode,
    pub(crate) source: Option<PathBuf>,
}

impl From<Pending> for Change {
    fn from(p: Pending) -> Change {
        Change {
            entry: p.node.entry,
            source: p.source,
        }
    }
}

fn marker(path: String) -> Entry {
    let mut e = Entry::file(path, 0);
    e.mode = 0;
    e
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classify_table() {
        let cases: &[(&str, Option<Whiteout>)] = &[
            (
                "a/.wh.b",
                Some(Whiteout::Remove {
                    target: "a/b".into(),
                }),
            ),
            (
                ".wh.top",
                Some(Whiteout::Remove {
                    target: "top".into(),
                }),
            ),
            ("a/.wh..wh..opq", Some(Whiteout::Opaque { dir: "a".into() })),
            (".wh..wh..opq", Some(Whiteout::Opaque { dir: "".into() })),
            ("a/.wh..wh.plnk", Some(Whiteout::Meta)),
            ("a/.wh.", Some(Whiteout::Meta)),
            ("a/b", None),
            ("a/x.wh.b", None),
            (".wh.d/file", None),
        ];
        for (path, want) in cases {
            assert_eq!(&classify(path), want, "{path}");
        }
    }

    #[test]
    fn marker_entries_are_empty_files() {
        let w = whiteout_entry("a/b");
        assert_eq!((w.path.as_str(), w.mode, w.size()), ("a/.wh.b", 0, 0));
        assert_eq!(opaque_entry("").path, ".wh..wh..opq");
        assert_eq!(opaque_entry("x/y").path, "x/y/.wh..wh..opq");
    }

    #[test]
    fn overlay_xattrs_are_recognised() {
        for (name, want) in [
            ("trusted.overlay.opaque", true),
            ("user.overlay.origin", true),
            ("user.mime", false),
            ("security.capability", false),
        ] {
            assert_eq!(is_overlay_xattr(name), want, "{name}");
        }
    }

    proptest! {
        #[test]
        fn whiteout_round_trips(path in "[a-z.]{1,6}(/[a-z.]{1,6}){0,3}") {
            prop_assume!(crate::tar::entry::validate_path(&path).is_ok());
            prop_assume!(!path.split('/').any(|c| c.starts_with(WHITEOUT_PREFIX)));
            let e = whiteout_entry(&path);
            prop_assert_eq!(classify(&e.path), Some(Whiteout::Remove { target: path.clone() }));
            let o = opaque_entry(&path);
            prop_assert_eq!(classify(&o.path), Some(Whiteout::Opaque { dir: path }));
        }
    }
}
