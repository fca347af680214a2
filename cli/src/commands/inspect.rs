//! `rbuild inspect NAME`: the image's manifest and config, exactly as stored, as one JSON
//! document `{"name", "digest", "manifest", "config"}`.

use std::io::Write;

use rbuild::store::Store;
use serde_json::json;

use crate::args::NameArgs;
use crate::report::CliError;

/// Run `rbuild inspect`.
pub fn run(store: &Store, args: &NameArgs) -> Result<(), CliError> {
    let digest = store.resolve_digest(&args.name)?;
    let (manifest, config) = store.inspect(&args.name)?;
    let doc = json!({
        "name": args.name,
        "digest": digest.to_string(),
        "manifest": manifest,
        "config": config,
    });
    let mut text =
        serde_json::to_string_pretty(&doc).map_err(|e| CliError::Output(e.to_string()))?;
    text.push('\n');
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| CliError::Output(e.to_string()))
}
