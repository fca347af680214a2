//! The scheduler: runs the steps a build needs in dependency order, independent steps in
//! parallel, through a caller-supplied per-step function.
//!
//! Like BuildKit's solver, a step starts as soon as all its inputs are done, and independent
//! stages proceed side by side. Among ready steps the lowest id starts first, so a build with
//! `parallelism = 1` always runs in the same order. The first failure cancels the build cleanly:
//! no new step starts, steps already running see [`StepContext::is_cancelled`] and finish (or
//! stop early), steps never started are reported as [`Event::StepSkipped`], and the error names
//! the failed step and its [`crate::graph::Origin`]. An external [`Cancellation`] (Ctrl-C) works
//! the same way. Workers are scoped threads; nothing outlives [`run`]. The scheduler never does
//! I/O itself: fetching, hashing and executing happen inside the step function, with no scheduler
//! lock held.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::events::{Event, EventSink, LogStream};
use crate::exec::Cancellation;
use crate::graph::{Graph, GraphError, Origin, Step, StepId};

/// How often an external cancellation flag is checked while steps run.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// How a step function finished a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The result came from the cache.
    Cached,
    /// The step was executed.
    Built,
}

/// Options of [`run`].
#[derive(Debug, Clone, Copy)]
pub struct ScheduleOptions<'a> {
    /// Maximum number of steps running at once.
    pub parallelism: NonZeroUsize,
    /// An external cancellation flag (e.g. set on Ctrl-C), if any.
    pub cancel: Option<&'a Cancellation>,
}

impl Default for ScheduleOptions<'_> {
    fn default() -> Self {
        let n = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        ScheduleOptions {
            parallelism: n,
            cancel: None,
        }
    }
}

/// What a step function sees: the step, a log channel and the cancellation flag.
pub struct StepContext<'a> {
    id: StepId,
    step: &'a Step,
    sink: &'a dyn EventSink,
    cancel: &'a Cancellation,
}

impl<'a> StepContext<'a> {
    /// The step's id.
    pub fn id(&self) -> StepId {
        self.id
    }

    /// The step.
    pub fn step(&self) -> &'a Step {
        self.step
    }

    /// Report one line of output.
    pub fn log(&self, stream: LogStream, line: impl Into<String>) {
        self.sink.emit(Event::Log {
            id: self.id,
            stream,
            line: line.into(),
        });
    }

    /// True once the build is being cancelled; long work should stop early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The flag itself, to hand to an executor.
    pub fn cancellation(&self) -> &'a Cancellation {
        self.cancel
    }
}

/// What a successful run did, in completion order (which depends on timing when parallel).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduleReport {
    /// Each finished step and how.
    pub finished: Vec<(StepId, StepOutcome)>,
}

impl ScheduleReport {
    /// Number of steps that came from the cache.
    pub fn cached(&self) -> usize {
        self.finished
            .iter()
            .filter(|(_, o)| *o == StepOutcome::Cached)
            .count()
    }

    /// Number of steps that were executed.
    pub fn built(&self) -> usize {
        self.finished
            .iter()
            .filter(|(_, o)| *o == StepOutcome::Built)
            .count()
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError<E: std::error::Error + 'static> {
    /// The graph is not runnable.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A step failed; the first failure is reported.
    #[error("{name}: {source}")]
    StepFailed {
        /// The step.
        id: StepId,
        /// Its display name.
        name: String,
        /// Where it was written.
        origin: Box<Origin>,
        /// The step function's error.
        #[source]
        source: E,
    },
    /// The external cancellation flag was set.
    #[error("build cancelled")]
    Cancelled,
}

struct State<E> {
    ready: BTreeSet<StepId>,
    pending: BTreeMap<StepId, usize>,
    running: usize,
    started: BTreeSet<StepId>,
    failure: Option<(StepId, E)>,
    panicked: bool,
    report: ScheduleReport,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panics releases the lock through its guard without poisoning it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the steps `targets` need (all steps when `targets` is empty) through `step_fn`.
pub fn run<E, F>(
    graph: &Graph,
    targets: &[StepId],
    opts: &ScheduleOptions<'_>,
    sink: &dyn EventSink,
    step_fn: F,
) -> Result<ScheduleReport, ScheduleError<E>>
where
    E: std::error::Error + Send + 'static,
    F: Fn(&StepContext<'_>) -> Result<StepOutcome, E> + Sync,
{
    graph.validate()?;
    let needed: BTreeSet<StepId> = if targets.is_empty() {
        graph.iter().map(|(id, _)| id).collect()
    } else {
        let mut all = BTreeSet::new();
        for t in targets {
            all.extend(graph.ancestors(*t)?);
        }
        all
    };
    let mut pending = BTreeMap::new();
    let mut users: BTreeMap<StepId, Vec<StepId>> = BTreeMap::new();
    for id in &needed {
        let step = graph.get(*id).ok_or(GraphError::UnknownStep(*id))?;
        let inputs: BTreeSet<StepId> = step.inputs().into_iter().collect();
        for input in &inputs {
            users.entry(*input).or_default().push(*id);
        }
        pending.insert(*id, inputs.len());
    }
    let ready = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let state = Mutex::new(State {
        ready,
        pending,
        running: 0,
        started: BTreeSet::new(),
        failure: None,
        panicked: false,
        report: ScheduleReport::default(),
    });
    let wake = Condvar::new();
    let internal = Cancellation::new();
    let external = opts.cancel;
    let cancelled = || internal.is_cancelled() || external.is_some_and(Cancellation::is_cancelled);
    // Steps see one flag: the internal one, raised on failure or on external cancellation.
    let workers = opts.parallelism.get().min(needed.len().max(1));

    let worker = || loop {
        let id = {
            let mut st = lock(&state);
            loop {
                if cancelled() || st.failure.is_some() || st.panicked {
                    internal.cancel();
                    wake.notify_all();
                    return;
                }
                if let Some(id) = st.ready.pop_first() {
                    st.running += 1;
                    st.started.insert(id);
                    break id;
                }
                if st.running == 0 {
                    // Nothing ready and nothing running: every needed step is done.
                    wake.notify_all();
                    return;
                }
                st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let step = graph.get(id).expect("needed steps were checked to exist");
        let mut guard = PanicGuard {
            state: &state,
            wake: &wake,
            cancel: &internal,
            armed: true,
        };
        let name = step.display_name();
        sink.emit(Event::StepStarted { id, name });
        let t0 = Instant::now();
        let result = step_fn(&StepContext {
            id,
            step,
            sink,
            cancel: &internal,
        });
        guard.armed = false;
        match &result {
            Ok(StepOutcome::Cached) => sink.emit(Event::StepCached { id }),
            Ok(StepOutcome::Built) => sink.emit(Event::StepDone {
                id,
                duration: t0.elapsed(),
            }),
            Err(e) => sink.emit(Event::StepFailed {
                id,
                error: e.to_string(),
            }),
        }
        let mut st = lock(&state);
        st.running -= 1;
        match result {
            Ok(outcome) => {
                st.report.finished.push((id, outcome));
                for user in users.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                    let n = st.pending.get_mut(user).expect("users are needed steps");
                    *n -= 1;
                    if *n == 0 {
                        st.ready.insert(*user);
                    }
                }
            }
            Err(e) => {
                if st.failure.is_none() {
                    st.failure = Some((id, e));
                }
                internal.cancel();
            }
        }
        wake.notify_all();
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(worker)).collect();
        // Running steps watch only the internal flag, and idle workers sleep on the condvar:
        // carry an external cancellation (Ctrl-C) over to both while the workers run, so a long
        // RUN step is stopped at once rather than when some worker next looks.
        if let Some(external) = external {
            let mut forwarded = false;
            while handles.iter().any(|h| !h.is_finished()) {
                if !forwarded && external.is_cancelled() {
                    forwarded = true;
                    // Under the lock, so a worker between its check and its wait cannot miss it.
                    let _st = lock(&state);
                    internal.cancel();
                    wake.notify_all();
                }
                std::thread::sleep(CANCEL_POLL);
            }
        }
    });

    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    let stopped = st.failure.is_some() || cancelled();
    if stopped {
        for id in needed.iter().filter(|id| !st.started.contains(id)) {
            sink.emit(Event::StepSkipped { id: *id });
        }
    }
    if let Some((id, source)) = st.failure {
        let step = graph.get(id).expect("failed steps exist");
        return Err(ScheduleError::StepFailed {
            id,
            name: step.display_name(),
            origin: Box::new(step.origin.clone()),
            source,
        });
    }
    // A cancellation that arrives after the last step finished cancels nothing.
    if st.report.finished.len() < needed.len() {
        return Err(ScheduleError::Cancelled);
    }
    Ok(st.report)
}

/// Keeps the scheduler consistent if a step function panics: the running count drops, the
/// build is cancelled and waiting workers wake, so the scope can join and re-raise the panic.
struct PanicGuard<'a, E> {
    state: &'a Mutex<State<E>>,
    wake: &'a Condvar,
    cancel: &'a Cancellation,
    /// Cleared once the step function returned normally.
    armed: bool,
}

impl<E> Drop for PanicGuard<'_, E> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = lock(self.state);
        st.running -= 1;
        st.panicked = true;
        self.cancel.cancel();
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::events::{CollectSink, NullSink};
    use crate::graph::{ConfigOp, CopyKind, CopyOp, CopySource, FsInput, Op, SourceOp};

    #[derive(Debug, thiserror::Error)]
    #[error("boom at {0}")]
    struct Boom(StepId);

    fn scratch() -> Step {
        Step::new(
            Op::Source(SourceOp::Scratch { platform: None }),
            None,
            Origin::default(),
        )
    }

    fn env(parent: StepId) -> Step {
        Step::new(
            Op::Config(ConfigOp::Env(vec![])),
            Some(parent),
            Origin::default(),
        )
    }

    fn copy(parent: StepId, from: StepId) -> Step {
        Step::new(
            Op::Copy(CopyOp {
                kind: CopyKind::Copy,
                from: FsInput::Step(from),
                sources: vec![CopySource::Path("/".into())],
                dest: "/".into(),
                workdir: "/".into(),
                chown: None,
                chmod: None,
                link: false,
                exclude: vec![],
                parents: false,
                checksum: None,
            }),
            Some(parent),
            Origin::default(),
        )
    }

    /// a0 → a1 → a2 ; b3 → b4 ; c5 = copy(a2 ← b4) ; unrelated d6 → d7.
    fn diamond() -> Graph {
        let mut g = Graph::new();
        let a0 = g.add(scratch());
        let a1 = g.add(env(a0));
        let a2 = g.add(env(a1));
        let b3 = g.add(scratch());
        let b4 = g.add(env(b3));
        g.add(copy(a2, b4));
        let d6 = g.add(scratch());
        g.add(env(d6));
        g
    }

    fn opts(n: usize) -> ScheduleOptions<'static> {
        ScheduleOptions {
            parallelism: NonZeroUsize::new(n).expect("non-zero"),
            cancel: None,
        }
    }

    #[test]
    fn serial_order_is_deterministic_and_respects_dependencies() {
        let g = diamond();
        let report = run(&g, &[], &opts(1), &CollectSink::new(), |_| {
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect("runs");
        let order: Vec<u32> = report.finished.iter().map(|(id, _)| id.0).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn targets_limit_the_work() {
        let cases: Vec<(&str, Vec<StepId>, Vec<u32>)> = vec![
            (
                "copy needs both chains",
                vec![StepId(5)],
                vec![0, 1, 2, 3, 4, 5],
            ),
            ("one chain", vec![StepId(4)], vec![3, 4]),
            ("two targets", vec![StepId(1), StepId(7)], vec![0, 1, 6, 7]),
        ];
        for (name, targets, want) in cases {
            let report = run(&diamond(), &targets, &opts(2), &CollectSink::new(), |_| {
                Ok::<_, Boom>(StepOutcome::Cached)
            })
            .expect(name);
            let mut got: Vec<u32> = report.finished.iter().map(|(id, _)| id.0).collect();
            got.sort();
            assert_eq!(got, want, "{name}");
            assert_eq!(report.cached(), want.len(), "{name}");
        }
    }

    #[test]
    fn parallel_run_never_starts_a_step_before_its_inputs() {
        let g = diamond();
        let done = Mutex::new(BTreeSet::new());
        let running = AtomicUsize::new(0);
        let max_running = AtomicUsize::new(0);
        run(&g, &[], &opts(2), &CollectSink::new(), |cx| {
            for input in cx.step().inputs() {
                assert!(
                    lock(&done).contains(&input),
                    "{} started before {input}",
                    cx.id()
                );
            }
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max_running.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            lock(&done).insert(cx.id());
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect("runs");
        assert_eq!(lock(&done).len(), 8);
        assert!(max_running.load(Ordering::SeqCst) <= 2);
    }

    #[test]
    fn first_failure_cancels_the_rest() {
        let g = diamond();
        let sink = CollectSink::new();
        let err = run(&g, &[], &opts(1), &sink, |cx| {
            if cx.id() == StepId(1) {
                Err(Boom(cx.id()))
            } else {
                Ok(StepOutcome::Built)
            }
        })
        .expect_err("step 1 fails");
        match &err {
            ScheduleError::StepFailed { id, source, .. } => {
                assert_eq!(*id, StepId(1));
                assert_eq!(source.0, StepId(1));
            }
            other => panic!("unexpected {other}"),
        }
        let events = sink.events();
        assert!(events.contains(&Event::StepFailed {
            id: StepId(1),
            error: "boom at #1".into()
        }));
        let skipped: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                Event::StepSkipped { id } => Some(id.0),
                _ => None,
            })
            .collect();
        assert_eq!(
            skipped,
            vec![2, 3, 4, 5, 6, 7],
            "nothing starts after the failure"
        );
    }

    #[test]
    fn running_steps_see_cancellation() {
        let g = diamond();
        let saw_cancel = AtomicUsize::new(0);
        let err = run(&g, &[], &opts(2), &CollectSink::new(), |cx| {
            if cx.id() == StepId(0) {
                std::thread::sleep(Duration::from_millis(20));
                return Err(Boom(cx.id()));
            }
            if cx.id() == StepId(3) {
                // Runs beside step 0 and waits until the failure cancels the build.
                for _ in 0..500 {
                    if cx.is_cancelled() {
                        saw_cancel.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(StepOutcome::Built)
        })
        .expect_err("step 0 fails");
        assert!(matches!(
            err,
            ScheduleError::StepFailed { id: StepId(0), .. }
        ));
        assert_eq!(saw_cancel.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn external_cancellation_reaches_running_steps() {
        let mut g = Graph::new();
        let a0 = g.add(scratch());
        g.add(env(a0));
        let cancel = Cancellation::new();
        let o = ScheduleOptions {
            parallelism: NonZeroUsize::new(2).expect("non-zero"),
            cancel: Some(&cancel),
        };
        let saw_cancel = AtomicUsize::new(0);
        let err = run(&g, &[], &o, &CollectSink::new(), |cx| {
            if cx.id() == StepId(0) {
                // The only ready step: the other worker idles on the condvar, so nobody
                // else looks at the external flag while this runs (give it time to get there).
                std::thread::sleep(Duration::from_millis(50));
                cancel.cancel();
                for _ in 0..500 {
                    if cx.is_cancelled() {
                        saw_cancel.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect_err("cancelled");
        assert!(matches!(err, ScheduleError::Cancelled), "{err}");
        assert_eq!(
            saw_cancel.load(Ordering::SeqCst),
            1,
            "the step saw the flag"
        );
    }

    #[test]
    fn external_cancellation_stops_the_build() {
        let g = diamond();
        let cancel = Cancellation::new();
        let o = ScheduleOptions {
            parallelism: NonZeroUsize::MIN,
            cancel: Some(&cancel),
        };
        let err = run(&g, &[], &o, &CollectSink::new(), |cx| {
            if cx.id() == StepId(2) {
                cancel.cancel();
            }
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect_err("cancelled");
        assert!(matches!(err, ScheduleError::Cancelled));
    }

    #[test]
    fn cancellation_after_the_last_step_is_not_an_error() {
        let g = diamond();
        let cancel = Cancellation::new();
        let o = ScheduleOptions {
            parallelism: NonZeroUsize::MIN,
            cancel: Some(&cancel),
        };
        let report = run(&g, &[], &o, &CollectSink::new(), |cx| {
            if cx.id() == StepId(7) {
                cancel.cancel();
            }
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect("everything finished");
        assert_eq!(report.built(), 8);
    }

    #[test]
    fn events_and_logs_reach_the_sink() {
        let mut g = Graph::new();
        g.add(scratch());
        let sink = CollectSink::new();
        run(&g, &[], &opts(1), &sink, |cx| {
            cx.log(LogStream::Stdout, "hello");
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect("runs");
        let events = sink.events();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0],
            Event::StepStarted {
                id: StepId(0),
                name: "[stage-0] source".into()
            }
        );
        assert_eq!(
            events[1],
            Event::Log {
                id: StepId(0),
                stream: LogStream::Stdout,
                line: "hello".into()
            }
        );
        assert!(matches!(events[2], Event::StepDone { id: StepId(0), .. }));
    }

    #[test]
    fn invalid_graphs_and_targets_are_errors() {
        let mut g = Graph::new();
        g.add(env(StepId(5)));
        let err = run(&g, &[], &opts(1), &CollectSink::new(), |_| {
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect_err("invalid");
        assert!(matches!(
            err,
            ScheduleError::Graph(GraphError::MissingInput { .. })
        ));
        let err = run(
            &diamond(),
            &[StepId(42)],
            &opts(1),
            &CollectSink::new(),
            |_| Ok::<_, Boom>(StepOutcome::Built),
        )
        .expect_err("unknown");
        assert!(matches!(
            err,
            ScheduleError::Graph(GraphError::UnknownStep(StepId(42)))
        ));
    }

    #[test]
    fn a_panicking_step_does_not_hang_the_scheduler() {
        let g = diamond();
        let result = std::panic::catch_unwind(|| {
            run(&g, &[], &opts(2), &NullSink, |cx| {
                if cx.id() == StepId(1) {
                    panic!("step function bug");
                }
                Ok::<_, Boom>(StepOutcome::Built)
            })
        });
        assert!(
            result.is_err(),
            "the panic is re-raised after the workers stop"
        );
    }

    #[test]
    fn empty_graph_runs_nothing() {
        let report = run(&Graph::new(), &[], &opts(4), &CollectSink::new(), |_| {
            Ok::<_, Boom>(StepOutcome::Built)
        })
        .expect("runs");
        assert!(report.finished.is_empty());
    }
}
