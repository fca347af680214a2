//! Reading an ignore file, and choosing which one applies to a build.
//!
//! [`read_lines`] follows moby/patternmatcher's `ignorefile.ReadAll`: lines are split at `\n`
//! (a `\r` before it is dropped), a UTF-8 byte order mark is removed from the first line, a line
//! whose first column is `#` is a comment (an indented `#` is a pattern), every other line is
//! trimmed and skipped when empty, and a pattern is `filepath.Clean`ed with one leading `/`
//! removed, its `!` prefix kept (a lone `!` is kept too, and rejected later when compiled). The
//! 1-based line number and the text as written are kept for error messages.
//!
//! [`find_ignore_file`] follows BuildKit's dockerfile front-end: `<Dockerfile path>.dockerignore`
//! (next to the Dockerfile, named after it: `app.Dockerfile.dockerignore`) wins over
//! `<context>/.dockerignore`, even when it is empty. Deviations: BuildKit silently treats an
//! unreadable ignore file as absent and fails on lines over 64 KiB; here only a missing file is
//! absent, other read errors are reported, and lines of any length are read. Bytes that are not
//! UTF-8 are replaced by U+FFFD.

use std::io;
use std::path::{Path, PathBuf};

use super::pattern::go_clean;
use super::IgnoreError;

/// Name of the context-wide ignore file.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// One pattern line of an ignore file, as `ignorefile.ReadAll` returns it plus its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line as written (byte order mark and line ending removed, not trimmed).
    pub text: String,
    /// The normalized pattern (`!` kept, cleaned, leading `/` removed).
    pub pattern: String,
}

/// Split ignore-file text into normalized pattern lines (`ignorefile.ReadAll`).
pub fn read_lines(text: &str) -> Vec<IgnoreLine> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut number = 0usize;
    while !rest.is_empty() {
        let (raw, after) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = after;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let raw = if number == 0 {
            raw.strip_prefix('\u{FEFF}').unwrap_or(raw)
        } else {
            raw
        };
        number += 1;
        if raw.starts_with('#') {
            continue;
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        out.push(IgnoreLine {
            line: number,
            text: raw.to_string(),
            pattern: normalize(trimmed),
        });
    }
    out
}

/// Normalize one trimmed, non-empty line: split off `!`, clean, drop a leading `/`, re-add `!`.
fn normalize(trimmed: &str) -> String {
    let (invert, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut pattern = String::new();
    if invert {
        pattern.push('!');
    }
    if !body.is_empty() {
        let cleaned = go_clean(body);
        match cleaned.strip_prefix('/') {
            Some(rel) if !rel.is_empty() => pattern.push_str(rel),
            _ => pattern.push_str(&cleaned),
        }
    }
    pattern
}

/// The two candidate ignore files for a build, in the order BuildKit tries them.
pub fn ignore_file_candidates(context_dir: &Path, dockerfile_path: &Path) -> [PathBuf; 2] {
    let mut specific = dockerfile_path.as_os_str().to_os_string();
    specific.push(DOCKERIGNORE);
    [PathBuf::from(specific), context_dir.join(DOCKERIGNORE)]
}

/// Find and read the ignore file that applies: `<dockerfile_path>.dockerignore` if it exists,
/// else `<context_dir>/.dockerignore`; `None` when neither exists.
pub fn find_ignore_file(
    context_dir: &Path,
    dockerfile_path: &Path,
) -> Result<Option<(PathBuf, String)>, IgnoreError> {
    for candidate in ignore_file_candidates(context_dir, dockerfile_path) {
        match std::fs::read(&candidate) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                return Ok(Some((candidate, text)));
            }
            Err(e) if is_absent(&e) => continue,
            Err(source) => {
                return Err(IgnoreError::Read {
                    path: candidate,
                    source,
                })
            }
        }
    }
    Ok(None)
}

/// A missing file, or a path through something that is not a directory, means "no ignore file".
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! read {
        ($($name:ident: $text:expr => [$(($line:expr, $pat:expr)),* $(,)?];)*) => {$(
            #[test]
            fn $name() {
                let got: Vec<(usize, String)> =
                    read_lines($text).into_iter().map(|l| (l.line, l.pattern)).collect();
                let want: Vec<(usize, String)> = vec![$(($line, $pat.to_string())),*];
                assert_eq!(got, want, "text {:?}", $text);
            }
        )*};
    }

    read! {
        read_plain_lines: "a\nb\n" => [(1, "a"), (2, "b")];
        read_crlf: "a\r\nb\r\n" => [(1, "a"), (2, "b")];
        read_bom_first_line_only: "\u{FEFF}a\n\u{FEFF}b" => [(1, "a"), (2, "\u{FEFF}b")];
        read_comment_column_zero: "# c\na" => [(2, "a")];
        read_indented_hash_is_pattern: "  #a" => [(1, "#a")];
        read_blank_lines_counted: "\n\n  \nx" => [(4, "x")];
        read_leading_slash_removed: "/a/b/" => [(1, "a/b")];
        read_root_alone_kept: "/" => [(1, "/")];
        read_bang_spaces_and_slash: "! /inverted/abs/path" => [(1, "!inverted/abs/path")];
        read_lone_bang_kept: "!\n! " => [(1, "!"), (2, "!")];
        read_cleaned: "a/./b/../c" => [(1, "a/c")];
        read_no_trailing_newline: "last" => [(1, "last")];
    }

    #[test]
    fn original_text_is_kept() {
        let lines = read_lines("  *.log  \n");
        assert_eq!(lines[0].text, "  *.log  ");
        assert_eq!(lines[0].pattern, "*.log");
    }

    #[test]
    fn candidates_in_buildkit_order() {
        let [specific, default] =
            ignore_file_candidates(Path::new("/ctx"), Path::new("/ctx/build/app.Dockerfile"));
        assert_eq!(
            specific,
            PathBuf::from("/ctx/build/app.Dockerfile.dockerignore")
        );
        assert_eq!(default, PathBuf::from("/ctx/.dockerignore"));
    }
}
