//! `COPY` and `ADD`, as BuildKit's `parseCopy`/`parseAdd`: flags, then sources and a
//! destination (the last word). A source written as a heredoc marker (`<<EOF`) becomes the
//! heredoc's content. `--chown`, ADD's `--checksum` and the paths are expanded later, at
//! dispatch, with the stage's environment; `--from`, `--chmod`, `--exclude`, `--link` and
//! `--parents` are never expanded (BuildKit's `Expand` methods leave them alone), so `--chmod`
//! is checked here.

use super::{FlagKind, FlagSet, InstructionError, InstructionErrorKind, Request};
use crate::ast::Heredoc;

/// One COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A path (or glob, or for ADD a URL / git ref) in the source, unexpanded.
    Path(String),
    /// An inline file from a heredoc (`COPY <<EOF /dest`).
    Heredoc(Heredoc),
}

/// The `--chown=user[:group]` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chown {
    /// User name or numeric id.
    pub user: String,
    /// Group name or numeric id, when given.
    pub group: Option<String>,
}

impl Chown {
    /// Split `user[:group]`; the user must not be empty.
    pub fn parse(text: &str) -> Result<Chown, InstructionErrorKind> {
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g.to_string())),
            None => (text, None),
        };
        if user.is_empty() {
            return Err(InstructionErrorKind::InvalidChown(text.to_string()));
        }
        Ok(Chown {
            user: user.to_string(),
            group,
        })
    }

    /// The value as written: `user` or `user:group`.
    pub fn to_text(&self) -> String {
        match &self.group {
            Some(g) => format!("{}:{g}", self.user),
            None => self.user.clone(),
        }
    }
}

/// The `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An octal mode such as `0755` (at most `07777`).
    Octal(u32),
    /// A symbolic mode such as `u+x,go-w` (BuildKit's non-octal chmod).
    Symbolic(String),
}

impl Chmod {
    /// Parse a `--chmod` value (never expanded).
    pub fn parse(text: &str) -> Result<Chmod, InstructionErrorKind> {
        let invalid = || InstructionErrorKind::InvalidChmod(text.to_string());
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(text, 8) {
                Ok(m) if m <= 0o7777 => Ok(Chmod::Octal(m)),
                _ => Err(invalid()),
            };
        }
        if is_symbolic_mode(text) {
            Ok(Chmod::Symbolic(text.to_string()))
        } else {
            Err(invalid())
        }
    }

    /// The value as written.
    pub fn to_text(&self) -> String {
        match self {
            Chmod::Octal(m) => format!("{m:o}"),
            Chmod::Symbolic(s) => s.clone(),
        }
    }
}

/// `[ugoa]*([-+=]([rwxXst]*|[ugo]))+` clauses separated by commas (chmod(1) symbolic modes).
fn is_symbolic_mode(text: &str) -> bool {
    !text.is_empty()
        && text.split(',').all(|clause| {
            let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
            if rest.is_empty() {
                return false;
            }
            let mut chars = rest.chars().peekable();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return false;
                }
                while let Some(&c) = chars.peek() {
                    if matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't' | 'u' | 'g' | 'o') {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            true
        })
}

/// `COPY`: copy files from the context, a stage or an image into the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// What to copy, in order.
    pub sources: Vec<CopySource>,
    /// Where to copy to (unexpanded; relative paths are relative to WORKDIR).
    pub dest: String,
    /// `--from`: a stage name, a stage index, or an image reference (never expanded).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<Chown>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--link`: copy into an independent layer.
    pub link: bool,
    /// `--parents`: keep the source's parent directories.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `ADD`: like COPY, plus URLs, git repositories and local tar extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// What to add, in order.
    pub sources: Vec<CopySource>,
    /// Where to add to (unexpanded).
    pub dest: String,
    /// `--chown`.
    pub chown: Option<Chown>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--checksum`: the expected digest of a remote source (unexpanded).
    pub checksum: Option<String>,
    /// `--keep-git-dir`: keep `.git` when adding a git repository.
    pub keep_git_dir: bool,
    /// `--unpack`: force (true) or prevent (false) archive extraction; default by source kind.
    pub unpack: Option<bool>,
}

struct Common {
    sources: Vec<CopySource>,
    dest: String,
    chown: Option<Chown>,
    chmod: Option<Chmod>,
    link: bool,
    exclude: Vec<String>,
}

fn common(req: &Request<'_>, flags: &FlagSet) -> Result<Common, InstructionError> {
    let args = &req.node.args;
    let Some((dest, sources)) = args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(req.error(InstructionErrorKind::NoDestination(req.keyword)));
    };
    let heredocs = req.heredocs();
    let sources = sources
        .iter()
        .map(
            |s| match heredoc_marker(s).and_then(|n| heredocs.iter().find(|h| h.name == n)) {
                Some(h) => CopySource::Heredoc(h.clone()),
                None => CopySource::Path(s.clone()),
            },
        )
        .collect();
    let chown = flags
        .string("chown")
        .filter(|s| !s.is_empty())
        .map(Chown::parse)
        .transpose()
        .map_err(|k| req.error(k))?;
    let chmod = flags
        .string("chmod")
        .filter(|s| !s.is_empty())
        .map(Chmod::parse)
        .transpose()
        .map_err(|k| req.error(k))?;
    Ok(Common {
        sources,
        dest: dest.clone(),
        chown,
        chmod,
        link: flags.bool("link"),
        exclude: flags.strings("exclude").to_vec(),
    })
}

/// The heredoc name a word like `<<EOF`, `<<-"EOF"` or `3<<EOF` refers to.
fn heredoc_marker(word: &str) -> Option<String> {
    let rest = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    (!name.is_empty()).then_some(name)
}

pub(crate) fn parse_copy(req: &Request<'_>) -> Result<Copy, InstructionError> {
    let flags = req.flags(
        FlagSet::new()
            .declare("from", FlagKind::String)
            .declare("chown", FlagKind::String)
            .declare("chmod", FlagKind::String)
            .declare("link", FlagKind::Bool)
            .declare("parents", FlagKind::Bool)
            .declare("exclude", FlagKind::Strings),
    )?;
    let c = common(req, &flags)?;
    Ok(Copy {
        sources: c.sources,
        dest: c.dest,
        from: flags
            .string("from")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        chown: c.chown,
        chmod: c.chmod,
        link: c.link,
        parents: flags.bool("parents"),
        exclude: c.exclude,
    })
}

pub(crate) fn parse_add(req: &Request<'_>) -> Result<Add, InstructionError> {
    let flags = req.flags(
        FlagSet::new()
            .declare("chown", FlagKind::String)
            .declare("chmod", FlagKind::String)
            .declare("link", FlagKind::Bool)
            .declare("exclude", FlagKind::Strings)
            .declare("checksum", FlagKind::String)
            .declare("keep-git-dir", FlagKind::Bool)
            .declare("unpack", FlagKind::Bool),
    )?;
    let c = common(req, &flags)?;
    let unpack = req
        .node
        .flags
        .iter()
        .any(|f| f == "--unpack" || f.starts_with("--unpack="))
        .then(|| flags.bool("unpack"));
    Ok(Add {
        sources: c.sources,
        dest: c.dest,
        chown: c.chown,
        chmod: c.chmod,
        link: c.link,
        exclude: c.exclude,
        checksum: flags
            .string("checksum")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{kind, node};
    use super::super::{parse, FlagError, Instruction};
    use super::*;

    fn copy(flags: &[&str], args: &[&str]) -> Copy {
        match parse(&node("copy", flags, args))
            .expect("valid")
            .instruction
        {
            Instruction::Copy(c) => c,
            other => panic!("not COPY: {other:?}"),
        }
    }

    #[test]
    fn copy_flags_are_typed() {
        let c = copy(
            &[
                "--from=build",
                "--chown=app:staff",
                "--chmod=0640",
                "--link",
                "--parents",
                "--exclude=*.md",
            ],
            &["a", "b/", "/dst/"],
        );
        assert_eq!(
            c.sources,
            vec![CopySource::Path("a".into()), CopySource::Path("b/".into())]
        );
        assert_eq!(c.dest, "/dst/");
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(
            c.chown,
            Some(Chown {
                user: "app".into(),
                group: Some("staff".into())
            })
        );
        assert_eq!(c.chmod, Some(Chmod::Octal(0o640)));
        assert!(c.link && c.parents);
        assert_eq!(c.exclude, ["*.md"]);
        assert_eq!(
            kind(&node("copy", &["--chmod=${MODE}"], &["a", "b"])),
            InstructionErrorKind::InvalidChmod("${MODE}".into()),
            "--chmod is never expanded"
        );
    }

    #[test]
    fn copy_needs_a_destination() {
        assert_eq!(
            kind(&node("copy", &[], &["a"])),
            InstructionErrorKind::NoDestination("COPY")
        );
        assert_eq!(
            kind(&node("add", &[], &[])),
            InstructionErrorKind::NoDestination("ADD")
        );
    }

    #[test]
    fn copy_rejects_add_only_flags() {
        assert_eq!(
            kind(&node("copy", &["--checksum=sha256:x"], &["a", "b"])),
            InstructionErrorKind::Flag {
                instruction: "COPY",
                source: FlagError::Unknown("checksum".into())
            }
        );
        assert_eq!(
            kind(&node("add", &["--from=x"], &["a", "b"])),
            InstructionErrorKind::Flag {
                instruction: "ADD",
                source: FlagError::Unknown("from".into())
            }
        );
    }

    #[test]
    fn add_flags_are_typed() {
        let n = node(
            "add",
            &[
                "--checksum=sha256:abc",
                "--keep-git-dir=true",
                "--unpack=false",
            ],
            &["https://x/y.tgz", "/y"],
        );
        let Instruction::Add(a) = parse(&n).expect("valid").instruction else {
            panic!("not ADD")
        };
        assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
        assert!(a.keep_git_dir);
        assert_eq!(a.unpack, Some(false));
        let n = node("add", &[], &["a", "/y"]);
        let Instruction::Add(a) = parse(&n).expect("valid").instruction else {
            panic!("not ADD")
        };
        assert_eq!(a.unpack, None);
    }

    #[test]
    fn heredoc_sources_become_content() {
        let mut n = node("copy", &[], &["<<EOF", "/etc/motd"]);
        let doc = Heredoc {
            name: "EOF".into(),
            content: "hi\n".into(),
            expand: true,
            chomp: false,
            file_descriptor: 0,
        };
        n.heredocs = vec![doc.clone()];
        let Instruction::Copy(c) = parse(&n).expect("valid").instruction else {
            panic!("not COPY")
        };
        assert_eq!(c.sources, vec![CopySource::Heredoc(doc)]);
    }

    #[test]
    fn chmod_forms() {
        let cases = [
            ("755", Ok(Chmod::Octal(0o755))),
            ("0644", Ok(Chmod::Octal(0o644))),
            ("u+x", Ok(Chmod::Symbolic("u+x".into()))),
            ("u=rwx,go=rx", Ok(Chmod::Symbolic("u=rwx,go=rx".into()))),
            ("+x", Ok(Chmod::Symbolic("+x".into()))),
            ("999", Err(InstructionErrorKind::InvalidChmod("999".into()))),
            (
                "17777",
                Err(InstructionErrorKind::InvalidChmod("17777".into())),
            ),
            ("u", Err(InstructionErrorKind::InvalidChmod("u".into()))),
            ("rwx", Err(InstructionErrorKind::InvalidChmod("rwx".into()))),
        ];
        for (text, want) in cases {
            assert_eq!(Chmod::parse(text), want, "{text}");
        }
    }

    #[test]
    fn chown_forms() {
        assert_eq!(Chown::parse("1000").map(|c| c.to_text()), Ok("1000".into()));
        assert_eq!(Chown::parse("a:b").map(|c| c.to_text()), Ok("a:b".into()));
        assert_eq!(
            Chown::parse(":b"),
            Err(InstructionErrorKind::InvalidChown(":b".into()))
        );
    }
}
