//! RUN steps end to end: `ops::run::run_step` on a busybox base layer, with both executors
//! (the built-in sandbox and runc) and both snapshot kinds, checking the captured changes.
//!
//! Needs root, overlayfs, `/bin/busybox` (static) and `runc` on `PATH`. The sandbox helper is
//! this test binary itself (see the constructor in `sandbox.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild::events::LogStream;
use rbuild::exec::runc::{RuncExecutor, RuncOptions};
use rbuild::exec::sandbox::{SandboxExecutor, SandboxOptions};
use rbuild::exec::{Cancellation, Executor, OutputSink};
use rbuild::graph::{
    CacheSharing, Command, ContextName, FsInput, MountKind, MountPerms, NetworkMode, RunMount,
    RunOp, SecurityMode, UserSpec,
};
use rbuild::ops::run::{
    run_step_with, RunError, RunInputs, RunOptions, RunOutput, RUN_SCRATCH_DIR,
};
use rbuild::snapshot::{SnapshotKind, SnapshotMode};
use rbuild_layers::tar::entry::EntryKind;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "touch", "rm", "mkdir", "ln", "stat", "true", "false", "ip",
    "env", "sleep", "test", "grep", "printf", "mv", "chmod", "wc", "head", "tr", "hostname", "cp",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1000:\n";

/// A base layer (plain directory, overlay whiteout form) with busybox, users and some files.
fn base_layer(dir: &Path) {
    for d in ["bin", "etc", "root", "home/app", "base/dir/sub", "tmp"] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).expect("chown");
    rbuild_test_support::busybox_bin(dir, APPLETS).expect("busybox in /bin");
    fs::write(dir.join("etc/passwd"), PASSWD).expect("passwd");
    fs::write(dir.join("etc/group"), GROUP).expect("group");
    fs::write(dir.join("base/file1"), b"one").expect("write");
    fs::write(dir.join("base/file2"), b"two").expect("write");
    fs::write(dir.join("base/dir/old"), b"old").expect("write");
    fs::write(dir.join("base/dir/sub/deep"), b"deep").expect("write");
    // Fixed times everywhere, so that only real changes show up.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let mut stack = vec![dir.to_path_buf()];
    let mut all = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read") {
            let p = e.expect("entry").path();
            let md = fs::symlink_metadata(&p).expect("stat");
            if md.is_dir() {
                stack.push(p.clone());
            }
            if !md.file_type().is_symlink() {
                all.push(p);
            }
        }
    }
    all.push(dir.to_path_buf());
    // Children before parents: setting a child's time does not touch its parent's.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        fs::File::open(&p)
            .expect("open")
            .set_modified(old)
            .expect("mtime");
    }
}

#[derive(Default)]
struct Capture(Mutex<Vec<u8>>);

impl OutputSink for Capture {
    fn write(&self, _stream: LogStream, bytes: &[u8]) {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exec {
    Sandbox,
    Runc,
}

const EXECUTORS: [Exec; 2] = [Exec::Sandbox, Exec::Runc];

fn executor(kind: Exec) -> Box<dyn Executor> {
    match kind {
        Exec::Sandbox => Box::new(SandboxExecutor::new(SandboxOptions::default())),
        Exec::Runc => Box::new(RuncExecutor::new(RuncOptions::default())),
    }
}

/// One test's world: a base layer, a store, a context, secrets.
struct World {
    dir: tempfile::TempDir,
    lowers: Vec<PathBuf>,
    store: PathBuf,
    context: PathBuf,
    secrets: BTreeMap<String, Vec<u8>>,
    sources: BTreeMap<usize, PathBuf>,
}

impl World {
    /// A world over the [`base_layer`].
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-run-test-")
            .tempdir()
            .expect("tempdir");
        let lower = dir.path().join("layer0");
        fs::create_dir(&lower).expect("mkdir");
        base_layer(&lower);
        World::over(dir, vec![lower])
    }

    /// A world over `lowers`, with its store, context and secrets under `dir`.
    fn over(dir: tempfile::TempDir, lowers: Vec<PathBuf>) -> World {
        let store = dir.path().join("store");
        let context = dir.path().join("context");
        fs::create_dir_all(&store).expect("mkdir");
        fs::create_dir_all(context.join("src")).expect("mkdir");
        fs::write(context.join("src/f"), b"from context\n").expect("write");
        let mut secrets = BTreeMap::new();
        secrets.insert("tok".to_string(), b"s3cr3t-value".to_vec());
        World {
            dir,
            lowers,
            store,
            context,
            secrets,
            sources: BTreeMap::new(),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("logs/step.log")
    }

    /// Run `op` with `exec` on a `mode` snapshot, as the solver does: with the context, the step
    /// log and BuildKit's host name.
    fn run(
        &self,
        exec: Exec,
        mode: SnapshotMode,
        op: &RunOp,
        out: &Capture,
    ) -> Result<RunOutput, RunError> {
        let executor = executor(exec);
        let cancel = Cancellation::new();
        let log = self.log();
        let inputs = RunInputs {
            context_dir: Some(&self.context),
            hostname: "buildkitsandbox",
            log_path: Some(&log),
            ..self.inputs(op, executor.as_ref(), out, &cancel)
        };
        run_step_with(
            &inputs,
            &RunOptions {
                snapshot_mode: mode,
            },
        )
    }

    /// The inputs of `op` over this world's layers, store and secrets, with no context, ssh
    /// agent or log; a test overrides the fields its scenario needs.
    fn inputs<'a>(
        &'a self,
        op: &'a RunOp,
        executor: &'a dyn Executor,
        sink: &'a Capture,
        cancel: &'a Cancellation,
    ) -> RunInputs<'a> {
        RunInputs {
            op,
            lowers: &self.lowers,
            mount_sources: &self.sources,
            context_dir: None,
            store_root: &self.store,
            secrets: &self.secrets,
            ssh_agent: None,
            executor,
            sink,
            cancel,
            hostname: "h",
            log_path: None,
        }
    }

    /// The error of `op` run in the sandbox on an overlay snapshot, which must fail (`why`).
    fn sandbox_error(&self, op: &RunOp, why: &str) -> RunError {
        self.run(
            Exec::Sandbox,
            SnapshotMode::Overlay,
            op,
            &Capture::default(),
        )
        .expect_err(why)
    }

    /// Nothing left in the store's scratch area.
    fn assert_clean(&self, name: &str) {
        let scratch = self.store.join(RUN_SCRATCH_DIR);
        let left: Vec<_> = fs::read_dir(&scratch)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let root = self.dir.path().to_string_lossy().into_owned();
        assert!(
            !mounts.contains(&root),
            "{name}: still mounted under {root}"
        );
    }
}

fn sh(script: &str) -> RunOp {
    RunOp {
        command: Command::Shell {
            shell: vec!["/bin/sh".into(), "-c".into()],
            script: script.into(),
        },
        env: vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )],
        proxy_env: vec![],
        user: None,
        workdir: "/".into(),
        network: NetworkMode::Host,
        security: SecurityMode::Sandbox,
        mounts: vec![],
    }
}

/// `path kind` lines of a change list, e.g. `a/b dir`, `x file:3`, `l symlink:t`.
fn summary(out: &RunOutput) -> Vec<String> {
    out.changes
        .entries()
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::File { size } => format!("file:{size}"),
                EntryKind::Dir => "dir".to_string(),
                EntryKind::Symlink { target } => format!("symlink:{target}"),
                EntryKind::HardLink { target } => format!("hardlink:{target}"),
                other => other.name().to_string(),
            };
            format!("{} {kind}", e.path)
        })
        .collect()
}

fn content(out: &RunOutput, path: &str) -> Vec<u8> {
    let change = out
        .changes
        .as_slice()
        .iter()
        .find(|c| c.entry.path == path)
        .unwrap_or_else(|| panic!("{path} not in changes: {:?}", summary(out)));
    fs::read(change.source.as_ref().expect("file has a source")).expect("read content")
}

/// The diff ID of the layer the changes make (mtimes clamped to 0, as by default).
fn diff_id(out: &RunOutput, blobs: &Path) -> String {
    let store = rbuild_layers::store::BlobStore::ensure(blobs).expect("blob store");
    out.changes
        .write_layer(&store, Default::default())
        .expect("write layer")
        .diff_id
        .to_string()
}

/// Every combination of executor and snapshot kind, with its name for messages.
fn matrix() -> Vec<(Exec, SnapshotMode, String)> {
    let mut v = Vec::new();
    for e in EXECUTORS {
        for m in [SnapshotMode::Overlay, SnapshotMode::Copy] {
            v.push((e, m, format!("{e:?}/{m:?}")));
        }
    }
    v
}

#[test]
fn file_creation_leaves_only_real_changes() {
    let w = World::new();
    let op = sh("echo hello > /new.txt && mkdir -p /a/b && echo x > /etc/added");
    let mut layers = Vec::new();
    for (exec, mode, name) in matrix() {
        let out = w.run(exec, mode, &op, &Capture::default()).expect(&name);
        assert_eq!(
            out.snapshot_kind() == SnapshotKind::Copy,
            mode == SnapshotMode::Copy,
            "{name}"
        );
        // No /proc, /dev, /sys, /etc/hosts, /etc/resolv.conf: only what the command wrote.
        assert_eq!(
            summary(&out),
            [
                "a dir",
                "a/b dir",
                "etc dir",
                "etc/added file:2",
                "new.txt file:6"
            ],
            "{name}"
        );
        assert_eq!(content(&out, "new.txt"), b"hello\n", "{name}");
        let layer: Vec<_> = out.changes.entries().cloned().collect();
        layers.push((
            name.clone(),
            layer,
            diff_id(&out, &w.dir.path().join("blobs")),
        ));
        out.release().expect("released");
        w.assert_clean(&name);
    }
    // Both executors and both snapshot kinds agree on everything but timestamps.
    let strip = |v: &[rbuild_layers::tar::entry::Entry]| {
        v.iter()
            .map(|e| {
                let mut e = e.clone();
                e.mtime = 0;
                e
            })
            .collect::<Vec<_>>()
    };
    for (name, layer, id) in &layers[1..] {
        assert_eq!(
            strip(layer),
            strip(&layers[0].1),
            "{name} vs {}",
            layers[0].0
        );
        // Same layer bytes, whichever executor and snapshot kind made them.
        assert_eq!(id, &layers[0].2, "{name} vs {}", layers[0].0);
    }
}

#[test]
fn nothing_written_gives_an_empty_layer() {
    let w = World::new();
    for (exec, mode, name) in matrix() {
        let out = w
            .run(
                exec,
                mode,
                &sh("cat /etc/passwd >/dev/null; ls / >/dev/null"),
                &Capture::default(),
            )
            .expect(&name);
        assert_eq!(summary(&out), Vec::<String>::new(), "{name}");
        drop(out);
        w.assert_clean(&name);
    }
}

#[test]
fn deleting_base_files_gives_whiteouts() {
    let w = World::new();
    let op = sh("rm /base/file1 && rm -r /base/dir/sub");
    let mut ids = Vec::new();
    for (exec, mode, name) in matrix() {
        let out = w.run(exec, mode, &op, &Capture::default()).expect(&name);
        assert_eq!(
            summary(&out),
            [
                "base dir",
                "base/.wh.file1 file:0",
                "base/dir dir",
                "base/dir/.wh.sub file:0"
            ],
            "{name}"
        );
        ids.push(diff_id(&out, &w.dir.path().join("blobs")));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "same layer bytes everywhere: {ids:?}");
}

#[test]
fn replacing_a_directory_hides_its_old_contents() {
    let w = World::new();
    let op = sh("rm -rf /base/dir && mkdir /base/dir && echo n > /base/dir/new");
    for (exec, mode, name) in matrix() {
        let out = w.run(exec, mode, &op, &Capture::default()).expect(&name);
        let got = summary(&out);
        match mode {
            // overlayfs marks the recreated directory opaque.
            SnapshotMode::Overlay => assert_eq!(
                got,
                [
                    "base dir",
                    "base/dir dir",
                    "base/dir/.wh..wh..opq file:0",
                    "base/dir/new file:2"
                ],
                "{name}"
            ),
            // The two-tree diff whites out each old child instead (documented deviation).
            _ => assert_eq!(
                got,
                [
                    "base dir",
                    "base/dir dir",
                    "base/dir/.wh.old file:0",
                    "base/dir/.wh.sub file:0",
                    "base/dir/new file:2"
                ],
                "{name}"
            ),
        }
    }
}

#[test]
fn hard_links_and_symlinks() {
    let w = World::new();
    let op = sh("echo data > /h1 && ln /h1 /h2 && ln -s h1 /s && ln -s /base/file2 /abs");
    for (exec, mode, name) in matrix() {
        let out = w.run(exec, mode, &op, &Capture::default()).expect(&name);
        assert_eq!(
            summary(&out),
            [
                "abs symlink:/base/file2",
                "h1 file:5",
                "h2 hardlink:h1",
                "s symlink:h1"
            ],
            "{name}"
        );
    }
}

#[test]
fn user_switching_by_name_with_groups_and_owned_workdir() {
    let w = World::new();
    let mut op = sh("id -u; id -g; id -G; echo $HOME; pwd; touch mine");
    op.user = UserSpec::parse("app");
    op.workdir = "/home/app/work/dir".into();
    for exec in EXECUTORS {
        let name = format!("{exec:?}");
        let out_text = Capture::default();
        let out = w
            .run(exec, SnapshotMode::Overlay, &op, &out_text)
            .expect(&name);
        assert_eq!(
            out_text.text(),
            "1000\n1000\n1000 50\n/home/app\n/home/app/work/dir\n",
            "{name}"
        );
        let owners: Vec<(String, u32, u32, u32)> = out
            .changes
            .entries()
            .map(|e| (e.path.clone(), e.uid, e.gid, e.mode))
            .collect();
        assert_eq!(
            owners,
            [
                ("home".to_string(), 0, 0, 0o755),
                ("home/app".to_string(), 1000, 1000, 0o755),
                ("home/app/work".to_string(), 1000, 1000, 0o755),
                ("home/app/work/dir".to_string(), 1000, 1000, 0o755),
                ("home/app/work/dir/mine".to_string(), 1000, 1000, 0o644),
            ],
            "{name}"
        );
    }
    // A user missing from /etc/passwd fails before anything runs.
    op.user = UserSpec::parse("ghost");
    let err = w.sandbox_error(&op, "no such user");
    assert!(
        err.to_string()
            .contains("unable to find user ghost: no matching entries in passwd file /etc/passwd"),
        "{err}"
    );
    w.assert_clean("missing user");
}

#[test]
fn failing_command_reports_code_command_and_tail() {
    let w = World::new();
    let op =
        sh("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; sleep 0.2; echo oops >&2; exit 3");
    for exec in EXECUTORS {
        let name = format!("{exec:?}");
        let err = w
            .run(exec, SnapshotMode::Overlay, &op, &Capture::default())
            .expect_err(&name);
        assert_eq!(err.exit_code(), Some(3), "{name}: {err}");
        assert!(
            err.to_string().starts_with(
                "process \"/bin/sh -c for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done;"
            ),
            "{name}: {err}"
        );
        assert!(
            err.to_string()
                .ends_with("did not complete successfully: exit code: 3"),
            "{name}: {err}"
        );
        let tail = err.output_tail();
        assert_eq!(tail.len(), 10, "{name}: {tail:?}");
        assert_eq!(tail[0], "line 4", "{name}: {tail:?}");
        assert!(tail.contains(&"oops".to_string()), "{name}: {tail:?}");
        let log = fs::read_to_string(w.log()).expect("log kept");
        assert!(
            log.contains("line 1\n") && log.contains("oops"),
            "{name}: {log}"
        );
        w.assert_clean(&name);
    }
}

#[test]
fn network_none_has_only_loopback() {
    let w = World::new();
    let mut op = sh("ip -o link | while read n name rest; do echo $name; done");
    op.network = NetworkMode::None;
    for exec in EXECUTORS {
        let name = format!("{exec:?}");
        let text = Capture::default();
        let out = w.run(exec, SnapshotMode::Overlay, &op, &text).expect(&name);
        assert_eq!(text.text(), "lo:\n", "{name}");
        assert!(out.changes.is_empty(), "{name}: {:?}", summary(&out));
    }
}

fn secret_mounts() -> Vec<RunMount> {
    vec![
        RunMount {
            target: "/run/secrets/tok".into(),
            kind: MountKind::Secret {
                id: "tok".into(),
                required: true,
                env: None,
                perms: MountPerms {
                    mode: Some(0o400),
                    uid: None,
                    gid: None,
                },
            },
        },
        RunMount {
            target: String::new(),
            kind: MountKind::Secret {
                id: "tok".into(),
                required: true,
                env: Some("TOKEN".into()),
                perms: MountPerms::default(),
            },
        },
    ]
}

#[test]
fn secrets_never_reach_the_layer_or_the_log() {
    let w = World::new();
    let mut op = sh(
        "test \"$(cat /run/secrets/tok)\" = s3cr3t-value && test \"$TOKEN\" = s3cr3t-value \
         && stat -c '%a %u' /run/secrets/tok && echo ok",
    );
    op.mounts = secret_mounts();
    for (exec, mode, name) in matrix() {
        let text = Capture::default();
        let out = w.run(exec, mode, &op, &text).expect(&name);
        assert_eq!(text.text(), "400 0\nok\n", "{name}");
        assert!(
            out.changes.is_empty(),
            "{name}: no /run/secrets stub in the layer: {:?}",
            summary(&out)
        );
        let log = fs::read(w.log()).expect("log");
        assert!(!String::from_utf8_lossy(&log).contains("s3cr3t"), "{name}");
        drop(out);
        w.assert_clean(&name);
    }
    // A required secret that was not given fails without running anything.
    let mut missing = op.clone();
    if let MountKind::Secret { id, .. } = &mut missing.mounts[0].kind {
        *id = "absent".into();
    }
    let err = w.sandbox_error(&missing, "required");
    assert!(err.to_string().contains("secret absent not found"), "{err}");
    w.assert_clean("missing secret");
}

fn cache_mount(target: &str) -> RunMount {
    RunMount {
        target: target.into(),
        kind: MountKind::Cache {
            id: target.into(),
            from: None,
            source: "/".into(),
            sharing: CacheSharing::Shared,
            readonly: false,
            perms: MountPerms::default(),
        },
    }
}

#[test]
fn cache_mount_persists_between_steps() {
    let w = World::new();
    let mut op = sh("cat /var/cache/app/count 2>/dev/null; echo run >> /var/cache/app/count");
    op.mounts = vec![cache_mount("/var/cache/app")];
    let mut seen = Vec::new();
    for exec in EXECUTORS {
        let text = Capture::default();
        let out = w
            .run(exec, SnapshotMode::Overlay, &op, &text)
            .expect("cache run");
        seen.push(text.text());
        // The mount target stays as an empty directory, as BuildKit leaves it.
        assert_eq!(
            summary(&out),
            ["var dir", "var/cache dir", "var/cache/app dir"],
            "{exec:?}"
        );
    }
    assert_eq!(seen, ["", "run\n"]);
    w.assert_clean("cache");
}

#[test]
fn bind_mount_rw_changes_are_discarded() {
    let w = World::new();
    let mut op = sh("cat /ctx/f && echo changed > /ctx/f && echo new > /ctx/g && cat /ctx/f");
    op.mounts = vec![RunMount {
        target: "/ctx".into(),
        kind: MountKind::Bind {
            from: FsInput::Context(ContextName::main()),
            source: "src".into(),
            readwrite: true,
        },
    }];
    for exec in EXECUTORS {
        let text = Capture::default();
        let out = w
            .run(exec, SnapshotMode::Overlay, &op, &text)
            .expect("bind run");
        assert_eq!(text.text(), "from context\nchanged\n", "{exec:?}");
        assert_eq!(summary(&out), ["ctx dir"], "{exec:?}");
        assert_eq!(
            fs::read(w.context.join("src/f")).expect("read"),
            b"from context\n"
        );
        assert!(!w.context.join("src/g").exists());
        drop(out);
        w.assert_clean(&format!("{exec:?}"));
    }
    // Read-only by default.
    if let MountKind::Bind { readwrite, .. } = &mut op.mounts[0].kind {
        *readwrite = false;
    }
    let err = w.sandbox_error(&op, "read-only bind");
    assert_eq!(err.exit_code(), Some(1), "{err}");
}

#[test]
fn heredoc_script_runs_with_its_interpreter() {
    let w = World::new();
    let mut op = sh("");
    op.command = Command::HeredocScript {
        shell: vec!["/bin/sh".into(), "-c".into()],
        content: "#!/bin/sh -e\necho \"args: $0\"\necho from-heredoc > /hd.txt\n".into(),
    };
    for (exec, mode, name) in matrix() {
        let text = Capture::default();
        let out = w.run(exec, mode, &op, &text).expect(&name);
        assert!(
            text.text().starts_with("args: /run/"),
            "{name}: {}",
            text.text()
        );
        assert_eq!(summary(&out), ["hd.txt file:13"], "{name}");
        assert_eq!(content(&out, "hd.txt"), b"from-heredoc\n", "{name}");
    }
}

#[test]
fn tmpfs_is_empty_and_unmounted_after() {
    let w = World::new();
    let mut op = sh("echo x > /scratch/f && test -f /scratch/f && echo ok");
    op.mounts = vec![
        RunMount {
            target: "/scratch".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
        cache_mount("/cache"),
    ];
    op.mounts.extend(secret_mounts());
    let before = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for exec in EXECUTORS {
        let text = Capture::default();
        let out = w
            .run(exec, SnapshotMode::Overlay, &op, &text)
            .expect("tmpfs run");
        assert_eq!(text.text(), "ok\n");
        assert_eq!(summary(&out), ["cache dir", "scratch dir"], "{exec:?}");
        out.release().expect("release");
        w.assert_clean(&format!("{exec:?}"));
    }
    // And after a failure.
    op.command = Command::Exec(vec!["/bin/false".into()]);
    let err = w.sandbox_error(&op, "fails");
    assert_eq!(err.exit_code(), Some(1));
    w.assert_clean("after failure");
    let after = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let ours = |m: &str| {
        m.lines()
            .filter(|l| l.contains(&*w.dir.path().to_string_lossy()))
            .count()
    };
    assert_eq!(ours(&before), 0);
    assert_eq!(ours(&after), 0);
}

#[test]
fn cancelled_before_start_leaves_nothing() {
    let w = World::new();
    let executor = executor(Exec::Sandbox);
    let cancel = Cancellation::new();
    cancel.cancel();
    let op = sh("true");
    let out = Capture::default();
    let inputs = w.inputs(&op, executor.as_ref(), &out, &cancel);
    let err = rbuild::ops::run::run_step(&inputs).expect_err("cancelled");
    assert!(matches!(err, RunError::Cancelled), "{err}");
    w.assert_clean("cancelled");
}

#[test]
fn workdir_is_created_and_kept() {
    let w = World::new();
    let mut op = sh("pwd");
    op.workdir = "/srv/app".into();
    for (exec, mode, name) in matrix() {
        let text = Capture::default();
        let out = w.run(exec, mode, &op, &text).expect(&name);
        assert_eq!(text.text(), "/srv/app\n", "{name}");
        assert_eq!(summary(&out), ["srv dir", "srv/app dir"], "{name}");
        let md: Vec<u32> = out.changes.entries().map(|e| e.mode).collect();
        assert_eq!(md, [0o755, 0o755], "{name}");
    }
}

#[test]
fn ssh_agent_socket_is_forwarded_and_never_layered() {
    let w = World::new();
    let sock_dir = w.dir.path().join("agent");
    fs::create_dir(&sock_dir).expect("mkdir");
    let sock = sock_dir.join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind agent socket");
    let mut op = sh("test -S \"$SSH_AUTH_SOCK\" && echo $SSH_AUTH_SOCK");
    op.mounts = vec![RunMount {
        target: "/run/buildkit/ssh_agent.0".into(),
        kind: MountKind::Ssh {
            id: "default".into(),
            required: true,
            perms: MountPerms::default(),
        },
    }];
    for exec in EXECUTORS {
        let executor = executor(exec);
        let cancel = Cancellation::new();
        let text = Capture::default();
        let inputs = RunInputs {
            ssh_agent: Some(&sock),
            ..w.inputs(&op, executor.as_ref(), &text, &cancel)
        };
        let out = rbuild::ops::run::run_step(&inputs).expect("ssh run");
        assert_eq!(text.text(), "/run/buildkit/ssh_agent.0\n", "{exec:?}");
        assert!(out.changes.is_empty(), "{exec:?}: {:?}", summary(&out));
    }
    // Required but not forwarded.
    let err = w.sandbox_error(&op, "no agent");
    assert!(err.to_string().contains("no ssh agent default"), "{err}");
    w.assert_clean("ssh");
}

#[test]
fn shell_heredocs_are_fed_by_the_shell() {
    // `RUN cat <<A > /a && cat <<B > /b` as the front-end reassembles it.
    let w = World::new();
    let op = sh("cat <<A > /a && cat <<B > /b\nfirst\nA\nsecond\nB");
    for exec in EXECUTORS {
        let out = w
            .run(exec, SnapshotMode::Overlay, &op, &Capture::default())
            .expect("heredocs");
        assert_eq!(summary(&out), ["a file:6", "b file:7"], "{exec:?}");
        assert_eq!(content(&out, "a"), b"first\n");
        assert_eq!(content(&out, "b"), b"second\n");
    }
}

#[test]
fn cancelled_while_running_leaves_nothing() {
    let w = World::new();
    let mut op = sh("echo started; touch /partial; sleep 30");
    op.mounts = vec![cache_mount("/cache")];
    op.mounts.extend(secret_mounts());
    for exec in EXECUTORS {
        let executor = executor(exec);
        let cancel = Cancellation::new();
        let text = Capture::default();
        let started = std::time::Instant::now();
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                // Cancel once the command is running.
                while !text.text().contains("started") && started.elapsed().as_secs() < 20 {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                cancel.cancel();
            });
            let inputs = w.inputs(&op, executor.as_ref(), &text, &cancel);
            rbuild::ops::run::run_step(&inputs)
        });
        let err = result.expect_err("cancelled");
        assert!(matches!(err, RunError::Cancelled), "{exec:?}: {err}");
        assert!(
            started.elapsed().as_secs() < 15,
            "{exec:?}: the command was stopped"
        );
        w.assert_clean(&format!("{exec:?} cancelled"));
    }
}

/// Unpack one layer blob of `store` into `dir` in overlay whiteout form (a lowerdir).
fn unpack_lower(store: &rbuild_layers::store::BlobStore, digest: &str, dir: &Path) {
    use rbuild_layers::tar::extract::{unpack, ExtractOptions, WhiteoutMode};
    let digest: rbuild_layers::digest::Digest = digest.parse().expect("digest");
    let blob = store.open_blob(&digest).expect("open blob");
    let opts = ExtractOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ExtractOptions::default()
    };
    unpack(dir, [blob], opts).expect("unpack layer");
}

#[test]
fn steps_stack_on_the_busybox_image_through_written_layers() {
    let t = tempfile::tempdir().expect("tempdir");
    let img = rbuild_test_support::busybox_layout(&t.path().join("layout")).expect("busybox");
    let layout = rbuild_layers::oci_layout::OciLayout::open(&img.layout).expect("layout");
    let store = layout.store();
    let mut lowers = Vec::new();
    for (i, layer) in img.image.manifest.layers().iter().enumerate() {
        let dir = t.path().join(format!("lower{i}"));
        unpack_lower(store, layer.digest().as_ref(), &dir);
        lowers.push(dir);
    }
    let w = World::over(t, lowers);
    let run = |exec: Exec, lowers: &[PathBuf], op: &RunOp, text: &Capture| {
        let executor = executor(exec);
        let cancel = Cancellation::new();
        let inputs = RunInputs {
            lowers,
            hostname: "buildkitsandbox",
            ..w.inputs(op, executor.as_ref(), text, &cancel)
        };
        rbuild::ops::run::run_step(&inputs)
    };
    for exec in EXECUTORS {
        // Step 1 writes a file and deletes one of the image's; its layer goes to the store.
        let mut op = sh("echo one > /made && rm /etc/group && whoami");
        op.user = None;
        let text = Capture::default();
        let out = run(exec, &w.lowers, &op, &text).expect("step 1");
        assert_eq!(text.text(), "root\n", "{exec:?}");
        assert_eq!(
            summary(&out),
            ["etc dir", "etc/.wh.group file:0", "made file:4"],
            "{exec:?}"
        );
        let layer = out
            .changes
            .write_layer(store, Default::default())
            .expect("write layer");
        out.release().expect("release");
        let dir = w.dir.path().join(format!("{exec:?}-step1"));
        unpack_lower(store, &layer.digest.to_string(), &dir);
        let mut stacked = w.lowers.clone();
        stacked.push(dir);
        // Step 2 sees step 1's result through the stacked lowers, and deletes its file.
        let op = sh("cat /made && test ! -e /etc/group && rm /made");
        let text = Capture::default();
        let out = run(exec, &stacked, &op, &text).expect("step 2");
        assert_eq!(text.text(), "one\n", "{exec:?}");
        assert_eq!(summary(&out), [".wh.made file:0"], "{exec:?}");
    }
    let left: Vec<_> = fs::read_dir(w.store.join(RUN_SCRATCH_DIR))
        .expect("scratch")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
