//! Variable lookup for word expansion.
//!
//! Expansion never reads the process environment: the caller hands in the variables in scope (build
//! args, `ENV` values, platform args) through the [`Env`] trait. This mirrors BuildKit's
//! `shell.EnvGetter`, where a list of `KEY=value` entries is turned into a map in which a later entry
//! for the same key replaces an earlier one.
//!
//! Deviation: names are always compared case-sensitively. BuildKit folds case when the build runs on
//! Windows (`NormalizeEnvKey`); rbuild only builds on Linux.

use std::collections::BTreeMap;

/// Variable lookup used by expansion. Later entries win in slice impls.
pub trait Env {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        // Last occurrence wins, as in BuildKit's EnvsFromSlice.
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    macro_rules! lookup {
        ($name:ident, $env:expr, $key:expr, $want:expr) => {
            #[test]
            fn $name() {
                let env = pairs($env);
                let want: Option<&str> = $want;
                assert_eq!(env.lookup($key), want, "vec");
                assert_eq!(env.as_slice().lookup($key), want, "slice");
                let map: BTreeMap<String, String> = env.iter().cloned().collect();
                assert_eq!(map.lookup($key), want, "map (later entries overwrite)");
            }
        };
    }

    lookup!(unset_is_none, &[], "foo", None);
    lookup!(empty_is_set, &[("foo", "")], "foo", Some(""));
    lookup!(value_found, &[("foo", "bar")], "foo", Some("bar"));
    lookup!(
        other_key_found,
        &[("foo", "bar"), ("car", "hat")],
        "car",
        Some("hat")
    );
    lookup!(
        last_duplicate_wins,
        &[("foo", "bar"), ("car", "hat"), ("car", "bike")],
        "car",
        Some("bike")
    );
    lookup!(case_sensitive, &[("FOO", "bar")], "foo", None);
}
