//! The crate's error type: each module's error folded in with its evidence intact.

use crate::cache::{CacheError, KeyError};
use crate::context::ContextError;
use crate::graph::GraphError;

/// Any error of the rbuild library (scheduler errors wrap the step function's own error type
/// and are returned as [`crate::schedule::ScheduleError`]).
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
