//! `rbuild prune [--all]`: free space in the local store and report what went (blobs, cache
//! entries, bytes), as `docker builder prune` does.

use std::io::Write;

use rbuild::store::Store;

use crate::args::PruneArgs;
use crate::commands::images::human_size;
use crate::report::CliError;

/// Run `rbuild prune`.
pub fn run(store: &Store, args: &PruneArgs) -> Result<(), CliError> {
    let report = store.prune(args.all)?;
    writeln!(
        std::io::stdout().lock(),
        "Deleted {} blob{} and {} cache entr{}\nTotal reclaimed space: {}",
        report.blobs,
        if report.blobs == 1 { "" } else { "s" },
        report.cache_entries,
        if report.cache_entries == 1 {
            "y"
        } else {
            "ies"
        },
        human_size(report.bytes)
    )
    .map_err(|e| CliError::Output(e.to_string()))
}
