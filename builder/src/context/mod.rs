//! The build context: walking it under `.dockerignore` ([`walk`](mod@walk)), hashing its files
//! with a persistent stat cache ([`statcache`]), and digesting the selections steps read
//! ([`hash`]).
//!
//! This is the builder's side of BuildKit's context transfer and `contenthash`: the context is
//! read from a local directory (no daemon, no transfer), symlinks are never followed, and digests
//! depend only on paths, types, permission bits and contents. Host paths name the stat cache file
//! only; they never reach a digest.

pub mod hash;
pub mod statcache;
pub mod walk;

use std::io;
use std::path::PathBuf;

pub use hash::{clean_rel, hash_context, ContextEntry, HashOptions, HashStats, HashedContext};
pub use statcache::{StatCache, StatEntry, RACY_WINDOW_NS, STAT_CACHE_DIR};
pub use walk::{walk, ContextFilter, EntryKind, NoFilter, StatInfo, WalkEntry};

/// The message of a missing source (`path` cleaned, with its leading `/`): BuildKit's
/// `"/x": not found`, plus the `.dockerignore` rule that hid it and what to do about it.
pub fn not_found_message(path: &str, excluded_by: Option<&str>) -> String {
    match excluded_by {
        Some(rule) => format!(
            "\"{path}\": not found (excluded by .dockerignore {rule}): remove the rule or the COPY source"
        ),
        None => format!("\"{path}\": not found"),
    }
}

/// Errors reading or hashing a build context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The context root is not a directory.
    #[error("build context {path} is not a directory")]
    NotADirectory {
        /// The root given.
        path: PathBuf,
    },
    /// A file name is not UTF-8.
    #[error("file name {name:?} in {dir} is not valid UTF-8")]
    NonUtf8Name {
        /// The directory holding it (or the symlink, for a link target).
        dir: PathBuf,
        /// The name, lossily decoded.
        name: String,
    },
    /// The ignore rules or a source pattern failed on a path.
    #[error("cannot match {path}: {message}")]
    Filter {
        /// The path or pattern.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A file changed type between the walk and hashing.
    #[error("{path} changed while the build context was read")]
    Changed {
        /// The path, relative to the context.
        path: String,
    },
    /// A selected source does not exist in the context (BuildKit: `"/x": not found`), or is
    /// hidden by a `.dockerignore` rule, which is then named.
    #[error("{}", not_found_message(&format!("/{}", clean_rel(path)), excluded_by.as_deref()))]
    NotFound {
        /// The source as written.
        path: String,
        /// The `.dockerignore` rule that excluded it, described, if one did.
        excluded_by: Option<String>,
    },
    /// A named build context was not provided.
    #[error("build context {name:?} was not provided")]
    UnknownContext {
        /// The context's name.
        name: String,
    },
    /// The stat cache could not be written.
    #[error("cannot write stat cache {path}: {reason}")]
    StatCache {
        /// The cache file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
