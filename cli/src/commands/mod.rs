//! One subcommand per file.

pub mod debug;
pub mod plan;
