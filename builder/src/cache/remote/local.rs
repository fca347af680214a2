//! The local backend: the cache artifact is an entry of an OCI image layout directory, named by
//! its `org.opencontainers.image.ref.name` annotation (the `tag`, `latest` by default), as
//! BuildKit's `type=local` cache writes `index.json`. Blobs are copied through the blob
//! writers (hashed while written, verified, renamed into place) and `index.json` is rewritten
//! atomically under the layout's index lock, replacing a previous entry of the same tag. Old
//! blobs are left in place, as BuildKit leaves them.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, MediaType};
use rbuild_layers::digest::Digest;
use rbuild_layers::image::MEDIA_TYPE_MANIFEST;
use rbuild_layers::oci_layout::{LayoutError, OciLayout, ANNOTATION_REF_NAME};
use rbuild_layers::store::{BlobStore, StoreError};

use super::format::ARTIFACT_TYPE;
use super::{Artifact, Backend, RemoteCacheError};
use crate::registry::BlobDescriptor;

/// A cache in an OCI layout directory.
pub(super) struct LocalBackend {
    dir: PathBuf,
    tag: String,
    digest: Option<Digest>,
}

impl LocalBackend {
    /// The cache entry `tag` (or the manifest `digest`, for imports) of the layout at `dir`.
    pub(super) fn new(dir: &Path, tag: &str, digest: Option<&Digest>) -> Self {
        LocalBackend {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            digest: digest.cloned(),
        }
    }

    fn layout_err(&self, source: LayoutError) -> RemoteCacheError {
        RemoteCacheError::Layout {
            dir: self.dir.clone(),
            source,
        }
    }

    fn store_err(&self, source: StoreError) -> RemoteCacheError {
        RemoteCacheError::Store {
            location: self.location(),
            source,
        }
    }

    fn bad_entry(&self, digest: &str, reason: String) -> RemoteCacheError {
        RemoteCacheError::BadEntry {
            location: self.location(),
            digest: digest.to_string(),
            reason,
        }
    }
}

/// Copy blob `blob` from `from` into `to`, verified; a blob `to` has is left alone.
fn copy_blob(from: &BlobStore, to: &BlobStore, blob: &BlobDescriptor) -> Result<(), StoreError> {
    if to.has(&blob.digest) {
        return Ok(());
    }
    let mut reader = from.open_verified(&blob.digest)?;
    let mut writer = to.writer()?;
    io::copy(&mut reader, &mut writer).map_err(|source| StoreError::Io {
        op: "copy blob",
        path: from.blob_path(&blob.digest),
        source,
    })?;
    writer.complete_verified(&blob.digest, blob.size)?;
    Ok(())
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.dir.display()),
            None => format!("{} (tag {})", self.dir.display(), self.tag),
        }
    }

    fn manifest(&self) -> Result<Option<(Digest, Vec<u8>)>, RemoteCacheError> {
        let layout = match OciLayout::open(&self.dir) {
            Ok(l) => l,
            Err(LayoutError::Store(StoreError::NotALayout { .. })) => return Ok(None),
            Err(e) => return Err(self.layout_err(e)),
        };
        let wanted = match &self.digest {
            Some(d) => d.to_string(),
            None => self.tag.clone(),
        };
        let entry = match layout.resolve_entry(&wanted) {
            Ok(d) => d,
            Err(LayoutError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.layout_err(e)),
        };
        let text = entry.digest().to_string();
        let digest: Digest = text
            .parse()
            .map_err(|e| self.bad_entry(&text, format!("{e}")))?;
        let media = entry.media_type().to_string();
        if media != MEDIA_TYPE_MANIFEST {
            return Err(self.bad_entry(
                &text,
                format!("media type {media} is not {MEDIA_TYPE_MANIFEST}"),
            ));
        }
        let bytes = layout
            .store()
            .read(&digest)
            .map_err(|e| self.store_err(e))?;
        if bytes.len() as u64 != entry.size() {
            return Err(self.bad_entry(
                &text,
                format!("{} bytes, the index says {}", bytes.len(), entry.size()),
            ));
        }
        Ok(Some((digest, bytes)))
    }

    fn fetch(&self, blob: &BlobDescriptor, store: &BlobStore) -> Result<(), RemoteCacheError> {
        let layout = OciLayout::open(&self.dir).map_err(|e| self.layout_err(e))?;
        copy_blob(layout.store(), store, blob).map_err(|e| self.store_err(e))
    }

    fn publish(
        &self,
        store: &BlobStore,
        artifact: &Artifact,
        log: &(dyn Fn(String) + Sync),
    ) -> Result<(), RemoteCacheError> {
        let layout = OciLayout::ensure(&self.dir).map_err(|e| self.layout_err(e))?;
        for layer in &artifact.layers {
            copy_blob(store, layout.store(), layer).map_err(|e| self.store_err(e))?;
            log(format!("writing layer {}: done", layer.digest));
        }
        for bytes in [&artifact.config, &artifact.manifest] {
            layout.store().put(bytes).map_err(|e| self.store_err(e))?;
        }
        log(format!(
            "writing config {}: done",
            artifact.config_ref.digest
        ));
        let spec_digest = oci_spec::image::Digest::from_str(&artifact.manifest_digest.to_string())
            .map_err(|e| self.bad_entry(&artifact.manifest_digest.to_string(), e.to_string()))?;
        let mut descriptor = Descriptor::new(
            MediaType::ImageManifest,
            artifact.manifest.len() as u64,
            spec_digest,
        );
        descriptor.set_artifact_type(Some(MediaType::Other(ARTIFACT_TYPE.to_string())));
        descriptor.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            self.tag.clone(),
        )])));
        layout.add(descriptor, None).map_err(|e| self.layout_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::remote::format;
    use std::collections::BTreeMap;

    #[test]
    fn publish_then_read_back_and_replace_the_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::ensure(dir.path().join("store")).expect("store");
        let artifact = format::build(&BTreeMap::new()).expect("artifact");
        store.put(&artifact.config).expect("config");
        store.put(&artifact.manifest).expect("manifest");
        let dest = dir.path().join("cache");
        let missing = LocalBackend::new(&dest, "latest", None);
        assert!(missing.manifest().expect("no layout is no cache").is_none());

        let backend = LocalBackend::new(&dest, "latest", None);
        backend
            .publish(&store, &artifact, &|_| {})
            .expect("publish");
        // Publishing twice keeps one entry for the tag.
        backend
            .publish(&store, &artifact, &|_| {})
            .expect("publish again");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index.json"))
                .expect("json");
        let entries = index["manifests"].as_array().expect("manifests");
        assert_eq!(entries.len(), 1, "{index}");
        assert_eq!(
            entries[0]["annotations"][ANNOTATION_REF_NAME],
            serde_json::json!("latest")
        );
        assert_eq!(entries[0]["artifactType"], serde_json::json!(ARTIFACT_TYPE));
        let (digest, bytes) = backend.manifest().expect("read").expect("present");
        assert_eq!(digest, artifact.manifest_digest);
        assert_eq!(bytes, artifact.manifest);
        let by_digest = LocalBackend::new(&dest, "latest", Some(&digest));
        assert!(by_digest.manifest().expect("read").is_some());
        let other_tag = LocalBackend::new(&dest, "v2", None);
        assert!(other_tag.manifest().expect("read").is_none());

        // Fetching copies the blob, verified, into another store.
        let fresh = BlobStore::ensure(dir.path().join("fresh")).expect("store");
        backend.fetch(&artifact.config_ref, &fresh).expect("fetch");
        assert!(fresh.has(&artifact.config_ref.digest));
    }
}
