//! The OCI distribution (registry) client: pull images into the local blob store and push
//! images from it, speaking the registry HTTP API as Docker and BuildKit do.
//!
//! - [`Reference`]: image references parsed as Docker parses them.
//! - [`RegistryClient`] + [`RegistryOptions`]: connection pool, auth (anonymous, basic, bearer
//!   token flow), credentials from a Docker `config.json` ([`CredentialsSource`]), insecure
//!   hosts, timeouts, [`RetryPolicy`].
//! - [`RegistryClient::resolve`] (tag → digest, for `FROM` cache keys and `--pull`) and
//!   [`RegistryClient::pull`] (manifest, index → platform, config and layers into a
//!   [`BlobStore`](rbuild_layers::store::BlobStore), verified, concurrent, retried, a cut blob
//!   resumed with `Range`; a digest-pinned reference whose blobs are all present never touches
//!   the network).
//! - [`RegistryClient::push`]: blobs the registry has are skipped, cross-repository mounts
//!   tried, chunked upload with monolithic fallback, manifests last, bytes unchanged.
//!
//! Intended uses (wired in later): the solver resolves `FROM` with `resolve`/`pull` and keys
//! the base by manifest digest; `rbuild build --push` and `rbuild push` call `push` with the
//! manifest digest from the local store; `rbuild login` is `ping` with
//! [`CredentialsSource::Static`]; the registry cache exporter pushes its artifact with `push`.
//! Progress is reported through a caller-supplied callback ([`Progress`]); the module never
//! prints and never reads the process environment.
//!
//! Known deviations from Docker/containerd: insecure hosts get plain HTTP directly (no HTTPS
//! attempt first); token `expires_in` is not tracked (a 401 fetches a new token); schema1
//! manifests and nested indexes are refused, foreign layers are fetched from the registry,
//! never from their `urls`. An interrupted blob is resumed as containerd and Docker resume it:
//! the bytes that arrived stay in the blob's temp file (with its running sha256) and the retry
//! asks for `Range: bytes=N-`, accepting a `206` whose `Content-Range` starts at N; a registry
//! that answers `200` (no range support) or `416` gets the blob again from byte zero. The
//! finished blob is verified (digest and size) like any other, and when the last attempt fails
//! its temp file is removed.
//!
//! Pulling an image into a store, then pushing it elsewhere:
//!
//! ```no_run
//! use rbuild::registry::{PullOptions, PushOptions, Reference, RegistryClient, RegistryOptions};
//! use rbuild_layers::store::BlobStore;
//!
//! let store = BlobStore::ensure("/var/lib/rbuild/store")?;
//! let client = RegistryClient::new(RegistryOptions::default());
//! let alpine: Reference = "alpine:3.20".parse()?;
//! let pulled = client.pull(&alpine, &store, &PullOptions::default())?;
//! println!("{} layers, manifest {}", pulled.layers.len(), pulled.manifest_digest);
//!
//! let target: Reference = "localhost:5000/mirror/alpine:3.20".parse()?;
//! let pushed = client.push(&store, &pulled.manifest_digest, &target, &PushOptions::default())?;
//! assert_eq!(pushed.digest, pulled.manifest_digest);
//! Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod auth;
mod client;
mod credentials;
mod error;
mod pull;
mod push;
mod reference;
mod retry;

pub use auth::{repository_scope, Challenge};
pub use client::{RegistryClient, RegistryOptions};
pub use credentials::{
    AuthEntry, Credentials, CredentialsSource, DockerConfig, DOCKER_HUB_CONFIG_KEY,
};
pub use error::{RegistryError, RegistryErrorEntry, RegistryErrors, Result};
pub use pull::{
    acceptable_platforms, host_platform, platform_spec, spec_platform, BlobDescriptor, PullOptions,
    PulledImage, ResolvedManifest,
};
// The remote cache importer fetches single blobs (`fetch_blob`) by repository.
pub(crate) use pull::repo_of;
pub use push::{PushOptions, PushedImage};
// Push callers (image pushes, the registry cache exporter) share mount candidates and log lines.
pub(crate) use push::{mount_sources, push_log_line};
pub use reference::{registry_host, Reference, DOCKER_HUB_DOMAIN, DOCKER_HUB_REGISTRY};
pub use retry::RetryPolicy;

/// A progress event of a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A reference was resolved to a manifest digest.
    Resolved {
        /// The reference.
        reference: String,
        /// Its manifest (or index) digest.
        digest: rbuild_layers::digest::Digest,
    },
    /// A blob transfer starts.
    BlobStart {
        /// The blob.
        digest: rbuild_layers::digest::Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob were transferred.
    BlobBytes {
        /// The blob.
        digest: rbuild_layers::digest::Digest,
        /// Bytes of the blob held so far: a resumed download continues from the byte it resumed
        /// at (and says so once, before its first new byte); one started over counts from 0.
        done: u64,
        /// The blob size.
        total: u64,
    },
    /// A blob is complete (stored or uploaded).
    BlobDone {
        /// The blob.
        digest: rbuild_layers::digest::Digest,
    },
    /// A blob was already there (in the store for a pull, in the registry for a push).
    BlobSkipped {
        /// The blob.
        digest: rbuild_layers::digest::Digest,
    },
    /// A blob was mounted from another repository of the same registry.
    BlobMounted {
        /// The blob.
        digest: rbuild_layers::digest::Digest,
        /// The repository it came from.
        from: String,
    },
    /// A transient failure; the operation will be retried.
    Retry {
        /// What is retried (`blob sha256:…`, `blob sha256:… (resuming at byte N)`,
        /// `manifest …`).
        what: String,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The error.
        error: String,
    },
    /// A manifest was pushed.
    ManifestPushed {
        /// The target reference (tag or digest).
        reference: String,
        /// The manifest digest.
        digest: rbuild_layers::digest::Digest,
    },
}

impl Progress {
    /// The line a retry shows in a pull's or push's log (`retry WHAT (attempt N): ERROR`);
    /// `None` for the other events.
    pub(crate) fn retry_line(&self) -> Option<String> {
        match self {
            Progress::Retry {
                what,
                attempt,
                error,
            } => Some(format!("retry {what} (attempt {attempt}): {error}")),
            _ => None,
        }
    }
}

/// A progress callback: called from worker threads, so `Sync`.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Sync);

pub(crate) fn report(progress: Option<ProgressFn<'_>>, event: Progress) {
    if let Some(f) = progress {
        f(&event);
    }
}

/// Run `op` on every item with at most `workers` threads; the first error stops the others from
/// starting new items and is returned.
pub(crate) fn for_each_bounded<T: Sync>(
    workers: usize,
    items: &[T],
    op: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<RegistryError>> = Mutex::new(None);
    let workers = workers.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                if let Err(e) = op(item) {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                    break;
                }
            });
        }
    });
    match failed.into_inner() {
        Ok(found) => found.map_or(Ok(()), Err),
        Err(poisoned) => poisoned.into_inner().map_or(Ok(()), Err),
    }
}
