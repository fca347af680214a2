//! OCI image layouts: written by us, read by skopeo and umoci (and the reverse); refs added and
//! replaced without losing others; resolution by tag, name and digest; fsck finds corruption; the
//! tar form round-trips and skopeo reads it.

use std::fs;
use std::process::Command;

use rbuild_layers::compress::Compression;
use rbuild_layers::oci_layout::{
    LayoutError, OciLayout, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use rbuild_layers::store::LayerWriter;

use crate::real_tools::{image_in_layout, layer_opts, run};

fn one_layer_image(dir: &std::path::Path, name: &str, content: &str) -> OciLayout {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("hello"), content).unwrap();
    let layout = OciLayout::ensure(dir).unwrap();
    let layer =
        LayerWriter::from_dir(layout.store(), src.path(), layer_opts(Compression::Gzip)).unwrap();
    image_in_layout(dir, name, &[layer], &["/hello"])
}

fn refs(layout: &OciLayout) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = layout
        .index()
        .unwrap()
        .manifests()
        .iter()
        .map(|d| {
            let a = d.annotations().clone().unwrap_or_default();
            (
                a.get(ANNOTATION_REF_NAME).cloned().unwrap_or_default(),
                a.get(ANNOTATION_IMAGE_NAME).cloned().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn skopeo_inspect(target: &str) -> serde_json::Value {
    serde_json::from_str(&run(Command::new("skopeo").args(["inspect", target]))).unwrap()
}

#[test]
fn skopeo_reads_our_layout_and_refs_are_kept_or_replaced() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let layout = one_layer_image(&dir, "app:v1", "one");
    one_layer_image(&dir, "registry.example.com/team/tool:2.0", "two");
    assert_eq!(
        refs(&layout),
        [
            (
                "2.0".to_string(),
                "registry.example.com/team/tool:2.0".to_string()
            ),
            ("v1".to_string(), "docker.io/library/app:v1".to_string()),
        ]
    );
    let first = layout.resolve("v1", None).unwrap();
    // Rewriting v1 replaces its entry and keeps the other.
    one_layer_image(&dir, "app:v1", "one, again");
    assert_eq!(refs(&layout).len(), 2);
    let second = layout.resolve("v1", None).unwrap();
    assert_ne!(first, second);
    for reference in [
        "v1",
        "app:v1",
        "docker.io/library/app:v1",
        &second.to_string(),
    ] {
        assert_eq!(
            layout.resolve(reference, None).unwrap(),
            second,
            "{reference}"
        );
    }
    assert!(matches!(
        layout.resolve("nope", None),
        Err(LayoutError::NotFound { .. })
    ));

    let info = skopeo_inspect(&format!("oci:{}:v1", dir.display()));
    let img = layout.image("v1", None).unwrap();
    let layers: Vec<String> = img
        .layers()
        .unwrap()
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    assert_eq!(info["Layers"], serde_json::json!(layers));
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Env"], serde_json::json!(["PATH=/usr/bin:/bin"]));
    assert_eq!(info["Digest"], second.to_string());
    let other = skopeo_inspect(&format!("oci:{}:2.0", dir.display()));
    assert_eq!(other["Os"], "linux");
    assert!(layout.fsck().unwrap().is_ok());
}

#[test]
fn fsck_finds_a_corrupt_layer_and_a_missing_config() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let layout = one_layer_image(&dir, "app:v1", "content");
    let report = layout.fsck().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.verified.len(), 3, "manifest, config, layer");
    let img = layout.image("v1", None).unwrap();
    let layer = img.layers().unwrap()[0].digest.clone();
    let path = layout.store().blob_path(&layer);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    fs::remove_file(layout.store().blob_path(&img.config_digest)).unwrap();
    let report = layout.fsck().unwrap();
    let what: Vec<(&str, String)> = report
        .problems
        .iter()
        .map(|p| (p.what, p.digest.clone()))
        .collect();
    assert_eq!(
        what,
        [
            ("config", img.config_digest.to_string()),
            ("layer", layer.to_string())
        ]
    );
}

#[test]
fn layout_tar_round_trips_and_skopeo_reads_it() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let layout = one_layer_image(&dir, "app:v1", "one");
    one_layer_image(&dir, "app:v2", "two");
    let tar = work.path().join("image.tar");
    layout.write_tar(&tar, &["v1"]).unwrap();
    let info = skopeo_inspect(&format!("oci-archive:{}:v1", tar.display()));
    assert_eq!(
        info["Digest"],
        layout.resolve("v1", None).unwrap().to_string()
    );
    let again = OciLayout::ensure(work.path().join("imported")).unwrap();
    let entries = again.import_tar(fs::File::open(&tar).unwrap()).unwrap();
    assert_eq!(entries.len(), 1, "only the selected ref is exported");
    assert_eq!(
        again.resolve("v1", None).unwrap(),
        layout.resolve("v1", None).unwrap()
    );
    assert!(matches!(
        again.resolve("v2", None),
        Err(LayoutError::NotFound { .. })
    ));
    assert!(again.fsck().unwrap().is_ok());
    // Deterministic: the same content gives the same tar.
    let tar2 = work.path().join("image2.tar");
    layout.write_tar(&tar2, &["v1"]).unwrap();
    assert_eq!(fs::read(&tar).unwrap(), fs::read(&tar2).unwrap());
}

#[test]
fn we_read_layouts_skopeo_wrote() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let layout = one_layer_image(&dir, "app:v1", "one");
    let copy = work.path().join("copy");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(format!("oci:{}:copied", copy.display())));
    let theirs = OciLayout::open(&copy).unwrap();
    let img = theirs.image("copied", None).unwrap();
    assert_eq!(
        img.config.rootfs.diff_ids,
        layout.image("v1", None).unwrap().config.rootfs.diff_ids
    );
    assert!(theirs.fsck().unwrap().is_ok());
    // skopeo's archive form imports too.
    let tar = work.path().join("skopeo.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:v1", dir.display()))
        .arg(format!("oci-archive:{}:fromtar", tar.display())));
    let imported = OciLayout::ensure(work.path().join("imported")).unwrap();
    imported.import_tar(fs::File::open(&tar).unwrap()).unwrap();
    assert!(imported.resolve("fromtar", None).is_ok());
}
