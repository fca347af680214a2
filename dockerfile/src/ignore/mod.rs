//! `.dockerignore`: which files of the build context are left out of the build.
//!
//! This is moby/patternmatcher plus BuildKit's ignore-file handling, reproduced exactly on Unix
//! (the BuildKit vectors in `shared/conformance/buildkit/patternmatcher` pin it):
//!
//! - `file.rs` reads an ignore file (`ignorefile.ReadAll`: `#` comments in column 0, trimming,
//!   `filepath.Clean`, leading `/` removed, `!` kept) and picks `<Dockerfile>.dockerignore` over
//!   `<context>/.dockerignore`, as BuildKit's dockerfile front-end does.
//! - `pattern.rs` compiles one pattern: Go `filepath.Match` syntax plus `**`, translated to an
//!   exact, prefix, suffix or regular-expression matcher exactly as patternmatcher does;
//!   `re2.rs` reads the Go expression with Go's rules and writes it for Rust's `regex`.
//! - `set.rs` holds the ordered rules: the last matching rule wins (the outcome is a [`Match`]),
//!   `!` re-includes, a pattern also matches a path below a directory it matches, and a walk can
//!   skip an excluded directory unless a `!` rule could re-include something below it (fsutil's
//!   logic).
//!
//! Every pattern is compiled once, when the rules are built; a malformed pattern (`[`, a lone
//! `!`, `[l-O]`) is an error naming the pattern and its line, never a panic. Paths given to the
//! matchers are relative to the context and `/`-separated, as a walk produces them.
//!
//! ```
//! use rbuild_dockerfile::ignore::IgnoreRules;
//! use std::path::Path;
//!
//! let rules = IgnoreRules::from_file_text(Path::new(".dockerignore"), "*.log\n!keep.log\nbuild/\n")?;
//! assert!(rules.is_excluded("debug.log")?);
//! assert!(!rules.is_excluded("keep.log")?);
//! assert!(rules.is_excluded("build/out/app")?);
//! let rule = rules.excluding_rule("debug.log")?.expect("excluded");
//! assert_eq!(rule.to_string(), "rule `*.log` (line 1 of .dockerignore)");
//! assert!(!rules.may_reinclude_below("build"));
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod file;
mod pattern;
mod re2;
mod set;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use file::{find_ignore_file, ignore_file_candidates, read_lines, IgnoreLine, DOCKERIGNORE};
pub use pattern::{
    check_glob_syntax, filepath_match, go_clean, go_dir, translate, Pattern, PatternError,
    Strategy, Translation,
};
pub use set::{IgnoreRules, Match, ParentMatch, Rule, RuleOrigin};

/// Why ignore rules could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IgnoreError {
    /// A `!` with nothing after it.
    #[error("illegal exclusion pattern \"!\" ({origin})")]
    LoneExclamation {
        /// The rule as written.
        original: String,
        /// Where it was written.
        origin: RuleOrigin,
    },
    /// A pattern that does not compile.
    #[error("invalid ignore pattern `{pattern}` ({origin}): {kind}")]
    BadPattern {
        /// The pattern as written (trimmed).
        pattern: String,
        /// Where it was written.
        origin: RuleOrigin,
        /// What is wrong with it.
        kind: PatternError,
    },
    /// The ignore file exists but cannot be read.
    #[error("read ignore file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}
