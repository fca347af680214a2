//! Stage construction, dependency edges, `--target` selection and build order (BuildKit's
//! `instructions.Parse` stage split, `dispatchStates.addState`, `toCommand`,
//! `validateCircularDependency` and `allReachableStages`). The rules are listed in the
//! module documentation of [`crate::lower`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::args::{meta_env, resolve_meta_args, Scope};
use super::{
    platform_args, Base, DepKind, DepTarget, Dependency, LowerError, LowerOptions, LowerWarning,
    Plan, Platform, Stage, PROXY_ARGS,
};
use crate::ast::Dockerfile;
use crate::error::Result;
use crate::instructions::{self, Arg, Command, From, Instruction};
use crate::shell::Lexer;
use crate::span::Location;

struct RawStage {
    from_cmd: Command,
    from: From,
    commands: Vec<Command>,
}

pub(super) fn lower(df: &Dockerfile, opts: &LowerOptions) -> Result<Plan> {
    let lexer = Lexer::new(df.directives.escape);
    let target_platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let build_platform = opts.build_platform.clone().unwrap_or_else(Platform::host);

    let (globals, raws) = split_stages(df)?;
    let global_args: Vec<(&Command, &Arg)> = globals
        .iter()
        .filter_map(|c| match &c.instruction {
            Instruction::Arg(a) => Some((c, a)),
            _ => None,
        })
        .collect();
    let meta = resolve_meta_args(
        platform_args(&build_platform, &target_platform),
        &global_args,
        &opts.build_args,
        &lexer,
    )?;
    let scope = Arc::new(Scope {
        escape: df.directives.escape,
        meta_args: meta.clone(),
        build_args: opts.build_args.clone(),
    });

    let mut stages = build_stages(raws, &lexer, &meta, &target_platform, &scope)?;
    add_from_deps(&mut stages, &lexer)?;
    let target = select_target(&stages, opts.target.as_deref())?;
    check_cycles(&stages)?;
    let reachable = reachable_from(&stages, target);
    let build_order = build_order(&stages, &reachable);
    let skipped = (0..stages.len())
        .filter(|i| !reachable.contains(i))
        .collect();

    let proxy_env = opts
        .build_args
        .iter()
        .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let warnings = df
        .warnings
        .iter()
        .map(|w| LowerWarning {
            message: w.message.clone(),
            location: Some(w.location),
        })
        .chain(unused_build_args(opts, &meta, &stages, &reachable))
        .collect();

    Ok(Plan {
        stages,
        target,
        build_order,
        skipped,
        meta_args: meta,
        proxy_env,
        target_platform,
        build_platform,
        warnings,
    })
}

/// Parse every node; split into the instructions before the first FROM and the stages.
fn split_stages(df: &Dockerfile) -> Result<(Vec<Command>, Vec<RawStage>)> {
    let mut globals = Vec::new();
    let mut raws: Vec<RawStage> = Vec::new();
    for node in &df.nodes {
        let cmd = instructions::parse(node)?;
        if let Instruction::From(from) = &cmd.instruction {
            raws.push(RawStage {
                from: from.clone(),
                from_cmd: cmd,
                commands: Vec::new(),
            });
            continue;
        }
        match raws.last_mut() {
            Some(stage) => stage.commands.push(cmd),
            None if matches!(cmd.instruction, Instruction::Arg(_)) => globals.push(cmd),
            None => {
                return Err(LowerError::NoBuildStage {
                    instruction: cmd.keyword(),
                    location: cmd.location,
                }
                .into())
            }
        }
    }
    if raws.is_empty() {
        return Err(LowerError::NoStages.into());
    }
    Ok((globals, raws))
}

fn build_stages(
    raws: Vec<RawStage>,
    lexer: &Lexer,
    meta: &[super::MetaArg],
    target_platform: &Platform,
    scope: &Arc<Scope>,
) -> Result<Vec<Stage>> {
    let env = meta_env(meta);
    let mut stages: Vec<Stage> = Vec::with_capacity(raws.len());
    let mut names: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (index, raw) in raws.into_iter().enumerate() {
        let location = raw.from_cmd.location;
        let expand = |word: &str| {
            lexer
                .process_word(word, &env)
                .map_err(|e| LowerError::Expand {
                    instruction: "FROM",
                    word: word.to_string(),
                    message: e.message.clone(),
                    location,
                })
        };
        let image = expand(&raw.from.image)?;
        if image.value.is_empty() {
            return Err(LowerError::BlankBaseName {
                raw: raw.from.image.clone(),
                location,
            }
            .into());
        }
        let mut used: BTreeSet<String> = image.matched.clone();
        let explicit = match &raw.from.platform {
            Some(text) => {
                let exp = expand(text)?;
                used.extend(exp.matched.iter().cloned());
                let platform: Platform = exp
                    .value
                    .parse()
                    .map_err(|source| LowerError::InvalidPlatform { source, location })?;
                Some(platform)
            }
            None => None,
        };
        if let Some(name) = &raw.from.name {
            if let Some(&(_, first_line)) = names.get(name) {
                return Err(LowerError::DuplicateStageName {
                    name: name.clone(),
                    first_line,
                    location,
                }
                .into());
            }
        }
        let base = if image.value == "scratch" {
            Base::Scratch
        } else if let Some(&(i, _)) = names.get(&image.value) {
            Base::Stage(i)
        } else {
            Base::Image(image.value.clone())
        };
        let platform = match (&explicit, &base) {
            (_, Base::Stage(i)) => stages[*i].platform.clone(),
            (Some(p), _) => p.clone(),
            (None, _) => target_platform.clone(),
        };
        let deps = match &base {
            Base::Scratch => Vec::new(),
            Base::Stage(i) => vec![dep(DepTarget::Stage(*i), DepKind::Base, None, location)],
            Base::Image(r) => vec![dep(
                DepTarget::Image(r.clone()),
                DepKind::Base,
                None,
                location,
            )],
        };
        if let Some(name) = &raw.from.name {
            names.insert(name.clone(), (index, location.start_line));
        }
        stages.push(Stage {
            index,
            name: raw.from.name.clone(),
            base,
            base_text: raw.from.image.clone(),
            platform,
            explicit_platform: explicit.is_some(),
            from_used: used
                .into_iter()
                .filter_map(|k| env.get(&k).map(|v| (k, v.clone())))
                .collect(),
            location,
            original: raw.from_cmd.original.clone(),
            commands: raw.commands,
            deps,
            scope: Arc::clone(scope),
        });
    }
    Ok(stages)
}

fn dep(on: DepTarget, kind: DepKind, command: Option<usize>, location: Location) -> Dependency {
    Dependency {
        on,
        kind,
        command,
        location,
    }
}

/// Add the `COPY --from` and `RUN --mount=from=` edges of every stage.
fn add_from_deps(stages: &mut [Stage], lexer: &Lexer) -> Result<()> {
    let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
    for stage in stages.iter_mut() {
        let mut extra = Vec::new();
        for (ci, cmd) in stage.commands.iter().enumerate() {
            match &cmd.instruction {
                Instruction::Copy(c) => {
                    if let Some(from) = &c.from {
                        let unchanged = lexer
                            .process_word(from, &Vec::<(String, String)>::new())
                            .map(|e| e.value == *from)
                            .unwrap_or(false);
                        if !unchanged {
                            return Err(LowerError::FromVariable {
                                value: from.clone(),
                                location: cmd.location,
                            }
                            .into());
                        }
                        let on = resolve_from(from, &names, cmd.location)?;
                        extra.push(dep(on, DepKind::CopyFrom, Some(ci), cmd.location));
                    }
                }
                Instruction::Run(r) => {
                    for m in &r.mounts {
                        if let Some(from) = &m.from {
                            let on = resolve_from(from, &names, cmd.location)?;
                            extra.push(dep(on, DepKind::MountFrom, Some(ci), cmd.location));
                        }
                    }
                }
                _ => {}
            }
        }
        stage.deps.extend(extra);
    }
    Ok(())
}

/// A `--from` value: a stage name (case-insensitive), a stage index, or an image.
fn resolve_from(value: &str, names: &[Option<String>], location: Location) -> Result<DepTarget> {
    let lower = value.to_ascii_lowercase();
    if let Some(i) = names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
    {
        return Ok(DepTarget::Stage(i));
    }
    if let Some(index) = go_atoi(value) {
        return match usize::try_from(index) {
            Ok(i) if i < names.len() => Ok(DepTarget::Stage(i)),
            _ => Err(LowerError::InvalidStageIndex { index, location }.into()),
        };
    }
    Ok(DepTarget::Image(value.to_string()))
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits fitting in 64 bits.
fn go_atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn select_target(stages: &[Stage], target: Option<&str>) -> Result<usize> {
    let Some(target) = target else {
        return Ok(stages.len() - 1);
    };
    let lower = target.to_ascii_lowercase();
    if let Some(i) = stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Ok(i);
    }
    let suggestion = stages
        .iter()
        .filter_map(|s| s.name.as_deref())
        .map(|n| (instructions::levenshtein(&lower, n), n))
        .filter(|(d, _)| *d <= (lower.len() / 3).max(1))
        .min()
        .map(|(_, n)| n.to_string());
    Err(LowerError::TargetNotFound {
        target: target.to_string(),
        suggestion,
    }
    .into())
}

fn stage_edges(stage: &Stage) -> impl Iterator<Item = (usize, &Dependency)> {
    stage.deps.iter().filter_map(|d| match d.on {
        DepTarget::Stage(i) => Some((i, d)),
        DepTarget::Image(_) => None,
    })
}

/// Depth-first search for a loop, as BuildKit's `validateCircularDependency` (base edges
/// included).
fn check_cycles(stages: &[Stage]) -> Result<()> {
    fn visit(
        stages: &[Stage],
        i: usize,
        visited: &mut BTreeSet<usize>,
        path: &mut BTreeSet<usize>,
        trail: &mut Vec<Location>,
    ) -> bool {
        if !visited.insert(i) {
            return false;
        }
        path.insert(i);
        for (j, d) in stage_edges(&stages[i]) {
            trail.push(d.location);
            if path.contains(&j) || visit(stages, j, visited, path, trail) {
                return true;
            }
            trail.pop();
        }
        path.remove(&i);
        false
    }
    let mut visited = BTreeSet::new();
    for stage in stages {
        let mut path = BTreeSet::new();
        let mut trail = Vec::new();
        if visit(stages, stage.index, &mut visited, &mut path, &mut trail) {
            return Err(LowerError::CircularDependency {
                stage: stage.display_name(),
                locations: trail,
            }
            .into());
        }
    }
    Ok(())
}

fn reachable_from(stages: &[Stage], target: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            todo.extend(stage_edges(&stages[i]).map(|(j, _)| j));
        }
    }
    seen
}

/// Topological order of the reachable stages, the lowest index first among those ready.
fn build_order(stages: &[Stage], reachable: &BTreeSet<usize>) -> Vec<usize> {
    let mut pending: BTreeMap<usize, BTreeSet<usize>> = reachable
        .iter()
        .map(|&i| {
            (
                i,
                stage_edges(&stages[i])
                    .map(|(j, _)| j)
                    .filter(|j| *j != i)
                    .collect(),
            )
        })
        .collect();
    let mut order = Vec::with_capacity(pending.len());
    while let Some(next) = pending
        .iter()
        .find(|(_, deps)| deps.is_empty())
        .map(|(i, _)| *i)
    {
        pending.remove(&next);
        for deps in pending.values_mut() {
            deps.remove(&next);
        }
        order.push(next);
    }
    order
}

fn unused_build_args(
    opts: &LowerOptions,
    meta: &[super::MetaArg],
    stages: &[Stage],
    reachable: &BTreeSet<usize>,
) -> Option<LowerWarning> {
    let mut declared: BTreeSet<&str> = meta.iter().map(|m| m.name.as_str()).collect();
    for &i in reachable {
        for cmd in &stages[i].commands {
            if let Instruction::Arg(a) = &cmd.instruction {
                declared.extend(a.args.iter().map(|d| d.name.as_str()));
            }
        }
    }
    let unused: Vec<&str> = opts
        .build_args
        .keys()
        .map(String::as_str)
        .filter(|k| !declared.contains(k) && !PROXY_ARGS.contains(k) && !k.starts_with("BUILDKIT_"))
        .collect();
    (!unused.is_empty()).then(|| LowerWarning {
        message: format!(
            "one or more build-args [{}] were not consumed",
            unused.join(" ")
        ),
        location: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(text: &str) -> Vec<Stage> {
        let df = crate::parser::parse(text).expect("parses");
        let lexer = Lexer::new('\\');
        let opts = LowerOptions::default();
        let scope = Arc::new(Scope {
            escape: '\\',
            meta_args: Vec::new(),
            build_args: BTreeMap::new(),
        });
        let (_, raws) = split_stages(&df).expect("splits");
        let mut s = build_stages(
            raws,
            &lexer,
            &[],
            &opts.platform.unwrap_or_else(Platform::host),
            &scope,
        )
        .expect("builds");
        add_from_deps(&mut s, &lexer).expect("deps");
        s
    }

    #[test]
    fn from_values_resolve_name_then_index_then_image() {
        let names = [Some("build".to_string()), None];
        let loc = Location::default();
        let cases = [
            ("build", DepTarget::Stage(0)),
            ("BUILD", DepTarget::Stage(0)),
            ("1", DepTarget::Stage(1)),
            ("alpine:3", DepTarget::Image("alpine:3".into())),
            ("build2", DepTarget::Image("build2".into())),
        ];
        for (value, want) in cases {
            assert_eq!(
                resolve_from(value, &names, loc).expect("resolves"),
                want,
                "{value}"
            );
        }
        assert!(resolve_from("2", &names, loc).is_err());
    }

    #[test]
    fn build_order_puts_dependencies_first_lowest_index_first() {
        let s = stages("FROM a AS x\nCOPY --from=z /a /a\nFROM a AS y\nFROM a AS z\nCOPY --from=y /b /b\nFROM x\n");
        let all = reachable_from(&s, 3);
        assert_eq!(all.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(build_order(&s, &all), [1, 2, 0, 3]);
    }

    #[test]
    fn cycles_are_found_through_copy_edges() {
        let s = stages("FROM a AS x\nCOPY --from=y /a /a\nFROM a AS y\nCOPY --from=x /b /b\n");
        let e = check_cycles(&s).expect_err("cycle");
        assert_eq!(e.to_string(), "circular dependency detected on stage: x");
        let s = stages("FROM a AS x\nFROM a AS y\nCOPY --from=x /b /b\n");
        assert!(check_cycles(&s).is_ok());
    }

    #[test]
    fn target_lookup_is_case_insensitive_and_suggests() {
        let s = stages("FROM a AS build\nFROM a AS release\n");
        assert_eq!(select_target(&s, None).expect("default"), 1);
        assert_eq!(select_target(&s, Some("BUILD")).expect("named"), 0);
        let e = select_target(&s, Some("relase")).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "target stage \"relase\" could not be found (did you mean release?)"
        );
        let e = select_target(&s, Some("zzz")).expect_err("unknown");
        assert_eq!(e.to_string(), "target stage \"zzz\" could not be found");
    }

    #[test]
    fn atoi_like_go() {
        for (text, want) in [
            ("0", Some(0)),
            ("12", Some(12)),
            ("-1", Some(-1)),
            ("+3", Some(3)),
            ("1a", None),
            ("", None),
            ("-", None),
            ("build", None),
        ] {
            assert_eq!(go_atoi(text), want, "{text}");
        }
    }
}
