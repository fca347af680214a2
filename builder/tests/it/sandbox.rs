//! Real RUN execution with both executors (built-in sandbox and runc) on a busybox rootfs.
//!
//! These tests need root, namespaces, `/bin/busybox` (static) and `runc` on `PATH`. The sandbox
//! re-executes this test binary as its helper (`/proc/self/exe`); the constructor below runs
//! the helper before libtest's `main` starts any thread, which is what a real binary does by
//! calling `run_helper_if_requested()` first thing in `main`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbuild::events::LogStream;
use rbuild::exec::runc::{RuncExecutor, RuncOptions};
use rbuild::exec::sandbox::{CreatedPath, RunReport, SandboxExecutor, SandboxOptions};
use rbuild::exec::{Cancellation, ExecError, OutputSink, PreparedMount, RunRequest};
use rbuild::graph::{NetworkMode, SecurityMode};

extern "C" fn helper_ctor() {
    rbuild::exec::sandbox::run_helper_if_requested();
}

/// Runs before `main`, so the helper never shares the process with libtest's threads.
#[used]
#[unsafe(link_section = ".init_array")]
static HELPER_CTOR: extern "C" fn() = helper_ctor;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "touch", "rm", "ip", "wget", "hostname", "grep", "pwd",
    "sleep", "true", "wc", "mkdir", "stat", "head", "cut", "tr",
];

/// A minimal rootfs: busybox plus applet links in /bin, nothing else.
pub fn busybox_rootfs() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-rootfs-")
        .tempdir()
        .expect("tempdir");
    rbuild_test_support::busybox_bin(dir.path(), APPLETS).expect("busybox in /bin");
    dir
}

#[derive(Default)]
pub struct Capture(Mutex<Vec<(LogStream, Vec<u8>)>>);

impl OutputSink for Capture {
    fn write(&self, stream: LogStream, bytes: &[u8]) {
        self.0
            .lock()
            .expect("not poisoned")
            .push((stream, bytes.to_vec()));
    }
}

impl Capture {
    fn text(&self, stream: LogStream) -> String {
        let v = self.0.lock().expect("not poisoned");
        v.iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sandbox,
    Runc,
}

/// `sh -c SCRIPT` as an argv.
pub(crate) fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_string(), "-c".to_string(), script.to_string()]
}

/// A request as root in `/`, with no network and no mounts; tests override what they vary.
pub(crate) fn root_request<'a>(
    rootfs: &'a Path,
    argv: &'a [String],
    env: &'a [(String, String)],
    hostname: &'a str,
) -> RunRequest<'a> {
    RunRequest {
        rootfs,
        argv,
        env,
        uid: 0,
        gid: 0,
        additional_gids: &[],
        cwd: "/",
        network: NetworkMode::None,
        security: SecurityMode::Sandbox,
        mounts: &[],
        hostname,
    }
}

fn run(kind: Kind, req: &RunRequest<'_>, out: &Capture, cancel: &Cancellation) -> RunReport {
    match kind {
        Kind::Sandbox => {
            SandboxExecutor::new(SandboxOptions::default()).run_reporting(req, out, cancel)
        }
        Kind::Runc => RuncExecutor::new(RuncOptions::default()).run_reporting(req, out, cancel),
    }
}

struct Case {
    name: &'static str,
    argv: &'static [&'static str],
    uid: u32,
    env: &'static [(&'static str, &'static str)],
    cwd: &'static str,
    network: NetworkMode,
    check: fn(&str, &Result<(), ExecError>, &Path),
}

const BASE: Case = Case {
    name: "",
    argv: &[],
    uid: 0,
    env: &[("PATH", "/bin")],
    cwd: "/",
    network: NetworkMode::Host,
    check: |_, r, _| assert!(r.is_ok(), "{r:?}"),
};

fn ok(r: &Result<(), ExecError>) {
    assert!(r.is_ok(), "{r:?}");
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "echo output is captured",
            argv: &["echo", "hello", "world"],
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "hello world\n");
            },
            ..BASE
        },
        Case {
            name: "exit code 3 is reported",
            argv: &["sh", "-c", "echo before; exit 3"],
            check: |out, r, _| {
                assert!(matches!(r, Err(ExecError::ExitCode { code: 3, .. })), "{r:?}");
                assert_eq!(out, "before\n");
            },
            ..BASE
        },
        Case {
            name: "file created in the rootfs",
            argv: &["sh", "-c", "echo data > /created.txt"],
            check: |_, r, root| {
                ok(r);
                assert_eq!(std::fs::read_to_string(root.join("created.txt")).expect("file written"), "data\n");
            },
            ..BASE
        },
        Case {
            name: "user switch",
            argv: &["sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"],
            uid: 1000,
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "1000\n1000\nCapEff:\t0000000000000000\n");
            },
            ..BASE
        },
        Case {
            name: "env and cwd (created when missing)",
            argv: &["sh", "-c", "echo $GREETING; pwd"],
            env: &[("PATH", "/bin"), ("GREETING", "hi there")],
            cwd: "/work/dir",
            check: |out, r, root| {
                ok(r);
                assert_eq!(out, "hi there\n/work/dir\n");
                assert!(root.join("work/dir").is_dir(), "cwd is kept");
            },
            ..BASE
        },
        Case {
            name: "network none has only lo",
            argv: &["sh", "-c", "grep : /proc/net/dev | cut -d: -f1 | tr -d ' '"],
            network: NetworkMode::None,
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "lo\n");
            },
            ..BASE
        },
        Case {
            name: "host network sees more than lo",
            argv: &["sh", "-c", "grep -c : /proc/net/dev"],
            check: |out, r, _| {
                ok(r);
                let n: u32 = out.trim().parse().expect("a count");
                assert!(n >= 1, "{out}");
            },
            ..BASE
        },
        Case {
            name: "hostname and hosts file",
            argv: &["sh", "-c", "hostname; grep -c 'localhost rbuild-step-7' /etc/hosts"],
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "rbuild-step-7\n1\n");
            },
            ..BASE
        },
        Case {
            name: "masked proc paths are empty",
            argv: &["sh", "-c", "cat /proc/kcore | wc -c; cat /proc/keys | wc -c; echo 1 > /proc/sys/kernel/domainname || echo ro"],
            check: |out, r, _| {
                ok(r);
                assert!(out.starts_with("0\n0\n"), "{out}");
                assert!(out.ends_with("ro\n"), "{out}");
            },
            ..BASE
        },
        Case {
            name: "capabilities are docker's default",
            argv: &["sh", "-c", "grep -E 'Cap(Eff|Bnd|Inh)|NoNewPrivs' /proc/self/status"],
            check: |out, r, _| {
                ok(r);
                assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
                assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
                assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
                assert!(out.contains("NoNewPrivs:\t1"), "{out}");
            },
            ..BASE
        },
        Case {
            name: "HOME defaults like runc",
            argv: &["sh", "-c", "echo $HOME"],
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "/\n");
            },
            ..BASE
        },
        Case {
            name: "umask is docker's",
            argv: &["sh", "-c", "umask"],
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "0022\n");
            },
            ..BASE
        },
        Case {
            name: "command is pid 1 of its namespace",
            argv: &["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"],
            check: |out, r, _| {
                ok(r);
                assert!(out.starts_with("1\n"), "{out}");
            },
            ..BASE
        },
        Case {
            name: "background processes die with the command",
            argv: &["sh", "-c", "sleep 7777 & echo started"],
            check: |out, r, _| {
                ok(r);
                assert_eq!(out, "started\n");
            },
            ..BASE
        },
        Case {
            name: "missing program is a setup or exit error",
            argv: &["does-not-exist"],
            check: |_, r, _| assert!(r.is_err(), "{r:?}"),
            ..BASE
        },
    ]
}

fn mountinfo_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(&root))
        .map(str::to_string)
        .collect()
}

fn processes_with_arg(arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn top_level(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .expect("read rootfs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Tests that assert on the host's whole process list take this lock, so one test's
/// background `sleep` is never mistaken for another's leftover.
static PROCESS_LIST: Mutex<()> = Mutex::new(());

fn run_table(kind: Kind) {
    let _serial = PROCESS_LIST.lock().unwrap_or_else(|e| e.into_inner());
    let rootfs = busybox_rootfs();
    let root = rootfs.path();
    let before = mountinfo_under(root);
    for case in cases() {
        let argv: Vec<String> = case.argv.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let req = RunRequest {
            rootfs: root,
            argv: &argv,
            env: &env,
            uid: case.uid,
            gid: case.uid,
            additional_gids: &[],
            cwd: case.cwd,
            network: case.network,
            security: SecurityMode::Sandbox,
            mounts: &[],
            hostname: "rbuild-step-7",
        };
        let out = Capture::default();
        let report = run(kind, &req, &out, &Cancellation::new());
        let stdout = out.text(LogStream::Stdout);
        eprintln!(
            "{kind:?} / {}: {:?} stdout={stdout:?} stderr={:?}",
            case.name,
            report.result,
            out.text(LogStream::Stderr)
        );
        (case.check)(&stdout, &report.result, root);
        // Layer hygiene: the sandbox's own mount points are gone again.
        for stub in report
            .created
            .iter()
            .filter(|c| c.role == rbuild::exec::sandbox::StubRole::Sandbox)
        {
            assert!(!stub.kept, "{kind:?} / {}: {stub:?} left behind", case.name);
        }
    }
    assert_eq!(
        mountinfo_under(root),
        before,
        "{kind:?}: nothing stays mounted"
    );
    assert!(
        processes_with_arg("7777").is_empty(),
        "{kind:?}: no leftover process"
    );
    assert_eq!(
        top_level(root),
        ["bin", "created.txt", "work"],
        "{kind:?}: only what commands wrote"
    );
}

#[test]
fn sandbox_case_table() {
    run_table(Kind::Sandbox);
}

#[test]
fn runc_case_table() {
    run_table(Kind::Runc);
}

fn created_paths(report: &RunReport) -> Vec<(String, bool)> {
    report
        .created
        .iter()
        .map(|c: &CreatedPath| (c.path.clone(), c.kept))
        .collect()
}

fn mount_target_case(kind: Kind) {
    let rootfs = busybox_rootfs();
    let root = rootfs.path();
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("in.txt"), b"from host\n").expect("write");
    let ro = tempfile::tempdir().expect("tempdir");
    let nested = tempfile::tempdir().expect("tempdir");
    std::fs::write(nested.path().join("secret"), b"s3cret\n").expect("write");
    let mounts = vec![
        PreparedMount {
            source: data.path().to_path_buf(),
            target: "/mnt/data".into(),
            readonly: false,
        },
        PreparedMount {
            source: ro.path().to_path_buf(),
            target: "/ro".into(),
            readonly: true,
        },
        // Nested in /mnt/data: its mount point is made in that mount's source.
        PreparedMount {
            source: nested.path().join("secret"),
            target: "/mnt/data/inner/secret".into(),
            readonly: true,
        },
    ];
    let argv = sh("cat /mnt/data/in.txt /mnt/data/inner/secret; echo out > /mnt/data/out.txt; touch /ro/x 2>/dev/null || echo read-only; pwd");
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = RunRequest {
        cwd: "/mnt/data/wd",
        mounts: &mounts,
        ..root_request(root, &argv, &env, "m")
    };
    let out = Capture::default();
    let report = run(kind, &req, &out, &Cancellation::new());
    assert!(
        report.result.is_ok(),
        "{kind:?}: {:?} {}",
        report.result,
        out.text(LogStream::Stderr)
    );
    assert_eq!(
        out.text(LogStream::Stdout),
        "from host\ns3cret\nread-only\n/mnt/data/wd\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).expect("written through"),
        "out\n"
    );
    assert!(
        data.path().join("inner/secret").is_file(),
        "nested mount point created in the enclosing mount's source"
    );
    assert!(
        data.path().join("wd").is_dir(),
        "working directory below a mount is created in that mount"
    );
    // Mount targets stay as empty directories (BuildKit keeps them); sandbox stubs go.
    assert!(
        root.join("mnt/data").is_dir()
            && std::fs::read_dir(root.join("mnt/data"))
                .expect("read")
                .next()
                .is_none()
    );
    assert_eq!(top_level(root), ["bin", "mnt", "ro"]);
    assert_eq!(
        created_paths(&report),
        [
            ("/proc".to_string(), false),
            ("/dev".to_string(), false),
            ("/sys".to_string(), false),
            ("/etc".to_string(), false),
            ("/etc/hosts".to_string(), false),
            ("/etc/resolv.conf".to_string(), false),
            ("/mnt".to_string(), true),
            ("/mnt/data".to_string(), true),
            ("/ro".to_string(), true),
        ]
    );
}

#[test]
fn sandbox_mount_targets_are_kept() {
    mount_target_case(Kind::Sandbox);
}

#[test]
fn runc_mount_targets_are_kept() {
    mount_target_case(Kind::Runc);
}

fn cancel_case(kind: Kind) {
    let _serial = PROCESS_LIST.lock().unwrap_or_else(|e| e.into_inner());
    let rootfs = busybox_rootfs();
    // Each executor gets its own marker: the two cancellation tests run in parallel and must
    // not see each other's processes.
    let marker = match kind {
        Kind::Sandbox => "7778",
        Kind::Runc => "7779",
    };
    let script = format!("sleep {marker} & sleep {marker}");
    let argv: Vec<String> = vec!["sh".to_string(), "-c".to_string(), script];
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = root_request(rootfs.path(), &argv, &env, "c");
    let cancel = Arc::new(Cancellation::new());
    let flag = Arc::clone(&cancel);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        flag.cancel();
    });
    let start = Instant::now();
    let report = run(kind, &req, &Capture::default(), &cancel);
    t.join().expect("canceller");
    assert!(
        matches!(report.result, Err(ExecError::Cancelled)),
        "{kind:?}: {:?}",
        report.result
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{kind:?}: cancelled promptly"
    );
    // The runtime reaps asynchronously after `kill`; give it a moment, not forever.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_with_arg(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_with_arg(marker).is_empty(),
        "{kind:?}: namespace killed and reaped"
    );
    assert_eq!(top_level(rootfs.path()), ["bin"]);
}

#[test]
fn sandbox_cancellation_kills_the_namespace() {
    cancel_case(Kind::Sandbox);
}

#[test]
fn runc_cancellation_kills_the_namespace() {
    cancel_case(Kind::Runc);
}

#[test]
fn explicit_helper_path_is_used() {
    let rootfs = busybox_rootfs();
    let argv = vec!["echo".to_string(), "via explicit helper".to_string()];
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = RunRequest {
        network: NetworkMode::Default,
        security: SecurityMode::Insecure,
        ..root_request(rootfs.path(), &argv, &env, "x")
    };
    let helper: PathBuf = std::env::current_exe().expect("current exe");
    let exec = SandboxExecutor::new(SandboxOptions {
        helper,
        ..SandboxOptions::default()
    });
    let out = Capture::default();
    let report = exec.run_reporting(&req, &out, &Cancellation::new());
    assert!(report.result.is_ok(), "{:?}", report.result);
    assert_eq!(out.text(LogStream::Stdout), "via explicit helper\n");
}

fn insecure_case(kind: Kind) {
    let rootfs = busybox_rootfs();
    let argv = sh("grep -E 'CapEff|NoNewPrivs' /proc/self/status");
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = RunRequest {
        network: NetworkMode::Host,
        security: SecurityMode::Insecure,
        ..root_request(rootfs.path(), &argv, &env, "i")
    };
    let out = Capture::default();
    let report = run(kind, &req, &out, &Cancellation::new());
    assert!(report.result.is_ok(), "{kind:?}: {:?}", report.result);
    let ours = std::fs::read_to_string("/proc/self/status").expect("status");
    let bnd = ours
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd")
        .trim()
        .to_string();
    assert_eq!(
        out.text(LogStream::Stdout),
        format!("CapEff:\t{bnd}\nNoNewPrivs:\t0\n"),
        "{kind:?}: insecure keeps every capability"
    );
}

#[test]
fn sandbox_insecure_keeps_capabilities() {
    insecure_case(Kind::Sandbox);
}

#[test]
fn runc_insecure_keeps_capabilities() {
    insecure_case(Kind::Runc);
}

fn existing_etc_case(kind: Kind) {
    let rootfs = busybox_rootfs();
    let etc = rootfs.path().join("etc");
    std::fs::create_dir(&etc).expect("mkdir etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::open(&etc)
        .expect("open etc")
        .set_modified(old)
        .expect("set mtime");
    let argv = sh("echo $HOME; cat /etc/hosts | head -1");
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = root_request(rootfs.path(), &argv, &env, "etc-test");
    let out = Capture::default();
    let report = run(kind, &req, &out, &Cancellation::new());
    assert!(report.result.is_ok(), "{kind:?}: {:?}", report.result);
    assert_eq!(
        out.text(LogStream::Stdout),
        "/root\n127.0.0.1\tlocalhost etc-test\n",
        "{kind:?}"
    );
    assert_eq!(top_level(&etc), ["passwd"], "{kind:?}: stubs removed");
    let mtime = std::fs::metadata(&etc)
        .expect("stat etc")
        .modified()
        .expect("mtime");
    assert_eq!(mtime, old, "{kind:?}: /etc's mtime restored");
}

#[test]
fn sandbox_existing_etc_is_left_as_it_was() {
    existing_etc_case(Kind::Sandbox);
}

#[test]
fn runc_existing_etc_is_left_as_it_was() {
    existing_etc_case(Kind::Runc);
}
