//! One node of the build graph: a [`Step`] is an [`Op`] applied to a parent filesystem state,
//! with typed inputs and the [`Origin`] it was lowered from.
//!
//! The shapes follow BuildKit's LLB as produced by `dockerfile2llb`: a source op (`scratch`,
//! `docker-image://…`, a named `--build-context`), file ops (COPY/ADD with `--chown`, `--chmod`,
//! `--link`, `--exclude`, `--parents`, `--checksum`, heredoc sources), exec ops (RUN with its
//! mounts, network and security mode) and image-config changes (ENV, LABEL, USER, …) that BuildKit
//! keeps beside the LLB in the image config rather than as ops. Every value here is already
//! expanded (no `$VAR` left) and typed: no step carries flags to parse again. Steps never carry host
//! paths; context files are named relative to a named build context.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rbuild_layers::digest::Digest;
use serde::{Deserialize, Serialize};

use super::StepId;

/// Where a step came from in its front-end source, for error messages and progress names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Origin {
    /// The source file as the user named it (e.g. `Dockerfile`); never used in cache keys.
    pub file: String,
    /// Byte range of the instruction in `file`.
    pub span: ByteSpan,
    /// 1-based first line of the instruction.
    pub start_line: u32,
    /// 1-based last line of the instruction (continuations and heredocs included).
    pub end_line: u32,
    /// The stage the step belongs to.
    pub stage: StageRef,
    /// The instruction text as written (first line through last continuation line).
    pub instruction: String,
}

/// A half-open byte range `start..end` in a front-end source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ByteSpan {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// A build stage: its position in the file and its `AS name`, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageRef {
    /// 0-based index of the stage in the file.
    pub index: usize,
    /// The stage's name (`FROM x AS name`), lowercased as BuildKit stores it.
    pub name: Option<String>,
}

impl fmt::Display for StageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => f.write_str(name),
            None => write!(f, "stage-{}", self.index),
        }
    }
}

/// One step of the graph: an operation on top of a parent filesystem state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What the step does.
    pub op: Op,
    /// The filesystem state the op starts from; `None` exactly for [`Op::Source`] steps.
    pub parent: Option<StepId>,
    /// Build variables (ARG and ENV names) whose values the step's expanded fields depend on,
    /// with those values; they enter the cache key so a changed ARG invalidates the step.
    pub used_vars: BTreeMap<String, String>,
    /// Where the step was written.
    pub origin: Origin,
}

impl Step {
    /// A step with no used variables.
    pub fn new(op: Op, parent: Option<StepId>, origin: Origin) -> Self {
        Step {
            op,
            parent,
            used_vars: BTreeMap::new(),
            origin,
        }
    }

    /// Every step this one reads: the parent first, then other inputs in op order.
    pub fn inputs(&self) -> Vec<StepId> {
        let mut out = Vec::new();
        out.extend(self.parent);
        self.op.for_each_step_input(|id| out.push(id));
        out
    }

    /// Rewrite every step reference (parent and op inputs) through `map`.
    pub fn remap_inputs(&mut self, mut map: impl FnMut(StepId) -> StepId) {
        if let Some(p) = self.parent.as_mut() {
            *p = map(*p);
        }
        self.op.for_each_step_input_mut(|id| *id = map(*id));
    }

    /// A short progress name in BuildKit's style: `[stage] INSTRUCTION`.
    pub fn display_name(&self) -> String {
        let text = self.origin.instruction.lines().next().unwrap_or("").trim();
        if text.is_empty() {
            format!("[{}] {}", self.origin.stage, self.op.kind())
        } else {
            format!("[{}] {}", self.origin.stage, text)
        }
    }
}

/// The operation a step performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Start a filesystem state: scratch, an image or a named context.
    Source(SourceOp),
    /// COPY or ADD files into the parent state.
    Copy(CopyOp),
    /// Run a command in the parent state (executed through an [`crate::exec::Executor`]).
    Run(RunOp),
    /// Change the image config (and, for WORKDIR, create the directory).
    Config(ConfigOp),
}

impl Op {
    /// The op's kind as a stable lowercase word (`source`, `copy`, `run`, `config`).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Copy(_) => "copy",
            Op::Run(_) => "run",
            Op::Config(_) => "config",
        }
    }

    /// True when the op may change the filesystem (and so may produce a layer).
    pub fn changes_filesystem(&self) -> bool {
        match self {
            Op::Source(_) => false,
            Op::Copy(_) | Op::Run(_) => true,
            Op::Config(c) => matches!(c, ConfigOp::Workdir(_)),
        }
    }

    fn for_each_step_input(&self, mut f: impl FnMut(StepId)) {
        match self {
            Op::Source(_) | Op::Config(_) => {}
            Op::Copy(c) => {
                if let FsInput::Step(id) = c.from {
                    f(id);
                }
            }
            Op::Run(r) => {
                for m in &r.mounts {
                    if let Some(FsInput::Step(id)) = m.kind.source_input() {
                        f(*id);
                    }
                }
            }
        }
    }

    fn for_each_step_input_mut(&mut self, mut f: impl FnMut(&mut StepId)) {
        match self {
            Op::Source(_) | Op::Config(_) => {}
            Op::Copy(c) => {
                if let FsInput::Step(id) = &mut c.from {
                    f(id);
                }
            }
            Op::Run(r) => {
                for m in &mut r.mounts {
                    if let Some(FsInput::Step(id)) = m.kind.source_input_mut() {
                        f(id);
                    }
                }
            }
        }
    }
}

/// A validated image reference as written (`alpine:3.20`, `ghcr.io/o/r@sha256:…`).
///
/// Only the shape is checked here (non-empty, no whitespace or control characters); resolution to
/// a registry, repository, tag and digest belongs to the image source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef(String);

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{0}`: must be non-empty without whitespace")]
pub struct ImageRefError(pub String);

impl ImageRef {
    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ImageRefError(s.to_string()));
        }
        Ok(ImageRef(s.to_string()))
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ImageRefError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a build context: the main one (`""`) or a `--build-context name=…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContextName(String);

impl ContextName {
    /// The main build context (the directory given on the command line).
    pub fn main() -> Self {
        ContextName(String::new())
    }

    /// A named context (`--build-context name=…`).
    pub fn named(name: impl Into<String>) -> Self {
        ContextName(name.into())
    }

    /// True for the main context.
    pub fn is_main(&self) -> bool {
        self.0.is_empty()
    }

    /// The name; empty for the main context.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContextName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_main() {
            f.write_str("context")
        } else {
            write!(f, "context:{}", self.0)
        }
    }
}

/// A filesystem a step reads besides its parent: a build context, another step, or an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsInput {
    /// Files from a build context.
    Context(ContextName),
    /// The output of another step (e.g. `COPY --from=build`).
    Step(StepId),
    /// The root filesystem of an external image (`COPY --from=alpine`).
    Image(ImageRef),
}

/// Starting filesystem states (BuildKit's source ops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceOp {
    /// An empty filesystem (`FROM scratch`).
    Scratch {
        /// The platform of the stage (`FROM --platform`, else the build's), as `linux/arm64`;
        /// it names the empty image's config and keeps two platforms' caches apart.
        platform: Option<String>,
    },
    /// An image's root filesystem and config.
    Image {
        /// The image reference as written after expansion.
        reference: ImageRef,
        /// `--platform` as written (`linux/arm64`), if given.
        platform: Option<String>,
    },
    /// A named build context used as a base (`FROM name` where `--build-context name=…`).
    NamedContext {
        /// The context's name.
        name: ContextName,
    },
}

/// A user and optional group, by name or number, resolved against the target's `/etc/passwd`
/// and `/etc/group` at execution time (`--chown=app:app`, `USER 1000`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// The user part.
    pub user: IdSpec,
    /// The group part after `:`, if given.
    pub group: Option<IdSpec>,
}

impl UserSpec {
    /// Parse `user[:group]`; each part numeric or a name.
    pub fn parse(s: &str) -> Option<Self> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        if user.is_empty() || group == Some("") {
            return None;
        }
        Some(UserSpec {
            user: IdSpec::parse(user),
            group: group.map(IdSpec::parse),
        })
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{}", self.user, g),
            None => write!(f, "{}", self.user),
        }
    }
}

/// A numeric id or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdSpec {
    /// A numeric uid or gid.
    Id(u32),
    /// A user or group name.
    Name(String),
}

impl IdSpec {
    /// A number when the text is all digits and fits in u32, otherwise a name.
    pub fn parse(s: &str) -> Self {
        match s.parse::<u32>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => IdSpec::Id(n),
            _ => IdSpec::Name(s.to_string()),
        }
    }
}

impl fmt::Display for IdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdSpec::Id(n) => write!(f, "{n}"),
            IdSpec::Name(s) => f.write_str(s),
        }
    }
}

/// A `--chmod` value: octal bits, or a symbolic form (`u+x,g-w`) as BuildKit ≥ 1.14 accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chmod {
    /// Octal permission bits (`0755`).
    Octal(u32),
    /// A symbolic mode expression, verbatim.
    Symbolic(String),
}

impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chmod::Octal(m) => write!(f, "{m:04o}"),
            Chmod::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Whether a file op is COPY or ADD (and ADD's extra behaviour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyKind {
    /// COPY: sources are copied verbatim.
    Copy,
    /// ADD: local archives are unpacked, URLs and git repositories fetched.
    Add {
        /// `--unpack`: `None` = default (unpack local archives, not URLs).
        unpack: Option<bool>,
        /// `--keep-git-dir` for git sources.
        keep_git_dir: bool,
    },
}

/// One source of a COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopySource {
    /// A path (possibly with wildcards) in the op's [`FsInput`].
    Path(String),
    /// An inline heredoc file (`COPY <<EOF /dst`); its name is the delimiter.
    Heredoc {
        /// The delimiter word, used as the file name.
        name: String,
        /// The body after expansion and tab-chomping.
        content: String,
    },
    /// An HTTP(S) URL (ADD only).
    Url(String),
    /// A git repository (ADD only).
    Git {
        /// The repository URL as written.
        url: String,
        /// Branch, tag or commit (`#ref`), if given.
        reference: Option<String>,
        /// Subdirectory (`#ref:subdir`), if given.
        subdir: Option<String>,
    },
}

/// COPY or ADD: put files from an input filesystem into the parent state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOp {
    /// COPY or ADD.
    pub kind: CopyKind,
    /// Where path sources are read from.
    pub from: FsInput,
    /// The sources, in order.
    pub sources: Vec<CopySource>,
    /// Destination as written; relative destinations resolve against `workdir`.
    pub dest: String,
    /// The working directory in effect (for relative `dest`).
    pub workdir: String,
    /// `--chown`; `None` means 0:0 as BuildKit does.
    pub chown: Option<UserSpec>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--link`: copy onto an empty layer, independent of the parent.
    pub link: bool,
    /// `--exclude` patterns, in order.
    pub exclude: Vec<String>,
    /// `--parents`: keep source parent directories below the `/./` pivot.
    pub parents: bool,
    /// `--checksum` for ADD of URLs and git sources.
    pub checksum: Option<Digest>,
}

/// How a RUN command is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Exec form: argv as written in the JSON array.
    Exec(Vec<String>),
    /// Shell form: `script` run as `shell… script` (the SHELL in effect, e.g. `/bin/sh -c`).
    Shell {
        /// The shell argv prefix.
        shell: Vec<String>,
        /// The command line (heredoc markers included when the body is fed by the shell).
        script: String,
    },
    /// A heredoc that is the whole command (`RUN <<EOF`): its body is written to a file and
    /// run by the shell, or by its `#!` interpreter when it has one.
    HeredocScript {
        /// The shell argv prefix in effect.
        shell: Vec<String>,
        /// The body.
        content: String,
    },
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The builder's default (sandboxed network).
    #[default]
    Default,
    /// No network at all.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SecurityMode {
    /// The default sandbox.
    #[default]
    Sandbox,
    /// All capabilities (needs the builder's entitlement).
    Insecure,
}

/// `--mount=type=cache,sharing=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CacheSharing {
    /// Concurrent writers share the directory.
    #[default]
    Shared,
    /// Each concurrent writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// Ownership and permission bits of a mount or secret file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MountPerms {
    /// `mode=` bits, if given.
    pub mode: Option<u32>,
    /// `uid=`, if given.
    pub uid: Option<u32>,
    /// `gid=`, if given.
    pub gid: Option<u32>,
}

/// What a RUN mount provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// `type=bind`: a directory or file of another filesystem.
    Bind {
        /// Where it comes from (the context by default).
        from: FsInput,
        /// Path inside `from`.
        source: String,
        /// `rw`: writes are allowed (and discarded).
        readwrite: bool,
    },
    /// `type=cache`: a persistent directory shared across builds.
    Cache {
        /// Cache id (defaults to the target path).
        id: String,
        /// Seed filesystem, if `from=` was given.
        from: Option<FsInput>,
        /// Path inside `from`.
        source: String,
        /// `sharing=`.
        sharing: CacheSharing,
        /// `ro`.
        readonly: bool,
        /// Ownership and mode of the directory.
        perms: MountPerms,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// `size=` in bytes, if given.
        size: Option<u64>,
    },
    /// `type=secret`.
    Secret {
        /// Secret id.
        id: String,
        /// `required`: fail when the secret is not provided.
        required: bool,
        /// `env=`: expose as an environment variable instead of (or besides) a file.
        env: Option<String>,
        /// File ownership and mode.
        perms: MountPerms,
    },
    /// `type=ssh`: an SSH agent socket.
    Ssh {
        /// Agent id (`default` unless given).
        id: String,
        /// `required`.
        required: bool,
        /// Socket ownership and mode.
        perms: MountPerms,
    },
}

impl MountKind {
    /// The filesystem the mount reads, if any.
    pub fn source_input(&self) -> Option<&FsInput> {
        match self {
            MountKind::Bind { from, .. } => Some(from),
            MountKind::Cache { from, .. } => from.as_ref(),
            MountKind::Tmpfs { .. } | MountKind::Secret { .. } | MountKind::Ssh { .. } => None,
        }
    }

    fn source_input_mut(&mut self) -> Option<&mut FsInput> {
        match self {
            MountKind::Bind { from, .. } => Some(from),
            MountKind::Cache { from, .. } => from.as_mut(),
            MountKind::Tmpfs { .. } | MountKind::Secret { .. } | MountKind::Ssh { .. } => None,
        }
    }

    /// The kind as BuildKit spells it in `type=`.
    pub fn type_name(&self) -> &'static str {
        match self {
            MountKind::Bind { .. } => "bind",
            MountKind::Cache { .. } => "cache",
            MountKind::Tmpfs { .. } => "tmpfs",
            MountKind::Secret { .. } => "secret",
            MountKind::Ssh { .. } => "ssh",
        }
    }
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMount {
    /// Absolute path inside the container (`target=`); for secrets, the file path.
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
}

/// RUN: execute a command on top of the parent state; its changes become a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOp {
    /// The command.
    pub command: Command,
    /// The environment, in image-config order (ENV values plus build ARGs in scope).
    pub env: Vec<(String, String)>,
    /// Proxy settings from build args (`HTTP_PROXY`, …): in the environment, but never in the
    /// cache key or the image history, as in BuildKit.
    pub proxy_env: Vec<(String, String)>,
    /// The user in effect (`USER`), if any; `None` = root.
    pub user: Option<UserSpec>,
    /// The working directory.
    pub workdir: String,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// `--mount`s, in order.
    pub mounts: Vec<RunMount>,
}

/// A HEALTHCHECK configuration (durations in nanoseconds, as the image config stores them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", …]` or `["NONE"]`.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval_ns: Option<u64>,
    /// `--timeout`.
    pub timeout_ns: Option<u64>,
    /// `--start-period`.
    pub start_period_ns: Option<u64>,
    /// `--start-interval`.
    pub start_interval_ns: Option<u64>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// An image-config change. Only WORKDIR touches the filesystem (it creates the directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    /// ENV: set variables, in order.
    Env(Vec<(String, String)>),
    /// LABEL: set labels, in order.
    Label(Vec<(String, String)>),
    /// USER.
    User(String),
    /// WORKDIR: set the working directory (absolute, resolved) and create it.
    Workdir(String),
    /// EXPOSE: `port[/proto]` entries.
    Expose(Vec<String>),
    /// VOLUME: paths.
    Volume(Vec<String>),
    /// CMD: the final argv stored in the config (shell form already wrapped).
    Cmd(Vec<String>),
    /// ENTRYPOINT: the final argv stored in the config.
    Entrypoint(Vec<String>),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// SHELL: the new shell argv.
    Shell(Vec<String>),
    /// ONBUILD: a trigger instruction, verbatim.
    OnBuild(String),
    /// ARG: declarations with their values (recorded in history only).
    Arg(Vec<(String, Option<String>)>),
    /// MAINTAINER: the config's `author` (deprecated instruction).
    Maintainer(String),
}

impl ConfigOp {
    /// The instruction keyword this change comes from, uppercase.
    pub fn keyword(&self) -> &'static str {
        match self {
            ConfigOp::Env(_) => "ENV",
            ConfigOp::Label(_) => "LABEL",
            ConfigOp::User(_) => "USER",
            ConfigOp::Workdir(_) => "WORKDIR",
            ConfigOp::Expose(_) => "EXPOSE",
            ConfigOp::Volume(_) => "VOLUME",
            ConfigOp::Cmd(_) => "CMD",
            ConfigOp::Entrypoint(_) => "ENTRYPOINT",
            ConfigOp::StopSignal(_) => "STOPSIGNAL",
            ConfigOp::Healthcheck(_) => "HEALTHCHECK",
            ConfigOp::Shell(_) => "SHELL",
            ConfigOp::OnBuild(_) => "ONBUILD",
            ConfigOp::Arg(_) => "ARG",
            ConfigOp::Maintainer(_) => "MAINTAINER",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_from(from: FsInput) -> Op {
        Op::Copy(CopyOp {
            kind: CopyKind::Copy,
            from,
            sources: vec![CopySource::Path("a".into())],
            dest: "/".into(),
            workdir: "/".into(),
            chown: None,
            chmod: None,
            link: false,
            exclude: vec![],
            parents: false,
            checksum: None,
        })
    }

    fn run_with_mounts(froms: Vec<FsInput>) -> Op {
        Op::Run(RunOp {
            command: Command::Exec(vec!["true".into()]),
            env: vec![],
            proxy_env: vec![],
            user: None,
            workdir: "/".into(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: froms
                .into_iter()
                .map(|from| RunMount {
                    target: "/m".into(),
                    kind: MountKind::Bind {
                        from,
                        source: "/".into(),
                        readwrite: false,
                    },
                })
                .collect(),
        })
    }

    #[test]
    fn inputs_list_parent_then_op_inputs() {
        let cases: Vec<(&str, Op, Option<StepId>, Vec<StepId>)> = vec![
            (
                "source has none",
                Op::Source(SourceOp::Scratch { platform: None }),
                None,
                vec![],
            ),
            (
                "copy from context",
                copy_from(FsInput::Context(ContextName::main())),
                Some(StepId(0)),
                vec![StepId(0)],
            ),
            (
                "copy from step",
                copy_from(FsInput::Step(StepId(3))),
                Some(StepId(1)),
                vec![StepId(1), StepId(3)],
            ),
            (
                "copy from image",
                copy_from(FsInput::Image("alpine".parse().expect("valid ref"))),
                Some(StepId(1)),
                vec![StepId(1)],
            ),
            (
                "run mounts",
                run_with_mounts(vec![
                    FsInput::Step(StepId(4)),
                    FsInput::Context(ContextName::main()),
                    FsInput::Step(StepId(5)),
                ]),
                Some(StepId(2)),
                vec![StepId(2), StepId(4), StepId(5)],
            ),
        ];
        for (name, op, parent, want) in cases {
            let step = Step::new(op, parent, Origin::default());
            assert_eq!(step.inputs(), want, "{name}");
        }
    }

    #[test]
    fn remap_rewrites_every_reference() {
        let mut step = Step::new(
            run_with_mounts(vec![FsInput::Step(StepId(4))]),
            Some(StepId(2)),
            Origin::default(),
        );
        step.remap_inputs(|id| StepId(id.0 * 10));
        assert_eq!(step.inputs(), vec![StepId(20), StepId(40)]);
    }

    #[test]
    fn user_spec_parsing() {
        let cases = [
            ("1000", Some("1000"), true),
            ("app:app", Some("app:app"), false),
            ("0:42", Some("0:42"), true),
            ("", None, false),
            ("app:", None, false),
        ];
        for (text, want, numeric) in cases {
            let got = UserSpec::parse(text);
            assert_eq!(
                got.as_ref().map(|u| u.to_string()).as_deref(),
                want,
                "{text}"
            );
            if let Some(u) = got {
                assert_eq!(matches!(u.user, IdSpec::Id(_)), numeric, "{text}");
            }
        }
    }

    #[test]
    fn image_ref_shape() {
        let cases = [
            ("alpine:3.20", true),
            ("", false),
            ("a b", false),
            ("ghcr.io/o/r@sha256:00", true),
        ];
        for (text, ok) in cases {
            assert_eq!(text.parse::<ImageRef>().is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn display_name_uses_stage_and_first_line() {
        let origin = Origin {
            stage: StageRef {
                index: 1,
                name: Some("build".into()),
            },
            instruction: "RUN make \\\n  all".into(),
            ..Origin::default()
        };
        let step = Step::new(
            Op::Source(SourceOp::Scratch { platform: None }),
            None,
            origin,
        );
        assert_eq!(step.display_name(), "[build] RUN make \\");
        let unnamed = Step::new(
            Op::Source(SourceOp::Scratch { platform: None }),
            None,
            Origin::default(),
        );
        assert_eq!(unnamed.display_name(), "[stage-0] source");
    }
}
