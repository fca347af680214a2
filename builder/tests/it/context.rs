//! Context hashing on a real tree: stat-cache reuse and invalidation, `.dockerignore`, racy
//! files.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use rbuild::cache::ContextSelection;
use rbuild::context::{hash_context, HashOptions, HashedContext, NoFilter, StatCache};
use rbuild_dockerfile::ignore::IgnoreRules;

use crate::support::{set_mtime, settle, write_old, write_tree};

const TREE: &[(&str, &str)] = &[
    ("Dockerfile", "FROM scratch\nCOPY . /\n"),
    ("src/main.rs", "fn main() {}\n"),
    ("src/util/mod.rs", "pub fn f() {}\n"),
    ("assets/logo.svg", "<svg/>"),
    ("notes.md", "hello"),
];

struct Fixture {
    _store: tempfile::TempDir,
    ctx: tempfile::TempDir,
    cache: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let store = tempfile::tempdir().expect("store dir");
    let ctx = tempfile::tempdir().expect("context dir");
    write_tree(ctx.path(), TREE);
    settle();
    let cache = StatCache::path_for(store.path(), ctx.path());
    Fixture {
        _store: store,
        ctx,
        cache,
    }
}

fn hash(f: &Fixture) -> HashedContext {
    hash_context(
        f.ctx.path(),
        &HashOptions {
            filter: &NoFilter,
            stat_cache: Some(f.cache.clone()),
        },
    )
    .expect("hash context")
}

fn digest_of(h: &HashedContext, path: &str) -> String {
    h.get(path)
        .and_then(|e| e.digest.as_ref())
        .map(|d| d.to_string())
        .expect("file has a digest")
}

#[test]
fn second_run_reuses_every_digest() {
    let f = fixture();
    let first = hash(&f);
    assert_eq!(
        (
            first.stats().files,
            first.stats().hashed,
            first.stats().reused
        ),
        (5, 5, 0)
    );
    assert!(first.stats().cache_written);
    assert!(f.cache.starts_with(f._store.path().join("context-v1")));
    let second = hash(&f);
    assert_eq!((second.stats().hashed, second.stats().reused), (0, 5));
    assert!(
        !second.stats().cache_written,
        "a no-op run does not rewrite the cache"
    );
    assert_eq!(first.entries(), second.entries());
}

#[test]
fn touching_a_file_rehashes_only_it() {
    let f = fixture();
    let first = hash(&f);
    set_mtime(&f.ctx.path().join("notes.md"), SystemTime::now());
    let second = hash(&f);
    assert_eq!((second.stats().hashed, second.stats().reused), (1, 4));
    assert_eq!(
        digest_of(&first, "notes.md"),
        digest_of(&second, "notes.md"),
        "same content, same digest"
    );
    assert_eq!(
        first.digest_all(),
        second.digest_all(),
        "mtime is not part of any digest"
    );
}

#[test]
fn same_size_rewrite_with_restored_mtime_is_detected_through_ctime() {
    let f = fixture();
    let first = hash(&f);
    let path = f.ctx.path().join("notes.md");
    let before = fs::metadata(&path).expect("stat");
    // Same length, different bytes; then put the old mtime back.
    fs::write(&path, "HELLO").expect("rewrite");
    set_mtime(&path, before.modified().expect("mtime"));
    let after = fs::metadata(&path).expect("stat");
    assert_eq!(before.len(), after.len());
    assert_eq!(
        before.modified().expect("mtime"),
        after.modified().expect("mtime")
    );
    let second = hash(&f);
    assert_eq!(
        second.stats().hashed,
        1,
        "ctime changed, so the file is re-read"
    );
    assert_ne!(
        digest_of(&first, "notes.md"),
        digest_of(&second, "notes.md")
    );
    assert_eq!(
        digest_of(&second, "notes.md"),
        rbuild_layers::digest::Digest::of(b"HELLO").to_string()
    );
}

#[test]
fn recently_modified_files_are_not_trusted() {
    let f = fixture();
    // Written "now": within the racy window of the cache written right after.
    fs::write(f.ctx.path().join("fresh.txt"), "new").expect("write");
    let first = hash(&f);
    assert_eq!(first.stats().hashed, 6);
    let second = hash(&f);
    assert_eq!(
        (second.stats().hashed, second.stats().reused),
        (1, 5),
        "only the racy file is re-read"
    );
}

#[test]
fn added_and_removed_files_update_the_cache() {
    let f = fixture();
    hash(&f);
    fs::remove_file(f.ctx.path().join("notes.md")).expect("remove");
    write_old(&f.ctx.path().join("src/new.rs"), b"// new");
    let second = hash(&f);
    assert_eq!(
        (
            second.stats().files,
            second.stats().hashed,
            second.stats().reused
        ),
        (5, 1, 4)
    );
    assert!(second.stats().cache_written);
    assert!(second.get("notes.md").is_none());
    let third = hash(&f);
    assert_eq!(
        (third.stats().hashed, third.stats().reused),
        (1, 4),
        "the new file is still racy"
    );
}

#[test]
fn ignored_files_do_not_affect_digests() {
    let f = fixture();
    let rules =
        IgnoreRules::from_file_text(Path::new(".dockerignore"), "*.md\nassets\n").expect("rules");
    let opts = HashOptions {
        filter: &rules,
        stat_cache: Some(f.cache.clone()),
    };
    let first = hash_context(f.ctx.path(), &opts).expect("hash");
    assert!(first.get("notes.md").is_none());
    assert!(first.get("assets/logo.svg").is_none());
    fs::write(f.ctx.path().join("notes.md"), "changed a lot").expect("write");
    fs::write(f.ctx.path().join("assets/logo.svg"), "x").expect("write");
    let second = hash_context(f.ctx.path(), &opts).expect("hash");
    assert_eq!(second.stats().hashed, 0, "ignored files are never read");
    assert_eq!(first.digest_all(), second.digest_all());
}

#[test]
fn selection_digests_follow_content_changes() {
    let f = fixture();
    let src = ContextSelection {
        paths: vec!["src"],
        exclude: &[],
    };
    let dockerfile = ContextSelection {
        paths: vec!["Dockerfile"],
        exclude: &[],
    };
    let first = hash(&f);
    write_old(&f.ctx.path().join("src/util/mod.rs"), b"pub fn g() {}\n");
    let second = hash(&f);
    assert_ne!(
        first.digest_selection(&src).expect("src"),
        second.digest_selection(&src).expect("src")
    );
    assert_eq!(
        first.digest_selection(&dockerfile).expect("df"),
        second.digest_selection(&dockerfile).expect("df")
    );
}

#[test]
fn a_corrupt_stat_cache_only_costs_a_rehash() {
    let f = fixture();
    let first = hash(&f);
    fs::write(&f.cache, b"garbage").expect("corrupt the cache");
    let second = hash(&f);
    assert_eq!(second.stats().hashed, 5);
    assert_eq!(first.entries(), second.entries());
}
