//! The remote layer cache: `--cache-to` exports the build's cache records (key → layer, config
//! change, history) as an OCI artifact to a registry or an OCI layout directory, and
//! `--cache-from` imports such artifacts so a build on a fresh store matches its steps against
//! them, as BuildKit's `registry` and `local` cache backends do.
//!
//! - [`spec`]: the flag values (`type=registry,ref=…`, `type=local,dest=…|src=…`, a bare ref);
//! - [`format`](mod@format): the artifact (manifest, record table, layer list), deterministic;
//! - [`export`](mod@export): which records go (`mode=min|max`) and writing the artifact;
//! - [`import`](mod@import): reading manifests and record tables before any step runs, then
//!   fetching a record's layer lazily, only when a step hits it;
//! - `registry` and `local`: the two backends behind one small trait.
//!
//! Behaviour follows BuildKit where it is visible to users: `mode=min` is the default and
//! exports only what produced the final image, `mode=max` every step; a cache that is missing
//! or unreadable is a warning, never a failed build; a failed export fails the build unless
//! `ignore-error=true`; `--no-cache` ignores imported records but still exports. Known
//! deviations: the artifact format is rbuild's own (see [`format`](mod@format)), so BuildKit caches cannot
//! be read, nor rbuild caches by BuildKit; `compression` and the other layer-rewriting options
//! are not supported (layers travel as built); only one manifest per ref (no multi-platform
//! cache index).

pub mod export;
pub mod format;
pub mod import;
mod local;
mod registry;
pub mod spec;

pub use export::{export, BuildKeys, ExportError, ExportReport, ExportedCache};
pub use format::{Artifact, CacheConfig, CacheEntry, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE};
pub use import::{import, ImportedCache, RemoteLookup};
pub use spec::{CacheExport, CacheImport, CacheLocation, CacheMode, CacheSpecError};

use std::path::PathBuf;

use rbuild_layers::digest::Digest;
use rbuild_layers::oci_layout::LayoutError;
use rbuild_layers::store::{BlobStore, StoreError};

use crate::registry::{BlobDescriptor, RegistryError};
use format::FormatError;

/// Why a remote cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteCacheError {
    /// The registry refused or failed.
    #[error("{location}: {source}")]
    Registry {
        /// The cache location.
        location: String,
        /// The registry error.
        #[source]
        source: Box<RegistryError>,
    },
    /// The OCI layout could not be read or written.
    #[error("{dir}: {source}")]
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The layout error.
        #[source]
        source: LayoutError,
    },
    /// A blob store (local or the layout's) failed.
    #[error("{location}: {source}")]
    Store {
        /// The cache location or store.
        location: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The artifact does not read as an rbuild cache.
    #[error("{location}: {source}")]
    Format {
        /// The cache location.
        location: String,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// The manifest entry is not what it claims.
    #[error("{location}: cache manifest {digest}: {reason}")]
    BadEntry {
        /// The cache location.
        location: String,
        /// The manifest digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
}

/// A place cache artifacts are read from and written to.
trait Backend: Send + Sync {
    /// The location, for messages.
    fn location(&self) -> String;

    /// The cache manifest (digest, bytes), verified; `None` when there is no cache there.
    fn manifest(&self) -> Result<Option<(Digest, Vec<u8>)>, RemoteCacheError>;

    /// Put a blob of the cache into `store`, verified against its digest and size; a blob the
    /// store already has is not fetched again.
    fn fetch(&self, blob: &BlobDescriptor, store: &BlobStore) -> Result<(), RemoteCacheError>;

    /// Store `artifact`, whose blobs are all in `store`; `log` receives progress lines.
    fn publish(
        &self,
        store: &BlobStore,
        artifact: &Artifact,
        log: &(dyn Fn(String) + Sync),
    ) -> Result<(), RemoteCacheError>;
}
