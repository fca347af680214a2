//! Dockerfile text to [`Dockerfile`] nodes, shaped exactly like BuildKit's `parser.Node` tree.
//!
//! Follows BuildKit's `parser/parser.go`, `split_command.go` and `line_parsers.go`:
//! - Every logical line from the [`Lexer`] becomes one [`Node`]. The keyword is the first
//!   whitespace-separated word, lowercased; any keyword is accepted here (unknown ones are
//!   rejected later, by [`crate::instructions`]) and, as in BuildKit's `parseIgnore`, an unknown
//!   instruction keeps a single empty argument.
//! - `--flags` are taken off the front of the arguments for every instruction; quotes in a flag
//!   are removed and `\` escapes the next character; a bare `--` ends the flags.
//! - The rest is split per instruction: shell form (`RUN`, `CMD`, `ENTRYPOINT`, `SHELL`) is one
//!   raw string unless it parses as a JSON string array; `ADD`, `COPY` and `VOLUME` are a JSON
//!   array or whitespace-separated words; `ENV` and `LABEL` are `name value sep` triples (`sep`
//!   `=` for `k=v`, empty for the legacy `ENV k v` form); `ARG` is quote-aware words;
//!   `HEALTHCHECK` is its type word then the command; `ONBUILD` parses its trigger into
//!   `Node::next`; `FROM` and `EXPOSE` are words; `MAINTAINER`, `STOPSIGNAL`, `USER` and
//!   `WORKDIR` are the raw rest of the line.
//! - JSON follows Go's `encoding/json` decoding of the first value into `[]interface{}`: anything
//!   after the array is ignored, invalid JSON falls back to the other form, but a valid array
//!   holding a non-string (`CMD ["a", 1]`, nested arrays) is an error.
//! - RUN, COPY and ADD (also as an ONBUILD trigger, not in JSON form) whose line holds `<<` take
//!   their heredoc bodies from the following lines, in marker order, each up to its delimiter
//!   (leading tabs ignored for `<<-`).
//! - A file with no instruction is an error.
//!
//! Known deviations: BuildKit reads flag text and the HEALTHCHECK type word byte by byte as if
//! Latin-1, mangling non-ASCII characters there; here they stay intact. Lines are never longer
//! than 65535 bytes, as with Go's `bufio.Scanner`.

use thiserror::Error;

use crate::ast::{Dockerfile, Node, Warning};
use crate::heredoc::{heredocs_from_line, HeredocError};
use crate::lexer::{trim_newline, Lexer};
use crate::span::{Location, Span};

/// Why a Dockerfile could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text holds no instruction at all (empty, or only comments and blank lines).
    #[error("file with no instructions")]
    NoInstructions {
        /// The end of the file.
        location: Location,
    },
    /// A physical line is longer than BuildKit's scanner accepts.
    #[error("dockerfile line greater than max allowed size of 65535 (line is {length} bytes)")]
    LineTooLong {
        /// The overlong line.
        location: Location,
        /// Its length in bytes, newline excluded.
        length: usize,
    },
    /// A parser directive appears twice at the head of the file.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The repeated directive.
        location: Location,
        /// Its name.
        name: String,
    },
    /// `# escape=` names something other than `\` or a backtick.
    #[error("invalid escape token {value:?} does not match ` or \\")]
    InvalidEscape {
        /// The directive line.
        location: Location,
        /// The value given.
        value: String,
    },
    /// A JSON-form argument list is valid JSON but holds something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only: {text:?}")]
    NotStringArray {
        /// The instruction.
        location: Location,
        /// The instruction's arguments.
        text: String,
    },
    /// Legacy `ENV name value` / `LABEL name value` without a value.
    #[error("missing value: {keyword} must have two arguments, found {text:?}")]
    MissingValue {
        /// The instruction.
        location: Location,
        /// The instruction keyword, uppercase (`ENV`, `LABEL`).
        keyword: String,
        /// The instruction's arguments.
        text: String,
    },
    /// `ENV a=b c`: a later word of the `name=value` form has no `=`.
    #[error("syntax error - can't find = in {word:?}; must be of the form: name=value")]
    MissingEquals {
        /// The instruction.
        location: Location,
        /// The word without `=`.
        word: String,
    },
    /// A heredoc marker that cannot be parsed (e.g. `<<'EOF` with no closing quote).
    #[error("{source}")]
    Heredoc {
        /// The instruction.
        location: Location,
        /// What is wrong with the marker.
        #[source]
        source: HeredocError,
    },
    /// ONBUILD chained more than [`MAX_ONBUILD_DEPTH`] times in one instruction.
    #[error("onbuild triggers nested more than {MAX_ONBUILD_DEPTH} deep: {text:?}")]
    OnbuildTooDeep {
        /// The instruction.
        location: Location,
        /// The innermost trigger text that was not parsed.
        text: String,
    },
    /// The file ended before a heredoc's delimiter line.
    #[error("unterminated heredoc {name:?}")]
    UnterminatedHeredoc {
        /// The instruction and the body read so far.
        location: Location,
        /// The delimiter that never came.
        name: String,
    },
}

impl ParseError {
    /// Where in the Dockerfile the problem is.
    pub fn location(&self) -> Location {
        match self {
            ParseError::NoInstructions { location }
            | ParseError::LineTooLong { location, .. }
            | ParseError::DuplicateDirective { location, .. }
            | ParseError::InvalidEscape { location, .. }
            | ParseError::NotStringArray { location, .. }
            | ParseError::MissingValue { location, .. }
            | ParseError::MissingEquals { location, .. }
            | ParseError::Heredoc { location, .. }
            | ParseError::OnbuildTooDeep { location, .. }
            | ParseError::UnterminatedHeredoc { location, .. } => *location,
        }
    }
}

/// Parse Dockerfile text into nodes, as BuildKit's `parser.Parse` does.
///
/// ```
/// let df = rbuild_dockerfile::parser::parse("FROM busybox\nRUN echo hi\n")?;
/// assert_eq!(df.nodes[1].keyword, "run");
/// assert_eq!(df.nodes[1].args, ["echo hi"]);
/// Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let mut lexer = Lexer::new(text);
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    while let Some(line) = lexer.next_logical()? {
        let mut location = line.location;
        if line.has_empty_continuation {
            warnings.push(Warning {
                message: format!("empty continuation line found in: {}", line.text),
                location: Location {
                    start_line: location.end_line,
                    ..location
                },
            });
        }
        let mut node = node_from_line(&line.text, lexer.directives().escape, location)?;
        if can_contain_heredoc(&node) && line.text.contains("<<") {
            let docs = heredocs_from_line(&line.text)
                .map_err(|source| ParseError::Heredoc { location, source })?;
            for mut doc in docs {
                let mut terminated = false;
                while let Some(body) = lexer.next_physical()? {
                    location.end_line = body.number;
                    location.span.end = body.content_end();
                    let mut candidate = trim_newline(body.text);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body.text);
                }
                if !terminated {
                    return Err(ParseError::UnterminatedHeredoc {
                        location,
                        name: doc.name,
                    });
                }
                node.heredocs.push(doc);
            }
            node.location = location;
            if let Some(next) = node.next.as_deref_mut() {
                next.location = location;
            }
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        let end = text.len();
        let line = lexer.lines_read();
        return Err(ParseError::NoInstructions {
            location: Location {
                span: Span::new(end, end),
                start_line: line,
                end_line: line,
            },
        });
    }
    Ok(Dockerfile {
        directives: lexer.directives().clone(),
        nodes,
        warnings,
    })
}

/// Heredocs are read for RUN, COPY and ADD, directly or as an ONBUILD trigger, in shell form.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match node.next.as_deref() {
        Some(trigger) if node.keyword == "onbuild" => trigger,
        _ => node,
    };
    matches!(node.keyword.as_str(), "run" | "copy" | "add") && !node.json
}

/// A problem inside one line, before the caller attaches its location.
enum LineError {
    NotStringArray,
    MissingValue(&'static str),
    MissingEquals(String),
    /// The ONBUILD trigger failed; its error is already complete.
    Trigger(Box<ParseError>),
}

/// How many ONBUILD keywords may be chained in one instruction. BuildKit's parser has no limit,
/// but its instruction layer rejects `ONBUILD ONBUILD` anyway; the limit keeps recursion shallow.
pub const MAX_ONBUILD_DEPTH: usize = 16;

/// Arguments of one instruction as its line parser produced them.
#[derive(Default)]
struct Parsed {
    args: Vec<String>,
    json: bool,
    next: Option<Box<Node>>,
}

impl Parsed {
    fn words(args: Vec<String>) -> Self {
        Parsed {
            args,
            ..Parsed::default()
        }
    }
}

/// BuildKit's `newNodeFromLine`: split off keyword and flags, then dispatch on the keyword.
fn node_from_line(line: &str, escape: char, location: Location) -> Result<Node, ParseError> {
    node_at_depth(line, escape, location, 0)
}

fn node_at_depth(
    line: &str,
    escape: char,
    location: Location,
    depth: usize,
) -> Result<Node, ParseError> {
    let (keyword, flags, rest) = split_command(line);
    let parsed = dispatch(&keyword, rest, escape, location, depth).map_err(|e| match e {
        LineError::NotStringArray => ParseError::NotStringArray {
            location,
            text: rest.to_string(),
        },
        LineError::MissingValue(keyword) => ParseError::MissingValue {
            location,
            keyword: keyword.to_string(),
            text: rest.to_string(),
        },
        LineError::MissingEquals(word) => ParseError::MissingEquals { location, word },
        LineError::Trigger(nested) => *nested,
    })?;
    Ok(Node {
        keyword,
        flags,
        args: parsed.args,
        json: parsed.json,
        next: parsed.next,
        heredocs: Vec::new(),
        location,
        original: line.to_string(),
    })
}

/// BuildKit's dispatch table: the line parser for each keyword.
fn dispatch(
    keyword: &str,
    rest: &str,
    escape: char,
    location: Location,
    depth: usize,
) -> Result<Parsed, LineError> {
    let parsed = match keyword {
        "add" | "copy" | "volume" => maybe_json_to_list(rest)?,
        "arg" => Parsed::words(parse_words(rest, escape)),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(rest)?,
        "env" => name_val(rest, "ENV", escape)?,
        "label" => name_val(rest, "LABEL", escape)?,
        "expose" | "from" => Parsed::words(whitespace_delimited(rest)),
        "healthcheck" => health_config(rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => Parsed::words(string_arg(rest)),
        "onbuild" if rest.is_empty() => Parsed::default(),
        "onbuild" if depth >= MAX_ONBUILD_DEPTH => {
            return Err(LineError::Trigger(Box::new(ParseError::OnbuildTooDeep {
                location,
                text: rest.to_string(),
            })));
        }
        "onbuild" => {
            let trigger = node_at_depth(rest, escape, location, depth + 1)
                .map_err(|e| LineError::Trigger(Box::new(e)))?;
            Parsed {
                next: Some(Box::new(trigger)),
                ..Parsed::default()
            }
        }
        // BuildKit's parseIgnore: an unknown instruction keeps one empty argument node.
        _ => Parsed::words(vec![String::new()]),
    };
    Ok(parsed)
}

/// Go's `strings.ToLower`: per-character simple lowercase mapping.
pub(crate) fn go_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            // Full lowercase of U+0130 is two characters; Go maps it to a plain `i`.
            '\u{130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]`.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Go's `regexp.Split(s, n)` for `[\t\v\f\r ]+`; `n < 0` means no limit.
fn go_split(s: &str, n: isize) -> Vec<&str> {
    if s.is_empty() {
        return vec![""];
    }
    let mut out = Vec::new();
    let mut beg = 0;
    let mut end = 0;
    let mut rest_start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if i < rest_start || !is_token_space(c) {
            continue;
        }
        let mut m_end = i + c.len_utf8();
        while let Some(&(j, d)) = iter.peek() {
            if !is_token_space(d) {
                break;
            }
            m_end = j + d.len_utf8();
            iter.next();
        }
        if n > 0 && out.len() as isize == n - 1 {
            break;
        }
        end = i;
        if m_end != 0 {
            out.push(&s[beg..end]);
        }
        beg = m_end;
        rest_start = m_end;
    }
    if end != s.len() {
        out.push(&s[beg..]);
    }
    out
}

/// BuildKit's `splitCommand`: (lowercase keyword, flags, trimmed rest).
fn split_command(line: &str) -> (String, Vec<String>, &str) {
    let parts = go_split(line.trim(), 2);
    let keyword = go_lower(parts[0]);
    match parts.get(1) {
        Some(args) => {
            let (rest, flags) = extract_builder_flags(args);
            (keyword, flags, rest.trim())
        }
        None => (keyword, Vec::new(), ""),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes removed, `\` escapes), then the rest.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let mut ch = chars.get(pos).map_or('\0', |&(_, c)| c);
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == n || chars[pos + 1].1 != '-' {
                return (&line[chars[pos].0..], words);
            }
            phase = Phase::Word;
        }
        if pos == n {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[chars[pos].0..], words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == '\\' {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos].1;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == '\\' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = chars[pos].1;
        }
        word.push(ch);
        pos += 1;
    }
    ("", words)
}

/// BuildKit's `parseWords`: split on unquoted whitespace, keeping quotes and escapes in the words.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let mut ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if pos == n {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// BuildKit's `parseNameVal` (ENV, LABEL): flat `name value sep` triples.
fn name_val(rest: &str, keyword: &'static str, escape: char) -> Result<Parsed, LineError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Parsed::default());
    };
    if !first.contains('=') {
        let parts = go_split(rest, 2);
        if parts.len() < 2 {
            return Err(LineError::MissingValue(keyword));
        }
        return Ok(Parsed::words(vec![
            parts[0].to_string(),
            parts[1].to_string(),
            String::new(),
        ]));
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(LineError::MissingEquals(word));
        };
        args.extend([name.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Parsed::words(args))
}

/// BuildKit's `parseStringsWhitespaceDelimited`.
fn whitespace_delimited(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    go_split(rest, -1).into_iter().map(str::to_string).collect()
}

/// BuildKit's `parseString`: the whole rest as one argument.
fn string_arg(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    }
}

/// BuildKit's `parseMaybeJSON`: a JSON string array, or the raw rest as one argument.
fn maybe_json(rest: &str) -> Result<Parsed, LineError> {
    if rest.is_empty() {
        return Ok(Parsed::default());
    }
    match parse_json(rest) {
        Ok(args) => Ok(Parsed {
            args,
            json: true,
            next: None,
        }),
        Err(JsonError::NotStringArray) => Err(LineError::NotStringArray),
        Err(JsonError::Invalid) => Ok(Parsed::words(vec![rest.to_string()])),
    }
}

/// BuildKit's `parseMaybeJSONToList`: a JSON string array, or whitespace-separated words.
fn maybe_json_to_list(rest: &str) -> Result<Parsed, LineError> {
    match parse_json(rest) {
        Ok(args) => Ok(Parsed {
            args,
            json: true,
            next: None,
        }),
        Err(JsonError::NotStringArray) => Err(LineError::NotStringArray),
        Err(JsonError::Invalid) => Ok(Parsed::words(whitespace_delimited(rest))),
    }
}

/// BuildKit's `parseHealthConfig`: the type word (`CMD`, `NONE`, …), then the command.
fn health_config(rest: &str) -> Result<Parsed, LineError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Parsed::default());
    }
    let after = rest[sep..].trim_start_matches(char::is_whitespace);
    let command = maybe_json(after)?;
    let mut args = vec![rest[..sep].to_string()];
    args.extend(command.args);
    Ok(Parsed {
        args,
        json: command.json,
        next: None,
    })
}

/// Why text is not usable as a JSON string array.
#[derive(Debug, PartialEq, Eq)]
enum JsonError {
    /// Not JSON, or not an array, or a number out of range: the other form applies.
    Invalid,
    /// A valid array with a non-string element: an error.
    NotStringArray,
}

/// Go's encoding/json nesting limit.
const MAX_JSON_DEPTH: usize = 10_000;

/// BuildKit's `parseJSON`: decode the first JSON value of `rest` (after leading whitespace) as an
/// array of strings, with Go's `encoding/json` rules; whatever follows the array is ignored.
fn parse_json(rest: &str) -> Result<Vec<String>, JsonError> {
    let s = rest.trim_start_matches(char::is_whitespace);
    if !s.starts_with('[') {
        return Err(JsonError::Invalid);
    }
    JsonScanner {
        b: s.as_bytes(),
        i: 0,
    }
    .top_level_strings()
}

#[derive(Clone, Copy)]
enum JsonState {
    ValueOrClose,
    Value,
    KeyOrClose,
    Key,
    Colon,
    CommaOrClose,
}

struct JsonScanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonScanner<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Walk one complete JSON value (an array), iteratively; collect the top-level elements.
    fn top_level_strings(mut self) -> Result<Vec<String>, JsonError> {
        let mut stack: Vec<u8> = Vec::new();
        let mut top: Vec<Option<String>> = Vec::new();
        let mut overflow = false;
        let mut state = JsonState::Value;
        loop {
            self.skip_ws();
            let c = *self.b.get(self.i).ok_or(JsonError::Invalid)?;
            let mut finished_value = false;
            match state {
                JsonState::ValueOrClose if c == b']' => {
                    self.i += 1;
                    stack.pop();
                    finished_value = true;
                }
                JsonState::KeyOrClose if c == b'}' => {
                    self.i += 1;
                    stack.pop();
                    finished_value = true;
                }
                JsonState::ValueOrClose | JsonState::Value => {
                    let at_top = stack.len() == 1;
                    match c {
                        b'[' | b'{' => {
                            if at_top {
                                top.push(None);
                            }
                            stack.push(c);
                            if stack.len() > MAX_JSON_DEPTH {
                                return Err(JsonError::Invalid);
                            }
                            self.i += 1;
                            state = if c == b'[' {
                                JsonState::ValueOrClose
                            } else {
                                JsonState::KeyOrClose
                            };
                        }
                        b'"' => {
                            let s = self.string()?;
                            if at_top {
                                top.push(Some(s));
                            }
                            finished_value = true;
                        }
                        b'-' | b'0'..=b'9' => {
                            overflow |= self.number()?;
                            if at_top {
                                top.push(None);
                            }
                            finished_value = true;
                        }
                        b't' | b'f' | b'n' => {
                            let lit: &[u8] = match c {
                                b't' => b"true",
                                b'f' => b"false",
                                _ => b"null",
                            };
                            if !self.b[self.i..].starts_with(lit) {
                                return Err(JsonError::Invalid);
                            }
                            self.i += lit.len();
                            if at_top {
                                top.push(None);
                            }
                            finished_value = true;
                        }
                        _ => return Err(JsonError::Invalid),
                    }
                }
                JsonState::KeyOrClose | JsonState::Key => {
                    if c != b'"' {
                        return Err(JsonError::Invalid);
                    }
                    self.string()?;
                    state = JsonState::Colon;
                }
                JsonState::Colon => {
                    if c != b':' {
                        return Err(JsonError::Invalid);
                    }
                    self.i += 1;
                    state = JsonState::Value;
                }
                JsonState::CommaOrClose => {
                    let open = *stack.last().ok_or(JsonError::Invalid)?;
                    self.i += 1;
                    match (c, open) {
                        (b',', b'[') => state = JsonState::Value,
                        (b',', _) => state = JsonState::Key,
                        (b']', b'[') | (b'}', b'{') => {
                            stack.pop();
                            finished_value = true;
                        }
                        _ => return Err(JsonError::Invalid),
                    }
                }
            }
            if finished_value {
                if stack.is_empty() {
                    break;
                }
                state = JsonState::CommaOrClose;
            }
        }
        // Go decodes the whole value before looking at element types; an out-of-range number is
        // a decoding error (fallback), a non-string a type error.
        if overflow {
            return Err(JsonError::Invalid);
        }
        top.into_iter()
            .map(|e| e.ok_or(JsonError::NotStringArray))
            .collect()
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.b.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|d| d.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    }

    /// A string at `self.i` (on the opening quote), unescaped the way Go does.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.b.get(self.i).ok_or(JsonError::Invalid)?;
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                0x00..=0x1f => return Err(JsonError::Invalid),
                b'\\' => {
                    let e = *self.b.get(self.i + 1).ok_or(JsonError::Invalid)?;
                    self.i += 2;
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return Err(JsonError::Invalid),
                    };
                    if let Some(byte) = simple {
                        out.push(byte);
                        continue;
                    }
                    let unit = self.hex4(self.i).ok_or(JsonError::Invalid)?;
                    self.i += 4;
                    let mut ch = char::from_u32(unit);
                    if (0xd800..0xe000).contains(&unit) {
                        ch = None;
                        // A valid surrogate pair is consumed whole; anything else is U+FFFD.
                        if unit < 0xdc00 && self.b.get(self.i..self.i + 2) == Some(b"\\u") {
                            if let Some(low) = self
                                .hex4(self.i + 2)
                                .filter(|l| (0xdc00..0xe000).contains(l))
                            {
                                self.i += 6;
                                ch = char::from_u32(
                                    0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00),
                                );
                            }
                        }
                    }
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(
                        ch.unwrap_or('\u{fffd}').encode_utf8(&mut buf).as_bytes(),
                    );
                }
                _ => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        // Only whole UTF-8 sequences of valid input and encoded chars were copied.
        String::from_utf8(out).map_err(|_| JsonError::Invalid)
    }

    /// A number at `self.i`; returns true when it overflows a float64, as Go reports.
    fn number(&mut self) -> Result<bool, JsonError> {
        let start = self.i;
        let digits = |s: &mut Self| {
            let from = s.i;
            while matches!(s.b.get(s.i), Some(b'0'..=b'9')) {
                s.i += 1;
            }
            s.i - from
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(JsonError::Invalid),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(JsonError::Invalid);
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(JsonError::Invalid);
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| JsonError::Invalid)?;
        Ok(text.parse::<f64>().map_or(true, |v| v.is_infinite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(line: &str) -> Node {
        node_from_line(line, '\\', Location::default()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// (line, keyword, flags, args, json)
    type ShapeCase<'a> = (&'a str, &'a str, &'a [&'a str], &'a [&'a str], bool);

    /// (source, error predicate)
    type ErrorCase<'a> = (&'a str, fn(&ParseError) -> bool);

    #[test]
    fn node_shapes() {
        let cases: &[ShapeCase] = &[
            ("RUN echo  hi", "run", &[], &["echo  hi"], false),
            ("RUN [\"a\", \"b\"] trailing", "run", &[], &["a", "b"], true),
            ("CMD []", "cmd", &[], &[], true),
            ("CMD ['a']", "cmd", &[], &["['a']"], false),
            (
                "COPY --from=x --chown=\"a b\" a b",
                "copy",
                &["--from=x", "--chown=a b"],
                &["a", "b"],
                false,
            ),
            ("COPY -- --x y", "copy", &[], &["--x", "y"], false),
            ("ENV a b c", "env", &[], &["a", "b c", ""], false),
            (
                "ENV a=1 b=\"2 3\"",
                "env",
                &[],
                &["a", "1", "=", "b", "\"2 3\"", "="],
                false,
            ),
            ("ARG a=\"1 2\" b", "arg", &[], &["a=\"1 2\"", "b"], false),
            ("HEALTHCHECK NONE", "healthcheck", &[], &["NONE"], false),
            (
                "HEALTHCHECK CMD [\"x\"]",
                "healthcheck",
                &[],
                &["CMD", "x"],
                true,
            ),
            ("FROM a AS b", "from", &[], &["a", "AS", "b"], false),
            ("USER  a b ", "user", &[], &["a b"], false),
            (
                "MAINTAINER me <me@x>",
                "maintainer",
                &[],
                &["me <me@x>"],
                false,
            ),
            ("FOO bar", "foo", &[], &[""], false),
            ("ÉTÉ x", "été", &[], &[""], false),
            ("ENV", "env", &[], &[], false),
            (
                "CMD [\"\\ud83d\\ude00\", \"\\ud800x\"]",
                "cmd",
                &[],
                &["😀", "\u{fffd}x"],
                true,
            ),
            ("CMD [1e999]", "cmd", &[], &["[1e999]"], false),
            ("VOLUME [\"/a\"", "volume", &[], &["[\"/a\""], false),
        ];
        for &(line, keyword, flags, args, json) in cases {
            let n = node(line);
            assert_eq!(
                (
                    n.keyword.as_str(),
                    n.flags.as_slice(),
                    n.args.as_slice(),
                    n.json
                ),
                (
                    keyword,
                    flags
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .as_slice(),
                    args.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .as_slice(),
                    json
                ),
                "{line:?}"
            );
        }
    }

    #[test]
    fn line_errors() {
        let bad = [
            "ENV PATH",
            "LABEL x",
            "ENV a=b c",
            "CMD [ \"echo\", [ \"x\" ] ]",
            "COPY [1, \"a\"]",
            "ONBUILD ENV x",
        ];
        for line in bad {
            assert!(
                node_from_line(line, '\\', Location::default()).is_err(),
                "{line:?}"
            );
        }
    }

    #[test]
    fn deep_onbuild_chains_are_an_error_not_a_crash() {
        let ok = format!("{}RUN x", "ONBUILD ".repeat(MAX_ONBUILD_DEPTH));
        assert!(node_from_line(&ok, '\\', Location::default()).is_ok());
        let deep = format!("{}RUN x", "ONBUILD ".repeat(20_000));
        let err = node_from_line(&deep, '\\', Location::default()).expect_err("too deep");
        assert!(matches!(err, ParseError::OnbuildTooDeep { .. }), "{err:?}");
        let file = format!("FROM a\n{}", "ONBUILD \\\n".repeat(5_000) + "RUN x\n");
        assert!(matches!(
            parse(&file),
            Err(ParseError::OnbuildTooDeep { .. })
        ));
    }

    #[test]
    fn onbuild_nests_its_trigger() {
        let n = node("ONBUILD RUN [\"echo\", \"x\"]");
        let trigger = n.next.expect("a trigger");
        assert_eq!(
            (
                trigger.keyword.as_str(),
                trigger.args.as_slice(),
                trigger.json
            ),
            ("run", &["echo".to_string(), "x".to_string()][..], true)
        );
    }

    #[test]
    fn go_split_matches_regexp_split() {
        assert_eq!(go_split("a  b\tc", -1), ["a", "b", "c"]);
        assert_eq!(go_split("a  b\tc", 2), ["a", "b\tc"]);
        assert_eq!(go_split(" a ", -1), ["", "a", ""]);
        assert_eq!(go_split("", -1), [""]);
        assert_eq!(go_split("a\u{a0}b", -1), ["a\u{a0}b"]);
    }

    #[test]
    fn heredoc_bodies_are_taken_from_following_lines() {
        let df = parse("FROM a\nCOPY <<X <<-Y /d\nx\nX\n\ty\n\tY\nRUN b\n").expect("parses");
        let copy = &df.nodes[1];
        let docs: Vec<_> = copy
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.chomp))
            .collect();
        assert_eq!(docs, [("X", "x\n", false), ("Y", "\ty\n", true)]);
        assert_eq!((copy.location.start_line, copy.location.end_line), (2, 6));
        assert_eq!(df.nodes[2].keyword, "run");
    }

    #[test]
    fn file_level_errors() {
        let cases: &[ErrorCase] = &[
            ("", |e| matches!(e, ParseError::NoInstructions { .. })),
            ("# c\n\n", |e| {
                matches!(e, ParseError::NoInstructions { .. })
            }),
            ("RUN <<EOF\nbody\n", |e| {
                matches!(e, ParseError::UnterminatedHeredoc { .. })
            }),
            ("# escape=x\nFROM a", |e| {
                matches!(e, ParseError::InvalidEscape { .. })
            }),
            ("# syntax=a\n# syntax=b\nFROM a", |e| {
                matches!(e, ParseError::DuplicateDirective { .. })
            }),
        ];
        for (src, check) in cases {
            let err = parse(src).expect_err(src);
            assert!(check(&err), "{src:?}: {err:?}");
        }
    }

    #[test]
    fn a_line_the_lexer_rejects_has_no_heredocs() {
        // BuildKit ignores the line lexer's error: the unclosed quote means "no heredoc".
        let df = parse("RUN <<'EOF\nEOF\n").expect("parses");
        assert_eq!(df.nodes.len(), 2);
        assert!(df.nodes[0].heredocs.is_empty());
    }

    #[test]
    fn empty_continuation_warns() {
        let df = parse("FROM a\nRUN a \\\n\n b\n").expect("parses");
        assert_eq!(df.warnings.len(), 1);
        assert_eq!(
            df.warnings[0].message,
            "empty continuation line found in: RUN a  b"
        );
        assert_eq!(df.warnings[0].location.start_line, 4);
    }
}
