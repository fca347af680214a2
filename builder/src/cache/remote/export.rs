//! `--cache-to`: after the image is written, gather the records the mode asks for from the
//! local cache index, write the artifact's config and manifest into the local blob store, and
//! publish it to each destination.
//!
//! `mode=min` (the default, as in BuildKit) exports the records of the steps on the exported
//! image's chain: the target step and its `parent` ancestors, which produced the image's layers
//! and config. `mode=max` exports the record of every step the build finished, in every stage.
//! Only records present in the local index whose layer blob is in the store are exported (a
//! source step has none). Each export shows as a vertex `exporting cache to LOC` whose last line
//! names the cache manifest digest. A failed export fails the build unless `ignore-error=true`,
//! in which case it is a warning.

use std::collections::BTreeMap;

use rbuild_layers::digest::Digest;
use rbuild_layers::store::BlobStore;

use super::format::{self, Artifact};
use super::import::backend_for;
use super::{CacheExport, CacheMode, RemoteCacheError};
use crate::cache::{CacheIndex, CacheKey, CacheRecord, Lookup};
use crate::events::EventSink;
use crate::events::{Vertex, VertexKind};
use crate::solve::sources::RegistrySettings;

/// A cache written by an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedCache {
    /// Where it went (the registry reference, or the layout directory and tag).
    pub location: String,
    /// The digest of the cache manifest.
    pub manifest_digest: Digest,
    /// How many records it holds.
    pub records: usize,
    /// How many layer blobs it names.
    pub layers: usize,
}

/// The keys of a finished build, as the modes select them.
#[derive(Debug, Clone, Default)]
pub struct BuildKeys {
    /// The target step and its parents (`mode=min`).
    pub chain: Vec<CacheKey>,
    /// Every finished step (`mode=max`).
    pub all: Vec<CacheKey>,
}

/// What the exports produced: the caches written and the warnings of ignored failures.
#[derive(Debug, Clone, Default)]
pub struct ExportReport {
    /// The caches written, in `--cache-to` order.
    pub exported: Vec<ExportedCache>,
    /// Failed exports that had `ignore-error=true`.
    pub warnings: Vec<String>,
}

/// A failed export (without `ignore-error`).
#[derive(Debug, thiserror::Error)]
#[error("export cache to {location}: {reason}")]
pub struct ExportError {
    /// The destination.
    pub location: String,
    /// What went wrong, with its causes.
    pub reason: String,
}

/// The records of `keys` in `index` whose layer is in `store`.
pub fn select_records(
    index: &CacheIndex,
    store: &BlobStore,
    keys: &[CacheKey],
) -> BTreeMap<CacheKey, CacheRecord> {
    let mut out = BTreeMap::new();
    for key in keys {
        if let Ok(Lookup::Hit(record)) = index.lookup(key, store) {
            out.insert(key.clone(), *record);
        }
    }
    out
}

/// Write the cache of a finished build to every destination of `exports`; `bases` are the
/// build's base image references (for cross-repository mounts).
pub fn export(
    exports: &[CacheExport],
    keys: &BuildKeys,
    index: &CacheIndex,
    store: &BlobStore,
    settings: &RegistrySettings,
    bases: &[String],
    events: &dyn EventSink,
) -> Result<ExportReport, ExportError> {
    let mut report = ExportReport::default();
    for (i, exp) in exports.iter().enumerate() {
        let backend = backend_for(&exp.location, settings, bases);
        let location = backend.location();
        let vertex = Vertex::start(
            VertexKind::CacheExport.id(i as u32),
            format!("exporting cache to {location}"),
            events,
        );
        let selected = match exp.mode {
            CacheMode::Min => &keys.chain,
            CacheMode::Max => &keys.all,
        };
        let records = select_records(index, store, selected);
        vertex.log("preparing build cache for export".to_string());
        let result = write_artifact(&records, store).and_then(|artifact| {
            backend.publish(store, &artifact, &|line| vertex.log(line))?;
            Ok(artifact)
        });
        match result {
            Ok(artifact) => {
                vertex.log(format!(
                    "writing cache manifest {}: {} records, {} layers",
                    artifact.manifest_digest,
                    artifact.records,
                    artifact.layers.len()
                ));
                vertex.done();
                report.exported.push(ExportedCache {
                    location,
                    manifest_digest: artifact.manifest_digest,
                    records: artifact.records,
                    layers: artifact.layers.len(),
                });
            }
            Err(e) => {
                let reason = crate::solve::execute::render(&e);
                if exp.ignore_error {
                    let w = format!("cannot export cache to {location}: {reason} (ignored)");
                    vertex.warn(&w);
                    vertex.done();
                    report.warnings.push(w);
                } else {
                    vertex.failed(reason.clone());
                    return Err(ExportError { location, reason });
                }
            }
        }
    }
    Ok(report)
}

/// Build the artifact of `records` and put its config and manifest into `store`.
fn write_artifact(
    records: &BTreeMap<CacheKey, CacheRecord>,
    store: &BlobStore,
) -> Result<Artifact, RemoteCacheError> {
    let artifact = format::build(records).map_err(|source| RemoteCacheError::Format {
        location: store.root().display().to_string(),
        source,
    })?;
    for bytes in [&artifact.config, &artifact.manifest] {
        store.put(bytes).map_err(|source| RemoteCacheError::Store {
            location: store.root().display().to_string(),
            source,
        })?;
    }
    Ok(artifact)
}
