//! Integration tests of the rbuild builder crate: one binary, one module per feature.

mod cache_flow;
mod context;
mod frontend;
mod sandbox;
mod snapshot;
mod support;
