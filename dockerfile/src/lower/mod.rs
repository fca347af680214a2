//! Lowering: a parsed [`Dockerfile`] becomes a [`Plan`] of build stages, as BuildKit's
//! `instructions.Parse` plus the first half of `dockerfile2llb.toDispatchState` do.
//!
//! What lowering decides, rule by rule (each has a test named after it):
//! - **Stages.** Every `FROM` starts a stage; stage names are lower-cased; a name used twice is
//!   an error. Instructions other than ARG before the first FROM are an error.
//! - **Meta ARGs.** ARGs before the first FROM, together with the predefined platform ARGs
//!   (`BUILDPLATFORM`, `TARGETOS`, …), are visible only in FROM lines (image and `--platform`),
//!   unless a stage redeclares them with a bare `ARG NAME`. `--build-arg` values override ARG
//!   defaults (and platform ARGs); a default is expanded with the meta ARGs before it.
//! - **Bases.** `scratch` is the empty base; a name equal to an *earlier* stage's name is that
//!   stage; anything else is an image reference (BuildKit looks up FROM names only among the
//!   stages registered so far, so a later stage's name is an image).
//! - **Dependencies.** `COPY --from` and `RUN --mount=from=` name a stage (any stage, case-
//!   insensitively), a stage index (`--from=0`), or else an external image. `--from` is never
//!   expanded: a value that would change under expansion is an error, as in BuildKit ≥ 0.24
//!   ("variable expansion is not supported for --from"). A cycle, including a stage copying
//!   from itself, is "circular dependency detected on stage: NAME".
//! - **Target.** `--target` (case-insensitive) selects the final stage; by default the last one.
//!   Only stages it transitively needs (bases and `--from`s) are built; the others are skipped.
//! - **Platforms.** A stage's platform is its `--platform` (expanded with meta ARGs), else its
//!   base stage's, else the target platform ([`LowerOptions::platform`], default: the host).
//! - **Proxy ARGs** (`HTTP_PROXY`, `no_proxy`, …) given as build args need no ARG; they are
//!   returned apart in [`Plan::proxy_env`] (for RUN only, never in history). Other build args
//!   no stage declares are reported as a warning, as Docker does.
//!
//! Expansion of the words inside a stage needs the base image's environment, so it is a
//! separate step: [`Stage::expand`]. That step also expands COPY/ADD heredoc bodies whose
//! delimiter is unquoted (quotes kept literally, as BuildKit's `SkipProcessQuotes`); RUN heredoc
//! bodies are left to the shell, as BuildKit does.
//!
//! Known deviations: duplicate stage names are an error here (BuildKit ≥ 0.14 only lints
//! `DuplicateStageName`); a base/`--from` cycle is reported even where BuildKit would not detect
//! it.

mod args;
mod expand;
mod platform;
mod stages;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use args::{MetaArg, PROXY_ARGS};
pub use expand::{default_path, ExpandedCommand, ExpandedStage};
pub use platform::{platform_args, Platform, PlatformError};

use crate::ast::Dockerfile;
use crate::error::Result;
use crate::instructions::{Command, MountError};
use crate::span::Location;

/// Inputs to lowering that do not come from the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    /// The stage to build (`--target`); the last stage when `None`.
    pub target: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The platform to build for (`--platform`); the host when `None`.
    pub platform: Option<Platform>,
    /// The platform the build runs on; the host when `None`.
    pub build_platform: Option<Platform>,
}

/// The result of lowering: every stage, which ones the target needs, and in what order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// All stages in file order (`stages[i].index == i`).
    pub stages: Vec<Stage>,
    /// Index of the target stage.
    pub target: usize,
    /// Indexes of the stages to build, dependencies first, ending with the target.
    pub build_order: Vec<usize>,
    /// Indexes of the stages the target does not need, in file order.
    pub skipped: Vec<usize>,
    /// The meta ARGs (platform ARGs, then global ARGs) with their final values.
    pub meta_args: Vec<MetaArg>,
    /// Proxy settings from the build args, for RUN environments only.
    pub proxy_env: BTreeMap<String, String>,
    /// The platform being built for.
    pub target_platform: Platform,
    /// The platform the build runs on.
    pub build_platform: Platform,
    /// Problems that do not stop the build (unused build args, …).
    pub warnings: Vec<LowerWarning>,
}

impl Plan {
    /// The target stage.
    pub fn target_stage(&self) -> &Stage {
        &self.stages[self.target]
    }

    /// The stages to build, in build order.
    pub fn stages_to_build(&self) -> impl Iterator<Item = &Stage> {
        self.build_order.iter().map(|&i| &self.stages[i])
    }

    /// External images the build needs (bases and `--from`s of built stages), sorted, unique.
    pub fn images(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .stages_to_build()
            .flat_map(|s| s.deps.iter())
            .filter_map(|d| match &d.on {
                DepTarget::Image(r) => Some(r.clone()),
                DepTarget::Stage(_) => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A problem found while lowering that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerWarning {
    /// What is wrong, lowercase.
    pub message: String,
    /// Where, when it is tied to a line.
    pub location: Option<Location>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and config.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, expanded, as written (not normalised).
    Image(String),
}

/// Something a stage needs before it can be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepTarget {
    /// Another stage, by index.
    Stage(usize),
    /// An external image reference.
    Image(String),
}

/// Why a stage depends on something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// The stage's `FROM`.
    Base,
    /// A `COPY --from`.
    CopyFrom,
    /// A `RUN --mount=…,from=`.
    MountFrom,
}

/// One dependency edge of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// What is needed.
    pub on: DepTarget,
    /// Which instruction needs it.
    pub kind: DepKind,
    /// Index into [`Stage::commands`] of that instruction (`None` for the base).
    pub command: Option<usize>,
    /// Where that instruction is.
    pub location: Location,
}

/// One build stage: its base, platform, instructions (unexpanded) and dependencies.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Position among the FROMs, from 0.
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// What it starts from.
    pub base: Base,
    /// The FROM image word as written, before expansion.
    pub base_text: String,
    /// The platform it is built for.
    pub platform: Platform,
    /// True when FROM had `--platform`.
    pub explicit_platform: bool,
    /// Meta ARGs the FROM line used, with their values (for cache keys).
    pub from_used: BTreeMap<String, String>,
    /// Where the FROM line is.
    pub location: Location,
    /// The FROM line's source text.
    pub original: String,
    /// The instructions after FROM, in order.
    pub commands: Vec<Command>,
    /// Base and `--from` dependencies, in instruction order (base first).
    pub deps: Vec<Dependency>,
    scope: Arc<args::Scope>,
}

impl Stage {
    /// The name BuildKit shows: the `AS` name, else `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// Why a Dockerfile cannot be lowered into a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LowerError {
    /// The Dockerfile has no FROM.
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// An instruction other than ARG before the first FROM.
    #[error("no build stage in current context: {instruction} before the first FROM")]
    NoBuildStage {
        /// The instruction keyword.
        instruction: &'static str,
        /// Where it is.
        location: Location,
    },
    /// A word could not be expanded.
    #[error("{instruction}: failed to process {word:?}: {message}")]
    Expand {
        /// The instruction keyword.
        instruction: &'static str,
        /// The word as written.
        word: String,
        /// The lexer's message.
        message: String,
        /// Where the instruction is.
        location: Location,
    },
    /// A FROM image that expands to nothing.
    #[error("base name ({raw}) should not be blank")]
    BlankBaseName {
        /// The FROM word as written.
        raw: String,
        /// Where the FROM is.
        location: Location,
    },
    /// A `--platform` that does not parse.
    #[error("failed to parse platform {source}")]
    InvalidPlatform {
        /// Why.
        source: PlatformError,
        /// Where the FROM is.
        location: Location,
    },
    /// Two stages with the same name.
    #[error("duplicate stage name {name:?} (first defined on line {first_line})")]
    DuplicateStageName {
        /// The name.
        name: String,
        /// Line of the first definition.
        first_line: usize,
        /// Where the second FROM is.
        location: Location,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    TargetNotFound {
        /// The requested target.
        target: String,
        /// The closest stage name, if any is close.
        suggestion: Option<String>,
    },
    /// `--from=N` with no stage N.
    #[error("invalid stage index {index}")]
    InvalidStageIndex {
        /// The index given.
        index: i64,
        /// Where the instruction is.
        location: Location,
    },
    /// Stages that depend on each other in a loop.
    #[error("circular dependency detected on stage: {stage}")]
    CircularDependency {
        /// The stage where the loop was found (`stage-N` when unnamed).
        stage: String,
        /// The instructions forming the loop, in order.
        locations: Vec<Location>,
    },
    /// `COPY --from` with a variable.
    #[error("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround (--from={value})")]
    FromVariable {
        /// The `--from` value.
        value: String,
        /// Where the COPY is.
        location: Location,
    },
    /// A `--mount` that is invalid once expanded.
    #[error("{source}")]
    Mount {
        /// Why.
        source: MountError,
        /// Where the RUN is.
        location: Location,
    },
    /// A flag value that is invalid once expanded (`--chmod`, `--chown`).
    #[error("{instruction}: {kind}")]
    InvalidFlag {
        /// The instruction keyword.
        instruction: &'static str,
        /// Why.
        kind: crate::instructions::InstructionErrorKind,
        /// Where the instruction is.
        location: Location,
    },
}

impl LowerError {
    /// Where in the Dockerfile the problem is, when it is tied to a line.
    pub fn location(&self) -> Option<Location> {
        match self {
            LowerError::NoStages | LowerError::TargetNotFound { .. } => None,
            LowerError::CircularDependency { locations, .. } => locations.first().copied(),
            LowerError::NoBuildStage { location, .. }
            | LowerError::Expand { location, .. }
            | LowerError::BlankBaseName { location, .. }
            | LowerError::InvalidPlatform { location, .. }
            | LowerError::DuplicateStageName { location, .. }
            | LowerError::InvalidStageIndex { location, .. }
            | LowerError::FromVariable { location, .. }
            | LowerError::Mount { location, .. }
            | LowerError::InvalidFlag { location, .. } => Some(*location),
        }
    }
}

/// Lower a parsed Dockerfile into a [`Plan`] (see the module documentation for the rules).
pub fn lower(df: &Dockerfile, opts: &LowerOptions) -> Result<Plan> {
    stages::lower(df, opts)
}
