//! `rbuild export NAME -o type=…`: write an image already in the local store to the same
//! outputs `rbuild build -o` accepts (OCI layout, docker archive, root filesystem, tar).

use std::io::Write;

use rbuild::store::Store;
use rbuild_layers::oci_layout::ImageName;

use crate::args::ExportArgs;
use crate::commands::build::{describe_output, output_names};
use crate::report::CliError;

/// Run `rbuild export`.
pub fn run(store: &Store, args: &ExportArgs) -> Result<(), CliError> {
    let image = store.resolve(&args.name)?;
    // A name (not a digest) travels with the image into formats that carry names.
    let listed: Vec<String> = store
        .images()?
        .iter()
        .map(|i| format!("{}:{}", i.name, i.tag))
        .collect();
    let own: Vec<ImageName> = args
        .name
        .parse::<ImageName>()
        .into_iter()
        .filter(|n| listed.contains(&n.familiar()))
        .collect();
    let mut stderr = std::io::stderr().lock();
    for spec in &args.outputs {
        let names = output_names(&own, &spec.names);
        rbuild::solve::export(store, &image, &names, &spec.output).map_err(|error| {
            CliError::Build {
                dockerfile: None,
                tails: Vec::new(),
                error: Box::new(error),
            }
        })?;
        let _ = writeln!(stderr, "wrote {}", describe_output(&spec.output));
    }
    Ok(())
}
