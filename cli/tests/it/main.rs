//! End-to-end tests of the `rbuild` binary: one binary, one module per feature.

mod build;
mod cache;
mod cancel;
mod errors;
mod flags;
mod outputs;
mod plan;
mod registry;
mod run;
mod store;
mod support;
