//! Capabilities and identity of the RUN process.
//!
//! Follows Docker's default capability set (moby `oci/caps/defaults.go`): CHOWN DAC_OVERRIDE
//! FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL
//! AUDIT_WRITE. Every other capability is dropped from the bounding set. A root process gets the
//! set as effective and permitted; the inheritable set is empty (as moby does since
//! CVE-2022-24769). A non-root user ends with empty effective and permitted sets, as under
//! Docker: `setresuid` to a non-zero uid clears them. `no_new_privs` is set in the sandbox mode.
//! `--security=insecure` keeps every capability and skips `no_new_privs`.

use crate::exec::sys::{CapSets, SysResult, Syscall};
use crate::graph::SecurityMode;

/// Docker's default capabilities: number and name.
pub const DEFAULT_CAPS: &[(u8, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// Every capability name, indexed by its number (as of Linux 5.9, `CAP_CHECKPOINT_RESTORE`).
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Names of the capabilities in `mask`, in number order (unknown numbers are skipped).
pub fn names(mask: u64) -> Vec<&'static str> {
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(n, _)| mask & (1u64 << n) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The highest capability number assumed when the kernel does not say.
pub const FALLBACK_LAST_CAP: u8 = 40;

/// Bit mask of [`DEFAULT_CAPS`].
pub fn default_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, (n, _)| m | (1u64 << n))
}

/// Bit mask of every capability up to `last_cap`.
pub fn all_mask(last_cap: u8) -> u64 {
    (0..=last_cap.min(63)).fold(0, |m, n| m | (1u64 << n))
}

/// The calling process's bounding set (`CapBnd` of `/proc/self/status`), or every capability
/// up to [`last_cap`] when it cannot be read. Nothing outside it can be granted.
pub fn current_bounding() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or_else(|| all_mask(last_cap()))
}

/// The capabilities the process keeps: Docker's default set in the sandbox, everything
/// available with `--security=insecure`.
pub fn kept(security: SecurityMode, bounding: u64) -> u64 {
    match security {
        SecurityMode::Sandbox => default_mask() & bounding,
        SecurityMode::Insecure => bounding,
    }
}

/// The kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(FALLBACK_LAST_CAP)
}

/// The user the process runs as.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: &'a [u32],
}

/// Drop the bounding set, switch user, set the capability sets, clear ambient capabilities and
/// set `no_new_privs`, in the order that keeps the needed privileges until they are used.
/// `bounding` is the bounding set the process starts with (see [`current_bounding`]).
pub fn apply(
    sys: &dyn Syscall,
    id: Identity<'_>,
    security: SecurityMode,
    bounding: u64,
) -> SysResult<()> {
    let keep = kept(security, bounding);
    // Bounding-set drops need CAP_SETPCAP, so they come first, while we are still full root.
    for cap in 0..64u8 {
        if bounding & (1u64 << cap) != 0 && keep & (1u64 << cap) == 0 {
            sys.cap_bound_drop(cap)?;
        }
    }
    sys.set_groups(id.groups)?;
    sys.set_ids(id.uid, id.gid)?;
    let sets = if id.uid == 0 {
        CapSets {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        }
    } else {
        CapSets::default()
    };
    sys.cap_set(sets)?;
    sys.ambient_clear()?;
    if security == SecurityMode::Sandbox {
        sys.no_new_privs()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};

    #[test]
    fn default_mask_is_dockers() {
        assert_eq!(default_mask(), 0x00000000a80425fb);
        for (n, name) in DEFAULT_CAPS {
            assert_eq!(CAP_NAMES[usize::from(*n)], *name);
        }
        assert_eq!(names(default_mask()).len(), DEFAULT_CAPS.len());
    }

    #[test]
    fn identity_and_caps_table() {
        struct Case {
            name: &'static str,
            uid: u32,
            security: SecurityMode,
            drops: usize,
            sets: CapSets,
            nnp: bool,
        }
        let dm = default_mask();
        let cases = [
            Case {
                name: "root sandbox",
                uid: 0,
                security: SecurityMode::Sandbox,
                drops: 41 - 14,
                sets: CapSets {
                    effective: dm,
                    permitted: dm,
                    inheritable: 0,
                },
                nnp: true,
            },
            Case {
                name: "user sandbox",
                uid: 1000,
                security: SecurityMode::Sandbox,
                drops: 41 - 14,
                sets: CapSets::default(),
                nnp: true,
            },
            Case {
                name: "root insecure",
                uid: 0,
                security: SecurityMode::Insecure,
                drops: 0,
                sets: CapSets {
                    effective: all_mask(40),
                    permitted: all_mask(40),
                    inheritable: 0,
                },
                nnp: false,
            },
            Case {
                name: "insecure within a reduced bounding set",
                uid: 0,
                security: SecurityMode::Insecure,
                drops: 0,
                sets: CapSets {
                    effective: all_mask(40) & !(1 << 24),
                    permitted: all_mask(40) & !(1 << 24),
                    inheritable: 0,
                },
                nnp: false,
            },
        ];
        for c in cases {
            let sys = RecordingSyscall::new();
            let bounding = if c.name.contains("reduced") {
                all_mask(40) & !(1 << 24)
            } else {
                all_mask(40)
            };
            apply(
                &sys,
                Identity {
                    uid: c.uid,
                    gid: 7,
                    groups: &[7, 9],
                },
                c.security,
                bounding,
            )
            .expect("recorded");
            let calls = sys.calls();
            let drops = calls
                .iter()
                .take_while(|x| matches!(x, Call::CapBoundDrop(_)))
                .count();
            assert_eq!(drops, c.drops, "{}", c.name);
            let rest = &calls[drops..];
            assert_eq!(rest[0], Call::Setgroups(vec![7, 9]), "{}", c.name);
            assert_eq!(rest[1], Call::SetIds { uid: c.uid, gid: 7 }, "{}", c.name);
            assert_eq!(rest[2], Call::Capset(c.sets), "{}", c.name);
            assert_eq!(rest[3], Call::AmbientClear, "{}", c.name);
            assert_eq!(rest.get(4) == Some(&Call::NoNewPrivs), c.nnp, "{}", c.name);
        }
    }
}
