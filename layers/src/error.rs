//! The crate error: every module's own error enum folded in with `#[from]`, so callers that do not
//! care which stage failed can use one [`Result`].

use crate::compress::CompressError;
use crate::json::JsonError;
use crate::store::layer::LayerError;
use crate::store::StoreError;
use crate::tar::write::TarError;

/// Any error of rbuild-layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing a tar stream failed.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// A blob store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Compressing or decompressing failed.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// Writing a layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Serializing canonical JSON failed.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Reading a layer tar failed.
    #[error(transparent)]
    Read(#[from] crate::tar::read::ReadError),
    /// Applying a layer to a directory failed.
    #[error(transparent)]
    Extract(#[from] crate::tar::extract::ExtractError),
    /// Computing a diff failed.
    #[error(transparent)]
    Diff(#[from] crate::diff::DiffError),
    /// Assembling or reading an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// An OCI layout operation failed.
    #[error(transparent)]
    Layout(#[from] crate::oci_layout::LayoutError),
    /// A docker archive operation failed.
    #[error(transparent)]
    Archive(#[from] crate::docker_archive::ArchiveError),
}

/// A result with the crate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
