//! The one module that reads the process environment (the libraries never do; clippy's
//! `disallowed-methods` enforces it). Everything read here is passed down explicitly:
//! the store root (`$RBUILD_ROOT`, `$XDG_DATA_HOME`, `$HOME`), `SOURCE_DATE_EPOCH`,
//! `--build-arg KEY` values, `--secret env=VAR` values, `$SSH_AUTH_SOCK` and the Docker
//! config file registry credentials live in (`$DOCKER_CONFIG`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Read one variable (`None` when unset).
#[allow(clippy::disallowed_methods)]
fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// One variable as text; unset or not UTF-8 is `None`.
pub fn var(name: &str) -> Option<String> {
    var_os(name).and_then(|v| v.into_string().ok())
}

/// The Docker config file registry logins are read from and written to, as the docker CLI
/// finds it: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config() -> Option<PathBuf> {
    let non_empty = |name: &str| var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    docker_config_from(non_empty("DOCKER_CONFIG"), non_empty("HOME"))
}

fn docker_config_from(docker_config: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    match (docker_config, home) {
        (Some(dir), _) => Some(dir.join("config.json")),
        (None, Some(home)) => Some(home.join(".docker").join("config.json")),
        (None, None) => None,
    }
}

/// The store root: `--root`, else `$RBUILD_ROOT`, else `$XDG_DATA_HOME/rbuild`, else
/// `~/.local/share/rbuild` (empty variables count as unset, as the XDG spec says).
pub fn store_root(flag: Option<&Path>) -> Result<PathBuf, String> {
    let non_empty = |name: &str| var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    store_root_from(
        flag,
        non_empty("RBUILD_ROOT"),
        non_empty("XDG_DATA_HOME"),
        non_empty("HOME"),
    )
}

fn store_root_from(
    flag: Option<&Path>,
    rbuild_root: Option<PathBuf>,
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(flag) = flag {
        return Ok(flag.to_path_buf());
    }
    if let Some(root) = rbuild_root {
        return Ok(root);
    }
    if let Some(data) = xdg_data_home {
        return Ok(data.join("rbuild"));
    }
    match home {
        Some(home) => Ok(home.join(".local/share/rbuild")),
        None => Err("cannot find a store root: set --root, $RBUILD_ROOT or $HOME".to_string()),
    }
}

/// `SOURCE_DATE_EPOCH` as seconds, if set and non-empty; anything but an integer is an error
/// quoting the value.
pub fn source_date_epoch() -> Result<Option<i64>, String> {
    parse_epoch(var("SOURCE_DATE_EPOCH").as_deref())
}

fn parse_epoch(value: Option<&str>) -> Result<Option<i64>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("invalid SOURCE_DATE_EPOCH '{v}': expected seconds since 1970")),
    }
}

/// `$SSH_AUTH_SOCK`, if set and non-empty.
pub fn ssh_auth_sock() -> Option<PathBuf> {
    var_os("SSH_AUTH_SOCK")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether a variable is set at all (even empty).
pub fn is_set(name: &str) -> bool {
    var_os(name).is_some()
}

/// `--build-arg` values: `KEY=VALUE` pairs, and a bare `KEY` taking its value from the
/// environment, as `docker build` does (dropped when unset).
pub fn build_args(raw: &[String]) -> BTreeMap<String, String> {
    build_args_with(raw, var)
}

fn build_args_with(
    raw: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in raw {
        match item.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Some(v) = lookup(item) {
                    out.insert(item.clone(), v);
                }
            }
        }
    }
    out
}

/// Find a program by name in `$PATH` (a name with a `/` is taken as a path).
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    let path = var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        let cases = [
            (p("/dc"), p("/h"), p("/dc/config.json")),
            (None, p("/h"), p("/h/.docker/config.json")),
            (None, None, None),
        ];
        for (dc, home, want) in cases {
            assert_eq!(
                docker_config_from(dc.clone(), home.clone()),
                want,
                "{dc:?} {home:?}"
            );
        }
    }

    #[test]
    fn store_root_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        let cases = [
            (Some("/flag"), p("/r"), p("/x"), p("/h"), "/flag"),
            (None, p("/r"), p("/x"), p("/h"), "/r"),
            (None, None, p("/x"), p("/h"), "/x/rbuild"),
            (None, None, None, p("/h"), "/h/.local/share/rbuild"),
        ];
        for (flag, root, xdg, home, want) in cases {
            let got = store_root_from(flag.map(Path::new), root, xdg, home).expect("a root");
            assert_eq!(got, PathBuf::from(want));
        }
        assert!(store_root_from(None, None, None, None).is_err());
    }

    #[test]
    fn build_args_take_bare_keys_from_the_environment() {
        let raw: Vec<String> = ["A=1", "B", "C", "D=x=y", "A=2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = build_args_with(&raw, |k| (k == "B").then(|| "from-env".to_string()));
        let want: BTreeMap<String, String> = [("A", "2"), ("B", "from-env"), ("D", "x=y")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn epochs() {
        assert_eq!(parse_epoch(None), Ok(None));
        assert_eq!(parse_epoch(Some("")), Ok(None));
        assert_eq!(parse_epoch(Some("1700000000")), Ok(Some(1_700_000_000)));
        assert!(parse_epoch(Some("yesterday"))
            .expect_err("not a number")
            .contains("'yesterday'"));
    }
}
