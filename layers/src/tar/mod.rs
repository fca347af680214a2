//! Tar layers: the [`Entry`] model, the deterministic writer ([`TarWriter`], [`write_tree`]), the
//! reader and the extractor. The on-disk format is PAX ustar as written by BuildKit/containerd.
pub mod entry;
pub mod extract;
pub mod pax;
pub mod read;
pub mod write;
pub mod xattr;

pub use entry::{
    compare_names, compare_paths, normalize_path, validate_path, Entry, EntryKind, PathError,
    MODE_MASK,
};
pub use write::{sort_entries, write_tree, TarError, TarOptions, TarWriter};
