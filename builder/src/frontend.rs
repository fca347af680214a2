//! The Dockerfile front-end: a lowered `rbuild_dockerfile::lower::Plan` becomes a [`Graph`].
//! This is the only module that knows Dockerfile types.
//!
//! It plays the part of the second half of BuildKit's `dockerfile2llb` (`dispatch`): stages are
//! visited in build order; each starts from a source step (`scratch`, an image, a named build
//! context) or from the final step of the stage it is built on; each instruction becomes one step,
//! its words expanded with the stage's environment (`Stage::expand`, from the base image's `Env`,
//! or `Stage::expand_on` for a stage built on a stage). The dispatch state carried from one
//! instruction to the next is the working directory, user and shell, as in BuildKit's
//! `dispatchState`:
//!
//! - WORKDIR resolves a relative path against the current one and cleans it;
//! - RUN gets the image environment plus the ARG values in scope that ENV does not override,
//!   the proxy build args apart (never keyed), and BuildKit's heredoc handling: `RUN <<EOF` alone
//!   runs the body in the shell (or as a script when it starts with `#!`), otherwise the heredocs
//!   are appended to the command line for the shell to read;
//! - shell-form CMD, ENTRYPOINT and HEALTHCHECK are wrapped as BuildKit stores them;
//! - `COPY --from` and `RUN --mount=from=` use the plan's resolved dependencies (a stage's final
//!   step, a named context, or an external image).
//!
//! Every step's [`Origin`] carries the file name, span, lines, stage and instruction text; every
//! step's `used_vars` carries the variables its expansion read. Known gaps: ONBUILD triggers of
//! base images are not run here (they need the image config, resolved later); `ADD` git URL
//! detection covers `git@`, `git://` and `*.git` URLs only.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_dockerfile::instructions::{
    self as df, Add, Chmod as DfChmod, Chown, Copy, HealthTest, Instruction, MountType, Run,
    ShellOrExec,
};
use rbuild_dockerfile::lower::{
    Base, DepKind, DepTarget, ExpandedCommand, ExpandedStage, Plan, Stage,
};
use rbuild_dockerfile::span::Location;
use rbuild_layers::digest::Digest;

use crate::graph::{
    ByteSpan, CacheSharing, Chmod, Command, ConfigOp, ContextName, CopyKind, CopyOp, CopySource,
    FsInput, Graph, Healthcheck, IdSpec, ImageRef, MountKind, MountPerms, NetworkMode, Op, Origin,
    RunMount, RunOp, SecurityMode, SourceOp, StageRef, Step, StepId, UserSpec,
};

/// The shell BuildKit uses when no SHELL instruction set one (Linux).
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The parts of a base image's config that lowering needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageDefaults {
    /// `Env`, in order.
    pub env: Vec<(String, String)>,
    /// `User`, if set.
    pub user: Option<String>,
    /// `WorkingDir`, if set.
    pub workdir: Option<String>,
    /// `Shell` (Docker's config extension), if set.
    pub shell: Option<Vec<String>>,
}

/// Inputs of [`lower_plan`] besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct FrontendOptions<'a> {
    /// The Dockerfile's name as the user gave it, for origins (e.g. `Dockerfile`).
    pub file: &'a str,
    /// Base image configs by reference as written in the Dockerfile; missing ones are empty.
    pub images: &'a BTreeMap<String, ImageDefaults>,
    /// Names given with `--build-context`: `FROM name` and `--from=name` read them.
    pub named_contexts: &'a BTreeSet<String>,
}

/// The graph of a plan and where each stage ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowered {
    /// The steps.
    pub graph: Graph,
    /// The final step of each built stage, by stage index.
    pub stage_outputs: BTreeMap<usize, StepId>,
    /// The target stage's final step.
    pub target: StepId,
}

/// Why a plan could not be lowered into a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// Expanding a stage's words failed.
    #[error(transparent)]
    Expand(#[from] rbuild_dockerfile::Error),
    /// An image reference is not valid.
    #[error("{file}:{line}: invalid image reference {text:?}")]
    ImageRef {
        /// The Dockerfile.
        file: String,
        /// The line.
        line: usize,
        /// The reference.
        text: String,
    },
    /// An ADD `--checksum` is not a sha256 digest.
    #[error("{file}:{line}: invalid checksum {text:?}: {reason}")]
    Checksum {
        /// The Dockerfile.
        file: String,
        /// The line.
        line: usize,
        /// The value.
        text: String,
        /// Why.
        reason: String,
    },
    /// A USER or `--chown` value is not `user[:group]`.
    #[error("{file}:{line}: invalid user {text:?}")]
    User {
        /// The Dockerfile.
        file: String,
        /// The line.
        line: usize,
        /// The value.
        text: String,
    },
    /// An instruction that lowering should have removed from a stage (a bug in lowering).
    #[error("{file}:{line}: unexpected {instruction} inside a stage (this is a bug)")]
    Unexpected {
        /// The Dockerfile.
        file: String,
        /// The line.
        line: usize,
        /// The instruction keyword.
        instruction: &'static str,
    },
    /// The plan refers to a stage that is not built before it (a bug in lowering).
    #[error("stage {stage} needs stage {needed}, which was not built before it (this is a bug)")]
    StageOrder {
        /// The stage.
        stage: usize,
        /// The stage it needs.
        needed: usize,
    },
}

type Result<T> = std::result::Result<T, FrontendError>;

/// The dispatch state carried from instruction to instruction.
#[derive(Debug, Clone)]
struct State {
    last: StepId,
    user: Option<String>,
    workdir: String,
    shell: Vec<String>,
}

struct StageCx<'a> {
    opts: &'a FrontendOptions<'a>,
    plan: &'a Plan,
    stage: &'a Stage,
    outputs: &'a BTreeMap<usize, StepId>,
}

impl StageCx<'_> {
    fn origin(&self, location: &Location, text: &str) -> Origin {
        Origin {
            file: self.opts.file.to_string(),
            span: ByteSpan {
                start: location.span.start,
                end: location.span.end,
            },
            start_line: location.start_line as u32,
            end_line: location.end_line as u32,
            stage: StageRef {
                index: self.stage.index,
                name: self.stage.name.clone(),
            },
            instruction: text.to_string(),
        }
    }

    fn image_ref(&self, text: &str, location: &Location) -> Result<ImageRef> {
        text.parse().map_err(|_| FrontendError::ImageRef {
            file: self.opts.file.to_string(),
            line: location.start_line,
            text: text.to_string(),
        })
    }

    fn user_spec(&self, text: &str, location: &Location) -> Result<UserSpec> {
        UserSpec::parse(text).ok_or_else(|| FrontendError::User {
            file: self.opts.file.to_string(),
            line: location.start_line,
            text: text.to_string(),
        })
    }

    /// The input a dependency of command `ci` of kind `kind` (the `nth` such) resolves to.
    fn dep_input(&self, ci: usize, kind: DepKind, nth: usize) -> Result<Option<FsInput>> {
        let dep = self
            .stage
            .deps
            .iter()
            .filter(|d| d.command == Some(ci) && d.kind == kind)
            .nth(nth);
        let Some(dep) = dep else { return Ok(None) };
        Ok(Some(match &dep.on {
            DepTarget::Stage(i) => {
                FsInput::Step(*self.outputs.get(i).ok_or(FrontendError::StageOrder {
                    stage: self.stage.index,
                    needed: *i,
                })?)
            }
            DepTarget::Image(r) if self.opts.named_contexts.contains(r) => {
                FsInput::Context(ContextName::named(r.clone()))
            }
            DepTarget::Image(r) => FsInput::Image(self.image_ref(r, &dep.location)?),
        }))
    }
}

/// Lower the stages `plan` builds into a graph; see the module documentation.
pub fn lower_plan(plan: &Plan, opts: &FrontendOptions<'_>) -> Result<Lowered> {
    let mut graph = Graph::new();
    let mut outputs: BTreeMap<usize, StepId> = BTreeMap::new();
    let mut expanded: BTreeMap<usize, ExpandedStage> = BTreeMap::new();
    let mut finals: BTreeMap<usize, State> = BTreeMap::new();
    let empty = ImageDefaults::default();
    for &index in &plan.build_order {
        let stage = &plan.stages[index];
        let cx = StageCx {
            opts,
            plan,
            stage,
            outputs: &outputs,
        };
        let origin = cx.origin(&stage.location, &stage.original);
        let (mut state, exp) = match &stage.base {
            Base::Stage(i) => {
                let order = || FrontendError::StageOrder {
                    stage: index,
                    needed: *i,
                };
                let base_state = finals.get(i).cloned().ok_or_else(order)?;
                let exp = stage.expand_on(expanded.get(i).ok_or_else(order)?)?;
                (base_state, exp)
            }
            Base::Scratch | Base::Image(_) => {
                let (op, defaults) = match &stage.base {
                    Base::Image(r) if opts.named_contexts.contains(r) => (
                        SourceOp::NamedContext {
                            name: ContextName::named(r.clone()),
                        },
                        &empty,
                    ),
                    Base::Image(r) => (
                        SourceOp::Image {
                            reference: cx.image_ref(r, &stage.location)?,
                            platform: Some(stage.platform.to_string()),
                        },
                        opts.images.get(r).unwrap_or(&empty),
                    ),
                    _ => (
                        SourceOp::Scratch {
                            platform: Some(stage.platform.to_string()),
                        },
                        &empty,
                    ),
                };
                let mut step = Step::new(Op::Source(op), None, origin);
                step.used_vars = stage.from_used.clone();
                let id = graph.add(step);
                let state = State {
                    last: id,
                    user: defaults.user.clone().filter(|u| !u.is_empty()),
                    workdir: defaults
                        .workdir
                        .clone()
                        .filter(|w| !w.is_empty())
                        .unwrap_or_else(|| "/".into()),
                    shell: defaults
                        .shell
                        .clone()
                        .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()),
                };
                (state, stage.expand(&defaults.env)?)
            }
        };
        for (ci, command) in exp.commands.iter().enumerate() {
            let op = lower_command(&cx, ci, command, &mut state)?;
            let mut step = Step::new(
                op,
                Some(state.last),
                cx.origin(&command.command.location, &command.command.original),
            );
            step.used_vars = command.used.clone();
            state.last = graph.add(step);
        }
        outputs.insert(index, state.last);
        graph.set_name(stage.display_name(), state.last);
        finals.insert(index, state);
        expanded.insert(index, exp);
    }
    let target = *outputs.get(&plan.target).ok_or(FrontendError::StageOrder {
        stage: plan.target,
        needed: plan.target,
    })?;
    Ok(Lowered {
        graph,
        stage_outputs: outputs,
        target,
    })
}

fn lower_command(
    cx: &StageCx<'_>,
    ci: usize,
    command: &ExpandedCommand,
    state: &mut State,
) -> Result<Op> {
    let location = &command.command.location;
    Ok(match &command.command.instruction {
        Instruction::Run(run) => Op::Run(lower_run(cx, ci, command, run, state)?),
        Instruction::Copy(c) => Op::Copy(lower_copy(cx, ci, c, state)?),
        Instruction::Add(a) => Op::Copy(lower_add(cx, a, state, location)?),
        Instruction::Env(kvs) => Op::Config(ConfigOp::Env(pairs(kvs))),
        Instruction::Label(kvs) => Op::Config(ConfigOp::Label(pairs(kvs))),
        Instruction::Arg(arg) => Op::Config(ConfigOp::Arg(
            arg.args
                .iter()
                .map(|d| (d.name.clone(), d.default.clone()))
                .collect(),
        )),
        Instruction::Maintainer(m) => Op::Config(ConfigOp::Maintainer(m.clone())),
        Instruction::Expose(ports) => Op::Config(ConfigOp::Expose(ports.clone())),
        Instruction::Volume(v) => Op::Config(ConfigOp::Volume(v.clone())),
        Instruction::User(u) => {
            cx.user_spec(u, location)?;
            state.user = Some(u.clone());
            Op::Config(ConfigOp::User(u.clone()))
        }
        Instruction::Workdir(w) => {
            state.workdir = join_workdir(&state.workdir, w);
            Op::Config(ConfigOp::Workdir(state.workdir.clone()))
        }
        Instruction::Cmd(c) => Op::Config(ConfigOp::Cmd(argv(c, &state.shell))),
        Instruction::Entrypoint(c) => Op::Config(ConfigOp::Entrypoint(argv(c, &state.shell))),
        Instruction::Shell(sh) => {
            state.shell = sh.clone();
            Op::Config(ConfigOp::Shell(sh.clone()))
        }
        Instruction::StopSignal(s) => Op::Config(ConfigOp::StopSignal(s.clone())),
        Instruction::Healthcheck(h) => Op::Config(ConfigOp::Healthcheck(healthcheck(h))),
        Instruction::Onbuild(o) => Op::Config(ConfigOp::OnBuild(o.expression.clone())),
        // Lowering splits stages on FROM, so it never appears among a stage's commands.
        Instruction::From(_) => {
            return Err(FrontendError::Unexpected {
                file: cx.opts.file.to_string(),
                line: location.start_line,
                instruction: "FROM",
            })
        }
    })
}

fn pairs(kvs: &[df::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

fn argv(c: &ShellOrExec, shell: &[String]) -> Vec<String> {
    match c {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => shell
            .iter()
            .cloned()
            .chain(std::iter::once(s.clone()))
            .collect(),
    }
}

/// BuildKit's WORKDIR: relative paths join the current directory; the result is cleaned.
fn join_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{current}/{path}")
    };
    format!("/{}", crate::context::clean_rel(&joined))
}

fn healthcheck(h: &df::Healthcheck) -> Healthcheck {
    let ns =
        |d: std::time::Duration| (!d.is_zero()).then(|| d.as_nanos().min(u64::MAX as u128) as u64);
    let test = match &h.test {
        HealthTest::None => vec!["NONE".to_string()],
        HealthTest::Cmd(v) => std::iter::once("CMD".to_string())
            .chain(v.iter().cloned())
            .collect(),
        HealthTest::CmdShell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
    };
    Healthcheck {
        test,
        interval_ns: ns(h.interval),
        timeout_ns: ns(h.timeout),
        start_period_ns: ns(h.start_period),
        start_interval_ns: ns(h.start_interval),
        retries: (h.retries != 0).then_some(h.retries),
    }
}

fn heredoc_body(h: &rbuild_dockerfile::ast::Heredoc) -> String {
    if !h.chomp {
        return h.content.clone();
    }
    h.content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

fn run_command(run: &Run, shell: &[String]) -> Command {
    match &run.command {
        ShellOrExec::Exec(v) => Command::Exec(v.clone()),
        ShellOrExec::Shell(s) if run.heredocs.is_empty() => Command::Shell {
            shell: shell.to_vec(),
            script: s.clone(),
        },
        ShellOrExec::Shell(s) => {
            let only_marker = run.heredocs.len() == 1
                && s.trim().starts_with("<<")
                && !s.trim().contains(char::is_whitespace);
            if only_marker {
                let body = heredoc_body(&run.heredocs[0]);
                if body.starts_with("#!") {
                    Command::HeredocScript {
                        shell: shell.to_vec(),
                        content: body,
                    }
                } else {
                    Command::Shell {
                        shell: shell.to_vec(),
                        script: body,
                    }
                }
            } else {
                let mut full = s.clone();
                for h in &run.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                Command::Shell {
                    shell: shell.to_vec(),
                    script: full,
                }
            }
        }
    }
}

fn lower_run(
    cx: &StageCx<'_>,
    ci: usize,
    command: &ExpandedCommand,
    run: &Run,
    state: &State,
) -> Result<RunOp> {
    let location = &command.command.location;
    let mut env = command.env.clone();
    let env_names: BTreeSet<String> = env.iter().map(|(k, _)| k.clone()).collect();
    env.extend(
        command
            .args
            .iter()
            .filter(|(k, _)| !env_names.contains(k))
            .cloned(),
    );
    let proxy_env = cx
        .plan
        .proxy_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let user = match &state.user {
        Some(u) => Some(cx.user_spec(u, location)?),
        None => None,
    };
    let mut mounts = Vec::with_capacity(run.mounts.len());
    let mut nth_from = 0;
    for m in &run.mounts {
        let from = if m.from.is_some() {
            let input = cx.dep_input(ci, DepKind::MountFrom, nth_from)?;
            nth_from += 1;
            input
        } else {
            None
        };
        let perms = MountPerms {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
        };
        let source = m.source.clone().unwrap_or_else(|| "/".to_string());
        let kind = match m.kind {
            MountType::Bind => MountKind::Bind {
                from: from.unwrap_or(FsInput::Context(ContextName::main())),
                source,
                readwrite: !m.readonly,
            },
            MountType::Cache => MountKind::Cache {
                id: m.id.clone().unwrap_or_else(|| m.target.clone()),
                from,
                source,
                sharing: match m.sharing {
                    df::Sharing::Shared => CacheSharing::Shared,
                    df::Sharing::Private => CacheSharing::Private,
                    df::Sharing::Locked => CacheSharing::Locked,
                },
                readonly: m.readonly,
                perms,
            },
            MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
            MountType::Secret => MountKind::Secret {
                id: m
                    .id
                    .clone()
                    .unwrap_or_else(|| m.target.rsplit('/').next().unwrap_or_default().to_string()),
                required: m.required,
                env: m.env.clone(),
                perms,
            },
            MountType::Ssh => MountKind::Ssh {
                id: m.id.clone().unwrap_or_else(|| "default".into()),
                required: m.required,
                perms,
            },
        };
        mounts.push(RunMount {
            target: m.target.clone(),
            kind,
        });
    }
    Ok(RunOp {
        command: run_command(run, &state.shell),
        env,
        proxy_env,
        user,
        workdir: state.workdir.clone(),
        network: match run.network {
            df::NetworkMode::Default => NetworkMode::Default,
            df::NetworkMode::None => NetworkMode::None,
            df::NetworkMode::Host => NetworkMode::Host,
        },
        security: match run.security {
            df::SecurityMode::Sandbox => SecurityMode::Sandbox,
            df::SecurityMode::Insecure => SecurityMode::Insecure,
        },
        mounts,
    })
}

fn chown(c: &Option<Chown>) -> Option<UserSpec> {
    c.as_ref().map(|c| UserSpec {
        user: IdSpec::parse(&c.user),
        group: c.group.as_deref().map(IdSpec::parse),
    })
}

fn chmod(c: &Option<DfChmod>) -> Option<Chmod> {
    c.as_ref().map(|c| match c {
        DfChmod::Octal(m) => Chmod::Octal(*m),
        DfChmod::Symbolic(s) => Chmod::Symbolic(s.clone()),
    })
}

fn copy_sources(sources: &[df::CopySource], add: bool) -> Vec<CopySource> {
    sources
        .iter()
        .map(|s| match s {
            df::CopySource::Heredoc(h) => CopySource::Heredoc {
                name: h.name.clone(),
                content: heredoc_body(h),
            },
            df::CopySource::Path(p) if add && is_git_url(p) => {
                let (url, fragment) = p
                    .split_once('#')
                    .map(|(u, f)| (u, Some(f)))
                    .unwrap_or((p.as_str(), None));
                let (reference, subdir) = match fragment.map(|f| {
                    f.split_once(':')
                        .map(|(r, d)| (r, Some(d)))
                        .unwrap_or((f, None))
                }) {
                    Some((r, d)) => (
                        (!r.is_empty()).then(|| r.to_string()),
                        d.filter(|d| !d.is_empty()).map(str::to_string),
                    ),
                    None => (None, None),
                };
                CopySource::Git {
                    url: url.to_string(),
                    reference,
                    subdir,
                }
            }
            df::CopySource::Path(p)
                if add && (p.starts_with("http://") || p.starts_with("https://")) =>
            {
                CopySource::Url(p.clone())
            }
            df::CopySource::Path(p) => CopySource::Path(p.clone()),
        })
        .collect()
}

fn is_git_url(p: &str) -> bool {
    let base = p.split('#').next().unwrap_or(p);
    p.starts_with("git@")
        || p.starts_with("git://")
        || ((p.starts_with("https://") || p.starts_with("http://")) && base.ends_with(".git"))
}

fn lower_copy(cx: &StageCx<'_>, ci: usize, c: &Copy, state: &State) -> Result<CopyOp> {
    let from = match c.from {
        Some(_) => cx
            .dep_input(ci, DepKind::CopyFrom, 0)?
            .unwrap_or(FsInput::Context(ContextName::main())),
        None => FsInput::Context(ContextName::main()),
    };
    Ok(CopyOp {
        kind: CopyKind::Copy,
        from,
        sources: copy_sources(&c.sources, false),
        dest: c.dest.clone(),
        workdir: state.workdir.clone(),
        chown: chown(&c.chown),
        chmod: chmod(&c.chmod),
        link: c.link,
        exclude: c.exclude.clone(),
        parents: c.parents,
        checksum: None,
    })
}

fn lower_add(cx: &StageCx<'_>, a: &Add, state: &State, location: &Location) -> Result<CopyOp> {
    let checksum = match &a.checksum {
        Some(text) => Some(
            text.parse::<Digest>()
                .map_err(|e| FrontendError::Checksum {
                    file: cx.opts.file.to_string(),
                    line: location.start_line,
                    text: text.clone(),
                    reason: e.to_string(),
                })?,
        ),
        None => None,
    };
    Ok(CopyOp {
        kind: CopyKind::Add {
            unpack: a.unpack,
            keep_git_dir: a.keep_git_dir,
        },
        from: FsInput::Context(ContextName::main()),
        sources: copy_sources(&a.sources, true),
        dest: a.dest.clone(),
        workdir: state.workdir.clone(),
        chown: chown(&a.chown),
        chmod: chmod(&a.chmod),
        link: a.link,
        exclude: a.exclude.clone(),
        parents: false,
        checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_dockerfile::lower::{lower, LowerOptions};

    fn lowered_with(
        text: &str,
        opts: LowerOptions,
        images: &BTreeMap<String, ImageDefaults>,
    ) -> Lowered {
        let df = rbuild_dockerfile::parse(text).expect("dockerfile parses");
        let plan = lower(&df, &opts).expect("plan lowers");
        let named = BTreeSet::from(["ctx".to_string()]);
        let fopts = FrontendOptions {
            file: "Dockerfile",
            images,
            named_contexts: &named,
        };
        let out = lower_plan(&plan, &fopts).expect("graph lowers");
        out.graph.validate().expect("graph is valid");
        out
    }

    fn lowered(text: &str) -> Lowered {
        lowered_with(text, LowerOptions::default(), &BTreeMap::new())
    }

    fn ops(l: &Lowered) -> Vec<&Op> {
        l.graph.iter().map(|(_, s)| &s.op).collect()
    }

    fn run_op(l: &Lowered, id: u32) -> &RunOp {
        match &l.graph.get(StepId(id)).expect("step exists").op {
            Op::Run(r) => r,
            other => panic!("step {id} is not RUN: {other:?}"),
        }
    }

    #[test]
    fn one_step_per_instruction_with_origins() {
        let l = lowered("FROM scratch\nENV A=1\nLABEL x=y\nCOPY a /b\n");
        assert_eq!(l.graph.len(), 4);
        assert_eq!(l.target, StepId(3));
        let kinds: Vec<&str> = ops(&l).iter().map(|o| o.kind()).collect();
        assert_eq!(kinds, vec!["source", "config", "config", "copy"]);
        let copy = l.graph.get(StepId(3)).expect("copy step");
        assert_eq!(copy.origin.start_line, 4);
        assert_eq!(copy.origin.instruction, "COPY a /b");
        assert_eq!(copy.origin.file, "Dockerfile");
        assert_eq!(copy.parent, Some(StepId(2)));
    }

    #[test]
    fn stages_copy_from_and_targets() {
        let text = "FROM alpine AS build\nRUN make\nFROM scratch AS unused\nFROM scratch\nCOPY --from=build /out /out\nCOPY --from=busybox /bin/sh /sh\nCOPY --from=ctx a b\n";
        let l = lowered(text);
        assert!(
            l.graph.named("unused").is_none(),
            "stages the target does not need are not lowered"
        );
        let build_out = l.graph.named("build").expect("build stage");
        let step = |i: u32| l.graph.get(StepId(i)).expect("step");
        let froms: Vec<FsInput> = l
            .graph
            .iter()
            .filter_map(|(_, s)| match &s.op {
                Op::Copy(c) => Some(c.from.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(froms[0], FsInput::Step(build_out));
        assert_eq!(froms[1], FsInput::Image("busybox".parse().expect("valid")));
        assert_eq!(froms[2], FsInput::Context(ContextName::named("ctx")));
        match &step(0).op {
            Op::Source(SourceOp::Image {
                reference,
                platform,
            }) => {
                assert_eq!(reference.as_str(), "alpine");
                assert!(platform.as_deref().is_some_and(|p| p.starts_with("linux/")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn run_env_user_workdir_and_shell_follow_dispatch_state() {
        let text = "FROM scratch\nARG V=1\nENV A=x\nWORKDIR app\nWORKDIR ../srv/./x\nUSER 1000:1000\nSHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nRUN echo $V\n";
        let l = lowered(text);
        let r = run_op(&l, 7);
        assert_eq!(r.workdir, "/srv/x");
        assert_eq!(
            r.user.as_ref().map(|u| u.to_string()).as_deref(),
            Some("1000:1000")
        );
        assert_eq!(
            r.command,
            Command::Shell {
                shell: vec!["/bin/bash".into(), "-eu".into(), "-c".into()],
                script: "echo $V".into()
            }
        );
        assert!(r.env.contains(&("A".into(), "x".into())));
        assert!(
            r.env.contains(&("V".into(), "1".into())),
            "ARG values reach RUN's environment"
        );
        let workdirs: Vec<&Op> = ops(&l)
            .into_iter()
            .filter(|o| matches!(o, Op::Config(ConfigOp::Workdir(_))))
            .collect();
        assert_eq!(
            workdirs,
            vec![
                &Op::Config(ConfigOp::Workdir("/app".into())),
                &Op::Config(ConfigOp::Workdir("/srv/x".into()))
            ]
        );
    }

    #[test]
    fn image_defaults_seed_the_state() {
        let images = BTreeMap::from([(
            "img".to_string(),
            ImageDefaults {
                env: vec![("PATH".into(), "/opt/bin".into())],
                user: Some("app".into()),
                workdir: Some("/home/app".into()),
                shell: None,
            },
        )]);
        let l = lowered_with("FROM img\nRUN id\n", LowerOptions::default(), &images);
        let r = run_op(&l, 1);
        assert_eq!(r.workdir, "/home/app");
        assert_eq!(r.user, UserSpec::parse("app"));
        assert_eq!(r.env, vec![("PATH".to_string(), "/opt/bin".to_string())]);
    }

    #[test]
    fn used_vars_are_recorded_for_keys() {
        let mut opts = LowerOptions::default();
        opts.build_args.insert("TAG".into(), "3.20".into());
        let l = lowered_with(
            "ARG TAG=latest\nFROM alpine:${TAG}\nARG D=/dst\nCOPY a ${D}\n",
            opts,
            &BTreeMap::new(),
        );
        let src = l.graph.get(StepId(0)).expect("source");
        assert_eq!(src.used_vars.get("TAG").map(String::as_str), Some("3.20"));
        let copy = l.graph.get(StepId(2)).expect("copy");
        assert_eq!(copy.used_vars.get("D").map(String::as_str), Some("/dst"));
        match &copy.op {
            Op::Copy(c) => assert_eq!(c.dest, "/dst"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn config_instructions_table() {
        let cases: Vec<(&str, ConfigOp)> = vec![
            (
                "CMD echo hi",
                ConfigOp::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]),
            ),
            (
                "CMD [\"a\", \"b\"]",
                ConfigOp::Cmd(vec!["a".into(), "b".into()]),
            ),
            (
                "ENTRYPOINT [\"/e\"]",
                ConfigOp::Entrypoint(vec!["/e".into()]),
            ),
            (
                "EXPOSE 80/tcp 443",
                ConfigOp::Expose(vec!["80/tcp".into(), "443".into()]),
            ),
            ("VOLUME /data", ConfigOp::Volume(vec!["/data".into()])),
            ("STOPSIGNAL SIGKILL", ConfigOp::StopSignal("SIGKILL".into())),
            ("ONBUILD RUN true", ConfigOp::OnBuild("RUN true".into())),
            ("MAINTAINER me", ConfigOp::Maintainer("me".into())),
            (
                "HEALTHCHECK --interval=5s CMD curl -f x",
                ConfigOp::Healthcheck(Healthcheck {
                    test: vec!["CMD-SHELL".into(), "curl -f x".into()],
                    interval_ns: Some(5_000_000_000),
                    ..Healthcheck::default()
                }),
            ),
            (
                "HEALTHCHECK NONE",
                ConfigOp::Healthcheck(Healthcheck {
                    test: vec!["NONE".into()],
                    ..Healthcheck::default()
                }),
            ),
        ];
        for (line, want) in cases {
            let l = lowered(&format!("FROM scratch\n{line}\n"));
            assert_eq!(
                l.graph.get(StepId(1)).map(|s| &s.op),
                Some(&Op::Config(want)),
                "{line}"
            );
        }
    }

    #[test]
    fn run_heredocs_follow_buildkit() {
        let cases: Vec<(&str, Command)> = vec![
            (
                "RUN <<EOF\necho hi\nEOF\n",
                Command::Shell {
                    shell: vec!["/bin/sh".into(), "-c".into()],
                    script: "echo hi\n".into(),
                },
            ),
            (
                "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
                Command::HeredocScript {
                    shell: vec!["/bin/sh".into(), "-c".into()],
                    content: "#!/usr/bin/env python3\nprint(1)\n".into(),
                },
            ),
            (
                "RUN cat <<EOF > /f\nbody\nEOF\n",
                Command::Shell {
                    shell: vec!["/bin/sh".into(), "-c".into()],
                    script: "cat <<EOF > /f\nbody\nEOF".into(),
                },
            ),
        ];
        for (text, want) in cases {
            let l = lowered(&format!("FROM scratch\n{text}"));
            assert_eq!(run_op(&l, 1).command, want, "{text}");
        }
    }

    #[test]
    fn copy_and_add_flags() {
        let l = lowered(
            "FROM scratch\nCOPY --chown=app:1 --chmod=0755 --link --exclude=*.md . /app\nADD --checksum=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 https://example.com/f.tgz /\nADD git@github.com:o/r.git#main:sub /src\nCOPY <<EOF /hello\nhi\nEOF\n",
        );
        let copies: Vec<&CopyOp> = l
            .graph
            .iter()
            .filter_map(|(_, s)| match &s.op {
                Op::Copy(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(copies[0].chown, UserSpec::parse("app:1"));
        assert_eq!(copies[0].chmod, Some(Chmod::Octal(0o755)));
        assert!(copies[0].link);
        assert_eq!(copies[0].exclude, vec!["*.md".to_string()]);
        assert_eq!(
            copies[1].sources,
            vec![CopySource::Url("https://example.com/f.tgz".into())]
        );
        assert_eq!(copies[1].checksum, Some(Digest::of(b"")));
        assert_eq!(
            copies[2].sources,
            vec![CopySource::Git {
                url: "git@github.com:o/r.git".into(),
                reference: Some("main".into()),
                subdir: Some("sub".into())
            }]
        );
        assert_eq!(
            copies[3].sources,
            vec![CopySource::Heredoc {
                name: "EOF".into(),
                content: "hi\n".into()
            }]
        );
    }

    #[test]
    fn run_mounts_resolve_their_sources() {
        let text = "FROM alpine AS deps\nFROM scratch\nRUN --mount=type=bind,from=deps,target=/d --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok --network=none true\n";
        let l = lowered(text);
        let deps_out = l.graph.named("deps").expect("deps stage");
        let r = run_op(&l, l.target.0);
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.mounts.len(), 3);
        assert_eq!(
            r.mounts[0].kind.source_input(),
            Some(&FsInput::Step(deps_out))
        );
        assert!(
            matches!(&r.mounts[1].kind, MountKind::Cache { sharing: CacheSharing::Locked, id, .. } if id == "/root/.cache")
        );
        assert!(matches!(&r.mounts[2].kind, MountKind::Secret { id, .. } if id == "tok"));
        assert_eq!(
            l.graph.get(l.target).map(|s| s.inputs()),
            Some(vec![StepId(l.target.0 - 1), deps_out])
        );
    }

    #[test]
    fn stage_on_stage_inherits_state() {
        let l = lowered("FROM scratch AS base\nWORKDIR /w\nUSER u\nFROM base\nRUN pwd\n");
        let r = run_op(&l, l.target.0);
        assert_eq!(r.workdir, "/w");
        assert_eq!(r.user, UserSpec::parse("u"));
        assert_eq!(
            l.graph.get(l.target).and_then(|s| s.parent),
            l.graph.named("base")
        );
    }

    #[test]
    fn workdir_join_table() {
        let cases = [
            ("/", "app", "/app"),
            ("/a", "/b", "/b"),
            ("/a", "../..", "/"),
            ("/a/b", "./c/", "/a/b/c"),
        ];
        for (cur, path, want) in cases {
            assert_eq!(join_workdir(cur, path), want, "{cur} + {path}");
        }
    }
}
