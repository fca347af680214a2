//! Keys, index and scheduler together: a small graph is "built" twice against a real context;
//! the second run hits the cache everywhere, and after an edit only the affected steps miss,
//! with the reason explained from the stored key manifests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbuild::cache::{
    explain, step_key, CacheIndex, CacheKey, CacheRecord, ContextSelection, FieldValue,
    HistoryRecord, InputDigests, LayerRecord, Lookup, MissReason,
};
use rbuild::context::{
    hash_context, ContextError, HashOptions, HashedContext, NoFilter, StatCache,
};
use rbuild::events::CollectSink;
use rbuild::graph::{
    Command, ConfigOp, ContextName, CopyKind, CopyOp, CopySource, FsInput, Graph, ImageRef,
    NetworkMode, Op, Origin, RunOp, SecurityMode, SourceOp, StageRef, Step, StepId,
};
use rbuild::schedule::{run, ScheduleOptions, StepOutcome};
use rbuild_layers::digest::{DiffId, Digest};

use crate::support::{settle, write_old, write_tree};

struct Resolver<'a> {
    ctx: &'a HashedContext,
    states: &'a Mutex<BTreeMap<StepId, CacheKey>>,
}

impl InputDigests for Resolver<'_> {
    fn state_key(&self, id: StepId) -> Option<CacheKey> {
        self.states.lock().expect("not poisoned").get(&id).cloned()
    }
    fn image_digest(&self, _image: &ImageRef) -> Option<Digest> {
        None
    }
    fn context_digest(
        &self,
        _c: &ContextName,
        s: &ContextSelection<'_>,
    ) -> Result<Digest, ContextError> {
        self.ctx.digest_selection(s)
    }
    fn remote_digest(&self, _source: &CopySource) -> Option<Digest> {
        None
    }
}

fn origin(line: u32, text: &str) -> Origin {
    Origin {
        file: "Dockerfile".into(),
        start_line: line,
        end_line: line,
        stage: StageRef {
            index: 0,
            name: None,
        },
        instruction: text.into(),
        ..Origin::default()
    }
}

/// FROM scratch / COPY src /src / LABEL v=1 / RUN build / COPY README.md /
fn graph(label: &str) -> Graph {
    let copy = |src: &str, dest: &str| CopyOp {
        kind: CopyKind::Copy,
        from: FsInput::Context(ContextName::main()),
        sources: vec![CopySource::Path(src.into())],
        dest: dest.into(),
        workdir: "/".into(),
        chown: None,
        chmod: None,
        link: false,
        exclude: vec![],
        parents: false,
        checksum: None,
    };
    let mut g = Graph::new();
    let s0 = g.add(Step::new(
        Op::Source(SourceOp::Scratch { platform: None }),
        None,
        origin(1, "FROM scratch"),
    ));
    let s1 = g.add(Step::new(
        Op::Copy(copy("src", "/src")),
        Some(s0),
        origin(2, "COPY src /src"),
    ));
    let s2 = g.add(Step::new(
        Op::Config(ConfigOp::Label(vec![("v".into(), label.into())])),
        Some(s1),
        origin(3, "LABEL v"),
    ));
    let run_op = RunOp {
        command: Command::Shell {
            shell: vec!["/bin/sh".into(), "-c".into()],
            script: "build".into(),
        },
        env: vec![],
        proxy_env: vec![],
        user: None,
        workdir: "/".into(),
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        mounts: vec![],
    };
    let s3 = g.add(Step::new(Op::Run(run_op), Some(s2), origin(4, "RUN build")));
    g.add(Step::new(
        Op::Copy(copy("README.md", "/")),
        Some(s3),
        origin(5, "COPY README.md /"),
    ));
    g
}

struct Outcome {
    outcomes: BTreeMap<u32, StepOutcome>,
}

/// One build: key each step, look it up, "execute" misses by recording a fake layer.
fn build(g: &Graph, ctx: &HashedContext, index: &CacheIndex) -> Outcome {
    let states = Mutex::new(BTreeMap::new());
    let resolver = Resolver {
        ctx,
        states: &states,
    };
    let blobs = |_: &Digest| true;
    let opts = ScheduleOptions {
        parallelism: std::num::NonZeroUsize::MIN,
        cancel: None,
    };
    let report = run(g, &[], &opts, &CollectSink::new(), |cx| {
        let keys = step_key(cx.id(), cx.step(), &resolver).map_err(rbuild::Error::from)?;
        states
            .lock()
            .expect("not poisoned")
            .insert(cx.id(), keys.state.clone());
        let lineage = format!("Dockerfile/0/{}", cx.step().origin.start_line);
        let outcome = match index
            .lookup(&keys.key, &blobs)
            .map_err(rbuild::Error::from)?
        {
            Lookup::Hit(_) => StepOutcome::Cached,
            _ => {
                let layer = cx.step().op.changes_filesystem().then(|| LayerRecord {
                    digest: Digest::of(keys.key.hex().as_bytes()),
                    diff_id: DiffId(Digest::of(b"diff")),
                    size: 1,
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                });
                let record = CacheRecord {
                    layer,
                    config: None,
                    history: HistoryRecord {
                        created_by: cx.step().origin.instruction.clone(),
                        ..HistoryRecord::default()
                    },
                    manifest: keys.manifest.clone(),
                };
                index.put(&keys.key, &record).map_err(rbuild::Error::from)?;
                StepOutcome::Built
            }
        };
        index
            .remember(&lineage, &keys.key)
            .map_err(rbuild::Error::from)?;
        Ok::<_, rbuild::Error>(outcome)
    })
    .expect("build succeeds");
    Outcome {
        outcomes: report.finished.iter().map(|(id, o)| (id.0, *o)).collect(),
    }
}

fn built(o: &Outcome) -> Vec<u32> {
    o.outcomes
        .iter()
        .filter(|(_, v)| **v == StepOutcome::Built)
        .map(|(k, _)| *k)
        .collect()
}

#[test]
fn rebuilds_only_what_changed_and_explains_why() {
    let store = tempfile::tempdir().expect("store");
    let ctx_dir = tempfile::tempdir().expect("context");
    write_tree(
        ctx_dir.path(),
        &[
            ("src/a.c", "int a;"),
            ("src/b.c", "int b;"),
            ("README.md", "read me"),
        ],
    );
    settle();
    let index = CacheIndex::ensure(store.path()).expect("index");
    let stat_cache = Some(StatCache::path_for(store.path(), ctx_dir.path()));
    let hash = || {
        hash_context(
            ctx_dir.path(),
            &HashOptions {
                filter: &NoFilter,
                stat_cache: stat_cache.clone(),
            },
        )
        .expect("hash")
    };

    let first = build(&graph("1"), &hash(), &index);
    assert_eq!(
        built(&first),
        vec![0, 1, 2, 3, 4],
        "cold cache builds everything"
    );

    let second = build(&graph("1"), &hash(), &index);
    assert_eq!(
        built(&second),
        Vec::<u32>::new(),
        "warm cache builds nothing"
    );

    // A label change misses only the label step: the RUN after it keeps its key, as in BuildKit.
    let relabelled = build(&graph("2"), &hash(), &index);
    assert_eq!(built(&relabelled), vec![2]);

    // Editing a README only affects the last COPY.
    let before = index
        .previous("Dockerfile/0/5")
        .expect("read")
        .expect("remembered");
    write_old(&ctx_dir.path().join("README.md"), b"read me!");
    let edited = build(&graph("1"), &hash(), &index);
    assert_eq!(built(&edited), vec![4]);
    let after = index
        .previous("Dockerfile/0/5")
        .expect("read")
        .expect("remembered");
    let reasons = explain(&before.manifest, &after.manifest);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    match &reasons[0] {
        MissReason::Changed {
            label,
            old: FieldValue::Digest(_),
            new: FieldValue::Digest(_),
        } => {
            assert_eq!(label, "copy.from.digest");
        }
        other => panic!("unexpected reason {other}"),
    }

    // Editing a source file invalidates the COPY of src and everything after it (the label
    // step too: its own key includes its parent's new state).
    write_old(&ctx_dir.path().join("src/b.c"), b"int c;");
    let edited_src = build(&graph("1"), &hash(), &index);
    assert_eq!(built(&edited_src), vec![1, 2, 3, 4]);
}
