//! Progress events: what the builder reports while it works, delivered to a caller-supplied
//! [`EventSink`]. The library never prints; the CLI (or an embedding tool) renders events.
//!
//! Events follow BuildKit's progress model in spirit (a vertex starts, is cached or completes,
//! streams logs, or fails) without its wire format. Durations are measured with a monotonic clock
//! and are for display only: they never reach a cache key or an image.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::graph::StepId;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
    /// A message from the builder itself about the step.
    Builder,
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step began executing (or checking its cache).
    StepStarted {
        /// The step.
        id: StepId,
        /// Display name, e.g. `[build] RUN make`.
        name: String,
    },
    /// A step's result came from the cache.
    StepCached {
        /// The step.
        id: StepId,
    },
    /// A step finished executing.
    StepDone {
        /// The step.
        id: StepId,
        /// How long it took.
        duration: Duration,
    },
    /// A line of output from a step (without its trailing newline).
    Log {
        /// The step.
        id: StepId,
        /// Which stream.
        stream: LogStream,
        /// The line.
        line: String,
    },
    /// A step failed; the build stops starting new steps.
    StepFailed {
        /// The step.
        id: StepId,
        /// The error, rendered.
        error: String,
    },
    /// A step was never started because an earlier failure cancelled the build.
    StepSkipped {
        /// The step.
        id: StepId,
    },
}

/// Receives progress events; called from worker threads, so it must be `Sync`.
pub trait EventSink: Send + Sync {
    /// Deliver one event. Must not block for long: workers wait on it.
    fn emit(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}

/// A sink that keeps every event in memory (for tests and post-build reports).
#[derive(Debug, Default)]
pub struct CollectSink {
    events: Mutex<Vec<Event>>,
}

impl CollectSink {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events received so far, in arrival order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

impl EventSink for CollectSink {
    fn emit(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(event);
    }
}

/// The kinds of [`Vertex`]. Each numbers its vertices from its own range of step ids, counting
/// down from the top of `u32` (graph steps count up from 0), so no two ever share an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VertexKind {
    /// A pull: `[internal] load metadata for REF`.
    Pull,
    /// A push: `[internal] pushing REF`.
    Push,
    /// A `--cache-from` import: `importing cache manifest from LOC`.
    CacheImport,
    /// A `--cache-to` export: `exporting cache to LOC`.
    CacheExport,
}

impl VertexKind {
    /// The step id of the `n`th vertex (from 0) of this kind.
    pub fn id(self, n: u32) -> StepId {
        let range: u32 = match self {
            VertexKind::Pull => 0,
            VertexKind::Push => 1,
            VertexKind::CacheImport => 2,
            VertexKind::CacheExport => 3,
        };
        StepId((u32::MAX - (range << 16)).wrapping_sub(n))
    }
}

/// A progress vertex that is not a graph step (a pull, a push, a cache import or export),
/// reported with the step events so every front-end shows it like a step.
pub struct Vertex<'a> {
    id: StepId,
    events: &'a dyn EventSink,
    started: Instant,
}

impl<'a> Vertex<'a> {
    /// Start the vertex `id` (from [`VertexKind::id`], a range no graph step uses) named `name`.
    pub fn start(id: StepId, name: String, events: &'a dyn EventSink) -> Self {
        events.emit(Event::StepStarted { id, name });
        Vertex {
            id,
            events,
            started: Instant::now(),
        }
    }

    /// A progress line under the vertex.
    pub fn log(&self, line: String) {
        self.events.emit(Event::Log {
            id: self.id,
            stream: LogStream::Builder,
            line,
        });
    }

    /// A warning under the vertex, prefixed `WARNING: ` as BuildKit prints them.
    pub fn warn(&self, warning: &str) {
        self.log(format!("WARNING: {warning}"));
    }

    /// The vertex finished.
    pub fn done(self) {
        self.events.emit(Event::StepDone {
            id: self.id,
            duration: self.started.elapsed(),
        });
    }

    /// The vertex failed with `error`.
    pub fn failed(self, error: String) {
        self.events.emit(Event::StepFailed { id: self.id, error });
    }
}

/// A byte count as Docker and BuildKit print sizes: decimal units, up to four significant
/// digits (`999B`, `1.234kB`, `4.5MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[unit]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.234kB"),
            (4_500_000, "4.5MB"),
            (7_000_000_000, "7GB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn vertex_kinds_number_from_their_own_ranges() {
        let cases = [
            (VertexKind::Pull, 0, u32::MAX),
            (VertexKind::Pull, 1, u32::MAX - 1),
            (VertexKind::Push, 0, u32::MAX - (1 << 16)),
            (VertexKind::CacheImport, 2, u32::MAX - (2 << 16) - 2),
            (VertexKind::CacheExport, 0, u32::MAX - (3 << 16)),
        ];
        for (kind, n, want) in cases {
            assert_eq!(kind.id(n), StepId(want), "{kind:?} {n}");
        }
    }

    #[test]
    fn vertices_report_like_steps() {
        let sink = CollectSink::new();
        let v = Vertex::start(StepId(7), "pull".into(), &sink);
        v.log("a".into());
        v.warn("w");
        v.failed("boom".into());
        let events = sink.events();
        assert_eq!(
            events,
            vec![
                Event::StepStarted {
                    id: StepId(7),
                    name: "pull".into()
                },
                Event::Log {
                    id: StepId(7),
                    stream: LogStream::Builder,
                    line: "a".into()
                },
                Event::Log {
                    id: StepId(7),
                    stream: LogStream::Builder,
                    line: "WARNING: w".into()
                },
                Event::StepFailed {
                    id: StepId(7),
                    error: "boom".into()
                },
            ]
        );
    }

    #[test]
    fn sinks_receive_events() {
        let collect = CollectSink::new();
        collect.emit(Event::StepCached { id: StepId(1) });
        collect.emit(Event::StepSkipped { id: StepId(2) });
        assert_eq!(
            collect.events(),
            vec![
                Event::StepCached { id: StepId(1) },
                Event::StepSkipped { id: StepId(2) }
            ]
        );

        let count = std::sync::atomic::AtomicUsize::new(0);
        let closure = |_: Event| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        closure.emit(Event::StepCached { id: StepId(0) });
        NullSink.emit(Event::StepCached { id: StepId(0) });
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
