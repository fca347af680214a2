//! rbuild: a daemonless OCI image builder, as a library.
//!
//! A front-end (the Dockerfile one in `rbuild-dockerfile`, or any other) produces a
//! [`graph::Graph`]: a DAG of typed [`graph::Step`]s, rbuild's equivalent of BuildKit's LLB. The
//! builder keys every step with a versioned, explainable [`cache::CacheKey`] built from its
//! expanded fields and the digests of its inputs (build-context files are hashed by
//! [`context`], with a persistent stat cache), looks keys up in the on-disk
//! [`cache::CacheIndex`], and runs what is missing through the [`schedule`]r, independent steps
//! in parallel, reporting [`events`] to a caller-supplied sink. COPY/ADD and RUN are [`ops`];
//! RUN commands cross the [`exec::Executor`] boundary. The [`solve`] module drives a whole build
//! ([`build`] for a Dockerfile, [`solve::build_graph`] for any graph) into the local image
//! [`store::Store`], and [`export()`]s images as OCI layouts, docker archives or root filesystems.
//! The library never prints and never reads the process environment; everything comes in
//! through options.
//!
//! Building an image from Rust code, without a Dockerfile: a base image, files from a
//! directory, and config.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::fs;
//!
//! use rbuild::events::NullSink;
//! use rbuild::graph::{
//!     ConfigOp, ContextName, CopyKind, CopyOp, CopySource, FsInput, Graph, Op, Origin, SourceOp,
//!     Step,
//! };
//! use rbuild::{solve::build_graph, BuildRequest, DockerfileSource, Store};
//! use rbuild_layers::image::{write_image, History, ImageConfig};
//! use rbuild_layers::store::LayerWriter;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("store"))?;
//!
//! // A base image with one layer, named `base:v1` in the store.
//! let base_files = dir.path().join("base");
//! fs::create_dir_all(base_files.join("etc"))?;
//! fs::write(base_files.join("etc/motd"), "welcome\n")?;
//! let layer = LayerWriter::from_dir(store.blobs(), &base_files, Default::default())?;
//! let mut config = ImageConfig::new("linux", "amd64");
//! config.push_layer(layer.diff_id.clone(), History::default());
//! let base = write_image(store.blobs(), &config, &[layer], &BTreeMap::new())?;
//! store.put_name(&"base:v1".parse()?, &base)?;
//!
//! // Files from a directory (the build context).
//! let app = dir.path().join("app");
//! fs::create_dir_all(&app)?;
//! fs::write(app.join("hello.txt"), "hi\n")?;
//!
//! let mut graph = Graph::new();
//! let image = SourceOp::Image { reference: "base:v1".parse()?, platform: None };
//! let from = graph.add(Step::new(Op::Source(image), None, Origin::default()));
//! let copy = CopyOp {
//!     kind: CopyKind::Copy,
//!     from: FsInput::Context(ContextName::main()),
//!     sources: vec![CopySource::Path("hello.txt".into())],
//!     dest: "/app/".into(),
//!     workdir: "/".into(),
//!     chown: None,
//!     chmod: None,
//!     link: false,
//!     exclude: vec![],
//!     parents: false,
//!     checksum: None,
//! };
//! let copied = graph.add(Step::new(Op::Copy(copy), Some(from), Origin::default()));
//! let cmd = ConfigOp::Cmd(vec!["/bin/cat".into(), "/app/hello.txt".into()]);
//! let last = graph.add(Step::new(Op::Config(cmd), Some(copied), Origin::default()));
//!
//! let mut req = BuildRequest::new(
//!     Some(app),
//!     DockerfileSource::Text { name: "graph".into(), text: String::new() },
//! );
//! req.tags = vec!["app:v1".into()];
//! let out = build_graph(&store, &graph, last, &req, &NullSink, None)?;
//! assert_eq!(out.image.layers()?.len(), 2);
//! assert_eq!(
//!     out.image.config.config.cmd,
//!     Some(vec!["/bin/cat".to_string(), "/app/hello.txt".to_string()])
//! );
//! assert_eq!(store.resolve("app:v1")?.manifest_digest, out.manifest_digest);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The scheduler alone, with a step function of your own:
//!
//! ```
//! use rbuild::events::CollectSink;
//! use rbuild::graph::{ConfigOp, Graph, Op, Origin, SourceOp, Step};
//! use rbuild::schedule::{run, ScheduleOptions, StepOutcome};
//!
//! let mut graph = Graph::new();
//! let base = graph.add(Step::new(Op::Source(SourceOp::Scratch { platform: None }), None, Origin::default()));
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
pub mod ops;
pub mod registry;
pub mod schedule;
pub mod snapshot;
pub mod solve;
pub mod store;

pub use cache::remote::{CacheExport, CacheImport, CacheMode, ExportedCache};
pub use error::{BuildError, Error, Result};
pub use solve::{
    build, export, BuildOutcome, BuildRequest, DockerfileSource, NamedContext, Output, Runtime,
};
pub use store::Store;
