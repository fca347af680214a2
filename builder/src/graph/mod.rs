//! The build graph: rbuild's intermediate representation, a DAG of [`Step`]s addressed by
//! [`StepId`].
//!
//! Like BuildKit's LLB, the graph is the contract between front-ends and the solver: the
//! Dockerfile front-end (`crate::frontend`) is one producer, and any other front-end can build a
//! [`Graph`] with [`Graph::add`] and hand it to the scheduler. Step ids are assigned in insertion
//! order and never reused; pruning removes steps without renumbering the rest, so an id keeps
//! naming the same step in events and error messages. Stage outputs can be given names
//! ([`Graph::set_name`]) for `--target`. The graph never holds host paths, clocks or anything that
//! would make two lowerings of the same input differ.

mod step;
mod validate;

pub use step::{
    ByteSpan, CacheSharing, Chmod, Command, ConfigOp, ContextName, CopyKind, CopyOp, CopySource,
    FsInput, Healthcheck, IdSpec, ImageRef, ImageRefError, MountKind, MountPerms, NetworkMode, Op,
    Origin, RunMount, RunOp, SecurityMode, SourceOp, StageRef, Step, UserSpec,
};
pub use validate::GraphError;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The address of a step in its [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub u32);

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A DAG of steps; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Graph {
    steps: BTreeMap<StepId, Step>,
    next_id: u32,
    names: BTreeMap<String, StepId>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a step and return its id. Inputs are checked by [`Graph::validate`].
    pub fn add(&mut self, step: Step) -> StepId {
        let id = StepId(self.next_id);
        self.next_id += 1;
        self.steps.insert(id, step);
        id
    }

    /// The step with this id.
    pub fn get(&self, id: StepId) -> Option<&Step> {
        self.steps.get(&id)
    }

    /// True when the graph holds this id.
    pub fn contains(&self, id: StepId) -> bool {
        self.steps.contains_key(&id)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when the graph has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Steps in id order.
    pub fn iter(&self) -> impl Iterator<Item = (StepId, &Step)> + '_ {
        self.steps.iter().map(|(id, s)| (*id, s))
    }

    /// Give a step a name (a stage name, for `--target`); a later call for the same name wins.
    pub fn set_name(&mut self, name: impl Into<String>, id: StepId) {
        self.names.insert(name.into(), id);
    }

    /// The step a name points to.
    pub fn named(&self, name: &str) -> Option<StepId> {
        self.names.get(name).copied()
    }

    /// All names and their steps, sorted by name.
    pub fn names(&self) -> impl Iterator<Item = (&str, StepId)> + '_ {
        self.names.iter().map(|(n, id)| (n.as_str(), *id))
    }

    /// Check the graph: every input exists, source steps have no parent and other steps have
    /// one, and there is no cycle.
    pub fn validate(&self) -> Result<(), GraphError> {
        validate::validate(self)
    }

    /// The steps in an order where every step comes after its inputs (ties broken by id).
    pub fn topo_order(&self) -> Result<Vec<StepId>, GraphError> {
        validate::topo_order(self)
    }

    /// The ids `target` depends on, itself included, sorted.
    pub fn ancestors(&self, target: StepId) -> Result<BTreeSet<StepId>, GraphError> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![(target, None::<StepId>)];
        while let Some((id, user)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let step = self.steps.get(&id).ok_or(match user {
                Some(user) => GraphError::MissingInput {
                    step: user,
                    input: id,
                },
                None => GraphError::UnknownStep(id),
            })?;
            stack.extend(step.inputs().into_iter().map(|i| (i, Some(id))));
        }
        Ok(seen)
    }

    /// Keep only the steps `target` needs; names pointing at removed steps are dropped.
    pub fn prune_to(&mut self, target: StepId) -> Result<(), GraphError> {
        let keep = self.ancestors(target)?;
        self.steps.retain(|id, _| keep.contains(id));
        self.names.retain(|_, id| keep.contains(id));
        Ok(())
    }

    /// The steps that read `id` (as parent or other input), sorted.
    pub fn dependents(&self, id: StepId) -> Vec<StepId> {
        self.iter()
            .filter(|(_, s)| s.inputs().contains(&id))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn scratch() -> Step {
        Step::new(
            Op::Source(SourceOp::Scratch { platform: None }),
            None,
            Origin::default(),
        )
    }

    pub(crate) fn env_on(parent: StepId) -> Step {
        Step::new(
            Op::Config(ConfigOp::Env(vec![("A".into(), "1".into())])),
            Some(parent),
            Origin::default(),
        )
    }

    pub(crate) fn copy_from(parent: StepId, from: StepId) -> Step {
        Step::new(
            Op::Copy(CopyOp {
                kind: CopyKind::Copy,
                from: FsInput::Step(from),
                sources: vec![CopySource::Path("/out".into())],
                dest: "/".into(),
                workdir: "/".into(),
                chown: None,
                chmod: None,
                link: false,
                exclude: vec![],
                parents: false,
                checksum: None,
            }),
            Some(parent),
            Origin::default(),
        )
    }

    /// Two stages: build = {0 scratch, 1 env}, final = {2 scratch, 3 copy --from=1}, plus an
    /// unrelated stage {4 scratch, 5 env}.
    fn two_stage() -> (Graph, [StepId; 6]) {
        let mut g = Graph::new();
        let s0 = g.add(scratch());
        let s1 = g.add(env_on(s0));
        let s2 = g.add(scratch());
        let s3 = g.add(copy_from(s2, s1));
        let s4 = g.add(scratch());
        let s5 = g.add(env_on(s4));
        g.set_name("build", s1);
        g.set_name("final", s3);
        g.set_name("other", s5);
        (g, [s0, s1, s2, s3, s4, s5])
    }

    #[test]
    fn prune_keeps_only_what_target_needs() {
        let cases: Vec<(&str, usize, Vec<u32>, Vec<&str>)> = vec![
            (
                "final needs both stages",
                3,
                vec![0, 1, 2, 3],
                vec!["build", "final"],
            ),
            ("build alone", 1, vec![0, 1], vec!["build"]),
            ("unrelated stage", 5, vec![4, 5], vec!["other"]),
            ("a source", 2, vec![2], vec![]),
        ];
        for (name, target, want_ids, want_names) in cases {
            let (mut g, ids) = two_stage();
            g.prune_to(ids[target]).expect("target exists");
            let got: Vec<u32> = g.iter().map(|(id, _)| id.0).collect();
            assert_eq!(got, want_ids, "{name}");
            let names: Vec<&str> = g.names().map(|(n, _)| n).collect();
            assert_eq!(names, want_names, "{name}");
            g.validate().expect("pruned graph stays valid");
        }
    }

    #[test]
    fn prune_to_unknown_target_fails() {
        let (mut g, _) = two_stage();
        assert_eq!(
            g.prune_to(StepId(99)),
            Err(GraphError::UnknownStep(StepId(99)))
        );
        assert_eq!(g.len(), 6, "graph untouched on error");
    }

    #[test]
    fn dependents_and_names() {
        let (g, ids) = two_stage();
        assert_eq!(g.dependents(ids[1]), vec![ids[3]]);
        assert_eq!(g.dependents(ids[0]), vec![ids[1]]);
        assert_eq!(g.named("final"), Some(ids[3]));
        assert_eq!(g.named("nope"), None);
    }

    #[test]
    fn graph_round_trips_through_json() {
        let (g, _) = two_stage();
        let text = serde_json::to_string(&g).expect("graph serializes");
        let back: Graph = serde_json::from_str(&text).expect("graph deserializes");
        assert_eq!(back, g);
    }
}
