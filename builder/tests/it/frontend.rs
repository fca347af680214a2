//! Dockerfile to graph to keys: a real Dockerfile and context, lowered and keyed; edits to the
//! context change exactly the keys that read the edited files.

use std::collections::{BTreeMap, BTreeSet};

use rbuild::cache::{step_key, CacheKey, KeyInputs};
use rbuild::context::{hash_context, HashOptions, NoFilter};
use rbuild::frontend::{lower_plan, FrontendOptions};
use rbuild::graph::{ContextName, StepId};
use rbuild_dockerfile::lower::{lower, LowerOptions};

use crate::support::write_old;

const DOCKERFILE: &str = "\
FROM scratch AS build
COPY src /src
FROM scratch
COPY --from=build /src /out
COPY README.md /
LABEL built=yes
";

fn keys(dockerfile: &str, context: &std::path::Path) -> BTreeMap<u32, CacheKey> {
    let df = rbuild_dockerfile::parse(dockerfile).expect("parses");
    let plan = lower(&df, &LowerOptions::default()).expect("lowers");
    let images = BTreeMap::new();
    let named = BTreeSet::new();
    let opts = FrontendOptions {
        file: "Dockerfile",
        images: &images,
        named_contexts: &named,
    };
    let lowered = lower_plan(&plan, &opts).expect("graph");
    let hashed = hash_context(
        context,
        &HashOptions {
            filter: &NoFilter,
            stat_cache: None,
        },
    )
    .expect("hash");
    let mut inputs = KeyInputs::default();
    inputs.contexts.insert(ContextName::main(), hashed);
    let mut out = BTreeMap::new();
    for id in lowered.graph.topo_order().expect("acyclic") {
        let step = lowered.graph.get(id).expect("exists");
        let k = step_key(id, step, &inputs).expect("keys resolve");
        inputs.states.insert(id, k.state);
        out.insert(id.0, k.key);
    }
    assert_eq!(lowered.target, StepId(5));
    out
}

fn changed(a: &BTreeMap<u32, CacheKey>, b: &BTreeMap<u32, CacheKey>) -> Vec<u32> {
    a.iter()
        .filter(|(id, k)| b.get(id) != Some(k))
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn context_edits_invalidate_exactly_their_readers() {
    let ctx = tempfile::tempdir().expect("context");
    write_old(&ctx.path().join("src/main.c"), b"int main;");
    write_old(&ctx.path().join("README.md"), b"readme");
    write_old(&ctx.path().join("unused.txt"), b"not copied");
    let base = keys(DOCKERFILE, ctx.path());
    // Steps: 0 scratch(build), 1 COPY src, 2 scratch, 3 COPY --from, 4 COPY README, 5 LABEL.
    assert_eq!(base.len(), 6);
    assert_eq!(keys(DOCKERFILE, ctx.path()), base, "keys are deterministic");

    write_old(&ctx.path().join("unused.txt"), b"edited");
    assert_eq!(
        changed(&base, &keys(DOCKERFILE, ctx.path())),
        Vec::<u32>::new()
    );

    write_old(&ctx.path().join("README.md"), b"README");
    let after_readme = keys(DOCKERFILE, ctx.path());
    assert_eq!(changed(&base, &after_readme), vec![4, 5]);

    write_old(&ctx.path().join("src/main.c"), b"int main();");
    assert_eq!(
        changed(&after_readme, &keys(DOCKERFILE, ctx.path())),
        vec![1, 3, 4, 5]
    );

    let missing = "FROM scratch\nCOPY nope /\n";
    let df = rbuild_dockerfile::parse(missing).expect("parses");
    let plan = lower(&df, &LowerOptions::default()).expect("lowers");
    let (images, named) = (BTreeMap::new(), BTreeSet::new());
    let opts = FrontendOptions {
        file: "Dockerfile",
        images: &images,
        named_contexts: &named,
    };
    let lowered = lower_plan(&plan, &opts).expect("graph");
    let mut inputs = KeyInputs::default();
    let hashed = hash_context(
        ctx.path(),
        &HashOptions {
            filter: &NoFilter,
            stat_cache: None,
        },
    )
    .expect("hash");
    inputs.contexts.insert(ContextName::main(), hashed);
    let src = step_key(
        StepId(0),
        lowered.graph.get(StepId(0)).expect("source"),
        &inputs,
    )
    .expect("scratch");
    inputs.states.insert(StepId(0), src.state);
    let copy = lowered.graph.get(StepId(1)).expect("copy");
    let err = step_key(StepId(1), copy, &inputs).expect_err("missing source");
    assert_eq!(
        err.to_string(),
        "failed to compute cache key of step #1: \"/nope\": not found"
    );
    assert_eq!(
        copy.origin.start_line, 2,
        "the caller can point at the COPY line"
    );
}
