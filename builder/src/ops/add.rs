//! What ADD does beyond COPY: unpack local tar archives and fetch `http(s)://` URLs.
//!
//! Follows BuildKit's file op (`docopy` with `AttemptUnpackDockerCompatibility`) and HTTP source:
//!
//! - a local source that is a tar archive (plain, gzip, bzip2, xz or zstd, recognised by
//!   content: see [`super::archive`]) is unpacked into the destination *directory* (created
//!   0755 first, whether or not `dest` ends with `/`); entries keep the archive's mode, owner and
//!   mtime, `--chown` overrides the owner, `--chmod` is not applied. The archive is extracted with
//!   chroot semantics into a scratch directory that the plan keeps alive; existing destination
//!   directories the archive does not name keep their metadata;
//! - a URL is downloaded by the request's [`super::fetch::Fetcher`], checked against
//!   `--checksum`, and copied as a file named after the last segment of the URL path, mode 0600
//!   (before `--chmod`), owned by root (or `--chown`), with the `Last-Modified` time as mtime.
//!   Remote archives are not unpacked unless `--unpack=true`. `--unpack=false` keeps local
//!   archives as files too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rbuild_layers::tar::entry::{Entry, EntryKind};

use super::archive;
use super::copy::{
    host_file_kind, io_err, join, xattrs_of, Content, CopyError, LinkMap, Node, Planner, Scratch,
};
use super::fetch::url_file_name;
use crate::graph::CopyKind;

type Result<T, E = CopyError> = std::result::Result<T, E>;

impl Planner<'_> {
    /// Does this step unpack local archives (ADD without `--unpack=false`)?
    pub(super) fn unpacks_local(&self) -> bool {
        matches!(
            self.op.kind,
            CopyKind::Add {
                unpack: None | Some(true),
                ..
            }
        )
    }

    /// Does this step unpack downloaded archives (ADD `--unpack=true`)?
    fn unpacks_url(&self) -> bool {
        matches!(
            self.op.kind,
            CopyKind::Add {
                unpack: Some(true),
                ..
            }
        )
    }

    /// Unpack the archive at `archive` (a host file) into the destination directory.
    pub(super) fn add_archive(&mut self, archive: &Path, dest_abs: &str) -> Result<()> {
        let dest = self.resolve_dest(dest_abs)?;
        self.mkdir_all(&dest)?;
        let scratch = tempfile::tempdir().map_err(io_err("create scratch directory", archive))?;
        let root = scratch.path().join("root");
        let same_owner = rustix::process::geteuid().is_root();
        let named = archive::unpack(archive, &root, same_owner)?;
        let mut links = BTreeMap::new();
        self.add_tree(&root, "", &dest, &named, &mut links)?;
        self.scratch.push(Scratch::Dir(scratch));
        Ok(())
    }

    /// Emit the unpacked tree below `root/rel` into the destination directory `dst_dir`, depth
    /// first in name order.
    fn add_tree(
        &mut self,
        root: &Path,
        rel: &str,
        dst_dir: &str,
        named: &BTreeSet<String>,
        links: &mut LinkMap,
    ) -> Result<()> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            names.push(
                entry
                    .file_name()
                    .into_string()
                    .map_err(|_| CopyError::NonUtf8 { path: entry.path() })?,
            );
        }
        names.sort();
        for name in names {
            let r = join(rel, &name);
            let host = root.join(&r);
            let md = fs::symlink_metadata(&host).map_err(io_err("lstat", &host))?;
            let target = join(dst_dir, &name);
            if md.is_dir() {
                let mut target = target;
                if !named.contains(&r) {
                    // A directory the extractor only created as a parent: an existing one keeps
                    // its metadata, and an existing symlink to a directory is followed, as the
                    // chrooted untar of Docker/BuildKit follows it.
                    let mut existing = self.dest.node(&target)?;
                    if let Node::Symlink(_) = existing {
                        let resolved = self.resolve_dest(&target)?;
                        if self.dest.node(&resolved)? == Node::Dir {
                            target = resolved;
                            existing = Node::Dir;
                        }
                    }
                    if existing != Node::Dir {
                        let entry = self.archive_entry(&md, &host, &target, EntryKind::Dir)?;
                        self.dest.put(entry, Content::None)?;
                    }
                } else {
                    let entry = self.archive_entry(&md, &host, &target, EntryKind::Dir)?;
                    self.dest.put(entry, Content::None)?;
                }
                self.add_tree(root, &r, &target, named, links)?;
                continue;
            }
            // Sockets are not copied.
            let Some(kind) = host_file_kind(&md, &host, &target, links)? else {
                continue;
            };
            let content = match kind {
                EntryKind::File { .. } | EntryKind::HardLink { .. } => {
                    Content::HostFile(host.clone())
                }
                _ => Content::None,
            };
            if self.dest.node(&target)? == Node::Dir {
                return Err(CopyError::ReplaceDirectory { path: target });
            }
            let entry = self.archive_entry(&md, &host, &target, kind)?;
            self.dest.put(entry, content)?;
        }
        Ok(())
    }

    fn archive_entry(
        &self,
        md: &Metadata,
        host: &Path,
        target: &str,
        kind: EntryKind,
    ) -> Result<Entry> {
        let (uid, gid) = self.owner.unwrap_or((md.uid(), md.gid()));
        let mode = if matches!(kind, EntryKind::Symlink { .. }) {
            0o777
        } else {
            md.mode() & 0o7777
        };
        Ok(Entry {
            path: target.to_string(),
            kind,
            mode,
            uid,
            gid,
            mtime: md.mtime(),
            xattrs: xattrs_of(host)?,
        })
    }

    /// ADD of an `http(s)://` URL.
    pub(super) fn add_url(&mut self, url: &str, dest_abs: &str, dir_like: bool) -> Result<()> {
        let fetched = self.fetcher.fetch(url)?;
        if let Some(expected) = &self.op.checksum {
            if fetched.digest != *expected {
                return Err(CopyError::ChecksumMismatch {
                    url: url.to_string(),
                    expected: expected.clone(),
                    found: fetched.digest,
                });
            }
        }
        let path = fetched.file.to_path_buf();
        if self.unpacks_url() && archive::is_archive(&path)? {
            self.add_archive(&path, dest_abs)?;
        } else {
            let name = url_file_name(url);
            let mtime = fetched.last_modified.unwrap_or(self.now);
            self.copy_virtual(
                &name,
                0o600,
                mtime,
                fetched.size,
                Content::HostFile(path),
                dest_abs,
                dir_like,
            )?;
        }
        self.scratch.push(Scratch::File(fetched.file));
        Ok(())
    }
}
