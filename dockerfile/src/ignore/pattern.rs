//! One `.dockerignore` pattern, compiled once into a matcher.
//!
//! This follows moby/patternmatcher (`Pattern.compile` and `Pattern.match`) exactly, on Unix:
//!
//! 1. The syntax is checked as `patternmatcher.New` does, by running Go's `filepath.Match`
//!    against `.` ([`check_glob_syntax`], [`filepath_match`]): an unclosed `[` class, an
//!    unescaped `-` or `]` where a class character is expected, or a trailing `\` is an error,
//!    but, as in Go, only in the chunks (text between unbracketed `*`) examined before the
//!    pattern is known not to match `.`; later problems surface in step 3 or not at all.
//! 2. The pattern is translated ([`translate`]) into one of four strategies: an exact string, a
//!    prefix (`dir/**`), a suffix (`**/name`, `**name`), or a Go regular expression in which `*`
//!    is `[^/]*`, `?` is `[^/]`, `**` is `(.*/)?` (or `.*` at the end), the characters
//!    `.+()|{}$` are escaped and everything else, `[`, `]` and `\x` included, is copied as is.
//! 3. The Go expression is parsed the way Go's RE2 parser would read it and re-emitted in Rust
//!    `regex` syntax (see `re2.rs`), so that classes such as `[a*]` (which become `[a[^/]*]`)
//!    mean what they mean in BuildKit, not what Rust's nested classes would make of them.
//!
//! Known deviations: an expression Go's `regexp` would reject only at match time (`x*[`,
//! `[l-O]`, an invalid `\q` escape) is rejected here when the pattern is built, whether or not
//! Go would ever have evaluated it; `\p{..}` classes take Go's names (Unicode 15 scripts) but
//! Rust's Unicode tables. `[!a]` is not a negated class in BuildKit (Go's `filepath.Match` only
//! negates with `^`), and it is not one here either.
//! Matching never panics: prefix, suffix and exact strategies compare bytes, as Go does.

use regex::Regex;
use thiserror::Error;

use super::re2;

/// What is wrong with a pattern (the pattern text and its origin are added by
/// [`IgnoreError`](super::IgnoreError)).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A `\` at the end of the pattern escapes nothing.
    #[error("trailing backslash escapes nothing")]
    TrailingBackslash,
    /// A `[` character class has no closing `]`.
    #[error("character class is not closed with `]`")]
    UnclosedClass,
    /// `-` or `]` appears where a class character is expected (escape it with `\`).
    #[error("`{0}` must be escaped with `\\` at this position of a character class")]
    UnescapedInClass(char),
    /// A class range whose end is before its start, such as `[z-a]`.
    #[error("character class range `{lo}-{hi}` is out of order")]
    RangeOutOfOrder {
        /// Start of the range.
        lo: char,
        /// End of the range.
        hi: char,
    },
    /// A `\` escape that Go's regular expressions do not accept, such as `\q`.
    #[error("invalid escape sequence `{0}`")]
    InvalidEscape(String),
    /// A `[:name:]` POSIX class that does not exist.
    #[error("unknown character class `{0}`")]
    UnknownClass(String),
    /// The translated regular expression is rejected for another reason.
    #[error("invalid regular expression `{regexp}`: {reason}")]
    Regexp {
        /// The expression the pattern was translated to.
        regexp: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// How a compiled pattern is matched (moby/patternmatcher's `matchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// The path must equal the pattern.
    Exact,
    /// The path must start with the pattern minus its trailing `**`.
    Prefix,
    /// The path must end with the pattern minus its leading `**`.
    Suffix,
    /// The path must match the translated regular expression.
    Regexp,
}

impl Strategy {
    /// The name patternmatcher uses for this strategy (`exactMatch`, `prefixMatch`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Exact => "exactMatch",
            Strategy::Prefix => "prefixMatch",
            Strategy::Suffix => "suffixMatch",
            Strategy::Regexp => "regexpMatch",
        }
    }
}

/// The result of [`translate`]: a strategy and, for [`Strategy::Regexp`], the Go expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// How the pattern is matched.
    pub strategy: Strategy,
    /// The Go regular expression (`^...$`), only for [`Strategy::Regexp`].
    pub go_regexp: Option<String>,
}

/// The compiled matcher behind a [`Pattern`].
#[derive(Debug, Clone)]
enum Matcher {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Regexp { go: String, compiled: Regex },
}

/// One cleaned pattern (without its `!`), compiled once.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    depth: usize,
    matcher: Matcher,
}

impl Pattern {
    /// Check and compile an already cleaned pattern (see [`go_clean`]); `!` must be removed.
    pub fn new(cleaned: &str) -> Result<Self, PatternError> {
        check_glob_syntax(cleaned)?;
        let translation = translate(cleaned, '/');
        let bytes = cleaned.as_bytes();
        let matcher = match translation.strategy {
            Strategy::Exact => Matcher::Exact(bytes.to_vec()),
            // Go slices bytes here (`[:len-2]`, `[2:]`); a prefix pattern always ends in `**`
            // and a suffix pattern starts with `**` unless a byte order mark was skipped.
            Strategy::Prefix => Matcher::Prefix(
                bytes
                    .get(..bytes.len().saturating_sub(2))
                    .unwrap_or_default()
                    .to_vec(),
            ),
            Strategy::Suffix => Matcher::Suffix(bytes.get(2..).unwrap_or_default().to_vec()),
            Strategy::Regexp => {
                let go = translation.go_regexp.unwrap_or_default();
                let rust = re2::to_rust_syntax(&go)?;
                let compiled = Regex::new(&rust).map_err(|e| PatternError::Regexp {
                    regexp: go.clone(),
                    reason: e.to_string(),
                })?;
                Matcher::Regexp { go, compiled }
            }
        };
        Ok(Pattern {
            cleaned: cleaned.to_string(),
            depth: cleaned.split('/').count(),
            matcher,
        })
    }

    /// The cleaned pattern text.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Number of `/`-separated segments of the pattern (used by the deprecated `Matches`).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// How this pattern is matched.
    pub fn strategy(&self) -> Strategy {
        match self.matcher {
            Matcher::Exact(_) => Strategy::Exact,
            Matcher::Prefix(_) => Strategy::Prefix,
            Matcher::Suffix(_) => Strategy::Suffix,
            Matcher::Regexp { .. } => Strategy::Regexp,
        }
    }

    /// The Go regular expression this pattern was translated to, for [`Strategy::Regexp`].
    pub fn go_regexp(&self) -> Option<&str> {
        match &self.matcher {
            Matcher::Regexp { go, .. } => Some(go),
            _ => None,
        }
    }

    /// Does the pattern match exactly this path (no parent directories considered)?
    pub fn is_match(&self, path: &str) -> bool {
        let path_bytes = path.as_bytes();
        match &self.matcher {
            Matcher::Exact(p) => path_bytes == p.as_slice(),
            Matcher::Prefix(p) => path_bytes.starts_with(p),
            Matcher::Suffix(s) => {
                // `**/foo` also matches `foo` itself.
                path_bytes.ends_with(s)
                    || (s.first() == Some(&b'/') && s.get(1..) == Some(path_bytes))
            }
            Matcher::Regexp { compiled, .. } => compiled.is_match(path),
        }
    }

    /// Does the pattern match this path or any of its parent directories (`MatchesOrParentMatches`
    /// for one pattern)? `parents` are the prefixes of `go_dir(path)` ending before each `/`, plus
    /// that directory itself (none when it is `.`).
    pub fn is_match_or_parent(&self, path: &str, parents: &[&str]) -> bool {
        self.is_match(path) || parents.iter().any(|p| self.is_match(p))
    }
}

/// Go's `filepath.Clean` on Unix: collapse `//`, drop `.` elements, resolve `..` lexically,
/// drop a trailing `/`; an empty result is `.`.
pub fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir` on Unix: everything before the last `/`, cleaned (`.` when there is none).
pub fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => go_clean(&path[..=i]),
        None => ".".to_string(),
    }
}

/// The parent directories patternmatcher checks for `file`: the prefixes of `filepath.Dir(file)`
/// at each `/` plus the whole directory, or nothing when the directory is `.`.
pub fn parent_prefixes(dir: &str) -> Vec<&str> {
    if dir == "." {
        return Vec::new();
    }
    let mut out: Vec<&str> = dir.match_indices('/').map(|(i, _)| &dir[..i]).collect();
    out.push(dir);
    out
}

/// The syntax check `patternmatcher.New` applies: Go's `filepath.Match(pattern, ".")` must not
/// fail. Like Go, this only inspects the pattern up to the first chunk that cannot match `.`, so
/// `x*\` passes here (and its trailing `\` reaches the regular expression as `\$`).
pub fn check_glob_syntax(pattern: &str) -> Result<(), PatternError> {
    filepath_match(pattern, ".").map(|_| ())
}

/// Go's `path/filepath.Match` on Unix: does `name` match the shell pattern (`*` and `?` never
/// match `/`)? An error is Go's `ErrBadPattern`, reported only for the part of the pattern Go
/// looks at before it knows the answer.
pub fn filepath_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&b'/'));
        }
        let (after, ok) = match_chunk(chunk, name)?;
        // The last chunk must consume the whole name, or a star may still find a match.
        if ok && (after.is_empty() || !pattern.is_empty()) {
            name = after;
            continue;
        }
        if star {
            // Try the chunk after skipping i+1 bytes; a star cannot skip `/`.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (after, ok) = match_chunk(chunk, &name[i + 1..])?;
                if ok && (!pattern.is_empty() || after.is_empty()) {
                    name = after;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Go's `scanChunk`: leading stars (reported as `star`), then bytes up to the next `*` outside
/// `[...]`; returns `(star, chunk, rest)`.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|b| **b == b'*').count();
    let pattern = &pattern[stars..];
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    let (chunk, rest) = pattern.split_at(i.min(pattern.len()));
    (stars > 0, chunk, rest)
}

/// Go's `matchChunk`: does `chunk` (no unbracketed `*`) match the start of `s`? Returns the rest
/// of `s` and whether it matched. After a mismatch the chunk is still parsed to the end, so a
/// malformed chunk is an error even when it cannot match.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<(&'s [u8], bool), PatternError> {
    let mut failed = false;
    while let Some(&first) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            b'[' => {
                // Go leaves the rune at zero once the match has failed.
                let mut r = 0u32;
                if !failed {
                    let (c, n) = decode_rune(s);
                    r = c;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s.first() == Some(&b'/') {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if first == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(PatternError::TrailingBackslash);
                    }
                }
                if !failed {
                    if chunk.first() != s.first() {
                        failed = true;
                    }
                    s = s.get(1..).unwrap_or_default();
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { (&[], false) } else { (s, true) })
}

/// Go's `getEsc`: one (possibly escaped) class character, which must be followed by more text.
fn class_char(chunk: &[u8]) -> Result<(u32, &[u8]), PatternError> {
    let chunk = match chunk.first() {
        None => return Err(PatternError::UnclosedClass),
        Some(&b) if b == b'-' || b == b']' => {
            return Err(PatternError::UnescapedInClass(char::from(b)))
        }
        Some(&b'\\') => match chunk.get(1..) {
            Some(rest) if !rest.is_empty() => rest,
            _ => return Err(PatternError::TrailingBackslash),
        },
        Some(_) => chunk,
    };
    let (r, n) = decode_rune(chunk);
    match chunk.get(n..) {
        Some(rest) if !rest.is_empty() => Ok((r, rest)),
        _ => Err(PatternError::UnclosedClass),
    }
}

/// Go's `utf8.DecodeRune`: the first code point and its length; invalid or empty input gives
/// U+FFFD with length 1 (0 for empty input).
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let Some(&lead) = s.first() else {
        return (0xFFFD, 0);
    };
    let width = match lead {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    };
    match s.get(..width).map(std::str::from_utf8) {
        Some(Ok(text)) => (text.chars().next().map_or(0xFFFD, u32::from), width),
        _ => (0xFFFD, 1),
    }
}

/// Translate a cleaned pattern as patternmatcher's `Pattern.compile` does, for path separator
/// `separator` (`/` on Unix; `\` reproduces the Windows translation, where `\` is a separator
/// and never an escape).
pub fn translate(pattern: &str, separator: char) -> Translation {
    let esc_sep = if separator == '\\' {
        "\\\\".to_string()
    } else {
        separator.to_string()
    };
    let mut chars = pattern.chars().peekable();
    // Go's text/scanner drops a byte order mark at the very start of its input.
    if chars.peek() == Some(&'\u{FEFF}') {
        chars.next();
    }
    let mut regexp = String::from("^");
    let mut strategy = Strategy::Exact;
    let mut i = 0usize;
    while let Some(ch) = chars.next() {
        let index = i;
        i += 1;
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&separator) {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if strategy == Strategy::Exact {
                        strategy = Strategy::Prefix;
                    } else {
                        regexp.push_str(".*");
                        strategy = Strategy::Regexp;
                    }
                } else {
                    regexp.push_str(&format!("(.*{esc_sep})?"));
                    strategy = Strategy::Regexp;
                }
                if index == 0 {
                    strategy = Strategy::Suffix;
                }
            }
            '*' => {
                regexp.push_str(&format!("[^{esc_sep}]*"));
                strategy = Strategy::Regexp;
            }
            '?' => {
                regexp.push_str(&format!("[^{esc_sep}]"));
                strategy = Strategy::Regexp;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                regexp.push('\\');
                regexp.push(ch);
            }
            '\\' if separator == '\\' => regexp.push_str(&esc_sep),
            '\\' => match chars.next() {
                Some(next) => {
                    regexp.push('\\');
                    regexp.push(next);
                    strategy = Strategy::Regexp;
                }
                None => regexp.push('\\'),
            },
            '[' | ']' => {
                regexp.push(ch);
                strategy = Strategy::Regexp;
            }
            other => regexp.push(other),
        }
    }
    let go_regexp = (strategy == Strategy::Regexp).then(|| {
        regexp.push('$');
        regexp
    });
    Translation {
        strategy,
        go_regexp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! clean {
        ($($name:ident: $input:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(go_clean($input), $want, "Clean({:?})", $input);
            }
        )*};
    }

    clean! {
        clean_empty_is_dot: "" => ".";
        clean_collapses_slashes: "a//b///c" => "a/b/c";
        clean_drops_dot_elements: "./a/./b/." => "a/b";
        clean_resolves_dotdot: "a/b/../c" => "a/c";
        clean_keeps_leading_dotdot: "../../a" => "../../a";
        clean_dotdot_past_start: "a/../.." => "..";
        clean_rooted_dotdot_dropped: "/../a" => "/a";
        clean_trailing_slash_dropped: "a/b/" => "a/b";
        clean_root_stays: "/" => "/";
        clean_only_dots: "./." => ".";
        clean_bang_is_plain_text: "!/a/../b" => "!/b";
    }

    #[test]
    fn dir_is_cleaned_parent() {
        for (input, want) in [
            ("a/b/c", "a/b"),
            ("dir/dir2/file/", "dir/dir2/file"),
            ("file", "."),
            ("/a", "/"),
            ("/", "/"),
            ("a//b", "a"),
        ] {
            assert_eq!(go_dir(input), want, "Dir({input:?})");
        }
    }

    #[test]
    fn parent_prefixes_follow_split_and_join() {
        assert_eq!(parent_prefixes("a/b/c"), vec!["a", "a/b", "a/b/c"]);
        assert_eq!(parent_prefixes("/a"), vec!["", "/a"]);
        assert!(parent_prefixes(".").is_empty());
    }

    macro_rules! syntax {
        ($($name:ident: $pat:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(check_glob_syntax($pat), $want, "pattern {:?}", $pat);
            }
        )*};
    }

    syntax! {
        syntax_plain: "abc" => Ok(());
        syntax_star_in_class_is_literal: "[*]" => Ok(());
        syntax_escaped_bracket_in_class: "[\\]a]" => Ok(());
        syntax_range_order_not_checked_by_go: "[z-a]" => Ok(());
        syntax_unclosed: "[" => Err(PatternError::UnclosedClass);
        syntax_unclosed_negated: "[^" => Err(PatternError::UnclosedClass);
        syntax_unclosed_after_char: "[a" => Err(PatternError::UnclosedClass);
        syntax_empty_class: "[]a]" => Err(PatternError::UnescapedInClass(']'));
        syntax_leading_dash: "[-x]" => Err(PatternError::UnescapedInClass('-'));
        syntax_trailing_dash: "[x-]" => Err(PatternError::UnescapedInClass(']'));
        syntax_double_range: "[a-b-c]" => Err(PatternError::UnescapedInClass('-'));
        syntax_trailing_backslash: "a\\" => Err(PatternError::TrailingBackslash);
        syntax_escaped_backslash: "a\\\\" => Ok(());
        syntax_error_in_first_chunk: "*[" => Err(PatternError::UnclosedClass);
        syntax_error_after_failing_chunk_unseen: "x*[" => Ok(());
        syntax_trailing_backslash_after_failing_chunk_unseen: "x*\\" => Ok(());
        syntax_error_in_failing_chunk_still_seen: "a/b[" => Err(PatternError::UnclosedClass);
        syntax_multibyte_in_class: "[α-ζ]" => Ok(());
    }

    macro_rules! fmatch {
        ($($name:ident: $pat:expr, $text:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(filepath_match($pat, $text), $want, "Match({:?}, {:?})", $pat, $text);
            }
        )*};
    }

    // Cases from Go's path/filepath match_test.go (Unix).
    fmatch! {
        fm_literal: "abc", "abc" => Ok(true);
        fm_star: "*", "abc" => Ok(true);
        fm_star_suffix: "*c", "abc" => Ok(true);
        fm_star_empty: "a*", "a" => Ok(true);
        fm_star_no_slash: "a*", "ab/c" => Ok(false);
        fm_star_segment: "a*/b", "abc/b" => Ok(true);
        fm_star_not_across_slash: "a*/b", "a/c/b" => Ok(false);
        fm_many_stars: "a*b*c*d*e*/f", "axbxcxdxexxx/f" => Ok(true);
        fm_many_stars_miss: "a*b*c*d*e*/f", "axbxcxdxe/xxx/f" => Ok(false);
        fm_backtrack: "a*b?c*x", "abxbbxdbxebxczzx" => Ok(true);
        fm_backtrack_miss: "a*b?c*x", "abxbbxdbxebxczzy" => Ok(false);
        fm_class: "ab[b-d]", "abc" => Ok(true);
        fm_negated_class: "ab[^e-g]", "abc" => Ok(true);
        fm_escape: "a\\*b", "a*b" => Ok(true);
        fm_escape_miss: "a\\*b", "ab" => Ok(false);
        fm_unicode_question: "a?b", "a☺b" => Ok(true);
        fm_unicode_class: "a[^a]b", "a☺b" => Ok(true);
        fm_unicode_range: "[a-ζ]*", "α" => Ok(true);
        fm_question_not_slash: "a?b", "a/b" => Ok(false);
        fm_escaped_bracket_class: "[\\]a]", "]" => Ok(true);
        fm_empty_class: "[]a]", "]" => Err(PatternError::UnescapedInClass(']'));
        fm_trailing_dash: "[x-]", "x" => Err(PatternError::UnescapedInClass(']'));
        fm_lone_backslash: "\\", "a" => Err(PatternError::TrailingBackslash);
        fm_unclosed_after_mismatch: "a[", "x" => Err(PatternError::UnclosedClass);
        fm_later_chunk_unchecked: "a*[", "x" => Ok(false);
        fm_trailing_star_only: "*x", "xxx" => Ok(true);
    }

    macro_rules! strategy {
        ($($name:ident: $pat:expr => $strategy:ident, $re:expr;)*) => {$(
            #[test]
            fn $name() {
                let t = translate($pat, '/');
                assert_eq!(t.strategy, Strategy::$strategy, "pattern {:?}", $pat);
                assert_eq!(t.go_regexp.as_deref(), $re, "pattern {:?}", $pat);
            }
        )*};
    }

    strategy! {
        translate_literal_is_exact: "abc.def" => Exact, None;
        translate_trailing_doublestar_is_prefix: "dir/**" => Prefix, None;
        translate_leading_doublestar_is_suffix: "**/dir" => Suffix, None;
        translate_star: "a*/b" => Regexp, Some("^a[^/]*/b$");
        translate_doublestar_middle: "**/dir2/*" => Regexp, Some("^(.*/)?dir2/[^/]*$");
        translate_escape_makes_regexp: "a\\*b" => Regexp, Some("^a\\*b$");
        translate_star_in_class_is_not_special_to_translator: "[a*]" => Regexp, Some("^[a[^/]*]$");
        translate_bom_skipped: "\u{FEFF}*" => Regexp, Some("^[^/]*$");
    }

    macro_rules! matches {
        ($($name:ident: $pat:expr, $path:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let p = Pattern::new($pat).expect("pattern compiles");
                assert_eq!(p.is_match($path), $want, "pattern {:?} path {:?}", $pat, $path);
            }
        )*};
    }

    matches! {
        match_exact: "a/b", "a/b" => true;
        match_exact_not_prefix: "a", "a/b" => false;
        match_prefix: "a/**", "a/b/c" => true;
        match_suffix_bare_name: "**/foo", "foo" => true;
        match_suffix_is_plain_string_suffix: "**file", "dir/myfile" => true;
        match_star_stops_at_slash: "*.go", "a/b.go" => false;
        match_question: "a?c", "abc" => true;
        match_class_range: "a[b-d]e", "ace" => true;
        match_bang_class_is_literal_in_buildkit: "[!a]", "!" => true;
        match_bang_class_not_negation: "[!a]", "b" => false;
        // `[a*]` becomes `^[a[^/]*]$`: a class of `a [ ^ /`, repeated, then a literal `]`.
        match_star_inside_class_like_buildkit: "[a*]", "a[]" => true;
        match_star_inside_class_not_literal_star: "[a*]", "*" => false;
        match_escaped_dot_is_literal: "a\\.b", "a.b" => true;
        match_go_regexp_escape_passthrough: "a\\d", "a7" => true;
    }

    #[test]
    fn bad_range_is_rejected_when_built() {
        assert_eq!(
            Pattern::new("[l-O]").map(|_| ()),
            Err(PatternError::RangeOutOfOrder { lo: 'l', hi: 'O' })
        );
    }

    #[test]
    fn bom_suffix_pattern_does_not_panic() {
        let p = Pattern::new("\u{FEFF}**").expect("compiles");
        assert_eq!(p.strategy(), Strategy::Suffix);
        let _ = p.is_match("x");
    }
}
