//! rbuild-dockerfile: the Dockerfile front-end of rbuild (being written).
#![warn(missing_docs)]

pub mod ast;
pub mod directives;
pub mod dump;
pub mod error;
pub mod heredoc;
pub mod ignore;
pub mod instructions;
pub mod lexer;
pub mod lower;
pub mod parser;
pub mod shell;
pub mod span;
pub use parser::{parse, ParseError};

pub use ast::Dockerfile;
pub use error::{Error, Result};
pub use instructions::{Command, Instruction};
pub use lower::{lower, LowerOptions, Plan, Stage};
