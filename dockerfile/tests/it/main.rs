//! Integration tests of rbuild-dockerfile: one binary, one module per feature.

mod conformance_ignore;
mod conformance_parser;
mod conformance_shell;
mod heredoc_expand;
mod lower;
mod support;
