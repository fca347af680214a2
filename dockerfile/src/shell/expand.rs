//! Parameter expansion: `$V`, `${V}` and the `${V<op>word}` operators.
//!
//! Follows BuildKit's `processDollar` and `processName` (frontend/dockerfile/shell/lex.go):
//!
//! | form | result |
//! |---|---|
//! | `$V`, `${V}` | value, or empty when unset |
//! | `${V:-w}` / `${V-w}` | `w` when V is unset or empty / unset |
//! | `${V:+w}` / `${V+w}` | `w` when V is set and non-empty / set, else empty |
//! | `${V:?m}` / `${V?m}` | error `V: m` when V is unset or empty / unset (default messages "is not allowed to be empty"/"is not allowed to be unset") |
//! | `${V#p}` / `${V##p}` | remove shortest / longest prefix matching `p` |
//! | `${V%p}` / `${V%%p}` | remove shortest / longest suffix matching `p` |
//! | `${V/p/r}` / `${V//p/r}` | replace first / every match of `p` by `r` |
//!
//! The operand `w` is itself expanded (quotes, escapes, nested `$`). Names are letters, digits and
//! `_`; a name starting with a digit is all its digits (positional parameters, never set); the
//! special parameters `@ * # ? - $ ! 0` are one character. A `$` not followed by a name is literal.
//! `${}`, `${:...}`, `${{...}` are "bad substitution"; `${V=w}`, `${V:=w}`, `${V:#p}` and any other
//! modifier are "unsupported modifier"; a word that ends inside `${` is "missing '}'".
//!
//! With skip-unset, a reference to an unset variable is written back as it was read (normalised the
//! way BuildKit does: `${V//p/r}` comes back as `${V/p/r}`).

use super::lex::{is_go_digit, is_go_letter, Scan};
use super::pattern;
use super::ShellError;

/// BuildKit's `%s` of a scanner rune: the character, or U+FFFD for the end of input.
fn rune_text(ch: Option<char>) -> char {
    ch.unwrap_or('\u{fffd}')
}

/// The special parameters of POSIX 2.5.2 (never set in a Dockerfile).
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl Scan<'_> {
    /// Expand the `$...` at the cursor.
    pub(super) fn process_dollar(&mut self) -> Result<String, ShellError> {
        let start = self.pos();
        self.next_char();

        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value.to_string(),
                None if self.lexer.skip_unset_env() => format!("${name}"),
                None => String::new(),
            });
        }

        self.next_char();
        match self.peek() {
            None => return Err(ShellError::new("syntax error: missing '}'", start)),
            Some('{' | '}' | ':') => {
                return Err(ShellError::new("syntax error: bad substitution", start))
            }
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.next_char();
        let mut chs = rune_text(ch).to_string();

        match ch {
            Some('}') => Ok(match self.get_env(&name) {
                Some(value) => value.to_string(),
                None if self.lexer.skip_unset_env() => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                let op = if null_is_unset {
                    let op = self.next_char();
                    chs.push(rune_text(op));
                    op
                } else {
                    ch
                };
                self.process_operator(start, &name, &chs, op, null_is_unset)
            }
            Some('/') => self.process_substitution(start, &name),
            _ => Err(unsupported(&chs, start)),
        }
    }

    /// `${name<op>word}` for the `-`, `+`, `?`, `#`, `%` operators (with or without `:`).
    fn process_operator(
        &mut self,
        start: usize,
        name: &str,
        chs: &str,
        op: Option<char>,
        null_is_unset: bool,
    ) -> Result<String, ShellError> {
        // Patterns keep their escapes so that `\*` still reaches the pattern compiler.
        let is_pattern = matches!(op, Some('#' | '%'));
        if null_is_unset && is_pattern {
            return Err(unsupported(chs, start));
        }
        let word = self.operand(start, '}', "syntax error: missing '}'", is_pattern)?;

        let value = self.get_env(name);
        if value.is_none() && self.lexer.skip_unset_env() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty = value.is_none_or(|v| null_is_unset && v.is_empty());

        match op {
            Some('-') => Ok(if empty {
                word
            } else {
                value.unwrap_or_default().to_string()
            }),
            Some('+') => Ok(if empty { String::new() } else { word }),
            Some('?') => match value {
                None => Err(required(name, &word, "is not allowed to be unset", start)),
                Some("") if null_is_unset => {
                    Err(required(name, &word, "is not allowed to be empty", start))
                }
                Some(value) => Ok(value.to_string()),
            },
            Some(op @ ('#' | '%')) => {
                // A doubled operator (`##`, `%%`) arrives as the operand's first character.
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let value = value.unwrap_or_default();
                let trimmed = if op == '%' {
                    pattern::trim_suffix(pattern, value, greedy)
                } else {
                    pattern::trim_prefix(pattern, value, greedy)
                };
                trimmed.map_err(|message| ShellError::new(message, start))
            }
            _ => Err(unsupported(chs, start)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn process_substitution(&mut self, start: usize, name: &str) -> Result<String, ShellError> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next_char();
        }
        let pattern = self.operand(start, '/', "syntax error: missing '/' in ${}", true)?;
        let replacement = self.operand(start, '}', "syntax error: missing '}'", true)?;

        let value = self.get_env(name);
        if value.is_none() && self.lexer.skip_unset_env() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let re = pattern::to_regex(&pattern, true, false).map_err(|err| {
            ShellError::new(
                format!("invalid pattern ({pattern}) in substitution: {err}"),
                start,
            )
        })?;
        Ok(if replace_all {
            pattern::replace_all(&re, value, &replacement)
        } else {
            pattern::replace_first(&re, value, &replacement)
        })
    }

    /// Expand an operand up to `stop`. Running off the end of the word becomes `missing` at the
    /// `$`; an error inside the operand is passed on unchanged.
    fn operand(
        &mut self,
        start: usize,
        stop: char,
        missing: &str,
        raw_escapes: bool,
    ) -> Result<String, ShellError> {
        match self.process_stop_on(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(ShellError::new(missing, start)),
            Err(err) => Err(err),
        }
    }

    /// Read a parameter name at the cursor; empty when there is none.
    fn process_name(&mut self) -> String {
        let name = param_name(self.rest());
        for _ in name.chars() {
            self.next_char();
        }
        name.to_string()
    }
}

/// The parameter name at the start of `rest` (BuildKit's `processName`): a run of digits (a
/// positional parameter), one special parameter character, or letters, digits and `_` not
/// starting with a digit; empty when there is none.
fn param_name(rest: &str) -> &str {
    let end = match rest.chars().next() {
        None => 0,
        Some(ch) if is_go_digit(ch) => rest.find(|c| !is_go_digit(c)).unwrap_or(rest.len()),
        Some(ch) if is_special_param(ch) => ch.len_utf8(),
        Some(_) => rest
            .find(|c| !is_go_letter(c) && !is_go_digit(c) && c != '_')
            .unwrap_or(rest.len()),
    };
    &rest[..end]
}

fn unsupported(chs: &str, start: usize) -> ShellError {
    ShellError::new(
        format!("unsupported modifier ({chs}) in substitution"),
        start,
    )
}

fn required(name: &str, word: &str, default: &str, start: usize) -> ShellError {
    let message = if word.is_empty() { default } else { word };
    ShellError::new(format!("{name}: {message}"), start)
}

#[cfg(test)]
mod tests {
    use super::super::{Env, Lexer};
    use std::collections::BTreeMap;

    #[test]
    fn param_name_reads_what_process_name_reads() {
        let cases = [
            ("", ""),
            ("123abc", "123"),
            ("0x", "0"),
            ("@x", "@"),
            ("$$", "$"),
            ("-x", "-"),
            ("a_b1-c", "a_b1"),
            ("_x}", "_x"),
            ("한글 x", "한글"),
            ("\u{663}\u{664}x", "\u{663}\u{664}"),
            (".x", ""),
            ("}", ""),
        ];
        for (rest, want) in cases {
            assert_eq!(super::param_name(rest), want, "{rest:?}");
        }
    }

    fn env() -> BTreeMap<String, String> {
        [
            ("FOO", "xxyy"),
            ("EMPTY", ""),
            ("PATHV", "/tmp/tmp/bar.txt"),
            ("SEP", "/"),
            ("STAR", "a***yy*"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn expand(lexer: Lexer, input: &str) -> Result<String, (String, usize)> {
        let env = env();
        let env: &dyn Env = &env;
        lexer
            .process_word(input, env)
            .map(|e| e.value)
            .map_err(|e| (e.message, e.offset))
    }

    macro_rules! ok {
        ($name:ident, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(expand(Lexer::new('\\'), $input), Ok($want.to_string()));
            }
        };
    }

    macro_rules! err {
        ($name:ident, $input:expr, $message:expr, $offset:expr) => {
            #[test]
            fn $name() {
                assert_eq!(
                    expand(Lexer::new('\\'), $input),
                    Err(($message.to_string(), $offset))
                );
            }
        };
    }

    macro_rules! skip_unset {
        ($name:ident, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                let lexer = Lexer::new('\\').with_skip_unset_env(true);
                assert_eq!(expand(lexer, $input), Ok($want.to_string()));
            }
        };
    }

    // $V and ${V}
    ok!(plain_set, "a$FOO", "axxyy");
    ok!(plain_unset_is_empty, "a$NOPE.b", "a.b");
    ok!(braced, "a${FOO}b", "axxyyb");
    ok!(dollar_without_name, "$.$", "$.$");
    ok!(positional_all_digits, "$123x", "x");
    ok!(special_param_one_char, "$@@", "@");
    ok!(special_param_braced, "${#:-d}", "d");
    ok!(zero_is_digits, "${0}", "");
    // - and :-
    ok!(default_unset, "${NOPE-d}", "d");
    ok!(default_empty_kept, "${EMPTY-d}", "");
    ok!(colon_default_empty, "${EMPTY:-d}", "d");
    ok!(colon_default_set, "${FOO:-d}", "xxyy");
    ok!(default_nested, "${NOPE:-${NADA:-${FOO}}}", "xxyy");
    ok!(default_quoted_operand, "${NOPE:-'a}b'}", "a}b");
    ok!(default_escaped_brace, "${NOPE:-\\}}", "}");
    // + and :+
    ok!(alternate_set, "${FOO+a}", "a");
    ok!(alternate_empty_is_set, "${EMPTY+a}", "a");
    ok!(alternate_unset, "${NOPE+a}", "");
    ok!(colon_alternate_empty, "${EMPTY:+a}", "");
    // ? and :?
    ok!(required_set, "${FOO?}", "xxyy");
    ok!(required_empty_allowed, "${EMPTY?}", "");
    err!(
        required_unset,
        "x${NOPE?}",
        "NOPE: is not allowed to be unset",
        1
    );
    err!(
        required_empty,
        "${EMPTY:?}",
        "EMPTY: is not allowed to be empty",
        0
    );
    err!(
        required_message_expanded,
        "${NOPE:?need $FOO}",
        "NOPE: need xxyy",
        0
    );
    err!(
        required_inner_error_wins,
        "${FOO:-${NOPE?}}",
        "NOPE: is not allowed to be unset",
        7
    );
    // # ## % %%
    ok!(prefix_shortest, "${FOO#*x}", "xyy");
    ok!(prefix_longest, "${FOO##*x}", "yy");
    ok!(suffix_shortest, "${FOO%y*}", "xxy");
    ok!(suffix_longest, "${FOO%%y*}", "xx");
    ok!(suffix_escaped, "${STAR%%\\**\\*}", "a");
    ok!(prefix_of_unset, "${NOPE#x}", "");
    ok!(prefix_brackets_literal, "${FOO#[x]}", "xxyy");
    ok!(prefix_question, "${FOO#??}", "yy");
    err!(
        prefix_bad_escape,
        "${FOO#\\x}",
        "invalid pattern (\\x) in substitution: invalid escape '\\x'",
        0
    );
    err!(
        suffix_bad_escape_reversed,
        "${FOO%a\\x}",
        "invalid pattern (\\xa) in substitution: invalid escape '\\x'",
        0
    );
    err!(
        colon_prefix_unsupported,
        "${FOO:#x}",
        "unsupported modifier (:#) in substitution",
        0
    );
    err!(
        colon_suffix_unsupported,
        "${FOO:%%x}",
        "unsupported modifier (:%) in substitution",
        0
    );
    // / and //
    ok!(replace_first, "${PATHV/tmp/x}", "/x/tmp/bar.txt");
    ok!(replace_all, "${PATHV//tmp/x}", "/x/x/bar.txt");
    ok!(
        replace_escaped_slash,
        "${PATHV//\\//\\/}",
        "\\/tmp\\/tmp\\/bar.txt"
    );
    ok!(
        replace_pattern_from_var,
        "${PATHV//$SEP/_}",
        "_tmp_tmp_bar.txt"
    );
    ok!(replace_wildcard, "${PATHV/\\/*\\//X}", "Xbar.txt");
    ok!(replace_empty_all, "${FOO///}", "xxyy");
    ok!(replace_unset, "${NOPE/a/b}", "");
    err!(
        replace_missing_slash,
        "${FOO//ww}",
        "syntax error: missing '/' in ${}",
        0
    );
    err!(
        replace_missing_brace,
        "${FOO/a/b",
        "syntax error: missing '}'",
        0
    );
    // syntax errors
    err!(empty_braces, "a${}", "syntax error: bad substitution", 1);
    err!(colon_name, "${:-x}", "syntax error: bad substitution", 0);
    err!(double_open, "${{x}", "syntax error: bad substitution", 0);
    err!(
        missing_brace_after_open,
        "${",
        "syntax error: missing '}'",
        0
    );
    err!(
        missing_brace_after_name,
        "${FOO",
        "unsupported modifier (\u{fffd}) in substitution",
        0
    );
    err!(
        missing_brace_in_operand,
        "${FOO:-x ${BAR}",
        "syntax error: missing '}'",
        0
    );
    err!(
        assign_unsupported,
        "${FOO=x}",
        "unsupported modifier (=) in substitution",
        0
    );
    err!(
        colon_assign_unsupported,
        "${FOO:=x}",
        "unsupported modifier (:=) in substitution",
        0
    );
    err!(
        colon_other_unsupported,
        "${FOO:YY}",
        "unsupported modifier (:Y) in substitution",
        0
    );
    err!(
        bad_name_char,
        "${.}",
        "unsupported modifier (.) in substitution",
        0
    );
    // skip unset
    skip_unset!(skip_plain, "a$NOPE", "a$NOPE");
    skip_unset!(skip_braced, "${NOPE}", "${NOPE}");
    skip_unset!(skip_operator, "${NOPE:-$FOO}", "${NOPE:-xxyy}");
    skip_unset!(skip_substitution_normalised, "${NOPE//a/b}", "${NOPE/a/b}");
    skip_unset!(skip_set_expands, "$FOO", "xxyy");
    skip_unset!(skip_unsupported_written_back, "${NOPE:YY}", "${NOPE:YY}");

    #[test]
    fn matched_and_unmatched_are_recorded() {
        let env = env();
        let got = Lexer::new('\\')
            .process_word("${FOO:-$NOPE} ${EMPTY+x} $1 ${NADA#a}", &env)
            .expect("valid");
        let matched: Vec<&str> = got.matched.iter().map(String::as_str).collect();
        let unmatched: Vec<&str> = got.unmatched.iter().map(String::as_str).collect();
        assert_eq!(matched, ["EMPTY", "FOO"]);
        assert_eq!(unmatched, ["1", "NADA", "NOPE"]);
    }
}
