//! Which Linux namespaces a RUN step gets, and entering them.
//!
//! Follows BuildKit's runc spec for a build container: new mount, PID, IPC and UTS namespaces;
//! a new network namespace only for `--network=none` (with only `lo`, brought up, as BuildKit's
//! "none" provider gives); `host` and the default mode keep the host network, which is what
//! BuildKit's default "host" network provider does for `docker build`. No user namespace: the
//! builder runs as root and files must keep their real owners.
//!
//! The helper process unshares PID, IPC, UTS (and NET) itself, so that its forked child is PID 1
//! of the new PID namespace; the child then unshares the mount namespace on its own, so that
//! `pivot_root` never changes the helper's view of the host (pivot_root moves every process of
//! the mount namespace whose root is the old root).

use crate::exec::sys::{SysResult, Syscall};
use crate::graph::NetworkMode;

/// Namespaces the helper unshares before forking the container's PID 1.
pub fn helper_flags(network: NetworkMode) -> i32 {
    let base = libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    match network {
        NetworkMode::None => base | libc::CLONE_NEWNET,
        NetworkMode::Default | NetworkMode::Host => base,
    }
}

/// Namespaces PID 1 unshares itself, before it touches any mount.
pub fn child_flags() -> i32 {
    libc::CLONE_NEWNS
}

/// True when the container gets a network namespace of its own.
pub fn has_own_network(network: NetworkMode) -> bool {
    helper_flags(network) & libc::CLONE_NEWNET != 0
}

/// Enter the helper's namespaces.
pub fn enter_helper(sys: &dyn Syscall, network: NetworkMode) -> SysResult<()> {
    sys.unshare(helper_flags(network))
}

/// Enter PID 1's own namespaces and bring up `lo` when the network namespace is private.
pub fn enter_child(sys: &dyn Syscall, network: NetworkMode) -> SysResult<()> {
    sys.unshare(child_flags())?;
    if has_own_network(network) {
        sys.loopback_up()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::sys::{Call, RecordingSyscall};

    #[test]
    fn namespace_flags_per_network_mode() {
        let common = libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        for (mode, want, own) in [
            (NetworkMode::None, common | libc::CLONE_NEWNET, true),
            (NetworkMode::Host, common, false),
            (NetworkMode::Default, common, false),
        ] {
            assert_eq!(helper_flags(mode), want, "{mode:?}");
            assert_eq!(has_own_network(mode), own, "{mode:?}");
            assert_eq!(
                helper_flags(mode) & libc::CLONE_NEWNS,
                0,
                "mount ns belongs to the child"
            );
        }
    }

    #[test]
    fn child_brings_up_loopback_only_without_network() {
        for (mode, want) in [
            (
                NetworkMode::None,
                vec![Call::Unshare(libc::CLONE_NEWNS), Call::LoopbackUp],
            ),
            (NetworkMode::Host, vec![Call::Unshare(libc::CLONE_NEWNS)]),
        ] {
            let sys = RecordingSyscall::new();
            enter_child(&sys, mode).expect("recorded");
            assert_eq!(sys.calls(), want, "{mode:?}");
        }
    }
}
