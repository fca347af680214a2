//! What a caller asks for: [`BuildRequest`] (the inputs of one build, as `docker buildx build`
//! flags carry them) and [`Output`] (where `export` writes an image).
//!
//! Every field is explicit: the library never reads the process environment, so
//! `SOURCE_DATE_EPOCH`, secrets and the SSH agent socket come in here from the CLI.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_layers::compress::Compression;
use rbuild_layers::digest::Digest;
use rbuild_layers::image::StoredImage;
use rbuild_layers::oci_layout::ImageName;

use crate::cache::remote::{CacheExport, CacheImport, ExportedCache};
use crate::graph::NetworkMode;

/// Where the Dockerfile text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A file on disk (`-f path`, or `<context>/Dockerfile`).
    Path(PathBuf),
    /// Text already read (`-f -`), with the name used in messages.
    Text {
        /// The name shown in errors (e.g. `Dockerfile` or `-`).
        name: String,
        /// The Dockerfile text.
        text: String,
    },
}

/// A `--build-context NAME=VALUE`, as buildx accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `oci-layout://DIR[:TAG|@sha256:…]`.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag or digest inside it; `None` = the only (or `latest`) image.
        reference: Option<String>,
    },
    /// `docker-image://REF`: an image by reference (the local store, then a registry).
    DockerImage(String),
    /// A local directory used as a context (or as a rootfs for `FROM name`).
    Dir(PathBuf),
}

/// Which RUN executor to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Runtime {
    /// rbuild's own namespace sandbox.
    #[default]
    Builtin,
    /// An OCI runtime binary (runc, crun) at this path.
    Oci(PathBuf),
}

/// The inputs of one build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build context directory; `None` = no context (Dockerfile from stdin).
    pub context: Option<PathBuf>,
    /// The Dockerfile.
    pub dockerfile: DockerfileSource,
    /// `--target`: the stage to build; `None` = the last stage.
    pub target: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--label` values, added to the image config.
    pub labels: BTreeMap<String, String>,
    /// `--build-context` values, by name.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--no-cache`: execute every step.
    pub no_cache: bool,
    /// `--network` default for RUN steps.
    pub network: NetworkMode,
    /// `--secret` values: id → bytes (never logged, cached or layered).
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh default=SOCKET`: the agent socket.
    pub ssh_agent: Option<PathBuf>,
    /// `--platform` (any Linux platform, e.g. `linux/arm64`); `None` = the host's.
    pub platform: Option<String>,
    /// The RUN executor.
    pub runtime: Runtime,
    /// SOURCE_DATE_EPOCH; `None` = 0.
    pub epoch: Option<i64>,
    /// Layer compression.
    pub compression: Compression,
    /// Names the image is stored under in the local store.
    pub tags: Vec<String>,
    /// `--pull`: re-resolve base image tags in their registry even when the store has them.
    pub pull: bool,
    /// `--insecure-registry` hosts reached over plain HTTP (`localhost`/127.0.0.1 always are).
    pub insecure_registries: Vec<String>,
    /// The Docker `config.json` registry credentials are read from; `None` = anonymous.
    pub registry_credentials: Option<PathBuf>,
    /// `--push`: after the build, push the image to its registry under each tag.
    pub push: bool,
    /// `--cache-from`: remote caches steps are matched against when the local cache misses
    /// (ignored with `no_cache`).
    pub cache_from: Vec<CacheImport>,
    /// `--cache-to`: where the build's cache records are exported after the image is written.
    pub cache_to: Vec<CacheExport>,
}

impl BuildRequest {
    /// A request with defaults for everything but the context and Dockerfile.
    pub fn new(context: Option<PathBuf>, dockerfile: DockerfileSource) -> Self {
        BuildRequest {
            context,
            dockerfile,
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            named_contexts: BTreeMap::new(),
            no_cache: false,
            network: NetworkMode::Default,
            secrets: BTreeMap::new(),
            ssh_agent: None,
            platform: None,
            runtime: Runtime::Builtin,
            epoch: None,
            compression: Compression::Gzip,
            tags: Vec::new(),
            pull: false,
            insecure_registries: Vec::new(),
            registry_credentials: None,
            push: false,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
        }
    }
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// Digest of the image manifest.
    pub manifest_digest: Digest,
    /// Digest of the image config (the image ID).
    pub config_digest: Digest,
    /// The image as stored.
    pub image: StoredImage,
    /// The names it was tagged with.
    pub tags: Vec<ImageName>,
    /// Steps the target needed.
    pub steps: usize,
    /// Of those, steps whose result came from the cache.
    pub cached: usize,
    /// Where the image was pushed (`--push`), in tag order.
    pub pushed: Vec<crate::registry::PushedImage>,
    /// The caches written (`--cache-to`), in request order.
    pub cache_exports: Vec<ExportedCache>,
    /// Remote cache problems that did not fail the build: missing or unreadable
    /// `--cache-from` caches, dropped records, layers that could not be fetched, exports that
    /// failed with `ignore-error=true`.
    pub cache_warnings: Vec<String>,
}

/// Where [`crate::solve::export()`] writes an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout, as a directory or (with `tar`) a tar file.
    Oci {
        /// Directory or tar file path.
        dest: PathBuf,
        /// Write a tar instead of a directory.
        tar: bool,
    },
    /// A `docker load`-able archive.
    Docker {
        /// The tar file path.
        dest: PathBuf,
    },
    /// The unpacked root filesystem in a directory.
    Local {
        /// The directory.
        dest: PathBuf,
    },
    /// The root filesystem as one tar file.
    Tar {
        /// The tar file path.
        dest: PathBuf,
    },
    /// Pushed to a registry (`-o type=registry`), under these references; empty = the names
    /// given to [`crate::solve::export_with`].
    Registry {
        /// The references to push to (`REG/NAME:TAG`).
        names: Vec<String>,
    },
}
