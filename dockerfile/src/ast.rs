//! The raw syntax tree, shaped like BuildKit's `parser.Node`: one [`Node`] per instruction, with its
//! `--flags` verbatim and its arguments split the way BuildKit's line parsers split them. Nothing here
//! is expanded or validated beyond syntax; [`crate::instructions`] turns nodes into typed values.

use crate::span::Location;

/// A parsed Dockerfile: directives, instructions in order, and non-fatal warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives found at the head of the file.
    pub directives: Directives,
    /// Top-level instructions, in file order.
    pub nodes: Vec<Node>,
    /// Problems that do not stop the parse (e.g. empty continuation lines).
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// Where the instructions sit: from the first one's start to the last one's end (BuildKit's
    /// root `StartLine`/`EndLine`); `None` when there are no nodes.
    pub fn location(&self) -> Option<Location> {
        let first = self.nodes.first()?;
        let last = self.nodes.last()?;
        Some(Location {
            span: crate::span::Span::new(first.location.span.start, last.location.span.end),
            start_line: first.location.start_line,
            end_line: last.location.end_line,
        })
    }
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`) read from the head of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` unless `# escape=` says otherwise.
    pub escape: char,
    /// The `# syntax=` frontend image, if given.
    pub syntax: Option<String>,
    /// The `# check=` lint configuration, verbatim, if given.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// One instruction as written: keyword, flags, arguments, heredocs and where it came from.
///
/// `args` follows BuildKit's node shapes: shell form is one string (the raw rest of the line,
/// continuations joined); JSON form is one string per array element (`json` is true); ENV and
/// LABEL are flat triples `name, value, sep` where `sep` is `"="` or `""` (legacy `ENV k v`);
/// HEALTHCHECK is `"CMD"` followed by the command's args (or `NONE`); other instructions are
/// whitespace-split words. ONBUILD keeps its trigger in `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lowercased (`from`, `run`, …).
    pub keyword: String,
    /// `--name=value` flags in order, verbatim as written (e.g. `--from=build`).
    pub flags: Vec<String>,
    /// Arguments, in the shape described on the type.
    pub args: Vec<String>,
    /// True when the arguments came from a JSON (exec-form) array.
    pub json: bool,
    /// For ONBUILD: the trigger instruction.
    pub next: Option<Box<Node>>,
    /// Heredocs attached to this instruction, in the order their markers appear.
    pub heredocs: Vec<Heredoc>,
    /// Where the instruction is in the file.
    pub location: Location,
    /// The instruction as BuildKit's `Node.Original` has it: the logical line, continuations
    /// joined (escape tokens and comment lines removed). `location.span` covers the raw text.
    pub original: String,
}

/// A heredoc body attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, unquoted.
    pub name: String,
    /// The body, each line ending in `\n`; stored un-chomped even for `<<-`.
    pub content: String,
    /// False when the delimiter was (partly) quoted: the body is not expanded.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped when the body is used.
    pub chomp: bool,
    /// The file descriptor of `3<<EOF` forms; 0 when none was given.
    pub file_descriptor: u32,
}

/// A problem found while parsing that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What is wrong, in one lowercase sentence.
    pub message: String,
    /// Where it was found.
    pub location: Location,
}
