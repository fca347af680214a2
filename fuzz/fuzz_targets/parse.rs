//! Arbitrary text through the Dockerfile parser and the dumper: must never panic.
//!
//! Also checks invariants that hold for every successful parse: spans lie inside the text on
//! character boundaries, line numbers are ordered, and the dump is one line per instruction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_dockerfile::ast::Node;
use rbuild_dockerfile::dump::dump;
use rbuild_dockerfile::heredoc::{chomp, heredocs_from_line, parse_heredoc_token};
use rbuild_dockerfile::parse;

fn check_node(text: &str, node: &Node) {
    let loc = node.location;
    assert!(loc.span.start <= loc.span.end && loc.span.end <= text.len(), "span {loc:?}");
    assert!(text.is_char_boundary(loc.span.start) && text.is_char_boundary(loc.span.end));
    assert!(1 <= loc.start_line && loc.start_line <= loc.end_line, "lines {loc:?}");
    if let Some(next) = &node.next {
        check_node(text, next);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Ok(df) => {
            assert!(!df.nodes.is_empty());
            for node in &df.nodes {
                check_node(&text, node);
            }
            let out = dump(&df);
            assert_eq!(out.lines().count(), df.nodes.len(), "{out}");
        }
        Err(e) => {
            let loc = e.location();
            assert!(loc.span.start <= loc.span.end && loc.span.end <= text.len(), "{e:?}");
            let _ = e.to_string();
        }
    }
    // The heredoc helpers on the first line, as a token and as an instruction line.
    let first = text.lines().next().unwrap_or_default();
    let _ = parse_heredoc_token(first);
    let _ = heredocs_from_line(first);
    let _ = chomp(&text);
});
