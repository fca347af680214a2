//! The ordered rule set of an ignore file: last matching rule wins, `!` re-includes.
//!
//! This follows moby/patternmatcher's `PatternMatcher` and BuildKit's context walk (fsutil
//! `filterFS.Walk`):
//!
//! - A path is excluded when the last rule that matches it (the path itself or, per
//!   `MatchesOrParentMatches`, any parent directory) is not a `!` rule. Go evaluates rules in order
//!   and skips those that cannot change the outcome; since every pattern is compiled up front here
//!   (no error can surface mid-match), looking for the last matching rule from the end gives the
//!   same answer and names the rule that decided it ([`IgnoreRules::excluding_rule`]).
//! - [`IgnoreRules::matches_in_walk`] is `MatchesUsingParentResults`, what BuildKit's walker uses:
//!   each directory passes its per-rule results down to its entries, so ancestors are not
//!   re-matched. It keeps Go's skipping, which can differ from `MatchesOrParentMatches` in rare
//!   cases (for `a`, `!a/b`, `a`: `a/b` is excluded by one and not by the other); BuildKit's walk
//!   has this behaviour, so ours does too.
//! - [`IgnoreRules::may_reinclude_below`] is fsutil's test for skipping an excluded directory: it
//!   can be skipped unless some `!` rule has glob characters or names a path below it.
//! - [`IgnoreRules::matches_deprecated`] is the deprecated `Matches` (a parent is only checked at
//!   the pattern's own depth), kept because BuildKit's vectors pin it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::file::{find_ignore_file, read_lines};
use super::pattern::{go_clean, go_dir, parent_prefixes, Pattern, Strategy};
use super::IgnoreError;

/// Where a rule came from: a line of an ignore file, or a position in a pattern list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleOrigin {
    /// The ignore file, or `None` for patterns given directly.
    pub source: Option<PathBuf>,
    /// 1-based line in `source`, or 1-based position in the list when `source` is `None`.
    pub line: usize,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(path) => write!(f, "line {} of {}", self.line, path.display()),
            None => write!(f, "pattern {}", self.line),
        }
    }
}

/// One compiled rule with its origin.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The cleaned pattern that is matched, without its `!`.
    pub pattern: String,
    /// `true` for a `!` rule, which re-includes what it matches.
    pub negated: bool,
    /// 1-based line in `source`, or 1-based position in the list when `source` is `None`.
    pub line: usize,
    /// The ignore file the rule was read from, if any.
    pub source: Option<PathBuf>,
    /// The rule as the user wrote it (the whole line, for a file).
    pub original: String,
    matcher: Pattern,
}

impl Rule {
    /// Where this rule came from.
    pub fn origin(&self) -> RuleOrigin {
        RuleOrigin {
            source: self.source.clone(),
            line: self.line,
        }
    }

    /// How the pattern is matched (patternmatcher's strategy).
    pub fn strategy(&self) -> Strategy {
        self.matcher.strategy()
    }

    /// The compiled pattern.
    pub fn compiled(&self) -> &Pattern {
        &self.matcher
    }

    /// Does the rule's pattern match exactly this path (parents not considered)?
    pub fn is_match(&self, rel_path: &str) -> bool {
        self.matcher.is_match(rel_path)
    }
}

impl fmt::Display for Rule {
    /// "rule `*.log` (line 3 of /ctx/.dockerignore)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bang = if self.negated { "!" } else { "" };
        write!(f, "rule `{bang}{}` ({})", self.pattern, self.origin())
    }
}

/// Per-rule match results of a directory, handed to its entries during a walk
/// (patternmatcher's `MatchInfo`). The default value means "no information" (the walk root).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatch {
    matched: Vec<bool>,
}

/// The outcome for one path: which rule decided it, if any (the last matching rule wins).
#[derive(Debug, Clone, Copy)]
pub enum Match<'a> {
    /// No rule matches the path or its parents: it is kept.
    None,
    /// The deciding rule excludes the path.
    Excluded(&'a Rule),
    /// The deciding rule is a `!` rule: the path is kept (re-included).
    Reincluded(&'a Rule),
}

impl<'a> Match<'a> {
    /// `true` when the path is excluded.
    pub fn is_excluded(&self) -> bool {
        matches!(self, Match::Excluded(_))
    }

    /// The rule that decided, if any.
    pub fn rule(&self) -> Option<&'a Rule> {
        match *self {
            Match::None => None,
            Match::Excluded(rule) | Match::Reincluded(rule) => Some(rule),
        }
    }
}

/// An ordered, compiled set of ignore rules (a `.dockerignore`).
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
    has_exceptions: bool,
    /// No `!` rule has glob characters once a trailing `/**` or `/*` is removed (fsutil's
    /// `onlyPrefixExcludeExceptions`), so literal prefixes decide whether a walk may skip.
    prefix_only_exceptions: bool,
}

impl IgnoreRules {
    /// Compile patterns given directly (`patternmatcher.New`): each is trimmed, empty ones are
    /// skipped, each is `filepath.Clean`ed, and a leading `!` makes it an exception.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        let mut rules = Vec::with_capacity(patterns.len());
        for (i, p) in patterns.iter().enumerate() {
            let origin = RuleOrigin {
                source: None,
                line: i + 1,
            };
            if let Some(rule) = compile_rule(p.as_ref(), p.as_ref(), origin)? {
                rules.push(rule);
            }
        }
        Ok(Self::from_rules(rules))
    }

    /// Read and compile the text of an ignore file at `path` (used only to name it in errors and
    /// rule origins), keeping each rule's line number and original text.
    pub fn from_file_text(path: &Path, text: &str) -> Result<Self, IgnoreError> {
        let mut rules = Vec::new();
        for line in read_lines(text) {
            let origin = RuleOrigin {
                source: Some(path.to_path_buf()),
                line: line.line,
            };
            if let Some(rule) = compile_rule(&line.pattern, &line.text, origin)? {
                rules.push(rule);
            }
        }
        Ok(Self::from_rules(rules))
    }

    /// Load the ignore file BuildKit would use for this build: `<dockerfile_path>.dockerignore`,
    /// else `<context_dir>/.dockerignore`; `None` when there is neither.
    pub fn load(context_dir: &Path, dockerfile_path: &Path) -> Result<Option<Self>, IgnoreError> {
        match find_ignore_file(context_dir, dockerfile_path)? {
            Some((path, text)) => Self::from_file_text(&path, &text).map(Some),
            None => Ok(None),
        }
    }

    fn from_rules(rules: Vec<Rule>) -> Self {
        let has_exceptions = rules.iter().any(|r| r.negated);
        let prefix_only_exceptions = rules
            .iter()
            .filter(|r| r.negated)
            .all(|r| !without_trailing_glob(&r.pattern).contains(['*', '[', ']', '?', '^', '\\']));
        IgnoreRules {
            rules,
            has_exceptions,
            prefix_only_exceptions,
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// `true` when there are no rules (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `true` when some rule is a `!` exception (patternmatcher's `Exclusions()`).
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// The normalized patterns, `!` included, as BuildKit passes them to the context transfer.
    pub fn to_patterns(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                if r.negated {
                    format!("!{}", r.pattern)
                } else {
                    r.pattern.clone()
                }
            })
            .collect()
    }

    /// Is `rel_path` (relative to the context, `/`-separated, as a walk produces it) excluded?
    /// `MatchesOrParentMatches`: a rule matches when it matches the path or any parent directory,
    /// and the last matching rule decides. Every pattern is compiled by the constructors, so this
    /// does not fail today; the `Result` leaves room for checks on the path itself.
    pub fn is_excluded(&self, rel_path: &str) -> Result<bool, IgnoreError> {
        Ok(self.matched(rel_path).is_excluded())
    }

    /// The rule that excludes `rel_path`, or `None` when it is not excluded (see
    /// [`is_excluded`](Self::is_excluded)); for messages such as "excluded by rule `*.log`
    /// (line 3 of .dockerignore)".
    pub fn excluding_rule(&self, rel_path: &str) -> Result<Option<&Rule>, IgnoreError> {
        Ok(match self.matched(rel_path) {
            Match::Excluded(rule) => Some(rule),
            Match::None | Match::Reincluded(_) => None,
        })
    }

    /// How `rel_path` is decided: by the last rule matching it or a parent of it, excluding or
    /// re-including it, or by no rule at all.
    pub fn matched(&self, rel_path: &str) -> Match<'_> {
        if self.rules.is_empty() {
            return Match::None;
        }
        let dir = go_dir(rel_path);
        let parents = parent_prefixes(&dir);
        match self
            .rules
            .iter()
            .rev()
            .find(|r| r.matcher.is_match_or_parent(rel_path, &parents))
        {
            None => Match::None,
            Some(rule) if rule.negated => Match::Reincluded(rule),
            Some(rule) => Match::Excluded(rule),
        }
    }

    /// `MatchesUsingParentResults`: decide `rel_path` from its own text and the per-rule results
    /// of its parent directory (`parent`; the default value for entries of the walk root).
    /// Returns whether it is excluded and the results to hand to its entries if it is a directory.
    pub fn matches_in_walk(&self, rel_path: &str, parent: &ParentMatch) -> (bool, ParentMatch) {
        // Results from another rule set carry no usable information.
        let inherited = (parent.matched.len() == self.rules.len()).then_some(&parent.matched);
        let mut results = vec![false; self.rules.len()];
        let mut excluded = false;
        let mut parents: Option<Vec<String>> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let mut hit = inherited.is_some_and(|m| m[i]);
            if !hit {
                // Go skips rules that cannot change the current outcome.
                if rule.negated != excluded {
                    continue;
                }
                hit = rule.matcher.is_match(rel_path);
                if !hit && inherited.is_none() {
                    let prefixes = parents.get_or_insert_with(|| {
                        let dir = go_dir(rel_path);
                        parent_prefixes(&dir)
                            .into_iter()
                            .map(str::to_string)
                            .collect()
                    });
                    hit = prefixes.iter().any(|p| rule.matcher.is_match(p));
                }
            }
            results[i] = hit;
            if hit {
                excluded = !rule.negated;
            }
        }
        (excluded, ParentMatch { matched: results })
    }

    /// Can a walk that found the directory `rel_dir` excluded still find something to re-include
    /// below it? When `false` the whole directory can be skipped. This is fsutil's rule: only if
    /// there are `!` rules, and either one has glob characters (beyond a trailing `/**` or `/*`)
    /// or one names `rel_dir` or a path below it.
    pub fn may_reinclude_below(&self, rel_dir: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        if !self.prefix_only_exceptions {
            return true;
        }
        let dir_slash = format!("{rel_dir}/");
        self.rules
            .iter()
            .filter(|r| r.negated)
            .any(|r| format!("{}/", without_trailing_glob(&r.pattern)).starts_with(&dir_slash))
    }

    /// The deprecated `patternmatcher.Matches(file, patterns)`: `file` is cleaned, `.` never
    /// matches, and a parent directory is only tried at the depth of each pattern.
    pub fn matches_deprecated(&self, file: &str) -> bool {
        let file = go_clean(file);
        if file == "." {
            return false;
        }
        let parent = go_dir(&file);
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for rule in &self.rules {
            if rule.negated != matched {
                continue;
            }
            let mut hit = rule.matcher.is_match(&file);
            if !hit && parent != "." && rule.matcher.depth() <= parent_dirs.len() {
                hit = rule
                    .matcher
                    .is_match(&parent_dirs[..rule.matcher.depth()].join("/"));
            }
            if hit {
                matched = !rule.negated;
            }
        }
        matched
    }
}

/// Compile one pattern the way `patternmatcher.New` does; `None` for a blank pattern.
fn compile_rule(
    pattern: &str,
    original: &str,
    origin: RuleOrigin,
) -> Result<Option<Rule>, IgnoreError> {
    let trimmed = pattern.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let cleaned = go_clean(trimmed);
    let (negated, body) = match cleaned.strip_prefix('!') {
        Some("") => {
            return Err(IgnoreError::LoneExclamation {
                original: original.to_string(),
                origin,
            })
        }
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    let matcher = Pattern::new(body).map_err(|kind| IgnoreError::BadPattern {
        pattern: original.trim().to_string(),
        origin: origin.clone(),
        kind,
    })?;
    Ok(Some(Rule {
        pattern: body.to_string(),
        negated,
        line: origin.line,
        source: origin.source,
        original: original.to_string(),
        matcher,
    }))
}

/// fsutil's `patternWithoutTrailingGlob`: drop one trailing `/**`, then one trailing `/*`.
fn without_trailing_glob(pattern: &str) -> &str {
    let p = pattern.strip_suffix("/**").unwrap_or(pattern);
    p.strip_suffix("/*").unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::from_file_text(Path::new(".dockerignore"), text).expect("rules compile")
    }

    macro_rules! ignored {
        ($($name:ident: $text:expr, $path:expr;)*) => {$(
            #[test]
            fn $name() {
                let r = rules($text);
                assert!(r.is_excluded($path).expect("no error"), "{:?} should exclude {:?}", $text, $path);
                let (walk, _) = walk_to(&r, $path);
                assert!(walk, "walk: {:?} should exclude {:?}", $text, $path);
            }
        )*};
    }

    macro_rules! not_ignored {
        ($($name:ident: $text:expr, $path:expr;)*) => {$(
            #[test]
            fn $name() {
                let r = rules($text);
                assert!(!r.is_excluded($path).expect("no error"), "{:?} should keep {:?}", $text, $path);
                let (walk, _) = walk_to(&r, $path);
                assert!(!walk, "walk: {:?} should keep {:?}", $text, $path);
            }
        )*};
    }

    /// Walk from the root down to `path`, passing parent results as BuildKit's walker does.
    fn walk_to(r: &IgnoreRules, path: &str) -> (bool, ParentMatch) {
        let mut state = ParentMatch::default();
        let parts: Vec<&str> = path.split('/').collect();
        let mut result = false;
        for i in 0..parts.len() {
            let prefix = parts[..=i].join("/");
            let (excluded, next) = r.matches_in_walk(&prefix, &state);
            result = excluded;
            state = next;
        }
        (result, state)
    }

    ignored! {
        ig_simple_name: "foo", "foo";
        ig_parent_dir_excludes_children: "foo", "foo/bar/baz";
        ig_star_extension: "*.log", "x.log";
        ig_doublestar_anywhere: "**/*.log", "a/b/x.log";
        ig_last_match_wins_exclude: "!a.txt\n*.txt", "a.txt";
        ig_reexclude_after_reinclude: "dir\n!dir/keep\ndir/keep/secret", "dir/keep/secret";
        ig_leading_slash_is_root_relative: "/foo", "foo/x";
        ig_dot_slash_cleaned: "./foo/../bar", "bar";
        ig_star_excludes_everything: "*", "a/b/c";
        ig_bom_and_comment: "\u{FEFF}# c\nsecret", "secret";
    }

    not_ignored! {
        ni_no_rules: "", "foo";
        ni_star_is_one_level_only: "*.log", "a/x.log";
        ni_reinclude_wins: "*.txt\n!keep.txt", "keep.txt";
        ni_reinclude_under_excluded_dir: "dir\n!dir/keep", "dir/keep/file";
        ni_doublestar_reinclude: "**\n!src/**", "src/main.rs";
        ni_comment_not_rule: "# foo", "# foo";
        ni_indented_hash_is_pattern_not_comment_match: " #x", "x";
        ni_prefix_is_not_partial_name: "foo", "foobar";
        ni_bang_class_is_literal: "[!a]", "b";
    }

    #[test]
    fn excluding_rule_names_line_and_text() {
        let r = rules("# header\n\n*.tmp\n  *.log  \n!keep.log\n");
        let rule = r.excluding_rule("dir/../x.log").expect("no error");
        assert!(rule.is_none(), "parent matching does not clean the path");
        let rule = r
            .excluding_rule("x.log")
            .expect("no error")
            .expect("excluded");
        assert_eq!(
            (rule.line, rule.original.as_str(), rule.pattern.as_str()),
            (4, "  *.log  ", "*.log")
        );
        assert_eq!(rule.to_string(), "rule `*.log` (line 4 of .dockerignore)");
        assert!(r.excluding_rule("keep.log").expect("no error").is_none());
        let Match::Reincluded(reincluder) = r.matched("keep.log") else {
            panic!("keep.log should be re-included");
        };
        assert_eq!((reincluder.line, reincluder.negated), (5, true));
        assert!(matches!(r.matched("src/main.rs"), Match::None));
    }

    #[test]
    fn errors_name_pattern_and_line() {
        let err = IgnoreRules::from_file_text(Path::new("/ctx/.dockerignore"), "ok\n\n  a[  \n")
            .expect_err("bad pattern");
        let msg = err.to_string();
        assert!(
            msg.contains("`a[`") && msg.contains("line 3 of /ctx/.dockerignore"),
            "{msg}"
        );
        let err = IgnoreRules::new(&["x", "!"]).expect_err("lone bang");
        assert!(err.to_string().contains("pattern 2"), "{err}");
        assert!(IgnoreRules::new(&["[Local-Only]/"]).is_err());
    }

    macro_rules! reinclude {
        ($($name:ident: $text:expr, $dir:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(rules($text).may_reinclude_below($dir), $want, "{:?} under {:?}", $text, $dir);
            }
        )*};
    }

    reinclude! {
        mr_no_exceptions_skip: "node_modules", "node_modules" => false;
        mr_exception_below_dir: "vendor\n!vendor/keep", "vendor" => true;
        mr_exception_deeper: "a\n!a/b/c.txt", "a" => true;
        mr_exception_elsewhere_skip: "a\n!b/keep", "a" => false;
        mr_exception_is_dir_itself: "a\n!a", "a" => true;
        mr_exception_sibling_prefix_skip: "ab\n!abc/x", "ab" => false;
        mr_trailing_doublestar_stripped: "a\n!a/b/**", "a/b" => true;
        mr_glob_exception_conservative: "a\n!*.md", "a" => true;
        mr_exception_above_dir_skip: "a/b\n!a", "a/b" => false;
    }

    #[test]
    fn walk_and_parent_matching_differ_as_in_buildkit() {
        // Pattern 3 is skipped for `a` (already excluded), so the walk never records that it
        // matched the parent; MatchesOrParentMatches re-checks parents and excludes `a/b`.
        let r = IgnoreRules::new(&["a", "!a/b", "a"]).expect("compiles");
        assert!(r.is_excluded("a/b").expect("no error"));
        assert!(!walk_to(&r, "a/b").0);
    }

    #[test]
    fn deprecated_matches_checks_parent_at_pattern_depth_only() {
        let r = IgnoreRules::new(&["a/b"]).expect("compiles");
        assert!(r.matches_deprecated("a/b/c/d"));
        // `**/b` has depth 2, so only `x/y` is tried for `x/y/b/c`, never `x/y/b`.
        let r = IgnoreRules::new(&["**/b"]).expect("compiles");
        assert!(!r.matches_deprecated("x/y/b/c"));
        assert!(r.is_excluded("x/y/b/c").expect("no error"));
        assert!(!IgnoreRules::new(&["*"])
            .expect("compiles")
            .matches_deprecated("."));
    }

    /// A fresh scratch directory for one test (removed first if a previous run left it).
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rbuild-ignore-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("build")).expect("create scratch dir");
        dir
    }

    macro_rules! load {
        ($($name:ident: specific $specific:expr, context $context:expr, path $path:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let dir = scratch_dir(stringify!($name));
                let dockerfile = dir.join("build/app.Dockerfile");
                let specific: Option<&str> = $specific;
                let context: Option<&str> = $context;
                if let Some(text) = specific {
                    std::fs::write(dir.join("build/app.Dockerfile.dockerignore"), text).expect("write");
                }
                if let Some(text) = context {
                    std::fs::write(dir.join(".dockerignore"), text).expect("write");
                }
                let loaded = IgnoreRules::load(&dir, &dockerfile).expect("loads");
                let want: Option<(bool, &str)> = $want;
                match (loaded, want) {
                    (None, None) => {}
                    (Some(rules), Some((excluded, file))) => {
                        assert_eq!(rules.is_excluded($path).expect("no error"), excluded);
                        let source = rules.rules().first().and_then(|r| r.source.clone());
                        assert!(source.as_ref().is_none_or(|s| s.ends_with(file)), "read from {source:?}");
                    }
                    (got, want) => panic!("loaded {got:?}, want {want:?}"),
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        )*};
    }

    load! {
        load_none_when_no_file: specific None, context None, path "x" => None;
        load_context_file: specific None, context Some("x"), path "x" => Some((true, ".dockerignore"));
        load_dockerfile_specific_wins: specific Some("y"), context Some("x"), path "x"
            => Some((false, "app.Dockerfile.dockerignore"));
        load_dockerfile_specific_applies: specific Some("y"), context Some("x"), path "y"
            => Some((true, "app.Dockerfile.dockerignore"));
        load_empty_specific_still_wins: specific Some(""), context Some("x"), path "x"
            => Some((false, "app.Dockerfile.dockerignore"));
    }

    #[test]
    fn load_reports_unreadable_file() {
        let dir = scratch_dir("unreadable");
        // A directory where the file should be cannot be read as a file.
        std::fs::create_dir_all(dir.join(".dockerignore")).expect("mkdir");
        let err = IgnoreRules::load(&dir, &dir.join("Dockerfile")).expect_err("read error");
        assert!(matches!(err, IgnoreError::Read { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn patterns_round_trip() {
        let r = rules("/a\n!b/\n");
        assert_eq!(r.to_patterns(), vec!["a", "!b"]);
        assert!(r.has_exceptions());
    }

    #[test]
    fn foreign_parent_match_is_ignored() {
        let r = IgnoreRules::new(&["a", "b"]).expect("compiles");
        let other = IgnoreRules::new(&["x"]).expect("compiles");
        let (_, from_other) = other.matches_in_walk("x", &ParentMatch::default());
        assert!(r.matches_in_walk("a/c", &from_other).0);
    }
}
