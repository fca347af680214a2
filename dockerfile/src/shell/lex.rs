//! Quoting, escapes and word splitting: the scanning half of BuildKit's `shell.Lex`.
//!
//! Follows `processStopOn`, `processSingleQuote`, `processDoubleQuote` and `wordsStruct` in
//! BuildKit's frontend/dockerfile/shell/lex.go:
//!
//! - `'...'` keeps everything literally, escapes included; an unterminated quote is an error.
//! - `"..."` expands `$` and lets the escape character escape only `"`, `$` and itself; before any
//!   other character the escape is kept. An unterminated quote is an error.
//! - Outside quotes the escape character makes the next character literal; a trailing escape is
//!   dropped.
//! - Word splitting happens after expansion: whitespace from unquoted `$` expansions and literal
//!   text separates words; quoted text and escaped characters never do. An empty word (`""`) is
//!   dropped.
//!
//! With raw quotes the quote characters stay in the output; with raw escapes the escape characters
//! do. With quote processing skipped (BuildKit `SkipProcessQuotes`, used for the bodies of heredocs
//! with an unquoted delimiter) `'` and `"` are ordinary characters everywhere, `${...}` operands
//! included: they are kept, never start a quoted string and never protect `$`, blanks or the
//! escape character; `$` expansion and the escape character (outside-quotes rules: `\$` gives
//! `$`, `\\` gives `\`, `\x` gives `x`, a trailing escape is dropped) still apply.
//! With heredoc markers on (BuildKit's `processPossibleHeredoc`, used when the parser looks for
//! `<<EOF` on RUN/COPY/ADD lines) an unquoted `<<` takes the blanks (space, tab, CR) right after it
//! into its word, so `<< EOF` stays one word; a lone `<` is an ordinary character.
//! A leading byte order mark is skipped, as Go's `text/scanner` does.
//! Names and template names use Go's `unicode.IsLetter`/`IsDigit` (general categories L and Nd),
//! not Rust's wider `is_alphabetic`/`is_numeric`.
//!
//! Known deviations: BuildKit shares one word buffer between a word and the `${...}` operands nested
//! in it, so `ProcessWords("a${X:-b}c")` loses the `a`. We keep each level's buffer apart.
//! `${...}` operands nested more than [`MAX_DEPTH`] deep are an error ("substitutions nested too
//! deeply"), where Go's growable stack has no limit; this keeps hostile input from overflowing
//! ours. BuildKit may treat `<<` specially in every word; we do so only with heredoc markers on.

use std::collections::BTreeSet;

use unicode_general_category::{get_general_category, GeneralCategory};

use super::{Env, Expansion, ShellError, WordsExpansion};

/// How deep `${...}` operands may nest inside one word before expansion gives up.
const MAX_DEPTH: usize = 256;

/// The shell-word lexer/expander (BuildKit `shell.Lex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset_env: bool,
    skip_process_quotes: bool,
    heredoc_markers: bool,
}

impl Default for Lexer {
    /// A lexer with the default escape character `\`.
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer whose escape character is `escape` (`\`, or `` ` `` after `# escape=`` ` ``).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
            heredoc_markers: false,
        }
    }

    /// Keep quote characters in the output (BuildKit `RawQuotes`).
    pub fn with_raw_quotes(self, on: bool) -> Self {
        Lexer {
            raw_quotes: on,
            ..self
        }
    }

    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub fn with_raw_escapes(self, on: bool) -> Self {
        Lexer {
            raw_escapes: on,
            ..self
        }
    }

    /// Leave references to unset variables as written (BuildKit `SkipUnsetEnv`).
    pub fn with_skip_unset_env(self, on: bool) -> Self {
        Lexer {
            skip_unset_env: on,
            ..self
        }
    }

    /// Treat `'` and `"` as ordinary characters (BuildKit `SkipProcessQuotes`): quotes are kept
    /// literally while `$` and the escape character are still processed.
    pub fn with_skip_process_quotes(self, on: bool) -> Self {
        Lexer {
            skip_process_quotes: on,
            ..self
        }
    }

    /// Keep the blanks after an unquoted `<<` in its word, so `<< EOF` is one word (BuildKit's
    /// `processPossibleHeredoc`; what the parser needs to find heredoc markers on a line).
    pub fn with_heredoc_markers(self, on: bool) -> Self {
        Lexer {
            heredoc_markers: on,
            ..self
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Whether references to unset variables are left as written.
    pub(super) fn skip_unset_env(&self) -> bool {
        self.skip_unset_env
    }

    /// ProcessWordWithMatches: expand one word, no splitting.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<Expansion, ShellError> {
        let mut scan = Scan::new(self, word, env);
        let (value, _) = scan.process_stop_on(None, self.raw_escapes)?;
        Ok(Expansion {
            value,
            matched: scan.matched,
            unmatched: scan.unmatched,
        })
    }

    /// ProcessWordsWithMatches: expand and split into words, quotes removed.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<WordsExpansion, ShellError> {
        let mut scan = Scan::new(self, word, env);
        let (_, words) = scan.process_stop_on(None, self.raw_escapes)?;
        Ok(WordsExpansion {
            words,
            matched: scan.matched,
            unmatched: scan.unmatched,
        })
    }
}

/// The state of one expansion: a cursor over the word plus the variables referenced so far
/// (BuildKit's `shellWord`).
pub(super) struct Scan<'a> {
    pub(super) lexer: &'a Lexer,
    src: &'a str,
    pos: usize,
    env: &'a dyn Env,
    /// Whether escape characters are kept right now; `${V#p}`, `${V%p}` and `${V/p/r}` operands
    /// switch it on so the pattern still sees `\*`.
    raw_escapes: bool,
    /// How many [`Scan::process_stop_on`] calls are open, for the [`MAX_DEPTH`] guard.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a> Scan<'a> {
    fn new(lexer: &'a Lexer, src: &'a str, env: &'a dyn Env) -> Self {
        let pos = if src.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        Scan {
            lexer,
            src,
            pos,
            env,
            raw_escapes: lexer.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    /// Byte offset of the next character.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The next character without consuming it; `None` at the end of the word.
    pub(super) fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    /// The text from the cursor to the end of the word.
    pub(super) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Consume and return the next character; `None` at the end of the word.
    pub(super) fn next_char(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// Look `name` up and record it as matched or unmatched.
    pub(super) fn get_env(&mut self, name: &str) -> Option<&'a str> {
        let env: &'a dyn Env = self.env;
        match env.lookup(name) {
            Some(value) => {
                self.matched.insert(name.to_string());
                Some(value)
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Process until `stop` (consumed) or, when `stop` is `None`, the end of the word. Returns the
    /// expanded text and its split words. Reaching the end while looking for `stop` is an error,
    /// and so is nesting deeper than [`MAX_DEPTH`].
    pub(super) fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        if self.depth >= MAX_DEPTH {
            return Err(ShellError::new("substitutions nested too deeply", self.pos));
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_until(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        result
    }

    fn process_until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next_char();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' if self.lexer.heredoc_markers => {
                    let marker = self.process_possible_heredoc();
                    result.push_str(&marker);
                    words.add_raw_string(&marker);
                }
                '\'' if !self.lexer.skip_process_quotes => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if !self.lexer.skip_process_quotes => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next_char();
                    let mut ch = ch;
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape escapes the next character; at the end it is dropped.
                        match self.next_char() {
                            Some(escaped) => ch = escaped,
                            None => break,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(stop) => Err(ShellError::new(
                format!("unexpected end of statement while looking for matching {stop}"),
                self.pos,
            )),
            None => Ok((result, words.finish())),
        }
    }

    /// `<` alone, or `<<` plus the blanks right after it (so `<< EOF` stays one word).
    fn process_possible_heredoc(&mut self) -> String {
        let mut marker = String::new();
        marker.extend(self.next_char());
        if self.peek() != Some('<') {
            return marker;
        }
        marker.extend(self.next_char());
        while let Some(blank) = self.peek().filter(|c| matches!(c, ' ' | '\t' | '\r')) {
            self.next_char();
            marker.push(blank);
        }
        marker
    }

    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let mut result = String::new();
        let quote = self.next_char();
        if self.lexer.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.next_char() {
                None => {
                    return Err(ShellError::new(
                        "unexpected end of statement while looking for matching single-quote",
                        start,
                    ))
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let mut result = String::new();
        let quote = self.next_char();
        if self.lexer.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ShellError::new(
                        "unexpected end of statement while looking for matching double-quote",
                        start,
                    ))
                }
                Some('"') => {
                    self.next_char();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next_char();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is ignored; the loop then reports the open quote.
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next_char();
                                ch = next;
                            }
                            // Before any other character the escape stays (twice with raw
                            // escapes, as in BuildKit).
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }
}

/// Word splitting state (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the current word, anything else extends it.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    /// Unquoted text: each character as [`Words::add_char`].
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    /// Quoted or escaped text: always part of the word.
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    /// The words, the last one included when it is not empty.
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// Go's `unicode.IsLetter`: general category L.
pub(super) fn is_go_letter(ch: char) -> bool {
    matches!(
        get_general_category(ch),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// Go's `unicode.IsDigit`: general category Nd.
pub(super) fn is_go_digit(ch: char) -> bool {
    get_general_category(ch) == GeneralCategory::DecimalNumber
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [("PWD", "/home"), ("SPACE", "a  b "), ("LEAD", "  x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    macro_rules! word {
        ($name:ident, $lexer:expr, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                let lexer: Lexer = $lexer;
                let got = lexer.process_word($input, &env()).map(|e| e.value);
                assert_eq!(got.as_deref(), Ok($want), "input {:?}", $input);
            }
        };
    }

    macro_rules! word_err {
        ($name:ident, $lexer:expr, $input:expr, $message:expr, $offset:expr) => {
            #[test]
            fn $name() {
                let lexer: Lexer = $lexer;
                let err = lexer.process_word($input, &env()).expect_err("must fail");
                assert_eq!((err.message.as_str(), err.offset), ($message, $offset));
            }
        };
    }

    macro_rules! words {
        ($name:ident, $lexer:expr, $input:expr, $want:expr) => {
            #[test]
            fn $name() {
                let lexer: Lexer = $lexer;
                let got = lexer.process_words($input, &env()).map(|e| e.words);
                let want: Vec<String> = $want.iter().map(|s: &&str| s.to_string()).collect();
                assert_eq!(got, Ok(want), "input {:?}", $input);
            }
        };
    }

    fn lx() -> Lexer {
        Lexer::new('\\')
    }

    word!(plain_text, lx(), "hello", "hello");
    word!(single_quotes_removed, lx(), "he'll'o", "hello");
    word!(single_quotes_keep_escape, lx(), "'a\\tb'", "a\\tb");
    word!(single_quotes_keep_dollar, lx(), "'$PWD'", "$PWD");
    word!(double_quotes_expand, lx(), "\"x$PWD\"", "x/home");
    word!(double_quote_escape_dollar, lx(), "\"\\$PWD\"", "$PWD");
    word!(double_quote_escape_quote, lx(), "\"a\\\"b\"", "a\"b");
    word!(double_quote_escape_escape, lx(), "\"a\\\\b\"", "a\\b");
    word!(double_quote_other_escape_kept, lx(), "\"a\\tb\"", "a\\tb");
    word!(escape_outside_quotes, lx(), "a\\tb", "atb");
    word!(escaped_dollar_literal, lx(), "\\$PWD", "$PWD");
    word!(trailing_escape_dropped, lx(), "hello\\", "hello");
    word!(escaped_escape, lx(), "hello\\\\", "hello\\");
    word!(backtick_escape, Lexer::new('`'), "a`$PWD\\x", "a$PWD\\x");
    word!(
        backtick_in_double_quotes,
        Lexer::new('`'),
        "\"`\"`$\"",
        "\"$"
    );
    word!(
        raw_quotes_kept,
        lx().with_raw_quotes(true),
        "'a'\"b\"",
        "'a'\"b\""
    );
    word!(
        raw_escapes_kept,
        lx().with_raw_escapes(true),
        "a\\ b\\",
        "a\\ b\\"
    );
    word!(
        raw_escapes_in_double_quotes,
        lx().with_raw_escapes(true),
        "\"\\t\\$\"",
        "\\\\t\\$"
    );
    word!(leading_bom_skipped, lx(), "\u{feff}x", "x");
    word!(spaces_preserved_in_word, lx(), "a  $SPACE", "a  a  b ");

    word_err!(
        open_single_quote,
        lx(),
        "ab'cd",
        "unexpected end of statement while looking for matching single-quote",
        2
    );
    word_err!(
        open_double_quote,
        lx(),
        "a\"b\\\"",
        "unexpected end of statement while looking for matching double-quote",
        1
    );

    words!(split_on_spaces, lx(), "hello there  ", ["hello", "there"]);
    words!(
        split_unquoted_expansion,
        lx(),
        "x${SPACE}y",
        ["xa", "b", "y"]
    );
    words!(
        quoted_expansion_not_split,
        lx(),
        "x\"$SPACE\"y",
        ["xa  b y"]
    );
    words!(leading_space_expansion, lx(), "$LEAD", ["x"]);
    words!(escaped_space_joins, lx(), "a\\ b", ["a b"]);
    words!(escaped_quote_splits_after, lx(), "a\\\" b", ["a\"", "b"]);
    words!(empty_quotes_dropped, lx(), "a \"\" b", ["a", "b"]);
    words!(
        nested_operand_keeps_prefix,
        lx(),
        "a${UNSET:-b c}d",
        ["ab", "cd"]
    );
    words!(empty_input, lx(), "", [] as [&str; 0]);

    // Quote processing skipped (BuildKit `SkipProcessQuotes`, heredoc bodies).
    fn sq() -> Lexer {
        lx().with_skip_process_quotes(true)
    }

    word!(
        skip_quotes_double_kept_and_expanded,
        sq(),
        "\"x$PWD\"",
        "\"x/home\""
    );
    word!(
        skip_quotes_single_kept_and_expanded,
        sq(),
        "'$PWD'",
        "'/home'"
    );
    word!(skip_quotes_unbalanced_is_fine, sq(), "it's \"", "it's \"");
    word!(skip_quotes_escaped_dollar, sq(), "\\$PWD", "$PWD");
    word!(skip_quotes_escaped_escape, sq(), "a\\\\b", "a\\b");
    word!(
        skip_quotes_escape_before_other_dropped,
        sq(),
        "a\\nb",
        "anb"
    );
    word!(skip_quotes_escaped_quote, sq(), "\\\"a\\'", "\"a'");
    word!(skip_quotes_escaped_newline_kept, sq(), "\\\n", "\n");
    word!(skip_quotes_trailing_escape_dropped, sq(), "a\\", "a");
    word!(
        skip_quotes_multiline_body,
        sq(),
        "a $PWD\n\"b\" '$SPACE'\n",
        "a /home\n\"b\" 'a  b '\n"
    );
    word!(
        skip_quotes_operand_quotes_kept,
        sq(),
        "${NOPE:-\"a b\"}",
        "\"a b\""
    );
    word!(
        skip_quotes_quote_does_not_protect_brace,
        sq(),
        "${NOPE:-'}'}",
        "''}"
    );
    word!(
        skip_quotes_with_backtick_escape,
        Lexer::new('`').with_skip_process_quotes(true),
        "\"\\$PWD\" `$PWD",
        "\"\\/home\" $PWD"
    );
    word!(skip_quotes_off_by_default, lx(), "\"a\"'b'", "ab");
    words!(
        skip_quotes_split_inside_quotes,
        sq(),
        "\"a b\"",
        ["\"a", "b\""]
    );

    #[test]
    fn heredoc_markers_keep_the_blanks_after_an_unquoted_marker() {
        // (input, words with heredoc markers on, words with them off)
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("cat << EOF", &["cat", "<< EOF"], &["cat", "<<", "EOF"]),
            ("<<\t\r EOF x", &["<<\t\r EOF", "x"], &["<<", "EOF", "x"]),
            ("<< -EOF", &["<< -EOF"], &["<<", "-EOF"]),
            ("<<\nEOF", &["<<", "EOF"], &["<<", "EOF"]),
            ("a < b", &["a", "<", "b"], &["a", "<", "b"]),
            ("'<< EOF'", &["<< EOF"], &["<< EOF"]),
            ("\"<< $PWD\"", &["<< /home"], &["<< /home"]),
        ];
        for &(input, on, off) in cases {
            for (heredoc_markers, want) in [(true, on), (false, off)] {
                let got = lx()
                    .with_heredoc_markers(heredoc_markers)
                    .process_words(input, &env())
                    .map(|e| e.words);
                let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
                assert_eq!(got, Ok(want), "{input:?} markers {heredoc_markers}");
            }
        }
        let word = lx()
            .with_heredoc_markers(true)
            .process_word("a <<  b", &env())
            .map(|e| e.value);
        assert_eq!(
            word.as_deref(),
            Ok("a <<  b"),
            "process_word keeps the text"
        );
    }

    // Nesting guard: MAX_DEPTH levels of `${...}` operands (the word itself is level one).
    fn nested(levels: usize) -> String {
        format!("{}x{}", "${NOPE:-".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn nesting_up_to_the_limit_expands() {
        let got = lx().process_word(&nested(MAX_DEPTH - 1), &env());
        assert_eq!(got.map(|e| e.value), Ok("x".to_string()));
    }

    #[test]
    fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
        for levels in [MAX_DEPTH, 20_000] {
            let err = lx()
                .process_word(&nested(levels), &env())
                .expect_err("too deep");
            assert_eq!(
                (err.message.as_str(), err.offset),
                ("substitutions nested too deeply", 8 * MAX_DEPTH),
                "{levels} levels"
            );
        }
    }

    #[test]
    fn skip_quotes_records_matches() {
        let got = sq()
            .process_word("\"$PWD\" '${NOPE:-x}'", &env())
            .expect("valid");
        let matched: Vec<&str> = got.matched.iter().map(String::as_str).collect();
        let unmatched: Vec<&str> = got.unmatched.iter().map(String::as_str).collect();
        assert_eq!((matched, unmatched), (vec!["PWD"], vec!["NOPE"]));
    }

    #[test]
    fn go_letter_and_digit_follow_categories() {
        assert!(is_go_letter('한'));
        assert!(is_go_letter('é'));
        assert!(!is_go_letter('Ⅻ'), "letter numbers are not letters in Go");
        assert!(
            !is_go_letter('\u{93f}'),
            "spacing marks are not letters in Go"
        );
        assert!(is_go_digit('٣'));
        assert!(!is_go_digit('²'));
    }
}
