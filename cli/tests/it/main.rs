//! End-to-end tests of the `rbuild` binary: one binary, one module per feature.

mod plan;
