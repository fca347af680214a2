//! The step cache across builds: an unchanged rebuild is all hits and writes nothing, an edited
//! context file rebuilds only the steps that read it, an unused build arg rebuilds nothing.

use crate::build_support::{
    blobs, build, copy_fixture, old, request, step_outcomes, store_with_busybox,
};
use crate::support::write_old;

#[test]
fn an_unchanged_rebuild_is_all_cache_hits_and_writes_no_blob() {
    let t = store_with_busybox();
    let case = copy_fixture("build-cache", &t.dir.path().join("case"), old());
    let (first, events) = build(&t.store, &request(&case));
    assert!(
        step_outcomes(&events).values().any(|cached| !cached),
        "first build works"
    );
    let before = blobs(&t.store);
    let (second, events) = build(&t.store, &request(&case));
    assert_eq!(second.cached, second.steps, "{:?}", step_outcomes(&events));
    assert_eq!(second.manifest_digest, first.manifest_digest);
    assert_eq!(
        blobs(&t.store),
        before,
        "no layer (or any blob) was written"
    );
}

#[test]
fn editing_one_file_rebuilds_only_the_steps_that_read_it() {
    let t = store_with_busybox();
    let case = copy_fixture("build-cache", &t.dir.path().join("case"), old());
    let (first, _) = build(&t.store, &request(&case));
    // Same size, same (old) mtime: only the ctime and the content tell the change.
    write_old(&case.join("context/b.txt"), b"BRAVO\n");
    let (second, events) = build(&t.store, &request(&case));
    let outcomes = step_outcomes(&events);
    assert_eq!(
        outcomes.get("[stage-0] COPY a.txt /a.txt"),
        Some(&true),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get("[stage-0] COPY b.txt /b.txt"),
        Some(&false),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get("[stage-0] ARG UNUSED=1"),
        Some(&true),
        "{outcomes:?}"
    );
    assert_ne!(second.manifest_digest, first.manifest_digest);
    let a_layers = |o: &rbuild::BuildOutcome| o.image.config.rootfs.diff_ids[..2].to_vec();
    assert_eq!(
        a_layers(&first),
        a_layers(&second),
        "base and COPY a.txt layers are reused"
    );
}

#[test]
fn an_unused_build_arg_rebuilds_nothing() {
    let t = store_with_busybox();
    let case = copy_fixture("build-cache", &t.dir.path().join("case"), old());
    let (first, _) = build(&t.store, &request(&case));

    let mut undeclared = request(&case);
    undeclared
        .build_args
        .insert("NOBODY_READS_ME".into(), "x".into());
    let (second, _) = build(&t.store, &undeclared);
    assert_eq!(second.cached, second.steps);
    assert_eq!(second.manifest_digest, first.manifest_digest);

    let mut declared = request(&case);
    declared.build_args.insert("UNUSED".into(), "2".into());
    let (third, events) = build(&t.store, &declared);
    let outcomes = step_outcomes(&events);
    for (name, cached) in &outcomes {
        if name.contains("COPY") {
            assert!(cached, "{name} was rebuilt: {outcomes:?}");
        }
    }
    assert_eq!(
        third.image.config.rootfs.diff_ids, first.image.config.rootfs.diff_ids,
        "no layer changed"
    );
}

#[test]
fn no_cache_executes_every_step_and_gives_the_same_image() {
    let t = store_with_busybox();
    let case = copy_fixture("build-cache", &t.dir.path().join("case"), old());
    let (first, _) = build(&t.store, &request(&case));
    let mut req = request(&case);
    req.no_cache = true;
    let (second, events) = build(&t.store, &req);
    let outcomes = step_outcomes(&events);
    assert!(outcomes
        .iter()
        .filter(|(n, _)| n.contains("COPY"))
        .all(|(_, cached)| !cached));
    assert_eq!(
        second.manifest_digest, first.manifest_digest,
        "deterministic layers"
    );
}

#[test]
fn a_garbage_collected_layer_is_a_miss() {
    let t = store_with_busybox();
    let case = copy_fixture("build-cache", &t.dir.path().join("case"), old());
    let (first, _) = build(&t.store, &request(&case));
    // Drop the last COPY layer's blob behind the cache's back.
    let layers = first.image.layers().expect("layers");
    let last = layers.last().expect("a layer");
    std::fs::remove_file(t.store.blobs().blob_path(&last.digest)).expect("remove blob");
    let (second, events) = build(&t.store, &request(&case));
    let outcomes = step_outcomes(&events);
    assert_eq!(
        outcomes.get("[stage-0] COPY b.txt /b.txt"),
        Some(&false),
        "{outcomes:?}"
    );
    assert_eq!(second.manifest_digest, first.manifest_digest);
    assert!(
        t.store.blobs().has(&last.digest),
        "the layer was written again"
    );
}

#[test]
fn dockerignored_files_are_neither_copied_nor_keyed() {
    let t = store_with_busybox();
    let case = copy_fixture("build-metadata", &t.dir.path().join("case"), old());
    let ctx = case.join("context");
    let text = "FROM scratch\nCOPY . /ctx/\n";
    let (first, _) = build(
        &t.store,
        &crate::build_support::text_request(Some(&ctx), text),
    );
    let dest = t.dir.path().join("rootfs");
    rbuild::export(
        &t.store,
        &first.image,
        &[],
        &rbuild::Output::Local { dest: dest.clone() },
    )
    .expect("export");
    assert!(dest.join("ctx/hello.txt").is_file());
    assert!(dest.join("ctx/data/x.txt").is_file());
    assert!(
        !dest.join("ctx/secret.key").exists(),
        ".dockerignore excludes *.key"
    );
    write_old(&ctx.join("secret.key"), b"a different secret");
    let (second, _) = build(
        &t.store,
        &crate::build_support::text_request(Some(&ctx), text),
    );
    assert_eq!(
        second.cached, second.steps,
        "an ignored file does not invalidate COPY ."
    );
    write_old(&ctx.join("hello.txt"), b"changed\n");
    let (third, _) = build(
        &t.store,
        &crate::build_support::text_request(Some(&ctx), text),
    );
    assert!(third.cached < third.steps);
}
