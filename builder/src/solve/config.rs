//! Image-config bookkeeping of a build: how each step changes the image config and which history
//! entry it writes, exactly as BuildKit's `dockerfile2llb` dispatchers do (`dispatchEnv`,
//! `dispatchCmd`, `dispatchCopy`, `commitToHistory`, …).
//!
//! History `created_by` strings follow BuildKit byte for byte where Go formatting is involved:
//! `CMD ["a" "b"]` is Go's `%q` of a string slice, `VOLUME [/a /b]` and `SHELL [/bin/sh -c]` are
//! `%v`, `HEALTHCHECK {Test:[…] Interval:30s …}` is `%+v` of the healthcheck struct with Go
//! duration strings, RUN lines carry the `|N A=1 …` build-arg prefix, and steps that make a
//! filesystem state (RUN, COPY, ADD) end in ` # buildkit`. Every entry has the comment
//! `buildkit.dockerfile.v0`. ONBUILD writes no history entry (BuildKit only stores the trigger).
//!
//! Known deviation: RUN's `|N` prefix lists the ARGs in scope that the image environment does not
//! already hold with the same value (BuildKit also lists an ARG that an ENV of the same name and
//! value shadows).

use std::fmt::Write as _;

use rbuild_layers::image::{Empty, HealthConfig, History, ImageConfig};

use crate::graph::{Command, ConfigOp, CopyKind, CopyOp, CopySource, RunOp};

/// The history comment BuildKit's Dockerfile front-end writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// Why a config change is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An EXPOSE entry is not `[ip:][host:]port[-port][/proto]`.
    #[error("invalid port specification {spec:?}: {reason}")]
    Port {
        /// The entry.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A VOLUME entry is empty.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// A STOPSIGNAL is not a signal.
    #[error("invalid signal: {0}")]
    Signal(String),
}

/// The image config being built by a stage, with the dispatch state BuildKit keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigState {
    /// The image config so far (history included).
    pub image: ImageConfig,
    /// Whether a CMD was set in the current stage (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

/// Apply a config change and append its history entry (`created` = `created`); ONBUILD adds no
/// entry. WORKDIR's entry is pushed by the caller, who knows whether a layer was made.
pub fn apply(state: &mut ConfigState, op: &ConfigOp, created: &str) -> Result<(), ConfigError> {
    let cfg = &mut state.image.config;
    let message = match op {
        ConfigOp::Env(pairs) => {
            let mut msg = String::from("ENV");
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                add_env(env, k, v);
                let _ = write!(msg, " {k}={v}");
            }
            msg
        }
        ConfigOp::Label(pairs) => {
            let mut msg = String::from("LABEL");
            for (k, v) in pairs {
                cfg.labels.insert(k.clone(), v.clone());
                let _ = write!(msg, " {k}={v}");
            }
            msg
        }
        ConfigOp::User(u) => {
            cfg.user = Some(u.clone());
            format!("USER {u}")
        }
        ConfigOp::Workdir(wd) => {
            cfg.working_dir = Some(wd.clone());
            return Ok(());
        }
        ConfigOp::Expose(ports) => {
            let mut all = Vec::new();
            for p in ports {
                all.extend(parse_port_spec(p)?);
            }
            for p in &all {
                cfg.exposed_ports.insert(p.clone(), Empty {});
            }
            format!("EXPOSE {}", go_list(&all))
        }
        ConfigOp::Volume(vols) => {
            for v in vols {
                if v.is_empty() {
                    return Err(ConfigError::EmptyVolume);
                }
                cfg.volumes.insert(v.clone(), Empty {});
            }
            format!("VOLUME {}", go_list(vols))
        }
        ConfigOp::Cmd(args) => {
            cfg.cmd = Some(args.clone());
            cfg.args_escaped = true;
            state.cmd_set = true;
            format!("CMD {}", go_quote_list(args))
        }
        ConfigOp::Entrypoint(args) => {
            cfg.entrypoint = Some(args.clone());
            if !state.cmd_set {
                cfg.cmd = None;
            }
            format!("ENTRYPOINT {}", go_quote_list(args))
        }
        ConfigOp::StopSignal(s) => {
            check_signal(s)?;
            cfg.stop_signal = Some(s.clone());
            format!("STOPSIGNAL {s}")
        }
        ConfigOp::Healthcheck(h) => {
            let hc = HealthConfig {
                test: Some(h.test.clone()),
                interval: h.interval_ns.unwrap_or(0) as i64,
                timeout: h.timeout_ns.unwrap_or(0) as i64,
                start_period: h.start_period_ns.unwrap_or(0) as i64,
                start_interval: h.start_interval_ns.unwrap_or(0) as i64,
                retries: i64::from(h.retries.unwrap_or(0)),
            };
            let msg = format!(
                "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                go_list(&h.test),
                go_duration(hc.interval),
                go_duration(hc.timeout),
                go_duration(hc.start_period),
                go_duration(hc.start_interval),
                hc.retries
            );
            cfg.healthcheck = Some(hc);
            msg
        }
        ConfigOp::Shell(args) => {
            cfg.shell = Some(args.clone());
            format!("SHELL {}", go_list(args))
        }
        ConfigOp::OnBuild(trigger) => {
            cfg.on_build
                .get_or_insert_with(Vec::new)
                .push(trigger.clone());
            return Ok(());
        }
        ConfigOp::Arg(decls) => {
            let parts: Vec<String> = decls
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            format!("ARG {}", parts.join(" "))
        }
        ConfigOp::Maintainer(m) => {
            state.image.author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
    };
    state.image.push_empty(history(message, created));
    Ok(())
}

/// A history entry in BuildKit's form.
pub fn history(created_by: String, created: &str) -> History {
    History {
        created: Some(created.to_string()),
        created_by: Some(created_by),
        author: None,
        comment: Some(HISTORY_COMMENT.to_string()),
        empty_layer: false,
    }
}

/// `WORKDIR /path` (no ` # buildkit`: BuildKit commits it without a state).
pub fn workdir_created_by(wd: &str) -> String {
    format!("WORKDIR {wd}")
}

/// `RUN [|N A=1 …] argv… # buildkit`; `image_env` is the config env before the step.
pub fn run_created_by(run: &RunOp, image_env: &[String]) -> String {
    let args: Vec<String> = match &run.command {
        Command::Exec(argv) => argv.clone(),
        Command::Shell { shell, script } => {
            let mut a = shell.clone();
            a.push(script.clone());
            a
        }
        Command::HeredocScript { shell, content } => {
            let mut a = shell.clone();
            a.push(content.clone());
            a
        }
    };
    let build_args: Vec<String> = run
        .env
        .iter()
        .filter(|(k, v)| !image_env.iter().any(|e| e == &format!("{k}={v}")))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut parts = Vec::new();
    if !build_args.is_empty() {
        parts.push(format!("|{}", build_args.len()));
        parts.extend(build_args);
    }
    parts.extend(args);
    format!("RUN {} # buildkit", parts.join(" "))
}

/// `COPY [--parents] [--chown=…] [--chmod=…] src… <<heredoc… dest # buildkit` (ADD alike).
pub fn copy_created_by(c: &CopyOp) -> String {
    let mut msg = String::from(match c.kind {
        CopyKind::Copy => "COPY",
        CopyKind::Add { .. } => "ADD",
    });
    if c.parents {
        msg.push_str(" --parents");
    }
    if let Some(u) = &c.chown {
        let _ = write!(msg, " --chown={u}");
    }
    if let Some(m) = &c.chmod {
        let _ = write!(msg, " --chmod={m}");
    }
    for s in &c.sources {
        match s {
            CopySource::Path(p) | CopySource::Url(p) => {
                let _ = write!(msg, " {p}");
            }
            CopySource::Git {
                url,
                reference,
                subdir,
            } => {
                let _ = write!(msg, " {url}");
                match (reference, subdir) {
                    (Some(r), Some(d)) => {
                        let _ = write!(msg, "#{r}:{d}");
                    }
                    (Some(r), None) => {
                        let _ = write!(msg, "#{r}");
                    }
                    (None, Some(d)) => {
                        let _ = write!(msg, "#:{d}");
                    }
                    (None, None) => {}
                }
            }
            CopySource::Heredoc { .. } => {}
        }
    }
    for s in &c.sources {
        if let CopySource::Heredoc { name, .. } = s {
            let _ = write!(msg, " <<{name}");
        }
    }
    let _ = write!(msg, " {} # buildkit", c.dest);
    msg
}

/// Set `k=v` in a `KEY=value` list, replacing an existing key in place (BuildKit's `addEnv`).
pub fn add_env(env: &mut Vec<String>, k: &str, v: &str) {
    let entry = format!("{k}={v}");
    for e in env.iter_mut() {
        let key = e.split_once('=').map(|(a, _)| a).unwrap_or(e);
        if key == k {
            *e = entry;
            return;
        }
    }
    env.push(entry);
}

/// Parse a `KEY=value` list into pairs.
pub fn env_pairs(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect()
}

/// `[a b c]`: Go's `%v` of a string slice.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// `["a" "b"]`: Go's `%q` of a string slice.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    let _ = write!(out, "\\u{n:04x}");
                } else {
                    let _ = write!(out, "\\U{n:08x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration.String()` for a duration in nanoseconds.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&fraction(u, div));
        out.push_str(unit);
        return out;
    }
    let hours = u / 3_600_000_000_000;
    let rem = u % 3_600_000_000_000;
    let minutes = rem / 60_000_000_000;
    let secs = rem % 60_000_000_000;
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    out.push_str(&fraction(secs, 1_000_000_000));
    out.push('s');
    out
}

/// `value / div` with the fractional part's trailing zeros removed (`1.5`, `2`).
fn fraction(value: u64, div: u64) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// `[ip:][host:]port[-end][/proto]` → `port/proto` entries, as BuildKit's `parsePortSpec`.
pub fn parse_port_spec(raw: &str) -> Result<Vec<String>, ConfigError> {
    let bad = |reason: &str| ConfigError::Port {
        spec: raw.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("".to_string(), "", *c),
        [h, c] => ("".to_string(), *h, *c),
        [i, h, c] => (i.to_string(), *h, *c),
        many => {
            let n = many.len();
            (many[..n - 2].join(":"), many[n - 2], many[n - 1])
        }
    };
    let (port, proto) = match container.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (container, String::new()),
    };
    if port.is_empty() {
        return Err(bad("no port specified"));
    }
    let proto = match proto.as_str() {
        "" => "tcp".to_string(),
        "tcp" | "udp" | "sctp" => proto,
        other => return Err(bad(&format!("invalid proto: {other}"))),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']').to_string();
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(bad("invalid IP address"));
    }
    let (start, end) = port_range(port).ok_or_else(|| bad("invalid containerPort"))?;
    if !host.is_empty() {
        let (hs, he) = port_range(host).ok_or_else(|| bad("invalid hostPort"))?;
        if end - start != he - hs && end != start {
            return Err(bad("invalid ranges specified for container and host ports"));
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    match text.split_once('-') {
        None => text.parse().ok().map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
            (b >= a).then_some((a, b))
        }
    }
}

/// Signal names and numbers moby's `signal.ParseSignal` accepts on Linux.
fn check_signal(s: &str) -> Result<(), ConfigError> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    if let Ok(n) = s.parse::<u32>() {
        return if n == 0 || n > 64 {
            Err(ConfigError::Signal(s.to_string()))
        } else {
            Ok(())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = name
        .strip_prefix("RTMIN")
        .or_else(|| name.strip_prefix("RTMAX"));
    let is_rt = match rt {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(['+', '-'])
            .is_some_and(|n| n.parse::<u8>().is_ok()),
        None => false,
    };
    if NAMES.contains(&name) || is_rt {
        Ok(())
    } else {
        Err(ConfigError::Signal(s.to_string()))
    }
}

/// RFC 3339 (UTC, second precision) of seconds since the epoch, as Go's `time.Time` marshals it.
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Healthcheck, NetworkMode, SecurityMode, UserSpec};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn history_strings_match_buildkit() {
        let cases: Vec<(&str, ConfigOp, &str)> = vec![
            (
                "env",
                ConfigOp::Env(vec![("A".into(), "1".into()), ("B".into(), "x y".into())]),
                "ENV A=1 B=x y",
            ),
            (
                "label",
                ConfigOp::Label(vec![("a".into(), "b".into())]),
                "LABEL a=b",
            ),
            (
                "cmd is %q",
                ConfigOp::Cmd(strings(&["/bin/sh", "-c", "echo \"hi\""])),
                r#"CMD ["/bin/sh" "-c" "echo \"hi\""]"#,
            ),
            (
                "entrypoint",
                ConfigOp::Entrypoint(strings(&["/app"])),
                r#"ENTRYPOINT ["/app"]"#,
            ),
            (
                "volume is %v",
                ConfigOp::Volume(strings(&["/a", "/b"])),
                "VOLUME [/a /b]",
            ),
            (
                "expose expands ranges",
                ConfigOp::Expose(strings(&["80", "53/UDP", "8000-8001"])),
                "EXPOSE [80/tcp 53/udp 8000/tcp 8001/tcp]",
            ),
            (
                "shell",
                ConfigOp::Shell(strings(&["/bin/bash", "-c"])),
                "SHELL [/bin/bash -c]",
            ),
            (
                "arg",
                ConfigOp::Arg(vec![("A".into(), Some("1".into())), ("B".into(), None)]),
                "ARG A=1 B",
            ),
            ("user", ConfigOp::User("app".into()), "USER app"),
            (
                "stopsignal",
                ConfigOp::StopSignal("SIGKILL".into()),
                "STOPSIGNAL SIGKILL",
            ),
            (
                "maintainer",
                ConfigOp::Maintainer("me".into()),
                "MAINTAINER me",
            ),
            (
                "healthcheck",
                ConfigOp::Healthcheck(Healthcheck {
                    test: strings(&["CMD-SHELL", "true"]),
                    interval_ns: Some(30_000_000_000),
                    timeout_ns: Some(1_500_000_000),
                    start_period_ns: None,
                    start_interval_ns: None,
                    retries: Some(3),
                }),
                "HEALTHCHECK {Test:[CMD-SHELL true] Interval:30s Timeout:1.5s StartPeriod:0s StartInterval:0s Retries:3}",
            ),
        ];
        for (name, op, want) in cases {
            let mut st = ConfigState::default();
            apply(&mut st, &op, "1970-01-01T00:00:00Z").expect(name);
            let h = st.image.history.last().expect(name);
            assert_eq!(h.created_by.as_deref(), Some(want), "{name}");
            assert!(h.empty_layer, "{name}");
            assert_eq!(h.comment.as_deref(), Some(HISTORY_COMMENT), "{name}");
        }
    }

    #[test]
    fn entrypoint_resets_inherited_cmd_only() {
        let mut st = ConfigState::default();
        st.image.config.cmd = Some(strings(&["sh"]));
        apply(&mut st, &ConfigOp::Entrypoint(strings(&["/e"])), "t").expect("apply");
        assert_eq!(st.image.config.cmd, None, "inherited cmd is reset");
        let mut st = ConfigState::default();
        apply(&mut st, &ConfigOp::Cmd(strings(&["c"])), "t").expect("apply");
        apply(&mut st, &ConfigOp::Entrypoint(strings(&["/e"])), "t").expect("apply");
        assert_eq!(st.image.config.cmd, Some(strings(&["c"])), "own cmd kept");
    }

    #[test]
    fn env_replaces_in_place() {
        let mut env = strings(&["PATH=/bin", "A=1"]);
        add_env(&mut env, "PATH", "/usr/bin");
        add_env(&mut env, "B", "2");
        assert_eq!(env, strings(&["PATH=/usr/bin", "A=1", "B=2"]));
    }

    #[test]
    fn onbuild_has_no_history() {
        let mut st = ConfigState::default();
        apply(&mut st, &ConfigOp::OnBuild("RUN x".into()), "t").expect("apply");
        assert!(st.image.history.is_empty());
        assert_eq!(st.image.config.on_build, Some(strings(&["RUN x"])));
    }

    #[test]
    fn invalid_values_are_errors() {
        let cases = [
            ConfigOp::Expose(strings(&["80/foo"])),
            ConfigOp::Expose(strings(&["x"])),
            ConfigOp::Volume(strings(&[""])),
            ConfigOp::StopSignal("SIGNOPE".into()),
        ];
        for op in cases {
            let mut st = ConfigState::default();
            assert!(apply(&mut st, &op, "t").is_err(), "{op:?}");
        }
    }

    #[test]
    fn go_durations() {
        let cases = [
            (0, "0s"),
            (1_500, "1.5µs"),
            (2_000_000, "2ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_661_500_000_000, "1h1m1.5s"),
        ];
        for (ns, want) in cases {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn run_and_copy_created_by() {
        let run = RunOp {
            command: Command::Shell {
                shell: strings(&["/bin/sh", "-c"]),
                script: "echo hi".into(),
            },
            env: vec![("PATH".into(), "/bin".into()), ("V".into(), "1".into())],
            proxy_env: vec![],
            user: None,
            workdir: "/".into(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: vec![],
        };
        assert_eq!(
            run_created_by(&run, &strings(&["PATH=/bin"])),
            "RUN |1 V=1 /bin/sh -c echo hi # buildkit"
        );
        assert_eq!(
            run_created_by(&run, &strings(&["PATH=/bin", "V=1"])),
            "RUN /bin/sh -c echo hi # buildkit"
        );
        let copy = CopyOp {
            kind: CopyKind::Copy,
            from: crate::graph::FsInput::Context(crate::graph::ContextName::main()),
            sources: vec![
                CopySource::Heredoc {
                    name: "EOF".into(),
                    content: "x".into(),
                },
                CopySource::Path("a".into()),
            ],
            dest: "/b/".into(),
            workdir: "/".into(),
            chown: UserSpec::parse("app:app"),
            chmod: None,
            link: false,
            exclude: vec![],
            parents: true,
            checksum: None,
        };
        assert_eq!(
            copy_created_by(&copy),
            "COPY --parents --chown=app:app a <<EOF /b/ # buildkit"
        );
    }

    #[test]
    fn rfc3339_formats() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
        ];
        for (t, want) in cases {
            assert_eq!(rfc3339(t), want, "{t}");
        }
    }
}
