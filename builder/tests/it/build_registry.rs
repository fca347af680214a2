//! Builds against a real registry (Debian's `docker-registry` on 127.0.0.1): `FROM` an image
//! pulled into the store (once; by tag until `--pull`; never again by digest), `--push` of the
//! result with the local digest, credentials from a Docker config with basic and token auth,
//! `FROM` a two-platform index for the host and for `--platform`, and base pulls through a
//! proxy that cuts blobs mid-body.

use std::fs;
use std::path::Path;

use rbuild::events::{CollectSink, Event};
use rbuild::registry::{Credentials, DockerConfig};
use rbuild::solve::BuildRequest;
use rbuild::store::Store;
use rbuild_layers::digest::Digest;

use crate::build_support::{step_outcomes, text_request, vertex_logs};
use crate::registry_support::{
    assert_no_stray_blobs, push_as, seed, skopeo_copy_digest, AuthMode, FlakyProxy, LocalImages,
    Registry, TwoPlatforms, PASSWORD, USER,
};

/// A fresh store and a context with `hello.txt`.
fn workspace() -> (tempfile::TempDir, Store, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let ctx = context(dir.path());
    (dir, store, ctx)
}

/// The manifest digest skopeo copies out of the registry for `reference` (into `dir`).
fn skopeo_digest(dir: &Path, reference: &str, creds: Option<&str>) -> String {
    let oci = dir.join(format!("skopeo-{}", reference.replace(['/', ':'], "_")));
    skopeo_copy_digest(&oci, reference, creds)
}

/// Every layer of the busybox base was pulled (the pull logs say so) and the store names the
/// base `from` by its tag, as `base`.
fn assert_base_pulled(
    events: &[Event],
    images: &LocalImages,
    store: &Store,
    from: &str,
    base: &Digest,
) {
    let logs = pull_logs(events);
    for layer in &images.layers {
        assert!(logs.contains(&format!("pull {layer}: done")), "{logs:?}");
    }
    assert_eq!(&store.resolve_digest(from).expect("base in store"), base);
}

/// The layer digests of a built image, base first.
fn layer_digests(out: &rbuild::BuildOutcome) -> Vec<Digest> {
    out.image
        .layers()
        .expect("layers")
        .into_iter()
        .map(|l| l.digest)
        .collect()
}

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("context dir");
    fs::write(ctx.join("hello.txt"), "hello from the context\n").expect("context file");
    ctx
}

fn request(ctx: &Path, from: &str) -> BuildRequest {
    text_request(
        Some(ctx),
        &format!("FROM {from}\nCOPY hello.txt /hello.txt\nLABEL built=by-rbuild\n"),
    )
}

fn try_build(
    store: &Store,
    req: &BuildRequest,
) -> (Result<rbuild::BuildOutcome, rbuild::BuildError>, Vec<Event>) {
    let sink = CollectSink::new();
    let out = rbuild::build(store, req, &sink);
    (out, sink.events())
}

/// The log lines of the `[internal] load metadata` pseudo-steps.
fn pull_logs(events: &[Event]) -> Vec<String> {
    vertex_logs(events, "[internal] load metadata")
}

#[test]
fn from_a_registry_then_push_and_skopeo_agrees() {
    let mut registry = Registry::start(AuthMode::Plain);
    let (images, base) = seed(&registry, None);
    let (dir, store, ctx) = workspace();
    let from = format!("{}/base:1", registry.host);
    let app = format!("{}/app:v1", registry.host);

    let mut req = request(&ctx, &from);
    req.push = true;
    req.tags = vec![app.clone()];
    let (out, events) = try_build(&store, &req);
    let out = out.unwrap_or_else(|e| panic!("build failed: {e}\n{}", registry.log()));
    // Every layer was pulled, and the base is named in the store by its tag.
    assert_base_pulled(&events, &images, &store, &from, &base);
    // The base layers are mounted from the base repository, not uploaded again.
    let mounted: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } if line.ends_with(": mounted from base") => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(mounted.len(), images.layers.len(), "{events:?}");
    // Pushed with the local digest, and skopeo reads back the same manifest.
    assert_eq!(out.pushed.len(), 1);
    assert_eq!(out.pushed[0].digest, out.manifest_digest);
    assert_eq!(
        skopeo_digest(dir.path(), &app, None),
        out.manifest_digest.to_string()
    );

    // Pulled once: a `--pull` rebuild re-resolves the tag but downloads nothing, and the
    // step cache still hits (same base digest).
    let mut again = request(&ctx, &from);
    again.pull = true;
    let (second, events) = try_build(&store, &again);
    let second = second.expect("rebuild with --pull");
    let logs = pull_logs(&events);
    assert!(logs.iter().all(|l| !l.ends_with(": done")), "{logs:?}");
    assert_eq!(second.manifest_digest, out.manifest_digest);
    assert_eq!(second.cached, second.steps);

    // With the registry gone, the tag in the store and a digest-pinned FROM still build; only
    // `--pull` needs the network.
    registry.stop();
    let (offline, events) = try_build(&store, &request(&ctx, &from));
    let offline = offline.expect("tag in the store builds offline");
    assert_eq!(offline.manifest_digest, out.manifest_digest);
    assert!(pull_logs(&events).is_empty());
    let pinned = format!("{}/base@{base}", registry.host);
    let (by_digest, _) = try_build(&store, &request(&ctx, &pinned));
    by_digest.expect("a pinned FROM with its blobs present never touches the network");
    let mut pull = request(&ctx, &from);
    pull.pull = true;
    let (failed, _) = try_build(&store, &pull);
    assert!(failed.is_err(), "--pull must ask the stopped registry");
}

#[test]
fn a_new_base_under_the_same_tag_changes_the_key_only_with_pull() {
    let registry = Registry::start(AuthMode::Plain);
    let (images, _) = seed(&registry, None);
    let (_dir, store, ctx) = workspace();
    let from = format!("{}/base:1", registry.host);
    let (first, _) = try_build(&store, &request(&ctx, &from));
    let first = first.expect("first build");

    // Push another manifest (the index's other-platform one) under the same tag.
    push_as(&registry, None, &images, &images.other_manifest, "base:1");
    let (cached, _) = try_build(&store, &request(&ctx, &from));
    let cached = cached.expect("without --pull the stored tag is used");
    assert_eq!(cached.manifest_digest, first.manifest_digest);
    assert_eq!(cached.cached, cached.steps);

    let mut req = request(&ctx, &from);
    req.pull = true;
    let (pulled, _) = try_build(&store, &req);
    let pulled = pulled.expect("with --pull the new base is used");
    // The final config is rewritten for the host platform and the layers are the same, so the
    // image may come out equal; but no step may be reused across different base digests.
    assert!(
        pulled.cached < pulled.steps,
        "the new base digest is in the key"
    );
}

#[test]
fn credentials_come_from_the_docker_config() {
    let registry = Registry::start(AuthMode::Basic);
    let (_images, _) = seed(&registry, Some((&registry.host, USER, PASSWORD)));
    let (dir, store, ctx) = workspace();
    let from = format!("{}/base:1", registry.host);
    let config = dir.path().join("docker").join("config.json");

    // No login: the registry says unauthorized.
    let mut req = request(&ctx, &from);
    req.registry_credentials = Some(config.clone());
    let (denied, _) = try_build(&store, &req);
    let err = denied.expect_err("anonymous pull is refused").to_string();
    assert!(err.contains("unauthorized"), "{err}");

    DockerConfig::save_login(
        &config,
        &registry.host,
        &Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        },
    )
    .expect("save login");
    req.push = true;
    req.tags = vec![format!("{}/app:auth", registry.host)];
    let (out, _) = try_build(&store, &req);
    let out = out.unwrap_or_else(|e| panic!("authenticated build: {e}"));
    assert_eq!(out.pushed[0].digest, out.manifest_digest);
}

#[test]
fn docker_image_named_contexts_and_copy_from_pull_too() {
    let registry = Registry::start(AuthMode::Plain);
    let (_images, base) = seed(&registry, None);
    let (_dir, store, ctx) = workspace();
    let mut req = text_request(
        Some(&ctx),
        &format!(
            "FROM base\nCOPY --from={}/base:1 /bin/busybox /copied\n",
            registry.host
        ),
    );
    req.named_contexts.insert(
        "base".into(),
        rbuild::NamedContext::DockerImage(format!("{}/base:1", registry.host)),
    );
    let (out, events) = try_build(&store, &req);
    out.unwrap_or_else(|e| panic!("build failed: {e}"));
    assert_eq!(
        store
            .resolve_digest(&format!("{}/base:1", registry.host))
            .expect("pulled into the store"),
        base
    );
    assert!(!pull_logs(&events).is_empty());
}

/// `FROM` a two-platform index: the host's child by default, the other child with
/// `--platform` (COPY only: nothing runs), the platform ARGs as BuildKit defines them, and a
/// RUN for the other platform refused with the platform named. Both results round-trip through
/// the registry with their local digests.
#[test]
fn a_multi_platform_base_builds_for_the_host_and_for_another_platform() {
    let registry = Registry::start(AuthMode::Plain);
    let images = LocalImages::new();
    let TwoPlatforms {
        index,
        other_manifest,
        other_layer,
        other_platform,
    } = images.two_platforms();
    push_as(&registry, None, &images, &index, "multi:1");
    let (dir, store, ctx) = workspace();
    let from = format!("{}/multi:1", registry.host);
    let dockerfile = format!(
        "FROM {from}\nARG TARGETPLATFORM\nARG BUILDPLATFORM\nCOPY hello.txt /hello.txt\n\
         LABEL target=$TARGETPLATFORM build=$BUILDPLATFORM\n"
    );
    let host_platform = format!("linux/{}", rbuild_test_support::host_architecture());
    let build_for = |platform: Option<&str>, tag: &str| {
        let mut req = text_request(Some(&ctx), &dockerfile);
        req.platform = platform.map(str::to_string);
        req.push = true;
        req.tags = vec![format!("{}/app:{tag}", registry.host)];
        let (out, events) = try_build(&store, &req);
        let out = out.unwrap_or_else(|e| panic!("build for {platform:?}: {e}\n{}", registry.log()));
        (out, step_outcomes(&events))
    };
    let cases = [
        (None, "host", &host_platform, &images.layers[0]),
        (
            Some(other_platform.as_str()),
            "other",
            &other_platform,
            &other_layer,
        ),
    ];
    let mut digests = Vec::new();
    for (platform, tag, want, base_layer) in cases {
        let (out, steps) = build_for(platform, tag);
        let config = &out.image.config;
        let got = format!("{}/{}", config.os, config.architecture);
        assert_eq!(&got, want, "config platform for {platform:?}");
        let layers = layer_digests(&out);
        assert_eq!(layers.len(), 2, "{layers:?}");
        assert_eq!(&layers[0], base_layer, "base layer for {platform:?}");
        let labels = &config.config.labels;
        assert_eq!(labels.get("target"), Some(want), "{labels:?}");
        assert_eq!(labels.get("build"), Some(&host_platform), "{labels:?}");
        // Two platforms never share a cache record (a FROM is always "cached": resolved).
        let reused: Vec<&String> = steps
            .iter()
            .filter(|(n, cached)| **cached && !n.contains("] FROM "))
            .map(|(n, _)| n)
            .collect();
        assert!(reused.is_empty(), "{platform:?} reused {reused:?}");
        let pushed = format!("{}/app:{tag}", registry.host);
        assert_eq!(
            skopeo_digest(dir.path(), &pushed, None),
            out.manifest_digest.to_string()
        );
        digests.push(out.manifest_digest);
    }
    assert_ne!(digests[0], digests[1]);
    // As with `docker pull --platform`, the tag names the platform pulled last.
    assert_eq!(store.resolve_digest(&from).expect("named"), other_manifest);

    // `FROM --platform=` picks the other child without `--platform`.
    let pinned = text_request(
        Some(&ctx),
        &format!("FROM --platform={other_platform} {from}\nCOPY hello.txt /hello.txt\n"),
    );
    let (out, _) = try_build(&store, &pinned);
    let out = out.unwrap_or_else(|e| panic!("FROM --platform: {e}"));
    assert_eq!(layer_digests(&out)[0], other_layer);

    // A RUN for the other platform: the host cannot execute its /bin/sh and says so.
    let mut run = text_request(Some(&ctx), &format!("FROM {from}\nRUN echo hi > /x\n"));
    run.platform = Some(other_platform.clone());
    run.tags = vec!["never:tagged".into()];
    let (failed, _) = try_build(&store, &run);
    let err = failed
        .expect_err("no emulator for the other platform")
        .to_string();
    for part in [
        "RUN echo hi > /x",
        &format!("this {host_platform} host cannot run {other_platform} binaries"),
        "binfmt_misc",
        &format!("or build for {host_platform}"),
    ] {
        assert!(err.contains(part), "missing {part:?} in: {err}");
    }
    assert!(store.resolve("never:tagged").is_err());
}

/// The whole build against a token-auth registry (our own ES256 token server), credentials
/// from a Docker config: pull, push, skopeo reads back the same digest; a wrong password is
/// refused with the registry named.
#[test]
fn a_build_pulls_and_pushes_through_token_auth() {
    let registry = Registry::start(AuthMode::Token);
    let (images, base) = seed(&registry, Some((&registry.host, USER, PASSWORD)));
    let (dir, store, ctx) = workspace();
    let config = dir.path().join("docker").join("config.json");
    let login = |password: &str| {
        let creds = Credentials {
            username: USER.into(),
            password: password.into(),
        };
        DockerConfig::save_login(&config, &registry.host, &creds).expect("save login");
    };
    let from = format!("{}/base:1", registry.host);
    let app = format!("{}/private/app:tok", registry.host);
    let mut req = request(&ctx, &from);
    req.registry_credentials = Some(config.clone());
    req.push = true;
    req.tags = vec![app.clone()];

    login("wrong");
    let (denied, _) = try_build(&store, &req);
    let err = denied.expect_err("a wrong password is refused").to_string();
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains(&registry.host), "{err}");
    assert!(store.resolve(&app).is_err());

    login(PASSWORD);
    let (out, events) = try_build(&store, &req);
    let out = out.unwrap_or_else(|e| panic!("token-auth build: {e}\n{}", registry.log()));
    assert_base_pulled(&events, &images, &store, &from, &base);
    assert_eq!(out.pushed[0].digest, out.manifest_digest);
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        skopeo_digest(dir.path(), &app, Some(&creds)),
        out.manifest_digest.to_string()
    );
}

/// A base pull through a proxy that cuts the connection mid-blob once is retried and gives the
/// same image as a direct build; one that always cuts fails naming the registry and the blob,
/// tags nothing and leaves no partial blob or temp file in the store.
#[test]
fn a_base_pull_cut_mid_blob_is_retried_or_fails_cleanly() {
    let registry = Registry::start(AuthMode::Plain);
    let (images, _) = seed(&registry, None);
    let build_from = |host: &str| {
        let (dir, store, ctx) = workspace();
        let mut req = request(&ctx, &format!("{host}/base:1"));
        req.tags = vec!["app:flaky".into()];
        let (out, events) = try_build(&store, &req);
        (dir, store, out, events)
    };
    let (_direct_dir, _direct_store, direct, _) = build_from(&registry.host);
    let direct = direct.expect("direct build");

    let once = FlakyProxy::start(registry.addr, 1, 64 << 10);
    let (_dir, store, out, events) = build_from(&once.host);
    let out = out.unwrap_or_else(|e| panic!("build through a proxy cutting once: {e}"));
    assert_eq!(out.manifest_digest, direct.manifest_digest);
    assert_eq!(once.faults.cut.load(std::sync::atomic::Ordering::SeqCst), 1);
    let logs = pull_logs(&events);
    assert!(
        logs.iter().any(|l| l.starts_with("retry blob ")),
        "{logs:?}"
    );
    assert_no_stray_blobs(store.blobs());

    let always = FlakyProxy::start(registry.addr, usize::MAX, 64 << 10);
    let (_dir, store, out, _) = build_from(&always.host);
    let err = out.expect_err("every attempt is cut").to_string();
    let layer = &images.layers[0];
    assert!(err.contains(&always.host), "{err}");
    assert!(err.contains(&layer.to_string()), "{err}");
    assert!(store.resolve("app:flaky").is_err(), "nothing is tagged");
    assert!(store.resolve(&format!("{}/base:1", always.host)).is_err());
    assert!(!store.blobs().has(layer), "no partial layer");
    assert_no_stray_blobs(store.blobs());
}
