//! Word expansion inside a stage, as BuildKit's `dispatch` does before each command: every
//! command that supports expansion (`SupportsSingleWordExpansion`) has its words expanded with
//! the stage's environment at that point — the base image's `Env`, then ARG values and ENV
//! values in instruction order, a later one replacing an earlier one of the same name.
//!
//! Expanded: ENV and LABEL keys and values (all pairs of one instruction with the environment
//! before it), ARG defaults (one declaration after another; a `--build-arg` value wins and is
//! not expanded; a bare ARG takes the meta ARG's value), WORKDIR, USER, STOPSIGNAL, VOLUME,
//! EXPOSE (split into words), COPY/ADD sources and destination, `--chown`, ADD `--checksum`,
//! and `--mount` values. Not expanded: RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK command text,
//! ONBUILD triggers, `--from`, `--chmod`, `--exclude`.
//!
//! A stage built on another stage starts from that stage's final state ([`Stage::expand_on`]):
//! its image environment, and also the ARG values in scope there (BuildKit's
//! `dispatchState.init` copies the LLB state, whose environment holds them, and `buildArgs`).
//! A stage built on an image starts from the image's `Env`; when that has no `PATH`, the default
//! one is added, as BuildKit does ([`default_path`]).
//!
//! Heredoc bodies follow BuildKit's `SourcesAndDest.ExpandRaw` and `dispatchRun`:
//! - `COPY <<EOF` / `ADD <<EOF`: `<<-` strips leading tabs first (BuildKit chomps while parsing),
//!   then a body whose delimiter is unquoted is expanded with the stage's environment by a lexer
//!   with quote processing off and the escape character always `\`, whatever `# escape=` says
//!   (BuildKit uses a fresh `shell.NewLex('\\')` with `SkipProcessQuotes`): `$V`, `${V:-x}` and
//!   friends are replaced, an undefined variable becomes empty, quotes stay as written, and
//!   `\$`, `\\` and `\<newline>` lose their backslash (as does a backslash before any other
//!   character). A quoted delimiter (`<<'EOF'`, `<<"EOF"`) leaves the body as written. The
//!   expanded command carries the final file content: `chomp` and `expand` are then false, so
//!   nothing downstream strips or expands it again.
//! - `RUN <<EOF`: never expanded here; BuildKit hands the body to the shell, which expands it
//!   itself (the delimiter's quoting then matters to the shell only), and chomps `<<-` bodies at
//!   dispatch only when the heredoc is the whole command. RUN heredocs are returned untouched.
//!
//! For each command the variables it used are recorded with their values, with the ARGs in
//! scope and the image environment, so a builder can key its cache on exactly those.

use std::collections::BTreeMap;

use super::args::OrderedEnv;
use super::{LowerError, Stage};
use crate::ast::Heredoc;
use crate::error::Result;
use crate::heredoc::chomp;
use crate::instructions::{
    Add, ArgDecl, Chown, Command, Copy, CopySource, Instruction, KeyValue, Mount, MountType,
    MountValues, Run,
};
use crate::shell::Lexer;
use crate::span::Location;

/// A stage whose words have been expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedStage {
    /// The stage's index in the plan.
    pub index: usize,
    /// The commands, expanded, in order.
    pub commands: Vec<ExpandedCommand>,
    /// The image environment after the last command (base `Env` plus ENVs).
    pub env: Vec<(String, String)>,
    /// ARGs in scope with a value after the last command, in declaration order.
    pub args: Vec<(String, String)>,
    /// The expansion environment after the last command: image environment and ARG values
    /// merged in instruction order (what a stage built on this one starts from).
    pub state_env: Vec<(String, String)>,
}

/// BuildKit's default `PATH` for a platform's OS (`system.DefaultPathEnv`).
pub fn default_path(os: &str) -> &'static str {
    if os == "windows" {
        "c:\\Windows\\System32;c:\\Windows"
    } else {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    }
}

/// One command after expansion, with what its expansion depended on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedCommand {
    /// The command with its words expanded (ARG declarations carry their final values; COPY/ADD
    /// heredoc sources carry their final content, chomped and expanded, with `chomp` and
    /// `expand` false).
    pub command: Command,
    /// Variables the expansion read, with the values they had.
    pub used: BTreeMap<String, String>,
    /// ARGs in scope with a value, before this command, in declaration order (RUN gets these
    /// in its environment, on top of [`ExpandedCommand::env`]).
    pub args: Vec<(String, String)>,
    /// The image environment before this command (base `Env` plus earlier ENVs).
    pub env: Vec<(String, String)>,
}

struct Expander<'a> {
    lexer: &'a Lexer,
    keyword: &'static str,
    location: Location,
    used: BTreeMap<String, String>,
}

impl Expander<'_> {
    fn word(&mut self, word: &str, env: &OrderedEnv) -> Result<String> {
        let lexer = *self.lexer;
        self.word_with(&lexer, word, env)
    }

    fn word_with(&mut self, lexer: &Lexer, word: &str, env: &OrderedEnv) -> Result<String> {
        let exp = lexer
            .process_word(word, env)
            .map_err(|e| self.error(word, &e.message))?;
        self.record(&exp.matched, env);
        Ok(exp.value)
    }

    fn words(&mut self, word: &str, env: &OrderedEnv) -> Result<Vec<String>> {
        let exp = self
            .lexer
            .process_words(word, env)
            .map_err(|e| self.error(word, &e.message))?;
        self.record(&exp.matched, env);
        Ok(exp.words)
    }

    fn record(&mut self, names: &std::collections::BTreeSet<String>, env: &OrderedEnv) {
        for name in names {
            if let Some(v) = env.get(name) {
                self.used.insert(name.clone(), v.to_string());
            }
        }
    }

    fn error(&self, word: &str, message: &str) -> crate::error::Error {
        LowerError::Expand {
            instruction: self.keyword,
            word: word.to_string(),
            message: message.to_string(),
            location: self.location,
        }
        .into()
    }

    fn flag_error(&self, kind: crate::instructions::InstructionErrorKind) -> crate::error::Error {
        LowerError::InvalidFlag {
            instruction: self.keyword,
            kind,
            location: self.location,
        }
        .into()
    }
}

impl Stage {
    /// Expand every command's words, starting from an image's `Env` (`KEY`, `value` pairs;
    /// empty for `scratch`). `PATH` is added when the image does not set it.
    pub fn expand(&self, base_env: &[(String, String)]) -> Result<ExpandedStage> {
        let mut env = OrderedEnv::default();
        for (k, v) in base_env {
            env.set(k, v);
        }
        if env.get("PATH").is_none() {
            env.set("PATH", default_path(&self.platform.os));
        }
        self.expand_seeded(env.clone(), env, OrderedEnv::default())
    }

    /// Expand every command's words, starting from the final state of the stage this one is
    /// built on (`FROM <stage>`): its environment and its ARG values.
    pub fn expand_on(&self, base: &ExpandedStage) -> Result<ExpandedStage> {
        self.expand_seeded(
            OrderedEnv(base.env.clone()),
            OrderedEnv(base.state_env.clone()),
            OrderedEnv(base.args.clone()),
        )
    }

    fn expand_seeded(
        &self,
        mut config: OrderedEnv,
        mut state: OrderedEnv,
        mut args: OrderedEnv,
    ) -> Result<ExpandedStage> {
        let lexer = Lexer::new(self.scope.escape);
        let mut commands = Vec::with_capacity(self.commands.len());
        for cmd in &self.commands {
            let mut x = Expander {
                lexer: &lexer,
                keyword: cmd.keyword(),
                location: cmd.location,
                used: BTreeMap::new(),
            };
            let before_args = args.0.clone();
            let before_env = config.0.clone();
            let instruction = match &cmd.instruction {
                Instruction::Env(kvs) => {
                    let kvs = expand_pairs(&mut x, kvs, &state)?;
                    for kv in &kvs {
                        state.set(&kv.key, &kv.value);
                        config.set(&kv.key, &kv.value);
                    }
                    Instruction::Env(kvs)
                }
                Instruction::Label(kvs) => Instruction::Label(expand_pairs(&mut x, kvs, &state)?),
                Instruction::Arg(arg) => {
                    let mut decls = Vec::with_capacity(arg.args.len());
                    for decl in &arg.args {
                        let value = match (self.scope.build_args.get(&decl.name), &decl.default) {
                            (Some(v), _) => Some(v.clone()),
                            (None, Some(default)) => Some(x.word(default, &state)?),
                            (None, None) => self
                                .scope
                                .meta_value(&decl.name)
                                .flatten()
                                .map(str::to_string),
                        };
                        if let Some(v) = &value {
                            state.set(&decl.name, v);
                            args.set(&decl.name, v);
                        }
                        decls.push(ArgDecl {
                            name: decl.name.clone(),
                            default: value,
                        });
                    }
                    Instruction::Arg(crate::instructions::Arg { args: decls })
                }
                Instruction::Workdir(w) => Instruction::Workdir(x.word(w, &state)?),
                Instruction::User(u) => Instruction::User(x.word(u, &state)?),
                Instruction::StopSignal(s) => Instruction::StopSignal(x.word(s, &state)?),
                Instruction::Volume(vs) => Instruction::Volume(
                    vs.iter()
                        .map(|v| x.word(v, &state))
                        .collect::<Result<_>>()?,
                ),
                Instruction::Expose(ps) => {
                    let mut out = Vec::new();
                    for p in ps {
                        out.extend(x.words(p, &state)?);
                    }
                    Instruction::Expose(out)
                }
                Instruction::Copy(c) => Instruction::Copy(expand_copy(&mut x, c, &state)?),
                Instruction::Add(a) => Instruction::Add(expand_add(&mut x, a, &state)?),
                Instruction::Run(r) => Instruction::Run(expand_run(&mut x, r, &state)?),
                other => other.clone(),
            };
            commands.push(ExpandedCommand {
                command: Command {
                    instruction,
                    location: cmd.location,
                    original: cmd.original.clone(),
                },
                used: x.used,
                args: before_args,
                env: before_env,
            });
        }
        Ok(ExpandedStage {
            index: self.index,
            commands,
            env: config.0,
            args: args.0,
            state_env: state.0,
        })
    }
}

fn expand_pairs(x: &mut Expander<'_>, kvs: &[KeyValue], env: &OrderedEnv) -> Result<Vec<KeyValue>> {
    kvs.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: x.word(&kv.key, env)?,
                value: x.word(&kv.value, env)?,
            })
        })
        .collect()
}

fn expand_sources(
    x: &mut Expander<'_>,
    sources: &[CopySource],
    env: &OrderedEnv,
) -> Result<Vec<CopySource>> {
    sources
        .iter()
        .map(|s| match s {
            CopySource::Path(p) => Ok(CopySource::Path(x.word(p, env)?)),
            CopySource::Heredoc(h) => Ok(CopySource::Heredoc(expand_heredoc(x, h, env)?)),
        })
        .collect()
}

/// The final content of a COPY/ADD heredoc: chomped for `<<-`, then expanded when the delimiter
/// was unquoted (see the module documentation).
fn expand_heredoc(x: &mut Expander<'_>, h: &Heredoc, env: &OrderedEnv) -> Result<Heredoc> {
    let content = if h.chomp {
        chomp(&h.content)
    } else {
        h.content.clone()
    };
    let content = if h.expand {
        x.word_with(&heredoc_lexer(), &content, env)?
    } else {
        content
    };
    Ok(Heredoc {
        content,
        expand: false,
        chomp: false,
        ..h.clone()
    })
}

/// The lexer BuildKit uses for heredoc bodies: escape `\`, quotes not processed.
fn heredoc_lexer() -> Lexer {
    Lexer::new('\\').with_skip_process_quotes(true)
}

fn expand_chown(
    x: &mut Expander<'_>,
    chown: &Option<Chown>,
    env: &OrderedEnv,
) -> Result<Option<Chown>> {
    Ok(match chown {
        Some(c) => {
            let text = x.word(&c.to_text(), env)?;
            if text.is_empty() {
                None
            } else {
                Some(Chown::parse(&text).map_err(|k| x.flag_error(k))?)
            }
        }
        None => None,
    })
}

fn expand_copy(x: &mut Expander<'_>, c: &Copy, env: &OrderedEnv) -> Result<Copy> {
    Ok(Copy {
        chown: expand_chown(x, &c.chown, env)?,
        sources: expand_sources(x, &c.sources, env)?,
        dest: x.word(&c.dest, env)?,
        ..c.clone()
    })
}

fn expand_add(x: &mut Expander<'_>, a: &Add, env: &OrderedEnv) -> Result<Add> {
    let chown = expand_chown(x, &a.chown, env)?;
    let checksum = match &a.checksum {
        Some(c) => Some(x.word(c, env)?).filter(|c| !c.is_empty()),
        None => None,
    };
    Ok(Add {
        sources: expand_sources(x, &a.sources, env)?,
        dest: x.word(&a.dest, env)?,
        chown,
        checksum,
        ..a.clone()
    })
}

fn expand_run(x: &mut Expander<'_>, r: &Run, env: &OrderedEnv) -> Result<Run> {
    let mut mounts = Vec::with_capacity(r.mounts.len());
    let mut ssh_index = 0;
    for m in &r.mounts {
        let mount = if m.has_variables {
            let mut failure = None;
            let parsed = {
                let mut expand = |v: &str| match x.word(v, env) {
                    Ok(s) => Ok(s),
                    Err(e) => {
                        let msg = e.to_string();
                        failure = Some(e);
                        Err(msg)
                    }
                };
                Mount::parse(&m.raw, MountValues::Expand(&mut expand), ssh_index)
            };
            match (parsed, failure) {
                (_, Some(e)) => return Err(e),
                (Ok(m), None) => m,
                (Err(source), None) => {
                    return Err(LowerError::Mount {
                        source,
                        location: x.location,
                    }
                    .into())
                }
            }
        } else {
            m.clone()
        };
        if mount.kind == MountType::Ssh {
            ssh_index += 1;
        }
        mounts.push(mount);
    }
    Ok(Run {
        mounts,
        ..r.clone()
    })
}
