//! Reading layer tar streams into [`Entry`] values. A layer may be plain, gzip (including
//! multi-member gzip, as `pigz` and some registries produce) or zstd; the format is detected from
//! the magic bytes, as containerd's `compression.DecompressStream` does, never from a media type.
//!
//! The tar parser follows Go's `archive/tar` reader, which BuildKit and containerd use:
//! - ustar, GNU and V7 header blocks; the checksum is verified (unsigned or signed sum); numeric
//!   fields are octal or GNU base-256; the ustar `prefix` field is joined to the name;
//! - PAX local headers (`x`) are parsed by their length-prefixed records ([`crate::tar::pax`]),
//!   never split at newlines, so values are raw bytes; `path`, `linkpath`, `size`, `uid`, `gid`,
//!   `mtime` and `SCHILY.xattr.*` are applied, an empty value keeps the header field (POSIX);
//!   PAX global headers (`g`) are skipped, as Go does not merge them either;
//! - GNU long names and link targets (`L`, `K`) override the header and PAX values, as in Go;
//! - old GNU sparse files (`S`) are expanded with zeros for the holes; the PAX sparse formats
//!   (`GNU.sparse.*`) are rejected by name;
//! - hard links, symlinks, devices, directories and fifos carry no content whatever their size
//!   field says (Go's `isHeaderOnlyType`);
//! - extension members are limited to 1 MiB (Go's `maxSpecialFileSize`).
//!
//! The reader rejects entry names and hard-link targets that are absolute or contain a `..`
//! component, naming the entry: those are the first line of defence against path escapes (the
//! second, kernel-enforced one lives in [`crate::tar::extract`]). `./` prefixes and repeated
//! slashes are accepted and normalized; the archive root entry (`./`) is skipped.
//! The archive ends at the first zero block or at the end of the stream.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read};

use crate::compress::Compression;
use crate::tar::entry::{Entry, EntryKind, MODE_MASK};
use crate::tar::pax::{self, PaxError};

/// Bytes needed to recognise every supported compression (the zstd magic number).
const MAGIC_LEN: usize = 4;
/// The PAX key prefix under which GNU tar, Go and BuildKit store extended attributes.
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// The size of a tar block.
const BLOCK: usize = 512;
/// The largest extension member (`x`, `g`, `L`, `K`) accepted, as Go's `maxSpecialFileSize`.
const MAX_SPECIAL: u64 = 1 << 20;

/// Why a layer stream could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The underlying stream failed (or the decompressor found corrupt data).
    #[error("reading layer stream ({op}): {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A tar header block is malformed (bad checksum, misplaced extension header).
    #[error("malformed tar entry #{index}: {source}")]
    Malformed {
        /// 0-based index of the entry in the stream.
        index: u64,
        /// The parser's complaint.
        #[source]
        source: io::Error,
    },
    /// An entry name or hard-link target is absolute or has a `..` component.
    #[error("entry `{path}`: unsafe {what} `{value}` (absolute or containing `..`)")]
    UnsafePath {
        /// The entry's name as found in the archive.
        path: String,
        /// `path` or `hard link target`.
        what: &'static str,
        /// The offending text.
        value: String,
    },
    /// A name, link target or xattr name is not valid UTF-8.
    #[error("entry `{path}`: {what} is not valid utf-8")]
    NotUtf8 {
        /// The entry's name (lossily decoded).
        path: String,
        /// What was not UTF-8.
        what: &'static str,
    },
    /// A header field is out of range or missing.
    #[error("entry `{path}`: bad {field}: {detail}")]
    BadField {
        /// The entry's name.
        path: String,
        /// The header field.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A PAX extended header is malformed.
    #[error("entry `{path}`: {source}")]
    BadPax {
        /// The name in the header the PAX records describe (lossily decoded).
        path: String,
        /// The parser's complaint, with the record's offset.
        #[source]
        source: PaxError,
    },
    /// The entry type is not one a layer may hold.
    #[error("entry `{path}`: unsupported tar entry type `{typeflag}`")]
    UnsupportedType {
        /// The entry's name.
        path: String,
        /// The type flag, printed as a character.
        typeflag: char,
    },
}

type Result<T, E = ReadError> = std::result::Result<T, E>;

/// Wrap `r` in the decompressor its magic bytes call for (plain, multi-member gzip or zstd).
pub fn decompressed<'a, R: Read + 'a>(r: R) -> Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(64 * 1024, r);
    let magic = fill_at_least(&mut buf, MAGIC_LEN)?;
    Ok(match Compression::detect(&magic) {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf).map_err(
            |source| ReadError::Io {
                op: "starting zstd decoder",
                source,
            },
        )?),
    })
}

/// Peek up to `n` bytes without consuming them (fewer only at end of stream).
fn fill_at_least<R: Read>(buf: &mut BufReader<R>, n: usize) -> Result<Vec<u8>> {
    // A BufReader only refills when empty, so a short first read is returned as is; that is
    // fine for real streams (the first read of a file or pipe carries far more than 4 bytes).
    let available = buf.fill_buf().map_err(|source| ReadError::Io {
        op: "reading magic bytes",
        source,
    })?;
    Ok(available[..available.len().min(n)].to_vec())
}

/// Read every entry of a (possibly compressed) layer stream, calling `f` with the entry and a
/// reader of its content (empty for anything but regular files), in stream order. Content the
/// callback leaves unread is skipped.
///
/// After the end-of-archive marker the rest of the stream is drained, so a decompressor checks
/// its trailer and a hashing reader underneath sees every byte.
pub fn for_each_entry<R, E, F>(layer: R, mut f: F) -> Result<(), E>
where
    R: Read,
    E: From<ReadError>,
    F: FnMut(&Entry, &mut dyn Read) -> Result<(), E>,
{
    let mut stream = decompressed(layer)?;
    let r: &mut dyn Read = &mut stream;
    let mut pending = Extensions::default();
    let mut index = 0u64;
    while let Some(block) = read_block(r)? {
        if block.iter().all(|b| *b == 0) {
            break;
        }
        verify_checksum(&block).map_err(|detail| malformed(index, detail))?;
        let typeflag = block[156];
        if matches!(typeflag, b'x' | b'g' | b'L' | b'K') {
            let size = parse_numeric(&block[124..136])
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n <= MAX_SPECIAL)
                .ok_or_else(|| {
                    malformed(
                        index,
                        format!("bad or too large {:?} header size", typeflag as char),
                    )
                })?;
            let data = read_special(r, size)?;
            let slot = match typeflag {
                b'x' => &mut pending.pax,
                b'L' => &mut pending.long_name,
                b'K' => &mut pending.long_link,
                _ => {
                    index += 1;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(malformed(
                    index,
                    format!("two {:?} headers describe the same entry", typeflag as char),
                )
                .into());
            }
            *slot = Some(data);
            continue;
        }
        let ext = std::mem::take(&mut pending);
        let (entry, chunks, tail) = to_entry(&block, ext, r)?;
        let mut content = Content {
            r: &mut *r,
            chunks,
            tail,
        };
        if let Some(entry) = entry {
            f(&entry, &mut content)?;
        }
        content.skip_rest()?;
        index += 1;
    }
    if !pending.is_empty() {
        return Err(malformed(index, "extension header without an entry after it".into()).into());
    }
    io::copy(r, &mut io::sink()).map_err(|source| ReadError::Io {
        op: "draining after end of archive",
        source,
    })?;
    Ok(())
}

/// Read a whole layer into memory: entries with their contents. Meant for tests and small layers.
pub fn read_all<R: Read>(layer: R) -> Result<Vec<(Entry, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each_entry(layer, |e: &Entry, data: &mut dyn Read| {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)
            .map_err(|source| ReadError::Io {
                op: "reading entry content",
                source,
            })?;
        out.push((e.clone(), bytes));
        Ok::<(), ReadError>(())
    })?;
    Ok(out)
}

/// Extension data (`x`, `L`, `K` member bodies) gathered for the next entry.
#[derive(Default)]
struct Extensions {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
}

/// One piece of an entry's content: zeros (a sparse hole) or bytes from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Zeros(u64),
    Data(u64),
}

/// The content reader handed to callers: the entry's chunks, then `tail` stream bytes (padding,
/// or data of an entry that exposes none) that are skipped.
struct Content<'a> {
    r: &'a mut dyn Read,
    chunks: VecDeque<Chunk>,
    tail: u64,
}

impl Read for Content<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while let Some(chunk) = self.chunks.front_mut() {
            match chunk {
                Chunk::Zeros(0) | Chunk::Data(0) => {
                    self.chunks.pop_front();
                }
                Chunk::Zeros(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                    buf[..k].fill(0);
                    *n -= k as u64;
                    return Ok(k);
                }
                Chunk::Data(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                    let got = self.r.read(&mut buf[..k])?;
                    if got == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "layer stream ends inside entry content",
                        ));
                    }
                    *n -= got as u64;
                    return Ok(got);
                }
            }
        }
        Ok(0)
    }
}

impl Content<'_> {
    /// Skip whatever content the caller did not read, and the padding.
    fn skip_rest(&mut self) -> Result<()> {
        let data = self.chunks.iter().fold(0u64, |sum, c| match c {
            Chunk::Data(n) => sum.saturating_add(*n),
            Chunk::Zeros(_) => sum,
        });
        self.chunks.clear();
        let want = data.saturating_add(self.tail);
        self.tail = 0;
        let skipped =
            io::copy(&mut (&mut *self.r).take(want), &mut io::sink()).map_err(|source| {
                ReadError::Io {
                    op: "skipping entry content",
                    source,
                }
            })?;
        if skipped < want {
            return Err(ReadError::Io {
                op: "skipping entry content",
                source: io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(())
    }
}

fn malformed(index: u64, detail: String) -> ReadError {
    ReadError::Malformed {
        index,
        source: io::Error::new(io::ErrorKind::InvalidData, detail),
    }
}

/// Read one 512-byte block; `None` at a clean end of stream, an error inside a block.
fn read_block(r: &mut dyn Read) -> Result<Option<[u8; BLOCK]>> {
    let mut block = [0u8; BLOCK];
    let mut n = 0;
    while n < BLOCK {
        match r.read(&mut block[n..]) {
            Ok(0) if n == 0 => return Ok(None),
            Ok(0) => {
                return Err(ReadError::Io {
                    op: "reading tar header",
                    source: io::ErrorKind::UnexpectedEof.into(),
                })
            }
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ReadError::Io {
                    op: "reading tar header",
                    source,
                })
            }
        }
    }
    Ok(Some(block))
}

/// Read the body of an extension member (`size` ≤ [`MAX_SPECIAL`]) and skip its padding.
fn read_special(r: &mut dyn Read, size: u64) -> Result<Vec<u8>> {
    let len = usize::try_from(size).expect("bounded by MAX_SPECIAL");
    let mut data = vec![0u8; len];
    let mut content = Content {
        r,
        chunks: VecDeque::from([Chunk::Data(size)]),
        tail: padding(size),
    };
    content
        .read_exact(&mut data)
        .map_err(|source| ReadError::Io {
            op: "reading extension header",
            source,
        })?;
    content.skip_rest()?;
    Ok(data)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The bytes of a NUL-terminated field up to the first NUL.
fn cstr(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|b| *b == 0)
        .map_or(field, |i| &field[..i])
}

/// Parse a numeric header field: GNU base-256 when the top bit is set, else octal surrounded by
/// optional spaces and NULs (Go's `parseNumeric`).
fn parse_numeric(field: &[u8]) -> std::result::Result<i64, String> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let inv = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let mut c = b ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return Err("base-256 number overflows".into());
            }
            x = (x << 8) | u64::from(c);
        }
        let x = i64::try_from(x).map_err(|_| "base-256 number overflows".to_string())?;
        return Ok(if inv == 0xff { !x } else { x });
    }
    let trimmed = {
        let start = field.iter().position(|b| *b != b' ' && *b != 0);
        let end = field.iter().rposition(|b| *b != b' ' && *b != 0);
        match (start, end) {
            (Some(s), Some(e)) => cstr(&field[s..=e]),
            _ => return Ok(0),
        }
    };
    std::str::from_utf8(trimmed)
        .ok()
        .and_then(|t| u64::from_str_radix(t, 8).ok())
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| {
            format!(
                "{:?} is not an octal number",
                String::from_utf8_lossy(field)
            )
        })
}

/// Check the header checksum: the sum of all bytes with the checksum field read as spaces, as
/// unsigned or (for old writers) signed bytes.
fn verify_checksum(block: &[u8; BLOCK]) -> std::result::Result<(), String> {
    let want = parse_numeric(&block[148..156])?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if want == unsigned || want == signed {
        Ok(())
    } else {
        Err(format!(
            "header checksum mismatch (header says {want}, computed {unsigned})"
        ))
    }
}

/// Turn one header block (with the extension data before it) into an [`Entry`], the chunks of
/// its content and the stream bytes to skip after them; the entry is `None` for the archive root.
/// Reads the extension blocks of a GNU sparse header from `r`.
fn to_entry(
    block: &[u8; BLOCK],
    ext: Extensions,
    r: &mut dyn Read,
) -> Result<(Option<Entry>, VecDeque<Chunk>, u64)> {
    let typeflag = block[156];
    let is_ustar = &block[257..263] == b"ustar\0";
    let is_gnu = &block[257..265] == b"ustar  \0";
    let mut name = cstr(&block[0..100]).to_vec();
    if is_ustar {
        let prefix = if &block[508..512] == b"tar\0" {
            cstr(&block[345..476])
        } else {
            cstr(&block[345..500])
        };
        if !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
    }
    let mut link = cstr(&block[157..257]).to_vec();
    let header_name = String::from_utf8_lossy(&name).into_owned();
    let bad = |field: &'static str, detail: String| ReadError::BadField {
        path: header_name.clone(),
        field,
        detail,
    };
    let numeric = |field: &'static str, range: std::ops::Range<usize>| {
        parse_numeric(&block[range]).map_err(|d| bad(field, d))
    };
    let mode = numeric("mode", 100..108)?;
    let mut uid = numeric("uid", 108..116)?;
    let mut gid = numeric("gid", 116..124)?;
    let mut size = numeric("size", 124..136)?;
    let mut mtime = numeric("mtime", 136..148)?;
    let mut xattrs = BTreeMap::new();

    if let Some(raw) = ext.pax {
        let records = pax::parse_records(&raw).map_err(|source| ReadError::BadPax {
            path: header_name.clone(),
            source,
        })?;
        for (key, value) in records {
            if let Some(xattr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                xattrs.insert(xattr.to_string(), value);
                continue;
            }
            if key.starts_with("GNU.sparse.") {
                return Err(bad(
                    "pax sparse",
                    format!("`{key}`: pax sparse files are not supported"),
                ));
            }
            if value.is_empty() {
                // POSIX: an empty value deletes the override; the header field stands.
                continue;
            }
            let text = || {
                std::str::from_utf8(&value).map_err(|_| ReadError::NotUtf8 {
                    path: header_name.clone(),
                    what: "pax value",
                })
            };
            let int = |field: &'static str| -> Result<i64> {
                let t = text()?;
                t.parse::<i64>()
                    .map_err(|_| bad(field, format!("pax value {t:?}")))
            };
            match key.as_str() {
                "path" => name = value.clone(),
                "linkpath" => link = value.clone(),
                "size" => size = int("pax size")?,
                "uid" => uid = int("pax uid")?,
                "gid" => gid = int("pax gid")?,
                "mtime" => {
                    let t = text()?;
                    mtime = parse_pax_time(t).ok_or_else(|| bad("pax mtime", t.to_string()))?;
                }
                _ => {}
            }
        }
    }
    if let Some(long) = ext.long_name {
        name = cstr(&long).to_vec();
    }
    if let Some(long) = ext.long_link {
        link = cstr(&long).to_vec();
    }

    let name = String::from_utf8(name).map_err(|e| ReadError::NotUtf8 {
        path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        what: "path",
    })?;
    let bad = |field: &'static str, detail: String| ReadError::BadField {
        path: name.clone(),
        field,
        detail,
    };
    let stored = u64::try_from(size).map_err(|_| bad("size", format!("{size} is negative")))?;
    let to_u32 = |field: &'static str, v: i64| {
        u32::try_from(v).map_err(|_| bad(field, format!("{v} out of range")))
    };
    let uid = to_u32("uid", uid)?;
    let gid = to_u32("gid", gid)?;
    let mode = u32::try_from(mode & i64::from(MODE_MASK)).expect("masked to 12 bits");
    let link = || -> Result<String> {
        String::from_utf8(link.clone()).map_err(|_| ReadError::NotUtf8 {
            path: name.clone(),
            what: "link name",
        })
    };
    let device = |field: &'static str, range: std::ops::Range<usize>| -> Result<u32> {
        let v = parse_numeric(&block[range]).map_err(|d| bad(field, d))?;
        to_u32(field, v)
    };

    let plain = VecDeque::from([Chunk::Data(stored)]);
    let (kind, chunks, tail) = match typeflag {
        0 if name.ends_with('/') => (EntryKind::Dir, VecDeque::new(), 0),
        b'0' | b'7' | 0 if name.ends_with('/') => {
            (EntryKind::Dir, VecDeque::new(), stored + padding(stored))
        }
        b'0' | b'7' | 0 => (EntryKind::File { size: stored }, plain, padding(stored)),
        b'S' if is_gnu => {
            let (real, chunks) = sparse_map(block, stored, r).map_err(|d| bad("sparse map", d))?;
            (EntryKind::File { size: real }, chunks, padding(stored))
        }
        b'5' => (EntryKind::Dir, VecDeque::new(), 0),
        b'2' => (EntryKind::Symlink { target: link()? }, VecDeque::new(), 0),
        b'1' => {
            let target = link()?;
            match safe_relative(&target) {
                Ok(Some(t)) => (EntryKind::HardLink { target: t }, VecDeque::new(), 0),
                _ => {
                    return Err(ReadError::UnsafePath {
                        path: name.clone(),
                        what: "hard link target",
                        value: target,
                    })
                }
            }
        }
        b'3' => (
            EntryKind::CharDevice {
                major: device("device major", 329..337)?,
                minor: device("device minor", 337..345)?,
            },
            VecDeque::new(),
            0,
        ),
        b'4' => (
            EntryKind::BlockDevice {
                major: device("device major", 329..337)?,
                minor: device("device minor", 337..345)?,
            },
            VecDeque::new(),
            0,
        ),
        b'6' => (EntryKind::Fifo, VecDeque::new(), 0),
        other => {
            return Err(ReadError::UnsupportedType {
                path: name.clone(),
                typeflag: other as char,
            })
        }
    };
    let Some(path) = safe_relative(&name).map_err(|()| ReadError::UnsafePath {
        path: name.clone(),
        what: "path",
        value: name.clone(),
    })?
    else {
        return Ok((None, chunks, tail));
    };
    let entry = Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    };
    Ok((Some(entry), chunks, tail))
}

/// Read an old GNU sparse map (4 slots in the header, 21 per extension block while the
/// "is extended" flag is set) into content chunks; returns the file's real size too. The
/// fragments must be sorted, disjoint, inside the real size and add up to `stored` bytes.
fn sparse_map(
    block: &[u8; BLOCK],
    stored: u64,
    r: &mut dyn Read,
) -> std::result::Result<(u64, VecDeque<Chunk>), String> {
    fn slots(area: &[u8], out: &mut Vec<(u64, u64)>) -> std::result::Result<(), String> {
        for slot in area.chunks_exact(24) {
            if slot[0] == 0 {
                break;
            }
            let offset = parse_numeric(&slot[..12])?;
            let len = parse_numeric(&slot[12..])?;
            let offset = u64::try_from(offset).map_err(|_| format!("negative offset {offset}"))?;
            let len = u64::try_from(len).map_err(|_| format!("negative length {len}"))?;
            out.push((offset, len));
        }
        Ok(())
    }
    let mut fragments = Vec::new();
    slots(&block[386..482], &mut fragments)?;
    let mut extended = block[482] != 0;
    while extended {
        let ext = read_block(r)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "stream ends inside the sparse map".to_string())?;
        slots(&ext[..504], &mut fragments)?;
        extended = ext[504] != 0;
    }
    let real = parse_numeric(&block[483..495])?;
    let real = u64::try_from(real).map_err(|_| format!("negative real size {real}"))?;
    let mut chunks = VecDeque::new();
    let (mut pos, mut total) = (0u64, 0u64);
    for (offset, len) in fragments {
        let end = offset
            .checked_add(len)
            .filter(|end| offset >= pos && *end <= real)
            .ok_or_else(|| format!("fragment {offset}+{len} overlaps or exceeds size {real}"))?;
        chunks.push_back(Chunk::Zeros(offset - pos));
        chunks.push_back(Chunk::Data(len));
        pos = end;
        total += len;
    }
    chunks.push_back(Chunk::Zeros(real - pos));
    if total != stored {
        return Err(format!(
            "fragments hold {total} bytes, the header says {stored}"
        ));
    }
    Ok((real, chunks))
}

/// Normalize an archive name into entry-path form: `Ok(None)` for the root, `Err` when the name
/// is absolute or has a `..` component.
fn safe_relative(name: &str) -> std::result::Result<Option<String>, ()> {
    if name.starts_with('/') {
        return Err(());
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(()),
            c => parts.push(c),
        }
    }
    Ok(if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    })
}

/// Parse a PAX time (`1700000000`, `1700000000.123`, `-5.5`) into whole seconds, rounding toward
/// negative infinity as Go's `archive/tar` does.
fn parse_pax_time(value: &str) -> Option<i64> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let s: i64 = secs.parse().ok()?;
    let has_fraction = frac.bytes().any(|b| b != b'0');
    Some(if secs.starts_with('-') && has_fraction {
        s - 1
    } else {
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A ustar header block with the checksum filled in.
    fn header(name: &str, typeflag: u8, size: usize, link: &str) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000001");
        h[116..123].copy_from_slice(b"0000002");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000012");
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn member(name: &str, typeflag: u8, data: &[u8], link: &str) -> Vec<u8> {
        let mut m = header(name, typeflag, data.len(), link);
        m.extend_from_slice(data);
        m.resize(m.len().div_ceil(512) * 512, 0);
        m
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + base.to_string().len();
            if len.to_string().len() + base > len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        member("PaxHeader", b'x', &body, "")
    }

    fn finish(mut t: Vec<u8>) -> Vec<u8> {
        t.extend_from_slice(&[0u8; 1024]);
        t
    }

    #[test]
    fn pax_time_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("10", Some(10)),
            ("10.5", Some(10)),
            ("-1.5", Some(-2)),
            ("-1.0", Some(-1)),
            ("x", None),
            ("1.x", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_pax_time(input), *want, "{input}");
        }
    }

    #[test]
    fn reads_kinds_owners_and_pax() {
        let mut t = Vec::new();
        t.extend(member("./", b'5', b"", ""));
        t.extend(member("./a/", b'5', b"", ""));
        t.extend(pax(&[
            ("SCHILY.xattr.user.k", b"v\0w"),
            ("mtime", b"99.25"),
            ("uid", b"70000"),
        ]));
        t.extend(member("a/f", b'0', b"hello", ""));
        t.extend(member("a/l", b'2', b"", "../x"));
        t.extend(member("a/h", b'1', b"", "./a/f"));
        t.extend(member("a/p", b'6', b"", ""));
        let got = read_all(&finish(t)[..]).unwrap();
        let paths: Vec<_> = got.iter().map(|(e, _)| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/f", "a/l", "a/h", "a/p"]);
        let (f, data) = &got[1];
        assert_eq!(data, b"hello");
        assert_eq!(f.kind, EntryKind::File { size: 5 });
        assert_eq!((f.mode, f.uid, f.gid, f.mtime), (0o644, 70000, 2, 99));
        assert_eq!(
            f.xattrs.get("user.k").map(Vec::as_slice),
            Some(&b"v\0w"[..])
        );
        assert_eq!(
            got[2].0.kind,
            EntryKind::Symlink {
                target: "../x".into()
            }
        );
        assert_eq!(
            got[3].0.kind,
            EntryKind::HardLink {
                target: "a/f".into()
            }
        );
        assert_eq!(got[4].0.kind, EntryKind::Fifo);
        assert_eq!(got[0].0.mtime, 10);
    }

    #[test]
    fn long_names_via_pax_and_gnu() {
        let long = format!("{}/file", "d".repeat(150));
        let mut t = Vec::new();
        t.extend(pax(&[("path", long.as_bytes())]));
        t.extend(member("short", b'0', b"x", ""));
        let mut gnu = long.clone().into_bytes();
        gnu.push(0);
        t.extend(member("././@LongLink", b'L', &gnu, ""));
        t.extend(member("trunc", b'0', b"y", ""));
        let got = read_all(&finish(t)[..]).unwrap();
        assert_eq!(got[0].0.path, long);
        assert_eq!(got[1].0.path, long);
    }

    #[test]
    fn unsafe_names_are_errors_naming_the_entry() {
        let cases: &[(Vec<u8>, &str)] = &[
            (member("../x", b'0', b"", ""), "../x"),
            (member("/etc/x", b'0', b"", ""), "/etc/x"),
            (member("a/../../x", b'0', b"", ""), "a/../../x"),
            (
                member("h", b'1', b"", "../../etc/passwd"),
                "../../etc/passwd",
            ),
            (member("h", b'1', b"", "/etc/passwd"), "/etc/passwd"),
        ];
        for (bytes, needle) in cases {
            let err = read_all(&finish(bytes.clone())[..]).unwrap_err();
            assert!(matches!(err, ReadError::UnsafePath { .. }), "{err}");
            assert!(
                err.to_string().contains(needle),
                "{err} should name {needle}"
            );
        }
    }

    #[test]
    fn gzip_multi_member_and_zstd_are_detected() {
        let mut first = Vec::new();
        first.extend(member("a", b'0', b"1", ""));
        let mut second = member("b", b'0', b"2", "");
        second.extend_from_slice(&[0u8; 1024]);
        let mut gz = Vec::new();
        for part in [&first, &second] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        let names =
            |v: Vec<(Entry, Vec<u8>)>| v.into_iter().map(|(e, _)| e.path).collect::<Vec<_>>();
        assert_eq!(names(read_all(&gz[..]).unwrap()), ["a", "b"]);
        let plain = [first.clone(), second.clone()].concat();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        assert_eq!(names(read_all(&zst[..]).unwrap()), ["a", "b"]);
        assert_eq!(names(read_all(&plain[..]).unwrap()), ["a", "b"]);
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&finish(member("a", b'0', b"1", ""))).unwrap();
        let mut gz = enc.finish().unwrap();
        let n = gz.len();
        gz[n - 6] ^= 0xff; // corrupt the crc32 in the trailer
        assert!(read_all(&gz[..]).is_err());
    }

    fn pax_raw(body: &[u8]) -> Vec<u8> {
        member("PaxHeader", b'x', body, "")
    }

    fn xattr<'a>(e: &'a Entry, name: &str) -> Option<&'a [u8]> {
        e.xattrs.get(name).map(Vec::as_slice)
    }

    /// PAX records, the expected value of `user.k` and the expected path.
    type PaxCase<'a> = (Vec<(&'a str, &'a [u8])>, &'a [u8], String);

    #[test]
    fn pax_values_are_split_by_length_not_newlines() {
        let long = format!("{}/file", "d".repeat(150));
        let cases: Vec<PaxCase<'_>> = vec![
            (
                vec![
                    ("SCHILY.xattr.user.k", b"a\nb\n\nc"),
                    ("path", long.as_bytes()),
                ],
                b"a\nb\n\nc",
                long.clone(),
            ),
            // A value that is exactly a newline, then a `path` record.
            (
                vec![("SCHILY.xattr.user.k", b"\n"), ("path", long.as_bytes())],
                b"\n",
                long.clone(),
            ),
            // `=` and a fake record inside a value.
            (
                vec![
                    ("SCHILY.xattr.user.k", b"x=y\n9 path=a\n="),
                    ("mtime", b"5"),
                ],
                b"x=y\n9 path=a\n=",
                "short".into(),
            ),
            (
                vec![("SCHILY.xattr.user.k", b"\x01\x00\x00\x02\xff\n\0")],
                b"\x01\x00\x00\x02\xff\n\0",
                "short".into(),
            ),
            (vec![("SCHILY.xattr.user.k", b"")], b"", "short".into()),
        ];
        for (records, want_xattr, want_path) in cases {
            let mut t = pax(&records);
            t.extend(member("short", b'0', b"data", ""));
            t.extend(member("next", b'0', b"n", ""));
            let got = read_all(&finish(t)[..]).expect("reads");
            assert_eq!(got.len(), 2, "{records:?}");
            let (e, data) = &got[0];
            assert_eq!(xattr(e, "user.k"), Some(want_xattr), "{records:?}");
            assert_eq!(e.xattrs.len(), 1);
            assert_eq!(e.path, want_path);
            assert_eq!(data, b"data");
            assert_eq!(got[1].0.path, "next");
            assert!(got[1].0.xattrs.is_empty(), "pax applies to one entry only");
        }
    }

    #[test]
    fn lying_pax_lengths_are_errors_naming_the_entry() {
        let cases: &[(&[u8], &str)] = &[
            // Too long: runs past the end of the header body.
            (b"40 SCHILY.xattr.user.k=v\n", "runs past the end"),
            // Too long by one: swallows nothing but still runs past the end.
            (b"26 SCHILY.xattr.user.k=v\n", "runs past the end"),
            // Too short: the record would end inside the value.
            (b"20 SCHILY.xattr.user.k=v\n", "does not end in a newline"),
            // Too short: after a good record, the second one lies.
            (b"9 path=a\n5 path=abc\n", "does not end in a newline"),
            (b"1 \n", "shorter than the record header"),
            (b"abc path=x\n", "not a number"),
            (b"path=x\n", "no length prefix"),
        ];
        for (body, needle) in cases {
            let mut t = pax_raw(body);
            t.extend(member("victim", b'0', b"x", ""));
            let err = read_all(&finish(t)[..]).expect_err("malformed pax");
            assert!(matches!(err, ReadError::BadPax { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("victim"), "{msg} should name the entry");
            assert!(msg.contains(needle), "{msg} should say {needle}");
        }
    }

    #[test]
    fn pax_overrides_size_ids_and_link() {
        let long_target = "t".repeat(300);
        let mut t = pax(&[
            ("size", b"3"),
            ("uid", b"4000000000"),
            ("gid", b"7"),
            ("mtime", b"-3.5"),
        ]);
        // The header says 0 bytes; the PAX size (3) decides where the next header is.
        t.extend(header("f", b'0', 0, ""));
        t.extend(b"abc");
        t.resize(t.len().div_ceil(512) * 512, 0);
        t.extend(pax(&[("linkpath", long_target.as_bytes()), ("path", b"")]));
        t.extend(member("s", b'2', b"", "short"));
        let got = read_all(&finish(t)[..]).expect("reads");
        let (f, data) = &got[0];
        assert_eq!(data, b"abc");
        assert_eq!((f.uid, f.gid, f.mtime), (4_000_000_000, 7, -4));
        // An empty `path` value keeps the header's name.
        assert_eq!(got[1].0.path, "s");
        assert_eq!(
            got[1].0.kind,
            EntryKind::Symlink {
                target: long_target
            }
        );
    }

    #[test]
    fn gnu_long_names_and_links() {
        let long = format!("{}/f", "n".repeat(200));
        let target = format!("{}/t", "l".repeat(200));
        let mut t = Vec::new();
        t.extend(pax(&[("path", b"from-pax")]));
        t.extend(member(
            "././@LongLink",
            b'L',
            format!("{long}\0").as_bytes(),
            "",
        ));
        t.extend(member(
            "././@LongLink",
            b'K',
            format!("{target}\0").as_bytes(),
            "",
        ));
        t.extend(member("trunc", b'1', b"", "trunc-target"));
        let got = read_all(&finish(t)[..]).expect("reads");
        // GNU long names win over PAX, as in Go's reader.
        assert_eq!(got[0].0.path, long);
        assert_eq!(got[0].0.kind, EntryKind::HardLink { target });
    }

    #[test]
    fn malformed_streams_are_errors() {
        let file = member("f", b'0', b"hello", "");
        let mut bad_sum = file.clone();
        bad_sum[0] = b'g';
        let two_pax = [pax(&[("gid", b"1")]), pax(&[("gid", b"2")]), file.clone()].concat();
        let dangling = pax(&[("gid", b"1")]);
        let mut truncated = file.clone();
        truncated.truncate(512 + 3);
        let mut half_header = file.clone();
        half_header.truncate(100);
        let mut huge_pax = header("PaxHeader", b'x', 0, "");
        huge_pax[124..135].copy_from_slice(format!("{:011o}", 2u64 << 20).as_bytes());
        huge_pax[148..156].copy_from_slice(b"        ");
        let sum: u32 = huge_pax.iter().map(|&b| b as u32).sum();
        huge_pax[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("checksum", finish(bad_sum), true),
            ("two pax headers", finish(two_pax), true),
            ("pax without entry", finish(dangling), true),
            ("truncated content", truncated, false),
            ("truncated header", half_header, false),
            ("huge pax header", finish(huge_pax), true),
            (
                "unsupported type",
                finish(member("v", b'V', b"", "")),
                false,
            ),
            (
                "pax sparse",
                finish([pax(&[("GNU.sparse.major", b"1")]), file.clone()].concat()),
                false,
            ),
        ];
        for (what, bytes, malformed) in cases {
            let err = read_all(&bytes[..]).expect_err(what);
            assert_eq!(
                matches!(err, ReadError::Malformed { .. }),
                malformed,
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn header_only_types_ignore_their_size_field() {
        // Go's reader: links, devices, dirs and fifos carry no data whatever the size says.
        let mut t = header("s", b'2', 600, "target");
        t.extend(member("f", b'0', b"x", ""));
        let got = read_all(&finish(t)[..]).expect("reads");
        let paths: Vec<_> = got.iter().map(|(e, _)| e.path.as_str()).collect();
        assert_eq!(paths, ["s", "f"]);
    }

    #[test]
    fn numeric_fields_table() {
        let cases: &[(&[u8], Result<i64, ()>)] = &[
            (b"0000644\0", Ok(0o644)),
            (b"  644 \0", Ok(0o644)),
            (b"\0\0\0\0", Ok(0)),
            (b"", Ok(0)),
            (b"0000009\0", Err(())),
            (b"\x80\0\0\0\0\0\0\x01\0\0\0\0", Ok(1 << 32)),
            (b"\xff\xff\xff\xff\xff\xff\xff\xff", Ok(-1)),
            (b"\x80\xff\xff\xff\xff\xff\xff\xff\xff", Err(())),
        ];
        for (field, want) in cases {
            assert_eq!(parse_numeric(field).map_err(|_| ()), *want, "{field:?}");
        }
    }

    #[test]
    fn gnu_sparse_files_are_expanded() {
        // Real size 20: 3 bytes at 4, 2 bytes at 10 (stored as 5 bytes of data).
        let mut h = header("sparse", b'S', 5, "");
        h[257..265].copy_from_slice(b"ustar  \0");
        h[386..397].copy_from_slice(b"00000000004");
        h[398..409].copy_from_slice(b"00000000003");
        h[410..421].copy_from_slice(b"00000000012");
        h[422..433].copy_from_slice(b"00000000002");
        h[483..494].copy_from_slice(b"00000000024");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut t = h;
        t.extend(b"abcde");
        t.resize(1024, 0);
        t.extend(member("after", b'0', b"z", ""));
        let got = read_all(&finish(t)[..]).expect("reads");
        assert_eq!(got[0].0.kind, EntryKind::File { size: 20 });
        assert_eq!(got[0].1, b"\0\0\0\0abc\0\0\0de\0\0\0\0\0\0\0\0");
        assert_eq!(got[1].1, b"z");
    }

    #[test]
    fn unread_content_is_skipped() {
        let mut t = member("big", b'0', &[7u8; 1500], "");
        t.extend(member("next", b'0', b"n", ""));
        let mut seen = Vec::new();
        for_each_entry(&finish(t)[..], |e: &Entry, data: &mut dyn Read| {
            let mut one = [0u8; 1];
            data.read_exact(&mut one).expect("one byte");
            seen.push((e.path.clone(), one[0]));
            Ok::<(), ReadError>(())
        })
        .expect("reads");
        assert_eq!(seen, [("big".to_string(), 7), ("next".to_string(), b'n')]);
    }

    fn arb_xattrs() -> impl proptest::strategy::Strategy<Value = BTreeMap<String, Vec<u8>>> {
        use proptest::prelude::*;
        proptest::collection::btree_map(
            "(user|trusted|security)\\.[a-zA-Z0-9._\\-]{1,30}",
            proptest::collection::vec(any::<u8>(), 0..600),
            0..5,
        )
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_xattr_values_round_trip(
            first in arb_xattrs(),
            second in arb_xattrs(),
            name in "[a-z]{1,10}",
        ) {
            use crate::tar::write::{TarOptions, TarWriter};
            let mut dir = Entry::dir(name.clone());
            dir.xattrs = first;
            let mut file = Entry::file(format!("{name}/f"), 3);
            file.xattrs = second;
            let mut tw = TarWriter::new(Vec::new(), TarOptions::keep_mtimes());
            tw.append(&dir, &mut io::empty()).expect("dir");
            tw.append(&file, &mut &b"abc"[..]).expect("file");
            let bytes = tw.finish().expect("finish");
            let got = read_all(&bytes[..]).expect("reads back");
            proptest::prop_assert_eq!(got, vec![(dir, vec![]), (file, b"abc".to_vec())]);
        }
    }
}
