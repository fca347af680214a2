//! Deterministic tar writing: the same entries (or the same directory tree) always give the same
//! bytes, whatever the host, the user name database, the walk order of the file system or the wall
//! clock.
//!
//! The format follows what BuildKit produces through containerd's `archive` package, i.e. Go's
//! `archive/tar` with `Format = PAX`:
//! - one 512-byte ustar header per entry (`ustar\0` magic, version `00`), numeric fields in
//!   zero-padded octal ending in NUL, checksum as 6 octal digits, NUL, space;
//! - directories are named with a trailing `/`; uname and gname are empty; mode holds only the
//!   permission bits (`0o7777`), never the file type bits;
//! - a name of 101..=255 ASCII bytes that can be split at a `/` uses the ustar `prefix` field; anything
//!   ustar cannot hold (longer or non-ASCII names and link targets, uid/gid ≥ 8^7, size ≥ 8^11,
//!   negative or huge mtimes, xattrs as `SCHILY.xattr.<name>`) goes into a PAX `x` header named
//!   `<dir>/PaxHeaders.0/<file>` whose records are sorted by key; GNU `LongLink` is never used;
//! - no atime, no ctime, no sparse files; mtimes are whole seconds, clamped to the epoch
//!   ([`TarOptions::epoch`], BuildKit's `SOURCE_DATE_EPOCH` + `rewrite-timestamp`) when one is given;
//! - the archive ends with two zero blocks.
//!
//! The output is byte-for-byte what Go's `archive/tar` writes for the same headers with
//! `Format: FormatPAX` (pinned by a golden test in `tests/it/tar_write.rs`), so a layer's diffID
//! can match BuildKit's for the same entries and metadata.
//!
//! Entry order is the caller's job for [`TarWriter::append`] and is checked: each path must sort
//! after the previous one under [`compare_paths`] (containerd's `comparePath`: bytewise with `/`
//! first, i.e. a depth-first walk with sorted children, except that an opaque marker
//! `.wh..wh..opq` comes right after its directory, as containerd's `ChangeWriter` emits it).
//! [`write_tree`] walks a directory in exactly that order, emits hard links (same device and
//! inode, any non-directory) as links to the first path seen, and reads xattrs without following
//! symlinks through [`crate::tar::xattr`] (which also works on overlayfs merged paths).
//!
//! Known deviations: paths must be valid UTF-8 (a non-UTF-8 name is an error, not passed through);
//! sockets are skipped, as Docker does; `system.*` xattrs (ACLs) and `security.selinux` are not
//! recorded, while containerd records only `security.capability`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::entry::{
    compare_names, compare_paths, validate_path, Entry, EntryKind, PathError, MODE_MASK,
};
use super::pax::encode_records;
use super::xattr::XattrError;

const BLOCK: usize = 512;
const NAME_SIZE: usize = 100;
const PREFIX_SIZE: usize = 155;
/// Largest value of a 7-digit octal field (mode, uid, gid, devmajor, devminor).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o77777777777;
/// Xattr namespaces never recorded by [`write_tree`]: ACLs and host security labels.
const SKIPPED_XATTRS: &[&str] = &["system.", "security.selinux"];

/// Options of the tar writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarOptions {
    /// Clamp every mtime greater than this (seconds since the epoch) down to it; `None` keeps mtimes.
    pub epoch: Option<i64>,
}

impl Default for TarOptions {
    /// Clamp to the Unix epoch (`SOURCE_DATE_EPOCH=0`): fully reproducible output.
    fn default() -> Self {
        TarOptions { epoch: Some(0) }
    }
}

impl TarOptions {
    /// Keep every mtime as given.
    pub fn keep_mtimes() -> Self {
        TarOptions { epoch: None }
    }

    /// Clamp mtimes to `epoch` (the value of `SOURCE_DATE_EPOCH`).
    pub fn clamp_to(epoch: i64) -> Self {
        TarOptions { epoch: Some(epoch) }
    }

    fn mtime(&self, mtime: i64) -> i64 {
        match self.epoch {
            Some(epoch) if mtime > epoch => epoch,
            _ => mtime,
        }
    }
}

/// Why a layer tar could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A file system operation on the source tree failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`read dir`, `lstat`, `open`, …).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the archive to its destination failed.
    #[error("write tar entry `{path}`: {source}")]
    Write {
        /// The entry being written.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading an entry's content from the caller's reader failed.
    #[error("read content of `{path}`: {source}")]
    ReadData {
        /// The entry being written.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry path breaks the [`Entry::path`] rules.
    #[error("invalid entry path: {0}")]
    InvalidPath(#[from] PathError),
    /// An entry's content ended before its declared size.
    #[error("content of `{path}` is {found} bytes, header says {expected}")]
    ShortData {
        /// The entry being written.
        path: String,
        /// Size from the entry.
        expected: u64,
        /// Bytes actually read.
        found: u64,
    },
    /// Entries were not given in [`compare_paths`] order (or a path was repeated).
    #[error("entry `{path}` comes after `{previous}`; entries must be sorted and unique")]
    OutOfOrder {
        /// The entry written before.
        previous: String,
        /// The offending entry.
        path: String,
    },
    /// A link target is empty or contains NUL, or a hard link target is not a valid entry path.
    #[error("entry `{path}` has an invalid link target {target:?}")]
    InvalidLinkTarget {
        /// The link entry.
        path: String,
        /// Its target.
        target: String,
    },
    /// A device number does not fit a 7-digit octal ustar field.
    #[error("device number {value} of `{path}` does not fit a ustar header")]
    DeviceNumberTooLarge {
        /// The entry.
        path: String,
        /// The major or minor number.
        value: u32,
    },
    /// A file or link name in the source tree is not UTF-8.
    #[error("path {0} is not valid UTF-8")]
    NonUtf8Path(PathBuf),
    /// An xattr name is not UTF-8 or contains `=` or NUL (PAX cannot carry it).
    #[error("xattr name {name:?} of `{path}` cannot be stored in a PAX header")]
    BadXattrName {
        /// The entry.
        path: String,
        /// The name, lossily decoded.
        name: String,
    },
}

/// A streaming writer of deterministic PAX/ustar archives; see the module docs for the format.
pub struct TarWriter<W: Write> {
    out: W,
    opts: TarOptions,
    previous: Option<String>,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    /// A writer emitting into `out`.
    pub fn new(out: W, opts: TarOptions) -> Self {
        TarWriter {
            out,
            opts,
            previous: None,
            buf: Vec::new(),
        }
    }

    /// The destination.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The destination, mutably (writing to it directly corrupts the archive).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Append one entry; for a regular file exactly `size` bytes are read from `data` (extra bytes
    /// are left unread), for every other kind `data` is not touched.
    pub fn append(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<(), TarError> {
        validate_path(&entry.path)?;
        match &entry.kind {
            EntryKind::Symlink { target } if target.is_empty() || target.contains('\0') => {
                return Err(TarError::InvalidLinkTarget {
                    path: entry.path.clone(),
                    target: target.clone(),
                });
            }
            EntryKind::HardLink { target } if validate_path(target).is_err() => {
                return Err(TarError::InvalidLinkTarget {
                    path: entry.path.clone(),
                    target: target.clone(),
                });
            }
            _ => {}
        }
        if let Some(previous) = &self.previous {
            if compare_paths(previous, &entry.path) != std::cmp::Ordering::Less {
                return Err(TarError::OutOfOrder {
                    previous: previous.clone(),
                    path: entry.path.clone(),
                });
            }
        }
        let header = header_blocks(entry, &self.opts)?;
        let werr = |source| TarError::Write {
            path: entry.path.clone(),
            source,
        };
        self.out.write_all(&header).map_err(werr)?;
        if let EntryKind::File { size } = entry.kind {
            self.copy_data(&entry.path, size, data)?;
        }
        match &mut self.previous {
            Some(previous) => {
                previous.clear();
                previous.push_str(&entry.path);
            }
            None => self.previous = Some(entry.path.clone()),
        }
        Ok(())
    }

    /// Append every object under `dir` (not `dir` itself), in walk order; see [`write_tree`].
    pub fn append_tree(&mut self, dir: &Path) -> Result<(), TarError> {
        let mut links: HashMap<(u64, u64), String> = HashMap::new();
        // Stack of (host path, entry path) still to visit; children pushed in reverse sorted
        // order so they pop in sorted order, depth first.
        let mut stack: Vec<(PathBuf, String)> = Vec::new();
        push_children(dir, "", &mut stack)?;
        while let Some((host, rel)) = stack.pop() {
            let meta =
                fs::symlink_metadata(&host).map_err(|source| io_err("lstat", &host, source))?;
            let ft = meta.file_type();
            if ft.is_socket() {
                continue;
            }
            let mut entry = Entry {
                path: rel,
                kind: EntryKind::Dir,
                mode: meta.mode() & MODE_MASK,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                xattrs: read_xattrs(&host)?,
            };
            entry.kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                let target =
                    fs::read_link(&host).map_err(|source| io_err("readlink", &host, source))?;
                let target = target
                    .into_os_string()
                    .into_string()
                    .map_err(|t| TarError::NonUtf8Path(t.into()))?;
                EntryKind::Symlink { target }
            } else if ft.is_file() {
                EntryKind::File { size: meta.len() }
            } else if let Some(device) = EntryKind::device(&meta) {
                device
            } else {
                EntryKind::Fifo
            };
            if !ft.is_dir() && meta.nlink() > 1 {
                match links.get(&(meta.dev(), meta.ino())) {
                    Some(first) => {
                        entry.kind = EntryKind::HardLink {
                            target: first.clone(),
                        }
                    }
                    None => {
                        links.insert((meta.dev(), meta.ino()), entry.path.clone());
                    }
                }
            }
            if let EntryKind::File { .. } = entry.kind {
                let mut file =
                    fs::File::open(&host).map_err(|source| io_err("open", &host, source))?;
                self.append(&entry, &mut file)?;
            } else {
                self.append(&entry, &mut io::empty())?;
            }
            if ft.is_dir() {
                push_children(&host, &entry.path, &mut stack)?;
            }
        }
        Ok(())
    }

    /// Write the two end-of-archive zero blocks, flush, and hand back the destination.
    pub fn finish(mut self) -> Result<W, TarError> {
        let werr = |source| TarError::Write {
            path: "end of archive".to_string(),
            source,
        };
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(werr)?;
        self.out.flush().map_err(werr)?;
        Ok(self.out)
    }

    fn copy_data(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), TarError> {
        const CHUNK: usize = 128 * 1024;
        if self.buf.len() < CHUNK {
            self.buf.resize(CHUNK, 0);
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(TarError::ShortData {
                        path: path.to_string(),
                        expected: size,
                        found: size - left,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(TarError::ReadData {
                        path: path.to_string(),
                        source,
                    })
                }
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|source| TarError::Write {
                    path: path.to_string(),
                    source,
                })?;
            left -= n as u64;
        }
        let pad = padding(size);
        if pad > 0 {
            self.out
                .write_all(&[0u8; BLOCK][..pad])
                .map_err(|source| TarError::Write {
                    path: path.to_string(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Write the tree under `dir` (not `dir` itself) as a complete archive into `out`: a depth-first
/// walk with each directory's children in [`compare_names`] order, hard links by device and
/// inode, xattrs, devices and fifos; sockets are skipped.
pub fn write_tree<W: Write>(dir: &Path, out: W, opts: TarOptions) -> Result<W, TarError> {
    let mut tar = TarWriter::new(out, opts);
    tar.append_tree(dir)?;
    tar.finish()
}

/// Sort entries into the order [`TarWriter::append`] requires.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| compare_paths(&a.path, &b.path));
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> TarError {
    TarError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn push_children(
    dir: &Path,
    rel: &str,
    stack: &mut Vec<(PathBuf, String)>,
) -> Result<(), TarError> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(|source| io_err("read dir", dir, source))? {
        let item = item.map_err(|source| io_err("read dir", dir, source))?;
        let name = item
            .file_name()
            .into_string()
            .map_err(|n| TarError::NonUtf8Path(dir.join(n)))?;
        names.push(name);
    }
    names.sort_unstable_by(|a, b| compare_names(a, b));
    for name in names.into_iter().rev() {
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        stack.push((dir.join(&name), child_rel));
    }
    Ok(())
}

fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, TarError> {
    let mut all = super::xattr::read_all(path).map_err(|e| match e {
        XattrError::List(source) => io_err("list xattrs", path, source),
        XattrError::Get { source, .. } => io_err("read xattr", path, source),
        XattrError::NotUtf8(name) => TarError::BadXattrName {
            path: path.display().to_string(),
            name,
        },
    })?;
    all.retain(|name, _| !SKIPPED_XATTRS.iter().any(|skip| name.starts_with(skip)));
    Ok(all)
}

fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// The tar type flag of a kind.
fn type_flag(kind: &EntryKind) -> u8 {
    match kind {
        EntryKind::File { .. } => b'0',
        EntryKind::HardLink { .. } => b'1',
        EntryKind::Symlink { .. } => b'2',
        EntryKind::CharDevice { .. } => b'3',
        EntryKind::BlockDevice { .. } => b'4',
        EntryKind::Dir => b'5',
        EntryKind::Fifo => b'6',
    }
}

/// The header block(s) of one entry: an optional PAX header (with its data) and the ustar header.
fn header_blocks(entry: &Entry, opts: &TarOptions) -> Result<Vec<u8>, TarError> {
    let name = if entry.is_dir() {
        format!("{}/", entry.path)
    } else {
        entry.path.clone()
    };
    let link = match &entry.kind {
        EntryKind::Symlink { target } | EntryKind::HardLink { target } => target.as_str(),
        _ => "",
    };
    let (major, minor) = match entry.kind {
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            (major, minor)
        }
        _ => (0, 0),
    };
    for value in [major, minor] {
        if u64::from(value) > MAX_OCTAL_7 {
            return Err(TarError::DeviceNumberTooLarge {
                path: entry.path.clone(),
                value,
            });
        }
    }
    let size = entry.size();
    let mtime = opts.mtime(entry.mtime);

    // Records ustar cannot hold, keyed and sorted as Go's archive/tar sorts them.
    let mut records: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ustar_ok = true;
    let name_fits = name.is_ascii() && name.len() <= NAME_SIZE;
    if !name_fits {
        records.insert("path".to_string(), name.clone().into_bytes());
        if split_ustar_path(&name).is_none() {
            ustar_ok = false;
        }
    }
    if !link.is_ascii() || link.len() > NAME_SIZE {
        records.insert("linkpath".to_string(), link.as_bytes().to_vec());
        ustar_ok = false;
    }
    for (key, value) in [("uid", entry.uid), ("gid", entry.gid)] {
        if u64::from(value) > MAX_OCTAL_7 {
            records.insert(key.to_string(), value.to_string().into_bytes());
            ustar_ok = false;
        }
    }
    if size > MAX_OCTAL_11 {
        records.insert("size".to_string(), size.to_string().into_bytes());
        ustar_ok = false;
    }
    if mtime < 0 || mtime as u64 > MAX_OCTAL_11 {
        records.insert("mtime".to_string(), mtime.to_string().into_bytes());
        ustar_ok = false;
    }
    for (key, value) in &entry.xattrs {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(TarError::BadXattrName {
                path: entry.path.clone(),
                name: key.clone(),
            });
        }
        records.insert(format!("SCHILY.xattr.{key}"), value.clone());
        ustar_ok = false;
    }

    let mut out = Vec::with_capacity(BLOCK * 3);
    let mut block = [0u8; BLOCK];
    if ustar_ok {
        // Plain ustar: a long ASCII name goes into prefix + name.
        match split_ustar_path(&name) {
            Some((prefix, rest)) if !name_fits => {
                put_str(&mut block[0..100], rest);
                put_str(&mut block[345..500], prefix);
            }
            _ => put_str(&mut block[0..100], &name),
        }
    } else {
        let data = encode_records(&records);
        out.extend_from_slice(&pax_header_block(&name, data.len() as u64));
        out.extend_from_slice(&data);
        out.resize(out.len() + padding(data.len() as u64), 0);
        put_str(&mut block[0..100], &to_ascii(&name));
    }
    put_octal(&mut block[100..108], u64::from(entry.mode & MODE_MASK));
    put_octal(&mut block[108..116], u64::from(entry.uid));
    put_octal(&mut block[116..124], u64::from(entry.gid));
    put_octal(&mut block[124..136], size);
    put_octal(&mut block[136..148], u64::try_from(mtime).unwrap_or(0));
    block[156] = type_flag(&entry.kind);
    put_str(&mut block[157..257], &to_ascii(link));
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty.
    put_octal(&mut block[329..337], u64::from(major));
    put_octal(&mut block[337..345], u64::from(minor));
    set_checksum(&mut block);
    out.extend_from_slice(&block);
    Ok(out)
}

/// The `x` header block announcing `len` bytes of PAX records for the entry named `name`.
fn pax_header_block(name: &str, len: u64) -> [u8; BLOCK] {
    // Go's path.Join(path.Split(name).dir, "PaxHeaders.0", path.Split(name).file).
    let (dir, file) = match name.rfind('/') {
        Some(i) => (&name[..=i], &name[i + 1..]),
        None => ("", name),
    };
    let mut pax_name = format!("{dir}PaxHeaders.0");
    if !file.is_empty() {
        pax_name.push('/');
        pax_name.push_str(file);
    }
    let mut pax_name = to_ascii(&pax_name);
    pax_name.truncate(NAME_SIZE);
    let pax_name = pax_name.trim_end_matches('/');
    let mut block = [0u8; BLOCK];
    put_str(&mut block[0..100], pax_name);
    put_octal(&mut block[100..108], 0);
    put_octal(&mut block[108..116], 0);
    put_octal(&mut block[116..124], 0);
    put_octal(&mut block[124..136], len);
    put_octal(&mut block[136..148], 0);
    block[156] = b'x';
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    set_checksum(&mut block);
    block
}

/// Split a 101..=255-byte ASCII name at a `/` into (prefix ≤ 155, name ≤ 100), as Go's
/// `splitUSTARPath` does; `None` when it does not fit.
fn split_ustar_path(name: &str) -> Option<(&str, &str)> {
    let mut length = name.len();
    if length <= NAME_SIZE || !name.is_ascii() {
        return None;
    }
    if length > PREFIX_SIZE + 1 {
        length = PREFIX_SIZE + 1;
    } else if name.as_bytes()[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].rfind('/')?;
    let suffix_len = name.len() - i - 1;
    if i == 0 || suffix_len > NAME_SIZE || suffix_len == 0 || i > PREFIX_SIZE {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Keep only ASCII non-NUL characters (Go's `toASCII`, used for the ustar fields of PAX entries).
fn to_ascii(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii() && *c != '\0').collect()
}

/// Copy `s` into a NUL-padded field, truncating what does not fit; like Go's `formatString`, a
/// truncated value whose cut ends in `/` gets that slash run NUL-terminated, so readers that only
/// see this field do not take a file for a directory.
fn put_str(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
    if s.len() > field.len() && field[field.len() - 1] == b'/' {
        let kept = s.as_bytes()[..field.len()]
            .iter()
            .rposition(|b| *b != b'/')
            .map_or(0, |i| i + 1);
        field[kept] = 0;
    }
}

/// Zero-padded octal filling all but the last byte of the field, which stays NUL; a value that
/// does not fit is written as 0 (the real value is then in a PAX record).
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        field[..digits].fill(b'0');
    } else {
        field[..digits].copy_from_slice(text.as_bytes());
    }
    field[digits] = 0;
}

fn set_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}");
    block[148..154].copy_from_slice(&text.as_bytes()[text.len() - 6..]);
    block[154] = 0;
    block[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(Entry, &[u8])], opts: TarOptions) -> Vec<u8> {
        let mut tar = TarWriter::new(Vec::new(), opts);
        for (entry, data) in entries {
            tar.append(entry, &mut &data[..]).expect("append");
        }
        tar.finish().expect("finish")
    }

    #[test]
    fn split_ustar_path_table() {
        let long_dir = "d".repeat(120);
        let n101 = format!("{long_dir}/f");
        let too_long_file = format!("a/{}", "f".repeat(101));
        let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
            ("short", None),
            (&n101, Some((&long_dir, "f"))),
            (&too_long_file, None),
        ];
        for (name, want) in cases {
            assert_eq!(split_ustar_path(name), want, "{name}");
        }
    }

    #[test]
    fn truncated_string_fields_do_not_end_in_a_slash() {
        let cases: &[(&str, &[u8; 4])] = &[
            ("ab", b"ab\0\0"),
            ("abcdef", b"abcd"),
            ("abc/ef", b"abc\0"),
            ("ab//ef", b"ab\0/"),
        ];
        for (input, want) in cases {
            let mut field = [0u8; 4];
            put_str(&mut field, input);
            assert_eq!(&field, *want, "{input}");
        }
    }

    #[test]
    fn octal_fields_are_zero_padded_and_nul_terminated() {
        let mut field = [0xffu8; 8];
        put_octal(&mut field, 0o644);
        assert_eq!(&field, b"0000644\0");
        put_octal(&mut field, 0o100000000);
        assert_eq!(&field, b"0000000\0");
    }

    #[test]
    fn header_matches_go_archive_tar_layout() {
        let mut e = Entry::file("a.txt", 3);
        e.mtime = 1_000;
        let bytes = archive(&[(e, b"abc")], TarOptions::keep_mtimes());
        assert_eq!(bytes.len(), 512 * 4);
        let h = &bytes[..512];
        assert_eq!(&h[0..6], b"a.txt\0");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[124..136], b"00000000003\0");
        assert_eq!(&h[136..148], b"00000001750\0");
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..265], b"ustar\x0000");
        assert_eq!(&h[265..329], &[0u8; 64][..]);
        assert_eq!(&h[329..345], b"0000000\x000000000\0");
        assert_eq!(&bytes[512..515], b"abc");
        assert!(bytes[1024..].iter().all(|b| *b == 0));
    }

    #[test]
    fn mtime_is_clamped_only_when_later_than_epoch() {
        let cases = [
            (TarOptions::default(), 5, 0),
            (TarOptions::clamp_to(10), 5, 5),
            (TarOptions::clamp_to(10), 50, 10),
        ];
        for (opts, mtime, want) in cases {
            assert_eq!(opts.mtime(mtime), want);
        }
        assert_eq!(TarOptions::keep_mtimes().mtime(-3), -3);
    }

    #[test]
    fn directories_get_a_trailing_slash_and_xattrs_a_pax_header() {
        let mut d = Entry::dir("etc");
        d.xattrs.insert("user.k".into(), b"v\0w".to_vec());
        let bytes = archive(&[(d, b"")], TarOptions::default());
        assert_eq!(&bytes[0..16], b"etc/PaxHeaders.0");
        assert_eq!(bytes[156], b'x');
        assert_eq!(&bytes[512..512 + 27], b"27 SCHILY.xattr.user.k=v\0w\n");
        assert_eq!(&bytes[1024..1028], b"etc/");
        assert_eq!(bytes[1024 + 156], b'5');
    }

    #[test]
    fn out_of_order_entries_are_rejected() {
        let mut tar = TarWriter::new(Vec::new(), TarOptions::default());
        tar.append(&Entry::dir("b"), &mut io::empty())
            .expect("first");
        let err = tar
            .append(&Entry::dir("a"), &mut io::empty())
            .expect_err("out of order");
        assert!(matches!(err, TarError::OutOfOrder { .. }), "{err}");
        let err = tar
            .append(&Entry::dir("b"), &mut io::empty())
            .expect_err("duplicate");
        assert!(matches!(err, TarError::OutOfOrder { .. }), "{err}");
    }

    #[test]
    fn invalid_link_targets_are_rejected() {
        let cases = [
            Entry::symlink("s", ""),
            Entry::symlink("s", "a\0b"),
            Entry::hardlink("h", "/abs"),
            Entry::hardlink("h", "a/../b"),
        ];
        for entry in cases {
            let mut tar = TarWriter::new(Vec::new(), TarOptions::default());
            let err = tar
                .append(&entry, &mut io::empty())
                .expect_err("invalid target");
            assert!(matches!(err, TarError::InvalidLinkTarget { .. }), "{err}");
        }
    }

    #[test]
    fn short_data_is_an_error() {
        let mut tar = TarWriter::new(Vec::new(), TarOptions::default());
        let err = tar
            .append(&Entry::file("f", 10), &mut &b"abc"[..])
            .expect_err("short");
        assert!(
            matches!(
                err,
                TarError::ShortData {
                    expected: 10,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    /// The paths of an archive in stream order.
    fn stream_order(bytes: &[u8]) -> Vec<String> {
        crate::tar::read::read_all(bytes)
            .expect("reads back")
            .into_iter()
            .map(|(e, _)| e.path)
            .collect()
    }

    const OPAQUE_DIR_ORDER: [&str; 7] = ["d", "d/.wh..wh..opq", "d/+b", "d/-a", "d/.a", "d/a", "e"];

    #[test]
    fn sort_entries_puts_the_opaque_marker_right_after_its_directory() {
        let mut entries: Vec<Entry> = ["d/a", "e", "d/.a", "d/-a", "d/+b", "d", "d/.wh..wh..opq"]
            .iter()
            .map(|p| match *p {
                "d" | "e" => Entry::dir(*p),
                _ => Entry::file(*p, 0),
            })
            .collect();
        sort_entries(&mut entries);
        let bytes = archive(
            &entries
                .iter()
                .map(|e| (e.clone(), &b""[..]))
                .collect::<Vec<_>>(),
            TarOptions::default(),
        );
        assert_eq!(stream_order(&bytes), OPAQUE_DIR_ORDER);
    }

    #[test]
    fn writer_rejects_a_marker_after_its_siblings() {
        let mut tar = TarWriter::new(Vec::new(), TarOptions::default());
        for e in [Entry::dir("d"), Entry::file("d/-a", 0)] {
            tar.append(&e, &mut io::empty()).expect("in order");
        }
        let err = tar
            .append(&Entry::file("d/.wh..wh..opq", 0), &mut io::empty())
            .expect_err("marker after a sibling");
        assert!(matches!(err, TarError::OutOfOrder { .. }), "{err}");
    }

    #[test]
    fn write_tree_walks_the_opaque_marker_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("d");
        fs::create_dir(&d).expect("mkdir");
        fs::create_dir(dir.path().join("e")).expect("mkdir");
        for name in ["a", ".a", "-a", "+b", ".wh..wh..opq"] {
            fs::write(d.join(name), "").expect("write");
        }
        let bytes = write_tree(dir.path(), Vec::new(), TarOptions::default()).expect("write tree");
        assert_eq!(stream_order(&bytes), OPAQUE_DIR_ORDER);
    }
}
