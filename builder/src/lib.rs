//! rbuild: a daemonless OCI image builder, as a library.
//!
//! A front-end (the Dockerfile one in `rbuild-dockerfile`, or any other) produces a
//! [`graph::Graph`]: a DAG of typed [`graph::Step`]s, rbuild's equivalent of BuildKit's LLB. The
//! builder keys every step with a versioned, explainable [`cache::CacheKey`] built from its
//! expanded fields and the digests of its inputs (build-context files are hashed by
//! [`context`], with a persistent stat cache), looks keys up in the on-disk
//! [`cache::CacheIndex`], and runs what is missing through the [`schedule`]r, independent steps
//! in parallel, reporting [`events`] to a caller-supplied sink. RUN commands cross the
//! [`exec::Executor`] boundary. The library never prints and never reads the process
//! environment; everything comes in through options.
//!
//! ```
//! use rbuild::events::CollectSink;
//! use rbuild::graph::{ConfigOp, Graph, Op, Origin, SourceOp, Step};
//! use rbuild::schedule::{run, ScheduleOptions, StepOutcome};
//!
//! let mut graph = Graph::new();
//! let base = graph.add(Step::new(Op::Source(SourceOp::Scratch), None, Origin::default()));
//! let env = Op::Config(ConfigOp::Env(vec![("A".into(), "1".into())]));
//! let last = graph.add(Step::new(env, Some(base), Origin::default()));
//! graph.validate()?;
//!
//! let sink = CollectSink::new();
//! let report = run(&graph, &[last], &ScheduleOptions::default(), &sink, |_step| {
//!     Ok::<_, std::io::Error>(StepOutcome::Built)
//! })?;
//! assert_eq!(report.built(), 2);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod context;
pub mod error;
pub mod events;
pub mod exec;
pub mod frontend;
pub mod graph;
pub mod schedule;
pub mod snapshot;

pub use error::{Error, Result};
