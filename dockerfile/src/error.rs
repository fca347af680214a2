//! The crate-level error: every module's error folded into one enum, so callers can match on
//! the stage that failed (parsing, instruction typing or lowering) and ask where in the Dockerfile it
//! happened ([`Error::location`]).

use crate::instructions::InstructionError;
use crate::lower::LowerError;
use crate::parser::ParseError;
use crate::span::Location;

/// Any error of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a syntactically valid Dockerfile.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An instruction's flags or arguments are invalid.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// The stages cannot be lowered into a plan.
    #[error(transparent)]
    Lower(#[from] LowerError),
}

impl Error {
    /// Where in the Dockerfile the problem is, when it is tied to a line.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Parse(e) => Some(e.location()),
            Error::Instruction(e) => Some(e.location),
            Error::Lower(e) => e.location(),
        }
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
