//! Retry with exponential backoff for transient registry failures (5xx, 429, connection resets,
//! bodies cut short), as Docker's pull and push loops retry a layer from scratch. A blob
//! download restarts from byte zero into a fresh temp file; nothing half-fetched is ever kept.

use std::time::Duration;

use super::error::Result;
use super::{report, Progress, ProgressFn};

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per operation (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Run `op` until it succeeds, fails for good, or `policy.attempts` are used up; transient
/// failures ([`super::RegistryError::is_transient`]) are reported and retried after a backoff.
pub(crate) fn retry<T>(
    policy: &RetryPolicy,
    what: &str,
    progress: Option<ProgressFn<'_>>,
    mut op: impl FnMut() -> Result<T>,
) -> Result<T> {
    let attempts = policy.attempts.max(1);
    let mut attempt = 0;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt + 1 < attempts => {
                report(
                    progress,
                    Progress::Retry {
                        what: what.to_string(),
                        attempt: attempt + 1,
                        error: e.to_string(),
                    },
                );
                std::thread::sleep(policy.backoff(attempt));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let cases = [(0, 100), (1, 200), (2, 400), (3, 500), (40, 500)];
        for (attempt, ms) in cases {
            assert_eq!(p.backoff(attempt), Duration::from_millis(ms), "{attempt}");
        }
    }
}
