//! Failing builds: the error names the stage, the instruction and its Dockerfile line.

use rbuild::BuildError;

use crate::build_support::{old_files, store_with_busybox, text_request};

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
        let err = rbuild::build(
            &t.store,
            &text_request(Some(&ctx), text),
            &rbuild::events::NullSink,
        )
        .expect_err("missing source");
        let BuildError::Step {
            origin, message, ..
        } = &err
        else {
            panic!("unexpected error {err:?}");
        };
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
fn a_foreign_platform_is_refused() {
    let t = store_with_busybox();
    let mut req = text_request(None, "FROM scratch\n");
    req.platform = Some("linux/s390x".into());
    if rbuild_dockerfile::lower::Platform::host().architecture == "s390x" {
        req.platform = Some("linux/amd64".into());
    }
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
