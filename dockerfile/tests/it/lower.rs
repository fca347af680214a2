//! Lowering rules, one test per rule, run on real Dockerfile text through the parser.

use std::collections::BTreeMap;

use rbuild_dockerfile::instructions::{Chmod, CopySource, Instruction, MountType};
use rbuild_dockerfile::lower::{Base, DepKind, DepTarget, LowerError, Platform};
use rbuild_dockerfile::{lower, parse, Error, LowerOptions, Plan};

fn opts() -> LowerOptions {
    LowerOptions {
        platform: Some("linux/amd64".parse().expect("valid")),
        build_platform: Some("linux/amd64".parse().expect("valid")),
        ..Default::default()
    }
}

fn with_args(args: &[(&str, &str)]) -> LowerOptions {
    LowerOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..opts()
    }
}

fn plan_with(text: &str, o: &LowerOptions) -> Plan {
    let df = parse(text).expect("parses");
    match lower(&df, o) {
        Ok(p) => p,
        Err(e) => panic!("lowering failed: {e}\n{text}"),
    }
}

fn plan(text: &str) -> Plan {
    plan_with(text, &opts())
}

fn lower_err_with(text: &str, o: &LowerOptions) -> LowerError {
    let df = parse(text).expect("parses");
    match lower(&df, o) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(Error::Lower(e)) => e,
        Err(other) => panic!("expected a lowering error, got {other}"),
    }
}

fn lower_err(text: &str) -> LowerError {
    lower_err_with(text, &opts())
}

/// The expanded value of the `n`th command of stage `stage`, with no base env.
fn expanded(p: &Plan, stage: usize) -> rbuild_dockerfile::lower::ExpandedStage {
    p.stages[stage].expand(&[]).expect("expands")
}

#[test]
fn stages_are_split_at_from_and_named_lowercase() {
    let p = plan("FROM alpine AS Build\nRUN a\nRUN b\nFROM scratch\nCOPY x y\n");
    assert_eq!(p.stages.len(), 2);
    assert_eq!(p.stages[0].name.as_deref(), Some("build"));
    assert_eq!(p.stages[0].commands.len(), 2);
    assert_eq!(p.stages[1].name, None);
    assert_eq!(p.stages[1].display_name(), "stage-1");
    assert_eq!(p.stages[1].base, Base::Scratch);
}

#[test]
fn no_from_is_an_error() {
    assert_eq!(lower_err("ARG A=1\n"), LowerError::NoStages);
}

#[test]
fn instruction_before_first_from_is_an_error() {
    let e = lower_err("ARG A\nRUN echo\nFROM alpine\n");
    assert!(
        matches!(e, LowerError::NoBuildStage { instruction: "RUN", location } if location.start_line == 2),
        "{e:?}"
    );
}

#[test]
fn instruction_errors_name_the_line() {
    let df = parse("FROM alpine\n\nCOPY onlyone\n").expect("parses");
    let e = lower(&df, &opts()).expect_err("COPY needs a destination");
    assert_eq!(e.location().map(|l| l.start_line), Some(3));
    assert!(
        e.to_string()
            .starts_with("dockerfile parse error on line 3: COPY requires at least two arguments"),
        "{e}"
    );
    let df = parse("FROM alpine\nCOPPY a b\n").expect("parses");
    let e = lower(&df, &opts()).expect_err("unknown instruction");
    assert!(
        e.to_string()
            .contains("unknown instruction: COPPY (did you mean COPY?)"),
        "{e}"
    );
}

#[test]
fn meta_args_expand_in_from() {
    let p = plan("ARG BASE=alpine\nARG TAG=3.19\nFROM ${BASE}:${TAG} AS x\n");
    assert_eq!(p.stages[0].base, Base::Image("alpine:3.19".into()));
    assert_eq!(p.stages[0].base_text, "${BASE}:${TAG}");
    let used: Vec<_> = p.stages[0]
        .from_used
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(used, ["BASE=alpine", "TAG=3.19"]);
}

#[test]
fn meta_arg_default_expands_with_earlier_meta_args() {
    let p = plan("ARG A=alp\nARG B=${A}ine\nFROM $B\n");
    assert_eq!(p.stages[0].base, Base::Image("alpine".into()));
}

#[test]
fn meta_args_are_not_visible_in_stages_without_redeclaration() {
    let p = plan("ARG V=1\nFROM scratch\nWORKDIR /w$V\nARG V\nWORKDIR /x$V\n");
    let x = expanded(&p, 0);
    assert_eq!(
        x.commands[0].command.instruction,
        Instruction::Workdir("/w".into())
    );
    assert_eq!(
        x.commands[2].command.instruction,
        Instruction::Workdir("/x1".into())
    );
    assert_eq!(x.commands[2].used.get("V").map(String::as_str), Some("1"));
}

#[test]
fn build_arg_overrides_arg_default() {
    let o = with_args(&[("V", "2"), ("W", "b")]);
    let p = plan_with("ARG V=1\nFROM img:$V\nARG W=a\nARG V\nENV X=$V$W\n", &o);
    assert_eq!(p.stages[0].base, Base::Image("img:2".into()));
    let x = expanded(&p, 0);
    let Instruction::Env(kvs) = &x.commands[2].command.instruction else {
        panic!("not ENV")
    };
    assert_eq!(kvs[0].value, "2b");
}

#[test]
fn build_arg_value_is_not_expanded() {
    let p = plan_with(
        "FROM scratch\nARG V=x\nWORKDIR /$V\n",
        &with_args(&[("V", "$HOME")]),
    );
    let x = expanded(&p, 0);
    assert_eq!(
        x.commands[1].command.instruction,
        Instruction::Workdir("/$HOME".into())
    );
}

#[test]
fn bare_global_arg_is_empty_in_from() {
    let p = plan("ARG T\nFROM alpine$T\n");
    assert_eq!(p.stages[0].base, Base::Image("alpine".into()));
}

#[test]
fn blank_base_name_is_an_error() {
    let e = lower_err("ARG B\nFROM $B\n");
    assert!(
        matches!(e, LowerError::BlankBaseName { ref raw, .. } if raw == "$B"),
        "{e:?}"
    );
}

#[test]
fn platform_args_are_predefined() {
    let o = LowerOptions {
        platform: Some("linux/arm64".parse().expect("valid")),
        build_platform: Some("linux/amd64".parse().expect("valid")),
        ..Default::default()
    };
    let p = plan_with(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nARG BUILDOS\nENV A=$TARGETARCH-$BUILDOS-$TARGETVARIANT\nFROM alpine\n",
        &o,
    );
    assert_eq!(p.stages[0].platform.to_string(), "linux/amd64");
    assert!(p.stages[0].explicit_platform);
    assert_eq!(p.stages[1].platform.to_string(), "linux/arm64");
    let x = expanded(&p, 0);
    let Instruction::Env(kvs) = &x.commands[2].command.instruction else {
        panic!("not ENV")
    };
    assert_eq!(kvs[0].value, "arm64-linux-");
}

#[test]
fn platform_defaults_to_host() {
    let p = plan_with("FROM alpine\n", &LowerOptions::default());
    assert_eq!(p.target_platform, Platform::host());
    assert_eq!(p.stages[0].platform, Platform::host());
}

#[test]
fn platform_args_can_be_overridden_by_build_args() {
    let p = plan_with(
        "FROM img:$TARGETARCH\n",
        &with_args(&[("TARGETARCH", "riscv64")]),
    );
    assert_eq!(p.stages[0].base, Base::Image("img:riscv64".into()));
}

#[test]
fn invalid_platform_is_an_error() {
    let e = lower_err("FROM --platform=linux/ alpine\n");
    assert!(matches!(e, LowerError::InvalidPlatform { .. }), "{e:?}");
}

#[test]
fn stage_on_stage_inherits_platform() {
    let p = plan("FROM --platform=linux/s390x alpine AS a\nFROM a\n");
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(p.stages[1].platform.to_string(), "linux/s390x");
}

#[test]
fn proxy_args_need_no_declaration() {
    let o = with_args(&[
        ("HTTP_PROXY", "http://p:3128"),
        ("no_proxy", "local"),
        ("UNUSED", "x"),
    ]);
    let p = plan_with("FROM alpine\nRUN env\n", &o);
    let proxy: Vec<_> = p.proxy_env.keys().map(String::as_str).collect();
    assert_eq!(proxy, ["HTTP_PROXY", "no_proxy"]);
    let messages: Vec<_> = p.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        ["one or more build-args [UNUSED] were not consumed"]
    );
    let x = expanded(&p, 0);
    assert!(
        x.commands[0].args.is_empty(),
        "proxy args are not ARGs: {:?}",
        x.commands[0].args
    );
}

#[test]
fn from_earlier_stage_name_is_a_stage_base() {
    let p = plan("FROM alpine AS base\nFROM base AS next\nFROM scratch\n");
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(p.stages[1].deps[0].on, DepTarget::Stage(0));
    assert_eq!(p.stages[1].deps[0].kind, DepKind::Base);
}

#[test]
fn from_later_stage_name_is_an_image() {
    let p = plan("FROM later AS first\nFROM alpine AS later\n");
    assert_eq!(p.stages[0].base, Base::Image("later".into()));
}

#[test]
fn duplicate_stage_names_are_an_error() {
    let e = lower_err("FROM alpine AS a\nFROM alpine AS A\n");
    assert!(
        matches!(e, LowerError::DuplicateStageName { ref name, first_line: 1, location } if name == "a" && location.start_line == 2),
        "{e:?}"
    );
}

#[test]
fn copy_from_name_index_and_image_are_dependencies() {
    let p = plan("FROM alpine AS build\nFROM scratch\nCOPY --from=BUILD /a /a\nCOPY --from=0 /b /b\nCOPY --from=busybox:1.36 /bin/sh /sh\n");
    let deps: Vec<_> = p.stages[1]
        .deps
        .iter()
        .map(|d| (d.on.clone(), d.kind, d.command))
        .collect();
    assert_eq!(
        deps,
        [
            (DepTarget::Stage(0), DepKind::CopyFrom, Some(0)),
            (DepTarget::Stage(0), DepKind::CopyFrom, Some(1)),
            (
                DepTarget::Image("busybox:1.36".into()),
                DepKind::CopyFrom,
                Some(2)
            ),
        ]
    );
    assert_eq!(p.images(), ["alpine", "busybox:1.36"]);
}

#[test]
fn run_mount_from_is_a_dependency() {
    let p = plan("FROM alpine AS tools\nFROM alpine\nRUN --mount=from=tools,target=/t --mount=type=cache,target=/c ls\n");
    let mounts: Vec<_> = p.stages[1]
        .deps
        .iter()
        .filter(|d| d.kind == DepKind::MountFrom)
        .map(|d| d.on.clone())
        .collect();
    assert_eq!(mounts, [DepTarget::Stage(0)]);
}

#[test]
fn copy_from_forward_reference_is_allowed_without_cycle() {
    let p = plan("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nFROM a\n");
    assert_eq!(p.build_order, [1, 0, 2]);
}

#[test]
fn invalid_stage_index_is_an_error() {
    let e = lower_err("FROM alpine\nCOPY --from=3 /a /b\n");
    assert!(
        matches!(e, LowerError::InvalidStageIndex { index: 3, .. }),
        "{e:?}"
    );
    let e = lower_err("FROM alpine\nCOPY --from=-1 /a /b\n");
    assert!(
        matches!(e, LowerError::InvalidStageIndex { index: -1, .. }),
        "{e:?}"
    );
}

#[test]
fn stage_depending_on_itself_is_circular() {
    let e = lower_err("FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n");
    assert_eq!(
        e.to_string(),
        "circular dependency detected on stage: stage0"
    );
    assert_eq!(e.location().map(|l| l.start_line), Some(2));
    let e = lower_err("FROM busybox\nCOPY --from=0 f1 /sub/\n");
    assert_eq!(
        e.to_string(),
        "circular dependency detected on stage: stage-0"
    );
}

#[test]
fn stages_depending_on_each_other_are_circular() {
    let e = lower_err(
        "FROM busybox AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM busybox AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM busybox AS stage2\nCOPY --from=stage1 f2 /sub/\n",
    );
    assert_eq!(
        e.to_string(),
        "circular dependency detected on stage: stage0"
    );
    let LowerError::CircularDependency { locations, .. } = e else {
        panic!("not circular")
    };
    let lines: Vec<_> = locations.iter().map(|l| l.start_line).collect();
    assert_eq!(lines, [2, 6, 4]);
}

#[test]
fn copy_from_variable_is_an_error() {
    let e = lower_err("ARG S=build\nFROM alpine AS build\nFROM alpine\nCOPY --from=$S /a /b\n");
    assert!(
        matches!(e, LowerError::FromVariable { ref value, .. } if value == "$S"),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("variable expansion is not supported for --from"));
}

#[test]
fn mount_from_variable_is_an_error() {
    let df = parse("FROM alpine\nRUN --mount=from=$S,target=/x ls\n").expect("parses");
    let e = lower(&df, &opts()).expect_err("variable in from");
    assert!(
        e.to_string()
            .contains("'from' doesn't support variable expansion"),
        "{e}"
    );
}

#[test]
fn target_selects_needed_stages_only() {
    let text = "FROM alpine AS base\nFROM base AS build\nRUN make\nFROM alpine AS test\nCOPY --from=build /out /out\nFROM scratch AS release\nCOPY --from=build /out /out\n";
    let p = plan_with(
        text,
        &LowerOptions {
            target: Some("Test".into()),
            ..opts()
        },
    );
    assert_eq!(p.target, 2);
    assert_eq!(p.build_order, [0, 1, 2]);
    assert_eq!(p.skipped, [3]);
    let p = plan(text);
    assert_eq!(p.target, 3);
    assert_eq!(p.build_order, [0, 1, 3]);
    assert_eq!(p.skipped, [2]);
}

#[test]
fn unknown_target_is_an_error() {
    let e = lower_err_with(
        "FROM alpine AS build\n",
        &LowerOptions {
            target: Some("buidl".into()),
            ..opts()
        },
    );
    assert_eq!(
        e.to_string(),
        "target stage \"buidl\" could not be found (did you mean build?)"
    );
}

#[test]
fn env_expands_with_environment_before_the_instruction() {
    let p = plan("FROM scratch\nENV A=1\nENV A=2 B=$A\nENV C=${B}x\n");
    let x = expanded(&p, 0);
    let Instruction::Env(kvs) = &x.commands[1].command.instruction else {
        panic!("not ENV")
    };
    assert_eq!((kvs[1].key.as_str(), kvs[1].value.as_str()), ("B", "1"));
    let env: BTreeMap<_, _> = x.env.iter().cloned().collect();
    assert_eq!(env.get("C").map(String::as_str), Some("1x"));
    assert_eq!(x.commands[2].used.get("B").map(String::as_str), Some("1"));
}

#[test]
fn base_env_is_visible_to_expansion() {
    let p = plan("FROM alpine\nWORKDIR $HOME/app\n");
    let x = p.stages[0]
        .expand(&[("HOME".into(), "/root".into())])
        .expect("expands");
    assert_eq!(
        x.commands[0].command.instruction,
        Instruction::Workdir("/root/app".into())
    );
    assert_eq!(
        x.commands[0].used.get("HOME").map(String::as_str),
        Some("/root")
    );
}

#[test]
fn arg_values_are_in_scope_for_run_but_not_in_image_env() {
    let p = plan("FROM alpine\nARG V=1\nENV E=2\nRUN echo $V $E\n");
    let x = expanded(&p, 0);
    let run = &x.commands[2];
    assert_eq!(run.args, [("V".to_string(), "1".to_string())]);
    let env: Vec<&str> = run.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(env, ["PATH", "E"]);
    assert_eq!(
        run.command.instruction, p.stages[0].commands[2].instruction,
        "RUN text is not expanded"
    );
}

#[test]
fn arg_defaults_expand_in_order() {
    let p = plan("FROM alpine\nARG A=x B=${A}y\nLABEL l=$B\n");
    let x = expanded(&p, 0);
    let Instruction::Label(kvs) = &x.commands[1].command.instruction else {
        panic!("not LABEL")
    };
    assert_eq!(kvs[0].value, "xy");
}

#[test]
fn copy_words_and_flags_expand() {
    let p = plan("FROM alpine\nFROM alpine\nARG SRC=src DST=/dst U=app\nCOPY --chown=$U:$U --chmod=0750 --from=0 ${SRC}/a $DST/\n");
    let x = expanded(&p, 1);
    let Instruction::Copy(c) = &x.commands[1].command.instruction else {
        panic!("not COPY")
    };
    assert_eq!(c.sources, [CopySource::Path("src/a".into())]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(
        c.chown.as_ref().map(|c| c.to_text()).as_deref(),
        Some("app:app")
    );
    assert_eq!(c.chmod, Some(Chmod::Octal(0o750)));
    assert_eq!(c.from.as_deref(), Some("0"));
    let used: Vec<_> = x.commands[1].used.keys().map(String::as_str).collect();
    assert_eq!(used, ["DST", "SRC", "U"]);
}

#[test]
fn chmod_is_never_expanded() {
    let df = parse("FROM alpine\nARG M=0755\nCOPY --chmod=$M a b\n").expect("parses");
    let e = lower(&df, &opts()).expect_err("chmod with a variable");
    assert!(e.to_string().contains("invalid chmod \"$M\""), "{e}");
}

#[test]
fn path_is_added_when_base_has_none() {
    let p = plan("FROM scratch\nENV P=$PATH\n");
    let x = expanded(&p, 0);
    let env: BTreeMap<_, _> = x.env.iter().cloned().collect();
    assert_eq!(
        env.get("P").map(String::as_str),
        Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    );
    let x = p.stages[0]
        .expand(&[("PATH".into(), "/bin".into())])
        .expect("expands");
    assert_eq!(
        x.env,
        [
            ("PATH".to_string(), "/bin".to_string()),
            ("P".to_string(), "/bin".to_string())
        ]
    );
}

#[test]
fn stage_on_stage_inherits_env_and_args() {
    let p = plan("FROM alpine AS base\nARG V=1\nENV E=2\nFROM base\nRUN true\nWORKDIR /$V$E\n");
    let base = expanded(&p, 0);
    let child = p.stages[1].expand_on(&base).expect("expands");
    assert_eq!(child.commands[0].args, [("V".to_string(), "1".to_string())]);
    assert_eq!(
        child.commands[1].command.instruction,
        Instruction::Workdir("/12".into())
    );
    assert!(
        !child.env.iter().any(|(k, _)| k == "V"),
        "ARGs stay out of the image env"
    );
}

#[test]
fn expose_and_volume_expand() {
    let p = plan("FROM alpine\nENV P=\"80 443/tcp\" D=/data\nEXPOSE $P 8080\nVOLUME $D [\"/x\"]\n");
    let x = expanded(&p, 0);
    assert_eq!(
        x.commands[1].command.instruction,
        Instruction::Expose(vec!["80".into(), "443/tcp".into(), "8080".into()])
    );
}

#[test]
fn mount_values_expand_at_dispatch() {
    let p = plan(
        "FROM alpine\nARG ID=gomod\nRUN --mount=type=cache,id=$ID,target=/go/pkg/mod go build\n",
    );
    let x = expanded(&p, 0);
    let Instruction::Run(r) = &x.commands[1].command.instruction else {
        panic!("not RUN")
    };
    assert_eq!(
        (r.mounts[0].kind, r.mounts[0].id.as_deref()),
        (MountType::Cache, Some("gomod"))
    );
}

#[test]
fn expansion_errors_name_the_line() {
    let p = plan("FROM alpine\n\nWORKDIR ${X:?must be set}\n");
    let e = p.stages[0].expand(&[]).expect_err("X unset");
    assert_eq!(e.location().map(|l| l.start_line), Some(3));
    assert!(e.to_string().contains("must be set"), "{e}");
}

#[test]
fn escape_directive_is_used_for_expansion() {
    let p = plan("# escape=`\nFROM alpine\nENV A=1\nENV B=`$A C=$A\n");
    let x = expanded(&p, 0);
    let Instruction::Env(kvs) = &x.commands[1].command.instruction else {
        panic!("not ENV")
    };
    assert_eq!((kvs[0].value.as_str(), kvs[1].value.as_str()), ("$A", "1"));
}

#[test]
fn onbuild_trigger_is_kept_raw() {
    let p = plan("FROM alpine\nONBUILD RUN echo $HOME\n");
    let x = expanded(&p, 0);
    let Instruction::Onbuild(o) = &x.commands[0].command.instruction else {
        panic!("not ONBUILD")
    };
    assert_eq!(o.expression, "RUN echo $HOME");
}

/// Every parser conformance Dockerfile that has a FROM lowers (instructions type-check),
/// except the two that exercise syntax BuildKit also rejects when typing instructions:
/// `flags` (`COPY --user`, `CMD --doit`) and `health` (bare `HEALTHCHECK`, `HEALTHCHECK CONNECT`).
#[test]
fn conformance_dockerfiles_lower() {
    let dir = crate::support::buildkit_vectors().join("frontend/dockerfile/parser/testfiles");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("testfiles dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    let mut lowered = 0;
    let mut rejected = Vec::new();
    for case in entries {
        let text = std::fs::read_to_string(case.join("Dockerfile")).expect("Dockerfile");
        let Ok(df) = parse(&text) else { continue };
        match lower(&df, &opts()) {
            Ok(_) => lowered += 1,
            // The jeztah-* cases have no FROM at all.
            Err(Error::Lower(LowerError::NoStages | LowerError::NoBuildStage { .. }))
                if !text.contains("FROM") => {}
            Err(Error::Instruction(e)) if ["flags", "health"].iter().any(|n| case.ends_with(n)) => {
                rejected.push(e.location.start_line)
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} lowered; failures:\n{}",
        lowered,
        failures.join("\n")
    );
    assert!(lowered >= 25, "only {lowered} lowered");
    assert_eq!(
        rejected,
        [3, 4],
        "flags fails on line 3 (--user), health on line 4 (bare HEALTHCHECK)"
    );
}

#[test]
fn parser_warnings_are_kept_in_the_plan() {
    let p = plan("FROM alpine\nRUN a \\\n\n  b\n");
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].location.is_some(), "{:?}", p.warnings);
}
