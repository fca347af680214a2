//! One subcommand per file.

pub mod build;
pub mod debug;
pub mod export;
pub mod history;
pub mod images;
pub mod inspect;
pub mod login;
pub mod plan;
pub mod prune;
pub mod push;
pub mod rmi;
pub mod tag;
