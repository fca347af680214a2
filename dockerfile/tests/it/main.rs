//! Integration tests of rbuild-dockerfile: one binary, one module per feature.

mod conformance_ignore;
mod conformance_parser;
mod conformance_shell;
mod support;
mod lower;
mod heredoc_expand;
