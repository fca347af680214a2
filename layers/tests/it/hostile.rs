//! Hostile layers, crafted byte by byte: no entry may write outside the extraction root, and each
//! attempt is an error naming the entry. Every case runs with both resolvers (kernel `openat2`
//! and the userspace walk) and checks a sentinel directory next to the root stays untouched.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rbuild_layers::tar::extract::{
    ExtractError, ExtractOptions, Extractor, Resolve, SymlinkPolicy,
};
use rbuild_layers::tar::read::ReadError;

/// One raw ustar member (header + padded data).
fn member(name: &str, typeflag: u8, data: &[u8], link: &str) -> Vec<u8> {
    assert!(
        name.len() <= 100 && link.len() <= 100,
        "test names must fit the ustar fields"
    );
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h.extend_from_slice(data);
    h.resize(h.len().div_ceil(512) * 512, 0);
    h
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    member(name, b'0', data, "")
}

fn symlink(name: &str, target: &str) -> Vec<u8> {
    member(name, b'2', b"", target)
}

fn hardlink(name: &str, target: &str) -> Vec<u8> {
    member(name, b'1', b"", target)
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut t = members.concat();
    t.extend_from_slice(&[0u8; 1024]);
    t
}

/// A root to extract into and, beside it, an `outside` directory holding `secret`.
struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "untouched").unwrap();
        Scene {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn assert_outside_untouched(&self) {
        let mut names: Vec<String> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["secret"], "nothing may appear outside the root");
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"untouched");
        assert_eq!(
            fs::metadata(self.outside.join("secret")).unwrap().nlink(),
            1,
            "no hard link to the secret"
        );
        let parent = self.root.parent().unwrap();
        let mut siblings: Vec<String> = fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        siblings.sort();
        assert_eq!(
            siblings,
            ["outside", "root"],
            "nothing may appear beside the root"
        );
    }
}

fn apply(root: &Path, layers: &[Vec<u8>], resolve: Resolve) -> Result<(), ExtractError> {
    let mut x = Extractor::open(
        root,
        ExtractOptions {
            resolve,
            ..Default::default()
        },
    )?;
    for l in layers {
        x.apply_layer(&l[..])?;
    }
    Ok(())
}

/// Run `case` with both resolvers; it returns the layers and the entry the error must name.
fn expect_refused(case: impl Fn(&Scene) -> (Vec<Vec<u8>>, String)) {
    for resolve in [Resolve::Kernel, Resolve::Walk] {
        let scene = Scene::new();
        let (layers, culprit) = case(&scene);
        let err = apply(&scene.root, &layers, resolve).expect_err("hostile layer must fail");
        let msg = err.to_string();
        assert!(
            msg.contains(&culprit),
            "{resolve:?}: error `{msg}` should name `{culprit}`"
        );
        scene.assert_outside_untouched();
    }
}

#[test]
fn dotdot_entry_is_refused() {
    expect_refused(|_| {
        (
            vec![archive(&[file("../outside/pwned", b"x")])],
            "../outside/pwned".into(),
        )
    });
    expect_refused(|_| {
        (
            vec![archive(&[file("a/../../x", b"x")])],
            "a/../../x".into(),
        )
    });
}

#[test]
fn absolute_entry_is_refused() {
    expect_refused(|s| {
        let name = format!("{}/pwned", s.outside.display());
        (vec![archive(&[file(&name, b"x")])], name)
    });
    let err = apply(
        &Scene::new().root,
        &[archive(&[file("/etc/x", b"x")])],
        Resolve::Kernel,
    )
    .unwrap_err();
    assert!(
        matches!(err, ExtractError::Read(ReadError::UnsafePath { .. })),
        "{err}"
    );
}

#[test]
fn symlink_then_file_through_it_is_refused() {
    // Absolute symlink to the outside directory, then a file below it.
    expect_refused(|s| {
        let layer = archive(&[
            symlink("evil", &s.outside.display().to_string()),
            file("evil/pwned", b"x"),
        ]);
        (vec![layer], "evil/pwned".into())
    });
    // Relative symlink climbing out.
    expect_refused(|_| {
        (
            vec![archive(&[
                symlink("evil", "../outside"),
                file("evil/pwned", b"x"),
            ])],
            "evil/pwned".into(),
        )
    });
    // A chain of symlinks that only escapes at the end.
    expect_refused(|_| {
        let layer = archive(&[
            symlink("a", "b"),
            symlink("b", "c/.."),
            member("c", b'5', b"", ""),
            symlink("c/up", "../.."),
            file("a/c/up/outside/pwned", b"x"),
        ]);
        (vec![layer], "a/c/up/outside/pwned".into())
    });
}

#[test]
fn symlink_from_an_earlier_layer_is_refused() {
    expect_refused(|s| {
        let first = archive(&[symlink("etc", &s.outside.display().to_string())]);
        let second = archive(&[file("etc/pwned", b"x")]);
        (vec![first, second], "etc/pwned".into())
    });
}

#[test]
fn hard_link_to_outside_is_refused() {
    expect_refused(|_| {
        (
            vec![archive(&[hardlink("h", "../outside/secret")])],
            "h".into(),
        )
    });
    expect_refused(|s| {
        let target = format!("{}/secret", s.outside.display());
        (vec![archive(&[hardlink("h", &target)])], "h".into())
    });
    // Through a planted symlink directory.
    expect_refused(|s| {
        let layer = archive(&[
            symlink("evil", &s.outside.display().to_string()),
            hardlink("h", "evil/secret"),
        ]);
        (vec![layer], "h".into())
    });
}

#[test]
fn whiteout_through_symlink_is_refused() {
    expect_refused(|s| {
        let first = archive(&[symlink("evil", &s.outside.display().to_string())]);
        let second = archive(&[file("evil/.wh.secret", b"")]);
        (vec![first, second], "evil/.wh.secret".into())
    });
}

#[test]
fn replacing_a_planted_symlink_never_writes_through_it() {
    for resolve in [Resolve::Kernel, Resolve::Walk] {
        let s = Scene::new();
        let target = format!("{}/secret", s.outside.display());
        let first = archive(&[
            symlink("f", &target),
            symlink("d", &s.outside.display().to_string()),
        ]);
        // A file and a directory entry at the symlinks' own names replace the links; an opaque
        // marker below a symlink clears nothing.
        let second = archive(&[
            member("d", b'5', b"", ""),
            file("f", b"new"),
            file("d/.wh..wh..opq", b""),
        ]);
        apply(&s.root, &[first, second], resolve).unwrap();
        assert_eq!(fs::read(s.root.join("f")).unwrap(), b"new");
        assert!(fs::symlink_metadata(s.root.join("d")).unwrap().is_dir());
        s.assert_outside_untouched();
        let s = Scene::new();
        let first = archive(&[symlink("d", &s.outside.display().to_string())]);
        let second = archive(&[file("d/.wh..wh..opq", b"")]);
        apply(&s.root, &[first, second], resolve).unwrap();
        s.assert_outside_untouched();
    }
}

#[test]
fn symlinks_inside_the_root_still_work() {
    for resolve in [Resolve::Kernel, Resolve::Walk] {
        let s = Scene::new();
        let layer = archive(&[
            member("usr", b'5', b"", ""),
            member("usr/lib", b'5', b"", ""),
            symlink("lib", "usr/lib"),
            symlink("usr/lib/self", "../lib"),
            file("lib/self/a", b"a"),
        ]);
        apply(&s.root, &[layer], resolve).unwrap();
        assert_eq!(fs::read(s.root.join("usr/lib/a")).unwrap(), b"a");
        s.assert_outside_untouched();
    }
}

#[test]
fn truncated_and_garbage_streams_are_errors() {
    let s = Scene::new();
    let mut t = archive(&[file("a", &[b'x'; 2000])]);
    t.truncate(700);
    assert!(apply(&s.root, &[t], Resolve::Kernel).is_err());
    let mut bad = archive(&[file("a", b"x")]);
    bad[148] = b'9'; // checksum no longer matches
    assert!(apply(&s.root, &[bad], Resolve::Kernel).is_err());
}

#[test]
fn in_root_policy_confines_instead_of_refusing() {
    for resolve in [Resolve::Kernel, Resolve::Walk] {
        let s = Scene::new();
        let opts = ExtractOptions {
            resolve,
            symlinks: SymlinkPolicy::InRoot,
            ..Default::default()
        };
        let mut x = Extractor::open(&s.root, opts).unwrap();
        // Chroot semantics: an absolute target starts at the root, `..` stops there.
        let layer = archive(&[
            member("usr", b'5', b"", ""),
            member("usr/lib", b'5', b"", ""),
            symlink("lib", "/usr/lib"),
            symlink("up", "../../.."),
            file("lib/a", b"a"),
            file("up/usr/lib/b", b"b"),
        ]);
        x.apply_layer(&layer[..]).unwrap();
        assert_eq!(fs::read(s.root.join("usr/lib/a")).unwrap(), b"a");
        assert_eq!(fs::read(s.root.join("usr/lib/b")).unwrap(), b"b");
        // A host path is looked up inside the root, where it does not exist: an error, and
        // nothing written outside.
        let outside = s.outside.display().to_string();
        let hostile = archive(&[symlink("evil", &outside), file("evil/pwned", b"x")]);
        let err = x.apply_layer(&hostile[..]).unwrap_err();
        assert!(err.to_string().contains("evil/pwned"), "{err}");
        s.assert_outside_untouched();
    }
}
