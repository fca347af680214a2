//! `RUN` with its BuildKit flags: `--mount` (CSV, as `instructions/commands_runmount.go`),
//! `--network` (`commands_runnetwork.go`) and `--security` (`commands_runsecurity.go`).
//!
//! Mount defaults are BuildKit's: the type is `bind`; bind, secret and ssh mounts are read-only
//! unless `rw` is given, cache and tmpfs are writable; a cache mount's id defaults to its target
//! and its sharing to `shared`; a secret's id defaults to the base name of its target and its
//! target to `/run/secrets/<id>`, with mode 0400; an ssh mount's id is `default`, its target
//! `/run/buildkit/ssh_agent.<n>` (n counts ssh mounts of the RUN), mode 0600.
//! Mount values are expanded at dispatch; only `from` may never hold a variable.

use super::{FlagKind, FlagSet, InstructionError, InstructionErrorKind, Request, ShellOrExec};
use crate::ast::Heredoc;

/// `RUN`: execute a command in the stage's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command (shell text is never expanded by the front-end).
    pub command: ShellOrExec,
    /// `--mount` specs, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// Heredocs attached to the command (`RUN <<EOF`).
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The builder's default network.
    #[default]
    Default,
    /// No network at all.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    /// The normal sandbox.
    #[default]
    Sandbox,
    /// Extra privileges (requires the builder to allow it).
    Insecure,
}

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountType {
    /// A read-only (by default) view of the context, a stage or an image.
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A secret file (or environment variable) provided by the client.
    Secret,
    /// An SSH agent socket forwarded from the client.
    Ssh,
}

impl MountType {
    /// The lowercase name used in Dockerfiles.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

impl std::fmt::Display for MountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Many writers at once.
    #[default]
    Shared,
    /// A new cache when the existing one is in use.
    Private,
    /// Wait until the other writer releases it.
    Locked,
}

/// One `--mount` spec with BuildKit's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount type.
    pub kind: MountType,
    /// Where it is mounted in the container (defaulted for secret and ssh).
    pub target: String,
    /// Path inside the source (`source=`/`src=`).
    pub source: Option<String>,
    /// Stage name, stage index or image the mount comes from (`from=`, never expanded).
    pub from: Option<String>,
    /// Whether it is mounted read-only.
    pub readonly: bool,
    /// Cache/secret/ssh id (defaulted as described in the module doc).
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Sharing,
    /// File mode for cache, secret and ssh mounts.
    pub mode: Option<u32>,
    /// Owner uid for cache, secret and ssh mounts.
    pub uid: Option<u32>,
    /// Owner gid for cache, secret and ssh mounts.
    pub gid: Option<u32>,
    /// Size limit in bytes of a tmpfs mount.
    pub size: Option<u64>,
    /// Fail when the secret or ssh socket is not provided.
    pub required: bool,
    /// Expose the secret as this environment variable instead of a file.
    pub env: Option<String>,
    /// The spec as written (CSV, unexpanded).
    pub raw: String,
    /// True when some value holds a variable: the fields are final only after expansion.
    pub has_variables: bool,
}

/// A `--mount` value that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// The CSV text does not parse.
    #[error("failed to parse csv mounts: {0}")]
    Csv(String),
    /// A field without `=` that is not a boolean option.
    #[error("invalid field '{0}' must be a key=value pair")]
    InvalidField(String),
    /// A key no mount knows.
    #[error("unexpected key '{key}' in '{field}'")]
    UnexpectedKey {
        /// The key.
        key: String,
        /// The whole field.
        field: String,
    },
    /// A key that the mount's type does not take.
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType {
        /// The key.
        key: String,
        /// The mount type.
        kind: MountType,
    },
    /// `type=` other than bind, cache, tmpfs, secret, ssh.
    #[error("unsupported mount type {0:?}")]
    UnsupportedType(String),
    /// `sharing=` other than shared, private, locked.
    #[error("unsupported sharing value {0:?}")]
    UnsupportedSharing(String),
    /// A value of the wrong shape (boolean, octal mode, number, size).
    #[error("invalid value for {key}: {value}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `mode`/`uid`/`gid` on a bind or tmpfs mount.
    #[error("{field} not allowed for {kind:?} type mounts")]
    FileInfoNotAllowed {
        /// `mode`, `uid` or `gid`.
        field: &'static str,
        /// The mount type.
        kind: MountType,
    },
    /// A secret mount with `from=`.
    #[error("secret mount should not have a from")]
    SecretFrom,
    /// A secret mount without source, target or id.
    #[error("invalid secret mount. one of source, target required")]
    SecretNeedsTarget,
    /// A secret mount with both `source=` and `id=`.
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    /// `sharing=` on a mount that is not a cache.
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(MountType),
    /// A bind, cache or tmpfs mount without `target=`.
    #[error("mount target is required for {0} mounts")]
    TargetRequired(MountType),
    /// `from=` holding a variable.
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    /// A variable in a value could not be expanded.
    #[error("failed to expand {value:?}: {message}")]
    Expand {
        /// The value as written.
        value: String,
        /// Why it failed.
        message: String,
    },
}

/// How [`Mount::parse`] treats values holding `$`.
pub enum MountValues<'a> {
    /// Reading the Dockerfile: values with `$` are kept for later and not checked.
    Deferred,
    /// Dispatching: every value is expanded first.
    Expand(&'a mut dyn FnMut(&str) -> Result<String, String>),
}

impl Mount {
    /// Parse one `--mount` CSV spec; `ssh_index` numbers ssh mounts within the RUN.
    pub fn parse(
        raw: &str,
        mut values: MountValues<'_>,
        ssh_index: usize,
    ) -> Result<Mount, MountError> {
        let fields = split_csv(raw)?;
        let mut m = Mount {
            kind: MountType::Bind,
            target: String::new(),
            source: None,
            from: None,
            readonly: false,
            id: None,
            sharing: Sharing::Shared,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            required: false,
            env: None,
            raw: raw.to_string(),
            has_variables: false,
        };
        let mut sharing_set = false;
        let mut ro_auto = true;
        for field in &fields {
            let Some((key, value)) = field.split_once('=') else {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => (m.readonly, ro_auto) = (true, false),
                    "readwrite" | "rw" => (m.readonly, ro_auto) = (false, false),
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true
                    }
                    "required" => {
                        return Err(MountError::KeyNotForType {
                            key: "required".into(),
                            kind: m.kind,
                        })
                    }
                    _ => return Err(MountError::InvalidField(field.clone())),
                }
                continue;
            };
            let key = key.to_ascii_lowercase();
            let value = if key == "from" {
                if has_variable(value) {
                    return Err(MountError::FromVariable);
                }
                value.to_string()
            } else {
                match &mut values {
                    MountValues::Expand(f) => f(value).map_err(|message| MountError::Expand {
                        value: value.to_string(),
                        message,
                    })?,
                    MountValues::Deferred if value.contains('$') => {
                        if !KEYS.contains(&key.as_str()) {
                            return Err(MountError::UnexpectedKey {
                                key,
                                field: field.clone(),
                            });
                        }
                        m.has_variables = true;
                        continue;
                    }
                    MountValues::Deferred => value.to_string(),
                }
            };
            let invalid = || MountError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
            };
            match key.as_str() {
                "type" => {
                    m.kind = match value.to_ascii_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => return Err(MountError::UnsupportedType(value)),
                    }
                }
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = value,
                "readonly" | "ro" => {
                    m.readonly = parse_go_bool(&value).ok_or_else(invalid)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_go_bool(&value).ok_or_else(invalid)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(MountError::KeyNotForType { key, kind: m.kind });
                    }
                    m.required = parse_go_bool(&value).ok_or_else(invalid)?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(MountError::KeyNotForType { key, kind: m.kind });
                    }
                    m.size = Some(parse_ram_bytes(&value).ok_or_else(invalid)?);
                }
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        _ => return Err(MountError::UnsupportedSharing(value)),
                    };
                    sharing_set = true;
                }
                "mode" => m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| invalid())?),
                "uid" => m.uid = Some(value.parse().map_err(|_| invalid())?),
                "gid" => m.gid = Some(value.parse().map_err(|_| invalid())?),
                "env" => m.env = Some(value),
                _ => {
                    return Err(MountError::UnexpectedKey {
                        key,
                        field: field.clone(),
                    })
                }
            }
        }
        validate(&mut m, ro_auto, sharing_set, ssh_index)?;
        Ok(m)
    }
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "size",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "env",
];

fn validate(
    m: &mut Mount,
    ro_auto: bool,
    sharing_set: bool,
    ssh_index: usize,
) -> Result<(), MountError> {
    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (field, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfoNotAllowed {
                    field,
                    kind: m.kind,
                });
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if sharing_set && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(m.kind));
    }
    if m.env.is_some() && m.kind != MountType::Secret {
        return Err(MountError::KeyNotForType {
            key: "env".into(),
            kind: m.kind,
        });
    }
    if m.has_variables {
        // Defaults depend on values we do not know yet; they are applied after expansion.
        return Ok(());
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err(MountError::SecretFrom);
            }
            if m.source.is_none() && m.target.is_empty() && m.id.is_none() && m.env.is_none() {
                return Err(MountError::SecretNeedsTarget);
            }
            if m.source.is_some() && m.id.is_some() {
                return Err(MountError::SecretSourceAndId);
            }
            if m.id.is_none() {
                m.id = m
                    .source
                    .clone()
                    .or_else(|| Some(base_name(&m.target).to_string()));
            }
            if m.target.is_empty() && m.env.is_none() {
                m.target = format!(
                    "/run/secrets/{}",
                    base_name(m.id.as_deref().unwrap_or_default())
                );
            }
            m.mode.get_or_insert(0o400);
        }
        MountType::Ssh => {
            m.id.get_or_insert_with(|| "default".to_string());
            if m.target.is_empty() {
                m.target = format!("/run/buildkit/ssh_agent.{ssh_index}");
            }
            m.mode.get_or_insert(0o600);
        }
        MountType::Cache => {
            if m.target.is_empty() {
                return Err(MountError::TargetRequired(m.kind));
            }
            m.id.get_or_insert_with(|| m.target.clone());
        }
        MountType::Bind | MountType::Tmpfs => {
            if m.target.is_empty() {
                return Err(MountError::TargetRequired(m.kind));
            }
        }
    }
    Ok(())
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// True when `value` holds `$` followed by something (BuildKit's `\$.` check).
fn has_variable(value: &str) -> bool {
    value.find('$').is_some_and(|i| i + 1 < value.len())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: a number with an optional binary suffix (`k`, `m`, `g`, …,
/// optionally followed by `b` or `ib`, any case).
fn parse_ram_bytes(value: &str) -> Option<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, suffix) = lower.split_at(split);
    let num: f64 = num.parse().ok()?;
    let suffix = suffix.trim_start();
    let suffix = suffix
        .strip_suffix("ib")
        .or_else(|| suffix.strip_suffix('b'))
        .unwrap_or(suffix);
    let shift = match suffix {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = num * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Go `encoding/csv` reading one record: `,` separated, `"…"` quoting with `""` for a quote.
fn split_csv(text: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(MountError::Csv(format!(
                            "extraneous or missing \" in quoted-field: {text}"
                        )))
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(MountError::Csv(format!(
                        "extraneous or missing \" in quoted-field: {text}"
                    )))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(MountError::Csv(format!(
                            "bare \" in non-quoted-field: {text}"
                        )))
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

pub(crate) fn parse(req: &Request<'_>) -> Result<Run, InstructionError> {
    let flags = req.flags(
        FlagSet::new()
            .declare("mount", FlagKind::Strings)
            .declare("network", FlagKind::String)
            .declare("security", FlagKind::String),
    )?;
    let mut mounts = Vec::new();
    let mut ssh_index = 0;
    for raw in flags.strings("mount") {
        let m =
            Mount::parse(raw, MountValues::Deferred, ssh_index).map_err(|e| req.error(e.into()))?;
        if m.kind == MountType::Ssh {
            ssh_index += 1;
        }
        mounts.push(m);
    }
    let network = match flags.string("network") {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(req.error(InstructionErrorKind::InvalidNetwork(other.to_string())))
        }
    };
    let security = match flags.string("security") {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(other) => {
            return Err(req.error(InstructionErrorKind::InvalidSecurity(other.to_string())))
        }
    };
    Ok(Run {
        command: ShellOrExec::from_node(req.node),
        mounts,
        network,
        security,
        heredocs: req.heredocs(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{kind, node};
    use super::super::{parse as parse_node, Instruction};
    use super::*;

    fn mount(raw: &str) -> Result<Mount, MountError> {
        Mount::parse(raw, MountValues::Deferred, 0)
    }

    #[test]
    fn mount_defaults_follow_buildkit() {
        let m = mount("target=/src").expect("bind");
        assert_eq!(
            (m.kind, m.readonly, m.target.as_str()),
            (MountType::Bind, true, "/src")
        );
        let m = mount("type=cache,target=/root/.cache").expect("cache");
        assert_eq!(
            (m.readonly, m.id.as_deref(), m.sharing),
            (false, Some("/root/.cache"), Sharing::Shared)
        );
        let m = mount("type=tmpfs,dst=/tmp,size=64m").expect("tmpfs");
        assert_eq!((m.readonly, m.size), (false, Some(64 << 20)));
        let m = mount("type=secret,id=npmrc").expect("secret");
        assert_eq!(
            (m.target.as_str(), m.mode, m.readonly),
            ("/run/secrets/npmrc", Some(0o400), true)
        );
        let m = mount("type=secret,target=/etc/token").expect("secret by target");
        assert_eq!(m.id.as_deref(), Some("token"));
        let m = Mount::parse("type=ssh", MountValues::Deferred, 1).expect("ssh");
        assert_eq!(
            (m.id.as_deref(), m.target.as_str(), m.mode),
            (Some("default"), "/run/buildkit/ssh_agent.1", Some(0o600))
        );
    }

    #[test]
    fn mount_options() {
        let m =
            mount("type=cache,target=/c,id=x,sharing=locked,mode=0700,uid=1000,gid=1000,rw=false")
                .expect("cache");
        assert_eq!(
            (m.id.as_deref(), m.sharing, m.mode, m.uid, m.gid, m.readonly),
            (
                Some("x"),
                Sharing::Locked,
                Some(0o700),
                Some(1000),
                Some(1000),
                true
            )
        );
        let m = mount("type=bind,from=build,source=/out,target=/in,rw").expect("bind rw");
        assert_eq!(
            (m.from.as_deref(), m.source.as_deref(), m.readonly),
            (Some("build"), Some("/out"), false)
        );
        let m = mount("type=secret,id=tok,env=TOKEN,required").expect("secret env");
        assert_eq!(
            (m.env.as_deref(), m.required, m.target.as_str()),
            (Some("TOKEN"), true, "")
        );
        let m = mount("\"type=bind\",\"target=/a,b\"").expect("quoted csv");
        assert_eq!(m.target, "/a,b");
    }

    #[test]
    fn mount_errors() {
        let cases: &[(&str, MountError)] = &[
            (
                "type=nfs,target=/x",
                MountError::UnsupportedType("nfs".into()),
            ),
            (
                "target=/x,bogus=1",
                MountError::UnexpectedKey {
                    key: "bogus".into(),
                    field: "bogus=1".into(),
                },
            ),
            ("target=/x,foo", MountError::InvalidField("foo".into())),
            (
                "target=/x,mode=0700",
                MountError::FileInfoNotAllowed {
                    field: "mode",
                    kind: MountType::Bind,
                },
            ),
            (
                "type=cache,target=/x,sharing=maybe",
                MountError::UnsupportedSharing("maybe".into()),
            ),
            (
                "target=/x,sharing=locked",
                MountError::SharingNotCache(MountType::Bind),
            ),
            (
                "target=/x,size=1g",
                MountError::KeyNotForType {
                    key: "size".into(),
                    kind: MountType::Bind,
                },
            ),
            (
                "target=/x,required",
                MountError::KeyNotForType {
                    key: "required".into(),
                    kind: MountType::Bind,
                },
            ),
            ("type=secret", MountError::SecretNeedsTarget),
            ("type=secret,id=a,source=b", MountError::SecretSourceAndId),
            ("type=secret,id=a,from=b", MountError::SecretFrom),
            ("type=cache", MountError::TargetRequired(MountType::Cache)),
            ("target=/x,from=$STAGE", MountError::FromVariable),
            (
                "target=/x,ro=maybe",
                MountError::InvalidValue {
                    key: "ro".into(),
                    value: "maybe".into(),
                },
            ),
            (
                "target=/x,\"a",
                MountError::Csv("extraneous or missing \" in quoted-field: target=/x,\"a".into()),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(mount(raw).as_ref().err(), Some(want), "{raw}");
        }
    }

    #[test]
    fn mount_variables_are_deferred_then_expanded() {
        let m = mount("type=cache,target=$HOME/.cache,uid=${UID}").expect("deferred");
        assert!(m.has_variables);
        let mut expand =
            |v: &str| Ok::<_, String>(v.replace("$HOME", "/root").replace("${UID}", "42"));
        let m = Mount::parse(&m.raw, MountValues::Expand(&mut expand), 0).expect("expanded");
        assert_eq!(
            (m.target.as_str(), m.uid, m.id.as_deref()),
            ("/root/.cache", Some(42), Some("/root/.cache"))
        );
        assert!(!m.has_variables);
    }

    #[test]
    fn run_flags() {
        let n = node(
            "run",
            &[
                "--mount=type=cache,target=/c",
                "--network=none",
                "--security=insecure",
            ],
            &["make"],
        );
        let Instruction::Run(r) = parse_node(&n).expect("valid").instruction else {
            panic!("not RUN")
        };
        assert_eq!(r.command, ShellOrExec::Shell("make".into()));
        assert_eq!(
            (r.mounts.len(), r.network, r.security),
            (1, NetworkMode::None, SecurityMode::Insecure)
        );
        assert_eq!(
            kind(&node("run", &["--network=bridge"], &["x"])),
            InstructionErrorKind::InvalidNetwork("bridge".into())
        );
        assert_eq!(
            kind(&node("run", &["--security=root"], &["x"])),
            InstructionErrorKind::InvalidSecurity("root".into())
        );
        assert_eq!(
            kind(&node("run", &["--mount=type=nope,target=/x"], &["x"])),
            InstructionErrorKind::Mount(MountError::UnsupportedType("nope".into()))
        );
    }

    #[test]
    fn ram_sizes() {
        for (text, want) in [
            ("100", Some(100)),
            ("1k", Some(1024)),
            ("1.5KiB", Some(1536)),
            ("2G", Some(2 << 30)),
            ("x", None),
            ("1q", None),
        ] {
            assert_eq!(parse_ram_bytes(text), want, "{text}");
        }
    }
}
