//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on RUN, COPY and ADD lines.
//!
//! Follows BuildKit's `parser.ParseHeredoc`, `heredocsFromLine` and `ChompHeredocContent`
//! (`parser/parser.go`), including their reliance on the shell lexer, which is ours too
//! ([`crate::shell::Lexer`], BuildKit's `shell.Lex`), always with escape `\`, no variables set,
//! unset variables kept as written (`SkipUnsetEnv`) and `<<` heredoc markers on:
//! - [`heredocs_from_line`] splits the whole instruction line into words with `RawQuotes` and
//!   `RawEscapes` also on (quotes, escapes and `$VAR` stay as written; an unquoted `<<` keeps the
//!   blanks after it in its word, so `<< EOF` is one word). A line the lexer rejects (an unclosed
//!   quote) has no heredocs. Each word then goes through [`parse_heredoc_token`].
//! - [`parse_heredoc_token`] matches `^(\d*)<<(-?)\s*([^<]*)$`; the rest must lex as exactly one
//!   word. The name is that word with quotes removed; `expand` is false when lexing with and
//!   without `RawQuotes` gives different quote counts (part of the name was quoted). An unclosed
//!   quote in the name is an error.
//! - [`chomp`] removes leading tabs from every line (`<<-`); the parser stores bodies unchomped.
//!
//! Known deviations: the lexer refuses `${...}` nested more than 256 deep (treated like a lexing
//! error), where Go's growable stack has no limit; a file descriptor beyond `u32` saturates.

use crate::ast::Heredoc;
use crate::shell::{Lexer, ShellError};
use thiserror::Error;

/// A heredoc marker that looks like one but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeredocError {
    /// The delimiter word could not be lexed (e.g. an unclosed quote in `<<'EOF`).
    #[error("invalid heredoc delimiter {token:?}: {reason}")]
    Lex {
        /// The delimiter text after `<<`.
        token: String,
        /// What the shell lexer objected to.
        reason: String,
    },
    /// Lexing with and without quotes disagreed on the number of words.
    #[error("internal lexing of heredoc produced inconsistent results: {token}")]
    Inconsistent {
        /// The delimiter text after `<<`.
        token: String,
    },
}

/// Parse one word as a heredoc marker: `Ok(None)` when it is not one.
pub fn parse_heredoc_token(src: &str) -> Result<Option<Heredoc>, HeredocError> {
    let Some((fd, chomp, rest)) = match_marker(src) else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let lex_error = |err: ShellError| HeredocError::Lex {
        token: rest.to_string(),
        reason: err.message,
    };
    let words = split_words(marker_lexer(), rest).map_err(lex_error)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = split_words(marker_lexer().with_raw_quotes(true), rest).map_err(lex_error)?;
    if raw.len() != words.len() {
        return Err(HeredocError::Inconsistent {
            token: rest.to_string(),
        });
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp,
        file_descriptor: fd,
    }))
}

/// All heredoc markers on an instruction line, in order of appearance (bodies empty).
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocError> {
    // BuildKit ignores the lexer's error here: a line it cannot split has no heredocs.
    let lexer = marker_lexer().with_raw_quotes(true).with_raw_escapes(true);
    let words = split_words(lexer, line).unwrap_or_default();
    let mut docs = Vec::new();
    for word in &words {
        if let Some(doc) = parse_heredoc_token(word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// The lexer BuildKit sets up for heredoc detection: escape `\`, unset variables kept as written,
/// `<<` markers kept whole.
fn marker_lexer() -> Lexer {
    Lexer::new('\\')
        .with_skip_unset_env(true)
        .with_heredoc_markers(true)
}

/// Split `text` into words with no variables set.
fn split_words(lexer: Lexer, text: &str) -> Result<Vec<String>, ShellError> {
    let no_vars: Vec<(String, String)> = Vec::new();
    lexer.process_words(text, &no_vars).map(|split| split.words)
}

/// Strip leading tabs from every line of a `<<-` body.
pub fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// Match `^(\d*)<<(-?)\s*([^<]*)$`: (file descriptor, chomp, rest).
fn match_marker(src: &str) -> Option<(u32, bool, &str)> {
    let digits = src.len() - src.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd_text, rest) = src.split_at(digits);
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.contains('<') {
        return None;
    }
    // Go ignores the ParseUint error: an empty prefix is 0, an overflowing one saturates.
    let fd = if fd_text.is_empty() {
        0
    } else {
        fd_text.parse::<u32>().unwrap_or(u32::MAX)
    };
    Some((fd, chomp, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        heredocs_from_line(line)
            .expect("no error")
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    #[test]
    fn tokens() {
        // (token, name, expand, chomp, fd)
        let cases: &[(&str, &str, bool, bool, u32)] = &[
            ("<<EOF", "EOF", true, false, 0),
            ("<<'EOF'", "EOF", false, false, 0),
            ("<<\"EOF\"", "EOF", false, false, 0),
            ("<<-EOF", "EOF", true, true, 0),
            ("<<EO\"F\"", "EOF", false, false, 0),
            ("<< EOF", "EOF", true, false, 0),
            ("3<<EOF", "EOF", true, false, 3),
            ("<<eo\\'f", "eo'f", true, false, 0),
            ("<<'e'o\\'f", "eo'f", false, false, 0),
            ("<<$EOF", "$EOF", true, false, 0),
            ("<<'one two'", "one two", false, false, 0),
            ("99999999999<<X", "X", true, false, u32::MAX),
        ];
        for &(src, name, expand, chomp, fd) in cases {
            let h = parse_heredoc_token(src).expect("valid").expect("a heredoc");
            assert_eq!(
                (h.name.as_str(), h.expand, h.chomp, h.file_descriptor),
                (name, expand, chomp, fd),
                "{src}"
            );
        }
    }

    #[test]
    fn not_tokens_and_errors() {
        for src in [
            "", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "<<EOF<",
        ] {
            assert_eq!(parse_heredoc_token(src), Ok(None), "{src:?}");
        }
        for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc_token(src).is_err(), "{src:?}");
        }
    }

    #[test]
    fn lines() {
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert!(names("RUN 'unclosed <<EOF").is_empty());
        assert_eq!(names("RUN cat ${X:-a} <<EOF"), ["EOF"]);
        assert_eq!(names("RUN cat ${X/a/b} 2<<-'E O'"), ["E O"]);
        // BuildKit rejects `${X:#p}` even with unset variables kept, so the line has no heredocs.
        assert!(names("RUN cat ${X:#a} <<EOF").is_empty());
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let line = format!(
            "RUN {}x{} <<EOF",
            "${a:-".repeat(20_000),
            "}".repeat(20_000)
        );
        assert!(names(&line).is_empty());
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp("\thello\n\t\tworld\n"), "hello\nworld\n");
        assert_eq!(chomp("a\tb\n\t"), "a\tb\n");
    }
}
