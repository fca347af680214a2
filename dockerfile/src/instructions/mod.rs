//! Typed instructions: one struct per Dockerfile instruction, built from a raw [`Node`], as
//! BuildKit's `instructions/commands.go` and `parse.go` do.
//!
//! Every flag is parsed here, once, into a typed value (durations, booleans, mount specs,
//! network and security modes); arity is checked here; an unknown keyword is rejected with a
//! "did you mean" suggestion. Words are **not** expanded: `$VAR` stays as written, because
//! BuildKit expands at dispatch time with the stage's environment (see [`mod@crate::lower`]).
//! Values BuildKit expands later (`--chown`, `--chmod`, `--checksum`, `--mount` fields) are
//! validated here when they hold no `$`, and checked again after expansion.
//!
//! Known deviations from BuildKit: a literal invalid `--mount` or `--chmod` value is reported
//! when the Dockerfile is read, even in a stage the target does not need (BuildKit reports it
//! only when dispatching a reachable stage). Error messages are lowercase.

mod copy;
mod flags;
mod from;
mod healthcheck;
mod meta;
mod onbuild;
mod run;

pub use copy::{Add, Chmod, Chown, Copy, CopySource};
pub use flags::{FlagError, FlagKind, FlagSet};
pub use from::From;
pub use healthcheck::{parse_go_duration, GoDurationError, HealthTest, Healthcheck};
pub use meta::{Arg, ArgDecl, KeyValue};
pub use onbuild::Onbuild;
pub use run::{Mount, MountError, MountType, MountValues, NetworkMode, Run, SecurityMode, Sharing};

use crate::ast::{Heredoc, Node};
use crate::span::Location;

/// One instruction with where it came from: the unit lowering and the builder work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The typed instruction.
    pub instruction: Instruction,
    /// Where it is in the Dockerfile.
    pub location: Location,
    /// Its source text, trimmed (BuildKit's `String()` of a command).
    pub original: String,
}

impl Command {
    /// The instruction keyword in upper case (`RUN`, `COPY`, …).
    pub fn keyword(&self) -> &'static str {
        self.instruction.keyword()
    }
}

/// A Dockerfile instruction with its flags parsed and its arguments checked (words unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM [--platform=P] image [AS name]`.
    From(From),
    /// `RUN [--mount=…] [--network=…] [--security=…] command`.
    Run(Run),
    /// `COPY [--from=…] [--chown=…] [--chmod=…] [--link] [--parents] [--exclude=…] src… dest`.
    Copy(Copy),
    /// `ADD [--chown=…] [--chmod=…] [--link] [--checksum=…] [--keep-git-dir] [--exclude=…] src… dest`.
    Add(Add),
    /// `ENV k=v …` or legacy `ENV k v`.
    Env(Vec<KeyValue>),
    /// `ARG name[=default] …`.
    Arg(Arg),
    /// `LABEL k=v …`.
    Label(Vec<KeyValue>),
    /// `MAINTAINER name` (deprecated; sets the image author).
    Maintainer(String),
    /// `EXPOSE port[/proto] …` (words, split again after expansion).
    Expose(Vec<String>),
    /// `VOLUME path …` or `VOLUME ["path", …]`.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `CMD …` (shell or exec form).
    Cmd(ShellOrExec),
    /// `ENTRYPOINT …` (shell or exec form).
    Entrypoint(ShellOrExec),
    /// `SHELL ["executable", "params"…]`.
    Shell(Vec<String>),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK [options] CMD …` or `HEALTHCHECK NONE`.
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`.
    Onbuild(Onbuild),
}

impl Instruction {
    /// The instruction keyword in upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
        }
    }
}

/// A command line in shell form (run through the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// Shell form: the raw text, continuations joined, never expanded by the front-end.
    Shell(String),
    /// Exec form: the JSON array elements.
    Exec(Vec<String>),
}

impl ShellOrExec {
    fn from_node(node: &Node) -> Self {
        if node.json {
            ShellOrExec::Exec(node.args.clone())
        } else {
            ShellOrExec::Shell(node.args.join(" "))
        }
    }
}

/// Every instruction keyword, lowercase, as BuildKit's parser knows them.
pub const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// An instruction that could not be turned into a typed value, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {line}: {kind}", line = .location.start_line)]
pub struct InstructionError {
    /// The instruction keyword as written (upper-cased), e.g. `COPY`.
    pub instruction: String,
    /// Where the instruction is.
    pub location: Location,
    /// What is wrong.
    pub kind: InstructionErrorKind,
}

/// The reasons an instruction is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionErrorKind {
    /// The keyword is not a Dockerfile instruction.
    #[error("unknown instruction: {word}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownInstruction {
        /// The word as written.
        word: String,
        /// The closest known keyword, upper-cased, if one is close.
        suggestion: Option<String>,
    },
    /// A flag problem (unknown, duplicate, missing value…).
    #[error("{instruction}: {source}")]
    Flag {
        /// The instruction keyword.
        instruction: &'static str,
        /// What is wrong with the flag.
        source: FlagError,
    },
    /// The instruction takes exactly one argument.
    #[error("{0} requires exactly one argument")]
    ExactlyOneArgument(&'static str),
    /// The instruction takes at least one argument.
    #[error("{0} requires at least one argument")]
    AtLeastOneArgument(&'static str),
    /// COPY/ADD need a source and a destination.
    #[error("{0} requires at least two arguments, but only one was provided. destination could not be determined")]
    NoDestination(&'static str),
    /// FROM takes `image` or `image AS name`.
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    /// A stage name must match `^[a-z][a-z0-9-_.]*$` (case-insensitively).
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName(String),
    /// ENV/LABEL/ARG with an empty name.
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    /// SHELL given in shell form.
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// A `--mount` value that is not valid.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// `--network` other than default, none or host.
    #[error("unsupported network mode {0:?}")]
    InvalidNetwork(String),
    /// `--security` other than sandbox or insecure.
    #[error("unsupported security mode {0:?}")]
    InvalidSecurity(String),
    /// `--chmod` that is neither octal nor a symbolic mode.
    #[error("invalid chmod {0:?}: expected an octal mode or a symbolic mode like u+x")]
    InvalidChmod(String),
    /// `--chown` with an empty user.
    #[error("invalid chown {0:?}: the user can not be empty")]
    InvalidChown(String),
    /// HEALTHCHECK followed by something other than CMD or NONE.
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    UnknownHealthType(String),
    /// `HEALTHCHECK CMD` with nothing after it.
    #[error("missing command after HEALTHCHECK CMD")]
    HealthMissingCommand,
    /// `HEALTHCHECK NONE` followed by more words.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthNoneArguments,
    /// A HEALTHCHECK duration flag that does not parse.
    #[error("invalid duration {value:?} for --{flag}")]
    InvalidDuration {
        /// The flag name.
        flag: &'static str,
        /// The value given.
        value: String,
    },
    /// A HEALTHCHECK duration below 1ms (other than 0).
    #[error("interval {0:?} cannot be less than 1ms")]
    IntervalTooShort(&'static str),
    /// `--retries` that is not an integer.
    #[error("invalid value {0:?} for --retries")]
    InvalidRetries(String),
    /// `--retries` below zero.
    #[error("--retries cannot be negative ({0})")]
    NegativeRetries(i64),
    /// ONBUILD without a trigger.
    #[error("ONBUILD requires at least one argument")]
    OnbuildMissing,
    /// `ONBUILD ONBUILD …`.
    #[error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    /// A stored ONBUILD trigger that is not exactly one instruction.
    #[error("onbuild trigger should be a single expression: {0:?}")]
    OnbuildNotSingle(String),
    /// `ONBUILD FROM` or `ONBUILD MAINTAINER`.
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
}

/// What every per-instruction parser receives: the node and helpers for errors.
pub(crate) struct Request<'a> {
    pub node: &'a Node,
    pub keyword: &'static str,
}

impl Request<'_> {
    pub(crate) fn error(&self, kind: InstructionErrorKind) -> InstructionError {
        InstructionError {
            instruction: self.keyword.to_string(),
            location: self.node.location,
            kind,
        }
    }

    /// Parse the node's flags against `set`.
    pub(crate) fn flags(&self, set: FlagSet) -> Result<FlagSet, InstructionError> {
        set.parse(&self.node.flags).map_err(|source| {
            self.error(InstructionErrorKind::Flag {
                instruction: self.keyword,
                source,
            })
        })
    }

    /// Reject any flag: for instructions that take none.
    pub(crate) fn no_flags(&self) -> Result<(), InstructionError> {
        self.flags(FlagSet::new()).map(|_| ())
    }

    pub(crate) fn exactly_one(&self) -> Result<String, InstructionError> {
        match self.node.args.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(self.error(InstructionErrorKind::ExactlyOneArgument(self.keyword))),
        }
    }

    pub(crate) fn at_least_one(&self) -> Result<(), InstructionError> {
        if self.node.args.is_empty() {
            return Err(self.error(InstructionErrorKind::AtLeastOneArgument(self.keyword)));
        }
        Ok(())
    }

    pub(crate) fn heredocs(&self) -> Vec<Heredoc> {
        self.node.heredocs.clone()
    }
}

/// Turn one raw node into a typed [`Command`].
pub fn parse(node: &Node) -> Result<Command, InstructionError> {
    let Some(keyword) = canonical_keyword(&node.keyword) else {
        let word = node
            .original
            .split_whitespace()
            .next()
            .unwrap_or(&node.keyword)
            .to_string();
        return Err(InstructionError {
            instruction: node.keyword.to_ascii_uppercase(),
            location: node.location,
            kind: InstructionErrorKind::UnknownInstruction {
                suggestion: suggest_keyword(&node.keyword),
                word,
            },
        });
    };
    let req = Request { node, keyword };
    let instruction = match keyword {
        "FROM" => Instruction::From(from::parse(&req)?),
        "RUN" => Instruction::Run(run::parse(&req)?),
        "COPY" => Instruction::Copy(copy::parse_copy(&req)?),
        "ADD" => Instruction::Add(copy::parse_add(&req)?),
        "ENV" => Instruction::Env(meta::parse_key_values(&req)?),
        "LABEL" => Instruction::Label(meta::parse_key_values(&req)?),
        "ARG" => Instruction::Arg(meta::parse_arg(&req)?),
        "MAINTAINER" => {
            req.no_flags()?;
            Instruction::Maintainer(req.exactly_one()?)
        }
        "EXPOSE" => {
            req.no_flags()?;
            req.at_least_one()?;
            Instruction::Expose(node.args.clone())
        }
        "VOLUME" => {
            req.no_flags()?;
            req.at_least_one()?;
            Instruction::Volume(node.args.clone())
        }
        "USER" => {
            req.no_flags()?;
            Instruction::User(req.exactly_one()?)
        }
        "WORKDIR" => {
            req.no_flags()?;
            Instruction::Workdir(req.exactly_one()?)
        }
        "STOPSIGNAL" => {
            req.no_flags()?;
            Instruction::StopSignal(req.exactly_one()?)
        }
        "CMD" => {
            req.no_flags()?;
            Instruction::Cmd(ShellOrExec::from_node(node))
        }
        "ENTRYPOINT" => {
            req.no_flags()?;
            Instruction::Entrypoint(ShellOrExec::from_node(node))
        }
        "SHELL" => Instruction::Shell(meta::parse_shell(&req)?),
        "HEALTHCHECK" => Instruction::Healthcheck(healthcheck::parse(&req)?),
        "ONBUILD" => Instruction::Onbuild(onbuild::parse(&req)?),
        other => {
            // canonical_keyword only returns entries of KEYWORDS, all handled above.
            return Err(req.error(InstructionErrorKind::UnknownInstruction {
                word: other.to_string(),
                suggestion: None,
            }));
        }
    };
    Ok(Command {
        instruction,
        location: node.location,
        original: node.original.trim().to_string(),
    })
}

fn canonical_keyword(word: &str) -> Option<&'static str> {
    const UPPER: &[&str] = &[
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    UPPER.iter().copied().find(|k| k.eq_ignore_ascii_case(word))
}

/// The known keyword closest to `word` (upper-cased), if it is within a few edits.
pub fn suggest_keyword(word: &str) -> Option<String> {
    let word = word.to_ascii_lowercase();
    let limit = (word.len() / 3).max(1);
    KEYWORDS
        .iter()
        .map(|k| (levenshtein(&word, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k.to_ascii_uppercase())
}

/// Edit distance between two strings, by characters, counting a swap of neighbours as one
/// edit (optimal string alignment).
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::span::Span;

    /// A node as the parser would build it, for unit tests.
    pub(crate) fn node(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
        Node {
            keyword: keyword.to_ascii_lowercase(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            json: false,
            next: None,
            heredocs: Vec::new(),
            location: Location {
                span: Span::new(0, 1),
                start_line: 3,
                end_line: 3,
            },
            original: format!("{} {}", keyword.to_ascii_uppercase(), args.join(" ")),
        }
    }

    pub(crate) fn json_node(keyword: &str, args: &[&str]) -> Node {
        Node {
            json: true,
            ..node(keyword, &[], args)
        }
    }

    pub(crate) fn kind(node: &Node) -> InstructionErrorKind {
        match parse(node) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn unknown_instruction_suggests_closest_keyword() {
        let e = parse(&node("FRMO", &[], &["alpine"])).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "dockerfile parse error on line 3: unknown instruction: FRMO (did you mean FROM?)"
        );
        let e = parse(&node("xyzzyplugh", &[], &["a"])).expect_err("unknown");
        assert_eq!(
            e.kind,
            InstructionErrorKind::UnknownInstruction {
                word: "XYZZYPLUGH".into(),
                suggestion: None
            }
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let c = parse(&node("wOrKdIr", &[], &["/app"])).expect("valid");
        assert_eq!(c.instruction, Instruction::Workdir("/app".into()));
        assert_eq!(c.keyword(), "WORKDIR");
    }

    #[test]
    fn arity_is_checked_per_instruction() {
        let cases = [
            (
                node("user", &[], &[]),
                InstructionErrorKind::ExactlyOneArgument("USER"),
            ),
            (
                node("workdir", &[], &["a", "b"]),
                InstructionErrorKind::ExactlyOneArgument("WORKDIR"),
            ),
            (
                node("stopsignal", &[], &[]),
                InstructionErrorKind::ExactlyOneArgument("STOPSIGNAL"),
            ),
            (
                node("maintainer", &[], &[]),
                InstructionErrorKind::ExactlyOneArgument("MAINTAINER"),
            ),
            (
                node("expose", &[], &[]),
                InstructionErrorKind::AtLeastOneArgument("EXPOSE"),
            ),
            (
                node("volume", &[], &[]),
                InstructionErrorKind::AtLeastOneArgument("VOLUME"),
            ),
        ];
        for (n, want) in cases {
            assert_eq!(kind(&n), want, "{n:?}");
        }
    }

    #[test]
    fn flags_are_rejected_where_not_accepted() {
        assert_eq!(
            kind(&node("cmd", &["--doit"], &["x"])),
            InstructionErrorKind::Flag {
                instruction: "CMD",
                source: FlagError::Unknown("doit".into())
            }
        );
    }

    #[test]
    fn shell_and_exec_forms() {
        let c = parse(&node("cmd", &[], &["echo hi"])).expect("valid");
        assert_eq!(
            c.instruction,
            Instruction::Cmd(ShellOrExec::Shell("echo hi".into()))
        );
        let c = parse(&json_node("entrypoint", &["/bin/sh", "-c"])).expect("valid");
        assert_eq!(
            c.instruction,
            Instruction::Entrypoint(ShellOrExec::Exec(vec!["/bin/sh".into(), "-c".into()]))
        );
    }

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "run"), 3);
        assert_eq!(levenshtein("copy", "copy"), 0);
        assert_eq!(levenshtein("frmo", "from"), 1);
    }
}
