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
//! 4. a registry ([`RegistrySource`]): the image is pulled into the store (blobs verified, kept
//!    and reused by later builds) and named there by its tag.
//!
//! As in BuildKit, a tag already in the store is not re-resolved unless the build asks for
//! `--pull`; then the registry is asked before the store (a name the registry does not know
//! still resolves locally, so images built here stay usable). A digest-pinned reference whose
//! blobs are present never touches the network. Blobs of images from other layouts or archives
//! are copied into the store byte for byte: a base layer is never decompressed or re-encoded.
//!
//! Platforms: every lookup is for one platform (the build's `--platform`, or a stage's
//! `FROM --platform`). An index is resolved to its child for that platform as containerd's
//! matcher does (normalized names, `arm64` = `arm64/v8`, fallbacks such as `386` on `amd64`;
//! see [`crate::registry::acceptable_platforms`]). A single-platform image is used whatever its
//! platform, as BuildKit does. An image the store names but made for another platform is
//! skipped so that the registry can pick the right child of the tag's index; when the registry
//! cannot answer, the local image is used with a warning in the pull's log. A pulled tag is
//! named in the store for the platform pulled last (as `docker pull --platform` does).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rbuild_dockerfile::lower::Platform;
use rbuild_layers::compress::Compression;
use rbuild_layers::digest::Digest;
use rbuild_layers::docker_archive::read_docker_archive;
use rbuild_layers::image::{read_image, ImageConfig, StoredImage};
use rbuild_layers::oci_layout::{OciLayout, PlatformSpec};
use rbuild_layers::store::BlobStore;

use crate::cache::LayerRecord;
use crate::error::BuildError;
use crate::events::{human_size, EventSink, Vertex, VertexKind};
use crate::registry::{
    acceptable_platforms, host_platform, spec_platform, CredentialsSource, Progress, PullOptions,
    Reference, RegistryClient, RegistryError, RegistryOptions,
};
use crate::solve::request::{BuildRequest, NamedContext};
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
    /// Resolve `reference` for `platform` (picked from an index, checked against an image in
    /// the store); `Ok(None)` when this source does not know it.
    fn resolve(
        &self,
        reference: &str,
        platform: &PlatformSpec,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, BuildError>;
}

/// Images given as named build contexts (`oci-layout://` and `docker-image://` kinds).
pub struct NamedContextSource<'a> {
    contexts: BTreeMap<String, NamedContext>,
    /// Resolves `docker-image://` targets (URL forms, store, and a registry for builds).
    images: Resolver<'a>,
}

impl<'a> NamedContextSource<'a> {
    /// A source over the image-like named contexts of a request; `docker-image://` targets
    /// resolve through `images`.
    pub fn new(contexts: &BTreeMap<String, NamedContext>, images: Resolver<'a>) -> Self {
        let contexts = contexts
            .iter()
            .filter(|(_, c)| !matches!(c, NamedContext::Dir(_)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        NamedContextSource { contexts, images }
    }
}

impl ImageSource for NamedContextSource<'_> {
    fn resolve(
        &self,
        reference: &str,
        platform: &PlatformSpec,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, BuildError> {
        let Some(ctx) = self.contexts.get(reference) else {
            return Ok(None);
        };
        let resolved = match ctx {
            NamedContext::OciLayout { dir, reference: r } => {
                from_layout(store, dir, r.as_deref(), platform, reference)?
            }
            NamedContext::DockerImage(r) => {
                let mut image = self.images.resolve_for(r, platform, store)?;
                image.reference = reference.to_string();
                image
            }
            NamedContext::Dir(_) => return Ok(None),
        };
        Ok(Some(resolved))
    }
}

/// `oci-layout://DIR[:TAG|@sha256:…]` and `docker-archive://FILE` references.
pub struct UrlFormSource;

impl ImageSource for UrlFormSource {
    fn resolve(
        &self,
        reference: &str,
        platform: &PlatformSpec,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, BuildError> {
        if let Some(rest) = reference.strip_prefix("oci-layout://") {
            let (dir, r) = split_layout_ref(rest);
            return from_layout(store, Path::new(dir), r, platform, reference).map(Some);
        }
        if let Some(file) = reference.strip_prefix("docker-archive://") {
            return from_docker_archive(store, Path::new(file), reference).map(Some);
        }
        Ok(None)
    }
}

/// Images already in the local store, by name or digest. A name whose image was made for
/// another platform than the one asked for is left to the registry (which picks the right
/// child of the tag's index), as BuildKit re-resolves a base whose local copy does not match;
/// a digest pins the image whatever its platform.
pub struct LocalStoreSource;

impl ImageSource for LocalStoreSource {
    fn resolve(
        &self,
        reference: &str,
        platform: &PlatformSpec,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, BuildError> {
        // `name@sha256:…` pins a digest: the name part only documents it.
        let (lookup, pinned) = match reference.split_once('@') {
            Some((_, digest)) => (digest, true),
            None => (reference, false),
        };
        match store.resolve(lookup) {
            Ok(image) if !pinned && !image_matches(&image.config, platform) => Ok(None),
            Ok(image) => Ok(Some(ResolvedImage::from_stored(reference, &image)?)),
            Err(crate::store::StoreError::NotFound { .. })
            | Err(crate::store::StoreError::BadName { .. }) => Ok(None),
            // A pinned index (or a manifest with blobs missing) is the registry source's to
            // resolve: it picks the platform and fetches only what is absent.
            Err(_) if pinned => Ok(None),
            Err(e) => Err(BuildError::Store(e)),
        }
    }
}

/// True when `config` was made for `platform` or for a platform it accepts in its place
/// (see [`acceptable_platforms`]); a config that names no architecture matches anything.
pub fn image_matches(config: &ImageConfig, platform: &PlatformSpec) -> bool {
    if config.architecture.is_empty() {
        return true;
    }
    let os = if config.os.is_empty() {
        platform.os.as_str()
    } else {
        config.os.as_str()
    };
    let got = Platform::new(os, &config.architecture, config.variant.as_deref());
    acceptable_platforms(platform).contains(&got)
}

/// Asks image sources in order; see the module documentation.
pub struct Resolver<'a> {
    sources: Vec<Box<dyn ImageSource + 'a>>,
    /// The platform [`Resolver::resolve`] asks for.
    platform: PlatformSpec,
}

impl<'a> Resolver<'a> {
    /// The offline chain: named contexts, URL forms, local store (no registry).
    pub fn new(named: &BTreeMap<String, NamedContext>, platform: PlatformSpec) -> Self {
        let inner = Resolver::without_named(platform.clone());
        Resolver {
            sources: vec![
                Box::new(NamedContextSource::new(named, inner)),
                Box::new(UrlFormSource),
                Box::new(LocalStoreSource),
            ],
            platform,
        }
    }

    /// The chain of a build: named contexts, URL forms, then the local store and a registry
    /// (registry first with `settings.pull`); pulls report progress to `events`.
    pub fn with_registry(
        named: &BTreeMap<String, NamedContext>,
        platform: PlatformSpec,
        settings: &RegistrySettings,
        events: &'a dyn EventSink,
    ) -> Self {
        let chain = || -> Vec<Box<dyn ImageSource + 'a>> {
            let registry: Box<dyn ImageSource + 'a> =
                Box::new(RegistrySource::new(settings, events));
            let store: Box<dyn ImageSource + 'a> = Box::new(LocalStoreSource);
            let url: Box<dyn ImageSource + 'a> = Box::new(UrlFormSource);
            if settings.pull {
                vec![url, registry, store]
            } else {
                vec![url, store, registry]
            }
        };
        let inner = Resolver {
            sources: chain(),
            platform: platform.clone(),
        };
        let mut sources: Vec<Box<dyn ImageSource + 'a>> =
            vec![Box::new(NamedContextSource::new(named, inner))];
        sources.extend(chain());
        Resolver { sources, platform }
    }

    fn without_named(platform: PlatformSpec) -> Self {
        Resolver {
            sources: vec![Box::new(UrlFormSource), Box::new(LocalStoreSource)],
            platform,
        }
    }

    /// Add a source asked after the others.
    pub fn push(&mut self, source: Box<dyn ImageSource + 'a>) {
        self.sources.push(source);
    }

    /// Resolve `reference` through the chain, for the resolver's platform.
    pub fn resolve(&self, reference: &str, store: &Store) -> Result<ResolvedImage, BuildError> {
        self.resolve_for(reference, &self.platform, store)
    }

    /// Resolve `reference` through the chain for `platform` (a stage's `FROM --platform`).
    pub fn resolve_for(
        &self,
        reference: &str,
        platform: &PlatformSpec,
        store: &Store,
    ) -> Result<ResolvedImage, BuildError> {
        for s in &self.sources {
            if let Some(image) = s.resolve(reference, platform, store)? {
                return Ok(image);
            }
        }
        Err(BuildError::ImageNotFound {
            reference: reference.to_string(),
        })
    }
}

/// What a [`RegistrySource`] needs besides the store: the client settings of a build.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// `--pull`: re-resolve tags in the registry even when the store has them.
    pub pull: bool,
    /// `--insecure-registry` hosts (plain HTTP; `localhost` and 127.0.0.1 always are).
    pub insecure_registries: Vec<String>,
    /// A Docker `config.json` to read credentials from; `None` = anonymous.
    pub credentials: Option<PathBuf>,
}

impl RegistrySettings {
    /// The settings a build request carries.
    pub fn from_request(req: &BuildRequest) -> Self {
        RegistrySettings {
            pull: req.pull,
            insecure_registries: req.insecure_registries.clone(),
            credentials: req.registry_credentials.clone(),
        }
    }

    /// A client configured with these settings.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            credentials: match &self.credentials {
                Some(path) => CredentialsSource::DockerConfig(path.clone()),
                None => CredentialsSource::Anonymous,
            },
            ..RegistryOptions::default()
        })
    }
}

/// Images pulled from a registry into the local store, as BuildKit's image resolver does:
/// the pulled manifest is named in the store by its tag, so the next build finds it locally
/// (and does not touch the network) unless it asks for `--pull`.
///
/// Progress: each pull shows as a pseudo-step `[internal] load metadata for REF` (as BuildKit
/// names it) whose log lines report every blob (pulled, or already in the store).
pub struct RegistrySource<'a> {
    client: RegistryClient,
    events: &'a dyn EventSink,
    /// Only references not found elsewhere reach this source, except with `pull`, where a
    /// manifest the registry does not know falls back to the store.
    pull: bool,
    /// How many pulls started (numbers their vertices).
    pulls: AtomicU32,
}

impl<'a> RegistrySource<'a> {
    /// A source pulling with `settings`, reporting to `events`.
    pub fn new(settings: &RegistrySettings, events: &'a dyn EventSink) -> Self {
        RegistrySource {
            client: settings.client(),
            events,
            pull: settings.pull,
            pulls: AtomicU32::new(0),
        }
    }
}

impl ImageSource for RegistrySource<'_> {
    fn resolve(
        &self,
        reference: &str,
        platform: &PlatformSpec,
        store: &Store,
    ) -> Result<Option<ResolvedImage>, BuildError> {
        let Ok(parsed) = reference.parse::<Reference>() else {
            return Ok(None);
        };
        let vertex = Vertex::start(
            VertexKind::Pull.id(self.pulls.fetch_add(1, Ordering::SeqCst)),
            format!("[internal] load metadata for {parsed}"),
            self.events,
        );
        let log = |line: String| vertex.log(line);
        let progress = |p: &Progress| match p {
            Progress::Resolved { digest, .. } => log(format!("resolve {parsed}: {digest}")),
            // Large blobs report every MiB; the last report is the done line.
            Progress::BlobBytes {
                digest,
                done,
                total,
            } if done < total => log(format!(
                "pull {digest}: {} / {}",
                human_size(*done),
                human_size(*total)
            )),
            Progress::BlobDone { digest } => log(format!("pull {digest}: done")),
            Progress::BlobSkipped { digest } => log(format!("pull {digest}: already in store")),
            _ => {
                if let Some(line) = p.retry_line() {
                    log(line)
                }
            }
        };
        let opts = PullOptions {
            platform: Some(platform),
            progress: Some(&progress),
        };
        let pulled = match self.client.pull(&parsed, store.blobs(), &opts) {
            Ok(p) => p,
            Err(e) => {
                let not_found = matches!(e, RegistryError::NotFound { .. });
                // The store skipped its image of this name for being of another platform; with
                // the registry unable to say better, use it as BuildKit uses a single-platform
                // base of another platform: with a warning. (`--pull` insists on the registry
                // unless it does not know the name.)
                let local = if !self.pull || not_found {
                    other_platform_image(store, reference, platform)?
                } else {
                    None
                };
                if let Some((image, made_for)) = local {
                    log(format!(
                        "warning: pull {parsed}: {e}; using the local image, made for {made_for}, \
                         not {}",
                        spec_platform(platform)
                    ));
                    vertex.done();
                    return Ok(Some(image));
                }
                if self.pull && not_found {
                    vertex.done();
                    return Ok(None);
                }
                vertex.failed(e.to_string());
                // Without `--pull` the store was asked first: say so, as the user may have
                // meant a local image.
                let reason = if self.pull {
                    format!("pull {parsed}: {e}")
                } else {
                    format!("not found in the local store; pull {parsed}: {e}")
                };
                return Err(source_error(reference, reason));
            }
        };
        let stored = pulled
            .stored(store.blobs())
            .map_err(|e| source_error(reference, e))?;
        if parsed.digest().is_none() {
            // Name the image by its tag so later builds resolve it locally (until `--pull`);
            // as with `docker pull --platform`, the name follows the platform pulled last.
            store.put_name(parsed.image_name(), &stored)?;
        }
        vertex.done();
        ResolvedImage::from_stored(reference, &stored).map(Some)
    }
}

/// The image the store names `reference` when it was made for another platform than
/// `platform`, with that platform.
fn other_platform_image(
    store: &Store,
    reference: &str,
    platform: &PlatformSpec,
) -> Result<Option<(ResolvedImage, Platform)>, BuildError> {
    if reference.contains('@') {
        return Ok(None);
    }
    let Ok(image) = store.resolve(reference) else {
        return Ok(None);
    };
    if image_matches(&image.config, platform) {
        return Ok(None);
    }
    let c = &image.config;
    let made_for = Platform::new(&c.os, &c.architecture, c.variant.as_deref());
    Ok(Some((
        ResolvedImage::from_stored(reference, &image)?,
        made_for,
    )))
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

/// Load an image through the full chain and return it as stored (for tools).
pub fn load(store: &Store, reference: &str) -> Result<StoredImage, BuildError> {
    let resolver = Resolver::new(&BTreeMap::new(), host_platform());
    let r = resolver.resolve(reference, store)?;
    read_image(store.blobs(), &r.manifest_digest).map_err(|e| source_error(reference, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

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
    fn registry_settings_follow_the_request() {
        let mut req = BuildRequest::new(
            None,
            crate::solve::request::DockerfileSource::Text {
                name: "Dockerfile".into(),
                text: String::new(),
            },
        );
        req.pull = true;
        req.insecure_registries = vec!["reg.example:5000".into()];
        req.registry_credentials = Some(PathBuf::from("/cfg/config.json"));
        let settings = RegistrySettings::from_request(&req);
        assert!(settings.pull);
        let client = settings.client();
        let cases = [
            ("reg.example:5000", true),
            ("127.0.0.1:5000", true),
            ("localhost", true),
            ("ghcr.io", false),
        ];
        for (host, insecure) in cases {
            assert_eq!(client.is_insecure(host), insecure, "{host}");
        }
        assert!(matches!(
            client.options().credentials,
            CredentialsSource::DockerConfig(ref p) if p == Path::new("/cfg/config.json")
        ));
    }

    #[test]
    fn pulls_report_as_pseudo_steps() {
        // An unreachable registry: the failure is reported on the pseudo-step and returned.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let sink = crate::events::CollectSink::new();
        let settings = RegistrySettings::default();
        let resolver = Resolver::with_registry(&BTreeMap::new(), host_platform(), &settings, &sink);
        let err = resolver
            .resolve("127.0.0.1:1/nothing:here", &store)
            .expect_err("nothing listens on port 1");
        assert!(
            err.to_string().starts_with(
                "image source 127.0.0.1:1/nothing:here: not found in the local store; \
                 pull 127.0.0.1:1/nothing:here: "
            ),
            "{err}"
        );
        let events = sink.events();
        assert!(matches!(
            &events[0],
            Event::StepStarted { name, .. } if name == "[internal] load metadata for 127.0.0.1:1/nothing:here"
        ));
        assert!(matches!(events.last(), Some(Event::StepFailed { .. })));
    }

    #[test]
    fn the_offline_chain_reports_unknown_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let resolver = Resolver::new(&BTreeMap::new(), host_platform());
        let err = resolver
            .resolve("alpine:3.20", &store)
            .expect_err("not in the store");
        assert_eq!(
            err.to_string(),
            "image alpine:3.20 not found: no named context, local image or registry provides it"
        );
    }
}
