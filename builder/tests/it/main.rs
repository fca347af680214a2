//! Integration tests of the rbuild builder crate: one binary, one module per feature.

mod build_add;
mod build_cache;
mod build_config;
mod build_errors;
mod build_export;
mod build_registry;
mod build_remote_cache;
mod build_repro;
mod build_run;
mod build_sources;
mod build_stages;
mod build_support;
mod cache_flow;
mod context;
mod copy;
mod frontend;
mod registry;
mod registry_support;
mod run;
mod sandbox;
mod snapshot;
mod support;
