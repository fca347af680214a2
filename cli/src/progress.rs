//! Rendering the builder's [`rbuild::events`] the way BuildKit's progress UI does.
//!
//! - **plain** (BuildKit's `--progress=plain`, the default when stderr is not a terminal): one
//!   line per event, each prefixed with the step's number in order of appearance:
//!   `#3 [build 2/4] RUN make`, then its output as `#3 0.412 cc -o app main.c` (seconds since
//!   the step started), then `#3 DONE 1.3s`, `#3 CACHED` or `#3 ERROR: …`, and a blank line.
//!   When steps run in parallel, a step's header is repeated before its output resumes.
//! - **tty** (the default on a terminal): a live view, one spinner line per running step with
//!   its latest output line under it (indicatif); finished steps scroll up as plain lines.
//! - **quiet**: nothing; the caller prints errors and the final digest.
//! - **rawjson**: one JSON object per event, for tools.
//!
//! Step names come from the library as `[stage] INSTRUCTION`; [`StepLabels`] turns them into
//! BuildKit's `[stage i/n] INSTRUCTION` (just `[i/n]` when the Dockerfile has one stage).
//! Like BuildKit's dockerfile2llb (`prefixCommand` over `cmdTotal`), only instructions that
//! become build operations are shown and counted: FROM of an image (not `scratch`, not an
//! earlier stage), RUN, COPY, ADD and WORKDIR. Metadata-only instructions (ENV, LABEL, CMD, …)
//! and FROM scratch make no vertex, so plain and tty output hide them unless they fail; rawjson
//! still emits their events, with `"shown": false` and no step number.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild::events::{Event, EventSink, LogStream};
use rbuild::graph::StepId;
use rbuild_dockerfile::lower::{Base, Plan};
use serde_json::json;

use crate::args::ProgressMode;

/// How many output lines of a step are kept for the error report and the live view.
const TAIL_LINES: usize = 10;

/// The resolved way of showing progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Line by line.
    Plain,
    /// A live view on a terminal.
    Tty,
    /// Nothing.
    Quiet,
    /// JSON lines.
    RawJson,
}

impl Style {
    /// Resolve `--progress` (`auto` is `tty` on a terminal, else `plain`).
    pub fn choose(mode: ProgressMode, stderr_is_terminal: bool) -> Style {
        match mode {
            ProgressMode::Auto if stderr_is_terminal => Style::Tty,
            ProgressMode::Auto | ProgressMode::Plain => Style::Plain,
            ProgressMode::Tty => Style::Tty,
            ProgressMode::Quiet => Style::Quiet,
            ProgressMode::Rawjson => Style::RawJson,
        }
    }
}

/// Per-stage instruction lists, to number steps `i/n` within their stage.
#[derive(Debug, Default)]
pub struct StepLabels {
    stages: BTreeMap<String, StageSteps>,
    single: bool,
}

/// How one library step is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLabel {
    /// The text after `#N`, e.g. `[build 2/4] COPY . .`.
    pub text: String,
    /// Whether BuildKit would show the step as a vertex.
    pub shown: bool,
}

#[derive(Debug)]
struct StageSteps {
    /// First lines of FROM and each instruction after it, in file order, with the 1-based
    /// vertex number of those BuildKit shows.
    texts: Vec<(String, Option<usize>)>,
    /// How many of `texts` are shown.
    total: usize,
    /// Index after the last matched instruction: steps of a stage run in order.
    cursor: usize,
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// Whether an instruction becomes a build operation (a vertex) in BuildKit.
fn is_vertex(text: &str) -> bool {
    let keyword = text.split_whitespace().next().unwrap_or("");
    ["RUN", "COPY", "ADD", "WORKDIR"]
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k))
}

impl StepLabels {
    /// Labels for the stages of `plan`.
    pub fn from_plan(plan: &Plan) -> StepLabels {
        let stages = plan
            .stages
            .iter()
            .map(|stage| {
                let from_shown = matches!(stage.base, Base::Image(_));
                let mut total = 0;
                let mut number = |shown: bool| {
                    shown.then(|| {
                        total += 1;
                        total
                    })
                };
                let mut texts = vec![(first_line(&stage.original).to_string(), number(from_shown))];
                for c in &stage.commands {
                    let text = first_line(&c.original).to_string();
                    let n = number(is_vertex(&text));
                    texts.push((text, n));
                }
                let steps = StageSteps {
                    texts,
                    total,
                    cursor: 0,
                };
                (stage.display_name(), steps)
            })
            .collect();
        StepLabels {
            stages,
            single: plan.stages.len() == 1,
        }
    }

    /// BuildKit's label for a library step name `[stage] TEXT`; names that do not match a
    /// known instruction are returned unchanged and shown.
    pub fn label(&mut self, name: &str) -> StepLabel {
        let unchanged = StepLabel {
            text: name.to_string(),
            shown: true,
        };
        let Some((stage, text)) = name
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("] "))
        else {
            return unchanged;
        };
        let Some(steps) = self.stages.get_mut(stage) else {
            return unchanged;
        };
        let text = text.trim();
        let found = (steps.cursor..steps.texts.len())
            .chain(0..steps.cursor)
            .find(|&i| steps.texts[i].0 == text);
        let Some(i) = found else {
            return unchanged;
        };
        steps.cursor = i + 1;
        let Some(n) = steps.texts[i].1 else {
            return StepLabel {
                text: if self.single {
                    text.to_string()
                } else {
                    format!("[{stage}] {text}")
                },
                shown: false,
            };
        };
        let total = steps.total;
        let width = total.to_string().len();
        let text = if self.single {
            format!("[{n:>width$}/{total}] {text}")
        } else {
            format!("[{stage} {n:>width$}/{total}] {text}")
        };
        StepLabel { text, shown: true }
    }
}

/// What the renderer remembers about a step.
struct StepView {
    /// `#N`, assigned when the step is first printed (hidden steps only if they fail).
    number: Option<usize>,
    label: String,
    /// Whether BuildKit would show this step.
    shown: bool,
    started: Instant,
    tail: VecDeque<String>,
    bar: Option<ProgressBar>,
    log_bar: Option<ProgressBar>,
}

struct Inner {
    start: Instant,
    out: Box<dyn Write + Send>,
    steps: BTreeMap<StepId, StepView>,
    next_number: usize,
    /// Plain: the step whose header line was printed last.
    last_header: Option<StepId>,
    labels: StepLabels,
    multi: Option<MultiProgress>,
    /// Output tails of failed steps, for the error report.
    failed_tails: Vec<(String, Vec<String>)>,
}

/// An [`EventSink`] that renders events in one [`Style`].
pub struct Progress {
    style: Style,
    inner: Mutex<Inner>,
}

impl Progress {
    /// A renderer writing to `out` (the tty style draws on stderr whatever `out` is).
    pub fn new(style: Style, labels: StepLabels, out: Box<dyn Write + Send>) -> Progress {
        let multi = (style == Style::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            style,
            inner: Mutex::new(Inner {
                start: Instant::now(),
                out,
                steps: BTreeMap::new(),
                next_number: 1,
                last_header: None,
                labels,
                multi,
                failed_tails: Vec::new(),
            }),
        }
    }

    /// A renderer writing to stderr.
    pub fn stderr(style: Style, labels: StepLabels) -> Progress {
        Progress::new(style, labels, Box::new(std::io::stderr()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Stop the live view (leaving finished lines on screen).
    pub fn finish(&self) {
        let mut inner = self.lock();
        for view in inner.steps.values_mut() {
            for bar in [view.bar.take(), view.log_bar.take()].into_iter().flatten() {
                bar.finish_and_clear();
            }
        }
        if let Some(multi) = inner.multi.take() {
            let _ = multi.clear();
        }
        let _ = inner.out.flush();
    }

    /// Print a line of the build's own (not a step's), e.g. the final summary; nothing in the
    /// quiet and rawjson styles.
    pub fn line(&self, text: &str) {
        if matches!(self.style, Style::Quiet | Style::RawJson) {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let out = &mut inner.out;
        match &inner.multi {
            Some(multi) => multi.suspend(|| {
                let _ = writeln!(out, "{text}");
            }),
            None => {
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Emit a JSON object in the rawjson style (e.g. the build result); nothing otherwise.
    pub fn json(&self, value: serde_json::Value) {
        if self.style != Style::RawJson {
            return;
        }
        let mut inner = self.lock();
        let _ = writeln!(inner.out, "{value}");
    }

    /// The last output lines of each step that failed, labelled.
    pub fn failed_tails(&self) -> Vec<(String, Vec<String>)> {
        self.lock().failed_tails.clone()
    }
}

impl Inner {
    fn view(&mut self, id: StepId, name: Option<&str>) -> &mut StepView {
        if !self.steps.contains_key(&id) {
            let label = match name {
                Some(n) => self.labels.label(n),
                None => StepLabel {
                    text: format!("step {id}"),
                    shown: true,
                },
            };
            self.steps.insert(
                id,
                StepView {
                    number: None,
                    label: label.text,
                    shown: label.shown,
                    started: Instant::now(),
                    tail: VecDeque::new(),
                    bar: None,
                    log_bar: None,
                },
            );
            if label.shown {
                self.number(id);
            }
        }
        self.steps.get_mut(&id).expect("inserted above")
    }

    /// The step's `#N`, assigning the next one on first use.
    fn number(&mut self, id: StepId) -> usize {
        let next = &mut self.next_number;
        let Some(view) = self.steps.get_mut(&id) else {
            return 0;
        };
        *view.number.get_or_insert_with(|| {
            let n = *next;
            *next += 1;
            n
        })
    }

    fn plain(&mut self, event: &Event) {
        let id = event_step(event);
        let name = match event {
            Event::StepStarted { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let shown = self.view(id, name).shown;
        if !shown {
            // BuildKit has no vertex for this step: keep its output for an error, and print
            // it only if it fails.
            match event {
                Event::Log { line, .. } => push_tail(&mut self.view(id, None).tail, line),
                Event::StepFailed { .. } => {}
                _ => return,
            }
            if !matches!(event, Event::StepFailed { .. }) {
                return;
            }
        }
        let number = self.number(id);
        let label = self.view(id, None).label.clone();
        let header_needed = self.last_header != Some(id);
        let mut text = String::new();
        match event {
            Event::StepStarted { .. } => {
                text.push_str(&format!("#{number} {label}\n"));
                self.last_header = Some(id);
            }
            Event::Log { line, .. } => {
                if header_needed {
                    text.push_str(&format!("#{number} {label}\n"));
                    self.last_header = Some(id);
                }
                let view = self.view(id, None);
                let at = view.started.elapsed().as_secs_f64();
                push_tail(&mut view.tail, line);
                text.push_str(&format!("#{number} {at:.3} {line}\n"));
            }
            Event::StepCached { .. } => {
                if header_needed {
                    text.push_str(&format!("#{number} {label}\n"));
                }
                text.push_str(&format!("#{number} CACHED\n\n"));
                self.last_header = None;
            }
            Event::StepDone { duration, .. } => {
                if header_needed {
                    text.push_str(&format!("#{number} {label}\n"));
                }
                text.push_str(&format!("#{number} DONE {}\n\n", seconds(*duration)));
                self.last_header = None;
            }
            Event::StepFailed { error, .. } => {
                if header_needed {
                    text.push_str(&format!("#{number} {label}\n"));
                }
                let mut lines = error.lines();
                let first = lines.next().unwrap_or("");
                text.push_str(&format!("#{number} ERROR: {first}\n"));
                for more in lines {
                    text.push_str(&format!("#{number} {more}\n"));
                }
                text.push('\n');
                self.last_header = None;
                self.record_failure(id);
            }
            Event::StepSkipped { .. } => {}
        }
        let _ = self.out.write_all(text.as_bytes());
    }

    fn record_failure(&mut self, id: StepId) {
        let number = self.number(id);
        if let Some(view) = self.steps.get(&id) {
            let entry = (
                format!("#{number} {}", view.label),
                view.tail.iter().cloned().collect(),
            );
            self.failed_tails.push(entry);
        }
    }

    fn tty(&mut self, event: &Event) {
        let id = event_step(event);
        let Some(multi) = self.multi.clone() else {
            return self.plain(event);
        };
        let name = match event {
            Event::StepStarted { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let shown = self.view(id, name).shown;
        if !shown && !matches!(event, Event::StepFailed { .. }) {
            if let Event::Log { line, .. } = event {
                push_tail(&mut self.view(id, None).tail, line);
            }
            return;
        }
        let number = self.number(id);
        match event {
            Event::StepStarted { .. } => {
                let view = self.view(id, None);
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.blue} {wide_msg} {elapsed:>4}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("#{number} {}", view.label));
                bar.enable_steady_tick(Duration::from_millis(120));
                view.bar = Some(bar);
            }
            Event::Log { line, .. } => {
                let view = self.view(id, None);
                push_tail(&mut view.tail, line);
                if view.log_bar.is_none() {
                    let log_bar = match &view.bar {
                        Some(bar) => multi.insert_after(bar, ProgressBar::new_spinner()),
                        None => multi.add(ProgressBar::new_spinner()),
                    };
                    log_bar.set_style(
                        ProgressStyle::with_template("    {wide_msg:.dim}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    view.log_bar = Some(log_bar);
                }
                if let Some(log_bar) = &view.log_bar {
                    log_bar.set_message(line.clone());
                }
            }
            Event::StepCached { .. } | Event::StepDone { .. } | Event::StepFailed { .. } => {
                let view = self.view(id, None);
                for bar in [view.bar.take(), view.log_bar.take()].into_iter().flatten() {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                let status = match event {
                    Event::StepCached { .. } => "CACHED".to_string(),
                    Event::StepDone { duration, .. } => format!("DONE {}", seconds(*duration)),
                    Event::StepFailed { error, .. } => {
                        format!("ERROR: {}", error.lines().next().unwrap_or(""))
                    }
                    _ => String::new(),
                };
                let mut text = format!("#{number} {} {status}", view.label);
                if matches!(event, Event::StepFailed { .. }) {
                    for line in &view.tail {
                        text.push_str(&format!("\n#{number} {line}"));
                    }
                }
                let out = &mut self.out;
                multi.suspend(|| {
                    let _ = writeln!(out, "{text}");
                });
                if matches!(event, Event::StepFailed { .. }) {
                    self.record_failure(id);
                }
            }
            Event::StepSkipped { .. } => {}
        }
    }

    fn raw_json(&mut self, event: &Event) {
        let time = self.start.elapsed().as_secs_f64();
        let id = event_step(event);
        let name = match event {
            Event::StepStarted { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let (number, label, shown) = match event {
            Event::StepSkipped { .. } if !self.steps.contains_key(&id) => (None, None, None),
            _ => {
                let view = self.view(id, name);
                (view.number, Some(view.label.clone()), Some(view.shown))
            }
        };
        let mut value = match event {
            Event::StepStarted { name, .. } => {
                json!({"type": "started", "name": label, "instruction": name})
            }
            Event::StepCached { .. } => json!({"type": "cached"}),
            Event::StepDone { duration, .. } => {
                json!({"type": "done", "duration": duration.as_secs_f64()})
            }
            Event::Log { stream, line, .. } => {
                let view = self.view(id, None);
                push_tail(&mut view.tail, line);
                json!({"type": "log", "stream": stream_name(*stream), "line": line})
            }
            Event::StepFailed { error, .. } => {
                self.record_failure(id);
                json!({"type": "failed", "error": error})
            }
            Event::StepSkipped { .. } => json!({"type": "skipped"}),
        };
        // A hidden step that failed got its number just now.
        let number = number.or_else(|| self.steps.get(&id).and_then(|v| v.number));
        if let Some(object) = value.as_object_mut() {
            object.insert("time".into(), json!(time));
            object.insert("id".into(), json!(id.0));
            if let Some(n) = number {
                object.insert("step".into(), json!(n));
            }
            if let Some(shown) = shown {
                object.insert("shown".into(), json!(shown));
            }
        }
        let _ = writeln!(self.out, "{value}");
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        let mut inner = self.lock();
        match self.style {
            Style::Plain => inner.plain(&event),
            Style::Tty => inner.tty(&event),
            Style::RawJson => inner.raw_json(&event),
            Style::Quiet => {
                // Keep output tails for the error report, print nothing.
                let id = event_step(&event);
                match &event {
                    Event::StepStarted { name, .. } => {
                        inner.view(id, Some(name));
                    }
                    Event::Log { line, .. } => push_tail(&mut inner.view(id, None).tail, line),
                    Event::StepFailed { .. } => inner.record_failure(id),
                    _ => {}
                }
            }
        }
    }
}

fn event_step(event: &Event) -> StepId {
    match event {
        Event::StepStarted { id, .. }
        | Event::StepCached { id }
        | Event::StepDone { id, .. }
        | Event::Log { id, .. }
        | Event::StepFailed { id, .. }
        | Event::StepSkipped { id } => *id,
    }
}

fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Builder => "builder",
    }
}

fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line.to_string());
}

/// BuildKit's duration format: one decimal, in seconds.
fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
        }
    }

    fn labels(dockerfile: &str) -> StepLabels {
        let df = rbuild_dockerfile::parse(dockerfile).expect("parses");
        let plan = rbuild_dockerfile::lower(&df, &Default::default()).expect("lowers");
        StepLabels::from_plan(&plan)
    }

    /// `(library name, label, shown)`.
    fn check(l: &mut StepLabels, cases: &[(&str, &str, bool)]) {
        for &(name, text, shown) in cases {
            let want = StepLabel {
                text: text.to_string(),
                shown,
            };
            assert_eq!(l.label(name), want, "{name}");
        }
    }

    #[test]
    fn labels_count_only_buildkit_vertices() {
        let mut l = labels(
            "FROM busybox AS base\nENV A=1\nCOPY a /a\nCOPY a /a\n\n\
             FROM base\nENV X=1\nRUN x\n\nFROM scratch AS out\nADD a /a\n",
        );
        check(
            &mut l,
            &[
                // FROM of an image is a vertex and counts.
                (
                    "[base] FROM busybox AS base",
                    "[base 1/3] FROM busybox AS base",
                    true,
                ),
                ("[base] ENV A=1", "[base] ENV A=1", false),
                ("[base] COPY a /a", "[base 2/3] COPY a /a", true),
                ("[base] COPY a /a", "[base 3/3] COPY a /a", true),
                // FROM an earlier stage makes no vertex.
                ("[stage-1] FROM base", "[stage-1] FROM base", false),
                ("[stage-1] ENV X=1", "[stage-1] ENV X=1", false),
                ("[stage-1] RUN x", "[stage-1 1/1] RUN x", true),
                // Neither does FROM scratch.
                (
                    "[out] FROM scratch AS out",
                    "[out] FROM scratch AS out",
                    false,
                ),
                ("[out] ADD a /a", "[out 1/1] ADD a /a", true),
                ("[other] RUN x", "[other] RUN x", true),
                ("[base] RUN y", "[base] RUN y", true),
                ("no brackets", "no brackets", true),
            ],
        );
    }

    #[test]
    fn labels_of_a_single_stage_from_scratch() {
        // BuildKit: `[1/2] COPY a /a`, `[2/2] WORKDIR /w`; no FROM, ENV, LABEL or CMD vertex.
        let mut l =
            labels("FROM scratch\nENV A=1\nCOPY a /a\nLABEL x=y\nWORKDIR /w\nCMD [\"x\"]\n");
        check(
            &mut l,
            &[
                ("[stage-0] FROM scratch", "FROM scratch", false),
                ("[stage-0] ENV A=1", "ENV A=1", false),
                ("[stage-0] COPY a /a", "[1/2] COPY a /a", true),
                ("[stage-0] LABEL x=y", "LABEL x=y", false),
                ("[stage-0] WORKDIR /w", "[2/2] WORKDIR /w", true),
                ("[stage-0] CMD [\"x\"]", "CMD [\"x\"]", false),
            ],
        );
    }

    /// Run every step of `names` to DONE through a plain renderer of `dockerfile`.
    fn plain_run(dockerfile: &str, names: &[&str]) -> String {
        let out = Shared::default();
        let p = Progress::new(Style::Plain, labels(dockerfile), Box::new(out.clone()));
        for (i, name) in (0u32..).zip(names) {
            let id = StepId(i);
            p.emit(Event::StepStarted {
                id,
                name: name.to_string(),
            });
            p.emit(Event::StepDone {
                id,
                duration: Duration::from_millis(100),
            });
        }
        out.text()
    }

    #[test]
    fn plain_shows_only_vertices_from_scratch() {
        let text = plain_run(
            "FROM scratch\nENV A=1\nCOPY a /a\nLABEL x=y\nWORKDIR /w\nCMD [\"x\"]\n",
            &[
                "[stage-0] FROM scratch",
                "[stage-0] ENV A=1",
                "[stage-0] COPY a /a",
                "[stage-0] LABEL x=y",
                "[stage-0] WORKDIR /w",
                "[stage-0] CMD [\"x\"]",
            ],
        );
        assert_eq!(
            text,
            "#1 [1/2] COPY a /a\n#1 DONE 0.1s\n\n#2 [2/2] WORKDIR /w\n#2 DONE 0.1s\n\n"
        );
    }

    #[test]
    fn plain_shows_a_hidden_step_that_fails() {
        let out = Shared::default();
        let p = Progress::new(
            Style::Plain,
            labels("FROM scratch\nENV A=1\nCOPY a /a\n"),
            Box::new(out.clone()),
        );
        p.emit(Event::StepStarted {
            id: StepId(0),
            name: "[stage-0] ENV A=1".into(),
        });
        p.emit(Event::StepFailed {
            id: StepId(0),
            error: "bad".into(),
        });
        assert_eq!(out.text(), "#1 ENV A=1\n#1 ERROR: bad\n\n");
        assert_eq!(p.failed_tails(), vec![("#1 ENV A=1".to_string(), vec![])]);
    }

    #[test]
    fn plain_is_buildkit_like() {
        let out = Shared::default();
        let p = Progress::new(
            Style::Plain,
            labels("FROM busybox\nCOPY a /a\nCMD [\"x\"]\n"),
            Box::new(out.clone()),
        );
        let (a, b, c) = (StepId(0), StepId(1), StepId(2));
        p.emit(Event::StepStarted {
            id: a,
            name: "[stage-0] FROM busybox".into(),
        });
        p.emit(Event::StepCached { id: a });
        p.emit(Event::StepStarted {
            id: b,
            name: "[stage-0] COPY a /a".into(),
        });
        p.emit(Event::Log {
            id: b,
            stream: LogStream::Stdout,
            line: "hello".into(),
        });
        p.emit(Event::StepDone {
            id: b,
            duration: Duration::from_millis(320),
        });
        p.emit(Event::StepStarted {
            id: c,
            name: "[stage-0] CMD [\"x\"]".into(),
        });
        p.emit(Event::StepDone {
            id: c,
            duration: Duration::from_millis(1),
        });
        p.line("done");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [1/2] FROM busybox");
        assert_eq!(lines[1], "#1 CACHED");
        assert_eq!(lines[2], "");
        assert_eq!(lines[3], "#2 [2/2] COPY a /a");
        assert!(
            lines[4].starts_with("#2 0.") && lines[4].ends_with(" hello"),
            "{text}"
        );
        assert_eq!(lines[5], "#2 DONE 0.3s");
        assert_eq!(lines[6], "");
        assert_eq!(lines[7], "done");
        assert_eq!(lines.len(), 8, "{text}");
    }

    #[test]
    fn plain_repeats_header_when_steps_interleave() {
        let out = Shared::default();
        let p = Progress::new(Style::Plain, StepLabels::default(), Box::new(out.clone()));
        let (a, b) = (StepId(3), StepId(4));
        p.emit(Event::StepStarted {
            id: a,
            name: "[x] RUN a".into(),
        });
        p.emit(Event::StepStarted {
            id: b,
            name: "[y] RUN b".into(),
        });
        p.emit(Event::Log {
            id: a,
            stream: LogStream::Stderr,
            line: "out-a".into(),
        });
        p.emit(Event::StepFailed {
            id: b,
            error: "exit code 2\nlast: boom".into(),
        });
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..3],
            ["#1 [x] RUN a", "#2 [y] RUN b", "#1 [x] RUN a"]
        );
        assert!(lines[3].ends_with(" out-a"));
        assert_eq!(lines[4], "#2 [y] RUN b");
        assert_eq!(lines[5], "#2 ERROR: exit code 2");
        assert_eq!(lines[6], "#2 last: boom");
        assert_eq!(p.failed_tails(), vec![("#2 [y] RUN b".to_string(), vec![])]);
    }

    #[test]
    fn rawjson_is_one_object_per_event() {
        let out = Shared::default();
        let p = Progress::new(Style::RawJson, StepLabels::default(), Box::new(out.clone()));
        p.emit(Event::StepStarted {
            id: StepId(7),
            name: "[s] RUN a".into(),
        });
        p.emit(Event::Log {
            id: StepId(7),
            stream: LogStream::Stdout,
            line: "hi".into(),
        });
        p.emit(Event::StepDone {
            id: StepId(7),
            duration: Duration::from_secs(1),
        });
        p.emit(Event::StepSkipped { id: StepId(8) });
        p.line("not shown");
        p.json(json!({"type": "result"}));
        let values: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(values.len(), 5);
        assert_eq!(values[0]["type"], "started");
        assert_eq!(values[0]["step"], 1);
        assert_eq!(values[0]["id"], 7);
        assert_eq!(values[1]["line"], "hi");
        assert_eq!(values[1]["stream"], "stdout");
        assert_eq!(values[2]["duration"], 1.0);
        assert_eq!(values[3]["type"], "skipped");
        assert!(values[3].get("step").is_none());
        assert_eq!(values[4]["type"], "result");

        // Hidden steps are still emitted, marked and unnumbered.
        let out = Shared::default();
        let p = Progress::new(
            Style::RawJson,
            labels("FROM scratch\nENV A=1\nCOPY a /a\n"),
            Box::new(out.clone()),
        );
        for (i, name) in (0u32..).zip(["[stage-0] ENV A=1", "[stage-0] COPY a /a"]) {
            p.emit(Event::StepStarted {
                id: StepId(i),
                name: name.to_string(),
            });
        }
        let values: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(values[0]["name"], "ENV A=1");
        assert_eq!(values[0]["shown"], false);
        assert!(values[0].get("step").is_none());
        assert_eq!(values[1]["name"], "[1/1] COPY a /a");
        assert_eq!(values[1]["shown"], true);
        assert_eq!(values[1]["step"], 1);
    }

    #[test]
    fn quiet_prints_nothing_but_keeps_tails() {
        let out = Shared::default();
        let p = Progress::new(Style::Quiet, StepLabels::default(), Box::new(out.clone()));
        p.emit(Event::StepStarted {
            id: StepId(1),
            name: "[s] RUN a".into(),
        });
        p.emit(Event::Log {
            id: StepId(1),
            stream: LogStream::Stderr,
            line: "boom".into(),
        });
        p.emit(Event::StepFailed {
            id: StepId(1),
            error: "exit code 1".into(),
        });
        p.line("summary");
        assert_eq!(out.text(), "");
        assert_eq!(
            p.failed_tails(),
            vec![("#1 [s] RUN a".to_string(), vec!["boom".to_string()])]
        );
    }

    #[test]
    fn auto_style_follows_the_terminal() {
        assert_eq!(Style::choose(ProgressMode::Auto, true), Style::Tty);
        assert_eq!(Style::choose(ProgressMode::Auto, false), Style::Plain);
        assert_eq!(Style::choose(ProgressMode::Quiet, true), Style::Quiet);
        assert_eq!(Style::choose(ProgressMode::Rawjson, false), Style::RawJson);
        assert_eq!(Style::choose(ProgressMode::Tty, false), Style::Tty);
    }
}
