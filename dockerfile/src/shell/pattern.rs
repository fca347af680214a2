//! Shell wildcard patterns for the `${V#p}`, `${V%p}` and `${V/p/r}` operators.
//!
//! Follows BuildKit's `convertShellPatternToRegex`, `trimPrefix`, `trimSuffix` and `reversePattern`
//! (frontend/dockerfile/shell/lex.go): `*` is any string (shortest or longest), `?` one character,
//! `\*`, `\?`, `\\` are literals, and a `\` before `}` or `/` is dropped (it only kept the operator's
//! delimiter from ending the pattern). Every other character is literal, including `[` and `]`:
//! BuildKit does not implement bracket expressions, so neither do we. Any other escape is an error.
//!
//! The shortest/longest *suffix* is found as BuildKit does: reverse both the value and the pattern
//! (keeping each `\x` pair in order) and trim a prefix. Replacement for `${V//p/r}` follows Go's
//! `Regexp.ReplaceAllString`, including its `$0`/`${0}` template expansion and its rules for empty
//! matches; `${V/p/r}` splices `r` in literally.

use regex::{Match, Regex};

use super::lex::{is_go_digit, is_go_letter};

/// Compile `pattern` into a regex; `greedy` picks `.*` over `.*?` for `*`, `anchored` adds `^`.
/// The error is the bare reason (`invalid escape '\x'`), as BuildKit's before it adds context.
pub(crate) fn to_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    // Go's text/scanner skips a byte order mark at the very start of its input.
    let body = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
    let mut out = String::with_capacity(body.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = body.chars().peekable();
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(chars.peek(), Some('}') | Some('/')) {
                    continue;
                }
                match chars.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(escaped);
                    }
                    // Go formats the scanner's EOF with %c, which prints U+FFFD.
                    other => {
                        return Err(format!(
                            "invalid escape '\\{}'",
                            other.unwrap_or('\u{fffd}')
                        ))
                    }
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            _ => out.push(tok),
        }
    }
    Regex::new(&out).map_err(|err| err.to_string())
}

/// `${V#p}` / `${V##p}`: remove the shortest (or, when `greedy`, longest) prefix matching `pattern`.
pub(crate) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = to_regex(pattern, greedy, true)
        .map_err(|err| format!("invalid pattern ({pattern}) in substitution: {err}"))?;
    Ok(match re.find(value) {
        Some(found) => value[found.end()..].to_string(),
        None => value.to_string(),
    })
}

/// `${V%p}` / `${V%%p}`: remove the shortest (or longest) suffix matching `pattern`.
pub(crate) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    // A regex cannot find the shortest rightmost match, so search the reversed value for the
    // reversed pattern from the left. Errors name the reversed pattern, as BuildKit's do.
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reverse_string(value), greedy)?;
    Ok(reverse_string(&trimmed))
}

/// Reverse a pattern character by character but keep each escape before the character it escapes:
/// `a\*c` becomes `c\*a`.
pub(crate) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces: Vec<String> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            pieces.push([chars[i], chars[i + 1]].iter().collect());
            i += 2;
        } else {
            pieces.push(chars[i].to_string());
            i += 1;
        }
    }
    pieces.iter().rev().map(String::as_str).collect()
}

fn reverse_string(s: &str) -> String {
    s.chars().rev().collect()
}

/// `${V//p/r}`: Go's `Regexp.ReplaceAllString(value, replacement)`, step for step.
pub(crate) fn replace_all(re: &Regex, src: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut last_match_end = 0;
    let mut search_pos = 0;
    while search_pos <= src.len() {
        let Some(found) = re.find_at(src, search_pos) else {
            break;
        };
        out.push_str(&src[last_match_end..found.start()]);
        // No replacement for an empty match right after the previous match; otherwise patterns
        // that match both empty and non-empty strings would be replaced twice.
        if found.end() > last_match_end || found.start() == 0 {
            expand_template(&mut out, replacement, &found);
        }
        last_match_end = found.end();
        // Always advance by at least one character.
        let width = src[search_pos..].chars().next().map_or(0, char::len_utf8);
        if search_pos + width > found.end() {
            search_pos += width;
        } else if search_pos + 1 > found.end() {
            search_pos += 1;
        } else {
            search_pos = found.end();
        }
    }
    out.push_str(&src[last_match_end..]);
    out
}

/// `${V/p/r}`: replace the first match of `re` in `src` by `replacement`, taken literally.
pub(crate) fn replace_first(re: &Regex, src: &str, replacement: &str) -> String {
    match re.find(src) {
        Some(found) => format!(
            "{}{}{}",
            &src[..found.start()],
            replacement,
            &src[found.end()..]
        ),
        None => src.to_string(),
    }
}

/// Go's `Regexp.expand` for a regex without capture groups: `$$` is `$`, `$0`/`${0}` the whole
/// match, any other well-formed `$name`/`${name}` nothing, and a malformed `$` stays literal.
fn expand_template(out: &mut String, template: &str, found: &Match<'_>) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(found.as_str());
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Go's `extract`: the name after a `$` (letters, digits, `_`; optionally in braces) and the rest.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(is_go_letter(c) || is_go_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if braced {
        let after = body[end..].strip_prefix('}')?;
        Some((name, after))
    } else {
        Some((name, &body[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! regex_of {
        ($name:ident, $pattern:expr, $want:expr) => {
            #[test]
            fn $name() {
                let re = to_regex($pattern, true, true).expect("valid pattern");
                assert_eq!(re.as_str(), $want);
            }
        };
    }

    regex_of!(star_is_any_string, "*", "^.*");
    regex_of!(question_is_one_char, "?", "^.");
    regex_of!(escaped_star_is_literal, "\\*", "^\\*");
    regex_of!(
        regex_metachars_are_literal,
        "(()[]{\\}^$.\\*\\?|\\\\",
        "^\\(\\(\\)\\[\\]\\{\\}\\^\\$\\.\\*\\?\\|\\\\"
    );
    regex_of!(escaped_slash_drops_escape, "\\/x", "^/x");
    regex_of!(leading_bom_is_skipped, "\u{feff}a", "^a");

    macro_rules! bad_pattern {
        ($name:ident, $pattern:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(to_regex($pattern, true, true).err().as_deref(), Some($want));
            }
        };
    }

    bad_pattern!(
        trailing_escape_is_invalid,
        "\\",
        "invalid escape '\\\u{fffd}'"
    );
    bad_pattern!(escaped_letter_is_invalid, "\\x", "invalid escape '\\x'");
    bad_pattern!(
        odd_escapes_are_invalid,
        "\\\\\\",
        "invalid escape '\\\u{fffd}'"
    );

    macro_rules! reversed {
        ($name:ident, $pattern:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!(reverse_pattern($pattern), $want);
            }
        };
    }

    reversed!(escape_stays_before_its_char, "a\\*c", "c\\*a");
    reversed!(escaped_backslash_pairs, "\\\\\\ab", "b\\a\\\\");
    reversed!(trailing_backslash_is_plain, "ab\\", "\\ba");
    reversed!(multibyte_chars, "👽\\🚀🖖", "🖖\\🚀👽");
    reversed!(double_backslash, "\\\\b", "b\\\\");

    macro_rules! trim {
        ($name:ident, $f:ident, $pattern:expr, $value:expr, $greedy:expr, $want:expr) => {
            #[test]
            fn $name() {
                assert_eq!($f($pattern, $value, $greedy).as_deref(), Ok($want));
            }
        };
    }

    trim!(prefix_shortest, trim_prefix, "*x", "xxyy", false, "xyy");
    trim!(prefix_longest, trim_prefix, "*x", "xxyy", true, "yy");
    trim!(
        prefix_no_match_keeps_value,
        trim_prefix,
        "z",
        "xxyy",
        false,
        "xxyy"
    );
    trim!(prefix_empty_pattern, trim_prefix, "", "xxyy", false, "xxyy");
    trim!(suffix_shortest, trim_suffix, "y*", "xxyy", false, "xxy");
    trim!(suffix_longest, trim_suffix, "y*", "xxyy", true, "xx");
    trim!(
        suffix_escaped_stars,
        trim_suffix,
        "\\**\\*",
        "a***yy*",
        true,
        "a"
    );
    trim!(suffix_multibyte, trim_suffix, "?", "ab한", false, "ab");

    macro_rules! replaced {
        ($name:ident, $all:expr, $pattern:expr, $value:expr, $repl:expr, $want:expr) => {
            #[test]
            fn $name() {
                let re = to_regex($pattern, true, false).expect("valid pattern");
                let got = if $all {
                    replace_all(&re, $value, $repl)
                } else {
                    replace_first(&re, $value, $repl)
                };
                assert_eq!(got, $want);
            }
        };
    }

    replaced!(
        first_only,
        false,
        "/tmp",
        "/tmp/tmp/bar.txt",
        "",
        "/tmp/bar.txt"
    );
    replaced!(all, true, "/tmp", "/tmp/tmp/bar.txt", "", "/bar.txt");
    replaced!(all_empty_pattern_keeps_value, true, "", "xxyy", "", "xxyy");
    replaced!(
        all_empty_pattern_inserts_between,
        true,
        "",
        "ab",
        "-",
        "-a-b-"
    );
    replaced!(
        first_empty_pattern_prepends,
        false,
        "",
        "xxyy",
        "ww",
        "wwxxyy"
    );
    replaced!(all_star_replaces_once, true, "*", "abc", "-", "-");
    replaced!(all_template_whole_match, true, "b", "abc", "[$0]", "a[b]c");
    replaced!(all_template_braced, true, "b", "abc", "${0}x", "abxc");
    replaced!(all_template_double_dollar, true, "b", "abc", "$$", "a$c");
    replaced!(all_template_unknown_name, true, "b", "abc", "$x.", "a.c");
    replaced!(
        all_template_malformed_stays,
        true,
        "b",
        "abc",
        "$.${x",
        "a$.${xc"
    );
    replaced!(first_is_literal, false, "b", "abc", "$0", "a$0c");
}
