//! Pushing a stored image to registries: what `rbuild build --push`, `-o type=registry` and
//! `rbuild push` do, as BuildKit's image exporter does with `push=true`.
//!
//! The manifest is pushed byte for byte from the local store, so the digest the registry
//! reports equals the local one. Blobs the registry already has are skipped, and layers of the
//! base image are mounted from their source repository when it lives on the same registry
//! (the client tries `mount=…&from=…`). Each push shows as a pseudo-step
//! `[internal] pushing REF` whose log lines report every blob.

use rbuild_layers::digest::Digest;

use crate::error::BuildError;
use crate::events::{EventSink, Vertex, VertexKind};
use crate::registry::{
    mount_sources, push_log_line, Progress, PushOptions, PushedImage, Reference,
};
use crate::solve::sources::RegistrySettings;
use crate::store::Store;

/// Push the manifest `digest` (in `store`) to every reference in `targets`, in order; pushing
/// stops at the first failure. `bases` are the references of the images the build started
/// from: blobs are mounted from those on the target's registry before being uploaded.
pub fn push_image(
    store: &Store,
    digest: &Digest,
    targets: &[String],
    bases: &[String],
    settings: &RegistrySettings,
    events: &dyn EventSink,
) -> Result<Vec<PushedImage>, BuildError> {
    if targets.is_empty() {
        return Err(BuildError::Request {
            field: "push",
            reason: "no image name to push to (give -t NAME or name=…)".into(),
        });
    }
    let client = settings.client();
    let mut pushed = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let reference: Reference = target.parse().map_err(|e| BuildError::Source {
            reference: target.clone(),
            reason: format!("{e}"),
        })?;
        let mount_from = mount_sources(&reference, bases);
        let vertex = Vertex::start(
            VertexKind::Push.id(i as u32),
            format!("[internal] pushing {reference}"),
            events,
        );
        let log = |line: String| vertex.log(line);
        let progress = |p: &Progress| match p {
            Progress::ManifestPushed { reference, digest } => {
                log(format!("manifest {reference}: {digest}"))
            }
            _ => {
                if let Some(line) = push_log_line(p, |d| format!("push {d}")) {
                    log(line)
                }
            }
        };
        let opts = PushOptions {
            mount_from: &mount_from,
            progress: Some(&progress),
            ..PushOptions::default()
        };
        match client.push(store.blobs(), digest, &reference, &opts) {
            Ok(p) => {
                vertex.done();
                pushed.push(p);
            }
            Err(e) => {
                vertex.failed(e.to_string());
                return Err(BuildError::Source {
                    reference: target.clone(),
                    reason: format!("push: {e}"),
                });
            }
        }
    }
    Ok(pushed)
}
