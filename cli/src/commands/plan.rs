//! `rbuild plan`: lower the Dockerfile and print the stages a build would run, in build order
//! (index, name, base, platform, dependencies, instruction count), then the skipped stages and
//! any warnings. `--format json` prints the same as one JSON document.

use std::io::Write;

use rbuild_dockerfile::lower::{Base, DepKind, DepTarget, Plan, Stage};
use rbuild_dockerfile::LowerOptions;
use serde_json::{json, Value};

use crate::args::{Format, PlanArgs};
use crate::report::CliError;

/// Run `rbuild plan`.
pub fn run(args: &PlanArgs) -> Result<(), CliError> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&path).map_err(|source| CliError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    let opts = LowerOptions {
        target: args.target.clone(),
        build_args: crate::env::build_args(&args.build_args),
        platform: args.platform.clone(),
        build_platform: None,
    };
    let dockerfile_error = |error: rbuild_dockerfile::Error| CliError::Dockerfile {
        path: path.clone(),
        text: text.clone(),
        error: Box::new(error),
    };
    let df = rbuild_dockerfile::parse(&text).map_err(|e| dockerfile_error(e.into()))?;
    let plan = rbuild_dockerfile::lower(&df, &opts).map_err(dockerfile_error)?;
    let output = match args.format {
        Format::Text => render_text(&plan, &path),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&to_json(&plan, &path))
                .map_err(|e| CliError::Output(e.to_string()))?;
            s.push('\n');
            s
        }
    };
    std::io::stdout()
        .lock()
        .write_all(output.as_bytes())
        .map_err(|e| CliError::Output(e.to_string()))
}

fn stage_label(plan: &Plan, index: usize) -> String {
    match &plan.stages[index].name {
        Some(n) => format!("#{index} {n}"),
        None => format!("#{index}"),
    }
}

fn base_text(plan: &Plan, stage: &Stage) -> String {
    match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(i) => format!("stage {}", stage_label(plan, *i)),
        Base::Image(r) => format!("image {r}"),
    }
}

/// Unique dependencies of a stage, in first-use order.
fn needs(plan: &Plan, stage: &Stage) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in &stage.deps {
        let text = match &d.on {
            DepTarget::Stage(i) => format!("stage {}", stage_label(plan, *i)),
            DepTarget::Image(r) => format!("image {r}"),
        };
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

fn render_text(plan: &Plan, path: &std::path::Path) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for stage in plan.stages_to_build() {
        let n = stage.commands.len();
        let deps = needs(plan, stage);
        rows.push([
            format!("#{}", stage.index),
            stage.name.clone().unwrap_or_else(|| "-".to_string()),
            format!("from {}", base_text(plan, stage)),
            stage.platform.to_string(),
            format!(
                "{n} instruction{}{}",
                if n == 1 { "" } else { "s" },
                if deps.is_empty() {
                    String::new()
                } else {
                    format!(", needs {}", deps.join(", "))
                }
            ),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let target = plan.target_stage();
    let mut out = format!(
        "plan for {} (target {}, platform {}): {} of {} stages\n",
        path.display(),
        stage_label(plan, target.index),
        plan.target_platform,
        plan.build_order.len(),
        plan.stages.len()
    );
    for row in &rows {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if let Some(w) = widths.get(i) {
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !plan.skipped.is_empty() {
        let skipped: Vec<String> = plan.skipped.iter().map(|&i| stage_label(plan, i)).collect();
        out.push_str(&format!("skipped: {}\n", skipped.join(", ")));
    }
    for w in &plan.warnings {
        match w.location {
            Some(l) => out.push_str(&format!(
                "warning: {}:{}: {}\n",
                path.display(),
                l.start_line,
                w.message
            )),
            None => out.push_str(&format!("warning: {}\n", w.message)),
        }
    }
    out
}

fn to_json(plan: &Plan, path: &std::path::Path) -> Value {
    let stages: Vec<Value> = plan
        .stages
        .iter()
        .map(|s| {
            let base = match &s.base {
                Base::Scratch => json!({"kind": "scratch"}),
                Base::Stage(i) => json!({"kind": "stage", "index": i}),
                Base::Image(r) => json!({"kind": "image", "ref": r}),
            };
            let deps: Vec<Value> = s
                .deps
                .iter()
                .map(|d| {
                    let via = match d.kind {
                        DepKind::Base => "from",
                        DepKind::CopyFrom => "copy-from",
                        DepKind::MountFrom => "mount-from",
                    };
                    match &d.on {
                        DepTarget::Stage(i) => json!({"kind": "stage", "index": i, "via": via, "line": d.location.start_line}),
                        DepTarget::Image(r) => json!({"kind": "image", "ref": r, "via": via, "line": d.location.start_line}),
                    }
                })
                .collect();
            json!({
                "index": s.index,
                "name": s.name,
                "base": base,
                "platform": s.platform.to_string(),
                "line": s.location.start_line,
                "instructions": s.commands.len(),
                "depends_on": deps,
                "skipped": plan.skipped.contains(&s.index),
            })
        })
        .collect();
    json!({
        "dockerfile": path.display().to_string(),
        "target": plan.target,
        "target_platform": plan.target_platform.to_string(),
        "build_platform": plan.build_platform.to_string(),
        "build_order": plan.build_order,
        "skipped": plan.skipped,
        "images": plan.images(),
        "stages": stages,
        "warnings": plan.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>(),
    })
}
