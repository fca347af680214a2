//! From a Dockerfile to a step graph: parse, lower to a stage plan, resolve the images the plan
//! needs, splice in ONBUILD triggers, and lower the plan into a [`Graph`](crate::graph::Graph).
//!
//! ONBUILD follows BuildKit's `initOnBuildTriggers`: a stage built on an image runs the image's
//! `OnBuild` triggers, and a stage built on another stage runs that stage's own `ONBUILD`
//! instructions, first thing after its FROM, with the FROM line as their location. Triggers are
//! parsed as Dockerfile lines; a trigger that adds a `--from` dependency is honoured because the
//! plan is lowered again after splicing (until no new trigger appears).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rbuild_dockerfile::ast::{Dockerfile, Node};
use rbuild_dockerfile::lower::{Base, DepKind, DepTarget, LowerOptions, Plan, Platform};

use crate::error::BuildError;
use crate::frontend::{lower_plan, FrontendOptions, ImageDefaults, Lowered};
use crate::registry::platform_spec;
use crate::solve::config::env_pairs;
use crate::solve::request::{BuildRequest, DockerfileSource, NamedContext};
use crate::solve::sources::{ResolvedImage, Resolver};
use crate::store::Store;

/// Triggers re-lowering stops after this many rounds (each round can only add triggers of
/// stages that became reachable through a trigger's `--from`).
const MAX_TRIGGER_ROUNDS: usize = 8;

/// A Dockerfile ready to run.
pub struct Prepared {
    /// The Dockerfile's name, for messages.
    pub file: String,
    /// The path the Dockerfile was read from (for its `.dockerignore`), if any.
    pub path: Option<PathBuf>,
    /// The lowered graph and its target.
    pub lowered: Lowered,
    /// The resolved images, by reference as written.
    pub images: BTreeMap<String, ResolvedImage>,
    /// The plan (platform, warnings).
    pub plan: Plan,
}

/// Read the Dockerfile of `req` (name, path, text).
pub fn read_dockerfile(
    req: &BuildRequest,
) -> Result<(String, Option<PathBuf>, String), BuildError> {
    match &req.dockerfile {
        DockerfileSource::Path(p) => {
            let text = std::fs::read(p).map_err(|source| BuildError::ReadDockerfile {
                path: p.clone(),
                source,
            })?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
            Ok((
                name,
                Some(p.clone()),
                String::from_utf8_lossy(&text).into_owned(),
            ))
        }
        DockerfileSource::Text { name, text } => Ok((name.clone(), None, text.clone())),
    }
}

/// Parse, lower and resolve; see the module documentation.
pub fn prepare(
    store: &Store,
    req: &BuildRequest,
    resolver: &Resolver<'_>,
    platform: &Platform,
) -> Result<Prepared, BuildError> {
    let (file, path, text) = read_dockerfile(req)?;
    let df_err = |source: rbuild_dockerfile::Error| BuildError::Dockerfile {
        file: file.clone(),
        source: Box::new(source),
    };
    let original = rbuild_dockerfile::parse(&text).map_err(|e| df_err(e.into()))?;
    let opts = LowerOptions {
        target: req.target.clone(),
        build_args: req.build_args.clone(),
        platform: Some(platform.clone()),
        build_platform: None,
    };
    let dir_contexts: BTreeSet<String> = req
        .named_contexts
        .iter()
        .filter(|(_, c)| matches!(c, NamedContext::Dir(_)))
        .map(|(k, _)| k.clone())
        .collect();
    let mut images: BTreeMap<String, ResolvedImage> = BTreeMap::new();
    let mut applied: BTreeMap<usize, Vec<Node>> = BTreeMap::new();
    let mut df = original.clone();
    for _round in 0..MAX_TRIGGER_ROUNDS {
        let plan = rbuild_dockerfile::lower(&df, &opts).map_err(df_err)?;
        let platforms = image_platforms(&plan).map_err(|(r, e)| locate(e, &plan, &r, &file))?;
        for (r, p) in platforms {
            if dir_contexts.contains(&r) || images.contains_key(&r) {
                continue;
            }
            let image = resolver
                .resolve_for(&r, &platform_spec(&p), store)
                .map_err(|e| locate(e, &plan, &r, &file))?;
            images.insert(r, image);
        }
        let wanted =
            triggers(&original, &plan, &images, &dir_contexts).map_err(|e| df_err(e.into()))?;
        if wanted == applied {
            let defaults: BTreeMap<String, ImageDefaults> = images
                .iter()
                .map(|(r, img)| (r.clone(), image_defaults(img)))
                .collect();
            let lowered = lower_plan(
                &plan,
                &FrontendOptions {
                    file: &file,
                    images: &defaults,
                    named_contexts: &dir_contexts,
                },
            )?;
            return Ok(Prepared {
                file,
                path,
                lowered,
                images,
                plan,
            });
        }
        applied = wanted;
        df = splice(&original, &applied);
    }
    Err(BuildError::Request {
        field: "dockerfile",
        reason: "ONBUILD triggers keep adding dependencies".into(),
    })
}

/// The platform each image of the plan is resolved for, as BuildKit's Dockerfile front-end
/// does: a stage's base for the stage's platform (its `FROM --platform`, else the target
/// platform), an image named by `COPY --from` or `RUN --mount=from=` for the target platform.
/// One build resolves an image reference for one platform: a reference needed for two is an
/// error naming both (and, through the caller, the line).
fn image_platforms(plan: &Plan) -> Result<BTreeMap<String, Platform>, (String, BuildError)> {
    let mut out: BTreeMap<String, Platform> = BTreeMap::new();
    for stage in plan.stages_to_build() {
        for dep in &stage.deps {
            let DepTarget::Image(r) = &dep.on else {
                continue;
            };
            let wanted = match dep.kind {
                DepKind::Base => &stage.platform,
                DepKind::CopyFrom | DepKind::MountFrom => &plan.target_platform,
            };
            match out.get(r) {
                Some(p) if p != wanted => {
                    let reason = format!(
                        "needed for both {p} and {wanted}; one build resolves an image for one \
                         platform (give the stages the same --platform)"
                    );
                    let e = BuildError::Source {
                        reference: r.clone(),
                        reason,
                    };
                    return Err((r.clone(), e));
                }
                Some(_) => {}
                None => {
                    out.insert(r.clone(), wanted.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Point an image-resolution error at the FROM (or `--from`) line that names the image.
fn locate(e: BuildError, plan: &Plan, reference: &str, file: &str) -> BuildError {
    let (BuildError::ImageNotFound { .. } | BuildError::Source { .. }) = &e else {
        return e;
    };
    let stage = plan.stages_to_build().find(|s| {
        matches!(&s.base, Base::Image(r) if r == reference)
            || s.deps.iter().any(|d| {
                matches!(&d.on, rbuild_dockerfile::lower::DepTarget::Image(r) if r == reference)
            })
    });
    match stage {
        Some(s) => {
            let location = s
                .deps
                .iter()
                .find(|d| {
                    matches!(&d.on, rbuild_dockerfile::lower::DepTarget::Image(r) if r == reference)
                })
                .map(|d| d.location)
                .unwrap_or(s.location);
            BuildError::Step {
                origin: crate::graph::Origin {
                    file: file.to_string(),
                    span: crate::graph::ByteSpan {
                        start: location.span.start,
                        end: location.span.end,
                    },
                    start_line: location.start_line as u32,
                    end_line: location.end_line as u32,
                    stage: crate::graph::StageRef {
                        index: s.index,
                        name: s.name.clone(),
                    },
                    instruction: s.original.clone(),
                },
                message: e.to_string(),
                exit_code: None,
            }
        }
        None => e,
    }
}

/// What lowering needs from a base image's config.
fn image_defaults(img: &ResolvedImage) -> ImageDefaults {
    let c = &img.config.config;
    ImageDefaults {
        env: env_pairs(c.env.as_deref().unwrap_or(&[])),
        user: c.user.clone(),
        workdir: c.working_dir.clone(),
        shell: c.shell.clone(),
    }
}

/// For each built stage, the trigger nodes to run after its FROM.
fn triggers(
    original: &Dockerfile,
    plan: &Plan,
    images: &BTreeMap<String, ResolvedImage>,
    dir_contexts: &BTreeSet<String>,
) -> Result<BTreeMap<usize, Vec<Node>>, rbuild_dockerfile::ParseError> {
    let from_nodes: Vec<&Node> = original
        .nodes
        .iter()
        .filter(|n| n.keyword == "from")
        .collect();
    let mut out = BTreeMap::new();
    for stage in plan.stages_to_build() {
        let Some(from) = from_nodes.get(stage.index) else {
            continue;
        };
        let mut nodes = Vec::new();
        match &stage.base {
            Base::Image(r) if !dir_contexts.contains(r) => {
                if let Some(img) = images.get(r) {
                    for t in img.config.config.on_build.as_deref().unwrap_or(&[]) {
                        let parsed = rbuild_dockerfile::parse(t)?;
                        for mut n in parsed.nodes {
                            n.location = from.location;
                            nodes.push(n);
                        }
                    }
                }
            }
            Base::Stage(b) => {
                for n in stage_nodes(original, *b) {
                    if n.keyword == "onbuild" {
                        if let Some(next) = &n.next {
                            let mut t = (**next).clone();
                            t.location = from.location;
                            nodes.push(t);
                        }
                    }
                }
            }
            _ => {}
        }
        if !nodes.is_empty() {
            out.insert(stage.index, nodes);
        }
    }
    Ok(out)
}

/// The nodes of stage `index` (after its FROM, up to the next FROM).
fn stage_nodes(df: &Dockerfile, index: usize) -> Vec<&Node> {
    let mut stage = None;
    let mut out = Vec::new();
    let mut seen = 0usize;
    for n in &df.nodes {
        if n.keyword == "from" {
            stage = Some(seen);
            seen += 1;
            continue;
        }
        if stage == Some(index) {
            out.push(n);
        }
    }
    out
}

/// The Dockerfile with `triggers` inserted after the FROM of their stages.
fn splice(original: &Dockerfile, triggers: &BTreeMap<usize, Vec<Node>>) -> Dockerfile {
    let mut df = original.clone();
    let mut nodes = Vec::with_capacity(df.nodes.len());
    let mut stage = 0usize;
    for n in original.nodes.iter() {
        let is_from = n.keyword == "from";
        nodes.push(n.clone());
        if is_from {
            if let Some(t) = triggers.get(&stage) {
                nodes.extend(t.iter().cloned());
            }
            stage += 1;
        }
    }
    df.nodes = nodes;
    df
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_resolve_for_their_stage_platform() {
        let lower = |text: &str, platform: &str| {
            let df = rbuild_dockerfile::parse(text).expect("parse");
            let opts = LowerOptions {
                platform: Some(platform.parse().expect("platform")),
                ..LowerOptions::default()
            };
            rbuild_dockerfile::lower(&df, &opts).expect("lower")
        };
        // (Dockerfile, target platform, (image, platform) pairs or an error's words)
        type Case<'a> = (&'a str, &'a str, Result<&'a [(&'a str, &'a str)], &'a str>);
        let cases: [Case<'_>; 4] = [
            (
                "FROM alpine\nCOPY --from=busybox /bin/sh /sh\n",
                "linux/arm64",
                Ok(&[("alpine", "linux/arm64"), ("busybox", "linux/arm64")]),
            ),
            (
                "FROM --platform=linux/amd64 golang AS build\nFROM alpine\nCOPY --from=build / /\n",
                "linux/arm/v7",
                Ok(&[("alpine", "linux/arm/v7"), ("golang", "linux/amd64")]),
            ),
            (
                "FROM --platform=$BUILDPLATFORM alpine AS a\nFROM alpine\nCOPY --from=a / /\n",
                "linux/s390x",
                Err("needed for both"),
            ),
            (
                "FROM --platform=linux/arm64 alpine\nCOPY --from=alpine / /x\n",
                "linux/arm64",
                Ok(&[("alpine", "linux/arm64")]),
            ),
        ];
        for (text, target, want) in cases {
            let plan = lower(text, target);
            let got = image_platforms(&plan);
            match (got, want) {
                (Ok(map), Ok(w)) => {
                    let got: Vec<(String, String)> = map
                        .iter()
                        .map(|(r, p)| (r.clone(), p.to_string()))
                        .collect();
                    let w: Vec<(String, String)> = w
                        .iter()
                        .map(|(r, p)| (r.to_string(), p.to_string()))
                        .collect();
                    assert_eq!(got, w, "{text}");
                }
                (Err((_, e)), Err(w)) => assert!(e.to_string().contains(w), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn onbuild_of_a_base_stage_runs_in_the_child() {
        let text = "FROM scratch AS base\nONBUILD LABEL from=base\nFROM base\nLABEL own=1\n";
        let df = rbuild_dockerfile::parse(text).expect("parse");
        let plan = rbuild_dockerfile::lower(&df, &LowerOptions::default()).expect("lower");
        let t = triggers(&df, &plan, &BTreeMap::new(), &BTreeSet::new()).expect("triggers");
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), vec![1]);
        let spliced = splice(&df, &t);
        let keywords: Vec<&str> = spliced.nodes.iter().map(|n| n.keyword.as_str()).collect();
        assert_eq!(keywords, ["from", "onbuild", "from", "label", "label"]);
        assert_eq!(
            spliced.nodes[3].location.start_line, 3,
            "trigger sits on the FROM line"
        );
    }
}
