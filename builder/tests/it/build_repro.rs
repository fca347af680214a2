//! Reproducibility: the same inputs give the same manifest digest in other directories, with
//! other file mtimes, at other times, in other stores.

use std::time::{Duration, SystemTime};

use crate::build_support::{build, copy_fixture, request, store_with_busybox};

#[test]
fn same_inputs_elsewhere_later_with_other_mtimes_give_the_same_digest() {
    let a = store_with_busybox();
    let b = store_with_busybox();
    let case_a = copy_fixture(
        "build-metadata",
        &a.dir.path().join("one/deep/case"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000),
    );
    let (first, _) = build(&a.store, &request(&case_a));
    std::thread::sleep(Duration::from_millis(1100));
    let case_b = copy_fixture(
        "build-metadata",
        &b.dir.path().join("other"),
        SystemTime::now(),
    );
    let (second, _) = build(&b.store, &request(&case_b));
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_eq!(first.config_digest, second.config_digest);
}

#[test]
fn the_stages_fixture_is_reproducible_too() {
    let a = store_with_busybox();
    let case = copy_fixture(
        "build-stages",
        &a.dir.path().join("case"),
        SystemTime::now(),
    );
    let (first, _) = build(&a.store, &request(&case));
    let b = store_with_busybox();
    let case = copy_fixture(
        "build-stages",
        &b.dir.path().join("elsewhere"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(86_400),
    );
    let (second, _) = build(&b.store, &request(&case));
    assert_eq!(first.manifest_digest, second.manifest_digest);
}
