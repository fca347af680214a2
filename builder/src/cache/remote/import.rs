//! `--cache-from`: read each cache's manifest and record table before any step runs, then
//! answer the solver's lookups from them, fetching a record's layer only when a step hits it.
//!
//! Each import shows as a vertex `importing cache manifest from LOC` (BuildKit's name). Only
//! the manifest and the config blob (the record table, small) are read up front; a cache with
//! many unrelated records costs nothing more. A cache that is missing (no tag, no layout) or
//! that does not read as an rbuild cache is a warning on that vertex and the build goes on, as
//! BuildKit does; records that do not check out (a key manifest hashing elsewhere, a layer the
//! manifest does not carry) are dropped with a warning each. When several caches hold a key,
//! the first `--cache-from` given wins.

use std::collections::BTreeMap;

use rbuild_layers::digest::Digest;
use rbuild_layers::store::BlobStore;

use super::format::{layer_blob, parse_config, parse_manifest};
use super::local::LocalBackend;
use super::registry::RegistryBackend;
use super::{Backend, CacheImport, CacheLocation, RemoteCacheError};
use crate::cache::{CacheKey, CacheRecord};
use crate::events::EventSink;
use crate::events::{Vertex, VertexKind};
use crate::solve::sources::RegistrySettings;

/// The records of every imported cache, by key.
pub struct ImportedCache {
    backends: Vec<Box<dyn Backend>>,
    records: BTreeMap<CacheKey, (CacheRecord, usize)>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for ImportedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCache")
            .field(
                "backends",
                &self
                    .backends
                    .iter()
                    .map(|b| b.location())
                    .collect::<Vec<_>>(),
            )
            .field("records", &self.records.len())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// What an imported cache says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteLookup {
    /// No imported cache has the key.
    Miss,
    /// A usable record; its layer (if any) is now in the local store.
    Hit {
        /// The record.
        record: Box<CacheRecord>,
        /// The cache it came from.
        location: String,
        /// The layer blob that was fetched for it (`None` when it needed none, or the store
        /// already had it).
        fetched: Option<Digest>,
    },
    /// A record exists but its layer could not be fetched (treat as a miss).
    Unavailable {
        /// The cache it came from.
        location: String,
        /// Why.
        error: String,
    },
}

impl ImportedCache {
    /// No imported records (no `--cache-from`).
    pub fn empty() -> Self {
        ImportedCache {
            backends: Vec::new(),
            records: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// How many records were imported.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record was imported.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The warnings of the import (missing or unreadable caches, dropped records).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The record for `key`, with its layer fetched into `store` (verified) when the store
    /// lacks it.
    pub fn lookup(&self, key: &CacheKey, store: &BlobStore) -> RemoteLookup {
        let Some((record, backend)) = self.records.get(key) else {
            return RemoteLookup::Miss;
        };
        let Some(backend) = self.backends.get(*backend) else {
            return RemoteLookup::Miss;
        };
        let location = backend.location();
        let mut fetched = None;
        if let Some(layer) = &record.layer {
            if !store.has(&layer.digest) {
                if let Err(e) = backend.fetch(&layer_blob(layer), store) {
                    return RemoteLookup::Unavailable {
                        location,
                        error: crate::solve::execute::render(&e),
                    };
                }
                fetched = Some(layer.digest.clone());
            }
        }
        RemoteLookup::Hit {
            record: Box::new(record.clone()),
            location,
            fetched,
        }
    }
}

/// The backend of a cache location (a `digest` pin only matters when reading).
pub(super) fn backend_for(
    location: &CacheLocation,
    settings: &RegistrySettings,
    bases: &[String],
) -> Box<dyn Backend> {
    match location {
        CacheLocation::Registry { reference } => Box::new(RegistryBackend::new(
            settings.client(),
            reference.clone(),
            bases,
        )),
        CacheLocation::Local { dir, tag, digest } => {
            Box::new(LocalBackend::new(dir, tag, digest.as_ref()))
        }
    }
}

/// Read every cache of `imports` (manifest and record table; the table is verified into
/// `store`), reporting one vertex per cache to `events`. Never fails: problems are warnings.
pub fn import(
    imports: &[CacheImport],
    settings: &RegistrySettings,
    store: &BlobStore,
    events: &dyn EventSink,
) -> ImportedCache {
    let mut cache = ImportedCache::empty();
    for (i, imp) in imports.iter().enumerate() {
        let backend = backend_for(&imp.location, settings, &[]);
        let location = backend.location();
        let vertex = Vertex::start(
            VertexKind::CacheImport.id(i as u32),
            format!("importing cache manifest from {location}"),
            events,
        );
        let index = cache.backends.len();
        match read(backend.as_ref(), store) {
            Ok(None) => {
                let w = format!("cache {location} not found; building without it");
                vertex.warn(&w);
                cache.warnings.push(w);
            }
            Ok(Some(table)) => {
                vertex.log(format!(
                    "cache manifest {}: {} records",
                    table.digest,
                    table.entries.len()
                ));
                for p in table.problems {
                    let w = format!("cache {location}: {p}; record ignored");
                    vertex.warn(&w);
                    cache.warnings.push(w);
                }
                for (key, record) in table.entries {
                    cache.records.entry(key).or_insert((record, index));
                }
            }
            Err(e) => {
                let w = format!(
                    "cannot import cache {location}: {}",
                    crate::solve::execute::render(&e)
                );
                vertex.warn(&w);
                cache.warnings.push(w);
            }
        }
        cache.backends.push(backend);
        vertex.done();
    }
    cache
}

/// A record table read from a cache.
struct Table {
    digest: Digest,
    entries: Vec<(CacheKey, CacheRecord)>,
    problems: Vec<String>,
}

fn read(backend: &dyn Backend, store: &BlobStore) -> Result<Option<Table>, RemoteCacheError> {
    let Some((digest, bytes)) = backend.manifest()? else {
        return Ok(None);
    };
    let format_err = |source| RemoteCacheError::Format {
        location: backend.location(),
        source,
    };
    let manifest = parse_manifest(&bytes).map_err(format_err)?;
    backend.fetch(&manifest.config, store)?;
    let config = store
        .read(&manifest.config.digest)
        .map_err(|source| RemoteCacheError::Store {
            location: backend.location(),
            source,
        })?;
    let (entries, problems) = parse_config(&config, &manifest).map_err(format_err)?;
    Ok(Some(Table {
        digest,
        entries: entries.into_iter().map(|e| (e.key, e.record)).collect(),
        problems,
    }))
}
