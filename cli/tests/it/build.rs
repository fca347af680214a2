//! `rbuild build` and its `rbuild [OPTIONS] CONTEXT` form on fixtures/hello: the store, the
//! cache, progress styles, stdin Dockerfiles.

use crate::support::{built_digest, steps, text, Env};

#[test]
fn build_then_images_then_all_cached() {
    let env = Env::new();
    let (_, first) = env.ok(&["-t", "app:v1", "--progress", "plain", "fixtures/hello"]);
    let first_steps = steps(&first);
    assert_eq!(
        first_steps.len(),
        3,
        "one line per COPY, COPY, WORKDIR:\n{first}"
    );
    assert!(
        first_steps
            .iter()
            .any(|(_, h, _)| h.contains("COPY hello.txt /hello.txt")),
        "{first}"
    );
    assert!(
        first_steps.iter().all(|(_, _, s)| !s.is_empty()),
        "every step ends CACHED or DONE:\n{first}"
    );
    assert!(first.contains("app:v1"), "summary names the tag:\n{first}");
    assert!(
        first.contains(&env.root().display().to_string()),
        "and the store:\n{first}"
    );

    let (images, _) = env.ok(&["images"]);
    let row = images
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap_or_else(|| panic!("app listed:\n{images}"));
    assert!(row.split_whitespace().any(|c| c == "v1"), "{row}");

    // The same build again: every step comes from the cache, and the digest is the same.
    let (_, second) = env.ok(&[
        "build",
        "-t",
        "app:v1",
        "--progress=plain",
        "fixtures/hello",
    ]);
    let second_steps = steps(&second);
    assert_eq!(second_steps.len(), first_steps.len(), "{second}");
    for (n, header, status) in &second_steps {
        assert_eq!(status, "CACHED", "#{n} {header} in:\n{second}");
    }
    assert_eq!(built_digest(&first), built_digest(&second));
}

#[test]
fn steps_are_labelled_like_buildkit() {
    let env = Env::new();
    let (_, err) = env.ok(&["--progress", "plain", "fixtures/hello"]);
    // fixtures/hello is FROM scratch, LABEL, COPY, COPY, ENV, WORKDIR, CMD: as in BuildKit,
    // only COPY, COPY and WORKDIR become steps (scratch has no FROM step).
    let headers: Vec<String> = steps(&err).into_iter().map(|(_, h, _)| h).collect();
    assert_eq!(
        headers,
        [
            "[1/3] COPY hello.txt /hello.txt",
            "[2/3] COPY greeting/ /greeting/",
            "[3/3] WORKDIR /greeting",
        ],
        "{err}"
    );
    for hidden in ["FROM", "LABEL", "ENV", "CMD"] {
        assert!(
            !err.contains(&format!("] {hidden} ")),
            "{hidden} in:\n{err}"
        );
    }
}

#[test]
fn quiet_prints_only_the_digest() {
    let env = Env::new();
    let out = env.rbuild(&["--progress", "quiet", "-t", "q:1", "fixtures/hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let digest = stdout.trim();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{stdout:?}"
    );
    assert_eq!(text(&out.stderr), "", "quiet means quiet");
}

#[test]
fn rawjson_is_one_object_per_line() {
    let env = Env::new();
    let out = env.rbuild(&["--progress", "rawjson", "-t", "j:1", "fixtures/hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let values: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(values.iter().any(|v| v["type"] == "started"));
    let result = values.last().expect("events");
    assert_eq!(result["type"], "result");
    assert!(result["digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert_eq!(result["tags"][0], "docker.io/library/j:1");
}

#[test]
fn dockerfile_from_stdin_without_context() {
    let env = Env::new();
    let dockerfile = "FROM scratch\nENV A=1\nLABEL purpose=stdin\n";
    let out = env.rbuild_stdin(
        &["build", "-t", "stdin:v1", "--progress", "plain", "-"],
        Some(dockerfile),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (inspect, _) = env.ok(&["inspect", "stdin:v1"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    assert_eq!(v["config"]["config"]["Labels"]["purpose"], "stdin");
    assert!(v["config"]["config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == "A=1")));
}

#[test]
fn labels_build_args_and_epoch_reach_the_image() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch\nARG VERSION\nARG FROM_ENV\nLABEL version=$VERSION from_env=$FROM_ENV\n",
        )],
    );
    let ctx = ctx.display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args([
            "-t",
            "meta:v1",
            "--label",
            "team=build",
            "--build-arg",
            "VERSION=1.2",
            "--build-arg",
            "FROM_ENV",
            "--progress",
            "plain",
            &ctx,
        ])
        .env("RBUILD_ROOT", env.root())
        .env("FROM_ENV", "yes")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (inspect, _) = env.ok(&["inspect", "meta:v1"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    let labels = &v["config"]["config"]["Labels"];
    assert_eq!(labels["team"], "build");
    assert_eq!(labels["version"], "1.2");
    assert_eq!(labels["from_env"], "yes");
    assert_eq!(v["config"]["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn run_output_is_shown_under_its_step() {
    let env = Env::new();
    env.import_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox:test\nRUN echo building-now && echo to-stderr >&2\n",
        )],
    );
    let (_, err) = env.ok(&[
        "-t",
        "r:1",
        "--progress",
        "plain",
        &ctx.display().to_string(),
    ]);
    let header = err
        .lines()
        .find(|l| l.contains("RUN echo building-now"))
        .unwrap_or_else(|| panic!("{err}"));
    let n = header.split_whitespace().next().expect("#N");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("{n} ")) && l.ends_with(" building-now")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with(n) && l.ends_with(" to-stderr")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with(&format!("{n} DONE "))),
        "{err}"
    );
}
