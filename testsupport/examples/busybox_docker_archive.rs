//! Write the busybox test image as a docker-archive (what `docker save` writes):
//! `cargo run -p rbuild-test-support --example busybox_docker_archive FILE`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dest = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "busybox.tar".to_string());
    let dir = std::env::temp_dir().join(format!("rbuild-bb-{}", std::process::id()));
    let img = rbuild_test_support::busybox_layout(&dir)?;
    let layout = rbuild_layers::oci_layout::OciLayout::open(&dir)?;
    let name = img.reference.parse()?;
    rbuild_layers::docker_archive::write_docker_archive(
        layout.store(),
        &[(img.image.clone(), vec![name])],
        std::path::Path::new(&dest),
    )?;
    std::fs::remove_dir_all(&dir)?;
    println!("{} {}", img.reference, img.image.config_digest);
    Ok(())
}
