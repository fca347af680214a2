//! Retry with exponential backoff for transient registry failures (5xx, 429, connection resets,
//! bodies cut short), as Docker's pull and push loops do. The operation itself decides what an
//! attempt keeps: a blob download keeps the bytes that arrived and asks for the rest with
//! `Range` (see `pull.rs`), so the description of a retry ([`retry_with`]) can change from one
//! attempt to the next (`… (resuming at byte N)`).

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
    op: impl FnMut() -> Result<T>,
) -> Result<T> {
    retry_with(policy, || what.to_string(), progress, op)
}

/// [`retry`], with the retried operation described anew after each failed attempt (`what` is
/// called when a [`Progress::Retry`] is reported).
pub(crate) fn retry_with<T>(
    policy: &RetryPolicy,
    what: impl Fn() -> String,
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
                        what: what(),
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

    #[test]
    fn each_retry_is_described_after_its_attempt() {
        use std::cell::Cell;
        use std::sync::Mutex;

        let policy = RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        };
        let cut = || super::super::RegistryError::Body {
            registry: "h".into(),
            repository: "r".into(),
            what: "blob",
            digest: "d".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        };
        let held = Cell::new(0u64);
        let events = Mutex::new(Vec::new());
        let sink = |p: &Progress| {
            if let Some(line) = p.retry_line() {
                events.lock().expect("events").push(line);
            }
        };
        let got = retry_with(
            &policy,
            || format!("blob d at {}", held.get()),
            Some(&sink),
            || {
                held.set(held.get() + 10);
                if held.get() < 30 {
                    Err(cut())
                } else {
                    Ok(held.get())
                }
            },
        );
        assert_eq!(got.expect("third attempt succeeds"), 30);
        let lines = events.into_inner().expect("events");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("retry blob d at 10 (attempt 1): "),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("retry blob d at 20 (attempt 2): "),
            "{lines:?}"
        );
    }
}
