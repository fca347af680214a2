//! The build driver: from a [`BuildRequest`] to an image in the local [`Store`].
//!
//! It plays the part of BuildKit's solver plus the Dockerfile front-end's driver
//! (`dockerfile2llb.Dockerfile2LLB`) and image exporter:
//!
//! 1. [`prepare`]: parse and lower the Dockerfile, resolve base images and named contexts through
//!    the [`sources::Resolver`] (named contexts, `oci-layout://`, `docker-archive://`, the local
//!    store, then a registry pull into the store; `--pull` asks the registry first), splice
//!    ONBUILD triggers, and lower the stage plan into a [`crate::graph::Graph`];
//! 2. hash the build contexts the target's steps read (in parallel, with the stat cache under the
//!    store, so an unchanged context costs one `lstat` per file);
//! 3. run the target's steps through [`crate::schedule::run`], independent stages in parallel,
//!    each step keyed and looked up in the cache before any work ([`execute`]);
//! 4. assemble the image: the target's config (created = SOURCE_DATE_EPOCH or 0, request labels
//!    added, history normalized against the layers as BuildKit's exporter does) and its layer
//!    stack, written through `rbuild_layers::image` and tagged in the store;
//! 5. with [`BuildRequest::push`], push it under each tag ([`push`]), manifest byte for byte.
//!
//! Reproducibility: every timestamp that reaches an image is the epoch (layer mtimes are clamped
//! to it by the tar writer), keys never hold host paths or mtimes, so the same inputs give the
//! same manifest digest in any directory, at any time.
//!
//! Locking: the build holds the blob store's lock shared from its first cache lookup until the
//! image is tagged, so a concurrent prune (exclusive) cannot remove a blob the build reuses.

// `BuildError` carries the failing step's `Origin` inline (the CLI matches and builds it by
// value); it is returned at most once per build, so its size does not matter here.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod execute;
pub mod export;
pub mod prepare;
pub mod push;
mod request;
pub mod snapshots;
pub mod sources;

pub use export::{export, export_with};
pub use request::{BuildOutcome, BuildRequest, DockerfileSource, NamedContext, Output, Runtime};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

use rayon::prelude::*;

use rbuild_dockerfile::ignore::IgnoreRules;
use rbuild_dockerfile::lower::Platform;
use rbuild_layers::compress::{CompressOptions, Compression};
use rbuild_layers::image::{write_image, History, ImageConfig};
use rbuild_layers::store::{LayerInfo, LayerOptions, LockMode, LockTarget};
use rbuild_layers::tar::write::TarOptions;

use crate::cache::{CacheIndex, LayerRecord};
use crate::context::{hash_context, ContextFilter, HashOptions, NoFilter, StatCache};
pub use crate::error::BuildError;
use crate::events::EventSink;
use crate::exec::runc::{RuncExecutor, RuncOptions};
use crate::exec::sandbox::SandboxExecutor;
use crate::exec::{Cancellation, Executor};
use crate::graph::{ContextName, FsInput, Graph, MountKind, Op, SourceOp, StepId};
use crate::ops::fetch::HttpFetcher;
use crate::registry::platform_spec;
use crate::schedule::{run, ScheduleError, ScheduleOptions};
use crate::snapshot::SnapshotMode;
use crate::store::{parse_name, Store};
use execute::{ContextInput, MemoFetcher, Settings, Solver, StepError};
use sources::{RegistrySettings, Resolver};

/// Build the image `req` describes into `store`; see the module documentation.
pub fn build(
    store: &Store,
    req: &BuildRequest,
    events: &dyn EventSink,
) -> Result<BuildOutcome, BuildError> {
    build_with_cancel(store, req, events, None)
}

/// [`build`] with an external cancellation flag (set it on Ctrl-C: running steps see it, no new
/// step starts, and the build returns [`BuildError::Cancelled`]).
pub fn build_with_cancel(
    store: &Store,
    req: &BuildRequest,
    events: &dyn EventSink,
    cancel: Option<&Cancellation>,
) -> Result<BuildOutcome, BuildError> {
    let platform = request_platform(req)?;
    let _blobs = lock_blobs(store)?;
    let resolver = build_resolver(req, &platform, events);
    let prepared = prepare::prepare(store, req, &resolver, &platform)?;
    let input = Solve {
        graph: &prepared.lowered.graph,
        target: prepared.lowered.target,
        images: prepared.images,
        dockerfile_path: prepared.path.as_deref(),
        file: &prepared.file,
        platform,
    };
    solve(store, req, input, events, cancel)
}

/// The image resolver of a build of `req` for `platform`: named contexts, URL forms, the store
/// and the registry (with the request's registry settings), pulls reported to `events`.
fn build_resolver<'a>(
    req: &BuildRequest,
    platform: &Platform,
    events: &'a dyn EventSink,
) -> Resolver<'a> {
    let settings = RegistrySettings::from_request(req);
    Resolver::with_registry(
        &req.named_contexts,
        platform_spec(platform),
        &settings,
        events,
    )
}

/// Build the step `target` of a graph made by any front-end (see the crate documentation for an
/// example). `req` supplies everything but the Dockerfile: the main context, named contexts,
/// cache, network, secrets, runtime, epoch, compression, labels and tags. Images named by
/// source steps and `FsInput::Image` inputs are resolved like `FROM` references.
pub fn build_graph(
    store: &Store,
    graph: &Graph,
    target: StepId,
    req: &BuildRequest,
    events: &dyn EventSink,
    cancel: Option<&Cancellation>,
) -> Result<BuildOutcome, BuildError> {
    let platform = request_platform(req)?;
    let _blobs = lock_blobs(store)?;
    graph.validate().map_err(crate::Error::from)?;
    let resolver = build_resolver(req, &platform, events);
    let mut images = BTreeMap::new();
    for id in graph.ancestors(target).map_err(crate::Error::from)? {
        let Some(step) = graph.get(id) else { continue };
        let mut refs = Vec::new();
        match &step.op {
            Op::Source(SourceOp::Image { reference, .. }) => refs.push(reference.clone()),
            Op::Copy(c) => {
                if let FsInput::Image(r) = &c.from {
                    refs.push(r.clone());
                }
            }
            Op::Run(r) => {
                for m in &r.mounts {
                    if let Some(FsInput::Image(i)) = m.kind.source_input() {
                        refs.push(i.clone());
                    }
                }
            }
            _ => {}
        }
        for r in refs {
            if !images.contains_key(r.as_str()) {
                let image = resolver.resolve(r.as_str(), store)?;
                images.insert(r.as_str().to_string(), image);
            }
        }
    }
    let input = Solve {
        graph,
        target,
        images,
        dockerfile_path: None,
        file: "graph",
        platform,
    };
    solve(store, req, input, events, cancel)
}

fn lock_blobs(store: &Store) -> Result<rbuild_layers::store::StoreLock, BuildError> {
    store
        .blobs()
        .lock(LockTarget::Blobs, LockMode::Shared)
        .map_err(|e| BuildError::Store(e.into()))
}

/// A graph ready to run, with its images resolved.
struct Solve<'a> {
    graph: &'a Graph,
    target: StepId,
    images: BTreeMap<String, sources::ResolvedImage>,
    dockerfile_path: Option<&'a std::path::Path>,
    file: &'a str,
    platform: Platform,
}

/// Hash contexts, run the target's steps and store the image.
fn solve(
    store: &Store,
    req: &BuildRequest,
    input: Solve<'_>,
    events: &dyn EventSink,
    cancel: Option<&Cancellation>,
) -> Result<BuildOutcome, BuildError> {
    let Solve {
        graph,
        target,
        images,
        dockerfile_path,
        file,
        platform,
    } = input;
    let bases: Vec<String> = images.keys().cloned().collect();
    let tags = req
        .tags
        .iter()
        .map(|t| parse_name(t).map_err(BuildError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let contexts = hash_contexts(store, req, graph, target, dockerfile_path, file)?;
    let index = CacheIndex::ensure(store.root()).map_err(crate::Error::from)?;
    let snapshots = snapshots::Snapshots::new(store, SnapshotMode::Auto);
    let epoch = req.epoch.unwrap_or(0);
    let settings = Settings {
        no_cache: req.no_cache,
        epoch,
        created: config::rfc3339(epoch),
        layer: LayerOptions {
            compression: req.compression,
            compress: CompressOptions::default(),
            tar: TarOptions::clamp_to(epoch),
        },
        network: req.network,
        secrets: req.secrets.clone(),
        ssh_agent: req.ssh_agent.clone(),
        platform: platform.clone(),
        lineage_prefix: lineage_prefix(req, file),
    };
    let fetcher = MemoFetcher::new(
        Box::new(HttpFetcher::new().with_scratch_dir(store.root())),
        store.root().to_path_buf(),
    );
    let executor: Box<dyn Executor> = match &req.runtime {
        Runtime::Builtin => Box::new(SandboxExecutor::default()),
        Runtime::Oci(path) => Box::new(RuncExecutor::new(RuncOptions {
            runtime: path.clone(),
            ..RuncOptions::default()
        })),
    };
    // Cache imports, cache exports and pushes reach registries with the request's settings.
    let registry = RegistrySettings::from_request(req);
    // Remote caches are read before any step runs (manifests and record tables only).
    let imported = if req.cache_from.is_empty() || req.no_cache {
        crate::cache::remote::ImportedCache::empty()
    } else {
        crate::cache::remote::import(&req.cache_from, &registry, store.blobs(), events)
    };
    let solver = Solver {
        store,
        index: &index,
        snapshots: &snapshots,
        images: &images,
        contexts: &contexts,
        settings: &settings,
        fetcher: &fetcher,
        executor: executor.as_ref(),
        events,
        results: Mutex::new(BTreeMap::new()),
        remote: &imported,
        remote_warnings: Mutex::new(Vec::new()),
    };
    let opts = ScheduleOptions {
        cancel,
        ..ScheduleOptions::default()
    };
    let report = run(graph, &[target], &opts, events, |cx| solver.step(cx)).map_err(|e| {
        // A RUN step killed because the caller cancelled fails as a step; the build was
        // cancelled all the same.
        if cancel.is_some_and(Cancellation::is_cancelled) {
            BuildError::Cancelled
        } else {
            schedule_error(e)
        }
    })?;
    let result = solver.result(target).ok_or_else(|| BuildError::Request {
        field: "target",
        reason: "the target step produced no result (this is a bug)".into(),
    })?;

    let mut image = result.config.image.clone();
    image.created = Some(settings.created.clone());
    // As BuildKit, the image keeps its base's platform (a `FROM --platform` stage, or a
    // single-platform base pulled for another one); only a config without one gets the build's.
    if image.os.is_empty() || image.architecture.is_empty() {
        image.os = platform.os.clone();
        image.architecture = platform.architecture.clone();
        image.variant = platform.variant.clone();
    }
    for (k, v) in &req.labels {
        image.config.labels.insert(k.clone(), v.clone());
    }
    normalize_history(&mut image, &settings.created);
    let layers: Vec<LayerInfo> = result.layers.iter().map(layer_info).collect();
    let stored = write_image(store.blobs(), &image, &layers, &BTreeMap::new())
        .map_err(|e| BuildError::Store(e.into()))?;
    for name in &tags {
        store.put_name(name, &stored)?;
    }
    let mut cache_warnings: Vec<String> = imported.warnings().to_vec();
    cache_warnings.extend(
        solver
            .remote_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..),
    );
    let cache_exports = if req.cache_to.is_empty() {
        Vec::new()
    } else {
        // The keys the modes select: the target's parent chain (min), every finished step
        // (max).
        let key_of = |id: StepId| solver.result(id).map(|r| r.key.key.clone());
        let mut chain = Vec::new();
        let mut cur = Some(target);
        while let Some(id) = cur {
            chain.extend(key_of(id));
            cur = graph.get(id).and_then(|s| s.parent);
        }
        let all = report
            .finished
            .iter()
            .filter_map(|(id, _)| key_of(*id))
            .collect();
        let keys = crate::cache::remote::BuildKeys { chain, all };
        let exported = crate::cache::remote::export(
            &req.cache_to,
            &keys,
            &index,
            store.blobs(),
            &registry,
            &bases,
            events,
        )
        .map_err(|e| BuildError::Export {
            dest: PathBuf::from(format!("cache {}", e.location)),
            reason: e.reason,
        })?;
        cache_warnings.extend(exported.warnings);
        exported.exported
    };
    let pushed = if req.push {
        let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        push::push_image(
            store,
            &stored.manifest_digest,
            &names,
            &bases,
            &registry,
            events,
        )?
    } else {
        Vec::new()
    };
    Ok(BuildOutcome {
        manifest_digest: stored.manifest_digest.clone(),
        config_digest: stored.config_digest.clone(),
        image: stored,
        tags,
        steps: report.finished.len(),
        cached: report.cached(),
        pushed,
        cache_exports,
        cache_warnings,
    })
}

/// The platform to build for: `--platform` normalized as containerd does (`arm64/v8` is
/// `arm64`, `armhf` is `arm/v7`, `x86_64` is `amd64`), else the host's. Any Linux platform is
/// accepted: steps that only move files build for it anywhere, and a RUN step whose program the
/// host cannot execute fails with the platform named (see [`crate::exec::foreign`]).
fn request_platform(req: &BuildRequest) -> Result<Platform, BuildError> {
    let Some(text) = &req.platform else {
        return Ok(Platform::host());
    };
    let wanted = Platform::from_str(text).map_err(|e| BuildError::Request {
        field: "platform",
        reason: e.to_string(),
    })?;
    if wanted.os != "linux" {
        return Err(BuildError::Request {
            field: "platform",
            reason: format!("{wanted}: only linux images can be built"),
        });
    }
    Ok(wanted)
}

/// The name under which step lineages of this Dockerfile are remembered.
fn lineage_prefix(req: &BuildRequest, file: &str) -> String {
    let context = req
        .context
        .as_ref()
        .map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()))
        .map(|c| c.display().to_string())
        .unwrap_or_default();
    format!("{context}\u{0}{file}")
}

/// Hash the build contexts that the target's steps read.
fn hash_contexts(
    store: &Store,
    req: &BuildRequest,
    graph: &Graph,
    target: StepId,
    dockerfile_path: Option<&std::path::Path>,
    file: &str,
) -> Result<BTreeMap<ContextName, ContextInput>, BuildError> {
    let needed = graph.ancestors(target).map_err(crate::Error::from)?;
    let mut names: BTreeSet<ContextName> = BTreeSet::new();
    for id in &needed {
        let Some(step) = graph.get(*id) else { continue };
        match &step.op {
            Op::Copy(c) => {
                if let FsInput::Context(n) = &c.from {
                    names.insert(n.clone());
                }
            }
            Op::Run(r) => {
                for m in &r.mounts {
                    if let Some(FsInput::Context(n)) = m.kind.source_input() {
                        names.insert(n.clone());
                    }
                    if let MountKind::Bind {
                        from: FsInput::Context(n),
                        ..
                    } = &m.kind
                    {
                        names.insert(n.clone());
                    }
                }
            }
            Op::Source(SourceOp::NamedContext { name }) => {
                names.insert(name.clone());
            }
            _ => {}
        }
    }
    let mut dirs: Vec<(ContextName, PathBuf, PathBuf)> = Vec::new();
    for name in names {
        let dir: PathBuf = if name.is_main() {
            match &req.context {
                Some(d) => d.clone(),
                None => continue,
            }
        } else {
            match req.named_contexts.get(name.as_str()) {
                Some(NamedContext::Dir(d)) => d.clone(),
                _ => continue,
            }
        };
        // The main context's ignore file may be `<Dockerfile>.dockerignore`.
        let df_path = match (name.is_main(), dockerfile_path) {
            (true, Some(p)) => p.to_path_buf(),
            (true, None) => dir.join(file),
            (false, _) => dir.join("Dockerfile"),
        };
        dirs.push((name, dir, df_path));
    }
    // Contexts are hashed side by side (each hash is itself parallel over files).
    let hashed: Vec<Result<(ContextName, ContextInput), BuildError>> = dirs
        .into_par_iter()
        .map(|(name, dir, df_path)| {
            let ignore = IgnoreRules::load(&dir, &df_path).map_err(|e| BuildError::Source {
                reference: dir.display().to_string(),
                reason: format!("read .dockerignore: {e}"),
            })?;
            let filter: &dyn ContextFilter = match &ignore {
                Some(rules) => rules,
                None => &NoFilter,
            };
            let hashed = hash_context(
                &dir,
                &HashOptions {
                    filter,
                    stat_cache: Some(StatCache::path_for(store.root(), &dir)),
                },
            )
            .map_err(crate::Error::from)?;
            Ok((
                name,
                ContextInput {
                    dir,
                    ignore,
                    hashed,
                },
            ))
        })
        .collect();
    hashed.into_iter().collect()
}

fn schedule_error(e: ScheduleError<StepError>) -> BuildError {
    match e {
        ScheduleError::StepFailed { origin, source, .. } => BuildError::Step {
            origin: *origin,
            message: source.message,
            exit_code: source.exit_code,
        },
        ScheduleError::Cancelled => BuildError::Cancelled,
        ScheduleError::Graph(g) => BuildError::Internal(crate::Error::Graph(g)),
    }
}

/// A cache record's layer as the image writer takes it.
fn layer_info(l: &LayerRecord) -> LayerInfo {
    LayerInfo {
        digest: l.digest.clone(),
        diff_id: l.diff_id.clone(),
        size: l.size,
        media_type: l.media_type.clone(),
        compression: Compression::from_media_type(&l.media_type).unwrap_or(Compression::None),
    }
}

/// Make the history agree with the layers, as BuildKit's exporter (`normalizeLayersAndHistory`)
/// does for base images whose history is shorter than their layer list: missing entries for
/// the oldest layers are added at the front.
fn normalize_history(image: &mut ImageConfig, created: &str) {
    let layers = image.rootfs.diff_ids.len();
    let non_empty = image.history.iter().filter(|h| !h.empty_layer).count();
    if non_empty < layers {
        let missing = layers - non_empty;
        let mut history: Vec<History> = (0..missing)
            .map(|_| History {
                created: Some(created.to_string()),
                created_by: Some("rbuild: layer without history".to_string()),
                ..History::default()
            })
            .collect();
        history.append(&mut image.history);
        image.history = history;
    } else if non_empty > layers {
        // Entries claiming layers that do not exist become empty, oldest first.
        let mut extra = non_empty - layers;
        for h in image.history.iter_mut() {
            if extra == 0 {
                break;
            }
            if !h.empty_layer {
                h.empty_layer = true;
                extra -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_normalized_against_layers() {
        let d = |c: char| -> rbuild_layers::digest::DiffId {
            rbuild_layers::digest::DiffId(rbuild_layers::digest::Digest::of(&[c as u8]))
        };
        let mut image = ImageConfig::new("linux", "amd64");
        image.rootfs.diff_ids = vec![d('a'), d('b')];
        image.history.push(History {
            created_by: Some("COPY".into()),
            ..History::default()
        });
        normalize_history(&mut image, "t");
        assert_eq!(image.history.len(), 2);
        assert_eq!(
            image.history[0].created_by.as_deref(),
            Some("rbuild: layer without history")
        );
        image.check_layers(&[d('a'), d('b')]).expect("consistent");

        let mut image = ImageConfig::new("linux", "amd64");
        image.history.push(History::default());
        normalize_history(&mut image, "t");
        assert!(image.history[0].empty_layer);
    }

    #[test]
    fn request_platforms_are_normalized() {
        let host = Platform::host().to_string();
        let cases: [(Option<&str>, Result<&str, &str>); 8] = [
            (None, Ok(host.as_str())),
            (Some("linux/arm64"), Ok("linux/arm64")),
            (Some("linux/arm64/v8"), Ok("linux/arm64")),
            (Some("linux/aarch64"), Ok("linux/arm64")),
            (Some("linux/armhf"), Ok("linux/arm/v7")),
            (Some("linux/x86_64"), Ok("linux/amd64")),
            (Some("windows/amd64"), Err("only linux images can be built")),
            (Some("linux/"), Err("invalid platform component")),
        ];
        for (given, want) in cases {
            let mut req = BuildRequest::new(
                None,
                DockerfileSource::Text {
                    name: "Dockerfile".into(),
                    text: String::new(),
                },
            );
            req.platform = given.map(str::to_string);
            let got = request_platform(&req)
                .map(|p| p.to_string())
                .map_err(|e| e.to_string());
            match (got, want) {
                (Ok(p), Ok(w)) => assert_eq!(p, w, "{given:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{given:?}: {e}"),
                (got, want) => panic!("{given:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
