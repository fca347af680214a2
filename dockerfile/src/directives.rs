//! Parser directives: `# syntax=`, `# escape=` and `# check=` comments at the head of a Dockerfile.
//!
//! Follows BuildKit's `parser/directives.go` (`DirectiveParser.ParseLine`): every physical line is
//! offered to the parser, starting with the first. A line shaped `#name=value` whose name is a known
//! directive (case-insensitive) is a directive; the first line of any other shape (a plain comment,
//! an empty line, an instruction, or `#name=value` with an unknown name) ends the directive block for
//! good, which is why `# escape=` after a normal comment is ignored. Repeating a directive is an
//! error, and `escape` accepts only `\` or a backtick.
//!
//! The directive pattern is BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, where `\s`
//! is Go's ASCII class `[\t\n\f\r ]`. The `//` and JSON forms BuildKit's `DetectSyntax` also
//! accepts are for picking a frontend, not for parsing, and are not handled here.

use std::collections::BTreeSet;

use thiserror::Error;

/// One directive found at the head of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive name, lowercased (`syntax`, `escape`, `check`).
    pub name: String,
    /// The value, trimmed of surrounding whitespace.
    pub value: String,
}

/// A directive line that is well-formed but not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DirectiveError {
    /// The same directive appeared twice.
    #[error("only one {name} parser directive can be used")]
    Duplicate {
        /// The repeated directive's name.
        name: String,
    },
    /// `# escape=` named something other than `\` or a backtick.
    #[error("invalid escape token {value:?} does not match ` or \\")]
    InvalidEscape {
        /// The value that was given.
        value: String,
    },
}

/// The directive names BuildKit recognises.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Reads directives line by line until the first line that is not one.
#[derive(Debug, Clone, Default)]
pub struct DirectiveParser {
    done: bool,
    seen: BTreeSet<String>,
}

impl DirectiveParser {
    /// A parser that has not yet seen any line.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once a non-directive line has ended the directive block.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Offer one physical line (newline already removed). Returns the directive it holds, if any.
    pub fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, DirectiveError> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if !self.seen.insert(name.clone()) {
            return Err(DirectiveError::Duplicate { name });
        }
        if name == "escape" && value != "\\" && value != "`" {
            return Err(DirectiveError::InvalidEscape {
                value: value.to_string(),
            });
        }
        Ok(Some(Directive {
            name,
            value: value.to_string(),
        }))
    }
}

/// Go's regexp `\s`: ASCII tab, newline, form feed, carriage return and space (not `\v`).
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Match `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, returning (name, value).
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches(is_go_space);
    let name_len = rest
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_go_space).strip_prefix('=')?;
    // `.` does not match `\n`; a physical line never holds one, but the pattern must not match
    // across it either.
    if rest.is_empty() || rest.contains('\n') {
        return None;
    }
    let value = rest
        .trim_start_matches(is_go_space)
        .trim_end_matches(is_go_space);
    if value.is_empty() {
        // All blanks: the lazy `(.+?)` still takes one character, the last one.
        return Some((name, &rest[rest.len() - 1..]));
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! directive {
        ($line:expr, $name:expr, $value:expr) => {
            assert_eq!(
                DirectiveParser::new().parse_line($line),
                Ok(Some(Directive {
                    name: $name.to_string(),
                    value: $value.to_string()
                })),
                "line {:?}",
                $line
            );
        };
    }
    macro_rules! not_directive {
        ($line:expr) => {
            let mut p = DirectiveParser::new();
            assert_eq!(p.parse_line($line), Ok(None), "line {:?}", $line);
            assert!(p.is_done());
        };
    }

    #[test]
    fn recognises_known_directives() {
        directive!("# escape=`", "escape", "`");
        directive!("#escape=\\", "escape", "\\");
        directive!("# ESCAPE = `  ", "escape", "`");
        directive!(
            "# syntax = docker/dockerfile:1",
            "syntax",
            "docker/dockerfile:1"
        );
        directive!("#check=skip=all", "check", "skip=all");
    }

    #[test]
    fn other_lines_end_the_block() {
        not_directive!("");
        not_directive!("# a comment");
        not_directive!("# foo=bar");
        not_directive!("FROM busybox");
        not_directive!("# escape=");
        directive!("# syntax=  ", "syntax", " ");
        not_directive!("# 1escape=`");
    }

    #[test]
    fn nothing_is_a_directive_after_the_block_ends() {
        let mut p = DirectiveParser::new();
        assert_eq!(p.parse_line("# hello"), Ok(None));
        assert_eq!(p.parse_line("# escape=`"), Ok(None));
    }

    #[test]
    fn duplicates_and_bad_escapes_are_errors() {
        let mut p = DirectiveParser::new();
        assert!(p.parse_line("# syntax=a").is_ok());
        assert_eq!(
            p.parse_line("# syntax=b"),
            Err(DirectiveError::Duplicate {
                name: "syntax".into()
            })
        );
        assert_eq!(
            DirectiveParser::new().parse_line("# escape=x"),
            Err(DirectiveError::InvalidEscape { value: "x".into() })
        );
    }
}
