//! Helpers for the end-to-end tests: run the real `rbuild` binary against a private store, make
//! small build contexts, and call the judges (umoci, skopeo, runc).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root (fixtures live under it).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A private rbuild store in a temp directory, plus a scratch area.
pub struct Env {
    /// Keeps the temp directory alive.
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh store.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The store root (`RBUILD_ROOT`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A path in the scratch area.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `rbuild ARGS` from the workspace root with this store.
    pub fn rbuild(&self, args: &[&str]) -> Output {
        self.rbuild_stdin(args, None)
    }

    /// Run `rbuild ARGS` with `stdin` as its standard input.
    pub fn rbuild_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.args(args)
            .current_dir(workspace())
            .env("RBUILD_ROOT", self.root())
            .env_remove("SOURCE_DATE_EPOCH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match stdin {
            Some(input) => {
                cmd.stdin(Stdio::piped());
                let mut child = cmd.spawn().expect("rbuild starts");
                {
                    use std::io::Write;
                    let mut pipe = child.stdin.take().expect("stdin pipe");
                    pipe.write_all(input.as_bytes()).expect("write stdin");
                }
                child.wait_with_output().expect("rbuild runs")
            }
            None => {
                cmd.stdin(Stdio::null());
                cmd.output().expect("rbuild runs")
            }
        }
    }

    /// Run `rbuild ARGS` and insist on success; returns (stdout, stderr).
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.rbuild(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "rbuild {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        (text(&out.stdout), text(&out.stderr))
    }

    /// Write a build context: `files` are (relative path, contents).
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(name);
        for (rel, contents) in files {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, contents).expect("write context file");
        }
        std::fs::create_dir_all(&dir).expect("mkdir context");
        dir
    }

    /// Put the busybox test image into the store as `busybox:test`.
    pub fn import_busybox(&self) -> String {
        rbuild_test_support::import_busybox(&self.root()).expect("busybox image (busybox-static)")
    }
}

/// Run a judge tool and insist on success; returns stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The `org.opencontainers.image.ref.name` of the only (or first) image in an OCI layout.
pub fn layout_ref(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index json");
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("the layout names its image")
        .to_string()
}

/// `umoci unpack` the image of `layout` into `bundle`; returns the bundle's rootfs.
pub fn umoci_unpack(layout: &Path, bundle: &Path) -> PathBuf {
    let image = format!("{}:{}", layout.display(), layout_ref(layout));
    tool(
        "umoci",
        &["unpack", "--image", &image, &bundle.display().to_string()],
    );
    bundle.join("rootfs")
}

/// The `sha256:` digest on the "built image" summary line of a build's stderr.
pub fn built_digest(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("built image "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|d| d.to_string())
        .unwrap_or_else(|| panic!("no 'built image' line in:\n{stderr}"))
}

/// Steps of a plain progress log: (number, header, status line) per `#N` step.
pub fn steps(stderr: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, body)) = rest.split_once(' ') else {
            continue;
        };
        let status = body == "CACHED" || body.starts_with("DONE ") || body.starts_with("ERROR");
        match out.iter_mut().find(|(num, _, _)| num == n) {
            Some(entry) if status => entry.2 = body.to_string(),
            Some(_) => {}
            None => out.push((n.to_string(), body.to_string(), String::new())),
        }
    }
    out
}
