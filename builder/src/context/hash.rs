//! Hashing a build context: a content digest for every regular file the walk keeps, re-using
//! the stat cache for unchanged files, and digests of selections (what one `COPY src…` reads).
//!
//! Files are hashed in parallel (rayon), each through a reused buffer, opened with `O_NOFOLLOW`
//! so a file swapped for a symlink after the walk is never followed; the stat recorded for the
//! cache is the `fstat` of the opened file, taken before reading. A selection's digest covers,
//! for each selected entry in path-byte order: its path, type, permission bits, and its content
//! digest (files) or link target (symlinks) — never mtimes, inodes or host owners, so the same
//! tree hashes the same on every machine. This mirrors BuildKit's content-based cache keys for
//! context sources (`contenthash`), with two conservative deviations that can only cause extra
//! cache misses, never a wrong hit: `--exclude` patterns do not shrink the selection, and a
//! selection that reaches a symlink covers the whole context.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rbuild_layers::digest::{Digest, Hasher};

use super::statcache::{StatCache, StatEntry};
use super::walk::{walk, ContextFilter, EntryKind, NoFilter, StatInfo};
use super::ContextError;
use crate::cache::ContextSelection;

/// One entry of a hashed context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path relative to the context root, `/`-separated.
    pub path: String,
    /// Entry type.
    pub kind: EntryKind,
    /// Full `st_mode`.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Content digest (regular files only).
    pub digest: Option<Digest>,
    /// Link target (symlinks only).
    pub link_target: Option<String>,
}

/// Counters of one hashing run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashStats {
    /// Entries kept by the walk.
    pub entries: usize,
    /// Regular files among them.
    pub files: usize,
    /// Files whose content was read and hashed.
    pub hashed: usize,
    /// Files whose digest came from the stat cache.
    pub reused: usize,
    /// Bytes read while hashing.
    pub bytes_hashed: u64,
    /// True when the stat cache file was rewritten.
    pub cache_written: bool,
}

/// Options of [`hash_context`].
pub struct HashOptions<'a> {
    /// The `.dockerignore` rules (or [`super::NoFilter`]).
    pub filter: &'a dyn ContextFilter,
    /// The stat cache file to read and update; `None` hashes everything.
    pub stat_cache: Option<PathBuf>,
}

/// A hashed build context: entries sorted by path bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedContext {
    entries: Vec<ContextEntry>,
    stats: HashStats,
}

/// Walk and hash the context at `root`.
pub fn hash_context(root: &Path, opts: &HashOptions<'_>) -> Result<HashedContext, ContextError> {
    let walked = walk(root, opts.filter)?;
    let cache = match &opts.stat_cache {
        Some(p) => StatCache::load(p)?,
        None => StatCache::empty(),
    };
    // Cached digests first (cheap), then hash what is left, both in parallel.
    let mut digests: Vec<Option<Digest>> = walked
        .par_iter()
        .map(|e| {
            if e.kind == EntryKind::File {
                cache.lookup(&e.path, &e.stat)
            } else {
                None
            }
        })
        .collect();
    let to_hash: Vec<usize> = (0..walked.len())
        .filter(|&i| walked[i].kind == EntryKind::File && digests[i].is_none())
        .collect();
    let hashed: Vec<(Digest, StatInfo)> = to_hash
        .par_iter()
        .map_init(
            || vec![0u8; 256 * 1024],
            |buf, &i| hash_file(&root.join(&walked[i].path), &walked[i].path, buf),
        )
        .collect::<Result<_, _>>()?;
    let mut stats = HashStats {
        entries: walked.len(),
        hashed: hashed.len(),
        ..HashStats::default()
    };
    // The stat to record for each file: the fstat of the hashed file, else the walk's lstat.
    let mut fresh_stat = vec![None; walked.len()];
    for (&i, (d, st)) in to_hash.iter().zip(hashed) {
        stats.bytes_hashed += st.size;
        digests[i] = Some(d);
        fresh_stat[i] = Some(st);
    }
    let mut entries = Vec::with_capacity(walked.len());
    let mut file_stats: Vec<(usize, StatInfo)> = Vec::new();
    for (i, ((w, digest), fresh)) in walked.into_iter().zip(digests).zip(fresh_stat).enumerate() {
        let stat = fresh.unwrap_or(w.stat);
        if w.kind == EntryKind::File {
            stats.files += 1;
            file_stats.push((i, stat));
        }
        let link_target = if w.kind == EntryKind::Symlink {
            Some(read_link(root, &w.path)?)
        } else {
            None
        };
        entries.push(ContextEntry {
            path: w.path,
            kind: w.kind,
            mode: stat.mode,
            size: stat.size,
            digest,
            link_target,
        });
    }
    stats.reused = stats.files - stats.hashed;
    if let Some(path) = &opts.stat_cache {
        // Equal counts with nothing hashed means every file was found in the cache: no change.
        if stats.hashed > 0 || cache.len() != stats.files {
            let rows = file_stats.iter().map(|(i, stat)| StatEntry {
                path: &entries[*i].path,
                stat: *stat,
                digest: entries[*i]
                    .digest
                    .as_ref()
                    .expect("every file entry has a digest"),
            });
            StatCache::write(path, rows)?;
            stats.cache_written = true;
        }
    }
    Ok(HashedContext { entries, stats })
}

fn hash_file(abs: &Path, rel: &str, buf: &mut [u8]) -> Result<(Digest, StatInfo), ContextError> {
    let io = |op: &'static str| {
        let path = abs.to_path_buf();
        move |source| ContextError::Io { op, path, source }
    };
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(abs)
        .map_err(io("open"))?;
    let md = file.metadata().map_err(io("stat"))?;
    if !md.is_file() {
        return Err(ContextError::Changed {
            path: rel.to_string(),
        });
    }
    let stat = StatInfo::of(&md);
    let mut h = Hasher::new();
    loop {
        let n = file.read(buf).map_err(io("read"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    // The recorded stat is the one taken before reading: if the file changed meanwhile, its
    // mtime or ctime differs next time and it is hashed again.
    Ok((h.finish().0, stat))
}

fn read_link(root: &Path, rel: &str) -> Result<String, ContextError> {
    let abs = root.join(rel);
    let target = fs::read_link(&abs).map_err(|source| ContextError::Io {
        op: "read link",
        path: abs.clone(),
        source,
    })?;
    target
        .into_os_string()
        .into_string()
        .map_err(|t| ContextError::NonUtf8Name {
            dir: abs,
            name: t.to_string_lossy().into_owned(),
        })
}

/// Clean a source path the way BuildKit resolves it against the context root: leading `/` and
/// `./` dropped, `.` and empty components removed, `..` clamped at the root. `""` is the root.
pub fn clean_rel(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '\\'])
}

impl HashedContext {
    /// All entries, sorted by path bytes.
    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// Counters of the run that produced this.
    pub fn stats(&self) -> HashStats {
        self.stats
    }

    fn position(&self, rel: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(rel.as_bytes()))
    }

    /// The entry at `rel` (a cleaned relative path).
    pub fn get(&self, rel: &str) -> Option<&ContextEntry> {
        self.position(rel).ok().map(|i| &self.entries[i])
    }

    /// The entries strictly below directory `rel` (`""` = everything), in order.
    pub fn subtree(&self, rel: &str) -> &[ContextEntry] {
        &self.entries[self.subtree_range(rel)]
    }

    /// Index range of the entries below `rel`: paths starting with `rel/` are contiguous in byte
    /// order, but need not follow `rel` directly (`src.txt` sorts between `src` and `src/a`).
    fn subtree_range(&self, rel: &str) -> std::ops::Range<usize> {
        if rel.is_empty() {
            return 0..self.entries.len();
        }
        let prefix = format!("{rel}/");
        let start = self.position(&prefix).unwrap_or_else(|i| i);
        let len = self.entries[start..].partition_point(|e| e.path.starts_with(&prefix));
        start..start + len
    }

    /// The digest of the whole context.
    pub fn digest_all(&self) -> Digest {
        digest_entries(self.entries.iter())
    }

    /// The digest of what a COPY/ADD or bind mount with `selection` reads (see the module doc).
    pub fn digest_selection(
        &self,
        selection: &ContextSelection<'_>,
    ) -> Result<Digest, ContextError> {
        self.digest_selection_with(selection, &NoFilter)
    }

    /// [`digest_selection`](Self::digest_selection), naming in a
    /// [`ContextError::NotFound`] the rule of `filter` (the rules this context was walked with)
    /// that hid a missing source.
    pub fn digest_selection_with(
        &self,
        selection: &ContextSelection<'_>,
        filter: &dyn ContextFilter,
    ) -> Result<Digest, ContextError> {
        if selection.paths.is_empty() {
            return Ok(self.digest_all());
        }
        let mut picked = vec![false; self.entries.len()];
        for raw in &selection.paths {
            let rel = clean_rel(raw);
            if rel.is_empty() {
                return Ok(self.digest_all());
            }
            if has_glob(&rel) {
                let rules =
                    rbuild_dockerfile::ignore::IgnoreRules::new(&[rel.as_str()]).map_err(|e| {
                        ContextError::Filter {
                            path: raw.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                for (i, e) in self.entries.iter().enumerate() {
                    // "Excluded" here means: the pattern matches the path or one of its parents.
                    if rules
                        .is_excluded(&e.path)
                        .map_err(|err| ContextError::Filter {
                            path: raw.to_string(),
                            message: err.to_string(),
                        })?
                    {
                        if e.kind == EntryKind::Symlink {
                            return Ok(self.digest_all());
                        }
                        picked[i] = true;
                    }
                }
                continue;
            }
            match self.position(&rel) {
                Ok(i) if self.entries[i].kind == EntryKind::Symlink => return Ok(self.digest_all()),
                Ok(i) => {
                    picked[i] = true;
                    let below = self.subtree_range(&rel);
                    if self.entries[below.clone()]
                        .iter()
                        .any(|e| e.kind == EntryKind::Symlink)
                    {
                        return Ok(self.digest_all());
                    }
                    picked[below].iter_mut().for_each(|p| *p = true);
                }
                Err(_) => {
                    // A path through a symlinked directory resolves in BuildKit; stay safe.
                    let through_link = self.entries.iter().any(|e| {
                        e.kind == EntryKind::Symlink && rel.starts_with(&format!("{}/", e.path))
                    });
                    if through_link {
                        return Ok(self.digest_all());
                    }
                    return Err(ContextError::NotFound {
                        path: raw.to_string(),
                        excluded_by: filter.excluding_rule(&rel),
                    });
                }
            }
        }
        Ok(digest_entries(
            self.entries
                .iter()
                .zip(picked)
                .filter(|(_, p)| *p)
                .map(|(e, _)| e),
        ))
    }
}

fn digest_entries<'a>(entries: impl Iterator<Item = &'a ContextEntry>) -> Digest {
    let mut h = Hasher::new();
    h.update(b"rbuild-context-v1\0");
    let put = |h: &mut Hasher, b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    for e in entries {
        put(&mut h, e.path.as_bytes());
        h.update(&[e.kind.tag()]);
        h.update(&(e.mode & 0o7777).to_be_bytes());
        match (&e.digest, &e.link_target) {
            (Some(d), _) => put(&mut h, d.hex().as_bytes()),
            (None, Some(t)) => put(&mut h, t.as_bytes()),
            (None, None) => put(&mut h, b""),
        }
    }
    h.finish().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (f, content) in files {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            fs::write(&p, content).expect("write");
        }
        dir
    }

    fn hashed(dir: &Path) -> HashedContext {
        hash_context(
            dir,
            &HashOptions {
                filter: &NoFilter,
                stat_cache: None,
            },
        )
        .expect("hash")
    }

    const FILES: &[(&str, &str)] = &[
        ("src/main.rs", "fn main(){}"),
        ("src/lib/a.rs", "a"),
        ("README.md", "hi"),
        ("src.txt", "x"),
    ];

    #[test]
    fn clean_rel_table() {
        let cases = [
            ("/", ""),
            (".", ""),
            ("./src/", "src"),
            ("/a/./b//c", "a/b/c"),
            ("../../etc/passwd", "etc/passwd"),
            ("a/../b", "b"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_rel(input), want, "{input}");
        }
    }

    #[test]
    fn digests_and_subtrees() {
        let dir = tree(FILES);
        let ctx = hashed(dir.path());
        assert_eq!(
            ctx.get("README.md").and_then(|e| e.digest.clone()),
            Some(Digest::of(b"hi"))
        );
        assert_eq!(ctx.get("src").map(|e| e.kind), Some(EntryKind::Dir));
        let below: Vec<&str> = ctx.subtree("src").iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            below,
            vec!["src/lib", "src/lib/a.rs", "src/main.rs"],
            "src.txt is not below src"
        );
        assert_eq!(ctx.stats().files, 4);
        assert_eq!(ctx.stats().hashed, 4);
    }

    #[test]
    fn selection_digest_table() {
        let dir = tree(FILES);
        let ctx = hashed(dir.path());
        let sel = |paths: &[&'static str]| ContextSelection {
            paths: paths.to_vec(),
            exclude: &[],
        };
        let d = |paths: &[&'static str]| {
            ctx.digest_selection(&sel(paths))
                .expect("selection resolves")
        };
        assert_eq!(d(&["src"]), d(&["./src/"]), "spelling does not matter");
        assert_eq!(d(&["."]), ctx.digest_all());
        assert_eq!(d(&[]), ctx.digest_all());
        assert_ne!(d(&["src"]), d(&["src/main.rs"]));
        assert_eq!(
            d(&["src/main.rs", "src"]),
            d(&["src"]),
            "overlaps are counted once"
        );
        assert_eq!(
            d(&["*.md"]),
            d(&["README.md"]),
            "wildcards select the same entries"
        );
        assert_eq!(d(&["src/*"]), d(&["src/lib", "src/main.rs"]));
        let err = ctx
            .digest_selection(&sel(&["nope"]))
            .expect_err("missing source");
        assert!(matches!(err, ContextError::NotFound { .. }), "{err}");
    }

    #[test]
    fn missing_sources_name_the_rule_that_hid_them() {
        let dir = tree(&[
            ("keep.txt", "k"),
            ("secret.key", "s"),
            (".dockerignore", "*.key\n"),
        ]);
        let rules = rbuild_dockerfile::ignore::IgnoreRules::load(
            dir.path(),
            &dir.path().join("Dockerfile"),
        )
        .expect("rules")
        .expect("an ignore file");
        let ctx = hash_context(
            dir.path(),
            &HashOptions {
                filter: &rules,
                stat_cache: None,
            },
        )
        .expect("hash");
        // (source, the rule named, without rules)
        let cases = [
            ("secret.key", Some("rule `*.key` (line 1 of"), false),
            ("/./secret.key", Some("rule `*.key` (line 1 of"), false),
            ("absent.txt", None, false),
            ("secret.key", None, true),
        ];
        for (source, want, plain) in cases {
            let sel = ContextSelection {
                paths: vec![source],
                exclude: &[],
            };
            let err = if plain {
                ctx.digest_selection(&sel)
            } else {
                ctx.digest_selection_with(&sel, &rules)
            }
            .expect_err("missing");
            let ContextError::NotFound { excluded_by, .. } = &err else {
                panic!("{source}: unexpected {err:?}");
            };
            match want {
                Some(rule) => {
                    let named = excluded_by.as_deref().unwrap_or_default();
                    assert!(named.starts_with(rule), "{source}: {named}");
                    let msg = err.to_string();
                    assert!(
                        msg.starts_with(
                            "\"/secret.key\": not found (excluded by .dockerignore rule `*.key`"
                        ),
                        "{msg}"
                    );
                    assert!(msg.ends_with("remove the rule or the COPY source"), "{msg}");
                }
                None => {
                    assert_eq!(excluded_by, &None, "{source}");
                    assert!(err.to_string().ends_with(": not found"), "{err}");
                }
            }
        }
        ctx.digest_selection_with(
            &ContextSelection {
                paths: vec!["keep.txt"],
                exclude: &[],
            },
            &rules,
        )
        .expect("kept files resolve");
    }

    #[test]
    fn selection_digest_tracks_content_not_unrelated_files() {
        let dir = tree(FILES);
        let sel = ContextSelection {
            paths: vec!["src"],
            exclude: &[],
        };
        let before = hashed(dir.path()).digest_selection(&sel).expect("resolves");
        fs::write(dir.path().join("README.md"), "changed").expect("write");
        assert_eq!(
            hashed(dir.path()).digest_selection(&sel).expect("resolves"),
            before,
            "outside the selection"
        );
        fs::write(dir.path().join("src/lib/a.rs"), "b").expect("write");
        assert_ne!(
            hashed(dir.path()).digest_selection(&sel).expect("resolves"),
            before,
            "inside the selection"
        );
    }

    #[test]
    fn symlinks_make_selection_conservative() {
        let dir = tree(FILES);
        std::os::unix::fs::symlink("src", dir.path().join("alias")).expect("symlink");
        let ctx = hashed(dir.path());
        assert_eq!(
            ctx.get("alias")
                .and_then(|e| e.link_target.clone())
                .as_deref(),
            Some("src")
        );
        let d = |p: &'static str| {
            ctx.digest_selection(&ContextSelection {
                paths: vec![p],
                exclude: &[],
            })
            .expect("resolves")
        };
        assert_eq!(d("alias"), ctx.digest_all());
        assert_eq!(d("alias/main.rs"), ctx.digest_all());
    }

    #[test]
    fn same_tree_same_digest_anywhere() {
        let a = tree(FILES);
        let b = tree(FILES);
        assert_eq!(hashed(a.path()).digest_all(), hashed(b.path()).digest_all());
        let file = File::open(a.path().join("README.md")).expect("open");
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        assert_ne!(
            hashed(a.path()).digest_all(),
            hashed(b.path()).digest_all(),
            "mode bits count"
        );
    }
}
