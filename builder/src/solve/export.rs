//! Writing a stored image out, as BuildKit's exporters do: `type=oci` (a layout directory or
//! tar), `type=docker` (a `docker load` archive), `type=local` (the root filesystem unpacked into
//! a directory) and `type=tar` (the root filesystem as one tar).
//!
//! OCI and Docker outputs copy the stored blobs byte for byte. The root filesystem outputs apply
//! the layers in order (whiteouts applied, owners kept); the tar form is written by the
//! deterministic tar writer with the layers' own mtimes. Files are written through temp names
//! and renames by the layer crate, so a failed export leaves no half-written tar.
//! `type=registry` pushes the stored manifest unchanged ([`crate::solve::push`]).

use std::fs;
use std::io::{self, BufReader};
use std::path::Path;

use rbuild_layers::docker_archive::write_docker_archive;
use rbuild_layers::image::StoredImage;
use rbuild_layers::oci_layout::{ImageName, OciLayout};
use rbuild_layers::tar::extract::{ExtractOptions, Extractor};
use rbuild_layers::tar::write::{write_tree, TarOptions};

use crate::error::BuildError;
use crate::events::{EventSink, NullSink};
use crate::solve::push::push_image;
use crate::solve::request::Output;
use crate::solve::sources::import_image;
use crate::solve::sources::RegistrySettings;
use crate::store::Store;

/// Write `image` (stored in `store`) to `out`, named `names` where the format carries names;
/// a registry output is pushed anonymously (see [`export_with`]).
pub fn export(
    store: &Store,
    image: &StoredImage,
    names: &[ImageName],
    out: &Output,
) -> Result<(), BuildError> {
    export_with(
        store,
        image,
        names,
        out,
        &RegistrySettings::default(),
        &NullSink,
    )
}

/// [`export`] with the registry settings (credentials, insecure hosts) and progress sink a
/// `type=registry` output uses.
pub fn export_with(
    store: &Store,
    image: &StoredImage,
    names: &[ImageName],
    out: &Output,
    registry: &RegistrySettings,
    events: &dyn EventSink,
) -> Result<(), BuildError> {
    match out {
        Output::Registry { names: targets } => {
            let targets: Vec<String> = if targets.is_empty() {
                names.iter().map(|n| n.to_string()).collect()
            } else {
                targets.clone()
            };
            push_image(
                store,
                &image.manifest_digest,
                &targets,
                &[],
                registry,
                events,
            )
            .map(|_| ())
        }
        Output::Oci { dest, tar: false } => {
            write_layout(store, image, names, dest).map_err(|e| export_err(dest, e))
        }
        Output::Oci { dest, tar: true } => {
            let scratch = scratch_dir(store)?;
            write_layout(store, image, names, scratch.path()).map_err(|e| export_err(dest, e))?;
            let layout = OciLayout::open(scratch.path()).map_err(|e| export_err(dest, e))?;
            layout.write_tar(dest, &[]).map_err(|e| export_err(dest, e))
        }
        Output::Docker { dest } => {
            write_docker_archive(store.blobs(), &[(image.clone(), names.to_vec())], dest)
                .map_err(|e| export_err(dest, e))
        }
        Output::Local { dest } => {
            fs::create_dir_all(dest).map_err(|source| BuildError::Io {
                op: "create dir",
                path: dest.clone(),
                source,
            })?;
            unpack_rootfs(store, image, dest)
        }
        Output::Tar { dest } => {
            let scratch = scratch_dir(store)?;
            let root = scratch.path().join("rootfs");
            unpack_rootfs(store, image, &root)?;
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
            let tmp_dir = parent.unwrap_or(Path::new("."));
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-rootfs-")
                .tempfile_in(tmp_dir)
                .map_err(|source| BuildError::Io {
                    op: "create temp file in",
                    path: tmp_dir.to_path_buf(),
                    source,
                })?;
            let file = write_tree(
                &root,
                io::BufWriter::new(tmp.reopen().map_err(|source| BuildError::Io {
                    op: "open",
                    path: tmp.path().to_path_buf(),
                    source,
                })?),
                TarOptions::keep_mtimes(),
            )
            .map_err(|e| export_err(dest, e))?;
            file.into_inner()
                .map_err(|e| export_err(dest, e.error()))?
                .sync_all()
                .map_err(|source| BuildError::Io {
                    op: "sync",
                    path: dest.clone(),
                    source,
                })?;
            tmp.persist(dest).map_err(|e| BuildError::Io {
                op: "rename into",
                path: dest.clone(),
                source: e.error,
            })?;
            Ok(())
        }
    }
}

fn export_err(dest: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::Export {
        dest: dest.to_path_buf(),
        reason: e.to_string(),
    }
}

fn scratch_dir(store: &Store) -> Result<tempfile::TempDir, BuildError> {
    tempfile::Builder::new()
        .prefix(".tmp-export-")
        .tempdir_in(store.root())
        .map_err(|source| BuildError::Io {
            op: "create scratch dir in",
            path: store.root().to_path_buf(),
            source,
        })
}

/// Copy the image into the layout at `dest` and name it (or add it unnamed).
fn write_layout(
    store: &Store,
    image: &StoredImage,
    names: &[ImageName],
    dest: &Path,
) -> Result<(), String> {
    let layout = OciLayout::ensure(dest).map_err(|e| e.to_string())?;
    import_image(store.blobs(), image, layout.store()).map_err(|e| e.to_string())?;
    if names.is_empty() {
        let d = image.descriptor().map_err(|e| e.to_string())?;
        layout.add(d, None).map_err(|e| e.to_string())?;
    }
    for n in names {
        layout.tag(n, image).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Apply the image's layers, bottom first, to `dest`.
fn unpack_rootfs(store: &Store, image: &StoredImage, dest: &Path) -> Result<(), BuildError> {
    let err = |e: &dyn std::fmt::Display| export_err(dest, e);
    let layers = image.layers().map_err(|e| err(&e))?;
    let mut x = Extractor::open(dest, ExtractOptions::default()).map_err(|e| err(&e))?;
    for l in layers {
        let blob = store
            .blobs()
            .open_verified(&l.digest)
            .map_err(|e| err(&e))?;
        x.apply_layer(BufReader::with_capacity(1 << 20, blob))
            .map_err(|e| err(&e))?;
    }
    Ok(())
}
