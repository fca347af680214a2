//! Per-run overhead of the RUN executors: 20 runs of `true` on a busybox rootfs.
//!
//! Prints the median wall time per run for a plain `fork+exec` of the host's `/bin/true`
//! (the floor), the built-in sandbox and runc. Needs root, `/bin/busybox` and `runc`.
//! Run with `cargo bench -p rbuild --bench run_overhead`. The sandbox re-executes this binary
//! as its helper, so `main` calls `run_helper_if_requested()` first, as every binary must.

use std::path::Path;
use std::time::{Duration, Instant};

use rbuild::events::LogStream;
use rbuild::exec::runc::{RuncExecutor, RuncOptions};
use rbuild::exec::sandbox::{SandboxExecutor, SandboxOptions};
use rbuild::exec::{Cancellation, Executor, OutputSink, RunRequest};
use rbuild::graph::{NetworkMode, SecurityMode};

const RUNS: usize = 20;
const WARMUP: usize = 3;

struct Discard;

impl OutputSink for Discard {
    fn write(&self, _: LogStream, _: &[u8]) {}
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..WARMUP {
        f();
    }
    let samples = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    median(samples)
}

fn busybox_rootfs() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rbuild-bench-rootfs-")
        .tempdir()
        .expect("tempdir");
    rbuild_test_support::busybox_bin(dir.path(), &["sh", "true"]).expect("busybox in /bin");
    dir
}

fn bench(name: &str, exec: &dyn Executor, rootfs: &Path, network: NetworkMode) -> Duration {
    let argv = vec!["true".to_string()];
    let env = vec![("PATH".to_string(), "/bin".to_string())];
    let req = RunRequest {
        rootfs,
        argv: &argv,
        env: &env,
        uid: 0,
        gid: 0,
        additional_gids: &[],
        cwd: "/",
        network,
        security: SecurityMode::Sandbox,
        mounts: &[],
        hostname: "bench",
    };
    let cancel = Cancellation::new();
    let d = time(|| exec.run(&req, &Discard, &cancel).expect("`true` succeeds"));
    println!(
        "{name:<28} median {:>8.2} ms/run ({RUNS} runs)",
        d.as_secs_f64() * 1e3
    );
    d
}

fn main() {
    rbuild::exec::sandbox::run_helper_if_requested();
    let rootfs = busybox_rootfs();
    let floor = time(|| {
        std::process::Command::new("/bin/true")
            .status()
            .expect("spawn /bin/true");
    });
    println!(
        "{:<28} median {:>8.2} ms/run ({RUNS} runs)",
        "host fork+exec (floor)",
        floor.as_secs_f64() * 1e3
    );
    let sandbox = SandboxExecutor::new(SandboxOptions::default());
    bench(
        "sandbox, network=host",
        &sandbox,
        rootfs.path(),
        NetworkMode::Host,
    );
    bench(
        "sandbox, network=none",
        &sandbox,
        rootfs.path(),
        NetworkMode::None,
    );
    let runc = RuncExecutor::new(RuncOptions::default());
    bench(
        "runc, network=host",
        &runc,
        rootfs.path(),
        NetworkMode::Host,
    );
    bench(
        "runc, network=none",
        &runc,
        rootfs.path(),
        NetworkMode::None,
    );
}
