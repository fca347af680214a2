//! `rbuild debug parse FILE`: print BuildKit's AST dump of a Dockerfile (what the parser
//! conformance `result` files hold), to compare rbuild's parser with BuildKit's.

use std::io::Write;
use std::path::Path;

use crate::report::CliError;

/// Parse `file` and print its dump on stdout.
pub fn parse(file: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file).map_err(|source| CliError::Io {
        op: "read",
        path: file.to_path_buf(),
        source,
    })?;
    let df = match rbuild_dockerfile::parse(&text) {
        Ok(df) => df,
        Err(e) => {
            return Err(CliError::Dockerfile {
                path: file.to_path_buf(),
                text,
                error: Box::new(e.into()),
            });
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", rbuild_dockerfile::dump::dump(&df))
        .map_err(|e| CliError::Output(e.to_string()))
}
