//! BuildKit parser conformance: `frontend/dockerfile/parser/{testfiles,testfiles-negative,
//! testfile-line,heredoc.json}` run against [`rbuild_dockerfile::parse`] and the heredoc helpers.
//! Every vector is reported; none stops the others.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_dockerfile::ast::Heredoc;
use rbuild_dockerfile::dump::dump;
use rbuild_dockerfile::heredoc::{chomp, heredocs_from_line, parse_heredoc_token};
use rbuild_dockerfile::parse;
use serde_json::Value;

use crate::support::{buildkit_vectors, Tally};

fn parser_dir() -> PathBuf {
    buildkit_vectors().join("frontend/dockerfile/parser")
}

/// Subdirectories of `dir`, sorted by name.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_testfile(dir: &Path) -> Result<(), String> {
    let text = read(&dir.join("Dockerfile"))?;
    let want = read(&dir.join("result"))?;
    let df = parse(&text).map_err(|e| format!("parse failed: {e} at {:?}", e.location()))?;
    let got = dump(&df) + "\n";
    if got == want {
        return Ok(());
    }
    let mut diff = String::new();
    let (got_lines, want_lines): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    for i in 0..got_lines.len().max(want_lines.len()) {
        let (g, w) = (got_lines.get(i), want_lines.get(i));
        if g != w {
            diff.push_str(&format!(
                "\n  line {}:\n    want {:?}\n    got  {:?}",
                i + 1,
                w,
                g
            ));
        }
    }
    Err(format!("dump differs:{diff}"))
}

#[test]
fn testfiles_dump_like_buildkit() {
    let mut tally = Tally::new("parser testfiles");
    for dir in cases(&parser_dir().join("testfiles")) {
        tally.check(&name_of(&dir), check_testfile(&dir));
    }
    tally.finish();
}

#[test]
fn negative_testfiles_fail() {
    let mut tally = Tally::new("parser testfiles-negative");
    for dir in cases(&parser_dir().join("testfiles-negative")) {
        let result = read(&dir.join("Dockerfile")).and_then(|text| match parse(&text) {
            Ok(df) => Err(format!("parsed, but must fail:\n{}", dump(&df))),
            Err(_) => Ok(()),
        });
        tally.check(&name_of(&dir), result);
    }
    tally.finish();
}

fn lines_of(v: &Value) -> Result<(usize, usize), String> {
    let get = |k: &str| {
        v[k].as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("no {k} in {v}"))
    };
    Ok((get("start_line")?, get("end_line")?))
}

#[test]
fn testfile_line_numbers() {
    let mut tally = Tally::new("parser testfile-line");
    let dir = parser_dir().join("testfile-line");
    let setup = read(&dir.join("Dockerfile")).and_then(|text| {
        let expected: Value = serde_json::from_str(&read(&dir.join("expected-lines.json"))?)
            .map_err(|e| format!("bad expected-lines.json: {e}"))?;
        let df = parse(&text).map_err(|e| format!("parse failed: {e}"))?;
        Ok((df, expected))
    });
    let (df, expected) = match setup {
        Ok(v) => v,
        Err(why) => {
            tally.check("setup", Err(why));
            tally.finish();
            return;
        }
    };
    let root = df.location().map(|l| (l.start_line, l.end_line));
    tally.check(
        "ast",
        lines_of(&expected["ast"]).and_then(|want| {
            if root == Some(want) {
                Ok(())
            } else {
                Err(format!("want {want:?}, got {root:?}"))
            }
        }),
    );
    let children = expected["children"].as_array().cloned().unwrap_or_default();
    if children.len() != df.nodes.len() {
        tally.check(
            "children",
            Err(format!(
                "want {} children, got {}",
                children.len(),
                df.nodes.len()
            )),
        );
    }
    for (i, want) in children.iter().enumerate() {
        let got = df
            .nodes
            .get(i)
            .map(|n| (n.location.start_line, n.location.end_line));
        tally.check(
            &format!("child {i}"),
            lines_of(want).and_then(|w| {
                if got == Some(w) {
                    Ok(())
                } else {
                    Err(format!("want {w:?}, got {got:?}"))
                }
            }),
        );
    }
    tally.finish();
}

fn heredoc_json() -> Value {
    let path = parser_dir().join("heredoc.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad {}: {e}", path.display()))
}

fn expected_heredoc(v: &Value) -> Option<Heredoc> {
    Some(Heredoc {
        name: v["name"].as_str()?.to_string(),
        content: v["content"].as_str()?.to_string(),
        expand: v["expand"].as_bool()?,
        chomp: v["chomp"].as_bool()?,
        file_descriptor: u32::try_from(v["file_descriptor"].as_u64()?).ok()?,
    })
}

#[test]
fn heredoc_json_groups() {
    let json = heredoc_json();
    let mut tally = Tally::new("parser heredoc.json");

    // extract: heredocs attached to each instruction.
    let extract = &json["extract"];
    let offset = extract["child_offset"].as_u64().unwrap_or(0) as usize;
    match parse(extract["dockerfile"].as_str().unwrap_or_default()) {
        Err(e) => tally.check("extract", Err(format!("parse failed: {e}"))),
        Ok(df) => {
            let expected = extract["expected_heredocs"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (i, want) in expected.iter().enumerate() {
                let want: Vec<Option<Heredoc>> = want
                    .as_array()
                    .map(|a| a.iter().map(expected_heredoc).collect())
                    .unwrap_or_default();
                let got = df.nodes.get(i + offset).map(|n| n.heredocs.clone());
                let result = match got {
                    None => Err("no such instruction".to_string()),
                    Some(got) if want.iter().map(|w| w.as_ref()).eq(got.iter().map(Some)) => Ok(()),
                    Some(got) => Err(format!("want {want:?}\n  got {got:?}")),
                };
                tally.check(&format!("extract child {}", i + offset), result);
            }
        }
    }

    // json_form_no_heredoc: exec-form RUN never has heredocs.
    let group = &json["json_form_no_heredoc"];
    match parse(group["dockerfile"].as_str().unwrap_or_default()) {
        Err(e) => tally.check("json_form_no_heredoc", Err(format!("parse failed: {e}"))),
        Ok(df) => {
            for i in group["children_without_heredocs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let i = i.as_u64().unwrap_or(0) as usize;
                let result = match df.nodes.get(i) {
                    Some(n) if n.heredocs.is_empty() && n.json => Ok(()),
                    Some(n) => Err(format!("json {} with heredocs {:?}", n.json, n.heredocs)),
                    None => Err("no such instruction".to_string()),
                };
                tally.check(&format!("json_form_no_heredoc child {i}"), result);
            }
        }
    }

    for (i, case) in json["chomp"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let got = chomp(case["input"].as_str().unwrap_or_default());
        let want = case["expected"].as_str().unwrap_or_default();
        tally.check(
            &format!("chomp {i}"),
            if got == want {
                Ok(())
            } else {
                Err(format!("want {want:?}, got {got:?}"))
            },
        );
    }

    let tokens = &json["parse_heredoc_token"];
    let list = |k: &str| tokens[k].as_array().cloned().unwrap_or_default();
    for src in list("valid_name_EOF") {
        let src = src.as_str().unwrap_or_default();
        let result = match parse_heredoc_token(src) {
            Ok(Some(h)) if h.name == "EOF" => Ok(()),
            other => Err(format!("want a heredoc named EOF, got {other:?}")),
        };
        tally.check(&format!("valid token {src:?}"), result);
    }
    for src in list("invalid_error") {
        let src = src.as_str().unwrap_or_default();
        let result = match parse_heredoc_token(src) {
            Err(_) => Ok(()),
            other => Err(format!("want an error, got {other:?}")),
        };
        tally.check(&format!("invalid token {src:?}"), result);
    }
    for src in list("not_heredoc") {
        let src = src.as_str().unwrap_or_default();
        let result = match parse_heredoc_token(src) {
            Ok(None) => Ok(()),
            other => Err(format!("want no heredoc and no error, got {other:?}")),
        };
        tally.check(&format!("not a token {src:?}"), result);
    }

    // heredocs_from_line, checked as upstream's TestHeredocsFromLine does: no error, and every
    // heredoc found has the expected name at its position (upstream indexes the expected list with
    // the found ones, so finding more than expected fails and finding fewer passes; BuildKit's
    // lexer splits `<<- EOF` into `<<-` and `EOF` and finds none there).
    for case in json["heredocs_from_line"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let line = case["line"].as_str().unwrap_or_default();
        let want: Vec<&str> = case["names"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let result = match heredocs_from_line(line) {
            Err(e) => Err(format!("error: {e}")),
            Ok(found) => {
                let got: Vec<&str> = found.iter().map(|h| h.name.as_str()).collect();
                if got.len() <= want.len() && got.iter().zip(&want).all(|(g, w)| g == w) {
                    Ok(())
                } else {
                    Err(format!("want {want:?}, got {got:?}"))
                }
            }
        };
        tally.check(&format!("heredocs_from_line {line:?}"), result);
    }
    tally.finish();
}
