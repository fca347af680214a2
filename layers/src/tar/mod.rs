//! Tar layers (being written).
pub mod entry;
pub mod extract;
pub mod read;
pub mod write;
