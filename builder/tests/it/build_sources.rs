//! Image sources: the local store, `oci-layout://`, `docker-archive://`, named build contexts,
//! and base layers passed through byte for byte.

use std::collections::BTreeMap;
use std::fs;

use rbuild::{BuildError, NamedContext};

use crate::build_support::{build, old_files, store_with_busybox, text_request};

/// Export `out` as a plain directory `name` under the test store's scratch dir (shared with the
/// other `build_*` suites).
pub(crate) fn rootfs_of(
    t: &crate::build_support::TestStore,
    out: &rbuild::BuildOutcome,
    name: &str,
) -> std::path::PathBuf {
    let dest = t.dir.path().join(name);
    rbuild::export(
        &t.store,
        &out.image,
        &[],
        &rbuild::Output::Local { dest: dest.clone() },
    )
    .expect("export local");
    dest
}

#[test]
fn base_layers_pass_through_byte_for_byte() {
    let t = store_with_busybox();
    let base = t.store.resolve("busybox:test").expect("busybox");
    let (out, _) = build(
        &t.store,
        &text_request(None, "FROM busybox:test\nLABEL a=b\n"),
    );
    let got = out.image.layers().expect("layers");
    let want = base.layers().expect("layers");
    assert_eq!(got, want, "same blobs, same media types");
}

#[test]
fn oci_layout_reference_and_named_context() {
    let t = store_with_busybox();
    let layout = t.dir.path().join("layout");
    let bb = rbuild_test_support::busybox_layout(&layout).expect("layout");
    let empty = tempfile::tempdir().expect("empty store dir");
    let store = rbuild::Store::open(empty.path()).expect("store");

    let text = format!(
        "FROM oci-layout://{}:test\nLABEL via=url\n",
        layout.display()
    );
    let (out, _) = build(&store, &text_request(None, &text));
    assert_eq!(
        out.image.layers().expect("layers"),
        bb.image.layers().expect("layers")
    );

    let mut req = text_request(None, "FROM base\nLABEL via=context\n");
    req.named_contexts.insert(
        "base".into(),
        NamedContext::OciLayout {
            dir: layout.clone(),
            reference: Some("test".into()),
        },
    );
    let (out, _) = build(&store, &req);
    assert_eq!(
        out.image
            .config
            .config
            .labels
            .get("via")
            .map(String::as_str),
        Some("context")
    );
    assert_eq!(
        out.image.layers().expect("layers"),
        bb.image.layers().expect("layers")
    );
}

#[test]
fn docker_archive_reference() {
    let t = store_with_busybox();
    let archive = t.dir.path().join("bb.tar");
    let bb = t.store.resolve("busybox:test").expect("busybox");
    rbuild::export(
        &t.store,
        &bb,
        &[],
        &rbuild::Output::Docker {
            dest: archive.clone(),
        },
    )
    .expect("docker archive");
    let empty = tempfile::tempdir().expect("empty store dir");
    let store = rbuild::Store::open(empty.path()).expect("store");
    let text = format!(
        "FROM docker-archive://{}\nCOPY --from=docker-archive://{} /bin/busybox /bb\n",
        archive.display(),
        archive.display()
    );
    let (out, _) = build(&store, &text_request(None, &text));
    let diff_ids = &out.image.config.rootfs.diff_ids;
    assert_eq!(
        diff_ids[0], bb.config.rootfs.diff_ids[0],
        "same layer content"
    );
    let t2 = crate::build_support::TestStore { dir: empty, store };
    let root = rootfs_of(&t2, &out, "rootfs");
    assert!(root.join("bb").is_file());
}

#[test]
fn named_directory_context_and_docker_image_alias() {
    let t = store_with_busybox();
    let files = t.dir.path().join("files");
    old_files(
        &files,
        &[("f.txt", "from a named context\n"), ("sub/g.txt", "g\n")],
    );
    let mut req = text_request(
        None,
        "FROM alpine\nCOPY --from=files f.txt /f.txt\nCOPY --from=files sub /sub\n",
    );
    req.named_contexts = BTreeMap::from([
        ("files".to_string(), NamedContext::Dir(files.clone())),
        (
            "alpine".to_string(),
            NamedContext::DockerImage("busybox:test".into()),
        ),
    ]);
    let (out, _) = build(&t.store, &req);
    let root = rootfs_of(&t, &out, "rootfs");
    assert_eq!(
        fs::read_to_string(root.join("f.txt")).expect("f"),
        "from a named context\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("sub/g.txt")).expect("g"),
        "g\n"
    );
    assert!(
        root.join("bin/busybox").is_file(),
        "alpine was replaced by busybox:test"
    );

    let mut from_dir = text_request(None, "FROM files\nLABEL x=y\n");
    from_dir.named_contexts = BTreeMap::from([("files".to_string(), NamedContext::Dir(files))]);
    let (out, _) = build(&t.store, &from_dir);
    let root = rootfs_of(&t, &out, "rootfs2");
    assert!(
        root.join("f.txt").is_file(),
        "FROM a named directory is that directory"
    );
}

#[test]
fn an_unknown_image_is_a_clear_error_at_its_line() {
    // A registry on a loopback port nothing listens on: the pull fails fast and no test ever
    // reaches a public registry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let reference = format!("127.0.0.1:{port}/nosuch/image:1");
    let t = store_with_busybox();
    let err = rbuild::build(
        &t.store,
        &text_request(
            None,
            &format!("FROM scratch\nLABEL a=b\nFROM {reference}\n"),
        ),
        &rbuild::events::NullSink,
    )
    .expect_err("no such image");
    let BuildError::Step {
        origin, message, ..
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(origin.start_line, 3);
    let expected =
        format!("image source {reference}: not found in the local store; pull {reference}: ");
    assert!(message.starts_with(&expected), "{message}");
}
