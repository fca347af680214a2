//! `FROM [--platform=P] image [AS name]`, as BuildKit's `parseFrom`: one or three arguments,
//! the middle one `AS` in any case, the stage name lower-cased and checked against
//! `^[a-z][a-z0-9-_.]*$`. The image and platform stay unexpanded: lowering expands them with
//! the global (meta) ARGs only.

use super::{FlagKind, FlagSet, InstructionError, InstructionErrorKind, Request};

/// A `FROM` line: the start of a build stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: an image reference, `scratch`, or an earlier stage's name (unexpanded).
    pub image: String,
    /// The stage name given with `AS`, lower-cased.
    pub name: Option<String>,
    /// The `--platform` value, unexpanded.
    pub platform: Option<String>,
}

pub(crate) fn parse(req: &Request<'_>) -> Result<From, InstructionError> {
    let flags = req.flags(FlagSet::new().declare("platform", FlagKind::String))?;
    let args = &req.node.args;
    let name = match args.as_slice() {
        [_] => None,
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            if !is_valid_stage_name(&lower) {
                return Err(req.error(InstructionErrorKind::InvalidStageName(name.clone())));
            }
            Some(lower)
        }
        _ => return Err(req.error(InstructionErrorKind::FromArguments)),
    };
    Ok(From {
        image: args[0].clone(),
        name,
        platform: flags.string("platform").map(str::to_string),
    })
}

/// True for names BuildKit accepts after `AS`: a letter, then letters, digits, `-`, `_`, `.`.
pub(crate) fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{kind, node};
    use super::super::{parse, Instruction};
    use super::*;

    fn from(flags: &[&str], args: &[&str]) -> From {
        match parse(&node("from", flags, args))
            .expect("valid")
            .instruction
        {
            Instruction::From(f) => f,
            other => panic!("not FROM: {other:?}"),
        }
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            from(&[], &["alpine"]),
            From {
                image: "alpine".into(),
                name: None,
                platform: None
            }
        );
        assert_eq!(
            from(
                &["--platform=$BUILDPLATFORM"],
                &["golang:1.22", "As", "Build"]
            ),
            From {
                image: "golang:1.22".into(),
                name: Some("build".into()),
                platform: Some("$BUILDPLATFORM".into())
            }
        );
    }

    #[test]
    fn from_errors() {
        let cases = [
            (node("from", &[], &[]), InstructionErrorKind::FromArguments),
            (
                node("from", &[], &["a", "b"]),
                InstructionErrorKind::FromArguments,
            ),
            (
                node("from", &[], &["a", "is", "b"]),
                InstructionErrorKind::FromArguments,
            ),
            (
                node("from", &[], &["a", "as", "1st"]),
                InstructionErrorKind::InvalidStageName("1st".into()),
            ),
            (
                node("from", &[], &["a", "as", "x$y"]),
                InstructionErrorKind::InvalidStageName("x$y".into()),
            ),
        ];
        for (n, want) in cases {
            assert_eq!(kind(&n), want, "{:?}", n.args);
        }
    }

    #[test]
    fn stage_name_charset() {
        for (name, ok) in [
            ("a", true),
            ("a-b_c.d9", true),
            ("9a", false),
            ("-a", false),
            ("", false),
            ("a/b", false),
        ] {
            assert_eq!(is_valid_stage_name(name), ok, "{name}");
        }
    }
}
