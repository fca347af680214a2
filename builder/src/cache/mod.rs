//! The build cache: keys ([`key`]), the manifests that explain them ([`manifest`]) and the
//! on-disk index from key to produced layer ([`index`]), and the remote cache that carries
//! records between stores as an OCI artifact ([`remote`]).
//!
//! The cache follows BuildKit's model of content-addressed step keys: a step is reused when the
//! key computed from its expanded instruction, its parent and the digests of its inputs matches a
//! stored record whose layer blob still exists. Unlike BuildKit, every key keeps the labelled
//! list of its inputs beside it so a miss can be explained field by field.

pub mod index;
pub mod key;
pub mod manifest;
pub mod remote;

pub use index::{
    BlobPresence, CacheError, CacheIndex, CacheRecord, HistoryRecord, LayerRecord, Lookup,
};
pub use key::{
    step_key, CacheKey, ContextSelection, InputDigests, KeyBuilder, KeyError, KeyFields, KeyInputs,
    StepKey,
};
pub use manifest::{explain, FieldValue, KeyField, KeyManifest, MissReason, KEY_VERSION};
