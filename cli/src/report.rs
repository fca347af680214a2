//! Turning errors into what the user sees, with miette, and into exit codes (cargo's
//! `CliError` idea): 2 for a usage error, 130 for a build cancelled by Ctrl-C, 1 for everything
//! else.
//!
//! An error tied to a Dockerfile line — a parse or lowering error, or a failed step, which
//! carries its [`rbuild::graph::Origin`] as BuildKit's errors carry `WithLocation` — is shown
//! as `FILE:LINE: cause` with the offending source line and a caret under it; a failed RUN also
//! shows the last lines of its output when the cause does not already include them. Only this
//! file knows about miette; the libraries expose locations as plain data.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
};
use rbuild::graph::Origin;
use rbuild::BuildError;
use rbuild_dockerfile::span::{LineIndex, Location, Span};

/// A failure of a subcommand, as the CLI reports it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something impossible (exit code 2).
    #[error("{0}")]
    Usage(String),
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
    /// A build or export failed.
    #[error("{error}")]
    Build {
        /// The Dockerfile's display name and text, for the snippet, when known.
        dockerfile: Option<(String, String)>,
        /// The last output lines of failed steps (label, lines).
        tails: Vec<(String, Vec<String>)>,
        /// What went wrong (boxed: the library error is large).
        error: Box<BuildError>,
    },
    /// The local store failed.
    #[error("{0}")]
    Store(#[from] rbuild::store::StoreError),
    /// The Ctrl-C handler could not be installed.
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(String),
    /// The build was interrupted (Ctrl-C or SIGTERM) and stopped cleanly (exit code 130).
    #[error("build cancelled")]
    Cancelled,
    /// A registry operation (login, logout) failed (boxed: the library error is large).
    #[error("{0}")]
    Registry(Box<rbuild::registry::RegistryError>),
    /// Output could not be written or encoded.
    #[error("failed to write output: {0}")]
    Output(String),
}

impl From<rbuild::registry::RegistryError> for CliError {
    fn from(e: rbuild::registry::RegistryError) -> Self {
        CliError::Registry(Box::new(e))
    }
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Cancelled => crate::interrupt::EXIT_CANCELLED,
            _ => 1,
        }
    }
}

/// An error with a Dockerfile snippet, for miette.
#[derive(Debug)]
struct DockerfileDiagnostic {
    message: String,
    source: NamedSource<String>,
    span: Option<SourceSpan>,
    line: Option<usize>,
    file: String,
    help: Option<String>,
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

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

/// The first line of the instruction at `location`: where the caret goes.
fn first_line_span(text: &str, location: Location) -> Option<SourceSpan> {
    let index = LineIndex::new(text);
    let start = match location.span.is_empty() {
        false if location.span.start < text.len() => location.span.start,
        _ => index.line_start(location.start_line)?,
    };
    let rest = text.get(start..)?;
    let len = rest
        .find('\n')
        .unwrap_or(rest.len())
        .max(1)
        .min(rest.len().max(1));
    Some(SourceSpan::new(start.into(), len))
}

/// A step origin as a front-end location, when it points into `text` at the line it claims.
fn origin_location(text: &str, origin: &Origin) -> Option<Location> {
    if origin.start_line == 0 {
        return None;
    }
    let start_line = origin.start_line as usize;
    let index = LineIndex::new(text);
    let line_start = index.line_start(start_line)?;
    let span = if origin.span.start <= origin.span.end
        && origin.span.end <= text.len()
        && origin.span.start >= line_start
        && text.is_char_boundary(origin.span.start)
    {
        Span::new(origin.span.start, origin.span.end)
    } else {
        Span::new(line_start, line_start)
    };
    Some(Location {
        span,
        start_line,
        end_line: origin.end_line.max(origin.start_line) as usize,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// The output tail of the failed step, unless the cause already quotes its last line.
fn tail_help(message: &str, tails: &[(String, Vec<String>)]) -> Option<String> {
    let (label, lines) = tails.iter().find(|(_, lines)| !lines.is_empty())?;
    let last = lines.last()?;
    if message.contains(last.as_str()) {
        return None;
    }
    let mut help = format!("last output of {label}:");
    for line in lines {
        help.push_str("\n  ");
        help.push_str(line);
    }
    Some(help)
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
    let rendered = match diagnostic(err) {
        Some(diag) => handler.render_report(&mut out, &diag),
        None => {
            let diag = miette::MietteDiagnostic::new(err.to_string());
            handler.render_report(&mut out, &diag)
        }
    };
    match rendered {
        Ok(()) => out,
        Err(_) => format!("error: {err}\n"),
    }
}

/// The Dockerfile-anchored diagnostic for `err`, when it has a location.
fn diagnostic(err: &CliError) -> Option<DockerfileDiagnostic> {
    match err {
        CliError::Dockerfile { path, text, error } => Some(dockerfile_diagnostic(
            &display_path(path),
            text,
            error.location(),
            error.to_string(),
            None,
        )),
        CliError::Build {
            dockerfile,
            tails,
            error,
        } => match error.as_ref() {
            BuildError::Dockerfile { file, source } => {
                let (name, text) = dockerfile.clone().unwrap_or((file.clone(), String::new()));
                Some(dockerfile_diagnostic(
                    &name,
                    &text,
                    source.location(),
                    source.to_string(),
                    None,
                ))
            }
            BuildError::Step {
                origin, message, ..
            } => {
                let (name, text) = dockerfile
                    .clone()
                    .unwrap_or_else(|| (origin.file.clone(), String::new()));
                let location = origin_location(&text, origin);
                // The snippet shows the instruction; without one, the message names it.
                let stage_text = match location {
                    Some(_) => format!("[{}] {message}", origin.stage),
                    None => format!(
                        "[{}] {}: {message}",
                        origin.stage,
                        first_line(&origin.instruction)
                    ),
                };
                let mut diag = dockerfile_diagnostic(
                    &name,
                    &text,
                    location,
                    stage_text,
                    tail_help(message, tails),
                );
                if diag.line.is_none() && origin.start_line > 0 {
                    diag.line = Some(origin.start_line as usize);
                }
                Some(diag)
            }
            _ => None,
        },
        _ => None,
    }
}

fn dockerfile_diagnostic(
    file: &str,
    text: &str,
    location: Option<Location>,
    message: String,
    help: Option<String>,
) -> DockerfileDiagnostic {
    DockerfileDiagnostic {
        message,
        source: NamedSource::new(file, text.to_string()),
        span: location.and_then(|l| first_line_span(text, l)),
        line: location.map(|l| l.start_line),
        file: file.to_string(),
        help,
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild::graph::{ByteSpan, StageRef};

    #[test]
    fn caret_goes_under_the_first_line() {
        let text = "FROM a\nCOPY x \\\n  y\n";
        let loc = Location {
            span: Span::new(7, 17),
            start_line: 2,
            end_line: 3,
        };
        let span = first_line_span(text, loc).expect("span");
        assert_eq!((span.offset(), span.len()), (7, 8));
        let empty = Location {
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

    fn step_error(text: &str, line: u32, span: ByteSpan, message: &str) -> BuildError {
        BuildError::Step {
            origin: Origin {
                file: "Dockerfile".into(),
                span,
                start_line: line,
                end_line: line,
                stage: StageRef {
                    index: 0,
                    name: Some("build".into()),
                },
                instruction: text.lines().nth(line as usize - 1).unwrap_or("").into(),
            },
            message: message.into(),
            exit_code: Some(3),
        }
    }

    #[test]
    fn failed_step_points_at_its_line_with_output_tail() {
        let text = "FROM busybox AS build\nRUN echo hi && exit 3\n";
        let err = CliError::Build {
            dockerfile: Some(("fixtures/x/Dockerfile".into(), text.into())),
            tails: vec![("#2 [build 2/2] RUN echo hi && exit 3".into(), vec!["hello world".into()])],
            error: Box::new(step_error(
                text,
                2,
                ByteSpan { start: 22, end: 43 },
                "process \"/bin/sh -c echo hi && exit 3\" did not complete successfully: exit code: 3",
            )),
        };
        let out = render(&err);
        assert!(
            out.contains("fixtures/x/Dockerfile:2: [build] process"),
            "{out}"
        );
        assert!(out.contains("exit code: 3"), "{out}");
        assert!(out.contains("RUN echo hi && exit 3"), "{out}");
        assert!(
            out.contains('^') || out.contains('─') || out.contains("here"),
            "{out}"
        );
        assert!(out.contains("last output of #2"), "{out}");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn bad_origin_spans_fall_back_to_the_line() {
        let text = "FROM a\nRUN x\n";
        let bogus = step_error(
            text,
            2,
            ByteSpan {
                start: 400,
                end: 900,
            },
            "boom",
        );
        let BuildError::Step { origin, .. } = &bogus else {
            panic!("a step error");
        };
        let loc = origin_location(text, origin).expect("line 2 exists");
        assert_eq!(loc.span, Span::new(7, 7));
        let beyond = step_error("FROM a\nRUN x\n\n\nRUN y", 5, ByteSpan::default(), "boom");
        let BuildError::Step { origin, .. } = &beyond else {
            panic!("a step error");
        };
        assert!(origin_location(text, origin).is_none());
    }

    #[test]
    fn tail_is_not_repeated_when_the_cause_quotes_it() {
        let tails = vec![(
            "#1 x".to_string(),
            vec!["a".to_string(), "oops".to_string()],
        )];
        assert!(tail_help("failed: oops", &tails).is_none());
        assert_eq!(
            tail_help("exit code: 1", &tails).as_deref(),
            Some("last output of #1 x:\n  a\n  oops")
        );
        assert!(tail_help("x", &[]).is_none());
        assert_eq!(CliError::Usage("u".into()).exit_code(), 2);
    }
}
