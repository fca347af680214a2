//! Turning errors into what the user sees, with miette: the file name, the offending source line
//! with a caret under the instruction, and the cause. Only this file knows about miette; the
//! libraries expose locations as plain data ([`rbuild_dockerfile::Error::location`]).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
};
use rbuild_dockerfile::span::LineIndex;

/// A failure of a subcommand, as the CLI reports it (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The Dockerfile is invalid (parse, instruction or lowering error).
    #[error("{error}")]
    Dockerfile {
        /// The Dockerfile's path, as given.
        path: PathBuf,
        /// Its text, for the snippet.
        text: String,
        /// What is wrong (boxed: the library error is large).
        error: Box<rbuild_dockerfile::Error>,
    },
    /// Output could not be written or encoded.
    #[error("failed to write output: {0}")]
    Output(String),
}

/// A Dockerfile error with its source, for miette.
#[derive(Debug)]
struct DockerfileDiagnostic {
    message: String,
    source: NamedSource<String>,
    span: Option<SourceSpan>,
    line: Option<usize>,
    file: String,
}

impl std::fmt::Display for DockerfileDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for DockerfileDiagnostic {}

impl Diagnostic for DockerfileDiagnostic {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.span.map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".to_string()),
            span,
        ))))
    }
}

/// The first line of the instruction at `location`: where the caret goes.
fn first_line_span(text: &str, location: rbuild_dockerfile::span::Location) -> Option<SourceSpan> {
    let index = LineIndex::new(text);
    let start = match location.span.is_empty() {
        false if location.span.start < text.len() => location.span.start,
        _ => index.line_start(location.start_line)?,
    };
    let rest = &text[start..];
    let len = rest
        .find('\n')
        .unwrap_or(rest.len())
        .max(1)
        .min(rest.len().max(1));
    Some(SourceSpan::new(start.into(), len))
}

/// Render `err` for a terminal (colours only when stderr is one).
pub fn render(err: &CliError) -> String {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    let mut out = String::new();
    let rendered = match err {
        CliError::Dockerfile { path, text, error } => {
            let location = error.location();
            let diag = DockerfileDiagnostic {
                message: error.to_string(),
                source: NamedSource::new(display_path(path), text.clone()),
                span: location.and_then(|l| first_line_span(text, l)),
                line: location.map(|l| l.start_line),
                file: display_path(path),
            };
            handler.render_report(&mut out, &diag)
        }
        other => {
            let diag = miette::MietteDiagnostic::new(other.to_string());
            handler.render_report(&mut out, &diag)
        }
    };
    match rendered {
        Ok(()) => out,
        Err(_) => format!("error: {err}\n"),
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_goes_under_the_first_line() {
        let text = "FROM a\nCOPY x \\\n  y\n";
        let loc = rbuild_dockerfile::span::Location {
            span: rbuild_dockerfile::span::Span::new(7, 17),
            start_line: 2,
            end_line: 3,
        };
        let span = first_line_span(text, loc).expect("span");
        assert_eq!((span.offset(), span.len()), (7, 8));
        let empty = rbuild_dockerfile::span::Location {
            span: Default::default(),
            start_line: 2,
            end_line: 2,
        };
        assert_eq!(first_line_span(text, empty).map(|s| s.offset()), Some(7));
    }

    #[test]
    fn report_names_file_line_and_cause() {
        let text = "FROM alpine\nCOPY onlyone\n".to_string();
        let df = rbuild_dockerfile::parse(&text).expect("parses");
        let error = rbuild_dockerfile::lower(&df, &Default::default()).expect_err("invalid");
        let out = render(&CliError::Dockerfile {
            path: "ctx/Dockerfile".into(),
            text,
            error: Box::new(error),
        });
        assert!(out.contains("ctx/Dockerfile:2"), "{out}");
        assert!(out.contains("COPY onlyone"), "{out}");
        assert!(
            out.contains("COPY requires at least two arguments"),
            "{out}"
        );
    }
}
