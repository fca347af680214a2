//! The `rbuild` binary: parse arguments, run the subcommand, render any error, exit.
//! Exit codes: 0 success, 1 failure, 2 usage error (clap's own code for bad arguments).

mod args;
mod commands;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Plan(a) => commands::plan::run(&a),
        args::Command::Debug(args::DebugCommand::Parse { file }) => commands::debug::parse(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", report::render(&err));
            ExitCode::from(1)
        }
    }
}
