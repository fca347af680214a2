//! Instruction `--flags`, parsed once per instruction, following BuildKit's `instructions/bflag.go`.
//!
//! Each instruction declares the flags it accepts (boolean, single string, or repeatable string);
//! [`FlagSet::parse`] then walks the node's verbatim `--name=value` words. The rules are BuildKit's:
//! a bare `--` ends the flags; an unknown name, a repeated non-repeatable flag, a string flag without
//! `=value`, a boolean given `--x=` or a value other than `true`/`false` (any case) are errors.
//! This module never expands variables: values are returned exactly as written.

use std::collections::BTreeMap;

/// The kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--name`, `--name=true` or `--name=false`.
    Bool,
    /// `--name=value`, at most once.
    String,
    /// `--name=value`, any number of times.
    Strings,
}

/// What went wrong while reading the flags of one instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// A word in the flag list does not start with `--`.
    #[error("arg should start with -- : {0}")]
    NotAFlag(String),
    /// The instruction does not accept this flag.
    #[error("unknown flag: {0}")]
    Unknown(String),
    /// A flag that may appear once was given twice.
    #[error("duplicate flag specified: {0}")]
    Duplicate(String),
    /// A string flag without `=value`, or a boolean written `--name=`.
    #[error("missing a value on flag: {0}")]
    MissingValue(String),
    /// A boolean flag whose value is neither `true` nor `false`.
    #[error("expecting boolean value for flag {name}, not: {value}")]
    NotBool {
        /// The flag name.
        name: String,
        /// The value that was given.
        value: String,
    },
}

/// The declared flags of one instruction and, after [`FlagSet::parse`], their values.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    declared: BTreeMap<&'static str, FlagKind>,
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
}

impl FlagSet {
    /// An empty set: any flag given is unknown.
    pub fn new() -> Self {
        FlagSet::default()
    }

    /// Declare a flag named `name` (without the dashes).
    pub fn declare(mut self, name: &'static str, kind: FlagKind) -> Self {
        self.declared.insert(name, kind);
        self
    }

    /// Read `words` (verbatim `--name=value` items) against the declared flags.
    pub fn parse(mut self, words: &[String]) -> Result<Self, FlagError> {
        for word in words {
            let Some(body) = word.strip_prefix("--") else {
                return Err(FlagError::NotAFlag(word.clone()));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some((&key, &kind)) = self.declared.get_key_value(name) else {
                return Err(FlagError::Unknown(name.to_string()));
            };
            let seen = self.bools.contains_key(key) || self.strings.contains_key(key);
            if seen && kind != FlagKind::Strings {
                return Err(FlagError::Duplicate(name.to_string()));
            }
            match kind {
                FlagKind::Bool => {
                    let v = match value.map(str::to_ascii_lowercase).as_deref() {
                        None => true,
                        Some("") => return Err(FlagError::MissingValue(name.to_string())),
                        Some("true") => true,
                        Some("false") => false,
                        Some(_) => {
                            return Err(FlagError::NotBool {
                                name: name.to_string(),
                                value: value.unwrap_or_default().to_string(),
                            })
                        }
                    };
                    self.bools.insert(key, v);
                }
                FlagKind::String => {
                    let v = value.ok_or_else(|| FlagError::MissingValue(name.to_string()))?;
                    self.strings.insert(key, v.to_string());
                }
                FlagKind::Strings => {
                    let v = value.ok_or_else(|| FlagError::MissingValue(name.to_string()))?;
                    self.lists.entry(key).or_default().push(v.to_string());
                }
            }
        }
        Ok(self)
    }

    /// The value of a boolean flag; false when it was not given.
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    /// The value of a string flag, if it was given.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.strings.get(name).map(String::as_str)
    }

    /// Every value of a repeatable flag, in order.
    pub fn strings(&self, name: &str) -> &[String] {
        self.lists.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> FlagSet {
        FlagSet::new()
            .declare("link", FlagKind::Bool)
            .declare("from", FlagKind::String)
            .declare("exclude", FlagKind::Strings)
    }

    fn parse(words: &[&str]) -> Result<FlagSet, FlagError> {
        set().parse(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn values_by_kind() {
        let f = parse(&["--link", "--from=build", "--exclude=a", "--exclude=b"]).expect("valid");
        assert!(f.bool("link"));
        assert_eq!(f.string("from"), Some("build"));
        assert_eq!(f.strings("exclude"), ["a", "b"]);
        let f = parse(&["--link=FALSE"]).expect("valid");
        assert!(!f.bool("link"));
        assert_eq!(f.string("from"), None);
        let f = parse(&["--", "--bogus"]).expect("double dash ends flags");
        assert!(!f.bool("link"));
    }

    #[test]
    fn errors_follow_bflag() {
        let cases: &[(&[&str], FlagError)] = &[
            (&["--bogus"], FlagError::Unknown("bogus".into())),
            (
                &["--from=a", "--from=b"],
                FlagError::Duplicate("from".into()),
            ),
            (&["--link", "--link"], FlagError::Duplicate("link".into())),
            (&["--from"], FlagError::MissingValue("from".into())),
            (&["--link="], FlagError::MissingValue("link".into())),
            (&["--exclude"], FlagError::MissingValue("exclude".into())),
            (&["-x"], FlagError::NotAFlag("-x".into())),
            (
                &["--link=yes"],
                FlagError::NotBool {
                    name: "link".into(),
                    value: "yes".into(),
                },
            ),
        ];
        for (words, want) in cases {
            assert_eq!(parse(words).err().as_ref(), Some(want), "{words:?}");
        }
    }
}
