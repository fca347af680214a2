//! The AST as BuildKit's `Node.Dump` s-expressions: the `result` files of BuildKit's parser tests
//! and the output of `rbuild debug parse`.
//!
//! One line per instruction, `(keyword ["--flag" …] "arg" …)`, keyword lowercased, every string
//! quoted as Go's `strconv.Quote` does (`\"`, `\\`, `\n`, `\t`, `\x00`, `\u00a0`, `\U0001f600`;
//! printable non-ASCII characters stay raw). An ONBUILD trigger is nested: `(onbuild (run "x"))`.
//! Lines are joined with `\n`, without a trailing newline, as `Dump` returns them. Printability is
//! Go's `strconv.IsPrint` (letters, marks, numbers, punctuation, symbols and the ASCII space), read
//! from the Unicode tables of the `unicode-general-category` crate, so characters assigned after
//! Go's Unicode version may print raw where Go escapes them.

use unicode_general_category::{get_general_category, GeneralCategory};

use crate::ast::{Dockerfile, Node};
use crate::parser::go_lower;

/// Render a parsed Dockerfile as BuildKit's s-expression dump.
///
/// ```
/// let df = rbuild_dockerfile::parser::parse("FROM busybox\nONBUILD RUN echo hi\n")?;
/// assert_eq!(rbuild_dockerfile::dump::dump(&df), "(from \"busybox\")\n(onbuild (run \"echo hi\"))");
/// Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dump(df: &Dockerfile) -> String {
    let lines: Vec<String> = df
        .nodes
        .iter()
        .map(|n| format!("({})", dump_node(n)))
        .collect();
    lines.join("\n").trim().to_string()
}

/// One node without its surrounding parentheses.
pub fn dump_node(node: &Node) -> String {
    let mut out = go_lower(&node.keyword);
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(" [");
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&go_quote(arg));
    }
    if let Some(next) = &node.next {
        out.push_str(" (");
        out.push_str(&dump_node(next));
        out.push(')');
    }
    out.trim().to_string()
}

/// Go's `strconv.IsPrint`.
pub fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u <= 0xff {
        return (0x20..=0x7e).contains(&u) || ((0xa1..=0xff).contains(&u) && u != 0xad);
    }
    use GeneralCategory::*;
    !matches!(
        get_general_category(c),
        Control
            | Format
            | Surrogate
            | PrivateUse
            | Unassigned
            | SpaceSeparator
            | LineSeparator
            | ParagraphSeparator
    )
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if go_is_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_table() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("a b", r#""a b""#),
            ("\"\\", r#""\"\\""#),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
            ("\0\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
            ("é♥☃", "\"é♥☃\""),
            ("\u{a0}\u{ad}\u{85}", r#""\u00a0\u00ad\u0085""#),
            ("\u{2028}\u{feff}\u{200b}", r#""\u2028\ufeff\u200b""#),
            ("\u{e000}", r#""\ue000""#),
            ("😀", "\"😀\""),
            ("\u{f0000}", r#""\U000f0000""#),
        ];
        for &(input, want) in cases {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
    }
}
