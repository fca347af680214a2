//! Diffs: the overlayfs upper directory and the two-tree comparison must give the SAME layer bytes
//! for the same change (a real overlay mount is made; the tests run as root), and applying a diff
//! to the lower tree must give the changed tree (fixed scenario and proptest).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use rbuild_layers::diff::{tree_changes, Changes};
use rbuild_layers::tar::extract::{unpack, ExtractOptions, WhiteoutMode};
use rbuild_layers::tar::write::TarOptions;
use rbuild_layers::tar::EntryKind;
use rbuild_layers::whiteout::overlay_changes;

use crate::extract::{snapshot, SnapOpts, ALL};

/// An overlay mount `lower` + `upper` at `merged`, unmounted on drop.
struct Overlay {
    _tmp: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    merged: PathBuf,
}

impl Overlay {
    fn new(fill_lower: impl FnOnce(&Path)) -> Overlay {
        let tmp = tempfile::tempdir().unwrap();
        let [lower, upper, work, merged] =
            ["lower", "upper", "work", "merged"].map(|n| tmp.path().join(n));
        for d in [&lower, &upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        fill_lower(&lower);
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            std::ffi::CString::new(data).unwrap().as_c_str(),
        )
        .expect("mount overlay (tests run as root)");
        Overlay {
            _tmp: tmp,
            lower,
            upper,
            merged,
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.merged, rustix::mount::UnmountFlags::DETACH);
    }
}

fn listing(c: &Changes) -> Vec<String> {
    c.entries()
        .map(|e| match &e.kind {
            EntryKind::HardLink { target } => format!("{} => {target}", e.path),
            k => format!("{} ({})", e.path, k.name()),
        })
        .collect()
}

fn tar(c: &Changes) -> Vec<u8> {
    c.write_tar(Vec::new(), TarOptions::keep_mtimes()).unwrap()
}

fn clone_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
}

fn lower_tree(l: &Path) {
    fs::create_dir_all(l.join("etc/deep/er")).unwrap();
    fs::write(l.join("etc/deep/er/untouched"), "u").unwrap();
    fs::write(l.join("etc/deep/er/edit"), "before").unwrap();
    fs::write(l.join("etc/chmod"), "c").unwrap();
    fs::write(l.join("etc/chown"), "o").unwrap();
    fs::write(l.join("etc/xattr"), "x").unwrap();
    fs::write(l.join("etc/delete-me"), "d").unwrap();
    fs::create_dir_all(l.join("cache/sub")).unwrap();
    fs::write(l.join("cache/sub/blob"), "b").unwrap();
    fs::write(l.join("file-to-dir"), "f").unwrap();
    fs::create_dir_all(l.join("dir-to-file/inner")).unwrap();
    symlink("old-target", l.join("link")).unwrap();
    fs::create_dir(l.join("same")).unwrap();
    fs::write(l.join("same/file"), "same").unwrap();
}

fn change_tree(m: &Path) {
    fs::write(m.join("etc/deep/er/edit"), "after!").unwrap();
    fs::set_permissions(m.join("etc/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.join("etc/chown"), Some(1234), Some(1234)).unwrap();
    rustix::fs::lsetxattr(
        m.join("etc/xattr").as_path(),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::remove_file(m.join("etc/delete-me")).unwrap();
    fs::remove_dir_all(m.join("cache")).unwrap();
    fs::remove_file(m.join("file-to-dir")).unwrap();
    fs::create_dir(m.join("file-to-dir")).unwrap();
    fs::write(m.join("file-to-dir/now"), "n").unwrap();
    fs::remove_dir_all(m.join("dir-to-file")).unwrap();
    fs::write(m.join("dir-to-file"), "now a file").unwrap();
    fs::remove_file(m.join("link")).unwrap();
    symlink("new-target", m.join("link")).unwrap();
    fs::create_dir_all(m.join("new/dir")).unwrap();
    fs::write(m.join("new/dir/a"), "a").unwrap();
    fs::hard_link(m.join("new/dir/a"), m.join("new/b-hardlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.join("new/fifo").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

#[test]
fn overlay_upper_and_two_tree_diff_give_the_same_layer_bytes() {
    let ov = Overlay::new(lower_tree);
    change_tree(&ov.merged);
    let from_overlay = overlay_changes(&ov.upper).unwrap();
    let from_trees = tree_changes(&ov.lower, &ov.merged).unwrap();
    assert_eq!(listing(&from_overlay), listing(&from_trees));
    assert_eq!(
        listing(&from_overlay),
        [
            ".wh.cache (file)",
            "dir-to-file (file)",
            "etc (dir)",
            "etc/.wh.delete-me (file)",
            "etc/chmod (file)",
            "etc/chown (file)",
            "etc/deep (dir)",
            "etc/deep/er (dir)",
            "etc/deep/er/edit (file)",
            "etc/xattr (file)",
            "file-to-dir (dir)",
            "file-to-dir/.wh..wh..opq (file)",
            "file-to-dir/now (file)",
            "link (symlink)",
            "new (dir)",
            "new/b-hardlink (file)",
            "new/dir (dir)",
            "new/dir/a => new/b-hardlink",
            "new/fifo (fifo)",
        ]
    );
    assert!(tar(&from_overlay) == tar(&from_trees), "layer bytes differ");
    // No overlay bookkeeping leaks into the layer.
    for e in from_overlay.entries() {
        assert!(
            e.xattrs.keys().all(|k| !k.contains("overlay")),
            "{}: {:?}",
            e.path,
            e.xattrs
        );
    }
    // Applying the layer to the lower tree gives the merged view.
    let applied = tempfile::tempdir().unwrap();
    clone_tree(&ov.lower, applied.path());
    unpack(
        applied.path(),
        [&tar(&from_overlay)[..]],
        ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(snapshot(applied.path(), ALL), snapshot(&ov.merged, ALL));

    // The other direction: the layer unpacked with overlay-style whiteouts into its own
    // directory, stacked over the lower tree by a read-only overlay, shows the same tree.
    let layer_dir = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..Default::default()
    };
    unpack(layer_dir.path(), [&tar(&from_overlay)[..]], opts).unwrap();
    let stacked = tempfile::tempdir().unwrap();
    let data = format!(
        "lowerdir={}:{}",
        layer_dir.path().display(),
        ov.lower.display()
    );
    rustix::mount::mount(
        "overlay",
        stacked.path(),
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        std::ffi::CString::new(data).unwrap().as_c_str(),
    )
    .unwrap();
    let seen = snapshot(stacked.path(), ALL);
    rustix::mount::unmount(stacked.path(), rustix::mount::UnmountFlags::DETACH).unwrap();
    assert_eq!(seen, snapshot(&ov.merged, ALL));
}

#[test]
fn opaque_marker_comes_right_after_its_directory() {
    // `-a`, `+b` and `.a` sort below `.wh..wh..opq` bytewise; the marker must still come first,
    // as containerd's ChangeWriter emits it right after the directory header.
    let ov = Overlay::new(|l| {
        fs::write(l.join("p"), "was a file").unwrap();
        fs::create_dir(l.join("q")).unwrap();
        fs::write(l.join("q/old"), "o").unwrap();
    });
    fs::remove_file(ov.merged.join("p")).unwrap();
    fs::create_dir(ov.merged.join("p")).unwrap();
    for name in ["-a", "+b", ".a", "a"] {
        fs::write(ov.merged.join("p").join(name), name).unwrap();
    }
    let from_overlay = overlay_changes(&ov.upper).unwrap();
    let from_trees = tree_changes(&ov.lower, &ov.merged).unwrap();
    let want = [
        "p (dir)",
        "p/.wh..wh..opq (file)",
        "p/+b (file)",
        "p/-a (file)",
        "p/.a (file)",
        "p/a (file)",
    ];
    assert_eq!(listing(&from_overlay), want);
    assert_eq!(listing(&from_trees), want);
    assert!(tar(&from_overlay) == tar(&from_trees), "layer bytes differ");
    // The tar stream itself has the marker right after the directory header.
    let names: Vec<String> = rbuild_layers::tar::read::read_all(&tar(&from_overlay)[..])
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.path)
        .collect();
    assert_eq!(
        names,
        ["p", "p/.wh..wh..opq", "p/+b", "p/-a", "p/.a", "p/a"]
    );
}

#[test]
fn write_tree_of_an_overlay_merged_dir_keeps_lower_xattrs() {
    let ov = Overlay::new(|l| {
        fs::create_dir(l.join("d")).unwrap();
        fs::write(l.join("d/lower-file"), "l").unwrap();
        rustix::fs::lsetxattr(
            l.join("d/lower-file").as_path(),
            "user.x",
            b"lower\nvalue",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    });
    // A copied-up sibling as well, with its own attribute.
    fs::write(ov.merged.join("d/upper-file"), "u").unwrap();
    rustix::fs::lsetxattr(
        ov.merged.join("d/upper-file").as_path(),
        "user.y",
        b"upper",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let bytes =
        rbuild_layers::tar::write_tree(&ov.merged, Vec::new(), TarOptions::keep_mtimes()).unwrap();
    let entries = rbuild_layers::tar::read::read_all(&bytes[..]).unwrap();
    let xattrs = |path: &str| {
        entries
            .iter()
            .find(|(e, _)| e.path == path)
            .map(|(e, _)| e.xattrs.clone())
            .unwrap_or_else(|| panic!("{path} missing from the tar"))
    };
    assert_eq!(
        xattrs("d/lower-file").get("user.x").map(Vec::as_slice),
        Some(&b"lower\nvalue"[..])
    );
    assert_eq!(
        xattrs("d/upper-file").get("user.y").map(Vec::as_slice),
        Some(&b"upper"[..])
    );
    for (e, _) in &entries {
        assert!(
            e.xattrs.keys().all(|k| !k.contains("overlay")),
            "{}: {:?}",
            e.path,
            e.xattrs
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Remove(usize),
    Mkdir(usize),
    Symlink(usize),
    Chmod(usize),
}

/// Paths the operations act on: a small fixed universe so operations collide often.
const PATHS: &[&str] = &["a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "f", "g/h", "g"];

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let i = 0..PATHS.len();
    let op = prop_oneof![
        i.clone().prop_map(Op::Write),
        i.clone().prop_map(Op::Remove),
        i.clone().prop_map(Op::Mkdir),
        i.clone().prop_map(Op::Symlink),
        i.prop_map(Op::Chmod),
    ];
    proptest::collection::vec(op, 1..10)
}

fn base(l: &Path) {
    fs::create_dir_all(l.join("d/e")).unwrap();
    fs::write(l.join("d/x"), "x").unwrap();
    fs::write(l.join("d/e/z"), "z").unwrap();
    fs::write(l.join("a"), "a").unwrap();
    symlink("a", l.join("f")).unwrap();
    fs::create_dir(l.join("g")).unwrap();
}

/// Apply `ops` under `root`. Operations overlayfs records differently from a tree comparison are
/// skipped (see the `diff` module docs): re-creating a directory that existed in the lower tree
/// (overlay makes it opaque) and a chmod to the mode a path already has (overlay copies it up).
fn run(root: &Path, ops: &[Op], lower: &Path) {
    let mut removed_dirs = std::collections::BTreeSet::new();
    let mut chmodded = std::collections::BTreeSet::new();
    for (n, op) in ops.iter().enumerate() {
        let (i, p) = match op {
            Op::Write(i) | Op::Remove(i) | Op::Mkdir(i) | Op::Symlink(i) | Op::Chmod(i) => {
                (*i, root.join(PATHS[*i]))
            }
        };
        let parent_ok = fs::symlink_metadata(p.parent().unwrap()).is_ok_and(|m| m.is_dir());
        let exists = fs::symlink_metadata(&p).ok();
        match op {
            Op::Write(_) if parent_ok && exists.as_ref().is_none_or(|m| m.is_file()) => {
                fs::write(&p, format!("content {n}")).unwrap();
            }
            Op::Remove(_) => {
                if let Some(m) = exists {
                    if m.is_dir() {
                        removed_dirs.insert(i);
                        fs::remove_dir_all(&p).unwrap();
                    } else {
                        fs::remove_file(&p).unwrap();
                    }
                }
            }
            Op::Mkdir(_) if parent_ok && exists.is_none() => {
                let was_lower_dir =
                    fs::symlink_metadata(lower.join(PATHS[i])).is_ok_and(|m| m.is_dir());
                if !(removed_dirs.contains(&i) && was_lower_dir) {
                    fs::create_dir(&p).unwrap();
                }
            }
            Op::Symlink(_) if parent_ok && exists.is_none() => {
                symlink(format!("target-{n}"), &p).unwrap()
            }
            Op::Chmod(_) => {
                if let Some(m) = exists.filter(|m| !m.file_type().is_symlink()) {
                    if chmodded.insert(i) {
                        let mode = (m.permissions().mode() & 0o7777) ^ 0o010;
                        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                    }
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn diff_applied_to_lower_gives_upper(ops in ops()) {
        let lower = tempfile::tempdir().unwrap();
        base(lower.path());
        let upper = tempfile::tempdir().unwrap();
        clone_tree(lower.path(), upper.path());
        run(upper.path(), &ops, lower.path());
        let changes = tree_changes(lower.path(), upper.path()).unwrap();
        let applied = tempfile::tempdir().unwrap();
        clone_tree(lower.path(), applied.path());
        unpack(applied.path(), [&tar(&changes)[..]], ExtractOptions::default()).unwrap();
        let opts = SnapOpts { file_mtimes: true, dir_mtimes: true };
        prop_assert_eq!(snapshot(applied.path(), opts), snapshot(upper.path(), opts));
    }

    #[test]
    fn overlay_and_two_tree_agree_on_random_changes(ops in ops()) {
        let ov = Overlay::new(base);
        run(&ov.merged, &ops, &ov.lower);
        let a = overlay_changes(&ov.upper).unwrap();
        let b = tree_changes(&ov.lower, &ov.merged).unwrap();
        prop_assert_eq!(listing(&a), listing(&b));
        prop_assert!(tar(&a) == tar(&b));
    }
}
