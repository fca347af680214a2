//! Applying layers: a rich tree survives write → unpack unchanged (owners, modes, setuid, links,
//! devices, xattrs, mtimes), whatever the compression; layer stacks apply whiteouts and opaque
//! directories; random trees round-trip (proptest). Also home of the tree snapshot helper the other
//! modules compare with.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use rbuild_layers::tar::extract::{unpack, ExtractOptions, Extractor, Resolve};
use rbuild_layers::tar::write::{write_tree, TarOptions, TarWriter};
use rbuild_layers::tar::Entry;
use rbuild_layers::whiteout::{opaque_entry, whiteout_entry};

/// What a test compares about one file system object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `dir`, `file:<content>`, `symlink:<target>`, `char:<maj>:<min>`, `block:…`, `fifo`.
    pub kind: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Seconds; `None` when not compared.
    pub mtime: Option<i64>,
    /// `user.*`, `trusted.*` (not overlay) and `security.capability`.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For hard-linked files: the first path (sorted) of the inode.
    pub link_group: Option<String>,
}

/// Options of [`snapshot`].
#[derive(Debug, Clone, Copy)]
pub struct SnapOpts {
    /// Compare mtimes of non-directories.
    pub file_mtimes: bool,
    /// Compare mtimes of directories.
    pub dir_mtimes: bool,
}

/// Every object under `root` (not `root` itself), by relative path.
pub fn snapshot(root: &Path, opts: SnapOpts) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, "", opts, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    rel: &str,
    opts: SnapOpts,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let dir = root.join(rel);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let abs = root.join(&path);
        let m = fs::symlink_metadata(&abs).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_file() {
            format!("file:{}", String::from_utf8_lossy(&fs::read(&abs).unwrap()))
        } else if ft.is_symlink() {
            format!("symlink:{}", fs::read_link(&abs).unwrap().display())
        } else if ft.is_char_device() {
            format!(
                "char:{}:{}",
                rustix::fs::major(m.rdev()),
                rustix::fs::minor(m.rdev())
            )
        } else if ft.is_block_device() {
            format!(
                "block:{}:{}",
                rustix::fs::major(m.rdev()),
                rustix::fs::minor(m.rdev())
            )
        } else {
            "fifo".to_string()
        };
        let link_group = if !ft.is_dir() && m.nlink() > 1 {
            Some(
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| path.clone())
                    .clone(),
            )
        } else {
            None
        };
        let compare_mtime = if ft.is_dir() {
            opts.dir_mtimes
        } else {
            opts.file_mtimes
        };
        out.insert(
            path.clone(),
            Node {
                kind,
                mode: if ft.is_symlink() {
                    0o777
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                mtime: compare_mtime.then_some(m.mtime()),
                xattrs: xattrs(&abs),
                link_group,
            },
        );
        if ft.is_dir() {
            walk(root, &path, opts, out, inodes);
        }
    }
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut buf[..]) else {
        return out;
    };
    let names: Vec<String> = buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    for name in names {
        let keep = (name.starts_with("user.")
            || name.starts_with("trusted.")
            || name == "security.capability")
            && !name.contains(".overlay.");
        if keep {
            let mut v = vec![0u8; 64 * 1024];
            let n = rustix::fs::lgetxattr(path, name.as_str(), &mut v[..]).unwrap();
            v.truncate(n);
            out.insert(name, v);
        }
    }
    out
}

/// Everything compared.
pub const ALL: SnapOpts = SnapOpts {
    file_mtimes: true,
    dir_mtimes: true,
};

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with one of everything a layer can hold (we are root: owners and devices work).
pub fn rich_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    fs::create_dir_all(p("etc/conf.d")).unwrap();
    fs::create_dir_all(p("usr/bin")).unwrap();
    fs::create_dir(p("private")).unwrap();
    fs::create_dir(p("dev")).unwrap();
    fs::write(p("etc/hostname"), "rbuild\n").unwrap();
    fs::write(p("etc/conf.d/empty"), "").unwrap();
    fs::write(p("usr/bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(p("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(p("usr/bin/tool"), p("usr/bin/tool-alias")).unwrap();
    symlink("tool", p("usr/bin/rel-link")).unwrap();
    symlink("/etc/hostname", p("abs-link")).unwrap();
    symlink("does/not/exist", p("dangling")).unwrap();
    let long = format!("{}/{}", "d".repeat(90), "f".repeat(90));
    fs::create_dir(p(&"d".repeat(90))).unwrap();
    fs::write(p(&long), "long").unwrap();
    fs::write(p("ünïcødé"), "utf8").unwrap();
    fs::write(p("private/secret"), "s").unwrap();
    fs::set_permissions(p("private/secret"), fs::Permissions::from_mode(0o000)).unwrap();
    std::os::unix::fs::chown(p("private/secret"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::chown(p("private"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(p("private"), fs::Permissions::from_mode(0o750)).unwrap();
    rustix::fs::lsetxattr(
        p("etc/hostname").as_path(),
        "user.note",
        b"hello\0bin",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        p("etc").as_path(),
        "user.dir",
        b"d",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/null").as_path(),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p("dev/fifo").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    // mknod honours the umask; set the modes explicitly.
    fs::set_permissions(p("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(p("dev/fifo"), fs::Permissions::from_mode(0o640)).unwrap();
    let mut all: Vec<String> = snapshot(root, ALL).into_keys().collect();
    all.reverse(); // children before parents, so setting a child does not move the parent later
    for (i, path) in all.iter().enumerate() {
        set_mtime(&root.join(path), 1_600_000_000 + i as i64);
    }
}

fn tar_of(dir: &Path) -> Vec<u8> {
    write_tree(dir, Vec::new(), TarOptions::keep_mtimes()).unwrap()
}

#[test]
fn rich_tree_round_trips_in_every_compression_and_resolver() {
    let src = tempfile::tempdir().unwrap();
    rich_tree(src.path());
    let plain = tar_of(src.path());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    let want = snapshot(src.path(), ALL);
    for (name, bytes) in [("plain", &plain), ("gzip", &gz), ("zstd", &zst)] {
        for resolve in [Resolve::Kernel, Resolve::Walk] {
            let dst = tempfile::tempdir().unwrap();
            unpack(
                dst.path(),
                [&bytes[..]],
                ExtractOptions {
                    resolve,
                    ..Default::default()
                },
            )
            .unwrap();
            let got = snapshot(dst.path(), ALL);
            assert_eq!(got, want, "{name} {resolve:?}");
        }
    }
}

fn layer(entries: &[(Entry, &[u8])]) -> Vec<u8> {
    let mut tw = TarWriter::new(Vec::new(), TarOptions::keep_mtimes());
    for (e, data) in entries {
        tw.append(e, &mut &data[..]).unwrap();
    }
    tw.finish().unwrap()
}

#[test]
fn stack_applies_whiteouts_replacements_and_opaque_dirs() {
    let base = layer(&[
        (Entry::dir("app"), b""),
        (Entry::file("app/a", 1), b"a"),
        (Entry::dir("app/cache"), b""),
        (Entry::file("app/cache/x", 1), b"x"),
        (Entry::file("app/link-me", 1), b"l"),
        (Entry::dir("etc"), b""),
        (Entry::file("etc/f", 1), b"f"),
        (Entry::dir("var"), b""),
        (Entry::file("var/old", 1), b"o"),
    ]);
    let top = layer(&[
        (Entry::dir("app"), b""),
        (whiteout_entry("app/cache"), b""),
        (Entry::dir("app/a"), b""), // file replaced by a directory
        (Entry::file("app/a/inner", 2), b"in"),
        (Entry::hardlink("app/hl", "app/link-me"), b""),
        (Entry::symlink("etc", "var"), b""), // directory replaced by a symlink
        (Entry::dir("var"), b""),
        (opaque_entry("var"), b""),
        (Entry::file("var/new", 1), b"n"),
    ]);
    let dst = tempfile::tempdir().unwrap();
    let mut x = Extractor::open(dst.path(), ExtractOptions::default()).unwrap();
    x.apply_layer(&base[..]).unwrap();
    let summary = x.apply_layer(&top[..]).unwrap();
    assert_eq!(summary.whiteouts, 2);
    let got: Vec<(String, String)> = snapshot(
        dst.path(),
        SnapOpts {
            file_mtimes: false,
            dir_mtimes: false,
        },
    )
    .into_iter()
    .map(|(k, v)| (k, v.kind))
    .collect();
    let want: Vec<(String, String)> = [
        ("app", "dir"),
        ("app/a", "dir"),
        ("app/a/inner", "file:in"),
        ("app/hl", "file:l"),
        ("app/link-me", "file:l"),
        ("etc", "symlink:var"),
        ("var", "dir"),
        ("var/new", "file:n"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(fs::metadata(dst.path().join("app/hl")).unwrap().nlink(), 2);
}

#[test]
fn pax_gnu_and_oldstyle_archives_from_gnu_tar_extract() {
    // GNU tar writes GNU long names by default and PAX with --format=pax: both must read.
    let src = tempfile::tempdir().unwrap();
    rich_tree(src.path());
    let want = snapshot(
        src.path(),
        SnapOpts {
            file_mtimes: true,
            dir_mtimes: true,
        },
    );
    for format in ["gnu", "pax"] {
        let out = std::process::Command::new("tar")
            .args([
                "--format",
                format,
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "-cf",
                "-",
                "-C",
            ])
            .arg(src.path())
            .arg(".")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dst = tempfile::tempdir().unwrap();
        unpack(dst.path(), [&out.stdout[..]], ExtractOptions::default()).unwrap();
        let got = snapshot(
            dst.path(),
            SnapOpts {
                file_mtimes: true,
                dir_mtimes: true,
            },
        );
        if format == "gnu" {
            // GNU format has no xattrs; compare the rest.
            let strip = |m: &BTreeMap<String, Node>| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Node {
                                xattrs: BTreeMap::new(),
                                ..v.clone()
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            assert_eq!(strip(&got), strip(&want), "{format}");
        } else {
            assert_eq!(got, want, "{format}");
        }
    }
}

#[derive(Debug, Clone)]
enum Gen {
    Dir(String, u32),
    File(String, Vec<u8>, u32, u32),
    Link(String, String),
}

fn gen_tree() -> impl Strategy<Value = Vec<Gen>> {
    let name = "[a-c]{1,2}";
    let item = prop_oneof![
        (name, 0o700u32..0o777).prop_map(|(n, m)| Gen::Dir(n, m)),
        (
            name,
            proptest::collection::vec(any::<u8>(), 0..40),
            0o400u32..0o7777,
            0u32..3
        )
            .prop_map(|(n, c, m, u)| Gen::File(n, c, m, u)),
        (name, "[a-z./]{1,8}").prop_map(|(n, t)| Gen::Link(n, t)),
    ];
    proptest::collection::vec((item, 0usize..3), 1..12).prop_map(|v| {
        // Nest each item under one of the directories generated so far (by depth index).
        let mut dirs = vec![String::new()];
        let mut out = Vec::new();
        for (g, parent) in v {
            let base = dirs[parent % dirs.len()].clone();
            let join = |n: &str| {
                if base.is_empty() {
                    n.to_string()
                } else {
                    format!("{base}/{n}")
                }
            };
            let g = match g {
                Gen::Dir(n, m) => {
                    let p = join(&n);
                    dirs.push(p.clone());
                    Gen::Dir(p, m)
                }
                Gen::File(n, c, m, u) => Gen::File(join(&n), c, m, u),
                Gen::Link(n, t) => Gen::Link(join(&n), t),
            };
            out.push(g);
        }
        out
    })
}

fn materialize(root: &Path, items: &[Gen]) {
    // Only create an item where the path is free and the parent is a real directory.
    let free = |p: &str| {
        let parent_is_dir =
            fs::symlink_metadata(root.join(p).parent().unwrap()).is_ok_and(|m| m.is_dir());
        parent_is_dir && fs::symlink_metadata(root.join(p)).is_err()
    };
    for g in items {
        match g {
            Gen::Dir(p, m) => {
                if free(p) {
                    fs::create_dir(root.join(p)).unwrap();
                    fs::set_permissions(root.join(p), fs::Permissions::from_mode(*m)).unwrap();
                }
            }
            Gen::File(p, c, m, u) => {
                if free(p) {
                    fs::write(root.join(p), c).unwrap();
                    std::os::unix::fs::chown(root.join(p), Some(*u), Some(*u)).unwrap();
                    fs::set_permissions(root.join(p), fs::Permissions::from_mode(*m)).unwrap();
                }
            }
            Gen::Link(p, t) => {
                if free(p) {
                    symlink(t, root.join(p)).unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_trees_round_trip(items in gen_tree()) {
        let src = tempfile::tempdir().unwrap();
        materialize(src.path(), &items);
        let bytes = tar_of(src.path());
        let dst = tempfile::tempdir().unwrap();
        unpack(dst.path(), [&bytes[..]], ExtractOptions::default()).unwrap();
        prop_assert_eq!(snapshot(dst.path(), ALL), snapshot(src.path(), ALL));
    }
}
