//! placeholder: rbuild-layers is being written
pub mod digest;
