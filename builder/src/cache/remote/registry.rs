//! The registry backend: the cache artifact lives under a tag of a repository, pushed and
//! fetched with the [`crate::registry`] client (credentials and insecure hosts as for images).
//! A push skips blobs the registry has and mounts layers from the build's base repositories on
//! the same registry; a fetch is verified into the local blob store, retried like pulls.

use rbuild_layers::digest::Digest;
use rbuild_layers::store::BlobStore;

use super::{Artifact, Backend, RemoteCacheError};
use crate::registry::{
    mount_sources, push_log_line, repo_of, BlobDescriptor, Progress, PushOptions, Reference,
    RegistryClient, RegistryError,
};

/// A cache in a registry repository.
pub(super) struct RegistryBackend {
    client: RegistryClient,
    reference: Reference,
    mount_from: Vec<String>,
}

impl RegistryBackend {
    /// The cache at `reference`; `bases` are image references whose repositories on the same
    /// registry layers may be mounted from.
    pub(super) fn new(client: RegistryClient, reference: Reference, bases: &[String]) -> Self {
        let mount_from = mount_sources(&reference, bases);
        RegistryBackend {
            client,
            reference,
            mount_from,
        }
    }

    fn err(&self, e: RegistryError) -> RemoteCacheError {
        RemoteCacheError::Registry {
            location: self.reference.to_string(),
            source: Box::new(e),
        }
    }
}

impl Backend for RegistryBackend {
    fn location(&self) -> String {
        self.reference.to_string()
    }

    fn manifest(&self) -> Result<Option<(Digest, Vec<u8>)>, RemoteCacheError> {
        match self.client.resolve(&self.reference) {
            Ok(m) => Ok(Some((m.digest, m.bytes))),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn fetch(&self, blob: &BlobDescriptor, store: &BlobStore) -> Result<(), RemoteCacheError> {
        if store.has(&blob.digest) {
            return Ok(());
        }
        self.client
            .fetch_blob(repo_of(&self.reference), blob, store, None)
            .map_err(|e| self.err(e))
    }

    fn publish(
        &self,
        store: &BlobStore,
        artifact: &Artifact,
        log: &(dyn Fn(String) + Sync),
    ) -> Result<(), RemoteCacheError> {
        let what = |digest: &Digest| {
            if *digest == artifact.config_ref.digest {
                "config"
            } else {
                "layer"
            }
        };
        let progress = |p: &Progress| {
            if let Some(line) = push_log_line(p, |d| format!("writing {} {d}", what(d))) {
                log(line)
            }
        };
        let options = PushOptions {
            mount_from: &self.mount_from,
            progress: Some(&progress),
            ..PushOptions::default()
        };
        self.client
            .push(store, &artifact.manifest_digest, &self.reference, &options)
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
