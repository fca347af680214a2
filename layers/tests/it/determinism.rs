//! Same input, same bytes: one tree built twice in two directories (different creation order,
//! different mtimes, different inodes) and packed with 1 or many threads gives identical layer
//! digests and diffIDs for every compression.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_layers::compress::{CompressOptions, Compression};
use rbuild_layers::store::{BlobStore, LayerInfo, LayerOptions, LayerWriter};
use rbuild_layers::tar::write::TarOptions;
use tempfile::TempDir;

/// Files of the tree: (path, content length, seed). Big enough for several gzip blocks.
const FILES: &[(&str, usize, u8)] = &[
    ("usr/bin/tool", 700_000, 1),
    ("usr/lib/libx.so.1", 300_000, 2),
    ("etc/config", 120, 3),
    ("etc/empty", 0, 4),
    ("var/lib/data.bin", 1_000_000, 5),
];

fn content(len: usize, seed: u8) -> Vec<u8> {
    // Half text-like, half noisy: compressible, but not trivially.
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if (i / 4096) % 2 == 0 {
                b"abcdefghijklmnop"[(i + seed as usize) % 16]
            } else {
                state as u8
            }
        })
        .collect()
}

/// Build the tree under `root`, creating files in `order`, stamping everything with `mtime`.
fn build_tree(root: &Path, reverse: bool, mtime: SystemTime) {
    let mut files: Vec<_> = FILES.to_vec();
    if reverse {
        files.reverse();
    }
    for (path, len, seed) in &files {
        let full = root.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(&full, content(*len, *seed)).expect("write");
    }
    std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).expect("symlink");
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).expect("hard link");
    // Stamp files and directories (deepest first, so the parents' mtimes stay ours).
    let mut paths: Vec<_> = walk(root);
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in paths {
        if p.is_symlink() {
            continue;
        }
        File::open(&p)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
    }
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for item in fs::read_dir(root).expect("read dir") {
        let path = item.expect("entry").path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// A scratch dir holding a blob store and the tree built twice: at `first` (in order, mtime
/// 1,600,000,000) and at `second` (relative path; in reverse order when `reverse`, mtime
/// 1,700,000,000). Keep the dir alive while the paths are used.
fn store_and_two_trees(second: &str, reverse: bool) -> (TempDir, BlobStore, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path().join("store")).expect("ensure");
    let first = dir.path().join("first");
    let second = dir.path().join(second);
    build_tree(
        &first,
        false,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
    );
    build_tree(
        &second,
        reverse,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    (dir, store, first, second)
}

fn pack(
    store: &BlobStore,
    dir: &Path,
    compression: Compression,
    threads: usize,
    tar: TarOptions,
) -> LayerInfo {
    let opts = LayerOptions {
        compression,
        compress: CompressOptions::with_threads(threads),
        tar,
    };
    LayerWriter::from_dir(store, dir, opts).expect("pack")
}

#[test]
fn same_tree_in_two_places_with_any_thread_count_gives_the_same_layer() {
    let (_dir, store, first, second) = store_and_two_trees("elsewhere/second", true);

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let reference = pack(&store, &first, compression, 1, TarOptions::default());
        for (tree, threads) in [(&first, 4), (&second, 1), (&second, 3)] {
            let other = pack(&store, tree, compression, threads, TarOptions::default());
            assert_eq!(
                other,
                reference,
                "{compression} with {threads} threads on {}",
                tree.display()
            );
        }
        // The diffID never depends on compression.
        let plain = pack(&store, &first, Compression::None, 1, TarOptions::default());
        assert_eq!(reference.diff_id, plain.diff_id);
    }
}

#[test]
fn kept_mtimes_make_the_layers_differ_and_epoch_clamps_them() {
    let (_dir, store, first, second) = store_and_two_trees("second", false);
    let kept =
        [&first, &second].map(|t| pack(&store, t, Compression::None, 1, TarOptions::keep_mtimes()));
    assert_ne!(kept[0].diff_id, kept[1].diff_id);
    // SOURCE_DATE_EPOCH below both: clamped to the same value.
    let clamped = [&first, &second].map(|t| {
        pack(
            &store,
            t,
            Compression::Gzip,
            2,
            TarOptions::clamp_to(1_500_000_000),
        )
    });
    assert_eq!(clamped[0], clamped[1]);
}
