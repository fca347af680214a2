//! Physical lines to logical lines: BOM, directives, comments, escape-token continuations.
//!
//! Follows the line loop of BuildKit's `parser.Parse` (`parser/parser.go`):
//! - Lines are split after each `\n`, which stays part of the physical line; a UTF-8 BOM is dropped
//!   from the first line. Like Go's `bufio.Scanner`, a line longer than 65535 bytes (newline
//!   excluded) is an error.
//! - The first line of an instruction is trimmed of its line ending (every trailing `\r`/`\n`) and
//!   of leading Unicode whitespace, offered to the [`DirectiveParser`], and dropped when it is a
//!   comment (first character `#`).
//! - A line continues when it ends with the escape token followed only by blanks (BuildKit's
//!   `([^\\])\\[ \t]*$|^\\[ \t]*$`, so an escaped escape token `\\` at the end does not continue).
//!   The token and the blanks are removed and the next line is appended verbatim, keeping its
//!   indentation. Comment lines inside a continuation are skipped; blank ones are skipped too and
//!   reported through [`LogicalLine::has_empty_continuation`] (BuildKit's "Empty continuation
//!   line" warning). A continuation that runs into the end of the file just ends there.
//!
//! Line numbers count every physical line consumed, comments and blanks inside a continuation
//! included, so they equal BuildKit's `StartLine`/`EndLine`. Heredoc bodies are not interpreted
//! here: the parser pulls them with [`Lexer::next_physical`].

use crate::ast::Directives;
use crate::directives::{DirectiveError, DirectiveParser};
use crate::parser::ParseError;
use crate::span::{Location, Span};

/// The longest physical line, newline excluded, that Go's `bufio.Scanner` accepts by default.
pub const MAX_LINE_LEN: usize = 64 * 1024 - 1;

const BOM: char = '\u{feff}';

/// One physical line of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysicalLine<'a> {
    /// The line's text including its trailing `\n`, if any (BOM removed on line 1).
    pub text: &'a str,
    /// Byte offset of `text` in the source.
    pub start: usize,
    /// 1-based line number.
    pub number: usize,
}

impl PhysicalLine<'_> {
    /// Byte offset just past the line's content, line ending (`\r`/`\n`) excluded.
    pub fn content_end(&self) -> usize {
        self.start + trim_newline(self.text).len()
    }
}

/// One instruction's text with its continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// The joined text: escape tokens removed, continuation lines appended verbatim.
    pub text: String,
    /// Where the instruction sits: from its first character to the end of its last line.
    pub location: Location,
    /// True when a blank line was skipped inside the continuation.
    pub has_empty_continuation: bool,
}

/// Splits Dockerfile text into logical lines while tracking directives.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    parser: DirectiveParser,
    directives: Directives,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`, with default directives (escape `\`).
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 0,
            parser: DirectiveParser::new(),
            directives: Directives::default(),
        }
    }

    /// The directives seen so far.
    pub fn directives(&self) -> &Directives {
        &self.directives
    }

    /// The number of physical lines consumed so far.
    pub fn lines_read(&self) -> usize {
        self.line
    }

    /// The next physical line, verbatim; `None` at the end of the text.
    pub fn next_physical(&mut self) -> Result<Option<PhysicalLine<'a>>, ParseError> {
        if self.pos >= self.src.len() {
            return Ok(None);
        }
        let rest = &self.src[self.pos..];
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let mut text = &rest[..len];
        let mut start = self.pos;
        self.pos += len;
        self.line += 1;
        let content_len = text.strip_suffix('\n').unwrap_or(text).len();
        if content_len > MAX_LINE_LEN {
            return Err(ParseError::LineTooLong {
                location: line_location(start, start + content_len, self.line),
                length: content_len,
            });
        }
        if self.line == 1 {
            if let Some(stripped) = text.strip_prefix(BOM) {
                start += BOM.len_utf8();
                text = stripped;
            }
        }
        Ok(Some(PhysicalLine {
            text,
            start,
            number: self.line,
        }))
    }

    /// The next instruction line with continuations joined; `None` when only comments, blank
    /// lines and directives remain.
    pub fn next_logical(&mut self) -> Result<Option<LogicalLine>, ParseError> {
        loop {
            let Some(first) = self.next_physical()? else {
                return Ok(None);
            };
            let content = trim_newline(first.text);
            let trimmed = content.trim_start_matches(char::is_whitespace);
            let offset = first.start + (content.len() - trimmed.len());
            self.offer_directive(trimmed, first.number, offset, first.content_end())?;
            let body = if is_comment(trimmed) { "" } else { trimmed };
            let (body, mut end_of_line) = trim_continuation(body, self.directives.escape);
            if end_of_line && body.is_empty() {
                continue;
            }
            let mut text = body.to_string();
            let mut end_line = first.number;
            let mut end = first.content_end();
            let mut has_empty_continuation = false;
            while !end_of_line {
                let Some(next) = self.next_physical()? else {
                    break;
                };
                let content = trim_newline(next.text);
                // BuildKit offers continuation lines to the directive parser too; it is always
                // done by now (the first line of an instruction ends the block), so this only
                // keeps the bookkeeping identical.
                self.offer_directive(content, next.number, next.start, next.content_end())?;
                end_line = next.number;
                end = next.content_end();
                if is_comment(next.text) {
                    continue;
                }
                if content.trim_start_matches(char::is_whitespace).is_empty() {
                    has_empty_continuation = true;
                    continue;
                }
                let (part, eol) = trim_continuation(content, self.directives.escape);
                end_of_line = eol;
                text.push_str(part);
            }
            return Ok(Some(LogicalLine {
                text,
                location: Location {
                    span: Span::new(offset, end.max(offset)),
                    start_line: first.number,
                    end_line,
                },
                has_empty_continuation,
            }));
        }
    }

    fn offer_directive(
        &mut self,
        line: &str,
        number: usize,
        start: usize,
        end: usize,
    ) -> Result<(), ParseError> {
        let location = line_location(start, end.max(start), number);
        match self.parser.parse_line(line) {
            Ok(Some(d)) => {
                match d.name.as_str() {
                    "escape" => {
                        // The directive parser only lets `\` and a backtick through.
                        self.directives.escape = d.value.chars().next().unwrap_or('\\');
                    }
                    "syntax" => self.directives.syntax = Some(d.value),
                    "check" => self.directives.check = Some(d.value),
                    _ => {}
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(source) => Err(match source {
                DirectiveError::Duplicate { name } => {
                    ParseError::DuplicateDirective { location, name }
                }
                DirectiveError::InvalidEscape { value } => {
                    ParseError::InvalidEscape { location, value }
                }
            }),
        }
    }
}

fn line_location(start: usize, end: usize, line: usize) -> Location {
    Location {
        span: Span::new(start, end),
        start_line: line,
        end_line: line,
    }
}

/// Remove every trailing `\r` and `\n` (Go's `bytes.TrimRight(s, "\r\n")`).
pub fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// True when the line, leading whitespace ignored, starts with `#`.
pub fn is_comment(line: &str) -> bool {
    line.trim_start_matches(char::is_whitespace)
        .starts_with('#')
}

/// Strip a line-continuation escape token and its trailing blanks. Returns the remaining text and
/// whether the line ends the instruction (true when there was no continuation).
pub fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let blanks_trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = blanks_trimmed.strip_suffix(escape) else {
        return (line, true);
    };
    match before.chars().next_back() {
        None => ("", false),
        Some(c) if c == escape => (line, true),
        Some(_) => (before, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(src: &str) -> Vec<(String, usize, usize, bool)> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        while let Some(l) = lx.next_logical().expect("lexes") {
            out.push((
                l.text,
                l.location.start_line,
                l.location.end_line,
                l.has_empty_continuation,
            ));
        }
        out
    }

    #[test]
    fn continuation_table() {
        let cases: &[(&str, char, &str, bool)] = &[
            ("RUN a", '\\', "RUN a", true),
            ("RUN a \\", '\\', "RUN a ", false),
            ("RUN a\\  \t", '\\', "RUN a", false),
            ("\\", '\\', "", false),
            ("  \\ ", '\\', "  ", false),
            ("a\\\\", '\\', "a\\\\", true),
            ("a`", '`', "a", false),
            ("a\\", '`', "a\\", true),
            ("é\\", '\\', "é", false),
        ];
        for &(line, esc, want, eol) in cases {
            assert_eq!(trim_continuation(line, esc), (want, eol), "line {line:?}");
        }
    }

    #[test]
    fn joins_and_counts_lines() {
        let src = "FROM a\n\nRUN x \\\n  # c\n\n  y\n# end\n";
        assert_eq!(
            logical(src),
            vec![
                ("FROM a".into(), 1, 1, false),
                ("RUN x   y".into(), 3, 6, true)
            ]
        );
    }

    #[test]
    fn continuation_at_eof_ends_the_instruction() {
        assert_eq!(logical("RUN a \\"), vec![("RUN a ".into(), 1, 1, false)]);
        assert_eq!(
            logical("RUN a \\\n# c\n"),
            vec![("RUN a ".into(), 1, 2, false)]
        );
    }

    #[test]
    fn bom_and_crlf() {
        let mut lx = Lexer::new("\u{feff}FROM a\r\nRUN b\r\n");
        let l = lx.next_logical().expect("lexes").expect("a line");
        assert_eq!(l.text, "FROM a");
        assert_eq!(l.location.span, Span::new(3, 9));
        assert_eq!(
            lx.next_logical().expect("lexes").expect("a line").text,
            "RUN b"
        );
    }

    #[test]
    fn escape_directive_switches_the_token() {
        let mut lx = Lexer::new("# escape=`\nRUN a `\n b\\\n");
        assert_eq!(
            lx.next_logical().expect("lexes").expect("a line").text,
            "RUN a  b\\"
        );
        assert_eq!(lx.directives().escape, '`');
    }

    #[test]
    fn overlong_lines_fail() {
        let ok = "a".repeat(MAX_LINE_LEN);
        assert!(Lexer::new(&ok).next_physical().is_ok());
        let long = "a".repeat(MAX_LINE_LEN + 1) + "\n";
        assert!(matches!(
            Lexer::new(&long).next_physical(),
            Err(ParseError::LineTooLong { .. })
        ));
    }
}
