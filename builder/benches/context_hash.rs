//! Context hashing: a no-op re-hash of a 10,000-file / 100 MB context (goal: ≤ 50 ms on two
//! cores), plus the cold hash for comparison.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rbuild::context::{hash_context, HashOptions, NoFilter, StatCache, RACY_WINDOW_NS};

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;
const FILE_SIZE: usize = 10 * 1024;

fn make_context(root: &Path) {
    rbuild_test_support::numbered_context(root, DIRS, FILES_PER_DIR, FILE_SIZE)
        .expect("write context");
}

fn bench(c: &mut Criterion) {
    let store = tempfile::tempdir().expect("store");
    let ctx = tempfile::tempdir().expect("context");
    make_context(ctx.path());
    // Let the files age past the stat cache's racy window, then prime the cache.
    std::thread::sleep(Duration::from_nanos(RACY_WINDOW_NS as u64) + Duration::from_millis(100));
    let cache = StatCache::path_for(store.path(), ctx.path());
    let warm = HashOptions {
        filter: &NoFilter,
        stat_cache: Some(cache),
    };
    let primed = hash_context(ctx.path(), &warm).expect("prime");
    assert_eq!(primed.stats().files, DIRS * FILES_PER_DIR);

    let mut group = c.benchmark_group("context_hash");
    group.sample_size(20);
    group.bench_function("noop_rehash_10k_files_100MB", |b| {
        b.iter(|| {
            let h = hash_context(ctx.path(), &warm).expect("rehash");
            assert_eq!(h.stats().hashed, 0);
            h
        })
    });
    let cold = HashOptions {
        filter: &NoFilter,
        stat_cache: None,
    };
    group.sample_size(10);
    group.bench_function("cold_hash_10k_files_100MB", |b| {
        b.iter(|| hash_context(ctx.path(), &cold).expect("hash"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
