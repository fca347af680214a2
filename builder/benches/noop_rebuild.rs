//! A no-op rebuild of a 10,000-file / 100 MB context with `COPY . /app` (target: ≤ 50 ms on
//! this machine; docker/BuildKit takes ~0.5 s): parse, lower, hash the context through the stat
//! cache, key every step, find every result in the cache, and write the (identical) image.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rbuild::context::RACY_WINDOW_NS;
use rbuild::events::NullSink;
use rbuild::{build, BuildRequest, DockerfileSource, Store};

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;
const FILE_SIZE: usize = 10 * 1024;

fn make_context(root: &Path) {
    rbuild_test_support::numbered_context(root, DIRS, FILES_PER_DIR, FILE_SIZE)
        .expect("write context");
}

fn bench(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = scratch.path().join("context");
    make_context(&ctx);
    let store = Store::open(scratch.path().join("store")).expect("store");
    let req = BuildRequest::new(
        Some(ctx.clone()),
        DockerfileSource::Text {
            name: "Dockerfile".into(),
            text:
                "FROM scratch\nWORKDIR /app\nCOPY . /app\nCMD [\"/app/pkg000/src/file000.txt\"]\n"
                    .into(),
        },
    );
    // Let the files age past the stat cache's racy window, then build twice: the first build
    // writes the layer, the second primes a stat cache that trusts every file.
    std::thread::sleep(Duration::from_nanos(RACY_WINDOW_NS as u64) + Duration::from_millis(100));
    let first = build(&store, &req, &NullSink).expect("first build");
    let second = build(&store, &req, &NullSink).expect("second build");
    assert_eq!(second.cached, second.steps);
    assert_eq!(first.manifest_digest, second.manifest_digest);

    let mut group = c.benchmark_group("noop_rebuild");
    group.sample_size(20);
    group.bench_function("copy_dot_10k_files_100MB", |b| {
        b.iter(|| {
            let out = build(&store, &req, &NullSink).expect("rebuild");
            assert_eq!(out.cached, out.steps);
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
