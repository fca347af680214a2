//! Instructions that only change the image configuration or the variable scope: ENV, LABEL,
//! ARG and SHELL (the one-word ones — USER, WORKDIR, STOPSIGNAL, MAINTAINER, EXPOSE, VOLUME —
//! are checked in `mod.rs`). Shapes follow BuildKit's `parseEnv`, `parseLabel`, `parseArg`,
//! `parseShell`: ENV/LABEL arrive from the parser as `name, value, separator` triples; ARG as
//! one word per declaration, `name` or `name=default`; SHELL only in JSON form.

use super::{InstructionError, InstructionErrorKind, Request};

/// One `name=value` pair of ENV or LABEL, unexpanded (quotes still in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The name as written.
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// One declaration of an ARG line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The variable name.
    pub name: String,
    /// The default after `=`, unexpanded; `None` for a bare `ARG NAME`.
    pub default: Option<String>,
}

/// `ARG a b=1 …`: several declarations per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The declarations in order.
    pub args: Vec<ArgDecl>,
}

pub(crate) fn parse_key_values(req: &Request<'_>) -> Result<Vec<KeyValue>, InstructionError> {
    req.no_flags()?;
    req.at_least_one()?;
    let mut out = Vec::new();
    for triple in req.node.args.chunks(3) {
        let [key, value, ..] = triple else {
            return Err(req.error(InstructionErrorKind::AtLeastOneArgument(req.keyword)));
        };
        if key.is_empty() {
            return Err(req.error(InstructionErrorKind::BlankName(req.keyword)));
        }
        out.push(KeyValue {
            key: key.clone(),
            value: value.clone(),
        });
    }
    Ok(out)
}

pub(crate) fn parse_arg(req: &Request<'_>) -> Result<Arg, InstructionError> {
    req.no_flags()?;
    req.at_least_one()?;
    let mut args = Vec::new();
    for word in &req.node.args {
        let (name, default) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        if name.is_empty() {
            return Err(req.error(InstructionErrorKind::BlankName(req.keyword)));
        }
        args.push(ArgDecl {
            name: name.to_string(),
            default,
        });
    }
    Ok(Arg { args })
}

pub(crate) fn parse_shell(req: &Request<'_>) -> Result<Vec<String>, InstructionError> {
    req.no_flags()?;
    if !req.node.json {
        return Err(req.error(InstructionErrorKind::ShellNotJson));
    }
    req.at_least_one()?;
    Ok(req.node.args.clone())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{json_node, kind, node};
    use super::super::{parse, Instruction};
    use super::*;

    #[test]
    fn env_and_label_triples() {
        let c = parse(&node("env", &[], &["A", "1", "=", "B", "two words", ""])).expect("valid");
        assert_eq!(
            c.instruction,
            Instruction::Env(vec![
                KeyValue {
                    key: "A".into(),
                    value: "1".into()
                },
                KeyValue {
                    key: "B".into(),
                    value: "two words".into()
                },
            ])
        );
        let c = parse(&node("label", &[], &["a.b", "\"x y\"", "="])).expect("valid");
        assert_eq!(
            c.instruction,
            Instruction::Label(vec![KeyValue {
                key: "a.b".into(),
                value: "\"x y\"".into()
            }])
        );
        assert_eq!(
            kind(&node("env", &[], &[])),
            InstructionErrorKind::AtLeastOneArgument("ENV")
        );
        assert_eq!(
            kind(&node("label", &[], &["", "v", "="])),
            InstructionErrorKind::BlankName("LABEL")
        );
    }

    #[test]
    fn arg_declarations() {
        let c = parse(&node("arg", &[], &["A", "B=1", "C=\"x y\"", "D="])).expect("valid");
        let decl = |n: &str, d: Option<&str>| ArgDecl {
            name: n.into(),
            default: d.map(str::to_string),
        };
        assert_eq!(
            c.instruction,
            Instruction::Arg(Arg {
                args: vec![
                    decl("A", None),
                    decl("B", Some("1")),
                    decl("C", Some("\"x y\"")),
                    decl("D", Some(""))
                ]
            })
        );
        assert_eq!(
            kind(&node("arg", &[], &[])),
            InstructionErrorKind::AtLeastOneArgument("ARG")
        );
        assert_eq!(
            kind(&node("arg", &[], &["=1"])),
            InstructionErrorKind::BlankName("ARG")
        );
    }

    #[test]
    fn shell_needs_json() {
        let c = parse(&json_node("shell", &["/bin/bash", "-c"])).expect("valid");
        assert_eq!(
            c.instruction,
            Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
        );
        assert_eq!(
            kind(&node("shell", &[], &["/bin/bash -c"])),
            InstructionErrorKind::ShellNotJson
        );
    }
}
