//! Image sources: where `FROM x` and `COPY --from=x` find image `x`.
//!
//! An [`ImageSource`] answers "do you know this reference?" with a [`ResolvedImage`] whose blobs
//! are in the local store. [`Resolver`] asks its sources in order, as BuildKit's Dockerfile
//! front-end asks its named contexts before the image resolver:
//!
//! 1. named build contexts (`--build-context name=oci-layout://…` / `docker-image://…`);
//! 2. explicit forms: `oci-layout://DIR[:TAG|@sha256:…]` and `docker-archive://FILE`;
//! 3. the local store, by name or digest.
//!
//! A registry source (a later issue) is one more [`ImageSource`] pushed at the end
//! ([`Resolver::push`]); until then an unknown reference is "image X not found in the local
//! store; registry pulls are not available yet". Blobs of images from other layouts or archives
//! are copied into the store byte for byte: a base layer is never decompressed or re-encoded.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rbuild_layers::compress::Compression;
use rbuild_layers::digest::Digest;
use rbuild_layers::docker_archive::read_docker_archive;
use rbuild_layers::image::{read_image, ImageConfig, StoredImage};
use rbuild_layers::oci_layout::{OciLayout, PlatformSpec};
use rbuild_layers::store::BlobStore;

use crate::cache::LayerRecord;
use crate::error::BuildError;
use crate::solve::request::NamedContext;
use crate::store::Store;

/// An image whose blobs are all in the local store.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedImage {
    /// The reference as written.
    pub reference: String,
    /// The manifest digest (what cache keys use).
    pub manifest_digest: Digest,
    /// The image config.
    pub config: ImageConfig,
    /// The layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

impl ResolvedImage {
    /// The parts of a stored image a build needs.
    pub fn from_stored(reference: &str, image: &StoredImage) -> Result<Self, BuildError> {
        let manifest_layers = image.layers().map_err(|e| source_error(reference, e))?;
        let diff_ids = &image.config.rootfs.diff_ids;
        if manifest_layers.len() != diff_ids.len() {
            return Err(BuildError::Source {
                reference: reference.to_string(),
                reason: format!(
                    "manifest lists {} layers but the config has {} diff ids",
                    manifest_layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let layers = manifest_layers
            .into_iter()
            .zip(diff_ids)
            .map(|(l, d)| LayerRecord {
                digest: l.digest,
                diff_id: d.clone(),
                size: l.size,
                media_type: oci_media_type(&l.media_type),
            })
            .collect();
        Ok(ResolvedImage {
            reference: reference.to_string(),
            manifest_digest: image.manifest_digest.clone(),
            config: image.config.clone(),
            layers,
        })
    }
}

/// The OCI media type of a layer with the same bytes (Docker's names mapped to OCI's, as
/// BuildKit's exporter does with `oci-mediatypes=true`); unknown types are kept.
pub fn oci_media_type(media_type: &str) -> String {
    match Compression::from_media_type(media_type) {
        Some(c) => c.oci_media_type().to_string(),
        None => media_type.to_string(),
    }
}

/// Something that can resolve image references into the local store.
pub trait ImageSource: Send + Sync {
    /// Resolve `reference`; `Ok(None)` when this source does not know it.
    fn resolve(&self, reference: &str, store: &Store) -> Result<Option<ResolvedImage>, BuildError>;
}

/// Images given as named build contexts (`oci-layout://` and `docker-image://` kinds).
pub struct NamedContextSource {
    contexts: BTreeMap<String, NamedContext>,
    platform: PlatformSpec,
}

impl NamedContextSource {
    /// A source over the image-like named contexts of a request.
    pub fn new(contexts: &BTreeMap<String, NamedContext>, platform: PlatformSpec) -> Self {
        let contexts = contexts
            .iter()
            .filter(|(_, c)| !matches!(c, NamedContext::Dir(_)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        NamedContextSource { contexts, platform }
    }
}

impl ImageSource for NamedContextSource {
    fn resolve(&self, reference: &str, store: &Store) -> Result<Option<ResolvedImage>, BuildError> {
        let Some(ctx) = self.contexts.get(reference) else {
            return Ok(None);
        };
        let resolved = match ctx {
            NamedContext::OciLayout { dir, reference: r } => {
                from_layout(store, dir, r.as_deref(), &self.platform, reference)?
            }
            NamedContext::DockerImage(r) => {
                let inner = Resolver::without_named(self.platform.clone());
                let mut image = inner.resolve(r, store)?;
                image.reference = reference.to_string();
                image
            }
            NamedContext::Dir(_) => return Ok(None),
        };
        Ok(Some(resolved))
    }
}

/// `oci-layout://DIR[:TAG|@sha256:…]` and `docker-archive://FILE` references.
pub struct UrlFormSource {
    platform: PlatformSpec,
}

impl ImageSource for UrlFormSource {
    fn resolve(&self, reference: &str, store: &Store) -> Result<Option<ResolvedImage>, BuildError> {
        if let Some(rest) = reference.strip_prefix("oci-layout://") {
            let (dir, r) = split_layout_ref(rest);
            return from_layout(store, Path::new(dir), r, &self.platform, reference).map(Some);
        }
        if let Some(file) = reference.strip_prefix("docker-archive://") {
            return from_docker_archive(store, Path::new(file), reference).map(Some);
        }
        Ok(None)
    }
}

/// Images already in the local store, by name or digest.
pub struct LocalStoreSource;

impl ImageSource for LocalStoreSource {
    fn resolve(&self, reference: &str, store: &Store) -> Result<Option<ResolvedImage>, BuildError> {
        // `name@sha256:…` pins a digest: the name part only documents it.
        let lookup = match reference.split_once('@') {
            Some((_, digest)) => digest,
            None => reference,
        };
        match store.resolve(lookup) {
            Ok(image) => Ok(Some(ResolvedImage::from_stored(reference, &image)?)),
            Err(crate::store::StoreError::NotFound { .. })
            | Err(crate::store::StoreError::BadName { .. }) => Ok(None),
            Err(e) => Err(BuildError::Store(e)),
        }
    }
}

/// Asks image sources in order; see the module documentation.
pub struct Resolver {
    sources: Vec<Box<dyn ImageSource>>,
}

impl Resolver {
    /// The standard chain for a build: named contexts, URL forms, local store.
    pub fn new(named: &BTreeMap<String, NamedContext>, platform: PlatformSpec) -> Self {
        Resolver {
            sources: vec![
                Box::new(NamedContextSource::new(named, platform.clone())),
                Box::new(UrlFormSource { platform }),
                Box::new(LocalStoreSource),
            ],
        }
    }

    fn without_named(platform: PlatformSpec) -> Self {
        Resolver {
            sources: vec![
                Box::new(UrlFormSource { platform }),
                Box::new(LocalStoreSource),
            ],
        }
    }

    /// Add a source asked after the others (the slot for a registry source).
    pub fn push(&mut self, source: Box<dyn ImageSource>) {
        self.sources.push(source);
    }

    /// Resolve `reference` through the chain.
    pub fn resolve(&self, reference: &str, store: &Store) -> Result<ResolvedImage, BuildError> {
        for s in &self.sources {
            if let Some(image) = s.resolve(reference, store)? {
                return Ok(image);
            }
        }
        Err(BuildError::ImageNotFound {
            reference: reference.to_string(),
        })
    }
}

/// Split `DIR[:TAG|@sha256:…]`; a `:` inside the directory path (before the last `/`) is kept.
pub fn split_layout_ref(rest: &str) -> (&str, Option<&str>) {
    if let Some((dir, digest)) = rest.rsplit_once('@') {
        return (dir, Some(digest));
    }
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    }
}

fn source_error(reference: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError::Source {
        reference: reference.to_string(),
        reason: e.to_string(),
    }
}

/// Load an image from an OCI layout directory and copy its blobs into the store.
fn from_layout(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
    platform: &PlatformSpec,
    display: &str,
) -> Result<ResolvedImage, BuildError> {
    let layout = OciLayout::open(dir).map_err(|e| source_error(display, e))?;
    let image = match reference {
        Some(r) => layout.image(r, Some(platform)),
        None => {
            let latest = layout.image("latest", Some(platform));
            match latest {
                Ok(img) => Ok(img),
                Err(_) => only_image(&layout, platform),
            }
        }
    }
    .map_err(|e| source_error(display, e))?;
    import_image(layout.store(), &image, store.blobs()).map_err(|e| source_error(display, e))?;
    ResolvedImage::from_stored(display, &image)
}

/// The single image of a layout without a `latest` tag.
fn only_image(
    layout: &OciLayout,
    platform: &PlatformSpec,
) -> Result<StoredImage, rbuild_layers::oci_layout::LayoutError> {
    let index = layout.index()?;
    match index.manifests().as_slice() {
        [one] => layout.image(one.digest().as_ref(), Some(platform)),
        _ => layout.image("latest", Some(platform)),
    }
}

/// Read a docker archive through a scratch layout and copy its first image into the store.
fn from_docker_archive(
    store: &Store,
    file: &Path,
    display: &str,
) -> Result<ResolvedImage, BuildError> {
    let scratch = tempfile::Builder::new()
        .prefix(".tmp-archive-")
        .tempdir_in(store.root())
        .map_err(|source| BuildError::Io {
            op: "create scratch dir in",
            path: store.root().to_path_buf(),
            source,
        })?;
    let layout = OciLayout::ensure(scratch.path()).map_err(|e| source_error(display, e))?;
    let tar = File::open(file).map_err(|source| BuildError::Io {
        op: "open",
        path: file.to_path_buf(),
        source,
    })?;
    let loaded = read_docker_archive(io::BufReader::new(tar), &layout)
        .map_err(|e| source_error(display, e))?;
    let first = loaded
        .into_iter()
        .next()
        .ok_or_else(|| source_error(display, "the archive holds no image"))?;
    import_image(layout.store(), &first.image, store.blobs())
        .map_err(|e| source_error(display, e))?;
    ResolvedImage::from_stored(display, &first.image)
}

/// Copy an image's manifest, config and layer blobs from one store to another, byte for byte.
pub fn import_image(
    from: &BlobStore,
    image: &StoredImage,
    into: &BlobStore,
) -> Result<(), rbuild_layers::store::StoreError> {
    let mut digests = vec![image.manifest_digest.clone(), image.config_digest.clone()];
    if let Ok(layers) = image.layers() {
        digests.extend(layers.into_iter().map(|l| l.digest));
    }
    for d in digests {
        copy_blob(from, &d, into)?;
    }
    Ok(())
}

fn copy_blob(
    from: &BlobStore,
    digest: &Digest,
    into: &BlobStore,
) -> Result<(), rbuild_layers::store::StoreError> {
    if into.has(digest) || from.root() == into.root() {
        return Ok(());
    }
    let src = from.blob_path(digest);
    let dst = into.blob_path(digest);
    // Same filesystem: a hard link shares the bytes; the name is the content, so this is safe.
    if std::fs::hard_link(&src, &dst).is_ok() {
        return Ok(());
    }
    let mut reader = from.open_verified(digest)?;
    let mut w = into.writer()?;
    io::copy(&mut reader, &mut w).map_err(|e| rbuild_layers::store::StoreError::Io {
        op: "copy blob into",
        path: PathBuf::from(into.blobs_dir()),
        source: e,
    })?;
    let (got, _) = w.complete()?;
    if &got != digest {
        return Err(rbuild_layers::store::StoreError::Io {
            op: "verify copied blob",
            path: dst,
            source: io::Error::other(format!("expected {digest}, wrote {got}")),
        });
    }
    Ok(())
}

/// The platform of this host, as an index descriptor names it.
pub fn host_platform_spec() -> PlatformSpec {
    let p = rbuild_dockerfile::lower::Platform::host();
    PlatformSpec {
        os: p.os,
        architecture: p.architecture,
        variant: None,
    }
}

/// Load an image through the full chain and return it as stored (for tools).
pub fn load(store: &Store, reference: &str) -> Result<StoredImage, BuildError> {
    let resolver = Resolver::new(&BTreeMap::new(), host_platform_spec());
    let r = resolver.resolve(reference, store)?;
    read_image(store.blobs(), &r.manifest_digest).map_err(|e| source_error(reference, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_refs_split() {
        let cases = [
            ("/a/b", ("/a/b", None)),
            ("/a/b:v1", ("/a/b", Some("v1"))),
            ("/a:x/b", ("/a:x/b", None)),
            ("/a/b@sha256:00", ("/a/b", Some("sha256:00"))),
            ("rel:tag", ("rel", Some("tag"))),
        ];
        for (input, want) in cases {
            assert_eq!(split_layout_ref(input), want, "{input}");
        }
    }

    #[test]
    fn docker_media_types_map_to_oci() {
        let cases = [
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar",
            ),
            ("weird/type", "weird/type"),
        ];
        for (input, want) in cases {
            assert_eq!(oci_media_type(input), want, "{input}");
        }
    }

    #[test]
    fn unknown_reference_names_the_registry_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let resolver = Resolver::new(&BTreeMap::new(), host_platform_spec());
        let err = resolver
            .resolve("alpine:3.20", &store)
            .expect_err("not in the store");
        assert_eq!(
            err.to_string(),
            "image alpine:3.20 not found in the local store; registry pulls are not available yet"
        );
    }
}
