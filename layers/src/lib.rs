//! rbuild-layers: blobs, layers and image formats for rbuild (being written).
#![warn(missing_docs)]

pub mod compress;
pub mod diff;
pub mod digest;
pub mod docker_archive;
pub mod error;
pub mod image;
pub mod json;
pub mod oci_layout;
pub mod store;
pub mod tar;
pub mod whiteout;
