//! `ONBUILD <instruction>`: a trigger stored in the image config and run when the image is
//! used as a base, as BuildKit's `parseOnBuild`. The trigger text is kept raw (it is stored
//! verbatim in the config and parsed again by the child build); it is also parsed here so
//! errors show up early. `ONBUILD ONBUILD`, `ONBUILD FROM` and `ONBUILD MAINTAINER` are refused.

use super::{Command, InstructionError, InstructionErrorKind, Request};

/// A typed ONBUILD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger's source text, `ONBUILD` removed (what goes into the image config).
    pub expression: String,
    /// The trigger, parsed.
    pub trigger: Box<Command>,
}

impl Onbuild {
    /// Parse a trigger stored in a base image's config (`RUN make`, …) into a command, as
    /// BuildKit does when a stage starts from an image with ONBUILD triggers. The text must hold
    /// exactly one instruction, and not one ONBUILD refuses.
    pub fn parse_trigger(expression: &str) -> crate::error::Result<Command> {
        let df = crate::parser::parse(expression)?;
        let [node] = df.nodes.as_slice() else {
            let location = df.nodes.get(1).map(|n| n.location).unwrap_or_default();
            return Err(InstructionError {
                instruction: "ONBUILD".to_string(),
                location,
                kind: InstructionErrorKind::OnbuildNotSingle(expression.to_string()),
            }
            .into());
        };
        match node.keyword.to_ascii_lowercase().as_str() {
            "onbuild" | "from" | "maintainer" => Err(InstructionError {
                instruction: "ONBUILD".to_string(),
                location: node.location,
                kind: InstructionErrorKind::OnbuildTrigger(node.keyword.to_ascii_uppercase()),
            }
            .into()),
            _ => Ok(super::parse(node)?),
        }
    }
}

pub(crate) fn parse(req: &Request<'_>) -> Result<Onbuild, InstructionError> {
    req.no_flags()?;
    let Some(next) = req.node.next.as_deref() else {
        return Err(req.error(InstructionErrorKind::OnbuildMissing));
    };
    match next.keyword.to_ascii_lowercase().as_str() {
        "onbuild" => return Err(req.error(InstructionErrorKind::OnbuildChain)),
        "from" | "maintainer" => {
            return Err(req.error(InstructionErrorKind::OnbuildTrigger(
                next.keyword.to_ascii_uppercase(),
            )))
        }
        _ => {}
    }
    let trigger = super::parse(next)?;
    Ok(Onbuild {
        expression: strip_onbuild(&req.node.original),
        trigger: Box::new(trigger),
    })
}

/// The text after the leading `ONBUILD` keyword (any case) and the blanks after it.
fn strip_onbuild(original: &str) -> String {
    let text = original.trim_start();
    let rest = match text.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => &text[7..],
        _ => text,
    };
    rest.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{kind, node};
    use super::super::{parse as parse_node, Instruction, ShellOrExec};
    use super::*;

    fn onbuild(inner: crate::ast::Node) -> crate::ast::Node {
        let mut n = node("onbuild", &[], &[]);
        n.original = format!("ONBUILD {}", inner.original);
        n.next = Some(Box::new(inner));
        n
    }

    #[test]
    fn onbuild_keeps_raw_trigger() {
        let c = parse_node(&onbuild(node("run", &[], &["echo $HOME"]))).expect("valid");
        let Instruction::Onbuild(o) = c.instruction else {
            panic!("not ONBUILD")
        };
        assert_eq!(o.expression, "RUN echo $HOME");
        assert_eq!(
            o.trigger.instruction,
            Instruction::Run(crate::instructions::Run {
                command: ShellOrExec::Shell("echo $HOME".into()),
                mounts: vec![],
                network: Default::default(),
                security: Default::default(),
                heredocs: vec![],
            })
        );
    }

    #[test]
    fn stored_triggers_parse_back() {
        let c = Onbuild::parse_trigger("COPY --from=build /a /b").expect("valid");
        assert_eq!(c.keyword(), "COPY");
        for bad in ["RUN a\nRUN b", "FROM x"] {
            assert!(Onbuild::parse_trigger(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn onbuild_refuses_some_triggers() {
        assert_eq!(
            kind(&node("onbuild", &[], &[])),
            InstructionErrorKind::OnbuildMissing
        );
        assert_eq!(
            kind(&onbuild(node("onbuild", &[], &["x"]))),
            InstructionErrorKind::OnbuildChain
        );
        assert_eq!(
            kind(&onbuild(node("from", &[], &["x"]))),
            InstructionErrorKind::OnbuildTrigger("FROM".into())
        );
        assert_eq!(
            kind(&onbuild(node("maintainer", &[], &["x"]))),
            InstructionErrorKind::OnbuildTrigger("MAINTAINER".into())
        );
    }
}
