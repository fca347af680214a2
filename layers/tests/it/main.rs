//! Integration tests of rbuild-layers: one binary, one module per feature.
mod determinism;
mod diff;
mod docker_archive;
mod extract;
mod hostile;
mod oci_layout;
mod real_tools;
mod store;
mod tar_write;
