//! Ctrl-C (SIGINT) and SIGTERM during a build, as `docker build` treats them: the first signal
//! sets the library's [`Cancellation`] (no new step starts, running RUN steps are killed, their
//! mounts, snapshots and scratch directories are released as the steps unwind) and the build
//! returns, after which the CLI exits 130 with "build cancelled"; a second signal exits 130 at
//! once, without waiting for that cleanup.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rbuild::exec::Cancellation;

use crate::report::CliError;

/// The exit code of an interrupted build: 128 + SIGINT, as shells report it.
pub const EXIT_CANCELLED: u8 = 130;

/// Install the handler for SIGINT, SIGTERM and SIGHUP (once per process) and return the flag it
/// sets.
pub fn install() -> Result<Arc<Cancellation>, CliError> {
    let cancel = Arc::new(Cancellation::new());
    let flag = Arc::clone(&cancel);
    let signalled = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if signalled.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting without cleaning up");
            std::process::exit(i32::from(EXIT_CANCELLED));
        }
        eprintln!("cancelling the build (press Ctrl-C again to exit at once)");
        flag.cancel();
    })
    .map_err(|e| CliError::Signal(e.to_string()))?;
    Ok(cancel)
}
