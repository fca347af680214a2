//! Docker archives: the tar `docker save` writes and `docker load` reads.
//!
//! We write the format of Docker 25 and later, which is at the same time an OCI image layout:
//!
//! ```text
//! blobs/sha256/<config hex>     the image config, byte for byte (so the image ID is kept)
//! blobs/sha256/<diff id hex>    each layer as an UNCOMPRESSED tar (its digest is its diff ID)
//! blobs/sha256/<manifest hex>   an OCI manifest over those uncompressed layers
//! index.json                    that manifest, annotated with ref.name and io.containerd.image.name
//! manifest.json                 [{"Config":"blobs/sha256/…","RepoTags":["app:v1"],"Layers":[…]}]
//! oci-layout
//! repositories                  {"app":{"v1":"<top layer diff id hex>"}}
//! ```
//!
//! `RepoTags` use Docker's familiar names (`app:v1`, not `docker.io/library/app:v1`). Reading
//! accepts this format and the classic one (`<id>/layer.tar`, `<hex>.json`, layers deduplicated
//! through symlinks), with plain, gzip or zstd layers: `manifest.json` is the source of truth, every
//! layer is checked against the config's `rootfs.diff_ids`, and each image is stored in an
//! [`OciLayout`] (its config blob unchanged) and tagged with its `RepoTags`. The archive is written
//! to a temp file beside the destination and renamed into place.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::compress::{decoder, Compression, MEDIA_TYPE_LAYER};
use crate::digest::{DiffId, Digest, Hasher};
use crate::image::{read_image, write_manifest, ImageConfig, ManifestLayer, StoredImage};
use crate::json::to_canonical_vec;
use crate::oci_layout::{
    store_verified, write_file_atomic, ImageName, LayoutError, OciLayout, ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
};
use crate::store::BlobStore;
use crate::tar::entry::{Entry, EntryKind};
use crate::tar::read::for_each_entry;
use crate::tar::write::{TarOptions, TarWriter};

/// Why a docker archive could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A layout, store, image or tar operation failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// `manifest.json` is missing or malformed.
    #[error("docker archive manifest.json: {detail}")]
    BadManifest {
        /// What is wrong.
        detail: String,
    },
    /// A path named by `manifest.json` is not in the archive.
    #[error("docker archive has no member `{path}` (named by manifest.json)")]
    MissingMember {
        /// The member.
        path: String,
    },
    /// A symlink in the archive points outside it.
    #[error("docker archive member `{path}` links outside the archive: `{target}`")]
    BadLink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// A layer does not hash to the diff ID the config lists.
    #[error("layer `{path}` has diff id {found}, config says {expected}")]
    DiffIdMismatch {
        /// The archive member.
        path: String,
        /// From the config.
        expected: DiffId,
        /// Of the bytes.
        found: Digest,
    },
    /// Reading a layer for hashing failed.
    #[error("reading layer {digest}: {source}")]
    Layer {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

impl From<crate::store::StoreError> for ArchiveError {
    fn from(e: crate::store::StoreError) -> Self {
        ArchiveError::Layout(e.into())
    }
}

impl From<crate::image::ImageError> for ArchiveError {
    fn from(e: crate::image::ImageError) -> Self {
        ArchiveError::Layout(e.into())
    }
}

impl From<crate::tar::write::TarError> for ArchiveError {
    fn from(e: crate::tar::write::TarError) -> Self {
        ArchiveError::Layout(e.into())
    }
}

impl From<crate::json::JsonError> for ArchiveError {
    fn from(e: crate::json::JsonError) -> Self {
        ArchiveError::Layout(e.into())
    }
}

impl From<crate::tar::read::ReadError> for ArchiveError {
    fn from(e: crate::tar::read::ReadError) -> Self {
        ArchiveError::Layout(e.into())
    }
}

/// One entry of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveManifest {
    /// Path of the config in the archive.
    pub config: String,
    /// Familiar names (`app:v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layers, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
}

/// An image loaded from an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    /// The image as now stored in the layout.
    pub image: StoredImage,
    /// The names it was tagged with.
    pub names: Vec<ImageName>,
}

/// Where a blob of the archive being written comes from.
enum Source {
    /// A store blob copied as is.
    Stored(Digest),
    /// A compressed store blob, decompressed on the way (`size` = uncompressed size).
    Decompressed {
        digest: Digest,
        compression: Compression,
    },
    /// Bytes made here (the docker-shaped manifest).
    Bytes(Vec<u8>),
}

/// Write `images` (each with the names to tag it with) from `store` as a docker archive at `dest`.
pub fn write_docker_archive(
    store: &BlobStore,
    images: &[(StoredImage, Vec<ImageName>)],
    dest: &Path,
) -> Result<()> {
    let mut blobs: BTreeMap<String, (Source, u64)> = BTreeMap::new();
    let mut manifests = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut index_entries = Vec::new();
    for (image, names) in images {
        let layers = image.layers()?;
        let diff_ids = &image.config.rootfs.diff_ids;
        if layers.len() != diff_ids.len() {
            return Err(ArchiveError::BadManifest {
                detail: format!(
                    "image {} has {} layers but {} diff ids",
                    image.manifest_digest,
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        blobs.insert(
            image.config_digest.hex().to_string(),
            (
                Source::Stored(image.config_digest.clone()),
                image.config_bytes.len() as u64,
            ),
        );
        let mut plain_layers = Vec::new();
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let compression = blob_compression(store, &layer.digest)?;
            let (source, size) = if compression == Compression::None {
                (Source::Stored(layer.digest.clone()), layer.size)
            } else {
                let (found, size) = hash_decompressed(store, &layer.digest, compression)?;
                if found != diff_id.0 {
                    return Err(ArchiveError::DiffIdMismatch {
                        path: format!("blobs/sha256/{}", layer.digest.hex()),
                        expected: diff_id.clone(),
                        found,
                    });
                }
                (
                    Source::Decompressed {
                        digest: layer.digest.clone(),
                        compression,
                    },
                    size,
                )
            };
            plain_layers.push(ManifestLayer {
                digest: diff_id.0.clone(),
                size,
                media_type: MEDIA_TYPE_LAYER.into(),
            });
            blobs
                .entry(diff_id.0.hex().to_string())
                .or_insert((source, size));
        }
        let manifest_bytes = docker_manifest_bytes(
            &image.config_digest,
            image.config_bytes.len() as u64,
            &plain_layers,
        )?;
        let manifest_digest = Digest::of(&manifest_bytes);
        let manifest_size = manifest_bytes.len() as u64;
        blobs.insert(
            manifest_digest.hex().to_string(),
            (Source::Bytes(manifest_bytes), manifest_size),
        );
        manifests.push(ArchiveManifest {
            config: format!("blobs/sha256/{}", image.config_digest.hex()),
            repo_tags: (!names.is_empty()).then(|| names.iter().map(ImageName::familiar).collect()),
            layers: diff_ids
                .iter()
                .map(|d| format!("blobs/sha256/{}", d.0.hex()))
                .collect(),
        });
        for name in names {
            if let Some(top) = diff_ids.last() {
                repositories
                    .entry(name.familiar_repository())
                    .or_default()
                    .insert(name.tag().to_string(), top.0.hex().to_string());
            }
            index_entries.push(index_entry(&manifest_digest, manifest_size, Some(name)));
        }
        if names.is_empty() {
            index_entries.push(index_entry(&manifest_digest, manifest_size, None));
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MEDIA_TYPE_INDEX,
        "manifests": index_entries,
    });
    let mut files: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    files.insert("index.json", to_canonical_vec(&index)?);
    files.insert("manifest.json", to_canonical_vec(&manifests)?);
    files.insert("oci-layout", crate::store::OCI_LAYOUT.as_bytes().to_vec());
    if !repositories.is_empty() {
        files.insert("repositories", to_canonical_vec(&repositories)?);
    }
    write_file_atomic(dest, |file| {
        let mut tar = TarWriter::new(file, TarOptions::default());
        tar.append(&Entry::dir("blobs"), &mut io::empty())?;
        tar.append(&Entry::dir("blobs/sha256"), &mut io::empty())?;
        for (hex, (source, size)) in &blobs {
            let entry = Entry::file(format!("blobs/sha256/{hex}"), *size);
            match source {
                Source::Stored(d) => tar.append(&entry, &mut store.open_verified(d)?)?,
                Source::Decompressed {
                    digest,
                    compression,
                    ..
                } => {
                    let mut r =
                        decoder(store.open_verified(digest)?, *compression).map_err(|e| {
                            LayoutError::Io {
                                op: "decompress",
                                path: store.blob_path(digest),
                                source: io::Error::other(e),
                            }
                        })?;
                    tar.append(&entry, &mut r)?
                }
                Source::Bytes(b) => tar.append(&entry, &mut &b[..])?,
            }
        }
        // Already in tar order: index.json < manifest.json < oci-layout < repositories.
        for (name, bytes) in &files {
            tar.append(&Entry::file(*name, bytes.len() as u64), &mut &bytes[..])?;
        }
        tar.finish()?;
        Ok(())
    })
    .map_err(ArchiveError::from)
}

/// Read a docker archive into `layout`: blobs stored, one manifest written per image, each image
/// tagged with its `RepoTags`.
pub fn read_docker_archive<R: Read>(tar: R, layout: &OciLayout) -> Result<Vec<LoadedImage>> {
    let store = layout.store();
    let mut files: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut manifest_json: Option<Vec<u8>> = None;
    for_each_entry(tar, |entry: &Entry, data: &mut dyn Read| -> Result<()> {
        let path = entry.path.clone();
        match &entry.kind {
            EntryKind::File { size } if path == "manifest.json" => {
                let mut bytes = Vec::new();
                data.take(*size)
                    .read_to_end(&mut bytes)
                    .map_err(|source| LayoutError::Io {
                        op: "read manifest.json from",
                        path: path.clone().into(),
                        source,
                    })?;
                manifest_json = Some(bytes);
            }
            EntryKind::File { .. } if is_metadata(&path) => {}
            EntryKind::File { size } => {
                let named = path
                    .strip_prefix("blobs/sha256/")
                    .and_then(|hex| Digest::from_str(&format!("sha256:{hex}")).ok());
                let stored = match named {
                    // A blob named by its digest is verified against the name as it is stored.
                    Some(digest) => {
                        store_verified(store, &digest, *size, data)?;
                        (digest, *size)
                    }
                    None => {
                        let mut w = store.writer()?;
                        io::copy(&mut data.take(*size), &mut w).map_err(|source| {
                            LayoutError::Io {
                                op: "store member",
                                path: path.clone().into(),
                                source,
                            }
                        })?;
                        w.complete()?
                    }
                };
                files.insert(path, stored);
            }
            EntryKind::Symlink { target } => {
                let dir = entry.parent().unwrap_or("");
                let joined = if target.starts_with('/') {
                    None
                } else {
                    lexical_join(dir, target)
                };
                let resolved = joined.ok_or_else(|| ArchiveError::BadLink {
                    path: path.clone(),
                    target: target.clone(),
                })?;
                links.insert(path, resolved);
            }
            EntryKind::HardLink { target } => {
                links.insert(path, target.clone());
            }
            _ => {}
        }
        Ok(())
    })?;
    let bytes = manifest_json.ok_or_else(|| ArchiveError::BadManifest {
        detail: "missing".into(),
    })?;
    let manifests: Vec<ArchiveManifest> =
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::BadManifest {
            detail: e.to_string(),
        })?;
    let lookup = |path: &str| -> Result<(Digest, u64)> {
        let mut p = path.trim_start_matches("./").to_string();
        for _ in 0..16 {
            if let Some(found) = files.get(&p) {
                return Ok(found.clone());
            }
            match links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(ArchiveError::MissingMember {
            path: path.to_string(),
        })
    };
    let mut out = Vec::new();
    for m in &manifests {
        let (config_digest, config_size) = lookup(&m.config)?;
        let config_bytes = store.read(&config_digest)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| ArchiveError::BadManifest {
                detail: format!("config `{}` is not an image config: {e}", m.config),
            })?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(ArchiveError::BadManifest {
                detail: format!(
                    "{} layers listed, config has {} diff ids",
                    m.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (path, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            let (digest, size) = lookup(path)?;
            let compression = blob_compression(store, &digest)?;
            let found = if compression == Compression::None {
                digest.clone()
            } else {
                hash_decompressed(store, &digest, compression)?.0
            };
            if found != diff_id.0 {
                return Err(ArchiveError::DiffIdMismatch {
                    path: path.clone(),
                    expected: diff_id.clone(),
                    found,
                });
            }
            layers.push(ManifestLayer {
                digest,
                size,
                media_type: compression.oci_media_type().to_string(),
            });
        }
        let (manifest_digest, _, _) = write_manifest(
            store,
            &config_digest,
            config_size,
            &layers,
            &BTreeMap::new(),
        )?;
        let image = read_image(store, &manifest_digest)?;
        let mut names = Vec::new();
        for tag in m.repo_tags.iter().flatten() {
            let name = ImageName::from_str(tag)?;
            layout.tag(&name, &image)?;
            names.push(name);
        }
        if names.is_empty() {
            layout.add(image.descriptor()?, None)?;
        }
        out.push(LoadedImage { image, names });
    }
    Ok(out)
}

/// Classic-format per-layer metadata we do not need (`<id>/json`, `<id>/VERSION`) and the layout
/// files we regenerate.
fn is_metadata(path: &str) -> bool {
    path.ends_with("/json")
        || path.ends_with("/VERSION")
        || path == "repositories"
        || path == "index.json"
        || path == "oci-layout"
}

/// `dir` joined with a relative `target`, `..` resolved; `None` when it climbs out.
fn lexical_join(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The compression of a stored blob, from its magic bytes.
fn blob_compression(store: &BlobStore, digest: &Digest) -> Result<Compression> {
    let mut head = [0u8; 4];
    let mut f = store.open_blob(digest)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ArchiveError::Layer {
                    digest: digest.clone(),
                    source,
                })
            }
        }
    }
    Ok(Compression::detect(&head[..n]))
}

/// The sha256 and size of a compressed blob's decompressed bytes.
fn hash_decompressed(
    store: &BlobStore,
    digest: &Digest,
    compression: Compression,
) -> Result<(Digest, u64)> {
    let mut r =
        decoder(store.open_verified(digest)?, compression).map_err(|e| ArchiveError::Layer {
            digest: digest.clone(),
            source: io::Error::other(e),
        })?;
    let mut h = Hasher::new();
    io::copy(&mut r, &mut h).map_err(|source| ArchiveError::Layer {
        digest: digest.clone(),
        source,
    })?;
    Ok(h.finish())
}

/// The canonical bytes of an OCI manifest over uncompressed layers (not stored anywhere).
fn docker_manifest_bytes(
    config: &Digest,
    config_size: u64,
    layers: &[ManifestLayer],
) -> Result<Vec<u8>> {
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image::MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": crate::image::MEDIA_TYPE_CONFIG, "digest": config.to_string(), "size": config_size},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    Ok(to_canonical_vec(&value)?)
}

fn index_entry(digest: &Digest, size: u64, name: Option<&ImageName>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "mediaType": crate::image::MEDIA_TYPE_MANIFEST,
        "digest": digest.to_string(),
        "size": size,
    });
    if let Some(name) = name {
        v["annotations"] = serde_json::json!({
            ANNOTATION_IMAGE_NAME: name.to_string(),
            ANNOTATION_REF_NAME: name.tag(),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_join_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("a", "../b/layer.tar", Some("b/layer.tar")),
            ("a/b", "../../c", Some("c")),
            ("a", "../../x", None),
            ("", "x", Some("x")),
        ];
        for (dir, target, want) in cases {
            assert_eq!(
                lexical_join(dir, target).as_deref(),
                *want,
                "{dir} + {target}"
            );
        }
    }

    #[test]
    fn metadata_members_are_skipped() {
        for (p, want) in [
            ("abc/json", true),
            ("abc/VERSION", true),
            ("abc/layer.tar", false),
            ("x.json", false),
        ] {
            assert_eq!(is_metadata(p), want, "{p}");
        }
    }
}
