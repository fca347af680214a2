//! `rbuild tag SRC DST`: give an image in the local store another name (as `docker tag`).

use rbuild::store::Store;

use crate::args::TagArgs;
use crate::report::CliError;

/// Run `rbuild tag`.
pub fn run(store: &Store, args: &TagArgs) -> Result<(), CliError> {
    store.tag(&args.src, &args.dst)?;
    Ok(())
}
