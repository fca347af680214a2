//! The container's minimal `/dev`.
//!
//! Follows runc's default device set for OCI containers, as Docker and BuildKit get it: a tmpfs
//! on `/dev` (mode 755) holding `null`, `zero`, `full`, `random`, `urandom` and `tty`, each
//! bind-mounted from the host's node (so no `mknod` is needed), a private `devpts` instance on
//! `/dev/pts` with `/dev/ptmx` linking to its `ptmx`, a tmpfs on `/dev/shm`, and the `fd`,
//! `stdin`, `stdout`, `stderr` links into `/proc/self/fd`. Everything lives on the tmpfs, so none
//! of it reaches the layer.

use std::path::{Path, PathBuf};

use super::mounts::MountStep;
use crate::exec::sys::MountArgs;

/// Device nodes bind-mounted from the host.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Symbolic links created in `/dev`: (link name, target).
pub const LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

fn mount(
    source: Option<&str>,
    target: PathBuf,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> MountStep {
    MountStep::Mount(MountArgs {
        source: source.map(PathBuf::from),
        target,
        fstype: fstype.map(str::to_string),
        flags,
        data: data.map(str::to_string),
    })
}

/// The steps that build `/dev` at the host path `dev` (the root's `/dev`, already existing).
pub fn steps(dev: &Path) -> Vec<MountStep> {
    let mut out = vec![mount(
        Some("tmpfs"),
        dev.to_path_buf(),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )];
    for name in DEVICES {
        let target = dev.join(name);
        out.push(MountStep::CreateFile(target.clone()));
        out.push(mount(
            Some(&format!("/dev/{name}")),
            target,
            None,
            libc::MS_BIND,
            None,
        ));
    }
    out.push(MountStep::Mkdir(dev.join("pts")));
    out.push(mount(
        Some("devpts"),
        dev.join("pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ));
    out.push(MountStep::Mkdir(dev.join("shm")));
    out.push(mount(
        Some("shm"),
        dev.join("shm"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    ));
    for (name, target) in LINKS {
        out.push(MountStep::Symlink {
            target: PathBuf::from(target),
            link: dev.join(name),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_is_a_tmpfs_with_bound_nodes_pts_and_shm() {
        let s = steps(Path::new("/r/dev"));
        assert!(
            matches!(&s[0], MountStep::Mount(m) if m.fstype.as_deref() == Some("tmpfs") && m.target == Path::new("/r/dev"))
        );
        for name in DEVICES {
            let bound = s.iter().any(|x| {
                matches!(x, MountStep::Mount(m)
                if m.source.as_deref() == Some(Path::new(&format!("/dev/{name}")))
                && m.target == Path::new("/r/dev").join(name)
                && m.flags == libc::MS_BIND)
            });
            assert!(bound, "{name} is bind-mounted from the host");
        }
        assert!(s.iter().any(|x| matches!(x, MountStep::Mount(m)
            if m.fstype.as_deref() == Some("devpts") && m.data.as_deref().is_some_and(|d| d.contains("newinstance")))));
        assert!(s
            .iter()
            .any(|x| matches!(x, MountStep::Symlink { target, link }
            if target == Path::new("pts/ptmx") && link == Path::new("/r/dev/ptmx"))));
        assert!(s
            .iter()
            .any(|x| matches!(x, MountStep::Mount(m) if m.target == Path::new("/r/dev/shm"))));
    }
}
