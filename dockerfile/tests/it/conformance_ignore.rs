//! `.dockerignore` conformance: every row of BuildKit's `patternmatcher/` vectors
//! (`matches.tsv`, `multi_matches.tsv`, `filepath_match.tsv`, `compile.tsv`, `ignorefile/readall.*`).
//! Rows marked `windows` would be skipped; every other row must pass.

use std::path::{Path, PathBuf};

use rbuild_dockerfile::ignore::{
    go_clean, go_dir, read_lines, translate, IgnoreRules, ParentMatch,
};

use crate::support::{buildkit_vectors, Tally};

fn vectors_dir() -> PathBuf {
    buildkit_vectors().join("patternmatcher")
}

/// The data rows of a TSV file (header dropped), each split on tabs, with the line number.
fn tsv_rows(path: &Path, columns: usize) -> Vec<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read vectors file {}: {e}", path.display()));
    let rows: Vec<(usize, Vec<String>)> = text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            (
                i + 1,
                line.split('\t').map(str::to_string).collect::<Vec<_>>(),
            )
        })
        .collect();
    for (line, fields) in &rows {
        assert_eq!(
            fields.len(),
            columns,
            "{}:{line}: expected {columns} tab-separated fields",
            path.display()
        );
    }
    rows
}

/// `all` and `unix` rows apply here; anything else (Windows-only) is skipped.
fn applies(platform: &str) -> bool {
    matches!(platform, "all" | "unix")
}

fn expect_bool(label: &str, got: bool, want: &str) -> Result<(), String> {
    match want {
        "true" | "false" if got == (want == "true") => Ok(()),
        "true" | "false" => Err(format!("{label}: got {got}, want {want}")),
        other => Err(format!("{label}: got {got}, want {other}")),
    }
}

/// Decide `path` by walking from the root as BuildKit's context walk does
/// (`MatchesUsingParentResults` with each parent's results).
fn walk_decision(rules: &IgnoreRules, path: &str) -> bool {
    let parent = go_dir(path);
    let mut state = ParentMatch::default();
    if parent != "." {
        let parts: Vec<&str> = parent.split('/').collect();
        for i in 0..parts.len() {
            let (_, next) = rules.matches_in_walk(&parts[..=i].join("/"), &state);
            state = next;
        }
    }
    rules.matches_in_walk(path, &state).0
}

#[test]
fn conformance_ignore_matches() {
    let mut or_parent = Tally::new("patternmatcher/matches.tsv (MatchesOrParentMatches)");
    let mut walk = Tally::new("patternmatcher/matches.tsv (MatchesUsingParentResults)");
    for (line, f) in tsv_rows(&vectors_dir().join("matches.tsv"), 4) {
        let (pattern, path, want, platform) = (&f[0], &f[1], &f[2], &f[3]);
        if !applies(platform) {
            or_parent.skip();
            walk.skip();
            continue;
        }
        let name = format!("line {line} pattern {pattern:?} path {path:?}");
        match IgnoreRules::new(&[pattern]) {
            Err(e) => {
                or_parent.check(&name, Err(format!("pattern rejected: {e}")));
                walk.check(&name, Err(format!("pattern rejected: {e}")));
            }
            Ok(rules) => {
                let got = rules.is_excluded(path).map_err(|e| e.to_string());
                or_parent.check(&name, got.and_then(|g| expect_bool("is_excluded", g, want)));
                walk.check(
                    &name,
                    expect_bool("matches_in_walk", walk_decision(&rules, path), want),
                );
            }
        }
    }
    or_parent.finish();
    walk.finish();
}

#[test]
fn conformance_ignore_multi_matches() {
    let mut tally = Tally::new("patternmatcher/multi_matches.tsv");
    for (line, f) in tsv_rows(&vectors_dir().join("multi_matches.tsv"), 4) {
        let (json, path, want, api) = (&f[0], &f[1], &f[2], &f[3]);
        let name = format!("line {line} patterns {json} path {path:?} ({api})");
        let patterns: Vec<String> = match serde_json::from_str(json) {
            Ok(p) => p,
            Err(e) => {
                tally.check(&name, Err(format!("bad patterns_json: {e}")));
                continue;
            }
        };
        let result = match (IgnoreRules::new(&patterns), api.as_str()) {
            (Err(_), _) if want == "error" => Ok(()),
            (Err(e), _) => Err(format!("unexpected error: {e}")),
            (Ok(_), _) if want == "error" => Err("accepted, want an error".to_string()),
            (Ok(rules), "Matches") => {
                expect_bool("matches_deprecated", rules.matches_deprecated(path), want)
            }
            (Ok(rules), "MatchesOrParentMatches") => {
                // Upstream calls it twice (repeated calls must agree and never panic).
                let first = rules.is_excluded(path).map_err(|e| e.to_string());
                let second = rules.is_excluded(path).map_err(|e| e.to_string());
                match (first, second) {
                    (Ok(a), Ok(b)) if a == b => expect_bool("is_excluded", a, want),
                    (a, b) => Err(format!("inconsistent repeated calls: {a:?} then {b:?}")),
                }
            }
            (Ok(_), other) => Err(format!("unknown api column {other:?}")),
        };
        tally.check(&name, result);
    }
    tally.finish();
}

#[test]
fn conformance_ignore_filepath_match() {
    let mut tally = Tally::new("patternmatcher/filepath_match.tsv");
    for (line, f) in tsv_rows(&vectors_dir().join("filepath_match.tsv"), 4) {
        let (pattern, path, want, platform) = (&f[0], &f[1], &f[2], &f[3]);
        if !applies(platform) {
            tally.skip();
            continue;
        }
        let name = format!("line {line} pattern {pattern:?} path {path:?}");
        // `Matches(path, []string{pattern})`: an error is ErrBadPattern from `New`.
        let result = match IgnoreRules::new(&[pattern]) {
            Err(_) if want == "error" => Ok(()),
            Err(e) => Err(format!("unexpected error: {e}")),
            Ok(_) if want == "error" => Err("accepted, want ErrBadPattern".to_string()),
            Ok(rules) => expect_bool("matches_deprecated", rules.matches_deprecated(path), want),
        };
        tally.check(&name, result);
    }
    tally.finish();
}

#[test]
fn conformance_ignore_compile_strategy() {
    let mut tally = Tally::new("patternmatcher/compile.tsv");
    for (line, f) in tsv_rows(&vectors_dir().join("compile.tsv"), 4) {
        let (pattern, want_type, want_unix, want_windows) = (&f[0], &f[1], &f[2], &f[3]);
        let name = format!("line {line} pattern {pattern:?}");
        let cleaned = go_clean(pattern);
        let mut problems = Vec::new();
        let unix = translate(&cleaned, '/');
        if unix.strategy.as_str() != want_type {
            problems.push(format!(
                "strategy {} want {want_type}",
                unix.strategy.as_str()
            ));
        }
        if unix.go_regexp.as_deref().unwrap_or("") != want_unix {
            problems.push(format!(
                "unix regexp {:?} want {want_unix:?}",
                unix.go_regexp
            ));
        }
        let windows = translate(&cleaned.replace('/', "\\"), '\\');
        if windows.go_regexp.as_deref().unwrap_or("") != want_windows {
            problems.push(format!(
                "windows regexp {:?} want {want_windows:?}",
                windows.go_regexp
            ));
        }
        // The compiled rule must use the same strategy.
        match IgnoreRules::new(&[pattern]) {
            Ok(rules) => {
                let got = rules.rules().first().map(|r| r.strategy().as_str());
                if got != Some(want_type.as_str()) {
                    problems.push(format!("compiled strategy {got:?} want {want_type}"));
                }
            }
            Err(e) => problems.push(format!("pattern rejected: {e}")),
        }
        tally.check(
            &name,
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            },
        );
    }
    tally.finish();
}

#[test]
fn conformance_ignore_readall() {
    let mut tally = Tally::new("patternmatcher/ignorefile/readall");
    let dir = vectors_dir().join("ignorefile");
    let input = dir.join("readall.dockerignore");
    let expected = dir.join("readall.expected.json");
    let text = std::fs::read_to_string(&input)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
    let want: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(&expected)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", expected.display())),
    )
    .unwrap_or_else(|e| panic!("bad json in {}: {e}", expected.display()));
    let got: Vec<String> = read_lines(&text).into_iter().map(|l| l.pattern).collect();
    let result = if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, want {want:?}"))
    };
    tally.check("readall.dockerignore", result);
    // The file ends in a lone `!`, so compiling it must fail (ReadAll keeps it, New rejects it).
    let compiled = IgnoreRules::from_file_text(&input, &text);
    tally.check(
        "readall.dockerignore compiles to an error",
        match compiled {
            Err(e) if e.to_string().contains("line 8") => Ok(()),
            Err(e) => Err(format!("error does not name line 8: {e}")),
            Ok(_) => Err("lone `!` accepted".to_string()),
        },
    );
    tally.finish();
}
