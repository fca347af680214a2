//! RUN step overhead through the whole build driver (issue 5): `FROM busybox:test` plus 20
//! distinct `RUN true N` lines, built with `no_cache: true` by the built-in sandbox and by runc.
//!
//! Where `run_overhead` times the executors alone, this times everything a RUN step costs in a
//! real build: cache keying, snapshot prepare (overlay mount over the unpacked parent layers),
//! the executor, the diff of the upper dir, the layer write and the unmount. Two numbers per
//! runtime, each the median over `--runs` builds (after one warm-up build):
//!
//! - **per-step overhead** = (wall time of the 20-RUN build − wall time of the same build with
//!   0 RUNs) / 20, so the fixed cost of a build (parse, base resolution, image write) cancels;
//!   the same difference of CPU time (user + system of this process and its waited-for
//!   children) is shown beside it, as it depends less on other load on the machine;
//! - **per-step durations** from the events (`StepStarted` → `StepDone` of each RUN step, as
//!   the builder reports them): their median and p90 over all RUN steps of all timed builds.
//!
//! Needs root, `/bin/busybox` (busybox-static) and, for the runc rows, `runc`. Run it with
//! `benches/run_steps.sh`, or `cargo bench -p rbuild --bench run_steps -- [OPTIONS]`:
//!
//! ```text
//! --runs N        timed builds per configuration (default 7, at least 5 recommended)
//! --steps N       RUN steps in the long build (default 20)
//! --runtime R     builtin, runc or both (default both)
//! --runc PATH     the runc binary (default: /usr/local/sbin, /usr/local/bin, /usr/sbin, …)
//! --breakdown     also replay runs x steps RUN steps phase by phase outside the driver
//!                 (snapshot prepare, executor, diff, layer write, release) and print medians
//! ```
//!
//! The sandbox re-executes this binary as its helper, so `main` calls
//! `run_helper_if_requested()` first, as every binary using it must.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rbuild::events::{Event, EventSink, LogStream};
use rbuild::exec::runc::{RuncExecutor, RuncOptions};
use rbuild::exec::sandbox::{SandboxExecutor, SandboxOptions};
use rbuild::exec::{Cancellation, Executor, OutputSink, RunRequest};
use rbuild::graph::{NetworkMode, SecurityMode, StepId};
use rbuild::ops::run::{prune_copied_up_dirs, RUN_SCRATCH_DIR};
use rbuild::snapshot::{Snapshot, SnapshotOptions};
use rbuild::{build, BuildRequest, DockerfileSource, Runtime, Store};
use rbuild_layers::store::LayerOptions;
use rbuild_layers::whiteout::overlay_changes;

/// Command-line options of the benchmark.
struct Options {
    runs: usize,
    steps: usize,
    runtimes: Vec<(String, Runtime)>,
    breakdown: bool,
}

/// Records when each step started and finished (arrival times), and the builder's own
/// `StepDone` duration, keyed by step.
#[derive(Default)]
struct TimingSink {
    inner: Mutex<Timings>,
}

#[derive(Default)]
struct Timings {
    names: BTreeMap<StepId, String>,
    started: BTreeMap<StepId, Instant>,
    /// Wall time from `StepStarted` to `StepDone` as seen by the sink.
    observed: BTreeMap<StepId, Duration>,
    /// The duration the builder put in `StepDone`.
    reported: BTreeMap<StepId, Duration>,
    failures: Vec<String>,
}

impl EventSink for TimingSink {
    fn emit(&self, event: Event) {
        let now = Instant::now();
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::StepStarted { id, name } => {
                t.names.insert(id, name);
                t.started.insert(id, now);
            }
            Event::StepDone { id, duration } => {
                if let Some(start) = t.started.get(&id).copied() {
                    t.observed.insert(id, now - start);
                }
                t.reported.insert(id, duration);
            }
            Event::StepFailed { id, error } => t.failures.push(format!("step {id:?}: {error}")),
            _ => {}
        }
    }
}

impl TimingSink {
    /// The (observed, reported) durations of the RUN steps of the build.
    fn run_steps(&self) -> Vec<(Duration, Duration)> {
        let t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.names
            .iter()
            .filter(|(_, name)| name.contains("RUN "))
            .filter_map(|(id, _)| Some((*t.observed.get(id)?, *t.reported.get(id)?)))
            .collect()
    }
}

fn dockerfile(steps: usize) -> String {
    let mut text = String::from("FROM busybox:test\n");
    for i in 1..=steps {
        text.push_str(&format!("RUN true {i}\n"));
    }
    text
}

fn request(steps: usize, runtime: &Runtime) -> BuildRequest {
    let mut req = BuildRequest::new(
        None,
        DockerfileSource::Text {
            name: "Dockerfile".into(),
            text: dockerfile(steps),
        },
    );
    req.no_cache = true;
    req.runtime = runtime.clone();
    req
}

/// CPU time (user + system) used so far by this process and its waited-for children (the
/// sandbox helpers, runc and the commands).
fn cpu_time() -> Duration {
    let usage = |who| {
        // SAFETY: `getrusage` only writes into the zeroed struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

/// One build: wall time, CPU time and the sink that watched it.
fn timed_build(
    store: &Store,
    req: &BuildRequest,
) -> Result<(Duration, Duration, TimingSink), String> {
    let sink = TimingSink::default();
    let cpu_start = cpu_time();
    let start = Instant::now();
    let out = build(store, req, &sink).map_err(|e| {
        let t = sink.inner.lock().unwrap_or_else(|p| p.into_inner());
        format!("build failed: {e} {:?}", t.failures)
    })?;
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);
    // The FROM step may come from the store; every RUN step must have executed.
    let runs = req_runs(req);
    if out.steps - out.cached < runs {
        return Err(format!(
            "no_cache build reused {} of {} steps ({runs} RUN steps)",
            out.cached, out.steps
        ));
    }
    Ok((elapsed, cpu, sink))
}

/// The number of RUN lines in the request's Dockerfile text.
fn req_runs(req: &BuildRequest) -> usize {
    match &req.dockerfile {
        DockerfileSource::Text { text, .. } => {
            text.lines().filter(|l| l.starts_with("RUN ")).count()
        }
        DockerfileSource::Path(_) => 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest-rank percentile.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Everything measured for one runtime.
struct Row {
    name: String,
    base_build: Duration,
    long_build: Duration,
    per_step: f64,
    cpu_per_step: f64,
    observed_median: Duration,
    observed_p90: Duration,
    reported_median: Duration,
    reported_p90: Duration,
    samples: usize,
    phases: Option<Phases>,
}

/// Median time of each phase of a RUN step, replayed outside the driver.
struct Phases {
    prepare: Duration,
    exec: Duration,
    diff: Duration,
    layer: Duration,
    release: Duration,
    total: Duration,
    layers_written: usize,
    samples: usize,
}

struct Discard;

impl OutputSink for Discard {
    fn write(&self, _: LogStream, _: &[u8]) {}
}

/// Replay the phases of a RUN step (as `rbuild::ops::run::run_step` and the solver do them)
/// over the store's unpacked busybox layer, timing each: snapshot prepare (overlay mount), the
/// executor, the upper-dir diff (copy-up pruning + `overlay_changes`), the layer write (only
/// when the diff is not empty, as in the solver) and the snapshot release (unmount + removal).
/// Cache keying, the cache index, the scheduler and events are not part of it.
fn phases(store: &Store, runtime: &Runtime, samples: usize) -> Result<Phases, String> {
    let unpacked = store.root().join("snapshots-v1");
    let mut lowers: Vec<PathBuf> = std::fs::read_dir(&unpacked)
        .map_err(|e| format!("read {}: {e}", unpacked.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    lowers.sort();
    if lowers.len() != 1 {
        return Err(format!(
            "expected one unpacked layer in {}, found {}",
            unpacked.display(),
            lowers.len()
        ));
    }
    let executor: Box<dyn Executor> = match runtime {
        Runtime::Builtin => Box::new(SandboxExecutor::new(SandboxOptions::default())),
        Runtime::Oci(path) => Box::new(RuncExecutor::new(RuncOptions {
            runtime: path.clone(),
            ..RuncOptions::default()
        })),
    };
    let options = SnapshotOptions {
        parent: store.root().join(RUN_SCRATCH_DIR),
        mode: Default::default(),
    };
    let env = vec![(
        "PATH".to_string(),
        rbuild::ops::run::DEFAULT_PATH.to_string(),
    )];
    let cancel = Cancellation::new();
    let mut t = [const { Vec::new() }; 6];
    let mut layers_written = 0;
    for i in 0..samples {
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), format!("true {i}")];
        let start = Instant::now();
        let snapshot = Snapshot::prepare(&lowers, &options).map_err(|e| format!("prepare: {e}"))?;
        let prepared = Instant::now();
        let req = RunRequest {
            rootfs: snapshot.merged(),
            argv: &argv,
            env: &env,
            uid: 0,
            gid: 0,
            additional_gids: &[],
            cwd: "/",
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: &[],
            hostname: "buildkitsandbox",
        };
        executor
            .run(&req, &Discard, &cancel)
            .map_err(|e| format!("run: {e}"))?;
        let executed = Instant::now();
        let upper = snapshot.upper().ok_or("snapshot is not an overlay")?;
        prune_copied_up_dirs(&upper, &lowers).map_err(|e| format!("prune: {e}"))?;
        let changes = overlay_changes(&upper).map_err(|e| format!("diff: {e}"))?;
        let diffed = Instant::now();
        if !changes.is_empty() {
            changes
                .write_layer(store.blobs(), LayerOptions::default())
                .map_err(|e| format!("write layer: {e}"))?;
            layers_written += 1;
        }
        let written = Instant::now();
        snapshot.release().map_err(|e| format!("release: {e}"))?;
        let released = Instant::now();
        for (k, d) in [
            prepared - start,
            executed - prepared,
            diffed - executed,
            written - diffed,
            released - written,
            released - start,
        ]
        .into_iter()
        .enumerate()
        {
            t[k].push(d);
        }
    }
    Ok(Phases {
        prepare: median(&t[0]),
        exec: median(&t[1]),
        diff: median(&t[2]),
        layer: median(&t[3]),
        release: median(&t[4]),
        total: median(&t[5]),
        layers_written,
        samples,
    })
}

fn bench_runtime(name: &str, runtime: &Runtime, opts: &Options) -> Result<Row, String> {
    let scratch = tempfile::Builder::new()
        .prefix("rbuild-bench-run-steps-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let root = scratch.path().join("store");
    let store = Store::open(&root).map_err(|e| format!("open store: {e}"))?;
    rbuild_test_support::import_busybox(&root).map_err(|e| format!("import busybox: {e}"))?;

    let base_req = request(0, runtime);
    let long_req = request(opts.steps, runtime);
    // Warm-up: unpacks the base layer into the store's snapshot cache, fills the page cache.
    timed_build(&store, &base_req)?;
    timed_build(&store, &long_req)?;

    let mut base = Vec::new();
    let mut long = Vec::new();
    let mut base_cpu = Vec::new();
    let mut long_cpu = Vec::new();
    let mut observed = Vec::new();
    let mut reported = Vec::new();
    for run in 0..opts.runs {
        // Alternate the order so drift on the machine hits both builds alike.
        let (b, l) = if run % 2 == 0 {
            let b = timed_build(&store, &base_req)?;
            (b, timed_build(&store, &long_req)?)
        } else {
            let l = timed_build(&store, &long_req)?;
            (timed_build(&store, &base_req)?, l)
        };
        base.push(b.0);
        long.push(l.0);
        base_cpu.push(b.1);
        long_cpu.push(l.1);
        let steps = l.2.run_steps();
        if steps.len() != opts.steps {
            return Err(format!(
                "expected {} RUN steps in the events, saw {}",
                opts.steps,
                steps.len()
            ));
        }
        for (o, r) in steps {
            observed.push(o);
            reported.push(r);
        }
        eprintln!(
            "  {name} run {}/{}: 0 RUN {:.1} ms, {} RUN {:.1} ms",
            run + 1,
            opts.runs,
            ms(b.0),
            opts.steps,
            ms(l.0)
        );
    }
    observed.sort();
    reported.sort();
    let phases = if opts.breakdown {
        Some(phases(&store, runtime, opts.runs * opts.steps)?)
    } else {
        None
    };
    let base_build = median(&base);
    let long_build = median(&long);
    let per_step_of = |long: Duration, base: Duration| {
        if opts.steps == 0 {
            0.0
        } else {
            (ms(long) - ms(base)) / opts.steps as f64
        }
    };
    let per_step = per_step_of(long_build, base_build);
    let cpu_per_step = per_step_of(median(&long_cpu), median(&base_cpu));
    Ok(Row {
        name: name.to_string(),
        base_build,
        long_build,
        per_step,
        cpu_per_step,
        observed_median: median(&observed),
        observed_p90: percentile(&observed, 90.0),
        reported_median: median(&reported),
        reported_p90: percentile(&reported, 90.0),
        samples: observed.len(),
        phases,
    })
}

/// The first runc in the usual install locations (the library and its benches never read the
/// environment; `benches/run_steps.sh` passes `--runc "$(command -v runc)"`).
fn find_runc() -> Option<PathBuf> {
    [
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/sbin/runc",
        "/bin/runc",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn parse_args() -> Result<Options, String> {
    let mut runs = 7;
    let mut steps = 20;
    let mut which = "both".to_string();
    let mut runc: Option<PathBuf> = None;
    let mut breakdown = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--runs" => {
                runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--steps" => {
                steps = value("--steps")?
                    .parse()
                    .map_err(|e| format!("--steps: {e}"))?
            }
            "--runtime" => which = value("--runtime")?,
            "--runc" => runc = Some(PathBuf::from(value("--runc")?)),
            "--breakdown" => breakdown = true,
            // cargo bench passes `--bench`; ignore it and any filter.
            "--bench" => {}
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            _ => {}
        }
    }
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let mut runtimes = Vec::new();
    if matches!(which.as_str(), "builtin" | "both") {
        runtimes.push(("builtin sandbox".to_string(), Runtime::Builtin));
    }
    if matches!(which.as_str(), "runc" | "both") {
        let path = runc
            .or_else(find_runc)
            .ok_or("runc not found in /usr/local/sbin, /usr/sbin, /usr/bin… (give --runc PATH)")?;
        runtimes.push((format!("runc ({})", path.display()), Runtime::Oci(path)));
    }
    if runtimes.is_empty() {
        return Err(format!("--runtime {which}: expected builtin, runc or both"));
    }
    Ok(Options {
        runs,
        steps,
        runtimes,
        breakdown,
    })
}

fn print_table(rows: &[Row], opts: &Options) {
    println!();
    println!(
        "RUN step overhead: FROM busybox:test + {} x RUN true N, no_cache, median of {} builds",
        opts.steps, opts.runs
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>12} {:>10}",
        "runtime",
        "0 RUN ms",
        "N RUN ms",
        "per-step ms",
        "CPU/step ms",
        "step med ms",
        "step p90",
        "reported med",
        "rep. p90"
    );
    for r in rows {
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>12.2} {:>12.2} {:>12.2} {:>10.2} {:>12.2} {:>10.2}",
            r.name,
            ms(r.base_build),
            ms(r.long_build),
            r.per_step,
            r.cpu_per_step,
            ms(r.observed_median),
            ms(r.observed_p90),
            ms(r.reported_median),
            ms(r.reported_p90)
        );
    }
    println!(
        "per-step = (N RUN build - 0 RUN build) / N (wall; CPU = user+sys of the bench and \
         its children); step med/p90 = StepStarted -> StepDone \
         over {} RUN steps; reported = StepDone.duration",
        rows.first().map_or(0, |r| r.samples)
    );
    if rows.iter().all(|r| r.phases.is_none()) {
        return;
    }
    println!();
    println!("Breakdown: the phases of a RUN step replayed outside the driver (medians, ms)");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "runtime", "prepare", "exec", "diff", "layer", "release", "total", "driver"
    );
    for r in rows {
        if let Some(p) = &r.phases {
            println!(
                "{:<28} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                r.name,
                ms(p.prepare),
                ms(p.exec),
                ms(p.diff),
                ms(p.layer),
                ms(p.release),
                ms(p.total),
                r.per_step - ms(p.total)
            );
        }
    }
    let p = rows.iter().find_map(|r| r.phases.as_ref());
    println!(
        "prepare = overlay snapshot; exec = executor; diff = copy-up pruning + overlay_changes; \
         layer = write_layer ({} of {} diffs non-empty); release = unmount + remove; \
         driver = per-step - total (keying, cache index, scheduling, events)",
        p.map_or(0, |p| p.layers_written),
        p.map_or(0, |p| p.samples)
    );
}

fn main() -> ExitCode {
    rbuild::exec::sandbox::run_helper_if_requested();
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("run_steps: {e}");
            return ExitCode::from(2);
        }
    };
    if !Path::new(rbuild_test_support::BUSYBOX).is_file() {
        eprintln!(
            "run_steps: {} missing (install busybox-static)",
            rbuild_test_support::BUSYBOX
        );
        return ExitCode::from(2);
    }
    let mut rows = Vec::new();
    for (name, runtime) in &opts.runtimes {
        match bench_runtime(name, runtime, &opts) {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("run_steps: {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&rows, &opts);
    ExitCode::SUCCESS
}
