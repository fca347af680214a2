//! The built-in RUN sandbox: Linux namespaces, a private mount table and `pivot_root`, with no
//! external runtime.
//!
//! It gives a RUN command the container BuildKit gives it through runc: PID, IPC, UTS and mount
//! namespaces (and a network namespace holding only `lo` for `--network=none`), `/proc`, a
//! minimal `/dev`, read-only `/sys`, generated `/etc/hosts` and `/etc/resolv.conf`, Docker's
//! default capabilities, masked and read-only `/proc` paths, `no_new_privs`, the requested user,
//! groups, environment, working directory and host name. One kernel concept per module:
//! [`namespaces`], [`rootfs`] (path resolution, mount-point stubs, pivot_root), [`mounts`],
//! [`devices`], [`caps`], [`spawn`] (the parent side) and [`helper`] (the helper side).
//!
//! # The helper mechanism
//!
//! The builder is multi-threaded and must never fork without exec, so the executor re-executes
//! a binary as a small single-threaded helper: by default `/proc/self/exe` (the running
//! program), or the path in [`SandboxOptions::helper`]. The binary must call
//! [`run_helper_if_requested`] as the very first thing in `main`:
//!
//! ```no_run
//! // First statement of `main`, before any thread exists:
//! rbuild::exec::sandbox::run_helper_if_requested();
//! // … the program's normal work …
//! ```
//!
//! When the first argument is [`helper::HELPER_ARG`], that call never returns: it reads the
//! JSON request from fd 3, runs the command and exits. Otherwise it returns at once. The
//! command's stdout and stderr are the helper's, which the executor streams to the
//! [`OutputSink`] as they arrive.
//!
//! A test binary run by libtest has no `main` of its own; it can register the call as an ELF
//! constructor (`#[used] #[unsafe(link_section = ".init_array")]`), which runs before libtest
//! starts any thread (see `builder/tests/it/sandbox.rs`).
//!
//! # Layer hygiene
//!
//! Mount points missing from the root (`/proc`, `/dev`, `/sys`, `/etc/hosts`,
//! `/etc/resolv.conf`, `RUN --mount` targets, the working directory) are created before the
//! run; after it, the sandbox's own ones are removed again if still empty and their parents'
//! timestamps restored, while mount targets and the working directory stay, as in BuildKit.
//! [`SandboxExecutor::run_reporting`] lists every created path and its fate.
//!
//! # Known deviations from BuildKit
//!
//! - The default network mode shares the host network (BuildKit's `host` provider, which
//!   `docker build` uses), not a CNI network.
//! - Device nodes are bind-mounted from the host instead of created with `mknod`.
//! - No seccomp profile, no AppArmor, no cgroup limits.
//! - `/etc/resolv.conf` is a copy of the host's, filtered of loopback name servers when the
//!   container has its own network (BuildKit does the same); no `/etc/hostname` is bound.
//! - A `RUN --mount` target on `/proc`, `/dev` or `/sys` is refused.
//! - The command runs as PID 1 of its PID namespace (as BuildKit with runc, without an init):
//!   signals from inside the namespace without a handler do not reach it, and its background
//!   children are killed when it exits.

pub mod caps;
pub mod devices;
pub mod helper;
pub mod mounts;
pub mod namespaces;
pub mod rootfs;
pub mod spawn;

use std::path::PathBuf;

use crate::exec::{Cancellation, ExecError, Executor, OutputSink, RunRequest};
pub use helper::HELPER_ARG;
use helper::{HelperResponse, Outcome};
pub use rootfs::{CreatedPath, StubKind, StubRole};

/// If this process was started as the sandbox helper, run it and exit; otherwise return.
///
/// Call it first thing in `main` of any binary that uses [`SandboxExecutor`] with the default
/// helper (`/proc/self/exe`), before any thread is started.
pub fn run_helper_if_requested() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| helper::is_helper_arg(&a))
    {
        helper::helper_main();
    }
}

/// Options of the built-in sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOptions {
    /// The binary re-executed as the helper; it must call [`run_helper_if_requested`].
    pub helper: PathBuf,
    /// The host file copied into containers as `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            helper: PathBuf::from("/proc/self/exe"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// The outcome of one run with the paths the sandbox created in the root filesystem.
#[derive(Debug)]
pub struct RunReport {
    /// Success, or why the command did not succeed.
    pub result: Result<(), ExecError>,
    /// Paths created in the root filesystem (mount points, working directory), in creation
    /// order, each saying whether it is still there (`kept`) after the sandbox's clean-up.
    pub created: Vec<CreatedPath>,
}

/// The built-in namespace sandbox executor.
#[derive(Debug, Clone, Default)]
pub struct SandboxExecutor {
    options: SandboxOptions,
}

impl SandboxExecutor {
    /// An executor with the given options.
    pub fn new(options: SandboxOptions) -> Self {
        Self { options }
    }

    /// The options in use.
    pub fn options(&self) -> &SandboxOptions {
        &self.options
    }

    /// Run `request` and report, besides the result, which paths were created in the root.
    pub fn run_reporting(
        &self,
        request: &RunRequest<'_>,
        output: &dyn OutputSink,
        cancel: &Cancellation,
    ) -> RunReport {
        let argv = request.argv.to_vec();
        let setup = |reason: String| RunReport {
            result: Err(ExecError::Setup {
                argv: argv.clone(),
                reason,
            }),
            created: vec![],
        };
        if cancel.is_cancelled() {
            return RunReport {
                result: Err(ExecError::Cancelled),
                created: vec![],
            };
        }
        if request.argv.is_empty() {
            return setup("empty command".into());
        }
        let req = helper::to_helper_request(request, &self.options.resolv_conf);
        let (mut child, sock) = match spawn::spawn_helper(&self.options.helper, &req) {
            Ok(x) => x,
            Err(e) => {
                return setup(format!(
                    "start helper {}: {e}",
                    self.options.helper.display()
                ))
            }
        };
        let mut on_cancel = |c: &mut std::process::Child| spawn::signal(c, libc::SIGTERM);
        let pumped = match spawn::pump(&mut child, Some(sock), output, cancel, &mut on_cancel) {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return setup(format!("wait for helper: {e}"));
            }
        };
        let response: HelperResponse = match serde_json::from_slice(&pumped.reply) {
            Ok(r) => r,
            Err(_) if pumped.cancelled => return RunReport { result: Err(ExecError::Cancelled), created: vec![] },
            Err(e) => {
                return setup(format!(
                    "helper {} ended with {} without a valid reply ({e}); does it call run_helper_if_requested()?",
                    self.options.helper.display(),
                    pumped.status
                ))
            }
        };
        let result = match response.outcome {
            Outcome::Exited(0) => Ok(()),
            Outcome::Exited(code) => Err(ExecError::ExitCode { argv, code }),
            Outcome::Signalled(signal) => Err(ExecError::Signalled { argv, signal }),
            Outcome::SetupFailed(reason) => Err(ExecError::Setup { argv, reason }),
            Outcome::Cancelled => Err(ExecError::Cancelled),
        };
        RunReport {
            result,
            created: response.created,
        }
    }
}

impl Executor for SandboxExecutor {
    fn run(
        &self,
        request: &RunRequest<'_>,
        output: &dyn OutputSink,
        cancel: &Cancellation,
    ) -> Result<(), ExecError> {
        self.run_reporting(request, output, cancel).result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::LogStream;
    use crate::graph::{NetworkMode, SecurityMode};
    use std::path::Path;

    struct Null;
    impl OutputSink for Null {
        fn write(&self, _: LogStream, _: &[u8]) {}
    }

    fn request<'a>(argv: &'a [String]) -> RunRequest<'a> {
        RunRequest {
            rootfs: Path::new("/nonexistent"),
            argv,
            env: &[],
            uid: 0,
            gid: 0,
            additional_gids: &[],
            cwd: "/",
            network: NetworkMode::None,
            security: SecurityMode::Sandbox,
            mounts: &[],
            hostname: "h",
        }
    }

    #[test]
    fn early_failures_table() {
        let argv = vec!["true".to_string()];
        let cancelled = Cancellation::new();
        cancelled.cancel();
        let missing = SandboxExecutor::new(SandboxOptions {
            helper: "/nonexistent/helper".into(),
            ..Default::default()
        });
        // /bin/true is not a helper: it exits 0 without replying.
        let not_helper = SandboxExecutor::new(SandboxOptions {
            helper: "/bin/true".into(),
            ..Default::default()
        });
        let cases: Vec<(&str, RunReport, &str)> = vec![
            (
                "cancelled before start",
                SandboxExecutor::default().run_reporting(&request(&argv), &Null, &cancelled),
                "cancelled",
            ),
            (
                "empty argv",
                SandboxExecutor::default().run_reporting(
                    &request(&[]),
                    &Null,
                    &Cancellation::new(),
                ),
                "empty command",
            ),
            (
                "missing helper",
                missing.run_reporting(&request(&argv), &Null, &Cancellation::new()),
                "start helper",
            ),
            (
                "binary is no helper",
                not_helper.run_reporting(&request(&argv), &Null, &Cancellation::new()),
                "run_helper_if_requested",
            ),
        ];
        for (name, report, want) in cases {
            let err = report.result.expect_err(name);
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }
}
