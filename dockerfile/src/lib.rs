//! placeholder: rbuild-dockerfile is being written
pub mod ast;
pub mod span;
