//! Pulling: resolve a reference to a manifest (OCI or Docker schema2, image or index), pick the
//! platform from an index as containerd's platform matcher does (os + architecture, variant when
//! asked for), and fetch the config and layers into the blob store. Each blob is written through
//! a [`BlobWriter`] and published only by `complete_verified` (digest and size), so a failed or
//! cut download leaves nothing under a digest name. A cut blob is resumed as containerd and
//! Docker resume it: the writer (temp file and running sha256) is kept across attempts and the
//! retry asks for `Range: bytes=N-`; a `206` whose `Content-Range` starts at N continues the
//! blob, a `200` (range ignored) restarts it from byte zero with that body, and a `416` (or a
//! `206` for another range) drops the held bytes and asks again without `Range`. Progress
//! continues from N. When the last attempt fails, the temp file is removed. Manifests (and the
//! index) are stored too, so a digest-pinned reference whose blobs are all present resolves
//! without any request, as BuildKit does for `FROM name@sha256:…`.

use std::cell::Cell;
use std::io::{Read, Write};

use rbuild_dockerfile::lower::Platform;
use rbuild_layers::digest::Digest;
use rbuild_layers::image::{
    read_image, ImageError, StoredImage, DOCKER_MEDIA_TYPE_MANIFEST,
    DOCKER_MEDIA_TYPE_MANIFEST_LIST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use rbuild_layers::oci_layout::PlatformSpec;
use rbuild_layers::store::{BlobStore, BlobWriter, StoreError};

use super::auth::repository_scope;
use super::client::{expect_status, header, Call, RegistryClient, Repo, Response};
use super::error::{RegistryError, RegistryErrors, Result};
use super::reference::Reference;
use super::retry::{retry, retry_with};
use super::{report, Progress, ProgressFn};

/// Largest manifest we accept (containerd's limit).
const MAX_MANIFEST: u64 = 4 << 20;

/// The `Accept` header of manifest requests: every manifest type we can use.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A blob as a manifest lists it (serialized as an OCI descriptor: `mediaType`, `digest`,
/// `size`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobDescriptor {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A manifest as fetched: digest, media type, exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedManifest {
    /// Digest of the bytes.
    pub digest: Digest,
    /// The media type (from the document, else the `Content-Type`).
    pub media_type: String,
    /// The bytes exactly as served.
    pub bytes: Vec<u8>,
}

/// What to pull and how to report it.
#[derive(Default, Clone, Copy)]
pub struct PullOptions<'a> {
    /// The platform to pick from an index (`None`: the host's, see [`host_platform`]).
    pub platform: Option<&'a PlatformSpec>,
    /// Progress callback.
    pub progress: Option<ProgressFn<'a>>,
}

/// A pulled image: everything is in the store when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The reference pulled.
    pub reference: Reference,
    /// The index the reference named, when it named one.
    pub index_digest: Option<Digest>,
    /// The platform image's manifest digest (the image ID users see with `--platform`).
    pub manifest_digest: Digest,
    /// Its media type (OCI or Docker schema2).
    pub manifest_media_type: String,
    /// The manifest bytes.
    pub manifest_bytes: Vec<u8>,
    /// The config blob.
    pub config: BlobDescriptor,
    /// The config bytes.
    pub config_bytes: Vec<u8>,
    /// The layers, base first.
    pub layers: Vec<BlobDescriptor>,
    /// The blobs actually downloaded by this pull (the rest were already in the store).
    pub downloaded: Vec<Digest>,
    /// False when the pull was answered from the store alone.
    pub used_network: bool,
}

impl PulledImage {
    /// The image as the local store reads it (manifest, parsed config, layers).
    pub fn stored(&self, store: &BlobStore) -> std::result::Result<StoredImage, ImageError> {
        read_image(store, &self.manifest_digest)
    }
}

/// The host platform in OCI spelling (`linux/amd64`, `linux/arm/v7`, …).
pub fn host_platform() -> PlatformSpec {
    platform_spec(&Platform::host())
}

/// `platform` as an index descriptor names it (variant kept; `None` only where the
/// normalized platform has none, e.g. `linux/arm64` for `arm64/v8`).
pub fn platform_spec(platform: &Platform) -> PlatformSpec {
    PlatformSpec {
        os: platform.os.clone(),
        architecture: platform.architecture.clone(),
        variant: platform.variant.clone(),
    }
}

/// `spec` as containerd's `platforms.Normalize` spells it (`aarch64` → `arm64`, `arm64/v8` →
/// `arm64`, `arm` → `arm/v7`, `armhf` → `arm/v7`, `x86_64` → `amd64`, …), as users write it.
pub fn spec_platform(spec: &PlatformSpec) -> Platform {
    Platform::new(&spec.os, &spec.architecture, spec.variant.as_deref())
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDescriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<RawPlatform>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct RawPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub(crate) enum Manifest {
    /// An OCI index or Docker manifest list.
    Index(Vec<RawDescriptor>),
    /// An image manifest.
    Image {
        config: BlobDescriptor,
        layers: Vec<BlobDescriptor>,
    },
}

impl Manifest {
    /// Parse manifest `bytes` (`digest` and `repo` for messages); returns it and its media type.
    pub(crate) fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<(Manifest, String)> {
        let bad = |reason: String| RegistryError::BadManifest {
            registry: registry.to_string(),
            repository: repository.to_string(),
            digest: digest.to_string(),
            reason,
        };
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not json: {e}")))?;
        if raw.schema_version != Some(2) {
            return Err(bad(format!(
                "schema version {:?} is not supported (only 2)",
                raw.schema_version
            )));
        }
        let media_type = raw
            .media_type
            .clone()
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
            .unwrap_or_default();
        let descriptor = |d: RawDescriptor| -> Result<BlobDescriptor> {
            Ok(BlobDescriptor {
                digest: d
                    .digest
                    .parse()
                    .map_err(|e| bad(format!("descriptor digest `{}`: {e}", d.digest)))?,
                media_type: d.media_type,
                size: d.size,
            })
        };
        match (raw.manifests, raw.config) {
            (Some(list), None) => {
                let media_type = if media_type.is_empty() {
                    MEDIA_TYPE_INDEX.to_string()
                } else {
                    media_type
                };
                if media_type != MEDIA_TYPE_INDEX && media_type != DOCKER_MEDIA_TYPE_MANIFEST_LIST {
                    return Err(bad(format!("unsupported index media type {media_type}")));
                }
                Ok((Manifest::Index(list), media_type))
            }
            (None, Some(config)) => {
                let media_type = if media_type.is_empty() {
                    MEDIA_TYPE_MANIFEST.to_string()
                } else {
                    media_type
                };
                if media_type != MEDIA_TYPE_MANIFEST && media_type != DOCKER_MEDIA_TYPE_MANIFEST {
                    return Err(bad(format!("unsupported manifest media type {media_type}")));
                }
                let layers = raw
                    .layers
                    .unwrap_or_default()
                    .into_iter()
                    .map(descriptor)
                    .collect::<Result<Vec<_>>>()?;
                Ok((
                    Manifest::Image {
                        config: descriptor(config)?,
                        layers,
                    },
                    media_type,
                ))
            }
            _ => Err(bad("neither an image manifest nor an index".to_string())),
        }
    }
}

/// The platforms acceptable for `want`, best first, as containerd's `platforms.Only`: the
/// platform itself, then older variants of the same architecture (`arm/v7` also takes `arm/v6`
/// and `arm/v5`; `amd64/v3` also `v2` and `v1`), then the 32-bit mode (`amd64` takes `386`,
/// `arm64` takes `arm/v8`).
pub fn acceptable_platforms(want: &PlatformSpec) -> Vec<Platform> {
    let p = spec_platform(want);
    let mut out = vec![p.clone()];
    let level = |v: &Option<String>| -> Option<u32> {
        v.as_deref()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|n| n.parse().ok())
    };
    let with = |arch: &str, variant: Option<String>| Platform {
        os: p.os.clone(),
        architecture: arch.to_string(),
        variant,
    };
    match p.architecture.as_str() {
        "amd64" => {
            if let Some(n) = level(&p.variant) {
                for older in (2..n).rev() {
                    out.push(with("amd64", Some(format!("v{older}"))));
                }
                out.push(with("amd64", None));
            }
            out.push(with("386", None));
        }
        "arm" => {
            if let Some(n) = level(&p.variant) {
                for older in (5..n).rev() {
                    out.push(with("arm", Some(format!("v{older}"))));
                }
            }
        }
        "arm64" => out.push(with(
            "arm",
            Some(p.variant.clone().unwrap_or_else(|| "v8".into())),
        )),
        _ => {}
    }
    out
}

/// Pick the index entry for `want`: among entries whose normalized platform is acceptable
/// (see [`acceptable_platforms`]), the best-ranked, first in index order on ties, as
/// containerd's ordered matcher does.
pub(crate) fn select_platform<'d>(
    entries: &'d [RawDescriptor],
    want: &PlatformSpec,
    reference: &Reference,
) -> Result<&'d RawDescriptor> {
    let ranked = acceptable_platforms(want);
    entries
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            // Normalized as `want` is (see [`spec_platform`]).
            let got = Platform::new(&p.os, &p.architecture, p.variant.as_deref());
            let rank = ranked.iter().position(|r| *r == got)?;
            Some((rank, d))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d)
        .ok_or_else(|| RegistryError::NoMatchingPlatform {
            reference: reference.to_string(),
            platform: spec_platform(want).to_string(),
            available: entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl RegistryClient {
    /// Fetch the manifest `reference` names (an index stays an index): the digest to key a
    /// `FROM` by. A pinned reference is verified against its digest.
    pub fn resolve(&self, reference: &Reference) -> Result<ResolvedManifest> {
        let repo = repo_of(reference);
        let name = reference.manifest_reference();
        retry(
            &self.options().retry,
            &format!("manifest {reference}"),
            None,
            || self.fetch_manifest(repo, &name, reference.digest()),
        )
    }

    /// Pull `reference` into `store` (see the module docs) and return what was pulled.
    pub fn pull(
        &self,
        reference: &Reference,
        store: &BlobStore,
        options: &PullOptions<'_>,
    ) -> Result<PulledImage> {
        let host = host_platform();
        let platform = options.platform.unwrap_or(&host);
        if let Some(digest) = reference.digest() {
            if let Some(local) = self.pull_local(reference, digest, store, platform)? {
                return Ok(local);
            }
        }
        let repo = repo_of(reference);
        let progress = options.progress;
        let top = self.resolve(reference)?;
        report(
            progress,
            Progress::Resolved {
                reference: reference.to_string(),
                digest: top.digest.clone(),
            },
        );
        store_bytes(store, &top.bytes, &top.digest)?;
        let (parsed, media_type) = Manifest::parse(
            &top.bytes,
            Some(&top.media_type),
            repo.host,
            repo.repository,
            &top.digest.to_string(),
        )?;
        let (index_digest, manifest) = match parsed {
            Manifest::Image { .. } => (None, (top.clone(), parsed, media_type)),
            Manifest::Index(entries) => {
                let chosen = select_platform(&entries, platform, reference)?;
                let digest: Digest =
                    chosen
                        .digest
                        .parse()
                        .map_err(|e| RegistryError::BadManifest {
                            registry: repo.host.to_string(),
                            repository: repo.repository.to_string(),
                            digest: top.digest.to_string(),
                            reason: format!("entry digest `{}`: {e}", chosen.digest),
                        })?;
                let child = if store.has(&digest) {
                    ResolvedManifest {
                        bytes: store.read(&digest)?,
                        media_type: chosen.media_type.clone(),
                        digest: digest.clone(),
                    }
                } else {
                    let child = retry(
                        &self.options().retry,
                        &format!("manifest {digest}"),
                        progress,
                        || self.fetch_manifest(repo, &digest.to_string(), Some(&digest)),
                    )?;
                    store_bytes(store, &child.bytes, &child.digest)?;
                    child
                };
                let (parsed, media_type) = Manifest::parse(
                    &child.bytes,
                    Some(&child.media_type),
                    repo.host,
                    repo.repository,
                    &digest.to_string(),
                )?;
                if matches!(parsed, Manifest::Index(_)) {
                    return Err(RegistryError::BadManifest {
                        registry: repo.host.to_string(),
                        repository: repo.repository.to_string(),
                        digest: digest.to_string(),
                        reason: "an index inside an index is not supported".to_string(),
                    });
                }
                (Some(top.digest.clone()), (child, parsed, media_type))
            }
        };
        let (resolved, parsed, media_type) = manifest;
        let Manifest::Image { config, layers } = parsed else {
            return Err(RegistryError::BadManifest {
                registry: repo.host.to_string(),
                repository: repo.repository.to_string(),
                digest: resolved.digest.to_string(),
                reason: "not an image manifest".to_string(),
            });
        };
        let mut wanted: Vec<BlobDescriptor> = Vec::new();
        for blob in std::iter::once(&config).chain(layers.iter()) {
            if store.has(&blob.digest) {
                report(
                    progress,
                    Progress::BlobSkipped {
                        digest: blob.digest.clone(),
                    },
                );
            } else if !wanted.iter().any(|w| w.digest == blob.digest) {
                wanted.push(blob.clone());
            }
        }
        self.fetch_blobs(repo, &wanted, store, progress)?;
        Ok(PulledImage {
            reference: reference.clone(),
            index_digest,
            manifest_digest: resolved.digest,
            manifest_media_type: media_type,
            manifest_bytes: resolved.bytes,
            config_bytes: store.read(&config.digest)?,
            config,
            layers,
            downloaded: wanted.into_iter().map(|b| b.digest).collect(),
            used_network: true,
        })
    }

    /// Answer a pinned pull from the store alone, when the manifest (after platform selection)
    /// and every blob it lists are present; `None` sends the caller to the network.
    fn pull_local(
        &self,
        reference: &Reference,
        digest: &Digest,
        store: &BlobStore,
        platform: &PlatformSpec,
    ) -> Result<Option<PulledImage>> {
        if !store.has(digest) {
            return Ok(None);
        }
        let repo = repo_of(reference);
        let bytes = store.read(digest)?;
        let (parsed, media_type) = Manifest::parse(
            &bytes,
            None,
            repo.host,
            repo.repository,
            &digest.to_string(),
        )?;
        let (index_digest, manifest_digest, bytes, parsed, media_type) = match parsed {
            Manifest::Image { .. } => (None, digest.clone(), bytes, parsed, media_type),
            Manifest::Index(entries) => {
                let chosen = select_platform(&entries, platform, reference)?;
                let Ok(child) = chosen.digest.parse::<Digest>() else {
                    return Ok(None);
                };
                if !store.has(&child) {
                    return Ok(None);
                }
                let bytes = store.read(&child)?;
                let (parsed, media_type) =
                    Manifest::parse(&bytes, None, repo.host, repo.repository, &child.to_string())?;
                (Some(digest.clone()), child, bytes, parsed, media_type)
            }
        };
        let Manifest::Image { config, layers } = parsed else {
            return Ok(None);
        };
        if !std::iter::once(&config)
            .chain(&layers)
            .all(|b| store.has(&b.digest))
        {
            return Ok(None);
        }
        Ok(Some(PulledImage {
            reference: reference.clone(),
            index_digest,
            manifest_digest,
            manifest_media_type: media_type,
            manifest_bytes: bytes,
            config_bytes: store.read(&config.digest)?,
            config,
            layers,
            downloaded: Vec::new(),
            used_network: false,
        }))
    }

    /// GET `/v2/<repo>/manifests/<name>`; verify against `expected` (and the registry's
    /// `Docker-Content-Digest`) when given.
    pub(crate) fn fetch_manifest(
        &self,
        repo: Repo<'_>,
        name: &str,
        expected: Option<&Digest>,
    ) -> Result<ResolvedManifest> {
        let url = format!(
            "{}/v2/{}/manifests/{name}",
            self.base_url(repo.host),
            repo.repository
        );
        let call = Call::new(
            "GET",
            url.clone(),
            repository_scope(repo.repository, &["pull"]),
        )
        .header("Accept", MANIFEST_ACCEPT);
        let mut resp = self.send(repo, &call)?;
        not_found(repo, &mut resp, "manifest", name)?;
        expect_status(repo, "GET", &url, &mut resp, &[200])?;
        let content_type = header(&resp, "content-type").map(str::to_string);
        let served_digest = header(&resp, "docker-content-digest").map(str::to_string);
        let bytes = read_limited(repo, &mut resp, "manifest", name, MAX_MANIFEST)?;
        let digest = Digest::of(&bytes);
        let want = match expected {
            Some(d) => Some(d.clone()),
            None => served_digest.and_then(|d| d.parse::<Digest>().ok()),
        };
        if let Some(want) = want {
            if want != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: repo.host.to_string(),
                    repository: repo.repository.to_string(),
                    what: "manifest",
                    expected: want,
                    found: digest,
                });
            }
        }
        let media_type = serde_json::from_slice::<RawManifest>(&bytes)
            .ok()
            .and_then(|m| m.media_type)
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
            .unwrap_or_default();
        Ok(ResolvedManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Download `blobs` concurrently (bounded by `max_concurrent_transfers`); the first error
    /// stops the others from starting new blobs.
    fn fetch_blobs(
        &self,
        repo: Repo<'_>,
        blobs: &[BlobDescriptor],
        store: &BlobStore,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<()> {
        let workers = self.options().max_concurrent_transfers;
        super::for_each_bounded(workers, blobs, |blob| {
            self.fetch_blob(repo, blob, store, progress)
        })
    }

    /// Download one blob into the store, verified; a transient failure is retried, resuming
    /// after the bytes that already arrived (see the module docs).
    pub(crate) fn fetch_blob(
        &self,
        repo: Repo<'_>,
        blob: &BlobDescriptor,
        store: &BlobStore,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<()> {
        report(
            progress,
            Progress::BlobStart {
                digest: blob.digest.clone(),
                size: blob.size,
            },
        );
        // The bytes of a cut attempt, kept (temp file and running hash) for the next one; when
        // the last attempt fails this is dropped, which removes its temp file.
        let mut partial: Option<BlobWriter> = None;
        let resume_at = Cell::new(0u64);
        retry_with(
            &self.options().retry,
            || match resume_at.get() {
                0 => format!("blob {}", blob.digest),
                n => format!("blob {} (resuming at byte {n})", blob.digest),
            },
            progress,
            || {
                let result = self.fetch_blob_once(repo, blob, store, progress, &mut partial);
                resume_at.set(partial.as_ref().map_or(0, BlobWriter::len));
                result
            },
        )?;
        report(
            progress,
            Progress::BlobDone {
                digest: blob.digest.clone(),
            },
        );
        Ok(())
    }

    /// One attempt: continue `partial` (or start a blob), then publish it verified. On an error
    /// that leaves the held bytes trustworthy (a cut body, a failed request) they stay in
    /// `partial` for the next attempt; otherwise `partial` is emptied.
    fn fetch_blob_once(
        &self,
        repo: Repo<'_>,
        blob: &BlobDescriptor,
        store: &BlobStore,
        progress: Option<ProgressFn<'_>>,
        partial: &mut Option<BlobWriter>,
    ) -> Result<()> {
        let mut writer = match partial.take() {
            Some(writer) => writer,
            None => store.writer()?,
        };
        if let Err(e) = self.download_into(repo, blob, store, &mut writer, progress) {
            // A store error (a failed write, a body longer than the blob) says nothing good
            // about the bytes held: drop them with their temp file.
            if !matches!(e, RegistryError::Store(_)) {
                *partial = Some(writer);
            }
            return Err(e);
        }
        writer
            .complete_verified(&blob.digest, blob.size)
            .map_err(|e| match e {
                StoreError::DigestMismatch {
                    expected, found, ..
                } => RegistryError::DigestMismatch {
                    registry: repo.host.to_string(),
                    repository: repo.repository.to_string(),
                    what: "blob",
                    expected,
                    found,
                },
                other => RegistryError::Store(other),
            })?;
        Ok(())
    }

    /// Fill `writer` up to `blob.size`: a GET from the byte it holds (`Range: bytes=N-` when
    /// N > 0), or from zero into a fresh writer when the registry ignores or refuses the range.
    fn download_into(
        &self,
        repo: Repo<'_>,
        blob: &BlobDescriptor,
        store: &BlobStore,
        writer: &mut BlobWriter,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<()> {
        if !writer.is_empty() && writer.len() == blob.size {
            // Every byte arrived before the previous attempt failed.
            return Ok(());
        }
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base_url(repo.host),
            repo.repository,
            blob.digest
        );
        let mut resp = loop {
            let offset = writer.len();
            let mut call = Call::new(
                "GET",
                url.clone(),
                repository_scope(repo.repository, &["pull"]),
            );
            if offset > 0 {
                call = call.header("Range", format!("bytes={offset}-"));
            }
            let mut resp = self.send(repo, &call)?;
            if offset > 0 {
                let status = resp.status().as_u16();
                match ranged_answer(status, header(&resp, "content-range"), offset, blob.size) {
                    RangeAnswer::Rest => break resp,
                    RangeAnswer::Whole => {
                        *writer = store.writer()?;
                        break resp;
                    }
                    RangeAnswer::Refused => {
                        *writer = store.writer()?;
                        continue;
                    }
                    // Any other status: the checks below turn it into the usual error and the
                    // held bytes wait for the next attempt.
                    RangeAnswer::Other => {}
                }
            }
            not_found(repo, &mut resp, "blob", &blob.digest.to_string())?;
            expect_status(repo, "GET", &url, &mut resp, &[200])?;
            break resp;
        };
        let body_error = |source: std::io::Error| RegistryError::Body {
            registry: repo.host.to_string(),
            repository: repo.repository.to_string(),
            what: "blob",
            digest: blob.digest.to_string(),
            source,
        };
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 256 << 10];
        let report_bytes = |done: u64| {
            report(
                progress,
                Progress::BlobBytes {
                    digest: blob.digest.clone(),
                    done,
                    total: blob.size,
                },
            )
        };
        let mut done = writer.len();
        let mut reported = done;
        if done > 0 {
            // Resumed: say where the blob stands now, before the first new byte.
            report_bytes(done);
        }
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(body_error(e)),
            };
            done += n as u64;
            if done > blob.size {
                return Err(RegistryError::Store(StoreError::SizeMismatch {
                    digest: blob.digest.clone(),
                    expected: blob.size,
                    found: done,
                }));
            }
            writer.write_all(&buf[..n]).map_err(|source| {
                RegistryError::Store(StoreError::Io {
                    op: "write blob",
                    path: store.blobs_dir().to_path_buf(),
                    source,
                })
            })?;
            if done - reported >= 1 << 20 || done == blob.size {
                reported = done;
                report_bytes(done);
            }
        }
        if done < blob.size {
            // A body that ends early (no error from the transport) is a cut like any other.
            return Err(body_error(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("body ended after {done} of {} bytes", blob.size),
            )));
        }
        Ok(())
    }
}

/// How the registry answered a GET that asked for the rest of a blob from byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAnswer {
    /// `206 Partial Content` from `offset`: the body continues the bytes held.
    Rest,
    /// `200 OK`: the registry ignored `Range`, the body is the whole blob (start over with it).
    Whole,
    /// `416 Range Not Satisfiable`, or a `206` for another range: drop the bytes held and ask
    /// again without `Range`.
    Refused,
    /// Anything else: an error status, handled as without `Range`.
    Other,
}

/// Classify the answer to `Range: bytes=offset-` for a blob of `size` bytes, as containerd and
/// Docker accept it: a `206` counts only when its `Content-Range` starts at `offset` (and, when
/// it states a total, that total is the blob size).
fn ranged_answer(status: u16, content_range: Option<&str>, offset: u64, size: u64) -> RangeAnswer {
    match status {
        200 => RangeAnswer::Whole,
        206 => match content_range.and_then(ContentRange::parse) {
            Some(r) if r.start == offset && r.total.is_none_or(|t| t == size) => RangeAnswer::Rest,
            _ => RangeAnswer::Refused,
        },
        416 => RangeAnswer::Refused,
        _ => RangeAnswer::Other,
    }
}

/// A satisfied `Content-Range` (RFC 9110 §14.4): `bytes START-END/TOTAL`, TOTAL possibly `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    /// First byte sent.
    start: u64,
    /// Last byte sent (inclusive).
    end: u64,
    /// The full length, when the server states it.
    total: Option<u64>,
}

impl ContentRange {
    /// Parse a header value; `None` for anything else (other units, the unsatisfied form
    /// `bytes */N`, `end < start`, `end >= total`).
    fn parse(value: &str) -> Option<ContentRange> {
        let value = value.trim();
        let (unit, rest) = value.split_once(' ')?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (range, total) = rest.trim_start().split_once('/')?;
        let (start, end) = range.split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (start, end) = (number(start)?, number(end)?);
        let total = match total {
            "*" => None,
            t => Some(number(t)?),
        };
        if end < start || total.is_some_and(|t| end >= t) {
            return None;
        }
        Some(ContentRange { start, end, total })
    }
}

pub(crate) fn repo_of(reference: &Reference) -> Repo<'_> {
    Repo {
        host: reference.registry_host(),
        repository: reference.repository(),
    }
}

/// A 404 as [`RegistryError::NotFound`].
fn not_found(repo: Repo<'_>, resp: &mut Response, what: &'static str, name: &str) -> Result<()> {
    if resp.status().as_u16() != 404 {
        return Ok(());
    }
    Err(RegistryError::NotFound {
        registry: super::client::display_host(repo.host).to_string(),
        repository: repo.repository.to_string(),
        what,
        reference: name.to_string(),
        errors: RegistryErrors::parse(&super::client::read_small(resp)),
    })
}

fn read_limited(
    repo: Repo<'_>,
    resp: &mut Response,
    what: &'static str,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| RegistryError::Body {
            registry: repo.host.to_string(),
            repository: repo.repository.to_string(),
            what,
            digest: name.to_string(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::BadManifest {
            registry: repo.host.to_string(),
            repository: repo.repository.to_string(),
            digest: name.to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    Ok(out)
}

/// Put verified bytes (a manifest) into the store under `digest`.
fn store_bytes(store: &BlobStore, bytes: &[u8], digest: &Digest) -> Result<()> {
    if store.has(digest) {
        return Ok(());
    }
    let mut w = store.writer()?;
    w.write_all(bytes).map_err(|source| {
        RegistryError::Store(StoreError::Io {
            op: "write manifest",
            path: store.blobs_dir().to_path_buf(),
            source,
        })
    })?;
    w.complete_verified(digest, bytes.len() as u64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn index() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_INDEX}","manifests":[
            {{"mediaType":"{MEDIA_TYPE_MANIFEST}","digest":"{A}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{MEDIA_TYPE_MANIFEST}","digest":"{B}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        )
    }

    #[test]
    fn parses_manifest_kinds() {
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MEDIA_TYPE_MANIFEST}","config":{{"mediaType":"x","digest":"{A}","size":3}},"layers":[{{"mediaType":"l","digest":"{B}","size":4}}]}}"#
        );
        let cases: Vec<(String, Option<&str>, Result<&str, &str>)> = vec![
            (index(), None, Ok(MEDIA_TYPE_INDEX)),
            (image.clone(), None, Ok(DOCKER_MEDIA_TYPE_MANIFEST)),
            (
                format!(
                    r#"{{"schemaVersion":2,"config":{{"digest":"{A}","size":1}},"layers":[]}}"#
                ),
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                Ok(MEDIA_TYPE_MANIFEST),
            ),
            (
                r#"{"schemaVersion":1,"fsLayers":[]}"#.to_string(),
                None,
                Err("schema version"),
            ),
            (r#"{"schemaVersion":2}"#.to_string(), None, Err("neither")),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"text/plain","config":{{"digest":"{A}","size":1}}}}"#
                ),
                None,
                Err("unsupported manifest media type"),
            ),
            ("nope".to_string(), None, Err("not json")),
        ];
        for (text, ct, want) in cases {
            let got = Manifest::parse(text.as_bytes(), ct, "h", "r", "d");
            match (got, want) {
                (Ok((_, mt)), Ok(w)) => assert_eq!(mt, w, "{text}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn parses_content_range() {
        let r = |start, end, total| Some(ContentRange { start, end, total });
        let cases = [
            ("bytes 100-199/200", r(100, 199, Some(200))),
            ("bytes 0-0/1", r(0, 0, Some(1))),
            ("bytes 5-9/*", r(5, 9, None)),
            ("  Bytes  7-8/9 ", r(7, 8, Some(9))),
            ("bytes */200", None),
            ("bytes 100-199/150", None),
            ("bytes 10-5/200", None),
            ("bytes 100-/200", None),
            ("bytes -100/200", None),
            ("bytes +1-2/3", None),
            ("bytes 1-2/x", None),
            ("items 0-1/2", None),
            ("bytes0-1/2", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(ContentRange::parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn classifies_ranged_answers() {
        use RangeAnswer::*;
        // (status, Content-Range, offset, blob size, answer)
        let cases = [
            (206, Some("bytes 100-199/200"), 100, 200, Rest),
            (206, Some("bytes 100-149/*"), 100, 200, Rest),
            (206, Some("bytes 100-149/200"), 100, 200, Rest),
            (206, Some("bytes 0-199/200"), 100, 200, Refused),
            (206, Some("bytes 100-199/300"), 100, 200, Refused),
            (206, Some("garbage"), 100, 200, Refused),
            (206, None, 100, 200, Refused),
            (200, None, 100, 200, Whole),
            (200, Some("bytes 100-199/200"), 100, 200, Whole),
            (416, Some("bytes */200"), 100, 200, Refused),
            (404, None, 100, 200, Other),
            (503, None, 100, 200, Other),
        ];
        for (status, range, offset, size, want) in cases {
            assert_eq!(
                ranged_answer(status, range, offset, size),
                want,
                "{status} {range:?} at {offset} of {size}"
            );
        }
    }

    #[test]
    fn selects_platform() {
        let (Manifest::Index(entries), _) =
            Manifest::parse(index().as_bytes(), None, "h", "r", "d").expect("index")
        else {
            panic!("not an index");
        };
        let r: Reference = "h:1/r:t".parse().expect("ref");
        let p = |arch: &str, variant: Option<&str>| PlatformSpec {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        };
        let cases = [
            (p("amd64", None), Some(A)),
            (p("x86_64", None), Some(A)),
            (p("arm64", None), Some(B)),
            (p("arm64", Some("v8")), Some(B)),
            (p("aarch64", None), Some(B)),
            (p("arm64", Some("v9")), None),
            (p("s390x", None), None),
        ];
        for (want, digest) in cases {
            let got = select_platform(&entries, &want, &r).map(|d| d.digest.as_str());
            match digest {
                Some(d) => assert_eq!(got.expect("match"), d),
                None => {
                    let e = got.expect_err("no match").to_string();
                    assert!(e.contains("linux/amd64, linux/arm64/v8"), "{e}");
                }
            }
        }
    }

    #[test]
    fn selection_prefers_the_exact_platform_then_falls_back() {
        let entry = |digest: &str, platform: &str| {
            let mut parts = platform.split('/');
            format!(
                r#"{{"mediaType":"{MEDIA_TYPE_MANIFEST}","digest":"{digest}","size":1,"platform":{{"os":"{}","architecture":"{}"{}}}}}"#,
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts
                    .next()
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default()
            )
        };
        let digests: Vec<String> = (0..4)
            .map(|i| format!("sha256:{}", format!("{i}").repeat(64)))
            .collect();
        let r: Reference = "h:1/r:t".parse().expect("ref");
        // (entries in index order, wanted, the index of the expected entry)
        let cases: [(&[&str], &str, Option<usize>); 8] = [
            (&["linux/386", "linux/amd64"], "linux/amd64", Some(1)),
            (&["linux/386"], "linux/amd64", Some(0)),
            (&["linux/arm/v5", "linux/arm/v6"], "linux/arm/v7", Some(1)),
            (&["linux/arm/v7"], "linux/arm/v6", None),
            (&["linux/arm/v7", "linux/arm64/v8"], "linux/arm64", Some(1)),
            (&["linux/arm/v7"], "linux/armhf", Some(0)),
            (
                &["linux/amd64/v2", "linux/amd64"],
                "linux/amd64/v3",
                Some(0),
            ),
            (&["linux/amd64/v3"], "linux/amd64", None),
        ];
        for (platforms, want, expected) in cases {
            let list: Vec<String> = platforms
                .iter()
                .zip(&digests)
                .map(|(p, d)| entry(d, p))
                .collect();
            let text = format!(
                r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_INDEX}","manifests":[{}]}}"#,
                list.join(",")
            );
            let (Manifest::Index(entries), _) =
                Manifest::parse(text.as_bytes(), None, "h", "r", "d").expect("index")
            else {
                panic!("not an index");
            };
            let spec = platform_spec(&want.parse().expect("platform"));
            let got = select_platform(&entries, &spec, &r)
                .ok()
                .map(|d| d.digest.clone());
            assert_eq!(
                got,
                expected.map(|i| digests[i].clone()),
                "{platforms:?} for {want}"
            );
        }
    }
}
