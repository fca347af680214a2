//! Diffs: the change list between a lower root file system and its changed copy, as the entries of
//! the layer that turns one into the other. This is the path used when overlayfs is not available
//! (the overlay path is [`crate::whiteout::overlay_changes`]); both produce a [`Changes`] value and,
//! for the same change, the same layer bytes.
//!
//! Rules, following containerd's `fs.Changes` double walk and the overlayfs upper directory it must
//! agree with:
//! - a path only in the changed tree is added, with its whole subtree;
//! - a path only in the lower tree is deleted: one whiteout `.wh.NAME`, never one per descendant;
//! - a path in both is changed when its type, mode, owner, xattrs, mtime (to the nanosecond),
//!   link target, device numbers, size or content differ. Content is compared whenever everything
//!   else is equal, so an edit that preserved size and mtime is still found (correctness first);
//!   directories are compared on metadata only, including mtime, as overlayfs copies a directory
//!   up when anything inside it changes;
//! - a non-directory replaced by a directory gets the opaque marker, as overlayfs marks a
//!   directory created over a whiteout opaque (checked against a real mount by the tests); a
//!   directory replaced by anything else is simply overwritten by the new entry;
//! - every ancestor directory of a change is emitted (with its new metadata), as overlayfs copies
//!   parents up and containerd's tar writer includes parents;
//! - hard links are grouped by device and inode among the emitted entries: the first path in layer
//!   order carries the content, later ones are hard links to it.
//!
//! Entries come out in [`compare_paths`] order (the order the tar writer requires, containerd's
//! `comparePath`), in which the opaque marker comes right after its directory, before every
//! sibling, as containerd's tar `ChangeWriter` emits it.
//!
//! Known deviation from overlayfs: `rm -rf d && mkdir d` on overlay gives an opaque `d`, while the
//! two-tree diff cannot tell it from deleting each child and gives one whiteout per child. The
//! unpacked result is the same. Xattrs follow the tar writer: `system.*` and `security.selinux`
//! are not recorded, nor are overlayfs' own attributes; sockets are skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::store::{BlobStore, LayerError, LayerInfo, LayerOptions, LayerWriter};
use crate::tar::entry::{compare_names, compare_paths, Entry, EntryKind, MODE_MASK};
use crate::tar::write::{TarError, TarWriter};
use crate::tar::xattr::XattrError;
use crate::whiteout::{is_overlay_xattr, opaque_entry, whiteout_entry, Pending};

/// Xattr namespaces never recorded (same policy as [`crate::tar::write`]).
const SKIPPED_XATTRS: &[&str] = &["system.", "security.selinux"];

/// Why a change list could not be computed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file name, link target or xattr name is not UTF-8.
    #[error("{what} of {path} is not valid utf-8")]
    NotUtf8 {
        /// The path concerned.
        path: PathBuf,
        /// Which part.
        what: &'static str,
    },
    /// The overlay upper directory uses a feature a layer cannot express.
    #[error("overlay upper entry {path} uses {feature}, which a layer cannot represent (mount without it)")]
    OverlayFeature {
        /// The upper entry.
        path: PathBuf,
        /// `redirect_dir` or `metacopy`.
        feature: &'static str,
    },
    /// Writing the change list as tar failed.
    #[error("writing changes as tar: {0}")]
    Tar(#[from] TarError),
    /// Writing the change list as a layer blob failed.
    #[error("writing changes as a layer: {0}")]
    Layer(#[from] LayerError),
}

type Result<T, E = DiffError> = std::result::Result<T, E>;

/// One entry of a layer and the file its content is read from (only for regular files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry as it goes into the layer.
    pub entry: Entry,
    /// The host file holding the content of a regular file; `None` for everything else.
    pub source: Option<PathBuf>,
}

/// The entries of one layer in tar order, ready for [`TarWriter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    items: Vec<Change>,
}

impl Changes {
    /// The changes in layer order.
    pub fn as_slice(&self) -> &[Change] {
        &self.items
    }

    /// The entries in layer order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter().map(|c| &c.entry)
    }

    /// True when the two trees are identical (an empty layer).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Append every change to `tar`, reading file contents from their sources.
    pub fn append_to<W: Write>(&self, tar: &mut TarWriter<W>) -> Result<()> {
        for change in &self.items {
            match (&change.entry.kind, &change.source) {
                (EntryKind::File { .. }, Some(source)) => {
                    let mut f = fs::File::open(source).map_err(|e| io_err("open", source, e))?;
                    tar.append(&change.entry, &mut f)?;
                }
                _ => tar.append(&change.entry, &mut io::empty())?,
            }
        }
        Ok(())
    }

    /// Write a complete tar archive of the changes into `out` (see [`TarWriter`] for the options).
    pub fn write_tar<W: Write>(&self, out: W, opts: crate::tar::write::TarOptions) -> Result<W> {
        let mut tar = TarWriter::new(out, opts);
        self.append_to(&mut tar)?;
        Ok(tar.finish()?)
    }

    /// Write the changes as one layer blob into `store` (one streaming pass: diff ID, compression
    /// and blob digest together).
    pub fn write_layer(&self, store: &BlobStore, opts: LayerOptions) -> Result<LayerInfo> {
        let mut w = LayerWriter::new(store, opts)?;
        for change in &self.items {
            match (&change.entry.kind, &change.source) {
                (EntryKind::File { .. }, Some(source)) => {
                    let mut f = fs::File::open(source).map_err(|e| io_err("open", source, e))?;
                    w.append(&change.entry, &mut f)?;
                }
                _ => w.append(&change.entry, &mut io::empty())?,
            }
        }
        Ok(w.finish()?)
    }

    /// Sort pending nodes' changes into layer order and turn later members of a hard-link group
    /// into links to the first.
    pub(crate) fn from_nodes(mut nodes: Vec<Pending>) -> Changes {
        nodes.sort_by(|a, b| compare_paths(&a.node.entry.path, &b.node.entry.path));
        let mut first: HashMap<(u64, u64), String> = HashMap::new();
        let mut items = Vec::with_capacity(nodes.len());
        for mut p in nodes {
            if p.node.nlink > 1 && !p.node.entry.is_dir() {
                match first.get(&(p.node.dev, p.node.ino)) {
                    Some(target) => {
                        p.node.entry.kind = EntryKind::HardLink {
                            target: target.clone(),
                        };
                        p.source = None;
                    }
                    None => {
                        first.insert((p.node.dev, p.node.ino), p.node.entry.path.clone());
                    }
                }
            }
            items.push(Change::from(p));
        }
        Changes { items }
    }
}

/// The changes turning the tree at `lower` into the tree at `upper` (both directories, compared
/// recursively; the roots themselves are not part of the layer).
pub fn tree_changes(lower: &Path, upper: &Path) -> Result<Changes> {
    let mut out = Vec::new();
    diff_dir(lower, upper, "", &mut out)?;
    // Every ancestor of a change goes in with its new metadata.
    let emitted: BTreeSet<String> = out.iter().map(|p| p.node.entry.path.clone()).collect();
    let mut parents = BTreeSet::new();
    for path in &emitted {
        let mut cur = path.as_str();
        while let Some((parent, _)) = cur.rsplit_once('/') {
            if !emitted.contains(parent) {
                parents.insert(parent.to_string());
            }
            cur = parent;
        }
    }
    for parent in parents {
        let abs = upper.join(&parent);
        out.push(Pending {
            node: FsNode::lstat(&abs, &parent)?,
            source: None,
        });
    }
    Ok(Changes::from_nodes(out))
}

fn diff_dir(lower: &Path, upper: &Path, rel: &str, out: &mut Vec<Pending>) -> Result<()> {
    let lower_names: BTreeSet<String> = sorted_names(&lower.join(rel))?.into_iter().collect();
    let upper_names: BTreeSet<String> = sorted_names(&upper.join(rel))?.into_iter().collect();
    for name in lower_names.union(&upper_names) {
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let (l_abs, u_abs) = (lower.join(&child), upper.join(&child));
        match (lower_names.contains(name), upper_names.contains(name)) {
            (true, false) => {
                if !is_socket(&l_abs)? {
                    out.push(Pending {
                        node: FsNode::synthetic(whiteout_entry(&child)),
                        source: None,
                    });
                }
            }
            (false, true) => add_subtree(upper, &child, out)?,
            _ => {
                let l = FsNode::lstat(&l_abs, &child)?;
                let u = FsNode::lstat(&u_abs, &child)?;
                if u.socket {
                    if !l.socket {
                        out.push(Pending {
                            node: FsNode::synthetic(whiteout_entry(&child)),
                            source: None,
                        });
                    }
                    continue;
                }
                match (l.entry.is_dir(), u.entry.is_dir()) {
                    (true, true) => {
                        if !same_metadata(&l, &u) {
                            out.push(Pending {
                                node: u,
                                source: None,
                            });
                        }
                        diff_dir(lower, upper, &child, out)?;
                    }
                    (false, true) => {
                        out.push(Pending {
                            node: u,
                            source: None,
                        });
                        out.push(Pending {
                            node: FsNode::synthetic(opaque_entry(&child)),
                            source: None,
                        });
                        add_children(upper, &child, out)?;
                    }
                    _ => {
                        if !same_metadata(&l, &u) || !same_content(&l_abs, &u_abs, &l, &u)? {
                            let source = u.entry.is_file().then_some(u_abs);
                            out.push(Pending { node: u, source });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn add_subtree(root: &Path, rel: &str, out: &mut Vec<Pending>) -> Result<()> {
    let abs = root.join(rel);
    let node = FsNode::lstat(&abs, rel)?;
    if node.socket {
        return Ok(());
    }
    let is_dir = node.entry.is_dir();
    let source = node.entry.is_file().then(|| abs.clone());
    out.push(Pending { node, source });
    if is_dir {
        add_children(root, rel, out)?;
    }
    Ok(())
}

fn add_children(root: &Path, rel: &str, out: &mut Vec<Pending>) -> Result<()> {
    for name in sorted_names(&root.join(rel))? {
        add_subtree(root, &format!("{rel}/{name}"), out)?;
    }
    Ok(())
}

fn same_metadata(l: &FsNode, u: &FsNode) -> bool {
    l.entry.kind == u.entry.kind
        && l.entry.mode == u.entry.mode
        && l.entry.uid == u.entry.uid
        && l.entry.gid == u.entry.gid
        && l.entry.mtime == u.entry.mtime
        && l.mtime_nsec == u.mtime_nsec
        && l.entry.xattrs == u.entry.xattrs
}

/// Byte-compare two regular files of equal size (anything else has no content to compare).
fn same_content(l_abs: &Path, u_abs: &Path, l: &FsNode, u: &FsNode) -> Result<bool> {
    if !(l.entry.is_file() && u.entry.is_file()) {
        return Ok(true);
    }
    if l.dev == u.dev && l.ino == u.ino {
        return Ok(true);
    }
    let mut a = fs::File::open(l_abs).map_err(|e| io_err("open", l_abs, e))?;
    let mut b = fs::File::open(u_abs).map_err(|e| io_err("open", u_abs, e))?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut a, &mut ba).map_err(|e| io_err("read", l_abs, e))?;
        let m = read_full(&mut b, &mut bb).map_err(|e| io_err("read", u_abs, e))?;
        if ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_socket(abs: &Path) -> Result<bool> {
    let meta = fs::symlink_metadata(abs).map_err(|e| io_err("lstat", abs, e))?;
    Ok(meta.file_type().is_socket())
}

/// The names in directory `dir`, in [`compare_names`] order (crate-internal).
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| io_err("read dir", dir, e))? {
        let item = item.map_err(|e| io_err("read dir", dir, e))?;
        let name = item
            .file_name()
            .into_string()
            .map_err(|n| DiffError::NotUtf8 {
                path: dir.join(n),
                what: "file name",
            })?;
        names.push(name);
    }
    names.sort_unstable_by(|a, b| compare_names(a, b));
    Ok(names)
}

/// An object found on disk: its entry plus what comparison and link grouping need.
pub(crate) struct FsNode {
    pub(crate) entry: Entry,
    pub(crate) mtime_nsec: i64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    pub(crate) socket: bool,
    /// Every xattr, overlay ones included (the entry keeps only recordable ones).
    pub(crate) raw_xattrs: BTreeMap<String, Vec<u8>>,
}

impl FsNode {
    /// A node for an entry that has no file behind it (whiteouts, markers).
    pub(crate) fn synthetic(entry: Entry) -> FsNode {
        FsNode {
            entry,
            mtime_nsec: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            socket: false,
            raw_xattrs: BTreeMap::new(),
        }
    }

    /// `lstat` `abs` and read its xattrs; `rel` becomes the entry path.
    pub(crate) fn lstat(abs: &Path, rel: &str) -> Result<FsNode> {
        let meta = fs::symlink_metadata(abs).map_err(|e| io_err("lstat", abs, e))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File { size: meta.len() }
        } else if ft.is_symlink() {
            let t = fs::read_link(abs).map_err(|e| io_err("readlink", abs, e))?;
            let target = t
                .into_os_string()
                .into_string()
                .map_err(|_| DiffError::NotUtf8 {
                    path: abs.to_path_buf(),
                    what: "symlink target",
                })?;
            EntryKind::Symlink { target }
        } else if let Some(device) = EntryKind::device(&meta) {
            device
        } else {
            EntryKind::Fifo
        };
        let raw_xattrs = if ft.is_socket() {
            BTreeMap::new()
        } else {
            read_xattrs(abs)?
        };
        let xattrs = raw_xattrs
            .iter()
            .filter(|(k, _)| {
                !is_overlay_xattr(k) && !SKIPPED_XATTRS.iter().any(|s| k.starts_with(s))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let entry = Entry {
            path: rel.to_string(),
            kind,
            mode: meta.mode() & MODE_MASK,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            xattrs,
        };
        Ok(FsNode {
            entry,
            mtime_nsec: meta.mtime_nsec(),
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            socket: ft.is_socket(),
            raw_xattrs,
        })
    }
}

/// Every extended attribute of `path` (not following a final symlink), overlay ones included;
/// none where unsupported. Read by the helper the tar writer uses, [`crate::tar::xattr`].
pub(crate) fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    crate::tar::xattr::read_all(path).map_err(|e| match e {
        XattrError::List(source) => io_err("list xattrs", path, source),
        XattrError::Get { source, .. } => io_err("read xattr", path, source),
        XattrError::NotUtf8(_) => DiffError::NotUtf8 {
            path: path.to_path_buf(),
            what: "xattr name",
        },
    })
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> DiffError {
    DiffError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn paths(c: &Changes) -> Vec<String> {
        c.entries()
            .map(|e| match &e.kind {
                EntryKind::HardLink { target } => format!("{} => {target}", e.path),
                EntryKind::Dir => format!("{}/", e.path),
                _ => e.path.clone(),
            })
            .collect()
    }

    /// Copy a tree keeping mtimes, so the copy compares equal to the original.
    fn clone_tree(from: &Path, to: &Path) {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .status();
        assert!(status.expect("cp runs").success());
    }

    #[test]
    fn identical_trees_have_no_changes() {
        let lower = tempfile::tempdir().unwrap();
        fs::create_dir_all(lower.path().join("a/b")).unwrap();
        fs::write(lower.path().join("a/b/f"), "x").unwrap();
        let upper = tempfile::tempdir().unwrap();
        clone_tree(lower.path(), upper.path());
        assert!(tree_changes(lower.path(), upper.path()).unwrap().is_empty());
    }

    #[test]
    fn add_change_delete_and_replace() {
        let lower = tempfile::tempdir().unwrap();
        let l = lower.path();
        fs::create_dir_all(l.join("keep/deep")).unwrap();
        fs::write(l.join("keep/deep/same"), "same").unwrap();
        fs::write(l.join("keep/edit"), "aaaa").unwrap();
        fs::write(l.join("keep/chmod"), "c").unwrap();
        fs::create_dir_all(l.join("gone/sub")).unwrap();
        fs::write(l.join("gone/sub/f"), "f").unwrap();
        fs::write(l.join("was_file"), "f").unwrap();
        fs::create_dir(l.join("was_dir")).unwrap();
        symlink("x", l.join("link")).unwrap();
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        clone_tree(l, u);
        // Same size, mtime restored: only content comparison can see it.
        let before = fs::metadata(u.join("keep/edit"))
            .unwrap()
            .modified()
            .unwrap();
        fs::write(u.join("keep/edit"), "bbbb").unwrap();
        fs::File::options()
            .write(true)
            .open(u.join("keep/edit"))
            .unwrap()
            .set_modified(before)
            .unwrap();
        fs::set_permissions(u.join("keep/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_dir_all(u.join("gone")).unwrap();
        fs::remove_file(u.join("was_file")).unwrap();
        fs::create_dir(u.join("was_file")).unwrap();
        fs::write(u.join("was_file/in"), "i").unwrap();
        fs::remove_dir(u.join("was_dir")).unwrap();
        fs::write(u.join("was_dir"), "now a file").unwrap();
        fs::remove_file(u.join("link")).unwrap();
        symlink("y", u.join("link")).unwrap();
        fs::write(u.join("new1"), "n").unwrap();
        fs::hard_link(u.join("new1"), u.join("new2")).unwrap();
        let c = tree_changes(l, u).unwrap();
        assert_eq!(
            paths(&c),
            [
                ".wh.gone",
                "keep/",
                "keep/chmod",
                "keep/edit",
                "link",
                "new1",
                "new2 => new1",
                "was_dir",
                "was_file/",
                "was_file/.wh..wh..opq",
                "was_file/in",
            ]
        );
        let mut out = Vec::new();
        for ch in c.as_slice() {
            out.push((ch.entry.path.clone(), ch.source.is_some()));
        }
        assert!(out.contains(&("keep/edit".into(), true)));
        assert!(out.contains(&("new2".into(), false)));
    }

    #[test]
    fn written_tar_reads_back() {
        let lower = tempfile::tempdir().unwrap();
        fs::write(lower.path().join("old"), "o").unwrap();
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/f"), "hello").unwrap();
        let c = tree_changes(lower.path(), upper.path()).unwrap();
        let bytes = c
            .write_tar(Vec::new(), crate::tar::write::TarOptions::default())
            .unwrap();
        let back = crate::tar::read::read_all(&bytes[..]).unwrap();
        let names: Vec<_> = back
            .iter()
            .map(|(e, d)| (e.path.clone(), d.clone()))
            .collect();
        assert_eq!(
            names,
            [
                (".wh.old".into(), vec![]),
                ("d".into(), vec![]),
                ("d/f".into(), b"hello".to_vec())
            ]
        );
    }
}
