//! Helpers shared by rbuild's test suites: base images made locally, so no test ever pulls from
//! a registry. The busybox image is built from Debian's `busybox-static` (`/bin/busybox`), with
//! the users and groups the tests rely on:
//!
//! | user / group | uid:gid | notes |
//! |---|---|---|
//! | `root` | 0:0 | home `/root` |
//! | `app` | 1000:1000 | home `/home/app`, also a member of `staff` (50) |
//!
//! The image is deterministic: fixed mtimes (0), sorted entries, no host data but the busybox
//! binary itself.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rbuild_layers::image::{History, ImageConfig, StoredImage};
use rbuild_layers::oci_layout::{ImageName, OciLayout};
use rbuild_layers::store::layer::{LayerOptions, LayerWriter};
use rbuild_layers::tar::entry::Entry;

/// Where the busybox-static binary lives on Debian.
pub const BUSYBOX: &str = "/bin/busybox";

/// The reference the busybox test image is stored under.
pub const BUSYBOX_REF: &str = "busybox:test";

/// Applets linked into `/bin` (what the test suites call).
pub const APPLETS: &[&str] = &[
    "cat", "chmod", "chown", "cp", "echo", "env", "false", "grep", "hostname", "id", "ip", "ln",
    "ls", "mkdir", "mount", "mv", "printf", "ps", "pwd", "rm", "sh", "sleep", "stat", "test",
    "touch", "true", "uname", "wc", "wget", "whoami",
];

/// A busybox image written into an OCI image layout.
#[derive(Debug, Clone)]
pub struct BusyboxImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// The reference it is tagged as (`busybox:test`).
    pub reference: String,
    /// The stored image (manifest and config digests).
    pub image: StoredImage,
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n";

/// Write the busybox test image into the OCI layout at `dir` (created if needed), tagged
/// [`BUSYBOX_REF`]. Fails when `/bin/busybox` is missing (install `busybox-static`).
pub fn busybox_layout(dir: &Path) -> io::Result<BusyboxImage> {
    let layout = OciLayout::ensure(dir).map_err(io::Error::other)?;
    let layer = busybox_layer(&layout)?;
    let mut config = ImageConfig::new("linux", host_architecture());
    config.created = Some("1970-01-01T00:00:00Z".to_string());
    config.config.env = Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    ]);
    config.config.cmd = Some(vec!["sh".to_string()]);
    config.push_layer(
        layer.diff_id.clone(),
        History {
            created: Some("1970-01-01T00:00:00Z".to_string()),
            created_by: Some("rbuild-test-support: busybox-static".to_string()),
            ..Default::default()
        },
    );
    let image =
        rbuild_layers::image::write_image(layout.store(), &config, &[layer], &BTreeMap::new())
            .map_err(io::Error::other)?;
    let name: ImageName = BUSYBOX_REF.parse().map_err(io::Error::other)?;
    layout.tag(&name, &image).map_err(io::Error::other)?;
    Ok(BusyboxImage {
        layout: dir.to_path_buf(),
        reference: BUSYBOX_REF.to_string(),
        image,
    })
}

/// Put the busybox test image into an rbuild store (itself an OCI image layout) at `store_root`
/// so that `FROM busybox:test` resolves locally; returns the reference.
pub fn import_busybox(store_root: &Path) -> io::Result<String> {
    busybox_layout(store_root).map(|img| img.reference)
}

/// A minimal root filesystem directory (not an image) with busybox and its applets, for tests
/// that run commands without going through the image machinery.
pub fn busybox_rootfs(dir: &Path) -> io::Result<()> {
    for d in [
        "bin", "etc", "tmp", "root", "home/app", "proc", "dev", "sys",
    ] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    busybox_bin(dir, APPLETS)?;
    std::fs::write(dir.join("etc/passwd"), PASSWD)?;
    std::fs::write(dir.join("etc/group"), GROUP)?;
    Ok(())
}

/// Put busybox and one link per applet into `dir/bin` (created if needed), and nothing else:
/// for tests that need a root without `/etc` or any other directory.
pub fn busybox_bin(dir: &Path, applets: &[&str]) -> io::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(BUSYBOX, bin.join("busybox"))?;
    for applet in applets {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    Ok(())
}

/// A build context of `dirs` directories `pkgNNN/src`, each with `files_per_dir` files
/// `fileNNN.txt` of `file_size` zero bytes whose first eight bytes number the file (so every file
/// differs): the large context the benchmarks hash and copy.
pub fn numbered_context(
    root: &Path,
    dirs: usize,
    files_per_dir: usize,
    file_size: usize,
) -> io::Result<()> {
    let mut content = vec![0u8; file_size];
    for d in 0..dirs {
        let dir = root.join(format!("pkg{d:03}/src"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..files_per_dir {
            content[..8].copy_from_slice(&((d * files_per_dir + f) as u64).to_le_bytes());
            std::fs::write(dir.join(format!("file{f:03}.txt")), &content)?;
        }
    }
    Ok(())
}

fn busybox_layer(layout: &OciLayout) -> io::Result<rbuild_layers::store::layer::LayerInfo> {
    let mut busybox = File::open(BUSYBOX).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{BUSYBOX}: {e} (install Debian's busybox-static)"),
        )
    })?;
    let size = busybox.metadata()?.len();
    let mut entries: Vec<(Entry, Vec<u8>)> = Vec::new();
    let dir = |path: &str, mode: u32| (with_mode(Entry::dir(path), mode), Vec::new());
    entries.push(dir("bin", 0o755));
    entries.push(dir("etc", 0o755));
    entries.push(dir("home", 0o755));
    entries.push((
        owned(with_mode(Entry::dir("home/app"), 0o755), 1000, 1000),
        Vec::new(),
    ));
    entries.push(dir("root", 0o700));
    entries.push(dir("tmp", 0o1777));
    entries.push(dir("usr", 0o755));
    entries.push(dir("usr/bin", 0o755));
    for applet in APPLETS {
        entries.push((
            Entry::symlink(format!("bin/{applet}"), "busybox"),
            Vec::new(),
        ));
    }
    entries.push((
        with_mode(Entry::file("etc/passwd", PASSWD.len() as u64), 0o644),
        PASSWD.into(),
    ));
    entries.push((
        with_mode(Entry::file("etc/group", GROUP.len() as u64), 0o644),
        GROUP.into(),
    ));
    let mut writer =
        LayerWriter::new(layout.store(), LayerOptions::default()).map_err(io::Error::other)?;
    // The binary is streamed, not buffered: append everything in canonical order.
    let busybox_entry = with_mode(Entry::file("bin/busybox", size), 0o755);
    entries.push((busybox_entry, Vec::new()));
    entries.sort_by(|a, b| rbuild_layers::tar::entry::compare_paths(&a.0.path, &b.0.path));
    for (entry, data) in &entries {
        if entry.path == "bin/busybox" {
            writer
                .append(entry, &mut busybox)
                .map_err(io::Error::other)?;
        } else {
            writer
                .append(entry, &mut data.as_slice() as &mut dyn Read)
                .map_err(io::Error::other)?;
        }
    }
    writer.finish().map_err(io::Error::other)
}

fn with_mode(mut entry: Entry, mode: u32) -> Entry {
    entry.mode = mode;
    entry
}

fn owned(mut entry: Entry, uid: u32, gid: u32) -> Entry {
    entry.uid = uid;
    entry.gid = gid;
    entry
}

/// The host's architecture in Go/OCI spelling (`amd64`, `arm64`, …).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_image_is_deterministic_and_resolvable() {
        let a = tempdir("a");
        let b = tempdir("b");
        let one = busybox_layout(&a).expect("busybox layout");
        let two = busybox_layout(&b).expect("busybox layout");
        assert_eq!(one.image.manifest_digest, two.image.manifest_digest);
        let layout = OciLayout::open(&a).unwrap();
        let resolved = layout.resolve(BUSYBOX_REF, None).unwrap();
        assert_eq!(resolved, one.image.manifest_digest);
        std::fs::remove_dir_all(a).ok();
        std::fs::remove_dir_all(b).ok();
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rbuild-ts-{tag}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
