//! `rbuild rmi NAME…`: remove names from the local store, printing `Untagged: NAME` for each
//! (as `docker rmi`); the blobs stay until `rbuild prune`.

use std::io::Write;

use rbuild::store::Store;

use crate::args::RmiArgs;
use crate::report::CliError;

/// Run `rbuild rmi`.
pub fn run(store: &Store, args: &RmiArgs) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    for name in &args.names {
        for removed in store.rmi(name)? {
            writeln!(stdout, "Untagged: {}", removed.familiar())
                .map_err(|e| CliError::Output(e.to_string()))?;
        }
    }
    Ok(())
}
