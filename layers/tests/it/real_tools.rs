//! Real tools as judges: our layers unpacked by GNU tar and by umoci give the same tree as the
//! source directory (modes, owners, links, devices, xattrs, mtimes), and a diff layer with
//! whiteouts and an opaque directory, stacked on its base, gives umoci the changed tree.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use rbuild_layers::compress::Compression;
use rbuild_layers::diff::tree_changes;
use rbuild_layers::image::{write_image, History, ImageConfig};
use rbuild_layers::oci_layout::{ImageName, OciLayout};
use rbuild_layers::store::{LayerInfo, LayerOptions, LayerWriter};
use rbuild_layers::tar::write::{write_tree, TarOptions};

use crate::extract::{rich_tree, snapshot, Node, SnapOpts, ALL};

/// Run a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Options that keep mtimes in layers, so the trees can be compared exactly.
pub fn layer_opts(compression: Compression) -> LayerOptions {
    LayerOptions {
        compression,
        tar: TarOptions::keep_mtimes(),
        ..Default::default()
    }
}

/// Store `layers` (bottom first) as image `name` in the layout at `dir`.
pub fn image_in_layout(dir: &Path, name: &str, layers: &[LayerInfo], cmd: &[&str]) -> OciLayout {
    let layout = OciLayout::ensure(dir).unwrap();
    let mut cfg = ImageConfig::new("linux", "amd64");
    cfg.config.cmd = Some(cmd.iter().map(|s| s.to_string()).collect());
    cfg.config.env = Some(vec!["PATH=/usr/bin:/bin".into()]);
    for l in layers {
        cfg.push_layer(
            l.diff_id.clone(),
            History {
                created_by: Some("test".into()),
                ..Default::default()
            },
        );
    }
    let img = write_image(layout.store(), &cfg, layers, &BTreeMap::new()).unwrap();
    layout
        .tag(&name.parse::<ImageName>().unwrap(), &img)
        .unwrap();
    layout
}

fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
}

/// umoci does not restore the mtime of the rootfs' own top-level entries' parent, and keeps
/// directory mtimes only when nothing is written below them afterwards: compare file mtimes only.
const NO_DIR_MTIMES: SnapOpts = SnapOpts {
    file_mtimes: true,
    dir_mtimes: false,
};

#[test]
fn gnu_tar_extracts_our_layer_to_the_source_tree() {
    let src = tempfile::tempdir().unwrap();
    rich_tree(src.path());
    let bytes = write_tree(src.path(), Vec::new(), TarOptions::keep_mtimes()).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let tar_file = dst.path().join("layer.tar");
    fs::write(&tar_file, &bytes).unwrap();
    let root = dst.path().join("root");
    fs::create_dir(&root).unwrap();
    run(Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--same-owner",
            "-xpf",
        ])
        .arg(&tar_file)
        .arg("-C")
        .arg(&root));
    assert_eq!(snapshot(&root, ALL), snapshot(src.path(), ALL));
}

#[test]
fn umoci_unpacks_our_image_to_the_source_tree() {
    // The installed umoci (0.4.x) rejects zstd layers ("blob is not correct mediatype"); zstd is
    // covered by our own extractor and by skopeo in the layout tests.
    for compression in [Compression::Gzip, Compression::None] {
        let src = tempfile::tempdir().unwrap();
        rich_tree(src.path());
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("layout");
        let layout = OciLayout::ensure(&dir).unwrap();
        let layer =
            LayerWriter::from_dir(layout.store(), src.path(), layer_opts(compression)).unwrap();
        image_in_layout(&dir, "app:v1", &[layer], &["/usr/bin/tool"]);
        let bundle = work.path().join("bundle");
        umoci_unpack(&dir, "v1", &bundle);
        let got = snapshot(&bundle.join("rootfs"), NO_DIR_MTIMES);
        let want = snapshot(src.path(), NO_DIR_MTIMES);
        assert_eq!(
            diff_maps(&got, &want),
            Vec::<String>::new(),
            "{compression}"
        );
    }
}

#[test]
fn umoci_applies_our_diff_layer_with_whiteouts() {
    let lower = tempfile::tempdir().unwrap();
    rich_tree(lower.path());
    fs::create_dir_all(lower.path().join("var/cache/apt")).unwrap();
    fs::write(lower.path().join("var/cache/apt/pkg"), "p").unwrap();
    fs::write(lower.path().join("was-file"), "f").unwrap();
    let upper = tempfile::tempdir().unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", lower.path().display()))
        .arg(upper.path()));
    let u = upper.path();
    fs::remove_dir_all(u.join("var/cache")).unwrap();
    fs::remove_file(u.join("etc/hostname")).unwrap();
    fs::remove_file(u.join("was-file")).unwrap();
    fs::create_dir(u.join("was-file")).unwrap();
    fs::write(u.join("was-file/inside"), "i").unwrap();
    fs::write(u.join("usr/bin/tool"), "#!/bin/sh\necho changed\n").unwrap();
    fs::write(u.join("added"), "new").unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let layout = OciLayout::ensure(&dir).unwrap();
    let base =
        LayerWriter::from_dir(layout.store(), lower.path(), layer_opts(Compression::Gzip)).unwrap();
    let top = tree_changes(lower.path(), u)
        .unwrap()
        .write_layer(layout.store(), layer_opts(Compression::Gzip))
        .unwrap();
    image_in_layout(&dir, "app:v2", &[base, top], &["/bin/sh"]);
    let bundle = work.path().join("bundle");
    umoci_unpack(&dir, "v2", &bundle);
    let got = snapshot(&bundle.join("rootfs"), NO_DIR_MTIMES);
    let want = snapshot(u, NO_DIR_MTIMES);
    assert_eq!(diff_maps(&got, &want), Vec::<String>::new());
}

/// A readable list of differences between two snapshots.
pub fn diff_maps(got: &BTreeMap<String, Node>, want: &BTreeMap<String, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push(format!("missing {k}")),
            Some(g) if g != v => out.push(format!("{k}: got {g:?}, want {v:?}")),
            _ => {}
        }
    }
    for k in got.keys() {
        if !want.contains_key(k) {
            out.push(format!("extra {k}"));
        }
    }
    out
}
