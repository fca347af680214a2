//! `rbuild push NAME [DEST]`: push an image from the local store to a registry, as
//! `docker push` does (DEST defaults to NAME). The manifest goes up byte for byte, so the
//! digest printed is the local one.

use std::io::Write;

use rbuild::solve::push::push_image;
use rbuild::solve::sources::RegistrySettings;
use rbuild::store::Store;

use crate::args::PushArgs;
use crate::env;
use crate::progress::{Progress, StepLabels, Style};
use crate::report::CliError;

/// Run `rbuild push`.
pub fn run(store: &Store, args: &PushArgs) -> Result<(), CliError> {
    let image = store.resolve(&args.name)?;
    let dest = args.dest.clone().unwrap_or_else(|| args.name.clone());
    let settings = RegistrySettings {
        pull: false,
        insecure_registries: args.insecure_registries.clone(),
        credentials: env::docker_config(),
    };
    let style = if args.quiet {
        Style::Quiet
    } else {
        Style::Plain
    };
    let progress = Progress::stderr(style, StepLabels::default());
    let result = push_image(
        store,
        &image.manifest_digest,
        std::slice::from_ref(&dest),
        &[],
        &settings,
        &progress,
    );
    progress.finish();
    let pushed = result.map_err(|error| CliError::Build {
        dockerfile: None,
        tails: Vec::new(),
        error: Box::new(error),
    })?;
    let mut stdout = std::io::stdout().lock();
    for p in pushed {
        let line = if args.quiet {
            p.digest.to_string()
        } else {
            format!("pushed {}: digest {}", p.reference, p.digest)
        };
        writeln!(stdout, "{line}").map_err(|e| CliError::Output(e.to_string()))?;
    }
    Ok(())
}
