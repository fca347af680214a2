//! `rbuild plan` and `rbuild debug parse` on the fixtures, through the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

fn rbuild(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .current_dir(workspace())
        .env_remove("APP_VERSION")
        .output()
        .expect("rbuild runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn plan_with_target_and_build_arg() {
    let out = rbuild(&[
        "plan",
        "-f",
        "fixtures/multistage/Dockerfile",
        "--target",
        "test",
        "--build-arg",
        "BASE_IMAGE=alpine:3.20",
        "--platform",
        "linux/amd64",
        "fixtures/multistage/context",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let want = "\
plan for fixtures/multistage/Dockerfile (target #2 test, platform linux/amd64): 3 of 4 stages
  #0  base   from image alpine:3.20  linux/amd64  3 instructions, needs image alpine:3.20
  #1  build  from stage #0 base      linux/amd64  3 instructions, needs stage #0 base
  #2  test   from stage #0 base      linux/amd64  2 instructions, needs stage #0 base, stage #1 build
skipped: #3 release
";
    assert_eq!(text(&out.stdout), want);
}

#[test]
fn plan_defaults_to_last_stage_and_context_dockerfile() {
    let out = rbuild(&[
        "plan",
        "--platform",
        "linux/arm64",
        "--format",
        "json",
        "fixtures/multistage/context",
        "-f",
        "fixtures/multistage/Dockerfile",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["target"], 3);
    assert_eq!(v["build_order"], serde_json::json!([0, 1, 3]));
    assert_eq!(v["skipped"], serde_json::json!([2]));
    assert_eq!(v["images"], serde_json::json!(["busybox:1.36"]));
    assert_eq!(v["stages"][3]["platform"], "linux/arm64");
    let deps = &v["stages"][3]["depends_on"];
    assert_eq!(
        deps[0],
        serde_json::json!({"kind": "stage", "index": 0, "via": "copy-from", "line": 25})
    );
    assert_eq!(
        deps[1],
        serde_json::json!({"kind": "stage", "index": 1, "via": "copy-from", "line": 26})
    );

    // Without -f, CONTEXT/Dockerfile is read: the context dir has none.
    let out = rbuild(&["plan", "fixtures/multistage/context"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("fixtures/multistage/context/Dockerfile"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn broken_dockerfile_names_file_and_line() {
    let out = rbuild(&[
        "plan",
        "-f",
        "fixtures/broken/Dockerfile",
        "fixtures/broken/context",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("fixtures/broken/Dockerfile:4"), "{err}");
    assert!(
        err.contains("COPY --chmod=0644 onlyone"),
        "source line shown: {err}"
    );
    assert!(
        err.contains("COPY requires at least two arguments"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_target_fails() {
    let out = rbuild(&[
        "plan",
        "-f",
        "fixtures/multistage/Dockerfile",
        "--target",
        "tset",
        ".",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("target stage \"tset\" could not be found (did you mean test?)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["plan"][..],
        &["plan", "--platform", "linux/", "."],
        &["frobnicate"],
    ] {
        let out = rbuild(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn debug_parse_prints_buildkit_dump() {
    let out = rbuild(&["debug", "parse", "fixtures/broken/Dockerfile"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "(from \"busybox:1.36\" \"AS\" \"base\")\n(workdir \"/src\")\n(copy [\"--chmod=0644\"] \"onlyone\")\n(run \"true\")\n"
    );
}
