//! Failing builds: the error names the stage, the instruction and its Dockerfile line.

use std::path::Path;

use rbuild::graph::Origin;
use rbuild::BuildError;

use crate::build_support::{old_files, store_with_busybox, text_request, TestStore};

/// Build `text` on the context `ctx`, which must fail in a step (`why` names the expected
/// failure): the error, the step's origin and its message.
pub(crate) fn step_failure(
    t: &TestStore,
    ctx: &Path,
    text: &str,
    why: &str,
) -> (BuildError, Origin, String) {
    let err = rbuild::build(
        &t.store,
        &text_request(Some(ctx), text),
        &rbuild::events::NullSink,
    )
    .expect_err(why);
    let BuildError::Step {
        origin, message, ..
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    let (origin, message) = (origin.clone(), message.clone());
    (err, origin, message)
}

#[test]
fn a_missing_copy_source_points_at_its_line() {
    let t = store_with_busybox();
    let ctx = t.dir.path().join("ctx");
    old_files(
        &ctx,
        &[
            ("present.txt", "x"),
            ("secret.key", "k"),
            (".dockerignore", "*.key\n"),
        ],
    );
    let cases = [
        (
            "FROM scratch AS app\nCOPY present.txt /\nCOPY missing.txt /m\n",
            3,
            "missing.txt",
        ),
        ("FROM scratch\n\nCOPY secret.key /k\n", 3, "secret.key"),
    ];
    for (text, line, needle) in cases {
        let (err, origin, message) = step_failure(&t, &ctx, text, "missing source");
        assert_eq!(origin.start_line, line, "{text}");
        assert!(message.contains(needle), "{message}");
        assert!(
            err.to_string()
                .starts_with(&format!("Dockerfile:{line}: [")),
            "{err}"
        );
    }
}

#[test]
fn a_source_hidden_by_dockerignore_names_the_rule_and_the_step() {
    let t = store_with_busybox();
    let ctx = t.dir.path().join("ctx");
    old_files(
        &ctx,
        &[
            ("secret.key", "k"),
            ("keys/a.pem", "p"),
            ("gone/x", "x"),
            (".dockerignore", "# secrets stay home\n*.key\nkeys\n"),
        ],
    );
    let ignore_file = ctx.join(".dockerignore").display().to_string();
    // (Dockerfile, line, path in the message, the rule named, if any)
    let cases = [
        (
            "FROM scratch AS app\nCOPY secret.key /\n",
            2,
            "\"/secret.key\": not found",
            Some(format!("rule `*.key` (line 2 of {ignore_file})")),
        ),
        (
            "FROM scratch\nCOPY gone/x /x\nCOPY ./keys/a.pem /k\n",
            3,
            "\"/keys/a.pem\": not found",
            Some(format!("rule `keys` (line 3 of {ignore_file})")),
        ),
        (
            "FROM scratch\nCOPY absent.key.txt /\n",
            2,
            "\"/absent.key.txt\": not found",
            None,
        ),
    ];
    for (text, line, what, rule) in cases {
        let (_, origin, message) = step_failure(&t, &ctx, text, "excluded source");
        assert_eq!(origin.start_line, line, "{text}");
        assert!(origin.instruction.starts_with("COPY"), "{origin:?}");
        assert!(message.contains(what), "{message}");
        assert!(
            !message.contains("cache key") && !message.contains("step #"),
            "no internal step id: {message}"
        );
        match rule {
            Some(rule) => {
                assert!(message.contains(&rule), "{message}");
                assert!(
                    message.contains("remove the rule or the COPY source"),
                    "says what to do: {message}"
                );
            }
            None => assert!(!message.contains(".dockerignore"), "{message}"),
        }
    }
}

#[test]
fn a_non_linux_platform_is_refused() {
    let t = store_with_busybox();
    let mut req = text_request(None, "FROM scratch\n");
    req.platform = Some("windows/amd64".into());
    let err = rbuild::build(&t.store, &req, &rbuild::events::NullSink).expect_err("platform");
    assert!(
        matches!(
            err,
            BuildError::Request {
                field: "platform",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn copying_local_paths_without_a_context_is_a_clear_error() {
    let t = store_with_busybox();
    let err = rbuild::build(
        &t.store,
        &text_request(None, "FROM scratch\nCOPY a.txt /a\n"),
        &rbuild::events::NullSink,
    )
    .expect_err("no context");
    assert!(
        err.to_string().contains("there is no build context"),
        "{err}"
    );
    // Heredocs need no context.
    let (out, _) = crate::build_support::build(
        &t.store,
        &text_request(None, "FROM scratch\nCOPY <<EOF /note.txt\nhello\nEOF\n"),
    );
    assert_eq!(out.image.layers().expect("layers").len(), 1);
}
