//! Conformance of shell-word expansion with BuildKit's lexer vectors: `shell/envVarTest`
//! (ProcessWord), `shell/wordsTest` (ProcessWords) and `shell/process_word.json`
//! (ProcessWordWithMatches), read as described in the vectors' README (sections 5 to 7).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rbuild_dockerfile::shell::{Env, Lexer};
use serde_json::Value;

use crate::support::{buildkit_vectors, Tally};

fn shell_dir() -> PathBuf {
    buildkit_vectors().join("frontend/dockerfile/shell")
}

fn read(name: &str) -> String {
    let path = shell_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_var_test() {
    let env = pairs(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    let lexer = Lexer::new('\\');
    let mut tally = Tally::new("shell/envVarTest");
    for (index, raw) in read("envVarTest").lines().enumerate() {
        let line_no = index + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = format!("line {line_no} {line:?}");
        let [platform, input, expected] = fields[..] else {
            tally.check(
                &name,
                Err(format!("expected 3 fields, got {}", fields.len())),
            );
            continue;
        };
        match platform {
            "W" => {
                tally.skip();
                continue;
            }
            "A" | "U" => {}
            other => {
                tally.check(&name, Err(format!("unknown platform tag {other:?}")));
                continue;
            }
        }
        let got = lexer.process_word(input, &env);
        let verdict = match (expected, got) {
            ("error", Err(_)) => Ok(()),
            ("error", Ok(e)) => Err(format!("expected an error, got {:?}", e.value)),
            (want, Ok(e)) if e.value == want => Ok(()),
            (want, Ok(e)) => Err(format!("expected {want:?}, got {:?}", e.value)),
            (want, Err(err)) => Err(format!("expected {want:?}, got error {err}")),
        };
        tally.check(&name, verdict);
    }
    tally.finish();
}

#[test]
fn words_test() {
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut tally = Tally::new("shell/wordsTest");
    for (index, line) in read("wordsTest").lines().enumerate() {
        let line_no = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            // Trailing spaces of the value are significant.
            let entry = rest.trim_start_matches(' ');
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((key.to_string(), value.to_string()));
            continue;
        }
        let name = format!("line {line_no} {line:?}");
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            tally.check(
                &name,
                Err(format!("expected exactly one |, got {}", fields.len() - 1)),
            );
            continue;
        };
        let input = input.trim();
        let expected: Vec<String> = expected
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        let got = match lexer.process_words(input, &env) {
            Ok(e) => e.words,
            Err(_) => vec!["error".to_string()],
        };
        let verdict = if got == expected {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, got {got:?}"))
        };
        tally.check(&name, verdict);
    }
    tally.finish();
}

fn string_set(value: &Value) -> Option<Vec<String>> {
    let mut names: Vec<String> = value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    names.sort();
    Some(names)
}

/// Check one `process_word.json` case; `Err` carries the diff.
fn check_case(lexer: &Lexer, case: &Value) -> Result<(), String> {
    let input = case["input"].as_str().ok_or("case has no input")?;
    let envs: BTreeMap<String, String> = case["envs"]
        .as_object()
        .ok_or("case has no envs object")?
        .iter()
        .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect::<Option<_>>()
        .ok_or("env values must be strings")?;
    let env: &dyn Env = &envs;
    let source = case["source"].as_str().unwrap_or_default();
    let got = lexer.process_word(input, env);

    if case["error"].as_bool() == Some(true) {
        return match got {
            Ok(e) => Err(format!("expected an error, got {:?}", e.value)),
            Err(err) => match case.get("error_contains").and_then(Value::as_str) {
                Some(needle) if !err.describe(input).contains(needle) => Err(format!(
                    "error {:?} does not contain {needle:?}",
                    err.describe(input)
                )),
                _ => Ok(()),
            },
        };
    }

    let expected = case["expected"]
        .as_str()
        .ok_or("case has no expected value")?;
    let got = got.map_err(|err| format!("expected {expected:?}, got error {err}"))?;
    if got.value != expected {
        return Err(format!("expected {expected:?}, got {:?}", got.value));
    }
    if source == "TestProcessWithMatches" {
        let want_matched = string_set(&case["matched"]).ok_or("matched must be a list")?;
        let want_unmatched = string_set(&case["unmatched"]).ok_or("unmatched must be a list")?;
        let matched: Vec<String> = got.matched.into_iter().collect();
        let unmatched: Vec<String> = got.unmatched.into_iter().collect();
        if matched != want_matched || unmatched != want_unmatched {
            return Err(format!(
                "expected matched {want_matched:?} unmatched {want_unmatched:?}, \
                 got matched {matched:?} unmatched {unmatched:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn process_word_json() {
    let doc: Value = serde_json::from_str(&read("process_word.json"))
        .unwrap_or_else(|err| panic!("process_word.json is not valid JSON: {err}"));
    let escape = doc["escape"]
        .as_str()
        .and_then(|s| s.chars().next())
        .unwrap_or('\\');
    let lexer = Lexer::new(escape);
    let cases = doc["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("process_word.json has no cases array"));
    let mut tally = Tally::new("shell/process_word.json");
    for (index, case) in cases.iter().enumerate() {
        let name = format!(
            "case {index} {} {:?}",
            case["source"].as_str().unwrap_or("?"),
            case["input"].as_str().unwrap_or("?")
        );
        tally.check(&name, check_case(&lexer, case));
    }
    tally.finish();
}
