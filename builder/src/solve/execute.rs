//! The step function: what happens to one step when the scheduler starts it.
//!
//! Every step is keyed first ([`crate::cache::step_key`], after resolving what the key needs from
//! outside: parents' state keys, image digests, context selections, the digests of ADD URLs).
//! Unless the build ignores the cache, a record under that key whose layer blob still exists is a
//! hit: its layer is reused as is and the image config is derived again from the step (config
//! changes are pure functions of the parent config, so they need no stored copy). When the local
//! index has no usable record, the caches imported with `--cache-from` are asked
//! ([`crate::cache::remote`]): a record there is a hit once its layer is fetched (verified) into
//! the store, and it is then kept in the local index; a layer that cannot be fetched is a miss
//! with a warning. A miss executes the op:
//!
//! - **source**: scratch and images only name their config and layers (base blobs pass through
//!   byte for byte); a named local directory becomes one layer;
//! - **config**: the image config change and its history entry (BuildKit's `commitToHistory`);
//! - **WORKDIR**: also creates the directory as BuildKit's `Mkdir(wd, 0755, WithParents,
//!   WithUser(USER))` does, in a layer that holds the new directories and their existing
//!   ancestors (as a containerd diff would); when the directory already existed, no layer is
//!   made and the history entry is `empty_layer`, as BuildKit's exporter drops the empty layer;
//! - **COPY/ADD**: the parent's root filesystem and the source tree are materialized read-only
//!   ([`super::snapshots`]) and [`crate::ops::copy::plan_copy`] decides the layer;
//! - **RUN**: [`crate::ops::run::run_step`] runs the command over the unpacked parent layers; an
//!   empty change set makes no layer.
//!
//! Each executed step's result is recorded in the cache index with its key manifest, and the
//! key is remembered under a lineage name (file, stage, position) so a later miss can be
//! explained.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild_dockerfile::ignore::IgnoreRules;
use rbuild_layers::digest::Digest;
use rbuild_layers::image::{History, ImageConfig, RootFs};
use rbuild_layers::store::{LayerInfo, LayerOptions, LayerWriter};
use rbuild_layers::tar::entry::{Entry, EntryKind};

use crate::cache::remote::{ImportedCache, RemoteLookup};
use crate::cache::{
    step_key, CacheIndex, CacheRecord, ContextSelection, HistoryRecord, InputDigests, KeyError,
    LayerRecord, Lookup, StepKey,
};
use crate::context::{ContextError, HashedContext};
use crate::events::{Event, EventSink, LogStream};
use crate::exec::{Executor, OutputSink};
use crate::graph::{
    ConfigOp, ContextName, CopySource, FsInput, ImageRef, MountKind, NetworkMode, Op, SourceOp,
    Step, StepId, UserSpec,
};
use crate::ops::copy::{plan_copy, CopyRequest, SourceRoot};
use crate::ops::fetch::{FetchError, Fetched, Fetcher};
use crate::ops::run::{run_step, RunInputs};
use crate::schedule::{StepContext, StepOutcome};
use crate::solve::config::{self, ConfigState};
use crate::solve::snapshots::{RootfsView, Snapshots};
use crate::solve::sources::ResolvedImage;
use crate::store::{Store, LOG_DIR};

/// The host name RUN steps see, as BuildKit's default.
pub const HOSTNAME: &str = "buildkitsandbox";

/// Why a step failed (rendered with its causes; the scheduler adds the origin).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// The error and its causes, one line.
    pub message: String,
    /// A RUN command's exit code.
    pub exit_code: Option<i32>,
}

impl StepError {
    fn new(e: &dyn std::error::Error) -> Self {
        StepError {
            message: render(e),
            exit_code: None,
        }
    }

    fn msg(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            exit_code: None,
        }
    }
}

/// An error and its source chain, `: `-joined, without repeating a cause already in the text.
pub fn render(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// A build context the steps can read: its directory, ignore rules and content digests.
pub struct ContextInput {
    /// The directory.
    pub dir: PathBuf,
    /// Its `.dockerignore` rules.
    pub ignore: Option<IgnoreRules>,
    /// Its hashed entries.
    pub hashed: HashedContext,
}

/// What a finished step leaves for the steps after it.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The step's keys.
    pub key: StepKey,
    /// The layer stack of the state after the step, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The image config after the step.
    pub config: ConfigState,
    /// The index of the stage the step belongs to.
    pub stage: usize,
}

/// Build-wide settings a step needs.
pub struct Settings {
    /// Ignore cache records.
    pub no_cache: bool,
    /// SOURCE_DATE_EPOCH (0 when unset).
    pub epoch: i64,
    /// The epoch as RFC 3339, for `created` fields.
    pub created: String,
    /// Layer writing options.
    pub layer: LayerOptions,
    /// `--network` for RUN steps that do not set one.
    pub network: NetworkMode,
    /// Secrets by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// SSH agent socket.
    pub ssh_agent: Option<PathBuf>,
    /// Target OS, architecture and variant.
    pub platform: rbuild_dockerfile::lower::Platform,
    /// Names the lineage of steps (the Dockerfile's identity).
    pub lineage_prefix: String,
}

/// The state shared by every step of one build.
pub struct Solver<'a> {
    /// The local store.
    pub store: &'a Store,
    /// Its cache index.
    pub index: &'a CacheIndex,
    /// Its unpacked layers.
    pub snapshots: &'a Snapshots,
    /// Resolved images by reference as written.
    pub images: &'a BTreeMap<String, ResolvedImage>,
    /// Build contexts by name.
    pub contexts: &'a BTreeMap<ContextName, ContextInput>,
    /// Settings.
    pub settings: &'a Settings,
    /// ADD URL fetcher (memoized).
    pub fetcher: &'a MemoFetcher,
    /// RUN executor.
    pub executor: &'a dyn Executor,
    /// Progress events.
    pub events: &'a dyn EventSink,
    /// Finished steps.
    pub results: Mutex<BTreeMap<StepId, Arc<StepResult>>>,
    /// Records imported with `--cache-from`, asked when the local index misses.
    pub remote: &'a ImportedCache,
    /// Remote cache problems met while steps ran (a layer that could not be fetched).
    pub remote_warnings: Mutex<Vec<String>>,
}

struct Inputs<'a, 'b> {
    solver: &'b Solver<'a>,
    remotes: BTreeMap<String, Digest>,
}

impl InputDigests for Inputs<'_, '_> {
    fn state_key(&self, id: StepId) -> Option<crate::cache::CacheKey> {
        self.solver.result(id).map(|r| r.key.state.clone())
    }

    fn image_digest(&self, image: &ImageRef) -> Option<Digest> {
        self.solver
            .images
            .get(image.as_str())
            .map(|i| i.manifest_digest.clone())
    }

    fn context_digest(
        &self,
        context: &ContextName,
        selection: &ContextSelection<'_>,
    ) -> Result<Digest, ContextError> {
        match self.solver.contexts.get(context) {
            // With the rules the context was walked with, so a missing source that a
            // `.dockerignore` rule hid names that rule.
            Some(c) => match &c.ignore {
                Some(rules) => c.hashed.digest_selection_with(selection, rules),
                None => c.hashed.digest_selection(selection),
            },
            None => Err(ContextError::UnknownContext {
                name: context.as_str().to_string(),
            }),
        }
    }

    fn remote_digest(&self, source: &CopySource) -> Option<Digest> {
        match source {
            CopySource::Url(u) => self.remotes.get(u).cloned(),
            _ => None,
        }
    }
}

impl<'a> Solver<'a> {
    /// The result of a finished step.
    pub fn result(&self, id: StepId) -> Option<Arc<StepResult>> {
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn needed(&self, id: StepId) -> Result<Arc<StepResult>, StepError> {
        self.result(id)
            .ok_or_else(|| StepError::msg(format!("input step {id} has no result (this is a bug)")))
    }

    /// Run one step; see the module documentation.
    pub fn step(&self, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let id = cx.id();
        let step = cx.step();
        let parent = match step.parent {
            Some(p) => Some(self.needed(p)?),
            None => None,
        };
        let (result, outcome) = match &step.op {
            Op::Source(s) => self.source(id, step, s)?,
            Op::Config(c) => self.config(id, step, c, parent_of(&parent)?)?,
            Op::Copy(_) | Op::Run(_) => self.filesystem(cx, step, parent_of(&parent)?)?,
        };
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(result));
        Ok(outcome)
    }

    fn key(
        &self,
        id: StepId,
        step: &Step,
        remotes: BTreeMap<String, Digest>,
    ) -> Result<StepKey, StepError> {
        let inputs = Inputs {
            solver: self,
            remotes,
        };
        let key = step_key(id, step, &inputs).map_err(|e| match e {
            // A context input that cannot be read is the step's own failure (a missing COPY
            // source): say what is missing; the scheduler adds the step's origin, which is
            // what the user knows the step by (the step id is internal).
            KeyError::Context { source, .. } => StepError::new(&source),
            other => StepError::new(&other),
        })?;
        let lineage = format!(
            "{}\u{0}{}\u{0}{}",
            self.settings.lineage_prefix, step.origin.stage.index, step.origin.start_line
        );
        // Lineage pointers only explain misses; failing to write one never fails a build. An
        // unchanged pointer is not rewritten, so a no-op rebuild writes nothing.
        if self.index.previous_key(&lineage).ok().flatten().as_ref() != Some(&key.key) {
            let _ = self.index.remember(&lineage, &key.key);
        }
        Ok(key)
    }

    /// A cache hit for `key`, if the build uses the cache and the record is usable: from the
    /// local index, else from the caches imported with `--cache-from` (the record's layer is
    /// fetched, verified, and the record stored in the local index).
    fn lookup(&self, id: StepId, key: &StepKey) -> Result<Option<CacheRecord>, StepError> {
        if self.settings.no_cache {
            return Ok(None);
        }
        match self
            .index
            .lookup(&key.key, self.store.blobs())
            .map_err(|e| StepError::new(&e))?
        {
            Lookup::Hit(r) => Ok(Some(*r)),
            Lookup::Miss | Lookup::BlobMissing { .. } | Lookup::Corrupt { .. } => {
                Ok(self.remote_lookup(id, key))
            }
        }
    }

    /// The imported record of `key`, if any and usable; a layer that cannot be fetched is a
    /// miss with a warning (the step then executes).
    fn remote_lookup(&self, id: StepId, key: &StepKey) -> Option<CacheRecord> {
        let log = |line: String| {
            self.events.emit(Event::Log {
                id,
                stream: LogStream::Builder,
                line,
            })
        };
        match self.remote.lookup(&key.key, self.store.blobs()) {
            RemoteLookup::Miss => None,
            RemoteLookup::Hit {
                record,
                location,
                fetched,
            } => {
                if let Some(d) = fetched {
                    log(format!("importing layer {d} from cache {location}: done"));
                }
                // The record is usable whether or not it could be kept in the local index.
                if let Err(e) = self.index.put(&key.key, &record) {
                    log(format!(
                        "WARNING: cannot record the imported cache entry: {e}"
                    ));
                }
                Some(*record)
            }
            RemoteLookup::Unavailable { location, error } => {
                let w = format!(
                    "cache {location} has a record for {} but its layer is unavailable: {error}; running the step",
                    key.key
                );
                log(format!("WARNING: {w}"));
                self.remote_warnings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(w);
                None
            }
        }
    }

    fn record(
        &self,
        key: &StepKey,
        layer: Option<&LayerRecord>,
        config: Option<&ConfigOp>,
        created_by: &str,
    ) -> Result<(), StepError> {
        let record = CacheRecord {
            layer: layer.cloned(),
            config: config.cloned(),
            history: HistoryRecord {
                created_by: created_by.to_string(),
                comment: Some(config::HISTORY_COMMENT.to_string()),
                empty_layer: layer.is_none(),
            },
            manifest: key.manifest.clone(),
        };
        self.index
            .put(&key.key, &record)
            .map_err(|e| StepError::new(&e))
    }

    /// The config of an empty image for `platform` (as written, e.g. `linux/arm64`), else for
    /// the build's platform.
    fn empty_config(&self, platform: Option<&str>) -> Result<ImageConfig, StepError> {
        let parsed;
        let p = match platform {
            Some(text) => {
                parsed = text
                    .parse::<rbuild_dockerfile::lower::Platform>()
                    .map_err(|e| StepError::msg(format!("platform `{text}`: {e}")))?;
                &parsed
            }
            None => &self.settings.platform,
        };
        let mut c = ImageConfig::new(p.os.clone(), p.architecture.clone());
        c.variant = p.variant.clone();
        c.rootfs = RootFs::default();
        c.config.working_dir = Some("/".to_string());
        c.config.env = Some(vec![format!(
            "PATH={}",
            rbuild_dockerfile::lower::default_path(&p.os)
        )]);
        Ok(c)
    }

    fn source(
        &self,
        id: StepId,
        step: &Step,
        s: &SourceOp,
    ) -> Result<(StepResult, StepOutcome), StepError> {
        let key = self.key(id, step, BTreeMap::new())?;
        match s {
            SourceOp::Scratch { platform } => Ok((
                StepResult {
                    key,
                    layers: Vec::new(),
                    config: ConfigState {
                        image: self.empty_config(platform.as_deref())?,
                        cmd_set: false,
                    },
                    stage: step.origin.stage.index,
                },
                StepOutcome::Cached,
            )),
            SourceOp::Image { reference, .. } => {
                let img = self.images.get(reference.as_str()).ok_or_else(|| {
                    StepError::msg(format!(
                        "image {reference} was not resolved (this is a bug)"
                    ))
                })?;
                let mut image = img.config.clone();
                image.created = None;
                // Triggers run in the stage that uses the image; they never carry over.
                image.config.on_build = None;
                let env = image.config.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.starts_with("PATH=")) {
                    env.push(format!(
                        "PATH={}",
                        rbuild_dockerfile::lower::default_path(&image.os)
                    ));
                }
                Ok((
                    StepResult {
                        key,
                        layers: img.layers.clone(),
                        config: ConfigState {
                            image,
                            cmd_set: false,
                        },
                        stage: step.origin.stage.index,
                    },
                    StepOutcome::Cached,
                ))
            }
            SourceOp::NamedContext { name } => {
                let ctx = self.contexts.get(name).ok_or_else(|| {
                    StepError::msg(format!("build context {name} is not available"))
                })?;
                let created_by = format!("FROM {}", name.as_str());
                let (layer, outcome) = match self.lookup(id, &key)?.and_then(|r| r.layer) {
                    Some(layer) => (layer, StepOutcome::Cached),
                    None => {
                        let info = LayerWriter::from_dir(
                            self.store.blobs(),
                            &ctx.dir,
                            self.settings.layer,
                        )
                        .map_err(|e| StepError::new(&e))?;
                        let layer = layer_record(&info);
                        self.record(&key, Some(&layer), None, &created_by)?;
                        (layer, StepOutcome::Built)
                    }
                };
                let mut image = self.empty_config(None)?;
                image.push_layer(
                    layer.diff_id.clone(),
                    config::history(created_by, &self.settings.created),
                );
                Ok((
                    StepResult {
                        key,
                        layers: vec![layer],
                        config: ConfigState {
                            image,
                            cmd_set: false,
                        },
                        stage: step.origin.stage.index,
                    },
                    outcome,
                ))
            }
        }
    }

    fn config(
        &self,
        id: StepId,
        step: &Step,
        op: &ConfigOp,
        parent: &StepResult,
    ) -> Result<(StepResult, StepOutcome), StepError> {
        let mut state = parent.config.clone();
        if step_starts_stage(step, parent) {
            state.cmd_set = false;
            state.image.config.on_build = None;
        }
        let created = &self.settings.created;
        config::apply(&mut state, op, created).map_err(|e| StepError::new(&e))?;
        let ConfigOp::Workdir(wd) = op else {
            let key = self.key(id, step, BTreeMap::new())?;
            let created_by = state
                .image
                .history
                .last()
                .and_then(|h| h.created_by.clone())
                .unwrap_or_default();
            let outcome = if self.lookup(id, &key)?.is_some() {
                StepOutcome::Cached
            } else {
                self.record(&key, None, Some(op), &created_by)?;
                StepOutcome::Built
            };
            return Ok((
                StepResult {
                    key,
                    layers: parent.layers.clone(),
                    config: state,
                    stage: step.origin.stage.index,
                },
                outcome,
            ));
        };
        // The directory's owner is the USER in effect, so it is part of what the step does.
        let user = parent.config.image.config.user.clone().unwrap_or_default();
        let mut keyed = step.clone();
        keyed
            .used_vars
            .insert(" workdir.user".to_string(), user.clone());
        let key = self.key(id, &keyed, BTreeMap::new())?;
        let created_by = config::workdir_created_by(wd);
        let (layer, outcome) = match self.lookup(id, &key)? {
            Some(record) => (record.layer, StepOutcome::Cached),
            None => {
                let layer = if wd == "/" {
                    None
                } else {
                    self.mkdir_layer(wd, &user, &parent.layers)?
                };
                self.record(&key, layer.as_ref(), Some(op), &created_by)?;
                (layer, StepOutcome::Built)
            }
        };
        let h = config::history(created_by, created);
        Ok((stacked(key, parent, state, layer, h, step), outcome))
    }

    /// The layer `mkdir -p wd` makes over `layers`, owned by `user`; `None` when it exists.
    fn mkdir_layer(
        &self,
        wd: &str,
        user: &str,
        layers: &[LayerRecord],
    ) -> Result<Option<LayerRecord>, StepError> {
        let view = self
            .snapshots
            .view(layers)
            .map_err(|e| StepError::new(&e))?;
        let root = view.as_ref().map(RootfsView::path);
        let (uid, gid) = if user.is_empty() {
            (0, 0)
        } else {
            let spec = UserSpec::parse(user)
                .ok_or_else(|| StepError::msg(format!("invalid user {user:?}")))?;
            crate::ops::users::resolve_chown(root, &spec).map_err(|e| StepError::new(&e))?
        };
        let entries = mkdir_entries(root, wd, uid, gid, self.settings.epoch)
            .map_err(|e| StepError::msg(format!("create workdir {wd}: {e}")))?;
        if entries.is_empty() {
            return Ok(None);
        }
        let readers: Vec<(Entry, Box<dyn std::io::Read>)> = entries
            .into_iter()
            .map(|e| (e, Box::new(std::io::empty()) as Box<dyn std::io::Read>))
            .collect();
        let info = LayerWriter::from_entries(self.store.blobs(), readers, self.settings.layer)
            .map_err(|e| StepError::new(&e))?;
        Ok(Some(layer_record(&info)))
    }

    fn filesystem(
        &self,
        cx: &StepContext<'_>,
        step: &Step,
        parent: &StepResult,
    ) -> Result<(StepResult, StepOutcome), StepError> {
        let id = cx.id();
        let mut remotes = BTreeMap::new();
        let mut network_override: Option<Step> = None;
        match &step.op {
            Op::Copy(c) => {
                let reads_paths = c.sources.iter().any(|s| matches!(s, CopySource::Path(_)));
                if let FsInput::Context(name) = &c.from {
                    if reads_paths && !self.contexts.contains_key(name) {
                        return Err(StepError::msg(if name.is_main() {
                            "there is no build context (the Dockerfile came without one), so local paths cannot be copied".to_string()
                        } else {
                            format!("build context {name} is not available")
                        }));
                    }
                }
                for s in &c.sources {
                    match s {
                        CopySource::Url(u) => {
                            let digest = self.fetcher.digest(u).map_err(|e| StepError::new(&e))?;
                            remotes.insert(u.clone(), digest);
                        }
                        CopySource::Git { url, .. } => {
                            return Err(StepError::msg(format!(
                                "ADD from the git repository {url} is not supported yet"
                            )))
                        }
                        CopySource::Path(_) | CopySource::Heredoc { .. } => {}
                    }
                }
            }
            Op::Run(r)
                if r.network == NetworkMode::Default
                    && self.settings.network != NetworkMode::Default =>
            {
                let mut run_op = r.clone();
                run_op.network = self.settings.network;
                network_override = Some(Step {
                    op: Op::Run(run_op),
                    ..step.clone()
                });
            }
            _ => {}
        }
        let keyed = network_override.as_ref().unwrap_or(step);
        let key = self.key(id, keyed, remotes)?;
        let image_env = parent.config.image.config.env.clone().unwrap_or_default();
        let created_by = match &keyed.op {
            Op::Copy(c) => config::copy_created_by(c),
            Op::Run(r) => config::run_created_by(r, &image_env),
            _ => String::new(),
        };
        let (layer, outcome) = match self.lookup(id, &key)? {
            Some(record) => (record.layer, StepOutcome::Cached),
            None => {
                let info = match &keyed.op {
                    Op::Copy(c) => self.copy(c, parent)?,
                    Op::Run(r) => self.run(cx, r, parent, &key)?,
                    _ => None,
                };
                let layer = info.as_ref().map(layer_record);
                self.record(&key, layer.as_ref(), None, &created_by)?;
                (layer, StepOutcome::Built)
            }
        };
        let mut state = parent.config.clone();
        if step_starts_stage(step, parent) {
            state.cmd_set = false;
            state.image.config.on_build = None;
        }
        let h = config::history(created_by, &self.settings.created);
        Ok((stacked(key, parent, state, layer, h, step), outcome))
    }

    /// The layers of an input filesystem (another step's or an image's).
    fn input_layers(&self, from: &FsInput) -> Result<Vec<LayerRecord>, StepError> {
        match from {
            FsInput::Step(id) => Ok(self.needed(*id)?.layers.clone()),
            FsInput::Image(r) => self
                .images
                .get(r.as_str())
                .map(|i| i.layers.clone())
                .ok_or_else(|| {
                    StepError::msg(format!("image {r} was not resolved (this is a bug)"))
                }),
            FsInput::Context(_) => Ok(Vec::new()),
        }
    }

    /// The layer of a COPY/ADD; `None` when it writes nothing (BuildKit's exporter drops an
    /// empty layer and marks the history entry `empty_layer`).
    fn copy(
        &self,
        c: &crate::graph::CopyOp,
        parent: &StepResult,
    ) -> Result<Option<LayerInfo>, StepError> {
        let dest_view = self
            .snapshots
            .view(&parent.layers)
            .map_err(|e| StepError::new(&e))?;
        let needs_source = c.sources.iter().any(|s| matches!(s, CopySource::Path(_)));
        let mut source_view: Option<RootfsView> = None;
        let source = match (&c.from, needs_source) {
            (_, false) => SourceRoot::Empty,
            (FsInput::Context(name), true) => match self.contexts.get(name) {
                Some(ctx) => SourceRoot::Context {
                    dir: &ctx.dir,
                    ignore: ctx.ignore.as_ref(),
                },
                None if name.is_main() => SourceRoot::Empty,
                None => {
                    return Err(StepError::msg(format!(
                        "build context {name} is not available"
                    )))
                }
            },
            (from, true) => {
                let layers = self.input_layers(from)?;
                source_view = self
                    .snapshots
                    .view(&layers)
                    .map_err(|e| StepError::new(&e))?;
                match &source_view {
                    Some(v) => SourceRoot::Tree(v.path()),
                    None => SourceRoot::Empty,
                }
            }
        };
        let plan = plan_copy(&CopyRequest {
            op: c,
            source,
            dest_root: dest_view.as_ref().map(RootfsView::path),
            fetcher: self.fetcher,
        })
        .map_err(|e| StepError::new(&e))?;
        if plan.is_empty() {
            return Ok(None);
        }
        let info = plan
            .write_layer(self.store.blobs(), self.settings.layer)
            .map_err(|e| StepError::new(&e))?;
        drop(source_view);
        Ok(Some(info))
    }

    fn run(
        &self,
        cx: &StepContext<'_>,
        r: &crate::graph::RunOp,
        parent: &StepResult,
        key: &StepKey,
    ) -> Result<Option<LayerInfo>, StepError> {
        let lowers = self
            .snapshots
            .unpack_all(&parent.layers)
            .map_err(|e| StepError::new(&e))?;
        let mut views = Vec::new();
        let mut mount_sources = BTreeMap::new();
        for (i, m) in r.mounts.iter().enumerate() {
            let from = match &m.kind {
                MountKind::Bind { from, .. } => Some(from),
                MountKind::Cache { from, .. } => from.as_ref(),
                _ => None,
            };
            match from {
                Some(FsInput::Context(name)) if !name.is_main() => {
                    let ctx = self.contexts.get(name).ok_or_else(|| {
                        StepError::msg(format!("build context {name} is not available"))
                    })?;
                    mount_sources.insert(i, ctx.dir.clone());
                }
                Some(from @ (FsInput::Step(_) | FsInput::Image(_))) => {
                    let layers = self.input_layers(from)?;
                    match self
                        .snapshots
                        .view(&layers)
                        .map_err(|e| StepError::new(&e))?
                    {
                        Some(v) => {
                            mount_sources.insert(i, v.path().to_path_buf());
                            views.push(v);
                        }
                        None => {
                            let empty = tempfile::Builder::new()
                                .prefix(".tmp-empty-")
                                .tempdir_in(self.store.root())
                                .map_err(|e| StepError::new(&e))?;
                            mount_sources.insert(i, empty.path().to_path_buf());
                            views.push(RootfsView::empty(empty));
                        }
                    }
                }
                _ => {}
            }
        }
        let main = self
            .contexts
            .get(&ContextName::main())
            .map(|c| c.dir.as_path());
        let log_path = self
            .store
            .root()
            .join(LOG_DIR)
            .join(format!("{}.log", key.key.hex()));
        let sink = LineSink::new(cx.id(), self.events);
        let output = run_step(&RunInputs {
            op: r,
            lowers: &lowers,
            mount_sources: &mount_sources,
            context_dir: main,
            store_root: self.store.root(),
            secrets: &self.settings.secrets,
            ssh_agent: self.settings.ssh_agent.as_deref(),
            executor: self.executor,
            sink: &sink,
            cancel: cx.cancellation(),
            hostname: HOSTNAME,
            log_path: Some(&log_path),
        });
        sink.flush();
        drop(views);
        let output = output.map_err(|e| {
            let mut message = render(&e);
            let tail = e.output_tail();
            if !tail.is_empty() {
                message.push('\n');
                message.push_str(&tail.join("\n"));
            }
            StepError {
                message,
                exit_code: e.exit_code(),
            }
        })?;
        if output.changes.is_empty() {
            return Ok(None);
        }
        output
            .changes
            .write_layer(self.store.blobs(), self.settings.layer)
            .map(Some)
            .map_err(|e| StepError::new(&e))
    }
}

fn parent_of(parent: &Option<Arc<StepResult>>) -> Result<&StepResult, StepError> {
    parent
        .as_deref()
        .ok_or_else(|| StepError::msg("step has no parent (this is a bug)"))
}

/// True when `step` is the first instruction of a stage built on another stage (BuildKit keeps
/// "CMD was set" per stage).
fn step_starts_stage(step: &Step, parent: &StepResult) -> bool {
    step.origin.stage.index != parent.stage
}

/// The result of a filesystem step: `parent`'s layers plus `layer` (if the step made one), with
/// the history entry `h` recorded in `state` as a layer or, without one, as `empty_layer`.
fn stacked(
    key: StepKey,
    parent: &StepResult,
    mut state: ConfigState,
    layer: Option<LayerRecord>,
    h: History,
    step: &Step,
) -> StepResult {
    let mut layers = parent.layers.clone();
    match layer {
        Some(l) => {
            state.image.push_layer(l.diff_id.clone(), h);
            layers.push(l);
        }
        None => state.image.push_empty(h),
    }
    StepResult {
        key,
        layers,
        config: state,
        stage: step.origin.stage.index,
    }
}

/// A stored layer as a cache record names it.
pub fn layer_record(info: &LayerInfo) -> LayerRecord {
    LayerRecord {
        digest: info.digest.clone(),
        diff_id: info.diff_id.clone(),
        size: info.size,
        media_type: info.media_type.clone(),
    }
}

/// The entries of a layer that creates `wd` (absolute, clean) under `root`: every missing
/// directory (0755, `uid:gid`, mtime `epoch`) plus the existing ancestors with their metadata;
/// empty when `wd` already exists. Symlinked ancestors are followed inside the root.
pub fn mkdir_entries(
    root: Option<&Path>,
    wd: &str,
    uid: u32,
    gid: u32,
    epoch: i64,
) -> Result<Vec<Entry>, String> {
    use std::os::unix::fs::MetadataExt;
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: Vec<String> = wd
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .rev()
        .collect();
    let mut existing: Vec<(String, fs::Metadata)> = Vec::new();
    let mut created: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = resolved.clone();
        candidate.push(comp.clone());
        let rel = candidate.join("/");
        if !created.is_empty() {
            created.push(rel);
            resolved = candidate;
            continue;
        }
        let meta = match root {
            Some(r) => fs::symlink_metadata(r.join(&rel)).ok(),
            None => None,
        };
        match meta {
            None => {
                created.push(rel);
                resolved = candidate;
            }
            Some(m) if m.is_dir() => {
                existing.push((rel, m));
                resolved = candidate;
            }
            Some(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(format!("too many symlinks resolving {wd}"));
                }
                let r = root.expect("metadata came from a root");
                let target = fs::read_link(r.join(&rel)).map_err(|e| e.to_string())?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for c in target
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .rev()
                {
                    pending.push(c.to_string());
                }
                let _ = m;
            }
            Some(_) => return Err(format!("/{rel} exists and is not a directory")),
        }
    }
    if created.is_empty() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    let created_first = &created[0];
    for (rel, m) in existing {
        // Only ancestors of the created directories belong in the diff.
        if !created_first.starts_with(&format!("{rel}/")) {
            continue;
        }
        entries.push(Entry {
            path: rel,
            kind: EntryKind::Dir,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            xattrs: BTreeMap::new(),
        });
    }
    for rel in created {
        entries.push(Entry {
            path: rel,
            kind: EntryKind::Dir,
            mode: 0o755,
            uid,
            gid,
            mtime: epoch,
            xattrs: BTreeMap::new(),
        });
    }
    Ok(entries)
}

/// Turns RUN output bytes into log events, one per line.
struct LineSink<'a> {
    id: StepId,
    events: &'a dyn EventSink,
    partial: Mutex<[Vec<u8>; 2]>,
}

impl<'a> LineSink<'a> {
    fn new(id: StepId, events: &'a dyn EventSink) -> Self {
        LineSink {
            id,
            events,
            partial: Mutex::new([Vec::new(), Vec::new()]),
        }
    }

    fn slot(stream: LogStream) -> usize {
        match stream {
            LogStream::Stderr => 1,
            _ => 0,
        }
    }

    fn flush(&self) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        for (i, stream) in [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .enumerate()
        {
            if !partial[i].is_empty() {
                let line = String::from_utf8_lossy(&partial[i]).into_owned();
                partial[i].clear();
                self.events.emit(Event::Log {
                    id: self.id,
                    stream,
                    line,
                });
            }
        }
    }
}

impl OutputSink for LineSink<'_> {
    fn write(&self, stream: LogStream, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        let buf = &mut partial[Self::slot(stream)];
        buf.extend_from_slice(bytes);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.events.emit(Event::Log {
                id: self.id,
                stream,
                line: text,
            });
        }
    }
}

/// A [`Fetcher`] that downloads each URL once per build: the key needs the content digest
/// before the step runs, and the COPY planner needs the file again.
pub struct MemoFetcher {
    inner: Box<dyn Fetcher>,
    scratch: PathBuf,
    fetched: Mutex<BTreeMap<String, Fetched>>,
}

impl MemoFetcher {
    /// Memoize `inner`; copies handed out are created in `scratch`.
    pub fn new(inner: Box<dyn Fetcher>, scratch: PathBuf) -> Self {
        MemoFetcher {
            inner,
            scratch,
            fetched: Mutex::new(BTreeMap::new()),
        }
    }

    /// The content digest of `url`, downloading it if needed.
    pub fn digest(&self, url: &str) -> Result<Digest, FetchError> {
        self.ensure(url)?;
        let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        fetched
            .get(url)
            .map(|f| f.digest.clone())
            .ok_or_else(|| FetchError::Unavailable {
                url: url.to_string(),
            })
    }

    fn ensure(&self, url: &str) -> Result<(), FetchError> {
        {
            let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
            if fetched.contains_key(url) {
                return Ok(());
            }
        }
        let f = self.inner.fetch(url)?;
        self.fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), f);
        Ok(())
    }
}

impl Fetcher for MemoFetcher {
    fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        self.ensure(url)?;
        let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        let f = fetched.get(url).ok_or_else(|| FetchError::Unavailable {
            url: url.to_string(),
        })?;
        let io = |op: &'static str| {
            let url = url.to_string();
            move |source| FetchError::Io { url, op, source }
        };
        let mut copy = tempfile::Builder::new()
            .prefix(".tmp-fetch-")
            .tempfile_in(&self.scratch)
            .map_err(io("create scratch file"))?;
        let mut src = fs::File::open(&f.file).map_err(io("open download"))?;
        std::io::copy(&mut src, copy.as_file_mut()).map_err(io("copy download"))?;
        copy.flush().map_err(io("flush download"))?;
        Ok(Fetched {
            file: copy.into_temp_path(),
            size: f.size,
            digest: f.digest.clone(),
            last_modified: f.last_modified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkdir_entries_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("usr/local")).expect("mkdir");
        fs::create_dir_all(root.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/real", root.join("link")).expect("symlink");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("/usr/local", vec![]),
            ("/app", vec!["app"]),
            (
                "/usr/local/app/x",
                vec!["usr", "usr/local", "usr/local/app", "usr/local/app/x"],
            ),
            ("/link/sub", vec!["real", "real/sub"]),
        ];
        for (wd, want) in cases {
            let got = mkdir_entries(Some(root), wd, 1000, 1000, 0).expect(wd);
            let paths: Vec<&str> = got.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, want, "{wd}");
            for e in got
                .iter()
                .filter(|e| !fs::symlink_metadata(root.join(&e.path)).is_ok_and(|m| m.is_dir()))
            {
                assert_eq!(
                    (e.mode, e.uid, e.gid),
                    (0o755, 1000, 1000),
                    "{wd}: {}",
                    e.path
                );
            }
        }
        let none = mkdir_entries(None, "/a/b", 0, 0, 5).expect("scratch");
        assert_eq!(none.len(), 2);
        assert_eq!(none[1].mtime, 5);
        fs::write(root.join("file"), b"x").expect("write");
        assert!(mkdir_entries(Some(root), "/file/x", 0, 0, 0).is_err());
    }
}
