//! Shared helpers: locating BuildKit's conformance vectors and reporting results.

use std::path::PathBuf;

/// `../shared/conformance/buildkit`, found from this crate's manifest directory.
/// Panics (fails the test) with the path when it is missing: conformance is never skipped.
pub fn buildkit_vectors() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/buildkit");
    assert!(
        dir.is_dir(),
        "BuildKit conformance vectors not found at {}; the checkout must sit next to shared/",
        dir.display()
    );
    dir.canonicalize().expect("the vectors directory exists")
}

/// Collects pass/fail per vector and fails once at the end, listing every failure.
#[derive(Default)]
pub struct Tally {
    suite: String,
    passed: usize,
    skipped: usize,
    failures: Vec<String>,
}

impl Tally {
    /// A tally for the named suite.
    pub fn new(suite: &str) -> Self {
        Tally {
            suite: suite.to_string(),
            ..Default::default()
        }
    }

    /// Record one vector: `Ok(())` passes, `Err(why)` fails with the vector's name and diff.
    pub fn check(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{name}: {why}")),
        }
    }

    /// Record a vector that does not apply on this platform (e.g. Windows-only rows).
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Print the count and fail if any vector failed.
    pub fn finish(self) {
        let total = self.passed + self.failures.len();
        println!(
            "{}: {}/{} vectors passed ({} not applicable on this platform, skipped)",
            self.suite, self.passed, total, self.skipped
        );
        assert!(total > 0, "{}: no vectors were run", self.suite);
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} vectors failed:\n{}",
            self.suite,
            self.failures.len(),
            total,
            self.failures.join("\n")
        );
    }
}
