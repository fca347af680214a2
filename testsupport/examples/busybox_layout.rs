//! Write the busybox test image into an OCI layout: `cargo run -p rbuild-test-support --example busybox_layout DIR`.
fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "busybox-layout".to_string());
    let img = rbuild_test_support::busybox_layout(std::path::Path::new(&dir))?;
    println!("{} {}", img.reference, img.image.manifest_digest);
    Ok(())
}
