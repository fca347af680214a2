//! Exporting a built image: OCI layout (dir and tar), docker archive, local rootfs and rootfs
//! tar; and the store's view of built images (list, tag, remove, prune).

use std::collections::BTreeSet;
use std::fs::File;
use std::process::Command;

use rbuild::Output;

use crate::build_support::{build, copy_fixture, old, request, store_with_busybox};

fn tar_names(path: &std::path::Path) -> BTreeSet<String> {
    let mut archive = tar::Archive::new(File::open(path).expect("open tar"));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

#[test]
fn every_output_format() {
    let t = store_with_busybox();
    let case = copy_fixture("build-stages", &t.dir.path().join("case"), old());
    let mut req = request(&case);
    req.tags = vec!["stages:v1".into()];
    let (out, _) = build(&t.store, &req);
    let scratch = t.dir.path();

    let oci_tar = scratch.join("image-oci.tar");
    rbuild::export(
        &t.store,
        &out.image,
        &out.tags,
        &Output::Oci {
            dest: oci_tar.clone(),
            tar: true,
        },
    )
    .expect("oci tar");
    let names = tar_names(&oci_tar);
    assert!(
        names.contains("index.json") && names.contains("oci-layout"),
        "{names:?}"
    );
    assert!(names.contains(&format!("blobs/sha256/{}", out.manifest_digest.hex())));

    let docker = scratch.join("image-docker.tar");
    rbuild::export(
        &t.store,
        &out.image,
        &out.tags,
        &Output::Docker {
            dest: docker.clone(),
        },
    )
    .expect("docker");
    assert!(tar_names(&docker).contains("manifest.json"));

    let rootfs_tar = scratch.join("rootfs.tar");
    rbuild::export(
        &t.store,
        &out.image,
        &[],
        &Output::Tar {
            dest: rootfs_tar.clone(),
        },
    )
    .expect("rootfs tar");
    let names = tar_names(&rootfs_tar);
    for want in ["app/one.txt", "app/two.txt", "app/extra.txt", "bin/busybox"] {
        assert!(names.contains(want), "{want} in {names:?}");
    }

    let oci_dir = scratch.join("oci-dir");
    rbuild::export(
        &t.store,
        &out.image,
        &out.tags,
        &Output::Oci {
            dest: oci_dir.clone(),
            tar: false,
        },
    )
    .expect("oci dir");
    let status = Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:v1", oci_dir.display()))
        .output()
        .expect("skopeo");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        rbuild_layers::digest::Digest::of(&status.stdout),
        out.manifest_digest,
        "skopeo reads the same manifest"
    );
}

#[test]
fn the_store_lists_tags_removes_and_prunes_built_images() {
    let t = store_with_busybox();
    let case = copy_fixture("build-cache", &t.dir.path().join("case"), old());
    let mut req = request(&case);
    req.tags = vec!["cache:v1".into(), "ghcr.io/o/cache:v2".into()];
    let (out, _) = build(&t.store, &req);
    let names: Vec<String> = t
        .store
        .images()
        .expect("images")
        .into_iter()
        .map(|s| format!("{}:{}", s.name, s.tag))
        .collect();
    assert_eq!(names, ["busybox:test", "cache:v1", "ghcr.io/o/cache:v2"]);
    let (_, config) = t.store.inspect("cache:v1").expect("inspect");
    assert_eq!(config["config"]["Labels"]["stage"], "cache");
    assert_eq!(t.store.history("cache:v1").expect("history").len(), 5);

    // Nothing is garbage while images and cache records reference it.
    assert_eq!(t.store.prune(false).expect("prune").blobs, 0);
    t.store.rmi("cache:v1").expect("rmi");
    t.store.rmi("ghcr.io/o/cache:v2").expect("rmi");
    let report = t.store.prune(true).expect("prune all");
    assert!(report.blobs >= 4, "{report:?}");
    assert!(report.cache_entries >= 4, "{report:?}");
    assert!(!t.store.blobs().has(&out.manifest_digest));
    assert!(
        t.store.resolve("busybox:test").is_ok(),
        "tagged images survive"
    );
    let (again, _) = build(&t.store, &request(&case));
    assert_eq!(
        again.manifest_digest, out.manifest_digest,
        "rebuilt from scratch"
    );
}

#[test]
fn umoci_unpacks_straight_from_the_store() {
    let t = store_with_busybox();
    let case = copy_fixture("build-metadata", &t.dir.path().join("case"), old());
    let mut req = request(&case);
    req.tags = vec!["meta:v9".into()];
    build(&t.store, &req);
    let bundle = t.dir.path().join("bundle");
    let status = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:v9", t.store.root().display()))
        .arg(&bundle)
        .status()
        .expect("umoci");
    assert!(status.success());
    let hello = std::fs::read_to_string(bundle.join("rootfs/app/hello.txt")).expect("hello");
    assert_eq!(hello, "hello from the context\n");
    assert!(bundle.join("rootfs/data/x.txt").is_file());
    assert!(!bundle.join("rootfs/data/secret.key").exists());
}
