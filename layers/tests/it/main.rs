//! Integration tests of rbuild-layers: one binary, one module per feature.
