//! The crate's error types: each module's error folded in with its evidence intact, and
//! [`BuildError`], the error of a whole build, which carries the failing step's [`Origin`] so a
//! front-end can point at the Dockerfile line (as BuildKit's `WithLocation` does).

use std::path::PathBuf;

use crate::cache::{CacheError, KeyError};
use crate::context::ContextError;
use crate::graph::{GraphError, Origin};
use crate::store::StoreError;

/// Any error of the rbuild library below the build driver (scheduler errors wrap the step
/// function's own error type and are returned as [`crate::schedule::ScheduleError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The step graph is not runnable.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A cache key could not be computed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The cache index failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The build context could not be read.
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Why a build (or an export) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile could not be read.
    #[error("read dockerfile {path}: {source}")]
    ReadDockerfile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile does not parse or lower (the error carries its location).
    #[error("{file}: {source}")]
    Dockerfile {
        /// The Dockerfile's name as given.
        file: String,
        /// The front-end's error.
        #[source]
        source: Box<rbuild_dockerfile::Error>,
    },
    /// The stage plan could not become a step graph.
    #[error(transparent)]
    Frontend(#[from] crate::frontend::FrontendError),
    /// A request field is not acceptable.
    #[error("invalid request: {field}: {reason}")]
    Request {
        /// The field (`platform`, `tag`, …).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference resolved nowhere.
    #[error("image {reference} not found: no named context, local image or registry provides it")]
    ImageNotFound {
        /// The reference as written.
        reference: String,
    },
    /// An image source could not be read.
    #[error("image source {reference}: {reason}")]
    Source {
        /// The reference or path.
        reference: String,
        /// What went wrong.
        reason: String,
    },
    /// A step failed; `origin` names its file, line, stage and instruction.
    #[error("{}:{}: [{}] {}: {message}", origin.file, origin.start_line, origin.stage, first_line(&origin.instruction))]
    Step {
        /// Where the step was written.
        origin: Origin,
        /// What went wrong, rendered with its causes.
        message: String,
        /// The exit code, when the step was a RUN whose command failed.
        exit_code: Option<i32>,
    },
    /// The build was cancelled before it finished.
    #[error("build cancelled")]
    Cancelled,
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The graph or cache machinery failed.
    #[error(transparent)]
    Internal(#[from] Error),
    /// Writing an output failed.
    #[error("export to {dest}: {reason}")]
    Export {
        /// The destination.
        dest: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file operation of the driver failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// The origin of the failing step, when a step failed.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            BuildError::Step { origin, .. } => Some(origin),
            _ => None,
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}
