//! Ctrl-C: a build interrupted while a RUN step runs stops within seconds, exits 130 with
//! "build cancelled", and leaves no process, mount or scratch directory behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{workspace, Env};

/// Kills the build if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command lines of all processes whose arguments contain `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Poll `check` until it holds or `limit` passes; true when it held.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&root))
        .map(str::to_string)
        .collect()
}

#[test]
fn ctrl_c_cancels_a_running_build() {
    let env = Env::new();
    env.import_busybox();
    // A sleep long enough to outlive the test, with a number no other process uses.
    let seconds = format!("31337{:05}", std::process::id() % 100_000);
    let marker = format!("sleep {seconds}");
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", &format!("FROM busybox:test\nRUN {marker}\n"))],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["build", "--progress", "plain", &ctx.display().to_string()])
        .current_dir(workspace())
        .env("RBUILD_ROOT", env.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rbuild starts");
    let mut build = Reap(child);
    let stderr = build.0.stderr.take().expect("stderr pipe");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let drain = |log: &mut Vec<String>| log.extend(rx.try_iter());

    // The RUN step has started once its header is printed and its command is running.
    let started = eventually(Duration::from_secs(60), || {
        drain(&mut log);
        log.iter()
            .any(|l| l.starts_with('#') && l.contains(&marker))
            && !processes_with(&marker).is_empty()
    });
    assert!(started, "the RUN step never started:\n{}", log.join("\n"));

    let pid = build.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let interrupted = Instant::now();
    let mut status = None;
    let exited = eventually(Duration::from_secs(5), || {
        status = build.0.try_wait().expect("wait for rbuild");
        status.is_some()
    });
    drain(&mut log);
    assert!(
        exited,
        "rbuild still running 5 s after SIGINT:\n{}",
        log.join("\n")
    );
    let took = interrupted.elapsed();
    reader.join().expect("stderr reader");
    drain(&mut log);
    let log = log.join("\n");
    let status = status.expect("exited");
    assert_eq!(status.code(), Some(130), "took {took:?}:\n{log}");
    assert!(log.contains("build cancelled"), "{log}");

    // The killed command goes with the sandbox; give the kernel a moment to reap it.
    assert!(
        eventually(Duration::from_secs(1), || processes_with(&marker)
            .is_empty()),
        "left running: {:?}",
        processes_with(&marker)
    );
    let root = env.root();
    assert_eq!(mounts_under(&root), Vec::<String>::new(), "left mounted");
    let scratch = root.join("run-v1");
    let left: Vec<String> = match std::fs::read_dir(&scratch) {
        Ok(dir) => dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    assert_eq!(left, Vec::<String>::new(), "left in {}", scratch.display());
}
