//! Builds against a real registry (Debian's `docker-registry` on 127.0.0.1): `FROM` an image
//! pulled into the store (once; by tag until `--pull`; never again by digest), `--push` of the
//! result with the local digest, and credentials from a Docker config with basic auth.

use std::fs;
use std::path::Path;

use rbuild::events::{CollectSink, Event};
use rbuild::registry::{Credentials, DockerConfig, PushOptions, Reference};
use rbuild::solve::BuildRequest;
use rbuild::store::Store;
use rbuild_layers::digest::Digest;

use crate::build_support::text_request;
use crate::registry_support::{client, skopeo, AuthMode, LocalImages, Registry, PASSWORD, USER};

/// Push the busybox test image to `registry` as `base:1`; returns its manifest digest.
fn seed(registry: &Registry, creds: Option<(&str, &str, &str)>) -> (LocalImages, Digest) {
    let images = LocalImages::new();
    let target: Reference = format!("{}/base:1", registry.host)
        .parse()
        .expect("reference");
    let pushed = client(creds)
        .push(
            images.store(),
            &images.manifest,
            &target,
            &PushOptions::default(),
        )
        .expect("seed the registry");
    let digest = pushed.digest.clone();
    (images, digest)
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
    let ids: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { id, name } if name.starts_with("[internal] load metadata") => {
                Some(*id)
            }
            _ => None,
        })
        .collect();
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { id, line, .. } if ids.contains(id) => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn oci_manifest_digest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json"))
            .expect("index json");
    index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

#[test]
fn from_a_registry_then_push_and_skopeo_agrees() {
    let mut registry = Registry::start(AuthMode::Plain);
    let (images, base) = seed(&registry, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let ctx = context(dir.path());
    let from = format!("{}/base:1", registry.host);
    let app = format!("{}/app:v1", registry.host);

    let mut req = request(&ctx, &from);
    req.push = true;
    req.tags = vec![app.clone()];
    let (out, events) = try_build(&store, &req);
    let out = out.unwrap_or_else(|e| panic!("build failed: {e}\n{}", registry.log()));
    // Every layer was pulled, and the base is named in the store by its tag.
    let logs = pull_logs(&events);
    for layer in &images.layers {
        assert!(logs.contains(&format!("pull {layer}: done")), "{logs:?}");
    }
    assert_eq!(store.resolve_digest(&from).expect("base in store"), base);
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
    let oci = dir.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{app}"),
        &format!("oci:{}:v1", oci.display()),
    ]);
    assert_eq!(oci_manifest_digest(&oci), out.manifest_digest.to_string());

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
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let ctx = context(dir.path());
    let from = format!("{}/base:1", registry.host);
    let (first, _) = try_build(&store, &request(&ctx, &from));
    let first = first.expect("first build");

    // Push another manifest (the index's other-platform one) under the same tag.
    let target: Reference = from.parse().expect("reference");
    client(None)
        .push(
            images.store(),
            &images.other_manifest,
            &target,
            &PushOptions::default(),
        )
        .expect("push the new base");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let ctx = context(dir.path());
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
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("store");
    let ctx = context(dir.path());
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
