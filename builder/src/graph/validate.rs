//! Structural checks on a [`Graph`]: every referenced step exists, parents are where they must
//! be, and there is no cycle (Kahn's algorithm, ties broken by id so the order is deterministic).
//!
//! A graph built only through [`Graph::add`] from existing ids is acyclic by construction, but
//! graphs also arrive deserialized from other front-ends, so the scheduler validates before it
//! runs anything. Errors name the steps involved; callers map ids to [`super::Origin`]s.

use std::collections::{BTreeMap, BTreeSet};

use super::{Graph, Op, StepId};

/// Why a graph is not runnable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// A step reads a step that is not in the graph.
    #[error("step {step} reads step {input}, which is not in the graph")]
    MissingInput {
        /// The reading step.
        step: StepId,
        /// The missing input.
        input: StepId,
    },
    /// A requested step is not in the graph.
    #[error("step {0} is not in the graph")]
    UnknownStep(StepId),
    /// A source step has a parent.
    #[error("source step {0} must not have a parent")]
    SourceWithParent(StepId),
    /// A non-source step has no parent filesystem.
    #[error("step {step} ({kind}) has no parent step")]
    MissingParent {
        /// The step.
        step: StepId,
        /// Its op kind.
        kind: &'static str,
    },
    /// The steps listed (sorted) are on or behind a cycle.
    #[error("steps {} form a cycle", list(.0))]
    Cycle(Vec<StepId>),
}

fn list(ids: &[StepId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn validate(g: &Graph) -> Result<(), GraphError> {
    for (id, step) in g.iter() {
        match (&step.op, step.parent) {
            (Op::Source(_), Some(_)) => return Err(GraphError::SourceWithParent(id)),
            (Op::Source(_), None) => {}
            (op, None) => {
                return Err(GraphError::MissingParent {
                    step: id,
                    kind: op.kind(),
                })
            }
            (_, Some(_)) => {}
        }
    }
    topo_order(g).map(|_| ())
}

pub(super) fn topo_order(g: &Graph) -> Result<Vec<StepId>, GraphError> {
    let mut pending: BTreeMap<StepId, usize> = BTreeMap::new();
    let mut users: BTreeMap<StepId, Vec<StepId>> = BTreeMap::new();
    for (id, step) in g.iter() {
        // A step reading the same input twice waits for it once.
        let inputs: BTreeSet<StepId> = step.inputs().into_iter().collect();
        for input in &inputs {
            if !g.contains(*input) {
                return Err(GraphError::MissingInput {
                    step: id,
                    input: *input,
                });
            }
            users.entry(*input).or_default().push(id);
        }
        pending.insert(id, inputs.len());
    }
    let mut ready: BTreeSet<StepId> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut order = Vec::with_capacity(g.len());
    while let Some(id) = ready.pop_first() {
        order.push(id);
        for user in users.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
            let n = pending.get_mut(user).expect("every user was counted above");
            *n -= 1;
            if *n == 0 {
                ready.insert(*user);
            }
        }
    }
    if order.len() != g.len() {
        let done: BTreeSet<StepId> = order.into_iter().collect();
        let stuck = g
            .iter()
            .map(|(id, _)| id)
            .filter(|id| !done.contains(id))
            .collect();
        return Err(GraphError::Cycle(stuck));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{copy_from, env_on, scratch};
    use super::*;

    #[test]
    fn validation_table() {
        type Build = fn() -> Graph;
        let cases: Vec<(&str, Build, Result<(), GraphError>)> = vec![
            ("empty graph", Graph::new, Ok(())),
            (
                "chain",
                || {
                    let mut g = Graph::new();
                    let a = g.add(scratch());
                    g.add(env_on(a));
                    g
                },
                Ok(()),
            ),
            (
                "missing parent step",
                || {
                    let mut g = Graph::new();
                    g.add(env_on(StepId(7)));
                    g
                },
                Err(GraphError::MissingInput {
                    step: StepId(0),
                    input: StepId(7),
                }),
            ),
            (
                "missing copy source step",
                || {
                    let mut g = Graph::new();
                    let a = g.add(scratch());
                    g.add(copy_from(a, StepId(9)));
                    g
                },
                Err(GraphError::MissingInput {
                    step: StepId(1),
                    input: StepId(9),
                }),
            ),
            (
                "source with parent",
                || {
                    let mut g = Graph::new();
                    let a = g.add(scratch());
                    let mut s = scratch();
                    s.parent = Some(a);
                    g.add(s);
                    g
                },
                Err(GraphError::SourceWithParent(StepId(1))),
            ),
            (
                "config without parent",
                || {
                    let mut g = Graph::new();
                    let mut s = env_on(StepId(0));
                    s.parent = None;
                    g.add(s);
                    g
                },
                Err(GraphError::MissingParent {
                    step: StepId(0),
                    kind: "config",
                }),
            ),
            (
                "two-step cycle behind a good step",
                || {
                    let mut g = Graph::new();
                    let a = g.add(scratch());
                    // 1 reads 2 (forward reference), 2 reads 1.
                    g.add(copy_from(a, StepId(2)));
                    g.add(env_on(StepId(1)));
                    g
                },
                Err(GraphError::Cycle(vec![StepId(1), StepId(2)])),
            ),
        ];
        for (name, build, want) in cases {
            assert_eq!(build().validate(), want, "{name}");
        }
    }

    #[test]
    fn topo_order_puts_inputs_first_and_is_deterministic() {
        let mut g = Graph::new();
        let a = g.add(scratch());
        let b = g.add(scratch());
        // 2 copies from 3 (added later), so 3 must come before 2.
        let c = g.add(copy_from(a, StepId(3)));
        let d = g.add(env_on(b));
        assert_eq!(d, StepId(3));
        let order = g.topo_order().expect("acyclic");
        assert_eq!(order, vec![a, b, d, c]);
    }

    #[test]
    fn cycle_message_lists_steps() {
        let e = GraphError::Cycle(vec![StepId(1), StepId(2)]);
        assert_eq!(e.to_string(), "steps #1, #2 form a cycle");
    }
}
