//! The cache artifact: how cache records travel between stores, as an OCI artifact any
//! distribution registry or OCI layout can hold.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json, artifactType application/vnd.rbuild.cache.v1
//! ├── config  application/vnd.rbuild.cache.config.v1+json
//! │           {"records":[{"key":"sha256:…","record":<CacheRecord>},…]}   sorted by key
//! └── layers  the distinct layer blobs the records name, sorted by digest, each with its own
//!             media type and size
//! ```
//!
//! Everything is canonical JSON ([`rbuild_layers::json`]) and sorted, so the same records always
//! give the same config and manifest digests. BuildKit's own cache manifest is an image index
//! whose config lists layer chains (`application/vnd.buildkit.cacheconfig.v0`); rbuild keys are
//! computed from inputs only, so a flat key → record table is enough and the two formats are
//! not interchangeable (a cache written by one is not read by the other).

use std::collections::BTreeMap;

use rbuild_layers::digest::Digest;
use rbuild_layers::image::MEDIA_TYPE_MANIFEST;
use rbuild_layers::json::{to_canonical_vec, JsonError};
use serde::{Deserialize, Serialize};

use crate::cache::{CacheKey, CacheRecord, LayerRecord};
use crate::registry::BlobDescriptor;

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
/// The media type of the config blob (the record table).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The largest config blob an import reads.
pub const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// One record of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The step key the record answers.
    pub key: CacheKey,
    /// What the step produced.
    pub record: CacheRecord,
}

/// The config blob: the record table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The records, sorted by key.
    pub records: Vec<CacheEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: BlobDescriptor,
    #[serde(default)]
    layers: Vec<BlobDescriptor>,
}

/// A cache artifact ready to be stored: its blobs' bytes and digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The config blob (the record table).
    pub config: Vec<u8>,
    /// Its descriptor.
    pub config_ref: BlobDescriptor,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The manifest digest (the cache's identity).
    pub manifest_digest: Digest,
    /// The layer blobs the records name, sorted by digest.
    pub layers: Vec<BlobDescriptor>,
    /// How many records the table holds.
    pub records: usize,
}

/// A manifest read back: what to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The config blob.
    pub config: BlobDescriptor,
    /// The layer blobs.
    pub layers: Vec<BlobDescriptor>,
}

/// Why an artifact cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Serializing failed.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A document does not parse.
    #[error("the cache {what} is not valid json: {reason}")]
    NotJson {
        /// `manifest` or `config`.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// A field holds something this version does not read.
    #[error("the cache manifest has {field} `{found}`, expected `{expected}`")]
    Unexpected {
        /// The field (`schemaVersion`, `mediaType`, `artifactType`, `config.mediaType`).
        field: &'static str,
        /// What it holds.
        found: String,
        /// What rbuild writes.
        expected: String,
    },
    /// The config blob is too large to be a record table.
    #[error("the cache config is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// The blob of a record's layer, as the manifest lists it.
pub(super) fn layer_blob(layer: &LayerRecord) -> BlobDescriptor {
    BlobDescriptor {
        media_type: layer.media_type.clone(),
        digest: layer.digest.clone(),
        size: layer.size,
    }
}

/// Build the artifact of `records` (key → record): deterministic for equal records.
pub fn build(records: &BTreeMap<CacheKey, CacheRecord>) -> Result<Artifact, FormatError> {
    let mut layers: BTreeMap<Digest, BlobDescriptor> = BTreeMap::new();
    for record in records.values() {
        if let Some(l) = &record.layer {
            layers
                .entry(l.digest.clone())
                .or_insert_with(|| layer_blob(l));
        }
    }
    let table = CacheConfig {
        records: records
            .iter()
            .map(|(key, record)| CacheEntry {
                key: key.clone(),
                record: record.clone(),
            })
            .collect(),
    };
    let config = to_canonical_vec(&table)?;
    let config_ref = BlobDescriptor {
        media_type: CONFIG_MEDIA_TYPE.to_string(),
        digest: Digest::of(&config),
        size: config.len() as u64,
    };
    let layers: Vec<BlobDescriptor> = layers.into_values().collect();
    let manifest = to_canonical_vec(&ArtifactManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: config_ref.clone(),
        layers: layers.clone(),
    })?;
    Ok(Artifact {
        manifest_digest: Digest::of(&manifest),
        manifest,
        config,
        config_ref,
        layers,
        records: records.len(),
    })
}

/// Read a cache manifest: an OCI image manifest whose config is a record table.
pub fn parse_manifest(bytes: &[u8]) -> Result<ParsedManifest, FormatError> {
    let m: ArtifactManifest = serde_json::from_slice(bytes).map_err(|e| FormatError::NotJson {
        what: "manifest",
        reason: e.to_string(),
    })?;
    let expect = |field: &'static str, found: &str, expected: &str| {
        if found == expected {
            Ok(())
        } else {
            Err(FormatError::Unexpected {
                field,
                found: found.to_string(),
                expected: expected.to_string(),
            })
        }
    };
    expect("schemaVersion", &m.schema_version.to_string(), "2")?;
    expect(
        "mediaType",
        m.media_type.as_deref().unwrap_or(""),
        MEDIA_TYPE_MANIFEST,
    )?;
    if let Some(t) = &m.artifact_type {
        expect("artifactType", t, ARTIFACT_TYPE)?;
    }
    expect("config.mediaType", &m.config.media_type, CONFIG_MEDIA_TYPE)?;
    if m.config.size > MAX_CONFIG_SIZE {
        return Err(FormatError::TooLarge {
            size: m.config.size,
            limit: MAX_CONFIG_SIZE,
        });
    }
    Ok(ParsedManifest {
        config: m.config,
        layers: m.layers,
    })
}

/// Read a record table against its manifest's layers. Records whose manifest does not hash to
/// their key, or whose layer the manifest does not carry (with that size), are left out and
/// described in the second list.
pub fn parse_config(
    bytes: &[u8],
    manifest: &ParsedManifest,
) -> Result<(Vec<CacheEntry>, Vec<String>), FormatError> {
    let table: CacheConfig = serde_json::from_slice(bytes).map_err(|e| FormatError::NotJson {
        what: "config",
        reason: e.to_string(),
    })?;
    let mut good = Vec::new();
    let mut problems = Vec::new();
    for entry in table.records {
        let found = entry.record.manifest.key();
        if found != entry.key {
            problems.push(format!(
                "record {} has a key manifest hashing to {found}",
                entry.key
            ));
            continue;
        }
        if let Some(layer) = &entry.record.layer {
            let carried = manifest
                .layers
                .iter()
                .any(|b| b.digest == layer.digest && b.size == layer.size);
            if !carried {
                problems.push(format!(
                    "record {} names layer {} ({} bytes), which the manifest does not carry",
                    entry.key, layer.digest, layer.size
                ));
                continue;
            }
        }
        good.push(entry);
    }
    Ok((good, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ConfigOp;

    fn record(v: &str, blob: Option<&[u8]>) -> CacheRecord {
        let config = blob.is_none().then(|| ConfigOp::User("app".into()));
        crate::cache::index::test_records::record(v, blob, config)
    }

    fn table(records: &[CacheRecord]) -> BTreeMap<CacheKey, CacheRecord> {
        records
            .iter()
            .map(|r| (r.manifest.key(), r.clone()))
            .collect()
    }

    #[test]
    fn artifact_is_deterministic_sorted_and_round_trips() {
        let (a, b, c) = (
            record("a", Some(b"one")),
            record("b", Some(b"two")),
            record("c", None),
        );
        let shared = record("d", Some(b"one"));
        let first =
            build(&table(&[a.clone(), b.clone(), c.clone(), shared.clone()])).expect("build");
        let second = build(&table(&[shared, c, b, a])).expect("build");
        assert_eq!(first, second);
        assert_eq!(first.records, 4);
        // One layer per distinct blob, sorted by digest.
        let digests: Vec<&Digest> = first.layers.iter().map(|l| &l.digest).collect();
        let mut sorted = [Digest::of(b"one"), Digest::of(b"two")];
        sorted.sort();
        assert_eq!(digests, sorted.iter().collect::<Vec<_>>());

        let manifest: serde_json::Value =
            serde_json::from_slice(&first.manifest).expect("manifest json");
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(manifest["artifactType"], ARTIFACT_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(first.manifest_digest, Digest::of(&first.manifest));

        let parsed = parse_manifest(&first.manifest).expect("parse manifest");
        assert_eq!(parsed.config, first.config_ref);
        let (entries, problems) = parse_config(&first.config, &parsed).expect("parse config");
        assert!(problems.is_empty(), "{problems:?}");
        let keys: Vec<&CacheKey> = entries.iter().map(|e| &e.key).collect();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(keys, want, "records are sorted by key");
        assert_eq!(entries.len(), 4);
    }

    #[test]
    fn manifests_of_other_kinds_are_refused() {
        let good = build(&table(&[record("a", None)])).expect("build");
        let mut v: serde_json::Value = serde_json::from_slice(&good.manifest).expect("json");
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("schema", serde_json::json!(1), "schemaVersion"),
            (
                "mediaType",
                serde_json::json!("application/vnd.oci.image.index.v1+json"),
                "mediaType",
            ),
            (
                "artifactType",
                serde_json::json!("application/x-other"),
                "artifactType",
            ),
        ];
        for (field, value, want) in cases {
            let mut m = v.clone();
            let key = if field == "schema" {
                "schemaVersion"
            } else {
                field
            };
            m[key] = value;
            let err = parse_manifest(&serde_json::to_vec(&m).expect("bytes"))
                .expect_err(field)
                .to_string();
            assert!(err.contains(want), "{field}: {err}");
        }
        v["config"]["mediaType"] = serde_json::json!("application/vnd.oci.image.config.v1+json");
        let err = parse_manifest(&serde_json::to_vec(&v).expect("bytes")).expect_err("config");
        assert!(err.to_string().contains("config.mediaType"), "{err}");
        assert!(matches!(
            parse_manifest(b"{ nope"),
            Err(FormatError::NotJson { .. })
        ));
    }

    #[test]
    fn bad_records_are_left_out_and_described() {
        let (a, b) = (record("a", Some(b"one")), record("b", Some(b"two")));
        let art = build(&table(&[a.clone(), b.clone()])).expect("build");
        let mut parsed = parse_manifest(&art.manifest).expect("parse");
        // The manifest no longer carries b's layer.
        parsed.layers.retain(|l| l.digest != Digest::of(b"two"));
        // And a record is stored under a key its manifest does not hash to.
        let mut config: CacheConfig = serde_json::from_slice(&art.config).expect("config");
        config.records.push(CacheEntry {
            key: record("zzz", None).manifest.key(),
            record: record("c", None),
        });
        let bytes = serde_json::to_vec(&config).expect("bytes");
        let (entries, problems) = parse_config(&bytes, &parsed).expect("parse");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].record, a);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("does not carry")));
        assert!(problems.iter().any(|p| p.contains("hashing to")));
    }
}
