//! Command-line arguments (clap derive). One subcommand per file under `commands/`; this file
//! only declares the shapes and parses the small values (`KEY=VALUE`, platforms) so that a bad
//! value is a usage error (exit code 2).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rbuild_dockerfile::lower::Platform;

/// rbuild: a daemonless OCI image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the stages a build would run, in build order, and the ones it skips.
    Plan(PlanArgs),
    /// Tools for looking inside rbuild.
    #[command(subcommand)]
    Debug(DebugCommand),
}

/// `rbuild plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// A build argument; `KEY` alone takes the value from the environment, if set.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// The platform to build for, e.g. linux/arm64 (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// How `rbuild plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Text,
    /// One JSON document for tools.
    Json,
}

/// `rbuild debug …`.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the parsed Dockerfile as BuildKit's AST dump.
    Parse {
        /// The Dockerfile.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    text.parse()
        .map_err(|e: rbuild_dockerfile::lower::PlatformError| e.to_string())
}
