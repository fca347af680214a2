//! The registry client against a real `docker-registry` on loopback: push then pull back,
//! skopeo agrees on digests, platform selection from an index, skipped blobs, basic and token
//! auth, clear errors for wrong credentials, retries of a connection cut mid-blob (resumed with
//! `Range`; started over when the registry ignores or refuses the range), and a clean failure
//! (no half-written blob) when the registry always cuts or a resumed body does not verify.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use rbuild::registry::{
    host_platform, Credentials, CredentialsSource, DockerConfig, Progress, PullOptions,
    PushOptions, Reference, RegistryClient, RegistryError, RegistryOptions,
};
use rbuild_layers::oci_layout::PlatformSpec;
use rbuild_layers::store::BlobStore;

use crate::registry_support::{
    assert_no_stray_blobs, client, skopeo, AuthMode, FaultPlan, FlakyProxy, LocalImages, Registry,
    PASSWORD, USER,
};

fn reference(host: &str, rest: &str) -> Reference {
    format!("{host}/{rest}").parse().expect("valid reference")
}

fn fresh_store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path().join("store")).expect("store");
    (dir, store)
}

#[test]
fn push_then_pull_round_trips_and_skopeo_agrees() {
    let registry = Registry::start(AuthMode::Plain);
    let images = LocalImages::new();
    let client = client(None);
    let target = reference(&registry.host, "rbuild/busybox:v1");
    let pushed = client
        .push(
            images.store(),
            &images.manifest,
            &target,
            &PushOptions::default(),
        )
        .expect("push");
    assert_eq!(pushed.digest, images.manifest);
    assert_eq!(
        pushed.uploaded.len(),
        2,
        "config and layer uploaded: {pushed:?}"
    );

    let (_dir, store) = fresh_store();
    let pulled = client
        .pull(&target, &store, &PullOptions::default())
        .expect("pull");
    assert_eq!(pulled.manifest_digest, images.manifest);
    assert_eq!(
        pulled
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect::<Vec<_>>(),
        images.layers
    );
    assert_eq!(pulled.downloaded.len(), 2);
    assert!(pulled.used_network);
    let stored = pulled.stored(&store).expect("readable as a stored image");
    assert_eq!(stored.manifest_digest, images.manifest);
    assert_no_stray_blobs(&store);

    // skopeo sees the same digest, and copies the same bytes back.
    let url = format!("docker://{}/rbuild/busybox:v1", registry.host);
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &url])).expect("json");
    assert_eq!(inspect["Digest"], images.manifest.to_string());
    let copy = tempfile::tempdir().expect("tempdir");
    let dest = format!("oci:{}:copied", copy.path().display());
    skopeo(&["copy", "--src-tls-verify=false", &url, &dest]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.path().join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], images.manifest.to_string());

    // A second push finds everything there; a push to another repository mounts the blobs.
    let again = client
        .push(
            images.store(),
            &images.manifest,
            &target,
            &PushOptions::default(),
        )
        .expect("push again");
    assert_eq!((again.uploaded.len(), again.skipped.len()), (0, 2));
    let from = vec!["rbuild/busybox".to_string()];
    let other = reference(&registry.host, "rbuild/other:v1");
    let mounted = client
        .push(
            images.store(),
            &images.manifest,
            &other,
            &PushOptions {
                mount_from: &from,
                ..PushOptions::default()
            },
        )
        .expect("push with mount");
    assert_eq!(mounted.mounted.len(), 2, "{mounted:?}");
    assert!(mounted.uploaded.is_empty());
}

#[test]
fn chunked_and_monolithic_uploads_give_the_local_digest() {
    let registry = Registry::start(AuthMode::Plain);
    let images = LocalImages::new();
    let mut options = client(None).options().clone();
    options.chunk_size = 100 << 10;
    let chunked = rbuild::registry::RegistryClient::new(options);
    let target = reference(&registry.host, "chunked:v1");
    let events = Mutex::new(Vec::new());
    let sink = |p: &Progress| events.lock().expect("events").push(p.clone());
    let pushed = chunked
        .push(
            images.store(),
            &images.manifest,
            &target,
            &PushOptions {
                progress: Some(&sink),
                ..PushOptions::default()
            },
        )
        .expect("chunked push");
    assert_eq!(pushed.digest, images.manifest);
    let layer_size = images.store().size(&images.layers[0]).expect("layer size");
    let patches = events
        .lock()
        .expect("events")
        .iter()
        .filter(|e| matches!(e, Progress::BlobBytes { digest, .. } if digest == &images.layers[0]))
        .count() as u64;
    assert_eq!(
        patches,
        layer_size.div_ceil(100 << 10),
        "one PATCH per 100 KiB chunk"
    );
    let mono_target = reference(&registry.host, "mono:v1");
    let pushed = client(None)
        .push(
            images.store(),
            &images.manifest,
            &mono_target,
            &PushOptions {
                monolithic: true,
                ..PushOptions::default()
            },
        )
        .expect("monolithic push");
    assert_eq!(pushed.uploaded.len(), 2);
    for t in [&target, &mono_target] {
        let (_dir, store) = fresh_store();
        let pulled = client(None)
            .pull(t, &store, &PullOptions::default())
            .expect("pull");
        assert_eq!(pulled.manifest_digest, images.manifest);
    }
}

#[test]
fn multi_platform_index_resolves_to_the_host_and_pins_work_offline() {
    let mut registry = Registry::start(AuthMode::Plain);
    let images = LocalImages::new();
    let client = client(None);
    let target = reference(&registry.host, "multi:v1");
    let pushed = client
        .push(
            images.store(),
            &images.index,
            &target,
            &PushOptions::default(),
        )
        .expect("push index");
    assert_eq!(pushed.digest, images.index);
    assert_eq!(pushed.media_type, "application/vnd.oci.image.index.v1+json");

    let resolved = client.resolve(&target).expect("resolve");
    assert_eq!(resolved.digest, images.index);

    let (_dir, store) = fresh_store();
    let host = client
        .pull(&target, &store, &PullOptions::default())
        .expect("pull host");
    assert_eq!(host.index_digest.as_ref(), Some(&images.index));
    assert_eq!(host.manifest_digest, images.manifest);
    assert_eq!(
        host_platform().architecture,
        rbuild_test_support::host_architecture()
    );

    let other = PlatformSpec {
        os: "linux".into(),
        architecture: images.other_arch.into(),
        variant: None,
    };
    let events = Mutex::new(Vec::new());
    let sink = |p: &Progress| events.lock().expect("events").push(p.clone());
    let pulled = client
        .pull(
            &target,
            &store,
            &PullOptions {
                platform: Some(&other),
                progress: Some(&sink),
            },
        )
        .expect("pull other platform");
    assert_eq!(pulled.manifest_digest, images.other_manifest);
    // The layer is shared with the host image: only the other config is downloaded.
    assert_eq!(pulled.downloaded.len(), 1, "{:?}", pulled.downloaded);
    let skipped = events
        .lock()
        .expect("events")
        .iter()
        .filter(|e| matches!(e, Progress::BlobSkipped { .. }))
        .count();
    assert_eq!(skipped, 1);

    let missing = PlatformSpec {
        os: "linux".into(),
        architecture: "s390x".into(),
        variant: None,
    };
    let err = client
        .pull(
            &target,
            &store,
            &PullOptions {
                platform: Some(&missing),
                ..PullOptions::default()
            },
        )
        .expect_err("no s390x");
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );

    // Pinned by digest, with everything in the store: no network at all.
    registry.stop();
    let pinned = target.with_digest(images.index.clone());
    let offline = client
        .pull(&pinned, &store, &PullOptions::default())
        .expect("offline pull");
    assert!(!offline.used_network);
    assert_eq!(offline.manifest_digest, images.manifest);
    // Not pinned: a tag needs the registry, which is gone.
    let err = client
        .pull(&target, &store, &PullOptions::default())
        .expect_err("registry stopped");
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");
}

fn auth_round_trip(mode: AuthMode) {
    let registry = Registry::start(mode);
    let images = LocalImages::new();
    let target = reference(&registry.host, "private/busybox:v1");
    let good = client(Some((&registry.host, USER, PASSWORD)));
    good.ping(&registry.host).expect("ping with credentials");
    let pushed = good
        .push(
            images.store(),
            &images.manifest,
            &target,
            &PushOptions::default(),
        )
        .expect("authenticated push");
    assert_eq!(pushed.digest, images.manifest);
    let (_dir, store) = fresh_store();
    let pulled = good
        .pull(&target, &store, &PullOptions::default())
        .expect("authenticated pull");
    assert_eq!(pulled.manifest_digest, images.manifest);

    let want = format!(
        "unauthorized: authentication required for {host}/private/busybox (check `rbuild login {host}` or ~/.docker/config.json)",
        host = registry.host
    );
    for bad in [client(Some((&registry.host, USER, "wrong"))), client(None)] {
        let (_dir, store) = fresh_store();
        let err = bad
            .pull(&target, &store, &PullOptions::default())
            .expect_err("refused");
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
        assert!(err.to_string().starts_with(&want), "{err}");
        assert_no_stray_blobs(&store);
    }
}

#[test]
fn basic_auth_works_and_wrong_credentials_are_clear() {
    auth_round_trip(AuthMode::Basic);
}

#[test]
fn docker_config_logins_are_used_for_token_auth() {
    let registry = Registry::start(AuthMode::Token);
    let images = LocalImages::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    let creds = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    DockerConfig::save_login(&config, &registry.host, &creds).expect("login");
    let client = RegistryClient::new(RegistryOptions {
        credentials: CredentialsSource::DockerConfig(config.clone()),
        ..client(None).options().clone()
    });
    let target = reference(&registry.host, "cfg/busybox:v1");
    client
        .push(
            images.store(),
            &images.manifest,
            &target,
            &PushOptions::default(),
        )
        .expect("push with config.json login");
    assert!(DockerConfig::remove_login(&config, &registry.host).expect("logout"));
    let logged_out = RegistryClient::new(RegistryOptions {
        credentials: CredentialsSource::DockerConfig(config),
        ..client.options().clone()
    });
    let (_dir, store) = fresh_store();
    let err = logged_out
        .pull(&target, &store, &PullOptions::default())
        .expect_err("logged out");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}

#[test]
fn token_auth_works_and_wrong_credentials_are_clear() {
    auth_round_trip(AuthMode::Token);
}

#[test]
fn a_connection_cut_mid_blob_is_retried() {
    let pull = pull_through("flaky:v1", |_| FaultPlan::cut(1, 64 << 10));
    pull.assert_pulled();
    assert_eq!(pull.proxy.faults.cut.load(Ordering::SeqCst), 1);
    assert_eq!(pull.retried().len(), 1);
}

#[test]
fn a_registry_that_always_cuts_fails_cleanly() {
    let pull = pull_through("broken:v1", |_| FaultPlan::cut(usize::MAX, 64 << 10));
    let err = pull.result.as_ref().expect_err("always cut");
    assert!(err.is_transient(), "{err}");
    for layer in &pull.images.layers {
        assert!(
            !pull.store.has(layer),
            "layer {layer} must not be in the store"
        );
    }
    assert_no_stray_blobs(&pull.store);
}

#[test]
fn a_503_on_a_blob_is_retried() {
    let pull = pull_through("busy:v1", |_| FaultPlan::unavailable(2));
    pull.assert_pulled();
    assert_eq!(pull.proxy.faults.answered_503.load(Ordering::SeqCst), 2);

    // Unavailable for longer than the retry budget: a clear http 503 error.
    let pull = pull_through("busy:v1", |_| FaultPlan::unavailable(usize::MAX));
    let err = pull.result.as_ref().expect_err("always 503");
    assert!(
        matches!(err, RegistryError::Http { status: 503, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("unavailable: try again"), "{err}");
    assert_no_stray_blobs(&pull.store);
}

/// A pull of the busybox image (pushed as `name`) through a [`FlakyProxy`].
struct FaultyPull {
    registry: Registry,
    images: LocalImages,
    /// The size of the image's only layer.
    layer_size: usize,
    proxy: FlakyProxy,
    _dir: tempfile::TempDir,
    store: BlobStore,
    result: Result<rbuild::registry::PulledImage, RegistryError>,
    events: Vec<Progress>,
}

/// Push the busybox image to a fresh registry as `name`, then pull it into a fresh store
/// through a proxy with the faults `plan` gives for the layer size, collecting progress.
fn pull_through(name: &str, plan: impl FnOnce(usize) -> FaultPlan) -> FaultyPull {
    let registry = Registry::start(AuthMode::Plain);
    let images = LocalImages::new();
    client(None)
        .push(
            images.store(),
            &images.manifest,
            &reference(&registry.host, name),
            &PushOptions::default(),
        )
        .expect("push");
    let size = images.store().size(&images.layers[0]).expect("layer size");
    let layer_size = usize::try_from(size).expect("layer size fits usize");
    let proxy = FlakyProxy::with_plan(registry.addr, plan(layer_size));
    let (dir, store) = fresh_store();
    let events = Mutex::new(Vec::new());
    let sink = |p: &Progress| events.lock().expect("events").push(p.clone());
    let result = client(None).pull(
        &reference(&proxy.host, name),
        &store,
        &PullOptions {
            progress: Some(&sink),
            ..PullOptions::default()
        },
    );
    FaultyPull {
        registry,
        images,
        layer_size,
        proxy,
        _dir: dir,
        store,
        result,
        events: events.into_inner().expect("events"),
    }
}

impl FaultyPull {
    /// The pull succeeded with the right manifest and every blob verified in the store.
    fn assert_pulled(&self) {
        match &self.result {
            Ok(pulled) => assert_eq!(pulled.manifest_digest, self.images.manifest),
            Err(e) => panic!("pull: {e}\n{}", self.registry.log()),
        }
        let layer = &self.images.layers[0];
        let bytes = self.store.read(layer).expect("layer in the store");
        assert_eq!(&rbuild_layers::digest::Digest::of(&bytes), layer);
        assert_no_stray_blobs(&self.store);
    }

    /// The `done` values of the layer's `BlobBytes` events, in order.
    fn layer_bytes_done(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Progress::BlobBytes { digest, done, .. } if digest == &self.images.layers[0] => {
                    Some(*done)
                }
                _ => None,
            })
            .collect()
    }

    /// The `what` of every `Retry` event.
    fn retried(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Progress::Retry { what, .. } => Some(what.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The byte offset of a `Range: bytes=N-` header value.
fn range_start(range: &str) -> u64 {
    range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an open range: {range}"))
}

#[test]
fn a_blob_cut_mid_body_is_resumed_with_a_range_request() {
    let pull = pull_through("resume:v1", |size| FaultPlan::cut(1, size * 3 / 4));
    pull.assert_pulled();
    let (layer, layer_size) = (&pull.images.layers[0], pull.layer_size);
    assert_eq!(pull.proxy.faults.cut.load(Ordering::SeqCst), 1);

    let ranges = pull.proxy.faults.ranges();
    assert_eq!(ranges.len(), 1, "one ranged request: {ranges:?}");
    let offset = range_start(&ranges[0]);
    assert!(
        offset > 0 && offset < layer_size as u64,
        "resumed mid-blob at {offset} of {layer_size}"
    );
    // A restart would have served the cut 3/4 again: well over 1.75 times the layer.
    let served = pull.proxy.faults.served.load(Ordering::SeqCst);
    assert!(
        served < layer_size + layer_size / 4,
        "served {served} bytes for a {layer_size}-byte layer"
    );

    assert_eq!(
        pull.retried(),
        [format!("blob {layer} (resuming at byte {offset})")]
    );
    let done = pull.layer_bytes_done();
    assert!(
        done.contains(&offset),
        "progress restates the resume point: {done:?}"
    );
    assert!(
        done.windows(2).all(|w| w[0] <= w[1]),
        "no jump back: {done:?}"
    );
    assert_eq!(done.last(), Some(&(layer_size as u64)));
}

#[test]
fn a_registry_that_ignores_range_gets_the_blob_from_zero() {
    let pull = pull_through("norange:v1", |size| FaultPlan {
        strip_range: true,
        ..FaultPlan::cut(1, size * 3 / 4)
    });
    pull.assert_pulled();
    let layer_size = pull.layer_size;
    // The resume was asked for, answered with the whole blob, and started over with it.
    assert_eq!(pull.proxy.faults.ranges().len(), 1);
    let served = pull.proxy.faults.served.load(Ordering::SeqCst);
    assert!(
        served > layer_size + layer_size / 2,
        "the whole layer again after the cut 3/4: {served}"
    );
    assert_eq!(pull.layer_bytes_done().last(), Some(&(layer_size as u64)));
}

#[test]
fn a_refused_range_starts_the_blob_over() {
    let pull = pull_through("refused:v1", |size| FaultPlan {
        refuse_range: true,
        ..FaultPlan::cut(1, size / 2)
    });
    pull.assert_pulled();
    assert_eq!(pull.proxy.faults.answered_416.load(Ordering::SeqCst), 1);
    // The 416 is not a failed attempt: the same attempt asks again without `Range`.
    assert_eq!(pull.retried().len(), 1, "{:?}", pull.events);
}

#[test]
fn a_resume_corrupted_after_the_resume_point_fails_verification() {
    let pull = pull_through("corrupt:v1", |size| FaultPlan {
        corrupt_ranged: true,
        ..FaultPlan::cut(1, size / 2)
    });
    let layer = &pull.images.layers[0];
    assert_eq!(pull.proxy.faults.corrupted.load(Ordering::SeqCst), 1);
    match &pull.result {
        Err(RegistryError::DigestMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, layer);
            assert_ne!(found, layer);
        }
        Err(other) => panic!("expected a digest mismatch, got {other}"),
        Ok(_) => panic!("a corrupted body must not verify"),
    }
    assert!(
        !pull.store.has(layer),
        "the corrupted layer must not be stored"
    );
    assert_no_stray_blobs(&pull.store);
}
