//! Helpers shared by the integration tests: building real context trees on disk.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A time well in the past, so files written with it are never "racy" for the stat cache.
pub fn long_ago() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

/// Write `files` (path, content) under `root`, each with mtime [`long_ago`].
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        write_old(&root.join(rel), content.as_bytes());
    }
}

/// Write one file and set its mtime to [`long_ago`].
pub fn write_old(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().expect("file paths have a parent")).expect("create parent");
    fs::write(path, content).expect("write file");
    set_mtime(path, long_ago());
}

/// Wait until metadata written now is older than the stat cache's racy window, so that a cache
/// written after this call trusts it.
pub fn settle() {
    let window = Duration::from_nanos(rbuild::context::RACY_WINDOW_NS as u64);
    std::thread::sleep(window + Duration::from_millis(100));
}

/// Set a file's mtime (this also moves its ctime to now, as any metadata change does).
pub fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .expect("open for mtime");
    f.set_modified(t).expect("set mtime");
}
