//! The parent side: starting a child process and pumping its output until it ends.
//!
//! The helper (or a `runc` process) is started with `std::process::Command`, which is safe in a
//! multi-threaded program; the only code run between fork and exec is a `dup2` of the request
//! socket onto fd 3 and `PR_SET_PDEATHSIG`, both async-signal-safe. [`pump`] then polls the
//! child's stdout and stderr (and the helper's reply socket), hands every chunk to the
//! [`OutputSink`] as it arrives, and checks the [`Cancellation`] flag between polls; on
//! cancellation it calls the caller's `on_cancel` once (SIGTERM to the helper, `runc kill` for
//! runc) and escalates to SIGKILL if the child is still there after a grace period.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::helper::{HelperRequest, HELPER_ARG, HELPER_FD};
use crate::events::LogStream;
use crate::exec::{Cancellation, OutputSink};

/// How long a cancelled child gets before it is killed outright.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Poll interval: the latency of noticing a cancellation.
const POLL_MS: i32 = 50;

/// What a pumped child left behind.
#[derive(Debug)]
pub struct Pumped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Bytes read from the reply socket, if there was one.
    pub reply: Vec<u8>,
    /// True when cancellation was requested while it ran.
    pub cancelled: bool,
}

/// Start `helper HELPER_ARG` with the request written to its fd 3.
pub fn spawn_helper(helper: &Path, req: &HelperRequest) -> io::Result<(Child, UnixStream)> {
    let (mut parent, child_end) = UnixStream::pair()?;
    let child_fd = child_end.as_raw_fd();
    let mut cmd = Command::new(helper);
    cmd.arg(HELPER_ARG)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (dup2, fcntl, prctl) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if child_fd == HELPER_FD {
                if libc::fcntl(HELPER_FD, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(child_fd, HELPER_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(child_end);
    let bytes = serde_json::to_vec(req).map_err(io::Error::other)?;
    // The helper reads to EOF before doing anything, so this cannot deadlock. If the binary is
    // no helper and already exited, the write fails; the missing reply then reports it.
    let _ = parent
        .write_all(&bytes)
        .and_then(|()| parent.shutdown(std::net::Shutdown::Write));
    Ok((child, parent))
}

enum Source {
    Out(ChildStdout),
    Err(ChildStderr),
    Reply(UnixStream),
}

impl Source {
    fn fd(&self) -> i32 {
        match self {
            Source::Out(s) => s.as_raw_fd(),
            Source::Err(s) => s.as_raw_fd(),
            Source::Reply(s) => s.as_raw_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Out(s) => s.read(buf),
            Source::Err(s) => s.read(buf),
            Source::Reply(s) => s.read(buf),
        }
    }
}

/// Stream the child's output to `output` until every stream is closed, then reap it.
pub fn pump(
    child: &mut Child,
    reply: Option<UnixStream>,
    output: &dyn OutputSink,
    cancel: &Cancellation,
    on_cancel: &mut dyn FnMut(&mut Child),
) -> io::Result<Pumped> {
    let mut sources: Vec<Source> = Vec::new();
    if let Some(s) = child.stdout.take() {
        sources.push(Source::Out(s));
    }
    if let Some(s) = child.stderr.take() {
        sources.push(Source::Err(s));
    }
    if let Some(s) = reply {
        sources.push(Source::Reply(s));
    }
    let mut reply_bytes = Vec::new();
    let mut cancelled_at: Option<Instant> = None;
    let mut killed = false;
    let mut buf = vec![0u8; 64 * 1024];
    while !sources.is_empty() {
        if cancelled_at.is_none() && cancel.is_cancelled() {
            cancelled_at = Some(Instant::now());
            on_cancel(child);
        }
        if let Some(t) = cancelled_at {
            if !killed && t.elapsed() > CANCEL_GRACE {
                killed = true;
                let _ = child.kill();
            }
        }
        let mut fds: Vec<libc::pollfd> = sources
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut closed = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            match sources[i].read(&mut buf) {
                Ok(0) => closed.push(i),
                Ok(k) => match &sources[i] {
                    Source::Out(_) => output.write(LogStream::Stdout, &buf[..k]),
                    Source::Err(_) => output.write(LogStream::Stderr, &buf[..k]),
                    Source::Reply(_) => reply_bytes.extend_from_slice(&buf[..k]),
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            sources.remove(i);
        }
    }
    let status = child.wait()?;
    Ok(Pumped {
        status,
        reply: reply_bytes,
        cancelled: cancelled_at.is_some(),
    })
}

/// Send `signal` to a child that has not been reaped yet.
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: the pid belongs to our unreaped child, so it cannot have been reused.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<(LogStream, Vec<u8>)>>);

    impl OutputSink for Collect {
        fn write(&self, stream: LogStream, bytes: &[u8]) {
            self.0
                .lock()
                .expect("not poisoned")
                .push((stream, bytes.to_vec()));
        }
    }

    fn joined(c: &Collect, stream: LogStream) -> String {
        let v = c.0.lock().expect("not poisoned");
        v.iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn pump_streams_both_outputs_and_the_status() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let sink = Collect(Mutex::new(vec![]));
        let got = pump(&mut child, None, &sink, &Cancellation::new(), &mut |_| {}).expect("pump");
        assert_eq!(got.status.code(), Some(3));
        assert_eq!(joined(&sink, LogStream::Stdout), "out\n");
        assert_eq!(joined(&sink, LogStream::Stderr), "err\n");
        assert!(!got.cancelled);
    }

    #[test]
    fn pump_calls_on_cancel_and_reaps() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "exec sleep 30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let cancel = Cancellation::new();
        cancel.cancel();
        let sink = Collect(Mutex::new(vec![]));
        let start = Instant::now();
        let got = pump(&mut child, None, &sink, &cancel, &mut |c| {
            signal(c, libc::SIGKILL)
        })
        .expect("pump");
        assert!(got.cancelled);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&got.status),
            Some(libc::SIGKILL)
        );
    }
}
