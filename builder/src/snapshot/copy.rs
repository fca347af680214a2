//! Copied snapshots: the fallback where overlayfs cannot be mounted.
//!
//! [`merge_layers`] applies unpacked layers, bottom first, into one directory the way overlayfs
//! would present them: a character device 0/0 deletes the path below it (an overlay whiteout,
//! as `rbuild_layers::tar::extract::WhiteoutMode::Overlay` writes them), a directory carrying
//! `trusted.overlay.opaque=y` hides what lower layers had in it. [`copy_tree`] copies one tree
//! verbatim. Both keep file type, mode, owner, timestamps, extended attributes (overlay's own
//! `trusted.overlay.*` excepted) and hard links within one source tree; regular files are cloned
//! with `FICLONE` where the file system supports reflinks, and copied otherwise. Walks are sorted
//! by name so the result never depends on directory order. Symlinks are copied, never followed.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A copy step failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct CopyError {
    /// The operation.
    pub op: &'static str,
    /// The path it was applied to.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, CopyError>;

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The attribute marking an opaque overlay directory.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Apply `layers` (bottom first, overlay whiteout form) into `dest`, which must exist.
pub fn merge_layers(layers: &[PathBuf], dest: &Path) -> Result<()> {
    for layer in layers {
        let mut links = BTreeMap::new();
        copy_dir(layer, dest, true, &mut links)?;
    }
    Ok(())
}

/// Copy the tree `src` into `dest` (which must exist) verbatim.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let mut links = BTreeMap::new();
    copy_dir(src, dest, false, &mut links)?;
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let mut v = fs::read_dir(dir)
        .map_err(err("read directory", dir))?
        .collect::<io::Result<Vec<_>>>()
        .map_err(err("read directory", dir))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path).map_err(err("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(err("remove", path)),
        Err(_) => Ok(()),
    }
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Copy the contents of directory `src` into directory `dst`, then `src`'s metadata onto `dst`.
fn copy_dir(
    src: &Path,
    dst: &Path,
    overlay: bool,
    links: &mut BTreeMap<(u64, u64), PathBuf>,
) -> Result<()> {
    for entry in sorted_entries(src)? {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from).map_err(err("stat", &from))?;
        if overlay && is_whiteout(&md) {
            remove_any(&to)?;
            continue;
        }
        if md.is_dir() {
            let opaque = overlay && get_xattr(&from, OPAQUE_XATTR).is_some_and(|v| v == b"y");
            match fs::symlink_metadata(&to) {
                Ok(existing) if existing.is_dir() && !opaque => {}
                Ok(_) => {
                    remove_any(&to)?;
                    fs::create_dir(&to).map_err(err("mkdir", &to))?;
                }
                Err(_) => fs::create_dir(&to).map_err(err("mkdir", &to))?,
            }
            copy_dir(&from, &to, overlay, links)?;
            continue;
        }
        remove_any(&to)?;
        if md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &to).map_err(err("link", &to))?;
                continue;
            }
            links.insert((md.dev(), md.ino()), to.clone());
        }
        copy_node(&from, &to, &md)?;
        copy_meta(&from, &to, &md)?;
    }
    let md = fs::symlink_metadata(src).map_err(err("stat", src))?;
    copy_meta(src, dst, &md)
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| CopyError {
        op: "encode",
        path: p.to_path_buf(),
        source: io::ErrorKind::InvalidInput.into(),
    })
}

/// Create `to` as a copy of the non-directory `from`.
fn copy_node(from: &Path, to: &Path, md: &fs::Metadata) -> Result<()> {
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(err("readlink", from))?;
        return std::os::unix::fs::symlink(&target, to).map_err(err("symlink", to));
    }
    if ft.is_file() {
        return clone_file(from, to);
    }
    // Devices, fifos, sockets: recreate the node itself.
    let c = cpath(to)?;
    // SAFETY: valid C string; mode and rdev come from the source's stat.
    let rc = unsafe { libc::mknod(c.as_ptr(), md.mode(), md.rdev()) };
    if rc < 0 {
        return Err(CopyError {
            op: "mknod",
            path: to.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Reflink `from` to `to` when the file system can, else copy the bytes.
fn clone_file(from: &Path, to: &Path) -> Result<()> {
    let src = fs::File::open(from).map_err(err("open", from))?;
    let dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(err("create", to))?;
    use std::os::fd::AsRawFd;
    // SAFETY: FICLONE takes the source fd as its argument; both fds are open.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if rc == 0 {
        return Ok(());
    }
    let mut src = src;
    let mut dst = dst;
    io::copy(&mut src, &mut dst).map_err(err("copy", to))?;
    Ok(())
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c = cpath(path).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings and a buffer of the given length.
        let rc =
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if rc >= 0 {
            buf.truncate(rc as usize);
            return Some(buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return None;
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// The names of `path`'s extended attributes (the link itself, not its target), sorted; empty
/// when they cannot be listed.
pub(crate) fn xattr_names(path: &Path) -> Vec<Vec<u8>> {
    let Ok(c) = cpath(path) else {
        return Vec::new();
    };
    // SAFETY: a null buffer asks for the needed size.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: buffer of the given length.
    let got = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got <= 0 {
        return Vec::new();
    }
    buf.truncate(got as usize);
    let mut names: Vec<Vec<u8>> = buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    names.sort();
    names
}

/// Copy owner, mode, extended attributes and timestamps from `from` to `to`.
fn copy_meta(from: &Path, to: &Path, md: &fs::Metadata) -> Result<()> {
    let is_link = md.file_type().is_symlink();
    std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid())).map_err(err("chown", to))?;
    if !is_link {
        // After chown, which clears set-id bits.
        fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(err("chmod", to))?;
    }
    let c = cpath(to)?;
    for name in xattr_names(from) {
        let text = String::from_utf8_lossy(&name);
        if rbuild_layers::whiteout::is_overlay_xattr(&text) {
            continue;
        }
        let Some(value) = get_xattr(from, &text) else {
            continue;
        };
        let Ok(n) = CString::new(name) else { continue };
        // SAFETY: valid C strings and a value buffer of the given length.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc < 0 {
            return Err(CopyError {
                op: "setxattr",
                path: to.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
    }
    set_times(&c, times_of(md)).map_err(err("utimensat", to))
}

/// A file's access and modification times as `(seconds, nanoseconds)` pairs, the shape
/// [`set_times`] takes.
pub(crate) fn times_of(md: &fs::Metadata) -> [(i64, i64); 2] {
    [(md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec())]
}

/// Set `path`'s access and modification times (nanosecond precision) without following a
/// final symlink.
pub(crate) fn set_times(
    path: &CStr,
    [(asec, ansec), (msec, mnsec)]: [(i64, i64); 2],
) -> io::Result<()> {
    let ts = [
        libc::timespec {
            tv_sec: asec,
            tv_nsec: ansec,
        },
        libc::timespec {
            tv_sec: msec,
            tv_nsec: mnsec,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, s).expect("write");
    }

    fn whiteout(p: &Path) {
        let c = cpath(p).expect("path");
        // SAFETY: valid C string; a 0/0 character device is an overlay whiteout.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
        assert_eq!(rc, 0, "mknod whiteout (needs root)");
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in sorted_entries(dir).expect("read") {
                let p = e.path();
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string();
                let md = fs::symlink_metadata(&p).expect("stat");
                if md.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else if md.file_type().is_symlink() {
                    out.push(format!(
                        "{rel} -> {}",
                        fs::read_link(&p).expect("link").display()
                    ));
                } else {
                    out.push(format!(
                        "{rel}={}",
                        fs::read_to_string(&p).unwrap_or_default()
                    ));
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn merge_applies_whiteouts_and_opaque_dirs() {
        let t = tempfile::tempdir().expect("tempdir");
        let (l0, l1, out) = (
            t.path().join("l0"),
            t.path().join("l1"),
            t.path().join("out"),
        );
        write(&l0.join("keep.txt"), "k");
        write(&l0.join("gone.txt"), "g");
        write(&l0.join("dir/old.txt"), "o");
        write(&l0.join("opaque/hidden.txt"), "h");
        std::os::unix::fs::symlink("keep.txt", l0.join("link")).expect("symlink");
        fs::create_dir_all(&l1).expect("mkdir");
        whiteout(&l1.join("gone.txt"));
        write(&l1.join("dir/new.txt"), "n");
        write(&l1.join("opaque/visible.txt"), "v");
        let c = cpath(&l1.join("opaque")).expect("path");
        // SAFETY: valid C strings and value.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "set opaque xattr (needs root)");
        fs::create_dir(&out).expect("mkdir");
        merge_layers(&[l0, l1], &out).expect("merge");
        assert_eq!(
            listing(&out),
            [
                "dir/",
                "dir/new.txt=n",
                "dir/old.txt=o",
                "keep.txt=k",
                "link -> keep.txt",
                "opaque/",
                "opaque/visible.txt=v"
            ]
        );
        assert!(
            get_xattr(&out.join("opaque"), OPAQUE_XATTR).is_none(),
            "overlay attributes are not copied"
        );
    }

    #[test]
    fn copy_keeps_metadata_and_hard_links() {
        let t = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        write(&src.join("a/file"), "x");
        fs::hard_link(src.join("a/file"), src.join("a/hard")).expect("link");
        std::os::unix::fs::lchown(src.join("a/file"), Some(1234), Some(5678)).expect("chown");
        fs::set_permissions(src.join("a/file"), fs::Permissions::from_mode(0o4750)).expect("chmod");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::open(src.join("a"))
            .expect("open")
            .set_modified(old)
            .expect("mtime");
        fs::create_dir(&dst).expect("mkdir");
        copy_tree(&src, &dst).expect("copy");
        let md = fs::metadata(dst.join("a/file")).expect("stat");
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o4750, 1234, 5678)
        );
        assert_eq!(
            md.ino(),
            fs::metadata(dst.join("a/hard")).expect("stat").ino(),
            "hard link kept"
        );
        assert_eq!(
            fs::metadata(dst.join("a"))
                .expect("stat")
                .modified()
                .expect("mtime"),
            old
        );
    }
}
