//! Heredoc bodies after expansion, as BuildKit's `SourcesAndDest.ExpandRaw` and `dispatchRun`
//! treat them: COPY/ADD bodies with an unquoted delimiter are expanded (quotes kept, `<<-` tabs
//! stripped first); quoted delimiters and RUN bodies are left alone. Cases mirror BuildKit's
//! `dockerfile_heredoc_test.go` (`testHeredocVarSubstitution`, `testCopyHeredocSpecialSymbols`,
//! `testHeredocIndent`).

use std::collections::BTreeMap;

use rbuild_dockerfile::ast::Heredoc;
use rbuild_dockerfile::instructions::{CopySource, Instruction};
use rbuild_dockerfile::lower::{ExpandedCommand, LowerError};
use rbuild_dockerfile::{lower, parse, Error, LowerOptions};

fn opts() -> LowerOptions {
    LowerOptions {
        platform: Some("linux/amd64".parse().expect("valid")),
        build_platform: Some("linux/amd64".parse().expect("valid")),
        ..Default::default()
    }
}

/// The commands of the last stage, expanded on an empty base image.
fn expanded(text: &str) -> Vec<ExpandedCommand> {
    let df = parse(text).expect("parses");
    let plan = match lower(&df, &opts()) {
        Ok(p) => p,
        Err(e) => panic!("lowering failed: {e}\n{text}"),
    };
    let stage = plan.stages.last().expect("one stage");
    match stage.expand(&[]) {
        Ok(s) => s.commands,
        Err(e) => panic!("expansion failed: {e}\n{text}"),
    }
}

fn expand_err(text: &str) -> LowerError {
    let df = parse(text).expect("parses");
    let plan = lower(&df, &opts()).expect("lowers");
    match plan.stages.last().expect("one stage").expand(&[]) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(Error::Lower(e)) => e,
        Err(other) => panic!("expected a lowering error, got {other}"),
    }
}

/// The heredoc sources of a COPY or ADD command.
fn heredoc_sources(cmd: &ExpandedCommand) -> Vec<Heredoc> {
    let sources = match &cmd.command.instruction {
        Instruction::Copy(c) => &c.sources,
        Instruction::Add(a) => &a.sources,
        other => panic!("not COPY/ADD: {other:?}"),
    };
    sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Heredoc(h) => Some(h.clone()),
            CopySource::Path(_) => None,
        })
        .collect()
}

/// The content of the only heredoc of the last command.
fn last_body(text: &str) -> String {
    let cmds = expanded(text);
    let docs = heredoc_sources(cmds.last().expect("a command"));
    assert_eq!(docs.len(), 1, "{docs:?}");
    docs[0].content.clone()
}

fn used(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One line per case: Dockerfile text → the file content COPY writes.
macro_rules! body {
    ($name:ident, $text:expr, $want:expr) => {
        #[test]
        fn $name() {
            assert_eq!(last_body($text), $want, "{}", $text);
        }
    };
}

const HEAD: &str = "FROM scratch\nARG name=world\n";

body!(
    unquoted_delimiter_expands_braced_var,
    &format!("{HEAD}COPY <<EOF /c1\nHello ${{name}}!\nEOF\n"),
    "Hello world!\n"
);
body!(
    unquoted_delimiter_expands_plain_var,
    &format!("{HEAD}COPY <<EOF /c1\nHello $name!\nEOF\n"),
    "Hello world!\n"
);
body!(
    unquoted_delimiter_expands_default_operator,
    &format!("{HEAD}COPY <<EOF /c1\n${{nope:-x}} ${{name:-x}} ${{name:+set}}\nEOF\n"),
    "x world set\n"
);
body!(
    unquoted_delimiter_keeps_single_quotes,
    &format!("{HEAD}COPY <<EOF /q1\nHello '${{name}}'!\nEOF\n"),
    "Hello 'world'!\n"
);
body!(
    unquoted_delimiter_keeps_double_quotes,
    &format!("{HEAD}COPY <<EOF /q2\nHello \"${{name}}\"!\nEOF\n"),
    "Hello \"world\"!\n"
);
body!(
    unbalanced_quotes_are_literal,
    &format!("{HEAD}COPY <<EOF /q3\nit's \"$name\nEOF\n"),
    "it's \"world\n"
);
body!(
    single_quoted_delimiter_does_not_expand,
    &format!("{HEAD}COPY <<'EOF' /c2\nHello ${{name}}!\nEOF\n"),
    "Hello ${name}!\n"
);
body!(
    double_quoted_delimiter_does_not_expand,
    &format!("{HEAD}COPY <<\"EOF\" /c3\nHello ${{name}}!\nEOF\n"),
    "Hello ${name}!\n"
);
body!(
    quoted_delimiter_keeps_quotes_and_vars,
    &format!("{HEAD}COPY <<'EOF' /qs\nHello \"${{name}}\" '$name'\nEOF\n"),
    "Hello \"${name}\" '$name'\n"
);
body!(
    undefined_var_expands_to_empty,
    "FROM scratch\nCOPY <<EOF /u\n[$UNDEFINED][${ALSO_UNDEFINED}]\nEOF\n",
    "[][]\n"
);
body!(
    env_value_expands,
    "FROM scratch\nENV greeting=hi\nCOPY <<EOF /e\n$greeting there\nEOF\n",
    "hi there\n"
);
body!(
    chomp_strips_leading_tabs,
    "FROM scratch\nCOPY <<-EOF /bar-copy\n\tbar\n\t\tbaz\n  sp\nEOF\n",
    "bar\nbaz\n  sp\n"
);
body!(
    no_chomp_keeps_tabs,
    "FROM scratch\nCOPY <<EOF /foo-copy\n\tfoo\nEOF\n",
    "\tfoo\n"
);
body!(
    chomp_happens_before_expansion,
    "FROM scratch\nENV T=\"\tx\"\nCOPY <<-EOF /t\n\t$T\nEOF\n",
    "\tx\n"
);
body!(
    chomp_applies_to_quoted_delimiter,
    "FROM scratch\nCOPY <<-'EOF' /t\n\t$T\nEOF\n",
    "$T\n"
);
body!(
    double_quotes_in_file_kept,
    "FROM scratch\nCOPY <<EOF quotefile\n\"quotes in file\"\nEOF\n",
    "\"quotes in file\"\n"
);
body!(
    lone_backslash_escapes_newline,
    "FROM scratch\nCOPY <<EOF slashfile1\n\\\nEOF\n",
    "\n"
);
body!(
    double_backslash_becomes_one,
    "FROM scratch\nCOPY <<EOF slashfile2\n\\\\\nEOF\n",
    "\\\n"
);
body!(
    escaped_dollar_is_literal,
    "FROM scratch\nENV X=1\nCOPY <<EOF slashfile3\n\\$X\nEOF\n",
    "$X\n"
);
body!(
    quoted_delimiter_keeps_backslash,
    "FROM scratch\nCOPY <<\"EOF\" rawslashfile1\n\\\nEOF\n",
    "\\\n"
);
body!(
    quoted_delimiter_keeps_double_backslash,
    "FROM scratch\nCOPY <<\"EOF\" rawslashfile2\n\\\\\nEOF\n",
    "\\\\\n"
);
body!(
    quoted_delimiter_keeps_escaped_dollar,
    "FROM scratch\nCOPY <<\"EOF\" rawslashfile3\n\\$\nEOF\n",
    "\\$\n"
);
body!(
    escape_directive_does_not_apply_to_body,
    "# escape=`\nFROM scratch\nENV X=1\nCOPY <<EOF /d\n\\$X `$X\nEOF\n",
    "$X `1\n"
);
body!(
    add_heredoc_expands_too,
    &format!("{HEAD}ADD <<EOF /a\nHello $name\nEOF\n"),
    "Hello world\n"
);

#[test]
fn every_heredoc_of_one_copy_is_expanded_on_its_own_terms() {
    let cmds = expanded(&format!(
        "{HEAD}COPY <<A <<'B' <<-C /dir/\n$name\nA\n$name\nB\n\t$name\nC\n"
    ));
    let bodies: Vec<(String, String)> = heredoc_sources(cmds.last().expect("copy"))
        .into_iter()
        .map(|h| (h.name, h.content))
        .collect();
    let want: Vec<(String, String)> = [("A", "world\n"), ("B", "$name\n"), ("C", "world\n")]
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    assert_eq!(bodies, want);
}

#[test]
fn expanded_heredoc_is_marked_final() {
    let cmds = expanded(&format!("{HEAD}COPY <<-EOF /f\n\t$name\nEOF\n"));
    let doc = &heredoc_sources(cmds.last().expect("copy"))[0];
    assert_eq!((doc.chomp, doc.expand), (false, false), "{doc:?}");
    assert_eq!(doc.name, "EOF");
}

#[test]
fn heredoc_variables_are_recorded_as_used() {
    let cmds = expanded(&format!(
        "{HEAD}ENV other=o\nCOPY <<EOF /f\n$name ${{other}} $undefined\nEOF\n"
    ));
    let copy = cmds.last().expect("copy");
    assert_eq!(copy.used, used(&[("name", "world"), ("other", "o")]));
}

#[test]
fn quoted_heredoc_records_nothing() {
    let cmds = expanded(&format!("{HEAD}COPY <<'EOF' /f\n$name\nEOF\n"));
    assert_eq!(cmds.last().expect("copy").used, used(&[]));
}

#[test]
fn heredoc_and_destination_share_used() {
    let cmds = expanded(&format!(
        "{HEAD}ARG dir=/d\nCOPY <<EOF $dir/f\n$name\nEOF\n"
    ));
    let copy = cmds.last().expect("copy");
    assert_eq!(copy.used, used(&[("dir", "/d"), ("name", "world")]));
    match &copy.command.instruction {
        Instruction::Copy(c) => assert_eq!(c.dest, "/d/f"),
        other => panic!("not COPY: {other:?}"),
    }
}

#[test]
fn run_heredoc_is_left_to_the_shell() {
    let cmds = expanded(&format!(
        "{HEAD}RUN <<-EOF\n\tname=\"new world\"\n\techo \"Hello ${{name}}!\"\nEOF\n"
    ));
    let run = cmds.last().expect("run");
    let Instruction::Run(r) = &run.command.instruction else {
        panic!("not RUN: {:?}", run.command.instruction);
    };
    assert_eq!(r.heredocs.len(), 1);
    let doc = &r.heredocs[0];
    assert_eq!(
        doc.content,
        "\tname=\"new world\"\n\techo \"Hello ${name}!\"\n"
    );
    assert_eq!((doc.expand, doc.chomp), (true, true), "{doc:?}");
    assert!(!run.used.contains_key("name"), "{:?}", run.used);
}

#[test]
fn heredoc_expansion_error_names_copy_and_body() {
    let e = expand_err("FROM scratch\nCOPY <<EOF /f\n${MISSING:?must be set}\nEOF\n");
    match e {
        LowerError::Expand {
            instruction,
            word,
            message,
            location,
        } => {
            assert_eq!(instruction, "COPY");
            assert_eq!(word, "${MISSING:?must be set}\n");
            assert_eq!(message, "MISSING: must be set");
            assert_eq!(location.start_line, 2);
        }
        other => panic!("expected an expansion error, got {other:?}"),
    }
}

#[test]
fn base_stage_env_reaches_heredoc() {
    let df =
        parse("FROM scratch AS base\nENV FROM_BASE=b\nFROM base\nCOPY <<EOF /f\n$FROM_BASE\nEOF\n")
            .expect("parses");
    let plan = lower(&df, &opts()).expect("lowers");
    let base = plan.stages[0].expand(&[]).expect("expands");
    let child = plan.stages[1].expand_on(&base).expect("expands");
    let docs = heredoc_sources(child.commands.last().expect("copy"));
    assert_eq!(docs[0].content, "b\n");
}
