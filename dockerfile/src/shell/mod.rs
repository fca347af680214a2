//! Shell-word expansion, as BuildKit's `frontend/dockerfile/shell` package (`shell.Lex`) does it.
//!
//! Dockerfile instructions (`ENV`, `ARG`, `COPY`, `FROM`, `WORKDIR`, ...) expand variables in their
//! arguments with a small shell-like language: single and double quotes, an escape character (`\`
//! or the one set by `# escape=`), `$V`/`${V}` and the `${V:-w}` family of operators, including
//! `#`/`%` trimming and `/` substitution with `*`/`?` wildcards. [`Lexer::process_word`] expands one
//! word (BuildKit `ProcessWordWithMatches`); [`Lexer::process_words`] also splits it into words
//! (`ProcessWords`). Both report which variables were referenced, set and unset, so cache keys and
//! lints can depend on exactly those. [`Lexer::with_skip_process_quotes`] turns quote processing
//! off, as BuildKit does (`SkipProcessQuotes`) for the bodies of `COPY`/`ADD` heredocs whose
//! delimiter is unquoted; [`Lexer::with_heredoc_markers`] keeps `<< EOF` one word, which is how
//! the parser finds heredoc markers on a RUN/COPY/ADD line (`crate::heredoc`).
//!
//! Module map: `lex` scans quotes and escapes and splits words; `expand` handles `$` and the
//! operators; `pattern` turns wildcard patterns into regexes; `env` is the variable lookup.
//! Behaviour, error messages and known deviations are documented in each module. Expansion is pure:
//! it reads nothing but the word and the [`Env`] it is given.

use std::collections::BTreeSet;

mod env;
mod expand;
mod lex;
mod pattern;

pub use env::Env;
pub use lex::Lexer;

/// Result of expanding one word, with the variables it referenced (for cache keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, quotes and escapes removed (unless kept raw).
    pub value: String,
    /// Names referenced that were set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names referenced that were not set.
    pub unmatched: BTreeSet<String>,
}

/// Result of expanding and splitting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordsExpansion {
    /// The words, split on unquoted whitespace after expansion.
    pub words: Vec<String>,
    /// Names referenced that were set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names referenced that were not set.
    pub unmatched: BTreeSet<String>,
}

/// Why a word could not be expanded (message as BuildKit's, e.g. "VAR: is not allowed to be unset",
/// the missing-brace and bad-substitution errors), plus the byte offset in the word where it happened.
///
/// The offset is where the failing construct starts: the `$` of the expansion, or the opening quote
/// of an unterminated string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    /// BuildKit's message, without its `failed to process "<word>": ` prefix.
    pub message: String,
    /// Byte offset in the word where the failing construct starts.
    pub offset: usize,
}

impl ShellError {
    pub(crate) fn new(message: impl Into<String>, offset: usize) -> Self {
        ShellError {
            message: message.into(),
            offset,
        }
    }

    /// The whole message as BuildKit prints it: `failed to process "<word>": <message>`.
    pub fn describe(&self, word: &str) -> String {
        format!("failed to process {}: {}", go_quote(word), self.message)
    }
}

/// Go's `strconv.Quote`, as BuildKit's `%q` renders the word in its error.
fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            _ if is_go_print(ch) => out.push(ch),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ if ch < ' ' || ch == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", ch as u32);
            }
            _ if (ch as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", ch as u32);
            }
            _ => {
                let _ = write!(out, "\\U{:08x}", ch as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
fn is_go_print(ch: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as C};
    ch == ' '
        || !matches!(
            get_general_category(ch),
            C::Control
                | C::Format
                | C::PrivateUse
                | C::Surrogate
                | C::Unassigned
                | C::SpaceSeparator
                | C::LineSeparator
                | C::ParagraphSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! quoted {
        ($name:ident, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(go_quote($input), $want);
            }
        };
    }

    quoted!(quote_plain, "${X}", "\"${X}\"");
    quoted!(
        quote_escapes_quote_and_backslash,
        "a\"b\\",
        "\"a\\\"b\\\\\""
    );
    quoted!(
        quote_control_chars,
        "\t\n\u{1}\u{7f}",
        "\"\\t\\n\\x01\\x7f\""
    );
    quoted!(quote_printable_unicode_raw, "한é♥", "\"한é♥\"");
    quoted!(
        quote_nonprintable_unicode,
        "\u{a0}\u{2028}\u{e0001}",
        "\"\\u00a0\\u2028\\U000e0001\""
    );

    #[test]
    fn describe_matches_buildkit() {
        let err = Lexer::new('\\')
            .process_word("${VAR:?}", &Vec::new())
            .expect_err("unset");
        assert_eq!(
            err.describe("${VAR:?}"),
            "failed to process \"${VAR:?}\": VAR: is not allowed to be unset"
        );
        assert_eq!(err.to_string(), "VAR: is not allowed to be unset");
    }
}
