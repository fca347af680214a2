//! `HEALTHCHECK [--interval=…] [--timeout=…] [--start-period=…] [--start-interval=…]
//! [--retries=N] CMD …` and `HEALTHCHECK NONE`, as BuildKit's `parseHealthcheck`.
//!
//! Durations use Go's `time.ParseDuration` syntax (`30s`, `1m30s`, `1.5h`, `250ms`); an empty or
//! absent flag means "inherit" (zero), and a non-zero value below 1ms is rejected, as Docker does.
//! `CMD` in shell form becomes `CMD-SHELL` in the image config; that choice is kept in the type.

use std::time::Duration;

use super::{FlagKind, FlagSet, InstructionError, InstructionErrorKind, Request};

/// What the health check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK CMD ["exe", "arg"]`: exec form (`CMD` in the config).
    Cmd(Vec<String>),
    /// `HEALTHCHECK CMD text`: shell form (`CMD-SHELL` in the config).
    CmdShell(String),
}

/// A typed `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// The test to run.
    pub test: HealthTest,
    /// `--interval` (zero: inherit).
    pub interval: Duration,
    /// `--timeout` (zero: inherit).
    pub timeout: Duration,
    /// `--start-period` (zero: inherit).
    pub start_period: Duration,
    /// `--start-interval` (zero: inherit).
    pub start_interval: Duration,
    /// `--retries` (zero: inherit).
    pub retries: u32,
}

/// Why a Go duration did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoDurationError {
    /// Not Go duration syntax.
    Invalid,
    /// A negative duration (Rust durations are unsigned).
    Negative,
}

/// Parse Go's `time.ParseDuration` syntax: `[-+]` then `<decimal><unit>` repeated, units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; a lone `0` needs no unit.
pub fn parse_go_duration(text: &str) -> Result<Duration, GoDurationError> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(GoDurationError::Invalid);
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." {
            return Err(GoDurationError::Invalid);
        }
        let value: f64 = number.parse().map_err(|_| GoDurationError::Invalid)?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(GoDurationError::Invalid),
        };
        rest = &rest[unit_len..];
        total_nanos += value * scale;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(GoDurationError::Invalid);
    }
    if negative && total_nanos > 0.0 {
        return Err(GoDurationError::Negative);
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

pub(crate) fn parse(req: &Request<'_>) -> Result<Healthcheck, InstructionError> {
    let flags = req.flags(
        FlagSet::new()
            .declare("interval", FlagKind::String)
            .declare("timeout", FlagKind::String)
            .declare("start-period", FlagKind::String)
            .declare("start-interval", FlagKind::String)
            .declare("retries", FlagKind::String),
    )?;
    let Some((kind, rest)) = req.node.args.split_first() else {
        return Err(req.error(InstructionErrorKind::AtLeastOneArgument("HEALTHCHECK")));
    };
    let test = match kind.to_ascii_uppercase().as_str() {
        "NONE" if rest.is_empty() => HealthTest::None,
        "NONE" => return Err(req.error(InstructionErrorKind::HealthNoneArguments)),
        "CMD" if rest.is_empty() || (!req.node.json && rest.join(" ").trim().is_empty()) => {
            return Err(req.error(InstructionErrorKind::HealthMissingCommand))
        }
        "CMD" if req.node.json => HealthTest::Cmd(rest.to_vec()),
        "CMD" => HealthTest::CmdShell(rest.join(" ")),
        _ => return Err(req.error(InstructionErrorKind::UnknownHealthType(kind.clone()))),
    };
    let interval = |name: &'static str| -> Result<Duration, InstructionError> {
        let Some(value) = flags.string(name).filter(|v| !v.is_empty()) else {
            return Ok(Duration::ZERO);
        };
        match parse_go_duration(value) {
            Ok(d) if d.is_zero() => Ok(d),
            Ok(d) if d < Duration::from_millis(1) => {
                Err(req.error(InstructionErrorKind::IntervalTooShort(name)))
            }
            Ok(d) => Ok(d),
            Err(GoDurationError::Negative) => {
                Err(req.error(InstructionErrorKind::IntervalTooShort(name)))
            }
            Err(GoDurationError::Invalid) => {
                Err(req.error(InstructionErrorKind::InvalidDuration {
                    flag: name,
                    value: value.to_string(),
                }))
            }
        }
    };
    let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => {
            let n: i64 = v
                .parse()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| req.error(InstructionErrorKind::InvalidRetries(v.to_string())))?;
            u32::try_from(n).map_err(|_| req.error(InstructionErrorKind::NegativeRetries(n)))?
        }
    };
    Ok(Healthcheck {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{json_node, kind, node};
    use super::super::{parse as parse_node, Instruction};
    use super::*;

    fn health(n: &crate::ast::Node) -> Healthcheck {
        match parse_node(n).expect("valid").instruction {
            Instruction::Healthcheck(h) => h,
            other => panic!("not HEALTHCHECK: {other:?}"),
        }
    }

    #[test]
    fn healthcheck_forms() {
        let h = health(&node(
            "healthcheck",
            &[
                "--interval=30s",
                "--timeout=1m30s",
                "--start-period=1.5s",
                "--start-interval=5ms",
                "--retries=3",
            ],
            &["CMD", "curl -f http://localhost/"],
        ));
        assert_eq!(
            h.test,
            HealthTest::CmdShell("curl -f http://localhost/".into())
        );
        assert_eq!(
            (
                h.interval,
                h.timeout,
                h.start_period,
                h.start_interval,
                h.retries
            ),
            (
                Duration::from_secs(30),
                Duration::from_secs(90),
                Duration::from_millis(1500),
                Duration::from_millis(5),
                3
            )
        );
        let h = health(&json_node("healthcheck", &["CMD", "/bin/check", "-q"]));
        assert_eq!(
            h.test,
            HealthTest::Cmd(vec!["/bin/check".into(), "-q".into()])
        );
        assert_eq!(
            health(&node("healthcheck", &[], &["none"])).test,
            HealthTest::None
        );
    }

    #[test]
    fn healthcheck_errors() {
        let cases = [
            (
                node("healthcheck", &[], &[]),
                InstructionErrorKind::AtLeastOneArgument("HEALTHCHECK"),
            ),
            (
                node("healthcheck", &[], &["NONE", "x"]),
                InstructionErrorKind::HealthNoneArguments,
            ),
            (
                node("healthcheck", &[], &["CMD"]),
                InstructionErrorKind::HealthMissingCommand,
            ),
            (
                node("healthcheck", &[], &["RUN", "x"]),
                InstructionErrorKind::UnknownHealthType("RUN".into()),
            ),
            (
                node("healthcheck", &["--interval=1us"], &["CMD", "x"]),
                InstructionErrorKind::IntervalTooShort("interval"),
            ),
            (
                node("healthcheck", &["--timeout=-1s"], &["CMD", "x"]),
                InstructionErrorKind::IntervalTooShort("timeout"),
            ),
            (
                node("healthcheck", &["--interval=5"], &["CMD", "x"]),
                InstructionErrorKind::InvalidDuration {
                    flag: "interval",
                    value: "5".into(),
                },
            ),
            (
                node("healthcheck", &["--retries=-1"], &["CMD", "x"]),
                InstructionErrorKind::NegativeRetries(-1),
            ),
            (
                node("healthcheck", &["--retries=x"], &["CMD", "x"]),
                InstructionErrorKind::InvalidRetries("x".into()),
            ),
        ];
        for (n, want) in cases {
            assert_eq!(kind(&n), want, "{:?} {:?}", n.flags, n.args);
        }
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("1ns", 1),
            ("1us", 1_000),
            ("1µs", 1_000),
            ("2ms", 2_000_000),
            ("1h2m3s", 3_723_000_000_000),
            ("+1.5s", 1_500_000_000),
        ];
        for (text, nanos) in ok {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
        for text in ["", "1", "s", "1x", "1.s.", "--1s"] {
            assert_eq!(
                parse_go_duration(text),
                Err(GoDurationError::Invalid),
                "{text}"
            );
        }
        assert_eq!(parse_go_duration("-1s"), Err(GoDurationError::Negative));
    }
}
