//! Image assembly: the image config (platform, container config, `rootfs.diff_ids`, history) and
//! the OCI manifest that ties the config blob to the layer blobs.
//!
//! The config type is our own ([`ImageConfig`]) rather than `oci_spec::image::ImageConfiguration`
//! because BuildKit writes Docker's extra container-config fields — `Healthcheck`, `OnBuild`,
//! `Shell` and `ArgsEscaped` — into OCI images too (its `dockerspec.DockerOCIImage`), and oci-spec's
//! `Config` would drop them. Field names and omission rules follow Go's `encoding/json` tags of
//! that type: container-config keys are capitalised (`Env`, `Cmd`, …), empty values are omitted.
//! Unknown fields of a base image's config (`container_config`, `docker_version`, …) are dropped,
//! as BuildKit drops them.
//!
//! Everything hashed goes through [`crate::json::to_canonical_vec`]; the manifest and config are
//! stored as blobs in the [`BlobStore`] and never re-serialized once their digest is known
//! (reading keeps the original bytes). Invariant checked by [`write_image`]: the config's
//! `rootfs.diff_ids` equal the layers' diff IDs, in order, and (when history is present) the
//! number of history entries without `empty_layer` equals the number of layers.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use serde::{Deserialize, Serialize};

use crate::digest::{DiffId, Digest};
use crate::json::{to_canonical_vec, JsonError};
use crate::store::{BlobStore, LayerInfo, StoreError};

/// OCI media type of an image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI media type of an image index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI media type of an image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 media type of a manifest (accepted when reading).
pub const DOCKER_MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 media type of a manifest list (accepted when reading).
pub const DOCKER_MEDIA_TYPE_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Why an image could not be assembled or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Storing or loading a blob failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Serializing JSON failed.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A stored JSON blob does not parse as what it should be.
    #[error("{what} {digest} is not valid: {source}")]
    Parse {
        /// `manifest`, `config`, `index`.
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The config and the layers disagree.
    #[error("image config does not match its layers: {detail}")]
    Inconsistent {
        /// What differs.
        detail: String,
    },
    /// A digest inside a manifest is not one we accept.
    #[error("{what} has unsupported digest `{value}`")]
    BadDigest {
        /// Where it was found.
        what: &'static str,
        /// The digest text.
        value: String,
    },
    /// oci-spec refused to build a manifest.
    #[error("building manifest: {0}")]
    Spec(String),
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Go writes nil slices as `null`: read them as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_none_or_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_none_or(|v| v.is_empty())
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The image config blob (`application/vnd.oci.image.config.v1+json`), Docker fields included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (`MAINTAINER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    /// CPU variant (`v8` for arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The runtime configuration.
    #[serde(default)]
    pub config: ContainerConfig,
    /// The layers' diff IDs.
    pub rootfs: RootFs,
    /// One entry per build step, oldest first.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// The runtime part of the config, with Docker's extensions (Go field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: `"80/tcp"` → `{}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV` as `KEY=value`.
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`: path → `{}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Windows only: the command line is already escaped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub args_escaped: bool,
    /// `HEALTHCHECK` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers (Docker extension).
    #[serde(default, rename = "OnBuild", skip_serializing_if = "is_none_or_empty")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL` (Docker extension).
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub shell: Option<Vec<String>>,
}

/// The empty JSON object used as a set member (`ExposedPorts`, `Volumes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `HEALTHCHECK` settings; durations in nanoseconds, as Go's `time.Duration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    #[serde(default, skip_serializing_if = "is_none_or_empty")]
    pub test: Option<Vec<String>>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Time before a check is considered hung.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Grace period after start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Interval during the start period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

/// `rootfs`: the diff IDs of the layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Diff IDs, bottom first.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub diff_ids: Vec<DiffId>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction (`RUN /bin/sh -c make # buildkit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text (`buildkit.dockerfile.v0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// An empty config for a platform (`linux`, `amd64`).
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        ImageConfig {
            os: os.into(),
            architecture: architecture.into(),
            ..Default::default()
        }
    }

    /// Record a step that produced the layer `diff_id`.
    pub fn push_layer(&mut self, diff_id: DiffId, mut history: History) {
        history.empty_layer = false;
        self.rootfs.diff_ids.push(diff_id);
        self.history.push(history);
    }

    /// Record a step that changed only the config.
    pub fn push_empty(&mut self, mut history: History) {
        history.empty_layer = true;
        self.history.push(history);
    }

    /// The canonical JSON bytes of this config.
    pub fn to_canonical(&self) -> Result<Vec<u8>> {
        Ok(to_canonical_vec(self)?)
    }

    /// Check the invariants between this config and `layers` (see the module docs).
    pub fn check_layers(&self, layers: &[DiffId]) -> Result<()> {
        if self.rootfs.diff_ids != layers {
            return Err(ImageError::Inconsistent {
                detail: format!(
                    "rootfs.diff_ids has {} entries {:?}, layers are {:?}",
                    self.rootfs.diff_ids.len(),
                    self.rootfs.diff_ids,
                    layers
                ),
            });
        }
        if !self.history.is_empty() {
            let non_empty = self.history.iter().filter(|h| !h.empty_layer).count();
            if non_empty != layers.len() {
                return Err(ImageError::Inconsistent {
                    detail: format!(
                        "{non_empty} history entries make layers, but there are {} layers",
                        layers.len()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A layer as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLayer {
    /// Blob digest (compressed).
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Layer media type.
    pub media_type: String,
}

impl From<&LayerInfo> for ManifestLayer {
    fn from(l: &LayerInfo) -> Self {
        ManifestLayer {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
        }
    }
}

/// An image stored in a [`BlobStore`]: its manifest descriptor plus the parsed parts.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredImage {
    /// Digest of the manifest blob.
    pub manifest_digest: Digest,
    /// Size of the manifest blob.
    pub manifest_size: u64,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The parsed config.
    pub config: ImageConfig,
    /// Digest of the config blob.
    pub config_digest: Digest,
    /// The config bytes exactly as stored.
    pub config_bytes: Vec<u8>,
}

impl StoredImage {
    /// The layers in manifest order.
    pub fn layers(&self) -> Result<Vec<ManifestLayer>> {
        self.manifest
            .layers()
            .iter()
            .map(|d| {
                Ok(ManifestLayer {
                    digest: our_digest(d, "layer")?,
                    size: d.size(),
                    media_type: d.media_type().to_string(),
                })
            })
            .collect()
    }

    /// A descriptor of the manifest (media type, digest, size; no annotations), with the
    /// config's platform.
    pub fn descriptor(&self) -> Result<Descriptor> {
        let mut d = Descriptor::new(
            MediaType::ImageManifest,
            self.manifest_size,
            spec_digest(&self.manifest_digest)?,
        );
        d.set_platform(Some(platform_of(&self.config)));
        Ok(d)
    }
}

/// The platform an image config declares, as an index descriptor carries it.
pub fn platform_of(config: &ImageConfig) -> oci_spec::image::Platform {
    let mut p = oci_spec::image::Platform::default();
    p.set_os(config.os.as_str().into());
    p.set_architecture(config.architecture.as_str().into());
    p.set_variant(config.variant.clone());
    p
}

/// Store `config` and a manifest over `layers` (already in the store) in `store`; the manifest
/// gets `annotations` when non-empty.
pub fn write_image(
    store: &BlobStore,
    config: &ImageConfig,
    layers: &[LayerInfo],
    annotations: &BTreeMap<String, String>,
) -> Result<StoredImage> {
    let diff_ids: Vec<DiffId> = layers.iter().map(|l| l.diff_id.clone()).collect();
    config.check_layers(&diff_ids)?;
    let config_bytes = config.to_canonical()?;
    let (config_digest, config_size) = store.put(&config_bytes)?;
    let listed: Vec<ManifestLayer> = layers.iter().map(ManifestLayer::from).collect();
    let (manifest_digest, manifest_size, manifest) =
        write_manifest(store, &config_digest, config_size, &listed, annotations)?;
    Ok(StoredImage {
        manifest_digest,
        manifest_size,
        manifest,
        config: config.clone(),
        config_digest,
        config_bytes,
    })
}

/// Store a manifest over a config blob and layer blobs already in `store` (the config bytes are
/// used as they are, so an imported image keeps its ID); returns the manifest digest and size.
pub fn write_manifest(
    store: &BlobStore,
    config_digest: &Digest,
    config_size: u64,
    layers: &[ManifestLayer],
    annotations: &BTreeMap<String, String>,
) -> Result<(Digest, u64, ImageManifest)> {
    let mut descriptors = Vec::with_capacity(layers.len());
    for l in layers {
        descriptors.push(Descriptor::new(
            MediaType::from(l.media_type.as_str()),
            l.size,
            spec_digest(&l.digest)?,
        ));
    }
    let mut builder = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_size,
            spec_digest(config_digest)?,
        ))
        .layers(descriptors);
    if !annotations.is_empty() {
        let map: std::collections::HashMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.annotations(map);
    }
    let manifest = builder
        .build()
        .map_err(|e| ImageError::Spec(e.to_string()))?;
    let bytes = to_canonical_vec(&manifest)?;
    let (digest, size) = store.put(&bytes)?;
    Ok((digest, size, manifest))
}

/// Load the image whose manifest is `manifest_digest` (verified reads).
pub fn read_image(store: &BlobStore, manifest_digest: &Digest) -> Result<StoredImage> {
    let bytes = store.read(manifest_digest)?;
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Parse {
            what: "manifest",
            digest: manifest_digest.clone(),
            source,
        })?;
    let config_digest = our_digest(manifest.config(), "config")?;
    let config_bytes = store.read(&config_digest)?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|source| ImageError::Parse {
            what: "config",
            digest: config_digest.clone(),
            source,
        })?;
    Ok(StoredImage {
        manifest_digest: manifest_digest.clone(),
        manifest_size: bytes.len() as u64,
        manifest,
        config,
        config_digest,
        config_bytes,
    })
}

/// Our digest type from a descriptor's.
pub(crate) fn our_digest(d: &Descriptor, what: &'static str) -> Result<Digest> {
    let text = d.digest().to_string();
    Digest::from_str(&text).map_err(|_| ImageError::BadDigest { what, value: text })
}

/// oci-spec's digest type from ours.
pub(crate) fn spec_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    oci_spec::image::Digest::from_str(&d.to_string()).map_err(|_| ImageError::BadDigest {
        what: "digest",
        value: d.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_fields_survive_a_round_trip() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"],"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]},"container_config":{"Cmd":["ignored"]}}"#;
        let cfg: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            cfg.config.shell.as_deref(),
            Some(&["/bin/bash".to_string(), "-c".to_string()][..])
        );
        assert_eq!(
            cfg.config.healthcheck.as_ref().unwrap().interval,
            1_000_000_000
        );
        let out = String::from_utf8(cfg.to_canonical().unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"architecture":"amd64","config":{"Env":["A=1"],"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Interval":1000000000,"Test":["CMD","true"]},"OnBuild":["RUN x"],"Shell":["/bin/bash","-c"]},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#
        );
    }

    #[test]
    fn nulls_are_accepted() {
        let json = r#"{"architecture":"arm64","os":"linux","config":{"Cmd":null,"Env":null,"Entrypoint":null},"rootfs":{"type":"layers","diff_ids":null},"history":null}"#;
        let cfg: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg.config.cmd, None);
        assert!(cfg.rootfs.diff_ids.is_empty() && cfg.history.is_empty());
    }

    #[test]
    fn history_must_match_layers() {
        let d = DiffId(Digest::of(b"x"));
        let mut cfg = ImageConfig::new("linux", "amd64");
        cfg.push_layer(d.clone(), History::default());
        cfg.push_empty(History::default());
        assert!(cfg.check_layers(std::slice::from_ref(&d)).is_ok());
        assert!(cfg.check_layers(&[]).is_err());
        cfg.history.push(History::default());
        assert!(cfg.check_layers(&[d]).is_err());
    }

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::ensure(dir.path()).unwrap();
        let layer_bytes = b"not really a tar".to_vec();
        let (digest, size) = store.put(&layer_bytes).unwrap();
        let info = LayerInfo {
            digest,
            diff_id: DiffId(Digest::of(&layer_bytes)),
            size,
            media_type: crate::compress::MEDIA_TYPE_LAYER.to_string(),
            compression: crate::compress::Compression::None,
        };
        let mut cfg = ImageConfig::new("linux", "amd64");
        cfg.push_layer(
            info.diff_id.clone(),
            History {
                created_by: Some("COPY . .".into()),
                ..Default::default()
            },
        );
        let img = write_image(&store, &cfg, &[info], &BTreeMap::new()).unwrap();
        let back = read_image(&store, &img.manifest_digest).unwrap();
        assert_eq!(back.config, cfg);
        assert_eq!(back.layers().unwrap().len(), 1);
        let again = write_image(&store, &cfg, &[img_layer(&back)], &BTreeMap::new()).unwrap();
        assert_eq!(
            again.manifest_digest, img.manifest_digest,
            "same input, same digest"
        );
    }

    fn img_layer(img: &StoredImage) -> LayerInfo {
        let l = &img.layers().unwrap()[0];
        LayerInfo {
            digest: l.digest.clone(),
            diff_id: img.config.rootfs.diff_ids[0].clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            compression: crate::compress::Compression::None,
        }
    }
}
