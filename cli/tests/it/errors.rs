//! Failures: a failing build exits 1 and points at the Dockerfile line; bad flags exit 2.

use crate::support::{text, Env};

#[test]
fn missing_copy_source_points_at_the_line() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY present.txt /\nCOPY absent.txt /\n",
            ),
            ("present.txt", "here\n"),
        ],
    );
    let out = env.rbuild(&[
        "-t",
        "bad:v1",
        "--progress",
        "plain",
        &ctx.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Dockerfile:3"), "file:line named:\n{err}");
    assert!(
        err.contains("COPY absent.txt /"),
        "source line shown:\n{err}"
    );
    assert!(err.contains("absent.txt"), "the path named:\n{err}");
    assert!(
        err.contains('─') || err.contains('^'),
        "a caret under the line:\n{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn excluded_context_file_names_the_dockerignore_rule() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY secret.key /\n"),
            (".dockerignore", "*.key\n"),
            ("secret.key", "k\n"),
        ],
    );
    let out = env.rbuild(&["--progress", "plain", &ctx.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("secret.key"), "{err}");
    assert!(
        err.contains("*.key"),
        "the .dockerignore rule is named:\n{err}"
    );
}

#[test]
fn failing_run_exits_1_with_line_and_output() {
    let env = Env::new();
    env.import_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox:test\nRUN echo before-failing && exit 3\n",
        )],
    );
    let out = env.rbuild(&["--progress", "plain", &ctx.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("RUN echo before-failing && exit 3"), "{err}");
    assert!(err.contains("ERROR"), "the step is marked failed:\n{err}");
    assert!(err.contains('3'), "{err}");
}

#[test]
fn parse_errors_exit_1_with_the_line() {
    let env = Env::new();
    let out = env.rbuild(&[
        "-f",
        "fixtures/broken/Dockerfile",
        "fixtures/broken/context",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("fixtures/broken/Dockerfile:4"), "{err}");
    assert!(
        err.contains("COPY requires at least two arguments"),
        "{err}"
    );
}

#[test]
fn missing_base_image_says_so() {
    let env = Env::new();
    // A loopback registry nothing listens on, so the test never reaches a public registry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let dockerfile = format!("FROM 127.0.0.1:{port}/nosuchimage:1\n");
    let ctx = env.context("ctx", &[("Dockerfile", dockerfile.as_str())]);
    let out = env.rbuild(&["--progress", "plain", &ctx.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not found in the local store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_flags_exit_2() {
    let env = Env::new();
    let cases: &[&[&str]] = &[
        &[],
        &["--frobnicate", "fixtures/hello"],
        &["-t", "Not/Valid:Name!", "fixtures/hello"],
        &["-o", "type=floppy,dest=x", "fixtures/hello"],
        &["-o", "type=oci", "fixtures/hello"],
        &["--progress", "loud", "fixtures/hello"],
        &["--network", "bridge", "fixtures/hello"],
        &["--secret", "src=/etc/hostname", "fixtures/hello"],
        &["--build-context", "x=git://example.com/r", "fixtures/hello"],
        &["--platform", "windows/amd64", "fixtures/hello"],
        &["--runtime", "no-such-runtime-xyz", "fixtures/hello"],
        &["--ssh", "github", "fixtures/hello"],
        &["export", "app:v1"],
        &["tag", "onlyone"],
        &["frobnicate", "now"],
    ];
    for args in cases {
        let out = env.rbuild(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
}

#[test]
fn help_has_examples() {
    let env = Env::new();
    for cmd in [
        &["--help"][..],
        &["build", "--help"],
        &["images", "--help"],
        &["inspect", "--help"],
        &["history", "--help"],
        &["tag", "--help"],
        &["rmi", "--help"],
        &["export", "--help"],
        &["prune", "--help"],
        &["plan", "--help"],
        &["debug", "--help"],
        &["debug", "parse", "--help"],
    ] {
        let (out, _) = env.ok(cmd);
        assert!(out.contains("Example"), "{cmd:?}:\n{out}");
    }
}
