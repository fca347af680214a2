//! Where registry credentials come from, as the Docker CLI finds them in `~/.docker/config.json`
//! (the path is always passed in; the library never reads `HOME` or `DOCKER_CONFIG`):
//! `credHelpers[host]` first, then `credsStore`, then `auths[host]` (`auth` = base64
//! `user:password`, or `username`/`password`). A helper is run as `docker-credential-NAME get`
//! with the server on stdin and answers `{"ServerURL","Username","Secret"}`. Docker Hub is looked
//! up under `https://index.docker.io/v1/` (its historical key) and its aliases; other keys match
//! with the scheme and path stripped, as the CLI's `ConvertToHostname` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

use super::error::{RegistryError, Result};

/// Docker Hub's key in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A username and password (or token used as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug output.
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// Where a client gets credentials from.
#[derive(Debug, Clone, Default)]
pub enum CredentialsSource {
    /// Anonymous access only.
    #[default]
    Anonymous,
    /// A Docker `config.json` (a missing file means anonymous).
    DockerConfig(PathBuf),
    /// Fixed credentials per registry host (as given by `--username/--password` or tests).
    Static(BTreeMap<String, Credentials>),
}

impl CredentialsSource {
    /// The credentials for registry `host` (`docker.io`, `127.0.0.1:5000`), if any.
    pub fn lookup(&self, host: &str) -> Result<Option<Credentials>> {
        match self {
            CredentialsSource::Anonymous => Ok(None),
            CredentialsSource::Static(map) => Ok(map.get(host).cloned()),
            CredentialsSource::DockerConfig(path) => DockerConfig::load(path)?.lookup(host),
        }
    }
}

/// The parts of a Docker `config.json` that concern registries.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DockerConfig {
    /// Stored logins by server key.
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// Per-registry credential helpers.
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
    /// The default credential helper.
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    #[serde(skip)]
    path: PathBuf,
}

/// One `auths` entry.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// The user name (alternative to `auth`).
    #[serde(default)]
    pub username: Option<String>,
    /// The password (alternative to `auth`).
    #[serde(default)]
    pub password: Option<String>,
}

impl DockerConfig {
    /// Read `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let bad = |reason: String| RegistryError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig {
                    path: path.to_path_buf(),
                    ..DockerConfig::default()
                })
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        let mut config: DockerConfig =
            serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        config.path = path.to_path_buf();
        Ok(config)
    }

    /// The credentials for registry `host`, from a helper or `auths`.
    pub fn lookup(&self, host: &str) -> Result<Option<Credentials>> {
        let keys = candidate_keys(host);
        if let Some(helper) = keys.iter().find_map(|k| self.cred_helpers.get(k)) {
            return run_helper(helper, &keys[0]);
        }
        if let Some(store) = &self.creds_store {
            if let Some(c) = run_helper(store, &keys[0])? {
                return Ok(Some(c));
            }
        }
        for (key, entry) in &self.auths {
            if keys.contains(&normalize_key(key)) || keys.contains(key) {
                return self.decode(key, entry).map(Some);
            }
        }
        Ok(None)
    }

    /// Record a login for registry `host` in the `auths` of the config file at `path`, keeping
    /// every other key, as `docker login` does without a credential helper (file mode 0600,
    /// replaced atomically).
    pub fn save_login(path: &Path, host: &str, creds: &Credentials) -> Result<()> {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        let key = candidate_keys(host).remove(0);
        edit_config(path, |auths| {
            auths.insert(key, serde_json::json!({ "auth": auth }));
        })
        .map(|_| ())
    }

    /// Remove the login for registry `host` from the config file at `path` (`rbuild logout`);
    /// true when there was one.
    pub fn remove_login(path: &Path, host: &str) -> Result<bool> {
        let keys = candidate_keys(host);
        edit_config(path, |auths| {
            let before = auths.len();
            auths.retain(|k, _| !keys.contains(&normalize_key(k)) && !keys.contains(k));
            before != auths.len()
        })
    }

    fn decode(&self, key: &str, entry: &AuthEntry) -> Result<Credentials> {
        let bad = |reason: &str| RegistryError::Config {
            path: self.path.clone(),
            reason: format!("auths[{key}]: {reason}"),
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("`auth` is not base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("`auth` is not utf-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad("`auth` is not user:password"))?;
            return Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => Ok(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            _ => Err(bad("neither `auth` nor `username`/`password`")),
        }
    }
}

/// Apply `edit` to the `auths` object of the config at `path` and write it back atomically.
fn edit_config<T>(
    path: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> T,
) -> Result<T> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: String| RegistryError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let mut doc = match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| bad(e.to_string()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(bad(e.to_string())),
    };
    let root = doc
        .as_object_mut()
        .ok_or_else(|| bad("not a json object".to_string()))?;
    let auths = root
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| bad("`auths` is not an object".to_string()))?;
    let out = edit(auths);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("create {}: {e}", dir.display())))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| bad(e.to_string()))?;
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| bad(e.to_string()))?;
    temp.write_all(&text).map_err(|e| bad(e.to_string()))?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| bad(e.to_string()))?;
    temp.persist(path).map_err(|e| bad(e.error.to_string()))?;
    Ok(out)
}

/// The keys a host may be stored under; the first is the one helpers are asked for.
fn candidate_keys(host: &str) -> Vec<String> {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => vec![
            DOCKER_HUB_CONFIG_KEY.to_string(),
            "docker.io".to_string(),
            "index.docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ],
        other => vec![other.to_string()],
    }
}

/// `https://host:5000/v2/` → `host:5000` (Docker Hub's key stays as it is).
fn normalize_key(key: &str) -> String {
    if key == DOCKER_HUB_CONFIG_KEY {
        return key.to_string();
    }
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Run `docker-credential-NAME get`; "credentials not found" is `None`.
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>> {
    run_helper_program(name, &format!("docker-credential-{name}"), server)
}

/// Run helper `program` (found through `PATH` by the OS, as Docker does) for `server`.
fn run_helper_program(name: &str, program: &str, server: &str) -> Result<Option<Credentials>> {
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: name.to_string(),
        server: server.to_string(),
        reason,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("writing stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!(
            "{}: {}{}",
            out.status,
            stdout.trim(),
            stderr.trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad answer: {e}")))?;
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    #[test]
    fn auths_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "https://reg.example:5000/v2/":{"username":"u","password":"p"},
                "127.0.0.1:5000":{"auth":"YTpiOmM="},
                "broken.example":{"auth":"!!"}
            }}"#,
        )
        .expect("write");
        let source = CredentialsSource::DockerConfig(path);
        let cases = [
            ("docker.io", creds("hub", "secret")),
            ("registry-1.docker.io", creds("hub", "secret")),
            ("reg.example:5000", creds("u", "p")),
            ("127.0.0.1:5000", creds("a", "b:c")),
            ("other.example", None),
        ];
        for (host, want) in cases {
            assert_eq!(source.lookup(host).expect(host), want, "{host}");
        }
        assert!(source.lookup("broken.example").is_err());
    }

    #[test]
    fn login_and_logout_edit_auths_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("docker/config.json");
        std::fs::create_dir_all(dir.path().join("docker")).expect("mkdir");
        std::fs::write(
            &path,
            r#"{"psFormat":"x","auths":{"other:1":{"auth":"YTpi"}}}"#,
        )
        .expect("write");
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        DockerConfig::save_login(&path, "reg:5000", &c).expect("save");
        DockerConfig::save_login(&path, "docker.io", &c).expect("save hub");
        let source = CredentialsSource::DockerConfig(path.clone());
        assert_eq!(source.lookup("reg:5000").expect("lookup"), Some(c.clone()));
        assert_eq!(source.lookup("docker.io").expect("lookup"), Some(c.clone()));
        assert_eq!(source.lookup("other:1").expect("lookup"), creds("a", "b"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("psFormat") && text.contains(DOCKER_HUB_CONFIG_KEY),
            "{text}"
        );
        assert!(DockerConfig::remove_login(&path, "reg:5000").expect("logout"));
        assert!(!DockerConfig::remove_login(&path, "reg:5000").expect("logout again"));
        assert_eq!(source.lookup("reg:5000").expect("lookup"), None);
        let fresh = dir.path().join("new/config.json");
        DockerConfig::save_login(&fresh, "h", &c).expect("save into a new file");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&fresh)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_config_is_anonymous() {
        let source = CredentialsSource::DockerConfig("/nonexistent/config.json".into());
        assert_eq!(source.lookup("docker.io").expect("lookup"), None);
    }

    #[test]
    fn helper_is_run_with_server_on_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("rbuildtest{}", std::process::id());
        let helper = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(
            &helper,
            "#!/bin/sh\nread s\nif [ \"$s\" = h.example ]; then echo '{\"ServerURL\":\"h.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .expect("write helper");
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let program = helper.display().to_string();
        let found = run_helper_program(&name, &program, "h.example").expect("helper");
        assert_eq!(found, creds("hu", "hs"));
        let none = run_helper_program(&name, &program, "x.example").expect("helper");
        assert_eq!(none, None);
    }
}
