//! Reading extended attributes from the file system, the one implementation shared by the tar
//! writer ([`crate::tar::write`]) and the diff ([`crate::diff`]).
//!
//! Symlinks are never followed (`llistxattr`/`lgetxattr`), as containerd's and BuildKit's tar
//! writers do. Buffers grow instead of being sized by a zero-length query first: overlayfs answers
//! such a query on a merged path with a size that does not match what a read then returns (it
//! counted 0 for a file whose lower copy carries attributes), so the attributes were silently
//! lost. Reads start with a 4 KiB buffer and double on `ERANGE` up to the kernel maximum
//! (`XATTR_LIST_MAX` = `XATTR_SIZE_MAX` = 64 KiB).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use rustix::io::Errno;

/// The first buffer size tried.
const START: usize = 4 * 1024;
/// The kernel's limit on a name list and on one value (`XATTR_LIST_MAX`, `XATTR_SIZE_MAX`).
const MAX: usize = 64 * 1024;

/// Why the extended attributes of a path could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XattrError {
    /// Listing the attribute names failed.
    #[error("list xattrs: {0}")]
    List(#[source] io::Error),
    /// Reading one attribute's value failed.
    #[error("read xattr {name}: {source}")]
    Get {
        /// The attribute.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An attribute name is not UTF-8.
    #[error("xattr name {0:?} is not valid utf-8")]
    NotUtf8(String),
}

/// Every extended attribute of `path` (a final symlink is not followed), by name; an empty map on
/// file systems without xattr support. An attribute removed between listing and reading is left
/// out.
pub fn read_all(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, XattrError> {
    let mut out = BTreeMap::new();
    let names = match grow(|buf| rustix::fs::llistxattr(path, buf)) {
        Ok(names) => names,
        Err(Errno::OPNOTSUPP) => return Ok(out),
        Err(e) => return Err(XattrError::List(e.into())),
    };
    for raw in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(raw)
            .map_err(|_| XattrError::NotUtf8(String::from_utf8_lossy(raw).into_owned()))?;
        match grow(|buf| rustix::fs::lgetxattr(path, name, buf)) {
            Ok(value) => {
                out.insert(name.to_string(), value);
            }
            Err(Errno::NODATA) => {}
            Err(e) => {
                return Err(XattrError::Get {
                    name: name.to_string(),
                    source: e.into(),
                })
            }
        }
    }
    Ok(out)
}

/// Call `read` with a growing buffer (4 KiB, doubling on `ERANGE`, at most 64 KiB) and return
/// the bytes it filled.
fn grow(mut read: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; START];
    loop {
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < MAX => {
                let len = (buf.len() * 2).min(MAX);
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_doubles_until_it_fits_and_stops_at_the_maximum() {
        let cases: &[(usize, Result<usize, Errno>, &[usize])] = &[
            (10, Ok(10), &[START]),
            (START, Ok(START), &[START]),
            (START + 1, Ok(START + 1), &[START, 2 * START]),
            (MAX, Ok(MAX), &[START, 2 * START, 4 * START, 8 * START, MAX]),
            (
                MAX + 1,
                Err(Errno::RANGE),
                &[START, 2 * START, 4 * START, 8 * START, MAX],
            ),
        ];
        for (need, want, sizes) in cases {
            let mut seen = Vec::new();
            let got = grow(|buf| {
                seen.push(buf.len());
                if buf.len() >= *need {
                    buf[..*need].fill(7);
                    Ok(*need)
                } else {
                    Err(Errno::RANGE)
                }
            });
            assert_eq!(got.map(|v| v.len()), *want, "need {need}");
            assert_eq!(&seen, sizes, "need {need}");
        }
    }

    #[test]
    fn reads_large_and_binary_values() {
        // tmpfs takes values up to the kernel maximum (ext4 stops at one block), so the buffer
        // really has to grow; mounting needs root, as the overlay tests do.
        let dir = tempfile::tempdir().expect("tempdir");
        rustix::mount::mount(
            "tmpfs",
            dir.path(),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mount tmpfs (tests run as root)");
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = rustix::mount::unmount(self.0, rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _unmount = Unmount(dir.path());
        let f = dir.path().join("f");
        std::fs::write(&f, "x").expect("write");
        let big: Vec<u8> = (0..MAX as u32).map(|i| (i % 251) as u8).collect();
        let long_names: Vec<String> = (0..40).map(|i| format!("user.{i:0>200}")).collect();
        let mut cases: Vec<(&str, &[u8])> = vec![
            ("user.empty", b""),
            ("user.nl", b"\n"),
            ("user.bin", b"\x01\x00\x00\x02\n\0"),
            ("user.big", &big[..10_000]),
            ("user.max", &big),
        ];
        // Enough names for the list itself to outgrow the first buffer.
        cases.extend(long_names.iter().map(|n| (n.as_str(), &b"v"[..])));
        for (name, value) in &cases {
            rustix::fs::lsetxattr(&f, *name, value, rustix::fs::XattrFlags::empty())
                .unwrap_or_else(|e| panic!("set {name}: {e}"));
        }
        let got = read_all(&f).expect("read");
        assert_eq!(got.len(), cases.len());
        for (name, value) in &cases {
            assert_eq!(got.get(*name).map(Vec::as_slice), Some(*value), "{name}");
        }
    }
}
