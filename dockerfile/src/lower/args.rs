//! ARG scoping, as BuildKit's `buildMetaArgs` and `dispatchArg`.
//!
//! Meta ARGs are the predefined platform ARGs followed by the ARGs declared before the first
//! FROM. A `--build-arg` replaces a meta ARG's value (unexpanded); otherwise a default is
//! expanded with the meta ARGs declared before it. In FROM lines every meta ARG is set (one
//! without a value expands to the empty string); inside a stage a meta ARG is visible only
//! after a bare `ARG NAME`, which takes the meta value.

use std::collections::BTreeMap;

use super::LowerError;
use crate::instructions::{Arg, Command};
use crate::shell::Lexer;
use crate::span::Location;

/// Build-arg names usable without an ARG declaration: proxy settings, passed to RUN only.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A meta ARG (platform ARG or ARG before the first FROM) and its final value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArg {
    /// The name.
    pub name: String,
    /// The value after build-arg override and expansion; `None` for a bare ARG with no build arg.
    pub value: Option<String>,
    /// Where it was declared; `None` for the predefined platform ARGs.
    pub location: Option<Location>,
}

/// What every stage of a plan shares for expansion: the lexer escape, meta ARGs, build args.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub escape: char,
    pub meta_args: Vec<MetaArg>,
    pub build_args: BTreeMap<String, String>,
}

impl Scope {
    /// The value a bare `ARG name` inherits: the last meta ARG of that name, if any.
    pub fn meta_value(&self, name: &str) -> Option<Option<&str>> {
        self.meta_args
            .iter()
            .rev()
            .find(|m| m.name == name)
            .map(|m| m.value.as_deref())
    }
}

/// The environment FROM lines are expanded with: every meta ARG, later ones winning.
pub(crate) fn meta_env(meta: &[MetaArg]) -> BTreeMap<String, String> {
    meta.iter()
        .map(|m| (m.name.clone(), m.value.clone().unwrap_or_default()))
        .collect()
}

/// Resolve the meta ARGs: platform ARGs (overridable by build args), then the global ARGs.
pub(crate) fn resolve_meta_args(
    platform: Vec<(String, String)>,
    globals: &[(&Command, &Arg)],
    build_args: &BTreeMap<String, String>,
    lexer: &Lexer,
) -> Result<Vec<MetaArg>, LowerError> {
    let mut meta: Vec<MetaArg> = platform
        .into_iter()
        .map(|(name, value)| MetaArg {
            value: Some(build_args.get(&name).cloned().unwrap_or(value)),
            name,
            location: None,
        })
        .collect();
    for (cmd, arg) in globals {
        for decl in &arg.args {
            let value = match (build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    let env = meta_env(&meta);
                    let exp =
                        lexer
                            .process_word(default, &env)
                            .map_err(|e| LowerError::Expand {
                                instruction: "ARG",
                                word: default.clone(),
                                message: e.message.clone(),
                                location: cmd.location,
                            })?;
                    Some(exp.value)
                }
                (None, None) => None,
            };
            meta.push(MetaArg {
                name: decl.name.clone(),
                value,
                location: Some(cmd.location),
            });
        }
    }
    Ok(meta)
}

/// An ordered environment where setting an existing name replaces it in place (LLB's
/// `AddEnv`), with lookups for expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderedEnv(pub Vec<(String, String)>);

impl OrderedEnv {
    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl crate::shell::Env for OrderedEnv {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_env_replaces_in_place() {
        let mut env = OrderedEnv::default();
        env.set("A", "1");
        env.set("B", "2");
        env.set("A", "3");
        assert_eq!(
            env.0,
            vec![("A".into(), "3".into()), ("B".into(), "2".into())]
        );
        assert_eq!(env.get("B"), Some("2"));
        assert_eq!(env.get("C"), None);
    }

    #[test]
    fn meta_env_sets_bare_args_to_empty() {
        let meta = vec![
            MetaArg {
                name: "A".into(),
                value: None,
                location: None,
            },
            MetaArg {
                name: "B".into(),
                value: Some("1".into()),
                location: None,
            },
            MetaArg {
                name: "B".into(),
                value: Some("2".into()),
                location: None,
            },
        ];
        let env = meta_env(&meta);
        assert_eq!(env.get("A").map(String::as_str), Some(""));
        assert_eq!(env.get("B").map(String::as_str), Some("2"));
    }
}
