//! The remote layer cache: `--cache-to` a registry (Debian's `docker-registry` on 127.0.0.1) or
//! an OCI layout directory, then `--cache-from` on a fresh store. The RUN steps write random
//! bytes, so a step that ran again would change the image digest: equal digests prove the
//! layers came from the cache.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild::events::Event;
use rbuild::solve::BuildRequest;
use rbuild::{BuildOutcome, CacheExport, CacheImport};
use rbuild_layers::digest::Digest;

use rbuild_test_support::BUSYBOX_REF as BUSYBOX;

use crate::build_support::{
    build, step_outcomes, store_with_busybox, text_request, vertex_logs, TestStore,
};
use crate::registry_support::{seed, skopeo, AuthMode, Registry};

/// Two stages; every RUN writes random bytes.
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS builder\n\
         RUN busybox head -c 16 /dev/urandom > /r\n\
         FROM {base}\n\
         COPY --from=builder /r /r\n\
         RUN busybox head -c 16 /dev/urandom > /s\n\
         COPY hello.txt /hello.txt\n\
         RUN busybox head -c 16 /dev/urandom > /t\n\
         ENV DONE=1\n"
    )
}

const BUILDER_RUN: &str = "[builder] RUN busybox head -c 16 /dev/urandom > /r";
const COPY_FROM: &str = "[stage-1] COPY --from=builder /r /r";
const RUN_S: &str = "[stage-1] RUN busybox head -c 16 /dev/urandom > /s";
const COPY_HELLO: &str = "[stage-1] COPY hello.txt /hello.txt";
const RUN_T: &str = "[stage-1] RUN busybox head -c 16 /dev/urandom > /t";
const ENV: &str = "[stage-1] ENV DONE=1";

fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("context dir");
    fs::write(ctx.join("hello.txt"), "hello\n").expect("context file");
    ctx
}

/// A scratch directory holding the build context, `<dir>/ctx`.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    (dir, ctx)
}

fn request(ctx: &Path, base: &str) -> BuildRequest {
    text_request(Some(ctx), &dockerfile(base))
}

fn export(spec: &str) -> CacheExport {
    spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn import(spec: &str) -> CacheImport {
    spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// `type=local,dest=DIR,mode=max`: every step's record, into the layout at `dir`.
fn local_max(dir: &Path) -> String {
    format!("type=local,dest={},mode=max", dir.display())
}

/// `type=local,src=DIR`: the cache of the layout at `dir`.
fn local_src(dir: &Path) -> CacheImport {
    import(&format!("type=local,src={}", dir.display()))
}

/// A store with busybox and a request (`FROM` busybox) over `ctx` exporting to `to`.
fn exporting(ctx: &Path, to: &[String]) -> (TestStore, BuildRequest) {
    let t = store_with_busybox();
    let mut req = request(ctx, BUSYBOX);
    req.cache_to = to.iter().map(|spec| export(spec)).collect();
    (t, req)
}

/// The steps that were executed (not cached), sorted.
fn executed(events: &[Event]) -> Vec<String> {
    step_outcomes(events)
        .into_iter()
        .filter(|(_, cached)| !cached)
        .map(|(name, _)| name)
        .filter(|name| name.starts_with('[') && !name.starts_with("[internal]"))
        .collect()
}

/// Build on a fresh store (busybox imported) importing `from`.
fn fresh_build(
    ctx: &Path,
    base: &str,
    from: &[CacheImport],
) -> (TestStore, BuildOutcome, Vec<Event>) {
    let t = store_with_busybox();
    let mut req = request(ctx, base);
    req.cache_from = from.to_vec();
    let (out, events) = build(&t.store, &req);
    (t, out, events)
}

#[test]
fn registry_cache_max_makes_a_fresh_store_run_no_step() {
    let registry = Registry::start(AuthMode::Plain);
    seed(&registry, None);
    let base = format!("{}/base:1", registry.host);
    let cache_ref = format!("{}/app:cache", registry.host);
    let (dir, ctx) = scratch();

    let first_store = rbuild::Store::open(dir.path().join("first")).expect("store");
    let mut req = request(&ctx, &base);
    req.cache_to = vec![export(&format!("type=registry,ref={cache_ref},mode=max"))];
    let (first, events) = build(&first_store, &req);
    assert_eq!(first.cache_exports.len(), 1);
    let exported = &first.cache_exports[0];
    assert_eq!(exported.location, cache_ref);
    // Every step with a record: the builder's RUN; two COPYs, two RUNs and the ENV.
    assert_eq!(exported.records, 6, "{exported:?}");
    let logs = vertex_logs(&events, "exporting cache to");
    assert!(
        logs.iter()
            .any(|l| l.contains(&exported.manifest_digest.to_string())),
        "{logs:?}"
    );

    // The artifact reads back with skopeo, with our config media type.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{cache_ref}"),
    ]);
    assert_eq!(Digest::of(raw.as_bytes()), exported.manifest_digest);
    let manifest: serde_json::Value = serde_json::from_str(&raw).expect("manifest json");
    assert_eq!(
        manifest["config"]["mediaType"],
        rbuild::cache::remote::CONFIG_MEDIA_TYPE
    );
    assert_eq!(
        manifest["artifactType"],
        rbuild::cache::remote::ARTIFACT_TYPE
    );

    // A fresh store pulls the base and the cached layers, and runs nothing.
    let from = [import(&cache_ref)];
    let (_t, second, events) = fresh_build(&ctx, &base, &from);
    assert_eq!(second.cached, second.steps, "{:?}", step_outcomes(&events));
    assert!(executed(&events).is_empty(), "{:?}", executed(&events));
    assert_eq!(second.manifest_digest, first.manifest_digest);
    assert!(
        second.cache_warnings.is_empty(),
        "{:?}",
        second.cache_warnings
    );
    let imported = vertex_logs(&events, "importing cache manifest from");
    assert!(
        imported.iter().any(|l| l.contains("6 records")),
        "{imported:?}"
    );
    // Each distinct layer was fetched once, by the first step that hit it (the builder's /r
    // and the COPY of it are the same blob).
    let fetched = events
        .iter()
        .filter(|e| matches!(e, Event::Log { line, .. } if line.starts_with("importing layer ")))
        .count();
    assert_eq!(fetched, exported.layers);
    assert_eq!(exported.layers, 4);

    // Exporting the same build again gives the same cache manifest.
    let (again, _) = build(&first_store, &req);
    assert_eq!(again.cached, again.steps);
    assert_eq!(
        again.cache_exports[0].manifest_digest,
        exported.manifest_digest
    );
}

#[test]
fn local_cache_round_trip_and_modes() {
    let (dir, ctx) = scratch();
    let max_dir = dir.path().join("cache-max");
    let min_dir = dir.path().join("cache-min");

    let (t, req) = exporting(
        &ctx,
        &[
            local_max(&max_dir),
            format!("type=local,dest={},tag=v1", min_dir.display()),
        ],
    );
    let (first, _) = build(&t.store, &req);
    assert_eq!(first.cache_exports.len(), 2);
    assert_eq!(first.cache_exports[0].records, 6);
    // min: the final stage's chain (two COPYs, two RUNs, the ENV), not the builder's RUN.
    assert_eq!(first.cache_exports[1].records, 5);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(min_dir.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );

    // max: everything hits on a fresh store, and the image is the same.
    let from = [local_src(&max_dir)];
    let (_t2, second, events) = fresh_build(&ctx, BUSYBOX, &from);
    assert!(executed(&events).is_empty(), "{:?}", executed(&events));
    assert_eq!(second.cached, second.steps);
    assert_eq!(second.manifest_digest, first.manifest_digest);

    // --no-cache ignores the imported records (and does not read them).
    let t4 = store_with_busybox();
    let mut no_cache = request(&ctx, BUSYBOX);
    no_cache.cache_from = from.to_vec();
    no_cache.no_cache = true;
    let (_, events) = build(&t4.store, &no_cache);
    assert_eq!(executed(&events).len(), 6, "{:?}", executed(&events));
    assert!(vertex_logs(&events, "importing cache").is_empty());

    // min: the builder stage runs again, the final stage's own steps hit (their keys depend on
    // the builder's inputs, not on its output).
    let from = [import(&format!(
        "type=local,src={},tag=v1",
        min_dir.display()
    ))];
    let (_t3, third, events) = fresh_build(&ctx, BUSYBOX, &from);
    assert_eq!(executed(&events), vec![BUILDER_RUN.to_string()]);
    assert_eq!(third.manifest_digest, first.manifest_digest);

    // Two exports of the same build give the same cache manifest.
    let (again, _) = build(&t.store, &req);
    assert_eq!(again.cache_exports, first.cache_exports);
}

#[test]
fn a_changed_context_file_misses_exactly_the_dependent_steps() {
    let (dir, ctx) = scratch();
    let cache = dir.path().join("cache");
    let (t, req) = exporting(&ctx, &[local_max(&cache)]);
    let (first, _) = build(&t.store, &req);

    fs::write(ctx.join("hello.txt"), "changed\n").expect("edit");
    let from = [local_src(&cache)];
    let (_t2, second, events) = fresh_build(&ctx, BUSYBOX, &from);
    let mut want = vec![COPY_HELLO.to_string(), ENV.to_string(), RUN_T.to_string()];
    want.sort();
    assert_eq!(executed(&events), want);
    let outcomes = step_outcomes(&events);
    for hit in [BUILDER_RUN, COPY_FROM, RUN_S] {
        assert_eq!(outcomes.get(hit), Some(&true), "{hit}: {outcomes:?}");
    }
    assert_ne!(second.manifest_digest, first.manifest_digest);
}

#[test]
fn a_missing_cache_only_warns() {
    let (dir, ctx) = scratch();
    let registry = Registry::start(AuthMode::Plain);
    let from = [
        import(&format!("{}/nothing:here", registry.host)),
        import(&format!(
            "type=local,src={}",
            dir.path().join("no-such-cache").display()
        )),
    ];
    let (_t, out, events) = fresh_build(&ctx, BUSYBOX, &from);
    assert_eq!(out.cache_warnings.len(), 2, "{:?}", out.cache_warnings);
    assert!(
        out.cache_warnings.iter().all(|w| w.contains("not found")),
        "{:?}",
        out.cache_warnings
    );
    let logs = vertex_logs(&events, "importing cache manifest from");
    assert_eq!(
        logs.iter().filter(|l| l.starts_with("WARNING: ")).count(),
        2,
        "{logs:?}"
    );
    assert_eq!(
        out.cached,
        2,
        "only the FROMs: {:?}",
        step_outcomes(&events)
    );
}

#[test]
fn a_deleted_layer_blob_makes_that_step_run() {
    let (dir, ctx) = scratch();
    let cache = dir.path().join("cache");
    let (t, req) = exporting(&ctx, &[local_max(&cache)]);
    build(&t.store, &req);

    // Delete the layer of the final stage's last RUN from the layout.
    let config: rbuild::cache::remote::CacheConfig =
        serde_json::from_slice(&fs::read(config_blob(&cache)).expect("config blob"))
            .expect("config json");
    let run_t_layer = config
        .records
        .into_iter()
        .find(|e| e.record.history.created_by.contains("> /t"))
        .and_then(|e| e.record.layer)
        .expect("the RUN /t record has a layer");
    fs::remove_file(cache.join("blobs/sha256").join(run_t_layer.digest.hex()))
        .expect("delete the layer blob");

    let from = [local_src(&cache)];
    let (_t2, out, events) = fresh_build(&ctx, BUSYBOX, &from);
    assert_eq!(executed(&events), vec![RUN_T.to_string()]);
    assert_eq!(out.cache_warnings.len(), 1, "{:?}", out.cache_warnings);
    assert!(out.cache_warnings[0].contains("unavailable"));
}

/// The config blob of the only cache manifest in the layout at `dir`.
fn config_blob(dir: &Path) -> PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json"))
            .expect("json");
    let manifest_digest: Digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .parse()
        .expect("digest");
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("blobs/sha256").join(manifest_digest.hex())).expect("manifest"),
    )
    .expect("json");
    let config: Digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .parse()
        .expect("digest");
    dir.join("blobs/sha256").join(config.hex())
}

#[test]
fn a_failed_export_fails_the_build_unless_ignored() {
    let (dir, ctx) = scratch();
    // A regular file where the layout directory should go.
    let blocked = dir.path().join("blocked");
    fs::write(&blocked, "not a directory").expect("write");
    let (t, mut req) = exporting(&ctx, &[format!("type=local,dest={}", blocked.display())]);
    let err = rbuild::build(&t.store, &req, &rbuild::events::NullSink).expect_err("export fails");
    let text = err.to_string();
    assert!(text.contains(&blocked.display().to_string()), "{text}");
    assert!(matches!(err, rbuild::BuildError::Export { .. }), "{err:?}");

    req.cache_to = vec![export(&format!(
        "type=local,dest={},ignore-error=true",
        blocked.display()
    ))];
    let (out, _) = build(&t.store, &req);
    assert!(out.cache_exports.is_empty());
    assert_eq!(out.cache_warnings.len(), 1, "{:?}", out.cache_warnings);
    assert!(out.cache_warnings[0].contains("ignored"));
}

#[test]
fn an_image_is_not_a_cache() {
    let (dir, ctx) = scratch();
    let layout = rbuild_test_support::busybox_layout(&dir.path().join("image")).expect("layout");
    let from = [import(&format!(
        "type=local,src={},tag=test",
        layout.layout.display()
    ))];
    let (_t, out, _) = fresh_build(&ctx, BUSYBOX, &from);
    assert_eq!(out.cache_warnings.len(), 1, "{:?}", out.cache_warnings);
    let w = &out.cache_warnings[0];
    assert!(
        w.contains(&layout.layout.display().to_string()) && w.contains("config.mediaType"),
        "{w}"
    );
}
