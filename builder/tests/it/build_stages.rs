//! Multi-stage builds: `COPY --from` a stage by name and by index and from an image, `--target`,
//! and only the steps the target needs run.

use std::fs;

use serde_json::json;

use crate::build_sources::rootfs_of;
use crate::build_support::{build, config_json, copy_fixture, old, request, store_with_busybox};

#[test]
fn release_copies_from_stages_by_name_index_and_image() {
    let t = store_with_busybox();
    let case = copy_fixture("build-stages", &t.dir.path().join("case"), old());
    let (out, _) = build(&t.store, &request(&case));
    let root = rootfs_of(&t, &out, "rootfs");
    assert_eq!(
        fs::read_to_string(root.join("app/one.txt")).expect("one"),
        "one\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("app/two.txt")).expect("two"),
        "two\n"
    );
    assert!(
        root.join("app/out").is_dir(),
        "the build stage's WORKDIR came along"
    );
    assert_eq!(
        fs::read_to_string(root.join("app/extra.txt")).expect("extra"),
        "one\n"
    );
    assert!(root.join("bin/busybox").is_file());
    assert!(
        !root.join("etc").exists(),
        "the release is built on scratch"
    );
    let c = config_json(&out);
    assert_eq!(
        c["config"]["Entrypoint"],
        json!(["/bin/busybox", "cat", "/app/one.txt"])
    );
    assert_eq!(c["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(3));
}

#[test]
fn target_builds_only_what_it_needs() {
    let t = store_with_busybox();
    let case = copy_fixture("build-stages", &t.dir.path().join("case"), old());
    let mut req = request(&case);
    req.target = Some("extra".into());
    let (out, _) = build(&t.store, &req);
    assert_eq!(out.steps, 2, "FROM scratch and one COPY");
    let root = rootfs_of(&t, &out, "rootfs");
    assert_eq!(
        fs::read_to_string(root.join("one.txt")).expect("one"),
        "one\n"
    );
    assert!(!root.join("app").exists());
}

#[test]
fn the_readme_hello_fixture_builds_with_its_dockerfile_inside_the_context() {
    let t = store_with_busybox();
    let case = copy_fixture("hello", &t.dir.path().join("hello"), old());
    let mut req = rbuild::BuildRequest::new(
        Some(case.clone()),
        rbuild::DockerfileSource::Path(case.join("Dockerfile")),
    );
    req.tags = vec!["hello:v1".into()];
    let (out, _) = build(&t.store, &req);
    let root = rootfs_of(&t, &out, "rootfs");
    assert_eq!(
        fs::read_to_string(root.join("hello.txt"))
            .expect("hello")
            .len(),
        18
    );
    assert!(root.join("greeting/de.txt").is_file() && root.join("greeting/fr.txt").is_file());
    let c = config_json(&out);
    assert_eq!(c["config"]["WorkingDir"], "/greeting");
    assert_eq!(c["config"]["Cmd"], json!(["/bin/cat", "/hello.txt"]));
    let empty: Vec<bool> = c["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    // LABEL, COPY, COPY, ENV, WORKDIR (exists: no layer), CMD.
    assert_eq!(empty, vec![true, false, false, true, true, true]);
}
