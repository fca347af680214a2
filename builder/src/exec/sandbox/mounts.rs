//! The mount table of a RUN container, as a plan of steps and its application.
//!
//! The plan follows the OCI spec BuildKit generates (containerd's defaults plus BuildKit's own
//! mounts): `/proc` (nosuid, noexec, nodev), a minimal `/dev` (see `devices`), `/sys` read-only,
//! a read-only bind of the generated `/etc/hosts` and of a copy of the host's
//! `/etc/resolv.conf` (BuildKit's `withROBind`), then the step's own mounts in order. After
//! that, Docker's masked `/proc` and `/sys` paths are hidden (an empty read-only tmpfs over a
//! directory, `/dev/null` over a file) and its read-only `/proc` paths are re-bound read-only.
//! With `--security=insecure` nothing is masked and `/sys` is writable, as in BuildKit.
//!
//! Every target is a host path already resolved inside the root (see `rootfs::secure_join`);
//! the plan is built before the fork and applied by PID 1 in its mount namespace, before
//! `pivot_root`. Planning is pure, so the whole table is unit-tested without root.

use std::path::{Path, PathBuf};

use super::devices;
use crate::exec::sys::{FileKind, MountArgs, SysResult, Syscall};
use crate::graph::{NetworkMode, SecurityMode};

/// Paths Docker and containerd mask in every container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker and containerd make read-only in every container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// BuildKit's default `/etc/hosts`, with the container's host name.
pub fn hosts_file(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The `resolv.conf` given to the container, from the host's: with a network of its own,
/// loopback name servers cannot be reached and are dropped, falling back to Google's public
/// servers when none is left (BuildKit's `resolvconf.FilterResolvDNS`).
pub fn resolv_conf(host: &str, network: NetworkMode) -> String {
    let own = super::namespaces::has_own_network(network);
    if !own {
        return host.to_string();
    }
    let is_loopback_ns = |line: &str| {
        let mut w = line.split_whitespace();
        w.next() == Some("nameserver")
            && w.next()
                .is_some_and(|a| a.starts_with("127.") || a == "::1")
    };
    let mut out: String = host
        .lines()
        .filter(|l| !is_loopback_ns(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if !out
        .lines()
        .any(|l| l.split_whitespace().next() == Some("nameserver"))
    {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// One step of the in-namespace set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    /// A `mount(2)` call.
    Mount(MountArgs),
    /// Create a directory (inside a fresh tmpfs).
    Mkdir(PathBuf),
    /// Create an empty file (inside a fresh tmpfs).
    CreateFile(PathBuf),
    /// Create a symbolic link.
    Symlink {
        /// What the link points to.
        target: PathBuf,
        /// Where the link is created.
        link: PathBuf,
    },
    /// Hide a path if it exists: read-only tmpfs over a directory, `/dev/null` over a file.
    Mask(PathBuf),
    /// Re-bind a path read-only if it exists.
    ReadOnly(PathBuf),
}

/// A bind mount requested by the step, with its resolved host target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host source.
    pub source: PathBuf,
    /// Host path of the target inside the root.
    pub target: PathBuf,
    /// Mount read-only.
    pub readonly: bool,
}

/// Everything the plan needs, with every path already resolved on the host.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The root filesystem.
    pub root: &'a Path,
    /// Host path of the root's `/proc`, `/dev`, `/sys`.
    pub proc_dir: PathBuf,
    /// See `proc_dir`.
    pub dev_dir: PathBuf,
    /// See `proc_dir`.
    pub sys_dir: PathBuf,
    /// Generated hosts file and the target it is bound onto.
    pub hosts: (PathBuf, PathBuf),
    /// Generated resolv.conf and the target it is bound onto.
    pub resolv: (PathBuf, PathBuf),
    /// The step's own mounts, in order.
    pub binds: Vec<BindMount>,
    /// Security mode.
    pub security: SecurityMode,
}

fn m(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> MountStep {
    MountStep::Mount(MountArgs {
        source: source.map(Path::to_path_buf),
        target: target.to_path_buf(),
        fstype: fstype.map(str::to_string),
        flags,
        data: data.map(str::to_string),
    })
}

fn bind(source: &Path, target: &Path, readonly: bool) -> Vec<MountStep> {
    let mut out = vec![m(
        Some(source),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )];
    if readonly {
        out.push(m(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        ));
    }
    out
}

/// Build the ordered mount plan.
pub fn plan(input: &PlanInput<'_>) -> Vec<MountStep> {
    let strict = input.security == SecurityMode::Sandbox;
    let mut steps = vec![m(
        Some(Path::new("proc")),
        &input.proc_dir,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV,
        None,
    )];
    steps.extend(devices::steps(&input.dev_dir));
    let sys_flags = libc::MS_NOSUID
        | libc::MS_NOEXEC
        | libc::MS_NODEV
        | if strict { libc::MS_RDONLY } else { 0 };
    steps.push(m(
        Some(Path::new("sysfs")),
        &input.sys_dir,
        Some("sysfs"),
        sys_flags,
        None,
    ));
    if strict {
        for p in MASKED_PATHS {
            steps.push(MountStep::Mask(input.root.join(&p[1..])));
        }
        for p in READONLY_PATHS {
            steps.push(MountStep::ReadOnly(input.root.join(&p[1..])));
        }
    }
    steps.extend(bind(&input.hosts.0, &input.hosts.1, true));
    steps.extend(bind(&input.resolv.0, &input.resolv.1, true));
    for b in &input.binds {
        steps.extend(bind(&b.source, &b.target, b.readonly));
    }
    steps
}

/// Apply a plan, step by step, stopping at the first failure.
pub fn apply(sys: &dyn Syscall, steps: &[MountStep]) -> SysResult<()> {
    for step in steps {
        match step {
            MountStep::Mount(args) => sys.mount(args)?,
            MountStep::Mkdir(p) => sys.mkdir(p, 0o755)?,
            MountStep::CreateFile(p) => sys.create_file(p, 0o644)?,
            MountStep::Symlink { target, link } => sys.symlink(target, link)?,
            MountStep::Mask(p) => match sys.stat_kind(p) {
                Some(FileKind::Dir) => sys.mount(&MountArgs {
                    source: Some(PathBuf::from("tmpfs")),
                    target: p.clone(),
                    fstype: Some("tmpfs".into()),
                    flags: libc::MS_RDONLY,
                    data: None,
                })?,
                Some(_) => sys.mount(&MountArgs {
                    source: Some(PathBuf::from("/dev/null")),
                    target: p.clone(),
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                })?,
                None => {}
            },
            MountStep::ReadOnly(p) => {
                if sys.stat_kind(p).is_some() {
                    for s in bind(p, p, true) {
                        if let MountStep::Mount(a) = s {
                            sys.mount(&a)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};

    fn input(security: SecurityMode) -> PlanInput<'static> {
        let r = Path::new("/r");
        PlanInput {
            root: r,
            proc_dir: r.join("proc"),
            dev_dir: r.join("dev"),
            sys_dir: r.join("sys"),
            hosts: ("/t/hosts".into(), r.join("etc/hosts")),
            resolv: ("/t/resolv.conf".into(), r.join("etc/resolv.conf")),
            binds: vec![
                BindMount {
                    source: "/cache".into(),
                    target: r.join("root/.cache"),
                    readonly: false,
                },
                BindMount {
                    source: "/ctx".into(),
                    target: r.join("src"),
                    readonly: true,
                },
            ],
            security,
        }
    }

    fn targets(steps: &[MountStep]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                MountStep::Mount(a) if a.flags & libc::MS_REMOUNT == 0 => {
                    Some(a.target.display().to_string())
                }
                _ => None,
            })
            .filter(|t| !t.starts_with("/r/dev/"))
            .collect()
    }

    #[test]
    fn plan_order_sandbox_and_insecure() {
        let sandbox = plan(&input(SecurityMode::Sandbox));
        assert_eq!(
            targets(&sandbox),
            [
                "/r/proc",
                "/r/dev",
                "/r/sys",
                "/r/etc/hosts",
                "/r/etc/resolv.conf",
                "/r/root/.cache",
                "/r/src"
            ]
        );
        let masks = sandbox
            .iter()
            .filter(|s| matches!(s, MountStep::Mask(_)))
            .count();
        let ro = sandbox
            .iter()
            .filter(|s| matches!(s, MountStep::ReadOnly(_)))
            .count();
        assert_eq!((masks, ro), (MASKED_PATHS.len(), READONLY_PATHS.len()));
        assert!(sandbox.contains(&MountStep::Mask("/r/proc/kcore".into())));
        let sys_ro = sandbox.iter().any(|s| {
            matches!(s, MountStep::Mount(a)
            if a.fstype.as_deref() == Some("sysfs") && a.flags & libc::MS_RDONLY != 0)
        });
        assert!(sys_ro, "sysfs is read-only in the sandbox");

        let insecure = plan(&input(SecurityMode::Insecure));
        assert!(!insecure
            .iter()
            .any(|s| matches!(s, MountStep::Mask(_) | MountStep::ReadOnly(_))));
        // read-only user mount gets a remount, the writable one does not
        let remounts: Vec<_> = insecure
            .iter()
            .filter_map(|s| match s {
                MountStep::Mount(a) if a.flags & libc::MS_REMOUNT != 0 => {
                    Some(a.target.display().to_string())
                }
                _ => None,
            })
            .collect();
        assert_eq!(remounts, ["/r/etc/hosts", "/r/etc/resolv.conf", "/r/src"]);
    }

    #[test]
    fn masks_follow_the_kind_of_path() {
        let sys = RecordingSyscall::new();
        sys.set_kind("/r/proc/acpi", FileKind::Dir);
        sys.set_kind("/r/proc/kcore", FileKind::File);
        sys.set_kind("/r/proc/sys", FileKind::Dir);
        let steps = [
            MountStep::Mask("/r/proc/acpi".into()),
            MountStep::Mask("/r/proc/kcore".into()),
            MountStep::Mask("/r/proc/missing".into()),
            MountStep::ReadOnly("/r/proc/sys".into()),
            MountStep::ReadOnly("/r/proc/missing".into()),
        ];
        apply(&sys, &steps).expect("recorded");
        let calls = sys.calls();
        assert_eq!(calls.len(), 4);
        assert!(
            matches!(&calls[0], Call::Mount(a) if a.fstype.as_deref() == Some("tmpfs") && a.flags == libc::MS_RDONLY)
        );
        assert!(
            matches!(&calls[1], Call::Mount(a) if a.source.as_deref() == Some(Path::new("/dev/null")))
        );
        assert!(
            matches!(&calls[2], Call::Mount(a) if a.source.as_deref() == Some(Path::new("/r/proc/sys")))
        );
        assert!(matches!(&calls[3], Call::Mount(a) if a.flags & libc::MS_RDONLY != 0));
    }

    #[test]
    fn hosts_and_resolv_conf() {
        assert_eq!(
            hosts_file("step-1"),
            "127.0.0.1\tlocalhost step-1\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
        let host = "search lan\nnameserver 127.0.0.53\n";
        assert_eq!(resolv_conf(host, NetworkMode::Host), host);
        assert_eq!(
            resolv_conf(host, NetworkMode::None),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("nameserver 10.0.0.1\n", NetworkMode::None),
            "nameserver 10.0.0.1\n"
        );
    }
}
