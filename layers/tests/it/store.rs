//! The blob store: atomic publication (dropped and killed writers leave no blob), corruption
//! detection, concurrent writers of the same blob from threads and from two processes, gc, and the
//! single-pass layer writer.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rbuild_layers::compress::{decoder, Compression};
use rbuild_layers::digest::Digest;
use rbuild_layers::store::{
    BlobStore, LayerInfo, LayerOptions, LayerWriter, LockMode, LockTarget, StoreError, StoreLock,
};
use rbuild_layers::tar::Entry;

/// Prefix of the extra test-filter argument (`rbuild-child:<mode>:<id>:<store root>`) that turns
/// [`child_process_worker`] into a child-process worker; as a filter it matches no test name.
/// Modes: `write` (many blobs) or `hang` (start a blob and wait to be killed).
const CHILD_ARG: &str = "rbuild-child:";

fn blob_content(i: usize) -> Vec<u8> {
    // Shared blobs (i < 10) are written by every writer; the rest are distinct per writer.
    (0..64 * 1024 + i)
        .map(|j| ((i * 31 + j) % 253) as u8)
        .collect()
}

fn temp_files(store: &BlobStore) -> Vec<String> {
    std::fs::read_dir(store.blobs_dir())
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn dropped_writer_leaves_no_blob_and_no_temp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let mut w = store.writer().expect("writer");
    w.write_all(b"half a blob").expect("write");
    drop(w);
    assert!(store.list().expect("list").is_empty());
    assert!(!store.has(&Digest::of(b"half a blob")));
    assert!(temp_files(&store).is_empty());
}

#[test]
fn gc_waits_for_writers_and_builds_holding_the_shared_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let try_gc_lock = || {
        StoreLock::try_acquire(store.root(), LockTarget::Blobs, LockMode::Exclusive)
            .expect("try lock")
    };
    let build = store
        .lock(LockTarget::Blobs, LockMode::Shared)
        .expect("build lock");
    let mut w = store
        .writer()
        .expect("writer while the build holds its shared lock");
    w.write_all(b"layer").expect("write");
    assert!(try_gc_lock().is_none(), "gc must wait for the writer");
    let (d, _) = w.complete().expect("complete");
    assert!(
        try_gc_lock().is_none(),
        "gc must wait until the build has referenced its blobs"
    );
    drop(build);
    assert!(try_gc_lock().is_some());
    assert!(store.has(&d));
}

#[test]
fn writing_an_existing_blob_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let (d, _) = store.put(b"same").expect("put");
    let before = std::fs::metadata(store.blob_path(&d)).expect("stat");
    let mut w = store.writer().expect("writer");
    w.write_all(b"same").expect("write");
    assert_eq!(w.complete().expect("complete").0, d);
    let after = std::fs::metadata(store.blob_path(&d)).expect("stat");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(before.ino(), after.ino(), "existing blob not replaced");
    assert!(temp_files(&store).is_empty());
}

#[test]
fn corrupt_blob_is_detected_with_expected_and_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let (d, _) = store.put(b"precious bytes").expect("put");
    std::fs::write(store.blob_path(&d), b"precious bytez").expect("corrupt");
    let found = Digest::of(b"precious bytez");
    for result in [store.verify(&d).map(|_| ()), store.read(&d).map(|_| ())] {
        match result {
            Err(StoreError::DigestMismatch {
                expected,
                found: got,
                path,
            }) => {
                assert_eq!(expected, d);
                assert_eq!(got, found);
                assert_eq!(path, store.blob_path(&d));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
    }
    let mut sink = Vec::new();
    let err = store
        .open_verified(&d)
        .expect("open")
        .read_to_end(&mut sink)
        .expect_err("corrupt");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains(&found.to_string()), "{err}");
}

#[test]
fn concurrent_writers_of_the_same_blob_from_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let content = blob_content(1);
    let digests: Vec<Digest> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut w = store.writer().expect("writer");
                    for chunk in content.chunks(1000) {
                        w.write_all(chunk).expect("write");
                        std::thread::yield_now();
                    }
                    w.complete().expect("complete").0
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(digests.iter().all(|d| *d == Digest::of(&content)));
    assert_eq!(
        store.verify(&digests[0]).expect("verify"),
        content.len() as u64
    );
    assert_eq!(store.list().expect("list").len(), 1);
    assert!(temp_files(&store).is_empty());
}

fn spawn_child(root: &Path, mode: &str, id: usize) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "store::child_process_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .arg(format!("{CHILD_ARG}{mode}:{id}:{}", root.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Not a test on its own: the body run by child processes (does nothing without a `CHILD_ARG`).
#[test]
fn child_process_worker() {
    let Some(spec) = std::env::args().find_map(|a| a.strip_prefix(CHILD_ARG).map(str::to_string))
    else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (mode, id, root) = (
        parts.next().expect("mode"),
        parts.next().expect("id"),
        parts.next().expect("root"),
    );
    let id: usize = id.parse().expect("id");
    let store = BlobStore::open(root).expect("open");
    match mode {
        "write" => {
            for i in (0..10).chain(100 * (id + 1)..100 * (id + 1) + 10) {
                let mut w = store.writer().expect("writer");
                for chunk in blob_content(i).chunks(4096) {
                    w.write_all(chunk).expect("write");
                }
                w.complete().expect("complete");
            }
        }
        "hang" => {
            let mut w = store.writer().expect("writer");
            w.write_all(&blob_content(7)[..1000]).expect("write");
            w.flush().expect("flush");
            std::fs::write(Path::new(root).join("child-ready"), b"").expect("ready");
            std::thread::sleep(Duration::from_secs(60));
            panic!("child was not killed");
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn two_processes_writing_one_store_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let children: Vec<_> = (0..2)
        .map(|id| spawn_child(dir.path(), "write", id))
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success(), "child failed");
    }
    let expected: BTreeSet<Digest> = (0..10)
        .chain(100..110)
        .chain(200..210)
        .map(|i| Digest::of(&blob_content(i)))
        .collect();
    let present: BTreeSet<Digest> = store.list().expect("list").into_iter().collect();
    assert_eq!(present, expected);
    for d in &present {
        store.verify(d).expect("verify");
    }
    assert!(temp_files(&store).is_empty());
}

#[test]
fn killed_writer_leaves_no_blob_under_a_digest_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    let mut child = spawn_child(dir.path(), "hang", 0);
    let ready = dir.path().join("child-ready");
    for _ in 0..600 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready.exists(), "child never got ready");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(store.list().expect("list").is_empty());
    assert_eq!(
        temp_files(&store).len(),
        1,
        "the dead writer's temp file stays until gc"
    );
    // Young temp files survive gc; the lock the child held died with it.
    let report = store.gc(&BTreeSet::new()).expect("gc");
    assert_eq!(report.temps_removed, 0);
}

fn check_layer(store: &BlobStore, info: &LayerInfo) {
    let blob = store.read(&info.digest).expect("read blob");
    assert_eq!(blob.len() as u64, info.size);
    let mut tar = Vec::new();
    decoder(&blob[..], info.compression)
        .expect("decoder")
        .read_to_end(&mut tar)
        .expect("decompress");
    assert_eq!(
        info.diff_id.0,
        Digest::of(&tar),
        "diffID is the sha256 of the uncompressed tar"
    );
    assert_eq!(
        Compression::from_media_type(&info.media_type),
        Some(info.compression)
    );
}

#[test]
fn layer_writer_produces_digest_and_diff_id_in_one_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::ensure(dir.path()).expect("ensure");
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let entries: Vec<(Entry, Box<dyn Read>)> = vec![
            (Entry::file("etc/hostname", 5), Box::new(&b"host\n"[..])),
            (Entry::dir("etc"), Box::new(std::io::empty())),
            (Entry::symlink("bin", "usr/bin"), Box::new(std::io::empty())),
        ];
        let opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let info = LayerWriter::from_entries(&store, entries, opts).expect("layer");
        assert_eq!(info.compression, compression);
        check_layer(&store, &info);
    }
    assert_eq!(store.list().expect("list").len(), 3);
}
