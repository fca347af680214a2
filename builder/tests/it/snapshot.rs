//! Real overlay and copied snapshots (needs root and overlayfs).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rbuild::exec::sandbox::{SandboxExecutor, SandboxOptions};
use rbuild::exec::Cancellation;
use rbuild::snapshot::{MountMethod, Snapshot, SnapshotKind, SnapshotMode, SnapshotOptions};

fn write(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, s).expect("write");
}

/// Every path under `root`, relative, sorted; directories end in `/`, whiteouts are `(wh)`.
fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).expect("read").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let md = fs::symlink_metadata(&p).expect("stat");
            if md.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else if md.file_type().is_char_device() && md.rdev() == 0 {
                out.push(format!("{rel} (wh)"));
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

fn mounted(path: &Path) -> bool {
    let p = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&p))
}

fn options(parent: &Path, mode: SnapshotMode) -> SnapshotOptions {
    SnapshotOptions {
        parent: parent.to_path_buf(),
        mode,
    }
}

#[test]
fn overlay_upper_holds_only_the_changes() {
    let t = tempfile::tempdir().expect("tempdir");
    let (l0, l1) = (t.path().join("l0"), t.path().join("l1"));
    write(&l0.join("a.txt"), "a0");
    write(&l0.join("dir/b.txt"), "b");
    write(&l0.join("del.txt"), "d");
    write(&l1.join("a.txt"), "a1");
    write(&l1.join("c.txt"), "c");
    let snaps = t.path().join("snaps");
    fs::create_dir(&snaps).expect("mkdir");
    let snap = Snapshot::prepare(&[l0.clone(), l1], &options(&snaps, SnapshotMode::Overlay))
        .expect("overlay mounts");
    assert_eq!(
        snap.kind(),
        SnapshotKind::Overlay(MountMethod::LowerdirAppend)
    );
    let merged = snap.merged().to_path_buf();
    assert!(mounted(&merged));
    assert_eq!(
        fs::read_to_string(merged.join("a.txt")).expect("read"),
        "a1",
        "upper layer wins"
    );
    assert_eq!(
        listing(&merged),
        ["a.txt", "c.txt", "del.txt", "dir/", "dir/b.txt"]
    );

    write(&merged.join("new.txt"), "n");
    fs::remove_file(merged.join("del.txt")).expect("delete lower file");
    let upper = snap.upper().expect("overlay has an upper dir");
    assert_eq!(listing(&upper), ["del.txt (wh)", "new.txt"]);
    assert!(l0.join("del.txt").exists(), "lower layers are untouched");

    let scratch = merged.parent().expect("scratch").to_path_buf();
    drop(snap);
    assert!(!mounted(&merged), "unmounted on drop");
    assert!(!scratch.exists(), "scratch removed on drop");
}

#[test]
fn many_layers_do_not_hit_the_page_limit() {
    let t = tempfile::tempdir().expect("tempdir");
    let long = "x".repeat(100);
    let lowers: Vec<PathBuf> = (0..60)
        .map(|i| {
            let d = t.path().join(format!("{long}-{i:03}"));
            write(&d.join(format!("f{i:03}")), "x");
            d
        })
        .collect();
    let total: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(
        total > 4096,
        "the classic data string would not fit ({total} bytes)"
    );
    let snap = Snapshot::prepare(&lowers, &options(t.path(), SnapshotMode::Overlay))
        .expect("overlay mounts");
    assert_eq!(fs::read_dir(snap.merged()).expect("read").count(), 60);
    snap.release().expect("released");
}

#[test]
fn copy_snapshot_keeps_a_base_to_diff_against() {
    let t = tempfile::tempdir().expect("tempdir");
    let l0 = t.path().join("l0");
    write(&l0.join("keep.txt"), "k");
    write(&l0.join("del.txt"), "d");
    let snap = Snapshot::prepare(&[l0], &options(t.path(), SnapshotMode::Copy)).expect("copy");
    assert_eq!(snap.kind(), SnapshotKind::Copy);
    fs::remove_file(snap.merged().join("del.txt")).expect("delete");
    write(&snap.merged().join("new.txt"), "n");
    let base = snap.base().expect("copy has a base");
    assert_eq!(listing(&base), ["del.txt", "keep.txt"]);
    assert_eq!(listing(snap.merged()), ["keep.txt", "new.txt"]);
    let scratch = base.parent().expect("scratch").to_path_buf();
    snap.release().expect("released");
    assert!(!scratch.exists());
}

#[test]
fn run_in_overlay_leaves_only_the_commands_writes_in_upper() {
    let lower = crate::sandbox::busybox_rootfs();
    let t = tempfile::tempdir().expect("tempdir");
    let snap = Snapshot::prepare(
        &[lower.path().to_path_buf()],
        &options(t.path(), SnapshotMode::Overlay),
    )
    .expect("overlay");
    let argv = crate::sandbox::sh("echo hi > /out.txt; rm /bin/rm");
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = crate::sandbox::root_request(snap.merged(), &argv, &env, "snap");
    let out = crate::sandbox::Capture::default();
    let report = SandboxExecutor::new(SandboxOptions::default()).run_reporting(
        &req,
        &out,
        &Cancellation::new(),
    );
    assert!(report.result.is_ok(), "{:?}", report.result);
    let upper = snap.upper().expect("upper");
    assert_eq!(
        listing(&upper),
        ["bin/", "bin/rm (wh)", "out.txt"],
        "no /proc, /dev, /sys, /etc stubs in the layer"
    );
}

/// The super-block options of the mount at `path` (the last field of its mountinfo line).
fn super_options(path: &Path) -> Option<String> {
    let p = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&p))
        .and_then(|l| l.rsplit(' ').next().map(str::to_string))
}

#[test]
fn volatile_overlay_is_released_completely() {
    let t = tempfile::tempdir().expect("tempdir");
    let l0 = t.path().join("l0");
    write(&l0.join("a.txt"), "a");
    let snaps = t.path().join("snaps");
    fs::create_dir(&snaps).expect("mkdir");
    let snap =
        Snapshot::prepare(&[l0], &options(&snaps, SnapshotMode::Overlay)).expect("overlay mounts");
    let merged = snap.merged().to_path_buf();
    let scratch = merged.parent().expect("scratch").to_path_buf();
    let opts = super_options(&merged).expect("mounted");
    assert!(
        // Linux 6.5+ shows the option as `fsync=volatile`, older kernels as `volatile`.
        opts.split(',')
            .any(|o| o == "volatile" || o == "fsync=volatile"),
        "mounted volatile (kernel ≥ 5.10): {opts}"
    );
    write(&merged.join("new.txt"), "n");
    assert!(
        scratch.join("work/work/incompat/volatile").is_dir(),
        "volatile marker in the work dir"
    );
    snap.release().expect("release");
    assert!(!mounted(&merged), "unmounted on release");
    assert!(
        !scratch.exists(),
        "scratch with the volatile marker removed"
    );
}
