//! The boundary between the solver and whatever runs a RUN step's command.
//!
//! The scheduler prepares a root filesystem and resolved mounts for a [`crate::graph::RunOp`],
//! then calls an [`Executor`]. Implementations (a namespace sandbox, runc, a test recorder) live
//! behind this trait so the solver needs no root and no syscalls; this module defines the
//! contract only. It follows BuildKit's `executor.Executor` split: the solver owns snapshots and
//! mounts, the executor owns process lifecycle. Executors must honour the cancellation flag
//! (kill the process and return [`ExecError::Cancelled`]) and must never print: output goes
//! through the [`OutputSink`] given with each request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::events::LogStream;
use crate::graph::{NetworkMode, SecurityMode};

/// A mount prepared by the solver, ready to bind into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMount {
    /// Host path of the prepared directory or file.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount read-only.
    pub readonly: bool,
}

/// Everything an executor needs to run one command.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// The container's root filesystem (a writable, prepared directory).
    pub rootfs: &'a Path,
    /// Program and arguments, already wrapped in the shell for shell form.
    pub argv: &'a [String],
    /// Environment, in order.
    pub env: &'a [(String, String)],
    /// Resolved numeric user id.
    pub uid: u32,
    /// Resolved numeric group id.
    pub gid: u32,
    /// Supplementary groups of the user.
    pub additional_gids: &'a [u32],
    /// Working directory inside the container (exists before the call).
    pub cwd: &'a str,
    /// Network mode.
    pub network: NetworkMode,
    /// Security mode.
    pub security: SecurityMode,
    /// Mounts, in order (later targets may sit under earlier ones).
    pub mounts: &'a [PreparedMount],
    /// Host name to give the container.
    pub hostname: &'a str,
}

/// Where an executor writes the process's output, line-buffered or in chunks.
pub trait OutputSink: Send + Sync {
    /// Deliver bytes from one stream.
    fn write(&self, stream: LogStream, bytes: &[u8]);
}

/// The cancellation flag shared between the scheduler and running work.
#[derive(Debug, Default)]
pub struct Cancellation {
    flag: AtomicBool,
}

impl Cancellation {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask running work to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// True once [`Cancellation::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The command ran and exited with a non-zero code.
    #[error("process {argv:?} exited with code {code}")]
    ExitCode {
        /// The command.
        argv: Vec<String>,
        /// Its exit code.
        code: i32,
    },
    /// The command was killed by a signal.
    #[error("process {argv:?} was killed by signal {signal}")]
    Signalled {
        /// The command.
        argv: Vec<String>,
        /// The signal number.
        signal: i32,
    },
    /// The sandbox could not be set up or the process could not start.
    #[error("cannot start {argv:?}: {reason}")]
    Setup {
        /// The command.
        argv: Vec<String>,
        /// What failed, with its evidence.
        reason: String,
    },
    /// The build was cancelled while the command ran.
    #[error("cancelled")]
    Cancelled,
}

/// Runs one command in a prepared root filesystem.
pub trait Executor: Send + Sync {
    /// Run `request` to completion, streaming output to `output`, checking `cancel`.
    fn run(
        &self,
        request: &RunRequest<'_>,
        output: &dyn OutputSink,
        cancel: &Cancellation,
    ) -> Result<(), ExecError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A recording executor, as tests of the solver will use it.
    struct Recorder {
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Executor for Recorder {
        fn run(
            &self,
            r: &RunRequest<'_>,
            output: &dyn OutputSink,
            cancel: &Cancellation,
        ) -> Result<(), ExecError> {
            if cancel.is_cancelled() {
                return Err(ExecError::Cancelled);
            }
            self.calls
                .lock()
                .expect("not poisoned")
                .push(r.argv.to_vec());
            output.write(LogStream::Stdout, b"ok\n");
            Ok(())
        }
    }

    struct Lines(Mutex<Vec<u8>>);

    impl OutputSink for Lines {
        fn write(&self, _stream: LogStream, bytes: &[u8]) {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
        }
    }

    #[test]
    fn executor_contract_is_object_safe_and_cancellable() {
        let rec = Recorder {
            calls: Mutex::new(vec![]),
        };
        let exec: &dyn Executor = &rec;
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), "true".to_string()];
        let req = RunRequest {
            rootfs: Path::new("/nonexistent"),
            argv: &argv,
            env: &[],
            uid: 0,
            gid: 0,
            additional_gids: &[],
            cwd: "/",
            network: NetworkMode::None,
            security: SecurityMode::Sandbox,
            mounts: &[],
            hostname: "buildkitsandbox",
        };
        let out = Lines(Mutex::new(vec![]));
        let cancel = Cancellation::new();
        exec.run(&req, &out, &cancel).expect("recorder succeeds");
        cancel.cancel();
        assert!(matches!(
            exec.run(&req, &out, &cancel),
            Err(ExecError::Cancelled)
        ));
        assert_eq!(rec.calls.lock().expect("not poisoned").len(), 1);
        assert_eq!(out.0.lock().expect("not poisoned").as_slice(), b"ok\n");
    }
}
pub mod foreign;
pub mod runc;
pub mod sandbox;
pub mod sys;
