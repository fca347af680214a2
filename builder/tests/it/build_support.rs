//! Helpers of the `build_*` tests: fixtures copied to scratch directories, a store holding the
//! busybox test image, requests, and reading back what a build did.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild::events::{CollectSink, Event};
use rbuild::{BuildOutcome, BuildRequest, DockerfileSource, Store};

use crate::support::{long_ago, set_mtime};

/// The repository's `fixtures/<name>` directory.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join(name)
}

/// Copy `fixtures/<name>` into `dest` with every file's mtime set to `mtime`; returns `dest`.
pub fn copy_fixture(name: &str, dest: &Path, mtime: std::time::SystemTime) -> PathBuf {
    copy_tree(&fixture(name), dest, mtime);
    dest.to_path_buf()
}

fn copy_tree(src: &Path, dest: &Path, mtime: std::time::SystemTime) {
    fs::create_dir_all(dest).expect("create fixture copy");
    let mut names: Vec<_> = fs::read_dir(src)
        .expect("read fixture dir")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    names.sort();
    for name in names {
        let (s, d) = (src.join(&name), dest.join(&name));
        if s.is_dir() {
            copy_tree(&s, &d, mtime);
        } else {
            fs::copy(&s, &d).expect("copy fixture file");
            set_mtime(&d, mtime);
        }
    }
}

/// A scratch directory with a store that holds `busybox:test`.
pub struct TestStore {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The store at `<dir>/store`.
    pub store: Store,
}

/// A fresh store with the busybox test image imported.
pub fn store_with_busybox() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open store");
    rbuild_test_support::import_busybox(&root).expect("import busybox");
    TestStore { dir, store }
}

/// A request for a fixture copy: `<case>/Dockerfile` with `<case>/context`.
pub fn request(case_dir: &Path) -> BuildRequest {
    BuildRequest::new(
        Some(case_dir.join("context")),
        DockerfileSource::Path(case_dir.join("Dockerfile")),
    )
}

/// A request for inline Dockerfile text over `context`.
pub fn text_request(context: Option<&Path>, text: &str) -> BuildRequest {
    BuildRequest::new(
        context.map(Path::to_path_buf),
        DockerfileSource::Text {
            name: "Dockerfile".into(),
            text: text.into(),
        },
    )
}

/// Build and collect the events.
pub fn build(store: &Store, req: &BuildRequest) -> (BuildOutcome, Vec<Event>) {
    let sink = CollectSink::new();
    let out = rbuild::build(store, req, &sink).unwrap_or_else(|e| panic!("build failed: {e}"));
    (out, sink.events())
}

/// Per step display name: `true` when it came from the cache, `false` when it was executed.
pub fn step_outcomes(events: &[Event]) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    for e in events {
        if let Event::StepStarted { id, name } = e {
            names.insert(*id, name.clone());
        }
    }
    let mut out = BTreeMap::new();
    for e in events {
        match e {
            Event::StepCached { id } => {
                out.insert(names[id].clone(), true);
            }
            Event::StepDone { id, .. } => {
                out.insert(names[id].clone(), false);
            }
            _ => {}
        }
    }
    out
}

/// The log lines of the steps and pseudo-steps whose name starts with `prefix`, in order.
pub fn vertex_logs(events: &[Event], prefix: &str) -> Vec<String> {
    let ids: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { id, name } if name.starts_with(prefix) => Some(*id),
            _ => None,
        })
        .collect();
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { id, line, .. } if ids.contains(id) => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// The store's blob digests.
pub fn blobs(store: &Store) -> Vec<String> {
    store
        .blobs()
        .list()
        .expect("list blobs")
        .into_iter()
        .map(|d| d.to_string())
        .collect()
}

/// Export `image` as an OCI layout tagged `name` and unpack it with umoci; returns the rootfs.
pub fn umoci_unpack(store: &Store, out: &BuildOutcome, scratch: &Path) -> PathBuf {
    let layout = scratch.join("oci");
    let name: rbuild_layers::oci_layout::ImageName = "check:latest".parse().expect("name");
    rbuild::export(
        store,
        &out.image,
        &[name],
        &rbuild::Output::Oci {
            dest: layout.clone(),
            tar: false,
        },
    )
    .expect("export oci");
    let bundle = scratch.join("bundle");
    let status = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .status()
        .expect("run umoci");
    assert!(status.success(), "umoci unpack failed");
    bundle.join("rootfs")
}

/// The config JSON of a built image.
pub fn config_json(out: &BuildOutcome) -> serde_json::Value {
    serde_json::from_slice(&out.image.config_bytes).expect("config is json")
}

/// Files of a scratch context with old mtimes.
pub fn old_files(root: &Path, files: &[(&str, &str)]) {
    crate::support::write_tree(root, files);
}

/// The default mtime of fixture copies.
pub fn old() -> std::time::SystemTime {
    long_ago()
}
