//! Docker archives: skopeo reads what we write; we read back our own archives (config bytes kept,
//! so the image ID is unchanged) and the classic-format archives skopeo writes; broken archives
//! are refused with the evidence.

use std::fs;
use std::process::Command;

use rbuild_layers::compress::Compression;
use rbuild_layers::docker_archive::{read_docker_archive, write_docker_archive, ArchiveError};
use rbuild_layers::oci_layout::{ImageName, OciLayout};
use rbuild_layers::store::LayerWriter;
use rbuild_layers::tar::extract::{unpack, ExtractOptions};
use rbuild_layers::tar::read::read_all;

use crate::extract::{rich_tree, snapshot, ALL};
use crate::real_tools::{image_in_layout, layer_opts, run};

/// A two-layer image (`rich_tree` + one added file) in a fresh layout, tagged `app:v1`.
fn two_layer_image(
    dir: &std::path::Path,
    compression: Compression,
) -> (OciLayout, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    rich_tree(src.path());
    let layout = OciLayout::ensure(dir).unwrap();
    let base = LayerWriter::from_dir(layout.store(), src.path(), layer_opts(compression)).unwrap();
    let extra = tempfile::tempdir().unwrap();
    fs::write(extra.path().join("added"), "added").unwrap();
    let top = LayerWriter::from_dir(layout.store(), extra.path(), layer_opts(compression)).unwrap();
    fs::write(src.path().join("added"), "added").unwrap();
    let times = fs::metadata(extra.path().join("added"))
        .unwrap()
        .modified()
        .unwrap();
    fs::File::options()
        .write(true)
        .open(src.path().join("added"))
        .unwrap()
        .set_modified(times)
        .unwrap();
    (
        image_in_layout(dir, "app:v1", &[base, top], &["/bin/sh"]),
        src,
    )
}

#[test]
fn skopeo_reads_our_archive_and_we_read_it_back() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let work = tempfile::tempdir().unwrap();
        let (layout, src) = two_layer_image(&work.path().join("layout"), compression);
        let img = layout.image("v1", None).unwrap();
        let names = vec![
            "app:v1".parse::<ImageName>().unwrap(),
            "example.com/x/app:latest".parse().unwrap(),
        ];
        let archive = work.path().join("app.tar");
        write_docker_archive(layout.store(), &[(img.clone(), names)], &archive).unwrap();

        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", archive.display())));
        let info: serde_json::Value = serde_json::from_str(&out).unwrap();
        let diff_ids: Vec<String> = img
            .config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            info["Layers"],
            serde_json::json!(diff_ids),
            "{compression}: layers are the uncompressed tars"
        );
        assert_eq!(info["Architecture"], "amd64");
        let members: Vec<String> = read_all(fs::File::open(&archive).unwrap())
            .unwrap()
            .into_iter()
            .map(|(e, _)| e.path)
            .collect();
        for want in ["manifest.json", "repositories", "index.json", "oci-layout"] {
            assert!(members.iter().any(|m| m == want), "{want} in {members:?}");
        }
        let (_, manifest) = read_all(fs::File::open(&archive).unwrap())
            .unwrap()
            .into_iter()
            .find(|(e, _)| e.path == "manifest.json")
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["app:v1", "example.com/x/app:latest"])
        );

        let back = OciLayout::ensure(work.path().join("loaded")).unwrap();
        let loaded = read_docker_archive(fs::File::open(&archive).unwrap(), &back).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].image.config_digest, img.config_digest,
            "image id is kept"
        );
        assert_eq!(
            back.resolve("v1", None).unwrap(),
            loaded[0].image.manifest_digest
        );
        assert!(back.resolve("example.com/x/app:latest", None).is_ok());
        assert!(back.fsck().unwrap().is_ok());
        // The loaded layers unpack to the source tree.
        let root = tempfile::tempdir().unwrap();
        let blobs: Vec<fs::File> = loaded[0]
            .image
            .layers()
            .unwrap()
            .iter()
            .map(|l| back.store().open_blob(&l.digest).unwrap())
            .collect();
        unpack(root.path(), blobs, ExtractOptions::default()).unwrap();
        let mut want = snapshot(src.path(), ALL);
        let mut got = snapshot(root.path(), ALL);
        // The second layer did not carry the root's children' parents; compare files only.
        want.retain(|_, n| n.kind != "dir");
        got.retain(|_, n| n.kind != "dir");
        assert_eq!(got, want, "{compression}");
    }
}

#[test]
fn we_read_the_archives_skopeo_writes() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let (layout, _src) = two_layer_image(&dir, Compression::Gzip);
    let archive = work.path().join("skopeo.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(format!("docker-archive:{}:their/app:t1", archive.display())));
    let back = OciLayout::ensure(work.path().join("loaded")).unwrap();
    let loaded = read_docker_archive(fs::File::open(&archive).unwrap(), &back).unwrap();
    assert_eq!(loaded[0].names[0].to_string(), "docker.io/their/app:t1");
    assert_eq!(
        loaded[0].image.config.rootfs.diff_ids,
        layout.image("v1", None).unwrap().config.rootfs.diff_ids
    );
    assert!(back.fsck().unwrap().is_ok());
}

#[test]
fn broken_archives_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (layout, _src) = two_layer_image(&work.path().join("layout"), Compression::None);
    let img = layout.image("v1", None).unwrap();
    let archive = work.path().join("a.tar");
    write_docker_archive(layout.store(), &[(img.clone(), vec![])], &archive).unwrap();
    // Rewrite manifest.json to list the layers in the wrong order: diff ids no longer match.
    let members = read_all(fs::File::open(&archive).unwrap()).unwrap();
    let mut tw = rbuild_layers::tar::write::TarWriter::new(Vec::new(), Default::default());
    for (e, data) in &members {
        let data = if e.path == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(data).unwrap();
            let layers = m[0]["Layers"].as_array_mut().unwrap();
            layers.reverse();
            serde_json::to_vec(&m).unwrap()
        } else {
            data.clone()
        };
        let mut e = e.clone();
        if let rbuild_layers::tar::EntryKind::File { size } = &mut e.kind {
            *size = data.len() as u64;
        }
        tw.append(&e, &mut &data[..]).unwrap();
    }
    let bad = tw.finish().unwrap();
    let back = OciLayout::ensure(work.path().join("loaded")).unwrap();
    let err = read_docker_archive(&bad[..], &back).unwrap_err();
    assert!(matches!(err, ArchiveError::DiffIdMismatch { .. }), "{err}");
    // No manifest.json at all.
    let empty = rbuild_layers::tar::write::TarWriter::new(Vec::new(), Default::default())
        .finish()
        .unwrap();
    assert!(matches!(
        read_docker_archive(&empty[..], &back),
        Err(ArchiveError::BadManifest { .. })
    ));
}
