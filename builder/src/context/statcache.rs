//! The persistent stat cache: for each context file, the `lstat` fields seen when it was last
//! hashed (inode, mode, size, mtime ns, ctime ns) and its content digest, so that a re-hash of an
//! unchanged context only has to `stat` files.
//!
//! A cached digest is trusted only when every recorded field equals the file's current `lstat`
//! and the file's mtime and ctime are both more than [`RACY_WINDOW_NS`] older than the moment the
//! cache was written (the cache file's own mtime, so the rule holds even when the host clock and
//! the filesystem clock disagree). This is git's racy-clean rule: a file modified within the same
//! timestamp tick as its hashing could change again without changing its stat. Rewriting content
//! with the same size and restoring the mtime still changes ctime, which is compared; ctime is
//! also held to the racy rule (git checks mtime only) because filesystems stamp ctime with a
//! coarse clock, so a rewrite in the same tick as the hash could otherwise keep an equal ctime.
//! The cost is one extra hash of files whose metadata changed in the last two seconds.
//!
//! # Format (`context-v1/<sha256 of the canonical context path>.stat`)
//!
//! ```text
//! magic   b"RBSTAT\0\x01"
//! count   u32 LE
//! entries sorted by path bytes, each:
//!   path_len u32 LE, path bytes (UTF-8, relative, '/'-separated)
//!   ino u64 LE, mode u32 LE, size u64 LE, mtime_ns i64 LE, ctime_ns i64 LE, digest [32]
//! ```
//!
//! Loading reads the file once and indexes entry offsets (no per-entry allocation); lookups
//! binary-search the sorted paths. A missing, truncated or unsorted file is an empty cache, never
//! an error: the worst case is re-hashing. Writes go through a temporary file and a rename
//! (not synced: a file lost or torn by a crash only costs a re-hash). No lock is taken: two builds
//! of the same context may both rewrite the cache, and whichever rename lands last wins; both
//! wrote true digests, so either file is valid.

use std::cmp::Ordering;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rbuild_layers::digest::Digest;

use super::walk::StatInfo;
use super::ContextError;

/// Files modified less than this long before the cache was written are re-hashed.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// The stat cache directory's name under the store root.
pub const STAT_CACHE_DIR: &str = "context-v1";

const MAGIC: &[u8; 8] = b"RBSTAT\0\x01";
const FIXED: usize = 8 + 4 + 8 + 8 + 8 + 32;

/// A loaded stat cache (read-only); see the module documentation.
#[derive(Debug, Default)]
pub struct StatCache {
    buf: Vec<u8>,
    /// Offset of each entry's `path_len` field, in path order.
    offsets: Vec<u32>,
    /// When the cache file was written (its mtime), in ns since the epoch.
    written_ns: i64,
}

/// One entry to write.
#[derive(Debug, Clone, Copy)]
pub struct StatEntry<'a> {
    /// Path relative to the context root.
    pub path: &'a str,
    /// The stat data seen before hashing.
    pub stat: StatInfo,
    /// The content digest.
    pub digest: &'a Digest,
}

impl StatCache {
    /// Where the stat cache of `context_root` lives under `store_root`.
    pub fn path_for(store_root: &Path, context_root: &Path) -> PathBuf {
        // The host path only names the cache file; it never enters a key or an image.
        let canonical =
            fs::canonicalize(context_root).unwrap_or_else(|_| context_root.to_path_buf());
        let name = Digest::of(canonical.as_os_str().as_encoded_bytes());
        store_root
            .join(STAT_CACHE_DIR)
            .join(format!("{}.stat", name.hex()))
    }

    /// An empty cache (every lookup misses).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Load the cache at `path`; a missing or malformed file gives an empty cache.
    pub fn load(path: &Path) -> Result<Self, ContextError> {
        let buf = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(source) => {
                return Err(ContextError::Io {
                    op: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let written_ns = match fs::metadata(path) {
            Ok(md) => StatInfo::of(&md).mtime_ns,
            Err(source) => {
                return Err(ContextError::Io {
                    op: "stat",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Self::parse(buf, written_ns).unwrap_or_default())
    }

    fn parse(buf: Vec<u8>, written_ns: i64) -> Option<Self> {
        if buf.len() < 12 || &buf[..8] != MAGIC || buf.len() > u32::MAX as usize {
            return None;
        }
        let count = u32::from_le_bytes(buf[8..12].try_into().ok()?) as usize;
        let mut offsets = Vec::with_capacity(count.min(buf.len() / (FIXED + 4)));
        let mut pos = 12usize;
        let mut prev: Option<&[u8]> = None;
        for _ in 0..count {
            let len = u32::from_le_bytes(buf.get(pos..pos + 4)?.try_into().ok()?) as usize;
            let path = buf.get(pos + 4..pos + 4 + len)?;
            buf.get(pos + 4 + len..pos + 4 + len + FIXED)?;
            if prev.is_some_and(|p| p >= path) {
                return None;
            }
            prev = Some(path);
            offsets.push(pos as u32);
            pos += 4 + len + FIXED;
        }
        if pos != buf.len() {
            return None;
        }
        Some(StatCache {
            buf,
            offsets,
            written_ns,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn path_at(&self, off: u32) -> &[u8] {
        let off = off as usize;
        let len = u32::from_le_bytes(self.buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        &self.buf[off + 4..off + 4 + len]
    }

    fn record_at(&self, off: u32) -> (StatInfo, [u8; 32]) {
        let off = off as usize;
        let len = u32::from_le_bytes(self.buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let f = &self.buf[off + 4 + len..off + 4 + len + FIXED];
        let u64_at = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().expect("8 bytes"));
        let stat = StatInfo {
            ino: u64_at(0),
            mode: u32::from_le_bytes(f[8..12].try_into().expect("4 bytes")),
            size: u64_at(12),
            mtime_ns: u64_at(20) as i64,
            ctime_ns: u64_at(28) as i64,
        };
        (stat, f[36..68].try_into().expect("32 bytes"))
    }

    /// The cached digest of `path` if its recorded stat equals `now` and it is not racy.
    pub fn lookup(&self, path: &str, now: &StatInfo) -> Option<Digest> {
        let i = self
            .offsets
            .binary_search_by(|&off| self.path_at(off).cmp(path.as_bytes()))
            .ok()?;
        let (stat, digest) = self.record_at(self.offsets[i]);
        let newest = stat.mtime_ns.max(stat.ctime_ns);
        if stat != *now || newest.saturating_add(RACY_WINDOW_NS) >= self.written_ns {
            return None;
        }
        Some(Digest::from_sha256(digest))
    }

    /// Write `entries` (sorted by path bytes, unique) to `path` atomically.
    pub fn write<'a>(
        path: &Path,
        entries: impl ExactSizeIterator<Item = StatEntry<'a>>,
    ) -> Result<(), ContextError> {
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ContextError::Io {
                op,
                path: p,
                source,
            }
        };
        let dir = path
            .parent()
            .expect("stat cache paths always have a parent directory");
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let count = u32::try_from(entries.len()).map_err(|_| ContextError::StatCache {
            path: path.to_path_buf(),
            reason: "more than 4G entries".into(),
        })?;
        let mut buf = Vec::with_capacity(12 + entries.len() * (FIXED + 40));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&count.to_le_bytes());
        let mut prev: Option<&str> = None;
        for e in entries {
            if prev.is_some_and(|p| p.as_bytes().cmp(e.path.as_bytes()) != Ordering::Less) {
                return Err(ContextError::StatCache {
                    path: path.to_path_buf(),
                    reason: format!("entries not sorted at {}", e.path),
                });
            }
            prev = Some(e.path);
            let mut raw = [0u8; 32];
            hex::decode_to_slice(e.digest.hex(), &mut raw)
                .expect("digests are validated 64-digit hex");
            buf.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
            buf.extend_from_slice(e.path.as_bytes());
            buf.extend_from_slice(&e.stat.ino.to_le_bytes());
            buf.extend_from_slice(&e.stat.mode.to_le_bytes());
            buf.extend_from_slice(&e.stat.size.to_le_bytes());
            buf.extend_from_slice(&e.stat.mtime_ns.to_le_bytes());
            buf.extend_from_slice(&e.stat.ctime_ns.to_le_bytes());
            buf.extend_from_slice(&raw);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io("create a temporary file in", dir))?;
        tmp.write_all(&buf).map_err(io("write", path))?;
        tmp.persist(path).map_err(|e| ContextError::Io {
            op: "rename into",
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_ns: i64) -> StatInfo {
        StatInfo {
            ino: 7,
            mode: 0o100644,
            size: 3,
            mtime_ns,
            ctime_ns: mtime_ns,
        }
    }

    #[test]
    fn write_load_lookup_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("context-v1/x.stat");
        let (d1, d2) = (Digest::of(b"one"), Digest::of(b"two"));
        let old = 1_000_000_000_000_000_000i64; // 2001, long before the cache is written
        let entries = vec![
            StatEntry {
                path: "a",
                stat: stat(old),
                digest: &d1,
            },
            StatEntry {
                path: "a/b",
                stat: stat(old),
                digest: &d2,
            },
            StatEntry {
                path: "fresh",
                stat: stat(i64::MAX - 1),
                digest: &d2,
            },
            StatEntry {
                path: "racy-ctime",
                stat: StatInfo {
                    ctime_ns: i64::MAX - 1,
                    ..stat(old)
                },
                digest: &d2,
            },
        ];
        StatCache::write(&path, entries.into_iter()).expect("write");
        let cache = StatCache::load(&path).expect("load");
        assert_eq!(cache.len(), 4);
        let cases: Vec<(&str, &str, StatInfo, Option<&Digest>)> = vec![
            ("same stat", "a", stat(old), Some(&d1)),
            ("second entry", "a/b", stat(old), Some(&d2)),
            ("unknown path", "a/c", stat(old), None),
            ("mtime changed", "a", stat(old + 1), None),
            (
                "ctime changed",
                "a",
                StatInfo {
                    ctime_ns: old + 5,
                    ..stat(old)
                },
                None,
            ),
            (
                "size changed",
                "a",
                StatInfo {
                    size: 4,
                    ..stat(old)
                },
                None,
            ),
            (
                "inode changed",
                "a",
                StatInfo {
                    ino: 8,
                    ..stat(old)
                },
                None,
            ),
            (
                "mode changed",
                "a",
                StatInfo {
                    mode: 0o100755,
                    ..stat(old)
                },
                None,
            ),
            (
                "racy: modified after the cache was written",
                "fresh",
                stat(i64::MAX - 1),
                None,
            ),
            (
                "racy ctime",
                "racy-ctime",
                StatInfo {
                    ctime_ns: i64::MAX - 1,
                    ..stat(old)
                },
                None,
            ),
        ];
        for (name, p, now, want) in cases {
            assert_eq!(cache.lookup(p, &now).as_ref(), want, "{name}");
        }
    }

    #[test]
    fn malformed_files_are_empty_caches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.stat");
        let d = Digest::of(b"x");
        let entries = [
            StatEntry {
                path: "a",
                stat: stat(1),
                digest: &d,
            },
            StatEntry {
                path: "b",
                stat: stat(1),
                digest: &d,
            },
        ];
        StatCache::write(&good, entries.into_iter()).expect("write");
        let bytes = fs::read(&good).expect("read");
        let mut unsorted = bytes.clone();
        // Swap the one-byte paths `a` and `b`.
        let (ia, ib) = (16, 16 + 1 + FIXED + 4);
        unsorted.swap(ia, ib);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty file", vec![]),
            ("bad magic", b"NOTSTAT!\0\0\0\0".to_vec()),
            ("truncated", bytes[..bytes.len() - 1].to_vec()),
            ("trailing bytes", [bytes.clone(), vec![0]].concat()),
            ("unsorted", unsorted),
        ];
        for (name, content) in cases {
            let p = dir.path().join("bad.stat");
            fs::write(&p, content).expect("write");
            assert!(StatCache::load(&p).expect(name).is_empty(), "{name}");
        }
        assert!(StatCache::load(&dir.path().join("missing"))
            .expect("missing is fine")
            .is_empty());
    }

    #[test]
    fn write_rejects_unsorted_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Digest::of(b"x");
        let entries = [
            StatEntry {
                path: "b",
                stat: stat(1),
                digest: &d,
            },
            StatEntry {
                path: "a",
                stat: stat(1),
                digest: &d,
            },
        ];
        let err = StatCache::write(&dir.path().join("s.stat"), entries.into_iter())
            .expect_err("unsorted");
        assert!(matches!(err, ContextError::StatCache { .. }), "{err}");
    }
}
