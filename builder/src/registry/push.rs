//! Pushing an image (or an index and its images) from the local blob store, as the Docker
//! client's push does: for each blob, `HEAD` first and skip what the registry has; otherwise try
//! a cross-repository mount (`POST …/blobs/uploads/?mount=<digest>&from=<repo>`) from the
//! candidate repositories given; otherwise upload in chunks (`PATCH` with `Content-Range`, then
//! `PUT ?digest=`), falling back to one monolithic `PUT` when the registry refuses chunks.
//! Manifests go last (children of an index before the index), with their exact stored bytes and
//! media type, so the pushed digest is the local one.

use std::io::Read;

use rbuild_layers::digest::Digest;
use rbuild_layers::store::{BlobStore, StoreError};

use super::auth::{query_escape, repository_scope};
use super::client::{expect_status, header, Call, RegistryClient, Repo};
use super::error::{RegistryError, Result};
use super::pull::{repo_of, BlobDescriptor, Manifest};
use super::reference::Reference;
use super::retry::retry;
use super::{report, Progress, ProgressFn};

/// How to push.
#[derive(Default, Clone, Copy)]
pub struct PushOptions<'a> {
    /// Repositories (same registry) to try mounting blobs from, e.g. the base image's.
    pub mount_from: &'a [String],
    /// Upload in one `PUT` instead of chunks.
    pub monolithic: bool,
    /// Progress callback.
    pub progress: Option<ProgressFn<'a>>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The target.
    pub reference: Reference,
    /// The top manifest (or index) digest: equal to the local one.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Blobs uploaded.
    pub uploaded: Vec<Digest>,
    /// Blobs the registry already had.
    pub skipped: Vec<Digest>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<Digest>,
}

enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded,
}

impl RegistryClient {
    /// Push the manifest (or index) `digest` from `store` to `target` (its tag, or by digest
    /// when the target has none).
    pub fn push(
        &self,
        store: &BlobStore,
        digest: &Digest,
        target: &Reference,
        options: &PushOptions<'_>,
    ) -> Result<PushedImage> {
        let repo = repo_of(target);
        let mut pushed = PushedImage {
            reference: target.clone(),
            digest: digest.clone(),
            media_type: String::new(),
            uploaded: Vec::new(),
            skipped: Vec::new(),
            mounted: Vec::new(),
        };
        let name = match target.tag() {
            Some(t) => t.to_string(),
            None => digest.to_string(),
        };
        pushed.media_type = self.push_tree(repo, store, digest, &name, options, &mut pushed, 0)?;
        report(
            options.progress,
            Progress::ManifestPushed {
                reference: target.to_string(),
                digest: digest.clone(),
            },
        );
        Ok(pushed)
    }

    #[allow(clippy::too_many_arguments)]
    fn push_tree(
        &self,
        repo: Repo<'_>,
        store: &BlobStore,
        digest: &Digest,
        name: &str,
        options: &PushOptions<'_>,
        pushed: &mut PushedImage,
        depth: usize,
    ) -> Result<String> {
        let bytes = store.read(digest)?;
        let local = |reason: String| RegistryError::LocalImage {
            digest: digest.clone(),
            reason,
        };
        let (parsed, media_type) = Manifest::parse(
            &bytes,
            None,
            repo.host,
            repo.repository,
            &digest.to_string(),
        )
        .map_err(|e| local(e.to_string()))?;
        match parsed {
            Manifest::Index(entries) => {
                if depth > 0 {
                    return Err(local(
                        "an index inside an index is not supported".to_string(),
                    ));
                }
                for entry in &entries {
                    let child: Digest = entry
                        .digest
                        .parse()
                        .map_err(|e| local(format!("entry `{}`: {e}", entry.digest)))?;
                    self.push_tree(repo, store, &child, &child.to_string(), options, pushed, 1)?;
                }
            }
            Manifest::Image { config, layers } => {
                let mut blobs: Vec<BlobDescriptor> = Vec::new();
                for b in std::iter::once(config).chain(layers) {
                    if !blobs.iter().any(|x| x.digest == b.digest) {
                        blobs.push(b);
                    }
                }
                let outcomes = std::sync::Mutex::new(Vec::new());
                super::for_each_bounded(self.options().max_concurrent_transfers, &blobs, |blob| {
                    let outcome = retry(
                        &self.options().retry,
                        &format!("upload {}", blob.digest),
                        options.progress,
                        || self.push_blob(repo, store, blob, options),
                    )?;
                    if let Ok(mut o) = outcomes.lock() {
                        o.push((blob.digest.clone(), outcome));
                    }
                    Ok(())
                })?;
                let mut outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
                outcomes.sort_by(|a, b| a.0.cmp(&b.0));
                for (d, outcome) in outcomes {
                    match outcome {
                        BlobOutcome::Skipped => pushed.skipped.push(d),
                        BlobOutcome::Mounted => pushed.mounted.push(d),
                        BlobOutcome::Uploaded => pushed.uploaded.push(d),
                    }
                }
            }
        }
        retry(
            &self.options().retry,
            &format!("manifest {digest}"),
            options.progress,
            || self.put_manifest(repo, name, &bytes, &media_type, digest),
        )?;
        Ok(media_type)
    }

    fn put_manifest(
        &self,
        repo: Repo<'_>,
        name: &str,
        bytes: &[u8],
        media_type: &str,
        digest: &Digest,
    ) -> Result<()> {
        let url = format!(
            "{}/v2/{}/manifests/{name}",
            self.base_url(repo.host),
            repo.repository
        );
        let call = Call::new("PUT", url.clone(), push_scope(repo.repository))
            .header("Content-Type", media_type)
            .body(bytes);
        let mut resp = self.send(repo, &call)?;
        expect_status(repo, "PUT", &url, &mut resp, &[200, 201, 202])?;
        if let Some(served) =
            header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
        {
            if &served != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: repo.host.to_string(),
                    repository: repo.repository.to_string(),
                    what: "manifest",
                    expected: digest.clone(),
                    found: served,
                });
            }
        }
        Ok(())
    }

    fn push_blob(
        &self,
        repo: Repo<'_>,
        store: &BlobStore,
        blob: &BlobDescriptor,
        options: &PushOptions<'_>,
    ) -> Result<BlobOutcome> {
        let progress = options.progress;
        let base = self.base_url(repo.host);
        let url = format!("{base}/v2/{}/blobs/{}", repo.repository, blob.digest);
        let mut resp = self.send(
            repo,
            &Call::new("HEAD", url.clone(), push_scope(repo.repository)),
        )?;
        if resp.status().as_u16() == 200 {
            report(
                progress,
                Progress::BlobSkipped {
                    digest: blob.digest.clone(),
                },
            );
            return Ok(BlobOutcome::Skipped);
        }
        if resp.status().as_u16() != 404 {
            expect_status(repo, "HEAD", &url, &mut resp, &[200])?;
        }
        let mut upload_location = None;
        for from in options
            .mount_from
            .iter()
            .filter(|f| f.as_str() != repo.repository)
        {
            let url = format!(
                "{base}/v2/{}/blobs/uploads/?mount={}&from={}",
                repo.repository,
                query_escape(&blob.digest.to_string()),
                query_escape(from)
            );
            let scope = format!(
                "{} {}",
                push_scope(repo.repository),
                repository_scope(from, &["pull"])
            );
            let mut resp = self.send(repo, &Call::new("POST", url.clone(), scope))?;
            match resp.status().as_u16() {
                201 => {
                    report(
                        progress,
                        Progress::BlobMounted {
                            digest: blob.digest.clone(),
                            from: from.clone(),
                        },
                    );
                    return Ok(BlobOutcome::Mounted);
                }
                202 => {
                    upload_location = header(&resp, "location").map(|l| absolute(&base, l));
                    break;
                }
                _ => {
                    // A refused mount is not an error: fall through to a plain upload.
                    super::client::read_small(&mut resp);
                }
            }
        }
        report(
            progress,
            Progress::BlobStart {
                digest: blob.digest.clone(),
                size: blob.size,
            },
        );
        let location = match upload_location {
            Some(l) => l,
            None => self.start_upload(repo, &base)?,
        };
        if options.monolithic {
            self.upload_monolithic(repo, store, blob, &location)?;
        } else if let Err(e) = self.upload_chunked(repo, store, blob, &location, progress) {
            if e.is_transient() || matches!(e, RegistryError::Unauthorized { .. }) {
                return Err(e);
            }
            // The registry refused chunks: start over with one PUT, as Docker falls back.
            let location = self.start_upload(repo, &base)?;
            self.upload_monolithic(repo, store, blob, &location)?;
        }
        report(
            progress,
            Progress::BlobDone {
                digest: blob.digest.clone(),
            },
        );
        Ok(BlobOutcome::Uploaded)
    }

    fn start_upload(&self, repo: Repo<'_>, base: &str) -> Result<String> {
        let url = format!("{base}/v2/{}/blobs/uploads/", repo.repository);
        let mut resp = self.send(
            repo,
            &Call::new("POST", url.clone(), push_scope(repo.repository)),
        )?;
        expect_status(repo, "POST", &url, &mut resp, &[202])?;
        header(&resp, "location")
            .map(|l| absolute(base, l))
            .ok_or_else(|| RegistryError::Http {
                registry: repo.host.to_string(),
                repository: repo.repository.to_string(),
                method: "POST".to_string(),
                url,
                status: 202,
                errors: super::error::RegistryErrors::default(),
            })
    }

    fn upload_chunked(
        &self,
        repo: Repo<'_>,
        store: &BlobStore,
        blob: &BlobDescriptor,
        location: &str,
        progress: Option<ProgressFn<'_>>,
    ) -> Result<()> {
        let base = self.base_url(repo.host);
        let mut file = store.open_blob(&blob.digest)?;
        let mut location = location.to_string();
        let mut chunk = vec![0u8; self.options().chunk_size.max(1)];
        let mut offset: u64 = 0;
        loop {
            let n = read_full(&mut file, &mut chunk).map_err(|source| {
                RegistryError::Store(StoreError::Io {
                    op: "read blob",
                    path: store.blob_path(&blob.digest),
                    source,
                })
            })?;
            if n == 0 {
                break;
            }
            let end = offset + n as u64 - 1;
            let call = Call::new("PATCH", location.clone(), push_scope(repo.repository))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{offset}-{end}"))
                .body(&chunk[..n]);
            let mut resp = self.send(repo, &call)?;
            expect_status(repo, "PATCH", &location, &mut resp, &[202])?;
            if let Some(l) = header(&resp, "location") {
                location = absolute(&base, l);
            }
            offset += n as u64;
            report(
                progress,
                Progress::BlobBytes {
                    digest: blob.digest.clone(),
                    done: offset,
                    total: blob.size,
                },
            );
        }
        let url = with_digest(&location, &blob.digest);
        let mut resp = self.send(
            repo,
            &Call::new("PUT", url.clone(), push_scope(repo.repository)),
        )?;
        expect_status(repo, "PUT", &url, &mut resp, &[201, 204])
    }

    fn upload_monolithic(
        &self,
        repo: Repo<'_>,
        store: &BlobStore,
        blob: &BlobDescriptor,
        location: &str,
    ) -> Result<()> {
        let bytes = store.read(&blob.digest)?;
        let url = with_digest(location, &blob.digest);
        let call = Call::new("PUT", url.clone(), push_scope(repo.repository))
            .header("Content-Type", "application/octet-stream")
            .body(&bytes);
        let mut resp = self.send(repo, &call)?;
        expect_status(repo, "PUT", &url, &mut resp, &[201, 204])
    }
}

fn push_scope(repository: &str) -> String {
    repository_scope(repository, &["pull", "push"])
}

/// A `Location` header made absolute against `base` (`http://host`).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

/// `location` with `digest=` appended to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!(
        "{location}{sep}digest={}",
        query_escape(&digest.to_string())
    )
}

/// Read until `buf` is full or the end of the file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The repositories of `bases` (image references) on the same registry as `target`, other
/// than the target's own: the cross-repository mount candidates of a push
/// ([`PushOptions::mount_from`]), sorted and without repeats.
pub(crate) fn mount_sources(target: &Reference, bases: &[String]) -> Vec<String> {
    let mut repos: Vec<String> = bases
        .iter()
        .filter_map(|b| b.parse::<Reference>().ok())
        .filter(|b| b.registry_host() == target.registry_host())
        .map(|b| b.repository().to_string())
        .filter(|r| r != target.repository())
        .collect();
    repos.sort();
    repos.dedup();
    repos
}

/// The log line a push shows for a blob event or a retry: `blob` names the blob as the log
/// calls it (`push sha256:…`, `writing layer sha256:…`); `None` for the other events.
pub(crate) fn push_log_line(p: &Progress, blob: impl Fn(&Digest) -> String) -> Option<String> {
    match p {
        Progress::BlobDone { digest } => Some(format!("{}: done", blob(digest))),
        Progress::BlobSkipped { digest } => Some(format!("{}: already exists", blob(digest))),
        Progress::BlobMounted { digest, from } => {
            Some(format!("{}: mounted from {from}", blob(digest)))
        }
        _ => p.retry_line(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_come_from_bases_on_the_same_registry() {
        let target: Reference = "reg:5000/team/app:v1".parse().expect("reference");
        let cases: &[(&[&str], &[&str])] = &[
            (&["reg:5000/base:1", "reg:5000/base@sha256:0000000000000000000000000000000000000000000000000000000000000000"], &["base"]),
            (&["other:5000/base:1", "alpine:3.20"], &[]),
            (&["reg:5000/team/app:v0"], &[]),
            (&["reg:5000/z:1", "reg:5000/a/b:2"], &["a/b", "z"]),
        ];
        for (bases, want) in cases {
            let bases: Vec<String> = bases.iter().map(|b| b.to_string()).collect();
            assert_eq!(mount_sources(&target, &bases), *want, "{bases:?}");
        }
    }

    #[test]
    fn push_events_read_as_log_lines() {
        let d: Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .expect("digest");
        let cases = [
            (
                Progress::BlobDone { digest: d.clone() },
                Some(format!("push {d}: done")),
            ),
            (
                Progress::BlobSkipped { digest: d.clone() },
                Some(format!("push {d}: already exists")),
            ),
            (
                Progress::BlobMounted {
                    digest: d.clone(),
                    from: "base".into(),
                },
                Some(format!("push {d}: mounted from base")),
            ),
            (
                Progress::Retry {
                    what: format!("blob {d}"),
                    attempt: 2,
                    error: "reset".into(),
                },
                Some(format!("retry blob {d} (attempt 2): reset")),
            ),
            (
                Progress::BlobStart {
                    digest: d.clone(),
                    size: 1,
                },
                None,
            ),
        ];
        for (event, want) in cases {
            assert_eq!(
                push_log_line(&event, |d| format!("push {d}")),
                want,
                "{event:?}"
            );
        }
    }

    #[test]
    fn locations() {
        let d: Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .expect("digest");
        let cases = [
            ("/v2/a/blobs/uploads/u?_state=x", "http://h/v2/a/blobs/uploads/u?_state=x&digest=sha256%3A0000000000000000000000000000000000000000000000000000000000000000"),
            ("http://o/v2/a/blobs/uploads/u", "http://o/v2/a/blobs/uploads/u?digest=sha256%3A0000000000000000000000000000000000000000000000000000000000000000"),
        ];
        for (loc, want) in cases {
            assert_eq!(with_digest(&absolute("http://h", loc), &d), want);
        }
    }
}
