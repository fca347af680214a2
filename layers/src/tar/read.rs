//! Reading layer tar streams into [`Entry`] values. A layer may be plain, gzip (including
//! multi-member gzip, as `pigz` and some registries produce) or zstd; the format is detected from
//! the magic bytes, as containerd's `compression.DecompressStream` does, never from a media type.
//!
//! Headers are parsed by the `tar` crate, which understands ustar, GNU long names/links
//! (`L`/`K`), PAX local headers (`path`, `linkpath`, `size`, `uid`, `gid`) and GNU sparse files;
//! this module adds PAX `mtime` and `SCHILY.xattr.*` and turns each header into an [`Entry`].
//!
//! The reader rejects entry names and hard-link targets that are absolute or contain a `..`
//! component, naming the entry: those are the first line of defence against path escapes (the
//! second, kernel-enforced one lives in [`crate::tar::extract`]). `./` prefixes and repeated
//! slashes are accepted and normalized; the archive root entry (`./`) is skipped.
//! PAX global headers are ignored, as BuildKit's and Docker's Go `archive/tar` readers do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use crate::compress::Compression;
use crate::tar::entry::{Entry, EntryKind, MODE_MASK};

/// Bytes needed to recognise every supported compression (the zstd magic number).
const MAGIC_LEN: usize = 4;
/// The PAX key prefix under which GNU tar, Go and BuildKit store extended attributes.
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

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
    /// A tar header or PAX record is malformed.
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
/// reader of its content (empty for anything but regular files), in stream order.
///
/// After the end-of-archive marker the rest of the stream is drained, so a decompressor checks
/// its trailer and a hashing reader underneath sees every byte.
pub fn for_each_entry<R, E, F>(layer: R, mut f: F) -> Result<(), E>
where
    R: Read,
    E: From<ReadError>,
    F: FnMut(&Entry, &mut dyn Read) -> Result<(), E>,
{
    let stream = decompressed(layer)?;
    let mut archive = ::tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|source| ReadError::Malformed { index: 0, source })?;
    for (index, raw) in entries.enumerate() {
        let index = index as u64;
        let mut raw = raw.map_err(|source| ReadError::Malformed { index, source })?;
        let Some(entry) = to_entry(&mut raw, index)? else {
            continue;
        };
        f(&entry, &mut raw)?;
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|source| ReadError::Io {
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

/// Turn one parsed tar member into an [`Entry`]; `None` for members that carry no file (the root
/// `./` directory, PAX global headers).
fn to_entry<R: Read>(raw: &mut ::tar::Entry<'_, R>, index: u64) -> Result<Option<Entry>> {
    let name_bytes = raw.path_bytes().into_owned();
    let lossy = String::from_utf8_lossy(&name_bytes).into_owned();
    let header = raw.header().clone();
    let typ = header.entry_type();
    if typ.is_pax_global_extensions() {
        return Ok(None);
    }
    let name = String::from_utf8(name_bytes).map_err(|_| ReadError::NotUtf8 {
        path: lossy.clone(),
        what: "path",
    })?;
    let Some(path) = safe_relative(&name).map_err(|()| ReadError::UnsafePath {
        path: name.clone(),
        what: "path",
        value: name.clone(),
    })?
    else {
        return Ok(None);
    };

    let bad = |field: &'static str, e: io::Error| ReadError::BadField {
        path: name.clone(),
        field,
        detail: e.to_string(),
    };
    let mut mtime = header.mtime().map_err(|e| bad("mtime", e))? as i64;
    let mut xattrs = BTreeMap::new();
    if let Some(pax) = raw
        .pax_extensions()
        .map_err(|source| ReadError::Malformed { index, source })?
    {
        for ext in pax {
            let ext = ext.map_err(|source| ReadError::Malformed { index, source })?;
            let key = ext.key().map_err(|_| ReadError::NotUtf8 {
                path: name.clone(),
                what: "pax key",
            })?;
            if let Some(xattr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                xattrs.insert(xattr.to_string(), ext.value_bytes().to_vec());
            } else if key == "mtime" {
                let value = ext.value().map_err(|_| ReadError::NotUtf8 {
                    path: name.clone(),
                    what: "pax mtime",
                })?;
                mtime = parse_pax_time(value).ok_or_else(|| ReadError::BadField {
                    path: name.clone(),
                    field: "pax mtime",
                    detail: value.to_string(),
                })?;
            }
        }
    }

    let to_u32 = |field: &'static str, v: u64| {
        u32::try_from(v).map_err(|_| ReadError::BadField {
            path: name.clone(),
            field,
            detail: format!("{v} out of range"),
        })
    };
    let uid = to_u32("uid", header.uid().map_err(|e| bad("uid", e))?)?;
    let gid = to_u32("gid", header.gid().map_err(|e| bad("gid", e))?)?;
    let mode = header.mode().map_err(|e| bad("mode", e))? & MODE_MASK;
    let link = || -> Result<String> {
        let bytes: Cow<'_, [u8]> = raw.link_name_bytes().ok_or_else(|| ReadError::BadField {
            path: name.clone(),
            field: "link name",
            detail: "missing".into(),
        })?;
        String::from_utf8(bytes.into_owned()).map_err(|_| ReadError::NotUtf8 {
            path: name.clone(),
            what: "link name",
        })
    };
    let device = |field: &'static str, v: io::Result<Option<u32>>| -> Result<u32> {
        Ok(v.map_err(|e| bad(field, e))?.unwrap_or(0))
    };

    use ::tar::EntryType as T;
    let kind = match typ {
        T::Regular | T::Continuous if name.ends_with('/') => EntryKind::Dir,
        T::Regular | T::Continuous => EntryKind::File { size: raw.size() },
        T::GNUSparse => EntryKind::File {
            size: header.size().map_err(|e| bad("size", e))?,
        },
        T::Directory => EntryKind::Dir,
        T::Symlink => EntryKind::Symlink { target: link()? },
        T::Link => {
            let target = link()?;
            match safe_relative(&target) {
                Ok(Some(t)) => EntryKind::HardLink { target: t },
                _ => {
                    return Err(ReadError::UnsafePath {
                        path: name.clone(),
                        what: "hard link target",
                        value: target,
                    })
                }
            }
        }
        T::Char => EntryKind::CharDevice {
            major: device("device major", header.device_major())?,
            minor: device("device minor", header.device_minor())?,
        },
        T::Block => EntryKind::BlockDevice {
            major: device("device major", header.device_major())?,
            minor: device("device minor", header.device_minor())?,
        },
        T::Fifo => EntryKind::Fifo,
        other => {
            return Err(ReadError::UnsupportedType {
                path: name.clone(),
                typeflag: other.as_byte() as char,
            })
        }
    };
    Ok(Some(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    }))
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
}
