//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on RUN, COPY and ADD lines.
//!
//! Follows BuildKit's `parser.ParseHeredoc`, `heredocsFromLine` and `ChompHeredocContent`
//! (`parser/parser.go`), including their reliance on the shell lexer (`shell/lex.go`):
//! - [`heredocs_from_line`] splits the whole instruction line into words the way BuildKit's lexer
//!   does with `RawQuotes`, `RawEscapes` and `SkipUnsetEnv` on and no variables set (quotes,
//!   escapes and `$VAR` stay as written; an unquoted `<<` keeps the blanks after it in its word, so
//!   `<< EOF` is one word). A line the lexer rejects (an unclosed quote) has no heredocs. Each word
//!   then goes through [`parse_heredoc_token`].
//! - [`parse_heredoc_token`] matches `^(\d*)<<(-?)\s*([^<]*)$`; the rest must lex as exactly one
//!   word. The name is that word with quotes removed; `expand` is false when lexing with and
//!   without `RawQuotes` gives different quote counts (part of the name was quoted). An unclosed
//!   quote in the name is an error.
//! - [`chomp`] removes leading tabs from every line (`<<-`); the parser stores bodies unchomped.
//!
//! Known deviations: the lexer refuses `${...}` nested more than 256 deep (treated like a lexing
//! error), where Go's growable stack has no limit; a file descriptor beyond `u32` saturates.

use crate::ast::Heredoc;
use crate::shell::{param_name, Words};
use thiserror::Error;

/// How deep `${...}` and quotes may nest inside one heredoc line before lexing gives up.
const MAX_DEPTH: usize = 256;

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
    let lex_error = |reason: String| HeredocError::Lex {
        token: rest.to_string(),
        reason,
    };
    let words = WordLexer::new(rest, false, false)
        .process_words()
        .map_err(lex_error)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = WordLexer::new(rest, true, false)
        .process_words()
        .map_err(lex_error)?;
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
    let words = WordLexer::new(line, true, true)
        .process_words()
        .unwrap_or_default();
    let mut docs = Vec::new();
    for word in &words {
        if let Some(doc) = parse_heredoc_token(word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
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

/// The subset of BuildKit's shell lexer that heredoc detection needs: escape `\`, no variables
/// set, unset variables kept as written (`SkipUnsetEnv`), `<<` heredoc words.
struct WordLexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    depth: usize,
}

const ESCAPE: char = '\\';

impl WordLexer {
    fn new(src: &str, raw_quotes: bool, raw_escapes: bool) -> Self {
        let mut chars: Vec<char> = src.chars().collect();
        // Go's text/scanner skips a byte-order mark at the very start.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        WordLexer {
            chars,
            pos: 0,
            raw_quotes,
            raw_escapes,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_words(mut self) -> Result<Vec<String>, String> {
        let raw_escapes = self.raw_escapes;
        self.process_stop_on(None, raw_escapes)
            .map(|(_, words)| words)
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("substitutions nested too deeply".to_string());
        }
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    let mut ch = ch;
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                ch = c;
                                words.add_raw_char(ch);
                            }
                        }
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(c) => Err(format!(
                "unexpected end of statement while looking for matching {c}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        if let Some(open) = self.next() {
            if self.raw_quotes {
                result.push(open);
            }
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        if let Some(open) = self.next() {
            if self.raw_quotes {
                result.push(open);
            }
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | ESCAPE) => {
                                ch = self.next().unwrap_or(ch);
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `$NAME` / `${...}` with every variable unset and kept as written (`SkipUnsetEnv`).
    fn process_dollar(&mut self) -> Result<String, String> {
        const MISSING_BRACE: &str = "syntax error: missing '}'";
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err(MISSING_BRACE.into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        // Go renders the end of input as U+FFFD in the modifier text.
        let first = self.next();
        let mut chs = first.unwrap_or('\u{fffd}').to_string();
        let modifier = match first {
            Some('}') => return Ok(format!("${{{name}}}")),
            Some(':') => {
                let second = self.next();
                chs.push(second.unwrap_or('\u{fffd}'));
                second
            }
            Some('+' | '-' | '?' | '#' | '%') => first,
            Some('/') => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '/' in ${}".into())
                    }
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => return Err(MISSING_BRACE.into()),
                    Err(e) => return Err(e),
                };
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            _ => return Err(format!("unsupported modifier ({chs}) in substitution")),
        };
        let raw_escapes = matches!(modifier, Some('#' | '%'));
        let word = match self.process_stop_on(Some('}'), raw_escapes) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(MISSING_BRACE.into()),
            Err(e) => return Err(e),
        };
        Ok(format!("${{{name}{chs}{word}}}"))
    }

    fn process_name(&mut self) -> String {
        let rest: String = self.chars[self.pos..].iter().collect();
        let name = param_name(&rest).to_string();
        self.pos += name.chars().count();
        name
    }

    /// `<` alone, or `<<` plus the blanks after it (so `<< EOF` stays one word).
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = "<<".to_string();
        while let Some(c) = self.peek().filter(|c| matches!(c, ' ' | '\t' | '\r')) {
            self.next();
            out.push(c);
        }
        out
    }
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
