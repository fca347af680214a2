//! The `rbuild` binary: parse arguments, run the subcommand, render any error, exit.
//! Exit codes: 0 success, 1 failure, 2 usage error (clap's own code for bad arguments), 130 a
//! build cancelled by Ctrl-C or SIGTERM.

mod args;
mod commands;
mod env;
mod interrupt;
mod progress;
mod report;
mod spec;

use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command, DebugCommand};
use crate::report::CliError;

fn main() -> ExitCode {
    rbuild::exec::sandbox::run_helper_if_requested();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", report::render(&err));
            ExitCode::from(err.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let root = cli.root.as_deref();
    let command = match (cli.command, cli.build) {
        (Some(command), _) => command,
        (None, Some(build)) => return commands::build::run(root, &build),
        (None, None) => {
            // clap requires CONTEXT without a subcommand, so this is unreachable in practice;
            // answer as clap would.
            let _ = Cli::command().print_help();
            return Err(CliError::Usage(
                "a CONTEXT or a subcommand is required".into(),
            ));
        }
    };
    match command {
        Command::Build(a) => commands::build::run(root, &a),
        Command::Plan(a) => commands::plan::run(&a),
        Command::Debug(DebugCommand::Parse { file }) => commands::debug::parse(&file),
        Command::Images(a) => commands::images::run(&open_store(root)?, &a),
        Command::Inspect(a) => commands::inspect::run(&open_store(root)?, &a),
        Command::History(a) => commands::history::run(&open_store(root)?, &a),
        Command::Tag(a) => commands::tag::run(&open_store(root)?, &a),
        Command::Rmi(a) => commands::rmi::run(&open_store(root)?, &a),
        Command::Export(a) => commands::export::run(&open_store(root)?, &a),
        Command::Prune(a) => commands::prune::run(&open_store(root)?, &a),
        Command::Push(a) => commands::push::run(&open_store(root)?, &a),
        Command::Login(a) => commands::login::login(&a),
        Command::Logout(a) => commands::login::logout(&a),
    }
}

fn open_store(root: Option<&Path>) -> Result<rbuild::store::Store, CliError> {
    let root = env::store_root(root).map_err(CliError::Usage)?;
    Ok(rbuild::store::Store::open(root)?)
}
